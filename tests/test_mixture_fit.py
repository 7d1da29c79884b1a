"""Mixture fitting: the feasible set, the two CSV files, the regressions and their
cross-validation, the proposal against the known optimum of a synthetic data mixing law, and
every bad input as one line.

The synthetic swarm: S sources, one metric column per domain, domain i's loss
``c_i + k_i exp(t_i . r)`` with ``t_ii`` strongly negative (its own data helps it most), the
objective their average (convex, so its optimum over the simplex is found exactly by SLSQP from
a few starts). Runs are Dirichlet(1) mixes, each metric measured with noise 0.01 (the objective
spans about 0.4 over the simplex).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from olmotrain.confidence.bootstrap import bootstrap, percentile_interval
from olmotrain.errors import UserError
from olmotrain.mixture.propose import bootstrap_interval, propose, propose_from_table
from olmotrain.mixture.regression import LogLinear, Model, check_runs, cross_validate, fit
from olmotrain.mixture.simplex import Constraints, dirichlet, project
from olmotrain.mixture.tables import (
    check_metric,
    from_frames,
    objective,
    parse_metric,
    read_tables,
)

NOISE = 0.01
REGRET = 0.01
"""Log-linear proposals: regret (true objective at the proposal minus the true optimum) below
this share of the true objective's range over the simplex."""
TREE_REGRET = 0.1
FAST = {"reps": 10, "candidates": 4000}
"""Enough to test the proposal; the interval's own tests use more resamples."""


@dataclass
class Law:
    """A known data mixing law: per-domain losses and the true (capped) optimum."""

    c: np.ndarray
    k: np.ndarray
    T: np.ndarray

    def domains(self, R: np.ndarray) -> np.ndarray:
        return self.c + self.k * np.exp(np.atleast_2d(R) @ self.T)

    def __call__(self, R: np.ndarray) -> np.ndarray:
        return self.domains(R).mean(axis=1)

    def optimum(self, upper: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        S = len(self.c)
        hi = np.ones(S) if upper is None else upper
        best = None
        for start in np.random.default_rng(1).dirichlet(np.ones(S), 12):
            result = minimize(
                lambda w: float(self(w)[0]),
                np.minimum(start, hi) / np.minimum(start, hi).sum(),
                method="SLSQP",
                bounds=list(zip(np.zeros(S), hi, strict=True)),
                constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}],
                options={"ftol": 1e-14, "maxiter": 500},
            )
            if best is None or result.fun < best.fun:
                best = result
        return best.x, float(best.fun)

    def span(self) -> float:
        """The objective's range over the simplex (convex: its maximum is at a corner)."""
        return float(self(np.eye(len(self.c))).max() - self.optimum()[1])


def make_law(S: int, seed: int) -> Law:
    rng = np.random.default_rng(seed)
    T = 0.3 * rng.normal(size=(S, S))
    T[np.diag_indices(S)] = -rng.uniform(2, 4, size=S)
    return Law(c=1 + rng.uniform(size=S), k=0.5 + rng.uniform(size=S), T=T)


def swarm(law: Law, n: int, seed: int):
    """A table of ``n`` noisy runs of ``law`` and the objective (every domain, equal weights)."""
    S = len(law.c)
    rng = np.random.default_rng(seed)
    R = rng.dirichlet(np.ones(S), n)
    Y = law.domains(R) + NOISE * rng.normal(size=(n, S))
    runs = [f"run{i:03d}" for i in range(n)]
    ratios = pd.DataFrame(R, columns=[f"src{j}" for j in range(S)]).assign(run=runs)
    metrics = pd.DataFrame(Y, columns=[f"eval/lm/d{j}/BPB" for j in range(S)]).assign(run=runs)
    table = from_frames(ratios, metrics, "synthetic")
    return table, {f"eval/lm/d{j}/BPB": 1.0 / S for j in range(S)}


def weights_of(proposal) -> np.ndarray:
    return np.array(list(proposal.proposal.values()))


# --- the proposal against the truth -----------------------------------------------------------


