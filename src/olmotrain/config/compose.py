"""The conf/ tree, composed as ``train.py`` composes it, and the typed run config it becomes.

A composed config is a Hydra ``DictConfig`` (a few values are interpolations of the resolvers in
:mod:`olmotrain.config.resolvers`). Once resolved (:func:`resolve`), the run config travels as a
:class:`~olmotrain.config.schema.RunConfig`: typed dataclasses, ``config.train.sequence_length``.
A run dir's frozen ``config.yaml`` loads back into the same types; plain dicts are made only for
YAML, JSON and olmo-core's ConfigSaver. What follows from the config is the plan's
(:func:`olmotrain.plan.derive_plan`), never stored in the config.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from olmotrain.config import resolvers  # noqa: F401  (registers the olmotrain.* resolvers)
from olmotrain.config.schema import RunConfig, TokenizerSchema, register_schema
from olmotrain.errors import UserError
from olmotrain.paths import write_atomically

CONFIG_DIR = Path(__file__).resolve().parents[3] / "conf"
"""The repository's conf/ tree (the package is installed from the repository, editable)."""

LEGACY_DERIVED = "derived"
"""The section of a run dir's ``config.yaml`` where olmotrain before plan.json kept the plan's numbers."""

GROUPS = ("model", "tokenizer", "data", "schedule", "cluster", "parallel", "experiment")

register_schema()


def group_options(group: str, config_dir: Path = CONFIG_DIR) -> list[str]:
    """The option names of a config group, sorted."""
    return sorted(p.stem for p in (config_dir / group).glob("*.yaml"))


def tokenizer_option(name: str, config_dir: Path = CONFIG_DIR) -> TokenizerSchema:
    """``conf/tokenizer/NAME.yaml`` resolved as ``train.py tokenizer=NAME`` resolves it (the
    run config's ``data_root`` and the olmotrain resolvers), for commands that need only the
    tokenizer (``prepare``). Composing the whole run config would clear a running Hydra app."""
    root = OmegaConf.load(config_dir / "config.yaml")
    values = OmegaConf.load(config_dir / "tokenizer" / f"{name}.yaml")
    cfg = OmegaConf.create(
        {
            "data_root": root.data_root,
            "tokenizer": OmegaConf.merge(OmegaConf.structured(TokenizerSchema), values),
        }
    )
    return OmegaConf.to_object(cfg.tokenizer)  # type: ignore[return-value]


def compose(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Compose the run config exactly as ``python train.py OVERRIDES`` would (unresolved)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = hydra_compose(
            config_name="config", overrides=list(overrides), return_hydra_config=True
        )
    choices = dict(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    complete(cfg, choices)
    return cfg


def complete(cfg: DictConfig, choices: dict[str, Any] | None = None) -> None:
    """Fill what a config file may leave out, and name what it must not.

    A data config without ``name:`` is named after its file (``data=mine`` -> ``mine``). Any other
    missing mandatory value (``???``) is a ``UserError`` naming the config file and the key.
    ``choices`` are Hydra's group choices (default: those of the running Hydra job, if any).
    """
    if choices is None:
        from hydra.core.hydra_config import HydraConfig

        choices = dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}
    if "data" in cfg and OmegaConf.is_missing(cfg.data, "name") and choices.get("data"):
        cfg.data.name = Path(str(choices["data"])).name
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        key = missing[0]
        group = key.split(".")[0].split("[")[0]
        where = f"conf/{group}/{choices[group]}.yaml" if choices.get(group) else "the run config"
        raise UserError(
            f"{where}: {key} is missing (a mandatory value); set it there, or on the command "
            f"line with {key}=..."
        )


def resolve(cfg: DictConfig) -> RunConfig:
    """A composed config with every interpolation evaluated once, as the typed run config."""
    return from_dict(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]


def to_dict(config: RunConfig) -> dict[str, Any]:
    """The run config as plain Python (for YAML, JSON and olmo-core's ConfigSaver)."""
    return dataclasses.asdict(config)


def from_dict(values: dict[str, Any]) -> RunConfig:
    """A resolved run config (a dict, e.g. a run dir's ``config.yaml``) as typed objects.

    Keys the schema gained since the dict was written get their defaults, so older run dirs
    load; a key the schema does not know, or a value of the wrong type, raises OmegaConf's error.
    Older run dirs also froze the plan's numbers under ``derived:``; they are the plan's now
    (``plan.json``) and are dropped here.
    """
    values = {k: v for k, v in values.items() if k != LEGACY_DERIVED}
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
    write_atomically(path, text)
