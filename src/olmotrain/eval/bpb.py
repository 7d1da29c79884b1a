"""Bits per byte of the held-out data: olmo-core's CE loss, converted with the data's own bytes.

olmo-core's LM evaluator logs a per-token cross-entropy (nats) over the targets it scores: every
token of an instance but the first (see :func:`olmotrain.data.tokens.scored_targets`). The same
loss per byte of text is ``BPB = CE / ln 2 x tokens / bytes``, where ``bytes`` is the UTF-8 length
of exactly those targets. Each token id's byte length comes from the tokenizer (byte-level BPE:
the bytes its symbols stand for; special tokens such as EOS: none), counted once per held-out
file and cached next to the token-file checks.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from functools import cache
from pathlib import Path

import numpy as np

from olmotrain.data.tokens import expand, scored_targets, token_dtype
from olmotrain.paths import write_atomically


@cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the printable symbol each of the 256 bytes is written as."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    symbols, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            symbols.append(256 + extra)
            extra += 1
    return {chr(s): b for b, s in zip(printable, symbols, strict=True)}


def token_byte_lengths(tokenizer_json: str, vocab_size: int) -> np.ndarray:
    """UTF-8 bytes each id stands for (0 for special tokens and ids past the tokenizer's).

    Byte-level BPE (the embedded BPE, OLMo's gpt-neox): every symbol of a token is one byte.
    Other tokenizers: the length of the decoded token (approximate where a token ends mid
    character).
    """
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_json)
    spec = json.loads(Path(tokenizer_json).read_text())
    special = {t["id"] for t in spec.get("added_tokens", []) if t.get("special")}
    byte_level = (spec.get("decoder") or {}).get("type") == "ByteLevel"
    decoder = _byte_decoder()
    lengths = np.zeros(vocab_size, dtype=np.int64)
    for i in range(min(vocab_size, tok.get_vocab_size(with_added_tokens=True))):
        if i in special:
            continue
        token = tok.id_to_token(i)
        if token is None:
            continue
        if byte_level and all(ch in decoder for ch in token):
            lengths[i] = len(token)
        else:
            lengths[i] = len(tok.decode([i], skip_special_tokens=False).encode("utf-8"))
    return lengths


def heldout_bytes(
    path: str,
    sequence_length: int,
    eos_token_id: int,
    vocab_size: int,
    byte_lengths: np.ndarray,
    cache_dir: Path,
) -> tuple[int, int]:
    """``(scored targets, their UTF-8 bytes)`` of one held-out file; cached by file and tokenizer."""
    stat = os.stat(path)
    # "v2": tokens after a file's last EOS stopped counting (olmo-core scores none of them)
    key = hashlib.sha256(
        f"v2|{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}|{sequence_length}|"
        f"{eos_token_id}|{hashlib.sha256(byte_lengths.tobytes()).hexdigest()}".encode()
    ).hexdigest()
    cached = cache_dir / f"{key}.json"
    if cached.exists():
        entry = json.loads(cached.read_text())
        return int(entry["tokens"]), int(entry["bytes"])
    targets = scored_targets(path, sequence_length, eos_token_id, token_dtype(vocab_size))
    counts = (len(targets), int(byte_lengths[targets].sum()))
    cache_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(
        cached, json.dumps({"path": os.path.abspath(path), "tokens": counts[0], "bytes": counts[1]})
    )
    return counts


def bytes_per_token(
    eval_sets: dict[str, list[str]],
    tokenizer_json: str,
    sequence_length: int,
    eos_token_id: int,
    vocab_size: int,
    cache_dir: Path,
) -> dict[str, float]:
    """Per held-out source: UTF-8 bytes per scored target token (what turns CE into BPB)."""
    lengths = token_byte_lengths(tokenizer_json, vocab_size)
    ratios = {}
    for source, patterns in eval_sets.items():
        tokens = nbytes = 0
        for path in expand(patterns):
            t, b = heldout_bytes(
                path, sequence_length, eos_token_id, vocab_size, lengths, cache_dir
            )
            tokens, nbytes = tokens + t, nbytes + b
        if tokens and nbytes:
            ratios[source] = nbytes / tokens
    return ratios


def bits_per_byte(ce_loss_nats: float, bytes_per_scored_token: float) -> float:
    """``CE / ln 2 x tokens / bytes``: the per-token loss as bits per byte of text."""
    return ce_loss_nats / math.log(2) / bytes_per_scored_token
