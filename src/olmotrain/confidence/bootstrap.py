"""The nonparametric bootstrap (Efron 1979): how much a statistic moves when the items it was
computed from are drawn again, with replacement, and its percentile interval."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def bootstrap(
    statistic: Callable[[np.ndarray], float], n_items: int, reps: int, rng: np.random.Generator
) -> np.ndarray:
    """``statistic(indices)`` over ``reps`` resamples of ``n_items`` items with replacement
    (``indices`` picks the items of one resample). A statistic that fails on a resample
    (``ValueError``, ``FloatingPointError``, ``np.linalg.LinAlgError``) gives NaN there."""
    out = np.empty(reps)
    for r in range(reps):
        indices = rng.integers(0, n_items, size=n_items)
        try:
            out[r] = statistic(indices)
        except (ValueError, FloatingPointError, np.linalg.LinAlgError):
            out[r] = np.nan
    return out


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` interval of the finite ``samples`` (percentiles); NaNs when fewer
    than half of them are finite (the statistic failed too often to say anything)."""
    if not 0 < level < 1:
        raise ValueError(f"level {level} is not in (0, 1)")
    finite = np.asarray(samples, dtype=float)
    finite = finite[np.isfinite(finite)]
    if len(finite) * 2 < len(samples) or not len(finite):
        return (float("nan"), float("nan"))
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return (float(lo), float(hi))
