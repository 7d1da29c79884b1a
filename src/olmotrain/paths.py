"""Paths a command will write: checked before any work, so a bad one is one line, not a traceback.

Used by every command that writes (training's run dirs and data root, prepare's output).
"""

from __future__ import annotations

import os
from pathlib import Path

from olmotrain.errors import UserError, os_error_line


def check_writable(path: Path, setting: str) -> None:
    """``path`` is (or can be made) a directory this process can write; changes nothing.

    Checked at the deepest part of ``path`` that exists: a directory, writable (the mount's
    read-only flag and the permission bits), with room on its filesystem. Where something must
    be created below it, a directory is made and removed there too: permission bits say nothing
    to root, nor about /proc or /sys. Raises ``UserError`` naming ``setting`` (``output_root=runs``).
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
        # Under 1 MiB free, nothing a run writes fits (pseudo filesystems report no blocks at all).
        if stats.f_blocks and stats.f_bavail * stats.f_frsize < 1 << 20:
            raise problem(errno.ENOSPC)
    except OSError as exc:
        if exc.filename is not None and Path(exc.filename).parent == existing:
            exc.filename = str(path)  # name the path the user gave, not the probe
        raise UserError(os_error_line(exc, setting)) from None


def write_atomically(path: Path, content: str | bytes) -> None:
    """Write ``path`` whole or not at all: through a temporary name of this process, so ranks and
    concurrent jobs writing the same file never rename each other's temporary."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if isinstance(content, bytes):
        tmp.write_bytes(content)
    else:
        tmp.write_text(content)
    os.replace(tmp, path)
