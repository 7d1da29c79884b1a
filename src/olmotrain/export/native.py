"""A run's checkpoint as an olmo-core model on this machine, and real text of the run to feed it.

Shared by the export's parity check and by generation: the model is rebuilt from the run's own
config (olmo-core ``TransformerConfig``, PyTorch attention so it runs anywhere) and loaded with
olmo-core's distributed-checkpoint reader, which reshards a checkpoint of any number of ranks.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from olmotrain.config.schema import RunConfig
from olmotrain.data.mix import eval_files
from olmotrain.data.remote.localize import localized
from olmotrain.data.tokens import expand, token_dtype
from olmotrain.errors import UserError
from olmotrain.model.build import transformer_config
from olmotrain.model.checkpoint import InitSource, load_init_weights


def model_config(config: RunConfig) -> Any:
    """olmo-core's ``TransformerConfig`` of the run, with PyTorch attention (CPU or GPU)."""
    return transformer_config(config.model, config.tokenizer.vocab_size, attn_backend="torch")


def load_native_model(config: RunConfig, checkpoint: Path, device: str = "cpu") -> Any:
    """The checkpoint's weights in an olmo-core ``Transformer`` (float32, eval mode)."""
    import torch

    model = model_config(config).build(init_device="meta")
    model.to_empty(device=torch.device(device))
    with tempfile.TemporaryDirectory(prefix="olmotrain-load-") as work:
        with contextlib.redirect_stdout(sys.stderr):
            load_init_weights(InitSource("olmo-core", checkpoint), model, work)
    return model.eval()


def text_sequences(config: RunConfig, count: int, length: int) -> tuple[np.ndarray, str]:
    """Up to ``count`` sequences of ``length`` tokens of the run's held-out text (its training
    text when it has none), taken in turn from every file; and which of the two it is."""
    config = localized(config)  # remote held-out files: read from their local copies
    files = [p for _, p in eval_files(config.data)]
    kind = "held-out"
    if not files:
        files = [p for s in config.data.sources for p in expand(s.paths)]
        kind = "training"
    dtype = token_dtype(config.tokenizer.vocab_size)
    arrays = [np.memmap(p, dtype=dtype, mode="r") for p in files if Path(p).is_file()]
    if not arrays:
        raise UserError(
            f"none of the run's token files are here ({files[0] if files else 'no files'}); "
            "the parity check needs real text of the run: set data_root=... to where they are"
        )
    length = min(length, max(len(a) for a in arrays))
    chunks: list[np.ndarray] = []
    offset = 0
    while len(chunks) < count:
        added = False
        for a in arrays:
            if offset + length <= len(a) and len(chunks) < count:
                chunks.append(np.asarray(a[offset : offset + length], dtype=np.int64))
                added = True
        if not added:
            break
        offset += length
    return np.stack(chunks), kind
