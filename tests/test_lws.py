"""OpenELM layer-wise scaling against Apple's published shapes and olmo-core itself (no mocks).

Expected values are not derived with olmotrain.model.lws:
- OpenELM-270M's per-layer heads are Apple's published config.json (huggingface.co/apple/OpenELM-270M,
  mirrored e.g. at huggingface.co/TinyPixel/OpenELM-270M/blob/main/config.json):
  ``num_query_heads``, ``num_kv_heads``, ``ffn_multipliers`` with ``ffn_dim_divisor: 256``.
- The FFN hidden sizes are worked out by hand from those published ``ffn_multipliers`` with the
  reference rule (round half up to a multiple of 256, +256 if that lost >10%); they equal the
  checkpoint's per-layer ``ffn_intermediate_dim`` table in the third-party C++ port gten
  (``openelm_sm_cfg``), taken from the released weights.
- make_divisible cases are hand arithmetic on corenet's ``corenet/utils/math_utils.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from olmo_core.nn.transformer import TransformerBlockType, TransformerConfig
from omegaconf import OmegaConf

from olmotrain.config.schema import LWSSchema, ModelSchema
from olmotrain.errors import UserError
from olmotrain.model.lws import (
    LayerShape,
    apply_lws,
    layer_multipliers,
    layer_shapes,
    lws_warning,
    make_divisible,
    output_scales,
    scale_output_projections,
)

REPO = Path(__file__).resolve().parents[1]
OPENELM_YAML = REPO / "conf" / "model" / "openelm_270m.yaml"

# apple/OpenELM-270M config.json.
PUBLISHED_QUERY_HEADS = [12, 12, 12, 12, 12, 16, 16, 16, 16, 16, 16, 16, 20, 20, 20, 20]
PUBLISHED_KV_HEADS = [3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5]
PUBLISHED_FFN_MULTIPLIERS = [
    0.5, 0.73, 0.97, 1.2, 1.43, 1.67, 1.9, 2.13, 2.37, 2.6, 2.83, 3.07, 3.3, 3.53, 3.77, 4.0,
]  # fmt: skip
# Hand: e.g. 0.73 * 1280 = 934.4 -> int(934.4 + 128) = 1062 -> 4 * 256 = 1024 (>= 90% of 934.4).
PUBLISHED_FFN_HIDDEN = [
    768, 1024, 1280, 1536, 1792, 2048, 2560, 2816, 3072, 3328, 3584, 3840, 4352, 4608, 4864, 5120,
]  # fmt: skip
VOCAB = 32_000  # OpenELM's (LLaMA) vocabulary, already a multiple of 128.
D = 1280


def olmo2_base(model: dict, vocab_size: int) -> TransformerConfig:
    """The OLMo-2 recipe of olmo-core's olmo2_* factories, on llama_like."""
    return TransformerConfig.llama_like(
        d_model=model["d_model"],
        vocab_size=vocab_size,
        n_layers=model["n_layers"],
        n_heads=model["n_heads"],
        n_kv_heads=model["n_kv_heads"],
        head_dim=model["head_dim"],
        block_name=TransformerBlockType.reordered_norm,
        qk_norm=True,
        rope_theta=500_000,
        layer_norm_eps=1e-6,
        tie_word_embeddings=model["tie_word_embeddings"],
    )


@pytest.fixture(scope="module")
def openelm() -> tuple[dict, TransformerConfig]:
    """conf/model/openelm_270m.yaml as a plain dict, and its LWS olmo-core config."""
    model = OmegaConf.to_container(OmegaConf.load(OPENELM_YAML))
    assert isinstance(model, dict)
    return model, apply_lws(olmo2_base(model, VOCAB), model["lws"])


# ---------------------------------------------------------------------------------------------
# make_divisible / multipliers


@pytest.mark.parametrize(
    ("v", "divisor", "min_value", "expected"),
    [
        (640, 256, None, 768),  # exactly half a divisor rounds up: int(768) // 256 = 3
        (639.9, 256, None, 768),  # int(767.9) // 256 -> 512, but 512 < 575.91 (90%): adds 256
        (1100, 256, None, 1024),  # 1024 >= 990: plain rounding
        (857.6, 256, None, 1024),  # 768 < 0.9 * 857.6 = 771.84: the 10% rule adds 256
        (1151.9, 256, None, 1280),  # 1024 < 1036.71: 10% rule
        (1024, 256, None, 1024),  # already a multiple
        (1, 8, None, 8),  # floor: min_value defaults to the divisor
        (3, 8, 0, 8),  # min_value=0 lets 0 through, then 0 < 2.7 adds 8
        (100, 8, 128, 128),  # explicit min_value wins
        (11.99, 8, None, 16),  # int(15.99) = 15 truncates to 8, 8 < 10.79 adds 8
    ],
)
def test_make_divisible_matches_reference_by_hand(v, divisor, min_value, expected):
    got = make_divisible(v, divisor, min_value)
    assert got == expected and type(got) is int


