"""Start-up: everything checked before a run trains or is submitted, in the order a user needs.

The config becomes a plan (the resolvers run once); then the devices, the data and the run dir are
checked, all before any model is built or job submitted. ``train.py`` and the SLURM launcher share
these steps; only where the ranks run differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from olmotrain.cli import check_known_keys, dry_run_mode
from olmotrain.plan import Plan, build_plan, render_table, resolved_container
from olmotrain.rundir import RunDir


@dataclass
class Startup:
    """A checked run: its resolved config, plan, run dir and data report."""

    config: dict[str, Any]
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


def plan_run(cfg: DictConfig) -> tuple[dict[str, Any], Plan, str | None]:
    """The resolved config, its plan, and the dry-run mode (``None``, ``table`` or ``json``)."""
    check_known_keys(cfg)
    mode = dry_run_mode(cfg.dry_run)
    config = resolved_container(cfg)
    return config, build_plan(config), mode


def print_plan(plan: Plan, mode: str) -> None:
    """The dry run's output on stdout: the plan table or one JSON object."""
    print(plan.to_json() if mode == "json" else render_table(plan))


def check_run(config: dict[str, Any], plan: Plan, *, local: bool) -> Startup:
    """Check devices (``local``: this machine's), data and run dir; writes nothing but caches.

    A cluster job's devices are checked against the cluster by :mod:`olmotrain.slurm`.
    """
    from olmotrain.data import ensure_data
    from olmotrain.parallel import attention_backend, check_devices, check_parallel, device_type

    if local:
        device, devices = device_type(config["cluster"]), check_devices(config["cluster"])
        attention_backend(config["model"]["attn_backend"], device)
        check_parallel(config["parallel"], devices, device)
    else:
        check_parallel(
            config["parallel"], config["cluster"]["devices"], config["cluster"]["device"]
        )
    data = ensure_data(config, plan.duration_tokens)
    run = RunDir(Path(plan.run_dir))
    replaced = run.check(config, fresh=config["fresh"])
    step = None if replaced else run.latest_step()
    finished = step if step is not None and step >= plan.max_steps else None
    return Startup(config, plan, run, data, finished)
