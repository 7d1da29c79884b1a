"""Training: the resolved run config -> olmo-core model, train module, data loader, trainer.

Everything here is olmo-core's: ``TransformerConfig``, ``TransformerTrainModuleConfig`` with
``SkipStepAdamWConfig`` and an olmo-core scheduler in token units, ``NumpyFSLDatasetConfig`` +
``NumpyDataLoaderConfig``, ``TrainerConfig`` with its checkpointer, evaluator and metric-saver
callbacks. olmotrain only chooses the values (from the plan) and adds ``metrics.jsonl``, tokens
per source, the live progress display and W&B that works without a key. The same builders give
the trainer that evaluates saved checkpoints (:mod:`olmotrain.evaluate.checkpoint`).

Rank and world size are olmo-core's (``olmo_core.distributed.utils``), read once its process
group exists; the launchers (:mod:`olmotrain.launch`) set the environment it is built from.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from olmotrain.config.compose import to_dict
from olmotrain.config.schema import RunConfig
from olmotrain.console import logs_to_stderr
from olmotrain.data.mix import dataset_config, resolved, source_of_path
from olmotrain.data.remote.localize import localized
from olmotrain.data.tokenizer import olmo_tokenizer_config
from olmotrain.errors import UserError
from olmotrain.eval.evaluators import evaluator_callbacks
from olmotrain.metrics import (
    CE_LOSS,
    SOURCE_TOKENS_PREFIX,
    TRAIN_LOSS,
    by_source,
    last_value,
    read_metrics_log,
)
from olmotrain.model.build import lws_settings, transformer_config
from olmotrain.model.checkpoint import checkpoint_steps, load_init_weights
from olmotrain.model.lws import output_scales, scale_output_projections
from olmotrain.model.parallel import (
    ac_config,
    attention_backend,
    device_type,
    dp_config,
    float8_config,
    set_cpu_threads,
)
from olmotrain.plan import Plan
from olmotrain.plan.schedule import scheduler
from olmotrain.train.rundir import RunDir

log = logging.getLogger("olmotrain")


@dataclass
class TrainResult:
    """What a finished run reports, read back from its run dir."""

    final_step: int
    train_loss: float | None
    eval_losses: dict[str, float]
    checkpoint: str | None
    source_tokens: dict[str, int]
    """Tokens trained on per data source, over the whole run."""
    samples: list[dict[str, str]] = field(default_factory=list)
    """The last text samples (``prompt``, ``completion``) and the step they were taken at."""
    samples_step: int | None = None

    @classmethod
    def from_run(cls, run: RunDir) -> TrainResult:
        """The last train loss, the last held-out losses and the latest checkpoint of ``run``."""
        records = read_metrics_log(run.metrics_path)
        held_out = next((by_source(r) for r in reversed(records) if by_source(r)), {})
        evals = {source: m[CE_LOSS] for source, m in held_out.items() if CE_LOSS in m}
        step = run.latest_step() or 0
        seen: dict[str, int] = {}
        for r in records:
            for k, v in r.items():
                if k.startswith(SOURCE_TOKENS_PREFIX):
                    source = k[len(SOURCE_TOKENS_PREFIX) :]
                    seen[source] = seen.get(source, 0) + v
        loss = last_value(records, TRAIN_LOSS)
        sampled = next((r for r in reversed(records) if r.get("samples")), {})
        return cls(
            step,
            loss,
            evals,
            str(run.checkpoints / f"step{step}"),
            seen,
            samples=sampled.get("samples", []),
            samples_step=sampled.get("step"),
        )


@contextlib.contextmanager
def environment(c: RunConfig) -> Iterator[str]:
    """olmo-core's distributed environment for one rank of ``WORLD_SIZE``; yields the device."""
    from olmo_core.train import prepare_training_environment, teardown_training_environment

    device = device_type(c.cluster.device)
    # olmo-core would default OMP_NUM_THREADS to 8, oversubscribing small CPU machines.
    threads = set_cpu_threads()
    # A CUDA-capable backend string makes olmo-core pick a GPU, so CPU runs get plain gloo.
    backend = "cpu:gloo,cuda:nccl" if device == "cuda" else "gloo"
    with contextlib.redirect_stdout(sys.stderr):  # olmo-core logs to stdout; ours is for results
        prepare_training_environment(seed=c.seed, backend=backend)
    logs_to_stderr()
    log.info("%d CPU thread(s) per rank (torch.get_num_threads)", threads)
    try:
        yield device
    finally:
        teardown_training_environment()


