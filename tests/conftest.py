"""Shared test helpers: the real CLI in a subprocess, and the real embedded dataset."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
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


LONGEST_FIRST = (
    "test_slurm.py",
    "test_faults.py",
    "test_parallel.py",
    "test_ladder.py",
    "test_export.py",
    "test_train_e2e.py",
    "test_watching.py",
    "test_eval.py",
)
"""Files that train for minutes, longest first: `make test`'s workers take whole files in
collection order, so these start first and the short ones fill the gaps at the end."""


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable within a file


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


def dry_run_json(*args: str) -> dict:
    """The ``dry_run=json`` plan for ``args``."""
    proc = run_cli(*args, "dry_run=json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


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
