"""The mixture proposal (:mod:`olmotrain.mixture.propose`) against answers known by hand.

- The search alone (:func:`propose`), handed exact laws: a convex bowl whose minimum over the
  simplex, under a cap or a fixed weight, has a closed form; its negation, whose best mix is a
  corner; a plateau and a step, where ties must go to the earliest candidate; the KL penalty alone,
  which must give the prior back. Minimise and maximise both.
- The pieces: ``KL`` and the score by hand, the candidate pool's layout, the one batched
  prediction per gradient, :func:`round_feasible` case by case and on random mixes, token counts
  as text, every bad option as its exact one-line :class:`UserError`, the repetition of each
  source, the JSON of a :class:`Proposal` built by hand.
- :func:`bootstrap_interval` as the percentile bootstrap of warm-started refits, recomputed from
  its definition; with a constant truth its width is exactly proportional to the noise.
- :func:`propose_from_table` on synthetic swarms: a log-linear law whose best feasible mix is a
  vertex known by hand (fill the best source up to its cap, then the next), loss and accuracy, and
  every option reaching the fit, the search and the interval (the proposal recomposed from the
  public pieces, bit for bit).

Small candidate pools and few resamples keep it fast: every search here has an exact answer.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math

import numpy as np
import pandas as pd
import pytest

from olmotrain.errors import UserError
from olmotrain.mixture.propose import (
    REFINE,
    Proposal,
    _check_names,
    _finite,
    _kl,
    _prior,
    _repetition,
    _scorer,
    _tokens,
    bootstrap_interval,
    candidate_mixes,
    constraints_for,
    propose,
    propose_from_table,
    round_feasible,
)
from olmotrain.mixture.regression import CVScore, Linear, Model, cross_validate, fit
from olmotrain.mixture.simplex import Constraints, dirichlet
from olmotrain.mixture.tables import MixtureTable, from_frames

# SLSQP only warns about an option it does not know (a misspelt ftol would be silently ignored).
pytestmark = pytest.mark.filterwarnings("error::scipy.optimize.OptimizeWarning")

S = ("web", "code", "books")
FREE = Constraints(S, (1.0, 1.0, 1.0))


def close(actual, expected, tol: float) -> None:
    """Same shape, and every entry within ``tol``."""
    actual, expected = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert np.abs(actual - expected).max() <= tol, (actual.tolist(), expected.tolist())


def feasible(w: np.ndarray, c: Constraints) -> None:
    lo, hi = c.bounds()
    assert np.all(w >= lo) and np.all(w <= hi) and abs(w.sum() - 1) < 1e-12, w.tolist()


# --- exact laws -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Bowl:
    """``sign * sum_j a_j (w_j - t_j)^2``. With ``t`` on the simplex, the minimum over the
    simplex is ``t``; with some weights pinned (a cap, a fixed weight), the others are
    ``t_j - mu / a_j`` with the one ``mu`` that makes the mix add up to 1."""

    a: tuple[float, ...] = (1.0, 2.0, 4.0)
    t: tuple[float, ...] = (0.5, 0.3, 0.2)
    sign: float = 1.0

    def __call__(self, W: np.ndarray) -> np.ndarray:
        d = np.atleast_2d(W) - np.array(self.t)
        return self.sign * (d**2 * np.array(self.a)).sum(axis=1)


def plateau(W: np.ndarray) -> np.ndarray:
    """0 wherever web <= 0.5 (a flat optimum, zero gradient), rising smoothly beyond."""
    return np.maximum(np.atleast_2d(W)[:, 0] - 0.5, 0.0) ** 2


def step(W: np.ndarray) -> np.ndarray:
    """Piecewise constant, as trees are: 0 where web >= 0.5, else 1."""
    return np.where(np.atleast_2d(W)[:, 0] >= 0.5, 0.0, 1.0)


class Recorder:
    """A bowl that keeps the number of rows of every prediction asked of it."""

    def __init__(self) -> None:
        self.rows: list[int] = []

    def __call__(self, W: np.ndarray) -> np.ndarray:
        self.rows.append(len(np.atleast_2d(W)))
        return Bowl()(W)


def model_of(law, family: str = "linear") -> Model:
    """One column, weight 1: the objective is ``law`` itself (``lightgbm``: not smooth)."""
    return Model(family, (law,), np.array([1.0]))


def search(law, c: Constraints, minimize: bool = True, family: str = "linear", n: int = 600):
    return propose(model_of(law, family), c, minimize, np.random.default_rng(0), candidates=n)


# --- KL and the score -------------------------------------------------------------------------


def test_kl_by_hand():
    W = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.25, 0.25, 0.5]])
    q = np.array([0.25, 0.25, 0.5])
    # 0 log 0 = 0; each row's divergence, not one number for all rows
    assert _kl(W, q).tolist() == pytest.approx([math.log(2), 2 * math.log(2), 0.0], abs=1e-15)
    assert _kl(W, q)[2] == 0.0


def test_score_is_the_objective_signed_by_direction_plus_the_penalty():
    model = model_of(Linear(0.5, np.array([1.0, 2.0, 3.0])))
    W = np.array([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])  # objective 1.5 and 2.8
    assert _scorer(model, FREE, True)(W).tolist() == pytest.approx([1.5, 2.8], abs=1e-12)
    assert _scorer(model, FREE, False)(W).tolist() == pytest.approx([-1.5, -2.8], abs=1e-12)
    assert _scorer(model, FREE, True)(np.array([0.0, 0.0, 1.0])).tolist() == [3.5]  # one mix
    # KL(w || prior) * kl_weight counts as worse whichever way the metric goes
    c = Constraints(S, (1.0, 1.0, 1.0), prior=(0.5, 0.25, 0.25), kl_weight=2.0)
    W = np.array([[0.5, 0.25, 0.25], [0.25, 0.25, 0.5]])  # objective 2.25, 2.75; KL 0, ln2 / 4
    penalty = 2.0 * math.log(2) / 4
    assert _scorer(model, c, True)(W).tolist() == pytest.approx([2.25, 2.75 + penalty], abs=1e-12)
    assert _scorer(model, c, False)(W).tolist() == pytest.approx(
        [-2.25, -2.75 + penalty], abs=1e-12
    )
    # a source the prior leaves out is divided by 1e-12, not by 0
    c = Constraints(S, (1.0, 1.0, 1.0), prior=(0.5, 0.5, 0.0), kl_weight=1.0)
    kl = 0.25 * math.log(0.5) + 0.25 * math.log(0.25 / 1e-12)
    assert _scorer(model, c, True)(np.array([[0.5, 0.25, 0.25]]))[0] == pytest.approx(
        0.5 + 0.5 + 0.5 + 0.75 + kl, rel=1e-12
    )


# --- the candidate pool -----------------------------------------------------------------------


def test_candidate_pool_layout():
    """Per concentration (0.25, 1, 4, 16 per source) n / 8 draws around the prior, the same
    around the uniform mix, then each source's corner, the prior, and ``include``, all projected
    onto the feasible set."""
    c = Constraints(S, (0.5, 1.0, 1.0), {"books": 0.2}, prior=(0.3, 0.6, 0.1))
    include = np.array([[2.0, -1.0, 0.0], [0.1, 0.3, 0.6]])
    pool = candidate_mixes(c, np.random.default_rng(7), 84, include)
    assert pool.shape == (80 + 3 + 1 + 2, 3)
    rng = np.random.default_rng(7)
    uniform = Constraints(S, (0.5, 1.0, 1.0), {"books": 0.2})
    draws = [dirichlet(10, k * 3, around, rng) for around in (c, uniform) for k in (0.25, 1, 4, 16)]
    close(pool[:80], np.vstack(draws), 1e-12)
    # corners, projected: web capped at 0.5, books fixed at 0.2
    close(pool[80:83], [[0.5, 0.3, 0.2], [0.0, 0.8, 0.2], [0.4, 0.4, 0.2]], 1e-12)
    close(pool[83], [0.8 / 3, 1.6 / 3, 0.2], 1e-12)  # the prior with books fixed
    close(pool[84:], [[0.5, 0.3, 0.2], [0.3, 0.5, 0.2]], 1e-12)
    for w in pool:
        feasible(w, c)
    # the prior's blocks and the uniform's differ: the prior favours code
    assert pool[30:40, 1].mean() > pool[70:80, 1].mean() + 0.1
    # at least one draw per block; one mix to include may be a plain vector
    small = candidate_mixes(c, np.random.default_rng(7), 4, np.array([0.1, 0.3, 0.6]))
    assert small.shape == (8 + 3 + 1 + 1, 3)
    close(small[-1], [0.3, 0.5, 0.2], 1e-12)
    assert candidate_mixes(FREE, np.random.default_rng(7), 4).shape == (12, 3)


# --- the search -------------------------------------------------------------------------------


def test_propose_lands_on_the_minimum_of_a_bowl_both_ways():
    close(search(Bowl(), FREE), [0.5, 0.3, 0.2], 1e-7)
    close(search(Bowl(sign=-1.0), FREE, minimize=False), [0.5, 0.3, 0.2], 1e-7)
    # the worst of the bowl, minimising its negation: the corner farthest from t (2.99 at books)
    assert search(Bowl(sign=-1.0), FREE).tolist() == [0.0, 0.0, 1.0]
    assert search(Bowl(), FREE, minimize=False).tolist() == [0.0, 0.0, 1.0]


def test_the_swarms_own_mixes_are_candidates():
    """A run's mix at the optimum is proposed as it is (the search alone stops ~1e-8 away)."""
    runs = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    w = propose(model_of(Bowl()), FREE, True, np.random.default_rng(0), 600, include=runs)
    assert w.tolist() == [0.5, 0.3, 0.2]
    assert search(Bowl(), FREE).tolist() != [0.5, 0.3, 0.2]


