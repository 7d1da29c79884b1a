"""The embedded dataset: a small offline text corpus built from this environment's own files.

Not embeddings: "embedded" because the text ships with every machine (the Python installation
and the installed packages' documentation), so a first run trains on real text without a
download. It is tokenized in seconds; ``data=embedded`` names it in the config. Two sources, so
data mixing has something to mix:

- ``python_code``: the running Python's own standard library ``*.py`` files (no
  ``site-packages``; ``pydoc_data`` goes to the prose source), a fixed ~60% subset chosen by a
  hash of each relative path; one file is one document.
- ``english_docs``: prose: the interactive-help topics of the standard library
  (``pydoc_data.topics``, the language reference) and the long descriptions (READMEs) in the
  ``METADATA`` of the distributions installed in the interpreter's site-packages, which the
  project's pinned requirements fix. Left out, because they differ between machines with the
  same requirements: local / editable installs (this project), installer tooling (pip,
  setuptools, wheel) and accelerator runtimes (nvidia-*, triton, cuda-*).

And the same text split three ways for mixture studies (``data=embedded_split``): the whole
standard library's ``*.py`` (not the 60% subset) as ``python_library`` (modules) and
``python_tests`` (files under ``test``/``tests``/``idle_test`` or named ``test_*.py``), with
``english_docs``. They overlap ``python_code``; no shipped mix uses both.

Tokenizers: ``embedded_bpe8k`` (a byte-level BPE of 8,192 ids trained here on the train split;
EOS 0, pad 1) or ``gpt_neox_olmo`` (the OLMo tokenizer shipped by ai2-olmo-eval; EOS 50279).
Both see the same documents and the same train/eval split. The manifest records a sha256 of
each source's text, so drift (another Python, other packages) is visible.

Built with :mod:`olmotrain.data.prepare`, by training's first run or the command
``python -m olmotrain.embedded --root data/embedded [--tokenizer embedded_bpe8k]``
(:mod:`olmotrain.embedded`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import platform
import re
import sysconfig
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from olmotrain.data.prepare import (
    MANIFEST_NAME,
    SPLITS,
    load_manifest,
    prepare,
    split_of,
)
from olmotrain.data.tokenizer import TOKENIZER_NAME, resolve_tokenizer
from olmotrain.errors import UserError
from olmotrain.paths import write_atomically

log = logging.getLogger(__name__)

RECIPE_VERSION = 3
"""Bump when the document selection or the tokenizer training changes."""

TOKENIZERS = ("embedded_bpe8k", "gpt_neox_olmo")
DEFAULT_ROOT = Path("data/embedded")

EVAL_FRACTIONS = {
    "python_code": 0.02,
    "english_docs": 0.12,
    "python_library": 0.03,
    "python_tests": 0.015,
}
"""Per source, so each has a usable held-out set: ~125k + ~23k eval tokens with either
tokenizer, small enough that evaluating all of it on 2 CPU cores takes seconds. The prose
source is small (~0.4M tokens) and its eval documents short, hence its larger share.
``python_library`` and ``python_tests``: ~90k eval tokens each."""

BPE_SOURCES = ("python_code", "english_docs")
"""The sources the embedded BPE is trained on (the split sources came later and reuse it)."""

SHARD_TOKENS = 2**26

PYTHON_CODE_KEEP = 0.6
"""Share of stdlib files kept (by path hash): about 19 MB of Python 3.11 source."""

BPE_VOCAB_SIZE = 8192
BPE_SPECIAL_TOKENS = ("<|endoftext|>", "<|pad|>")  # ids 0 and 1

# Distributions whose presence or text differs between machines installed from the same
# pinned requirements (see the module docstring), test-runner plugins (pytest-xdist and its
# execnet), and dependencies added after the corpus was fixed (lightgbm and its narwhals), so
# that the corpus (and the numbers measured on it) stays the same as requirements grow.
_UNPINNED_DISTRIBUTIONS = re.compile(
    r"pip|setuptools|wheel|nvidia-.*|triton|cuda-.*|pytest-xdist|execnet|lightgbm|narwhals"
)


@dataclass
class EmbeddedSource:
    """One source's documents (non-empty, in a fixed order) and how they were gathered."""

    name: str
    documents: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    def text_sha256(self) -> str:
        """Same digest as the manifest's ``text_sha256``: UTF-8 documents, each + NUL."""
        h = hashlib.sha256()
        for doc in self.documents:
            h.update(doc.encode("utf-8"))
            h.update(b"\0")
        return h.hexdigest()


