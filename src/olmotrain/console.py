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
