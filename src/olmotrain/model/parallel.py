"""Parallelism and device choices: device, attention backend, micro-batch, olmo-core parallel configs.

Everything here maps olmotrain's ``cluster``/``parallel``/``model.attn_backend`` settings onto
olmo-core's own configs (``TransformerDataParallelConfig``, ``TransformerActivationCheckpointingConfig``,
``Float8Config``, ``AttentionBackendName``) and checks, before any model is built, that the
machine can honour them.
"""

from __future__ import annotations

import importlib.util
import os

from olmotrain.config.schema import ParallelSchema
from olmotrain.errors import UserError
from olmotrain.machine import usable_cpus

PARALLEL_NAMES = ("auto", "fsdp", "hsdp", "ddp", "none")
ATTN_BACKENDS = ("auto", "torch", "flash_2", "flash_3")
AC_MODES = ("full", "selected_blocks", "selected_modules", "selected_ops", "budget")

# Per-rank micro-batch (tokens) on an 80 GB H100 with FSDP, bf16 and activation memory to spare,
# by non-embedding size: olmo-core's ladder configurator (olmo-core main) uses 16/12/10/8/4/2 x 4096
# tokens for its nominal 190M/370M/760M/1B/3B/7B+ sizes.
_H100_MICRO_BATCH = (
    (250e6, 16 * 4096),
    (500e6, 12 * 4096),
    (900e6, 10 * 4096),
    (1.5e9, 8 * 4096),
    (4e9, 4 * 4096),
    (float("inf"), 2 * 4096),
)
_H100_MEMORY_GB = 80
CPU_MICRO_BATCH_TOKENS = 16_384


def cuda_available() -> bool:
    """Whether torch sees a usable CUDA device."""
    import torch

    return torch.cuda.is_available()


def device_type(wanted: str) -> str:
    """``cuda`` or ``cpu`` for a ``cluster.device`` setting (``auto``: CUDA when present)."""
    if wanted not in ("auto", "cpu", "cuda"):
        raise UserError(f"cluster.device={wanted} is not one of auto, cpu, cuda")
    if wanted == "cuda" and not cuda_available():
        raise UserError(
            "cluster.device=cuda but this machine has no usable CUDA device; use cluster.device=auto or cpu"
        )
    if wanted == "auto":
        return "cuda" if cuda_available() else "cpu"
    return wanted


