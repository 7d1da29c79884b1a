"""The statistics every "how sure" answer rests on, at values worked out by hand.

``olmotrain.confidence``: noise (detrended checkpoint noise, seed noise, pooling, a run's
variance), the comparison of two mixes (``p_a_better``, the verdict, the seeds that would settle
it) and the bootstrap. Fast and exact, so that a wrong sign or bound anywhere fails here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from olmotrain.confidence.bootstrap import bootstrap, percentile_interval
from olmotrain.confidence.compare import (
    Estimate,
    check_confidence,
    p_a_better,
    seeds_needed,
    verdict,
)
from olmotrain.confidence.noise import (
    MIN_EVALS,
    NOT_MEASURED,
    Variance,
    detrended,
    pooled,
    run_variance,
    seed_squares,
)

# ---------------------------------------------------------------------------------------------
# Noise


def test_a_variance_is_measured_only_with_degrees_of_freedom():
    assert Variance(4.0, 1).measured and Variance(4.0, 1).sd == 2.0
    assert not Variance(4.0, 0).measured and Variance(4.0, 0).sd is None
    assert not NOT_MEASURED.measured


def test_too_few_evaluations_have_no_detrended_noise():
    assert MIN_EVALS == 3
    assert detrended([1, 2], [5.0, 4.0]) == (0.0, 0)
    # NaN evaluations do not count towards the three.
    assert detrended([1, 2, 3], [5.0, float("nan"), 4.0]) == (0.0, 0)


def test_three_evaluations_are_detrended_by_a_line():
    # y = [0, 1, 0]: the best line is flat at 1/3; residuals -1/3, 2/3, -1/3.
    ss, dof = detrended([100, 200, 300], [0.0, 1.0, 0.0])
    assert ss == pytest.approx(2 / 3) and dof == 1
    # Four on a bend: a line still (dof 2), so the bend is left as noise.
    ss, dof = detrended([0, 1, 2, 3], [0.0, 1.0, 4.0, 9.0])
    assert dof == 2 and ss > 0.5


def test_five_evaluations_are_detrended_by_a_parabola():
    ss, dof = detrended([0, 1, 2, 3, 4], [4.0, 1.0, 0.0, 1.0, 4.0])
    assert ss == pytest.approx(0.0, abs=1e-20) and dof == 2


def test_missing_values_are_skipped():
    assert detrended([1, 2, 3, 4], [0.0, 1.0, 0.0, None]) == pytest.approx((2 / 3, 1))
    assert seed_squares([1.0, None, 3.0]) == (2.0, 1)
    assert percentile_interval([1.0, 2.0, 3.0, None], 0.5) == pytest.approx((1.5, 2.5))


def test_detrending_is_exact_at_large_step_counts():
    # A long run evaluated at steps near 10^9: the fit is conditioned around its own steps.
    steps = 10**9 + np.arange(6) * 1000.0
    ss, dof = detrended(steps, 3.0 + 1e-3 * np.arange(6) - 1e-4 * np.arange(6) ** 2)
    assert ss == pytest.approx(0.0, abs=1e-16) and dof == 3


def test_a_falling_trend_is_not_noise():
    steps = np.array([20_000, 21_000, 22_000, 23_000, 24_000, 25_000], dtype=float)
    line = 5.0 - 1e-4 * (steps - steps[0])
    ss, dof = detrended(steps, line)
    assert ss == pytest.approx(0.0, abs=1e-18) and dof == 6 - 2 - 1  # a parabola from 5 on
    decay = 5.0 - 2e-9 * (steps - steps[0]) ** 2  # a WSD-S decay bends: also not noise
    ss, _ = detrended(steps, decay)
    assert ss == pytest.approx(0.0, abs=1e-18)


def test_noise_around_the_trend_is_measured_at_its_size():
    rng = np.random.default_rng(0)
    steps = np.arange(0, 40_000, 1_000, dtype=float)
    sd = 0.02
    values = 4.0 - 1e-5 * steps + rng.normal(0, sd, len(steps))
    ss, dof = detrended(steps, values)
    assert dof == len(steps) - 3
    assert math.sqrt(ss / dof) == pytest.approx(sd, rel=0.3)


def test_pooling_adds_squares_and_degrees_of_freedom():
    assert pooled([(2.0, 1), (4.0, 3)]) == Variance(1.5, 4)
    assert pooled([(2.0, 1), (0.0, 0)]) == Variance(2.0, 1)
    assert pooled([(0.0, 0), (0.0, 0)]) == NOT_MEASURED
    assert pooled([]) == NOT_MEASURED


def test_seed_squares_are_around_the_mean():
    assert seed_squares([1.0, 2.0, 3.0]) == (2.0, 2)
    assert seed_squares([1.0, float("nan"), 3.0]) == (2.0, 1)
    assert seed_squares([7.0]) == (0.0, 0)
    assert seed_squares([]) == (0.0, 0)


@pytest.mark.parametrize(
    ("checkpoint", "seed", "smooth", "expected"),
    [
        # seeds vary more than evaluations do: the seed variance, as measured
        (Variance(0.4, 10), Variance(1.0, 2), 1, Variance(1.0, 2)),
        # seeds vary less than one evaluation can: floored at the checkpoint noise
        (Variance(4.0, 10), Variance(1.0, 2), 1, Variance(4.0, 10)),
        # ... of a mean of 2 evaluations, which halves it
        (Variance(4.0, 10), Variance(1.0, 2), 2, Variance(2.0, 10)),
        (Variance(4.0, 10), Variance(1.0, 2), 4, Variance(1.0, 2)),  # a tie: the seeds' own
        (Variance(4.0, 10), Variance(1.0, 2), 8, Variance(1.0, 2)),
        (Variance(4.0, 10), NOT_MEASURED, 4, Variance(1.0, 10)),  # one seed: a lower bound
        (NOT_MEASURED, Variance(1.0, 2), 4, Variance(1.0, 2)),
        (NOT_MEASURED, NOT_MEASURED, 1, NOT_MEASURED),
    ],
)
def test_a_runs_variance_is_the_seed_variance_floored_at_the_evaluation_noise(
    checkpoint, seed, smooth, expected
):
    assert run_variance(checkpoint, seed, smooth) == expected


# ---------------------------------------------------------------------------------------------
# Comparing two mixes


def est(mean: float, var: float = 1.0, dof: int = 4, runs: int = 1) -> Estimate:
    return Estimate(mean, runs, Variance(var, dof))


def test_an_estimates_variance_is_divided_by_its_runs():
    assert est(0.0, var=3.0, runs=3).variance == 1.0
    assert est(0.0, var=3.0, dof=0).variance is None


@pytest.mark.parametrize("confidence", [0.5, 1.0, 0.2, 1.5])
def test_a_confidence_outside_half_to_one_is_refused(confidence):
    with pytest.raises(ValueError, match=f"confidence {confidence} is not in"):
        check_confidence(confidence)


@pytest.mark.parametrize("confidence", [0.51, 0.95, 0.999])
def test_a_confidence_inside_is_accepted(confidence):
    check_confidence(confidence)


def test_p_a_better_is_students_t_of_the_difference_over_its_standard_error():
    a, b = est(1.0, var=2.0, dof=4), est(0.0, var=2.0, dof=9)
    # diff 1, se 2, t with the larger dof (9)
    assert p_a_better(a, b, higher=True) == pytest.approx(stats.t.cdf(0.5, 9))
    assert p_a_better(a, b, higher=False) == pytest.approx(stats.t.cdf(-0.5, 9))
    # Symmetric: one of the two is better.
    assert p_a_better(a, b, True) + p_a_better(b, a, True) == pytest.approx(1.0)
    # Runs average the noise away: 4 runs each halve the standard error.
    a4, b4 = est(1.0, var=2.0, dof=4, runs=4), est(0.0, var=2.0, dof=9, runs=4)
    assert p_a_better(a4, b4, True) == pytest.approx(stats.t.cdf(1.0, 9))


def test_p_a_better_with_noise_on_one_side_only():
    a, b = est(1.0, var=4.0, dof=3), est(0.0, dof=0)
    assert p_a_better(a, b, True) == pytest.approx(stats.t.cdf(0.5, 3))
    assert p_a_better(b, a, True) == pytest.approx(stats.t.cdf(-0.5, 3))


def test_p_a_better_without_noise():
    assert p_a_better(est(1.0, dof=0), est(0.0, dof=0), True) is None
    exact = Variance(0.0, 3)  # measured, and zero: the difference is certain
    one, zero = Estimate(1.0, 1, exact), Estimate(0.0, 1, exact)
    assert p_a_better(one, zero, True) == 1.0
    assert p_a_better(one, zero, False) == 0.0
    assert p_a_better(one, one, True) == 0.5


@pytest.mark.parametrize(
    ("p", "expected"),
    [(0.95, "a"), (0.96, "a"), (0.9499, "inconclusive"), (0.5, "inconclusive"),
     (0.0501, "inconclusive"), (0.05, "b"), (0.0, "b"), (None, "inconclusive")],
)  # fmt: skip
def test_a_verdict_needs_the_confidence_on_one_side(p, expected):
    assert verdict(p, 0.95) == expected


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (est(1.0, var=4.0, dof=4), est(0.5, var=4.0, dof=4)),
        (est(1.0, var=1.0, dof=12), est(0.9, var=3.0, dof=2)),
        (est(0.5, var=2.0, dof=6), Estimate(0.0, 1, NOT_MEASURED)),  # noise on one side
        (Estimate(0.0, 1, NOT_MEASURED), est(0.5, var=2.0, dof=6)),  # ... the other side
        (est(0.0, var=9.0, dof=30), est(0.3, var=9.0, dof=30)),  # B better
    ],
)
@pytest.mark.parametrize("confidence", [0.8, 0.95])
def test_seeds_needed_is_the_fewest_runs_that_reach_the_confidence(a, b, confidence):
    """What the table promises: with that many runs per mix (at the measured noise and the
    measured difference) the verdict is sure; with one fewer it is not."""
    n = seeds_needed(a, b, confidence)
    assert n is not None and n >= 1

    def sure(runs: int) -> bool:
        # One side without noise is given the other's, as seeds_needed assumes.
        va = a.run_variance if a.run_variance.measured else b.run_variance
        vb = b.run_variance if b.run_variance.measured else a.run_variance
        ra, rb = Estimate(a.mean, runs, va), Estimate(b.mean, runs, vb)
        return verdict(p_a_better(ra, rb, True), confidence) != "inconclusive"

    assert sure(n)
    assert n == 1 or not sure(n - 1)


def test_seeds_needed_is_unknown_for_a_tie_or_no_noise():
    assert seeds_needed(est(1.0), est(1.0), 0.95) is None
    assert seeds_needed(est(1.0, dof=0), est(0.0, dof=0), 0.95) is None
    assert seeds_needed(est(10.0, var=1e-6), est(0.0, var=1e-6), 0.95) == 1


# ---------------------------------------------------------------------------------------------
# The bootstrap


def test_the_bootstrap_resamples_items_with_replacement():
    data = np.arange(10.0)
    seen: list[np.ndarray] = []

    def mean(indices: np.ndarray) -> float:
        seen.append(indices)
        return float(data[indices].mean())

    out = bootstrap(mean, len(data), 200, np.random.default_rng(0))
    assert out.shape == (200,) and len(seen) == 200
    assert all(len(i) == 10 and i.min() >= 0 and i.max() <= 9 for i in seen)
    assert any(len(set(i.tolist())) < 10 for i in seen)  # with replacement
    assert {int(i) for s in seen for i in s} == set(range(10))  # every item can be drawn
    assert out.mean() == pytest.approx(4.5, abs=0.3)


def test_a_resample_the_statistic_fails_on_is_nan():
    def fails_on_repeats(indices: np.ndarray) -> float:
        if len(set(indices.tolist())) < len(indices):
            raise np.linalg.LinAlgError("singular")
        return 1.0

    out = bootstrap(fails_on_repeats, 5, 50, np.random.default_rng(1))
    assert np.isnan(out).sum() > 40 and set(out[np.isfinite(out)]) <= {1.0}


def test_percentile_interval_is_central():
    samples = np.arange(1.0, 101.0)
    assert percentile_interval(samples, 0.9) == pytest.approx((5.95, 95.05))
    assert percentile_interval(samples) == pytest.approx((3.475, 97.525))


def test_percentile_interval_needs_half_the_samples_finite():
    half = np.array([1.0, 2.0, 3.0, np.nan, np.nan, np.nan])
    assert percentile_interval(half, 0.5) == pytest.approx((1.5, 2.5))
    less = np.array([1.0, 2.0, np.nan, np.nan, np.nan])
    assert all(math.isnan(x) for x in percentile_interval(less))
    assert all(math.isnan(x) for x in percentile_interval(np.array([np.nan])))


@pytest.mark.parametrize("level", [0.0, 1.0, 1.5])
def test_percentile_interval_refuses_a_level_outside_zero_to_one(level):
    with pytest.raises(ValueError, match=f"level {level} is not in"):
        percentile_interval(np.arange(5.0), level)