def test_a_cap_binds_exactly_where_the_optimum_is_beyond_it():
    # web capped at 0.3 < 0.5: code and books share 0.7 with mu = (0.5 - 0.7) / (1/2 + 1/4)
    c = Constraints(S, (0.3, 1.0, 1.0))
    w = search(Bowl(), c)
    close(w, [0.3, 0.3 + 2 / 15, 0.2 + 1 / 15], 1e-7)
    feasible(w, c)
    assert w[0] <= 0.3


def test_a_fixed_weight_is_kept_exactly_and_the_rest_is_optimal():
    # books fixed at 0.1: web and code share 0.9 with mu = (0.8 - 0.9) / (1 + 1/2)
    c = Constraints(S, (1.0, 1.0, 1.0), {"books": 0.1})
    w = search(Bowl(), c)
    assert w[2] == 0.1
    close(w, [0.5 + 1 / 15, 0.3 + 1 / 30, 0.1], 1e-7)
    # a cap and a fixed weight together: web at its cap 0.55, code takes the rest
    c = Constraints(S, (0.55, 1.0, 1.0), {"books": 0.1})
    w = search(Bowl(), c)
    assert w[2] == 0.1 and w[0] <= 0.55
    close(w, [0.55, 0.35, 0.1], 1e-7)


