"""How olmotrain talks to a person: logs on stderr, live progress (rich) on a terminal.

stdout carries only what a command is for (a plan, a table, JSON); everything else goes to
stderr. Long work (preparing data, evaluating, training) shows one rich progress display on a
terminal and nothing but its notes elsewhere, so CI and SLURM logs stay readable.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO


def setup_logging(level: int = logging.INFO) -> None:
    """Logs go to stderr (stdout carries only the plan, a table or JSON)."""
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        datefmt="%H:%M:%S",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # An optional NVIDIA library olmo-core probes for at import; its absence is not news.
    logging.getLogger("olmo_core.nn.attention.te_attn_api").setLevel(logging.ERROR)
    logging.getLogger("datasets").setLevel(logging.WARNING)  # ai2-olmo-eval's task loader


class _StderrHandler(logging.StreamHandler):
    """A handler on whatever ``sys.stderr`` is when it emits (so a live display that wraps
    stderr prints log lines above itself instead of being torn by them)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def logs_to_stderr() -> None:
    """Move every root log handler's output to stderr, keeping its format and filters.

    olmo-core's ``prepare_training_environment`` logs to stdout; olmotrain keeps stdout for
    what a command is for (the report, a table, JSON).
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, _StderrHandler):
            continue
        new = _StderrHandler(sys.stderr)
        new.setLevel(old.level)
        new.setFormatter(
            old.formatter
            if isinstance(old, logging.StreamHandler) and old.formatter is not None
            else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )
        for f in old.filters:
            new.addFilter(f)
        root.removeHandler(old)
        root.addHandler(new)


def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is an interactive terminal (not a pipe, a file, CI or a SLURM log)."""
    return bool(getattr(stream, "isatty", lambda: False)())


def live_progress(stream: TextIO, *columns: object, terminal: bool | None = None):
    """A rich ``Progress`` on ``stream`` with olmotrain's look: the columns given, then the time.

    ``terminal`` forces (or forbids) terminal rendering; by default it follows ``stream``.
    """
    from rich.console import Console
    from rich.progress import Progress, TimeElapsedColumn

    console = Console(
        file=stream,
        force_terminal=is_terminal(stream) if terminal is None else terminal,
        highlight=False,
    )
    return Progress(*columns, TimeElapsedColumn(), console=console, transient=False)
