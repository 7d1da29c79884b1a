"""Chinchilla math: every derived training quantity, as pure functions of the model size.

``n`` is always olmo-core's ``num_non_embedding_params`` of the model exactly as configured
(the untied LM head counts), and every token count is an ``int``. The formulas follow
olmo-core's ``WSDSChinchillaRunConfigurator`` (olmo-core main) and the Chinchilla/WSD-S plan:

- batch (tokens): ``round(2048*160*(n/108e6)**(2/3))`` rounded up to a power of two, then made
  whole sequences and divisible by data-parallel size x micro-batch (rounding up);
- peak LR: ``0.0047*(n/108e6)**(-1/3) / 2 * lr_multiplier``; betas ``(0.9, 0.95 if the batch is at
  least 524,288 tokens else 0.99)``;
- duration: ``tokens_per_param*n*multiple`` rounded to whole batches;
- warmup: ``n`` tokens, capped at 5% of the duration;
- WSD-S periods end at ``c*tokens_per_param*n`` (whole batches) for c = 0.5, 1, 2, 4, ... below the
  duration, and a last period ends at the duration itself;
- checkpoints: each period's pre-decay point and its end.
"""

from __future__ import annotations

from dataclasses import dataclass

REFERENCE_PARAMS = 108_000_000
"""The model size the batch and LR laws are anchored at (arXiv 2406.19146)."""

REFERENCE_BATCH_TOKENS = 2048 * 160
"""The batch (tokens) the law gives at the reference size."""

BETA2_LARGE_BATCH_TOKENS = 524_288
"""At or above this batch (tokens) beta2 is 0.95, below it 0.99 (small batches want longer memory)."""

MAX_WARMUP_FRACTION = 0.05

DEFAULT_SEQUENCE_LENGTH = 8192
"""The plan's fixed context: every run uses it unless its data wants shorter."""


def next_power_of_two(x: int) -> int:
    """The smallest power of two >= ``x`` (``x`` itself when it already is one)."""
    if x < 1:
        return 1
    return 1 << (x - 1).bit_length()


def target_batch_tokens(n: int) -> int:
    """The Chinchilla batch-size law, rounded UP to a power of two (the plan keeps pow2 batches)."""
    return next_power_of_two(round(REFERENCE_BATCH_TOKENS * (n / REFERENCE_PARAMS) ** (2 / 3)))


@dataclass(frozen=True)
class BatchPlan:
    """A global batch made realisable on the hardware."""

    target_tokens: int
    """What was asked for: the law's power of two, or the user's ``train.global_batch_size``."""
    tokens: int
    """What is used: whole sequences, divisible by data-parallel size x micro-batch."""
    instances: int
    """Sequences per global batch."""
    micro_batch_instances: int
    """Sequences per rank per forward/backward pass."""
    grad_accum_steps: int
    """Micro-batches per rank per optimizer step."""

    @property
    def off_target(self) -> float:
        """Relative difference between the batch used and the target."""
        return abs(self.tokens - self.target_tokens) / self.target_tokens


