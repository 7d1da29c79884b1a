"""The ``olmotrain`` console script: each subcommand is its ``python -m olmotrain.<name>`` twin."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from olmotrain.commands import COMMANDS, command_main

SCRIPT = Path(sys.executable).parent / "olmotrain"
"""The console script ``pip install -e .`` made from ``[project.scripts]``."""


def olmotrain(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_olmotrain_help_lists_every_command():
    out = olmotrain("--help")
    assert out.returncode == 0, out.stderr
    listed = [line.split()[0] for line in out.stdout.split("commands:\n")[1].splitlines()]
    assert listed == list(COMMANDS)
    assert {"prepare", "evaluate", "ladder", "export", "generate", "status", "train"} <= set(
        COMMANDS
    )


def test_status_help_is_its_python_m_twins():
    ours = olmotrain("status", "--help")
    twin = subprocess.run(
        [sys.executable, "-m", "olmotrain.status", "--help"], capture_output=True, text=True
    )
    assert ours.returncode == twin.returncode == 0, ours.stderr
    assert ours.stdout == twin.stdout and "usage: python -m olmotrain.status" in ours.stdout


def test_an_unknown_command_is_one_line_and_exit_2():
    out = olmotrain("stauts", "x")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == (
        f"error: unknown command 'stauts'; did you mean status? ({', '.join(COMMANDS)})\n"
    )


def test_a_bad_setting_of_train_is_train_py_s_one_line():
    out = olmotrain("train", "model=olmo2_1mm")
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("error: unknown model 'olmo2_1mm'; did you mean olmo2_1m")
    assert len(out.stderr.splitlines()) == 1


@pytest.mark.parametrize("name", [n for n in COMMANDS if n != "train"])
def test_each_subcommand_runs_the_main_of_its_python_m_twin(name, capsys):
    """The dispatched ``main`` prints the help of ``python -m olmotrain.<name>`` (its prog)."""
    with pytest.raises(SystemExit) as exit_:
        command_main(name)(["--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m olmotrain.{name} ")
