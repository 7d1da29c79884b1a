"""Data at start-up: build the embedded dataset when it is missing, then check every token file.

Runs before the model is built, so a missing or corrupt file costs a second, not a failed job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from olmotrain.errors import UserError
from olmotrain.plan import data_report


def embedded_manifest(c: dict[str, Any]) -> dict[str, Any] | None:
    """The embedded dataset's manifest for this run's tokenizer, if it has been built."""
    data = c["data"]
    if data.get("builder") != "embedded":
        return None
    path = Path(data["root"]) / c["tokenizer"]["name"] / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else None


def ensure_data(c: dict[str, Any]) -> dict[str, Any]:
    """Build the embedded dataset if needed, then validate; returns the data report."""
    data = c["data"]
    report = data_report(data, c["tokenizer"]["vocab_size"])
    if report["problems"] and data.get("builder") == "embedded":
        from olmotrain.embedded import build_embedded

        build_embedded(Path(data["root"]), c["tokenizer"]["name"])
        report = data_report(data, c["tokenizer"]["vocab_size"])
    problems = report["problems"]
    if problems:
        hint = "; run `make data`" if data.get("builder") else "; check data.sources[].paths"
        raise UserError(f"data '{data['name']}': {problems[0]}{hint}")
    manifest = embedded_manifest(c)
    if manifest is not None:
        _check_manifest(manifest, c["tokenizer"])
    return report


def _check_manifest(manifest: dict[str, Any], tokenizer: dict[str, Any]) -> None:
    tok = manifest["tokenizer"]
    if (
        tok["vocab_size"] != tokenizer["vocab_size"]
        or tok["eos_token_id"] != tokenizer["eos_token_id"]
    ):
        raise UserError(
            f"the data was tokenized with vocab {tok['vocab_size']} / eos {tok['eos_token_id']} but "
            f"tokenizer={tokenizer['name']} has vocab {tokenizer['vocab_size']} / eos {tokenizer['eos_token_id']}; "
            f"rebuild it with `make data`"
        )
    for name, source in manifest["sources"].items():
        for split in ("train", "eval"):
            top = source[split].get("max_token_id", -1)
            if top >= tokenizer["vocab_size"]:
                raise UserError(
                    f"data source {name} ({split}) holds token id {top}, outside the vocab of "
                    f"{tokenizer['vocab_size']}; re-tokenize it with tokenizer {tokenizer['name']}"
                )


def scored_targets(
    path: str, sequence_length: int, eos_token_id: int, dtype: np.dtype
) -> np.ndarray:
    """The token ids olmo-core's LM evaluator scores in one held-out file.

    It makes one instance per EOS-terminated document, truncated to ``sequence_length``, and
    scores every token of an instance but the first.
    """
    ids = np.fromfile(path, dtype=dtype)
    ends = np.flatnonzero(ids == eos_token_id)
    starts = np.concatenate([[0], ends[:-1] + 1]) if ends.size else np.array([0])
    doc_start = np.repeat(starts, np.diff(np.concatenate([starts, [ids.size]])))
    pos = np.arange(ids.size) - doc_start
    return ids[(pos >= 1) & (pos < sequence_length)]


def heldout_baseline(
    c: dict[str, Any], report: dict[str, Any]
) -> tuple[float, dict[str, int]] | None:
    """Unigram entropy (nats) of the scored held-out targets, and their count per source.

    A unigram model that knew the held-out distribution exactly would score this; a model
    that learned anything from context must do better.
    """
    from olmotrain.plan import token_dtype_bytes
    from olmotrain.training import expand

    eval_paths = c["data"].get("eval") or {}
    if not eval_paths or any(r["remote"] for r in report["eval"]):
        return None
    tok, seq = c["tokenizer"], c["train"]["sequence_length"]
    dtype = np.dtype(np.uint16 if token_dtype_bytes(tok["vocab_size"]) == 2 else np.uint32)
    counts = np.zeros(tok["vocab_size"], dtype=np.int64)
    per_source = {}
    for name, patterns in eval_paths.items():
        targets = [scored_targets(p, seq, tok["eos_token_id"], dtype) for p in expand(patterns)]
        per_source[name] = sum(t.size for t in targets)
        for t in targets:
            counts += np.bincount(t, minlength=tok["vocab_size"])
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum()), per_source


def pooled_eval_loss(eval_losses: dict[str, float], weights: dict[str, int]) -> float | None:
    """Held-out loss over all sources, each weighted by its number of scored targets."""
    total = sum(weights.get(k, 0) for k in eval_losses)
    if not eval_losses or total == 0:
        return None
    return sum(v * weights.get(k, 0) for k, v in eval_losses.items()) / total
