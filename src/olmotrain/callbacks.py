"""The one olmo-core callback olmotrain adds: a ``metrics.jsonl`` a script can read.

olmo-core's ``MetricSaverCallback`` writes JSON snapshots; researchers want the whole curve, one
JSON line per logged step, that survives a crash and a resume without duplicate or stale steps.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from olmo_core.distributed.utils import get_rank
from olmo_core.train.callbacks import Callback

from olmotrain.rundir import read_metrics

TRAIN_LOSS = "train/CE loss"
EVAL_PREFIX = "eval/lm/"


@dataclass
class MetricsLogCallback(Callback):
    """Append ``{step, tokens, loss, lr, tokens_per_s, eval/...}`` per logged step to ``path``."""

    path: str = "metrics.jsonl"
    records: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def pre_train(self):
        if get_rank() != 0:
            return
        # After a kill, the log may hold steps past the checkpoint we resumed from: drop them so
        # the file is one consistent history.
        path = Path(self.path)
        kept = [r for r in read_metrics(path) if r["step"] <= self.step]
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(tmp, path)
        self.records = kept

    def log_metrics(self, step: int, metrics: dict[str, float]):
        if get_rank() != 0:
            return
        record: dict[str, Any] = {"step": step, "tokens": step * self.trainer.global_batch_size}
        if TRAIN_LOSS in metrics:
            record["loss"] = float(metrics[TRAIN_LOSS])
        lr = next((v for k, v in metrics.items() if k.startswith("optim/LR")), None)
        if lr is not None:
            record["lr"] = float(lr)
        if "throughput/device/TPS" in metrics:
            record["tokens_per_s"] = float(metrics["throughput/device/TPS"])
        for key, value in metrics.items():
            if key.startswith(EVAL_PREFIX) and key.endswith("/CE loss"):
                record[f"eval/{key[len(EVAL_PREFIX) : -len('/CE loss')]}"] = float(value)
        if len(record) == 2:
            return
        # Merge metrics logged in several calls for the same step (e.g. the final eval).
        if self.records and self.records[-1]["step"] == step:
            self.records[-1].update(record)
            self._rewrite()
            return
        self.records.append(record)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def _rewrite(self):
        tmp = Path(self.path).with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in self.records))
        os.replace(tmp, self.path)
