"""How olmotrain talks to a person: logs on stderr, live progress (rich) on a terminal.

stdout carries only what a command is for (a plan, a table, JSON); everything else goes to
stderr. Long work (preparing data, evaluating, training) shows one rich progress display on a
terminal and nothing but its notes elsewhere, so CI and SLURM logs stay readable.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import TextIO

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""One format for every log line, olmotrain's and olmo-core's (the rank is added on multi-rank runs)."""

QUIET_LOGGERS = {
    # olmo-core's start-up diary: env vars it sets, each layer's attention backend, the model
    # dump (the plan shows the model), optimizer groups, dataset indexing. Not news to a person.
    "olmo_core.train": logging.WARNING,  # only "Using distributed backend ..."
    "olmo_core.utils": logging.WARNING,
    "olmo_core.distributed.utils": logging.WARNING,
    "olmo_core.nn.attention": logging.WARNING,
    "olmo_core.nn.transformer.config": logging.WARNING,
    "olmo_core.optim.config": logging.WARNING,
    "olmo_core.data.numpy_dataset": logging.WARNING,
    # Its per-source tables, ~30 lines a run: the plan and the run's report show each source's share.
    "olmo_core.data.source_mixture": logging.WARNING,
    "olmo_core.nn.hf.checkpoint": logging.ERROR,  # "accelerate not installed": harmless
    # An optional NVIDIA library olmo-core probes for at import; its absence is not news.
    "olmo_core.nn.attention.te_attn_api": logging.ERROR,
    "datasets": logging.WARNING,  # ai2-olmo-eval's task loader
    # "Found credentials in environment variables": said at every remote file's first request.
    "botocore.credentials": logging.WARNING,
    "botocore.configprovider": logging.WARNING,
}
"""Loggers whose records below a level are dropped (by a filter: olmo-core *prints* what a
logger's level would refuse, so raising the level would move the chatter to stdout)."""


class _Quiet(logging.Filter):
    """Drops records below ``level``, and olmo-core's misleading thread-count warning."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        # "Will skip setting OMP_NUM_THREADS since it's already set to '8'" names the value
        # olmo-core wanted, not the one in force; olmotrain sets the threads itself.
        if str(record.msg).startswith("Will skip setting env var 'OMP_NUM_THREADS'"):
            return False
        return record.levelno >= self.level


def setup_logging(level: int = logging.INFO) -> None:
    """Logs go to stderr in one format, without library chatter; call it before olmo-core's import.

    stdout carries only the plan, a report, a table or JSON.
    """
    logging.basicConfig(level=level, stream=sys.stderr, datefmt="%H:%M:%S", format=LOG_FORMAT)
    quiet_libraries()


def quiet_libraries() -> None:
    """Library chatter off (:data:`QUIET_LOGGERS`, torch's single-process checkpoint warning,
    progress bars); prints nothing, so every command calls it first, before olmo-core's import."""
    for name, quiet in QUIET_LOGGERS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Quiet) for f in logger.filters):
            logger.addFilter(_Quiet(quiet))
    # torch's checkpoint reader warns on every single-process load, which is the normal case here.
    warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable")
    quiet_progress_bars()


def quiet_progress_bars() -> None:
    """No "Loading weights" / "Writing model shards" bars from transformers and huggingface_hub:
    olmotrain reports what it loaded and wrote in its own lines."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "huggingface_hub" in sys.modules:  # read at import: tell an imported one directly
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


class _StderrHandler(logging.StreamHandler):
    """A handler on whatever ``sys.stderr`` is when it emits (so a live display that wraps
    stderr prints log lines above itself instead of being torn by them)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def logs_to_stderr() -> None:
    """Move every root log handler's output to stderr, keeping its format and filters.

    olmo-core's ``prepare_training_environment`` logs to stdout in a format of its own;
    olmotrain keeps stdout for what a command is for (the report, a table, JSON) and every log
    line in :data:`LOG_FORMAT`. Its rank filter (only rank 0 logs INFO) is kept.
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, _StderrHandler):
            continue
        new = _StderrHandler(sys.stderr)
        new.setLevel(old.level)
        new.setFormatter(logging.Formatter(rank_format(), "%H:%M:%S"))
        for f in old.filters:
            new.addFilter(f)
        root.removeHandler(old)
        root.addHandler(new)


def rank_format() -> str:
    """:data:`LOG_FORMAT`, with ``[rank R]`` after the time when several ranks share a log."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return LOG_FORMAT.replace(
            " %(levelname)s", f" [rank {os.environ.get('RANK', '?')}] %(levelname)s"
        )
    return LOG_FORMAT


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
