"""One writer per run dir: ``RUN_DIR/owner.lock`` names the run's owner while it trains.

The owner is one launch of the run: a ``python train.py`` (its host, PID and the PID's start
time, so a reused PID is not mistaken for it) or a SLURM job (its id; every requeue of the job
is the same owner). The lock is taken before anything else is written to the run dir, released
when the owner ends, and taken over only when its holder is provably gone: a dead PID on this
host, or a SLURM job that ``squeue`` no longer shows queued or running. Anything else (a live
holder, a holder on another host, SLURM unreachable) refuses the second writer with one line
naming the holder. Ranks of one run share their launcher's lock; a job recognises the lock its
launcher took for it by the lock's token, which travels with the job.

Checks and writes of the lock happen under an ``flock`` of ``RUN_DIR/.owner.guard``, so two
launches racing for the same run dir cannot both win.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import os
import shlex
import socket
import sys
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from olmotrain import squeue
from olmotrain.errors import UserError
from olmotrain.paths import write_atomically

log = logging.getLogger("olmotrain")

LOCK_NAME = "owner.lock"
GUARD_NAME = ".owner.guard"
LOCK_FILES = (LOCK_NAME, GUARD_NAME)
"""Files of the lock: a run dir holding only these holds no run yet."""


def _pid_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (``/proc``), ``None`` if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, after the parenthesised name


@dataclass(frozen=True)
class Holder:
    """Who holds a run dir."""

    token: str
    host: str
    pid: int
    pid_start: str | None
    slurm_job: str | None
    started: str
    command: str = ""

    @classmethod
    def this_process(cls, token: str | None = None, slurm_job: str | None = None) -> Holder:
        """This process as a holder (a new token unless given)."""
        pid = os.getpid()
        return cls(
            token=token or uuid.uuid4().hex,
            host=socket.gethostname(),
            pid=pid,
            pid_start=_pid_start(pid),
            slurm_job=slurm_job,
            started=datetime.datetime.now().isoformat(timespec="seconds"),
            command=" ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *sys.argv[1:]])[:200],
        )

    def describe(self) -> str:
        """``SLURM job 12`` or ``pid 345 on host`` with when it started."""
        who = f"SLURM job {self.slurm_job}" if self.slurm_job else f"pid {self.pid} on {self.host}"
        what = f", {self.command}" if self.command and not self.slurm_job else ""
        return f"{who} (since {self.started}{what})"

    def state(self) -> str:
        """``alive``, ``gone`` (provably: it can be taken over) or ``unknown``."""
        if self.slurm_job:
            return squeue.job_state(self.slurm_job)
        if self.host != socket.gethostname():
            return "unknown"
        start = _pid_start(self.pid)
        return "alive" if start is not None and start == self.pid_start else "gone"


@dataclass
class RunLock:
    """The owner lock of one run dir."""

    run_dir: Path
    held: Holder | None = field(default=None, repr=False)

    @property
    def path(self) -> Path:
        return self.run_dir / LOCK_NAME

    def read(self) -> Holder | None:
        """The current holder, ``None`` when the run dir is free."""
        try:
            data = json.loads(self.path.read_text())
            return Holder(**data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError):
            return None  # a torn or foreign file: nobody we could ever prove alive

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / GUARD_NAME, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def acquire(self, holder: Holder) -> Holder:
        """Take the run dir for ``holder`` (or keep it: same token). Raises ``UserError`` naming
        the holder when someone else holds it and is not provably gone."""
        with self._guard():
            current = self.read()
            if current is not None and current.token != holder.token:
                if found := self.blocker(holder.token):
                    raise UserError(self._refusal(*found))
                log.warning(
                    "olmotrain: %s was held by %s, which is gone; taking it over",
                    self.run_dir, current.describe(),
                )  # fmt: skip
            write_atomically(self.path, json.dumps(asdict(holder), indent=1) + "\n")
        self.held = holder
        return holder

    def blocker(self, token: str | None = None) -> tuple[Holder, str] | None:
        """``(holder, state)`` of a holder other than ``token`` that is not provably gone."""
        current = self.read()
        if current is None or current.token == token:
            return None
        state = current.state()
        return None if state == "gone" else (current, state)

    def refuse_if_held(self) -> None:
        """Raise the one-line refusal when someone holds the run dir (nothing is written)."""
        if found := self.blocker():
            raise UserError(self._refusal(*found))

    def _refusal(self, holder: Holder, state: str) -> str:
        line = f"{self.run_dir} is in use by {holder.describe()}"
        if state == "unknown":
            return (
                f"{line}, which cannot be checked from {socket.gethostname()}; wait for it, or "
                f"if it is gone remove {self.path}"
            )
        stop = f"scancel {holder.slurm_job}" if holder.slurm_job else f"kill {holder.pid}"
        return f"{line}; wait for it to end or stop it ({stop}), or use another run_name=..."

    def hand_to_job(self, job_id: str) -> None:
        """Name the SLURM job the run was submitted as (the launcher that took the lock exits)."""
        assert self.held is not None
        with self._guard():
            current = self.read()
            if current is not None and current.token == self.held.token:  # not yet released
                self.held = replace(self.held, slurm_job=job_id)
                write_atomically(self.path, json.dumps(asdict(self.held), indent=1) + "\n")

    def release(self) -> None:
        """Free the run dir, if this owner still holds it."""
        if self.held is None:
            return
        with contextlib.suppress(OSError), self._guard():
            current = self.read()
            if current is not None and current.token == self.held.token:
                self.path.unlink()
        self.held = None