@pytest.mark.parametrize("S", [3, 5])
@pytest.mark.parametrize("model", [None, "log_linear"])
def test_proposal_recovers_the_optimum_of_a_known_law(S, model):
    law = make_law(S, seed=S)
    table, metric = swarm(law, 40, seed=10 + S)
    p = propose_from_table(table, metric, model=model, prior="uniform", **FAST)
    assert p.model == "log_linear"  # chosen by CV when model is None
    assert p.minimize  # BPB: lower is better, from the name
    w = weights_of(p)
    regret = float(law(w)[0]) - law.optimum()[1]
    assert 0 <= regret < REGRET * law.span(), (regret, law.span())
    # Better than simply taking the swarm's best run, where there is room to be (5 sources).
    if S == 5:
        assert regret < float(law(table.weights).min()) - law.optimum()[1]


def test_lightgbm_proposal_is_near_the_optimum():
    law = make_law(5, seed=5)
    table, metric = swarm(law, 40, seed=15)
    p = propose_from_table(table, metric, model="lightgbm", prior="uniform", **FAST)
    regret = float(law(weights_of(p))[0]) - law.optimum()[1]
    assert regret < TREE_REGRET * law.span()


def test_a_cap_holds_exactly_and_binds_where_the_optimum_is_beyond_it():
    law = make_law(3, seed=3)
    assert law.optimum()[0][0] > 0.3  # unconstrained, src0 wants more than its cap below
    table, metric = swarm(law, 40, seed=13)
    available = {"src0": 2_000_000, "src1": 10**9, "src2": 10**9}
    p = propose_from_table(
        table, metric, prior="uniform", available=available, target_tokens=10**7, **FAST
    )
    w = weights_of(p)
    assert w[0] <= 0.2 and w[0] > 0.2 - 1e-6
    assert abs(w.sum() - 1) < 1e-12 and np.all(w >= 0)
    assert p.repetition["src0"] <= 1.0 and p.repetition["src0"] > 0.999
    assert p.caps == {"src0": 0.2, "src1": None, "src2": None}
    capped, best = law.optimum(np.array([0.2, 1, 1]))
    assert float(law(w)[0]) - best < REGRET * law.span()
    shown = p.to_json()["proposal"]
    assert shown["src0"] <= 0.2 and abs(sum(shown.values()) - 1) < 1e-9


def test_fixed_weights_are_exact():
    law = make_law(3, seed=3)
    table, metric = swarm(law, 40, seed=13)
    p = propose_from_table(table, metric, prior="uniform", fixed={"src1": 0.3}, **FAST)
    assert p.proposal["src1"] == 0.3
    assert p.to_json()["proposal"]["src1"] == 0.3
    assert abs(sum(p.proposal.values()) - 1) < 1e-12


def test_every_weight_fixed_predicts_that_mix():
    """Fixing every source asks what that one mix would score: it is the proposal, with its
    prediction and interval."""
    law = make_law(3, seed=3)
    table, metric = swarm(law, 40, seed=13)
    fixed = {"src0": 0.5, "src1": 0.3, "src2": 0.2}
    p = propose_from_table(table, metric, prior="uniform", fixed=fixed, **FAST)
    assert p.proposal == fixed and p.to_json()["proposal"] == fixed
    lo, hi = p.interval
    assert lo <= p.predicted <= hi
    assert abs(p.predicted - float(law(np.array([0.5, 0.3, 0.2]))[0])) < 0.05 * law.span()


def test_kl_weight_pulls_toward_the_prior():
    law = make_law(3, seed=3)
    table, metric = swarm(law, 40, seed=13)
    prior = {"src0": 0.1, "src1": 0.6, "src2": 0.3}
    free = weights_of(propose_from_table(table, metric, prior=prior, **FAST))
    pulled = weights_of(propose_from_table(table, metric, prior=prior, kl_weight=1e3, **FAST))
    target = np.array(list(prior.values()))
    assert np.abs(free - target).max() > 0.2  # without the penalty it goes elsewhere
    assert np.abs(pulled - target).max() < 0.01
    mild = weights_of(propose_from_table(table, metric, prior=prior, kl_weight=0.05, **FAST))
    assert np.abs(mild - target).sum() < np.abs(free - target).sum()


def test_higher_is_better_metrics_are_maximised():
    law = make_law(3, seed=3)
    table, metric = swarm(law, 40, seed=13)
    table.metrics = -table.metrics.rename(columns=lambda c: c.replace("BPB", "(accuracy)"))
    metric = {k.replace("BPB", "(accuracy)"): v for k, v in metric.items()}
    p = propose_from_table(table, metric, prior="uniform", **FAST)
    assert not p.minimize
    assert float(law(weights_of(p))[0]) - law.optimum()[1] < REGRET * law.span()


