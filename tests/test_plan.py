"""The plan: derived once from the typed config, typed all the way down, saved and read back."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import uuid

import pytest
import yaml
from conftest import REPO, run_cli

from olmotrain.chinchilla import Checkpoint
from olmotrain.config.compose import compose, from_dict, resolve
from olmotrain.errors import UserError
from olmotrain.plan import Plan, derive, derive_plan, load_plan, render, save_plan, throughput
from olmotrain.plan.render import render_table
from olmotrain.train.rundir import RunDir

REAL = ["data=olmo_mix_v1_5", "tokenizer=gpt_neox_olmo"]  # remote data: nothing to build


def plan_of(*overrides: str) -> Plan:
    return derive_plan(resolve(compose(list(overrides))))


def test_the_plan_is_typed_all_the_way_down():
    plan = plan_of("model=olmo2_30m", "chinchilla_multiple=4", *REAL)
    assert all(isinstance(ck, Checkpoint) for ck in plan.checkpoints)
    assert plan.checkpoints[-1].step == plan.max_steps == 9943
    assert plan.permanent_steps == sorted({ck.step for ck in plan.checkpoints})
    assert plan.memory.total > plan.memory.params > 0
    assert plan.memory_fit.fits == (plan.memory.total <= plan.memory_fit.capacity)
    assert plan.estimate.checkpoint_bytes == 12 * plan.num_params + 1_000_000
    assert plan.data.sources[0].remote is True and plan.data.mix == "natural"
    assert plan.evaluation.steps == plan.permanent_steps
    assert plan.layers[0].head_dim * plan.layers[0].n_heads == plan.d_model
    nested = (plan.memory, plan.memory_fit, plan.estimate, plan.data, plan.evaluation)
    assert all(dataclasses.is_dataclass(v) for v in nested)


def test_plan_json_round_trips_to_the_same_plan(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "ckpt" / "model_and_optim").mkdir(parents=True)  # an init_from source
    plan = plan_of("model=olmo2_1m", f"train.init_from={tmp_path / 'ckpt'}", *REAL)
    save_plan(plan, run)
    again = load_plan(run)
    assert again == plan
    assert again.init_from.path == tmp_path / "ckpt" and again.init_from.kind == "olmo-core"
    assert json.loads((run / "plan.json").read_text()) == plan.to_dict()
    assert load_plan(tmp_path) is None  # a run dir from before plan.json
    (run / "plan.json").write_text("{not json")
    with pytest.raises(UserError, match="plan.json is not a readable olmotrain plan"):
        load_plan(run)


def test_dry_run_json_is_the_plans_own_serialization(tmp_path):
    args = ["model=olmo2_30m", "chinchilla_multiple=2", f"output_root={tmp_path}", *REAL]
    proc = run_cli(*args, "dry_run=json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = json.loads(proc.stdout)
    expected = plan_of(*args).to_dict()
    assert {k: v for k, v in printed.items() if k != "lr_schedule_plot"} == expected


def test_nothing_is_derived_twice(monkeypatch):
    """One olmo-core TransformerConfig per plan: composing and resolving compute none."""
    calls = []
    real = derive.transformer_config
    monkeypatch.setattr(derive, "transformer_config", lambda *a: calls.append(a) or real(*a))
    cfg = compose(["model=olmo2_190m", *REAL])
    derive_plan(resolve(cfg))
    assert len(calls) == 1


def test_a_run_dir_from_before_plan_json_still_reads(tmp_path):
    """Older run dirs froze the plan's numbers under ``derived:`` in config.yaml and have no
    plan.json: their config loads (the old section left out of it), their plan is derived again
    with the frozen numbers kept (what the run trained with), and an unreadable plan.json falls
    back to the same."""
    config = resolve(compose(["experiment=smoke", f"output_root={tmp_path}"]))
    values = dataclasses.asdict(config)
    frozen = {"max_steps": 7, "batch_size_tokens": 2048, "num_params": 5}
    frozen["checkpoints"] = [{"tokens": 1024, "step": 6, "label": "period 1 0.01xC end"}]
    values["derived"] = frozen
    run = tmp_path / "old"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    assert from_dict(values) == config
    plan = RunDir(run).plan()
    assert (plan.max_steps, plan.batch_size_tokens, plan.num_params) == (7, 2048, 5)
    assert plan.checkpoints == [Checkpoint(1024, 6, "period 1 0.01xC end")]
    fresh = derive_plan(config)
    assert plan.lr == fresh.lr and plan.memory == fresh.memory  # not frozen: derived again
    (run / "plan.json").write_text("{torn")
    assert RunDir(run).plan() == plan


@pytest.fixture
def data_config():
    """A data config file written into conf/data/ for one test (removed after it)."""
    name = f"test_{uuid.uuid4().hex[:8]}"
    path = REPO / "conf" / "data" / f"{name}.yaml"
    yield name, path
    path.unlink(missing_ok=True)


def test_a_data_config_without_name_is_named_after_its_file(data_config):
    name, path = data_config
    path.write_text(
        "sources:\n  - name: code\n"
        '    paths: ["${data_root}/embedded/${tokenizer.name}/python_code/train-*.npy"]\n'
    )
    config = resolve(compose([f"data={name}"]))
    assert config.data.name == name and f"-{name}-" in config.run_name


def test_a_missing_mandatory_value_names_the_file_and_the_key(data_config):
    name, path = data_config
    path.write_text("name: mine\n")  # no sources
    with pytest.raises(UserError) as err:
        compose([f"data={name}"])
    assert str(err.value) == (
        f"conf/data/{name}.yaml: data.sources is missing (a mandatory value); set it there, "
        "or on the command line with data.sources=..."
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a 1 MiB tmpfs needs root")
def test_a_nearly_full_disk_at_start_up_is_one_line_before_any_work(tmp_path):
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(tiny)], check=True)
    try:
        proc = run_cli("experiment=smoke", f"output_root={tiny}", "data.eval=null")
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
        (line,) = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert line.startswith(f"error: output_root={tiny}: {tiny}/smoke: no space left on device")
        assert "one checkpoint of this run needs" in line
        assert list(tiny.iterdir()) == []  # refused before anything was written
    finally:
        subprocess.run(["umount", str(tiny)], check=True)


def short_run_warning(plan: Plan) -> str | None:
    return next((w for w in plan.warnings if "too short for its" in w), None)


@pytest.mark.parametrize(
    ("overrides", "fixes"),
    [
        # 7 steps: warmup 0.35 steps, a 0.7-step decay; 512-token sequences cannot make 60+ steps
        (("model=olmo2_1m", "chinchilla_multiple=0.01"), ["chinchilla_multiple"]),
        (("model=olmo2_14m", "chinchilla_multiple=0.02"), ["chinchilla_multiple", "train.global_batch_size"]),
        (("experiment=smoke",), ["train.max_steps"]),  # max_steps sets the length: no batch fix
        (("model=olmo2_1m", "chinchilla_multiple=0.01", "schedule=cosine"), ["chinchilla_multiple"]),
    ],
)  # fmt: skip
def test_a_run_too_short_for_its_schedule_warns_with_fixes_that_work(overrides, fixes):
    plan = plan_of(*overrides)
    warning = short_run_warning(plan)
    assert warning and warning.startswith(f"a run of {plan.max_steps} steps is too short"), warning
    assert "warmup" in warning and ("decay" in warning) == (plan.schedule != "cosine")
    found = re.findall(r"(?:raise|lower) (\S+) to ([\d,.]+)", warning)
    assert [key for key, _ in found] == fixes
    for key, value in found:
        fixed = plan_of(*overrides, f"{key}={value.replace(',', '')}")
        assert short_run_warning(fixed) is None, (key, value, fixed.warnings)
        assert fixed.max_steps > plan.max_steps


def test_a_run_long_enough_for_its_schedule_is_not_warned():
    assert short_run_warning(plan_of("model=olmo2_14m", "chinchilla_multiple=0.05")) is None


def test_plan_warnings_are_data_in_the_json_and_lines_in_the_table():
    """An LWS that changes no layer (dd_4m's FFN rounds to 256 everywhere) and a short run: both
    are Plan.warnings, so dry_run=json has them and the table (also printed when a run starts)
    shows each as one `warning:` line."""
    plan = plan_of(
        "model=dd_4m", "model.lws={ffn_scalars: [0.5, 4.0]}", "chinchilla_multiple=0.005"
    )
    lws = [w for w in plan.warnings if w.startswith("model.lws changes 0 of 8 layers")]
    assert len(lws) == 1 and "every layer FFN hidden 256" in lws[0]
    assert short_run_warning(plan) is not None
    assert plan.to_dict()["warnings"] == plan.warnings
    table = render_table(plan).splitlines()
    assert [ln for ln in table if ln.startswith("  warning: ")] == [
        f"  warning: {w}" for w in plan.warnings
    ]


def _estimate_plan(tmp_path, *overrides: str) -> Plan:
    """A CPU plan of olmo2_1m on the embedded data (held-out sources), runs root ``tmp_path``."""
    base = ["model=olmo2_1m", "data=embedded", "cluster.device=cpu", f"output_root={tmp_path}"]
    return plan_of(*base, *overrides)


def test_the_estimate_counts_startup_evaluation_and_checkpoints(tmp_path):
    """A run is not only its training FLOPs: start-up, every evaluation round and every
    checkpoint save take time, and more evaluations make a longer run."""
    plan = _estimate_plan(tmp_path)
    e = plan.estimate
    assert e.startup_s > 0 and e.eval_s > 0 and e.checkpoint_s > 0 and e.train_s > 0
    assert e.seconds == pytest.approx(e.startup_s + e.train_s + e.eval_s + e.checkpoint_s)
    assert e.throughput_source == "FLOP model"  # no earlier run, no calibration asked for
    assert e.train_s == pytest.approx(plan.duration_tokens / e.tokens_per_s)
    often = _estimate_plan(tmp_path, "eval.interval=1").estimate
    assert often.eval_s > 10 * e.eval_s and often.seconds > e.seconds
    assert often.train_s == e.train_s
    json_keys = plan.to_dict()["estimate"]
    for key in ("startup_s", "train_s", "eval_s", "checkpoint_s", "seconds", "throughput_source"):
        assert key in json_keys
    assert "start-up 10 s" in render.render_table(plan)


def _write_run(run_dir, plan: Plan, tokens_per_s: list[float]) -> None:
    """A run dir as training leaves it: plan.json and a metrics.jsonl with the speed monitor's
    tokens/s per logged step."""
    run_dir.mkdir(parents=True)
    save_plan(plan, run_dir)
    lines = [
        json.dumps({"step": i + 1, "tokens": 1024 * (i + 1), "throughput/device/TPS": tps})
        for i, tps in enumerate(tokens_per_s)
    ]
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_an_earlier_runs_measured_throughput_is_used_and_named(tmp_path):
    """The tokens/s an earlier run of the same model on the same device recorded is the
    estimate's training rate (its first, warm-up step left out), and the run is named; a run of
    another model is not used."""
    first = _estimate_plan(tmp_path)
    _write_run(tmp_path / "before", first, [90.0, 5000.0, 5200.0, 4800.0, 5000.0])
    other = _estimate_plan(tmp_path, "model=dd_4m")
    _write_run(tmp_path / "sweeps" / "other", other, [10.0, 11.0, 12.0, 13.0])
    plan = _estimate_plan(tmp_path, "seed=7")  # another run of the same model
    e = plan.estimate
    assert e.tokens_per_s == 5000.0
    assert e.throughput_source == f"run {tmp_path / 'before'} (measured 5,000 tokens/s)"
    assert e.train_s == pytest.approx(plan.duration_tokens / 5000.0)
    assert f"run {tmp_path / 'before'}" in render.render_table(plan)
    assert _estimate_plan(tmp_path, "model=dd_4m").estimate.tokens_per_s == 12.0


def test_measured_throughput_needs_a_few_steps_and_reads_old_names(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1, "tokens_per_s": 10}\n{"step": 2, "tokens_per_s": 30}\n')
    assert throughput.run_tokens_per_s(log) is None  # one step after the warm-up: too few
    with log.open("a") as f:
        f.write('{"step": 3, "tokens_per_s": 40}\n{"step": 4, "tokens_per_s": 50}\n')
    assert throughput.run_tokens_per_s(log) == 40.0
    assert throughput.run_tokens_per_s(tmp_path / "missing.jsonl") is None


def test_a_calibration_times_the_model_on_this_machine(tmp_path, monkeypatch):
    """Without an earlier run, a calibration (asked for, or ``OLMOTRAIN_CALIBRATE=1``) times a
    few real training steps here; by default the FLOP model is used."""
    monkeypatch.setattr(throughput, "CALIBRATION_BUDGET_S", 0)  # two timed steps: a cheap test
    monkeypatch.delenv("OLMOTRAIN_CALIBRATE", raising=False)
    config = resolve(compose(["experiment=smoke", "cluster.device=cpu", f"output_root={tmp_path}"]))
    e = derive_plan(config, calibrate=True).estimate
    assert e.throughput_source.startswith("calibration (") and e.tokens_per_s > 0
    flop = derive_plan(config).estimate
    assert flop.throughput_source == "FLOP model" and flop.tokens_per_s != e.tokens_per_s
    monkeypatch.setenv("OLMOTRAIN_CALIBRATE", "1")
    assert derive_plan(config).estimate.throughput_source.startswith("calibration (")
