"""The run's schedule: how long, how fast, where the periods end, and olmo-core's scheduler.

:func:`schedule` applies the user's settings (``train.*``, ``schedule.warmup_fraction``) over the
Chinchilla math of :mod:`olmotrain.chinchilla`, each checked (one line per bad value): the batch,
peak LR, betas, duration, warmup, WSD-S periods and permanent checkpoints. :func:`scheduler`
builds the olmo-core LR scheduler for ``schedule.name`` in token units from it; the trainer
trains with that scheduler and the dry run's picture is sampled from it, so the picture is the
schedule.
"""

from __future__ import annotations

from dataclasses import dataclass

from olmotrain import chinchilla
from olmotrain.chinchilla import BatchPlan, Checkpoint
from olmotrain.config.schema import RunConfig, TrainSchema
from olmotrain.errors import UserError
from olmotrain.model.parallel import max_micro_batch_tokens as device_micro_batch_tokens


@dataclass(frozen=True)
class Schedule:
    """The Chinchilla part of a plan: how long, how fast, and where the periods end."""

    batch: BatchPlan
    lr: float
    betas: list[float]
    duration_tokens: int
    warmup_tokens: int
    period_multiples: list[float]
    period_ends: list[int]
    checkpoints: list[Checkpoint]

    @property
    def max_steps(self) -> int:
        return self.duration_tokens // self.batch.tokens


def schedule(c: RunConfig, n: int) -> Schedule:
    """The Chinchilla math for ``c`` with ``n`` non-embedding parameters, settings applied."""
    t = c.train
    batch = plan_batch(c, n)
    duration = duration_tokens(c, n, batch.tokens)
    final = None if t.max_steps is not None else float(c.chinchilla_multiple)
    multiples = chinchilla.period_multiples(duration, n, batch.tokens, t.tokens_per_param, final)
    ends = chinchilla.period_ends(duration, multiples, n, batch.tokens, t.tokens_per_param)
    if not 0 < t.decay_fraction < 0.5:
        raise UserError(f"train.decay_fraction={t.decay_fraction} must be in (0, 0.5)")
    return Schedule(
        batch=batch,
        lr=peak_lr(t, n),
        betas=adam_betas(t, batch.tokens),
        duration_tokens=duration,
        warmup_tokens=warmup_tokens(c, n, duration, batch.tokens),
        period_multiples=multiples,
        period_ends=ends,
        checkpoints=chinchilla.checkpoint_points(ends, multiples, batch.tokens, t.decay_fraction),
    )


def plan_batch(c: RunConfig, n: int) -> BatchPlan:
    """The global batch: ``train.global_batch_size`` or the law's, in whole sequences that split
    evenly over the data-parallel ranks and micro-batches the device holds."""
    t, devices = c.train, c.cluster.devices
    if t.global_batch_size is not None and t.global_batch_size < 1:
        raise UserError(
            f"train.global_batch_size={t.global_batch_size} must be a positive number of tokens "
            "(or null for the Chinchilla batch)"
        )
    if t.sequence_length < 1:
        raise UserError(f"train.sequence_length={t.sequence_length} must be positive")
    if t.micro_batch_size is not None and t.micro_batch_size < 1:
        raise UserError(
            f"train.micro_batch_size={t.micro_batch_size} must be at least 1 sequence "
            "(or null for automatic)"
        )
    if devices < 1:
        raise UserError(f"cluster.devices={devices} must be at least 1")
    target = t.global_batch_size or chinchilla.target_batch_tokens(n)
    micro_tokens = device_micro_batch_tokens(n, c.cluster.device)
    return chinchilla.plan_batch(
        target, t.sequence_length, devices, t.micro_batch_size, micro_tokens
    )


def peak_lr(t: TrainSchema, n: int) -> float:
    """``train.lr`` when set, else the law's; times ``train.lr_multiplier`` either way."""
    if t.lr_multiplier <= 0:
        raise UserError(f"train.lr_multiplier={t.lr_multiplier} must be > 0")
    if t.lr is not None:
        if not t.lr > 0:
            raise UserError(f"train.lr={t.lr} must be > 0 (or null for the Chinchilla law)")
        return float(t.lr) * t.lr_multiplier
    return float(chinchilla.peak_lr(n, t.lr_multiplier))


def adam_betas(t: TrainSchema, batch_tokens: int) -> list[float]:
    """``train.betas`` when set, else the law's for this batch."""
    if t.betas is None:
        return list(chinchilla.betas(batch_tokens))
    values = list(t.betas)
    if len(values) != 2 or not all(0 <= float(b) < 1 for b in values):
        raise UserError(
            f"train.betas={values} must be two numbers in [0, 1), e.g. train.betas=[0.9,0.95]"
        )
    return [float(b) for b in values]