def test_propose_finds_the_optimum_of_a_known_model():
    """The search alone: handed the true law as the model, it lands on the optimum (the
    candidates get near it, the SLSQP refinement onto it)."""
    law = make_law(5, seed=5)
    laws = tuple(LogLinear(float(law.c[i]), float(law.k[i]), law.T[:, i]) for i in range(5))
    model = Model("log_linear", laws, np.full(5, 0.2))
    c = Constraints(tuple(f"src{j}" for j in range(5)), (1.0,) * 5)
    w = propose(model, c, True, np.random.default_rng(0), candidates=4000)
    assert float(law(w)[0]) - law.optimum()[1] < 1e-6 * law.span()


def test_propose_searches_only_the_feasible_set():
    """A linear model's optimum is a corner; with caps it is the best feasible corner."""
    law = make_law(4, seed=4)
    table, metric = swarm(law, 40, seed=14)
    Y = table.metrics[list(metric)].to_numpy()
    model = fit("linear", table.weights, Y, np.array(list(metric.values())))
    c = Constraints(("src0", "src1", "src2", "src3"), (0.5, 0.5, 0.5, 0.5), {"src3": 0.1})
    w = propose(model, c, True, np.random.default_rng(0), candidates=2000)
    assert w[3] == 0.1 and np.all(w <= 0.5) and abs(w.sum() - 1) < 1e-12
    # The free mass is 0.9 and every free cap 0.5: a corner has one source at 0.5, one at 0.4.
    assert sorted(np.round(w[:3], 9).tolist())[-1] == 0.5


# --- the feasible set -------------------------------------------------------------------------


CAPPED = Constraints(
    sources=("a", "b", "c", "d", "e"),
    upper=(0.15, 1.0, 0.4, 1.0, 0.05),
    fixed={"d": 0.2},
    prior=(0.1, 0.3, 0.2, 0.2, 0.2),
)


def test_projection_is_exact_idempotent_and_nearest():
    rng = np.random.default_rng(0)
    x = rng.normal(scale=3, size=(500, 5))
    p = project(x, CAPPED)
    lo, hi = CAPPED.bounds()
    assert np.all(p >= lo) and np.all(p <= hi)
    assert np.all(p[:, 3] == 0.2)
    assert np.abs(p.sum(axis=1) - 1).max() < 1e-12
    assert np.abs(project(p, CAPPED) - p).max() < 1e-12
    # Nearest: x - p makes an obtuse angle with every feasible direction y - p.
    y = dirichlet(500, 5.0, CAPPED, rng)
    assert np.max(np.einsum("ij,ij->i", x - p, y - p)) < 1e-9
    assert np.all(np.linalg.norm(x - p, axis=1) <= np.linalg.norm(x - y, axis=1) + 1e-12)


def test_dirichlet_is_reproducible_and_feasible():
    a = dirichlet(200, 5.0, CAPPED, np.random.default_rng(7))
    b = dirichlet(200, 5.0, CAPPED, np.random.default_rng(7))
    c = dirichlet(200, 5.0, CAPPED, np.random.default_rng(8))
    assert np.array_equal(a, b) and not np.allclose(a, c)
    lo, hi = CAPPED.bounds()
    assert np.all(a >= lo) and np.all(a <= hi) and np.abs(a.sum(axis=1) - 1).max() < 1e-12
    assert np.unique(a.round(6), axis=0).shape[0] > 190  # draws, not one point


def test_infeasible_constraints_name_the_limiting_source():
    c = Constraints(
        ("code", "web", "books"),
        (0.03, 0.40, 1.0),
        {"books": 0.1},
        cap_reason={"code": "code has 2.1M tokens x max_repetition_ratio 4 for the target's 280M"},
    )
    with pytest.raises(UserError, match=r"0\.53 < 1.*most limiting source code") as e:
        c.check()
    assert "2.1M tokens" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UserError, match="add up to 1.1 > 1"):
        Constraints(("a", "b"), (1, 1), {"a": 0.6, "b": 0.5}).check()
    with pytest.raises(UserError, match="fixed at 0.5 above its cap"):
        Constraints(("a", "b"), (0.3, 1), {"a": 0.5}).check()


# --- regressions ------------------------------------------------------------------------------


