"""The scaling-law fit (``olmotrain.ladder.fit``) against laws known in advance: points placed
exactly on ``L = A C^-alpha + E``, ``Acc = a / (1 + exp(-k (L - L0))) + b`` and
``L = E + A / N^alpha + B / D^beta`` give those laws back; the leave-largest-out prediction is the
law's value; the bounds, warm starts and Huber loss of the fit; which rows are each size's final
point; which loss an accuracy is fitted through; and every refusal and warning word for word.

Pure calls on small hand-made tables (no training, no CLI). Compute is in small arbitrary units
(the fit is in log space, so the unit only rescales A): the iterative fits converge several times
faster there than on realistic FLOP counts. Each test fits its ladder itself, never from a cache:
``make mutation`` runs only the tests that reach a mutated function, so a result cached by an
earlier test would hide the mutant from every later one.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from olmotrain.errors import UserError
from olmotrain.ladder.fit import (
    Chinchilla,
    PowerLaw,
    Sigmoid,
    _chinchilla,
    _holdout,
    check_metric,
    extrapolate,
    final_points,
    fit_chinchilla,
    fit_ladder,
    fit_power_law,
    fit_sigmoid,
    higher_is_better,
    no_dof_warning,
    task_loss_column,
)

ACC = "eval/downstream/hellaswag (accuracy)"
ACC_BPB = "eval/downstream/hellaswag (BPB)"
BPB = "eval/lm/english_docs/BPB"
N = {"s1": 1e6, "s2": 4e6, "s3": 1.6e7, "s4": 6.4e7}
POWER_LAW_ERROR = "a power law needs 3 or more points with positive compute and loss"
SIGMOID_ERROR = "the loss-to-accuracy step needs 4 or more checkpoints"
NO_DOF_TAIL = (
    ": such a law passes through its points whatever they are, so it tests nothing; add sizes "
    "(or checkpoints) to the ladder"
)


def raises_exactly(error: type[Exception], message: str):
    """``pytest.raises`` for exactly ``message`` (one line, nothing before or after)."""
    return pytest.raises(error, match=f"^{re.escape(message)}$")


# --- the laws, by hand ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "higher"),
    [
        ("eval/downstream/arc_easy (accuracy)", True),
        ("eval/downstream/squad (F1)", True),
        ("eval/downstream/mmlu (acc)", True),
        ("acc", True),
        ("eval/lm/english_docs/CE loss", False),
        ("eval/lm/english_docs/BPB", False),
        ("eval/downstream/arc_easy (BPB)", False),
        ("train/CE loss", False),
        ("eval/lm/english_docs/PPL", False),
        ("accumulated loss", False),  # "acc" only as a whole word
        ("eval/downstream/squad (f1)", False),  # olmo-core writes F1
    ],
)  # fmt: skip
def test_which_metrics_are_better_higher(metric, higher):
    assert higher_is_better(metric) is higher


def test_the_laws_evaluate_as_written():
    # 2 / sqrt(C) + 1 at C = 1, 4, 16
    assert PowerLaw(A=2.0, alpha=0.5, E=1.0)([1, 4, 16]).tolist() == [3.0, 2.0, 1.5]
    assert PowerLaw(A=2.0, alpha=0.5, E=1.0)(4) == 2.0
    # whole numbers everywhere (integer compute, an exponent of 1) still divide as floats
    assert PowerLaw(A=3, alpha=1, E=1)([1, 2, 4]).tolist() == [4.0, 2.5, 1.75]
    # exp(-k (L - L0)) = 3^(L - 1): 1/3 at L = 0, 1 at L0, 3 at L = 2
    sigmoid = Sigmoid(a=0.5, k=-math.log(3), L0=1.0, b=0.25)
    assert sigmoid([0.0, 1.0, 2.0]) == pytest.approx([0.625, 0.5, 0.375], rel=1e-15)
    # 1 + 8 / sqrt(16) + 27 / sqrt(81)
    assert Chinchilla(E=1.0, A=8.0, alpha=0.5, B=27.0, beta=0.5)(16, 81) == 6.0
    # parameter and token counts are integers: 10^10 squared overflows int64, not float
    law = Chinchilla(E=1.0, A=1e20, alpha=2, B=1e20, beta=2)
    assert law(10**10, [10**10, 2 * 10**10]).tolist() == pytest.approx([3.0, 2.25], rel=1e-12)


# --- fit_power_law --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("compute", "loss"),
    [
        ([1.0, 2.0], [2.0, 1.5]),  # 2 points for 3 parameters
        ([0.0, 1.0, 2.0], [3.0, 2.0, 1.5]),
        ([-1.0, 1.0, 2.0], [3.0, 2.0, 1.5]),
        ([1.0, 2.0, 4.0], [3.0, 0.0, 1.5]),
        ([1.0, 2.0, 4.0], [3.0, 2.0, -1.5]),
    ],
)
def test_a_power_law_refuses_too_few_or_non_positive_points(compute, loss):
    with raises_exactly(ValueError, POWER_LAW_ERROR):
        fit_power_law(compute, loss)


def test_a_warm_start_near_the_answer_converges_to_it():
    """The bootstrap's refit: one start (the law of the full data), looser tolerances."""
    compute = np.array([1.0, 2.0, 4.0, 8.0])
    truth = PowerLaw(A=2.0, alpha=0.5, E=1.0)
    law = fit_power_law(compute, truth(compute), start=PowerLaw(A=1.5, alpha=0.4, E=0.8))
    assert law.A == pytest.approx(2.0, rel=1e-8)
    assert law.alpha == pytest.approx(0.5, rel=1e-8)
    assert law.E == pytest.approx(1.0, rel=1e-8)


