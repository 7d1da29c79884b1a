"""The held-out set olmo-core's LM evaluator scores, and the mean it reports.

- Which documents: every document of each source's files (``data.eval``), or with
  ``eval.heldout_tokens`` its first whole documents in file order until their scored targets
  reach the cap (:func:`capped_held_out`): a fixed subset, the same in every run and in
  ``python -m olmotrain.evaluate``.
- The mean: olmo-core's ``LMEvaluator`` averages the per-position losses under the *input*
  mask, so each document also added one zero (its last position, whose label is ignored), and
  each EOS-only padding document one more: the loss depended on how many padding documents the
  eval batch needed. :class:`ScoredTargetsLMEvaluator` averages over the scored targets only
  (every token of an instance but the first, as :func:`olmotrain.data.tokens.scored_targets`
  and the BPB count them), in float64, so the number is the same at any batch size; it also
  reports how many targets that was (``eval/lm/<source>/tokens``).
- Speed: olmo-core finds each file's documents in a pool of worker processes (seconds to start
  one on a small machine, in every run and every ``evaluate``); held-out files are small, so
  :class:`HeldOutDatasetConfig` runs the same olmo-core function in this process first.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from olmo_core.data import NumpyPaddedFSLDatasetConfig
from olmo_core.data.numpy_dataset import _get_data_prep_use_array_if_local
from olmo_core.data.utils import iter_document_indices, segment_documents_into_instances
from olmo_core.distributed.utils import all_reduce_value
from olmo_core.eval.lm_evaluator import LMEvaluator
from olmo_core.eval.metrics import MeanMetric
from olmo_core.train.callbacks import LMEvaluatorCallbackConfig

from olmotrain.config.schema import RunConfig
from olmotrain.data.mix import eval_files
from olmotrain.data.tokens import token_dtype
from olmotrain.metrics import SCORED_TOKENS
from olmotrain.paths import write_atomically

IN_PROCESS_BYTES = 512 * 2**20
"""Held-out files up to this size in all are segmented in this process (no worker pool)."""


def _local(files: list[tuple[str, str]]) -> bool:
    return all("://" not in p for _, p in files)


def capped_held_out(config: RunConfig, work_dir: str) -> list[tuple[str, str]]:
    """``(source, file)`` of the held-out set: ``data.eval``'s files, or with
    ``eval.heldout_tokens`` one file per source in ``work_dir`` holding its first whole
    documents (in file order) until their scored targets reach the cap.

    A source with remote files is kept whole (its documents cannot be read here); its
    ``tokens`` metric says so.
    """
    files = eval_files(config.data)
    cap = config.eval.heldout_tokens
    if cap is None:
        return files
    out: list[tuple[str, str]] = []
    for source in dict.fromkeys(s for s, _ in files):
        mine = [(s, p) for s, p in files if s == source]
        out += (
            [(source, _first_documents(config, source, mine, cap, work_dir))]
            if _local(mine)
            else mine
        )
    return out


def _first_documents(
    config: RunConfig, source: str, files: list[tuple[str, str]], cap: int, work_dir: str
) -> str:
    """The file of ``source``'s first whole documents with ``cap`` scored targets (see
    :func:`capped_held_out`); named by its content, so a changed subset never reuses the
    instance indices olmo-core keeps by file name and size."""
    tok, seq = config.tokenizer, config.train.sequence_length
    dtype = token_dtype(tok.vocab_size)
    parts, scored = [], 0
    for _, path in files:
        ids = np.memmap(path, dtype=dtype, mode="r")
        for start, end in iter_document_indices(path, eos_token_id=tok.eos_token_id, dtype=dtype):
            if scored >= cap:
                break
            parts.append(np.asarray(ids[start:end]))
            scored += max(0, min(end - start, seq) - 1)  # an instance's targets: all but its first
    data = np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)
    digest = hashlib.sha256(data.tobytes()).hexdigest()[:16]
    subset = Path(work_dir) / f"heldout-{source}-{cap}-{digest}.npy"
    if not subset.exists():  # every rank writes the same bytes, each through its own temporary
        subset.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(subset, data.tobytes())
    return str(subset)


def padded_held_out(
    config: RunConfig, held_out: list[tuple[str, str]], batch_instances: int, work_dir: str
) -> list[tuple[str, str]]:
    """``held_out`` plus a file of EOS-only documents that makes the number of instances a
    whole number of eval batches.

    olmo-core's LM evaluator makes one instance per document and drops the last partial batch,
    so a held-out set smaller than a batch would not be scored at all, and a larger one would
    lose its remainder. A document that is only an EOS has no scored target, so the padding
    changes no loss (:class:`ScoredTargetsLMEvaluator`): every real document is scored once.
    """
    if not held_out or not _local(held_out):
        return held_out  # remote files: their documents cannot be counted here
    tok = config.tokenizer
    dtype = token_dtype(tok.vocab_size)
    documents = 0
    for _, path in held_out:
        ids = np.memmap(path, dtype=dtype, mode="r")
        documents += int(np.count_nonzero(ids == tok.eos_token_id))
        documents += int(len(ids) > 0 and ids[-1] != tok.eos_token_id)
    missing = -documents % batch_instances
    if not missing:
        return held_out
    pad = Path(work_dir) / f"heldout-padding-{missing}.npy"
    pad.parent.mkdir(parents=True, exist_ok=True)
    if not pad.exists():  # every rank writes the same bytes, each through its own temporary
        write_atomically(pad, np.full(missing, tok.eos_token_id, dtype=dtype).tobytes())
    return [*held_out, (held_out[0][0], str(pad))]


class _Float64Mean(MeanMetric):
    """olmo-core's mean, summed in float64: a float32 sum of ~1e5 losses rounds differently
    for different batch sizes (~1e-6 relative)."""

    def __init__(self, device: torch.device | None = None):
        super().__init__(device=device)
        self.weighted_sum = self.weighted_sum.double()
        self.weight = self.weight.double()


class ScoredTargetsLMEvaluator(LMEvaluator):
    """olmo-core's LM evaluator, averaging over the scored targets only (see the module
    docstring), and reporting their number as ``<source>/tokens``."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.metrics = {label: _Float64Mean(device=self.device) for label in self.metrics}

    @classmethod
    def like(cls, evaluator: LMEvaluator) -> ScoredTargetsLMEvaluator:
        """This evaluator over ``evaluator``'s batches and labels."""
        return cls(
            name=evaluator.name,
            batches=evaluator.batches,
            labels=sorted(evaluator.metrics),
            device=evaluator.device,
            deterministic=evaluator.deterministic,
        )

    def update_metrics(
        self, batch: dict[str, Any], ce_loss: torch.Tensor | None, logits: torch.Tensor | None
    ) -> None:
        del logits
        if ce_loss is None:
            return
        # ce_loss[:, i] is the loss of target i + 1: a target is scored where the input mask
        # holds at i + 1 (the label olmo-core's get_labels made from it is not ignored).
        targets = F.pad(batch["label_mask"][:, 1:], (0, 1), value=False)
        for idx, (metadata, losses) in enumerate(zip(batch["metadata"], ce_loss, strict=True)):
            self.metrics[metadata["label"]].update(losses.masked_select(targets[idx]).double())

    def compute_metrics(self) -> dict[str, torch.Tensor]:
        # This rank's counts, copied first: olmo-core's compute() all-reduces its sums in place.
        local = {label: (m.weight.clone(), m.process_group) for label, m in self.metrics.items()}
        out = super().compute_metrics()
        for label, (weight, group) in sorted(local.items()):
            out[f"{label}/{SCORED_TOKENS}"] = all_reduce_value(weight, weight.device, group=group)
        return out


