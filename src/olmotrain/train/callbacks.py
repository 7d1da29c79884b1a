"""The olmo-core callbacks olmotrain adds: ``metrics.jsonl``, tokens seen per data source, and
checkpoint-on-preemption for cluster jobs.

olmo-core's ``MetricSaverCallback`` writes JSON snapshots; researchers want the whole curve, one
JSON line per logged step, that survives a crash and a resume without duplicate or stale steps.
For data-mixing work they also want to see what each source actually contributed, step by step.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from olmo_core.distributed.utils import get_rank
from olmo_core.train.callbacks import Callback, EvaluatorCallback
from olmo_core.train.callbacks import WandBCallback as _OlmoWandB
from olmo_core.train.common import ReduceType

from olmotrain.metrics import SOURCE_TOKENS_PREFIX, log_values, read_metrics_log
from olmotrain.paths import write_atomically

log = logging.getLogger("olmotrain")

WANDB_API_KEY = "WANDB_API_KEY"


def append_whole_line(path: Path, line: str) -> None:
    """Append ``line`` or nothing: a write cut short by a full disk is taken back, so the log
    keeps whole lines (one unbuffered write, truncated to its old end on failure)."""
    data = line.encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        end = os.lseek(fd, 0, os.SEEK_END)
        try:
            done = 0
            while done < len(data):
                done += os.write(fd, data[done:])
        except OSError:
            os.ftruncate(fd, end)
            raise
    finally:
        os.close(fd)


@dataclass
class MetricsLogCallback(Callback):
    """Append ``{step, tokens, <metric>: value...}`` per logged step to ``path``: the train loss,
    LR, throughput, tokens per source and evaluations, in olmo-core's names
    (:func:`olmotrain.metrics.log_values`)."""

    path: str = "metrics.jsonl"
    records: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def pre_train(self):
        if get_rank() != 0:
            return
        # After a kill, the log may hold steps past the checkpoint we resumed from: drop them so
        # the file is one consistent history.
        # (A log of an older olmotrain is rewritten in the current names.)
        kept = [r for r in read_metrics_log(Path(self.path)) if r["step"] <= self.step]
        self.records = kept
        self._rewrite()

    def log_metrics(self, step: int, metrics: dict[str, float]):
        if get_rank() != 0:
            return
        values = log_values(metrics)
        if values:
            self.add(step, values)

    def add(self, step: int, values: dict[str, Any]) -> None:
        """Merge ``values`` into ``step``'s record (metrics logged in several calls for one step,
        e.g. the final eval; text samples), or start the step's record."""
        if self.records and self.records[-1]["step"] == step:
            self.records[-1].update(values)
            self._rewrite()
            return
        record = {"step": step, "tokens": step * self.trainer.global_batch_size, **values}
        self.records.append(record)
        append_whole_line(Path(self.path), json.dumps(record) + "\n")

    def _rewrite(self):
        write_atomically(Path(self.path), "".join(json.dumps(r) + "\n" for r in self.records))


@dataclass
class SourceTokensCallback(Callback):
    """Record ``data/tokens/<source>``: tokens each step trained on from each source, over all ranks.

    olmo-core's batches carry their instance indices; the dataset's path offsets map an index to
    its token file, and ``source_of_path`` maps the file to its source.
    """

    source_of_path: dict[str, str] = field(default_factory=dict)
    _ends: np.ndarray | None = field(default=None, repr=False)
    _sources: list[str] = field(default_factory=list, repr=False)

    def pre_train(self):
        dataset = self.trainer.data_loader.dataset
        by_path = {_norm(p): s for p, s in self.source_of_path.items()}
        self._ends = np.array([end for _, end in dataset.offsets])
        self._sources = [by_path.get(_norm(str(p)), "other") for p in dataset.paths]

    def pre_step(self, batch: dict[str, Any]):
        if self._ends is None or "index" not in batch:
            return
        arrays = np.searchsorted(self._ends, batch["index"].cpu().numpy(), side="right")
        per_instance = int(batch["input_ids"].shape[1])
        counts = dict.fromkeys(self._sources, 0)
        for a in arrays.tolist():
            counts[self._sources[a]] += per_instance
        for source, tokens in counts.items():
            self.trainer.record_metric(
                f"{SOURCE_TOKENS_PREFIX}{source}", float(tokens), reduce_type=ReduceType.sum
            )