def _stdlib_documents(
    keep: Callable[[str], bool], max_docs: int | None
) -> tuple[Path, list[str], list[str]]:
    """The stdlib ``*.py`` files ``keep`` accepts (by relative path, sorted; no site-packages, no
    ``pydoc_data``): (stdlib dir, documents, undecodable files skipped)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    relpaths = sorted(p.relative_to(stdlib).as_posix() for p in stdlib.rglob("*.py"))
    docs: list[str] = []
    skipped: list[str] = []
    for rel in relpaths:
        if rel.startswith(("site-packages/", "dist-packages/", "pydoc_data/")) or not keep(rel):
            continue
        try:
            text = (stdlib / rel).read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            # A few test fixtures are deliberately in other encodings.
            skipped.append(rel)
            continue
        if not text:
            continue
        docs.append(text)
        if max_docs is not None and len(docs) >= max_docs:
            break
    return stdlib, docs, skipped


def python_code_source(max_docs: int | None = None) -> EmbeddedSource:
    """The stdlib ``*.py`` subset, sorted by relative path; undecodable or empty files skipped."""
    stdlib, docs, skipped = _stdlib_documents(
        lambda rel: _path_score(rel) < PYTHON_CODE_KEEP, max_docs
    )
    info = {
        "origin": "python stdlib *.py (no site-packages, no pydoc_data)",
        "python": platform.python_version(),
        "stdlib": str(stdlib),
        "keep_fraction": PYTHON_CODE_KEEP,
        "files": len(docs),
        "skipped_undecodable": skipped,
    }
    return EmbeddedSource("python_code", docs, info)


def is_test_file(relpath: str) -> bool:
    """A stdlib test module: under a ``test``/``tests``/``idle_test`` directory or ``test_*.py``."""
    *dirs, base = relpath.split("/")
    return any(d in ("test", "tests", "idle_test") for d in dirs) or base.startswith("test_")


def python_split_sources(max_docs: int | None = None) -> list[EmbeddedSource]:
    """The whole stdlib's ``*.py`` as two sources: ``python_library`` and ``python_tests``."""
    out = []
    for name, tests in (("python_library", False), ("python_tests", True)):
        stdlib, docs, skipped = _stdlib_documents(
            lambda rel, tests=tests: is_test_file(rel) == tests, max_docs
        )
        kind = "test modules" if tests else "modules other than tests"
        info = {
            "origin": f"python stdlib *.py, {kind} (no site-packages, no pydoc_data)",
            "python": platform.python_version(),
            "stdlib": str(stdlib),
            "files": len(docs),
            "skipped_undecodable": skipped,
        }
        out.append(EmbeddedSource(name, docs, info))
    return out


def english_docs_source(max_docs: int | None = None) -> EmbeddedSource:
    """Prose: pydoc help topics (sorted by topic) then package READMEs (sorted by name)."""
    from pydoc_data.topics import topics  # the stdlib's language-reference help texts

    labelled = [(f"pydoc:{key}", topics[key]) for key in sorted(topics) if topics[key]]
    labelled += [(f"{name}=={version}", text) for name, version, text in _installed_descriptions()]
    if max_docs is not None:
        labelled = labelled[:max_docs]
    docs = [text for _, text in labelled]
    info = {
        "origin": "pydoc_data.topics + METADATA descriptions of installed distributions",
        "python": platform.python_version(),
        "pydoc_topics": sum(label.startswith("pydoc:") for label, _ in labelled),
        "distributions": [label for label, _ in labelled if not label.startswith("pydoc:")],
    }
    return EmbeddedSource("english_docs", docs, info)


def embedded_sources(max_docs: int | None = None) -> list[EmbeddedSource]:
    """All embedded sources, each limited to its first ``max_docs`` documents if given."""
    return [
        python_code_source(max_docs),
        english_docs_source(max_docs),
        *python_split_sources(max_docs),
    ]


def train_bpe(documents: Iterator[str] | list[str], vocab_size: int = BPE_VOCAB_SIZE) -> Tokenizer:
    """Train a byte-level BPE (EOS ``<|endoftext|>`` = 0, pad ``<|pad|>`` = 1).

    Deterministic: the same documents in the same order give a byte-identical tokenizer.json,
    whatever the thread count (checked with RAYON_NUM_THREADS=1, 2 and 7).
    """
    tok = Tokenizer(models.BPE())
    # No prefix space, so decode(encode(text)) == text exactly.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(BPE_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(documents, trainer=trainer)
    for expected, token in enumerate(BPE_SPECIAL_TOKENS):
        if tok.token_to_id(token) != expected:
            raise RuntimeError(f"BPE training put {token} at {tok.token_to_id(token)}")
    return tok


