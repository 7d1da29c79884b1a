"""Model building: olmotrain's model config (``ModelSchema``) -> olmo-core ``TransformerConfig``.

The named sizes are olmo-core's own ``TransformerConfig`` factories; ``factory: olmo2`` is any
shape on the OLMo-2 block. Overrides (layers, heads, GQA, head dim, tied embeddings) and
OpenELM layer-wise scaling (:mod:`olmotrain.model.lws`) are applied on top, so olmo-core's
parameter and FLOP counts always describe the model exactly as configured.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from olmotrain.config.schema import ModelSchema
from olmotrain.errors import UserError
from olmotrain.model.lws import SCALAR_KEYS, LayerShape, apply_lws, lws_warning, output_scales
from olmotrain.model.shapes import AttentionShape, check_attention_shape

if TYPE_CHECKING:
    from olmo_core.nn.transformer import TransformerConfig

OVERRIDABLE = ("n_layers", "n_heads", "n_kv_heads", "head_dim", "tie_word_embeddings")
"""Model fields passed to the olmo-core factory when set (null keeps the factory's value)."""

GENERIC_FACTORY = "olmo2"
"""Any shape on the OLMo-2 block: the recipe of olmo-core's ``olmo2_*`` factories."""

PAD_MULTIPLE = 128
"""Embedding rows are padded to a multiple of this (olmo-core's default), for throughput."""


def padded_vocab_size(vocab_size: int) -> int:
    """The embedding size olmo-core uses for a vocabulary (a multiple of 128)."""
    return PAD_MULTIPLE * -(-vocab_size // PAD_MULTIPLE)


def lws_settings(model: ModelSchema) -> dict[str, Any] | None:
    """``model.lws`` as the mapping :mod:`olmotrain.model.lws` reads, or ``None`` when it asks
    for no layer-wise scaling."""
    lws = model.lws
    if lws is None:
        return None
    settings = {k: getattr(lws, k) for k in SCALAR_KEYS}
    return settings if any(v is not None for v in settings.values()) else None


def hf_unrepresentable(model: ModelSchema) -> str | None:
    """Why transformers' OLMo-2/3 classes cannot hold ``model``, or ``None`` when they can."""
    if lws_settings(model) is not None:
        return (
            f"model {model.name} uses OpenELM layer-wise scaling (per-layer shapes), which "
            "transformers' Olmo2/Olmo3 classes cannot represent"
        )
    return None


def _olmo2(
    vocab_size: int, *, d_model: int, n_layers: int, n_heads: int, **kwargs: Any
) -> TransformerConfig:
    from olmo_core.nn.transformer import TransformerBlockType, TransformerConfig

    return TransformerConfig.llama_like(
        d_model=d_model,
        n_layers=n_layers,
        n_heads=n_heads,
        vocab_size=vocab_size,
        block_name=TransformerBlockType.reordered_norm,
        qk_norm=True,
        rope_theta=500_000,
        layer_norm_eps=1e-6,
        **kwargs,
    )


def transformer_config(
    model: ModelSchema, vocab_size: int, attn_backend: str | None = None
) -> TransformerConfig:
    """Build the olmo-core ``TransformerConfig`` for ``model`` (a ``ModelSchema``-shaped config).

    ``vocab_size`` is the tokenizer's; the embedding is padded as olmo-core does. ``attn_backend``
    (an olmo-core backend name) only matters for building; parameter counts do not depend on it.
    Layer-wise scaling (``model.lws``) becomes per-layer ``block_overrides``. Raises ``UserError``
    for an unknown factory or an impossible shape.
    """
    from olmo_core.nn.attention import AttentionBackendName
    from olmo_core.nn.transformer import TransformerConfig

    name = str(model.factory)
    overrides = {k: getattr(model, k) for k in OVERRIDABLE if getattr(model, k) is not None}
    if attn_backend is not None:
        overrides["attn_backend"] = AttentionBackendName(attn_backend)
    if model.sliding_window is not None:
        overrides["sliding_window"] = _sliding_window(int(model.sliding_window))
    if name == GENERIC_FACTORY:
        missing = [k for k in ("d_model", "n_layers", "n_heads") if getattr(model, k) is None]
        if missing:
            raise UserError(
                f"model {model.name}: factory {GENERIC_FACTORY} needs model.{', model.'.join(missing)}"
            )
        _check_attention_shape(model, overrides, model.d_model)
        config = _olmo2(
            padded_vocab_size(int(vocab_size)),
            d_model=model.d_model,
            **overrides,
            **_feed_forward(model),
        )
    else:
        factory = getattr(TransformerConfig, name, None)
        if factory is None or not name.startswith(("olmo2_", "olmo3_")):
            names = [n for n in dir(TransformerConfig) if n.startswith(("olmo2_", "olmo3_"))]
            close = difflib.get_close_matches(name, names, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise UserError(f"model.factory '{name}' is not an olmo-core OLMo factory{hint}")
        if model.d_model is not None:
            raise UserError(
                f"model.d_model is fixed by {name}; use factory: {GENERIC_FACTORY} for another width"
            )
        _check_attention_shape(model, overrides, None)
        config = factory(vocab_size=padded_vocab_size(int(vocab_size)), **overrides)
        if model.ffn_hidden is not None:
            config.block.feed_forward.hidden_size = int(model.ffn_hidden)
    lws = lws_settings(model)
    _check_trainable(config, lws)
    if lws is not None:
        config = apply_lws(config, lws)
    return config


def _check_trainable(config: TransformerConfig, lws: dict[str, Any] | None) -> None:
    """The base attention shape is one olmo-core can train (olmo-core itself only fails in the
    first forward pass); LWS keeps head_dim, so every layer's is then good too."""
    from olmo_core.nn.attention import AttentionConfig

    attention = getattr(config.block, "sequence_mixer", None)
    if not isinstance(attention, AttentionConfig) or config.block_pattern is not None:
        return
    n_heads = attention.n_heads
    check_attention_shape(
        AttentionShape(
            d_model=config.d_model,
            n_heads=n_heads,
            head_dim=attention.head_dim or config.d_model // n_heads,
            n_kv_heads=attention.n_kv_heads or n_heads,
            head_dim_derived=attention.head_dim is None,
            kv_follows_heads=attention.n_kv_heads is None,
            sized_from_d_model=lws is not None and lws.get("qkv_scalars") is not None,
            rope=attention.rope is not None,
        )
    )


def layer_shapes_of(config: TransformerConfig, model: ModelSchema) -> list[LayerShape]:
    """Per layer, as olmo-core will build ``config`` (``model``'s): heads, kv heads, head dim,
    FFN hidden size, and the output projections' init scale (layer-wise scaling)."""
    scales = output_scales(config.n_layers, lws_settings(model))
    shapes = []
    for block, scale in zip(config.resolved_block_configs, scales, strict=True):
        attn = block.sequence_mixer
        shapes.append(
            LayerShape(
                n_heads=attn.n_heads,
                n_kv_heads=attn.n_kv_heads or attn.n_heads,
                head_dim=attn.head_dim or config.d_model // attn.n_heads,
                ffn_hidden=block.feed_forward.hidden_size,
                output_scale=scale,
            )
        )
    return shapes


def lws_effect_warning(config: TransformerConfig, model: ModelSchema) -> str | None:
    """The plan's warning when ``model.lws`` leaves (nearly) every layer at the base shape
    (``config`` is ``model``'s, built by :func:`transformer_config`)."""
    lws = lws_settings(model)
    if lws is None:
        return None
    attn, ffn = config.block.sequence_mixer, config.block.feed_forward
    base = LayerShape(
        n_heads=attn.n_heads,
        n_kv_heads=attn.n_kv_heads or attn.n_heads,
        head_dim=attn.head_dim or config.d_model // attn.n_heads,
        ffn_hidden=ffn.hidden_size,
        output_scale=1.0,
    )
    return lws_warning(layer_shapes_of(config, model), base, lws)


def _sliding_window(window: int) -> Any:
    """OLMo-3's pattern (three sliding layers, then a full one; the last layer full) at ``window``."""
    from olmo_core.nn.attention import SlidingWindowAttentionConfig

    if window < 1:
        raise UserError(f"model.sliding_window={window} must be a positive number of tokens")
    return SlidingWindowAttentionConfig(
        force_full_attention_on_first_layer=False,
        force_full_attention_on_last_layer=True,
        pattern=[window, window, window, -1],
    )


def _feed_forward(model: ModelSchema) -> dict[str, Any]:
    """``feed_forward=`` for the generic factory when ``model.ffn_hidden`` fixes the FFN width."""
    if model.ffn_hidden is None:
        return {}
    from olmo_core.nn.feed_forward import FeedForwardConfig

    return {"feed_forward": FeedForwardConfig(hidden_size=int(model.ffn_hidden), bias=False)}


def _check_attention_shape(
    model: ModelSchema, overrides: dict[str, Any], d_model: int | None
) -> None:
    for key in ("n_layers", "n_heads", "n_kv_heads", "head_dim"):
        if key in overrides and int(overrides[key]) < 1:
            raise UserError(f"model.{key}={overrides[key]} must be a positive integer")
    if model.ffn_hidden is not None and model.ffn_hidden < 1:
        raise UserError(f"model.ffn_hidden={model.ffn_hidden} must be a positive integer")
    if d_model is not None and d_model < 1:
        raise UserError(f"model.d_model={d_model} must be a positive integer")
    n_kv = overrides.get("n_kv_heads")
    if n_kv is None:
        return
    n_heads = overrides.get("n_heads")
    if n_heads is None:
        from olmo_core.nn.transformer import TransformerConfig

        base = getattr(TransformerConfig, str(model.factory))(vocab_size=PAD_MULTIPLE)  # shape only
        n_heads = base.block.sequence_mixer.n_heads
    if n_heads % n_kv:
        divisors = [d for d in range(1, n_heads + 1) if n_heads % d == 0]
        raise UserError(
            f"model.n_kv_heads={n_kv} does not divide {model.name}'s {n_heads} query heads; "
            f"use one of {divisors}"
        )
