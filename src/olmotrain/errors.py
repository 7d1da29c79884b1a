"""User-facing errors: one readable line, non-zero exit, no traceback.

A :class:`UserError` names the problem and the fix. Filesystem problems (a path that cannot be
created, written or read, a file where a directory should be, a full disk) are the user's to
fix too, so an ``OSError`` with a path becomes one line the same way (:func:`os_error_line`).

This is also the one process-level guard of every command: :func:`run_command` runs an argparse
command's ``main(argv)`` and :func:`run_hydra` runs ``train.py``'s Hydra entry point, both
turning a known error into ``error: <one line>`` on stderr and exit 2 (130 for Ctrl-C); anything
else is a bug and keeps its traceback. Which errors are known is an ``explain`` function:
:func:`user_error_line` for argparse commands; for Hydra, :func:`olmotrain.config.checks.explain`
adds Hydra's and OmegaConf's own errors (this module sits below the config, so it is passed in).
"""

from __future__ import annotations

import errno
import functools
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

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


Explain = Callable[[BaseException], tuple[str, int] | None]
"""``(one line, exit code)`` for a known user error, ``None`` for a bug (see :func:`user_error_line`)."""


def run_command(
    main: Callable[[list[str] | None], int | None],
    argv: list[str] | None = None,
    explain: Explain = user_error_line,
) -> NoReturn:
    """Run a command's ``main(argv)`` and exit with its status; user and filesystem errors (as
    ``explain`` knows them) end as one line and exit 2, Ctrl-C as ``interrupted`` and 130."""
    from olmotrain.console import quiet_libraries

    quiet_libraries()
    try:
        code = main(argv)
    except KeyboardInterrupt:
        fail("interrupted", EXIT_INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - only known kinds are translated, the rest re-raised
        known = explain(exc)
        if known is None:
            raise
        fail(*known)
    sys.exit(code)


def run_hydra(
    entry: Callable[[], Any], explain: Explain, check_args: Callable[[list[str]], None]
) -> NoReturn:
    """Run a Hydra entry point (a ``@hydra.main`` function) as :func:`run_command` runs a command.

    ``check_args(sys.argv[1:])`` runs first (it can name close matches, which Hydra cannot);
    ``HYDRA_FULL_ERROR=1`` makes Hydra's own errors propagate here instead of being printed
    as multi-line reports.
    """
    os.environ["HYDRA_FULL_ERROR"] = "1"

    def main(_argv: list[str] | None) -> int:
        check_args(sys.argv[1:])
        entry()
        return 0

    run_command(main, explain=explain)


def user_errors(explain: Explain) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a Hydra task function so that known errors exit with one line inside the job
    (outside it, Hydra would first print "Error executing job with overrides: ...")."""

    def decorate(task: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(task)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return task(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - only known kinds are translated
                known = explain(exc)
                if known is None:
                    raise
                fail(*known)

        return wrapper

    return decorate