def plan_batch(
    target_tokens: int,
    sequence_length: int,
    dp_size: int = 1,
    micro_batch_instances: int | None = None,
    max_micro_batch_tokens: int = 16_384,
) -> BatchPlan:
    """Round a target batch up to whole sequences divisible by ``dp_size x micro-batch``.

    With ``micro_batch_instances=None`` the micro-batch is the largest power of two of sequences that
    fits ``max_micro_batch_tokens`` (at least one sequence) and divides each rank's share.
    """
    if target_tokens < 1 or sequence_length < 1 or dp_size < 1:
        raise ValueError("batch, sequence length and data-parallel size must be positive")
    instances = -(-target_tokens // sequence_length)  # ceil: never shrink the batch
    if micro_batch_instances is None:
        per_rank = -(-instances // dp_size)
        cap = max(1, max_micro_batch_tokens // sequence_length)
        micro = 1
        while micro * 2 <= min(cap, per_rank) and per_rank % (micro * 2) == 0:
            micro *= 2
        instances = per_rank * dp_size
    else:
        if micro_batch_instances < 1:
            raise ValueError("micro-batch must be at least one sequence")
        micro = micro_batch_instances
        unit = dp_size * micro
        instances = -(-instances // unit) * unit
    per_rank = instances // dp_size
    return BatchPlan(
        target_tokens=target_tokens,
        tokens=instances * sequence_length,
        instances=instances,
        micro_batch_instances=micro,
        grad_accum_steps=per_rank // micro,
    )


def peak_lr(n: int, lr_multiplier: float = 1.0) -> float:
    """Peak learning rate: the Chinchilla LR law, halved for WSD-style schedules."""
    return 0.0047 * (n / REFERENCE_PARAMS) ** (-1 / 3) / 2.0 * lr_multiplier


def betas(batch_tokens: int) -> tuple[float, float]:
    """AdamW betas: beta2 0.95 for large batches, 0.99 for small ones."""
    return (0.9, 0.95 if batch_tokens >= BETA2_LARGE_BATCH_TOKENS else 0.99)


def chinchilla_tokens(n: int, multiple: float, tokens_per_param: float = 20) -> int:
    """``tokens_per_param * n * multiple`` truncated to an int, as olmo-core's ``Duration`` does."""
    return int(tokens_per_param * n * multiple)


def round_to_batches(tokens: int, batch_tokens: int) -> int:
    """Round a token count to the nearest whole number of batches, at least one batch."""
    return batch_tokens * max(1, round(tokens / batch_tokens))


def duration_tokens(
    n: int,
    multiple: float,
    batch_tokens: int,
    tokens_per_param: float = 20,
    max_steps: int | None = None,
) -> int:
    """Training length in tokens: the Chinchilla duration, or ``max_steps`` whole batches."""
    if max_steps is not None:
        return max_steps * batch_tokens
    return round_to_batches(chinchilla_tokens(n, multiple, tokens_per_param), batch_tokens)


def warmup_tokens(n: int, duration: int) -> int:
    """One token per parameter, capped at 5% of the run."""
    return min(n, round(MAX_WARMUP_FRACTION * duration))


def period_multiples(
    duration: int,
    n: int,
    batch_tokens: int,
    tokens_per_param: float = 20,
    final_multiple: float | None = None,
) -> list[float]:
    """The Chinchilla multiples at which WSD-S periods end: 0.5, 1, 2, ... below the duration.

    The last period always ends at ``duration`` itself, labelled ``final_multiple`` (default: the
    duration's own multiple). Multiples whose rounded end does not advance are skipped, so no
    period is empty.
    """
    multiples: list[float] = []
    last_end = 0
    c = 0.5
    while (end := _period_end(c, n, batch_tokens, tokens_per_param)) < duration:
        if end > last_end:
            multiples.append(c)
            last_end = end
        c *= 2
    multiples.append(
        final_multiple if final_multiple is not None else duration / (tokens_per_param * n)
    )
    return multiples


def period_ends(
    duration: int, multiples: list[float], n: int, batch_tokens: int, tokens_per_param: float = 20
) -> list[int]:
    """Token counts at which each WSD-S period ends (whole batches; the last is the duration)."""
    return [_period_end(c, n, batch_tokens, tokens_per_param) for c in multiples[:-1]] + [duration]


def _period_end(c: float, n: int, batch_tokens: int, tokens_per_param: float) -> int:
    return round_to_batches(chinchilla_tokens(n, c, tokens_per_param), batch_tokens)


def period_lengths(ends: list[int]) -> list[int]:
    """Lengths of consecutive periods from their end points."""
    return [end - start for start, end in zip([0] + ends[:-1], ends, strict=True)]


@dataclass(frozen=True)
class Checkpoint:
    """A permanent checkpoint the schedule asks for: the one shape of a checkpoint in a plan."""

    tokens: int
    step: int
    label: str


def checkpoint_points(
    ends: list[int],
    multiples: list[float],
    batch_tokens: int,
    decay_fraction: float = 0.1,
) -> list[Checkpoint]:
    """Two permanent checkpoints per period: just before its decay starts and at its end.

    The pre-decay point is ``end - round(decay_fraction * period_length)`` (as olmo-core's WSDS
    decays); its step is the last whole step before the decay starts.
    """
    points: list[Checkpoint] = []
    for i, (end, length, c) in enumerate(
        zip(ends, period_lengths(ends), multiples, strict=True), start=1
    ):
        pre = end - round(decay_fraction * length)
        label = f"{format_multiple(c)}xC"
        points.append(Checkpoint(pre, pre // batch_tokens, f"period {i} {label} pre-decay"))
        points.append(Checkpoint(end, end // batch_tokens, f"period {i} {label} end"))
    return points


def format_multiple(c: float) -> str:
    """``0.5``, ``1``, ``2.5``: a multiple without trailing zeros."""
    return f"{c:.4g}"
