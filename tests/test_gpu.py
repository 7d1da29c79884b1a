"""The GPU path: correctness checks that run on a CUDA machine (``pytest -m gpu``, what
``bench/gpu_check.sh correctness`` runs there; each skips without CUDA), and the CPU-side parts
of the GPU kit: the device peak table MFU is measured against, and the kit's completeness.

Tolerances: bf16 against fp32 (the same run on the CPU) 0.05 nats of training loss per step
over 8 steps of olmo2_1m; FSDP's bf16 parameters against autocast, and compiled against eager,
the same 0.05; the plan's memory estimate within 25% of the peak olmo-core measures.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    REPO,
    assert_one_line_error,
    dry_run_json,
    metrics,
    run_cli,
    run_module,
    train_main,
)

RUN = ["experiment=smoke", "train.max_steps=8", "data.eval=null", "eval.downstream=[]"]
LOSS_TOLERANCE = 0.05
MEMORY_TOLERANCE = 0.25


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


gpu = pytest.mark.skipif(not _cuda(), reason="needs CUDA")


def _losses(run_dir: Path) -> list[float]:
    return [r["train/CE loss"] for r in metrics(run_dir) if "train/CE loss" in r]


def _train(tmp_path: Path, name: str, *extra: str) -> list[float]:
    proc = run_cli(*RUN, *extra, f"output_root={tmp_path}", f"run_name={name}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _losses(tmp_path / name)


def _close(a: list[float], b: list[float]) -> None:
    assert len(a) == len(b) == 8
    worst = max(abs(x - y) for x, y in zip(a, b, strict=True))
    assert worst < LOSS_TOLERANCE, (worst, a, b)


# ---- on the CPU ----------------------------------------------------------------------------


def test_mfu_is_measured_against_the_devices_real_peak():
    from olmo_core.train.callbacks.speed_monitor import get_device_peak_flops_per_second

    from olmotrain.plan.cost import device_peak_flops

    # olmo-core's own figures where it knows the device ...
    for name in (
        "NVIDIA H100 80GB HBM3",
        "NVIDIA H100 PCIe",
        "NVIDIA H100 NVL",
        "NVIDIA A100-SXM4-80GB",
    ):
        assert device_peak_flops(name)[0] == pytest.approx(
            get_device_peak_flops_per_second(name, using_half_precision=True), rel=1e-3
        )
    # ... and the H200's real one where it takes it for an A100 (MFU 3.2x too high)
    peak, source = device_peak_flops("NVIDIA H200")
    assert peak == 989.5e12 and "989.5 TFLOP/s" in source
    assert get_device_peak_flops_per_second("NVIDIA H200", using_half_precision=True) == 312e12
    peak, source = device_peak_flops("NVIDIA GeForce RTX 4090")
    assert peak is None and "A100 figure" in source and "guess" in source


def _kit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "scripts/gpu_kit.py", *args], cwd=REPO, capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def kit(embedded_data) -> Path:
    """``make gpu-kit``'s kit (built here when missing: wheels from PyPI, seconds)."""
    if not (REPO / ".gpu-kit" / "requirements.txt").exists():
        built = _kit()
        assert built.returncode == 0, built.stdout + built.stderr[-3000:]
    return REPO / ".gpu-kit"


def test_the_gpu_kit_is_complete_and_the_check_can_fail(kit, tmp_path):
    """pip resolves the GPU needs from the kit alone; without one wheel it does not."""
    proc = _kit("--check")
    assert proc.returncode == 0 and "complete" in proc.stdout, proc.stdout + proc.stderr[-3000:]
    broken = tmp_path / "kit"
    shutil.copytree(kit, broken)
    (next((broken / "wheels").glob("hydra_core-*.whl"))).unlink()
    proc = _kit("--check", "--out", str(broken))
    assert proc.returncode == 1 and "INCOMPLETE" in proc.stdout


