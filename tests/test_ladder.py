"""Model ladders and DataDecide: the 14 sizes, the fit and decision math against known answers,
a real tiny ladder trained through the sweep machinery, and every bad input as one line."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import ENGLISH_HELD_OUT, assert_one_line_error, module_main, run_module

from olmotrain.config.compose import compose, resolve
from olmotrain.plan import derive_plan

# DataDecide's Table 2 "model size" column (arXiv 2504.11393): non-embedding parameters with the
# output head, OLMo-1 blocks, the gpt-neox vocabulary padded to 50,304.
PAPER = {
    "dd_4m": 3_744_832,
    "dd_6m": 6_010_464,
    "dd_8m": 8_538_240,
    "dd_10m": 9_900_432,
    "dd_14m": 14_380_224,
    "dd_16m": 16_004_560,
    "dd_20m": 19_101_888,
    "dd_60m": 57_078_144,
    "dd_90m": 97_946_640,
    "dd_150m": 151_898_880,
    "dd_300m": 319_980_544,
    "dd_530m": 530_074_944,
    "dd_750m": 681_297_408,
    "dd_1b": 1_176_832_000,
}


def ladder_cli(*args: str, timeout: float = 1200):
    """``python -m olmotrain.ladder ARGS`` in its own process (for what trains)."""
    return run_module("olmotrain.ladder", *args, timeout=timeout)


def ladder_main(*args: str):
    """``python -m olmotrain.ladder ARGS`` in this process (plans, tables, fits, refusals)."""
    return module_main("olmotrain.ladder", *args)


@pytest.mark.parametrize("size", sorted(PAPER))
def test_datadecide_sizes_match_the_papers_parameter_counts(size):
    cfg = compose([f"model={size}", "tokenizer=gpt_neox_olmo", "data=olmo_mix_v1_5"])
    n = derive_plan(resolve(cfg)).num_non_embedding_params
    assert abs(n - PAPER[size]) / PAPER[size] < 0.01, (size, n, PAPER[size])


def synthetic_points(path, laws: dict[str, tuple[float, float, float]]):
    """Final checkpoints of four sizes per mix on exact power laws (and two earlier ones)."""
    rows = []
    for mix, (a, alpha, e) in laws.items():
        for size, n in (("s1", 1e6), ("s2", 4e6), ("s3", 1.6e7), ("s4", 6.4e7)):
            for step, fraction in ((50, 0.5), (100, 1.0)):
                flops = 6 * n * 20 * n * fraction
                rows.append(
                    {"size": size, "mix": mix, "seed": 1, "num_params": int(n), "step": step,
                     "tokens": int(20 * n * fraction), "flops": flops,
                     "checkpoint": f"step {step}", "loss": a * flops**-alpha + e}
                )  # fmt: skip
    pd.DataFrame(rows).to_csv(path, index=False)


def test_fit_recovers_a_known_law_and_predicts_the_held_out_size(tmp_path):
    laws = {"web": (60.0, 0.12, 1.9), "code": (200.0, 0.16, 1.2)}
    synthetic_points(tmp_path / "points.csv", laws)
    proc = ladder_main(
        "fit", "--points", str(tmp_path / "points.csv"), "--metric", "loss", "--json"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["metric"] == "loss"
    for mix, (a, alpha, e) in laws.items():
        fit = result["fits"][mix]
        assert fit["A"] == pytest.approx(a, rel=0.05)
        assert fit["alpha"] == pytest.approx(alpha, rel=0.05)
        assert fit["E"] == pytest.approx(e, rel=0.05)
        holdout = fit["holdout"]
        assert holdout["size"] == "s4" and abs(holdout["rel_error"]) < 0.01
        assert holdout["actual"] == pytest.approx(a * (6 * 6.4e7 * 20 * 6.4e7) ** -alpha + e)


def test_decide_ranks_and_scores_every_smaller_size(tmp_path):
    rows = []
    values = {  # size -> mix -> loss; at the target x > y > z, s1 has y and z swapped
        "s1": {"x": 3.0, "y": 3.2, "z": 3.1},
        "s2": {"x": 2.5, "y": 2.6, "z": 2.7},
        "s3": {"x": 2.0, "y": 2.1, "z": 2.2},
    }
    for size, n in (("s1", 1e6), ("s2", 4e6), ("s3", 1.6e7)):
        for mix, v in values[size].items():
            rows.append({"size": size, "mix": mix, "seed": 1, "num_params": int(n), "step": 10,
                         "tokens": 1, "flops": n, "loss": v})  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "p.csv", index=False)
    proc = ladder_main("decide", "--points", str(tmp_path / "p.csv"), "--metric", "loss", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["metric"] == "loss" and result["target_size"] == "s3"
    assert result["rankings"] == {
        "s1": ["x", "z", "y"],
        "s2": ["x", "y", "z"],
        "s3": ["x", "y", "z"],
    }
    assert result["decision_accuracy"] == {"s1": pytest.approx(2 / 3), "s2": 1.0}
    higher = ladder_main(
        "decide",
        "--points",
        str(tmp_path / "p.csv"),
        "--metric",
        "loss",
        "--higher-is-better",
        "--json",
    )
    assert json.loads(higher.stdout)["rankings"]["s3"] == ["z", "y", "x"]


def write_ladder(tmp_path, **extra) -> str:
    ladder = {
        "name": "tiny",
        "sizes": ["olmo2_1m", "dd_4m"],
        "mixes": ["embedded", "embedded_code_heavy"],
        "chinchilla_multiple": 0.0025,  # 2 steps of olmo2_1m, 3 of dd_4m
        "seeds": [7],
        "overrides": ["eval.downstream=[copa]", "eval.limit=10", ENGLISH_HELD_OUT],
        "metric": "eval/lm/english_docs/CE loss",
        "output_root": str(tmp_path / "runs"),
        **extra,
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(json.dumps(ladder))
    return str(path)


@pytest.fixture(scope="module")
def tiny_ladder(embedded_data, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ladder")
    path = write_ladder(tmp_path)
    proc = ladder_cli("run", path)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    return path, tmp_path, proc


@pytest.mark.slow
def test_a_ladder_runs_as_one_resumable_sweep_and_a_rerun_trains_nothing(tiny_ladder):
    path, tmp_path, first = tiny_ladder
    assert "4 points" in first.stdout
    sweep = tmp_path / "runs" / "sweeps" / "ladder-tiny"
    runs = sorted(p.name for p in sweep.iterdir() if (p / "config.yaml").exists())
    assert runs == sorted(
        f"model={m},data={d}"
        for m in ("olmo2_1m", "dd_4m")
        for d in ("embedded", "embedded_code_heavy")
    )
    again = ladder_cli("run", path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("already finished") == 4
    assert again.stdout.count("python -m olmotrain.ladder run LADDER tag=NEW") == 4
    status = ladder_main("status", path)
    assert status.returncode == 0 and "4 run(s): 4 done" in status.stdout


@pytest.mark.slow
def test_checkpoints_metrics_and_the_collected_table(tiny_ladder):
    from olmotrain.ladder import Ladder

    path, tmp_path, _ = tiny_ladder
    ladder = Ladder.load(path)
    checkpoints = ladder.get_checkpoints("dd_4m", "embedded", seed=7)
    assert checkpoints[0].name == "initialization" and checkpoints[0].step == 0
    assert [c.exists for c in checkpoints] == [True] * len(checkpoints)
    permanent = [c for c in checkpoints if c.step > 0]
    assert all(c.metrics_path is not None for c in permanent)
    assert (
        permanent[-1].tokens
        == permanent[-1].step * ladder.dry_run("dd_4m", "embedded").batch_size_tokens
    )
    assert (
        ladder.get_num_params("dd_4m")
        == ladder.dry_run("dd_4m", "embedded").num_non_embedding_params
    )
    metrics = ladder.get_metrics("dd_4m", "embedded", seed=7, prefix="eval/")
    assert list(metrics["step"]) == [c.step for c in permanent]
    assert {
        "eval/lm/english_docs/CE loss",
        "eval/lm/english_docs/BPB",
        "eval/downstream/copa (accuracy)",
    } <= set(metrics.columns)
    assert not any(c.startswith("train/") for c in metrics.columns)

    proc = ladder_main("collect", path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pd.read_csv(tmp_path / "runs" / "sweeps" / "ladder-tiny" / "collected.csv")
    assert list(table.columns[:9]) == [
        "size", "mix", "seed", "num_params", "num_params_total", "step", "tokens", "flops", "checkpoint",
    ]  # fmt: skip
    # a checkpoint repeating the next one's eval metrics (a 1-step decay at LR 0) is kept once
    kept = table[table["kind"] == "permanent"]
    assert len(kept) + kept["same_as_step"].notna().sum() == 4 * len(permanent)
    assert {"train/CE loss", "eval/lm/english_docs/BPB", "eval/downstream/copa (accuracy)"} <= set(
        table.columns
    )
    row = table[(table["size"] == "dd_4m") & (table["mix"] == "embedded")].iloc[-1]
    plan = ladder.dry_run("dd_4m", "embedded")
    assert row["flops"] == pytest.approx(plan.flops_per_token * row["tokens"])
    assert row["checkpoint"] == plan.checkpoints[-1].label
    # decide works on two sizes; the fit needs three, and says so.
    decide = ladder_main("decide", path, "--json")
    assert decide.returncode == 0, decide.stderr[-2000:]
    assert set(json.loads(decide.stdout)["decision_accuracy"]) == {"olmo2_1m"}
    assert "a scaling-law fit needs at least 3" in assert_one_line_error(ladder_main("fit", path))
    report = ladder_main("report", path, "--output", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr[-2000:]
    page = (tmp_path / "report" / "report.md").read_text()
    assert "No scaling-law fit" in page and (tmp_path / "report" / "decision_accuracy.png").exists()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"sizes": ["olmo2_1m", "dd_4mm"]}, "unknown size 'dd_4mm'; did you mean dd_4m"),
        # nearest in parameters, not in spelling (difflib would say dd_750m)
        ({"sizes": ["olmo2_1m", "dd_5m"]}, "unknown size 'dd_5m'; did you mean dd_6m or dd_4m?"),
        ({"mixes": ["embeded"]}, "unknown mix 'embeded'; did you mean embedded"),
        ({"sizes": ["dd_4m"]}, "has 1 size(s); a ladder needs at least 2"),
        ({"chinchilla_multiple": 0}, "chinchilla_multiple=0.0 must be > 0"),
        ({"sizez": ["a"]}, "sizez"),
    ],
)
def test_bad_ladders_are_one_line(tmp_path, extra, expected):
    line = assert_one_line_error(ladder_main("plan", write_ladder(tmp_path, **extra)))
    assert expected in line


def test_unknown_ladder_metric_and_missing_data_are_one_line(tmp_path):
    assert "unknown ladder 'dem'; did you mean demo" in assert_one_line_error(
        ladder_main("plan", "dem")
    )
    missing = write_ladder(
        tmp_path,
        mixes=["olmo_mix_v1_5"],
        overrides=[f"data.sources=[{{name: web, paths: ['{tmp_path}/none-*.npy']}}]"],
    )
    assert "mix olmo_mix_v1_5: web: no files match" in assert_one_line_error(
        ladder_main("plan", missing)
    )
    assert "has no finished checkpoint" in assert_one_line_error(
        ladder_main("collect", write_ladder(tmp_path))
    )
    assert (
        "unknown key 'clustr': neither a ladder key nor a train.py setting; did you mean "
        "cluster?" in assert_one_line_error(ladder_main("plan", "demo", "clustr=slurm"))
    )
    assert "the ladder sets seed for every point; list them under seeds=[...]" in (
        assert_one_line_error(ladder_main("plan", "demo", "seed=3"))
    )
    synthetic_points(tmp_path / "points.csv", {"web": (60.0, 0.12, 1.9)})
    line = assert_one_line_error(
        ladder_main("fit", "--points", str(tmp_path / "points.csv"), "--metric", "los")
    )
    assert "no run has the metric 'los'; did you mean 'loss'" in line


def test_the_shipped_ladders_plan(embedded_data):
    proc = ladder_main("plan", "datadecide", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    plan = json.loads(proc.stdout)
    assert len(plan["points"]) == 14 * 4 and plan["totals"]["gpu_hours"] > 0
    demo = ladder_main("plan", "demo")
    assert demo.returncode == 0 and "12 points" in demo.stdout
    assert float(plan["totals"]["total_flops"]) > 1e21


def fake_ladder_runs(tmp_path):
    """A finished-looking tiny ladder (2 sizes x 1 mix) written as its runs would be: each run's
    config.yaml and plan.json, checkpoint dirs and ``metrics_step{N}.json``, nothing trained.
    The first size's last two checkpoints have the same eval metrics (a decay at LR 0)."""
    from olmo_core.train.checkpoint import Checkpointer

    from olmotrain.ladder import Ladder
    from olmotrain.plan.plan import save_plan

    path = write_ladder(tmp_path, mixes=["embedded"], chinchilla_multiple=0.01)
    ladder = Ladder.load(path)
    steps_of = {}
    for i, point in enumerate(ladder.points):
        plan = ladder.dry_run(point.size, point.mix, point.seed)
        point.run_dir.mkdir(parents=True)
        (point.run_dir / "config.yaml").write_text("# written by the test\n")
        save_plan(plan, point.run_dir)
        steps = steps_of[point.size] = sorted({c.step for c in plan.checkpoints if c.step > 0})
        for j, step in enumerate(steps):
            ck = point.run_dir / "checkpoints" / f"step{step}"
            ck.mkdir(parents=True)
            (ck / ".metadata").write_text("")
            assert Checkpointer.dir_is_checkpoint(ck)
            k = j - 1 if i == 0 and j == len(steps) - 1 else j
            metrics = {"train/CE loss": 9.0 - j, "eval/lm/english_docs/CE loss": 8.0 - i - 0.1 * k}
            (ck.parent / f"metrics_step{step}.json").write_text(json.dumps(metrics))
        # an in-loop evaluation between checkpoints (eval.interval, eval.final_evals), logged
        # in two records as olmo-core may; and a train-only record, which is no evaluation
        records = [
            {"step": 1, "tokens": 4096, "train/CE loss": 9.5},
            {"step": steps[-1] - 1, "tokens": 77, "train/CE loss": 8.5},
            {"step": steps[-1] - 1, "tokens": 77, "eval/lm/english_docs/CE loss": 7.77},
            {"step": steps[-1], "tokens": 88, "eval/lm/english_docs/CE loss": 1.0},
        ]
        log = "".join(json.dumps(r) + "\n" for r in records if r["step"] not in steps[:-1])
        (point.run_dir / "metrics.jsonl").write_text(log)
    return path, ladder, steps_of


