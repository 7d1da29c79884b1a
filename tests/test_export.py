"""Models out: Hugging Face export with its parity check, olmo-core reading our checkpoints,
generation, and samples during training — on tiny checkpoints trained here.

Two real trainings: an OLMo-2 model with grouped-query attention on 2 CPU ranks, with
``train.sample_prompts`` and ``train.export_hf`` (a 2-rank checkpoint, exported as it is saved),
and an OLMo-3 model whose sliding window (16 tokens) is shorter than its 512-token context, so
the parity check at full context exercises the window. Refusals run the commands in this process
(:func:`conftest.train_main`, :func:`conftest.module_main`); exports, generation and training
in their own.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import (
    ENGLISH_HELD_OUT,
    assert_one_line_error,
    kill_at_step,
    metrics,
    module_main,
    run_cli,
    run_module,
    train_main,
)

pytestmark = pytest.mark.slow
PROMPT = "def main("
GQA = [
    "experiment=smoke",
    ENGLISH_HELD_OUT,
    "model.n_heads=2",  # head_dim 6 = d_model / n_heads: olmo-core's own converter can do it
    "model.head_dim=6",
    "model.n_kv_heads=1",
    "cluster.devices=2",
    f"train.sample_prompts=['{PROMPT}']",
    "train.export_hf=true",
]


@pytest.fixture(scope="module")
def gqa(embedded_data, tmp_path_factory) -> Path:
    """olmo2_1m with GQA, 8 steps on 2 ranks, samples and HF exports at steps 7 and 8."""
    root = tmp_path_factory.mktemp("gqa")
    proc = run_cli(*GQA, f"output_root={root}", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (root / "smoke" / "train.log").write_text(proc.stderr)
    return root / "smoke"


@pytest.fixture(scope="module")
def olmo3(embedded_data, tmp_path_factory) -> Path:
    """olmo3_1m (head_dim 4 on d_model 12) with a 16-token sliding window, 8 steps."""
    root = tmp_path_factory.mktemp("olmo3")
    args = [
        "experiment=smoke", ENGLISH_HELD_OUT, "model=olmo3_1m", "model.sliding_window=16",
        "run_name=olmo3",
    ]  # fmt: skip
    proc = run_cli(*args, f"output_root={root}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "olmo3"


def export(*args: str):
    return run_module("olmotrain.export", *args)


def export_error(*args: str) -> str:
    """The one-line refusal of ``python -m olmotrain.export ARGS`` (run in this process)."""
    return assert_one_line_error(module_main("olmotrain.export", *args))


def python(code: str) -> str:
    """Run ``code`` in a fresh offline interpreter; its stdout."""
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_training_exports_every_permanent_checkpoint_and_prints_samples(gqa):
    losses = [r["train/CE loss"] for r in metrics(gqa) if "train/CE loss" in r]
    assert losses[-1] < losses[0]  # a GQA model trains
    for step in (7, 8):
        report = json.loads((gqa / "hf" / f"step{step}" / "olmotrain_export.json").read_text())
        assert report["passed"] and report["step"] == step
        assert report["max_abs_logit_diff"] <= 1e-4 and report["text"] == "held-out"
    record = next(r for r in metrics(gqa) if r["step"] == 8 and "samples" in r)
    assert record["samples"][0]["prompt"] == PROMPT
    assert isinstance(record["samples"][0]["completion"], str)
    assert "train/CE loss" in record  # merged into the step's metrics, not a second record
    assert f"sample at step 8: {PROMPT!r}" in (gqa / "train.log").read_text()


def test_export_of_a_2_rank_gqa_checkpoint_reloads_offline(gqa, tmp_path):
    out = tmp_path / "hf"
    proc = export(str(gqa), "--output", str(out), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    for key in ("run", "step", "tokens", "config_hash", "tolerance", "max_abs_logit_diff",
                "mean_abs_logit_diff", "loss_olmo_core", "loss_hf"):  # fmt: skip
        assert key in report, key
    assert report["step"] == 8
    assert report["tokens"] == next(r["tokens"] for r in metrics(gqa) if r["step"] == 8)
    assert report["tolerance"] == 1e-4 and report["max_abs_logit_diff"] <= 1e-4
    assert abs(report["loss_olmo_core"] - report["loss_hf"]) < 1e-4
    assert report["sequence_length"] > 16 and report["sequences"] >= 1
    assert json.loads((out / "olmotrain_export.json").read_text()) == report
    loaded = python(
        "import json\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f"m = AutoModelForCausalLM.from_pretrained({str(out)!r})\n"
        f"t = AutoTokenizer.from_pretrained({str(out)!r})\n"
        "print(json.dumps([m.config.model_type, m.config.num_key_value_heads,"
        " m.config.num_attention_heads, t.eos_token_id, t.pad_token_id,"
        " m.generation_config.eos_token_id, len(t.encode('def main():'))]))"
    )
    model_type, kv, heads, eos, pad, gen_eos, n = json.loads(loaded)
    assert (model_type, kv, heads, eos, pad, gen_eos) == ("olmo2", 1, 2, 0, 1, 0) and n > 0


def test_olmo3_sliding_window_export_matches_at_full_context(olmo3, tmp_path):
    out = tmp_path / "hf3"
    proc = export(str(olmo3), "--output", str(out), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["passed"] and report["sequence_length"] == 512
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "olmo3" and config["head_dim"] == 4
    assert config["layer_types"].count("sliding_attention") == 3
    assert config["sliding_window"] in (16, 17)  # olmo-core writes window + 1 (see its comment)
    # The window matters at this length, so the parity check above would catch a wrong one.
    diff = python(
        "import torch\n"
        "from transformers import AutoConfig, AutoModelForCausalLM\n"
        f"d = {str(out)!r}\n"
        "ids = torch.randint(2, 8000, (1, 512), generator=torch.Generator().manual_seed(0))\n"
        "a = AutoModelForCausalLM.from_pretrained(d)(ids).logits\n"
        "c = AutoConfig.from_pretrained(d); c.sliding_window = 4096\n"
        "b = AutoModelForCausalLM.from_pretrained(d, config=c)(ids).logits\n"
        "print(float((a - b).abs().max()))"
    )
    assert float(diff) > 1e-3


def test_bfloat16_export_is_checked_against_the_rounded_checkpoint(olmo3, tmp_path):
    out = tmp_path / "bf16"
    proc = export(str(olmo3), "--output", str(out), "--dtype", "bfloat16", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["dtype"] == "bfloat16"
    dtypes = python(
        "from safetensors import safe_open\n"
        f"f = safe_open({str(out / 'model.safetensors')!r}, 'pt')\n"
        "print(sorted({str(f.get_tensor(k).dtype) for k in f.keys()}))"
    )
    assert "torch.bfloat16" in dtypes and "float32" not in dtypes


def test_greedy_generation_matches_transformers_generate_on_the_export(olmo3, tmp_path):
    out = tmp_path / "hf"
    assert export(str(olmo3), "--output", str(out)).returncode == 0
    ours = {}
    for engine in ("olmo-core", "transformers"):
        proc = run_module(
            "olmotrain.generate", str(olmo3), "--prompt", PROMPT, "--max-new-tokens", "24",
            "--engine", engine, "--json",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        ours[engine] = json.loads(proc.stdout)
    theirs = python(
        "import json, torch\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f"m = AutoModelForCausalLM.from_pretrained({str(out)!r}); t = AutoTokenizer.from_pretrained({str(out)!r})\n"
        f"ids = torch.tensor([t.encode({PROMPT!r}, add_special_tokens=False)])\n"
        "g = m.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,"
        " max_new_tokens=24, min_new_tokens=0)\n"
        "print(json.dumps(g[0, ids.shape[1]:].tolist()))"
    )
    expected = json.loads(theirs)
    assert ours["olmo-core"]["token_ids"] == expected[: len(ours["olmo-core"]["token_ids"])]
    assert ours["transformers"]["token_ids"] == ours["olmo-core"]["token_ids"]
    assert ours["olmo-core"]["prompt"] == PROMPT
    hf = run_module("olmotrain.generate", str(out), "--prompt", PROMPT, "--max-new-tokens", "24",
                    "--json")  # fmt: skip
    assert (
        hf.returncode == 0 and json.loads(hf.stdout)["token_ids"] == ours["olmo-core"]["token_ids"]
    )


def test_generation_streams_and_stops_at_the_stop_text(olmo3):
    proc = run_module("olmotrain.generate", str(olmo3), "--prompt", PROMPT,
                      "--max-new-tokens", "24", "--json")  # fmt: skip
    full = json.loads(proc.stdout)["completion"]
    assert len(full) > 2
    stop = full[len(full) // 2 :][:2]
    proc = run_module("olmotrain.generate", str(olmo3), "--prompt", PROMPT,
                      "--max-new-tokens", "24", "--stop", stop)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(PROMPT) and stop not in proc.stdout[len(PROMPT) :]
    sampled = [
        run_module("olmotrain.generate", str(olmo3), "--prompt", PROMPT, "--temperature", "1.0",
                   "--top-k", "50", "--top-p", "0.9", "--seed", "3", "--json").stdout
        for _ in range(2)
    ]  # fmt: skip
    assert sampled[0] == sampled[1]  # seeded sampling is reproducible


def test_several_prompts_print_separated_completions_and_no_library_noise(olmo3):
    proc = run_module("olmotrain.generate", str(olmo3), "--prompt", PROMPT, "--prompt", "x = ",
                      "--max-new-tokens", "6")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "--- 1/2 ---" and lines[1].startswith(PROMPT)
    second = lines.index("--- 2/2 ---")
    assert lines[second + 1].startswith("x = ") and lines[second - 1] == ""
    for noise in ("transformer_engine", "torch.distributed is disabled", "Loading weights"):
        assert noise not in proc.stderr, proc.stderr


def test_olmo_core_reads_our_checkpoints_directly(gqa, tmp_path):
    ckpt = gqa / "checkpoints" / "step8"
    out = tmp_path / "olmo_core_hf"
    printed = python(
        "import json\n"
        "from olmo_core.nn.hf.convert_checkpoint import load_config, convert_checkpoint_to_hf\n"
        "from olmo_core.generate import TransformerGenerationModule\n"
        "import torch\n"
        f"ckpt = {str(ckpt)!r}\n"
        "cfg = load_config(ckpt)\n"
        "gen = TransformerGenerationModule.from_checkpoint(ckpt)\n"
        "ids, _, _ = gen.generate_batch(torch.tensor([[5, 6, 7]]), max_new_tokens=4, log_timing=False, use_cache=False)\n"
        f"convert_checkpoint_to_hf(ckpt, {str(out)!r}, cfg['model'], cfg['dataset']['tokenizer'], validate=True)\n"
        "print(json.dumps([ids.shape[1], cfg['olmotrain']['run_name'], sorted(cfg)]))"
    )
    length, run_name, keys = json.loads(printed.strip().splitlines()[-1])
    assert length == 7 and run_name == "smoke"
    assert {"model", "dataset", "train_module", "olmotrain"} <= set(keys)
    assert (out / "model.safetensors").exists()


def test_export_refusals_are_one_line_and_write_nothing(gqa, tmp_path):
    line = export_error(str(gqa), "--output", str(tmp_path / "a"), "--step", "5")
    assert "no checkpoint at step 5" in line and not (tmp_path / "a").exists()
    full = tmp_path / "full"
    full.mkdir()
    (full / "mine.txt").write_text("keep")
    line = export_error(str(gqa), "--output", str(full))
    assert "not empty" in line and "--overwrite" in line
    assert [p.name for p in full.iterdir()] == ["mine.txt"]
    # --overwrite moves the old contents aside, never deletes them
    assert export(str(gqa), "--output", str(full), "--overwrite").returncode == 0
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("full.replaced-")]
    assert len(aside) == 1 and (aside[0] / "mine.txt").read_text() == "keep"
    assert (full / "olmotrain_export.json").exists()
    line = export_error(str(gqa), "--output", str(tmp_path / "b"), "--dtype", "fp8")
    assert "--dtype fp8" in line


def _copy_run(run: Path, tmp_path: Path, edit) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("hf", "work"))
    config = yaml.safe_load((copy / "config.yaml").read_text())
    edit(config)
    (copy / "config.yaml").write_text(yaml.safe_dump(config))
    return copy


def test_an_lws_model_is_refused_before_loading(gqa, tmp_path):
    def lws(c):
        c["model"]["lws"] = {
            "qkv_scalars": [0.5, 1.0],
            "ffn_scalars": [0.5, 4.0],
            "output_scalars": None,
        }

    line = export_error(str(_copy_run(gqa, tmp_path, lws)), "--output", str(tmp_path / "o"))
    assert "layer-wise scaling" in line and "olmotrain.generate" in line
    assert not (tmp_path / "o").exists()


def test_a_run_without_a_local_tokenizer_is_refused(gqa, tmp_path):
    def no_tokenizer(c):
        c["tokenizer"]["path"] = str(tmp_path / "missing" / "tokenizer.json")

    copy = _copy_run(gqa, tmp_path, no_tokenizer)
    line = export_error(str(copy), "--output", str(tmp_path / "o"))
    assert "tokenizer.json" in line
    line = assert_one_line_error(module_main("olmotrain.generate", str(copy), "--prompt", "x"))
    assert "tokenizer.json" in line


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--prompt", "  "], "prompt is empty"),
        (["--prompt", "x", "--max-new-tokens", "0"], "--max-new-tokens 0"),
        (["--prompt", "x", "--top-p", "0"], "--top-p 0"),
        (["--prompt", "x", "--temperature", "-1"], "--temperature -1"),
        ([], "--prompt"),
        (["--prompt", "x", "--step", "99"], "no checkpoint at step 99"),
    ],
)
def test_bad_generate_input_is_one_line(gqa, args, expected):
    assert expected in assert_one_line_error(module_main("olmotrain.generate", str(gqa), *args))


def test_generate_on_a_directory_of_neither_kind_is_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    line = assert_one_line_error(module_main("olmotrain.generate", str(tmp_path), "--prompt", "x"))
    assert "neither" in line


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.sample_prompts=['']", "empty prompt"),
        ("train.sample_max_new_tokens=0", "sample_max_new_tokens=0"),
        ("model.lws.ffn_scalars=[0.5,4.0]", "layer-wise scaling"),
    ],
)
def test_bad_sample_and_export_settings_fail_before_training(override, expected, tmp_path):
    extra = ["train.sample_prompts=[hi]"] if "sample_max" in override else []
    extra += ["train.export_hf=true"] if "lws" in override else []
    args = ["experiment=smoke", override, *extra, f"output_root={tmp_path}"]
    assert expected in assert_one_line_error(train_main(*args))
    assert not (tmp_path / "smoke" / "checkpoints").exists()


# --- train.init_from: anneal / continued pretraining from a checkpoint or an HF export ---

SAME_SHAPE = [
    "experiment=smoke", ENGLISH_HELD_OUT, "model.n_heads=2", "model.head_dim=6", "model.n_kv_heads=1"
]  # fmt: skip


def _held_out_losses(record: dict) -> dict[str, float]:
    return {k: v for k, v in record.items() if k.startswith("eval/lm/") and k.endswith("/CE loss")}


def _final_eval(run: Path) -> dict[str, float]:
    return next(_held_out_losses(r) for r in reversed(metrics(run)) if _held_out_losses(r))


def _step0_eval(run: Path) -> dict[str, float]:
    return _held_out_losses(next(r for r in metrics(run) if r["step"] == 0))


def test_init_from_a_2_rank_checkpoint_starts_at_its_final_loss_and_resumes_its_own(gqa, tmp_path):
    ckpt = gqa / "checkpoints" / "step8"
    run = tmp_path / "anneal"
    args = [*SAME_SHAPE, "schedule=anneal", f"train.init_from={ckpt}", "run_name=anneal",
            "train.max_steps=6", "train.ephemeral_checkpoint_interval=2", f"output_root={tmp_path}"]  # fmt: skip
    plan = json.loads(train_main(*args, "dry_run=json").stdout)
    assert plan["init_from"] == {"kind": "olmo-core", "path": str(ckpt)}
    assert plan["schedule"] == "anneal" and plan["warmup_tokens"] == plan["batch_size_tokens"]
    kill_at_step(*args, run_dir=run, step=3)
    start, final = _step0_eval(run), _final_eval(gqa)
    assert start.keys() == final.keys() and start
    for key in start:  # the same weights, evaluated before the first step
        assert abs(start[key] - final[key]) < 1e-4, (key, start[key], final[key])
    # Checkpoints written before olmo-core's keys were added held the run config under "model":
    # such run dirs resume as before (resuming reads config.yaml, never a checkpoint's config.json).
    for ckpt_config in (run / "checkpoints").glob("step*/config.json"):
        ckpt_config.write_text(
            json.dumps({"model": json.loads(ckpt_config.read_text())["olmotrain"]})
        )
    proc = run_cli(*args)  # resumes its own ephemeral checkpoint, never re-initialises
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from step" in proc.stderr and "initialised from" not in proc.stderr
    assert (
        metrics(run)[-1]["step"] == 6 and abs(metrics(run)[-1]["optim/LR (group 0)"]) < 1e-12
    )  # decayed to 0


def test_init_from_an_hf_export_starts_at_the_same_loss(gqa, tmp_path):
    hf = gqa / "hf" / "step8"
    args = [*SAME_SHAPE, f"train.init_from={hf}", "run_name=from_hf", "train.max_steps=1",
            f"output_root={tmp_path}"]  # fmt: skip
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"initialised from Hugging Face model {hf}" in proc.stderr
    start, final = _step0_eval(tmp_path / "from_hf"), _final_eval(gqa)
    for key in final:
        assert abs(start[key] - final[key]) < 1e-4, (key, start[key], final[key])


def test_init_from_refuses_other_shapes_and_other_formats(gqa, tmp_path):
    ckpt = gqa / "checkpoints" / "step8"
    args = ["experiment=smoke", f"train.init_from={ckpt}", f"output_root={tmp_path}"]
    line = assert_one_line_error(train_main(*args))
    assert "blocks.0.attention.w_q.weight" in line and "(12, 12)" in line
    line = assert_one_line_error(train_main(*SAME_SHAPE, "model.n_layers=3", *args[1:]))
    assert "blocks.3" in line  # a tensor the configured model lacks
    (tmp_path / "notes").mkdir()
    line = assert_one_line_error(train_main(*SAME_SHAPE, f"train.init_from={tmp_path / 'notes'}",
                                            "dry_run=true"))  # fmt: skip
    assert "neither an olmo-core checkpoint" in line
    assert not (tmp_path / "smoke").exists()


def test_the_reproduction_preset_sets_what_the_law_would_derive():
    plan = json.loads(train_main("experiment=olmo1b_reproduction", "dry_run=json").stdout)
    assert (plan["d_model"], plan["n_layers"], plan["n_heads"]) == (2048, 16, 16)
    assert plan["layers"][0]["ffn_hidden"] == 8192 and plan["padded_vocab_size"] == 50304
    assert plan["lr"] == 4e-4 and plan["betas"] == [0.9, 0.95] and plan["eps"] == 1e-5
    assert plan["warmup_tokens"] == 500 * 64 * 2048 and plan["max_steps"] == 7630
    assert plan["batch_size_tokens"] == 64 * 2048 and plan["schedule"] == "cosine"
    for key in ("lr", "betas", "warmup_tokens", "batch_size_tokens"):
        assert plan["origins"][key].startswith("train."), key
    law = json.loads(train_main("experiment=olmo1b_reproduction", "train.lr=null", "train.betas=null",
                                "train.warmup_steps=null", "dry_run=json").stdout)  # fmt: skip
    assert law["origins"]["lr"] == "chinchilla law" and law["lr"] != 4e-4
    assert law["origins"]["warmup_tokens"] == "chinchilla law"


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.lr=0", "train.lr=0"),
        ("train.betas=[0.9]", "train.betas"),
        ("train.warmup_steps=-1", "train.warmup_steps=-1"),
        ("train.warmup_steps=100000", "not shorter than the run"),
    ],
)
def test_bad_explicit_optimizer_values_are_one_line(override, expected):
    assert expected in assert_one_line_error(
        train_main("experiment=smoke", override, "dry_run=true")
    )


def _broken_conversion(monkeypatch, damage) -> None:
    """olmo-core's conversion, followed by ``damage(hf_dir)``: a conversion fault on purpose."""
    import olmo_core.nn.hf.convert_checkpoint as convert

    real = convert.convert_checkpoint_to_hf

    def converted_then_damaged(checkpoint, output, *args, **kwargs):
        real(checkpoint, output, *args, **kwargs)
        damage(Path(output))

    monkeypatch.setattr(convert, "convert_checkpoint_to_hf", converted_then_damaged)


