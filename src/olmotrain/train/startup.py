"""Start-up: everything checked before a run trains or is submitted, in the order a user needs.

The config becomes a plan (:func:`olmotrain.plan.derive_plan`, once); then the devices, the output paths, the data
(built first when it is the embedded dataset and missing) and the run dir are checked, all
before any model is built or job submitted. ``train.py`` and the SLURM launcher share these
steps; only where the ranks run differs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from olmotrain.config.checks import check_known_keys, dry_run_mode
from olmotrain.config.compose import complete, resolve
from olmotrain.config.naming import train_again_hint
from olmotrain.config.schema import RunConfig
from olmotrain.data.embedded import build_embedded
from olmotrain.data.mix import CheckedData, check_data
from olmotrain.data.tokenizer import local_tokenizer_file
from olmotrain.errors import UserError
from olmotrain.model.parallel import attention_backend, check_devices, check_parallel, device_type
from olmotrain.paths import check_writable
from olmotrain.plan import Plan, derive_plan
from olmotrain.plan.lr_plot import Drawer, plot_lr_schedule
from olmotrain.plan.render import render_table
from olmotrain.train.rundir import RunDir

log = logging.getLogger("olmotrain")


@dataclass
class Startup:
    """A checked run: its resolved config, plan, run dir and data report."""

    config: RunConfig
    plan: Plan
    run: RunDir
    data: CheckedData
    finished_step: int | None
    """The step a finished run stopped at (``None`` while there is training left)."""

    def finished_message(self) -> str:
        """What to say instead of training a finished run again."""
        step = self.finished_step
        return (
            f"olmotrain: {self.plan.run_name} already finished at step {step}/{self.plan.max_steps}; "
            f"checkpoint {self.run.checkpoints / f'step{step}'} ({train_again_hint(self.config.sweep_name)})"
        )


def plan_run(cfg: DictConfig) -> tuple[RunConfig, Plan, str | None]:
    """The resolved config, its plan, and the dry-run mode (``None``, ``table`` or ``json``)."""
    check_known_keys(cfg)
    complete(cfg)
    mode = dry_run_mode(cfg.dry_run)
    config = resolve(cfg)
    return config, derive_plan(config), mode


def start_drawer(cfg: DictConfig) -> Drawer | None:
    """For a dry run, the LR picture's helper process, started before olmo-core is imported so
    that matplotlib's import overlaps it (a bad ``dry_run`` value is reported by :func:`plan_run`)."""
    try:
        return Drawer() if dry_run_mode(cfg.dry_run) else None
    except UserError:
        return None


def print_plan(
    config: RunConfig,
    plan: Plan,
    mode: str,
    extra: dict[str, Any] | None = None,
    drawer: Drawer | None = None,
) -> None:
    """The dry run's output on stdout: the plan table or one JSON object (with ``extra`` keys),
    and the LR schedule's picture, written beside the run dirs (never into one)."""
    import json
    import sys

    png = plot_lr_schedule(config, plan, drawer)
    line = f"lr schedule plot  {png}"
    if mode == "json":
        print(json.dumps({**plan.to_dict(), "lr_schedule_plot": str(png), **(extra or {})}))
        print(line, file=sys.stderr)
    else:
        print(render_table(plan))
        print(f"\n{line}")


def ensure_data(config: RunConfig, plan: Plan) -> CheckedData:
    """The run's data, checked (remote files copied into the cache in between, if the run reads
    copies); the embedded dataset is built first when files are missing."""
    data, report = config.data, plan.data
    if data.builder == "embedded" and any(r.problem for r in [*report.sources, *report.eval]):
        check_writable(Path(str(data.root)), f"data_root={config.data_root}")
        build_embedded(Path(str(data.root)), config.tokenizer.name)
        report = None  # the files are new: the plan's report of them is not
    return check_data(config, plan.duration_tokens, report)


def check_evaluation(config: RunConfig) -> None:
    """Downstream tasks need the tokenizer as a local file (olmo_eval tokenizes their text)."""
    if config.eval.downstream:
        fix = "set tokenizer.path=/path/to/tokenizer.json or drop eval.downstream"
        local_tokenizer_file(config.tokenizer, "eval.downstream", fix)


def check_samples_and_export(config: RunConfig) -> None:
    """``train.sample_prompts`` and ``train.export_hf`` need what they use, checked before training."""
    from olmotrain.model.build import hf_unrepresentable

    t = config.train
    if t.sample_prompts:
        if any(not str(p).strip() for p in t.sample_prompts):
            raise UserError("train.sample_prompts holds an empty prompt; give some text")
        if t.sample_interval is not None and t.sample_interval < 1:
            raise UserError(f"train.sample_interval={t.sample_interval} must be at least 1 step")
        if t.sample_max_new_tokens < 1:
            raise UserError(f"train.sample_max_new_tokens={t.sample_max_new_tokens} must be >= 1")
        local_tokenizer_file(config.tokenizer, "train.sample_prompts")
    if t.export_hf:
        if why := hf_unrepresentable(config.model):
            raise UserError(
                f"train.export_hf: {why}; drop train.export_hf (the native checkpoints work with "
                "olmotrain.evaluate and olmotrain.generate)"
            )
        local_tokenizer_file(config.tokenizer, "train.export_hf")


def check_wandb(config: RunConfig) -> None:
    """W&B runs offline by itself without a key; online needs one. Checked before any work."""
    import importlib.util
    import os

    if not config.wandb.enabled:
        return
    if importlib.util.find_spec("wandb") is None:
        raise UserError("wandb.enabled=true needs the wandb package: `make setup`")
    if os.environ.get("WANDB_MODE") == "online" and not os.environ.get("WANDB_API_KEY"):
        raise UserError(
            "WANDB_MODE=online needs WANDB_API_KEY; set it, or unset WANDB_MODE to log offline "
            "(synced later with `wandb sync`)"
        )


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
    check_evaluation(config)  # the checks of files at hand before the data (maybe remote)
    check_samples_and_export(config)
    check_wandb(config)
    data = ensure_data(config, plan)
    replaced = run.check(config, fresh=config.fresh)
    step = None if replaced else run.resume_step()
    if step is not None:
        run.check_data_files(data.file_sha256)
    if plan.init_from is not None and step is None:  # a resumed run loads its own
        from olmotrain.model.build import transformer_config
        from olmotrain.model.checkpoint import check_init_shapes

        model = transformer_config(config.model, config.tokenizer.vocab_size)
        check_init_shapes(plan.init_from, model)
    finished = step if step is not None and step >= plan.max_steps else None
    if finished is None and config.train.save_checkpoints:
        # Room for the next checkpoint (a new run saves step 0 before its first step), checked
        # before any work: a nearly full disk is one line, as one that fills during training is.
        room = plan.estimate.checkpoint_bytes
        where = f"output_root={config.output_root}"
        check_writable(run.path, where, room, "one checkpoint of this run")
    for note in data.file_notes:  # said once everything passed: errors stay one line
        log.warning("olmotrain: %s", note)
    return Startup(config, plan, run, data, finished)
