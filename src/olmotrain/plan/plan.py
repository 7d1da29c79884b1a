"""The run plan: everything a run will do, from the config alone, before any expensive work.

``build_plan`` reads a resolved run config (``derived.*`` filled by the Chinchilla resolvers,
:func:`olmotrain.plan.resolvers.resolve`), counts FLOPs on a meta-device model (no weights
allocated), and looks at the data files without reading them. Data problems are reported in the plan, never raised, so a run on remote or
not-yet-built data can be planned offline. ``dry_run=true`` prints :func:`render_table`,
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
from olmotrain.model.parallel import attention_backend, cuda_available, parallel_name


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
    }
    flops_per_token = _flops_per_token(model_cfg, t.sequence_length)
    backend = _planned_backend(c, warnings)
    data = data_report(c.data, c.tokenizer.vocab_size, d.duration_tokens)
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
        layers=layer_shapes(model_cfg),
        lr=d.lr,
        betas=list(d.betas),
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
        origins=origins,
        warnings=warnings,
    )


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
    device = "cuda" if c.cluster.device in ("auto", "cuda") and cuda_available() else "cpu"
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
            f"SkipStepAdamW lr {p.lr:.4g}, betas ({p.betas[0]}, {p.betas[1]}), "
            f"weight decay {p.weight_decay} (none on embeddings)",
        ),
        ("duration", _duration_line(p)),
        (
            "warmup",
            f"{p.warmup_tokens:,} tokens ({p.warmup_tokens / p.batch_size_tokens:.1f} steps)",
        ),
        ("schedule", _schedule_line(p)),
        ("compute", f"{p.flops_per_token:,} FLOPs/token, {p.total_flops:.3g} FLOPs in all"),
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


def _duration_line(p: Plan) -> str:
    head = f"{p.duration_tokens:,} tokens ({_tokens(p.duration_tokens)}) = {p.max_steps:,} steps"
    chinchilla_tokens = p.tokens_per_param * p.num_non_embedding_params
    if p.origins["duration_tokens"] == "train.max_steps":
        multiple = p.duration_tokens / chinchilla_tokens
        return f"{head} (set by train.max_steps: {multiple:.3g} x Chinchilla)"
    return f"{head} = {p.chinchilla_multiple:g} x Chinchilla ({p.tokens_per_param:g} tokens/param)"


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
