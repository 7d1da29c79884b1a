"""OpenELM layer-wise scaling (LWS) for olmo-core transformers (arXiv 2404.14619).

OpenELM gives every layer its own width instead of one uniform block: layer ``i`` of ``L`` gets
multipliers interpolated linearly from a minimum (first layer) to a maximum (last layer), so early
layers are narrow and late layers wide at the same parameter budget. This module reproduces Apple's
reference implementation (corenet ``corenet/modeling/models/language_modeling/general_gpt.py``,
``GPTConfig.__post_init__`` / ``FeedForwardNetwork``, with ``corenet/utils/math_utils.py``'s
``make_divisible``; the Hugging Face ``configuration_openelm.py`` is the same code):

- multipliers: ``round(v, 2) for v in np.linspace(min, max, num=L)`` (numpy floats, as there);
- query width ``make_divisible(d_model * qkv_i, divisor=head_dim * gqa_groups)``; query heads =
  width / head_dim, key/value heads = query heads / gqa_groups; head_dim is fixed across layers;
- FFN hidden size ``make_divisible(d_model * ffn_i, divisor=256)`` (``ffn_dim_divisor``).

Here ``gqa_groups`` is the base config's ``n_heads / n_kv_heads`` (OpenELM's ``num_gqa_groups``).
The shapes become olmo-core ``TransformerConfig.block_overrides`` (one block per layer, each with an
explicit ``head_dim``), so olmo-core's own ``num_params``, FLOP counts, building and sharding all
see the per-layer sizes.

``output_scalars`` is olmotrain's addition, not OpenELM's: a per-layer factor (same min->max
interpolation) on the initialization std of each block's two *residual-output* projections, the
attention output ``attention.w_out`` and the FFN down projection ``feed_forward.w2``. Those two are
the only matrices whose outputs are added straight into the residual stream, so they set how much
each layer writes into it at initialization (the knob OPT/GPT-2/corenet scale by depth); the input
projections (Q/K/V, w1/w3) only change what a layer reads and are left alone. olmo-core has no
per-layer init-std setting, so :func:`scale_output_projections` multiplies the freshly initialized
weights instead (see its docstring for why that is exactly the same distribution).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import TYPE_CHECKING, Any

import numpy as np

from olmotrain.errors import UserError
from olmotrain.model.shapes import AttentionShape, check_attention_shape

if TYPE_CHECKING:
    import torch
    from olmo_core.nn.transformer import TransformerConfig

SCALAR_KEYS = ("qkv_scalars", "ffn_scalars", "output_scalars")
"""The keys of ``model.lws``; each is ``[min, max]`` or null."""

FFN_DIM_DIVISOR = 256
"""OpenELM's ``ffn_dim_divisor``: every FFN hidden size is a multiple of this."""


def make_divisible(v: float, divisor: int, min_value: float | None = None) -> int:
    """Round ``v`` to a multiple of ``divisor`` exactly as OpenELM does.

    The reference (corenet ``math_utils.make_divisible``, from TF MobileNet) rounds half up by
    truncation, ``int(v + divisor / 2) // divisor * divisor``, never goes below ``min_value``
    (default: ``divisor``), and adds one more ``divisor`` when that rounding lost more than 10% of
    ``v``. Every reference call site wraps the result in ``int()``; so does this.
    """
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    # Rounding down by more than 10% would shrink the layer too much: round up instead.
    if new_v < 0.9 * v:
        new_v += divisor
    return int(new_v)


def layer_multipliers(lo: float, hi: float, n_layers: int) -> list[float]:
    """``n_layers`` multipliers from ``lo`` (first layer) to ``hi`` (last), to two decimals.

    Same expression as the reference: Python's ``round(v, 2)`` on numpy float64 values of
    ``np.linspace`` (numpy's rounding, which can differ from ``round`` on a plain float).
    """
    return [float(round(v, 2)) for v in np.linspace(lo, hi, num=n_layers, dtype=float)]


@dataclasses.dataclass(frozen=True)
class LayerShape:
    """One layer's attention/FFN sizes and its output-projection init scale."""

    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn_hidden: int
    output_scale: float


