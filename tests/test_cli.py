"""The real CLI: the dry-run contract and one clear line for every bad input.

Messages are checked with train.py run in this process (:func:`conftest.train_main`); the
process-level contract (exit status, nothing but the plan on stdout, no traceback) with
`python train.py` in its own process, for a few representative inputs."""

from __future__ import annotations

import json
import uuid

import pytest
from conftest import REPO, assert_one_line_error, dry_run_json, run_cli, train_main

from olmotrain.config.checks import compose_checked
from olmotrain.config.compose import compose, resolve
from olmotrain.errors import UserError
from olmotrain.ladder.config import load_ladder
from olmotrain.plan import derive_plan

REAL = ["data=olmo_mix_v1_5", "tokenizer=gpt_neox_olmo"]
CONTRACT = {
    "model",
    "num_params",
    "num_non_embedding_params",
    "sequence_length",
    "batch_size_tokens",
    "batch_size_instances",
    "lr",
    "betas",
    "weight_decay",
    "warmup_tokens",
    "duration_tokens",
    "max_steps",
    "schedule",
    "period_lengths",
    "checkpoints",
    "flops_per_token",
    "total_flops",
}


def test_dry_run_json_is_one_object_matching_the_plan(tmp_path):
    args = [
        "model=olmo2_30m",
        "schedule=wsds",
        "chinchilla_multiple=4",
        f"output_root={tmp_path}",
        *REAL,
    ]
    proc = run_cli(*args, "dry_run=json")  # its own process: stdout is the plan and nothing else
    assert proc.returncode == 0, proc.stderr[-2000:]
    plan = json.loads(proc.stdout)
    assert CONTRACT <= plan.keys()
    derived = derive_plan(resolve(compose(args))).to_dict()
    assert plan["model"] == "olmo2_30m" and plan["schedule"] == "wsds"
    assert plan["sequence_length"] == 8192
    assert plan["num_non_embedding_params"] == derived["num_non_embedding_params"] == 16_290_048
    assert plan["batch_size_tokens"] == 131072 and plan["batch_size_instances"] == 16
    assert plan["duration_tokens"] == derived["duration_tokens"] == sum(plan["period_lengths"])
    assert (
        plan["max_steps"] == 9943 and plan["betas"] == [0.9, 0.99] and plan["weight_decay"] == 0.1
    )
    assert [c["step"] for c in plan["checkpoints"]] == [c["step"] for c in derived["checkpoints"]]
    assert {"tokens", "step", "label"} == set(plan["checkpoints"][0])
    # olmo-core's FLOP count includes the attention term, so it exceeds 6N per token.
    assert plan["flops_per_token"] > 6 * plan["num_non_embedding_params"]
    assert plan["total_flops"] == plan["flops_per_token"] * plan["duration_tokens"]
    # Remote data is not checked offline, and nothing was written but the LR schedule's
    # picture, beside the run dirs (no run dir exists before training claims it).
    assert plan["data"]["sources"][0]["remote"] is True
    assert [p.name for p in tmp_path.iterdir()] == ["plans"]
    assert plan["lr_schedule_plot"] == str(
        tmp_path / "plans" / plan["run_name"] / "lr_schedule.png"
    )


