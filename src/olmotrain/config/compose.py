"""The conf/ tree, composed as ``train.py`` composes it, and the typed run config it becomes.

A composed config is a Hydra ``DictConfig`` whose ``derived.*`` values are resolver
interpolations (registered by :mod:`olmotrain.plan.resolvers`; resolving is the plan's job).
Once resolved, the run config travels as a :class:`~olmotrain.config.schema.RunConfig`:
typed dataclasses, ``config.train.sequence_length``. A run dir's frozen ``config.yaml`` loads
back into the same types; plain dicts are made only for YAML, JSON and olmo-core's ConfigSaver.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from olmotrain.config.schema import RunConfig, register_schema
from olmotrain.errors import UserError

CONFIG_DIR = Path(__file__).resolve().parents[3] / "conf"
"""The repository's conf/ tree (the package is installed from the repository, editable)."""

GROUPS = ("model", "tokenizer", "data", "schedule", "cluster", "parallel", "experiment")

register_schema()


def group_options(group: str, config_dir: Path = CONFIG_DIR) -> list[str]:
    """The option names of a config group, sorted."""
    return sorted(p.stem for p in (config_dir / group).glob("*.yaml"))


def compose(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Compose the run config exactly as ``python train.py OVERRIDES`` would (unresolved)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


def to_dict(config: RunConfig) -> dict[str, Any]:
    """The run config as plain Python (for YAML, JSON and olmo-core's ConfigSaver)."""
    return dataclasses.asdict(config)


def from_dict(values: dict[str, Any]) -> RunConfig:
    """A resolved run config (a dict, e.g. a run dir's ``config.yaml``) as typed objects.

    Keys the schema gained since the dict was written get their defaults, so older run dirs
    load; a key the schema does not know, or a value of the wrong type, raises OmegaConf's error.
    """
    merged = OmegaConf.merge(OmegaConf.structured(RunConfig), values)
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def load_run_config(path: Path) -> RunConfig:
    """A run dir's frozen ``config.yaml`` as a :class:`RunConfig`; one clear error if unreadable."""
    try:
        values = yaml.safe_load(path.read_text()) or {}
        return from_dict(values)
    except (yaml.YAMLError, OmegaConfBaseException, TypeError) as exc:
        raise UserError(
            f"{path} is not a readable olmotrain run config ({type(exc).__name__}); "
            "move the run dir aside or pass fresh=true"
        ) from exc


def save_run_config(config: RunConfig, path: Path) -> None:
    """Write ``config`` as ``path`` atomically; nothing is written when it already says the same."""
    text = yaml.safe_dump(to_dict(config), sort_keys=False)
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