def test_layer_multipliers_are_linspace_rounded_to_two_decimals():
    assert layer_multipliers(0.5, 4.0, 16) == PUBLISHED_FFN_MULTIPLIERS
    assert layer_multipliers(0.5, 1.0, 6) == [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert layer_multipliers(2.0, 2.0, 3) == [2.0, 2.0, 2.0]
    assert layer_multipliers(0.5, 1.0, 1) == [0.5]  # one layer takes min


# ---------------------------------------------------------------------------------------------
# OpenELM-270M


def test_openelm_270m_shapes_equal_published(openelm):
    model, _ = openelm
    shapes = layer_shapes(
        d_model=model["d_model"],
        n_layers=model["n_layers"],
        head_dim=model["head_dim"],
        n_heads=model["n_heads"],
        n_kv_heads=model["n_kv_heads"],
        lws=model["lws"],
    )
    assert [s.n_heads for s in shapes] == PUBLISHED_QUERY_HEADS
    assert [s.n_kv_heads for s in shapes] == PUBLISHED_KV_HEADS
    assert [s.ffn_hidden for s in shapes] == PUBLISHED_FFN_HIDDEN
    assert {s.head_dim for s in shapes} == {64}
    assert {s.output_scale for s in shapes} == {1.0}


def test_openelm_270m_block_overrides(openelm):
    _, config = openelm
    assert sorted(config.block_overrides) == list(range(16))
    for i, block in config.block_overrides.items():
        mixer = block.sequence_mixer
        assert (mixer.n_heads, mixer.n_kv_heads, mixer.head_dim) == (
            PUBLISHED_QUERY_HEADS[i],
            PUBLISHED_KV_HEADS[i],
            64,  # explicit in every block
        )
        assert block.feed_forward.hidden_size == PUBLISHED_FFN_HIDDEN[i]
        assert block.name == TransformerBlockType.reordered_norm
        assert mixer.qk_norm is not None and mixer.rope.theta == 500_000
    # Blocks are independent copies, not one shared config.
    assert len({id(b) for b in config.block_overrides.values()}) == 16


def test_openelm_270m_num_params_equal_hand_sum(openelm):
    _, config = openelm
    per_layer = 0
    for h, kv, f in zip(
        PUBLISHED_QUERY_HEADS, PUBLISHED_KV_HEADS, PUBLISHED_FFN_HIDDEN, strict=True
    ):
        q, k = h * 64, kv * 64
        attention = D * q + 2 * D * k + q * D  # w_q, w_k, w_v, w_out (no bias)
        qk_norm = q + k  # OLMo-2 QK-norm spans the full q / k width
        ffn = 3 * D * f  # w1, w3, w2 (SwiGLU)
        norms = 2 * D  # attention and FFN norms (reordered: after each sublayer)
        per_layer += attention + qk_norm + ffn + norms
    embedding = VOCAB * D
    final_norm = D  # the LM head's norm; its weight is the tied embedding
    assert config.num_params == embedding + per_layer + final_norm == 271_545_280
    assert config.num_non_embedding_params == per_layer + final_norm == 230_585_280


def test_openelm_270m_meta_build_has_per_layer_shapes_and_flops(openelm):
    _, config = openelm
    model = config.build(init_device="meta")
    assert sum(p.numel() for p in model.parameters()) == config.num_params
    assert model.lm_head.w_out.weight is model.embeddings.weight  # tied
    seq = 2048
    causal_pairs = seq * (seq + 1) // 2
    flops = 0
    for i, block in model.blocks.items():
        i = int(i)
        h, kv, f = PUBLISHED_QUERY_HEADS[i], PUBLISHED_KV_HEADS[i], PUBLISHED_FFN_HIDDEN[i]
        att = block.attention
        assert (att.n_heads, att.n_kv_heads, att.head_dim) == (h, kv, 64)
        assert att.w_q.weight.shape == (h * 64, D)
        assert att.w_k.weight.shape == att.w_v.weight.shape == (kv * 64, D)
        assert att.w_out.weight.shape == (D, h * 64)
        ff = block.feed_forward
        assert ff.w1.weight.shape == ff.w3.weight.shape == (f, D)
        assert ff.w2.weight.shape == (D, f)
        att_params = 2 * D * h * 64 + 2 * D * kv * 64 + (h + kv) * 64
        block_flops = 6 * att_params + 12 * h * 64 * causal_pairs // seq + 6 * 3 * D * f
        assert block.num_flops_per_token(seq) == block_flops
        flops += block_flops
    flops += 6 * (VOCAB * D + D)  # LM head: tied weight + norm
    assert model.num_flops_per_token(seq) == flops


# ---------------------------------------------------------------------------------------------
# A tiny LWS model, really built and run


TINY = dict(d_model=64, n_layers=4, n_heads=4, n_kv_heads=2, head_dim=16, tie_word_embeddings=True)
TINY_LWS = dict(qkv_scalars=[0.5, 1.0], ffn_scalars=[1.0, 8.0], output_scalars=[0.5, 2.0])


def tiny_model(lws: dict | None = TINY_LWS) -> torch.nn.Module:
    config = apply_lws(olmo2_base(TINY, 256), lws)
    model = config.build(init_device="cpu")
    model.init_weights(max_seq_len=32, device=torch.device("cpu"))
    return model


def test_tiny_lws_model_shapes_forward_backward():
    # Hand: qkv multipliers 0.5, 0.67, 0.83, 1.0 -> widths 32, 64 (10% rule), 64, 64 (divisor 32);
    # ffn 1.0, 3.33, 5.67, 8.0 -> 256, 256, 512 (10% rule), 512 (divisor 256).
    expected = [(2, 1, 256), (4, 2, 256), (4, 2, 512), (4, 2, 512)]
    shapes = layer_shapes(**{k: TINY[k] for k in TINY if k != "tie_word_embeddings"}, lws=TINY_LWS)
    assert [(s.n_heads, s.n_kv_heads, s.ffn_hidden) for s in shapes] == expected
    assert [s.output_scale for s in shapes] == [0.5, 1.0, 1.5, 2.0]

    model = tiny_model()
    for i, (h, kv, f) in enumerate(expected):
        block = model.blocks[str(i)]
        assert block.attention.w_q.weight.shape == (h * 16, 64)
        assert block.attention.w_k.weight.shape == (kv * 16, 64)
        assert block.feed_forward.w2.weight.shape == (64, f)
    tokens = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))
    logits = model(tokens)
    assert logits.shape == (2, 16, 256)
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 256), tokens[:, 1:].flatten()
    )
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_scale_output_projections_scales_init_std_per_layer():
    scales = output_scales(4, TINY_LWS)
    assert scales == [0.5, 1.0, 1.5, 2.0]
    plain, scaled = tiny_model(), tiny_model()  # same init_seed -> identical weights
    scale_output_projections(scaled, scales)
    plain_params = dict(plain.named_parameters())
    for name, p in scaled.named_parameters():
        layer = int(name.split(".")[1]) if name.startswith("blocks.") else None
        if layer is not None and name.endswith(
            ("attention.w_out.weight", "feed_forward.w2.weight")
        ):
            c = scales[layer]
            torch.testing.assert_close(p, c * plain_params[name], rtol=0, atol=0)
            # The truncated normal's std and +-3 std bounds scale alike (init_std 0.02).
            assert p.abs().max() <= 3 * 0.02 * c + 1e-7
            ratio = (p.std() / plain_params[name].std()).item()
            assert ratio == pytest.approx(c, rel=1e-5)
        else:
            assert torch.equal(p, plain_params[name]), name  # nothing else moves


