"""User-facing errors: one readable line, non-zero exit, no traceback.

A :class:`UserError` names the problem and the fix. Filesystem problems (a path that cannot be
created, written or read, a file where a directory should be, a full disk) are the user's to
fix too, so an ``OSError`` with a path becomes one line the same way (:func:`os_error_line`).
:func:`run_command` is the process-level guard of every argparse command; Hydra's entry point
(``train.py``) has its own in :mod:`olmotrain.cli`.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable
from typing import NoReturn

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A problem with the user's input; the message names the problem and the fix."""

    def __init__(self, message: str, exit_code: int = EXIT_USER_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


_OS_HINTS = {
    errno.ENOSPC: "the disk is full: free some space or choose another directory",
    errno.EDQUOT: "the disk quota is used up: free some space or choose another directory",
    errno.EROFS: "it is on a read-only filesystem: choose a writable directory",
    errno.EACCES: "permission denied: choose a directory you can write, or fix its permissions",
    errno.EPERM: "not permitted: choose a directory you can write, or fix its permissions",
    errno.ENOTDIR: "a part of that path is a file, not a directory: choose another path",
    errno.EISDIR: "it is a directory where a file is expected: choose another path",
    errno.ENOENT: "a directory on that path does not exist and cannot be made there: check the path",
    errno.ENAMETOOLONG: "the path is too long: choose a shorter one",
}


def os_error_line(exc: OSError, setting: str | None = None) -> str:
    """One line for a filesystem error: the path, what went wrong, and what to do.

    ``setting`` names the config key or option the path came from (``output_root``).
    """
    path = exc.filename if exc.filename is not None else "a file"
    reason = exc.strerror or type(exc).__name__
    hint = _OS_HINTS.get(exc.errno or -1, "check the path, its permissions and the free space")
    where = f"{setting}: " if setting else ""
    return f"{where}{path}: {reason} ({hint})"


def user_error_line(exc: BaseException) -> tuple[str, int] | None:
    """``(line, exit code)`` for a user error or a filesystem error anywhere in ``exc``'s causes;
    ``None`` for anything else (a bug: it keeps its traceback)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        if isinstance(current, UserError):
            return str(current), current.exit_code
        seen.append(current)
        current = current.__cause__ or current.__context__
    for e in seen:  # only what a user fixes (full disk, permissions, paths): others are bugs
        if isinstance(e, OSError) and e.filename is not None and e.errno in _OS_HINTS:
            return os_error_line(e), EXIT_USER_ERROR
    return None


def fail(message: str, exit_code: int = EXIT_USER_ERROR) -> NoReturn:
    """Print ``error: message`` on stderr and exit."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(exit_code)


def run_command(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> NoReturn:
    """Run an argparse command's ``main``: user and filesystem errors end as one line."""
    try:
        code = main(argv)
    except KeyboardInterrupt:
        fail("interrupted", EXIT_INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - only known kinds are translated, the rest re-raised
        known = user_error_line(exc)
        if known is None:
            raise
        fail(*known)
    sys.exit(code)
