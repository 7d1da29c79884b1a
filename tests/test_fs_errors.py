"""Filesystem problems are one line, exit 2, nothing half-written, before any work starts.

Paths that cannot be created (under /proc), a file where a directory is expected, a read-only
directory (a read-only tmpfs as root; a 0555 directory otherwise), a full disk (a full tmpfs),
for ``output_root``, ``data_root``, a run dir, its checkpoint dir, and prepare's ``--output``.
The commands run in this process (their messages are what is checked); prepare's contract (exit
status, one line) once in its own process.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import pytest
from conftest import assert_one_line_error, module_main, run_cli, train_main

SMOKE = ["experiment=smoke", "train.max_steps=1"]
NO_EVAL = "data.eval=null"  # a run that must exist, not its held-out loss
AS_ROOT = os.geteuid() == 0


@contextlib.contextmanager
def read_only_dir(path):
    """A directory this process cannot write: a read-only tmpfs as root, else mode 0555."""
    path.mkdir()
    if AS_ROOT:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], check=True)
    else:
        path.chmod(0o555)
    try:
        yield path
    finally:
        if AS_ROOT:
            subprocess.run(["umount", str(path)], check=True)
        else:
            path.chmod(0o755)


@contextlib.contextmanager
def full_disk(path):
    """A 1 MiB tmpfs filled to the last block (root only)."""
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)], check=True)
    try:
        with open(path / "filler", "wb") as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_output_root_that_cannot_be_created_is_one_line():
    line = assert_one_line_error(train_main(*SMOKE, "output_root=/proc/nowhere"))
    assert "output_root=/proc/nowhere" in line and "/proc/nowhere" in line


def test_output_root_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("mine")
    line = assert_one_line_error(train_main(*SMOKE, f"output_root={tmp_path / 'afile'}"))
    assert "afile" in line and "not a directory" in line.lower()
    assert (tmp_path / "afile").read_text() == "mine"


def test_run_dir_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "smoke").write_text("mine")
    line = assert_one_line_error(train_main(*SMOKE, f"output_root={tmp_path}"))
    assert "smoke" in line and "not a directory" in line.lower()
    assert (tmp_path / "smoke").read_text() == "mine"


def test_checkpoint_dir_that_is_a_file_is_one_line(embedded_data, tmp_path):
    first = run_cli(*SMOKE, NO_EVAL, f"output_root={tmp_path}")
    assert first.returncode == 0, first.stderr[-2000:]
    checkpoints = tmp_path / "smoke" / "checkpoints"
    moved = tmp_path / "kept"
    checkpoints.rename(moved)
    checkpoints.write_text("mine")
    line = assert_one_line_error(train_main(*SMOKE, NO_EVAL, f"output_root={tmp_path}"))
    assert "checkpoints" in line and "not a directory" in line.lower()
    assert checkpoints.read_text() == "mine"


def test_read_only_output_root_is_one_line(tmp_path):
    with read_only_dir(tmp_path / "ro") as ro:
        line = assert_one_line_error(train_main(*SMOKE, f"output_root={ro / 'runs'}"))
        assert str(ro) in line and ("read-only" in line or "ermission" in line)
        assert list(ro.iterdir()) == []


def test_data_root_that_cannot_be_written_is_one_line_when_the_data_must_be_built(tmp_path):
    with read_only_dir(tmp_path / "ro") as ro:
        line = assert_one_line_error(
            train_main(*SMOKE, f"data_root={ro}", f"output_root={tmp_path / 'runs'}")
        )
        assert line.startswith(f"error: data_root={ro}")
        assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(not AS_ROOT, reason="mounts a full tmpfs: run as root (CI does)")
def test_full_disk_is_one_line_before_training(tmp_path):
    with full_disk(tmp_path / "full") as full:
        line = assert_one_line_error(train_main(*SMOKE, f"output_root={full}"))
        assert "disk is full" in line and str(full) in line


def prepare_cli(tmp_path, output, own_process=False):
    (tmp_path / "docs.jsonl").write_text('{"text": "a document"}\n')
    args = [str(tmp_path / "docs.jsonl"), "--output", str(output), "--tokenizer", "gpt_neox_olmo"]
    if not own_process:
        return module_main("olmotrain.prepare", *args)
    return subprocess.run(
        [sys.executable, "-m", "olmotrain.prepare", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_prepare_output_that_cannot_be_created_is_one_line(tmp_path):
    """In prepare's own process: the contract of every argparse command (exit 2, one line)."""
    line = assert_one_line_error(prepare_cli(tmp_path, "/proc/nowhere", own_process=True))
    assert "/proc/nowhere" in line


def test_prepare_output_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "out").write_text("mine")
    line = assert_one_line_error(prepare_cli(tmp_path, tmp_path / "out"))
    assert "out" in line and (tmp_path / "out").read_text() == "mine"


def test_prepare_read_only_output_is_one_line(tmp_path):
    with read_only_dir(tmp_path / "ro") as ro:
        line = assert_one_line_error(prepare_cli(tmp_path, ro / "data"))
        assert str(ro) in line and list(ro.iterdir()) == []


def test_status_of_a_path_that_is_not_a_directory_is_one_line(tmp_path):
    proc = module_main("olmotrain.status", str(tmp_path / "nowhere"))
    assert "is not a directory" in assert_one_line_error(proc)
