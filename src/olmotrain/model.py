"""Model building: olmotrain's model config -> olmo-core ``TransformerConfig``."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from olmotrain.errors import UserError

if TYPE_CHECKING:
    from olmo_core.nn.transformer import TransformerConfig

OVERRIDABLE = ("n_layers", "n_heads", "n_kv_heads")
"""Model fields passed to the olmo-core factory when set (null keeps the factory's value)."""

PAD_MULTIPLE = 128
"""Embedding rows are padded to a multiple of this (olmo-core's default), for throughput."""


def padded_vocab_size(vocab_size: int) -> int:
    """The embedding size olmo-core uses for a vocabulary (a multiple of 128)."""
    return PAD_MULTIPLE * -(-vocab_size // PAD_MULTIPLE)


def transformer_config(model: Any, vocab_size: int) -> TransformerConfig:
    """Build the olmo-core ``TransformerConfig`` for ``model`` (a ``ModelSchema``-shaped config).

    ``vocab_size`` is the tokenizer's; the embedding is padded as olmo-core does. Raises
    ``UserError`` for an unknown factory or an impossible attention shape.
    """
    from olmo_core.nn.transformer import TransformerConfig

    factory = getattr(TransformerConfig, str(model["factory"]), None)
    if factory is None or not str(model["factory"]).startswith(("olmo2_", "olmo3_")):
        names = [n for n in dir(TransformerConfig) if n.startswith(("olmo2_", "olmo3_"))]
        close = difflib.get_close_matches(str(model["factory"]), names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UserError(
            f"model.factory '{model['factory']}' is not an olmo-core OLMo factory{hint}"
        )
    overrides = {k: model[k] for k in OVERRIDABLE if model.get(k) is not None}
    _check_attention_shape(model, overrides)
    return factory(vocab_size=padded_vocab_size(int(vocab_size)), **overrides)


def _check_attention_shape(model: Any, overrides: dict[str, Any]) -> None:
    for key, value in overrides.items():
        if int(value) < 1:
            raise UserError(f"model.{key}={value} must be a positive integer")
    n_kv = overrides.get("n_kv_heads")
    if n_kv is None:
        return
    n_heads = overrides.get("n_heads")
    if n_heads is None:
        from olmo_core.nn.transformer import TransformerConfig

        base = getattr(TransformerConfig, str(model["factory"]))(vocab_size=PAD_MULTIPLE)
        n_heads = base.block.sequence_mixer.n_heads
    if n_heads % n_kv:
        divisors = [d for d in range(1, n_heads + 1) if n_heads % d == 0]
        raise UserError(
            f"model.n_kv_heads={n_kv} does not divide {model['name']}'s {n_heads} query heads; "
            f"use one of {divisors}"
        )