def train_module_config(c: RunConfig, plan: Plan, device: str) -> tuple[Any, Any]:
    """olmo-core's ``TransformerConfig`` and ``TransformerTrainModuleConfig`` (SkipStepAdamW,
    scheduler, parallelism) for the plan."""
    from olmo_core.config import DType
    from olmo_core.distributed.utils import get_world_size
    from olmo_core.optim import OptimGroupOverride, SkipStepAdamWConfig
    from olmo_core.train.train_module import TransformerTrainModuleConfig

    world_size = get_world_size()
    backend_name = attention_backend(c.model.attn_backend, device)
    model_config = transformer_config(c.model, c.tokenizer.vocab_size, attn_backend=backend_name)
    model_config.init_seed = c.seed
    seq, par = plan.sequence_length, c.parallel
    data_parallel = dp_config(par, world_size, device)
    module_config = TransformerTrainModuleConfig(
        rank_microbatch_size=plan.micro_batch_instances * seq,
        max_sequence_length=seq,
        optim=SkipStepAdamWConfig(
            lr=plan.lr,
            betas=tuple(plan.betas),
            eps=plan.eps,
            weight_decay=plan.weight_decay,
            group_overrides=[
                OptimGroupOverride(params=["embeddings.weight"], opts=dict(weight_decay=0.0))
            ],
        ),
        scheduler=scheduler(c, plan),
        max_grad_norm=c.train.max_grad_norm,
        dp_config=data_parallel,
        ac_config=ac_config(par),
        compile_model=par.compile,
        float8_config=float8_config(par),
        # Sharded runs keep bf16 parameters (dp_config); a lone GPU gets bf16 by autocast.
        autocast_precision=DType.bfloat16 if device == "cuda" and data_parallel is None else None,
    )
    return model_config, module_config


def build_train_module(c: RunConfig, plan: Plan, device: str, configs: tuple[Any, Any]) -> Any:
    """Build the train module from :func:`train_module_config`'s pair (with LWS output scaling)."""
    import torch

    model_config, module_config = configs
    model = model_config.build(init_device="meta")
    train_module = module_config.build(model, device=torch.device(device))
    lws = lws_settings(c.model)
    if lws is not None and lws.get("output_scalars"):
        scale_output_projections(model, output_scales(model_config.n_layers, lws))
    return train_module


def checkpoint_config(c: RunConfig, configs: tuple[Any, Any], dataset: Any) -> dict[str, Any]:
    """What each checkpoint's ``config.json`` holds: olmo-core's own keys, as its trainers write
    them (``model``, ``dataset`` with its ``tokenizer``, ``train_module`` with ``optim``), so that
    olmo-core's ``from_checkpoint``, ``load_config`` and HF converters read our checkpoints, and
    olmotrain's run config beside them under ``olmotrain``."""
    model_config, module_config = configs
    return {
        "run_name": c.run_name,
        "model": model_config.as_config_dict(),
        "dataset": dataset.as_config_dict(),
        "train_module": module_config.as_config_dict(),
        "init_seed": c.seed,
        "olmotrain": to_dict(c),
    }


def build_data_loader(
    c: RunConfig, plan: Plan, train_module: Any, dataset: Any, work_dir: str
) -> Any:
    """olmo-core's data loader over ``dataset`` for the plan's global batch."""
    from olmo_core.data import NumpyDataLoaderConfig

    return NumpyDataLoaderConfig(
        global_batch_size=plan.batch_size_tokens,
        seed=c.seed,
        num_workers=c.data.num_workers,
        work_dir=work_dir,
    ).build(dataset, dp_process_group=train_module.dp_process_group)


def trainer_config(
    c: RunConfig, plan: Plan, run: RunDir, callbacks: dict[str, Any] | None = None
) -> Any:
    """olmo-core's ``TrainerConfig`` for the run, with every callback the run carries."""
    from olmo_core.train.callbacks import GPUMemoryMonitorCallback

    from olmotrain.train.callbacks import HFExportCallback

    t, work_dir = c.train, str(run.path / "work")
    permanent = plan.permanent_steps
    config = _base_trainer_config(c, plan, run, work_dir, permanent)
    for name, callback in _evaluators(c, plan, run, work_dir, permanent).items():
        config = config.with_callback(name, callback)
    if device_type(c.cluster.device) == "cuda":
        config = config.with_callback("gpu_monitor", GPUMemoryMonitorCallback())
    if c.wandb.enabled:
        config = config.with_callback("wandb", _wandb_callback(c, run))
    if t.sample_prompts:
        config = config.with_callback("samples", _samples_callback(c, plan, permanent))
    if t.export_hf:
        config = config.with_callback(
            "export_hf", HFExportCallback(steps=permanent, output=str(run.path / "hf"))
        )
    for name, callback in (callbacks or {}).items():
        config = config.with_callback(name, callback)
    return config