def test_compute_may_be_exact_integer_flop_counts():
    """6 N D in Python integers passes int64 at 1e9 parameters x 2e10 tokens."""
    compute = [k * 10**20 for k in (1, 2, 4, 8)]
    truth = PowerLaw(A=2e10, alpha=0.5, E=1.0)
    law = fit_power_law(compute, truth(compute), start=truth)
    assert law.A == pytest.approx(2e10, rel=1e-9) and law.alpha == pytest.approx(0.5, rel=1e-9)


def test_a_warm_start_outside_the_bounds_is_moved_inside_them():
    compute = np.array([1.0, 2.0, 4.0, 8.0])
    # a loss with no floor: E goes to its lower bound e^-30, from a start below it
    law = fit_power_law(compute, 2 * compute**-0.5, start=PowerLaw(A=1.5, alpha=0.4, E=1e-20))
    assert law.A == pytest.approx(2.0, rel=1e-9) and law.alpha == pytest.approx(0.5, rel=1e-9)
    assert law.E == pytest.approx(math.exp(-30), rel=1e-6)
    # a steeper law than alpha = 5 stops at 5; a start above that bound and a floor E above the
    # smallest loss (0.3000...) are clamped to where the fit may go
    steep = 6 * compute**-6.0 + 0.3
    law = fit_power_law(compute, steep, start=PowerLaw(A=1.0, alpha=8.0, E=100.0))
    assert law.alpha == pytest.approx(5.0, abs=1e-9)
    assert law.E < steep.min()


def test_one_bad_point_barely_moves_the_law():
    """The Huber loss (delta 1e-3 on log residuals): a point 5% off the law (a diverged run)
    leaves the other five within 0.1% of theirs, where least squares would spread the error."""
    compute = 2.0 ** np.arange(6)
    truth = PowerLaw(A=2.0, alpha=0.5, E=1.0)
    loss = truth(compute)
    loss[3] *= 1.05
    law = fit_power_law(compute, loss, start=truth)
    errors = law(compute) / loss - 1
    assert np.abs(np.delete(errors, 3)).max() < 1e-3
    assert errors[3] == pytest.approx(1 / 1.05 - 1, abs=2e-3)


# --- fit_sigmoid, fit_chinchilla ------------------------------------------------------------

SIGMOID = Sigmoid(a=0.6, k=-6.0, L0=1.1, b=0.25)


