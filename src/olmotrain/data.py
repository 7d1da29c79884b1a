"""Data: what a mix asks of each source, start-up checks, and olmo-core's dataset config for it.

A mix (``conf/data/*.yaml``) lists sources with token files (local or remote, globs allowed) and
either no ratios (the natural mix: every token once, in proportion to what each source has) or a
ratio per source, mixed by olmo-core's ``SourceMixtureDatasetConfig`` to the run's Chinchilla
duration. Before any model is built, :func:`ensure_data` checks every local token file (exists,
non-empty, whole tokens, every id inside the vocabulary: read once, then cached), that the
tokenizer the data was prepared with is the run's, that the ratios add up, and that each source
can supply what it is asked for within its ``max_repetition_ratio``.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from olmotrain.errors import UserError

REMOTE_PREFIXES = ("s3://", "gs://", "http://", "https://", "r2://", "weka://")
RATIO_TOLERANCE = 1e-6


def is_remote(path: str) -> bool:
    """True for object-store and web paths (read by olmo-core with byte ranges)."""
    return path.startswith(REMOTE_PREFIXES)


def token_dtype(vocab_size: int) -> np.dtype:
    """The dtype olmo-core reads token files with: the smallest unsigned int holding every id."""
    if vocab_size <= 0:
        raise UserError(f"vocabulary size must be positive, got {vocab_size}")
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if vocab_size - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise UserError(f"vocabulary size {vocab_size} does not fit in uint64 token files")


def expand(patterns: list[str]) -> list[str]:
    """Local globs expanded (sorted, de-duplicated); remote paths kept as they are."""
    out: list[str] = []
    for p in patterns:
        for f in [p] if is_remote(p) else sorted(glob.glob(p)):
            if f not in out:
                out.append(f)
    return out


@dataclass
class SourceReport:
    """What is known about one source without reading its files."""

    name: str
    patterns: list[str]
    files: int = 0
    tokens: int | None = None
    """Tokens in the local files (from their sizes); ``None`` when remote or missing."""
    remote: bool = False
    problem: str | None = None


def source_report(name: str, patterns: list[str], vocab_size: int) -> SourceReport:
    """Files and tokens of one source, from file sizes only."""
    report = SourceReport(name=name, patterns=list(patterns))
    files = expand(patterns)
    report.files = len(files)
    if any(is_remote(f) for f in files):
        report.remote = True
        return report
    if not files:
        report.problem = f"no files match {', '.join(patterns)}"
        return report
    itemsize = token_dtype(vocab_size).itemsize
    sizes = [os.path.getsize(f) for f in files]
    bad = [f for f, s in zip(files, sizes, strict=True) if s == 0 or s % itemsize]
    if bad:
        report.problem = f"{bad[0]} is empty or not a whole number of {itemsize}-byte tokens"
    report.tokens = sum(sizes) // itemsize
    return report


def data_report(data: dict[str, Any], vocab_size: int, duration_tokens: int) -> dict[str, Any]:
    """Per source: files, tokens, and what the mix asks of it. Data problems are listed, not raised.

    Raises ``UserError`` only for a mix that cannot mean anything (ratios missing or not adding up).
    """
    instance_filter(data)
    train = [source_report(s["name"], s["paths"], vocab_size) for s in data["sources"]]
    held_out = [source_report(n, p, vocab_size) for n, p in (data.get("eval") or {}).items()]
    problems = [f"{r.name}: {r.problem}" for r in train + held_out if r.problem]
    mix = mix_plan(data, train, duration_tokens)
    problems += [
        f"{r.name}: {m['fit_problem']}"
        for r, m in zip(train, mix, strict=True)
        if m.get("fit_problem")
    ]
    note = None
    if any(r.problem for r in train + held_out) and data.get("builder"):
        note = f"the {data['builder']} dataset is built on the first training run (or `make data`)"
    return {
        "name": data["name"],
        "mix": "ratios" if any(s.get("ratio") is not None for s in data["sources"]) else "natural",
        "sources": [asdict(r) | m for r, m in zip(train, mix, strict=True)],
        "eval": [asdict(r) for r in held_out],
        "problems": problems,
        "note": note,
    }


def mix_plan(
    data: dict[str, Any], reports: list[SourceReport], duration: int
) -> list[dict[str, Any]]:
    """Per source: ratio, requested tokens, implied repetition, and whether it fits its limits."""
    sources = data["sources"]
    ratios = [s.get("ratio") for s in sources]
    if any(r is None for r in ratios) and any(r is not None for r in ratios):
        missing = ", ".join(s["name"] for s in sources if s.get("ratio") is None)
        raise UserError(
            f"data '{data['name']}': give every source a ratio, or none (natural mix); missing: {missing}"
        )
    if ratios and ratios[0] is not None:
        if any(r <= 0 for r in ratios):
            listed = ", ".join(f"{s['name']}={s['ratio']}" for s in sources)
            raise UserError(f"data '{data['name']}': ratios must be > 0 (got {listed})")
        total = sum(ratios)
        if abs(total - 1) > RATIO_TOLERANCE:
            listed = " + ".join(f"{s['name']} {s['ratio']:g}" for s in sources)
            raise UserError(
                f"data '{data['name']}': source ratios add up to {total:g} ({listed}), not 1; fix data.sources[].ratio"
            )
    else:
        known = [r.tokens for r in reports]
        total = sum(known) if all(k is not None for k in known) else None
        ratios = [k / total if total else None for k in known]
    plans = []
    for source, report, ratio in zip(sources, reports, ratios, strict=True):
        for key in ("max_repetition_ratio", "max_source_fraction"):
            if not source.get(key, 1.0) > 0:
                raise UserError(
                    f"data source {source['name']}: {key}={source.get(key)} must be > 0"
                )
        entry: dict[str, Any] = {
            "ratio": ratio,
            "requested_tokens": None,
            "repetition": None,
            "fits": None,
        }
        if ratio is not None:
            entry["requested_tokens"] = int(duration * ratio)
        if ratio is not None and report.tokens:
            usable = report.tokens * source.get("max_source_fraction", 1.0)
            entry["repetition"] = entry["requested_tokens"] / usable
            entry["fits"] = entry["repetition"] <= source.get("max_repetition_ratio", 1.0)
            if not entry["fits"]:
                entry["fit_problem"] = (
                    f"needs {entry['requested_tokens']:,} tokens but has {int(usable):,} usable, a repetition of "
                    f"{entry['repetition']:.2f}x above its max_repetition_ratio {source.get('max_repetition_ratio', 1.0):g}; "
                    f"raise max_repetition_ratio, lower its ratio, or shorten the run"
                )
        plans.append(entry)
    return plans


def _token_file_manifest(path: str) -> dict[str, Any] | None:
    """The ``manifest.json`` of the olmotrain-prepared dataset a token file belongs to, if any."""
    for parent in list(Path(path).resolve().parents)[:3]:
        manifest = parent / "manifest.json"
        if manifest.exists():
            try:
                return json.loads(manifest.read_text())
            except (OSError, json.JSONDecodeError):
                return None
    return None


def max_token_id(path: str, dtype: np.dtype, cache_dir: Path) -> int:
    """The largest id in a local token file, read once and cached by (path, size, mtime)."""
    stat = os.stat(path)
    key = hashlib.sha256(
        f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}|{dtype}".encode()
    ).hexdigest()
    cached = cache_dir / f"{key}.json"
    if cached.exists():
        return int(json.loads(cached.read_text())["max_token_id"])
    tokens = np.memmap(path, dtype=dtype, mode="r")
    top = max((int(tokens[i : i + 2**24].max()) for i in range(0, len(tokens), 2**24)), default=-1)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    tmp.write_text(json.dumps({"path": os.path.abspath(path), "max_token_id": top}))
    os.replace(tmp, cached)
    return top


def check_token_files(c: dict[str, Any]) -> None:
    """Every local token file: the run's tokenizer (when its manifest says) and ids inside the vocab."""
    tok = c["tokenizer"]
    vocab, dtype = tok["vocab_size"], token_dtype(tok["vocab_size"])
    cache_dir = Path(c["data_root"]) / ".cache" / "token_checks"
    pattern_sets = [(s["name"], s["paths"]) for s in c["data"]["sources"]]
    pattern_sets += list((c["data"].get("eval") or {}).items())
    seen_manifests: set[str] = set()
    run_sha = None
    if tok.get("path") and os.path.exists(tok["path"]):
        run_sha = hashlib.sha256(Path(tok["path"]).read_bytes()).hexdigest()
    for name, patterns in pattern_sets:
        for path in expand(patterns):
            if is_remote(path):
                continue
            manifest = _token_file_manifest(path)
            if (
                manifest is not None
                and json.dumps(manifest["tokenizer"], sort_keys=True) not in seen_manifests
            ):
                seen_manifests.add(json.dumps(manifest["tokenizer"], sort_keys=True))
                data_tok = manifest["tokenizer"]
                if (data_tok["vocab_size"], data_tok["eos_token_id"]) != (
                    vocab,
                    tok["eos_token_id"],
                ) or (data_tok.get("sha256") and run_sha and data_tok["sha256"] != run_sha):
                    raise UserError(
                        f"data source {name} was tokenized with {data_tok['name']} (vocab {data_tok['vocab_size']}, "
                        f"eos {data_tok['eos_token_id']}) but the run uses tokenizer={tok['name']} (vocab {vocab}, "
                        f"eos {tok['eos_token_id']}); pick the matching tokenizer= or re-tokenize the data"
                    )
            top = max_token_id(path, dtype, cache_dir)
            if top >= vocab:
                raise UserError(
                    f"data source {name}: {path} holds token id {top}, outside tokenizer {tok['name']}'s vocab of "
                    f"{vocab}; it was tokenized with another tokenizer (pick the matching tokenizer=) or is corrupt"
                )


