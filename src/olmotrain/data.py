"""Data at start-up: build the embedded dataset when it is missing, then check every token file.

Runs before the model is built, so a missing or corrupt file costs a second, not a failed job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


def pooled_eval_loss(eval_losses: dict[str, float], report: dict[str, Any]) -> float | None:
    """Held-out loss over all sources, weighting each source by its held-out tokens."""
    weights = {r["name"]: r["tokens"] or 0 for r in report["eval"]}
    total = sum(weights.get(k, 0) for k in eval_losses)
    if not eval_losses or total == 0:
        return None
    return sum(v * weights.get(k, 0) for k, v in eval_losses.items()) / total
