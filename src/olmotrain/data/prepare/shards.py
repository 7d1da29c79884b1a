"""Shards: units (documents, or pieces of eval documents) appended to ``<split>-NNNNN.npy`` files.

A shard is published (fsynced and renamed into place) when the next unit does not fit, and its
record (what it covers, its counts, the sha256 of its bytes) goes to the state directory, so an
interrupted run resumes after its last published shard (:class:`Verifier` checks, while the
inputs are re-read, that the resumed shards hold the documents they say they do).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from olmotrain.data.prepare.manifest import SPLITS, Split
from olmotrain.errors import UserError
from olmotrain.paths import AtomicFile, write_atomically


def point(pos: int, piece: int) -> list[int]:
    return [int(pos), int(piece)]


class ShardWriter:
    """Appends units (documents or eval pieces, EOS included) to ``<split>-NNNNN.npy`` shards.

    A shard is published (fsynced and renamed into place) when the next unit does not fit; a
    unit longer than a shard gets one of its own. Each published shard's record (what it covers,
    its counts, the sha256 of its bytes) goes to the state directory for resuming.
    """

    def __init__(
        self,
        directory: Path,
        split: Split,
        dtype: np.dtype,
        shard_tokens: int,
        before_publish: Callable[[], None],
        record_dir: Path,
        records: list[dict[str, Any]],
    ) -> None:
        self.directory = directory
        self.split = split
        self.dtype = dtype
        self.shard_tokens = shard_tokens
        self.before_publish = before_publish
        self.record_dir = record_dir
        self.records = list(records)  # reused ones first
        self._file: AtomicFile | None = None
        self._shard: dict[str, Any] = {}

    @property
    def files(self) -> list[str]:
        return [r["file"] for r in self.records]

    def add(
        self,
        tokens: np.ndarray,
        ends: np.ndarray,
        positions: np.ndarray,
        pieces: np.ndarray,
        last: np.ndarray,
        digests: np.ndarray,
        input_index: int,
    ) -> None:
        """Append units: ``tokens[ends[i-1]:ends[i]]`` is unit i (EOS last)."""
        n = len(ends)
        i = 0
        while i < n:
            base = int(ends[i - 1]) if i else 0
            if self._file is not None:
                room = self.shard_tokens - self._shard["tokens"]
                j = int(np.searchsorted(ends, base + room, side="right"))
                if j <= i:
                    self._publish(point(positions[i], pieces[i]))
                    continue
            else:
                j = max(int(np.searchsorted(ends, base + self.shard_tokens, side="right")), i + 1)
                self._open(point(positions[i], pieces[i]))
            stop = int(ends[j - 1])
            chunk = tokens[base:stop]
            data = chunk.tobytes()
            assert self._file is not None
            self._file.file.write(data)
            shard = self._shard
            shard["sha256"].update(data)
            shard["tokens"] += stop - base
            shard["units"] += j - i
            finished = last[i:j]
            n_docs = int(finished.sum())
            shard["documents"] += n_docs
            shard["digest"].update(digests[i:j][finished].astype(">u8").tobytes())
            shard["max_token_id"] = max(shard["max_token_id"], int(chunk.max()))
            counts = shard["inputs"].setdefault(str(input_index), [0, 0])
            counts[0] += n_docs
            counts[1] += stop - base
            i = j

    def close(self, end: list[int]) -> None:
        """Publish the last shard; ``end`` is the position after the source's last document."""
        if self._file is not None:
            self._publish(end)

    def abort(self) -> None:
        """Drop the unfinished shard (published ones stay, with their records)."""
        if self._file is not None:
            self._file.discard()
            self._file = None

    def _name(self, index: int) -> str:
        return f"{self.split}-{index:05d}.npy"

    def _open(self, start: list[int]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = self._name(len(self.records))
        self._file = AtomicFile(self.directory / name)
        self._shard = {
            "start": start,
            "tokens": 0,
            "units": 0,
            "documents": 0,
            "max_token_id": -1,
            "inputs": {},
            "sha256": hashlib.sha256(),
            "digest": hashlib.blake2b(digest_size=16),
        }

    def _publish(self, next_point: list[int]) -> None:
        assert self._file is not None
        name = self._name(len(self.records))
        self.before_publish()
        self._file.commit()
        self._file = None
        shard = self._shard
        record = {
            "file": f"{self.directory.name}/{name}",
            "start": shard["start"],
            "next": next_point,
            "tokens": shard["tokens"],
            "pieces": shard["units"],
            "documents": shard["documents"],
            "max_token_id": shard["max_token_id"],
            "inputs": shard["inputs"],
            "digest": shard["digest"].hexdigest(),
            "sha256": shard["sha256"].hexdigest(),
        }
        self.records.append(record)
        self.record_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(
            self.record_dir / f"{self.split}-{len(self.records) - 1:05d}.json",
            json.dumps(record, indent=2) + "\n",
        )


class Verifier:
    """Checks, while re-reading, that resumed shards cover the documents they say they do."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records
        self.ends = [r["next"][0] for r in records]
        self.hashers = [hashlib.blake2b(digest_size=16) for _ in records]
        self.index = 0

    def add(self, position: int, digest: bytes) -> None:
        while self.ends[self.index] <= position:
            self.index += 1
        self.hashers[self.index].update(digest)

    def check(self, source: str, split: str) -> None:
        for record, hasher in zip(self.records, self.hashers, strict=True):
            if hasher.hexdigest() != record["digest"]:
                raise UserError(
                    f"source {source!r} does not hold the documents that the interrupted run's "
                    f"shard {record['file']} was made from; rebuild from scratch (--overwrite)"
                )


def remove_stale_shards(directory: Path, keep: set[str]) -> None:
    """Delete shards an earlier run left that the new manifest does not list."""
    if not directory.is_dir():
        return
    for split in SPLITS:
        for path in directory.glob(f"{split}-*.npy"):
            if f"{directory.name}/{path.name}" not in keep:
                path.unlink()
