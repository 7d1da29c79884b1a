"""``decide`` on small hand-made ladders whose answers are worked out by hand: the target size,
rankings, DataDecide's decision accuracy (ties, seeds), every pair's verdict, the compute of each
size, the decision-accuracy intervals and the scaling laws' predicted ranking."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from olmotrain.errors import UserError
from olmotrain.ladder.decide import decide, decision_accuracy, ranking

SIZES = {"s1": 1e6, "s2": 4e6, "s3": 1.6e7, "s4": 6.4e7, "tiny": 1e6, "mid": 4e6, "big": 1.6e7}
"""Sizes by parameters; tiny < mid < big, whose names sort the other way (big, mid, tiny)."""


def ladder(
    values: dict[str, dict[str, float | list[float]]],
    metric: str = "loss",
    noise: float = 0.0,
    evals: int = 1,
    seed: int = 0,
) -> pd.DataFrame:
    """One run per (size, mix, seed) ending at ``values[size][mix]`` (a list: one per seed),
    with ``evals`` evaluations of independent noise ``noise`` around a flat trend."""
    rng = np.random.default_rng(seed)
    rows = []
    for size, mixes in values.items():
        n = SIZES[size]
        for mix, v in mixes.items():
            for s, value in enumerate(v if isinstance(v, list) else [v]):
                for step in range(100 - evals + 1, 101):
                    noisy = value + (rng.normal(0, noise) if evals > 1 else 0.0)
                    rows.append({
                        "size": size, "mix": mix, "seed": s, "num_params": n, "step": step,
                        "tokens": step * 10, "flops": 6 * n * step * 10, metric: noisy,
                    })  # fmt: skip
    return pd.DataFrame(rows)


def test_decision_accuracy_on_hand_made_orderings():
    target = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}  # lower is better: a > b > c > d
    assert decision_accuracy({"a": 1, "b": 2, "c": 3, "d": 4}, target) == 1.0
    assert decision_accuracy({"a": 4, "b": 3, "c": 2, "d": 1}, target) == 0.0
    # one swapped pair (c, d) of six
    assert decision_accuracy({"a": 1, "b": 2, "c": 4, "d": 3}, target) == pytest.approx(5 / 6)
    # a tie at the small size counts half; a tie at the target is left out
    assert decision_accuracy({"a": 1, "b": 1, "c": 3, "d": 4}, target) == pytest.approx(5.5 / 6)
    tied_target = {"a": 1.0, "b": 1.0, "c": 3.0}
    assert decision_accuracy({"a": 2, "b": 1, "c": 3}, tied_target) == 1.0
    assert decision_accuracy({"a": 3, "b": 1, "c": 2}, tied_target) == 0.5
    assert decision_accuracy({"a": 1, "b": 2}, {"a": 1.0, "b": 1.0}) is None
    assert decision_accuracy({"a": 1}, {"a": 1.0}) is None
    # only the mixes present at both sizes count
    assert decision_accuracy({"a": 1, "b": 2, "e": 0}, target) == 1.0
    # the same orderings read the other way round when higher is better: agreement is agreement
    assert decision_accuracy({"a": 4, "b": 3}, {"a": 2.0, "b": 1.0}) == 1.0


def test_ranking_is_best_first_and_ties_by_name():
    assert ranking({"b": 2.0, "a": 3.0, "c": 1.0}, higher=False) == ["c", "b", "a"]
    assert ranking({"b": 2.0, "a": 3.0, "c": 1.0}, higher=True) == ["a", "b", "c"]
    assert ranking({"y": 1.0, "x": 1.0, "z": 0.0}, higher=False) == ["z", "x", "y"]
    assert ranking({"y": 1.0, "x": 1.0, "z": 0.0}, higher=True) == ["x", "y", "z"]


def test_the_target_is_the_largest_model_and_every_smaller_size_is_scored():
    values = {  # the target is big by its parameter count, not by name or order
        "big": {"x": 2.0, "y": 2.1, "z": 2.2},
        "tiny": {"x": 3.0, "y": 3.2, "z": 3.1},  # y and z swapped: 2 of 3 pairs right
        "mid": {"x": 2.5, "y": 2.6, "z": 2.7},
    }
    result = decide(ladder(values), "loss")
    assert result["target_size"] == "big" and result["metric"] == "loss"
    assert result["higher_is_better"] is False
    assert list(result["rankings"]) == ["tiny", "mid", "big"]
    assert result["rankings"]["tiny"] == ["x", "z", "y"]
    assert result["rankings"]["big"] == ["x", "y", "z"]
    assert result["decision_accuracy"] == {"tiny": pytest.approx(2 / 3), "mid": 1.0}
    # compute: the flops of each size's runs at their last step (6 N D)
    assert result["compute"] == {"tiny": pytest.approx(6e9), "mid": pytest.approx(2.4e10)}
    assert set(result["decision_accuracy_interval"]) == {"tiny", "mid"}
    assert set(result["noise"]) == {"tiny", "mid", "big"}
    # sizes= picks the sizes, the largest of them is the target
    two = decide(ladder(values), "loss", sizes=["tiny", "mid"])
    assert two["target_size"] == "mid"
    assert two["decision_accuracy"] == {"tiny": pytest.approx(2 / 3)}


def test_a_points_table_with_a_row_per_metric_decides_as_one_with_a_row_per_step():
    """Collected tables may hold several rows for one evaluated step (one per kind of
    evaluation); the runs' scores and noise must not count them twice."""
    values = {"tiny": {"x": [3.0, 3.1], "y": [3.3, 3.2]}, "mid": {"x": [2.0, 2.1], "y": [2.5, 2.4]}}
    frame = ladder(values, noise=0.05, evals=6)
    other = frame.assign(loss=np.nan, other=1.0)
    doubled = pd.concat([frame.assign(other=np.nan), other], ignore_index=True)
    assert decide(doubled, "loss") == decide(frame, "loss")