def _norm(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)


@dataclass
class PreemptionCallback(Callback):
    """SLURM's warning signal (USR2: preemption, or the time limit is near) stops the run the way
    SIGTERM does in olmo-core: every rank stops at the same step and saves a checkpoint.

    submitit's own USR2 handler requeues at once, without a checkpoint; the cluster job calls it
    after training has stopped (see :mod:`olmotrain.launch.slurm`).
    """

    priority: ClassVar[int] = 100  # post_train before the evaluators'

    signaled: bool = False
    _previous: Any = field(default=None, repr=False)

    def pre_train(self):
        self._previous = signal.signal(signal.SIGUSR2, self._on_signal)

    def _on_signal(self, signum, frame):
        del frame
        self.signaled = True
        self.trainer.cancel_run(f"{signal.Signals(signum).name}: preemption or time limit")

    def post_train(self):
        if self._previous is not None:
            signal.signal(signal.SIGUSR2, self._previous)
        if self.trainer.is_canceled:  # the same on every rank (olmo-core syncs it)
            # The grace period is for the checkpoint and the requeue, not the final held-out eval
            # (minutes on a large model): the run evaluates when it really finishes.
            for callback in self.trainer.callbacks.values():
                if isinstance(callback, EvaluatorCallback):
                    callback.eval_on_finish = False


@dataclass
class WandBCallback(_OlmoWandB):
    """olmo-core's W&B callback, made safe for long runs and usable without a key.

    - One W&B run per run dir: ``run_id`` (the run dir's, :meth:`RunDir.wandb_id`) goes to
      ``wandb.init`` with ``resume="allow"``, so a resumed or requeued run continues its W&B run,
      and each point of a sweep run in one process logs to its own (olmo-core's ``wandb.init``
      takes no id; a process-wide ``WANDB_RUN_ID`` would send every point to the first's run).
    - olmo-core demands ``WANDB_API_KEY`` even offline; without one (and no ``WANDB_MODE``) this
      runs W&B offline (synced later with ``wandb sync``), and never asks W&B's API for cancel
      tags (that needs the key). With a key it is online as before.
    - olmo-core 3.0.0 calls ``wandb.finish(exit_code=..., quiet=True)``; wandb 0.31 removed
      ``quiet``, so every W&B run crashed when it closed.
    - On SLURM's SIGTERM (a requeue, a preemption) the W&B service process dies first; the next
      ``wandb.log`` then raised and took the run down before olmo-core could save its checkpoint.
      A W&B failure now only stops W&B (``metrics.jsonl`` keeps every step).
    """

    run_id: str | None = None

    def pre_train(self):
        if not (self.enabled and get_rank() == 0):
            return
        # olmo-core's pre_train, with the run's id and without its key check.
        wandb_dir = self.trainer.work_dir / "wandb"
        wandb_dir.mkdir(parents=True, exist_ok=True)
        offline = not os.environ.get(WANDB_API_KEY) and not os.environ.get("WANDB_MODE")
        self.wandb.init(
            dir=wandb_dir,
            id=self.run_id,
            resume="allow",
            mode="offline" if offline else None,
            project=self.project,
            entity=self.entity,
            group=self.group,
            name=self.name,
            tags=self.tags,
            notes=self.notes,
            config=self.config,
        )
        self._run_path = self.run.path  # type: ignore[attr-defined]

    def post_step(self):
        if os.environ.get(WANDB_API_KEY):  # cancel tags live on W&B's server
            super().post_step()

    def log_metrics(self, step: int, metrics: dict[str, float]):
        try:
            super().log_metrics(step, metrics)
        except Exception as exc:  # noqa: BLE001 - logging must never stop training
            self._give_up(exc)

    def finalize(self, exit_code: int = 0):
        if not self.finalized:
            self._finalized = True
            try:
                self.wandb.finish(exit_code=exit_code)
            except Exception as exc:  # noqa: BLE001
                self._give_up(exc)

    def _give_up(self, exc: Exception) -> None:
        log.warning(
            "W&B stopped working (%s: %s); training goes on without it", type(exc).__name__, exc
        )
        self.enabled = False


