"""Shared test helpers: the real CLI (in a subprocess, or in this process for what it prints),
the real embedded dataset, and the file order of `make test`."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import runpy
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = REPO / "data"
ENGLISH_HELD_OUT = "~data.eval.python_code"
"""Held-out english_docs only, for tests that need a held-out metric: python_code's held-out set is
5x larger, and two evaluations of both are half of a smoke run's time."""

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on the CI's two cores: one thread per training each, instead
    # of two threads each fighting over the same two cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


DURATIONS = Path(__file__).with_name("durations.json")
"""Measured seconds per test file (``make test-durations`` rewrites it)."""
WRITE_DURATIONS = "OLMOTRAIN_TEST_DURATIONS"
"""Set to a path: the run writes its seconds per test file there (merged over what it holds)."""


def pytest_collection_modifyitems(items):
    """Longest file first: `make test`'s workers take whole files in collection order, so the
    long ones start first and the short ones fill the gaps at the end. A file not measured yet
    goes first of all: if it is short that costs seconds, if it is long, starting it last could
    add all of it to the wall time."""
    seconds = json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}
    items.sort(key=lambda item: -seconds.get(item.path.name, float("inf")))  # stable in a file


_file_seconds: dict[str, float] = {}


def pytest_runtest_logreport(report):
    if os.environ.get(WRITE_DURATIONS):  # under xdist, the controller sees every worker's reports
        name = Path(report.nodeid.split("::")[0]).name
        _file_seconds[name] = _file_seconds.get(name, 0.0) + report.duration


