"""Config composition: the conf/ tree, schema and resolvers, composed the way train.py does."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from olmotrain import resolvers  # noqa: F401  (registers the olmotrain.* resolvers)
from olmotrain.schema import register_schema

CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"
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
