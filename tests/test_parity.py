"""The export's parity check itself (``olmotrain.export.parity``), in this process on a tiny
olmo-core model and its transformers twin: what it measures, the tolerance it holds a
conversion to, and that it fails on a conversion that is off by one weight or does not load.
(The export command around it, with trained checkpoints, is tests/test_export.py.)"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from olmotrain.export.hf import hf_model_of
from olmotrain.export.parity import TOLERANCE, UnloadableExport, check_parity, round_weights

VOCAB = 250  # the real vocabulary: olmo-core pads its embedding to 256


@functools.cache
def config():
    """conf/model/olmo2_1m.yaml as olmo-core's TransformerConfig (composed once)."""
    from olmotrain.config.compose import compose, resolve
    from olmotrain.model.build import transformer_config

    return transformer_config(resolve(compose(["model=olmo2_1m"])).model, VOCAB)


def native() -> torch.nn.Module:
    torch.manual_seed(0)
    model = config().build(init_device="cpu")
    model.init_weights(max_seq_len=32, device=torch.device("cpu"))
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """The tiny model converted by olmo-core's state conversion and saved as transformers does."""
    out = tmp_path_factory.mktemp("hf")
    hf_model_of(native(), VOCAB, 32).save_pretrained(out)
    return out


TOKENS = np.random.default_rng(0).integers(0, VOCAB, size=(2, 32))


def test_a_faithful_conversion_passes_with_both_losses_measured(exported):
    parity = check_parity(native(), exported, TOKENS, "held-out", VOCAB, "float32")
    assert parity.passed and parity.max_abs_logit_diff <= TOLERANCE == 1e-4
    assert (parity.sequences, parity.sequence_length, parity.text) == (2, 32, "held-out")
    assert 0 <= parity.mean_abs_logit_diff <= parity.max_abs_logit_diff
    # an untrained model: next-token loss near ln(vocab) on both sides, and equal
    assert parity.loss_olmo_core == pytest.approx(np.log(VOCAB), rel=0.1)
    assert parity.loss_hf == pytest.approx(parity.loss_olmo_core, abs=1e-5)
    assert parity.to_dict()["passed"] is True


def test_one_perturbed_weight_fails_and_the_sizes_are_measured(exported, tmp_path):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(exported, local_files_only=True)
    with torch.no_grad():
        hf.model.layers[0].mlp.down_proj.weight[0, 0] += 0.5
    hf.save_pretrained(tmp_path)
    parity = check_parity(native(), tmp_path, TOKENS, "training", VOCAB, "float32")
    assert not parity.passed and parity.to_dict()["passed"] is False
    # what it measured, recomputed here over both sequences and the real vocabulary
    with torch.inference_mode():
        ids = torch.from_numpy(TOKENS)
        diff = (native()(ids)[..., :VOCAB] - hf(input_ids=ids).logits[..., :VOCAB]).abs()
    assert parity.max_abs_logit_diff == pytest.approx(float(diff.max()), rel=1e-5)
    assert parity.mean_abs_logit_diff == pytest.approx(float(diff.mean()), rel=1e-4)
    assert parity.max_abs_logit_diff > TOLERANCE
    assert parity.loss_hf != parity.loss_olmo_core


def test_a_difference_at_the_tolerance_passes_and_just_above_fails():
    from olmotrain.export.parity import Parity

    def at(diff: float) -> Parity:
        return Parity(1, 8, "training", TOLERANCE, diff, diff / 2, 1.0, 1.0)

    assert at(TOLERANCE).passed and not at(TOLERANCE * 1.01).passed


def test_a_directory_that_does_not_load_is_unloadable(exported, tmp_path):
    for f in exported.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    hf_config = json.loads((tmp_path / "config.json").read_text())
    hf_config["head_dim"] = hf_config["head_dim"] * 2  # the weights no longer fit the config
    (tmp_path / "config.json").write_text(json.dumps(hf_config))
    with pytest.raises(UnloadableExport) as info:
        check_parity(native(), tmp_path, TOKENS, "training", VOCAB, "float32")
    # transformers' first line (its report of each mismatched weight follows on others)
    message = str(info.value)
    assert "ignore_mismatched_sizes" in message and "\n" not in message and len(message) <= 300


def test_token_ids_as_stored_on_disk_are_accepted(exported):
    """Token files hold uint16 (or uint32) ids; the models take int64."""
    parity = check_parity(
        native(), exported, TOKENS.astype(np.uint16), "held-out", VOCAB, "float32"
    )
    assert parity.passed


def test_a_bfloat16_export_is_compared_with_the_rounded_checkpoint(exported, tmp_path):
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(exported, dtype=torch.bfloat16).save_pretrained(tmp_path)
    # the float32 checkpoint differs from its bfloat16 export by rounding alone...
    unrounded = check_parity(native(), tmp_path, TOKENS, "training", VOCAB, "float32")
    assert not unrounded.passed
    # ... which the check removes by rounding the checkpoint first
    assert check_parity(native(), tmp_path, TOKENS, "training", VOCAB, "bfloat16").passed


def test_round_weights_rounds_in_place_and_keeps_float32():
    model = torch.nn.Linear(4, 4)
    with torch.no_grad():
        model.weight.fill_(1.0 + 2**-10)  # not a bfloat16 number (8 bits of mantissa)
    round_weights(model, "float32")
    assert model.weight[0, 0].item() == 1.0 + 2**-10
    round_weights(model, "bfloat16")
    assert model.weight.dtype == torch.float32 and model.weight[0, 0].item() == 1.0
