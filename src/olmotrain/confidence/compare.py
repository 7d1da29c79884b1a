"""How sure "A is better than B" is: two estimated means, their variances, a verdict.

The model, stated: a mix's score at a size is estimated by the mean of its runs' scores, each
with the variance of :func:`olmotrain.confidence.noise.run_variance`; the difference of two such
means, over its standard error, follows Student's t with the degrees of freedom the variance was
measured with (a normal when they are many). ``p_a_better`` is the probability, under that
model with a flat prior, that A's true score is better than B's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from olmotrain.confidence.noise import Variance

VERDICTS = ("a", "b", "inconclusive")


@dataclass(frozen=True)
class Estimate:
    """A mix's score at one size: the mean over its ``runs``, each of variance ``run_variance``."""

    mean: float
    runs: int
    run_variance: Variance

    @property
    def variance(self) -> float | None:
        """The variance of ``mean`` (``None`` when the noise was not measured)."""
        return self.run_variance.value / self.runs if self.run_variance.measured else None


def check_confidence(confidence: float) -> None:
    """A verdict's confidence must be in (0.5, 1): at 0.5 every difference would be sure."""
    if not 0.5 < confidence < 1:
        raise ValueError(f"confidence {confidence} is not in (0.5, 1); e.g. 0.95")


def p_a_better(a: Estimate, b: Estimate, higher: bool) -> float | None:
    """P(A's true score is better than B's) under the model above; ``None`` when neither has
    measured noise. A difference with zero measured noise is certain (1 or 0; 0.5 for a tie)."""
    from scipy import stats

    va, vb = a.variance, b.variance
    if va is None and vb is None:
        return None
    diff = (a.mean - b.mean) * (1 if higher else -1)
    se = math.sqrt((va or 0.0) + (vb or 0.0))
    if se == 0:
        return 0.5 if diff == 0 else float(diff > 0)
    dof = max(a.run_variance.dof, b.run_variance.dof)
    return float(stats.t.cdf(diff / se, dof))


def verdict(p: float | None, confidence: float) -> str:
    """``"a"`` when ``p`` reaches ``confidence``, ``"b"`` when ``1 - p`` does, else
    ``"inconclusive"`` (also when ``p`` is unknown)."""
    if p is None:
        return "inconclusive"
    if p >= confidence:
        return "a"
    if 1 - p >= confidence:
        return "b"
    return "inconclusive"


def seeds_needed(a: Estimate, b: Estimate, confidence: float) -> int | None:
    """Runs (seeds) per mix at which a difference as large as the measured one would reach
    ``confidence``, from the measured noise; ``None`` for a tie or unmeasured noise."""
    from scipy import stats

    va, vb = a.run_variance, b.run_variance
    if not (va.measured or vb.measured) or a.mean == b.mean:
        return None
    per_run = (va.value if va.measured else vb.value) + (vb.value if vb.measured else va.value)
    z = stats.t.ppf(confidence, max(va.dof, vb.dof))  # the quantile p_a_better compares with
    return max(1, math.ceil(z * z * per_run / (a.mean - b.mean) ** 2))