def layer_shapes(
    *,
    d_model: int,
    n_layers: int,
    head_dim: int,
    n_heads: int,
    n_kv_heads: int,
    lws: Mapping[str, Any] | None,
    ffn_hidden: int | None = None,
) -> list[LayerShape]:
    """Per-layer shapes of a model with base sizes ``d_model, n_heads, n_kv_heads, head_dim``.

    ``lws`` holds ``qkv_scalars``, ``ffn_scalars`` and ``output_scalars``, each ``[min, max]`` or
    absent/null: absent qkv/ffn keeps every layer at the base heads / ``ffn_hidden`` (which is then
    required), absent output scales are 1.0. Raises ``UserError`` for inconsistent input.
    """
    _check_base(d_model, n_layers, head_dim, n_heads, n_kv_heads)
    qkv, ffn, out = _scalar_pairs(lws)
    # An even head_dim (RoPE), and with qkv_scalars n_heads * head_dim = d_model: OpenELM sizes
    # query widths from d_model, so multiplier 1.0 must mean the base heads. The hints assume a
    # set head_dim and n_kv_heads (build checks first, knowing which are set).
    check_attention_shape(
        AttentionShape(d_model, n_heads, head_dim, n_kv_heads, sized_from_d_model=qkv is not None)
    )
    gqa_groups = n_heads // n_kv_heads
    heads = _layer_heads(qkv, d_model, n_layers, head_dim, n_heads, gqa_groups)
    hidden = _layer_ffn_hidden(ffn, d_model, n_layers, ffn_hidden)
    scales = [1.0] * n_layers if out is None else layer_multipliers(*out, n_layers)
    shapes = [
        LayerShape(
            n_heads=h,
            n_kv_heads=h // gqa_groups,
            head_dim=head_dim,
            ffn_hidden=f,
            output_scale=s,
        )
        for h, f, s in zip(heads, hidden, scales, strict=True)
    ]
    for i, shape in enumerate(shapes):
        # make_divisible's floor keeps this unreachable today; a silent 0-head layer is worse.
        if shape.n_heads < 1 or shape.n_kv_heads < 1:
            raise UserError(
                f"model.lws leaves layer {i} with {shape.n_heads} query / {shape.n_kv_heads} "
                f"key-value heads; raise model.lws.qkv_scalars"
            )
    return shapes


def _check_base(d_model: int, n_layers: int, head_dim: int, n_heads: int, n_kv_heads: int) -> None:
    """The base sizes are positive integers, and the kv heads divide the query heads."""
    for key, value in (
        ("d_model", d_model),
        ("n_layers", n_layers),
        ("head_dim", head_dim),
        ("n_heads", n_heads),
        ("n_kv_heads", n_kv_heads),
    ):
        if not _is_int(value) or value < 1:
            raise UserError(f"model.{key}={value} must be a positive integer")
    if n_heads % n_kv_heads:
        divisors = [d for d in range(1, n_heads + 1) if n_heads % d == 0]
        raise UserError(
            f"model.n_kv_heads={n_kv_heads} does not divide model.n_heads={n_heads}; "
            f"use one of {divisors}"
        )


def _layer_heads(
    qkv: tuple[float, float] | None,
    d_model: int,
    n_layers: int,
    head_dim: int,
    n_heads: int,
    gqa_groups: int,
) -> list[int]:
    """Query heads per layer: the base ``n_heads``, or scaled by ``qkv_scalars``."""
    if qkv is None:
        return [n_heads] * n_layers
    # The width is a multiple of head_dim * gqa_groups, so heads split evenly into kv groups.
    return [
        make_divisible(d_model * m, divisor=head_dim * gqa_groups) // head_dim
        for m in layer_multipliers(*qkv, n_layers)
    ]


def _layer_ffn_hidden(
    ffn: tuple[float, float] | None, d_model: int, n_layers: int, ffn_hidden: int | None
) -> list[int]:
    """FFN hidden size per layer: the base ``ffn_hidden``, or scaled by ``ffn_scalars``."""
    if ffn is None:
        if ffn_hidden is None or not _is_int(ffn_hidden) or ffn_hidden < 1:
            raise UserError(
                f"without model.lws.ffn_scalars every layer keeps the base FFN hidden size, "
                f"which must be a positive integer (got {ffn_hidden})"
            )
        return [ffn_hidden] * n_layers
    return [
        make_divisible(d_model * m, divisor=FFN_DIM_DIVISOR)
        for m in layer_multipliers(*ffn, n_layers)
    ]


