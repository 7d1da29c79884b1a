"""Real olmo-core training on CPU through the real CLI: checkpoints, kill -9, resume, refusal."""

from __future__ import annotations

import json
import os
import re

import pytest
import yaml
from conftest import (
    ENGLISH_HELD_OUT,
    REPO,
    assert_one_line_error,
    checkpoint_steps,
    kill_at_step,
    metrics,
    run_cli,
    train_main,
)

pytestmark = pytest.mark.slow

# olmo2_1m on the embedded data: ~1 s a step on 2 cores.
RUN = [
    "model=olmo2_1m",
    "train.max_steps=10",
    "train.global_batch_size=8192",
    "train.ephemeral_checkpoint_interval=3",
    ENGLISH_HELD_OUT,  # the held-out report needs one source; several are test_eval's subject
    "train.sample_prompts=[def main]",
    "train.sample_max_new_tokens=4",
]


@pytest.fixture(scope="module")
def uninterrupted(embedded_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    proc = run_cli(*RUN, f"output_root={root}", "run_name=full")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "full", proc


def test_a_short_run_trains_checkpoints_and_reports(uninterrupted):
    run_dir, proc = uninterrupted
    records = metrics(run_dir)
    assert [r["step"] for r in records] == list(range(1, 11))
    assert records[-1]["tokens"] == 10 * 8192
    assert records[-1]["train/CE loss"] < records[0]["train/CE loss"]
    assert all(
        {"step", "tokens", "train/CE loss", "optim/LR (group 0)"} <= r.keys() for r in records
    )
    assert records[-1]["optim/LR (group 0)"] == 0.0  # the run ends at the bottom of its WSD-S decay
    # Permanent checkpoints at the period's pre-decay point and end; the config is saved.
    assert {9, 10} <= set(checkpoint_steps(run_dir))
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["model"]["name"] == "olmo2_1m" and "derived" not in saved
    # The plan, derived once, is saved beside the config: the same object as dry_run=json.
    plan = json.loads((run_dir / "plan.json").read_text())
    assert plan["max_steps"] == 10 and [c["step"] for c in plan["checkpoints"]] == [9, 10]
    assert "held-out loss" in proc.stdout and "unigram entropy" in proc.stdout
    assert f"checkpoint       {run_dir}/checkpoints/step10" in proc.stdout
    # Progress a person can follow: step/total, loss, ETA.
    assert "[step=5/10" in proc.stdout + proc.stderr and "eta=" in proc.stdout + proc.stderr


def test_the_output_reads_as_one_report_and_one_log(uninterrupted):
    run_dir, proc = uninterrupted
    assert proc.stdout.startswith("olmotrain: full finished at step 10/10"), proc.stdout[:200]
    assert "samples at step 10 (greedy):" in proc.stdout and "'def main' -> " in proc.stdout
    # Log lines have one format (olmo-core's own, dated and tab-separated, is replaced) and no
    # library chatter; olmotrain's thread count is the one in force.
    assert not re.search(r"^\d{4}-\d\d-\d\d ", proc.stderr, re.M), proc.stderr[:3000]
    for noise in ("transformer_engine", "Setting env var", "Will skip setting env var",
                  "Using attention backend", "Loading weights"):  # fmt: skip
        assert noise not in proc.stderr, noise
    # (OMP_NUM_THREADS when set, as under `make test`'s workers; else the usable CPUs).
    wanted = int(os.environ.get("OMP_NUM_THREADS") or len(os.sched_getaffinity(0)))
    threads = re.search(r"INFO olmotrain: (\d+) CPU thread\(s\) per rank", proc.stderr)
    assert threads and int(threads.group(1)) == wanted, (threads and threads.group(0), wanted)


def test_kill_9_then_resume_matches_the_uninterrupted_run(uninterrupted, tmp_path):
    full_dir, _ = uninterrupted
    kill_at_step(
        *RUN, f"output_root={tmp_path}", "run_name=killed", run_dir=tmp_path / "killed", step=5
    )
    assert 3 in checkpoint_steps(tmp_path / "killed")  # the ephemeral checkpoint it resumes from
    # kill -9 left the run dir's lock behind; its holder is provably gone, so it is taken over.
    holder = json.loads((tmp_path / "killed" / "owner.lock").read_text())
    resumed = run_cli(*RUN, f"output_root={tmp_path}", "run_name=killed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from step" in resumed.stdout + resumed.stderr
    assert f"was held by pid {holder['pid']} on {holder['host']}" in resumed.stderr
    assert "which is gone; taking it over" in resumed.stderr
    assert not (tmp_path / "killed" / "owner.lock").exists()  # released at the end
    a, b = metrics(full_dir), metrics(tmp_path / "killed")
    assert [r["step"] for r in b] == list(range(1, 11))  # one consistent history, no stale steps
    assert b[-1]["train/CE loss"] == pytest.approx(a[-1]["train/CE loss"], abs=1e-5)
    assert [r["train/CE loss"] for r in b] == pytest.approx(
        [r["train/CE loss"] for r in a], abs=1e-5
    )


def test_a_finished_run_says_so_and_does_not_retrain(uninterrupted):
    run_dir, _ = uninterrupted
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")}
    proc = run_cli(*RUN, f"output_root={run_dir.parent}", "run_name=full")
    assert proc.returncode == 0
    assert "already finished at step 10/10" in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")} == before


def test_a_different_run_in_the_same_dir_is_refused_and_nothing_changes(uninterrupted):
    run_dir, _ = uninterrupted
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    line = assert_one_line_error(
        train_main(
            "model=olmo2_14m",
            "train.max_steps=10",
            f"output_root={run_dir.parent}",
            "run_name=full",
        )
    )
    assert "holds a different run" in line and "model.name: 'olmo2_1m' -> 'olmo2_14m'" in line
    assert "fresh=true" in line
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_fresh_moves_the_old_run_aside(embedded_data, tmp_path):
    run = ("model=olmo2_1m", "data.eval=null", f"output_root={tmp_path}", "run_name=r")
    first = run_cli(*run, "train.max_steps=2")
    assert first.returncode == 0, first.stderr[-2000:]
    again = run_cli(*run, "train.max_steps=3", "fresh=true")
    assert again.returncode == 0, again.stderr[-2000:]
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("r.replaced-")]
    assert len(aside) == 1 and (aside[0] / "checkpoints" / "step2").exists()
    assert metrics(tmp_path / "r")[-1]["step"] == 3


def test_gpt_neox_tokenizer_trains_on_the_same_embedded_text(embedded_data, tmp_path):
    proc = run_cli(
        "model=olmo2_1m",
        "tokenizer=gpt_neox_olmo",
        "train.max_steps=2",
        "data.eval=null",  # 50k-vocabulary held-out logits cost more than the training here
        f"output_root={tmp_path}",
        "run_name=neox",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = json.loads((REPO / "data/embedded/gpt_neox_olmo/manifest.json").read_text())
    assert manifest["tokenizer"]["vocab_size"] == 50280
    assert metrics(tmp_path / "neox")[-1]["step"] == 2


@pytest.mark.gpu
def test_cuda_bf16_run_trains(embedded_data, tmp_path):
    """On a GPU machine: the same run on CUDA with bf16 autocast (skipped without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    proc = run_cli(*RUN, "cluster.device=cuda", f"output_root={tmp_path}", "run_name=gpu")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = metrics(tmp_path / "gpu")
    assert [r["step"] for r in records] == list(range(1, 11))
    assert records[-1]["train/CE loss"] < records[0]["train/CE loss"]
