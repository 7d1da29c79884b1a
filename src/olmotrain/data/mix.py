"""Data mixes: what a mix asks of each source, its start-up checks, and olmo-core's dataset config.

A mix (``conf/data/*.yaml``) lists sources with token files (local or remote, globs allowed) and
either no ratios (the natural mix: every token once, in proportion to what each source has) or a
ratio per source, mixed by olmo-core's ``SourceMixtureDatasetConfig`` to the run's Chinchilla
duration. :func:`check_data` checks, before any model is built, every local token file (see
:mod:`olmotrain.data.tokens`), that the ratios add up, and that each source can supply what it
is asked for within its ``max_repetition_ratio``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from olmotrain.config.schema import DataSchema, InstanceFilterSchema, RunConfig
from olmotrain.data.ratios import mix_plan, mixed_sources
from olmotrain.data.remote.localize import Listings, check_streamed, localized, remote_files
from olmotrain.data.remote.store import Unreachable, checked
from olmotrain.data.tokens import (
    check_token_files,
    expand,
    is_remote,
    scored_targets,
    token_dtype,
)
from olmotrain.errors import UserError


@dataclass
class SourceReport:
    """What is known about one source without reading its files."""

    name: str
    patterns: list[str]
    files: int = 0
    tokens: int | None = None
    """Tokens in the files (from their sizes); ``None`` when missing or not known."""
    remote: bool = False
    problem: str | None = None
    unverified: str | None = None
    """Why remote files could not be looked at (no network, endpoint or credentials): a plan
    goes on without their sizes, a run refuses to start."""


def source_report(
    name: str, patterns: list[str], vocab_size: int, seen: Listings | None = None
) -> SourceReport:
    """Files and tokens of one source, from file sizes only (remote ones from the store's
    listing or HEAD, or from ``seen``: nothing is downloaded)."""
    report = SourceReport(name=name, patterns=list(patterns))
    itemsize = token_dtype(vocab_size).itemsize
    sizes: dict[str, int] = {}
    report.remote = any(is_remote(p) for p in patterns)
    try:
        local = [p for p in patterns if not is_remote(p)]
        remote = [p for p in patterns if checked(p)]
        sizes.update({f.url: f.size for f in remote_files(remote, seen=seen)})
        sizes.update({f: Path(f).stat().st_size for f in expand(local)})
    except Unreachable as exc:
        report.unverified = str(exc)
        return report
    except UserError as exc:
        report.problem = str(exc)
        return report
    unchecked = [p for p in patterns if is_remote(p) and not checked(p)]
    report.files = len(sizes) + len(unchecked)
    if unchecked:
        return report  # sizes of gs:// files are olmo-core's to find
    if not sizes:
        report.problem = f"no files match {', '.join(patterns)}"
        return report
    bad = [f for f, s in sizes.items() if s == 0 or s % itemsize]
    if bad:
        report.problem = f"{bad[0]} is empty or not a whole number of {itemsize}-byte tokens"
    report.tokens = sum(sizes.values()) // itemsize
    return report


@dataclass
class SourcePlan(SourceReport):
    """A training source with what the mix asks of it."""

    ratio: float | None = None
    """Its share of the training tokens (a natural mix: what it holds, when known)."""
    requested_tokens: int | None = None
    repetition: float | None = None
    """Requested tokens over the usable ones (``max_source_fraction`` of what it holds)."""
    fits: bool | None = None
    """Whether the repetition stays within ``max_repetition_ratio`` (``None``: not known)."""
    fit_problem: str | None = None


@dataclass
class DataReport:
    """The ``data`` of a plan: what each source holds and what the run asks of it."""

    name: str
    mix: str
    """``natural`` (no ratios: every token once) or ``ratios``."""
    sources: list[SourcePlan]
    eval: list[SourceReport]
    """Held-out sources."""
    problems: list[str]
    """Every data problem found (reported in the plan; training refuses to start on one)."""
    note: str | None = None
    proxy_for_tokens: float | None = None
    """The larger run whose repetition this one matches (``data.proxy_for_tokens``)."""


@dataclass
class CheckedData:
    """The data of a run that passed every start-up check."""

    report: DataReport
    file_sha256: dict[str, str]
    """Content hash per local token file (a resumed run refuses changed data)."""
    file_notes: list[str]
    """What was noticed but is no error (said once training starts)."""


def data_report(
    data: DataSchema, vocab_size: int, duration_tokens: int, seen: Listings | None = None
) -> DataReport:
    """Per source: files, tokens, and what the mix asks of it. Data problems are listed, not raised.
    ``seen``: what this start-up has listed already (see :data:`Listings`).

    Raises ``UserError`` only for a mix that cannot mean anything (ratios missing or not adding up).
    """
    instance_filter(data)
    held_out_sets(data)
    train = [source_report(s.name, s.paths, vocab_size, seen) for s in data.sources]
    held_out = [source_report(n, p, vocab_size, seen) for n, p in (data.eval or {}).items()]
    problems = [f"{r.name}: {r.problem}" for r in train + held_out if r.problem]
    mix = mix_plan(data, [r.tokens for r in train], duration_tokens)
    problems += [
        f"{r.name}: {m['fit_problem']}"
        for r, m in zip(train, mix, strict=True)
        if m.get("fit_problem")
    ]
    note = None
    if any(r.problem for r in train + held_out) and data.builder:
        note = f"the {data.builder} dataset is built on the first training run (or `make data`)"
    return DataReport(
        name=data.name,
        mix="ratios" if any(s.ratio is not None for s in mixed_sources(data)) else "natural",
        sources=[SourcePlan(**asdict(r), **m) for r, m in zip(train, mix, strict=True)],
        eval=held_out,
        problems=problems,
        note=note,
        proxy_for_tokens=data.proxy_for_tokens,
    )


def check_files_found(data: DataSchema, report: DataReport, *, unverified: bool = True) -> None:
    """Raises ``UserError`` for the first file the report found missing, malformed or (with
    ``unverified``) on a store that could not be reached."""
    rows = [*report.sources, *report.eval]
    files = [f"{r.name}: {r.problem}" for r in rows if r.problem]
    files += [f"{r.name}: {r.unverified}" for r in rows if r.unverified and unverified]
    if files:
        hint = "; run `make data`" if data.builder else ""
        raise UserError(f"data '{data.name}': {files[0]}{hint}")


def _check_mix(data: DataSchema, report: DataReport) -> None:
    if report.problems:
        hint = ""
        if data.builder == "embedded":
            hint = "; for a short CPU run on it use experiment=cpu_demo (what `make train` runs)"
        raise UserError(f"data '{data.name}': {report.problems[0]}{hint}")


def check_data(
    config: RunConfig, duration_tokens: int, report: DataReport | None = None
) -> CheckedData:
    """Every start-up check of the run's data; returns its report (see :func:`data_report`).

    Raises ``UserError`` for the first problem: missing or malformed files, a mix that cannot be
    met, ids outside the vocabulary, data of another tokenizer. What needs no download is checked
    before any remote file is copied into the cache (a typo costs no transfer); the copies, when
    the run reads them, are then checked whole.
    """
    data, tok = config.data, config.tokenizer
    seen: Listings = {}  # each remote glob is listed once by all the checks below
    report = report or data_report(data, tok.vocab_size, duration_tokens, seen)
    # With data.cache, a store out of reach is left to the cache: a filled one needs no network.
    check_files_found(data, report, unverified=data.cache is None)
    # The files' tokenizer before what they can supply: token counts depend on it.
    hashes, notes = _token_checks(config, data)
    # Files olmo-core will stream (no data.cache): a bounded sample of each, and the document
    # metadata a mixture of remote files needs. Held-out files are always read from copies.
    if data.cache is None:
        streamed = [(s.name, s.paths) for s in data.sources]
        check_streamed(tok, streamed, needs_metadata=report.mix == "ratios", seen=seen)
    if not any(r.unverified for r in [*report.sources, *report.eval]):
        _check_mix(data, report)
    local = localized(config)  # remote files copied into the cache, if the run reads copies
    if local is not config:
        report = data_report(local.data, tok.vocab_size, duration_tokens, seen)
        hashes, notes = _token_checks(config, local.data)
        check_files_found(data, report)
        _check_mix(data, report)
    return CheckedData(report, hashes, notes)


def _token_checks(config: RunConfig, data: DataSchema) -> tuple[dict[str, str], list[str]]:
    """:func:`check_token_files` over ``data``'s local training and held-out files."""
    pattern_sets = [(s.name, s.paths) for s in data.sources] + list((data.eval or {}).items())
    cache = Path(config.data_root) / ".cache" / "token_checks"
    return check_token_files(config.tokenizer, pattern_sets, cache)