def apply_lws(config: TransformerConfig, lws: Mapping[str, Any] | None) -> TransformerConfig:
    """A copy of ``config`` whose ``block_overrides`` give every layer its LWS-sized block.

    Each layer's block is a copy of ``config.block`` (or of that layer's existing override) with
    ``sequence_mixer.n_heads / n_kv_heads / head_dim`` (head_dim always explicit) and
    ``feed_forward.hidden_size`` set. The base head_dim is the block's ``head_dim`` if set, else
    ``d_model // n_heads`` (olmo-core's default). ``lws`` null returns ``config`` unchanged.
    """
    from olmo_core.nn.attention import AttentionConfig
    from olmo_core.nn.transformer import TransformerBlockConfig

    if lws is None:
        return config
    block = config.block
    if not isinstance(block, TransformerBlockConfig) or config.block_pattern is not None:
        raise UserError(
            "model.lws needs a model with one block type (no block_pattern); "
            "use an OLMo-2/3 dense factory"
        )
    attention = block.sequence_mixer
    if not isinstance(attention, AttentionConfig):
        raise UserError(
            f"model.lws scales attention heads, but this model's sequence mixer is "
            f"{type(attention).__name__}; use an attention model"
        )
    _scalar_pairs(lws)  # report bad scalars before shape problems
    if block.feed_forward is None:
        raise UserError(
            "model.lws needs dense feed-forward blocks (this model is MoE); "
            "use a dense factory or drop model.lws"
        )
    n_heads = attention.n_heads
    n_kv_heads = attention.n_kv_heads or n_heads
    head_dim = attention.head_dim or config.d_model // n_heads
    shapes = layer_shapes(
        d_model=config.d_model,
        n_layers=config.n_layers,
        head_dim=head_dim,
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        lws=lws,
        ffn_hidden=block.feed_forward.hidden_size,
    )

    existing = config.block_overrides or {}
    overrides: dict[int, TransformerBlockConfig] = {}
    for i, shape in enumerate(shapes):
        layer_block = existing.get(i, block).copy()  # deep copy: blocks must not share configs
        mixer = layer_block.sequence_mixer
        assert isinstance(mixer, AttentionConfig) and layer_block.feed_forward is not None
        mixer.n_heads = shape.n_heads
        mixer.n_kv_heads = shape.n_kv_heads
        mixer.head_dim = shape.head_dim
        layer_block.feed_forward.hidden_size = shape.ffn_hidden
        overrides[i] = layer_block
    return dataclasses.replace(config.copy(), block_overrides=overrides)


def output_scales(n_layers: int, lws: Mapping[str, Any] | None) -> list[float]:
    """Per-layer init-std factors of the output projections (all 1.0 without output_scalars)."""
    if not _is_int(n_layers) or n_layers < 1:
        raise UserError(f"model.n_layers={n_layers} must be a positive integer")
    _, _, out = _scalar_pairs(lws)
    return [1.0] * n_layers if out is None else layer_multipliers(*out, n_layers)


