"""SLURM job state of runs: which job a run dir recorded, and whether SLURM still holds it.

Each submission appends a line to ``RUN_DIR/jobs.jsonl`` (job id, cluster, time, logs, the code
snapshot's sha256). ``squeue`` tells the state of the jobs SLURM still knows; a job counts as a
run's only if its batch script lies in that run dir, because job ids start again when a cluster
is reset. Shared by submission (never submit a run twice) and ``olmotrain.status``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from olmotrain.train.lock import ALIVE
from olmotrain.train.rundir import RunDir


def jobs_path(run: RunDir) -> Path:
    """``RUN_DIR/jobs.jsonl``: one line per submission (job id, time, code snapshot)."""
    return run.path / "jobs.jsonl"


def last_job(run: RunDir) -> dict[str, Any] | None:
    """The latest submission recorded for ``run``."""
    path = jobs_path(run)
    lines = path.read_text().splitlines() if path.exists() else []
    return json.loads(lines[-1]) if lines else None


def slurm_states(job_ids: Sequence[str]) -> dict[str, tuple[str, str, str]]:
    """``{job id: (state, reason, batch script)}`` from ``squeue`` for the jobs SLURM still knows."""
    if not job_ids or shutil.which("squeue") is None:
        return {}
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", "%i|%T|%r|%o"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    states = {}
    for line in out.stdout.splitlines():
        job_id, state, reason, script = line.strip().split("|", 3)
        states[job_id] = (state, reason, script)
    return states


def run_job_state(
    run: RunDir, job: dict[str, Any], states: dict[str, tuple[str, str, str]]
) -> tuple[str, str] | None:
    """SLURM's ``(state, reason)`` for ``run``'s recorded job, if SLURM still knows that job.

    The job's batch script must lie in the run dir: job ids start again when a cluster is reset.
    """
    entry = states.get(job["job_id"])
    if entry is None or not entry[2].startswith(f"{run.path}/"):
        return None
    return entry[0], entry[1]


def live_jobs(runs: Sequence[RunDir]) -> dict[Path, str]:
    """``{run dir: job id}`` for the runs a SLURM job still holds (queued or running); one ``squeue``."""
    jobs = {
        run.path: (run, job) for run in runs if (job := last_job(run)) and job["cluster"] == "slurm"
    }
    states = slurm_states([job["job_id"] for _, job in jobs.values()])
    return {
        path: job["job_id"]
        for path, (run, job) in jobs.items()
        if (state := run_job_state(run, job, states)) and state[0] in ALIVE
    }


def record_job(run: RunDir, record: dict[str, Any]) -> None:
    """Append one submission to ``RUN_DIR/jobs.jsonl``."""
    with jobs_path(run).open("a") as f:
        f.write(json.dumps(record) + "\n")