def test_cross_validation_prefers_the_true_law():
    law = make_law(5, seed=5)
    table, metric = swarm(law, 40, seed=15)
    Y = table.metrics[list(metric)].to_numpy()
    cw = np.array(list(metric.values()))
    log_linear = cross_validate("log_linear", table.weights, Y, cw)
    linear = cross_validate("linear", table.weights, Y, cw)
    assert log_linear.rmse < linear.rmse
    assert log_linear.spearman > 0.9
    assert len(log_linear.oof) == 40


def test_the_fitted_law_predicts_new_mixes():
    law = make_law(5, seed=5)
    table, metric = swarm(law, 40, seed=15)
    Y = table.metrics[list(metric)].to_numpy()
    model = fit("log_linear", table.weights, Y, np.array(list(metric.values())))
    fresh = np.random.default_rng(99).dirichlet(np.ones(5), 200)
    assert np.sqrt(np.mean((model.predict(fresh) - law(fresh)) ** 2)) < 0.01


def test_bootstrap_interval_contains_the_prediction_and_narrows_with_runs():
    law = make_law(3, seed=3)
    widths = []
    for n in (20, 160):
        table, metric = swarm(law, n, seed=n)
        Y = table.metrics[list(metric)].to_numpy()
        cw = np.array(list(metric.values()))
        at = np.array([0.4, 0.2, 0.4])
        point = fit("log_linear", table.weights, Y, cw).predict(at)[0]
        lo, hi = bootstrap_interval("log_linear", table.weights, Y, cw, at, reps=60)
        assert lo <= point <= hi
        widths.append(hi - lo)
    assert widths[1] < 0.6 * widths[0]


def test_bootstrap_of_a_mean_matches_its_standard_error():
    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    samples = bootstrap(lambda rows: float(x[rows].mean()), len(x), 1000, rng)
    lo, hi = percentile_interval(samples, 0.95)
    assert lo < x.mean() < hi
    assert (hi - lo) == pytest.approx(2 * 1.96 * x.std() / 20, rel=0.15)


# --- tables and the JSON ----------------------------------------------------------------------


def write(tmp_path, ratios: str, metrics: str):
    (tmp_path / "ratios.csv").write_text(ratios)
    (tmp_path / "metrics.csv").write_text(metrics)
    return tmp_path / "ratios.csv", tmp_path / "metrics.csv"


GOOD_RATIOS = "run,name,web,code\nr1,first,0.7,0.3\nr2,second,0.5,0.5\nr3,third,0.2,0.8\n"
GOOD_METRICS = "run,eval/lm/web/BPB,eval/lm/python code/BPB\nr1,1.0,2.0\nr2,1.1,1.9\nr3,1.3,1.7\n"


def test_tables_read_olmix_layout(tmp_path):
    table = read_tables(*write(tmp_path, GOOD_RATIOS, GOOD_METRICS))
    assert table.runs == ["r1", "r2", "r3"] and table.sources == ["web", "code"]
    assert table.weights.tolist() == [[0.7, 0.3], [0.5, 0.5], [0.2, 0.8]]
    metric = parse_metric(["eval/lm/web/BPB=1", "eval/lm/python code/BPB=3"])
    assert metric == {"eval/lm/web/BPB": 0.25, "eval/lm/python code/BPB": 0.75}
    assert objective(table, metric).tolist() == pytest.approx([1.75, 1.7, 1.6])
    assert parse_metric(["a b/c"]) == {"a b/c": 1.0}
    assert parse_metric(["x", "y"]) == {"x": 0.5, "y": 0.5}