def _base_trainer_config(
    c: RunConfig, plan: Plan, run: RunDir, work_dir: str, permanent: list[int]
) -> Any:
    """The ``TrainerConfig`` with the callbacks every run has: checkpoints, progress, metrics."""
    from olmo_core.train import Duration, TrainerConfig
    from olmo_core.train.callbacks import CheckpointerCallback, ConfigSaverCallback

    from olmotrain.train.callbacks import MetricsLogCallback, SourceTokensCallback
    from olmotrain.train.progress import ProgressCallback

    t = c.train
    return (
        TrainerConfig(
            save_folder=str(run.checkpoints),
            work_dir=work_dir,
            max_duration=Duration.steps(plan.max_steps),
            metrics_collect_interval=t.log_interval,
            cancel_check_interval=max(1, t.log_interval),
            # olmo-core's default on a gloo (CPU) backend runs metric reductions on a second
            # process group from a background thread; on CPU ranks sharing two cores that ran
            # into hangs and peer crashes at the group's creation. In-line costs ~nothing there.
            async_bookkeeping=False if device_type(c.cluster.device) == "cpu" else None,
        )
        .with_callback(
            "checkpointer",
            CheckpointerCallback(
                save_interval=None,
                fixed_steps=permanent,
                max_checkpoints=None,
                ephemeral_save_interval=t.ephemeral_checkpoint_interval,
                save_async=False,
                enabled=t.save_checkpoints,
            ),
        )
        .with_callback(
            "console_logger",
            ProgressCallback(total_steps=plan.max_steps, log_interval=t.log_interval),
        )
        .with_callback("metrics_log", MetricsLogCallback(path=str(run.metrics_path)))
        .with_callback("source_tokens", SourceTokensCallback(source_of_path=source_of_path(c.data)))
        .with_callback("config_saver", ConfigSaverCallback())
        .with_callback("speed_monitor", speed_monitor(c))
    )


def log_attention_kernel(c: RunConfig, model_config: Any, device: str) -> None:
    """On a GPU with PyTorch SDPA, the kernel torch dispatches to for the model's head size."""
    if device != "cuda" or attention_backend(c.model.attn_backend, device) != "torch":
        return
    from olmotrain.model.attention_probe import sdpa_kernel

    attn = model_config.block.sequence_mixer
    head_dim = attn.head_dim or model_config.d_model // attn.n_heads
    log.info("attention: PyTorch SDPA, %s kernel", sdpa_kernel(device, head_dim))


def speed_monitor(c: RunConfig) -> Any:
    """olmo-core's speed monitor with the device's real peak (its own table reads an H200, and
    every device it does not know, as an A100: MFU 3.2x too high there)."""
    import torch
    from olmo_core.train.callbacks import SpeedMonitorCallback

    from olmotrain.plan.cost import device_peak_flops

    if device_type(c.cluster.device) != "cuda" or not torch.cuda.is_available():
        return SpeedMonitorCallback()  # no peak on CPU: no MFU, as olmo-core does
    peak, source = device_peak_flops(torch.cuda.get_device_name())
    log.info("MFU against %s", source)
    # olmo-core measures MFU only in half precision; without a peak it takes an A100's.
    return SpeedMonitorCallback(device_peak_flops_per_second=int(peak) if peak else None)


def _evaluators(
    c: RunConfig, plan: Plan, run: RunDir, work_dir: str, permanent: list[int]
) -> dict[str, Any]:
    """The run's evaluator callbacks, by name."""
    from olmo_core.distributed.utils import get_world_size

    tokenizer = olmo_tokenizer_config(c.tokenizer)
    batch = plan.micro_batch_instances * get_world_size()
    evaluators = evaluator_callbacks(c, permanent, plan.max_steps, tokenizer, work_dir, batch)
    if plan.init_from is not None and run.latest_step() is None and "lm_evaluator" in evaluators:
        # What the run starts from, measured before its first step (step 0 in metrics.jsonl).
        evaluators["lm_evaluator"].eval_on_startup = True
    return evaluators


def _wandb_callback(c: RunConfig, run: RunDir) -> Any:
    from olmo_core.distributed.utils import get_rank

    from olmotrain.train.callbacks import WandBCallback

    w = c.wandb
    return WandBCallback(
        run_id=run.wandb_id() if get_rank() == 0 else None,  # one W&B run per run dir
        name=w.name or c.run_name,
        project=w.project,
        entity=w.entity,
        group=w.group,
        tags=list(w.tags) or None,
    )


