"""Tokenizing: documents in batches -> token arrays per split, here or on worker processes.

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
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from olmotrain.data.prepare.manifest import SPLITS
from olmotrain.data.prepare.progress import Progress
from olmotrain.data.tokenizer import TokenizerSpec, load_tokenizer
from olmotrain.errors import UserError

# A batch handed to one tokenizer call (one worker task): big enough that the per-task costs
# (pickling, a process hop) vanish, small enough to balance two workers on a 100 MB input and
# keep each task's Encoding objects ~100 MB (8M characters took 500 MB).
BATCH_DOCS = 1024
BATCH_CHARS = 2_000_000


@dataclass
class Task:
    """A batch of documents from one input, to tokenize; positions and digests stay here."""

    input_index: int
    texts: list[str] = field(default_factory=list)
    is_eval: list[bool] = field(default_factory=list)
    skip_pieces: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    digests: list[int] = field(default_factory=list)
    chars: int = 0


@dataclass(frozen=True)
class EncodeConfig:
    vocab: int
    eos: int
    dtype: str
    piece_tokens: int | None
    tokenizer_name: str


def encode(
    tok: Tokenizer,
    cfg: EncodeConfig,
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


def _worker_init(spec: TokenizerSpec, cfg: EncodeConfig, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process handles Ctrl-C
    _die_with_parent(parent)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per worker process
    _WORKER["tok"] = load_tokenizer(spec)
    _WORKER["cfg"] = cfg


def _worker_encode(
    texts: list[str], is_eval: np.ndarray, skip_pieces: np.ndarray, source: str
) -> dict[str, tuple[np.ndarray, ...]]:
    return encode(_WORKER["tok"], _WORKER["cfg"], texts, is_eval, skip_pieces, source)


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


class Tokenizing:
    """Tokenizes tasks in order: here, or on worker processes started once a second task exists."""

    def __init__(
        self, spec: TokenizerSpec, cfg: EncodeConfig, workers: int, progress: Progress
    ) -> None:
        self.spec = spec
        self.cfg = cfg
        self.workers = workers
        self.progress = progress
        self._local: Tokenizer | None = None
        self._pool: ProcessPoolExecutor | None = None

    def results(
        self, tasks: Iterator[Task], source: str
    ) -> Iterator[tuple[Task, dict[str, tuple[np.ndarray, ...]]]]:
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
        pending: deque[tuple[Task, Future[dict[str, tuple[np.ndarray, ...]]]]] = deque()
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
    def _args(task: Task) -> tuple[list[str], np.ndarray, np.ndarray]:
        return task.texts, np.array(task.is_eval, bool), np.array(task.skip_pieces, np.int64)

    def _encode_here(self, task: Task, source: str) -> dict[str, tuple[np.ndarray, ...]]:
        if self._local is None:
            self._local = load_tokenizer(self.spec)
        return encode(self._local, self.cfg, *self._args(task), source)

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
