"""The output directory of a prepare run: one writer at a time, never two tokenizers' data mixed,
and what an interrupted run left there to resume from.

Resuming: documents are numbered by their position in their source (inputs in order, lines in
order). Each published shard gets a record under ``OUT/.prepare/`` saying which positions it
covers (up to the first unit of the next shard), a digest of those documents, its counts and the
sha256 of its bytes. A re-run with the same settings (same tokenizer file, options, and inputs
with the same sha256) re-reads the inputs but tokenizes only what no verified shard covers; since
shard boundaries depend only on the token stream, the result is byte-identical to an
uninterrupted run. A finished dataset with the same settings is left as it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from olmotrain.data.prepare.manifest import (
    LOCK_NAME,
    MANIFEST_NAME,
    SPLITS,
    STATE_DIR,
    load_manifest,
)
from olmotrain.data.prepare.readers import SOURCE_NAME
from olmotrain.data.tokenizer import TOKENIZER_NAME
from olmotrain.errors import UserError
from olmotrain.paths import write_atomically


@dataclass
class OutputDir:
    """A dataset directory being written with one tokenizer (``tokenizer_bytes``)."""

    path: Path
    tokenizer_name: str
    tokenizer_bytes: bytes
    dtype: np.dtype

    def __post_init__(self) -> None:
        self.tokenizer_sha = hashlib.sha256(self.tokenizer_bytes).hexdigest()
        self.state_dir = self.path / STATE_DIR
        self.manifest_path = self.path / MANIFEST_NAME
        self._invalidated = False

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the directory for this run; another run writing it is a clear error."""
        import fcntl

        path = self.path / LOCK_NAME
        with open(path, "a+b") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(
                    f"another prepare run is writing {str(self.path)!r}; wait for it to finish"
                ) from None
            except OSError:
                pass  # a filesystem without locks: go on unguarded
            try:
                yield
            finally:
                with contextlib.suppress(OSError):
                    path.unlink()

    def refuse_other_tokenizers(self) -> None:
        """Refuse to mix: the directory must be empty or hold this tokenizer's data."""
        found: list[tuple[str, str | None, str | None]] = []
        with contextlib.suppress(OSError, ValueError):
            manifest = json.loads(self.manifest_path.read_text(encoding="utf-8"))
            tok = manifest.get("tokenizer", {})
            found.append(("a dataset", tok.get("name"), tok.get("sha256")))
        with contextlib.suppress(OSError, ValueError):
            state = json.loads((self.state_dir / "state.json").read_text(encoding="utf-8"))
            tok = state.get("settings", {}).get("tokenizer", {})
            found.append(("an unfinished dataset", tok.get("name"), tok.get("sha256")))
        tokenizer_file = self.path / TOKENIZER_NAME
        if tokenizer_file.is_file():
            sha = hashlib.sha256(tokenizer_file.read_bytes()).hexdigest()
            found.append(("token files", None, sha))
        for what, name, sha in found:
            if sha != self.tokenizer_sha:
                label = f"tokenizer {name!r}" if name else "another tokenizer"
                raise UserError(
                    f"{str(self.path)!r} holds {what} made with {label} (sha256 "
                    f"{str(sha)[:12]}), not {self.tokenizer_name!r} ({self.tokenizer_sha[:12]}); "
                    "choose another --output, or pass --overwrite to replace it"
                )
        if not found and any(self.path.glob("*/*-[0-9][0-9][0-9][0-9][0-9].npy")):
            raise UserError(
                f"{str(self.path)!r} holds token files that no manifest describes (tokenizer "
                "unknown); choose another --output, or pass --overwrite to replace them"
            )

    def old_sources(self) -> set[str]:
        """Sources the dataset or unfinished run in the directory had (to clean up)."""
        names: set[str] = set()
        with contextlib.suppress(OSError, ValueError, AttributeError):
            names |= set(json.loads(self.manifest_path.read_text(encoding="utf-8"))["sources"])
        with contextlib.suppress(OSError, ValueError, AttributeError, KeyError):
            state = json.loads((self.state_dir / "state.json").read_text(encoding="utf-8"))
            names |= {s["name"] for s in state["settings"]["sources"]}
        return {n for n in names if isinstance(n, str) and SOURCE_NAME.fullmatch(n)}

    def remove_temp_files(self) -> None:
        """Temporary files a killed run left (nothing else writes here: we hold the lock)."""
        patterns = [
            f".{MANIFEST_NAME}.*.tmp",
            f".{TOKENIZER_NAME}.*.tmp",
            "*/.train-*.npy.*.tmp",
            "*/.eval-*.npy.*.tmp",
            f"{STATE_DIR}/.*.tmp",
            f"{STATE_DIR}/*/.*.tmp",
        ]
        for pattern in patterns:
            for path in self.path.glob(pattern):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def invalidate(self) -> None:
        """Drop the old manifest: it would describe a mix of old and new files."""
        if not self._invalidated:
            self.manifest_path.unlink(missing_ok=True)
            self._invalidated = True

    def before_publish(self, settings: dict[str, Any], keep_state: bool) -> None:
        """Before the first shard is published: no old manifest, and this run's settings on disk
        (so resume records are never read against another run's shards)."""
        if self._invalidated:
            return
        self.invalidate()
        state_file = self.state_dir / "state.json"
        current = None
        with contextlib.suppress(OSError, ValueError):
            current = json.loads(state_file.read_text(encoding="utf-8"))
        if not keep_state or current is None or current.get("settings") != settings:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self.state_dir.mkdir(parents=True, exist_ok=True)
            write_atomically(state_file, json.dumps({"settings": settings}, indent=2) + "\n")
        self.write_tokenizer()  # the directory names the tokenizer of what it holds

    def write_tokenizer(self) -> None:
        destination = self.path / TOKENIZER_NAME
        if not (destination.exists() and destination.read_bytes() == self.tokenizer_bytes):
            write_atomically(destination, self.tokenizer_bytes)

    def finished_dataset(self, settings_sha: str) -> dict[str, Any] | None:
        """The manifest, if the directory is a complete dataset made with these very settings."""
        try:
            manifest = load_manifest(self.path)
        except UserError:
            return None
        if manifest.get("input_settings", {}).get("settings_sha256") != settings_sha:
            return None
        tokenizer_file = self.path / TOKENIZER_NAME
        if not tokenizer_file.is_file() or tokenizer_file.read_bytes() != self.tokenizer_bytes:
            return None
        for entry in manifest["sources"].values():
            for split in SPLITS:
                files = [self.path / f for f in entry[split]["files"]]
                if not all(f.is_file() for f in files):
                    return None
                if (
                    sum(f.stat().st_size for f in files)
                    != entry[split]["tokens"] * self.dtype.itemsize
                ):
                    return None
        return manifest

    def resumable(
        self, settings: dict[str, Any], sources: list[str], counts: dict[str, np.ndarray]
    ) -> dict[str, dict[str, list[dict]]] | None:
        """The verified records of an interrupted run with the same settings, per source and
        split (a prefix of each: the first missing or mismatching shard ends it). The tokens of
        the reused shards are added to ``counts`` (per split)."""
        try:
            state = json.loads((self.state_dir / "state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if state.get("settings") != settings:
            return None
        reused: dict[str, dict[str, list[dict]]] = {}
        for source in sources:
            reused[source] = {}
            for split in SPLITS:
                records: list[dict[str, Any]] = []
                while True:
                    path = self.state_dir / source / f"{split}-{len(records):05d}.json"
                    try:
                        record = json.loads(path.read_text(encoding="utf-8"))
                    except (OSError, ValueError):
                        break
                    tokens = self._verified_tokens(record)
                    if tokens is None:
                        break
                    counts[split] += np.bincount(tokens, minlength=len(counts[split]))
                    records.append(record)
                # Records after a gap describe shards that will be rewritten.
                for stale in (self.state_dir / source).glob(f"{split}-*.json"):
                    if int(stale.stem.rsplit("-", 1)[1]) >= len(records):
                        stale.unlink()
                reused[source][split] = records
        return reused

    def _verified_tokens(self, record: dict[str, Any]) -> np.ndarray | None:
        path = self.path / record["file"]
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if len(data) != record["tokens"] * self.dtype.itemsize:
            return None
        if hashlib.sha256(data).hexdigest() != record["sha256"]:
            return None
        return np.frombuffer(data, dtype=self.dtype)
