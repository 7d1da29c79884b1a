"""The attention shapes olmo-core can train, and the fixes offered for one it cannot.

The rules (``olmotrain.model.shapes``' docstring; each found by building models) are restated
here as the specification, and every fix offered for a bad shape is checked against them over a
grid of shapes: every bad shape gets a fix, and every fix is a trainable shape. The exact fixes
for typical mistakes are the nearest ones, as the messages promise.
"""

from __future__ import annotations

import itertools

import pytest

from olmotrain.errors import UserError
from olmotrain.model.shapes import (
    MAX_FIXES,
    AttentionShape,
    check_attention_shape,
    problem,
    shape_fixes,
)


def trainable(d_model: int, n_heads: int, head_dim: int, n_kv: int, lws: bool, rope: bool) -> bool:
    """What olmo-core trains: kv heads divide heads; under LWS heads x head_dim = d_model; a
    RoPE head of even size >= 2, any other of size >= 1."""
    head_ok = head_dim >= 2 and head_dim % 2 == 0 if rope else head_dim >= 1
    return n_heads % n_kv == 0 and (not lws or n_heads * head_dim == d_model) and head_ok


def resolved(s: AttentionShape, fix: dict[str, int]) -> tuple[int, int, int, int]:
    """``s`` with the overrides ``fix``, as olmo-core resolves it: head_dim is d_model // n_heads
    unless set, kv heads follow the heads unless set."""
    d_model = fix.get("d_model", s.d_model)
    n_heads = fix.get("n_heads", s.n_heads)
    if "head_dim" in fix:
        head_dim = fix["head_dim"]
    else:
        head_dim = d_model // n_heads if s.head_dim_derived else s.head_dim
    if "n_kv_heads" in fix:
        kv = fix["n_kv_heads"]
    else:
        kv = n_heads if s.kv_follows_heads else s.n_kv_heads
    return d_model, n_heads, head_dim, kv


def shapes():
    grid = itertools.product(
        [1, 2, 3, 6, 7, 12, 13, 15, 20, 24],  # d_model: odd, even, few and many divisors
        [1, 2, 3, 4, 5, 8],  # n_heads
        [0, 1, 2, 3, 5, 8],  # an explicit head_dim
        [1, 2, 3, 4],  # an explicit n_kv_heads
        *[[False, True]] * 4,  # derived head_dim, kv follows heads, LWS, RoPE
    )
    for d, h, hd, kv, derived, follows, lws, rope in grid:
        yield AttentionShape(
            d_model=d, n_heads=h, head_dim=d // h if derived else hd,
            n_kv_heads=h if follows else kv, head_dim_derived=derived,
            kv_follows_heads=follows, sized_from_d_model=lws, rope=rope,
        )  # fmt: skip


def test_problem_is_exactly_what_olmo_core_cannot_train_and_every_bad_shape_has_a_fix():
    bad = 0
    for s in shapes():
        ok = trainable(s.d_model, s.n_heads, s.head_dim, s.n_kv_heads, s.sized_from_d_model, s.rope)
        assert (problem(s) is None) == ok, s
        if ok:
            continue
        bad += 1
        fixes = shape_fixes(s)
        assert 1 <= len(fixes) <= MAX_FIXES, s
        for fix in fixes:
            assert fix and trainable(*resolved(s, fix), s.sized_from_d_model, s.rope), (s, fix)
    assert bad > 1000  # the grid holds many bad shapes of every kind


def derived(d_model: int, n_heads: int, n_kv_heads: int | None = None) -> AttentionShape:
    """A shape without an explicit head_dim (olmo-core's ``d_model // n_heads``)."""
    return AttentionShape(
        d_model, n_heads, d_model // n_heads, n_kv_heads or n_heads, head_dim_derived=True,
        kv_follows_heads=n_kv_heads is None,
    )  # fmt: skip