@pytest.mark.parametrize(
    ("ratios", "metrics", "words"),
    [
        ("run,web,code\nr1,1.1,-0.1\n", "run,m\nr1,1\n", r"run r1: weight of code is -0.1; weights must be >= 0"),
        ("run,web,code\nr1,0.5,0.5\nr2,0.6,0.33\n", "run,m\nr1,1\nr2,2\n", r"run r2: weights add up to 0.93, not 1"),
        (GOOD_RATIOS, "run,m\nr1,1\n", r"2 run\(s\) in .*ratios.csv are not in .*metrics.csv: r2, r3"),
        (GOOD_RATIOS, "run,m\nr1,1\nr2,1\nr3,1\nr9,1\n", r"1 run\(s\) in .*metrics.csv are not in .*ratios.csv: r9"),
        ("web,code\n0.5,0.5\n", "run,m\nr1,1\n", r"ratios.csv: no 'run' column"),
        ("run,web,code\nr1,0.5,0.5\nr1,0.5,0.5\n", "run,m\nr1,1\n", r"run r1 appears more than once"),
        ("run,web,code\nr1,0.5,0.5\n", "run,m\nr1,n/a?\n", r"metrics.csv: run r1: m is 'n/a\?', not a number"),
        ("run,web,code\nr1,0.5,half\n", "run,m\nr1,1\n", r"ratios.csv: run r1: code is 'half', not a number"),
    ],
)  # fmt: skip
def test_bad_tables_are_one_line_errors(tmp_path, ratios, metrics, words):
    with pytest.raises(UserError, match=words) as e:
        read_tables(*write(tmp_path, ratios, metrics))
    assert "\n" not in str(e.value)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(UserError, match="nope.csv: no such file"):
        read_tables(tmp_path / "nope.csv", tmp_path / "metrics.csv")
    ratios, metrics = write(tmp_path, GOOD_RATIOS, "")
    with pytest.raises(UserError, match="metrics.csv: not a readable CSV file"):
        read_tables(ratios, metrics)


def test_unknown_metric_suggests_close_columns(tmp_path):
    table = read_tables(*write(tmp_path, GOOD_RATIOS, GOOD_METRICS))
    with pytest.raises(UserError, match=r"no metric column 'eval/lm/web/bpb'; did you mean 'eval/lm/web/BPB'"):  # fmt: skip
        check_metric(table, {"eval/lm/web/bpb": 1.0})
    with pytest.raises(UserError, match="COLUMN=WEIGHT"):
        parse_metric(["m=-1"])


def test_bad_proposal_inputs_are_one_line_errors():
    law = make_law(3, seed=3)
    table, metric = swarm(law, 40, seed=13)
    few, _ = swarm(law, 6, seed=1)
    cases = [
        (few, {"prior": "uniform"}, r"a fit of 3 sources needs at least \d+ runs .*; got 6"),
        (table, {"prior": "uniform", "target_tokens": 10**7}, r"--target-tokens needs --available .*missing: src0, src1, src2"),
        (table, {}, r"--prior natural needs --available"),
        (table, {"prior": "uniform", "fixed": {"scr1": 0.2}}, r"--fixed: unknown source 'scr1'; did you mean src1"),
        (table, {"prior": "uniform", "available": {"src0": 10**6, "src1": 10**6, "src2": 10**9}, "target_tokens": 10**9, "fixed": {"src2": 0.5}},
         r"no feasible mix: fixed weights 0.5 \+ the caps of the free sources \(src0 0.001 \(src0 has 1M tokens x max_repetition_ratio 1 for the target's 1B\), src1 0.001 .*most limiting source src0"),
        (table, {"prior": "uniform", "model": "xgboost"}, r"--model xgboost: choose one of log_linear, lightgbm, linear"),
    ]  # fmt: skip
    for t, kwargs, words in cases:
        with pytest.raises(UserError, match=words) as e:
            propose_from_table(t, metric, **kwargs)
        assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="got 9"):
        check_runs(9, 8)


def test_proposal_json_contract():
    law = make_law(3, seed=3)
    table, metric = swarm(law, 40, seed=13)
    available = {"src0": 10**8, "src1": 10**8, "src2": 10**8}
    p = propose_from_table(
        table, {"eval/lm/d0/BPB": 1.0}, available=available, target_tokens=10**8, **FAST
    )
    out = json.loads(json.dumps(p.to_json(), allow_nan=False))
    assert list(out)[:7] == [
        "metric", "model", "cv", "proposal", "predicted", "interval", "repetition",
    ]  # fmt: skip
    assert out["metric"] == "eval/lm/d0/BPB"
    assert set(out["cv"]) == {"log_linear", "lightgbm", "linear"}
    assert set(out["cv"]["linear"]) == {"rmse", "spearman"}
    assert out["interval"][0] <= out["predicted"] <= out["interval"][1]
    assert out["prior"] == pytest.approx({"src0": 1 / 3, "src1": 1 / 3, "src2": 1 / 3})
    w = out["proposal"]
    assert out["repetition"] == pytest.approx({s: w[s] for s in w}, abs=1e-5)
    assert out["best_run"]["run"] in table.runs
    assert w["src0"] > 0.5  # domain 0 alone: mostly its own source