def duration_tokens(c: RunConfig, n: int, batch_tokens: int) -> int:
    """Training length in whole batches: ``train.max_steps``, else the Chinchilla multiple."""
    t, multiple = c.train, c.chinchilla_multiple
    if not multiple > 0:
        raise UserError(
            f"chinchilla_multiple={multiple} must be > 0 (e.g. chinchilla_multiple=1 for "
            "Chinchilla-optimal)"
        )
    if not t.tokens_per_param > 0:
        raise UserError(
            f"train.tokens_per_param={t.tokens_per_param} must be > 0 (the Chinchilla value is 20)"
        )
    if t.max_steps is not None and t.max_steps < 1:
        raise UserError(
            f"train.max_steps={t.max_steps} must be at least 1 (or null for the Chinchilla duration)"
        )
    return chinchilla.duration_tokens(n, multiple, batch_tokens, t.tokens_per_param, t.max_steps)


def warmup_tokens(c: RunConfig, n: int, duration: int, batch_tokens: int) -> int:
    """``train.warmup_steps`` (x batch) or ``train.warmup_tokens`` when set, else the schedule's
    ``warmup_fraction`` of the run (whole steps), else the law's."""
    t, fraction = c.train, c.schedule.warmup_fraction
    for key, value in (("warmup_steps", t.warmup_steps), ("warmup_tokens", t.warmup_tokens)):
        if value is not None and value < 0:
            raise UserError(f"train.{key}={value} must be >= 0 (or null for the Chinchilla law)")
    if t.warmup_steps is None and t.warmup_tokens is None:
        if fraction is None:
            return chinchilla.warmup_tokens(n, duration)
        if not 0 <= fraction < 1:
            raise UserError(f"schedule.warmup_fraction={fraction} must be in [0, 1)")
        return max(1, round(fraction * duration / batch_tokens)) * batch_tokens
    key = "warmup_steps" if t.warmup_steps is not None else "warmup_tokens"
    explicit = t.warmup_steps * batch_tokens if t.warmup_steps is not None else t.warmup_tokens
    if explicit >= duration:
        raise UserError(
            f"train.{key}: warmup of {explicit:,} tokens is not shorter than the run "
            f"({duration:,} tokens); lower it"
        )
    return int(explicit)


def scheduler(c: RunConfig, plan):
    """The olmo-core LR scheduler for ``schedule.name``, in tokens, fitted to ``plan``."""
    from olmo_core.optim import (
        WSD,
        WSDS,
        ConstantWithWarmup,
        CosWithWarmup,
        LinearWithWarmup,
        SchedulerUnits,
    )

    s, tokens = c.schedule, SchedulerUnits.tokens
    common = dict(units=tokens, warmup=plan.warmup_tokens, warmup_min_lr=s.warmup_min_lr)
    if s.name == "wsds":
        return WSDS(
            period_lengths=plan.period_lengths,
            decay_fraction=plan.decay_fraction,
            decay_min_lr=s.decay_min_lr,
            **common,
        )
    if s.name == "wsd":
        return WSD(decay_fraction=plan.decay_fraction, decay_min_lr=s.decay_min_lr, **common)
    if s.name == "cosine":
        return CosWithWarmup(alpha_f=s.alpha_f, t_max=plan.duration_tokens, **common)
    if s.name == "anneal":
        return LinearWithWarmup(alpha_f=s.alpha_f, t_max=plan.duration_tokens, **common)
    if s.name == "constant":
        return ConstantWithWarmup(**common)
    raise UserError(f"unknown schedule '{s.name}'; choose wsds, cosine, wsd, anneal or constant")


def sampled_lrs(c: RunConfig, plan, points: int = 2000) -> list[tuple[int, int, float]]:
    """``(step, tokens, lr)`` at up to ``points`` steps spread over the run, ends included,
    as the trainer sets them (olmo-core's scheduler at the tokens seen before each step)."""
    sched = scheduler(c, plan)
    stride = max(1, plan.max_steps // points)
    steps = sorted({*range(0, plan.max_steps + 1, stride), plan.max_steps})
    steps += [ck.step for ck in plan.checkpoints if ck.step not in steps]
    out = []
    for step in sorted(set(steps)):
        tokens = step * plan.batch_size_tokens
        out.append((step, tokens, float(sched.get_lr(plan.lr, tokens, plan.duration_tokens))))
    return out
