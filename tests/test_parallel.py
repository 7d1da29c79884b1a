"""Parallelism on CPU through the real CLI: 2 gloo ranks (FSDP, HSDP, DDP) against 1, resharding on resume, GQA."""

from __future__ import annotations

import json

import pytest
from conftest import (
    assert_one_line_error,
    checkpoint_steps,
    dry_run_json,
    kill_at_step,
    run_cli,
    train_main,
)

STEPS = 8
RUN = [
    "model=olmo2_1m",
    f"train.max_steps={STEPS}",
    "train.global_batch_size=8192",
    "train.ephemeral_checkpoint_interval=3",
    "data.eval=null",  # the loss curves are compared; 2-rank held-out evals: tests/test_slurm.py
]


def losses(run_dir):
    return [
        json.loads(line)["train/CE loss"]
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
    ]


def train(tmp, name, *extra):
    proc = run_cli(*RUN, f"output_root={tmp}", f"run_name={name}", *extra)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    return tmp / name


@pytest.fixture(scope="module")
def one_rank(embedded_data, tmp_path_factory):
    return losses(train(tmp_path_factory.mktemp("one"), "one"))


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["fsdp", "hsdp", "ddp"])
def test_two_ranks_give_the_one_rank_loss_curve(one_rank, tmp_path, parallel):
    extra = ["parallel.num_replicas=2"] if parallel == "hsdp" else []
    run_dir = train(tmp_path, parallel, "cluster.devices=2", f"parallel={parallel}", *extra)
    two = losses(run_dir)
    assert len(two) == STEPS
    # Same global batch, same data order; only the reduction order differs.
    assert two == pytest.approx(one_rank, rel=2e-4, abs=2e-4)
    saved = (run_dir / "config.yaml").read_text()
    assert "devices: 2" in saved and f"name: {parallel}" in saved


@pytest.mark.slow
def test_checkpoint_written_by_two_ranks_resumes_on_one(one_rank, tmp_path):
    kill_at_step(
        *RUN,
        f"output_root={tmp_path}",
        "run_name=r",
        "cluster.devices=2",
        run_dir=tmp_path / "r",
        step=5,
    )
    assert 3 in checkpoint_steps(tmp_path / "r")
    resumed = run_cli(*RUN, f"output_root={tmp_path}", "run_name=r", "cluster.devices=1")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from step" in resumed.stdout + resumed.stderr
    assert losses(tmp_path / "r") == pytest.approx(one_rank, rel=2e-4, abs=2e-4)


LWS = "model.lws={qkv_scalars: [0.5, 1.0], ffn_scalars: [0.5, 4.0], output_scalars: [0.5, 1.0]}"
TINY_LWS = [
    "model=olmo2_14m",
    "model.n_kv_heads=2",
    LWS,
    "train.global_batch_size=2048",
    "train.max_steps=6",
    "train.ephemeral_checkpoint_interval=3",
    "data.eval=null",  # the loss curves are what is compared; no held-out evaluation needed
]


