"""The one atomic write and the one "move aside" of :mod:`olmotrain.paths`."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from olmotrain.paths import AtomicFile, move_aside, write_atomically


def test_write_atomically_publishes_whole_files_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a.json"
    write_atomically(path, "old\n")
    write_atomically(path, b"new\n")
    assert path.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()  # an ordinary file, not mkstemp's 0600


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "a.json"
    write_atomically(path, "old\n")
    with pytest.raises(RuntimeError), AtomicFile(path) as f:
        f.write(b"half")
        raise RuntimeError("crash mid-write")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_temporaries_are_per_process_and_per_call(tmp_path):
    """Ranks (processes) and threads writing the same file never rename each other's temporary."""
    a, b = AtomicFile(tmp_path / "x"), AtomicFile(tmp_path / "x")
    assert a.tmp != b.tmp
    assert re.fullmatch(rf"\.x\.{os.getpid()}\.[0-9a-f]+\.tmp", a.tmp.name)
    a.discard()
    b.discard()
    code = (
        "import sys; from pathlib import Path; from olmotrain.paths import AtomicFile; "
        "f = AtomicFile(Path(sys.argv[1])); print(f.tmp.name); f.discard()"
    )
    other = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "x")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert other.split(".")[2] != str(os.getpid())
    assert list(tmp_path.iterdir()) == []


def test_move_aside_renames_with_a_timestamp_and_deletes_nothing(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("x: 1\n")
    aside = move_aside(run, "replaced")
    assert re.fullmatch(r"run\.replaced-\d{8}-\d{6}", aside.name)
    assert aside.parent == tmp_path and not run.exists()
    assert (aside / "config.yaml").read_text() == "x: 1\n"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