def scale_output_projections(model: torch.nn.Module, scales: Sequence[float]) -> None:
    """Multiply each layer's ``attention.w_out`` and ``feed_forward.w2`` weight by its scale.

    Call it once, right after ``model.init_weights()`` and before training or loading a
    checkpoint. Why that equals initializing with std ``c * s``: olmo-core 3.0.0 initializes
    these weights with ``init_linear`` (``olmo_core/nn/transformer/init.py``), i.e.
    ``trunc_normal_(mean=0, std=s, a=-3s, b=3s)`` for every init method (normal, llama,
    llama_depth and fan_in differ only in the ``s`` they pick). If ``X`` is a normal of std ``s``
    truncated to ``[-3s, 3s]``, then ``c * X`` is a normal of std ``c*s`` truncated to
    ``[-3cs, 3cs]``: exactly the distribution ``init_linear(std=c*s)`` draws. torch 2.13 even
    draws the same numbers: it samples ``s * Z`` (``Z`` standard normal) and redraws where
    ``|Z| > 3``, a test that does not depend on ``s``, so ``c * X`` equals the ``c*s`` draw up to
    float rounding and the generator state seen by later layers is unchanged. Biases are
    zero-initialized and left alone. Works on FSDP-sharded (DTensor) weights: ``mul_`` scales
    each local shard in place. Layers are matched by their key in ``model.blocks`` (pipeline
    stages hold a subset). Not for the nGPT (normalized) transformer, which renormalizes weights.
    """
    import torch

    if getattr(model, "init_method", None) == "normalized":
        raise UserError(
            "model.lws.output_scalars has no effect on the normalized (nGPT) transformer, which "
            "renormalizes its matrices; drop output_scalars"
        )
    with torch.no_grad():
        for key, block in model.blocks.items():  # type: ignore[union-attr]
            layer = int(key)
            if layer >= len(scales):
                raise UserError(
                    f"model.lws has {len(scales)} output scales but the model has layer {layer}"
                )
            scale = float(scales[layer])
            if scale == 1.0:
                continue
            feed_forward = getattr(block, "feed_forward", None)
            if feed_forward is None:
                raise UserError(
                    "model.lws.output_scalars needs dense feed-forward blocks; drop it for MoE"
                )
            block.attention.w_out.weight.mul_(scale)
            feed_forward.w2.weight.mul_(scale)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _scalar_pairs(
    lws: Mapping[str, Any] | None,
) -> tuple[tuple[float, float] | None, ...]:
    """The validated ``(min, max)`` pairs for qkv, ffn and output (``None`` where absent)."""
    if lws is None:
        return (None, None, None)
    if not isinstance(lws, Mapping):
        raise UserError(
            f"model.lws must be a mapping with {', '.join(SCALAR_KEYS)} (or null), got {lws!r}"
        )
    unknown = sorted(set(lws) - set(SCALAR_KEYS))
    if unknown:
        raise UserError(
            f"model.lws has unknown key(s) {', '.join(map(str, unknown))}; "
            f"valid keys are {', '.join(SCALAR_KEYS)}"
        )
    return tuple(_scalar_pair(key, lws.get(key)) for key in SCALAR_KEYS)


def _scalar_pair(key: str, value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    # OmegaConf's ListConfig is a Sequence too.
    items = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else None
    if items is None or len(items) != 2 or not all(_is_number(x) for x in items):
        raise UserError(
            f"model.lws.{key} must be two numbers [min, max] (first layer, last layer), "
            f"got {value!r}; e.g. {key}: [0.5, 1.0]"
        )
    lo, hi = float(items[0]), float(items[1])
    if lo <= 0 or hi <= 0:
        raise UserError(f"model.lws.{key}={[lo, hi]} must be positive; e.g. [0.5, 1.0]")
    if lo > hi:
        raise UserError(
            f"model.lws.{key}={[lo, hi]} has min > max; write [min, max] = {[hi, lo]} "
            f"(the first layer gets min, the last max)"
        )
    return lo, hi


def _is_number(x: Any) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool) and bool(np.isfinite(float(x)))


def lws_warning(
    layers: Sequence[LayerShape], base: LayerShape, lws: Mapping[str, Any] | None
) -> str | None:
    """One line when OpenELM's rounding leaves layer-wise scaling (nearly) a no-op, else ``None``.

    At small widths the rounding (FFN hidden sizes to multiples of 256, query widths to
    multiples of ``head_dim * gqa_groups``) maps most multipliers to the same size: ``dd_4m``'s
    FFN is 256 in every layer whatever ``ffn_scalars`` says. Warns when fewer than half the
    layers differ from the base shape ``base`` (heads, kv heads, FFN hidden), or when a scaled
    dimension comes out the same in every layer.
    """
    qkv, ffn, _ = _scalar_pairs(lws)
    if qkv is None and ffn is None:
        return None  # output_scalars alone change no shape

    def sizes(s: LayerShape) -> tuple[int, int, int]:
        return (s.n_heads, s.n_kv_heads, s.ffn_hidden)

    changed = sum(sizes(s) != sizes(base) for s in layers)
    flat = []
    if qkv is not None and len({s.n_heads for s in layers}) == 1:
        flat.append(f"qkv_scalars gives every layer {layers[0].n_heads} heads")
    if ffn is not None and len({s.ffn_hidden for s in layers}) == 1:
        flat.append(
            f"ffn_scalars gives every layer FFN hidden {layers[0].ffn_hidden}, "
            f"OpenELM rounding to multiples of {FFN_DIM_DIVISOR}"
        )
    if not flat and 2 * changed >= len(layers):
        return None
    return (
        f"model.lws changes {changed} of {len(layers)} layers from the base shape"
        + "".join(f"; {f}" for f in flat)
        + ": at this width an LWS ablation compares nearly identical models "
        "(docs/models.md lists the sizes LWS changes)"
    )
