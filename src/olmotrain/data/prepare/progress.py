"""What a prepare run did (counters for callers and tests), and its live progress on a terminal.

The display is rich's (olmotrain's one progress look, :func:`olmotrain.console.live_progress`):
one line per source with documents, tokens, tokens/s and the time, on a terminal only; notes
(resuming, up to date) are printed whenever the run is not quiet.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from olmotrain.console import is_terminal, live_progress


class Progress:
    """Progress of a run on a terminal, and what it did.

    ``enabled=None`` shows the live line on ``stream`` only when it is a terminal; ``quiet``
    shows nothing at all.
    """

    def __init__(
        self, enabled: bool | None = None, *, quiet: bool = False, stream: TextIO | None = None
    ) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.quiet = quiet
        self.enabled = (is_terminal(self.stream) if enabled is None else enabled) and not quiet
        self.documents = 0
        """Documents read (resumed ones included)."""
        self.tokens = 0
        """Tokens written (EOS included) by this run."""
        self.tokenized_documents = 0
        """Documents this run sent to the tokenizer (fewer than ``documents`` when resuming)."""
        self.reused_shards = 0
        self.reused_tokens = 0
        self.workers = 0
        """Tokenizer processes used (0: tokenized in this process)."""
        self.start = time.perf_counter()
        self._live: Any = None
        self._task: Any = None
        self._label = ""

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def note(self, message: str) -> None:
        """A one-line message on the stream (unless quiet), above the live line."""
        if self.quiet:
            return
        if self._live is not None:
            self._live.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=self.stream, flush=True)

    def begin(self, label: str) -> None:
        """Start counting ``label`` (a source) on the live line."""
        self._label = label
        if not self.enabled:
            return
        if self._live is None:
            from rich.progress import TextColumn

            self._live = live_progress(self.stream, TextColumn("{task.description}"), terminal=True)
            self._live.start()
            self._task = self._live.add_task(self._line(), total=None)
        else:  # one line for the whole run: counts are cumulative, the label is the source
            self._live.update(self._task, description=self._line())

    def add(self, documents: int = 0, tokens: int = 0, tokenized_documents: int = 0) -> None:
        self.documents += documents
        self.tokens += tokens
        self.tokenized_documents += tokenized_documents
        if self._task is not None:
            self._live.update(self._task, description=self._line())

    def finish(self) -> None:
        """Draw the last state and stop the live display."""
        if self._live is not None:
            if self._task is not None:
                self._live.update(self._task, description=self._line())
            self._live.stop()
            self._live, self._task = None, None

    def _line(self) -> str:
        rate = self.tokens / max(self.elapsed, 1e-9)
        return (
            f"{self._label}: {self.documents:,} docs, {self.tokens:,} tokens, {rate:,.0f} tokens/s"
        )
