"""Sweeps: ``python train.py -m a=1,2 b=x,y`` as a directory of runs that a re-run resumes.

Hydra alone names a multirun by the time it started, so re-running a sweep starts it over. Here a
sweep is named by what it sweeps (``sweep_name``, default: its overrides) and lives in
``${output_root}/sweeps/<sweep_name>/``; each point trains in ``<sweep dir>/<point>``, the point
being its own values of the swept keys (``model=olmo2_1m,data=embedded``). Re-running the same
command finds the same run dirs, so finished points are reported and unfinished ones resume.
``sweep.yaml`` records the points; a sweep dir holding other points is refused.

olmotrain's Hydra launchers (``hydra_plugins/olmotrain_launchers``) name the points with
:func:`name_points`: the basic one runs them here, one after another; the SLURM ones
(:mod:`olmotrain.slurm`) submit one job per point.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig

from olmotrain.errors import UserError
from olmotrain.rundir import IGNORED_KEYS

RECORD = "sweep.yaml"
NOT_NAMING = IGNORED_KEYS | {"hydra", "sweep_name"}
"""Override keys that say where or how a run executes, not what it trains: they never name a
sweep or a point, and two points differing only in them would be the same run."""


def override_key(override: str) -> str:
    """The key of a ``key=value`` override (``+``/``++``/``~`` prefixes dropped)."""
    return override.split("=", 1)[0].lstrip("+~")


def names_run(key: str) -> bool:
    """Whether ``key`` (``cluster.nodes``, ``model``, ...) changes what a run trains."""
    parts = key.split(".")
    return not any(".".join(parts[: i + 1]) in NOT_NAMING for i in range(len(parts)))


def _slug(text: str) -> str:
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
    name = _slug("+".join(parts)) or "default"
    if len(name) > 120:
        digest = hashlib.sha256(name.encode()).hexdigest()[:10]
        name = f"{name[:100]}-{digest}"
    return name


def point_names(job_overrides: Sequence[Sequence[str]]) -> list[str] | None:
    """Each point's name: its values of the keys that vary across the sweep.

    ``None`` for a single point (it keeps its usual run dir ``${output_root}/${run_name}``).
    Raises ``UserError`` when two points would be the same run.
    """
    if len(job_overrides) < 2:
        return None
    values = [
        {override_key(o): o for o in point if names_run(override_key(o))} for point in job_overrides
    ]
    keys = [k for k in dict.fromkeys(k for v in values for k in v)]
    swept = [k for k in keys if len({v.get(k) for v in values}) > 1]
    names = [_slug(",".join(v[k] for k in swept if k in v)) or "default" for v in values]
    for i, name in enumerate(names):
        if (j := names.index(name)) != i:
            raise UserError(
                f"sweep points {' '.join(job_overrides[j])!r} and {' '.join(job_overrides[i])!r} "
                "train the same run (they differ only in where it runs); sweep a training setting"
            )
    return names


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _sweep_record(config: DictConfig, job_overrides: Sequence[Sequence[str]]) -> dict[str, Any]:
    return {
        "overrides": list(config.hydra.overrides.task),
        "points": [[o for o in p if names_run(override_key(o))] for p in job_overrides],
    }


def name_points(config: DictConfig, job_overrides: Sequence[Sequence[str]]) -> list[list[str]]:
    """The sweep's points with the overrides that put each in its run dir in the sweep dir.

    Refuses a sweep dir that holds another sweep; writes nothing.
    """
    names = point_names(job_overrides)
    if names is None:
        return [list(o) for o in job_overrides]
    sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
    check_sweep_dir(sweep_dir, _sweep_record(config, job_overrides))
    named = []
    for point, name in zip(job_overrides, names, strict=True):
        user_run_name = any(override_key(o) == "run_name" for o in point)
        placement = [] if user_run_name else [f"output_root={_quote(str(sweep_dir))}"]
        placement += [] if user_run_name else [f"run_name={_quote(name)}"]
        named.append(
            [
                *point,
                *placement,
                f"hydra.sweep.dir={_quote(str(sweep_dir))}",
                f"hydra.sweep.subdir={_quote(name)}",
            ]
        )
    return named


def record_sweep(config: DictConfig, job_overrides: Sequence[Sequence[str]]) -> None:
    """Write ``sweep.yaml`` (the points) into the sweep dir; nothing for a single run or dry run."""
    if point_names(job_overrides) is None or config.get("dry_run") not in (False, "false"):
        return
    sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    record = yaml.safe_dump(_sweep_record(config, job_overrides), sort_keys=False)
    (sweep_dir / RECORD).write_text(record)


def check_sweep_dir(sweep_dir: Path, record: dict[str, Any]) -> None:
    """Refuse a sweep dir whose ``sweep.yaml`` lists other points than ``record``."""
    path = sweep_dir / RECORD
    if not path.exists():
        return
    try:
        saved = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        saved = {}
    old = {tuple(p) for p in saved.get("points", [])}
    new = {tuple(p) for p in record["points"]}
    if old != new:
        added, removed = len(new - old), len(old - new)
        raise UserError(
            f"{sweep_dir} holds a different sweep ({len(old)} points: {' '.join(saved.get('overrides', []))}; "
            f"this one adds {added} and drops {removed}); use sweep_name=... for a new sweep dir"
        )
