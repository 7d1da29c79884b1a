"""SLURM's queue as olmotrain reads it: one ``squeue`` call for given job ids, typed rows.

Used by the run dir's owner lock (is the SLURM job holding a run dir still alive?), by
submission (never submit a run twice) and by ``olmotrain status``. It sits at the bottom of the
package (below the run dir's lock) and needs nothing but ``squeue`` on ``PATH``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

QUEUED = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED", "STOPPED"})
RUNNING = frozenset({"RUNNING", "CONFIGURING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING"})
ALIVE = QUEUED | RUNNING
"""SLURM job states in which a job still holds (or will take) its run dir."""

FORMAT = "%i|%T|%r|%o"
"""Job id, state, reason, command (the batch script of an ``sbatch`` job)."""


@dataclass(frozen=True)
class Job:
    """One row of ``squeue``: a job SLURM still knows."""

    job_id: str
    state: str
    """``PENDING``, ``RUNNING``, ``COMPLETED``, ... (``squeue -t all``'s long names)."""
    reason: str
    """Why it waits or ended (``Priority``, ``None``, ...)."""
    script: str
    """The job's command: for a batch job, the path of its batch script."""

    @property
    def alive(self) -> bool:
        """Queued or running: it still holds (or will take) its run dir."""
        return self.state in ALIVE


def parse(stdout: str) -> list[Job]:
    """The rows of ``squeue -h -o`` :data:`FORMAT` output."""
    rows = []
    for line in stdout.splitlines():
        if line.strip():
            job_id, state, reason, script = line.strip().split("|", 3)
            rows.append(Job(job_id, state, reason, script))
    return rows


def squeue(job_ids: Sequence[str], timeout_s: float = 60) -> list[Job] | None:
    """The rows ``squeue`` shows for ``job_ids`` (every state SLURM still keeps), in one call.

    A job SLURM has forgotten has no row (``squeue`` calls an id it no longer knows invalid).
    ``None`` when SLURM cannot be asked: no ``squeue`` here, its controller down or too slow.
    """
    if not job_ids:
        return []
    try:
        out = subprocess.run(
            ["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", FORMAT],
            capture_output=True, text=True, timeout=timeout_s,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0 and "Invalid job id" not in out.stderr:
        return None
    return parse(out.stdout)


def job_state(job_id: str) -> str:
    """``alive``, ``gone`` (provably: SLURM shows it ended, or forgot it) or ``unknown``."""
    rows = squeue([job_id])
    if rows is None:
        return "unknown"
    return "alive" if any(row.alive for row in rows) else "gone"
