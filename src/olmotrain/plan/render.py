"""The plan as a table a person reads in the terminal (``dry_run=true``; also printed to stderr
when a run starts)."""

from __future__ import annotations

from olmotrain import chinchilla
from olmotrain.data.mix import SourcePlan
from olmotrain.plan.plan import Plan


def _tokens(x: float) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.0f}"


def render_table(plan: Plan) -> str:
    """The plan as a table a person reads in the terminal."""
    p = plan
    rows = _rows(p)
    width = max(len(k) for k, _ in rows)
    lines = [f"olmotrain plan: {p.run_name}", ""]
    lines += [f"  {k:<{width}}  {v}" for k, v in rows]
    if len(set(p.layers)) > 1:
        lines += ["", "  layers (heads / kv heads / head dim / FFN hidden):"]
        lines += [
            f"    {i:>3}  {s.n_heads:>3} / {s.n_kv_heads:>3} / {s.head_dim} / {s.ffn_hidden:,}"
            for i, s in enumerate(p.layers)
        ]
    lines += ["", "  checkpoints (permanent; an ephemeral one is also kept for resuming):"]
    lines += [
        f"    step {ck.step:>8,}  {_tokens(ck.tokens):>7} tokens  {ck.label}"
        for ck in p.checkpoints
    ]
    lines += ["", f"  data: {p.data.name} ({p.data.mix} mix)"]
    if p.data.proxy_for_tokens:
        share = min(1.0, p.duration_tokens / p.data.proxy_for_tokens)
        lines.append(
            f"    repetition-matched proxy of a {_tokens(p.data.proxy_for_tokens)}-token run: each "
            f"source used up to {share:.3g} of its tokens, so it repeats as often as there"
        )
    lines.append(
        f"    {'source':<16} {'ratio':>6} {'available':>14} {'requested':>14} {'repetition':>10}  fits"
    )
    for src in p.data.sources:
        lines.append(f"    {src.name:<16} {_source_line(src)}")
    for src in p.data.eval:
        where = (
            src.problem
            or ("remote, not looked at" if src.unverified else None)
            or f"{src.files} {'remote ' if src.remote else ''}file(s), {src.tokens or 0:,} tokens"
        )
        lines.append(f"    held-out {src.name:<16} {where}")
    for problem in p.data.problems:
        lines.append(f"    ! {problem}")
    for src in [*p.data.sources, *p.data.eval]:
        if src.unverified:
            lines.append(f"    note: {src.name}: sizes unknown ({src.unverified})")
    if p.data.note:
        lines.append(f"    note: {p.data.note}")
    for warning in p.warnings:
        lines.append(f"  warning: {warning}")
    return "\n".join(lines)


def _rows(p: Plan) -> list[tuple[str, str]]:
    """The table's ``(name, value)`` rows, model to run dir."""
    return [
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


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def _memory_line(p: Plan) -> str:
    m, fit = p.memory, p.memory_fit
    parts = ", ".join(
        f"{k} {_gib(getattr(m, k))}"
        for k in ("params", "grads", "optimizer", "activations", "buffers", "runtime")
        if getattr(m, k)
    )
    verdict = (
        f"fits {_gib(fit.capacity)}"
        if fit.fits
        else f"DOES NOT FIT {_gib(fit.capacity)}: try {' or '.join(fit.would_fit_with) or 'a bigger device'}"
    )
    return f"{_gib(m.total)} ({parts}); {verdict}"


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _estimate_line(p: Plan) -> str:
    e = p.estimate
    when = _duration(e.seconds)
    if e.throughput_source == "FLOP model":
        rate = f"FLOP model: {e.peak_flops / 1e12:.4g} TFLOP/s peak x MFU {e.mfu:g}"
    else:
        rate = e.throughput_source
    if e.startup_s or e.eval_s or e.checkpoint_s:
        when += (
            f" (start-up {_duration(e.startup_s)}, training {_duration(e.train_s)}, "
            f"evaluation {_duration(e.eval_s)}, checkpoints {_duration(e.checkpoint_s)})"
        )
    line = (
        f"{when} on {e.devices} x {e.device_type} ({rate}) = {e.gpu_hours:.3g} "
        f"device-hours; checkpoints {_gib(e.checkpoint_bytes)} each, "
        f"{_gib(e.disk_bytes)} for the {e.checkpoints_kept} kept"
    )
    return line + (f" ({e.assumed})" if e.assumed else "")


def _evaluation_line(p: Plan) -> str:
    ev = p.evaluation
    what = [f"held-out {', '.join(ev.held_out)} (CE, PPL, BPB)"] if ev.held_out else []
    if ev.downstream:
        limit = f", {ev.limit} items each" if ev.limit else ""
        what.append(f"{len(ev.downstream)} downstream task(s){limit}")
    if not what:
        return "none (no held-out data, no eval.downstream)"
    steps = ", ".join(f"{s:,}" for s in ev.steps[:8]) + (" ..." if len(ev.steps) > 8 else "")
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
    what = "olmo-core checkpoint" if p.init_from.kind == "olmo-core" else "Hugging Face model"
    return f"from {what} {p.init_from.path} (train.init_from; fresh optimizer)"


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


def _source_line(src: SourcePlan) -> str:
    ratio = "-" if src.ratio is None else f"{src.ratio:.3f}"
    if src.remote and src.tokens is None:
        available = "remote ?" if src.unverified else f"{src.files} remote"
    elif src.tokens is None:
        available = "missing"
    else:
        available = f"{src.tokens:,}"
    requested = "-" if src.requested_tokens is None else f"{src.requested_tokens:,}"
    repetition = "-" if src.repetition is None else f"{src.repetition:.2f}x"
    fits = {None: "not checked" if src.remote else "-", True: "yes", False: "NO"}[src.fits]
    return f"{ratio:>6} {available:>14} {requested:>14} {repetition:>10}  {fits}"
