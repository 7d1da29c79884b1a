"""Experiment files (``conf/ladder/*.yaml``, ``conf/mixture/*.yaml``): one typed dataclass per
file, ``key=value`` overrides from the command line, and one line for every mistake.

A command line mixes the experiment's own keys with ``train.py`` overrides for every run
(``cluster=slurm``, ``eval.limit=50``): :func:`split_overrides` tells them apart and refuses a
key that is neither, or a ``train.py`` key the experiment sets per run itself.
"""

from __future__ import annotations

import difflib
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from olmotrain.config.compose import CONFIG_DIR
from olmotrain.config.file_errors import find_mistake, yaml_mistake
from olmotrain.errors import UserError

T = TypeVar("T")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message."""
    return str(exc).strip().splitlines()[0]


def shown(path: Path) -> str:
    """A config file as the user knows it: ``conf/ladder/demo.yaml`` for a shipped one."""
    try:
        return str(path.resolve().relative_to(CONFIG_DIR.parent))
    except ValueError:
        return str(path)


def find_file(name_or_path: str, group: str, kind: str) -> Path:
    """``conf/<group>/<name>.yaml`` for a name, or the YAML path given; unknown names are
    refused with the close ones."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / group / f"{name_or_path}.yaml"
    if path.is_file():
        return path
    names = sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
    close = difflib.get_close_matches(str(name_or_path), names, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}?" if close else f"choose from: {', '.join(names)}"
    raise UserError(f"unknown {kind} '{name_or_path}'; {hint} ({kind}s live in conf/{group}/)")


SHARED_KEYS = {"data.cache"}
"""Keys of a group the experiment sets per run that still mean the same for every run (one
cache directory serves every mix)."""


def split_overrides(
    overrides: list[str] | tuple[str, ...], cls: type, sets: dict[str, str], example: str
) -> tuple[list[str], list[str]]:
    """Command-line ``key=value`` pairs -> (keys of dataclass ``cls``, ``train.py`` overrides).

    ``sets``: ``train.py`` keys the experiment sets per run, each with what to do instead; a
    key that is neither is refused with the close names of both (``example``: where to look).
    """
    from olmotrain.config.schema import RunSchema

    own = {f.name for f in fields(cls)}
    train = {f.name for f in fields(RunSchema)} | {"hydra"}
    own_keys, train_keys = [], []
    for item in overrides:
        key = item.split("=", 1)[0].lstrip("+~")
        top = key.split(".", 1)[0].split("@", 1)[0]
        if "=" not in item:
            raise UserError(f"'{item}' is not key=value (a {example} key or a train.py override)")
        if top in own:
            own_keys.append(item)
        elif top in sets and key not in SHARED_KEYS:
            raise UserError(f"'{item}': the {example} sets {top} for every point; {sets[top]}")
        elif top in train:
            train_keys.append(item)
        else:
            close = difflib.get_close_matches(top, sorted(own | train), n=3)
            hint = f"did you mean {' or '.join(close)}?" if close else f"see conf/{example}/"
            raise UserError(
                f"unknown key '{key}': neither a {example} key nor a train.py setting; {hint}"
            )
    return own_keys, train_keys


def load_typed(path: Path, cls: type[T], dotlist: list[str]) -> T:
    """The YAML file ``path`` over dataclass ``cls``'s defaults, then ``dotlist``; a mistake in
    the file is named by its dotted key and fix, one in ``dotlist`` by OmegaConf's line."""
    where = shown(path)
    try:
        values: Any = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(
            yaml_mistake(exc, where) or f"{where}: not valid YAML ({first_line(exc)})"
        ) from None
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), values, OmegaConf.from_dotlist(dotlist))
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except (OmegaConfBaseException, TypeError, ValueError) as exc:
        line = find_mistake(values, cls) or first_line(exc)
        raise UserError(f"{where}: {line}") from None