def test_a_sigmoid_through_four_checkpoints_is_recovered():
    loss = np.array([1.0, 1.2, 1.4, 1.8])
    law = fit_sigmoid(loss, SIGMOID(loss))
    # a > 0 and k < 0 (not the mirror image -a, -k, b + a, which draws the same curve)
    assert law.a == pytest.approx(0.6, rel=1e-8)
    assert law.k == pytest.approx(-6.0, rel=1e-8)
    assert law.L0 == pytest.approx(1.1, rel=1e-8)
    assert law.b == pytest.approx(0.25, rel=1e-8)
    with raises_exactly(ValueError, SIGMOID_ERROR):
        fit_sigmoid(loss[:3], SIGMOID(loss[:3]))


def test_chinchilla_needs_five_points():
    with raises_exactly(ValueError, "L(N, D) needs 5 or more points"):
        fit_chinchilla([16, 16, 64, 64], [64, 256, 256, 1024], [1.25, 1.0, 0.75, 0.625])


SMALL_CHINCHILLA = Chinchilla(E=0.25, A=2.0, alpha=0.5, B=4.0, beta=0.5)


def ends_frame(*, checkpoint: bool = True) -> pd.DataFrame:
    """Five decayed checkpoints (period ends) on ``SMALL_CHINCHILLA`` (losses 1.25 .. 0.5, all
    below 1), one of them from two seeds either side of it, among checkpoints that are no ends."""
    rows = []
    ends = [(16, 64), (16, 256), (64, 256), (64, 1024), (256, 1024)]
    for i, (n, d) in enumerate(ends):
        value = float(SMALL_CHINCHILLA(n, d))
        seeds = [(1, value + 0.125), (2, value - 0.125)] if i == 0 else [(1, value)]
        for seed, v in seeds:
            rows.append({"size": f"n{n}", "seed": seed, "num_params": n, "tokens": d,
                         "checkpoint": f"period {i} end", "loss": v})  # fmt: skip
    # not ends: a mid-period checkpoint and an in-loop evaluation (no checkpoint label)
    rows.append({"size": "n16", "seed": 1, "num_params": 16, "tokens": 32,
                 "checkpoint": "step 2", "loss": 5.0})  # fmt: skip
    rows.append({"size": "n256", "seed": 1, "num_params": 256, "tokens": 512,
                 "checkpoint": np.nan, "loss": 5.0})  # fmt: skip
    frame = pd.DataFrame(rows)
    return frame if checkpoint else frame.drop(columns="checkpoint")


def test_chinchilla_is_fitted_on_the_period_ends_seeds_averaged():
    law, dof = _chinchilla(ends_frame(), "loss")
    assert dof == 0  # 5 points, 5 parameters
    for name, value in vars(SMALL_CHINCHILLA).items():
        assert getattr(law, name) == pytest.approx(value, rel=1e-6), name


def test_no_chinchilla_without_several_durations_or_five_ends():
    frame = ends_frame()
    assert _chinchilla(frame[frame["tokens"] != 64], "loss") is None  # 4 ends
    assert _chinchilla(frame.assign(checkpoint="step 10"), "loss") is None  # no period ends
    one_each = pd.DataFrame({
        "size": ["a", "b", "c", "d", "e"], "num_params": [1, 2, 4, 8, 16],
        "tokens": [10, 20, 40, 80, 160], "checkpoint": "period 0 end",
        "loss": [3.0, 2.5, 2.0, 1.5, 1.0],
    })  # fmt: skip
    assert _chinchilla(one_each, "loss") is None  # 5 ends, one duration per size


# --- final_points, task_loss_column, check_metric -------------------------------------------