def test_the_gpu_check_dry_runs_on_the_cpu(kit, tmp_path):
    """``bench/gpu_check.sh dry-run``: the kit installs, the probe and the plans are written."""
    proc = subprocess.run(
        ["bash", "bench/gpu_check.sh", "dry-run"], cwd=REPO, capture_output=True, text=True,
        env={**os.environ, "OUT": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    device = json.loads((tmp_path / "device.json").read_text())
    assert device["device"] == "cpu" and device["sdpa_kernel_head64"]
    plan = json.loads((tmp_path / "plan-dd_1b.json").read_text().strip().splitlines()[-1])
    assert plan["compile"] is True and plan["estimate"]["device_type"] == "h200"
    assert (
        "test_bf16_on_the_gpu_matches_fp32_on_the_cpu"
        in (tmp_path / "correctness-selection.log").read_text()
    )


# ---- on a GPU --------------------------------------------------------------------------------


@pytest.mark.gpu
@gpu
def test_bf16_on_the_gpu_matches_fp32_on_the_cpu(embedded_data, tmp_path):
    cpu = _train(tmp_path, "fp32", "cluster.device=cpu")
    cuda = _train(tmp_path, "bf16", "cluster.device=cuda")
    _close(cuda, cpu)


@pytest.mark.gpu
@gpu
def test_fsdp_bf16_parameters_and_compile_train_like_autocast(embedded_data, tmp_path):
    eager = _train(tmp_path, "autocast", "cluster.device=cuda")
    fsdp = _train(tmp_path, "fsdp", "cluster.device=cuda", "parallel.name=fsdp")
    compiled = _train(tmp_path, "compiled", "cluster.device=cuda", "parallel.compile=true")
    _close(fsdp, eager)
    _close(compiled, eager)


@pytest.mark.gpu
@gpu
def test_the_attention_kernel_sdpa_uses_is_reported():
    from olmotrain.model.attention_probe import sdpa_kernel

    kernel = sdpa_kernel("cuda", head_dim=64)
    assert kernel in {"cudnn", "flash", "efficient", "math"}
    print(f"SDPA kernel: {kernel}")


@pytest.mark.gpu
@gpu
def test_a_gpu_checkpoint_resumes_exports_evaluates_and_generates(embedded_data, tmp_path):
    args = ["cluster.device=cuda", "train.ephemeral_checkpoint_interval=4"]
    _train(tmp_path, "run", *args, "train.max_steps=4")
    proc = run_cli(*RUN, *args, f"output_root={tmp_path}", "run_name=run")  # 4 -> 8
    assert proc.returncode == 0 and "resumed from step 4" in proc.stderr, proc.stderr[-3000:]
    run = tmp_path / "run"
    export = run_module("olmotrain.export", str(run), "--output", str(tmp_path / "hf"), "--json")
    assert export.returncode == 0, export.stderr[-3000:]
    assert json.loads(export.stdout.strip().splitlines()[-1])["passed"]
    ev = run_module("olmotrain.evaluate", str(run), "--device", "cuda", "--heldout-tokens", "2000",
                    "--json")  # fmt: skip
    assert ev.returncode == 0, ev.stderr[-3000:]
    gen = run_module("olmotrain.generate", str(run), "--device", "cuda", "--prompt", "def ",
                     "--max-new-tokens", "8")  # fmt: skip
    assert gen.returncode == 0 and gen.stdout.strip(), gen.stderr[-3000:]


@pytest.mark.gpu
@gpu
def test_the_memory_estimate_is_within_25_percent_for_a_1b_model(embedded_data, tmp_path):
    args = ["model=dd_1b", "cluster.device=cuda", "train.sequence_length=2048",
            "train.max_steps=3", "train.save_checkpoints=false", "data.eval=null",
            "eval.downstream=[]", "train.log_interval=1"]  # fmt: skip
    plan = dry_run_json(*args)
    proc = run_cli(*args, f"output_root={tmp_path}", "run_name=mem")
    assert proc.returncode == 0, proc.stderr[-3000:]
    peak = max(r.get("gpu_memory/GPU active mem (GiB)", 0) for r in metrics(tmp_path / "mem"))
    estimate = plan["memory"]["total"] / 2**30
    print(f"memory: estimate {estimate:.2f} GiB, measured peak {peak:.2f} GiB")
    assert abs(estimate - peak) <= MEMORY_TOLERANCE * peak, (estimate, peak)


@pytest.mark.gpu
@gpu
def test_more_gpus_than_the_machine_has_is_one_line():
    import torch

    many = torch.cuda.device_count() + 1
    result = train_main(*RUN, "cluster.device=cuda", f"cluster.devices={many}")
    assert "GPU" in assert_one_line_error(result)
