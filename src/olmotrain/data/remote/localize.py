"""Remote sources of a mix: their files and sizes, their start-up checks, and local copies.

- :func:`remote_files` lists a source's remote globs (sizes from the listing or HEAD, never a
  download), or takes the listing kept in the cache when the cache holds every file of it.
- :func:`check_streamed` is the check of files olmo-core will stream: whole tokens, ids inside
  the vocabulary in a bounded sample (``SAMPLE_BYTES`` from each end), the tokenizer named by
  a ``manifest.json`` beside them, and the document metadata olmo-core needs to mix remote files.
- :func:`localized` returns the config with remote files replaced by their cached copies:
  training files when ``data.cache`` is set, held-out files always (evaluation reads every
  document, so they are copied once into ``data.cache`` or ``<data_root>/.cache/remote``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from olmotrain.config.schema import RunConfig, TokenizerSchema
from olmotrain.data.remote import store
from olmotrain.data.remote.cache import RemoteCache
from olmotrain.data.remote.store import RemoteFile
from olmotrain.data.tokens import is_remote, token_dtype
from olmotrain.errors import UserError

log = logging.getLogger("olmotrain")

SAMPLE_BYTES = 4 * 2**20
"""Bytes read from each end of a streamed remote file for the vocabulary check."""
MANIFEST_LEVELS = 2
"""How many prefixes above a token file may hold its dataset's ``manifest.json``."""


Listings = dict[str, list[RemoteFile]]
"""Remote path or glob -> the files it names: what one start-up has listed so far. Passed to
the checks of one start-up so that each glob is listed once, however many checks read it."""


def listings(
    patterns: list[str], cache: RemoteCache | None = None, seen: Listings | None = None
) -> Listings:
    """Per remote path or glob, the files it names; a glob matching nothing is an error
    naming it. The cache's listing is used when it holds every file of it (no network), and
    ``seen``'s (filled with what is listed here) when it has the pattern."""
    out: Listings = {}
    for pattern in dict.fromkeys(patterns):
        files = seen.get(pattern) if seen is not None else None
        if files is None and cache is not None:
            files = cache.listing(pattern)
        if files is None:
            files = store.glob(pattern)
        if not files:
            raise UserError(f"no files match {pattern}; check the prefix (list the bucket)")
        out[pattern] = files
        if seen is not None:
            seen[pattern] = files
    return out


def remote_files(
    patterns: list[str], cache: RemoteCache | None = None, seen: Listings | None = None
) -> list[RemoteFile]:
    """The remote files of ``patterns``, in order, de-duplicated (see :func:`listings`)."""
    found = {f.url: f for files in listings(patterns, cache, seen).values() for f in files}
    return list(found.values())


def cache_of(config: RunConfig) -> RemoteCache | None:
    """The cache of training files (``data.cache``), if the mix has one."""
    return RemoteCache(config.data.cache) if config.data.cache else None


def heldout_cache(config: RunConfig) -> RemoteCache:
    """Where remote held-out files are copied: ``data.cache``, else ``<data_root>/.cache/remote``."""
    return cache_of(config) or RemoteCache(Path(config.data_root) / ".cache" / "remote")


def manifests(
    files: list[RemoteFile], probed: dict[str, RemoteFile | None] | None = None
) -> list[RemoteFile]:
    """The ``manifest.json`` objects (olmotrain's prepare writes one per dataset) in the
    prefixes above ``files``: the nearest one of each. ``probed`` keeps what each URL held (a
    manifest or nothing) across calls, so that sources sharing a dataset ask for it once."""
    probed = {} if probed is None else probed
    found: dict[str, RemoteFile] = {}
    for parent in sorted({f.url.rsplit("/", 1)[0] for f in files}):
        for _ in range(MANIFEST_LEVELS):
            url = f"{parent}/manifest.json"
            if url not in probed:
                probed[url] = store.stat(url) if store.exists(url) else None
            if probed[url] is not None:
                found[url] = probed[url]  # type: ignore[assignment]
                break
            if parent.count("/") <= 3:  # scheme://bucket: nothing above
                break
            parent = parent.rsplit("/", 1)[0]
    return list(found.values())


def fill(
    cache: RemoteCache, patterns: list[str], progress: bool | None = None
) -> dict[str, list[Path]]:
    """Copy the files of remote ``patterns`` (and their datasets' manifests) into ``cache``;
    returns each pattern's local copies. Files already copied are not downloaded again."""
    found = listings(patterns, cache)
    files = list({f.url: f for fs in found.values() for f in fs}.values())
    extra = manifests(files) if any(not cache.is_filled(f) for f in files) else []
    todo = [f for f in files + extra if not cache.is_filled(f)]
    if todo:
        log.info(
            "data.cache: downloading %d file(s) (%.1f MiB) into %s",
            len(todo),
            sum(f.size for f in todo) / 2**20,
            cache.root,
        )
    report = cache.fill(files + extra, progress=progress)
    if report.downloaded:
        log.info("data.cache: %s", report.line())
    for pattern, fs in found.items():
        cache.save_listing(pattern, fs)
    return {p: [cache.local_path(f.url) for f in fs] for p, fs in found.items()}


