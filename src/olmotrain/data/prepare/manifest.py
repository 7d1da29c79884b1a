"""The prepared-dataset format: layout, manifest, the train/eval split rule.

olmo-core reads raw, headerless numpy memmaps (not ``np.save`` files): documents concatenated,
the EOS id after every document, ``uint16`` while every id fits (vocab <= 65,536) else ``uint32``,
file suffix ``.npy``. A prepared dataset directory looks like::

    OUT/manifest.json                    written last: its presence marks a complete dataset
    OUT/tokenizer.json                   the tokenizer the ids come from
    OUT/<source>/train-00000.npy ...     shards of at most ``shard_tokens`` tokens
    OUT/<source>/eval-00000.npy ...

and, only while a run is unfinished, ``OUT/.prepare/`` (what an interrupted run finished, for
resuming) and ``OUT/.prepare.lock``.

``manifest.json`` keys: ``format``, ``format_version``; ``tokenizer`` {``name``, ``path``
(relative to the manifest), ``sha256`` (of that file), ``vocab_size``, ``tokenizer_vocab_size``,
``eos_token_id``, ``pad_token_id``, ``dtype``}; ``eval_fraction`` (a number, or per source),
``split_rule``, ``shard_tokens``, ``eval_piece_tokens``; ``sources`` {name: {``eval_fraction``,
``train`` and ``eval`` {``files`` (relative paths), ``documents``, ``pieces``, ``tokens`` (EOS
included), ``max_token_id`` (-1 when empty)}, ``documents``, ``tokens``, ``text_bytes``,
``text_sha256``}}; ``totals`` {``train``, ``eval``: {``documents``, ``tokens``}, ``documents``,
``tokens``}; ``train_unigram_entropy_nats`` / ``eval_unigram_entropy_nats`` (entropy of the
split's token histogram, all sources pooled, EOS counted; null when empty), and optionally
``build``. Datasets made from input files (the CLI, :func:`prepare_files`) also have, per source,
``inputs`` (one entry per file, in reading order: ``path``, ``bytes``, ``sha256``, ``documents``,
``tokens``, ``empty_documents``, ``skipped_lines``, ``skipped_examples``) and ``skipped_lines``;
``totals.skipped_lines``; and ``input_settings`` {``text_field``, ``skip_bad_lines``,
``settings_sha256`` (of everything that decides the output: inputs' hashes, tokenizer, options)}.

Documents go to train or eval by a hash of their text alone (:func:`split_of`), so a document
lands in the same split whatever the input order, machine or tokenizer. Every file is written
under a temporary name in its final directory and renamed into place
(:func:`olmotrain.paths.write_atomically`), so a crash never leaves a file that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from olmotrain.errors import UserError

FORMAT_VERSION = 1
"""Version of the manifest layout; bump it when a reader would misread an older dataset."""
STATE_VERSION = 1
"""Version of the resume records under ``OUT/.prepare``; a different one is not reused."""
MANIFEST_NAME = "manifest.json"
STATE_DIR = ".prepare"
LOCK_NAME = ".prepare.lock"
Split = Literal["train", "eval"]
SPLITS: tuple[Split, ...] = ("train", "eval")
DEFAULT_SHARD_TOKENS = 2**26
DEFAULT_EVAL_FRACTION = 0.01
DEFAULT_EVAL_PIECE_TOKENS = 512
"""Eval documents are cut to this many tokens (EOS included), so the LM evaluator sees them all."""


def eval_score(text: str | bytes) -> float:
    """A stable number in [0, 1) for a document: blake2b-64 of its UTF-8 bytes, scaled.

    Depends on the text alone (not on order, process, machine or Python's hash seed).
    """
    data = text.encode("utf-8") if isinstance(text, str) else text
    digest = hashlib.blake2b(data, digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def split_of(text: str | bytes, eval_fraction: float) -> Split:
    """``"eval"`` for about ``eval_fraction`` of documents, chosen by :func:`eval_score`."""
    return "eval" if eval_score(text) < eval_fraction else "train"


def unigram_entropy(counts: np.ndarray) -> float | None:
    """Empirical unigram entropy (nats) of a token histogram; ``None`` for no tokens."""
    total = int(counts.sum())
    if total == 0:
        return None
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum())


def load_manifest(dataset_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the manifest of a complete dataset; :class:`UserError` if missing or unreadable."""
    path = Path(dataset_dir) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(
            f"{str(path)!r} does not exist: the dataset is missing or was not finished; "
            "prepare it again"
        ) from None
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {str(path)!r}: {e}") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"{str(path)!r} has format version {manifest.get('format_version')!r}, "
            f"this code reads {FORMAT_VERSION}; prepare the dataset again"
        )
    return manifest


def format_summary(manifest: Mapping[str, Any], dataset_dir: Path) -> str:
    """A few human-readable lines about a prepared dataset."""
    tok = manifest["tokenizer"]
    lines = [
        f"{dataset_dir / MANIFEST_NAME}: tokenizer {tok['name']} (vocab {tok['vocab_size']}, {tok['dtype']})"
    ]
    for source, entry in manifest["sources"].items():
        parts = [
            f"{s} {entry[s]['documents']:,} docs / {entry[s]['tokens']:,} tokens" for s in SPLITS
        ]
        lines.append(f"  {source}: " + ", ".join(parts))
    for split in SPLITS:
        h = manifest[f"{split}_unigram_entropy_nats"]
        lines.append(f"  {split} unigram entropy: " + ("n/a" if h is None else f"{h:.4f} nats"))
    return "\n".join(lines)


def format_data_config(manifest: Mapping[str, Any], dataset_dir: Path | str) -> str:
    """A ``conf/data`` YAML for a prepared dataset: its sources' train shards under ``paths:``
    and their held-out shards under ``eval:``. Paths are absolute, so it works from any
    directory; no ``name:``, so the mix is named after the file it is saved as; a source without
    train shards is left out (a glob matching no file would stop the run). A dataset in a
    bucket (``s3://...``) gets its URLs and a ``cache:`` line to uncomment."""
    remote = "://" in str(dataset_dir)
    root = str(dataset_dir).rstrip("/") if remote else str(Path(dataset_dir).resolve())
    lines = (
        ["# cache: ${data_root}/cache  # local copies of the files: train at disk speed"]
        if remote
        else []
    )
    lines.append("sources:")
    held_out = []
    for source, entry in manifest["sources"].items():
        if not entry["train"]["files"]:
            continue
        train = json.dumps(f"{root}/{source}/train-*.npy")
        lines += [f"  - name: {_plain(source)}", f"    paths: [{train}]"]
        if entry["eval"]["files"]:
            held_out.append(f"  {_plain(source)}: [{json.dumps(f'{root}/{source}/eval-*.npy')}]")
    if held_out:
        lines += ["eval:", *held_out]
    return "\n".join(lines)


def _plain(name: str) -> str:
    """A source name as YAML: bare when it reads back as the same string, else quoted."""
    return (
        name
        if re.fullmatch(r"[A-Za-z_][\w.-]*", name) and name not in _YAML_WORDS
        else json.dumps(name)
    )


_YAML_WORDS = {"null", "true", "false", "yes", "no", "on", "off", "y", "n", "Null", "True", "False"}