@pytest.mark.slow
def test_lws_model_trains_checkpoints_and_resumes_after_kill(embedded_data, tmp_path):
    plan = dry_run_json(*TINY_LWS)
    # By hand (OpenELM's rule): qkv multipliers 0.5, 0.67, 0.83, 1.0 of d_model 128, made divisible
    # by head_dim 16 x 4 GQA groups = 64 -> 64, 128, 128, 128 wide (85.8 rounds down to 64, below
    # 0.9 x 85.8, so + 64); FFN 0.5, 1.67, 2.83, 4.0 x 128 made divisible by 256 -> 256, 256, 512, 512.
    heads = [(s["n_heads"], s["n_kv_heads"]) for s in plan["layers"]]
    assert heads == [(4, 1), (8, 2), (8, 2), (8, 2)]
    assert [s["ffn_hidden"] for s in plan["layers"]] == [256, 256, 512, 512]
    full = run_cli(*TINY_LWS, f"output_root={tmp_path}", "run_name=full")
    assert full.returncode == 0, full.stderr[-3000:]
    kill_at_step(
        *TINY_LWS, f"output_root={tmp_path}", "run_name=killed", run_dir=tmp_path / "killed", step=4
    )
    assert 3 in checkpoint_steps(tmp_path / "killed")
    resumed = run_cli(*TINY_LWS, f"output_root={tmp_path}", "run_name=killed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert losses(tmp_path / "killed") == pytest.approx(losses(tmp_path / "full"), abs=1e-5)
    assert losses(tmp_path / "full")[-1] < losses(tmp_path / "full")[0]
    # FSDP shards the per-layer shapes over 2 ranks and reproduces the 1-rank curve.
    sharded = run_cli(*TINY_LWS, f"output_root={tmp_path}", "run_name=fsdp", "cluster.devices=2")
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    assert losses(tmp_path / "fsdp") == pytest.approx(losses(tmp_path / "full"), rel=2e-4, abs=2e-4)


# A GQA model training (its loss falls) is tests/test_export.py's 2-rank GQA run; a finished run
# saying so, tests/test_train_e2e.py::test_a_finished_run_says_so_and_does_not_retrain.


def test_gqa_changes_n_and_everything_downstream():
    mha = dry_run_json("model=olmo2_30m", "data=olmo_mix_v1_5", "tokenizer=gpt_neox_olmo")
    gqa = dry_run_json(
        "model=olmo2_30m", "model.n_kv_heads=2", "data=olmo_mix_v1_5", "tokenizer=gpt_neox_olmo"
    )
    # Each of the 4 layers: K and V projections shrink from 256x256 to 256x64, and OLMo-2's K norm
    # (over the whole K width) from 256 to 64 weights.
    shrink = 4 * (2 * (256 * 256 - 256 * 64) + (256 - 64))
    assert mha["num_non_embedding_params"] - gqa["num_non_embedding_params"] == shrink
    assert gqa["layers"][0] == {
        "n_heads": 8,
        "n_kv_heads": 2,
        "head_dim": 32,
        "ffn_hidden": mha["layers"][0]["ffn_hidden"],
        "output_scale": 1.0,
    }
    assert gqa["lr"] > mha["lr"] and gqa["duration_tokens"] < mha["duration_tokens"]


def test_plan_shows_data_parallel_micro_batch_and_accumulation():
    plan = dry_run_json(
        "model=olmo2_1m",
        "cluster.devices=2",
        "train.micro_batch_size=2",
        "train.global_batch_size=8192",
    )
    assert plan["dp_size"] == 2 and plan["parallel"] == "fsdp"
    assert plan["batch_size_instances"] == 16 and plan["micro_batch_instances"] == 2
    assert plan["grad_accum_steps"] == 4  # 16 sequences / 2 ranks / 2 per micro-batch


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("cluster.devices=64", "cluster.devices=64 CPU ranks but this machine has"),
        ("cluster.devices=0", "cluster.devices=0 must be at least 1"),
        ("model.attn_backend=flash_2", "model.attn_backend=flash_2 needs a CUDA GPU"),
        (
            "model.attn_backend=xformers",
            "model.attn_backend=xformers is not one of auto, torch, flash_2, flash_3",
        ),
        ("parallel=zero3", "unknown parallel 'zero3'"),
        (
            "parallel.activation_checkpointing=some",
            "parallel.activation_checkpointing=some is not one of",
        ),
        ("parallel.float8=true", "parallel.float8=true needs a CUDA GPU"),
    ],
)
def test_bad_parallel_settings_are_one_clear_line_before_any_model(override, expected, tmp_path):
    line = assert_one_line_error(train_main(override, f"output_root={tmp_path}"))
    assert expected in line
    assert not any(tmp_path.iterdir())


def test_hsdp_replicas_must_divide_the_ranks(tmp_path):
    line = assert_one_line_error(
        train_main(
            "cluster.devices=2",
            "parallel=hsdp",
            "parallel.num_replicas=3",
            f"output_root={tmp_path}",
        )
    )
    assert "parallel.num_replicas=3 does not divide the 2 ranks" in line


def test_micro_batch_follows_model_size_and_device():
    from olmotrain.model.parallel import CPU_MICRO_BATCH_TOKENS, max_micro_batch_tokens

    assert max_micro_batch_tokens(2_000_000, "cpu") == CPU_MICRO_BATCH_TOKENS
    # olmo-core's ladder table for an 80 GB H100 (no GPU here, so no memory scaling).
    if not __import__("torch").cuda.is_available():
        assert max_micro_batch_tokens(150_000_000, "cuda") == 16 * 4096
        assert max_micro_batch_tokens(1_311_131_648, "cuda") == 8 * 4096
        assert max_micro_batch_tokens(6_500_000_000, "cuda") == 2 * 4096
    plan = dry_run_json(
        "model=olmo2_1b", "data=olmo_mix_v1_5", "tokenizer=gpt_neox_olmo", "cluster.device=cpu"
    )
    assert plan["micro_batch_instances"] == CPU_MICRO_BATCH_TOKENS // 8192
    assert plan["grad_accum_steps"] == plan["batch_size_instances"] // plan["micro_batch_instances"]