def _localize(groups: list[list[str]], cache: RemoteCache) -> list[list[str]]:
    """Each group of patterns with its remote ones replaced by their copies (one fill for all)."""
    copies = fill(cache, [p for g in groups for p in g if is_remote(p)])
    return [[str(c) for p in g for c in (copies[p] if p in copies else [p])] for g in groups]


def localized(config: RunConfig) -> RunConfig:
    """``config`` with remote files replaced by local copies (see the module docstring);
    downloads what the cache lacks. A config without remote files is returned as is."""
    data = config.data
    sources = list(data.sources)
    cache = cache_of(config)
    if cache is not None and any(is_remote(p) for s in sources for p in s.paths):
        paths = _localize([list(s.paths) for s in sources], cache)
        sources = [replace(s, paths=p) for s, p in zip(sources, paths, strict=True)]
    held_out = data.eval
    if isinstance(held_out, dict) and any(is_remote(p) for v in held_out.values() for p in v):
        paths = _localize([list(v) for v in held_out.values()], heldout_cache(config))
        held_out = dict(zip(held_out, paths, strict=True))
    if sources == list(data.sources) and held_out is data.eval:
        return config
    return replace(config, data=replace(data, sources=sources, eval=held_out))


def check_streamed(
    tok: TokenizerSchema,
    pattern_sets: list[tuple[str, list[str]]],
    needs_metadata: bool,
    seen: Listings | None = None,
) -> None:
    """The checks of remote files olmo-core will stream (see the module docstring); each
    dataset's manifest is read once, whichever sources share it."""
    dtype = token_dtype(tok.vocab_size)
    probed: dict[str, RemoteFile | None] = {}
    read: set[str] = set()
    for name, patterns in pattern_sets:
        remote = [p for p in patterns if store.checked(p)]
        if not remote:
            continue
        files = remote_files(remote, seen=seen)
        for f in files:
            _check_sample(name, f, tok, dtype)
            if needs_metadata:
                _check_metadata(name, f)
        for m in manifests(files, probed):
            if m.url not in read:
                read.add(m.url)
                _check_manifest(name, m, tok)


def _check_sample(name: str, f: RemoteFile, tok: TokenizerSchema, dtype: np.dtype) -> None:
    if f.size == 0 or f.size % dtype.itemsize:
        raise UserError(
            f"data source {name}: {f.url} is empty or not a whole number of {dtype.itemsize}-byte tokens "
            f"({f.size:,} bytes); is it a token file of tokenizer {tok.name}?"
        )
    n = min(f.size, SAMPLE_BYTES) // dtype.itemsize * dtype.itemsize
    head = np.frombuffer(store.read_range(f.url, 0, n), dtype=dtype)
    tail_start = max(n, f.size - n)
    tail = np.frombuffer(store.read_range(f.url, tail_start, f.size - tail_start), dtype=dtype)
    top = int(max(head.max(initial=0), tail.max(initial=0)))
    if top >= tok.vocab_size:
        raise UserError(
            f"data source {name}: {f.url} holds token id {top}, outside tokenizer {tok.name}'s vocab of "
            f"{tok.vocab_size}; it was tokenized with another tokenizer (pick the matching tokenizer=) or is corrupt"
        )


def metadata_url(url: str) -> str:
    """Where dolma (and olmotrain's prepare) keep a token file's document boundaries."""
    return url[: -len(".npy")] + ".csv.gz" if url.endswith(".npy") else url + ".csv.gz"


def _check_metadata(name: str, f: RemoteFile) -> None:
    meta = metadata_url(f.url)
    if not store.exists(meta):
        raise UserError(
            f"data source {name}: {f.url} has no document metadata {meta.rsplit('/', 1)[1]} beside it, "
            "which olmo-core needs to mix remote files; set data.cache=DIR (train from local copies) "
            f"or write it with `python -m olmotrain.data index {f.url}`"
        )


def _check_manifest(name: str, manifest: RemoteFile, tok: TokenizerSchema) -> None:
    try:
        data_tok = json.loads(store.read_range(manifest.url, 0, manifest.size))["tokenizer"]
    except (ValueError, KeyError, TypeError):
        return  # not olmotrain's manifest
    if (data_tok.get("vocab_size"), data_tok.get("eos_token_id")) != (
        tok.vocab_size,
        tok.eos_token_id,
    ):
        raise UserError(
            f"data source {name} was tokenized with {data_tok.get('name')} (vocab {data_tok.get('vocab_size')}, "
            f"eos {data_tok.get('eos_token_id')}; {manifest.url}) but the run uses tokenizer={tok.name} "
            f"(vocab {tok.vocab_size}, eos {tok.eos_token_id}); pick the matching tokenizer= or re-tokenize the data"
        )