def _perturb_one_weight(hf: Path) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(hf / "model.safetensors")
    name = next(k for k in sorted(weights) if "layers.0.self_attn.q_proj" in k)
    weights[name] = weights[name] + 0.01
    save_file(weights, hf / "model.safetensors", metadata={"format": "pt"})


def _edit_config(hf: Path, edit) -> None:
    config = json.loads((hf / "config.json").read_text())
    edit(config)
    (hf / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("fault", "run"),
    [("a perturbed weight", "olmo3"), ("a wrong sliding window", "olmo3"),
     ("a dropped head_dim", "olmo3")],
)  # fmt: skip
def test_a_broken_conversion_is_refused_and_nothing_is_written(
    request, tmp_path, monkeypatch, fault, run
):
    """The parity check is what stands between a conversion bug and a user's model: each kind of
    fault fails the export (exit 1, the report says so), and nothing is left at --output."""
    damage = {
        "a perturbed weight": _perturb_one_weight,
        # the 512-token parity sequences see past a 4,096 window what the model never saw
        "a wrong sliding window": lambda hf: _edit_config(
            hf, lambda c: c.update(sliding_window=4096)
        ),
        # olmo3_1m has 4 heads of 4 on d_model 12: without head_dim transformers infers 3
        "a dropped head_dim": lambda hf: _edit_config(hf, lambda c: c.pop("head_dim")),
    }[fault]
    source = request.getfixturevalue(run)
    _broken_conversion(monkeypatch, damage)
    out = tmp_path / "hf"
    result = module_main("olmotrain.export", str(source), "--output", str(out))
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "export parity FAILED" in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".hf.partial-*"))
