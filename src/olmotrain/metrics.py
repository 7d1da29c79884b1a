"""The metric vocabulary: olmo-core's metric names, the files that hold them, and their readers.

Every metric has one name, the one olmo-core logs (and W&B shows): ``train/CE loss``,
``optim/LR (group 0)``, ``throughput/device/TPS``, ``eval/lm/<source>/CE loss`` (and ``PPL``,
plus olmotrain's ``BPB`` and ``tokens``), ``eval/downstream/<task> (<metric>)``, and olmotrain's
``data/tokens/<source>``. A run dir holds them in two files:

- ``metrics.jsonl``: one JSON object per logged step, ``{"step", "tokens", <metric>: value, ...}``
  (and ``samples`` where text was sampled). Run dirs of olmotrain before this vocabulary used
  short names (``loss``, ``lr``, ``eval/<source>``, ``bpb/<source>``, ...):
  :func:`read_metrics_log` translates them, so old run dirs read the same.
- ``checkpoints/metrics_step{N}.json``: every metric at permanent checkpoint N (olmo-core's
  ``MetricSaverCallback`` format, which the ladder reads).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

TRAIN_LOSS = "train/CE loss"
LR_PREFIX = "optim/LR"
LR = "optim/LR (group 0)"
"""The learning rate (olmo-core logs one per parameter group; they follow one schedule)."""
TPS = "throughput/device/TPS"
MFU = "throughput/device/MFU"
TOTAL_TOKENS = "throughput/total tokens"
SOURCE_TOKENS_PREFIX = "data/tokens/"
"""Tokens trained on per data source (olmotrain's), e.g. ``data/tokens/python_code``."""
EVAL_PREFIX = "eval/"
LM_PREFIX = "eval/lm/"
DOWNSTREAM_PREFIX = "eval/downstream/"
CE_LOSS, PPL, BPB = "CE loss", "PPL", "BPB"
"""Labels of a held-out source's metrics (and of a task's losses)."""
SCORED_TOKENS = "tokens"
"""Label of the number of target tokens a held-out source's loss averages over (what
``eval.heldout_tokens`` capped): ``eval/lm/<source>/tokens``."""

METRICS_LOG = "metrics.jsonl"
STEP_METRICS_FILE = "metrics_step{step}.json"
"""olmo-core's ``step_metrics_fname`` pattern (beside the checkpoints)."""

_LABELLED = re.compile(r"^(?P<name>.*) \((?P<label>[^()]*)\)$")


def step_metrics_file(step: int) -> str:
    """The file name of checkpoint ``step``'s metrics: ``metrics_step{N}.json``."""
    return STEP_METRICS_FILE.format(step=step)


def lm_metric(source: str, label: str = CE_LOSS) -> str:
    """``eval/lm/<source>/<label>``: a held-out source's metric."""
    return f"{LM_PREFIX}{source}/{label}"


def labelled(name: str, label: str) -> str:
    """``<name> (<label>)``: how olmo-core names one of a task's metrics."""
    return f"{name} ({label})"


def split_label(key: str) -> tuple[str, str] | None:
    """``(name, label)`` of ``<name> (<label>)``, else ``None``."""
    m = _LABELLED.match(key)
    return (m["name"], m["label"]) if m else None


def downstream_metric(task: str, label: str) -> str:
    """``eval/downstream/<task> (<label>)``: a downstream task's metric."""
    return labelled(f"{DOWNSTREAM_PREFIX}{task}", label)


def parse_lm(key: str) -> tuple[str, str] | None:
    """``(source, label)`` of an ``eval/lm/<source>/<label>`` key, else ``None``."""
    if not key.startswith(LM_PREFIX) or "/" not in key[len(LM_PREFIX) :]:
        return None
    source, _, label = key[len(LM_PREFIX) :].rpartition("/")
    return source, label


def parse_downstream(key: str) -> tuple[str, str] | None:
    """``(task, label)`` of an ``eval/downstream/<task> (<label>)`` key, else ``None``."""
    if not key.startswith(DOWNSTREAM_PREFIX):
        return None
    return split_label(key[len(DOWNSTREAM_PREFIX) :])


def by_source(metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The held-out metrics as ``{source: {label: value}}``."""
    return _grouped(metrics, parse_lm)


def by_task(metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The downstream metrics as ``{task: {label: value}}``."""
    return _grouped(metrics, parse_downstream)


def _grouped(
    metrics: dict[str, Any], parse: Callable[[str], tuple[str, str] | None]
) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        if parsed := parse(key):
            out.setdefault(parsed[0], {})[parsed[1]] = float(value)
    return out


def learning_rate(metrics: dict[str, Any]) -> float | None:
    """The learning rate among ``metrics`` (its first parameter group's), if logged."""
    return next((float(v) for k, v in metrics.items() if k.startswith(LR_PREFIX)), None)


def log_values(metrics: dict[str, Any]) -> dict[str, Any]:
    """What ``metrics.jsonl`` keeps of the metrics olmo-core logged at a step: the train loss,
    LR, throughput, tokens per source and every evaluation metric."""
    values: dict[str, Any] = {}
    for key, value in metrics.items():
        if key.startswith(SOURCE_TOKENS_PREFIX):
            values[key] = int(value)
        elif key in (TRAIN_LOSS, TPS, MFU) or key.startswith((LR_PREFIX, EVAL_PREFIX)):
            values[key] = float(value)
    return values


_OLD_NAMES = {"loss": TRAIN_LOSS, "lr": LR, "tokens_per_s": TPS, "mfu": MFU}
_OLD_PREFIXES = {"tokens/": SOURCE_TOKENS_PREFIX, "downstream/": DOWNSTREAM_PREFIX}


def from_old_names(record: dict[str, Any]) -> dict[str, Any]:
    """A ``metrics.jsonl`` record with the short names of older olmotrain (``loss``, ``lr``,
    ``tokens_per_s``, ``mfu``, ``tokens/<source>``, ``eval/<source>``, ``bpb/<source>``,
    ``downstream/<task> (<metric>)``) renamed to olmo-core's; a current record is unchanged."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        out[_new_name(key)] = value
    return out


def _new_name(key: str) -> str:
    if key in _OLD_NAMES:
        return _OLD_NAMES[key]
    for old, new in _OLD_PREFIXES.items():
        if key.startswith(old):
            return new + key[len(old) :]
    if key.startswith("bpb/"):
        return lm_metric(key[len("bpb/") :], BPB)
    if key.startswith(EVAL_PREFIX) and "/" not in key[len(EVAL_PREFIX) :]:
        return lm_metric(key[len(EVAL_PREFIX) :], CE_LOSS)  # eval/<source>: its CE loss
    return key


def read_metrics_log(path: Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl``, in olmo-core's names whatever olmotrain wrote them (a
    torn last line, from a kill, is ignored)."""
    records = []
    if not path.exists():
        return records
    for line in path.read_text().splitlines():
        try:
            records.append(from_old_names(json.loads(line)))
        except json.JSONDecodeError:
            break
    return records


def last_value(records: Iterable[dict[str, Any]], key: str) -> Any:
    """The latest value of ``key`` among ``records`` (in order), ``None`` if none has it."""
    return next((r[key] for r in reversed(list(records)) if key in r), None)


def read_step_metrics(path: Path) -> dict[str, Any]:
    """A ``metrics_step{N}.json`` (empty when missing or unreadable)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