def test_dry_run_table_plans_without_data_or_run_dir(tmp_path):
    proc = train_main(
        "model=olmo2_30m",
        "chinchilla_multiple=4",
        f"output_root={tmp_path}",
        f"data_root={tmp_path / 'nowhere'}",
        "dry_run=true",
    )
    assert proc.returncode == 0, proc.stderr
    for row in (
        "parameters",
        "batch",
        "optimizer",
        "duration",
        "warmup",
        "schedule",
        "checkpoints",
        "pre-decay",
    ):
        assert row in proc.stdout
    assert "no files match" in proc.stdout  # data problems are reported in the plan, not fatal
    assert [p.name for p in tmp_path.iterdir()] == ["plans"]  # the LR picture, no run dir
    assert "lr schedule plot  " in proc.stdout
    assert not (REPO / "train.log").exists()  # Hydra's default job logging would write one


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model=olmo2_31m", "unknown model 'olmo2_31m'; did you mean olmo2_1m or olmo2_30m"),
        ("chinchilla_multiple=0", "chinchilla_multiple=0.0 must be > 0"),
        ("chinchilla_multiple=-4", "chinchilla_multiple=-4.0 must be > 0"),
        ("chinchilla_multiple=four", "chinchilla_multiple='four' is not a valid float"),
        ("schedule=cosin", "unknown schedule 'cosin'; did you mean cosine?"),
        ("tokenizer=dolma3", "unknown tokenizer 'dolma3'"),
        ("train.max_step=3", "unknown config key 'train.max_step'; did you mean train.max_steps"),
        ("+train.warmup=3", "unknown config key 'train.warmup'"),
        ("model.n_kv_heads=3", "model.n_kv_heads=3 does not divide olmo2_14m's 8 query heads"),
        ("train.global_batch_size=-8", "train.global_batch_size=-8 must be a positive number"),
        ("dry_run=maybe", "dry_run=maybe is not one of false, true, json"),
    ],
)
def test_bad_input_is_one_clear_line(override, expected):
    args = [override] if override.startswith("dry_run=") else [override, "dry_run=true"]
    line = assert_one_line_error(train_main(*args))
    assert expected in line


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model=olmo2_31m", "unknown model 'olmo2_31m'"),  # refused before Hydra starts
        ("chinchilla_multiple=four", "chinchilla_multiple='four' is not a valid float"),  # by Hydra
    ],
)
def test_bad_input_is_one_line_and_exit_2_from_a_real_process(override, expected):
    """The contract itself, in `python train.py`'s own process: exit status 2, one line, no
    traceback, nothing on stdout."""
    proc = run_cli(override, "dry_run=true")
    assert expected in assert_one_line_error(proc)
    assert proc.stdout == ""


