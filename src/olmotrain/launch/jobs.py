"""SLURM job state of runs: which job a run dir recorded, and whether SLURM still holds it.

Each submission appends a line to ``RUN_DIR/jobs.jsonl`` (job id, cluster, time, logs, the code
snapshot's sha256). ``squeue`` (:mod:`olmotrain.squeue`) tells the state of the jobs SLURM still knows; a job counts as a
run's only if its batch script lies in that run dir, because job ids start again when a cluster
is reset. Shared by submission (never submit a run twice) and ``olmotrain.status``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from olmotrain.squeue import Job, squeue
from olmotrain.train.rundir import RunDir


def jobs_path(run: RunDir) -> Path:
    """``RUN_DIR/jobs.jsonl``: one line per submission (job id, time, code snapshot)."""
    return run.path / "jobs.jsonl"


def last_job(run: RunDir) -> dict[str, Any] | None:
    """The latest submission recorded for ``run``."""
    path = jobs_path(run)
    lines = path.read_text().splitlines() if path.exists() else []
    return json.loads(lines[-1]) if lines else None


def slurm_jobs(job_ids: Sequence[str]) -> dict[str, Job]:
    """``{job id: row}`` from one ``squeue`` call for the jobs SLURM still knows (none when
    SLURM cannot be asked)."""
    return {job.job_id: job for job in squeue(job_ids) or []}


def run_job(run: RunDir, job: dict[str, Any], jobs: dict[str, Job]) -> Job | None:
    """SLURM's row for ``run``'s recorded ``job``, if SLURM still knows that job.

    The job's batch script must lie in the run dir: job ids start again when a cluster is reset.
    """
    found = jobs.get(job["job_id"])
    if found is None or not found.script.startswith(f"{run.path}/"):
        return None
    return found


def live_jobs(runs: Sequence[RunDir]) -> dict[Path, str]:
    """``{run dir: job id}`` for the runs a SLURM job still holds (queued or running); one ``squeue``."""
    jobs = {
        run.path: (run, job) for run in runs if (job := last_job(run)) and job["cluster"] == "slurm"
    }
    rows = slurm_jobs([job["job_id"] for _, job in jobs.values()])
    return {
        path: job["job_id"]
        for path, (run, job) in jobs.items()
        if (row := run_job(run, job, rows)) and row.alive
    }


def record_job(run: RunDir, record: dict[str, Any]) -> None:
    """Append one submission to ``RUN_DIR/jobs.jsonl``."""
    with jobs_path(run).open("a") as f:
        f.write(json.dumps(record) + "\n")