def test_final_points_are_each_runs_last_step_averaged_over_seeds():
    rows = [  # (mix, size, seed, num_params, step, flops, loss), in no particular order
        ("b", "small", 2, 10, 15, 150.0, 3.5),  # seed 2 stopped earlier: its last step is 15
        ("b", "small", 1, 10, 20, 200.0, 3.0),
        ("b", "small", 1, 10, 10, 100.0, 9.0),
        ("b", "small", 2, 10, 10, 100.0, 9.0),
        ("b", "big", 1, 40, 20, 800.0, 2.0),  # "big" sorts before "small" by name, not flops
        ("a", "small", 1, 10, 20, 200.0, 3.1),
        ("a", "big", 1, 40, 20, 800.0, 2.5),
        ("a", "big", 1, 40, 5, 200.0, 7.0),
    ]
    frame = pd.DataFrame(
        rows, columns=["mix", "size", "seed", "num_params", "step", "flops", "loss"]
    )
    points = final_points(frame, "loss").reset_index(drop=True)
    expected = pd.DataFrame({
        "mix": ["a", "a", "b", "b"],
        "size": ["small", "big", "small", "big"],
        "num_params": [10, 40, 10, 40],
        "flops": [200.0, 800.0, 175.0, 800.0],
        "value": [3.1, 2.5, 3.25, 2.0],
    })  # fmt: skip
    pd.testing.assert_frame_equal(points, expected)


def test_final_points_of_a_table_whose_index_repeats():
    first = pd.DataFrame({"mix": "m", "size": "s", "seed": 1, "num_params": 1, "step": [10],
                          "flops": [1.0], "loss": [9.0]})  # fmt: skip
    last = first.assign(step=20, flops=2.0, loss=3.0)
    points = final_points(pd.concat([first, last]), "loss")  # both rows have the label 0
    assert points["value"].tolist() == [3.0] and points["flops"].tolist() == [2.0]


@pytest.mark.parametrize(
    ("metric", "columns", "expected"),
    [
        ("eval/lm/english_docs/CE loss", [], "eval/lm/english_docs/CE loss"),
        (ACC, [ACC_BPB, "eval/downstream/hellaswag (CE loss)"], ACC_BPB),
        (ACC, ["eval/downstream/hellaswag (CE loss)"], "eval/downstream/hellaswag (CE loss)"),
        ("acc", ["acc (BPB)"], "acc (BPB)"),  # an unlabelled name is its own task
    ],
)  # fmt: skip
def test_an_accuracy_is_fitted_through_its_tasks_loss(metric, columns, expected):
    frame = pd.DataFrame(columns=["size", "mix", metric, *columns])
    assert task_loss_column(frame, metric) == expected


def test_an_accuracy_without_a_task_loss_is_one_line():
    frame = pd.DataFrame(columns=["size", ACC, "eval/downstream/copa (BPB)"])
    message = (
        f"{ACC}: no task loss (eval/downstream/hellaswag (BPB) or (CE loss)) was collected to fit "
        "it by"
    )
    with raises_exactly(UserError, message):
        task_loss_column(frame, ACC)


FIXED = ["size", "mix", "seed", "num_params", "num_params_total", "step", "tokens", "flops",
         "checkpoint", "kind", "path", "same_as_step"]  # fmt: skip
METRICS = [
    "train/CE loss",
    "eval/lm/english_docs/CE loss",
    "eval/lm/english_docs/BPB",
    "eval/lm/python_code/CE loss",
    "eval/lm/python_code/BPB",
    "eval/downstream/arc_easy (accuracy)",
    "eval/downstream/arc_easy (BPB)",
    "eval/downstream/hellaswag (accuracy)",
    "eval/downstream/hellaswag (BPB)",
    "eval/downstream/copa (accuracy)",
]


def collected() -> pd.DataFrame:
    """One row of a collected table: the bookkeeping columns first, then ten metrics, the last
    one never measured."""
    frame = pd.DataFrame([[1.0] * (len(FIXED) + len(METRICS))], columns=FIXED + METRICS)
    frame["eval/downstream/copa (accuracy)"] = np.nan
    return frame