def set_cpu_threads(threads: int | None = None) -> int:
    """Make ``threads`` (default: ``OMP_NUM_THREADS`` if set, else the usable CPUs) the intra-op
    thread count in force, and return it.

    torch sizes its thread pool when it is imported, so setting ``OMP_NUM_THREADS`` afterwards
    (which is all olmo-core's environment set-up does) changes nothing in a running process.
    """
    import torch

    if threads is None:
        threads = int(os.environ.get("OMP_NUM_THREADS") or usable_cpus())
    threads = max(1, threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    return threads


def check_devices(wanted: str, devices: int) -> int:
    """``devices`` local ranks on ``cluster.device=wanted``, checked against this machine."""
    device = device_type(wanted)
    if devices < 1:
        raise UserError(f"cluster.devices={devices} must be at least 1")
    if device == "cuda":
        import torch

        have = torch.cuda.device_count()
        if devices > have:
            raise UserError(
                f"cluster.devices={devices} but this machine has {have} GPU(s); use cluster.devices<={have}"
            )
    else:
        have = usable_cpus()
        if devices > have:
            raise UserError(
                f"cluster.devices={devices} CPU ranks but this machine has {have} cores; use cluster.devices<={have}"
            )
    return devices


def max_micro_batch_tokens(n: int, device: str) -> int:
    """Tokens one rank processes per forward/backward, from the model size and device memory."""
    if device == "cpu" or (device == "auto" and not cuda_available()):
        return CPU_MICRO_BATCH_TOKENS
    tokens = next(t for limit, t in _H100_MICRO_BATCH if n <= limit)
    if cuda_available():
        import torch

        memory_gb = torch.cuda.get_device_properties(0).total_memory / 2**30
        tokens = int(tokens * min(2.0, memory_gb / _H100_MEMORY_GB))
    return max(1024, tokens)


def attention_backend(name: str, device: str) -> str:
    """The olmo-core attention backend for ``model.attn_backend`` on this device."""
    if name not in ATTN_BACKENDS:
        raise UserError(f"model.attn_backend={name} is not one of {', '.join(ATTN_BACKENDS)}")
    flash_module = {"flash_2": "flash_attn", "flash_3": "flash_attn_interface"}
    if name == "auto":
        return "flash_2" if device == "cuda" and importlib.util.find_spec("flash_attn") else "torch"
    if name in flash_module:
        if device != "cuda":
            raise UserError(
                f"model.attn_backend={name} needs a CUDA GPU; use model.attn_backend=auto or torch"
            )
        if importlib.util.find_spec(flash_module[name]) is None:
            raise UserError(
                f"model.attn_backend={name} needs the {flash_module[name]} package, which is not installed; "
                f"`pip install -r requirements-gpu.txt` or use model.attn_backend=auto"
            )
    return name


def parallel_name(parallel: ParallelSchema, world_size: int) -> str:
    """``fsdp`` | ``hsdp`` | ``ddp`` | ``none``; ``auto`` is FSDP on more than one device."""
    name = parallel.name
    if name not in PARALLEL_NAMES:
        raise UserError(f"parallel={name} is not one of {', '.join(PARALLEL_NAMES)}")
    if name == "auto":
        return "fsdp" if world_size > 1 else "none"
    replicas = parallel.num_replicas
    # Checked here, not only in check_parallel: the plan's memory estimate divides by it.
    if name == "hsdp" and replicas is not None and (replicas < 1 or world_size % replicas):
        raise UserError(f"parallel.num_replicas={replicas} does not divide the {world_size} ranks")
    return name


def check_parallel(parallel: ParallelSchema, world_size: int, device: str) -> None:
    """Refuse settings this machine cannot run, before any model is built."""
    parallel_name(parallel, world_size)
    mode = parallel.activation_checkpointing
    if mode is not None and mode not in AC_MODES:
        raise UserError(
            f"parallel.activation_checkpointing={mode} is not one of null, {', '.join(AC_MODES)}"
        )
    if parallel.float8:
        if device != "cuda":
            raise UserError("parallel.float8=true needs a CUDA GPU; leave it false on CPU")
        if importlib.util.find_spec("torchao") is None:
            raise UserError("parallel.float8=true needs torchao (`pip install torchao`)")


def dp_config(parallel: ParallelSchema, world_size: int, device: str):
    """olmo-core's ``TransformerDataParallelConfig`` (``None`` for a single unsharded device)."""
    from olmo_core.config import DType
    from olmo_core.distributed.parallel import DataParallelType
    from olmo_core.train.train_module import TransformerDataParallelConfig

    name = parallel_name(parallel, world_size)
    if name == "none":
        return None
    # bf16 parameters with fp32 gradient reduction on GPUs; CPUs train in fp32 throughout.
    param_dtype = DType.bfloat16 if device == "cuda" else None
    return TransformerDataParallelConfig(
        name=DataParallelType(name),
        param_dtype=param_dtype,
        reduce_dtype=DType.float32,
        num_replicas=parallel.num_replicas if name == "hsdp" else None,
        shard_degree=parallel.shard_degree if name == "hsdp" else None,
    )


def ac_config(parallel: ParallelSchema):
    """olmo-core's activation-checkpointing config, or ``None``."""
    mode = parallel.activation_checkpointing
    if mode is None:
        return None
    from olmo_core.train.train_module import TransformerActivationCheckpointingConfig
    from olmo_core.train.train_module.transformer.config import (
        TransformerActivationCheckpointingMode,
    )

    return TransformerActivationCheckpointingConfig(
        mode=TransformerActivationCheckpointingMode(mode),
        block_interval=parallel.ac_block_interval,
        modules=parallel.ac_modules,
        activation_memory_budget=parallel.ac_memory_budget,
    )


def float8_config(parallel: ParallelSchema):
    """olmo-core's ``Float8Config`` when ``parallel.float8`` (CUDA + torchao), else ``None``."""
    if not parallel.float8:
        return None
    from olmo_core.float8 import Float8Config

    return Float8Config(enabled=True)
