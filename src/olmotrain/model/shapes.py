"""Which attention shapes olmo-core can train, and the overrides that turn a bad one into a good one.

olmo-core 3.0.0 builds any shape it is given and fails only in the first forward pass (a
traceback from RoPE, after the run dir is made). What it needs, found by building and running
the models on CPU:

- ``head_dim`` even and at least 2: RoPE rotates pairs of dimensions (``head_dim // 2``
  frequencies), so an odd head_dim, or the 0 or 1 that ``d_model // n_heads`` gives with more
  heads than ``d_model / 2``, fails in ``apply_rotary_pos_emb``;
- ``n_kv_heads`` dividing ``n_heads`` (grouped-query attention repeats each kv head);
- with OpenELM layer-wise query scaling, ``n_heads * head_dim == d_model`` (multiplier 1.0 must
  mean the base heads; :mod:`olmotrain.model.lws`).

:func:`check_attention_shape` raises one ``UserError`` line naming the problem and up to two
fixes; each fix is a set of ``model.KEY=VALUE`` overrides that satisfies every rule above at once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from olmotrain.errors import UserError

MAX_FIXES = 2
"""Alternatives offered in one message (the nearest to what was asked)."""


@dataclass(frozen=True)
class AttentionShape:
    """The base attention shape as olmo-core will build it, and which sizes follow others."""

    d_model: int
    n_heads: int
    head_dim: int
    """The resolved head size: the explicit one, or ``d_model // n_heads``."""
    n_kv_heads: int
    head_dim_derived: bool = False
    """True when head_dim is olmo-core's default ``d_model // n_heads`` (no explicit head_dim)."""
    kv_follows_heads: bool = False
    """True when no n_kv_heads is set, so it follows n_heads (multi-head attention)."""
    sized_from_d_model: bool = False
    """True under ``model.lws.qkv_scalars``: ``n_heads * head_dim`` must equal ``d_model``."""
    rope: bool = True
    """Whether the attention applies RoPE (every OLMo-2/3 block does): head_dim must be even."""


def problem(s: AttentionShape) -> str | None:
    """What olmo-core cannot train about ``s`` (``None``: nothing)."""
    if s.n_heads % s.n_kv_heads:
        return f"model.n_kv_heads={s.n_kv_heads} does not divide model.n_heads={s.n_heads}"
    if s.sized_from_d_model and s.n_heads * s.head_dim != s.d_model:
        return (
            f"model.lws.qkv_scalars sizes query widths from model.d_model={s.d_model}, which "
            f"must equal model.n_heads * model.head_dim = {s.n_heads} * {s.head_dim}"
        )
    if not _head_ok(s, s.head_dim):
        where = (
            f"head_dim = d_model // n_heads = {s.d_model} // {s.n_heads} = {s.head_dim}"
            if s.head_dim_derived
            else f"model.head_dim={s.head_dim}"
        )
        return (
            f"{where} is {'odd' if s.head_dim % 2 else 'too small'}: olmo-core's RoPE rotates "
            "pairs of dimensions, so head_dim must be even and at least 2"
        )
    return None


def check_attention_shape(s: AttentionShape) -> None:
    """Raise ``UserError`` (the problem; ``set`` one or two fixes) unless olmo-core can train ``s``."""
    what = problem(s)
    if what is None:
        return
    # Every shape has a fix (tests/test_shapes.py checks it over a grid of shapes).
    fixes = [" ".join(f"model.{k}={v}" for k, v in fix.items()) for fix in shape_fixes(s)]
    raise UserError(f"{what}; set {' or '.join(fixes)}")


def shape_fixes(s: AttentionShape) -> list[dict[str, int]]:
    """Up to :data:`MAX_FIXES` override sets (``{"n_heads": 3, "head_dim": 4}``) that make ``s``
    trainable, nearest first; each is checked against every rule before it is offered."""
    fixes = [f for f in _candidates(s) if f and problem(_applied(s, f)) is None]
    return fixes[:MAX_FIXES]


def _candidates(s: AttentionShape) -> list[dict[str, int]]:
    """Override sets to try, nearest to ``s`` first (unchecked)."""
    if s.sized_from_d_model:
        # n_heads * head_dim = d_model: every divisor of d_model that is a valid head size.
        sizes = [hd for hd in range(1, s.d_model + 1) if s.d_model % hd == 0 and _head_ok(s, hd)]
        pairs = [(s.d_model // hd, hd) for hd in sizes]
        if not pairs:  # an odd d_model has no even divisor: widen it to n_heads even heads
            even = max(2, s.head_dim + s.head_dim % 2)
            return [_with_kv(s, s.n_heads, {"d_model": s.n_heads * even, "head_dim": even})]
        pairs.sort(key=lambda p: (abs(p[0] - s.n_heads), -p[1]))
        return [_with_kv(s, h, {"n_heads": h, "head_dim": hd}) for h, hd in pairs]
    fixes = []
    if _head_ok(s, s.head_dim):
        fixes.append({})
    else:
        if s.head_dim_derived:
            # More or fewer heads so that d_model // n_heads is even (exact division first).
            heads = [h for h in range(1, s.d_model // 2 + 1) if _even_at_least_2(s.d_model // h)]
            heads.sort(key=lambda h: (s.d_model % h != 0, abs(h - s.n_heads), h))
            fixes += [{"n_heads": h} for h in heads[:1]]
        fixes.append({"head_dim": max(2, s.head_dim + s.head_dim % 2)})
    return [_with_kv(s, f.get("n_heads", s.n_heads), f) for f in fixes]


def _applied(s: AttentionShape, fix: dict[str, int]) -> AttentionShape:
    """``s`` as olmo-core resolves it after the overrides ``fix``."""
    n_heads = fix.get("n_heads", s.n_heads)
    d_model = fix.get("d_model", s.d_model)
    derived = s.head_dim_derived and "head_dim" not in fix
    head_dim = d_model // n_heads if derived else fix.get("head_dim", s.head_dim)
    kv = fix.get("n_kv_heads", n_heads if s.kv_follows_heads else s.n_kv_heads)
    return dataclasses.replace(
        s,
        d_model=d_model,
        n_heads=n_heads,
        head_dim=head_dim,
        n_kv_heads=kv,
        head_dim_derived=derived,
    )


def _with_kv(s: AttentionShape, n_heads: int, fix: dict[str, int]) -> dict[str, int]:
    """``fix`` plus the kv heads it needs: a set n_kv_heads that does not divide the new
    n_heads becomes its largest divisor below the old value (the nearest GQA grouping)."""
    if not s.kv_follows_heads and n_heads % s.n_kv_heads:
        return {**fix, "n_kv_heads": _largest_divisor(n_heads, s.n_kv_heads)}
    return fix


def _largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)


def _head_ok(s: AttentionShape, head_dim: int) -> bool:
    """A head size ``s``'s attention can use: even and at least 2 under RoPE, else positive."""
    return _even_at_least_2(head_dim) if s.rope else head_dim >= 1


def _even_at_least_2(x: int) -> bool:
    return x >= 2 and x % 2 == 0