@pytest.mark.parametrize("c", [0.5, 2.0])
def test_scaled_trunc_normal_is_the_wider_trunc_normal(c):
    """Why scaling the weights is the same as olmo-core's init_linear with std c * 0.02."""
    s = 0.02
    g_scaled, g_direct = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    scaled = c * torch.nn.init.trunc_normal_(
        torch.empty(256, 256), std=s, a=-3 * s, b=3 * s, generator=g_scaled
    )
    direct = torch.nn.init.trunc_normal_(
        torch.empty(256, 256), std=c * s, a=-3 * c * s, b=3 * c * s, generator=g_direct
    )
    torch.testing.assert_close(scaled, direct)
    assert torch.equal(g_scaled.get_state(), g_direct.get_state())  # later layers unaffected


def test_scale_output_projections_on_fsdp_dtensors(tmp_path):
    """FSDP2 weights are DTensors: scaling happens in place on the shards (1-rank gloo group)."""
    script = textwrap.dedent(
        """
        import torch, torch.distributed as dist
        from torch.distributed.fsdp import fully_shard
        from torch.distributed.tensor import DTensor
        from test_lws import tiny_model, output_scales, TINY_LWS
        from olmotrain.model.lws import scale_output_projections
        dist.init_process_group("gloo", rank=0, world_size=1)
        plain, model = tiny_model(), tiny_model()
        for block in model.blocks.values():
            fully_shard(block)
        fully_shard(model)
        w = model.blocks["3"].attention.w_out.weight
        assert isinstance(w, DTensor), type(w)
        scale_output_projections(model, output_scales(4, TINY_LWS))
        got = model.blocks["3"].feed_forward.w2.weight.full_tensor()
        torch.testing.assert_close(got, 2.0 * plain.blocks["3"].feed_forward.w2.weight)
        got = w.full_tensor()
        torch.testing.assert_close(got, 2.0 * plain.blocks["3"].attention.w_out.weight)
        dist.destroy_process_group()
        print("ok")
        """
    )
    env = {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_without_lws_nothing_changes():
    base = olmo2_base(TINY, 256)
    assert apply_lws(base, None) is base
    assert output_scales(4, None) == [1.0] * 4
    only_ffn = apply_lws(base, {"ffn_scalars": [1.0, 8.0]})  # qkv absent: base heads everywhere
    assert [b.sequence_mixer.n_heads for b in only_ffn.block_overrides.values()] == [4] * 4
    only_qkv = apply_lws(base, {"qkv_scalars": [0.5, 1.0]})  # ffn absent: base hidden size
    hidden = base.block.feed_forward.hidden_size
    assert [b.feed_forward.hidden_size for b in only_qkv.block_overrides.values()] == [hidden] * 4
    assert base.block_overrides is None  # the input config is not modified


# ---------------------------------------------------------------------------------------------
# Bad input: one readable UserError line naming the problem and the fix


BASE = dict(d_model=64, n_layers=4, head_dim=16, n_heads=4, n_kv_heads=2, ffn_hidden=256)


@pytest.mark.parametrize(
    ("overrides", "lws", "message"),
    [
        ({}, {"qkv_scalars": [0.5]}, r"qkv_scalars must be two numbers \[min, max\]"),
        ({}, {"ffn_scalars": "0.5,4"}, r"ffn_scalars must be two numbers"),
        ({}, {"ffn_scalars": [0.5, "4"]}, r"ffn_scalars must be two numbers"),
        ({}, {"qkv_scalars": [True, 1.0]}, r"qkv_scalars must be two numbers"),
        ({}, {"qkv_scalars": [0.0, 1.0]}, r"qkv_scalars=\[0.0, 1.0\] must be positive"),
        ({}, {"output_scalars": [-1, 1]}, r"output_scalars=\[-1.0, 1.0\] must be positive"),
        ({}, {"ffn_scalars": [4.0, 0.5]}, r"min > max; write \[min, max\] = \[0.5, 4.0\]"),
        ({}, {"qkv_scaler": [0.5, 1.0]}, r"unknown key\(s\) qkv_scaler; valid keys are"),
        ({}, [0.5, 1.0], r"model.lws must be a mapping"),
        ({"n_kv_heads": 3}, {}, r"n_kv_heads=3 does not divide model.n_heads=4; use one of \[1, 2, 4\]"),
        ({"n_kv_heads": 0}, {}, r"model.n_kv_heads=0 must be a positive integer"),
        ({"n_heads": 0}, {}, r"model.n_heads=0 must be a positive integer"),
        ({"head_dim": 0}, {}, r"model.head_dim=0 must be a positive integer"),
        ({"head_dim": 32}, {"qkv_scalars": [0.5, 1.0]}, r"must equal model.n_heads \* model.head_dim = 4 \* 32; set model.n_heads=4 model.head_dim=16 or model.n_heads=2 model.head_dim=32$"),
        ({"d_model": 66}, {"qkv_scalars": [0.5, 1.0]}, r"d_model=66.*set model.n_heads=3 model.head_dim=22 model.n_kv_heads=1 or "),
        ({"d_model": 60, "head_dim": 15}, {"qkv_scalars": [0.5, 1.0]}, r"model.head_dim=15 is odd: olmo-core's RoPE rotates pairs of dimensions.*; set model.n_heads=3 model.head_dim=20 model.n_kv_heads=1 or model.n_heads=5 model.head_dim=12 model.n_kv_heads=1$"),
        ({"head_dim": 15}, {}, r"model.head_dim=15 is odd.*; set model.head_dim=16$"),
        ({"ffn_hidden": None}, {"qkv_scalars": [0.5, 1.0]}, r"base FFN hidden size"),
    ],
)  # fmt: skip
def test_bad_input_raises_user_error(overrides, lws, message):
    with pytest.raises(UserError, match=message) as info:
        layer_shapes(**{**BASE, **overrides}, lws=lws)
    assert "\n" not in str(info.value)


def test_omegaconf_containers_are_accepted():
    lws = OmegaConf.create({"qkv_scalars": [0.5, 1.0], "ffn_scalars": None})
    shapes = layer_shapes(**BASE, lws=lws)
    assert [s.n_heads for s in shapes] == [2, 4, 4, 4]


def test_apply_lws_rejects_moe_and_non_attention():
    moe = TransformerConfig.llama_like_moe(
        d_model=64, vocab_size=256, n_layers=2, n_heads=4, num_experts=2, top_k=1,
        expert_hidden_size=64,
    )  # fmt: skip
    with pytest.raises(UserError, match="dense feed-forward"):
        apply_lws(moe, {"ffn_scalars": [0.5, 1.0]})


# ---------------------------------------------------------------------------------------------
# Every shape the plan accepts trains; every hint it gives for one it rejects is accepted and trains


@functools.cache
def olmo2_1m() -> ModelSchema:
    """conf/model/olmo2_1m.yaml as the typed model config (composed once: Hydra is slow)."""
    from olmotrain.config.compose import compose, resolve

    return resolve(compose(["model=olmo2_1m"])).model


def configured(*overrides: str) -> TransformerConfig:
    """The plan's olmo-core TransformerConfig for olmo2_1m with ``model.KEY=VALUE`` overrides
    (``model.lws.qkv_scalars=[lo,hi]`` for layer-wise scaling)."""
    from olmotrain.model.build import transformer_config

    fields: dict = {}
    for override in overrides:
        key, value = override.removeprefix("model.").split("=")
        fields[key] = value if key == "factory" else yaml.safe_load(value)
    qkv = fields.pop("lws.qkv_scalars", None)
    model = dataclasses.replace(olmo2_1m(), **fields, lws=LWSSchema(qkv_scalars=qkv))
    return transformer_config(model, VOCAB_1M)


def forward_backward(config: TransformerConfig) -> None:
    """Build on CPU, init, and run one forward + backward on a tiny batch (1M-size: cheap)."""
    model = config.build(init_device="cpu")
    model.init_weights(max_seq_len=16, device=torch.device("cpu"))
    tokens = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))
    loss = model(tokens).float().logsumexp(-1).mean()
    loss.backward()
    assert torch.isfinite(loss)


