"""Start-up: everything checked before a run trains or is submitted, in the order a user needs.

The config becomes a plan (the resolvers run once); then the devices, the output paths, the data
(built first when it is the embedded dataset and missing) and the run dir are checked, all
before any model is built or job submitted. ``train.py`` and the SLURM launcher share these
steps; only where the ranks run differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from olmotrain.config.checks import check_known_keys, dry_run_mode
from olmotrain.config.schema import RunConfig
from olmotrain.data.embedded import build_embedded
from olmotrain.data.mix import check_data, data_report
from olmotrain.errors import UserError, os_error_line
from olmotrain.model.parallel import attention_backend, check_devices, check_parallel, device_type
from olmotrain.plan.plan import Plan, build_plan, render_table
from olmotrain.plan.resolvers import resolve
from olmotrain.train.rundir import RunDir


@dataclass
class Startup:
    """A checked run: its resolved config, plan, run dir and data report."""

    config: RunConfig
    plan: Plan
    run: RunDir
    data: dict[str, Any]
    finished_step: int | None
    """The step a finished run stopped at (``None`` while there is training left)."""

    def finished_message(self) -> str:
        """What to say instead of training a finished run again."""
        step = self.finished_step
        return (
            f"olmotrain: {self.plan.run_name} already finished at step {step}/{self.plan.max_steps}; "
            f"checkpoint {self.run.checkpoints / f'step{step}'} (use another run_name to train again)"
        )


def plan_run(cfg: DictConfig) -> tuple[RunConfig, Plan, str | None]:
    """The resolved config, its plan, and the dry-run mode (``None``, ``table`` or ``json``)."""
    check_known_keys(cfg)
    mode = dry_run_mode(cfg.dry_run)
    config = resolve(cfg)
    return config, build_plan(config), mode


def print_plan(plan: Plan, mode: str) -> None:
    """The dry run's output on stdout: the plan table or one JSON object."""
    print(plan.to_json() if mode == "json" else render_table(plan))


def check_writable(path: Path, setting: str) -> None:
    """``path`` is (or can be made) a directory this process can write; changes nothing.

    Checked at the deepest part of ``path`` that exists: a directory, writable (the mount's
    read-only flag and the permission bits), with room on its filesystem. Where something must
    be created below it, a directory is made and removed there too: permission bits say nothing
    to root, nor about /proc or /sys. Raises ``UserError`` naming ``setting`` (``output_root=runs``).
    """
    import errno
    import os
    import tempfile

    target = path.absolute()
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent

    def problem(code: int) -> OSError:
        return OSError(code, os.strerror(code), str(existing))

    try:
        if not existing.is_dir():
            raise problem(errno.ENOTDIR)
        stats = os.statvfs(existing)
        if stats.f_flag & os.ST_RDONLY:
            raise problem(errno.EROFS)
        if not os.access(existing, os.W_OK | os.X_OK):
            raise problem(errno.EACCES)
        if stats.f_bavail * stats.f_frsize < 1 << 20:  # under 1 MiB free: no checkpoint fits
            raise problem(errno.ENOSPC)
        if existing != target:  # it will be created: try (the probe leaves nothing)
            os.rmdir(tempfile.mkdtemp(prefix=".olmotrain-probe-", dir=existing))
    except OSError as exc:
        if exc.filename is not None and Path(exc.filename).parent == existing:
            exc.filename = str(path)  # name the path the user gave, not the probe
        raise UserError(os_error_line(exc, setting)) from None


def ensure_data(config: RunConfig, duration_tokens: int) -> dict[str, Any]:
    """The run's data, checked; the embedded dataset is built first when files are missing."""
    data = config.data
    if data.builder == "embedded":
        report = data_report(data, config.tokenizer.vocab_size, duration_tokens)
        if any(r["problem"] for r in report["sources"] + report["eval"]):
            check_writable(Path(str(data.root)), f"data_root={config.data_root}")
            build_embedded(Path(str(data.root)), config.tokenizer.name)
    return check_data(config, duration_tokens)


def check_run(config: RunConfig, plan: Plan, *, local: bool) -> Startup:
    """Check devices (``local``: this machine's), paths, data and run dir; writes nothing but
    caches (and the embedded dataset, when it has to be built).

    A cluster job's devices are checked against the cluster by :mod:`olmotrain.launch.slurm`.
    """
    cluster = config.cluster
    if local:
        device, devices = (
            device_type(cluster.device),
            check_devices(cluster.device, cluster.devices),
        )
        attention_backend(config.model.attn_backend, device)
        check_parallel(config.parallel, devices, device)
    else:
        check_parallel(config.parallel, cluster.devices, cluster.device)
    run = RunDir(Path(plan.run_dir))
    check_writable(run.path, f"output_root={config.output_root}")
    for part in (run.checkpoints, run.path / "work"):
        if part.exists():  # a file where the run keeps a directory, or one it cannot write
            check_writable(part, f"run dir {run.path}")
    data = ensure_data(config, plan.duration_tokens)
    replaced = run.check(config, fresh=config.fresh)
    step = None if replaced else run.latest_step()
    finished = step if step is not None and step >= plan.max_steps else None
    return Startup(config, plan, run, data, finished)