def lws(d_model: int, n_heads: int, head_dim: int, n_kv_heads: int | None = None) -> AttentionShape:
    """A shape under ``model.lws.qkv_scalars`` (heads x head_dim must be d_model)."""
    return AttentionShape(
        d_model, n_heads, head_dim, n_kv_heads or n_heads, kv_follows_heads=n_kv_heads is None,
        sized_from_d_model=True,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("shape", "fixes"),
    [
        # A derived head_dim: more or fewer heads, nearest first and dividing d_model exactly
        # (6 heads of 2, not 5 of 2 with 2 dimensions lost), or an explicit even head_dim.
        (derived(12, 8), [{"n_heads": 6}, {"head_dim": 2}]),
        (derived(20, 4), [{"n_heads": 5}, {"head_dim": 6}]),  # 5 divides 20; 3 is as near
        (derived(6, 2), [{"n_heads": 1}, {"head_dim": 4}]),  # 1 and 3 are as near: fewer
        (derived(15, 4), [{"n_heads": 6}, {"head_dim": 4}]),  # no exact divisor is even
        # ... and the kv heads a new head count needs (the nearest grouping below the old one)
        (derived(12, 8, n_kv_heads=4), [{"n_heads": 6, "n_kv_heads": 3}, {"head_dim": 2}]),
        # Only the kv heads are wrong: only they change.
        (AttentionShape(64, 4, 16, 3), [{"n_kv_heads": 2}]),
        (AttentionShape(12, 4, 8, 3), [{"n_kv_heads": 2}]),  # an explicit head_dim is kept
        (AttentionShape(8, 8, 1, 3, rope=False), [{"n_kv_heads": 2}]),  # 1 is fine without RoPE
        # LWS: heads x head_dim = d_model, nearest head count first, then the larger head
        (lws(12, 1, 16), [{"n_heads": 1, "head_dim": 12}, {"n_heads": 2, "head_dim": 6}]),
        (lws(64, 4, 32, n_kv_heads=2), [{"n_heads": 4, "head_dim": 16}, {"n_heads": 2, "head_dim": 32}]),
        (lws(12, 4, 3, n_kv_heads=4), [{"n_heads": 3, "head_dim": 4, "n_kv_heads": 3},
                                       {"n_heads": 2, "head_dim": 6, "n_kv_heads": 2}]),  # 6 and 2 heads: as near
        # ... without RoPE any divisor of d_model is a head size, 1 included
        (AttentionShape(3, 2, 1, 2, kv_follows_heads=True, sized_from_d_model=True, rope=False),
         [{"n_heads": 1, "head_dim": 3}, {"n_heads": 3, "head_dim": 1}]),
        # ... an odd d_model has no even head size: widen it, keeping the heads
        (lws(13, 1, 13), [{"d_model": 14, "head_dim": 14}]),
        (lws(5, 1, 5), [{"d_model": 6, "head_dim": 6}]),
        (lws(3, 3, 1), [{"d_model": 6, "head_dim": 2}]),
        (lws(15, 3, 5, n_kv_heads=2), [{"d_model": 18, "head_dim": 6, "n_kv_heads": 1}]),
    ],
)  # fmt: skip
def test_the_fixes_offered_are_the_nearest(shape, fixes):
    assert shape_fixes(shape) == fixes


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        (derived(12, 8), "head_dim = d_model // n_heads = 12 // 8 = 1 is odd: olmo-core's RoPE "
         "rotates pairs of dimensions, so head_dim must be even and at least 2; set "
         "model.n_heads=6 or model.head_dim=2"),
        (derived(12, 16), "head_dim = d_model // n_heads = 12 // 16 = 0 is too small: "),
        (AttentionShape(64, 4, 0, 4), "model.head_dim=0 is too small: "),
        (AttentionShape(64, 4, 0, 4, rope=False), "model.head_dim=0 is too small: "),
        (AttentionShape(64, 4, 15, 4), "model.head_dim=15 is odd: "),
        (AttentionShape(64, 4, 16, 3), "model.n_kv_heads=3 does not divide model.n_heads=4; "
         "set model.n_kv_heads=2"),
        (lws(12, 1, 16), "model.lws.qkv_scalars sizes query widths from model.d_model=12, which "
         "must equal model.n_heads * model.head_dim = 1 * 16; set model.n_heads=1 "
         "model.head_dim=12 or model.n_heads=2 model.head_dim=6"),
    ],
)  # fmt: skip
def test_a_bad_shape_is_one_line_naming_it_and_its_fixes(shape, message):
    with pytest.raises(UserError) as info:
        check_attention_shape(shape)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "shape",
    [
        AttentionShape(64, 4, 16, 2),
        AttentionShape(8, 8, 1, 4, rope=False),  # no RoPE: any positive head size
        AttentionShape(7, 7, 1, 7, sized_from_d_model=True, rope=False),
        derived(12, 5),  # 12 // 5 = 2: olmo-core floors, RoPE is content
    ],
)
def test_a_good_shape_passes(shape):
    assert problem(shape) is None
    check_attention_shape(shape)
