"""A local cache of remote token files (``data.cache``): downloaded once, then read at disk speed.

Each object lands at ``<cache>/<scheme>/<bucket or host>/<key>``, next to a ``.remote.json``
record of the URL, size and version tag it was checked against. A download is
- **atomic**: written to ``<file>.part`` and renamed once its size (and, for a single-part S3
  object, its MD5 ETag) match, so a reader never sees half a file;
- **resumable**: an interrupted ``.part`` of the same version continues where it stopped;
- **shared**: an exclusive ``flock`` per file makes concurrent runs and ranks wait for one
  download instead of racing (the second finds the file filled);
- **parallel**: several files at once, with one progress bar of bytes.

A changed remote object (another size or tag) is downloaded again. Listings of globs are kept
beside (``.listings/``) so a job whose cache was filled ahead (``python -m olmotrain.data
fetch``) starts without touching the network.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from olmotrain.data.remote import store
from olmotrain.data.remote.store import RemoteFile
from olmotrain.errors import UserError, os_error_line
from olmotrain.paths import write_atomically

WORKERS = 8
RECORD = ".remote.json"


@dataclass
class FillReport:
    """What a fill did: files and bytes downloaded, and files already there."""

    downloaded: int = 0
    downloaded_bytes: int = 0
    cached: int = 0
    cached_bytes: int = 0

    def line(self) -> str:
        return (
            f"{_files(self.downloaded)} downloaded ({self.downloaded_bytes / 2**20:,.1f} MiB), "
            f"{self.cached} already cached ({self.cached_bytes / 2**20:,.1f} MiB)"
        )


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


class RemoteCache:
    """Local copies of remote files under ``root`` (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def local_path(self, url: str) -> Path:
        """Where ``url``'s copy lives: ``<root>/<scheme>/<bucket or host>/<key>``."""
        scheme, rest = url.split("://", 1)
        parts = [p for p in rest.split("/") if p not in ("", ".", "..")]
        return self.root.joinpath(scheme.lower(), *[p.replace(":", "_") for p in parts])

    def _record(self, path: Path) -> Path:
        return path.with_name(path.name + RECORD)

    def is_filled(self, f: RemoteFile) -> bool:
        """Whether the copy of ``f`` is complete and of the same version."""
        path = self.local_path(f.url)
        try:
            record = json.loads(self._record(path).read_text())
            return path.stat().st_size == f.size and record == asdict(f)
        except (OSError, ValueError):
            return False

    def filled_record(self, url: str) -> RemoteFile | None:
        """The version the copy of ``url`` holds, when it is complete (no network)."""
        path = self.local_path(url)
        try:
            f = RemoteFile(**json.loads(self._record(path).read_text()))
        except (OSError, ValueError, TypeError):
            return None
        return f if path.exists() and path.stat().st_size == f.size else None

    # ---- listings ---------------------------------------------------------------------------

    def _listing_path(self, pattern: str) -> Path:
        return self.root / ".listings" / f"{hashlib.sha256(pattern.encode()).hexdigest()[:32]}.json"

    def save_listing(self, pattern: str, files: list[RemoteFile]) -> None:
        body = {"pattern": pattern, "files": [asdict(f) for f in files]}
        self._write(self._listing_path(pattern), json.dumps(body))

    def listing(self, pattern: str) -> list[RemoteFile] | None:
        """The files ``pattern`` matched when the cache was filled, if every copy is complete."""
        try:
            body = json.loads(self._listing_path(pattern).read_text())
            files = [RemoteFile(**f) for f in body["files"]]
        except (OSError, ValueError, TypeError, KeyError):
            return None
        return files if all(self.is_filled(f) for f in files) else None

    def _write(self, path: Path, text: str) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, text)
        except OSError as exc:
            raise UserError(os_error_line(exc, "data.cache")) from None

    # ---- filling ----------------------------------------------------------------------------

    def fill(self, files: list[RemoteFile], *, progress: bool | None = None) -> FillReport:
        """Download every file of ``files`` not yet (or no longer) in the cache, in parallel."""
        report = FillReport()
        todo = []
        for f in dict.fromkeys(files):
            if self.is_filled(f):
                report.cached, report.cached_bytes = report.cached + 1, report.cached_bytes + f.size
            else:
                todo.append(f)
        if not todo:
            return report
        with _bar(sum(f.size for f in todo), len(todo), progress) as advance:
            with ThreadPoolExecutor(max_workers=min(WORKERS, len(todo))) as pool:
                for f, fetched in zip(
                    todo, pool.map(lambda f: self._fetch(f, advance), todo), strict=True
                ):
                    if fetched:
                        report.downloaded += 1
                        report.downloaded_bytes += f.size
                    else:  # another process filled it while this one waited for the lock
                        report.cached, report.cached_bytes = (
                            report.cached + 1,
                            report.cached_bytes + f.size,
                        )
        return report

    def _fetch(self, f: RemoteFile, advance: Any) -> bool:
        """Download ``f`` under its lock; ``False`` when someone else already had."""
        path = self.local_path(f.url)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with _locked(path.with_name(path.name + ".lock")):
                if self.is_filled(f):
                    advance(f.size)
                    return False
                self._download(f, path, advance)
                self._write(self._record(path), json.dumps(asdict(f)))
        except OSError as exc:
            raise UserError(os_error_line(exc, "data.cache")) from None
        return True

    def _download(self, f: RemoteFile, path: Path, advance: Any) -> None:
        part = path.with_name(path.name + ".part")
        part_record = path.with_name(path.name + ".part.json")
        offset = 0
        with contextlib.suppress(OSError, ValueError):
            if json.loads(part_record.read_text()) == asdict(f):
                offset = min(part.stat().st_size, f.size)  # the same version: resume it
        if offset == 0:
            part.unlink(missing_ok=True)
            write_atomically(part_record, json.dumps(asdict(f)))
        md5 = hashlib.md5() if _is_md5(f.etag) else None
        if md5 is not None and offset:
            with part.open("rb") as done:
                for chunk in iter(lambda: done.read(store.CHUNK), b""):
                    md5.update(chunk)
        advance(offset)
        with part.open("r+b" if offset else "wb") as out:
            out.truncate(offset)
            out.seek(offset)
            if offset < f.size:
                for chunk in store.stream(f.url, offset, f.size):
                    out.write(chunk)
                    if md5 is not None:
                        md5.update(chunk)
                    advance(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        size = part.stat().st_size
        if size != f.size:
            raise UserError(
                f"{f.url}: downloaded {size:,} bytes, expected {f.size:,} (the object changed "
                "while it was read?); run again"
            )
        if md5 is not None and md5.hexdigest() != f.etag:
            part.unlink(missing_ok=True)
            raise UserError(f"{f.url}: the download's MD5 differs from its ETag; run again")
        os.replace(part, path)
        part_record.unlink(missing_ok=True)


def _is_md5(etag: str) -> bool:
    """A single-part S3 upload's ETag is the MD5 of its bytes (a multipart one has a ``-``)."""
    return len(etag) == 32 and all(c in "0123456789abcdef" for c in etag.lower())


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _bar(total: int, files: int, enabled: bool | None) -> Iterator[Any]:
    """A rich progress bar of bytes (on a terminal, or when asked); yields ``advance(n)``."""
    import threading

    from olmotrain.console import is_terminal, live_progress

    if enabled is None:
        enabled = is_terminal(sys.stderr)
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import BarColumn, DownloadColumn, TextColumn, TransferSpeedColumn

    lock = threading.Lock()
    with live_progress(
        sys.stderr,
        TextColumn(f"data.cache: {files} files"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
    ) as bar:
        task = bar.add_task("fetch", total=total)

        def advance(n: int) -> None:
            with lock:
                bar.advance(task, n)

        yield advance