def hint_overrides(message: str) -> list[list[str]]:
    """The alternatives of a ``...; set model.a=1 model.b=2 or model.c=3`` message."""
    assert "; set " in message, message
    return [alt.split() for alt in message.rsplit("; set ", 1)[1].split(" or ")]


VOCAB_1M = 256
OLMO2_12 = ("model.factory=olmo2", "model.d_model=12", "model.n_layers=2", "model.ffn_hidden=32")
LWS_QKV = "model.lws.qkv_scalars=[0.5,1.0]"


@pytest.mark.parametrize(
    "overrides",
    [
        (LWS_QKV,),  # d_model 12 != 4 heads x 4: the old hint said head_dim=3
        (LWS_QKV, "model.head_dim=3"),  # the old hint's result
        ("model.head_dim=3",),  # odd head_dim without LWS
        ("model.head_dim=1",),
        (LWS_QKV, "model.n_kv_heads=2"),  # 3 heads would not split into 2
        (*OLMO2_12, "model.n_heads=4"),  # head_dim = 12 // 4 = 3
        (*OLMO2_12, "model.n_heads=4", "model.n_kv_heads=2"),
        (*OLMO2_12, "model.n_heads=16"),  # head_dim = 12 // 16 = 0
        (*OLMO2_12, "model.d_model=13", "model.n_heads=1", LWS_QKV),
    ],
)
def test_a_rejected_shape_hints_a_shape_that_trains(overrides):
    with pytest.raises(UserError) as info:
        configured(*overrides)
    message = str(info.value)
    assert "\n" not in message
    for fix in hint_overrides(message):
        forward_backward(configured(*overrides, *fix))