def _samples_callback(c: RunConfig, plan: Plan, permanent: list[int]) -> Any:
    from olmotrain.train.callbacks import SamplesCallback

    t = c.train
    every = t.sample_interval
    steps = range(every, plan.max_steps + 1, every) if every else permanent
    return SamplesCallback(
        prompts=list(t.sample_prompts),
        steps=sorted(set(steps) | {plan.max_steps}),
        max_new_tokens=t.sample_max_new_tokens,
        tokenizer_path=str(c.tokenizer.path),
        vocab_size=c.tokenizer.vocab_size,
        eos_id=c.tokenizer.eos_token_id,
    )


def train(c: RunConfig, plan: Plan, run: RunDir, callbacks: dict[str, Any] | None = None) -> None:
    """Build the olmo-core pieces for the run and fit (resuming from ``run``'s latest checkpoint).

    Runs as one rank of ``WORLD_SIZE`` (1 without a launcher). ``callbacks`` are added to the
    trainer (the cluster launcher adds its preemption handling).
    """
    from olmo_core.distributed.utils import barrier, get_rank
    from torch.distributed.checkpoint.api import CheckpointException

    c = localized(c)  # remote files: their cached copies (filled at start-up, no network)
    with environment(c) as device:
        configs = train_module_config(c, plan, device)
        log_attention_kernel(c, configs[0], device)
        train_module = build_train_module(c, plan, device, configs)
        tokenizer = olmo_tokenizer_config(c.tokenizer)
        work_dir = str(run.path / "work")
        listed = replace(c, data=resolved(c.data))  # the stores listed once, not per use
        data_config = dataset_config(
            listed, plan.duration_tokens, plan.batch_size_tokens, tokenizer, work_dir
        )
        data_loader = build_data_loader(c, plan, train_module, data_config.build(), work_dir)
        trainer = trainer_config(listed, plan, run, callbacks).build(train_module, data_loader)
        saver = trainer.callbacks["config_saver"]
        saver.config = checkpoint_config(c, configs, data_config)  # type: ignore[attr-defined]
        if get_rank() == 0:
            run.save_tokenizer(c.tokenizer.path)
            run.set_aside_broken_checkpoints()  # olmo-core would load the newest, broken or not
        barrier()
        if trainer.maybe_load_checkpoint():
            log.info("resumed from step %d", trainer.global_step)
        elif plan.init_from is not None:
            source = plan.init_from
            load_init_weights(source, train_module.model, work_dir)
            log.info("initialised from %s", source.describe())
        try:
            trainer.fit()
        except (Exception, CheckpointException) as exc:  # torch's is a BaseException
            if isinstance(exc, RuntimeError) and (bad := NON_FINITE.search(str(exc))):
                raise non_finite_loss(run, float(bad.group(1)), int(bad.group(2))) from None
            if full := disk_full(exc):
                latest = run.latest_step()
                kept = (
                    "no checkpoint was completed"
                    if latest is None
                    else f"checkpoint step{latest} is the latest complete one"
                )
                raise UserError(
                    f"{full} under {run.path} while training at step {trainer.global_step}: the "
                    f"run stopped; {kept} and metrics.jsonl keeps whole lines. Free space there, "
                    "then re-run the same command to resume"
                ) from None
            raise


def disk_full(exc: BaseException) -> str | None:
    """``no space left on device`` (or the quota's words) when a full disk is among ``exc``'s
    causes: olmo-core and torch wrap the ``OSError`` in their own errors, often without a path."""
    import errno

    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return os.strerror(e.errno).lower()
        if "No space left on device" in str(e):
            return "no space left on device"
        todo += [e.__cause__, e.__context__]
    return None


NON_FINITE = re.compile(r"^(nan|inf|-inf) loss encountered at step (\d+)")
"""olmo-core's trainer raises this when a logged training loss is not finite."""


def non_finite_loss(run: RunDir, value: float, step: int) -> UserError:
    """The one line for a NaN/inf loss, after setting aside any checkpoint saved at or after
    ``step`` (its weights may already be non-finite), so that a re-run resumes from before it.

    The run stops rather than skipping the step: a NaN loss has NaN gradients, and olmo-core's
    SkipStepAdamW, which skips finite loss spikes by multiplying the update by 0, still folds
    them into Adam's moments (NaN x 0 is NaN), so every later step would be NaN too.
    """
    from olmo_core.distributed.utils import get_rank

    if get_rank() == 0:
        for bad in [s for s in checkpoint_steps(run.checkpoints) if s >= step]:
            run.set_aside(bad, "non-finite")
    before = run.latest_step()
    where = f"checkpoint step{before} (before it) is kept" if before else "no checkpoint before it"
    return UserError(
        f"training loss is {value} at step {step}: the run stopped; {where}. Lower the learning "
        "rate (train.lr or train.lr_multiplier) or lengthen the warmup (train.warmup_steps), then "
        "re-run the same command to "
        "resume from that checkpoint"
    )