def test_a_table_without_sizes_in_parameters_or_flops_still_decides():
    values = {"s1": {"x": 3.0, "y": 3.1}, "s2": {"x": 2.0, "y": 2.5}}
    frame = ladder(values).drop(columns=["num_params", "flops"])
    result = decide(frame, "loss", sizes=["s1", "s2"])
    assert result["target_size"] == "s2" and result["decision_accuracy"] == {"s1": 1.0}
    assert np.isnan(result["compute"]["s1"])


def test_an_accuracy_is_higher_is_better():
    values = {"s1": {"x": 0.3, "y": 0.4}, "s2": {"x": 0.5, "y": 0.6}}
    metric = "arc_easy (accuracy)"
    result = decide(ladder(values, metric=metric, noise=0.01, evals=6), metric)
    assert result["higher_is_better"] is True
    assert result["rankings"]["s2"] == ["y", "x"]
    pair = result["pairs"][0]
    assert (pair["a"], pair["verdict"]) == ("y", "a") and pair["p_a_better"] > 0.99
    forced = decide(ladder(values), "loss", higher=True)
    assert forced["rankings"]["s2"] == ["y", "x"]


def test_each_seed_is_scored_against_the_seed_averaged_target():
    values = {
        "s1": {"x": [1.0, 2.0], "y": [2.0, 1.0]},  # seed 0 right, seed 1 wrong
        "s2": {"x": [1.0, 1.4], "y": [1.5, 1.5]},  # x better on average (1.2 < 1.5)
    }
    result = decide(ladder(values), "loss")
    assert result["decision_accuracy"] == {"s1": 0.5}
    assert result["rankings"]["s2"] == ["x", "y"]


def test_pairs_at_the_target_have_the_better_mix_first_and_their_verdicts():
    values = {
        "s1": {"x": 3.0, "y": 3.1, "z": 3.2},
        "s2": {"x": 2.0, "y": 2.5, "z": 2.51},  # x clearly best; y and z 0.01 apart
    }
    frame = ladder(values, noise=0.05, evals=8)
    result = decide(frame, "loss", confidence=0.9)
    pairs = {(p["a"], p["b"]): p for p in result["pairs"]}
    assert list(pairs) == [("x", "y"), ("x", "z"), ("y", "z")]
    last = frame[(frame["size"] == "s2") & (frame["step"] == 100)].set_index("mix")["loss"]
    for p in result["pairs"]:  # a run's score: its last evaluation (smooth=1)
        assert p["difference"] == pytest.approx(last[p["a"]] - last[p["b"]])
    assert pairs[("x", "y")]["difference"] < 0  # a loss: the better one is lower
    assert pairs[("x", "y")]["verdict"] == "a" and pairs[("x", "y")]["p_a_better"] > 0.99
    assert "seeds_needed" not in pairs[("x", "y")]
    close = pairs[("y", "z")]
    assert close["verdict"] == "inconclusive" and close["seeds_needed"] >= 2
    assert result["confidence"] == 0.9 and result["smooth"] == 1


def test_without_measured_noise_pairs_are_inconclusive_and_intervals_absent():
    values = {"s1": {"x": 3.0, "y": 3.1}, "s2": {"x": 2.0, "y": 2.5}}
    result = decide(ladder(values), "loss")  # one evaluation, one seed: no noise to measure
    assert result["pairs"] == [
        {"a": "x", "b": "y", "difference": pytest.approx(-0.5), "p_a_better": None,
         "verdict": "inconclusive", "seeds_needed": None}
    ]  # fmt: skip
    assert result["decision_accuracy_interval"] == {"s1": None}


