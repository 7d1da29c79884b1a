"""Print docs/models.md's table: how many layers OpenELM's layer-wise scaling changes, per size.

    PYTHONPATH=src python scripts/lws_sizes.py

Every ``conf/model`` size gets OpenELM-270M's scalars (qkv 0.5->1.0, ffn 0.5->4.0) through the
plan's own code (``transformer_config`` + ``lws_effect_warning``), and the table counts the
layers whose heads (qkv_scalars) and FFN hidden size (ffn_scalars) differ from the base block's. Sizes whose heads are not
d_model wide (``n_heads * head_dim != d_model``) cannot take ``qkv_scalars`` and are listed so.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from olmotrain.config.compose import compose, resolve
from olmotrain.config.schema import LWSSchema
from olmotrain.errors import UserError
from olmotrain.model.build import layer_shapes_of, lws_effect_warning, transformer_config

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"
OPENELM = LWSSchema(qkv_scalars=[0.5, 1.0], ffn_scalars=[0.5, 4.0])


def row(name: str) -> str:
    """One table row for ``conf/model/NAME.yaml``."""
    c = resolve(compose([f"model={name}"]))
    model = dataclasses.replace(c.model, lws=OPENELM)
    try:
        config = transformer_config(model, c.tokenizer.vocab_size)
    except UserError:
        return f"| `{name}` | {c.model.d_model or 12} | | qkv_scalars refused (n_heads x head_dim != d_model) | | |"
    attn, ffn = config.block.sequence_mixer, config.block.feed_forward
    layers = layer_shapes_of(config, model)
    heads = sum(
        (s.n_heads, s.n_kv_heads) != (attn.n_heads, attn.n_kv_heads or attn.n_heads) for s in layers
    )
    ffns = sum(s.ffn_hidden != ffn.hidden_size for s in layers)
    sizes = len({s.ffn_hidden for s in layers})
    warned = "**yes**" if lws_effect_warning(config, model) else "no"
    n = len(layers)
    return f"| `{name}` | {config.d_model} | {heads} of {n} | {ffns} of {n} ({sizes} sizes) | {warned} |"


def main() -> None:
    print("| model | d_model | layers with other heads | layers with another FFN | plan warns |")
    print("|---|---|---|---|---|")
    for path in sorted(CONF.glob("*.yaml"), key=lambda p: p.stem):
        print(row(path.stem))


if __name__ == "__main__":
    main()
