"""The run's learning-rate schedule as olmo-core's own scheduler, and the LRs it gives.

One function builds the olmo-core scheduler for ``schedule.name`` in token units, fitted to the
plan (WSD-S periods, warmup, duration); the trainer trains with it and the dry run's picture is
sampled from it, so the picture is the schedule.
"""

from __future__ import annotations

from olmotrain.config.schema import RunConfig
from olmotrain.errors import UserError


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