def test_collect_keeps_one_of_two_checkpoints_with_the_same_eval_metrics(tmp_path):
    path, ladder, steps_of = fake_ladder_runs(tmp_path)
    repeated, distinct = steps_of["olmo2_1m"], steps_of["dd_4m"]
    assert len(repeated) >= 2
    proc = ladder_main("collect", path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    note = [ln for ln in proc.stdout.splitlines() if "repeat" in ln]
    assert len(note) == 1 and note[0].startswith("1 run(s)"), proc.stdout
    assert f"olmo2_1m x embedded (seed 7): step {repeated[-2]} = step {repeated[-1]}" in note[0]
    assert "same_as_step" in note[0]
    table = pd.read_csv(ladder.sweep_dir / "collected.csv")
    # one row per distinct model, not per checkpoint: the later of the two is kept, marked
    assert set(table["kind"]) == {"permanent", "interval"}
    interval = table[table["kind"] == "interval"]
    # one row, merged from its records, where a step between checkpoints was evaluated
    assert distinct[-1] - 1 not in distinct, distinct
    assert interval["size"].tolist() == ["dd_4m"] and interval["checkpoint"].isna().all()
    assert interval["step"].tolist() == [distinct[-1] - 1]
    assert interval["eval/lm/english_docs/CE loss"].tolist() == [7.77]
    assert interval["train/CE loss"].tolist() == [8.5] and interval["tokens"].tolist() == [77]
    table = table[table["kind"] == "permanent"]
    run = table[table["size"] == "olmo2_1m"].set_index("step")
    assert list(run.index) == repeated[:-2] + repeated[-1:]
    assert run.loc[repeated[-1], "same_as_step"] == repeated[-2]
    assert run.drop(index=repeated[-1])["same_as_step"].isna().all()
    other = table[table["size"] == "dd_4m"]
    assert list(other["step"]) == distinct and other["same_as_step"].isna().all()
    # train metrics alone (no eval/ column) cannot tell two checkpoints' models apart
    from olmotrain.ladder.collect import drop_repeated_checkpoints

    rows = pd.DataFrame({"size": "a", "mix": "m", "seed": 1, "step": [1, 2], "train/CE loss": 3.0})
    assert len(drop_repeated_checkpoints(rows)) == 2


def test_fit_says_when_no_degrees_of_freedom_are_left(tmp_path):
    from olmotrain.ladder.__main__ import _fit_table

    synthetic_points(tmp_path / "four.csv", {"web": (60.0, 0.12, 1.9)})
    frame = pd.read_csv(tmp_path / "four.csv")
    frame[frame["size"] != "s4"].to_csv(tmp_path / "three.csv", index=False)
    proc = ladder_main("fit", "--points", str(tmp_path / "three.csv"), "--metric", "loss", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["fits"]["web"]["dof"] == 0
    warning = [ln for ln in _fit_table(result).splitlines() if "degrees of freedom" in ln]
    assert warning == [
        "warning: no degrees of freedom left (web L(C): 3 points for 3 parameters): such a law "
        "passes through its points whatever they are, so it tests nothing; add sizes (or "
        "checkpoints) to the ladder"
    ]
    from olmotrain.ladder.fit import no_dof_warning

    result["fits"]["web"]["dof"] = 1  # four sizes
    assert no_dof_warning(result) is None and "degrees" not in _fit_table(result)


def test_a_tag_trains_the_ladder_again_as_a_new_set_of_runs(tmp_path):
    from olmotrain.ladder import Ladder

    path = write_ladder(tmp_path)
    old, new = Ladder.load(path), Ladder.load(path, tag="v2")
    assert old.sweep_dir.name == "ladder-tiny" and new.sweep_dir.name == "ladder-tiny-v2"
    assert [p.run_dir.parent for p in new.points] == [new.sweep_dir] * 4
    assert "sweep_name=ladder-tiny-v2" in new.train_command()
    # collect, status, fit, ... read the tagged set with the same key=value
    assert f"no {new.sweep_dir})" in assert_one_line_error(ladder_main("status", path, "tag=v2"))
    line = assert_one_line_error(ladder_main("plan", path, "tag=a/b"))
    assert "tag='a/b' must be a plain name" in line
    # the key the user reached for says what works instead
    line = assert_one_line_error(ladder_main("plan", path, "run_name=again"))
    assert "the ladder sets run_name for every point" in line and "set tag=NAME" in line


def test_a_finished_ladder_point_names_tag_not_run_name(tmp_path):
    from olmotrain.config.compose import compose
    from olmotrain.train.rundir import RunDir
    from olmotrain.train.startup import Startup

    def message(*overrides: str) -> str:
        config = resolve(compose(["model=olmo2_1m", "data=embedded", *overrides]))
        plan = derive_plan(config)
        return Startup(config, plan, RunDir(tmp_path), None, plan.max_steps).finished_message()  # type: ignore[arg-type]

    in_ladder = message("sweep_name=ladder-demo")
    assert "already finished" in in_ladder and "run_name" not in in_ladder
    assert "python -m olmotrain.ladder run LADDER tag=NEW" in in_ladder
    assert "use another run_name to train again" in message()