@pytest.mark.parametrize(
    ("metric", "hint"),
    [
        # at most 3 suggestions, closest first
        ("eval/lm/english_doc/CE loss", "did you mean 'eval/lm/english_docs/CE loss' or "
         "'eval/lm/english_docs/BPB' or 'eval/lm/python_code/CE loss'?"),
        # similarity 0.45 and 0.40: difflib's own cutoff (0.6) would suggest nothing
        ("hellaswag", "did you mean 'eval/downstream/hellaswag (BPB)' or "
         "'eval/downstream/hellaswag (accuracy)'?"),
        ("train/loss", "did you mean 'train/CE loss'?"),
        # nothing close: the first 8 metrics, never the bookkeeping columns
        ("zzz", "the collected metrics are train/CE loss, eval/lm/english_docs/CE loss, "
         "eval/lm/english_docs/BPB, eval/lm/python_code/CE loss, eval/lm/python_code/BPB, "
         "eval/downstream/arc_easy (accuracy), eval/downstream/arc_easy (BPB), "
         "eval/downstream/hellaswag (accuracy) ..."),
    ],
)  # fmt: skip
def test_a_metric_no_run_has_is_one_line_with_the_closest_names(metric, hint):
    with raises_exactly(UserError, f"no run has the metric '{metric}'; {hint}"):
        check_metric(collected(), metric)


def test_a_metric_with_values_passes_and_one_never_measured_does_not():
    assert check_metric(collected(), "train/CE loss") is None
    with pytest.raises(UserError, match=r"^no run has the metric 'eval/downstream/copa \(acc"):
        check_metric(collected(), "eval/downstream/copa (accuracy)")


def test_a_metric_never_measured_is_not_suggested_as_its_own_correction():
    with pytest.raises(UserError) as error:
        check_metric(collected(), "eval/downstream/copa (accuracy)")
    assert "did you mean 'eval/downstream/copa (accuracy)'" not in str(error.value)


# --- fit_ladder on a loss -------------------------------------------------------------------

LOSS_LAW = PowerLaw(A=0.5, alpha=0.5, E=0.25)
LOSS_FLOPS = {"s1": 0.25, "s2": 1.0, "s3": 4.0, "s4": 16.0}  # in units of 1e18, say
LOSS_VALUES = {"s1": 1.25, "s2": 0.75, "s3": 0.5, "s4": 0.35}  # s4 beats the law's 0.375


def loss_ladder() -> pd.DataFrame:
    """One mix, four sizes, one evaluation each, no checkpoint labels (a hand-made points
    table); BPB below 1 on ``LOSS_LAW`` but for the largest size."""
    return pd.DataFrame([
        {"size": s, "mix": "dclm", "seed": 1, "num_params": int(N[s]), "step": 100,
         "tokens": int(20 * N[s]), "flops": LOSS_FLOPS[s], BPB: LOSS_VALUES[s]}
        for s in N
    ])  # fmt: skip


def loss_result() -> dict:
    return fit_ladder(loss_ladder(), BPB)


def test_a_loss_is_fitted_in_one_step_and_the_largest_size_predicted_from_the_rest():
    result = loss_result()
    assert list(result) == ["metric", "fits"] and result["metric"] == BPB
    assert list(result["fits"]) == ["dclm"]
    fit = result["fits"]["dclm"]
    assert list(fit) == ["A", "alpha", "E", "dof", "points", "holdout"]
    assert fit["dof"] == 1
    assert fit["points"] == [
        {"size": s, "num_params": int(N[s]), "flops": LOSS_FLOPS[s], "value": LOSS_VALUES[s]}
        for s in N
    ]
    # the law through s1..s3 is LOSS_LAW exactly: it predicts 0.375 where 0.35 was measured
    holdout = fit["holdout"]
    assert list(holdout) == ["size", "predicted", "actual", "rel_error"]
    assert holdout["size"] == "s4" and holdout["actual"] == 0.35
    assert holdout["predicted"] == pytest.approx(LOSS_LAW(16.0), rel=1e-9)
    assert holdout["rel_error"] == pytest.approx((0.375 - 0.35) / 0.35, rel=1e-8)
    assert no_dof_warning(result) is None


def test_extrapolate_needs_three_sizes():
    assert extrapolate(loss_ladder(), "dclm", BPB, ["s1", "s2"], 16.0) is None
    assert extrapolate(loss_ladder(), "other", BPB, ["s1", "s2", "s3"], 16.0) is None


def test_a_holdout_measured_at_zero_has_no_relative_error():
    frame = loss_ladder()
    losses = final_points(frame, BPB)
    values = losses.assign(value=[0.5, 0.4, 0.3, 0.0])  # e.g. an accuracy of 0 at the target
    holdout = _holdout(frame, "dclm", BPB, losses, values)
    assert holdout is not None
    assert holdout["actual"] == 0.0 and holdout["rel_error"] is None
    assert _holdout(frame, "dclm", BPB, losses.iloc[:3], values) is None  # 3 sizes: none left