def pytest_sessionfinish(session):
    target = os.environ.get(WRITE_DURATIONS)
    if target and _file_seconds and not os.environ.get("PYTEST_XDIST_WORKER"):
        path = Path(target)
        seconds = json.loads(path.read_text()) if path.exists() else {}
        seconds.update({k: round(v, 1) for k, v in _file_seconds.items()})
        ordered = dict(sorted(seconds.items(), key=lambda kv: -kv[1]))
        path.write_text(json.dumps(ordered, indent=2) + "\n")


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    check_error: bool = False,
    script: str = "train.py",
):
    """Run ``python train.py ARGS`` from the repository root; returns the CompletedProcess."""
    full_env = {**os.environ, "OLMOTRAIN_DATA_ROOT": str(DATA_ROOT), **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run(
        [sys.executable, script, *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check_error:
        assert_one_line_error(proc)
    return proc


def run_module(module: str, *args: str, env: dict[str, str] | None = None, timeout: float = 900):
    """Run ``python -m MODULE ARGS`` as :func:`run_cli` runs train.py."""
    return run_cli(module, *args, env=env, timeout=timeout, script="-m")


@dataclass
class Result:
    """What a command left: its exit status, stdout and stderr (as a CompletedProcess has)."""

    returncode: int
    stdout: str
    stderr: str


# The filters of a fresh interpreter (no -W, no PYTHONWARNINGS): pytest's own would show warnings
# that `python train.py` never prints, and hide the ones it does.
_FRESH_WARNING_FILTERS = (
    ("default", DeprecationWarning, "__main__"),
    ("ignore", DeprecationWarning, ""),
    ("ignore", PendingDeprecationWarning, ""),
    ("ignore", ImportWarning, ""),
    ("ignore", ResourceWarning, ""),
)


def _in_process(
    argv: list[str], run: Callable[[], Any], env: dict[str, str] | None, cwd: Path | None
) -> Result:
    """Run a command's ``__main__`` here as its own process would, with ``argv``, ``env`` and
    ``cwd`` (default: the repository); stdout, stderr, logs and warnings are captured, the exit
    status is the ``SystemExit`` it ends with (0 if none)."""
    from hydra.core.global_hydra import GlobalHydra

    saved_env, saved_argv, saved_cwd = dict(os.environ), sys.argv, os.getcwd()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    os.environ.update({"OLMOTRAIN_DATA_ROOT": str(DATA_ROOT), **(env or {})})
    os.environ.pop("HYDRA_FULL_ERROR", None)
    sys.argv = argv
    os.chdir(cwd or REPO)
    root.handlers = []  # so the command's own logging.basicConfig sets up stderr, as in a process
    GlobalHydra.instance().clear()
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            warnings.resetwarnings()
            for action, category, module in reversed(_FRESH_WARNING_FILTERS):
                warnings.filterwarnings(action, category=category, module=module)
            # runpy's note that a module it runs as __main__ was imported before: only in here.
            warnings.filterwarnings("ignore", category=RuntimeWarning, module="runpy")
            warnings.showwarning = (
                lambda message, category, filename, lineno, file=None, line=None: sys.stderr.write(
                    warnings.formatwarning(message, category, filename, lineno, line)
                )
            )
            try:
                run()
            except SystemExit as exc:
                code = exc.code
    finally:
        GlobalHydra.instance().clear()
        root.handlers, root.level = saved_handlers, saved_level
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("message") prints it and exits 1
        err.write(f"{code}\n")
        code = 1
    return Result(code, out.getvalue(), err.getvalue())


def train_main(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Result:
    """``python train.py ARGS`` in this process: train.py's own guard and Hydra main.

    For checks of what a command prints and its exit status, without a 4-5 s interpreter and
    import per call. Only for commands that end before training: anything that trains, starts
    ranks or submits jobs runs in its own process (:func:`run_cli`).
    """
    script = str(REPO / "train.py")
    return _in_process(
        [script, *args], lambda: runpy.run_path(script, run_name="__main__"), env, cwd
    )


def module_main(
    module: str, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Result:
    """``python -m MODULE ARGS`` in this process, as :func:`train_main` runs train.py."""
    return _in_process(
        [module, *args],
        lambda: runpy.run_module(module, run_name="__main__", alter_sys=True),
        env,
        cwd,
    )


def dry_run_json(*args: str) -> dict:
    """The ``dry_run=json`` plan for ``args`` (train.py in this process)."""
    result = train_main(*args, "dry_run=json")
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def assert_one_line_error(proc) -> str:
    """The bad-input contract: exit 2, one ``error:`` line on stderr, no traceback."""
    lines = [
        ln
        for ln in proc.stderr.splitlines()
        if ln.strip() and "transformer_engine unavailable" not in ln
    ]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.fixture(scope="session")
def embedded_data() -> Path:
    """The embedded dataset (bpe8k), built once with the real builder if missing."""
    proc = subprocess.run(
        [sys.executable, "-m", "olmotrain.embedded", "--root", str(DATA_ROOT / "embedded")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return DATA_ROOT / "embedded" / "embedded_bpe8k"


def metrics(run_dir: Path) -> list[dict]:
    """The records of a run's metrics.jsonl."""
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def checkpoint_steps(run_dir: Path) -> list[int]:
    """Steps of complete checkpoints (a kill can leave a ``stepN-tmp`` behind)."""
    return sorted(
        int(m.group(1))
        for p in (run_dir / "checkpoints").iterdir()
        if (m := re.fullmatch(r"step(\d+)", p.name))
    )


def start_train(*args: str, **popen: Any) -> subprocess.Popen:
    """Start ``python train.py ARGS`` from the repository root (not waiting for it)."""
    env = {**os.environ, "OLMOTRAIN_DATA_ROOT": str(DATA_ROOT)}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.Popen([sys.executable, "train.py", *args], cwd=REPO, env=env, **popen)


def kill_at_step(*args: str, run_dir: Path, step: int, timeout: float = 300) -> None:
    """Start ``python train.py ARGS`` and SIGKILL it (launcher and ranks) once ``step`` is logged."""
    proc = start_train(
        *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    log = run_dir / "metrics.jsonl"
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and proc.poll() is None:
            lines = (
                log.read_text().splitlines()[:-1] if log.exists() else []
            )  # the last may be torn
            if any(json.loads(line)["step"] >= step for line in lines):
                break
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
