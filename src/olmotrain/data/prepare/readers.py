"""Reading inputs: text files, JSON lines (plain, gzip, zstd) and parquet, one document at a time.

Arguments name inputs as ``[SOURCE=]PATH`` (:func:`expand_inputs`); each input yields its
documents in order with their UTF-8 bytes. A bad line (invalid UTF-8, not JSON, no text field)
stops the run naming ``file:line``, or is skipped and counted (:class:`BadLines`); a damaged
file (truncated compression, unreadable parquet) always stops it.
"""

from __future__ import annotations

import glob
import io
import itertools
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from olmotrain.data.prepare.manifest import MANIFEST_NAME
from olmotrain.data.tokenizer import TOKENIZER_NAME
from olmotrain.errors import UserError

INPUT_SUFFIXES = (".txt", ".jsonl", ".jsonl.gz", ".jsonl.zst", ".parquet")


_MAX_SKIPPED_EXAMPLES = 5

SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_GLOB_CHARS = re.compile(r"[*?\[]")


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
        if not sep or os.path.exists(arg) or not SOURCE_NAME.fullmatch(source):
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


def iter_sources(
    sources: Mapping[str, Any] | Iterable[tuple[str, Any]],
) -> Iterator[tuple[str, Any]]:
    pairs = sources.items() if isinstance(sources, Mapping) else sources
    seen: set[str] = set()
    for name, docs in pairs:
        if (
            not isinstance(name, str)
            or not SOURCE_NAME.fullmatch(name)
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


@dataclass
class Input:
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
