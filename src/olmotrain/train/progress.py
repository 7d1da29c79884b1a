"""Watching a run: one live display on a terminal, plain lines everywhere else.

On a terminal (rank 0's stderr), a rich progress bar: step/total, tokens, loss, LR, tokens/s,
MFU (on GPU, from olmo-core's speed monitor and the device's peak) and the ETA. In CI, SLURM
logs or a pipe: one plain line every ``train.log_interval`` steps with the same fields, e.g.
``[step=120/256] tokens=983,040 loss=5.317 lr=0.0087 tokens/s=6,518 eta=1m24s``. Evaluation
results get one line each time the evaluators run. It replaces olmo-core's console logger, so a
run prints each step once.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any, ClassVar

from olmo_core.distributed.utils import get_rank
from olmo_core.train.callbacks import ConsoleLoggerCallback
from olmo_core.utils import format_timedelta

from olmotrain.console import is_terminal, live_progress
from olmotrain.metrics import (
    BPB,
    CE_LOSS,
    EVAL_PREFIX,
    MFU,
    TPS,
    TRAIN_LOSS,
    by_source,
    by_task,
    learning_rate,
)


@dataclass
class ProgressCallback(ConsoleLoggerCallback):
    """Progress of a training run on rank 0 (see the module docstring). A subclass of
    olmo-core's console logger, as olmo-core asks of replacements; the ETA, throughput and MFU
    are olmo-core's own (``trainer.training_progress``, the speed monitor)."""

    priority: ClassVar[int] = -3  # after the speed monitor has recorded its throughput

    total_steps: int = 0
    live: bool | None = None
    """Force the live display on (or off); ``None``: on when stderr is a terminal."""
    _display: Any = field(default=None, repr=False)
    _task: Any = field(default=None, repr=False)
    _last: dict[str, float] = field(default_factory=dict, repr=False)

    def pre_train(self) -> None:
        if get_rank() != 0 or not (self.live if self.live is not None else is_terminal(sys.stderr)):
            return
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn

        self._display = live_progress(
            sys.stderr, TextColumn("train"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
        )  # fmt: skip
        self._task = self._display.add_task(
            "train", total=self.total_steps, completed=self.trainer.global_step, info=""
        )
        self._display.start()

    def post_step(self) -> None:  # every step is shown once, from log_metrics
        pass

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        if get_rank() != 0:
            return
        self._last.update({k: v for k, v in metrics.items() if k in (TRAIN_LOSS, TPS, MFU)})
        lr = learning_rate(metrics)
        if lr is not None:
            self._last["lr"] = lr
        evals = {k: v for k, v in metrics.items() if k.startswith(EVAL_PREFIX)}
        if self._display is not None:
            self._display.update(self._task, completed=step, info=self._fields(step))
            if evals:
                self._display.console.print(_eval_line(step, evals), markup=False)
            return
        if TRAIN_LOSS in metrics and (
            step % max(1, self.log_interval) == 0 or step == self.total_steps
        ):
            print(
                f"[step={step}/{self.total_steps}] {self._fields(step)}",
                file=sys.stderr,
                flush=True,
            )
        if evals:
            print(_eval_line(step, evals), file=sys.stderr, flush=True)

    def post_train(self) -> None:
        if self._display is not None:
            self._display.stop()
            self._display = None

    def _fields(self, step: int) -> str:
        last = self._last
        parts = [f"tokens={step * self.trainer.global_batch_size:,}"]
        if TRAIN_LOSS in last:
            parts.append(f"loss={last[TRAIN_LOSS]:.3f}")
        if "lr" in last:
            parts.append(f"lr={last['lr']:.3g}")
        if TPS in last:
            parts.append(f"tokens/s={last[TPS]:,.0f}")
        if MFU in last and math.isfinite(last[MFU]):
            parts.append(f"MFU={last[MFU]:.1f}%")
        eta = self.trainer.training_progress.time_remaining
        parts.append(f"eta={format_timedelta(eta).replace(', ', '') if eta is not None else '?'}")
        return " ".join(parts)


def _eval_line(step: int, evals: dict[str, float]) -> str:
    """``eval at step N: python_code CE 4.818 BPB 1.234; arc_easy (accuracy) 0.256; ...``."""
    parts = []
    for source, values in sorted(by_source(evals).items()):
        text = " ".join(f"{m} {values[m]:.3f}" for m in (CE_LOSS, BPB) if m in values)
        parts.append(f"{source} {text}")
    for task, values in sorted(by_task(evals).items()):
        label = next((m for m in HEADLINE if m in values), None)
        if label is not None:
            parts.append(f"{task} {label} {values[label]:.3f}")
    return f"eval at step {step}: " + "; ".join(parts)


HEADLINE = ("length-normalized accuracy", "accuracy", "F1 score", BPB, CE_LOSS)
"""The metric shown per downstream task in the progress line (the first it has)."""