def test_every_weight_fixed_is_the_proposal():
    # constraints_for accepts it (the fixed weights add up to 1), so propose_from_table gets here
    c = constraints_for(list(S), np.full(3, 1 / 3), fixed={"web": 0.6, "code": 0.3, "books": 0.1})
    assert search(Bowl(), c).tolist() == [0.6, 0.3, 0.1]


def test_ties_keep_the_earliest_best_candidate():
    """A flat optimum: the refinement cannot improve on the first best candidate (by pool order),
    so that one is the proposal, the same on every run."""
    pool = candidate_mixes(FREE, np.random.default_rng(0), 600)
    first = pool[np.flatnonzero(pool[:, 0] <= 0.5)[0]]
    close(search(plateau, FREE), first, 1e-12)


def test_trees_propose_the_mean_of_the_best_candidates():
    """Piecewise constant predictions: the mean of the first 100 best candidates (by pool order),
    which lies in the best region when that region is convex."""
    pool = candidate_mixes(FREE, np.random.default_rng(0), 800)
    best = np.flatnonzero(pool[:, 0] >= 0.5)
    assert len(best) > 100
    w = search(step, FREE, family="lightgbm", n=800)
    close(w, pool[best[:100]].mean(axis=0), 1e-12)
    assert w[0] >= 0.5
    feasible(w, FREE)


def test_the_penalty_alone_gives_the_prior_back():
    flat = Linear(0.0, np.zeros(3))
    c = Constraints(S, (1.0, 1.0, 1.0), prior=(0.6, 0.3, 0.1), kl_weight=1.0)
    close(search(flat, c), [0.6, 0.3, 0.1], 1e-9)
    # with books fixed at 0.5, web and code keep the prior's 2:1
    c = Constraints(S, (1.0, 1.0, 1.0), {"books": 0.5}, prior=(0.5, 0.25, 0.25), kl_weight=1.0)
    close(search(flat, c), [1 / 3, 1 / 6, 0.5], 1e-9)


def test_the_penalty_trades_the_objective_against_the_prior():
    """The bowl plus 0.1 * KL(w || q): at the optimum (interior) every source has the same
    marginal cost 2 a_j (w_j - t_j) + 0.1 (ln(w_j / q_j) + 1)."""
    q = np.array([0.2, 0.2, 0.6])
    c = Constraints(S, (1.0, 1.0, 1.0), prior=tuple(q), kl_weight=0.1)
    for minimize, law in ((True, Bowl()), (False, Bowl(sign=-1.0))):
        w = search(law, c, minimize)
        marginal = 2 * np.array([1.0, 2.0, 4.0]) * (w - [0.5, 0.3, 0.2]) + 0.1 * np.log(w / q)
        assert np.ptp(marginal) < 1e-4, marginal
        assert 0.2 < w[0] < 0.5 and 0.2 < w[2] < 0.6  # between the bowl's minimum and the prior


def test_the_gradient_is_one_batched_prediction():
    """SLSQP gets the forward-difference gradient from one prediction of m + 1 rows (m free
    sources), not from m + 1 calls; the best candidate and the refinements are compared in one
    prediction too."""
    law = Recorder()
    c = Constraints(S, (1.0, 1.0, 1.0), {"books": 0.2})
    w = propose(model_of(law), c, True, np.random.default_rng(0), candidates=100)
    close(w, [0.5, 0.3, 0.2], 1e-7)  # web and code share 0.8 = t_web + t_code
    assert 3 in law.rows and set(law.rows) <= {100, 3, 1, 1 + REFINE}, sorted(set(law.rows))


# --- rounding for display ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("w", "c", "digits", "expected"),
    [
        # floors, then the one unit left to the largest remainder (ties: the first source)
        ([1 / 3, 1 / 3, 1 / 3], FREE, 6, [0.333334, 0.333333, 0.333333]),
        ([0.25, 0.25, 0.5], FREE, 6, [0.25, 0.25, 0.5]),
        ([0.123456789, 0.876543211], Constraints(("a", "b"), (1.0, 1.0)), 3, [0.123, 0.877]),
        # web has the largest remainder but no room under its cap 0.2000009
        ([0.2000009, 0.3999995, 0.3999996], Constraints(S, (0.2000009, 1.0, 1.0)), 6, [0.2, 0.4, 0.4]),
        # web is one unit under its cap 0.2 (a grid point): it may take that unit
        ([0.1999995, 0.4000003, 0.4000002], Constraints(S, (0.2, 1.0, 1.0)), 6, [0.2, 0.4, 0.4]),
        # a fixed weight keeps its value; the free ones share the unit
        ([0.2333335, 0.3, 0.4666665], Constraints(S, (1.0, 1.0, 1.0), {"code": 0.3}), 6, [0.233334, 0.3, 0.466666]),
        # values a hair below a grid point round up; the unit over comes off the smallest remainder
        ([0.69999999999995, 0.3000009999999], Constraints(("a", "b"), (1.0, 1.0)), 6, [0.7, 0.3]),
        ([0.7, 0.3, 0.0000009999999], FREE, 6, [0.7, 0.3, 0.0]),
        # ... but never off a fixed weight: web (fixed) has the smallest remainder, so code, at its
        # cap, gives the unit back (a unit taken off needs no room under the cap)
        ([0.2999999, 0.4000009999999, 0.29999999999995], Constraints(S, (1.0, 0.400001, 1.0), {"web": 0.2999999}), 6, [0.2999999, 0.4, 0.3]),
    ],
)  # fmt: skip
def test_round_feasible_by_hand(w, c, digits, expected):
    assert round_feasible(np.array(w), c, digits).tolist() == expected