def test_fit_ladder_refusals_are_one_line():
    frame = loss_ladder()
    typo = "eval/lm/english_doc/BPB"
    with raises_exactly(UserError, f"no run has the metric '{typo}'; did you mean '{BPB}'?"):
        fit_ladder(frame, typo)
    two = frame[frame["size"].isin(["s1", "s2"])]
    message = (
        f"mix dclm: 2 size(s) have a final checkpoint with {BPB}; a scaling-law fit needs at "
        "least 3"
    )
    with raises_exactly(UserError, message):
        fit_ladder(two, BPB)
    # a size whose last evaluation lacks the metric does not count, whatever came before
    s3 = frame[frame["size"] == "s3"]
    unmeasured = pd.concat([two, s3.assign(step=50), s3.assign(**{BPB: np.nan})], ignore_index=True)
    with raises_exactly(UserError, message):
        fit_ladder(unmeasured, BPB)
    # an accuracy whose task loss has a column but no values
    accuracy = frame.assign(**{ACC: 0.5, ACC_BPB: np.nan})
    with pytest.raises(UserError, match=rf"^no run has the metric '{re.escape(ACC_BPB)}'; "):
        fit_ladder(accuracy, ACC)


# --- fit_ladder on an accuracy --------------------------------------------------------------

WEB_BPB = Chinchilla(E=0.7, A=60.0, alpha=0.3, B=80.0, beta=0.3)
WEB_LAW = PowerLaw(A=1.0, alpha=0.25, E=0.6)
CODE_LAW = PowerLaw(A=2.0, alpha=0.5, E=1.0)
CODE_FLOPS = {"s1": 1.0, "s2": 4.0, "s3": 16.0}
OUTLIER = 1.05
"""The web mix's s2 after its first period is 5% off L(N, D) (a bad evaluation)."""


def web_flops(size: str) -> float:
    """The compute at which ``WEB_LAW`` gives size's final BPB: the final points lie exactly on
    L(C) while every period end lies on L(N, D) (the table's compute is synthetic)."""
    final = float(WEB_BPB(N[size], 20 * N[size]))
    return ((final - WEB_LAW.E) / WEB_LAW.A) ** (-1 / WEB_LAW.alpha)


def accuracy_ladder() -> pd.DataFrame:
    """Two mixes, HellaSwag accuracy through its BPB:

    - web: four sizes, two periods each (ends at 10 and 20 tokens per parameter), BPB on
      ``WEB_BPB`` (final points on ``WEB_LAW``), accuracy on ``SIGMOID`` at every checkpoint;
    - code: three sizes, one plain checkpoint each, BPB on ``CODE_LAW``, accuracy 0.3.
    """
    rows = []
    for size, n in N.items():
        for period, (step, multiple) in enumerate([(50, 10), (100, 20)]):
            bpb = float(WEB_BPB(n, multiple * n)) * (OUTLIER if (size, period) == ("s2", 0) else 1)
            rows.append({"size": size, "mix": "web", "seed": 1, "num_params": int(n), "step": step,
                         "tokens": int(multiple * n), "flops": web_flops(size) * multiple / 20,
                         "checkpoint": f"period {period} end", ACC_BPB: bpb,
                         ACC: float(SIGMOID(bpb))})  # fmt: skip
    for size, flops in CODE_FLOPS.items():
        rows.append({"size": size, "mix": "code", "seed": 1, "num_params": int(N[size]),
                     "step": 100, "tokens": int(20 * N[size]), "flops": flops,
                     "checkpoint": "step 100", ACC_BPB: float(CODE_LAW(flops)), ACC: 0.3})  # fmt: skip
    return pd.DataFrame(rows)


def accuracy_result() -> dict:
    return fit_ladder(accuracy_ladder(), ACC)