@pytest.mark.parametrize(
    ("overrides", "accepted"),
    [
        (("model.head_dim=2",), True),
        (("model.n_heads=3", LWS_QKV), True),
        (("model.n_heads=6", "model.head_dim=2", "model.n_kv_heads=3", LWS_QKV), True),
        ((*OLMO2_12, "model.n_heads=5"), True),  # 12 // 5 = 2: olmo-core floors, RoPE is happy
        ((*OLMO2_12, "model.n_heads=6", "model.n_kv_heads=2"), True),
        (("model.head_dim=5",), False),
        ((*OLMO2_12, "model.n_heads=7"), False),  # 12 // 7 = 1
        ((*OLMO2_12, "model.n_heads=8"), False),  # 12 // 8 = 1
        ((*OLMO2_12, "model.d_model=14", "model.n_heads=2"), False),  # 7
    ],
)
def test_boundary_shapes_the_plan_accepts_train(overrides, accepted):
    if accepted:
        forward_backward(configured(*overrides))
    else:
        with pytest.raises(UserError, match="RoPE rotates pairs") as info:
            configured(*overrides)
        assert "\n" not in str(info.value)


def test_an_odd_head_dim_is_one_line_before_any_run_dir(tmp_path):
    from conftest import assert_one_line_error, train_main

    result = train_main("model=olmo2_1m", "model.head_dim=3", f"output_root={tmp_path}")
    line = assert_one_line_error(result)
    assert "model.head_dim=3 is odd" in line and line.endswith("set model.head_dim=4")
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# At small widths OpenELM's rounding leaves LWS (nearly) a no-op: the plan says so