def test_round_feasible_ties_go_to_the_earliest_sources():
    # 17 sources, 13 of them tied at remainder 0.6 for 9 units: the first 9 of those get one
    w = np.full(17, 0.0588236)
    w[[0, 5, 9, 16]] = 0.0588233
    c = Constraints(tuple(f"s{j}" for j in range(17)), (1.0,) * 17)
    got = np.round(round_feasible(w, c) * 1e6).astype(int)
    up = [1, 2, 3, 4, 6, 7, 8, 10, 11]
    assert got.tolist() == [58824 if j in up else 58823 for j in range(17)]


@pytest.mark.parametrize("digits", [2, 4, 6])
def test_round_feasible_keeps_every_mix_feasible(digits):
    c = Constraints(
        ("a", "b", "c", "d", "e"),
        (0.15, 1.0, 0.4, 1.0, 0.05),
        {"d": 0.2},
        (0.1, 0.3, 0.2, 0.2, 0.2),
    )
    lo, hi = c.bounds()
    unit = 10**digits
    for w in dirichlet(300, 2.0, c, np.random.default_rng(digits)):
        r = round_feasible(w, c, digits)
        units = np.round(r * unit)
        assert np.all(np.abs(r * unit - units) < 1e-6)  # on the grid
        assert units.sum() == unit  # adds up to 1 exactly, in units
        assert np.all(r <= hi + 1e-12) and np.all(r >= lo) and r[3] == 0.2
        assert np.all(np.abs(r - w) <= 1.0 / unit)  # within a unit of the exact weights


# --- text: token counts, unknown names, bad options -------------------------------------------


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0"), (512, "512"), (999.5, "999.5"), (1000, "1K"), (1500, "1.5K"), (99_999, "100K"),
        (1e6, "1M"), (2_100_000, "2.1M"), (62e6, "62M"), (150e6, "150M"), (1e9, "1B"),
        (1.5e9, "1.5B"), (1e12, "1T"), (2e13, "20T"),
    ],
)  # fmt: skip
def test_token_counts_as_people_say_them(n, text):
    assert _tokens(n) == text


@pytest.mark.parametrize(
    ("n", "text"),
    [(999_999, "1M"), (999_500, "1M"), (999_499, "999K"), (9_999, "10K"), (999_999_999, "1B"),
     (999.9999999, "1K"), (-999_999, "-1M"), (999_999_999_999, "1T"), (999_999e12, "999999T")],
)  # fmt: skip
def test_token_counts_round_up_to_the_next_unit(n, text):
    """A count that rounds to a thousand of one unit is one of the next."""
    assert _tokens(n) == text


@pytest.mark.parametrize(
    ("option", "names", "sources", "message"),
    [
        ("--fixed", {"src": 0.1}, ["src0", "src1", "src2", "src3", "web"],
         "--fixed: unknown source 'src'; did you mean src3 or src2 or src1? the sources are src0, src1, src2, src3, web"),
        ("--available", {"bk": 5}, list(S),  # similarity 0.57: a match at cutoff 0.5
         "--available: unknown source 'bk'; did you mean books? the sources are web, code, books"),
        ("--available", {"web": 5, "wiki": 5, "zzz": 5}, list(S),
         "--available: unknown source 'wiki'; the sources are web, code, books"),
    ],
)  # fmt: skip
def test_unknown_source_names(option, names, sources, message):
    with pytest.raises(UserError) as e:
        _check_names(option, names, sources)
    assert str(e.value) == message


def test_known_source_names_pass():
    for names in (None, {}, {"web": 1, "books": 2}, ["code"]):
        _check_names("--fixed", names, list(S))


@pytest.mark.parametrize(
    ("prior", "available", "expected"),
    [
        ({"web": 1, "code": 3}, None, [0.25, 0.75, 0.0]),  # normalised; books left out: 0
        ({"web": 0.25, "code": 0.75}, None, [0.25, 0.75, 0.0]),
        ({"web": 0, "code": 0.5, "books": 0.5}, None, [0.0, 0.5, 0.5]),
        ("uniform", None, [1 / 3, 1 / 3, 1 / 3]),
        ("natural", {"web": 1, "code": 1, "books": 2, "other": 9}, [0.25, 0.25, 0.5]),
        ("natural", {"web": 0, "code": 1, "books": 0}, [0.0, 1.0, 0.0]),
    ],
)  # fmt: skip
def test_prior(prior, available, expected):
    assert _prior(prior, list(S), available).tolist() == expected


