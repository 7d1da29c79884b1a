"""Time, cost and disk of a run before it starts: FLOPs / (devices x peak x MFU), checkpoint bytes.

Peak dense BF16 FLOP/s per device type (vendor figures; olmo-core's speed monitor uses the same
for H100 and A100): H100 SXM and H200 989.5 TFLOP/s, A100 312 TFLOP/s. The MFU is an assumption,
0.4 by default on GPUs (olmo-core publishes 55,000 tokens/s per H100 for a 1B model at 4k
context, about 44% MFU), overridable with ``cluster.mfu``. On CPU the "peak" is a measured
training rate per core (olmo2_14m trains at ~7,000 tokens/s x 14.2 MFLOP/token = ~1e11 FLOP/s
on the 2-core machine), so its MFU is 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from olmotrain.errors import UserError

PEAK_FLOPS = {"h100": 989.5e12, "h200": 989.5e12, "a100": 312e12}
DEVICE_MEMORY = {"h100": 80 * 10**9, "h200": 141 * 10**9, "a100": 80 * 10**9}
CPU_FLOPS_PER_CORE = 5.0e10
DEFAULT_GPU_MFU = 0.4
DEVICE_TYPES = (*PEAK_FLOPS, "cpu")


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
) -> Estimate:
    """Wall time, device-hours and checkpoint disk of a run."""
    if mfu is not None and not 0 < mfu <= 1:
        raise UserError(f"cluster.mfu={mfu} must be in (0, 1], e.g. cluster.mfu=0.4")
    if device_type == "cpu":
        peak, used_mfu = CPU_FLOPS_PER_CORE * (os.cpu_count() or 1) / devices, 1.0
        if mfu is not None:
            used_mfu = mfu
    else:
        peak, used_mfu = PEAK_FLOPS[device_type], DEFAULT_GPU_MFU if mfu is None else mfu
    seconds = total_flops / (devices * peak * used_mfu)
    checkpoint = 12 * num_params + 1_000_000  # fp32 weights + two moments, plus trainer state
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
    )