def test_smooth_scores_each_run_by_the_mean_of_its_last_evaluations():
    values = {"s1": {"x": 3.0, "y": 3.2}, "s2": {"x": 2.0, "y": 2.1}}
    frame = ladder(values, noise=0.05, evals=8)
    smooth = decide(frame, "loss", smooth=3)
    tail = frame[(frame["size"] == "s2") & (frame["step"] > 97)].groupby("mix")["loss"].mean()
    assert smooth["pairs"][0]["difference"] == pytest.approx(tail["x"] - tail["y"])
    assert smooth["smooth"] == 3
    # the mean of 3 evaluations has a third of one evaluation's noise
    plain = decide(frame, "loss")
    assert smooth["noise"]["s2"] != plain["noise"]["s2"]


def seeds(exact: dict[str, float] | None = None, **noisy: float) -> dict[str, list[float]]:
    """Two seeds per mix: identical for ``exact`` (a measured noise of exactly 0), 0.02 apart
    for the others (a small noise)."""
    return {
        **{m: [v, v] for m, v in (exact or {}).items()},
        **{m: [v, v + 0.02] for m, v in noisy.items()},
    }


def test_intervals_leave_target_ties_out_and_count_small_ties_half():
    # tied at the target (x = y exactly): only the pairs with z count, both right
    tied_target = {"s1": seeds(x=3.0, y=3.1, z=4.0), "s2": seeds({"x": 2.0, "y": 2.0, "z": 2.5})}
    assert decide(ladder(tied_target), "loss")["decision_accuracy_interval"] == {"s1": [1.0, 1.0]}
    # every pair tied at the target: no accuracy, no interval
    all_tied = {"s1": seeds(x=3.0, y=3.5), "s2": seeds({"x": 2.0, "y": 2.0})}
    result = decide(ladder(all_tied), "loss")
    assert result["decision_accuracy"] == {"s1": None}
    assert result["decision_accuracy_interval"] == {"s1": None}
    # tied at the small size (exactly): half right, however the target is redrawn
    small_tie = {"s1": seeds({"x": 3.0, "y": 3.0}), "s2": seeds(x=2.0, y=2.5)}
    assert decide(ladder(small_tie), "loss")["decision_accuracy_interval"] == {"s1": [0.5, 0.5]}


def test_intervals_score_pairs_in_both_directions():
    # at the target y < x < z; the small size orders x before y: 2 of 3 pairs right
    frame = ladder({"s1": seeds(x=3.0, y=3.5, z=4.0), "s2": seeds(x=2.5, y=2.0, z=3.0)})
    result = decide(frame, "loss")
    assert result["decision_accuracy"]["s1"] == pytest.approx(2 / 3)
    assert result["decision_accuracy_interval"]["s1"] == [pytest.approx(2 / 3)] * 2


def test_intervals_are_over_the_small_sizes_mixes_and_need_both_noises():
    # a mix only one of the two sizes has is left out, as the accuracy itself leaves it out
    frame = ladder({"s1": seeds(x=3.0, y=3.5), "s2": seeds(w=1.0, x=2.0, y=2.5)})
    assert decide(frame, "loss")["decision_accuracy_interval"] == {"s1": [1.0, 1.0]}
    frame = ladder({"s1": seeds(w=1.0, x=3.0, y=3.5), "s2": seeds(x=2.0, y=2.5)})
    result = decide(frame, "loss")
    assert result["decision_accuracy"] == {"s1": 1.0}
    assert result["decision_accuracy_interval"] == {"s1": [1.0, 1.0]}
    # a target without measured noise (one evaluation): no interval
    quiet_target = pd.concat(
        [
            ladder({"s1": {"x": 3.0, "y": 3.5}}, noise=0.02, evals=8),
            ladder({"s2": {"x": 2.0, "y": 2.5}}),
        ]
    )
    assert decide(quiet_target, "loss")["decision_accuracy_interval"] == {"s1": None}


def test_intervals_are_reproducible_and_widen_with_the_confidence():
    values = {"s1": {"x": 3.0, "y": 3.1, "z": 3.2}, "s2": {"x": 2.0, "y": 2.1, "z": 2.2}}
    frame = ladder(values, noise=0.08, evals=8)
    a = decide(frame, "loss", confidence=0.8)["decision_accuracy_interval"]["s1"]
    assert decide(frame, "loss", confidence=0.8)["decision_accuracy_interval"]["s1"] == a
    wide = decide(frame, "loss", confidence=0.99)["decision_accuracy_interval"]["s1"]
    assert wide[0] <= a[0] and a[1] <= wide[1] and (wide[0], wide[1]) != (a[0], a[1])