@pytest.mark.parametrize(
    ("prior", "available", "message"),
    [
        ({"wbe": 1}, None, "--prior: unknown source 'wbe'; did you mean web? the sources are web, code, books"),
        ({"web": -1, "code": 2}, None, "--prior: give non-negative weights, at least one of them positive"),
        ({"web": 0}, None, "--prior: give non-negative weights, at least one of them positive"),
        ({"web": math.nan, "code": 1}, None, "--prior: give non-negative weights, at least one of them positive"),
        ("zipf", None, "--prior zipf: choose natural, uniform or src=weight,..."),
        ("natural", {"web": 5}, "--prior natural needs --available src=tokens,... for every source (missing: code, books); give it, or use --prior uniform"),
        ("natural", None, "--prior natural needs --available src=tokens,... for every source (missing: web, code, books); give it, or use --prior uniform"),
        ("natural", {"web": 0, "code": 0, "books": 0}, "--prior natural: the sources have no tokens available; check --available"),
    ],
)  # fmt: skip
def test_bad_priors(prior, available, message):
    with pytest.raises(UserError) as e:
        _prior(prior, list(S), available)
    assert str(e.value) == message


def test_constraints_without_a_target_are_the_plain_simplex():
    c = constraints_for(list(S), np.array([0.5, 0.25, 0.25]))
    assert c == Constraints(S, (1.0, 1.0, 1.0), {}, (0.5, 0.25, 0.25), 0.0, {})
    assert c.kl_weight == 0.0 and c.cap_reason == {}
    # no target, no caps: a source may have no tokens at all
    c = constraints_for(list(S), np.array([0.5, 0.25, 0.25]), available={"web": 0, "code": 5})
    assert c.upper == (1.0, 1.0, 1.0)


def test_caps_from_the_data_each_source_has():
    """cap = available * max_repetition / target (ratio 1 by default); a cap of 1 or more is no
    cap; each cap says why in words."""
    sources = ["web", "code", "books", "wiki"]
    c = constraints_for(
        sources,
        np.array([0.4, 0.3, 0.2, 0.1]),
        kl_weight=0.5,
        available={"web": 2_100_000, "code": 10**9, "books": 196_000_000, "wiki": 280_000_000},
        target_tokens=280_000_000,
        max_repetition={"web": 4.0, "code": 0.5},
        fixed={"books": 0.2},
    )
    assert c == Constraints(
        sources=("web", "code", "books", "wiki"),
        upper=(0.03, 1.0, 0.7, 1.0),  # code: 1.79 with ratio 0.5; wiki: exactly 1
        fixed={"books": 0.2},
        prior=(0.4, 0.3, 0.2, 0.1),
        kl_weight=0.5,
        cap_reason={
            "web": "web has 2.1M tokens x max_repetition_ratio 4 for the target's 280M",
            "books": "books has 196M tokens x max_repetition_ratio 1 for the target's 280M",
        },
    )
    c = constraints_for(list(S), np.full(3, 1 / 3), available=dict.fromkeys(S, 10), target_tokens=1)
    assert c.upper == (1.0, 1.0, 1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"available": {"wbe": 5}}, "--available: unknown source 'wbe'; did you mean web? the sources are web, code, books"),
        ({"max_repetition": {"cod": 2.0}}, "--max-repetition: unknown source 'cod'; did you mean code? the sources are web, code, books"),
        ({"fixed": {"bookz": 0.1}}, "--fixed: unknown source 'bookz'; did you mean books? the sources are web, code, books"),
        ({"available": {"web": -1}}, "--available: web is -1; it must be a positive number"),
        ({"max_repetition": {"code": 0}}, "--max-repetition: code is 0; it must be a positive number"),
        ({"max_repetition": {"code": -2.0}}, "--max-repetition: code is -2.0; it must be a positive number"),
        ({"target_tokens": 0, "available": dict.fromkeys(S, 5)}, "--target-tokens is 0; it must be positive"),
        ({"target_tokens": 100, "available": {"web": 5}}, "--target-tokens needs --available src=tokens for every source to cap its weight (missing: code, books); give them, or leave out --target-tokens"),
        ({"target_tokens": 100}, "--target-tokens needs --available src=tokens for every source to cap its weight (missing: web, code, books); give them, or leave out --target-tokens"),
    ],
)  # fmt: skip
def test_bad_constraints(kwargs, message):
    with pytest.raises(UserError) as e:
        constraints_for(list(S), np.full(3, 1 / 3), **kwargs)
    assert str(e.value) == message


def test_infeasible_caps_are_refused():
    with pytest.raises(UserError, match=r"^no feasible mix: .*most limiting source web"):
        constraints_for(
            list(S), np.full(3, 1 / 3), available=dict.fromkeys(S, 10), target_tokens=100
        )


# --- repetition, the JSON ---------------------------------------------------------------------


def test_repetition_of_each_source():
    w = np.array([0.5, 0.0, 0.5])
    got = _repetition(list(S), w, {"web": 1000, "code": 0, "books": 400}, 2000)
    assert got == {"web": 1.0, "code": 0.0, "books": 2.5}  # no tokens and no weight: 0
    assert _repetition(list(S), w, {"web": 1000}, 2000) == {"web": 1.0, "code": None, "books": None}
    assert _repetition(list(S), w, {"web": 1000}, None) == dict.fromkeys(S)
    assert _repetition(list(S), w, None, 2000) == dict.fromkeys(S)


