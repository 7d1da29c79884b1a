"""How sure a decision is, on synthetic ladders whose truth is known: pair verdicts, seeds to
settle, decision-accuracy intervals, smoothing, and bad input as one line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error, dry_run_json, module_main, train_main

from olmotrain.confidence.compare import Estimate, p_a_better, seeds_needed
from olmotrain.confidence.noise import Variance, detrended
from olmotrain.ladder.decide import decide

SIZES = (("s1", 1e6), ("s2", 4e6), ("s3", 1.6e7))


def synthetic_ladder(
    means: dict[str, dict[str, float]],
    noise: float,
    rng: np.random.Generator,
    seeds: int = 1,
    evals: int = 6,
    seed_sd: float = 0.0,
    metric: str = "loss",
) -> pd.DataFrame:
    """Runs whose last ``evals`` evaluations fall along a steep straight decay (not noise) plus
    independent noise of sd ``noise``; each seed shifts its run by N(0, seed_sd)."""
    rows = []
    for size, n in SIZES:
        for mix, mean in means[size].items():
            for seed in range(seeds):
                shift = rng.normal(0, seed_sd)
                for k, step in enumerate(range(100 - evals + 1, 101)):
                    trend = 0.5 * (evals - 1 - k)  # falls to the true mean at the last step
                    rows.append({
                        "size": size, "mix": mix, "seed": seed, "num_params": n, "step": step,
                        "tokens": step, "flops": n * step,
                        "kind": "permanent" if step == 100 else "interval",
                        metric: mean + trend + shift + rng.normal(0, noise),
                    })  # fmt: skip
    return pd.DataFrame(rows)


def two_mixes(difference: float) -> dict[str, dict[str, float]]:
    return {size: {"a": 3.0, "b": 3.0 + difference} for size, _ in SIZES}


def test_detrending_removes_a_steep_decay_and_keeps_the_noise():
    rng = np.random.default_rng(0)
    steps = np.arange(90, 101)
    quiet, dof = detrended(steps, 5.0 - 0.3 * steps + 1e-4 * steps**2)
    assert quiet == pytest.approx(0.0, abs=1e-12) and dof == len(steps) - 3
    draws = [detrended(steps, -0.3 * steps + rng.normal(0, 0.1, len(steps))) for _ in range(300)]
    variance = sum(d[0] for d in draws) / sum(d[1] for d in draws)
    assert variance == pytest.approx(0.01, rel=0.1)
    assert detrended([1, 2], [3.0, 4.0]) == (0.0, 0)


def test_a_difference_of_ten_noise_sds_is_sure_and_the_right_one():
    rng = np.random.default_rng(1)
    result = decide(synthetic_ladder(two_mixes(1.0), 0.1, rng), "loss")
    (pair,) = result["pairs"]
    assert (pair["a"], pair["b"]) == ("a", "b")  # lower loss first
    assert pair["p_a_better"] > 0.99 and pair["verdict"] == "a"
    assert pair["difference"] == pytest.approx(-1.0, abs=0.3)
    # the measured noise is the evaluation noise, not the decay's fall
    assert result["noise"]["s3"]["checkpoint_sd"] == pytest.approx(0.1, rel=0.5)


def test_equal_mixes_are_inconclusive_in_the_great_majority_of_draws():
    rng = np.random.default_rng(2)
    verdicts = [
        decide(synthetic_ladder(two_mixes(0.0), 0.1, rng), "loss")["pairs"][0]["verdict"]
        for _ in range(60)
    ]
    assert verdicts.count("inconclusive") >= 0.85 * len(verdicts), verdicts


def test_seeds_settle_an_inconclusive_pair_as_estimated():
    noise = Variance(0.04, 50)  # a run's sd 0.2
    a, b = Estimate(3.0, 1, noise), Estimate(3.1, 1, noise)
    assert p_a_better(a, b, higher=False) < 0.95
    need = seeds_needed(a, b, 0.95)
    # with that many seeds per mix the same difference reaches the confidence, one fewer not
    assert p_a_better(Estimate(3.0, need, noise), Estimate(3.1, need, noise), False) >= 0.95
    assert p_a_better(Estimate(3.0, need - 1, noise), Estimate(3.1, need - 1, noise), False) < 0.95
    assert seeds_needed(a, Estimate(3.0, 1, noise), 0.95) is None  # a tie: no number settles it


def test_seed_noise_counts_when_there_are_seeds():
    rng = np.random.default_rng(3)
    # evaluation noise alone would call 0.3 sure; seeds that move runs by 0.5 make it unsure
    frame = synthetic_ladder(two_mixes(0.3), 0.02, rng, seeds=3, seed_sd=0.5)
    result = decide(frame, "loss")
    assert result["noise"]["s3"]["seed_sd"] > 0.2
    assert result["pairs"][0]["verdict"] == "inconclusive"
    assert result["pairs"][0]["seeds_needed"] > 3


def test_decision_accuracy_interval_is_narrow_when_sure_and_wide_when_not():
    rng = np.random.default_rng(4)
    means = {s: {"a": 3.0, "b": 3.5, "c": 4.0} for s, _ in SIZES}
    sure = decide(synthetic_ladder(means, 0.01, rng), "loss")
    assert sure["decision_accuracy"]["s1"] == 1.0
    assert sure["decision_accuracy_interval"]["s1"] == [1.0, 1.0]
    unsure = decide(synthetic_ladder(means, 0.5, rng), "loss")
    lo, hi = unsure["decision_accuracy_interval"]["s1"]
    assert lo < 0.7 and hi == 1.0
    # one evaluation per run and one seed: no noise is measured, so no interval and no verdict
    single = decide(synthetic_ladder(means, 0.0, rng, evals=1), "loss")
    assert single["decision_accuracy_interval"]["s1"] is None
    assert {p["verdict"] for p in single["pairs"]} == {"inconclusive"}
    assert {p["p_a_better"] for p in single["pairs"]} == {None}


def test_smooth_averages_each_runs_last_evaluations():
    rng = np.random.default_rng(5)
    frame = synthetic_ladder(two_mixes(1.0), 0.0, rng, evals=6)
    plain = decide(frame, "loss")
    smooth = decide(frame, "loss", smooth=3)
    # the last three of a decay falling 0.5 per evaluation average 0.5 above the last
    assert smooth["pairs"][0]["difference"] == pytest.approx(plain["pairs"][0]["difference"])
    assert smooth["smooth"] == 3 and plain["smooth"] == 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--confidence", "0.5"], "--confidence: confidence 0.5 is not in (0.5, 1)"),
        (["--confidence", "1"], "not in (0.5, 1)"),
        (["--smooth", "0"], "--smooth 0 must be at least 1"),
        (["--metric", "empty"], "no run has the metric 'empty'"),
    ],
)
def test_bad_decide_options_are_one_line(tmp_path, args, expected):
    frame = synthetic_ladder(two_mixes(1.0), 0.1, np.random.default_rng(6))
    frame["empty"] = np.nan
    frame.to_csv(tmp_path / "p.csv", index=False)
    proc = module_main("olmotrain.ladder", "decide", "--points", str(tmp_path / "p.csv"),
                       "--metric", "loss", *args)  # fmt: skip
    assert expected in assert_one_line_error(proc)


def test_decide_json_has_the_contract_keys(tmp_path):
    frame = synthetic_ladder(two_mixes(1.0), 0.1, np.random.default_rng(7))
    frame.drop(columns=["kind"]).to_csv(tmp_path / "p.csv", index=False)  # no kind: all permanent
    proc = module_main("olmotrain.ladder", "decide", "--points", str(tmp_path / "p.csv"),
                       "--metric", "loss", "--json", "--confidence", "0.9", "--smooth", "2")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result["decision_accuracy_interval"]) == {"s1", "s2"}
    assert set(result["pairs"][0]) >= {"a", "b", "difference", "p_a_better", "verdict"}
    assert result["confidence"] == 0.9
    text = module_main("olmotrain.ladder", "decide", "--points", str(tmp_path / "p.csv"),
                       "--metric", "loss")  # fmt: skip
    assert "a vs b: difference" in text.stdout and "a is better" in text.stdout


def test_the_quieter_of_two_equally_separated_metrics_has_the_higher_snr_and_is_recommended(
    tmp_path,
):
    rng = np.random.default_rng(8)
    means = {s: {"a": 3.0, "b": 3.2, "c": 3.4} for s, _ in SIZES}
    quiet = synthetic_ladder(means, 0.02, rng, metric="eval/lm/x/CE loss")
    loud = synthetic_ladder(means, 0.08, rng, metric="eval/lm/y/CE loss")
    frame = quiet.assign(**{"eval/lm/y/CE loss": loud["eval/lm/y/CE loss"].to_numpy()})
    frame["eval/lm/x/tokens"] = 100.0  # a count, not a metric
    frame.to_csv(tmp_path / "p.csv", index=False)
    proc = module_main("olmotrain.ladder", "snr", "--points", str(tmp_path / "p.csv"), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result["metrics"]) == {"eval/lm/x/CE loss", "eval/lm/y/CE loss"}
    x, y = result["metrics"]["eval/lm/x/CE loss"], result["metrics"]["eval/lm/y/CE loss"]
    assert set(x) >= {"signal", "noise", "snr", "decision_accuracy"}
    for size, _ in SIZES:
        # the same true signal (0.4 / 3.2), each measured through its own noise
        assert x["signal"][size] == pytest.approx(0.125, abs=0.02)
        assert y["signal"][size] == pytest.approx(0.125, abs=0.08)
        assert x["snr"][size] > 2 * y["snr"][size]
    assert result["recommended"] == "eval/lm/x/CE loss"
    text = module_main("olmotrain.ladder", "snr", "--points", str(tmp_path / "p.csv"))
    assert "recommended: eval/lm/x/CE loss" in text.stdout
    report = module_main("olmotrain.ladder", "report", "--points", str(tmp_path / "p.csv"),
                         "--metric", "eval/lm/x/CE loss", "--output", str(tmp_path / "r"))  # fmt: skip
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "r" / "report.md").read_text()
    assert "Recommended: `eval/lm/x/CE loss`" in page and "| p(a better) |" in page
    assert (tmp_path / "r" / "snr.png").exists() and (tmp_path / "r" / "snr.csv").exists()


def test_snr_without_evaluation_metrics_is_one_line(tmp_path):
    frame = synthetic_ladder(two_mixes(1.0), 0.1, np.random.default_rng(9))
    frame.to_csv(tmp_path / "p.csv", index=False)
    proc = module_main("olmotrain.ladder", "snr", "--points", str(tmp_path / "p.csv"))
    assert "no evaluation metric was collected" in assert_one_line_error(proc)


def law_ladder(rng, noise: float, sizes: int = 5, evals: int = 6) -> pd.DataFrame:
    """One mix on an exact law ``L = 40 C^-0.15 + 1.5`` over ``sizes`` sizes, each run's last
    ``evals`` evaluations scattered with sd ``noise`` around it (a flat end: no trend)."""
    rows = []
    for i in range(sizes):
        n = 1e6 * 4**i
        flops = 6 * n * 20 * n
        for step in range(100 - evals + 1, 101):
            rows.append({
                "size": f"s{i}", "mix": "m", "seed": 1, "num_params": n, "step": step,
                "tokens": step, "flops": flops, "checkpoint": f"step {step}",
                "loss": 40 * flops**-0.15 + 1.5 + rng.normal(0, noise),
            })  # fmt: skip
    frame = pd.DataFrame(rows)
    # the law is fitted on each size's last evaluation (same flops for every step here)
    return frame


def test_a_90_percent_interval_covers_the_true_exponent_about_90_percent_of_the_time():
    from olmotrain.ladder.fit import PowerLaw, final_points, fit_power_law
    from olmotrain.ladder.fit_intervals import law_bootstrap, parameter_intervals, point_variances

    rng = np.random.default_rng(10)
    truth = PowerLaw(40.0, 0.15, 1.5)
    covered = []
    for _ in range(30):
        frame = law_ladder(rng, noise=0.01, evals=20)  # DataDecide's 20 evaluations per run
        points = final_points(frame, "loss")
        noise = [point_variances(frame, "loss")[("m", s)] for s in points["size"]]
        # the point estimate from the truth as start (the grid finds the same optimum, slower)
        law = fit_power_law(points["flops"], points["value"], start=truth)
        laws = law_bootstrap(law, points["flops"], points["value"], noise, reps=100)
        lo, hi = parameter_intervals(laws, 0.9)["alpha"]
        covered.append(lo <= truth.alpha <= hi)
    rate = float(np.mean(covered))
    # measured 0.80 here (0.73 with 6 evaluations per run): the percentile bootstrap of a
    # 3-parameter law through 5 points covers somewhat less than its nominal level
    assert 0.7 <= rate <= 1.0, rate


def test_fit_json_has_intervals_and_the_rollout(tmp_path):
    frame = law_ladder(np.random.default_rng(11), noise=0.005)
    frame.to_csv(tmp_path / "p.csv", index=False)
    proc = module_main("olmotrain.ladder", "fit", "--points", str(tmp_path / "p.csv"),
                       "--metric", "loss", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    fit = json.loads(proc.stdout)["fits"]["m"]
    assert set(fit["interval"]) == {"A", "alpha", "E"}
    lo, hi = fit["holdout"]["interval"]
    assert lo <= fit["holdout"]["actual"] <= hi
    # 5 sizes: fit on 3 predicts the 4th, fit on 4 the 5th; the law is exact up to the noise
    assert [r["size"] for r in fit["rollout"]] == ["s3", "s4"]
    assert all(abs(r["rel_error"]) < 0.05 for r in fit["rollout"])
    band = fit["band"]  # the fit picture's noise band
    assert len(band["flops"]) == len(band["lo"]) == len(band["hi"])
    assert all(lo <= hi for lo, hi in zip(band["lo"], band["hi"], strict=True))


def test_final_evals_spread_over_the_end_of_every_run_and_bad_values_are_one_line(embedded_data):
    from olmotrain.eval.schedule import final_steps

    assert final_steps(154, 6, 0.1) == [139, 142, 145, 148, 151, 154]
    assert final_steps(7, 5, 0.3) == [5, 6, 7]  # a short run gets the steps it has
    assert final_steps(100, None, 0.1) == []
    plan = dry_run_json("model=olmo2_1m", "train.max_steps=40", "eval.final_evals=4",
                        "eval.final_span=0.25")  # fmt: skip
    assert {30, 33, 37, 40} <= set(plan["evaluation"]["steps"])
    for bad, expected in (("eval.final_evals=0", "eval.final_evals=0 must be at least 1"),
                          ("eval.final_span=1.5", "eval.final_span=1.5 must be in (0, 1]")):  # fmt: skip
        proc = train_main("model=olmo2_1m", bad, "dry_run=json")
        assert expected in assert_one_line_error(proc)