def held_out_sets(data: DataSchema) -> dict[str, list[str]]:
    """``data.eval`` checked: a mapping of source names to lists of files or globs."""
    given = data.eval or {}
    if not isinstance(given, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(p, str) for p in v)
        for k, v in given.items()
    ):
        raise UserError(
            f"data.eval={given} must be null or a mapping of source names to lists of token "
            "files, e.g. data.eval={wiki: ['/data/wiki-heldout/*.npy']}"
        )
    return given


def instance_filter(data: DataSchema) -> dict[str, int] | None:
    """``data.instance_filter`` with the plan's defaults filled in; unknown keys are an error."""
    given = data.instance_filter
    if given is None:
        return None
    defaults = asdict(InstanceFilterSchema())
    if not isinstance(given, dict) or not all(isinstance(v, int) for v in given.values()):
        raise UserError(
            f"data.instance_filter={given} must be null or a mapping of {', '.join(defaults)} to integers"
        )
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise UserError(
            f"data.instance_filter.{unknown[0]} is not a setting; use {', '.join(defaults)}"
        )
    merged = {**defaults, **given}
    if (
        not 1 <= merged["repetition_min_period"] <= merged["repetition_max_period"]
        or merged["repetition_max_count"] < 2
    ):
        raise UserError(
            f"data.instance_filter {merged} needs 1 <= min_period <= max_period and max_count >= 2"
        )
    return merged


