"""Export a checkpoint to a Hugging Face model directory, with the parity check always on.

olmo-core does the conversion (``convert_checkpoint_to_hf``: safetensors, config, generation
config, the tokenizer exported losslessly and reloaded); olmotrain adds what it lacks: the run's
local tokenizer, the run's context length, a parity check on real text of the run (not random
ids), and an all-or-nothing result: the export is written to a hidden staging directory and
renamed into place only after the check passed, so nothing that looks like a finished export is
ever left behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from olmotrain.config.compose import to_dict
from olmotrain.config.schema import RunConfig
from olmotrain.data.tokenizer import local_tokenizer_file
from olmotrain.errors import UserError
from olmotrain.export.native import load_native_model, model_config, text_sequences
from olmotrain.export.parity import Parity, UnloadableExport, check_parity
from olmotrain.model.build import hf_unrepresentable
from olmotrain.paths import move_aside

REPORT = "olmotrain_export.json"
DTYPES = ("float32", "bfloat16")
EXIT_PARITY = 1
"""Exit status of an export whose parity check failed (not a user error: a conversion bug)."""


def config_hash(config: RunConfig) -> str:
    """A short, stable hash of the run config (what identifies the run)."""
    text = json.dumps(to_dict(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_export(config: RunConfig, output: Path, dtype: str, overwrite: bool) -> None:
    """Everything that can be refused before any model is loaded."""
    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype} is not one of {', '.join(DTYPES)}")
    if why := hf_unrepresentable(config.model):
        raise UserError(
            f"cannot export to Hugging Face: {why}; the native checkpoint still works with "
            "`python -m olmotrain.evaluate` and `python -m olmotrain.generate`"
        )
    fix = "set tokenizer.path=/path/to/tokenizer.json in the run's config.yaml"
    local_tokenizer_file(config.tokenizer, "an export", fix)
    if output.exists() and not output.is_dir():
        raise UserError(f"--output {output} is a file; choose a directory")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise UserError(
            f"--output {output} is not empty; choose a new directory, or pass --overwrite (the "
            "old contents are moved aside, never deleted)"
        )


def hf_config_of(model: Any) -> Any:
    """olmo-core's ``get_hf_config`` for ``model``, with its real ``head_dim``: olmo-core 3.0.0
    leaves it out, so transformers assumes d_model / n_heads and models with another head size
    (olmo2_1m: 4 heads of 4 on d_model 12) fail to convert."""
    from olmo_core.nn.hf.config import get_hf_config

    hf_config = get_hf_config(model)
    hf_config.head_dim = next(iter(model.blocks.values())).attention.head_dim
    return hf_config


@contextlib.contextmanager
def hf_config_with_head_dim() -> Iterator[None]:
    """While active, olmo-core's checkpoint converter uses :func:`hf_config_of`."""
    import olmo_core.nn.hf.checkpoint as hf_checkpoint

    original = hf_checkpoint.get_hf_config
    hf_checkpoint.get_hf_config = hf_config_of
    try:
        yield
    finally:
        hf_checkpoint.get_hf_config = original


def hf_model_of(native: Any, vocab_size: int, max_length: int) -> Any:
    """The transformers model holding ``native``'s weights, in memory (olmo-core's state
    conversion, as its ``save_hf_model`` does before writing), with the real vocabulary only."""
    from olmo_core.nn.hf.convert import convert_state_to_hf
    from transformers import AutoModelForCausalLM

    hf_config = hf_config_of(native)
    hf_config.max_position_embeddings = max_length  # olmo-core leaves -1 (its export fixes it up)
    state = convert_state_to_hf(hf_config, dict(native.state_dict()))
    hf = AutoModelForCausalLM.from_config(hf_config)
    hf.load_state_dict({k: v.contiguous() for k, v in state.items()})
    hf.resize_token_embeddings(vocab_size)
    return hf.eval()


def export_hf(
    config: RunConfig,
    checkpoint: Path,
    output: Path,
    *,
    step: int,
    tokens: int,
    dtype: str = "float32",
    overwrite: bool = False,
    sequences: int = 4,
    run: str | None = None,
) -> dict[str, Any]:
    """Write ``checkpoint`` as a Hugging Face model in ``output`` and prove it computes the same
    function; returns (and writes into ``output/olmotrain_export.json``) what was measured.

    Raises ``UserError`` (exit 1) when the parity check fails; ``output`` is then untouched.
    """
    from olmo_core.config import DType
    from olmo_core.nn.hf.convert_checkpoint import convert_checkpoint_to_hf

    from olmotrain.data.tokenizer import olmo_tokenizer_config

    output = output.resolve()
    check_export(config, output, dtype, overwrite)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.with_name(f".{output.name}.partial-{os.getpid()}")
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="olmotrain-tokenizer-") as tok_dir:
            shutil.copyfile(str(config.tokenizer.path), Path(tok_dir) / "tokenizer.json")
            # olmo-core prints the whole model config with rich on stdout: ours is for results,
            # and the export line below names the model.
            with contextlib.redirect_stdout(io.StringIO()), hf_config_with_head_dim():
                convert_checkpoint_to_hf(
                    checkpoint,
                    staging,
                    model_config(config).as_config_dict(),
                    olmo_tokenizer_config(config.tokenizer).as_config_dict(),
                    dtype=DType(dtype),
                    tokenizer_id=tok_dir,
                    max_sequence_length=config.train.sequence_length,
                    validate=False,  # random ids, 60 tokens: ours below uses the run's text
                )
        converted_s = time.perf_counter() - started
        parity = checked_parity(config, checkpoint, staging, sequences, dtype, output)
        report = {
            "run": run,
            "step": step,
            "tokens": tokens,
            "config_hash": config_hash(config),
            "model": config.model.name,
            "dtype": dtype,
            "checkpoint": str(checkpoint),
            **parity.to_dict(),
            "convert_seconds": round(converted_s, 3),
            "seconds": round(time.perf_counter() - started, 3),
        }
        (staging / REPORT).write_text(json.dumps(report, indent=2) + "\n")
        if output.exists():
            if any(output.iterdir()):
                move_aside(output, "replaced")
            else:
                output.rmdir()
        staging.rename(output)
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def checked_parity(
    config: RunConfig, checkpoint: Path, hf_dir: Path, sequences: int, dtype: str, output: Path
) -> Parity:
    """The parity of the converted ``hf_dir`` with ``checkpoint`` on the run's own text; a
    directory that does not load in transformers, or computes another function, is refused
    (``UserError``, exit 1): the one place an export fails its check."""
    native = load_native_model(config, checkpoint)
    ids, text = text_sequences(config, sequences, config.train.sequence_length)
    try:
        parity = check_parity(native, hf_dir, ids, text, config.tokenizer.vocab_size, dtype)
    except UnloadableExport as exc:
        why = f"the converted model does not load in transformers ({exc})"
    else:
        if parity.passed:
            return parity
        why = (
            f"max |delta logit| {parity.max_abs_logit_diff:.3g} > {parity.tolerance:g} on "
            f"{parity.sequences} {text} sequences of {parity.sequence_length} tokens (losses "
            f"{parity.loss_olmo_core:.5f} vs {parity.loss_hf:.5f})"
        )
    raise UserError(
        f"export parity FAILED: {why}; nothing was written to {output}", exit_code=EXIT_PARITY
    )
