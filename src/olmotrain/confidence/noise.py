"""Noise of a score: how much it moves from one evaluation to the next, and from seed to seed.

- Checkpoint-to-checkpoint noise (Heineman et al. 2025, "Signal and Noise"): the spread of a
  run's last evaluations around their trend. The trend is removed first (a WSD-S decay lowers
  the loss steeply at the end, and that fall is not noise): a straight line through 3 or 4
  evaluations, a parabola through 5 or more (a decay bends).
- Seed-to-seed noise: the sample variance of the runs' scores over seeds.
- Both pooled over the runs that share a noise level (the mixes of one size), by their degrees
  of freedom, as a one-way analysis of variance pools its groups.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_EVALS = 3
"""Evaluations a run needs for its detrended noise: a line leaves one degree of freedom."""


@dataclass(frozen=True)
class Variance:
    """An estimated variance and the degrees of freedom behind it (0: not measured)."""

    value: float
    dof: int

    @property
    def measured(self) -> bool:
        return self.dof > 0

    @property
    def sd(self) -> float | None:
        return float(np.sqrt(self.value)) if self.measured else None


NOT_MEASURED = Variance(0.0, 0)


def detrended(steps, values) -> tuple[float, int]:
    """Sum of squared residuals of ``values`` around their trend over ``steps`` and its degrees
    of freedom (see the module docstring); ``(0, 0)`` below :data:`MIN_EVALS` evaluations."""
    x, y = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(y) < MIN_EVALS:
        return 0.0, 0
    degree = 2 if len(y) >= 5 else 1
    x = (x - x.mean()) / (np.ptp(x) or 1.0)  # conditioning: steps are large numbers
    residuals = y - np.polyval(np.polyfit(x, y, degree), x)
    return float(residuals @ residuals), len(y) - degree - 1


def pooled(parts: list[tuple[float, int]]) -> Variance:
    """One variance from ``(sum of squares, dof)`` parts: total squares over total dof."""
    ss = sum(p[0] for p in parts)
    dof = sum(p[1] for p in parts)
    return Variance(ss / dof, dof) if dof > 0 else NOT_MEASURED


def seed_squares(values) -> tuple[float, int]:
    """Sum of squares of ``values`` (one score per seed) around their mean, and ``n - 1``."""
    y = np.asarray(values, dtype=float)
    y = y[np.isfinite(y)]
    if len(y) < 2:
        return 0.0, 0
    return float(((y - y.mean()) ** 2).sum()), len(y) - 1


def run_variance(checkpoint: Variance, seed: Variance, smooth: int) -> Variance:
    """The variance of one run's score (the mean of its last ``smooth`` evaluations).

    The score of a run is the mix's true value + a seed effect + evaluation noise; the spread
    over seeds measures both at once, and can never be below the evaluation noise alone (a
    mean of ``smooth`` evaluations divides it by ``smooth``). So: the seed variance floored at
    the checkpoint noise when both are measured, whichever is measured otherwise (with one seed
    the seed effect is unmeasured, and the result is a lower bound).
    """
    floor = Variance(checkpoint.value / smooth, checkpoint.dof) if checkpoint.measured else None
    if seed.measured and (floor is None or seed.value >= floor.value):
        return seed
    return floor or NOT_MEASURED