@dataclass
class HeldOutEvaluatorConfig(LMEvaluatorCallbackConfig):
    """olmo-core's LM evaluator callback with :class:`ScoredTargetsLMEvaluator`."""

    def build(self, trainer: Any) -> Any:
        callback = super().build(trainer)
        if callback is not None:
            callback.evaluators = [ScoredTargetsLMEvaluator.like(e) for e in callback.evaluators]
        return callback


@dataclass(kw_only=True)
class HeldOutDatasetConfig(NumpyPaddedFSLDatasetConfig):
    """olmo-core's one-instance-per-document dataset, its documents found in this process
    (olmo-core's ``segment_documents_into_instances``; see the module docstring)."""

    def build(self) -> Any:
        dataset = super().build()
        paths = [p for p in dataset.paths if "://" not in str(p)]
        small = sum(os.path.getsize(p) for p in paths) <= IN_PROCESS_BYTES
        if dataset.fs_local_rank == 0 and small and len(paths) == len(dataset.paths):
            for path in paths:
                indices = dataset._get_instance_indices_path(path)
                if not indices.is_file():  # olmo-core's prepare() then reuses it
                    indices.parent.mkdir(parents=True, exist_ok=True)
                    segment_documents_into_instances(
                        path,
                        indices,
                        max_sequence_length=dataset.sequence_length,
                        eos_token_id=dataset.eos_token_id,
                        dtype=dataset.dtype,
                        indices_dtype=dataset.indices_dtype,
                        use_array_if_local=_get_data_prep_use_array_if_local(),  # as olmo-core
                    )
        return dataset