def test_cuda_without_a_gpu_is_refused_before_any_work(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    line = assert_one_line_error(train_main("cluster.device=cuda", f"output_root={tmp_path}"))
    assert "no usable CUDA device" in line
    assert not any(tmp_path.iterdir())


def test_unknown_model_in_a_sweep_is_caught_before_any_job():
    line = assert_one_line_error(train_main("-m", "model=olmo2_1m,olmo2_2m", "dry_run=true"))
    assert "unknown model 'olmo2_2m'" in line


def test_missing_data_is_refused_before_the_model_is_built(tmp_path):
    """In its own process: the error comes after logging is set up, where a log line or a
    warning on stderr would break the one-line contract."""
    sources = f"data.sources=[{{name: web, paths: ['{tmp_path}/web-*.npy']}}]"
    line = assert_one_line_error(
        run_cli("data=olmo_mix_v1_5", sources, f"output_root={tmp_path}/runs")
    )
    assert "no files match" in line and "web" in line
    assert not (tmp_path / "runs").exists()


def test_corrupt_data_file_is_refused(tmp_path):
    (tmp_path / "web-0.npy").write_bytes(b"\x01\x02\x03")  # 3 bytes: not whole uint16 tokens
    sources = f"data.sources=[{{name: web, paths: ['{tmp_path}/web-*.npy']}}]"
    line = assert_one_line_error(
        train_main("data=olmo_mix_v1_5", sources, f"output_root={tmp_path}/runs")
    )
    assert "not a whole number of 2-byte tokens" in line


def test_tokenizer_without_local_file_plans_fine():
    plan = dry_run_json("tokenizer=dolma2", "data=olmo_mix_v1_5", "model=olmo2_1b")
    assert plan["padded_vocab_size"] == 100352 and plan["vocab_size"] == 100278


def test_help_lists_groups():
    proc = train_main("--help")
    assert proc.returncode == 0
    for group in ("model", "schedule", "data", "tokenizer", "cluster", "experiment"):
        assert group in proc.stdout


def test_multirun_resolves_each_job_with_its_own_model():
    """A resolver cache would hand every sweep job the first job's N (see NOTES.md)."""
    proc = train_main(
        "-m", "model=olmo2_1m,olmo2_30m", "chinchilla_multiple=0.5,2", *REAL, "dry_run=json"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    plans = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    got = {
        (p["model"], p["chinchilla_multiple"]): (p["num_non_embedding_params"], p["max_steps"])
        for p in plans
    }
    expected = {}
    for model in ("olmo2_1m", "olmo2_30m"):
        for multiple in (0.5, 2.0):
            args = [f"model={model}", f"chinchilla_multiple={multiple}", *REAL]
            d = derive_plan(resolve(compose(args)))
            expected[(model, multiple)] = (d.num_non_embedding_params, d.max_steps)
    assert got == expected and len({v[0] for v in got.values()}) == 2


@pytest.fixture
def user_config():
    """Write a config file into conf/<group>/ under a unique name (removed after the test)."""
    written: list = []

    def write(group: str, text: str) -> str:
        name = f"test_{uuid.uuid4().hex[:8]}"
        path = REPO / "conf" / group / f"{name}.yaml"
        written.append(path)
        path.write_text(text)
        return name

    yield write
    for path in written:
        path.unlink(missing_ok=True)


EMBEDDED_TYPO = (
    (REPO / "conf/data/embedded.yaml")
    .read_text()
    .replace("  - name: english_docs\n", "  - name: english_docs\n    ratoi: 0.7\n")
)


def test_a_typo_in_a_data_config_names_the_file_the_key_and_the_fix(user_config):
    name = user_config("data", EMBEDDED_TYPO)
    line = assert_one_line_error(train_main(f"data={name}", "dry_run=true"))
    assert line == (
        f"error: conf/data/{name}.yaml: unknown key 'sources.english_docs.ratoi'; "
        "did you mean ratio?"
    )


SOURCE = "sources:\n  - name: code\n    paths: [a.npy]\n"
GLOBAL = "# @package _global_\n"


@pytest.mark.parametrize(
    ("group", "text", "expected"),
    [
        ("data", "sources:\n  - name: code\n    paths: a.npy\n",
         "sources.code.paths must be a list, not the text 'a.npy'; write paths: [\"a.npy\"]"),
        ("data", "sources:\n  code: {paths: [a.npy]}\n", "sources must be a list, not a mapping"),
        ("data", SOURCE + "num_workers: four\n",
         "num_workers must be a whole number, not the text 'four'"),
        ("data", SOURCE + "num_workerz: 4\n", "unknown key 'num_workerz'; did you mean num_workers?"),
        ("data", "sources:\n  - [a.npy]\n", "sources[0] must be a mapping (key: value lines), not a list"),
        ("data", "sources: [\n", "not valid YAML (expected the node content, but found '<stream end>' at line 2, column 1)"),
        ("model", "name: m\nfactory: olmo2_14M\nn_layer: 3\n", "unknown key 'n_layer'; did you mean n_layers?"),
        ("model", "name: m\nfactory: olmo2_14M\nn_layers: many\n",
         "n_layers must be a whole number, not the text 'many'"),
        ("model", "name: m\nfactory: olmo2_14M\nlws: [1]\n",
         "lws must be a mapping (key: value lines), not a list"),
        ("experiment", GLOBAL + "train:\n  max_stesp: 3\n",
         "unknown key 'train.max_stesp'; did you mean max_steps?"),
        ("experiment", GLOBAL + "train:\n  lr: fast\n", "train.lr must be a number, not the text 'fast'"),
        ("experiment", GLOBAL + "defaults:\n  - override /model: olmo2_1m\nseedd: 1\n",
         "unknown key 'seedd'; did you mean seed?"),
    ],
)  # fmt: skip
def test_a_mistake_in_a_config_file_is_one_line_naming_key_and_fix(
    user_config, group, text, expected
):
    name = user_config(group, text)
    with pytest.raises(UserError) as err:
        compose_checked([f"{group}={name}"])
    assert str(err.value) == f"conf/{group}/{name}.yaml: {expected}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("chinchila_multiple: 0.1\n", "unknown key 'chinchila_multiple'; did you mean chinchilla_multiple?"),
        ("chinchilla_multiple: lots\n", "chinchilla_multiple must be a number, not the text 'lots'"),
        ("seeds: 42\n", "seeds must be a list, not 42; write seeds: [42]"),
        ("overrides: {eval.limit: 5}\n", "overrides must be a list, not a mapping"),
        ("seeds: [\n", "not valid YAML (expected the node content, but found '<stream end>' at line 5, column 1)"),
    ],
)  # fmt: skip
def test_a_mistake_in_a_ladder_file_is_one_line_naming_key_and_fix(tmp_path, text, expected):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nsizes: [olmo2_1m, dd_4m]\nmixes: [embedded]\n" + text)
    with pytest.raises(UserError) as err:
        load_ladder(str(path))
    assert str(err.value) == f"{path}: {expected}"
