"""Time, cost and disk of a run before it starts: FLOPs / (devices x peak x MFU), checkpoint bytes.

Peak dense BF16 FLOP/s per device type (vendor figures; olmo-core's speed monitor uses the same
for H100 and A100): H100 SXM and H200 989.5 TFLOP/s, A100 312 TFLOP/s. The MFU is an assumption,
0.4 by default on GPUs (olmo-core publishes 55,000 tokens/s per H100 for a 1B model at 4k
context, about 44% MFU), overridable with ``cluster.mfu``. On CPU the "peak" is a measured
training rate per core (olmo2_14m, ``make train``, trains at ~4,900 tokens/s x 14.2 MFLOP/token
= ~7e10 FLOP/s on the 2-core machine, 2026-12-05; an earlier 7,000 tokens/s was not reproduced
by today's code nor by the 2026-12-04 commit), so its MFU is 1.

The FLOP model is the last resort for training time: a measured throughput comes first
(:mod:`olmotrain.plan.throughput`). Around training, a run also spends (constants measured on the
project's 2-core CPU machine, ai2-olmo-core 3.0.0, torch 2.13.0 CPU, 2026-11/12; see
docs/benchmarks.md): start-up, process start to the first step (imports, Hydra, plan, model
build, data loading: 10 s; GPUs assumed 60 s, not measured); in-loop evaluation, held-out tokens
forward-only at 2x the training rate (measured 12,081 scored tokens/s against 6,176 training)
and ~350 tokens per downstream item (3 choices of ~118 tokens, core9's average); checkpoint
saves, model and optimizer state at ~100 MB/s plus 1 s each.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from olmotrain.errors import UserError

DEVICE_PEAKS = (
    # (a substring of torch.cuda.get_device_name(), dense BF16 FLOP/s), most specific first
    ("H100 NVL", 835.5e12),
    ("H100 PCIe", 756.5e12),
    ("H200", 989.5e12),
    ("H100", 989.5e12),
    ("B200", 2.25e15),
    ("B300", 2.25e15),
    ("A100", 312e12),
    ("L40S", 362.05e12),
)
"""Vendor dense BF16 peaks by device name: what MFU is measured against (olmo-core 3.0.0's
speed monitor takes an H200, or any device it does not know, for an A100: 312 TFLOP/s)."""
PEAK_FLOPS = {kind: dict(DEVICE_PEAKS)[kind.upper()] for kind in ("h100", "h200", "a100")}
"""The same peaks by ``cluster.device_type``, for the time estimate."""
DEVICE_MEMORY = {"h100": 80 * 10**9, "h200": 141 * 10**9, "a100": 80 * 10**9}
CPU_FLOPS_PER_CORE = 3.5e10
DEFAULT_GPU_MFU = 0.4
DEVICE_TYPES = (*PEAK_FLOPS, "cpu")
STARTUP_S = {"cpu": 10.0}
"""Process start to the first step, per device type (measured on CPU; 60 s elsewhere)."""
GPU_STARTUP_S = 60.0
EVAL_SPEEDUP = 2.0
"""Forward-only evaluation tokens/s over training tokens/s (measured 1.96 on CPU)."""
DOWNSTREAM_TOKENS_PER_ITEM = 350
DOWNSTREAM_ITEMS_UNLIMITED = 1000
"""Items assumed per downstream task without ``eval.limit`` (splits vary: 500 to 10,000)."""
CHECKPOINT_BYTES_PER_S = 100e6
CHECKPOINT_FIXED_S = 1.0


@dataclass(frozen=True)
class Work:
    """What a run computes besides its FLOPs: the inputs of the time estimate."""

    train_tokens: int
    eval_rounds: int
    """Times the evaluators run (the plan's evaluation steps)."""
    heldout_tokens: int
    """Held-out tokens per round."""
    downstream_items: int
    """Downstream items (questions) per round, over all tasks."""
    saves: int
    """Checkpoints saved (permanent and ephemeral)."""


@dataclass(frozen=True)
class Estimate:
    """The ``estimate`` of ``dry_run=json``."""

    device_type: str
    peak_flops: float
    """Per device (FLOP/s)."""
    mfu: float
    devices: int
    seconds: float
    gpu_hours: float
    """Device-hours: seconds x devices / 3600 (CPU processes count as devices)."""
    checkpoint_bytes: int
    """One checkpoint: model weights and optimizer state (fp32)."""
    checkpoints_kept: int
    """Permanent ones, the step-0 one and the latest ephemeral one."""
    disk_bytes: int
    assumed: str | None = None
    """Why the device type was assumed, when it was."""
    startup_s: float = 0.0
    """Process start to the first step."""
    train_s: float = 0.0
    eval_s: float = 0.0
    """In-loop evaluation: held-out and downstream, every round."""
    checkpoint_s: float = 0.0
    tokens_per_s: float = 0.0
    """Training tokens/s of the whole run that ``train_s`` uses."""
    throughput_source: str = "FLOP model"
    """Where ``tokens_per_s`` came from: an earlier run (named), a calibration, the FLOP model."""


def local_device_type() -> tuple[str, str | None]:
    """This machine's device type for the estimate, and a note when it is a guess."""
    import torch

    if not torch.cuda.is_available():
        return "cpu", None
    name = torch.cuda.get_device_name(0)
    for key in ("H200", "H100", "A100"):
        if key in name:
            return key.lower(), None
    return "h100", f"{name} is not in the table; assumed h100 (set cluster.device_type)"


def device_type_for(wanted: str | None, device: str) -> tuple[str, str | None]:
    """The estimate's device type: ``cluster.device_type``, else the one the run will use."""
    if wanted is not None:
        if wanted not in DEVICE_TYPES:
            raise UserError(f"cluster.device_type={wanted} is not one of {', '.join(DEVICE_TYPES)}")
        return wanted, None
    local, note = local_device_type()
    if device == "cuda" and local == "cpu":  # a GPU job planned on a CPU machine
        return "h100", "no GPU here; assumed h100 for the job's GPUs (set cluster.device_type)"
    return local if device == "cuda" else "cpu", note


def device_capacity(device_type: str) -> int:
    """Memory of one device of ``device_type`` (bytes); for CPU, this machine's RAM."""
    if device_type in DEVICE_MEMORY:
        return DEVICE_MEMORY[device_type]
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def estimate(
    *,
    total_flops: float,
    devices: int,
    device_type: str,
    mfu: float | None,
    num_params: int,
    checkpoints_kept: int,
    assumed: str | None = None,
    work: Work | None = None,
    measured: tuple[float, str] | None = None,
) -> Estimate:
    """Wall time, device-hours and checkpoint disk of a run: start-up + training + evaluation +
    checkpoint saves. Training runs at ``measured`` ``(tokens/s, source)`` when given, else at
    the FLOP model's rate; without ``work`` only the training FLOPs are counted."""
    if mfu is not None and not 0 < mfu <= 1:
        raise UserError(f"cluster.mfu={mfu} must be in (0, 1], e.g. cluster.mfu=0.4")
    if device_type == "cpu":
        peak, used_mfu = CPU_FLOPS_PER_CORE * (os.cpu_count() or 1) / devices, 1.0
        if mfu is not None:
            used_mfu = mfu
    else:
        peak, used_mfu = PEAK_FLOPS[device_type], DEFAULT_GPU_MFU if mfu is None else mfu
    flop_seconds = total_flops / (devices * peak * used_mfu)
    checkpoint = 12 * num_params + 1_000_000  # fp32 weights + two moments, plus trainer state
    parts = _parts(work, flop_seconds, measured, device_type, checkpoint)
    seconds = sum(parts[k] for k in ("startup_s", "train_s", "eval_s", "checkpoint_s"))
    return Estimate(
        device_type=device_type,
        peak_flops=peak,
        mfu=used_mfu,
        devices=devices,
        seconds=seconds,
        gpu_hours=seconds * devices / 3600,
        checkpoint_bytes=checkpoint,
        checkpoints_kept=checkpoints_kept,
        disk_bytes=checkpoint * checkpoints_kept,
        assumed=assumed,
        **parts,
    )


def _parts(
    work: Work | None,
    flop_seconds: float,
    measured: tuple[float, str] | None,
    device_type: str,
    checkpoint_bytes: int,
) -> dict:
    """The estimate's ``*_s`` parts, ``tokens_per_s`` and ``throughput_source``."""
    if work is None:
        return {"train_s": flop_seconds}
    rate, source = measured or (work.train_tokens / max(flop_seconds, 1e-9), "FLOP model")
    eval_tokens = work.heldout_tokens + work.downstream_items * DOWNSTREAM_TOKENS_PER_ITEM
    return {
        "startup_s": STARTUP_S.get(device_type, GPU_STARTUP_S),
        "train_s": work.train_tokens / rate,
        "eval_s": work.eval_rounds * eval_tokens / (EVAL_SPEEDUP * rate),
        "checkpoint_s": work.saves
        * (CHECKPOINT_FIXED_S + checkpoint_bytes / CHECKPOINT_BYTES_PER_S),
        "tokens_per_s": rate,
        "throughput_source": source,
    }


def device_peak_flops(device_name: str) -> tuple[float | None, str]:
    """The dense BF16 peak of a GPU by its name, and where the figure comes from: olmotrain's
    table (:data:`DEVICE_PEAKS`), or ``None`` for a device it does not know (olmo-core then
    assumes an A100, and the line says so)."""
    for key, peak in DEVICE_PEAKS:
        if key in device_name:
            return peak, f"{device_name}: {peak / 1e12:g} TFLOP/s dense BF16 (vendor figure)"
    return None, (
        f"{device_name}: not in olmotrain's table, so olmo-core's A100 figure (312 TFLOP/s): "
        "the MFU is a guess"
    )
