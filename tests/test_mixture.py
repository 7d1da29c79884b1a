"""``python -m olmotrain.mixture`` through its real CLI: the swarm (reproducible, feasible,
repetition-matched), the CSV path, bad input as one line, and one real tiny experiment end to
end (swarm -> collect -> fit -> propose -> a data config train.py accepts -> verify -> report)."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, assert_one_line_error, dry_run_json, module_main, run_module

MIXTURE = "olmotrain.mixture"


def mixture_main(*args: str):
    return module_main(MIXTURE, *args)


def write_mixture(tmp_path, name: str, **extra) -> str:
    config = {
        "name": name,
        "data": "embedded_split",
        "proxy": {"sizes": ["olmo2_1m"], "chinchilla_multiple": 0.0025},  # 2 steps
        "target": {"size": "dd_4m", "chinchilla_multiple": 0.5},
        "swarm": {"runs": 8, "prior": "uniform", "seed": 3},
        "metric": {"eval/lm/python_library/BPB": 1, "eval/lm/english_docs/BPB": 1},
        "verify": {"sizes": ["olmo2_1m", "dd_4m"]},
        "seeds": [7],
        "overrides": ["eval.downstream=[]", "eval.heldout_tokens=2000"],
        "output_root": str(tmp_path / "runs"),
        **extra,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(config))
    return str(path)


def plan_json(path: str, *overrides: str) -> dict:
    proc = mixture_main("plan", path, *overrides, "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_the_swarm_is_reproducible_feasible_and_repetition_matched(embedded_data, tmp_path):
    path = write_mixture(tmp_path, "swarm")
    first, again = plan_json(path), plan_json(path)
    other = plan_json(path, "swarm.seed=4")
    weights = [p["weights"] for p in first["points"]]
    assert weights == [p["weights"] for p in again["points"]] and len(weights) == 8
    assert weights != [p["weights"] for p in other["points"]]
    manifest = json.loads((embedded_data / "manifest.json").read_text())
    target = first["target"]["tokens"]
    for point in first["points"]:
        assert sum(point["weights"].values()) == pytest.approx(1, abs=1e-9)
        for source, w in point["weights"].items():
            tokens = manifest["sources"][source]["train"]["tokens"]
            assert 0 <= w <= tokens * 4 / target + 1e-12  # max_repetition_ratio 4 at the target
            # The proxy repeats each source as often as the target would at this weight.
            # (to the requested tokens' rounding: a 2-step proxy asks for few)
            assert point["repetition"][source] == pytest.approx(w * target / tokens, rel=1e-2)
    english_cap = manifest["sources"]["english_docs"]["train"]["tokens"] * 4 / target
    assert first["sources"]["english_docs"]["cap"] == pytest.approx(english_cap)
    # Spread over the feasible set, not piled onto the cap.
    shares = [p["weights"]["english_docs"] for p in first["points"]]
    assert sum(s == pytest.approx(english_cap, abs=1e-4) for s in shares) <= 1


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"data": "embeded_split"}, "unknown data 'embeded_split'; did you mean embedded_split"),
        ({"target": {"size": "dd_5m"}}, "unknown size 'dd_5m'; did you mean dd_6m or dd_4m?"),
        ({"swarm": {"runs": 0}}, "swarm.runs=0 must be > 0"),
        ({"metric": None}, "metric=None must be a collected column"),
        ({"swarm": {"fixed": {"prose": 0.5}}}, "swarm.fixed names prose, not a source"),
        ({"swarm": {"runs": 8, "fixed": {"python_tests": 1.5}}}, "python_tests"),
        ({"overrides": ["seed=3"]}, "the mixture sets seed for every point"),
        # A target so long that no mix stays within the repetition caps: the limiting source.
        ({"target": {"size": "dd_8m", "chinchilla_multiple": 10}}, "english_docs"),
    ],
)  # fmt: skip
def test_bad_mixture_experiments_are_one_line(embedded_data, tmp_path, extra, expected):
    line = assert_one_line_error(mixture_main("plan", write_mixture(tmp_path, "bad", **extra)))
    assert expected in line


def test_an_infeasible_target_names_the_caps_and_the_fix(embedded_data, tmp_path):
    path = write_mixture(tmp_path, "long", target={"size": "dd_8m", "chinchilla_multiple": 10})
    line = assert_one_line_error(mixture_main("plan", path))
    assert "no feasible mix" in line and "python_library" in line and "python_tests" in line


# --- the CSV path --------------------------------------------------------------------------


def law_tables(tmp_path, runs=40, seed=0):
    """A swarm measured on a known mixing law (two domains' losses), as olmix's two CSVs."""
    rng = np.random.default_rng(seed)
    W = rng.dirichlet(np.ones(3), size=runs)
    t = np.array([[-3.0, 0.5, 0.2], [0.3, 0.1, -2.5]])
    Y = 2.0 + 1.5 * np.exp(W @ t.T) + rng.normal(0, 0.005, size=(runs, 2))
    ratios = pd.DataFrame(W, columns=["web", "code", "books"]).assign(
        run=[f"r{i}" for i in range(runs)]
    )
    metrics = pd.DataFrame(Y, columns=["loss/web", "loss/books"]).assign(run=ratios["run"])
    ratios[["run", "web", "code", "books"]].to_csv(tmp_path / "ratios.csv", index=False)
    metrics[["run", "loss/web", "loss/books"]].to_csv(tmp_path / "metrics.csv", index=False)
    return tmp_path / "ratios.csv", tmp_path / "metrics.csv"


def test_propose_from_csvs_alone_prints_the_contract_json(tmp_path):
    ratios, metrics = law_tables(tmp_path)
    proc = mixture_main(
        "propose", "--ratios", str(ratios), "--metrics", str(metrics),
        "--metric", "loss/web", "--metric", "loss/books", "--minimize",
        "--available", "web=1000,code=5000,books=300", "--target-tokens", "1000",
        "--max-repetition", "books=2", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert list(out)[:7] == [
        "metric", "model", "cv", "proposal", "predicted", "interval", "repetition",
    ]  # fmt: skip
    assert out["metric"] == {"loss/web": 0.5, "loss/books": 0.5}
    assert set(out["cv"]) == {"log_linear", "lightgbm", "linear"} and out["model"] in out["cv"]
    assert sum(out["proposal"].values()) == pytest.approx(1, abs=1e-6)
    # books: 300 tokens x 2 repetitions for a 1,000-token target: at most 0.6, and the law
    # wants books and web (their own losses fall with their weight), not code.
    assert out["proposal"]["books"] <= 0.6 + 1e-9
    assert out["proposal"]["code"] < 0.1
    assert out["repetition"]["books"] == pytest.approx(
        out["proposal"]["books"] * 1000 / 300, rel=1e-3
    )
    lo, hi = out["interval"]
    assert lo <= out["predicted"] <= hi
    table = mixture_main(
        "propose", "--ratios", str(ratios), "--metrics", str(metrics), "--metric", "loss/web"
    )
    assert table.returncode == 0 and "predicted" in table.stdout and "web" in table.stdout


def test_fit_from_csvs_reports_every_family(tmp_path):
    ratios, metrics = law_tables(tmp_path)
    proc = mixture_main(
        "fit", "--ratios", str(ratios), "--metrics", str(metrics), "--metric", "loss/web", "--json"
    )
    out = json.loads(proc.stdout)
    assert out["chosen"] == "log_linear" and out["cv"]["log_linear"]["spearman"] > 0.9
    assert out["cv"]["log_linear"]["rmse"] < out["cv"]["linear"]["rmse"]


def negative_weight(ratios, metrics):
    frame = pd.read_csv(ratios)
    frame.loc[3, ["web", "code"]] = [-0.1, frame.loc[3, "web"] + frame.loc[3, "code"] + 0.1]
    frame.to_csv(ratios, index=False)


def weights_off_by_a_tenth(ratios, metrics):
    frame = pd.read_csv(ratios)
    frame.loc[5, "web"] += 0.1
    frame.to_csv(ratios, index=False)


def runs_missing_from_metrics(ratios, metrics):
    pd.read_csv(metrics).iloc[2:].to_csv(metrics, index=False)


def six_runs(ratios, metrics):
    for path in (ratios, metrics):
        pd.read_csv(path).head(6).to_csv(path, index=False)


@pytest.mark.parametrize(
    ("edit", "args", "expected"),
    [
        (negative_weight, [], "run r3: weight of web is -0.1"),
        (weights_off_by_a_tenth, [], "run r5: weights add up to"),
        (runs_missing_from_metrics, [], "r0"),
        (None, ["--metric", "loss/wbe"], "did you mean 'loss/web'"),
        (six_runs, [], "needs at least 8 runs"),
        (None, ["--target-tokens", "1000"], "--available"),
        (None, ["--prior", "natural"], "--available"),
        (None, ["--available", "web=10,code=10,books=10", "--target-tokens", "1000"], "no feasible mix"),
        (None, ["--available", "web=10,code"], "write src=value pairs"),
    ],
)  # fmt: skip
def test_bad_csv_input_is_one_line_and_exit_2(tmp_path, edit, args, expected):
    ratios, metrics = law_tables(tmp_path)
    if edit is not None:
        edit(ratios, metrics)
    if "--metric" not in args:
        args = [*args, "--metric", "loss/web"]
    proc = mixture_main("propose", "--ratios", str(ratios), "--metrics", str(metrics), *args)
    assert expected in assert_one_line_error(proc)


# --- one real tiny experiment, end to end ---------------------------------------------------


@pytest.fixture(scope="module")
def tiny_mixture(embedded_data, tmp_path_factory):
    """8 proxy runs trained as one sweep, collected and proposed; the proposed data config is
    removed from conf/data/ afterwards."""
    tmp_path = tmp_path_factory.mktemp("mixture")
    name = f"pytest_mix_{os.getpid()}"
    path = write_mixture(tmp_path, name)
    proposed = REPO / "conf" / "data" / f"{name}_proposed.yaml"
    try:
        run = run_module(MIXTURE, "run", path)
        assert run.returncode == 0, run.stderr[-3000:] + run.stdout[-2000:]
        yield path, tmp_path, name, run
    finally:
        proposed.unlink(missing_ok=True)


@pytest.mark.slow
def test_a_tiny_experiment_from_swarm_to_verified_proposal(tiny_mixture, tmp_path):
    path, root, name, run = tiny_mixture
    sweep = root / "runs" / "sweeps" / f"mixture-{name}"
    assert "8 runs of olmo2_1m" in run.stdout
    runs = [p for p in sweep.iterdir() if (p / "config.yaml").exists()]
    assert len(runs) == 8 and all(p.name.startswith("data.ratios=") for p in runs)
    again = run_module(MIXTURE, "run", path)
    assert again.returncode == 0 and again.stdout.count("already finished") == 8
    assert "8 run(s): 8 done" in mixture_main("status", path).stdout

    assert mixture_main("collect", path).returncode == 0
    ratios = pd.read_csv(sweep / "ratios.csv")
    metrics = pd.read_csv(sweep / "metrics.csv")
    assert list(ratios.columns) == ["run", "python_library", "python_tests", "english_docs"]
    assert np.allclose(ratios.drop(columns="run").sum(axis=1), 1)
    assert "eval/lm/english_docs/BPB" in metrics and sorted(metrics["run"]) == sorted(ratios["run"])
    # Each run trained on the mix its frozen config holds.
    cfg = yaml.safe_load((runs[0] / "config.yaml").read_text())
    row = ratios[ratios["run"] == runs[0].name].iloc[0]
    assert cfg["data"]["ratios"]["english_docs"] == pytest.approx(row["english_docs"])

    fit = json.loads(mixture_main("fit", path, "--json").stdout)
    assert set(fit["cv"]) == {"log_linear", "lightgbm", "linear"} and fit["runs"] == 8

    proposal = mixture_main("propose", path, "--json")
    assert proposal.returncode == 0, proposal.stderr[-2000:]
    out = json.loads(proposal.stdout)
    assert sum(out["proposal"].values()) == pytest.approx(1, abs=1e-6)
    assert out["proposal"]["english_docs"] <= out["caps"]["english_docs"] + 1e-9
    # The proposal is a data config train.py plans as is, for the target.
    plan = dry_run_json("model=dd_4m", f"data={name}_proposed", "chinchilla_multiple=0.5")
    by_source = {s["name"]: s for s in plan["data"]["sources"]}
    assert by_source["english_docs"]["fits"] is True and plan["data"]["problems"] == []
    assert by_source["english_docs"]["ratio"] == pytest.approx(
        out["proposal"]["english_docs"], abs=1e-4
    )

    verify = run_module(MIXTURE, "verify", path, "--json")
    assert verify.returncode == 0, verify.stderr[-3000:]
    verdict = json.loads(verify.stdout.strip().splitlines()[-1])
    assert verdict["sizes"] == ["olmo2_1m", "dd_4m"]
    assert set(verdict["mixes"]) >= {"proposed", "natural"}
    for size in verdict["sizes"]:
        ranked = verdict["rankings"][size]
        assert verdict["proposal_wins"][size] == (ranked[0] == "proposed")
    # how sure: ladder decide's pairs; one seed and one evaluation per run measure no noise
    assert {(p["a"], p["b"]) for p in verdict["pairs"]} == {
        (a, b) for i, a in enumerate(ranked) for b in ranked[i + 1 :]
    }
    assert {p["verdict"] for p in verdict["pairs"]} == {"inconclusive"}
    report = mixture_main("report", path, "--output", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr[-2000:]
    page = (tmp_path / "report" / "report.md").read_text()
    for picture in ("fit.png", "mixes.png", "swarm.png", "verify.png"):
        assert (tmp_path / "report" / picture).stat().st_size > 1000 and picture in page


def test_a_mix_of_sources_with_dashes_and_colons_is_one_hydra_override():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from olmotrain.mixture.experiment import ratios_value

    mix = {"c4-en": 0.25, "wiki:en": 0.25, "web.en": 0.5}
    (override,) = OverridesParser.create().parse_overrides([f"data.ratios={ratios_value(mix)}"])
    assert override.value() == mix


def test_direction_flags_are_refused_with_a_name(embedded_data, tmp_path):
    line = assert_one_line_error(
        mixture_main("propose", write_mixture(tmp_path, "x"), "--maximize")
    )
    assert "--maximize is for --ratios/--metrics" in line and "higher_is_better" in line