def ensure_data(c: dict[str, Any], duration_tokens: int) -> dict[str, Any]:
    """Build the embedded dataset if needed, then check everything; returns the data report."""
    data = c["data"]
    report = data_report(data, c["tokenizer"]["vocab_size"], duration_tokens)
    missing = any(r["problem"] for r in report["sources"] + report["eval"])
    if missing and data.get("builder") == "embedded":
        from olmotrain.embedded import build_embedded

        build_embedded(Path(data["root"]), c["tokenizer"]["name"])
        report = data_report(data, c["tokenizer"]["vocab_size"], duration_tokens)
    if report["problems"]:
        hint = "; run `make data`" if data.get("builder") and missing else ""
        raise UserError(f"data '{data['name']}': {report['problems'][0]}{hint}")
    check_token_files(c)
    return report


def instance_filter(data: dict[str, Any]) -> dict[str, int] | None:
    """``data.instance_filter`` with the plan's defaults filled in; unknown keys are an error."""
    from dataclasses import asdict as fields_of

    from olmotrain.schema import InstanceFilterSchema

    given = data.get("instance_filter")
    if given is None:
        return None
    defaults = fields_of(InstanceFilterSchema())
    if not isinstance(given, dict) or not all(isinstance(v, int) for v in given.values()):
        raise UserError(
            f"data.instance_filter={given} must be null or a mapping of {', '.join(defaults)} to integers"
        )
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise UserError(
            f"data.instance_filter.{unknown[0]} is not a setting; use {', '.join(defaults)}"
        )
    merged = {**defaults, **given}
    if (
        not 1 <= merged["repetition_min_period"] <= merged["repetition_max_period"]
        or merged["repetition_max_count"] < 2
    ):
        raise UserError(
            f"data.instance_filter {merged} needs 1 <= min_period <= max_period and max_count >= 2"
        )
    return merged


