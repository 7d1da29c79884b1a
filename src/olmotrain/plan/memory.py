"""Memory per device, from the model's shapes and the run's micro-batch, precision and sharding.

``memory_estimate`` is a pure function: bytes of parameters, gradients, optimizer state
(SkipStepAdamW: two fp32 moments per parameter), activations of one micro-batch (what autograd
keeps for the backward pass), and the runtime's own resident memory. Parameters, gradients and
moments are fp32 masters on every device, sharded by FSDP (over all ranks) or HSDP (over a
replica's ranks), whole with DDP (which also keeps gradient buckets) or one device.

Activations, per token and layer (elements, counted from what each op of olmo-core's OLMo-2 block
saves): the block input, q/k/v and their QK-norm inputs and outputs, the attention inputs and
output, both norms' inputs and outputs, and the SwiGLU's four hidden-size tensors
(``6d + 4q + 4kv + 4f``), plus the attention probabilities (``heads x seq``) where attention runs
PyTorch's math kernel (on CPU; flash / efficient kernels on GPU keep none); then ~2 fp32 vocab
rows per token for the logits and the loss. fp32 on CPU, bf16 on GPU. Activation checkpointing
keeps the block inputs only (``full``), of every k-th block (``selected_blocks``), or a fraction.

Validated on CPU (2 cores): olmo2_190m (8k vocab, 2.0 GB of model state) at micro-batches of
1 to 16 sequences of 512: the estimate is within 17% of the measured peak resident memory
(tests/test_memory.py measures it again). GPU figures follow the same counts; not measured here.
"""

from __future__ import annotations

from dataclasses import dataclass

from olmotrain.model.lws import LayerShape

GIB = 2**30

CPU_RUNTIME_BYTES = int(0.95e9)
"""Resident memory of a training process before the model exists (Python, torch, olmo-core, the
data loader): measured 0.95 GB on the 2-core CPU machine."""

GPU_RUNTIME_BYTES = int(1.0e9)
"""The CUDA context and allocator slack a GPU process holds beyond its tensors (stated)."""

AC_KEPT = {"selected_modules": 0.5, "selected_ops": 0.6}
"""Share of the activations kept by the activation-checkpointing modes that do not keep whole
blocks (approximate: it depends on which modules or ops are saved)."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per device."""

    params: int
    grads: int
    optimizer: int
    activations: int
    buffers: int
    """FSDP's gathered (unsharded) blocks, DDP's gradient buckets."""
    runtime: int
    total: int


def activation_bytes_per_token(
    layers: list[LayerShape],
    d_model: int,
    padded_vocab: int,
    sequence_length: int,
    *,
    device: str,
    ac_mode: str | None = None,
    ac_block_interval: int | None = None,
    ac_memory_budget: float | None = None,
) -> float:
    """Activation bytes autograd keeps per token of a micro-batch (see the module docstring)."""
    act = 4 if device == "cpu" else 2
    per_layer = []
    for shape in layers:
        q = shape.n_heads * shape.head_dim
        kv = shape.n_kv_heads * shape.head_dim
        elements = 6 * d_model + 4 * q + 4 * kv + 4 * shape.ffn_hidden
        if device == "cpu":  # the math kernel keeps the softmax probabilities
            elements += shape.n_heads * sequence_length
        per_layer.append(elements * act)
    full = sum(per_layer)
    if ac_mode == "full":
        kept = len(layers) * d_model * act + max(per_layer)  # inputs + one block recomputed
    elif ac_mode == "selected_blocks":
        k = max(1, ac_block_interval or 1)
        recomputed = [b for i, b in enumerate(per_layer) if i % k == 0]
        kept = full - sum(recomputed) + len(recomputed) * d_model * act + max(recomputed)
    elif ac_mode == "budget":
        kept = full * min(1.0, max(0.0, ac_memory_budget if ac_memory_budget is not None else 1.0))
    elif ac_mode in AC_KEPT:
        kept = full * AC_KEPT[ac_mode]
    else:
        kept = full
    embedding_and_head = 4 * d_model * act  # embedding output, final norm in/out, head input
    logits = 2 * padded_vocab * 4  # fp32 logits and the loss's log-softmax
    return kept + embedding_and_head + logits


def memory_estimate(
    *,
    num_params: int,
    layers: list[LayerShape],
    d_model: int,
    padded_vocab: int,
    sequence_length: int,
    micro_batch_instances: int,
    world_size: int,
    parallel: str,
    device: str,
    num_replicas: int | None = None,
    shard_degree: int | None = None,
    ac_mode: str | None = None,
    ac_block_interval: int | None = None,
    ac_memory_budget: float | None = None,
) -> MemoryEstimate:
    """Memory per device of a training run (bytes)."""
    if parallel == "fsdp":
        shards = world_size
    elif parallel == "hsdp":
        shards = max(1, shard_degree or world_size // (num_replicas or 1))
    else:
        shards = 1
    params = 4 * num_params // shards
    grads = 4 * num_params // shards
    optimizer = 8 * num_params // shards
    per_token = activation_bytes_per_token(
        layers,
        d_model,
        padded_vocab,
        sequence_length,
        device=device,
        ac_mode=ac_mode,
        ac_block_interval=ac_block_interval,
        ac_memory_budget=ac_memory_budget,
    )
    activations = int(per_token * micro_batch_instances * sequence_length)
    buffers = 0
    if parallel in ("fsdp", "hsdp") and shards > 1:
        block = max(_block_params(shape, d_model) for shape in layers)
        buffers = 2 * block * (2 if device == "cuda" else 4)  # the block computed + the prefetched
    elif parallel == "ddp":
        buffers = 4 * num_params  # gradient buckets
    runtime = CPU_RUNTIME_BYTES if device == "cpu" else GPU_RUNTIME_BYTES
    total = params + grads + optimizer + activations + buffers + runtime
    return MemoryEstimate(params, grads, optimizer, activations, buffers, runtime, total)


def _block_params(shape: LayerShape, d_model: int) -> int:
    q = shape.n_heads * shape.head_dim
    kv = shape.n_kv_heads * shape.head_dim
    return d_model * (q + 2 * kv) + q * d_model + 3 * d_model * shape.ffn_hidden


@dataclass(frozen=True)
class MemoryFit:
    """Whether the memory estimate fits one device, and what would make it fit."""

    fits: bool
    capacity: int
    """Bytes of one device (for CPU, this machine's RAM)."""
    would_fit_with: list[str]
    """Settings that would fit, e.g. ``train.micro_batch_size=1``."""


def fit_advice(
    estimate: MemoryEstimate, capacity: int, variants: dict[str, MemoryEstimate]
) -> MemoryFit:
    """Whether ``estimate`` fits ``capacity`` bytes, and which of ``variants`` (what would change:
    a smaller micro-batch, activation checkpointing, more devices) would."""
    fixes = [name for name, v in variants.items() if v.total <= capacity]
    return MemoryFit(estimate.total <= capacity, capacity, fixes)
