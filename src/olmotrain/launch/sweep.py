"""Sweeps: ``python train.py -m a=1,2 b=x,y`` as a directory of runs that a re-run resumes.

Hydra alone names a multirun by the time it started, so re-running a sweep starts it over. Here a
sweep is named by what it sweeps (``sweep_name``, default: its overrides) and lives in
``${output_root}/sweeps/<sweep_name>/``; each point trains in ``<sweep dir>/<point>``, the point
being its own values of the swept keys (``model=olmo2_1m,data=embedded``). Re-running the same
command finds the same run dirs, so finished points are reported and unfinished ones resume.
``sweep.yaml`` records the points; a sweep dir holding other points is refused.

olmotrain's Hydra launchers (``hydra_plugins/olmotrain_launchers``) name the points with
:func:`name_points`: the basic one runs them here, one after another; the SLURM ones
(:mod:`olmotrain.launch.slurm`) submit one job per point. The sweep dir's name comes from
:func:`olmotrain.config.naming.sweep_name` (a resolver of ``hydra.sweep.dir``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig

from olmotrain.config.naming import names_run, override_key, shorten, slug
from olmotrain.errors import UserError
from olmotrain.paths import write_atomically

RECORD = "sweep.yaml"


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
    names = [shorten(slug(",".join(v[k] for k in swept if k in v))) or "default" for v in values]
    for i, name in enumerate(names):
        if (j := names.index(name)) != i:
            raise UserError(
                f"sweep points {' '.join(job_overrides[j])!r} and {' '.join(job_overrides[i])!r} "
                "train the same run (they differ only in where it runs); sweep a training setting"
            )
    return names


def quote(value: str) -> str:
    """``value`` as one quoted Hydra override value (run dir names hold ``=`` and ``,``)."""
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
        placement = [] if user_run_name else [f"output_root={quote(str(sweep_dir))}"]
        placement += [] if user_run_name else [f"run_name={quote(name)}"]
        named.append(
            [
                *point,
                *placement,
                f"hydra.sweep.dir={quote(str(sweep_dir))}",
                f"hydra.sweep.subdir={quote(name)}",
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
    write_atomically(sweep_dir / RECORD, record)


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
