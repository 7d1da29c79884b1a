"""The token-file format olmo-core reads, and the checks a run makes of its files.

Token files are raw, headerless memmaps (documents concatenated, EOS after each), of the
smallest unsigned dtype that holds every id of the vocabulary. Local files are checked before
a run starts: they exist, are whole tokens, and hold no id outside the vocabulary (read once,
then cached by path until its size, mtime, ctime or inode change); files prepared by olmotrain name their tokenizer in a
``manifest.json`` next to them, which must be the run's.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import time
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
    """Globs expanded (sorted, de-duplicated): local ones on disk, remote ones by listing
    the store (:mod:`olmotrain.data.remote.store`); a plain remote path is kept as it is."""
    from olmotrain.data.remote.store import checked, has_wildcard
    from olmotrain.data.remote.store import glob as remote_glob

    out: dict[str, None] = {}
    for p in patterns:
        if is_remote(p):
            found = [f.url for f in remote_glob(p)] if has_wildcard(p) and checked(p) else [p]
        else:
            found = sorted(glob.glob(p))
        out.update(dict.fromkeys(found))
    return list(out)


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


def _identity(stat: os.stat_result) -> list[int]:
    """What changes whenever a file's content can have: a rewrite in place changes its ctime
    even when its size and mtime are put back, a replacement its inode."""
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev]


def scan_token_file(path: str, dtype: np.dtype, cache_dir: Path) -> dict[str, Any]:
    """``{"max_token_id", "sha256", ...}`` of a local token file: read once, then cached by
    path until the file changes (size, mtime, ctime or inode); a changed file is read again and
    said so, with what changed."""
    stat = os.stat(path)
    key = hashlib.sha256(f"{os.path.abspath(path)}|{dtype}".encode()).hexdigest()
    cached_path = cache_dir / f"{key}.json"
    cached = None
    if cached_path.exists():
        with contextlib.suppress(OSError, ValueError):
            cached = json.loads(cached_path.read_text())
    if cached is not None and cached.get("identity") == _identity(stat):
        return cached
    tokens = np.memmap(path, dtype=dtype, mode="r") if stat.st_size else np.zeros(0, dtype)
    digest, top = hashlib.sha256(), -1
    for i in range(0, len(tokens), 2**24):
        chunk = tokens[i : i + 2**24]
        top = max(top, int(chunk.max()))
        digest.update(chunk.tobytes())
    record = {
        "path": os.path.abspath(path),
        "identity": _identity(stat),
        "max_token_id": top,
        "sha256": digest.hexdigest(),
        "checked": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    cache_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(cached_path, json.dumps(record))
    if cached is not None and "sha256" in cached:
        what = "its content" if cached["sha256"] != record["sha256"] else "its timestamps only"
        record = {
            **record,
            "changed": f"changed since it was checked at {cached.get('checked')} ({what})",
        }
    return record


def check_token_files(
    tok: TokenizerSchema, pattern_sets: list[tuple[str, list[str]]], cache_dir: Path
) -> tuple[dict[str, str], list[str]]:
    """Every local file of ``(source, patterns)``: the run's tokenizer (when its manifest says)
    and ids inside the vocabulary. Returns ``{path: sha256}`` of the local files, and notes on
    the files that changed since their last check (checked again)."""
    hashes: dict[str, str] = {}
    notes: list[str] = []
    vocab, dtype = tok.vocab_size, token_dtype(tok.vocab_size)
    seen_manifests: set[str] = set()
    run_sha = None
    if tok.path and os.path.exists(tok.path):
        run_sha = hashlib.sha256(Path(tok.path).read_bytes()).hexdigest()
    for name, patterns in pattern_sets:
        for path in expand([p for p in patterns if not is_remote(p)]):  # no listing of stores
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
            scanned = scan_token_file(path, dtype, cache_dir)
            hashes[scanned["path"]] = scanned["sha256"]
            if "changed" in scanned:
                notes.append(f"token file {path} {scanned['changed']}; checked again")
            top = scanned["max_token_id"]
            if top >= vocab:
                raise UserError(
                    f"data source {name}: {path} holds token id {top}, outside tokenizer {tok.name}'s vocab of "
                    f"{vocab}; it was tokenized with another tokenizer (pick the matching tokenizer=) or is corrupt"
                )
    return hashes, notes


def scored_targets(
    path: str, sequence_length: int, eos_token_id: int, dtype: np.dtype
) -> np.ndarray:
    """The token ids olmo-core's LM evaluator scores in one held-out file.

    It makes one instance per EOS-terminated document, truncated to ``sequence_length``, and
    scores every token of an instance but the first; tokens after the last EOS are no document
    (olmo-core's ``iter_document_indices`` yields none for them).
    """
    ids = np.fromfile(path, dtype=dtype)
    ends = np.flatnonzero(ids == eos_token_id)
    ids = ids[: ends[-1] + 1] if ends.size else ids[:0]
    starts = np.concatenate([[0], ends[:-1] + 1])
    doc_start = np.repeat(starts, np.diff(np.concatenate([starts, [ids.size]])))
    pos = np.arange(ids.size) - doc_start
    return ids[(pos >= 1) & (pos < sequence_length)]