def assert_law(fit: dict, law: PowerLaw | Sigmoid | Chinchilla, rel: float) -> None:
    for name, value in vars(law).items():
        assert fit[name] == pytest.approx(value, rel=rel), name


def test_an_accuracy_is_fitted_through_its_loss_per_mix():
    result = accuracy_result()
    assert list(result) == ["metric", "fits", "loss_metric"]
    assert result["metric"] == ACC and result["loss_metric"] == ACC_BPB
    assert list(result["fits"]) == ["code", "web"]
    code = result["fits"]["code"]
    assert list(code) == ["A", "alpha", "E", "dof", "points", "step2", "holdout"]
    assert_law(code, CODE_LAW, rel=1e-9)
    assert code["dof"] == 0
    assert code["points"] == [
        {"size": s, "num_params": int(N[s]), "flops": f, "value": float(CODE_LAW(f))}
        for s, f in CODE_FLOPS.items()
    ]
    # three checkpoints cannot fit a 4-parameter sigmoid; three sizes leave none to predict
    assert code["step2"] == {"error": SIGMOID_ERROR}
    assert code["holdout"] is None


def test_both_steps_recover_the_laws_and_predict_the_largest_size():
    web = accuracy_result()["fits"]["web"]
    assert list(web) == ["A", "alpha", "E", "dof", "points", "step2", "holdout", "chinchilla"]
    assert_law(web, WEB_LAW, rel=1e-9)
    assert web["dof"] == 1
    assert web["points"] == [
        {"size": s, "num_params": int(N[s]), "flops": pytest.approx(web_flops(s), rel=1e-12),
         "value": pytest.approx(float(WEB_BPB(N[s], 20 * N[s])), rel=1e-12)}
        for s in N
    ]  # fmt: skip
    assert_law(web["step2"], SIGMOID, rel=1e-8)
    assert web["step2"]["dof"] == 8 - 4  # every checkpoint of the mix
    # s1..s3 alone give the same two laws, so the prediction is s4's accuracy
    holdout = web["holdout"]
    actual = float(SIGMOID(WEB_BPB(N["s4"], 20 * N["s4"])))
    assert holdout["size"] == "s4"
    assert holdout["actual"] == pytest.approx(actual, rel=1e-12)
    assert holdout["predicted"] == pytest.approx(actual, rel=1e-6)
    assert holdout["rel_error"] == pytest.approx(0.0, abs=1e-6)


def test_period_ends_give_the_mixs_data_law_despite_one_bad_point():
    web = accuracy_result()["fits"]["web"]["chinchilla"]
    assert web["dof"] == 8 - 5
    assert_law(web, WEB_BPB, rel=0.05)
    law = Chinchilla(**{k: v for k, v in web.items() if k != "dof"})
    frame = accuracy_ladder()
    frame = frame[frame["mix"] == "web"]
    errors = law(frame["num_params"], frame["tokens"]) / frame[ACC_BPB] - 1
    bad = (frame["size"] == "s2") & (frame["step"] == 50)
    assert np.abs(errors[~bad]).max() < 2e-3  # Huber: the bad point does not pull the rest
    assert errors[bad].iloc[0] == pytest.approx(1 / OUTLIER - 1, abs=5e-3)


def test_no_dof_warning_names_every_law_with_as_many_points_as_parameters():
    line = "warning: no degrees of freedom left (code L(C): 3 points for 3 parameters)"
    assert no_dof_warning(accuracy_result()) == line + NO_DOF_TAIL
    result = {
        "fits": {
            "a": {"dof": 0, "step2": {"dof": 0}, "chinchilla": {"dof": -1}},
            "b": {"dof": 1, "step2": {"error": SIGMOID_ERROR}, "chinchilla": {"dof": 1}},
            "c": {"dof": 2},
        }
    }
    assert no_dof_warning(result) == (
        "warning: no degrees of freedom left (a L(C): 3 points for 3 parameters; a Acc(L): 4 "
        "points for 4 parameters; a L(N, D): 4 points for 5 parameters)" + NO_DOF_TAIL
    )
    result["fits"]["a"] = {"dof": 1, "step2": {"dof": 1}, "chinchilla": {"dof": 1}}
    assert no_dof_warning(result) is None