def test_decision_accuracy_intervals_follow_the_noise():
    values = {
        "s1": {"x": 3.0, "y": 3.5, "z": 4.0},
        "s2": {"x": 2.0, "y": 2.5, "z": 3.0},
    }
    sure = decide(ladder(values, noise=0.01, evals=8), "loss", confidence=0.9)
    assert sure["decision_accuracy_interval"]["s1"] == [1.0, 1.0]
    unsure = decide(ladder(values, noise=0.6, evals=8), "loss", confidence=0.9)
    lo, hi = unsure["decision_accuracy_interval"]["s1"]
    assert 0.0 <= lo < 0.7 and 0.9 < hi <= 1.0


def test_the_scaling_laws_predict_the_targets_ranking():
    # L = A C^-0.3 + E per mix with x's law always below y's: x wins at every size.
    laws = {"x": (3000.0, 1.5), "y": (3000.0, 1.8)}
    values = {
        size: {m: a * (6 * n * 1000) ** -0.3 + e for m, (a, e) in laws.items()}
        for size, n in SIZES.items()
    }
    result = decide(ladder(values), "loss")
    predicted = result["predicted"]
    assert predicted["ranking"] == ["x", "y"] and predicted["decision_accuracy"] == 1.0
    for mix, (a, e) in laws.items():
        actual = a * (6 * SIZES["s4"] * 1000) ** -0.3 + e
        assert predicted["values"][mix] == pytest.approx(actual, rel=0.01)
    # the law's value at the target's own compute, not at a smaller size's
    at_s3 = 3000.0 * (6 * SIZES["s3"] * 1000) ** -0.3 + 1.5
    assert abs(predicted["values"]["x"] - at_s3) > 0.1
    fewer = decide(ladder({k: values[k] for k in ("s1", "s2", "s3")}), "loss")
    assert fewer["predicted"] == {"error": "needs 3 sizes below the target to fit; has 2"}


def test_the_scaling_laws_predict_an_accuracy_ranking_through_the_task_loss():
    """Step 1 fits each mix's task BPB against compute; step 2 maps BPB to accuracy by a
    falling sigmoid. y's loss is higher at every size, so its accuracy is lower."""
    laws = {"x": (3000.0, 0.8), "y": (3000.0, 1.0)}
    rows = []
    for size in ("s1", "s2", "s3", "s4"):
        n = SIZES[size]
        for mix, (a, e) in laws.items():
            for step in (50, 100):
                flops = 6 * n * step * 10
                bpb = a * flops**-0.3 + e
                accuracy = 0.25 + 0.5 / (1 + np.exp(6.0 * (bpb - 1.5)))
                rows.append({"size": size, "mix": mix, "seed": 0, "num_params": n, "step": step,
                             "tokens": step * 10, "flops": flops, "arc (BPB)": bpb,
                             "arc (accuracy)": accuracy})  # fmt: skip
    result = decide(pd.DataFrame(rows), "arc (accuracy)")
    assert result["rankings"]["s4"] == ["x", "y"]
    predicted = result["predicted"]
    assert predicted["ranking"] == ["x", "y"] and predicted["decision_accuracy"] == 1.0
    assert predicted["values"]["x"] > predicted["values"]["y"]


@pytest.mark.parametrize(
    ("values", "kwargs", "message"),
    [
        ({"s1": {"x": 1.0, "y": 2.0}}, {}, "decide needs at least 2 sizes with final checkpoints of loss; found 1"),
        ({"s1": {"x": 1.0, "y": 2.0}, "s2": {"x": 1.0, "y": 2.0}}, {"sizes": ["s2"]}, "decide needs at least 2 sizes with final checkpoints of loss; found 1"),
        ({"s1": {"x": 1.0}, "s2": {"x": 1.0}}, {}, "decide needs at least 2 mixes to rank"),
        ({"s1": {"x": 1.0, "y": 2.0}, "s2": {"x": 1.0, "y": 2.0}}, {"confidence": 1.0},
         "--confidence: confidence 1.0 is not in (0.5, 1)"),
        ({"s1": {"x": 1.0, "y": 2.0}, "s2": {"x": 1.0, "y": 2.0}}, {"confidence": 0.5},
         "--confidence: confidence 0.5 is not in (0.5, 1)"),
    ],
)  # fmt: skip
def test_what_decide_cannot_do_is_one_line(values, kwargs, message):
    with pytest.raises(UserError) as info:
        decide(ladder(values), "loss", **kwargs)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
