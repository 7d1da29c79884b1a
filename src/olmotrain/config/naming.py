"""Which settings say *what* a run trains and which only *where or how*, and the names that follow.

A run dir may be resumed with other devices, sharding or log settings (:data:`EXECUTION_KEYS`),
but not with another model, data or schedule. A ``-m`` sweep is named by its training overrides
(:func:`sweep_name`), so re-running the same sweep finds the same directory. Pure functions: the
sweep-dir resolver and the launchers share them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from olmotrain.errors import UserError

EXECUTION_KEYS = {
    "run_name", "output_root", "data_root", "dry_run", "fresh", "sweep_name", "wandb", "cluster",
    "parallel", "eval",
    "train.log_interval", "train.eval_interval", "train.ephemeral_checkpoint_interval",
    "train.save_checkpoints", "train.sample_prompts", "train.sample_interval",
    "train.sample_max_new_tokens", "train.export_hf",
    "train.micro_batch_size",
    "tokenizer.path", "data.num_workers", "model.attn_backend",
}  # fmt: skip
"""Keys that may change between invocations of the same run: where and how it runs, logs and is
evaluated (devices, sharding, micro-batching, kernels, evaluators), not what it trains."""

NOT_NAMING = EXECUTION_KEYS | {"hydra", "sweep_name"}
"""Override keys that never name a sweep or a point; two points differing only in them would
be the same run."""


def override_key(override: str) -> str:
    """The key of a ``key=value`` override (``+``/``++``/``~`` prefixes dropped)."""
    return override.split("=", 1)[0].lstrip("+~")


def names_run(key: str) -> bool:
    """Whether ``key`` (``cluster.nodes``, ``model``, ...) changes what a run trains."""
    parts = key.split(".")
    return not any(".".join(parts[: i + 1]) in NOT_NAMING for i in range(len(parts)))


def slug(text: str) -> str:
    """``text`` with every character a directory name should not hold replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", text)


def sweep_name(explicit: str | None, task_overrides: Sequence[str]) -> str:
    """The sweep's name: ``sweep_name`` when given, else its training overrides, sorted.

    ``-m model=olmo2_1m,olmo2_14m seed=1`` -> ``model=olmo2_1m,olmo2_14m+seed=1``; long names
    are cut and end in a hash of the whole, so different sweeps never share a name.
    """
    if explicit:
        if "/" in explicit or explicit.startswith("."):
            raise UserError(f"sweep_name={explicit} must be a plain name (no '/', no leading '.')")
        return explicit
    parts = sorted(o for o in task_overrides if names_run(override_key(o)))
    return shorten(slug("+".join(parts)) or "default")


def shorten(name: str) -> str:
    """``name`` if at most 120 characters, else its first 100 and a hash of the whole: a
    directory name may not exceed 255 bytes, and different names stay different."""
    if len(name) <= 120:
        return name
    return f"{name[:100]}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"


LADDER_SWEEP_PREFIX = "ladder-"
"""A ladder's points train in the sweep ``ladder-<name>[-<tag>]`` (:mod:`olmotrain.ladder`)."""


def train_again_hint(sweep_name: str | None) -> str:
    """How to train a finished run again. A ladder point cannot take another ``run_name`` (the
    ladder names its points), so it is told the ladder's ``tag=``: a new set of runs beside these."""
    if sweep_name and sweep_name.startswith(LADDER_SWEEP_PREFIX):
        return (
            f"a point of the ladder sweep {sweep_name}: to train the ladder again as a new set of "
            "runs, keeping these, run python -m olmotrain.ladder run LADDER tag=NEW"
        )
    return "use another run_name to train again"