def test_finite():
    assert _finite(1.5) == 1.5 and type(_finite(np.float64(1.5))) is float
    assert _finite(math.nan) is None and _finite(math.inf) is None and _finite(None) is None


def hand_proposal(**changes) -> Proposal:
    c = Constraints(S, (1.0, 0.2, 1.0), {"books": 0.3}, (0.5, 0.25, 0.25), 0.1)
    p = Proposal(
        metric={"eval/web/BPB": 1.0},
        model="log_linear",
        cv={
            "log_linear": CVScore(0.01, 0.9, np.zeros(3)),
            "linear": CVScore(math.inf, math.nan, np.zeros(3)),
        },
        proposal={"web": 0.5000004, "code": 0.1999996, "books": 0.3},
        predicted=1.25,
        interval=(1.2, 1.4),
        repetition={"web": 0.5, "code": None, "books": math.inf},
        minimize=True,
        prior={"web": 0.5, "code": 0.25, "books": 0.25},
        caps={"web": None, "code": 0.2, "books": None},
        fixed={"books": 0.3},
        kl_weight=0.1,
        runs=24,
        best_run={"run": "r07", "value": 1.3},
        constraints=c,
    )
    return dataclasses.replace(p, **changes)


def test_proposal_json_by_hand():
    out = hand_proposal().to_json()
    assert json.loads(json.dumps(out, allow_nan=False)) == out  # no NaN, no inf: plain JSON
    assert list(out.items()) == [
        ("metric", "eval/web/BPB"),
        ("model", "log_linear"),
        ("cv", {"log_linear": {"rmse": 0.01, "spearman": 0.9},
                "linear": {"rmse": None, "spearman": None}}),
        # rounded to 6 decimals and still feasible: code's unit stays under its cap 0.2
        ("proposal", {"web": 0.5, "code": 0.2, "books": 0.3}),
        ("predicted", 1.25),
        ("interval", [1.2, 1.4]),
        ("repetition", {"web": 0.5, "code": None, "books": None}),
        ("minimize", True),
        ("prior", {"web": 0.5, "code": 0.25, "books": 0.25}),
        ("caps", {"web": None, "code": 0.2, "books": None}),
        ("fixed", {"books": 0.3}),
        ("kl_weight", 0.1),
        ("runs", 24),
        ("best_run", {"run": "r07", "value": 1.3}),
    ]  # fmt: skip
    two = hand_proposal(metric={"a": 0.5, "b": 0.5}).to_json()
    assert two["metric"] == {"a": 0.5, "b": 0.5}


# --- the bootstrap interval -------------------------------------------------------------------


@functools.cache
def noisy_runs(n: int = 16, seed: int = 0, law: str = "linear"):
    """Runs of 3 sources and two metric columns (objective weights 0.25, 0.75)."""
    rng = np.random.default_rng(seed)
    R = rng.dirichlet(np.ones(3), n)
    if law == "linear":
        Y = np.c_[1 + R @ [0.3, -0.2, 0.0], 2 + R @ [-0.1, 0.0, 0.0]]
    else:
        Y = np.c_[1 + 0.5 * np.exp(R @ [-2.0, 0.0, 1.0]), 2 + 0.3 * np.exp(R @ [0.0, -1.0, 0.5])]
    return R, Y + 0.01 * rng.normal(size=Y.shape), np.array([0.25, 0.75])