def resolved(data: DataSchema) -> DataSchema:
    """The mix with each training source's globs replaced by the files they name, listed once
    here: what the dataset and the per-source token counts are built from."""
    return replace(data, sources=[replace(s, paths=expand(s.paths)) for s in data.sources])


def source_of_path(data: DataSchema) -> dict[str, str]:
    """Every local training file (or remote path) -> the name of its source."""
    return {p: s.name for s in data.sources for p in expand(s.paths)}


def eval_files(data: DataSchema) -> list[tuple[str, str]]:
    """``(source, file)`` for every held-out token file of the mix."""
    return [(name, p) for name, pats in (data.eval or {}).items() for p in expand(pats)]


def dataset_config(
    config: RunConfig, duration_tokens: int, batch_tokens: int, tokenizer: Any, work_dir: str
):
    """olmo-core's ``NumpyFSLDatasetConfig`` for the mix (natural, or olmo-core's source mixture)."""
    from olmo_core.data import InstanceFilterConfig, NumpyFSLDatasetConfig
    from olmo_core.data.source_mixture import (
        SourceMixtureConfig,
        SourceMixtureDatasetConfig,
        SourceMixtureList,
    )

    data = config.data
    filt = instance_filter(data)
    common: dict[str, Any] = dict(
        sequence_length=config.train.sequence_length,
        tokenizer=tokenizer,
        work_dir=work_dir,
        instance_filter_config=InstanceFilterConfig(**filt) if filt else None,
    )
    sources = mixed_sources(data, duration_tokens)
    if all(s.ratio is None for s in sources):
        paths, metadata = [], []
        for s in sources:
            for p in expand(s.paths):
                paths.append(p)
                metadata.append({"label": s.name})
        return NumpyFSLDatasetConfig(paths=paths, metadata=metadata, **common)
    mixture = SourceMixtureDatasetConfig(
        source_list=SourceMixtureList(
            sources=[
                SourceMixtureConfig(
                    source_name=s.name,
                    target_ratio=s.ratio,
                    paths=expand(s.paths),
                    max_repetition_ratio=s.max_repetition_ratio,
                    max_source_fraction=s.max_source_fraction,
                )
                for s in sources
                if s.ratio > 0  # a source at 0 is not in the mix
            ]
        ),
        requested_tokens=duration_tokens,
        global_batch_size=batch_tokens,
        seed=config.seed,
        quiet=True,
    )
    return NumpyFSLDatasetConfig(source_mixture_config=mixture, **common)


def heldout_baseline(config: RunConfig, report: DataReport) -> tuple[float, dict[str, int]] | None:
    """Unigram entropy (nats) of the scored held-out targets, and their count per source.

    A unigram model that knew the held-out distribution exactly would score this; a model
    that learned anything from context must do better.
    """
    eval_paths = {r.name: r.patterns for r in report.eval}  # the files read (local copies)
    if not eval_paths or any(r.remote for r in report.eval):
        return None
    tok, seq = config.tokenizer, config.train.sequence_length
    dtype = token_dtype(tok.vocab_size)
    counts = np.zeros(tok.vocab_size, dtype=np.int64)
    per_source = {}
    for name, patterns in eval_paths.items():
        targets = [scored_targets(p, seq, tok.eos_token_id, dtype) for p in expand(patterns)]
        per_source[name] = sum(t.size for t in targets)
        for t in targets:
            counts += np.bincount(t, minlength=tok.vocab_size)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum()), per_source


def pooled_eval_loss(eval_losses: dict[str, float], weights: dict[str, int]) -> float | None:
    """Held-out loss over all sources, each weighted by its number of scored targets."""
    total = sum(weights.get(k, 0) for k in eval_losses)
    if not eval_losses or total == 0:
        return None
    return sum(v * weights.get(k, 0) for k, v in eval_losses.items()) / total
