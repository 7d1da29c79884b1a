"""Evaluating a saved checkpoint: olmo-core's ``Trainer.eval_checkpoints`` with the run's evaluators.

The run's own config rebuilds its model and train module; the evaluators are the ones training
uses (:mod:`olmotrain.eval.evaluators`: held-out CE/PPL/BPB per source, downstream tasks), run
once on the checkpoint's weights in this process, on CPU or GPU, whatever the number of ranks
that wrote it. The results are merged into the checkpoint's ``metrics_step{N}.json`` (olmo-core's
format, which the ladder reads): values it already records are kept unless asked to overwrite
(:func:`merge_metrics`), with one line where they differ. Nothing else in the run dir changes; olmo-core's own scratch
files go to a temporary directory.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from olmo_core.train.callbacks import Callback

from olmotrain.config.schema import RunConfig
from olmotrain.data.mix import eval_files
from olmotrain.data.remote.localize import localized
from olmotrain.data.tokenizer import local_tokenizer_file
from olmotrain.errors import UserError
from olmotrain.eval.tasks import expand_tasks
from olmotrain.metrics import EVAL_PREFIX, TOTAL_TOKENS, by_source, by_task, read_step_metrics
from olmotrain.paths import write_atomically
from olmotrain.plan import Plan, derive_plan
from olmotrain.train.rundir import RunCheckpoint

log = logging.getLogger("olmotrain")


def with_evaluation(
    config: RunConfig,
    tasks: list[str] | None,
    limit: int | None,
    heldout: bool = True,
    heldout_tokens: int | None = None,
) -> RunConfig:
    """``config`` with the evaluation asked for (``None``: the run's own), checked.

    ``heldout=False`` drops the held-out sets; ``heldout_tokens`` replaces the run's
    ``eval.heldout_tokens`` (by default the run's own cap, so the numbers match training's)."""
    for flag, value in (("--limit", limit), ("--heldout-tokens", heldout_tokens)):
        if value is not None and value < 1:
            raise UserError(f"{flag} {value} must be at least 1")
    ev = dataclasses.replace(
        config.eval,
        downstream=list(config.eval.downstream if tasks is None else tasks),
        limit=config.eval.limit if limit is None else limit,
        heldout_tokens=config.eval.heldout_tokens if heldout_tokens is None else heldout_tokens,
    )
    expand_tasks(ev.downstream)  # unknown names: one line, before any model
    if ev.downstream:
        local_tokenizer_file(config.tokenizer, "downstream tasks")
    data = config.data if heldout else dataclasses.replace(config.data, eval={})
    if not ev.downstream and not eval_files(data):
        what = "--no-heldout was given" if not heldout else "it has no held-out data here"
        raise UserError(
            f"nothing to evaluate in run {config.run_name}: {what} and no task was asked for; "
            "pass --tasks core9 (or any task name)"
        )
    return localized(dataclasses.replace(config, eval=ev, data=data))


@dataclass
class _Collect(Callback):
    """Keeps the metrics the trainer logs (it logs once per evaluated checkpoint)."""

    metrics: dict[str, float] = field(default_factory=dict)

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self.metrics.update(metrics)


CPU_EVAL_LOGITS_BYTES = 64 * 2**20
"""On CPU a small model's forward pass over a downstream task's short, trimmed batches is bound
by memory traffic over its [batch, length, vocab] logits (and olmo-core's loss over them), so
their batches hold ~64 MiB of fp32 logits: for the 8k vocabulary and 512-token sequences, 4
sequences (measured here on sciq: 8.3 s at 4, 11.0 s at 8, 14.8 s at 16 sequences). On GPU: the
run's training micro-batch. Held-out sets always get the run's micro-batch (full sequences:
olmo2_14m ran about 2x faster per sequence at 16 than at 4)."""


def eval_batch_sequences(config: RunConfig, plan: Plan, device: str) -> int:
    """Sequences per forward pass when evaluating ``config``'s model (planned as ``plan``) on
    ``device``."""
    from olmotrain.model.build import padded_vocab_size
    from olmotrain.model.parallel import device_type

    if device_type(device) == "cuda":
        return plan.micro_batch_instances
    per_sequence = padded_vocab_size(config.tokenizer.vocab_size) * 4 * config.train.sequence_length
    return max(1, min(plan.micro_batch_instances, CPU_EVAL_LOGITS_BYTES // per_sequence))


def evaluate_checkpoint(
    target: RunCheckpoint,
    device: str = "auto",
    batch_sequences: int | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Evaluate ``target`` (its config's evaluation); returns the results object and merges them
    into its ``metrics_step{N}.json`` (:func:`merge_metrics`; ``overwrite``: this evaluation's
    values replace recorded ones). ``batch_sequences``: sequences of the run's length per
    forward pass (default: :func:`eval_batch_sequences`)."""
    from olmo_core.data import NumpyDataLoaderConfig
    from olmo_core.train import TrainerConfig

    from olmotrain.data.tokenizer import olmo_tokenizer_config
    from olmotrain.eval.evaluators import evaluator_callbacks
    from olmotrain.evaluate.malloc import keep_freed_memory
    from olmotrain.model.parallel import device_type
    from olmotrain.train.trainer import build_train_module, environment, train_module_config

    c, run_plan = target.config, target.run.plan()
    if device_type(device) == "cpu":
        keep_freed_memory()  # no page faults per batch (see olmotrain.evaluate.malloc)
    # One process, whatever wrote the checkpoint: olmo-core reshards on load.
    if batch_sequences is not None and batch_sequences < 1:
        raise UserError(f"--batch {batch_sequences} must be at least 1 sequence")
    # Held-out sets in the run's micro-batch, as in training: on CPU a batch of 4 full
    # sequences ran them about 2x slower than training's 16 (downstream tasks keep their own).
    tasks_batch = batch_sequences or eval_batch_sequences(c, run_plan, device)
    c = dataclasses.replace(
        c,
        cluster=dataclasses.replace(c.cluster, devices=1, device=device),
        parallel=dataclasses.replace(c.parallel, name="none"),
        train=dataclasses.replace(
            c.train, micro_batch_size=batch_sequences or run_plan.micro_batch_instances
        ),
    )
    plan = derive_plan(c)
    collect = _Collect()
    with tempfile.TemporaryDirectory(prefix="olmotrain-eval-") as scratch, environment(c) as dev:
        train_module = build_train_module(c, plan, dev, train_module_config(c, plan, dev))
        tokenizer = olmo_tokenizer_config(c.tokenizer)
        callbacks = evaluator_callbacks(
            c,
            [target.step],
            target.step,
            tokenizer,
            scratch,
            plan.micro_batch_instances,
            tasks_batch,
        )
        callbacks.pop("metric_saver")  # the merge below writes the run's file
        data_loader = NumpyDataLoaderConfig(
            global_batch_size=plan.batch_size_tokens,
            seed=c.seed,
            work_dir=scratch,
            ignore_fingerprint_mismatch=True,  # never iterated: it only carries trainer state
        ).build(
            _loader_dataset(c, plan, tokenizer, scratch),
            dp_process_group=train_module.dp_process_group,
        )
        config = TrainerConfig(
            save_folder=str(Path(scratch) / "save"),
            work_dir=scratch,
            checkpoints_to_eval=[str(target.path)],
        )
        for name, callback in {**callbacks, "collect": collect}.items():
            config = config.with_callback(name, callback)
        trainer = config.build(train_module, data_loader)
        trainer.eval_checkpoints()
        primary = _primary_metrics(trainer)
    results = _results(target, run_plan, collect.metrics, primary)
    kept = merge_metrics(target.metrics_path, collect.metrics, overwrite)
    if kept:
        log.warning(differs_line(target.metrics_path, kept, collect.metrics))
    return results


def _loader_dataset(c: RunConfig, plan: Plan, tokenizer: Any, work_dir: str) -> Any:
    """A dataset for the (never iterated) data loader the trainer needs: the held-out files,
    else the training data."""
    from olmo_core.data import NumpyFSLDatasetConfig

    from olmotrain.data.mix import dataset_config

    held_out = eval_files(c.data)
    if held_out:
        return NumpyFSLDatasetConfig(
            paths=[p for _, p in held_out],
            sequence_length=c.train.sequence_length,
            tokenizer=tokenizer,
            work_dir=work_dir,
        ).build()
    return dataset_config(
        c, plan.duration_tokens, plan.batch_size_tokens, tokenizer, work_dir
    ).build()


def _primary_metrics(trainer: Any) -> dict[str, str]:
    """Each downstream task's main metric label (its ai2-olmo-eval ``metric_type``)."""
    from olmo_core.train.callbacks.evaluator_callback import DownstreamEvaluator

    callback = trainer.callbacks.get("downstream_evaluator")
    if callback is None:
        return {}
    labels = DownstreamEvaluator.metric_type_to_label
    return {
        ev.label: labels[f"{ev.metric.metric_type}_v1"]
        for ev in callback.evaluators
        if ev.metric is not None
    }


def _results(
    target: RunCheckpoint, plan: Plan, metrics: dict[str, float], primary: dict[str, str]
) -> dict[str, Any]:
    """The results object: ``run``, ``step``, ``tokens``, ``lm`` ({source: {label: value}}) and
    ``downstream`` ({task: {"primary": {name, value} | None, "metrics": {label: value}}})."""
    ordered = dict(sorted(metrics.items()))
    downstream: dict[str, dict[str, Any]] = {}
    for task, values in by_task(ordered).items():
        name = primary.get(task)
        best = {"name": name, "value": values[name]} if name in values else None
        downstream[task] = {"primary": best, "metrics": values}
    tokens = metrics.get(TOTAL_TOKENS)
    return {
        "run": str(target.run.path),
        "step": target.step,
        "tokens": int(tokens) if tokens is not None else target.step * plan.batch_size_tokens,
        "lm": by_source(ordered),
        "downstream": downstream,
    }


SAME_REL_TOL = 1e-5
"""Recorded and new values this close are the same number (float32 losses, other kernels)."""


def merge_metrics(
    path: Path, metrics: dict[str, float], overwrite: bool = False
) -> dict[str, float]:
    """Add ``metrics``' eval values to a ``metrics_step{N}.json``, atomically: a value it has
    already recorded is kept (``overwrite``: replaced), so re-evaluating never silently
    replaces the number training wrote (which ``ladder collect`` reads). Returns the recorded
    values kept that differ from ``metrics``', by name."""
    saved = read_step_metrics(path)
    kept: dict[str, float] = {}
    for key, value in metrics.items():
        if not key.startswith(EVAL_PREFIX):
            continue
        old = saved.get(key)
        if old is None or overwrite:
            saved[key] = float(value)
        elif not math.isclose(float(old), float(value), rel_tol=SAME_REL_TOL):
            kept[key] = float(old)
    write_atomically(path, json.dumps(saved, sort_keys=True))
    return kept


def differs_line(path: Path, kept: dict[str, float], metrics: dict[str, float]) -> str:
    """One line: which recorded values ``path`` kept although this evaluation differs."""
    shown = "; ".join(
        f"{k} recorded {v:.6g}, now {float(metrics[k]):.6g}" for k, v in sorted(kept.items())[:3]
    )
    more = f" (and {len(kept) - 3} more)" if len(kept) > 3 else ""
    return (
        f"{path.name} keeps its recorded values where this evaluation differs: {shown}{more}; "
        "pass --overwrite to replace them"
    )
