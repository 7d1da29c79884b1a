"""Where each run under a directory stands: the parts of ``olmotrain status``.

For every run dir under a directory: its state (queued / running / done / failed from SLURM
where it knows the job, else from the run dir), step/total, last train loss, latest checkpoint,
job id; and the log tail of each failed run. The command itself is :mod:`olmotrain.status`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from olmotrain.errors import UserError
from olmotrain.launch.jobs import last_job, run_job, slurm_jobs
from olmotrain.metrics import TRAIN_LOSS, last_value, read_metrics_log
from olmotrain.squeue import QUEUED, RUNNING, Job
from olmotrain.train.rundir import RunDir

SKIP_DIRS = {"checkpoints", "work", "code", "slurm"}
"""Parts of a run dir, never run dirs themselves."""


@dataclass
class RunStatus:
    """One run's state, as shown by ``olmotrain.status``."""

    run_dir: str
    state: str
    step: int | None
    max_steps: int | None
    loss: float | None
    checkpoint: str | None
    job_id: str | None
    detail: str = ""
    log: str | None = None
    log_tail: list[str] = field(default_factory=list)


def is_run_dir(path: Path) -> bool:
    """A run dir holds its ``config.yaml`` and something a run wrote (not just any config.yaml)."""
    return (path / "config.yaml").exists() and any(
        (path / name).exists() for name in ("metrics.jsonl", "checkpoints", "jobs.jsonl")
    )


def find_runs(root: Path) -> list[Path]:
    """Run dirs at or under ``root``, sorted."""
    if is_run_dir(root):
        return [root]
    found = []
    for here, dirs, _ in os.walk(root):
        if is_run_dir(Path(here)):
            found.append(Path(here))
            dirs.clear()
        else:
            dirs[:] = [
                d
                for d in dirs
                if d not in SKIP_DIRS and not d.startswith(".") and ".replaced-" not in d
            ]
    return sorted(found)


def _tail(path: Path, lines: int) -> list[str]:
    if not path.exists():
        return []
    with path.open("rb") as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - 64 * 1024))
        text = f.read().decode(errors="replace")
    return [line for line in text.splitlines() if line.strip()][-lines:]


def run_status(path: Path, slurm: dict[str, Job], tail_lines: int = 15) -> RunStatus:
    """The status of the run in ``path`` (``slurm``: SLURM's rows from :func:`slurm_jobs`)."""
    run = RunDir(path)
    try:
        max_steps: int | None = run.plan().max_steps
    except UserError:
        max_steps = None
    records = read_metrics_log(run.metrics_path)  # any olmotrain's names (old run dirs too)
    step = records[-1]["step"] if records else None
    loss = last_value(records, TRAIN_LOSS)
    ckpt_step = run.latest_step()
    checkpoint = str(run.checkpoints / f"step{ckpt_step}") if ckpt_step is not None else None
    job = last_job(run)
    job_id = job["job_id"] if job else None
    log = Path(job["logs"]) / f"{job_id}_0_log.err" if job else None
    status = RunStatus(str(path), "incomplete", step, max_steps, loss, checkpoint, job_id)
    status.log = str(log) if log else None
    if ckpt_step is not None and max_steps is not None and ckpt_step >= max_steps:
        status.state = "done"
        return status
    known = run_job(run, job, slurm) if job and job["cluster"] == "slurm" else None
    if known is not None:
        state, reason = known.state, known.reason
        if state in QUEUED:
            status.state, status.detail = "queued", reason if reason != "None" else ""
            return status
        if state in RUNNING:
            status.state = "running"
            return status
        status.detail = state.lower()
    elif (
        job
        and job["cluster"] == "submitit_local"
        and not (log.parent / f"{job_id}_0_result.pkl").exists()
    ):
        status.state = "running"
        return status
    if job:  # the job ended and the run is not finished
        status.state = "failed"
        status.log_tail = _tail(log, tail_lines) if log else []
        if log is not None and (why := failure_reason(log.parent, job_id)):
            status.detail = f"{status.detail}: {why}" if status.detail else why
    return status


SRUN_TASK = re.compile(r"srun: error: (\S+): tasks? ([\d,-]+): (.+)$")


def failure_reason(logs: Path, job_id: str) -> str | None:
    """One line on why a job's ranks stopped, from its logs: a task SLURM saw killed or failing
    (``srun: error: n2: task 1: Killed``) before the errors of the ranks that lost it, else the
    first ``error:`` line a rank printed."""
    lines = [ln for f in sorted(logs.glob(f"{job_id}_*_log.*")) for ln in _tail(f, 200)]
    tasks = [m for ln in lines if (m := SRUN_TASK.search(ln))]
    killed = next((m for m in tasks if "Killed" in m.group(3) or "signal" in m.group(3)), None)
    if m := killed or (tasks[0] if tasks else None):
        return f"rank {m.group(2)} on {m.group(1)}: {m.group(3).strip().lower()}"
    return next((ln.split("error: ", 1)[1] for ln in lines if ln.startswith("error: ")), None)


def statuses(root: Path, tail_lines: int = 15) -> list[RunStatus]:
    """The status of every run under ``root`` (one ``squeue`` call for all of them)."""
    runs = find_runs(root)
    jobs = [j for j in (last_job(RunDir(p)) for p in runs) if j and j["cluster"] == "slurm"]
    slurm = slurm_jobs([j["job_id"] for j in jobs])
    return [run_status(p, slurm, tail_lines) for p in runs]


def render(rows: list[RunStatus], root: Path) -> str:
    """A table, then the log tail of each failed run."""

    def rel(p: str | None) -> str:
        if p is None:
            return "-"
        try:
            return str(Path(p).relative_to(root)) or "."
        except ValueError:
            return p

    table = [("run", "state", "step", "loss", "checkpoint", "job")]
    for r in rows:
        state = f"{r.state} ({r.detail})" if r.detail else r.state
        step = f"{r.step if r.step is not None else '-'}/{r.max_steps or '?'}"
        loss = f"{r.loss:.3f}" if r.loss is not None else "-"
        table.append((rel(r.run_dir), state, step, loss, rel(r.checkpoint), r.job_id or "-"))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table
    ]
    counts = {s: sum(r.state == s for r in rows) for s in dict.fromkeys(r.state for r in rows)}
    lines.append(f"\n{len(rows)} run(s): " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    for r in rows:
        if r.state == "failed":
            slurm = f" (SLURM job state {r.detail.upper()})" if r.detail else ""
            lines.append(f"\n--- {rel(r.run_dir)} failed{slurm}; last lines of {r.log}:")
            lines += [f"    {line}" for line in r.log_tail] or ["    (no log)"]
    return "\n".join(lines)
