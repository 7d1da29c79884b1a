"""A ladder is a config: sizes x data mixes x seeds at one Chinchilla multiple.

``conf/ladder/<name>.yaml`` (or any YAML file given by path)::

    name: demo
    sizes: [olmo2_1m, dd_4m, dd_6m, dd_8m]        # model configs (conf/model/)
    mixes: [embedded, embedded_code_heavy]       # data configs (conf/data/)
    chinchilla_multiple: 0.015
    seeds: [42]
    overrides: ["eval.downstream=[arc_easy]"]    # train.py overrides for every point
    metric: eval/lm/english_docs/CE loss         # what fit and decide look at by default
    output_root: runs

Command-line ``key=value`` pairs override it (``sizes=[dd_4m,dd_6m] chinchilla_multiple=0.1``);
those that are not ladder keys are ``train.py`` overrides for every point, added to
``overrides`` (``cluster=slurm``, ``cluster.partition=gpu``, ``eval.limit=50``), as for
``train.py``. Every point trains as one point of a ``-m`` sweep named ``ladder-<name>``.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from olmotrain.config.compose import CONFIG_DIR, group_options
from olmotrain.config.experiment_file import find_file, load_typed
from olmotrain.config.experiment_file import split_overrides as split_typed
from olmotrain.config.naming import LADDER_SWEEP_PREFIX
from olmotrain.errors import UserError

LADDER_DIR = CONFIG_DIR / "ladder"


@dataclass
class LadderConfig:
    """What a ladder trains (see the module docstring)."""

    name: str = "ladder"
    sizes: list[str] = field(default_factory=list)
    mixes: list[str] = field(default_factory=list)
    chinchilla_multiple: float = 1.0
    seeds: list[int] = field(default_factory=lambda: [42])
    overrides: list[str] = field(default_factory=list)
    """``train.py`` overrides for every point (tokenizer, evaluation, cluster, ...)."""
    metric: str | None = None
    """The collected column ``fit`` and ``decide`` use by default."""
    higher_is_better: bool | None = None
    """For ``metric`` (``null``: known from its name: accuracies higher, losses lower)."""
    output_root: str = "runs"
    tag: str | None = None
    """A new, separate set of runs of the same ladder (sweep ``ladder-<name>-<tag>``): to train
    it again while keeping the old runs; ``collect``, ``fit``, ... read the set of that tag."""

    @property
    def sweep_name(self) -> str:
        tail = f"-{self.tag}" if self.tag else ""
        return f"{LADDER_SWEEP_PREFIX}{self.name}{tail}"

    @property
    def sweep_dir(self) -> Path:
        return Path(self.output_root) / "sweeps" / self.sweep_name


def ladder_names() -> list[str]:
    """The shipped ladders (``conf/ladder/*.yaml``)."""
    return sorted(p.stem for p in LADDER_DIR.glob("*.yaml"))


def load_ladder(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> LadderConfig:
    """A ladder by name (``conf/ladder/``) or YAML path, with ``key=value`` overrides, checked."""
    path = find_file(name_or_path, "ladder", "ladder")
    ladder_keys, train_keys = split_overrides(overrides)
    ladder = load_typed(path, LadderConfig, ladder_keys)
    ladder.overrides = [*ladder.overrides, *train_keys]
    check_ladder(ladder)
    return ladder


LADDER_SETS = {
    "model": "list the model configs under sizes=[...]",
    "data": "list the data configs under mixes=[...]",
    "seed": "list them under seeds=[...]",
    "run_name": "points are named model=<size>,data=<mix>[,seed=<seed>]; to train them again "
    "as a new set of runs (keeping these), set tag=NAME",
    "sweep_name": "the sweep is ladder-<name>[-<tag>]: set name=... or tag=...",
    "dry_run": "use python -m olmotrain.ladder plan",
}
"""``train.py`` keys a ladder sets per point, which an override must not replace."""


def split_overrides(overrides: list[str] | tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Command-line ``key=value`` pairs -> (ladder keys, ``train.py`` overrides); a key that is
    neither is refused with the close names of both."""
    return split_typed(overrides, LadderConfig, LADDER_SETS, "ladder")


_SIZE = re.compile(r"^(.*?)(\d+(?:\.\d+)?)([mb])$", re.IGNORECASE)


def _nearest_sizes(name: str, options: list[str]) -> list[str]:
    """For a size like ``dd_5m``: the configs of the same family nearest in parameters
    (``dd_4m``, ``dd_6m``), which spelling similarity alone does not find."""
    match = _SIZE.match(name)
    if match is None:
        return []

    def params(m: re.Match) -> float:
        return float(m.group(2)) * (1e9 if m.group(3).lower() == "b" else 1e6)

    target = params(match)
    family = [(o, _SIZE.match(o)) for o in options]
    family = [(o, m) for o, m in family if m and m.group(1).lower() == match.group(1).lower()]
    family.sort(key=lambda om: abs(math.log(params(om[1]) / target)))
    return [o for o, _ in family[:2]]


def check_ladder(ladder: LadderConfig) -> None:
    """One clear error for a ladder that cannot mean anything, before anything runs."""
    if len(set(ladder.sizes)) < 2:
        raise UserError(
            f"ladder {ladder.name} has {len(set(ladder.sizes))} size(s); a ladder needs at least "
            "2 (3 for a scaling-law fit): list them under sizes"
        )
    if not ladder.mixes:
        raise UserError(f"ladder {ladder.name} has no mixes; list data configs under mixes")
    if not ladder.chinchilla_multiple > 0:
        raise UserError(
            f"ladder {ladder.name}: chinchilla_multiple={ladder.chinchilla_multiple} must be > 0"
        )
    if not ladder.seeds:
        raise UserError(f"ladder {ladder.name} has no seeds; e.g. seeds: [42]")
    for kind, group, names in (("size", "model", ladder.sizes), ("mix", "data", ladder.mixes)):
        for name in names:
            check_option(f"ladder {ladder.name}", kind, group, name)
        if len(set(names)) != len(names):
            raise UserError(f"ladder {ladder.name}: a {kind} is listed twice in {names}")
    if "/" in ladder.name or ladder.name.startswith("."):
        raise UserError(f"ladder name {ladder.name!r} must be a plain name")
    check_tag(f"ladder {ladder.name}", ladder.tag)


_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_tag(owner: str, tag: str | None) -> None:
    """A tag names a directory: letters, digits, '.', '_', '-'."""
    if tag and not _TAG.fullmatch(str(tag)):
        raise UserError(
            f"{owner}: tag={tag!r} must be a plain name (letters, digits, '.', '_', '-'), e.g. tag=v2"
        )


def check_option(owner: str, kind: str, group: str, name: str) -> None:
    """``name`` is an option of config group ``group`` (a size: nearest sizes suggested)."""
    options = group_options(group)
    if name in options:
        return
    close = _nearest_sizes(name, options) or difflib.get_close_matches(
        name, options, n=3, cutoff=0.5
    )
    hint = f"did you mean {' or '.join(close)}?" if close else f"configs live in conf/{group}/"
    raise UserError(f"{owner}: unknown {kind} '{name}'; {hint}")
