"""The token-file format olmo-core reads, and the checks a run makes of its files.

Token files are raw, headerless memmaps (documents concatenated, EOS after each), of the
smallest unsigned dtype that holds every id of the vocabulary. Local files are checked before
a run starts: they exist, are whole tokens, and hold no id outside the vocabulary (read once,
then cached by path, size and mtime); files prepared by olmotrain name their tokenizer in a
``manifest.json`` next to them, which must be the run's.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from olmotrain.config.schema import TokenizerSchema
from olmotrain.errors import UserError
from olmotrain.paths import write_atomically

REMOTE_PREFIXES = ("s3://", "gs://", "http://", "https://", "r2://", "weka://")


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
    write_atomically(cached, json.dumps({"path": os.path.abspath(path), "max_token_id": top}))
    return top


def check_token_files(
    tok: TokenizerSchema, pattern_sets: list[tuple[str, list[str]]], cache_dir: Path
) -> None:
    """Every local file of ``(source, patterns)``: the run's tokenizer (when its manifest says)
    and ids inside the vocabulary."""
    vocab, dtype = tok.vocab_size, token_dtype(tok.vocab_size)
    seen_manifests: set[str] = set()
    run_sha = None
    if tok.path and os.path.exists(tok.path):
        run_sha = hashlib.sha256(Path(tok.path).read_bytes()).hexdigest()
    for name, patterns in pattern_sets:
        for path in expand(patterns):
            if is_remote(path):
                continue
            manifest = _token_file_manifest(path)
            key = json.dumps(manifest["tokenizer"], sort_keys=True) if manifest else None
            if key is not None and key not in seen_manifests:
                seen_manifests.add(key)
                data_tok = manifest["tokenizer"]  # type: ignore[index]
                if (data_tok["vocab_size"], data_tok["eos_token_id"]) != (
                    vocab,
                    tok.eos_token_id,
                ) or (data_tok.get("sha256") and run_sha and data_tok["sha256"] != run_sha):
                    raise UserError(
                        f"data source {name} was tokenized with {data_tok['name']} (vocab {data_tok['vocab_size']}, "
                        f"eos {data_tok['eos_token_id']}) but the run uses tokenizer={tok.name} (vocab {vocab}, "
                        f"eos {tok.eos_token_id}); pick the matching tokenizer= or re-tokenize the data"
                    )
            top = max_token_id(path, dtype, cache_dir)
            if top >= vocab:
                raise UserError(
                    f"data source {name}: {path} holds token id {top}, outside tokenizer {tok.name}'s vocab of "
                    f"{vocab}; it was tokenized with another tokenizer (pick the matching tokenizer=) or is corrupt"
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