DD_4M_GQA = dict(d_model=64, n_layers=8, n_heads=8, n_kv_heads=2, head_dim=8, ffn_hidden=256)
OPENELM_SCALARS = {"qkv_scalars": [0.5, 1.0], "ffn_scalars": [0.5, 4.0]}


def base_shape(model: dict) -> LayerShape:
    keys = ("n_heads", "n_kv_heads", "head_dim")
    return LayerShape(**{k: model[k] for k in keys}, ffn_hidden=model["ffn_hidden"], output_scale=1)


def test_lws_that_changes_almost_no_layer_is_warned():
    # Hand: qkv widths 64 x 0.5..1.0 to multiples of head_dim 8 x 4 groups = 32: 32 for layer 0
    # (0.5), then 64 (0.57 x 64 = 36.6 rounds to 32, < 90% of 36.6, so 64); FFN 32..256 -> 256.
    shapes = layer_shapes(**DD_4M_GQA, lws=OPENELM_SCALARS)
    assert [(s.n_heads, s.ffn_hidden) for s in shapes] == [(4, 256)] + [(8, 256)] * 7
    warning = lws_warning(shapes, base_shape(DD_4M_GQA), OPENELM_SCALARS)
    assert warning.startswith("model.lws changes 1 of 8 layers from the base shape")
    assert "ffn_scalars gives every layer FFN hidden 256" in warning
    only_ffn = {"ffn_scalars": [0.5, 4.0]}
    warning = lws_warning(layer_shapes(**DD_4M_GQA, lws=only_ffn), base_shape(DD_4M_GQA), only_ffn)
    assert warning.startswith("model.lws changes 0 of 8 layers")


def test_lws_that_changes_the_layers_is_not_warned():
    model = dict(d_model=D, n_layers=16, n_heads=20, n_kv_heads=5, head_dim=64, ffn_hidden=4 * D)
    openelm = layer_shapes(**model, lws=OPENELM_SCALARS)
    assert lws_warning(openelm, base_shape(model), OPENELM_SCALARS) is None
    assert lws_warning(openelm, base_shape(model), {"output_scalars": [0.5, 1.0]}) is None