@dataclass
class SamplesCallback(Callback):
    """Complete ``prompts`` with the model being trained (greedy), at ``steps`` and the end: printed,
    merged into that step's ``metrics.jsonl`` record (``samples``) and logged to W&B as a table.

    Every rank runs the same forward passes (the model may be sharded); rank 0 reports.
    """

    prompts: list[str] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    max_new_tokens: int = 32
    tokenizer_path: str = ""
    vocab_size: int = 0
    eos_id: int | None = None
    _tokenizer: Any = field(default=None, repr=False)

    def pre_train(self):
        from olmotrain.data.tokenizer import load_tokenizer

        self._tokenizer = load_tokenizer(self.tokenizer_path)

    def post_step(self):
        if self.step in self.steps:
            self.sample()

    def sample(self) -> list[dict[str, str]]:
        from olmotrain.model.sample import Sampling, sample_tokens

        model = self.trainer.train_module.model
        was_training = model.training
        model.eval()
        samples = []
        try:
            for prompt in self.prompts:
                ids = self._tokenizer.encode(prompt, add_special_tokens=False).ids
                new = list(
                    sample_tokens(
                        model, ids, Sampling(self.max_new_tokens), self.vocab_size, self.eos_id
                    )
                )
                text = self._tokenizer.decode([t for t in new if t != self.eos_id])
                samples.append({"prompt": prompt, "completion": text})
        finally:
            model.train(was_training)
        if get_rank() == 0:
            for s in samples:
                log.info("sample at step %d: %r -> %r", self.step, s["prompt"], s["completion"])
            metrics_log = self.trainer.callbacks.get("metrics_log")
            if isinstance(metrics_log, MetricsLogCallback):
                metrics_log.add(self.step, {"samples": samples})
            wandb = self.trainer.callbacks.get("wandb")
            if isinstance(wandb, WandBCallback) and wandb.enabled:
                try:
                    table = wandb.wandb.Table(
                        columns=["step", "prompt", "completion"],
                        data=[[self.step, s["prompt"], s["completion"]] for s in samples],
                    )
                    wandb.wandb.log({"samples": table}, step=self.step)
                except Exception as exc:  # noqa: BLE001 - logging must never stop training
                    wandb._give_up(exc)
        return samples


@dataclass
class HFExportCallback(Callback):
    """``train.export_hf``: export every permanent checkpoint to ``RUN/hf/stepN`` as it is saved,
    parity check included (``python -m olmotrain.export`` in a child process on rank 0, so the
    conversion never touches the trainer's distributed state or memory). A failed export is
    reported and training goes on; the checkpoint stays and can be exported later."""

    steps: list[int] = field(default_factory=list)
    output: str = "hf"

    def post_checkpoint_saved(self, path):
        import subprocess
        import sys

        if get_rank() != 0 or self.step not in self.steps:
            return
        out = Path(self.output) / f"step{self.step}"
        cmd = [sys.executable, "-m", "olmotrain.export", str(path), "--output", str(out)]
        done = subprocess.run(cmd + ["--overwrite", "--json"], capture_output=True, text=True)
        if done.returncode == 0:
            report = json.loads(done.stdout.strip().splitlines()[-1])
            log.info(
                "exported step %d to %s (max |delta logit| %.2e)",
                self.step,
                out,
                report["max_abs_logit_diff"],
            )
        else:
            lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
            log.error("HF export of step %d failed: %s", self.step, lines[-1] if lines else "?")