def build_embedded(
    root: str | Path = DEFAULT_ROOT,
    tokenizer: str = "embedded_bpe8k",
    *,
    force: bool = False,
    max_docs: int | None = None,
) -> Path:
    """Build (or find up to date) the embedded dataset; return its directory ``root/<tokenizer>``.

    A no-op when ``root/<tokenizer>/manifest.json`` exists and matches: same recipe, same text
    (sha256 per source), tokenizer file and shards present with the recorded hash and sizes.
    ``force`` rebuilds anyway. ``max_docs`` keeps only the first documents of each source
    (for tests). Raises :class:`UserError` for an unknown tokenizer.
    """
    if tokenizer not in TOKENIZERS:
        raise UserError(
            f"unknown embedded tokenizer {tokenizer!r}; choose one of {', '.join(TOKENIZERS)}"
        )
    dataset_dir = Path(root) / tokenizer
    sources = embedded_sources(max_docs)
    recipe = {
        "recipe_version": RECIPE_VERSION,
        "tokenizer": tokenizer,
        "eval_fraction": EVAL_FRACTIONS,
        "shard_tokens": SHARD_TOKENS,
        "max_docs": max_docs,
    }
    if not force and _up_to_date(dataset_dir, recipe, sources):
        log.info("embedded dataset %s is up to date", dataset_dir)
        return dataset_dir

    dataset_dir.mkdir(parents=True, exist_ok=True)
    # From here on the old dataset is stale: drop its completeness marker first.
    (dataset_dir / MANIFEST_NAME).unlink(missing_ok=True)
    if tokenizer == "embedded_bpe8k":
        train_docs = (
            doc
            for s in sources
            if s.name in BPE_SOURCES
            for doc in s.documents
            if split_of(doc, EVAL_FRACTIONS[s.name]) == "train"
        )
        bpe = train_bpe(train_docs)
        tokenizer_path = dataset_dir / TOKENIZER_NAME
        write_atomically(tokenizer_path, bpe.to_str(pretty=True))
        spec = resolve_tokenizer(tokenizer_path, name=tokenizer, eos_token_id=0, pad_token_id=1)
    else:
        spec = resolve_tokenizer(tokenizer)
    prepare(
        [(s.name, s.documents) for s in sources],
        spec,
        dataset_dir,
        eval_fraction=EVAL_FRACTIONS,
        shard_tokens=SHARD_TOKENS,
        extra={"recipe": recipe, "sources": {s.name: s.info for s in sources}},
        overwrite=True,  # this directory is ours: a new recipe may bring a new BPE
    )
    return dataset_dir


# --- internals ------------------------------------------------------------------------------


def _path_score(relpath: str) -> float:
    digest = hashlib.blake2b(relpath.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _installed_descriptions() -> list[tuple[str, str, str]]:
    """(name, version, long description) of site-packages distributions, sorted by name."""
    paths = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    found: dict[str, tuple[str, str, str]] = {}
    for dist in importlib.metadata.distributions(path=paths):
        name = re.sub(r"[-_.]+", "-", (dist.metadata["Name"] or "")).lower()
        if not name or name in found or _UNPINNED_DISTRIBUTIONS.fullmatch(name):
            continue
        direct_url = dist.read_text("direct_url.json")
        if direct_url and "dir_info" in json.loads(direct_url):
            continue  # installed from a local directory: its text follows that checkout
        description = dist.metadata.get_payload() or ""
        if not description.strip():
            # Metadata 1.x keeps it in a header, continuation lines indented.
            header = dist.metadata["Description"] or ""
            first, _, rest = header.partition("\n")
            description = first + "\n" + textwrap.dedent(rest) if rest else first
        description = description.strip("\n")
        if description.strip() and description.strip() != "UNKNOWN":
            found[name] = (name, dist.version, description + "\n")
    return sorted(found.values())


def _up_to_date(dataset_dir: Path, recipe: dict[str, Any], sources: list[EmbeddedSource]) -> bool:
    """Whether the manifest in ``dataset_dir`` describes exactly what a build would write."""
    if not (dataset_dir / MANIFEST_NAME).is_file():
        return False
    try:
        manifest = load_manifest(dataset_dir)
    except UserError:
        return False
    build = manifest.get("build", {})
    if build.get("recipe") != recipe:
        return False
    if list(manifest.get("sources", {})) != [s.name for s in sources]:
        return False
    for source in sources:
        if manifest["sources"][source.name].get("text_sha256") != source.text_sha256():
            return False
    tokenizer_file = dataset_dir / TOKENIZER_NAME
    if not tokenizer_file.is_file():
        return False
    expected_sha = manifest["tokenizer"]["sha256"]
    if hashlib.sha256(tokenizer_file.read_bytes()).hexdigest() != expected_sha:
        return False
    if recipe["tokenizer"] != "embedded_bpe8k":
        shipped = resolve_tokenizer(recipe["tokenizer"]).path
        if hashlib.sha256(shipped.read_bytes()).hexdigest() != expected_sha:
            return False
    itemsize = np.dtype(manifest["tokenizer"]["dtype"]).itemsize
    for entry in manifest["sources"].values():
        for split in SPLITS:
            files = [dataset_dir / f for f in entry[split]["files"]]
            if not all(f.is_file() for f in files):
                return False
            if sum(f.stat().st_size for f in files) != entry[split]["tokens"] * itemsize:
                return False
    return True
