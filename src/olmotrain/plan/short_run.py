"""Runs too short for their schedule: what is wrong, and the longer run or smaller batch that fixes it.

A 7-step WSD-S run decays for less than a step, so its pre-decay and end checkpoints are the
same weights (duplicate rows in a ladder) and its warmup is a fraction of a step. Such a run
trains, but its numbers mean little; the plan says so in one warning line. The schedule math is
:func:`olmotrain.plan.schedule.schedule`'s (Chinchilla): the fixes are found by running that same
math on a longer run or a smaller batch until no problem is left.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

from olmotrain import chinchilla
from olmotrain.config.schema import RunConfig
from olmotrain.errors import UserError
from olmotrain.plan.schedule import Schedule, schedule

MIN_PHASE_STEPS = 3
"""Warmup and each decay shorter than this many optimizer steps are too short to mean anything."""

DECAYING = ("wsds", "wsd")
"""Schedules with a decay phase of ``decay_fraction`` (WSD-S: of each period)."""

MAX_MULTIPLE_FACTOR = 10_000
"""Longest run (x the current one) a fix may propose; beyond it the plan gives no number."""


def short_run_problems(c: RunConfig, s: Schedule) -> list[str]:
    """What makes the run of schedule ``s`` (:func:`schedule` of ``c``) too short, or ``[]``.

    Checked: warmup below :data:`MIN_PHASE_STEPS` steps (only when the law or
    ``schedule.warmup_fraction`` sized it: an explicit warmup stays as asked), each decay of
    WSD/WSD-S below :data:`MIN_PHASE_STEPS` steps, and permanent checkpoints that fall on the same
    step or on step 0.
    """
    batch, problems = s.batch.tokens, []
    t = c.train
    if t.warmup_steps is None and t.warmup_tokens is None:
        warmup = s.warmup_tokens / batch
        if warmup < MIN_PHASE_STEPS:
            problems.append(f"warmup {warmup:.2g} steps")
    if c.schedule.name in DECAYING:
        lengths = chinchilla.period_lengths(s.period_ends)
        if c.schedule.name == "wsd":
            lengths = [s.duration_tokens]
        decay = min(round(t.decay_fraction * length) for length in lengths) / batch
        if decay < MIN_PHASE_STEPS:
            where = " (the shortest period's)" if len(lengths) > 1 else ""
            problems.append(f"decay {decay:.2g} steps{where}")
    steps = [ck.step for ck in s.checkpoints]
    if len(set(steps)) < len(steps):
        problems.append("checkpoints on the same step (identical weights)")
    if min(steps, default=1) < 1:
        problems.append("a checkpoint at step 0")
    return problems


def short_run_warning(c: RunConfig, n: int, s: Schedule) -> str | None:
    """One line when the run is too short for its schedule, with the settings that fix it
    (each checked with the plan's own math, :func:`schedule`)."""
    problems = short_run_problems(c, s)
    if not problems:
        return None

    def fixed(candidate: RunConfig) -> bool:
        try:
            return not short_run_problems(candidate, schedule(candidate, n))
        except UserError:  # a candidate the plan refuses fixes nothing
            return False

    fixes = [fix for fix in (_longer(c, fixed), _smaller_batch(c, s, fixed)) if fix]
    advice = " or ".join(fixes) if fixes else "train longer"
    return (
        f"a run of {s.max_steps:,} steps is too short for its {c.schedule.name} schedule "
        f"({', '.join(problems)}), so its checkpoints mean little; {advice}"
    )


def _longer(c: RunConfig, fixed: Callable[[RunConfig], bool]) -> str | None:
    """``raise chinchilla_multiple to M`` (or ``train.max_steps`` when that sets the length)."""
    t = c.train
    if t.max_steps is not None:
        for steps in _nice_above(t.max_steps):
            if steps == int(steps) and fixed(_with_train(c, max_steps=int(steps))):
                return f"raise train.max_steps to {int(steps):,}"
        return None
    for multiple in _nice_above(c.chinchilla_multiple):
        if fixed(dataclasses.replace(c, chinchilla_multiple=multiple)):
            return f"raise chinchilla_multiple to {multiple:g}"
    return None


def _smaller_batch(c: RunConfig, s: Schedule, fixed: Callable[[RunConfig], bool]) -> str | None:
    """``lower train.global_batch_size to B``: more, smaller steps over the same tokens (only
    when the Chinchilla multiple sets the length; ``train.max_steps`` fixes the step count)."""
    t = c.train
    if t.max_steps is not None:
        return None
    smallest = t.sequence_length * c.cluster.devices  # one sequence per rank
    batch = s.batch.tokens // 2
    while batch >= smallest:
        candidate = _with_train(c, global_batch_size=batch)
        if fixed(candidate):
            return f"lower train.global_batch_size to {batch:,}"
        batch //= 2
    return None


def _nice_above(x: float) -> Iterator[float]:
    """Round numbers above ``x`` (1, 2, 2.5, 5 x a power of ten, and ``x`` doubled), ascending,
    up to :data:`MAX_MULTIPLE_FACTOR` x ``x``."""
    values = {x * 2**k for k in range(1, 15)}
    exponent = -6
    while (base := 10.0**exponent) <= x * MAX_MULTIPLE_FACTOR:
        values |= {float(f"{m * base:.6g}") for m in (1, 2, 2.5, 5)}
        exponent += 1
    yield from sorted(v for v in values if x < v <= x * MAX_MULTIPLE_FACTOR)


def _with_train(c: RunConfig, **changes) -> RunConfig:
    return dataclasses.replace(c, train=dataclasses.replace(c.train, **changes))
