"""OmegaConf resolvers (``${olmotrain.*:...}``) for the few values that must exist inside the
composed config itself: the sequence length, shipped files, a SLURM job's world size and device,
and a sweep's directory name.

Everything derived from the model (batch, LR, duration, schedule, checkpoints) is the plan's, not
the config's: :func:`olmotrain.plan.derive_plan` computes it once from the typed run config.
Resolvers are registered when this module is imported (:mod:`olmotrain.config.compose` imports
it), are module-level functions so Hydra can pickle them into submitit jobs, and are never
cached: a cache would leak one sweep job's values into the next.
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from olmotrain.chinchilla import DEFAULT_SEQUENCE_LENGTH
from olmotrain.config.naming import sweep_name as name_sweep
from olmotrain.errors import UserError
from olmotrain.paths import package_resource


def sequence_length(data_sequence_length: int | None) -> int:
    """The data's context when it asks for one, else the plan's fixed 8,192."""
    if data_sequence_length is None:
        return DEFAULT_SEQUENCE_LENGTH
    return int(data_sequence_length)


def package_file(package: str, relative: str) -> str:
    """Absolute path of a file shipped inside an installed package (found without importing it)."""
    path = package_resource(package, relative)
    if path is None:
        raise UserError(f"{relative} is not installed with package '{package}'; run `make setup`")
    return str(path)


def world_size(nodes: int, gpus_per_node: int, tasks_per_node: int) -> int:
    """Ranks of a cluster job: one per GPU, or ``tasks_per_node`` CPU ranks, on every node."""
    if nodes < 1:
        raise UserError(f"cluster.nodes={nodes} must be at least 1")
    if gpus_per_node < 0:
        raise UserError(f"cluster.gpus_per_node={gpus_per_node} must be 0 (CPU) or more")
    if tasks_per_node < 1:
        raise UserError(f"cluster.tasks_per_node={tasks_per_node} must be at least 1")
    return nodes * (gpus_per_node or tasks_per_node)


def cluster_device(gpus_per_node: int) -> str:
    """The device of a cluster job's ranks: decided by what it asks for, not by this machine."""
    return "cuda" if gpus_per_node > 0 else "cpu"


def sweep_name(explicit: str | None, task_overrides: Any) -> str:
    """The sweep dir's name (see :func:`olmotrain.config.naming.sweep_name`)."""
    return name_sweep(explicit, [str(o) for o in task_overrides])


RESOLVERS = {
    "sequence_length": sequence_length,
    "package_file": package_file,
    "world_size": world_size,
    "cluster_device": cluster_device,
    "sweep_name": sweep_name,
}


def register_resolvers() -> None:
    """Register every ``olmotrain.*`` resolver once (safe to call repeatedly)."""
    for name, fn in RESOLVERS.items():
        if not OmegaConf.has_resolver(f"olmotrain.{name}"):
            OmegaConf.register_new_resolver(f"olmotrain.{name}", fn)


register_resolvers()