def percentile_bootstrap(family, R, Y, cw, at, reps, level, seed, warm=None):
    """The definition: refit on ``reps`` resamples of the runs (with replacement, drawn from
    ``default_rng(seed)``) and take the central ``level`` percentiles of the predictions."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(reps):
        rows = rng.integers(0, len(R), size=len(R))
        samples.append(fit(family, R[rows], Y[rows], cw, warm=warm).predict(at)[0])
    tail = 100 * (1 - level) / 2
    return tuple(np.percentile(samples, [tail, 100 - tail]).tolist())


def test_bootstrap_interval_is_the_percentile_bootstrap():
    R, Y, cw = noisy_runs()
    at = np.array([0.2, 0.3, 0.5])
    got = bootstrap_interval("linear", R, Y, cw, at, reps=20, level=0.8, seed=5)
    assert got == pytest.approx(percentile_bootstrap("linear", R, Y, cw, at, 20, 0.8, 5), abs=1e-12)
    point = fit("linear", R, Y, cw).predict(at)[0]
    assert got[0] <= point <= got[1]
    # the seed picks the resamples; seed 0 by default
    assert bootstrap_interval("linear", R, Y, cw, at, reps=20, level=0.8) == bootstrap_interval(
        "linear", R, Y, cw, at, reps=20, level=0.8, seed=0
    )


def test_bootstrap_refits_start_from_the_warm_fit():
    """Log-linear refits start from ``warm`` (the fit on all runs when none is given), so that
    the interval is the same whether the caller passes that fit or not."""
    R, Y, cw = noisy_runs(12, 1, "log_linear")
    at = np.array([0.2, 0.3, 0.5])
    everything = fit("log_linear", R, Y, cw)
    expected = percentile_bootstrap("log_linear", R, Y, cw, at, 4, 0.95, 0, warm=everything)
    assert bootstrap_interval("log_linear", R, Y, cw, at, reps=4) == expected
    assert bootstrap_interval("log_linear", R, Y, cw, at, reps=4, warm=everything) == expected
    part = fit("log_linear", R[:8], Y[:8], cw)
    assert bootstrap_interval("log_linear", R, Y, cw, at, reps=4, warm=part) == (
        percentile_bootstrap("log_linear", R, Y, cw, at, 4, 0.95, 0, warm=part)
    )


def test_bootstrap_interval_width_is_proportional_to_the_noise():
    """A constant truth plus noise s: a linear fit's prediction is linear in the measurements,
    so every resample's prediction is 1.5 + s * (the same number): width exactly proportional
    to s, and each interval contains the point estimate."""
    rng = np.random.default_rng(3)
    R = rng.dirichlet(np.ones(3), 20)
    eps = rng.normal(size=(20, 1))
    at = np.array([0.6, 0.2, 0.2])
    widths = []
    for s in (0.1, 0.01):
        Y = 1.5 + s * eps
        lo, hi = bootstrap_interval("linear", R, Y, np.array([1.0]), at, reps=30)
        assert lo <= fit("linear", R, Y, np.array([1.0])).predict(at)[0] <= hi
        widths.append(hi - lo)
    assert widths[1] > 0 and widths[0] / widths[1] == pytest.approx(10, rel=1e-6)


# --- from a swarm's table ---------------------------------------------------------------------


def swarm(n: int, seed: int, columns: dict, noise: float = 0.001) -> MixtureTable:
    """``n`` runs (Dirichlet(1) mixes over web, code, books) with each column ``f(R)`` + noise."""
    rng = np.random.default_rng(seed)
    R = rng.dirichlet(np.ones(3), n)
    runs = [f"r{i:02d}" for i in range(n)]
    values = {k: f(R) + noise * rng.normal(size=n) for k, f in columns.items()}
    return from_frames(
        pd.DataFrame(R, columns=list(S)).assign(run=runs),
        pd.DataFrame(values).assign(run=runs),
        "synthetic",
    )


LOSS = "eval/lm/web/BPB"
ACCURACY = "eval/downstream/hellaswag (accuracy)"


@functools.cache
def loss_swarm() -> MixtureTable:
    # A data mixing law: lower with web, higher with books.
    return swarm(20, 1, {LOSS: lambda R: 1 + 0.5 * np.exp(R @ [-2.0, 0.0, 1.0])})


def test_the_proposal_fills_the_best_source_to_its_cap_then_the_next():
    """Defaults: every family cross-validated, the natural prior, seed 0. Web helps most and may
    have 0.6 (600K tokens for a 1M target), code is neutral, books hurts: (0.6, 0.4, 0)."""
    table = loss_swarm()
    available = {"web": 600_000, "code": 5_000_000, "books": 5_000_000}
    p = propose_from_table(table, {LOSS: 1.0}, available=available, target_tokens=10**6,
                           candidates=300, reps=5)  # fmt: skip
    w = np.array(list(p.proposal.values()))
    close(w, [0.6, 0.4, 0.0], 1e-6)
    assert w[0] <= 0.6 and abs(w.sum() - 1) < 1e-12
    assert p.minimize is True and p.model == "log_linear"
    assert set(p.cv) == {"log_linear", "lightgbm", "linear"}
    assert p.cv["log_linear"].rmse == min(s.rmse for s in p.cv.values())
    assert p.repetition == pytest.approx({"web": 1.0, "code": 0.08, "books": 0.0}, abs=1e-6)
    assert p.caps == {"web": 0.6, "code": None, "books": None}
    assert p.prior == {"web": 6 / 106, "code": 50 / 106, "books": 50 / 106}
    assert p.fixed == {} and p.kl_weight == 0.0 and p.constraints.kl_weight == 0.0
    assert p.metric == {LOSS: 1.0} and p.runs == 20
    y = table.metrics[LOSS].to_numpy()
    assert p.best_run == {"run": table.runs[int(np.argmin(y))], "value": float(y.min())}
    truth = 1 + 0.5 * math.exp(-1.2)
    assert p.predicted == pytest.approx(truth, abs=0.01)
    # bit for bit the public pieces at seed 0
    R, Y, cw = table.weights, y[:, None], np.array([1.0])
    fitted = fit("log_linear", R, Y, cw)
    again = propose(fitted, p.constraints, True, np.random.default_rng(0), 300, include=R)
    assert w.tolist() == again.tolist()
    assert p.predicted == fitted.predict(w)[0]
    assert p.interval == bootstrap_interval("log_linear", R, Y, cw, w, 5, 0.95, 0, warm=fitted)
    assert p.interval[0] <= p.predicted <= p.interval[1]
    linear = cross_validate("linear", R, Y, cw, 5, 0)
    assert (p.cv["linear"].rmse, p.cv["linear"].spearman) == (linear.rmse, linear.spearman)


def test_an_accuracy_is_maximised():
    """Higher is better for an accuracy (by its name): code helps most (capped at 0.5), then
    books, web least: (0, 0.5, 0.5)."""
    table = swarm(20, 2, {ACCURACY: lambda R: 0.2 + 0.1 * np.exp(R @ [0.0, 1.5, 0.5])})
    available = {"web": 5_000_000, "code": 500_000, "books": 5_000_000}
    p = propose_from_table(table, {ACCURACY: 1.0}, model="log_linear", prior="uniform",
                           available=available, target_tokens=10**6, candidates=300, reps=5)  # fmt: skip
    close(list(p.proposal.values()), [0.0, 0.5, 0.5], 1e-6)
    assert p.minimize is False and set(p.cv) == {"log_linear"}
    y = table.metrics[ACCURACY].to_numpy()
    assert p.best_run == {"run": table.runs[int(np.argmax(y))], "value": float(y.max())}
    assert p.interval[0] <= p.predicted <= p.interval[1]


def test_trees_average_over_candidates_and_the_swarms_runs():
    """With trees the runs themselves (predicted best where they were measured) join the pool
    whose best candidates are averaged."""
    table = loss_swarm()
    p = propose_from_table(table, {LOSS: 1.0}, model="lightgbm", prior="uniform", candidates=200,
                           reps=3)  # fmt: skip
    R, Y, cw = table.weights, table.metrics[[LOSS]].to_numpy(), np.array([1.0])
    fitted = fit("lightgbm", R, Y, cw)
    w = propose(fitted, FREE, True, np.random.default_rng(0), 200, include=R)
    assert p.proposal == dict(zip(S, w.tolist(), strict=True))
    assert w.tolist() != propose(fitted, FREE, True, np.random.default_rng(0), 200).tolist()
    assert p.interval == bootstrap_interval("lightgbm", R, Y, cw, w, 3, 0.95, 0, warm=fitted)


def test_every_option_reaches_the_fit_the_search_and_the_interval():
    """Two columns, a prior, a KL weight, caps (one exactly 1: no cap), a max repetition, a fixed
    weight, folds, seed and an explicit direction: the proposal is the public pieces composed."""
    loss = "eval/lm/code/BPB"
    table = swarm(20, 3, {LOSS: lambda R: 1 + R @ [0.3, -0.2, 0.1], loss: lambda R: 2 - R[:, 1]})
    metric = {LOSS: 0.25, loss: 0.75}
    available = {"web": 4_000_000, "code": 1_000_000, "books": 2_000_000}
    p = propose_from_table(
        table, metric, minimize=False, model="linear", prior={"web": 2, "code": 1, "books": 1},
        kl_weight=0.05, available=available, target_tokens=4_000_000,
        max_repetition={"code": 0.8}, fixed={"books": 0.3}, seed=3, reps=6, folds=4,
        candidates=300,
    )  # fmt: skip
    c = Constraints(
        S, (1.0, 0.2, 0.5), {"books": 0.3}, (0.5, 0.25, 0.25), 0.05,
        {"code": "code has 1M tokens x max_repetition_ratio 0.8 for the target's 4M",
         "books": "books has 2M tokens x max_repetition_ratio 1 for the target's 4M"},
    )  # fmt: skip
    assert p.constraints == c
    R, Y, cw = table.weights, table.metrics[list(metric)].to_numpy(), np.array([0.25, 0.75])
    cv = cross_validate("linear", R, Y, cw, 4, 3)
    assert list(p.cv) == ["linear"] and p.model == "linear"
    assert (p.cv["linear"].rmse, p.cv["linear"].spearman) == (cv.rmse, cv.spearman)
    fitted = fit("linear", R, Y, cw)
    w = propose(fitted, c, False, np.random.default_rng(3), 300, include=R)
    assert p.proposal == dict(zip(S, w.tolist(), strict=True))
    assert p.proposal["books"] == 0.3 and p.proposal["code"] <= 0.2
    assert p.predicted == fitted.predict(w)[0]
    assert p.interval == bootstrap_interval("linear", R, Y, cw, w, 6, 0.95, 3, warm=fitted)
    assert p.repetition == {
        "web": w[0] * 4_000_000 / 4_000_000, "code": w[1] * 4_000_000 / 1_000_000,
        "books": 0.3 * 4_000_000 / 2_000_000,
    }  # fmt: skip
    assert p.caps == {"web": None, "code": 0.2, "books": 0.5}
    assert p.prior == {"web": 0.5, "code": 0.25, "books": 0.25}
    assert (p.fixed, p.kl_weight, p.minimize, p.metric) == ({"books": 0.3}, 0.05, False, metric)
    observed = Y @ cw
    best = int(np.argmax(observed))
    assert p.best_run == {"run": table.runs[best], "value": float(observed[best])}


def test_bad_table_options():
    table = loss_swarm()
    with pytest.raises(UserError) as e:
        propose_from_table(table, {LOSS: 1.0}, model="xgboost", prior="uniform")
    assert str(e.value) == "--model xgboost: choose one of log_linear, lightgbm, linear"
    few = swarm(7, 4, {LOSS: lambda R: R[:, 0]})
    with pytest.raises(UserError) as e:
        propose_from_table(few, {LOSS: 1.0}, prior="uniform", folds=4)
    assert str(e.value) == (
        "a fit of 3 sources needs at least 8 runs (the log-linear law has 4 free parameters and "
        "4-fold CV holds 1/4 of the runs out); got 7: run a larger swarm"
    )