def dataset_config(
    c: dict[str, Any], duration_tokens: int, batch_tokens: int, tokenizer: Any, work_dir: str
):
    """olmo-core's ``NumpyFSLDatasetConfig`` for the mix (natural, or olmo-core's source mixture)."""
    from olmo_core.data import InstanceFilterConfig, NumpyFSLDatasetConfig
    from olmo_core.data.source_mixture import (
        SourceMixtureConfig,
        SourceMixtureDatasetConfig,
        SourceMixtureList,
    )

    data, seq = c["data"], c["train"]["sequence_length"]
    filt = instance_filter(data)
    common: dict[str, Any] = dict(
        sequence_length=seq,
        tokenizer=tokenizer,
        work_dir=work_dir,
        instance_filter_config=InstanceFilterConfig(**filt) if filt else None,
    )
    if all(s.get("ratio") is None for s in data["sources"]):
        paths, metadata = [], []
        for s in data["sources"]:
            for p in expand(s["paths"]):
                paths.append(p)
                metadata.append({"label": s["name"]})
        return NumpyFSLDatasetConfig(paths=paths, metadata=metadata, **common)
    mixture = SourceMixtureDatasetConfig(
        source_list=SourceMixtureList(
            sources=[
                SourceMixtureConfig(
                    source_name=s["name"],
                    target_ratio=s["ratio"],
                    paths=expand(s["paths"]),
                    max_repetition_ratio=s["max_repetition_ratio"],
                    max_source_fraction=s["max_source_fraction"],
                )
                for s in data["sources"]
            ]
        ),
        requested_tokens=duration_tokens,
        global_batch_size=batch_tokens,
        seed=c["seed"],
        quiet=True,
    )
    return NumpyFSLDatasetConfig(source_mixture_config=mixture, **common)


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
    eval_paths = c["data"].get("eval") or {}
    if not eval_paths or any(r["remote"] for r in report["eval"]):
        return None
    tok, seq = c["tokenizer"], c["train"]["sequence_length"]
    dtype = token_dtype(tok["vocab_size"])
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
