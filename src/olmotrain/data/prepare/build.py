"""The build: sources of documents -> tokenized, split, sharded token files and, last, a manifest.

:func:`prepare` takes documents in memory (the embedded dataset), :func:`prepare_files` input
files (the CLI). Both read each source once, in order; tokenization happens in batches
(:mod:`.tokenize`), shards are written as the tokens come (:mod:`.shards`), and the output
directory (:mod:`.output`) is held, checked against other tokenizers' data, and resumed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from olmotrain.data.prepare.manifest import (
    DEFAULT_EVAL_FRACTION,
    DEFAULT_EVAL_PIECE_TOKENS,
    DEFAULT_SHARD_TOKENS,
    FORMAT_VERSION,
    SPLITS,
    STATE_VERSION,
    unigram_entropy,
)
from olmotrain.data.prepare.output import OutputDir
from olmotrain.data.prepare.progress import Progress
from olmotrain.data.prepare.readers import BadLines, Input, iter_sources
from olmotrain.data.prepare.shards import ShardWriter, Verifier, point, remove_stale_shards
from olmotrain.data.prepare.tokenize import (
    BATCH_CHARS,
    BATCH_DOCS,
    EncodeConfig,
    Task,
    Tokenizing,
)
from olmotrain.data.tokenizer import (
    TOKENIZER_NAME,
    TokenizerSpec,
    load_tokenizer,
    resolve_tokenizer,
)
from olmotrain.data.tokens import token_dtype
from olmotrain.errors import UserError
from olmotrain.machine import usable_cpus
from olmotrain.paths import check_writable, write_atomically


@dataclass
class Options:
    """How a dataset is prepared, beyond its sources and tokenizer (see :func:`prepare`)."""

    eval_fraction: float | Mapping[str, float] = DEFAULT_EVAL_FRACTION
    shard_tokens: int = DEFAULT_SHARD_TOKENS
    vocab_size: int | None = None
    extra: Mapping[str, Any] | None = None
    eval_piece_tokens: int | None = DEFAULT_EVAL_PIECE_TOKENS
    workers: int | None = None
    resume: bool = False
    overwrite: bool = False
    progress: Progress | None = None


def prepare(
    sources: Mapping[str, Iterable[str]] | Iterable[tuple[str, Iterable[str]]],
    tokenizer: str | os.PathLike[str] | TokenizerSpec,
    output_dir: str | os.PathLike[str],
    **options: Any,
) -> dict[str, Any]:
    """Tokenize documents into olmo-core token files under ``output_dir``; return the manifest.

    Args:
        sources: source name -> documents (strings), as a mapping or (name, docs) pairs.
            Documents are streamed; empty strings are skipped.
        tokenizer: a known name (``gpt_neox_olmo``), a ``tokenizer.json`` path, or a
            :class:`TokenizerSpec`. It is copied to ``output_dir/tokenizer.json``.
        options: the fields of :class:`Options`:

            - ``eval_fraction``: share of documents (by :func:`split_of`) that go to the eval
              split; a mapping gives each source its own (a small source may need a larger share).
            - ``shard_tokens``: most tokens in one shard. Documents are never cut, so a single
              document longer than this gets a shard of its own.
            - ``vocab_size``: the size ids must fit in (default: the tokenizer's), e.g. a model's
              embedding size. It also sets the dtype.
            - ``extra``: JSON-able data stored under ``"build"`` in the manifest.
            - ``eval_piece_tokens``: cut eval documents into pieces of at most this many tokens
              (EOS included). olmo-core's LM evaluator scores one instance per document,
              truncated to the sequence length, so whole long documents would be mostly
              unscored. ``None`` keeps them whole.
            - ``workers``: tokenizer processes (default: one per usable CPU). 1 tokenizes in this
              process (with the tokenizers library's own threads). Small inputs never start
              processes. The output does not depend on it.
            - ``resume``: reuse the shards an interrupted run with the same settings finished
              (checked: records, shard hashes, and a digest of the documents each covers).
              Iterables cannot be fingerprinted beforehand: if they differ from the interrupted
              run's, the run fails at the end of the source and must be redone without resume.
            - ``overwrite``: replace what ``output_dir`` holds even if it was made with another
              tokenizer (otherwise that is an error, so datasets are never mixed).
            - ``progress``: where progress and notes go (default: nothing shown).

    Writes ``<source>/{train,eval}-NNNNN.npy`` and, last, ``manifest.json``; an existing
    manifest is removed before the first new file is published. Raises :class:`UserError`
    for a bad tokenizer, a source without documents, or an id outside the vocabulary.
    """
    plans = [_SourcePlan(name, [Input(docs=docs)]) for name, docs in iter_sources(sources)]
    return _Build(plans, tokenizer, output_dir, Options(**options)).run()


def prepare_files(
    inputs: Mapping[str, Sequence[str | os.PathLike[str]]],
    tokenizer: str | os.PathLike[str] | TokenizerSpec,
    output_dir: str | os.PathLike[str],
    *,
    text_field: str = "text",
    skip_bad_lines: bool = False,
    resume: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """:func:`prepare` for input files: source name -> files (see :func:`expand_inputs`).

    Every input must hold at least one document. With ``skip_bad_lines`` bad lines are
    skipped and counted per input in the manifest instead of failing the run. The files' sha256
    are part of the settings, so ``resume`` (default on) reuses finished shards only for
    unchanged inputs, and a finished dataset with the same settings is returned as it is.
    Other keyword arguments are :class:`Options`' fields.
    """
    plans = []
    for name, paths in iter_sources(inputs.items()):
        plan_inputs = []
        for p in paths:
            path = Path(p)
            if not path.is_file():
                raise UserError(f"input {str(path)!r} does not exist or is not a file")
            bad = BadLines() if skip_bad_lines else None
            plan_inputs.append(Input(path=path, text_field=text_field, bad_lines=bad))
        plans.append(_SourcePlan(name, plan_inputs))
    settings = {"text_field": text_field, "skip_bad_lines": skip_bad_lines}
    return _Build(
        plans, tokenizer, output_dir, Options(resume=resume, **options), input_settings=settings
    ).run()


@dataclass
class _SourcePlan:
    name: str
    inputs: list[Input]
    eval_fraction: float = 0.0

    @property
    def from_files(self) -> bool:
        return all(i.path is not None for i in self.inputs)


class _Build:
    def __init__(
        self,
        plans: list[_SourcePlan],
        tokenizer: str | os.PathLike[str] | TokenizerSpec,
        output_dir: str | os.PathLike[str],
        options: Options,
        input_settings: dict[str, Any] | None = None,
    ) -> None:
        eval_fraction = options.eval_fraction
        fractions = eval_fraction if isinstance(eval_fraction, Mapping) else None
        for fraction in fractions.values() if fractions is not None else [eval_fraction]:
            if not 0.0 <= fraction < 1.0:
                raise UserError(f"eval fraction must be in [0, 1), got {fraction}")
        if options.shard_tokens < 1:
            raise UserError(f"shard size must be at least 1 token, got {options.shard_tokens}")
        pieces = options.eval_piece_tokens
        if pieces is not None and pieces < 2:
            raise UserError(f"eval pieces must hold at least 2 tokens, got {pieces}")
        if not plans:
            raise UserError("no documents to prepare: no sources given")
        for plan in plans:
            if fractions is not None and plan.name not in fractions:
                raise UserError(f"no eval fraction given for source {plan.name!r}")
            plan.eval_fraction = (
                fractions[plan.name] if fractions is not None else eval_fraction  # type: ignore[assignment]
            )
        self.plans = plans
        self.options = options
        self.eval_fraction_setting = dict(fractions) if fractions is not None else eval_fraction
        self.spec = (
            tokenizer if isinstance(tokenizer, TokenizerSpec) else resolve_tokenizer(tokenizer)
        )
        tok = load_tokenizer(self.spec)
        self.tokenizer_vocab = tok.get_vocab_size(with_added_tokens=True)
        self.vocab = self.tokenizer_vocab if options.vocab_size is None else options.vocab_size
        self.dtype = token_dtype(self.vocab)
        for what, token_id in (("EOS", self.spec.eos_token_id), ("pad", self.spec.pad_token_id)):
            if not 0 <= token_id < self.vocab:
                raise UserError(
                    f"{what} id {token_id} is outside the vocabulary of size {self.vocab}"
                )
        self.workers = usable_cpus() if options.workers is None else options.workers
        if self.workers < 1:
            raise UserError(f"workers must be at least 1, got {self.workers}")
        self.progress = (
            options.progress
            if options.progress is not None
            else Progress(enabled=False, quiet=True)
        )
        self.input_settings = input_settings
        self.out = OutputDir(
            Path(output_dir), self.spec.name, self.spec.path.read_bytes(), self.dtype
        )
        self.counts = {split: np.zeros(self.vocab, dtype=np.int64) for split in SPLITS}
        self.settings: dict[str, Any] = {}
        self._keep_state = False

    def run(self) -> dict[str, Any]:
        out = self.out
        check_writable(out.path, "--output")
        out.path.mkdir(parents=True, exist_ok=True)
        with out.lock():
            if not self.options.overwrite:
                out.refuse_other_tokenizers()
            from_files = all(plan.from_files for plan in self.plans)
            if from_files:
                self._fingerprint_inputs()
            settings = self._settings(from_files)
            settings_sha = hashlib.sha256(
                json.dumps(settings, sort_keys=True).encode("utf-8")
            ).hexdigest()
            if from_files and self.options.resume:
                finished = out.finished_dataset(settings_sha)
                if finished is not None:
                    shutil.rmtree(out.state_dir, ignore_errors=True)
                    self.progress.note(f"{out.path}: up to date (same inputs and settings)")
                    return finished
            out.remove_temp_files()
            names = [plan.name for plan in self.plans]
            reused = out.resumable(settings, names, self.counts) if self.options.resume else None
            self._keep_state = reused is not None
            if reused is None:
                reused = {name: {split: [] for split in SPLITS} for name in names}
            else:
                n = sum(len(r) for by_split in reused.values() for r in by_split.values())
                if n:
                    self.progress.reused_shards = n
                    self.progress.reused_tokens = sum(
                        rec["tokens"] for s in reused.values() for r in s.values() for rec in r
                    )
                    self.progress.note(
                        f"{out.path}: resuming; reusing {n} finished shard(s) "
                        f"({self.progress.reused_tokens:,} tokens)"
                    )
            self.settings = settings
            old_sources = out.old_sources()
            cfg = EncodeConfig(
                vocab=self.vocab,
                eos=self.spec.eos_token_id,
                dtype=self.dtype.name,
                piece_tokens=self.options.eval_piece_tokens,
                tokenizer_name=self.spec.name,
            )
            tokenizing = Tokenizing(self.spec, cfg, self.workers, self.progress)
            entries: dict[str, dict[str, Any]] = {}
            try:
                for plan in self.plans:
                    entries[plan.name] = self._source(plan, reused[plan.name], tokenizing)
            finally:
                tokenizing.close()
                self.progress.finish()
            return self._finish(entries, settings_sha if from_files else None, old_sources)

    def _before_publish(self) -> None:
        self.out.before_publish(self.settings, self._keep_state)

    def _source(
        self, plan: _SourcePlan, reused: dict[str, list[dict[str, Any]]], tokenizing: Tokenizing
    ) -> dict[str, Any]:
        source = plan.name
        directory = self.out.path / source
        record_dir = self.out.state_dir / source
        writers = {
            split: ShardWriter(
                directory,
                split,
                self.dtype,
                self.options.shard_tokens,
                self._before_publish,
                record_dir,
                reused[split],
            )
            for split in SPLITS
        }
        verifiers = {split: Verifier(reused[split]) for split in SPLITS}
        resume_at = {
            split: (reused[split][-1]["next"] if reused[split] else None) for split in SPLITS
        }
        text_hash = hashlib.sha256()
        state = {"position": 0, "text_bytes": 0}
        self.progress.begin(source)
        tasks = self._tasks(plan, resume_at, verifiers, text_hash, state)
        try:
            for task, result in tokenizing.results(tasks, source):
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
            end = point(state["position"], 0)
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
        return self._entry(plan, writers, state["text_bytes"], text_hash.hexdigest())

    def _tasks(
        self,
        plan: _SourcePlan,
        resume_at: dict[str, Any],
        verifiers: dict[str, Verifier],
        text_hash: Any,
        state: dict[str, int],
    ) -> Iterator[Task]:
        """The source's documents in batches to tokenize, each split by its hash; documents
        before a split's resume point are only verified against the finished shards. Each
        document's position and size go into ``state`` and its text into ``text_hash``."""
        source = plan.name
        fraction = plan.eval_fraction
        for input_index, inp in enumerate(plan.inputs):
            task = Task(input_index)
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
                if len(task.texts) >= BATCH_DOCS or task.chars >= BATCH_CHARS:
                    yield task
                    task = Task(input_index)
            if task.texts:
                yield task
            if inp.path is not None and not inp.documents:
                skipped = inp.bad_lines.count if inp.bad_lines is not None else 0
                if skipped and inp.path.name.endswith(".txt"):
                    continue  # a .txt file is one document: it was bad, and is counted
                why = f"all {skipped:,} of its lines are bad" if skipped else "it is empty"
                raise UserError(f"input {str(inp.path)!r} holds no documents: {why}")

    @staticmethod
    def _entry(
        plan: _SourcePlan, writers: dict[str, ShardWriter], text_bytes: int, text_sha256: str
    ) -> dict[str, Any]:
        """The source's manifest entry, from its written shards' records."""
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
        entry["text_bytes"] = text_bytes
        entry["text_sha256"] = text_sha256
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
        out = self.out
        out.invalidate()
        out.write_tokenizer()
        for source, entry in entries.items():
            remove_stale_shards(out.path / source, {f for s in SPLITS for f in entry[s]["files"]})
        for source in old_sources - set(entries):
            remove_stale_shards(out.path / source, set())
            with contextlib.suppress(OSError):
                (out.path / source).rmdir()

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
                "sha256": out.tokenizer_sha,
                "vocab_size": self.vocab,
                "tokenizer_vocab_size": self.tokenizer_vocab,
                "eos_token_id": self.spec.eos_token_id,
                "pad_token_id": self.spec.pad_token_id,
                "dtype": self.dtype.name,
            },
            "eval_fraction": self.eval_fraction_setting,
            "split_rule": "eval iff blake2b-64(utf-8 text) / 2**64 < eval_fraction",
            "shard_tokens": self.options.shard_tokens,
            "eval_piece_tokens": self.options.eval_piece_tokens,
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
        if self.options.extra is not None:
            manifest["build"] = dict(self.options.extra)
        write_atomically(out.manifest_path, json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(out.state_dir, ignore_errors=True)
        return manifest

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
                "sha256": self.out.tokenizer_sha,
                "vocab_size": self.vocab,
                "eos_token_id": self.spec.eos_token_id,
                "pad_token_id": self.spec.pad_token_id,
                "dtype": self.dtype.name,
            },
            "eval_fraction": {p.name: p.eval_fraction for p in self.plans},
            "shard_tokens": self.options.shard_tokens,
            "eval_piece_tokens": self.options.eval_piece_tokens,
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
            "extra": self.options.extra,
        }
        return json.loads(json.dumps(settings))
