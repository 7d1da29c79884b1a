"""The ladder's points, their run dirs, plans, checkpoints and metrics; running them.

The Python API mirrors olmo-core's ``ModelLadder`` (olmo-core main; not in 3.0.0) for one
ladder of sizes x mixes x seeds::

    ladder = Ladder.load("demo", chinchilla_multiple=0.02)
    ladder.dry_run("dd_4m", "embedded")                  # the plan of one point
    ladder.get_num_params("dd_4m")                       # N, as the Chinchilla math counts it
    ladder.get_checkpoints("dd_4m", "embedded")          # [RunCheckpointInfo, ...]
    ladder.get_metrics("dd_4m", "embedded", prefix="eval/")   # a DataFrame, one row per checkpoint

Every point is one point of the ``-m`` sweep ``ladder-<name>`` (:mod:`olmotrain.launch.sweep`):
``run`` starts that sweep with ``train.py``, so a re-run skips finished points and resumes the
others, locally or as SLURM jobs (``cluster=slurm`` among the ladder's overrides).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from olmotrain.config.checks import compose_checked
from olmotrain.config.compose import load_run_config, resolve
from olmotrain.config.schema import RunConfig
from olmotrain.errors import UserError
from olmotrain.ladder.config import LadderConfig, load_ladder
from olmotrain.launch.sweep import point_names, quote
from olmotrain.metrics import read_step_metrics, step_metrics_file
from olmotrain.plan import Plan, derive_plan
from olmotrain.train.rundir import RunDir

REPO = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Point:
    """One run of the ladder."""

    size: str
    mix: str
    seed: int
    name: str
    """Its run dir's name in the sweep dir (the values of the keys the ladder varies)."""
    run_dir: Path


@dataclass(frozen=True)
class RunCheckpointInfo:
    """A checkpoint of a ladder run (olmo-core's ``RunCheckpointInfo``)."""

    name: str
    step: int
    tokens: int
    path: Path
    metrics_path: Path | None
    exists: bool

    def display(self) -> str:
        mark = "x" if self.exists else " "
        return f"[{mark}] step {self.step:>8,} {self.tokens:>15,} tokens  {self.name}"


class Ladder:
    """A loaded ladder (see the module docstring)."""

    def __init__(self, config: LadderConfig) -> None:
        self.config = config
        c = config
        self._job_overrides = [
            [f"model={size}", f"data={mix}", f"seed={seed}"]
            for size, mix, seed in itertools.product(c.sizes, c.mixes, c.seeds)
        ]
        names = point_names(self._job_overrides) or ["default"]
        sweep_dir = c.sweep_dir.resolve()
        self.points = [
            Point(size, mix, seed, name, sweep_dir / name)
            for (size, mix, seed), name in zip(
                itertools.product(c.sizes, c.mixes, c.seeds), names, strict=True
            )
        ]

    @classmethod
    def load(cls, name: str, **overrides: Any) -> Ladder:
        """``conf/ladder/<name>.yaml`` (or a path) with ``key=value`` overrides as keywords."""
        dotlist = [
            f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in overrides.items()
        ]
        return cls(load_ladder(name, dotlist))

    @property
    def sweep_dir(self) -> Path:
        return self.config.sweep_dir.resolve()

    def point(self, size: str, mix: str, seed: int | None = None) -> Point:
        """The point of ``size`` x ``mix`` (x ``seed``, default the first)."""
        seed = self.config.seeds[0] if seed is None else seed
        for p in self.points:
            if (p.size, p.mix, p.seed) == (size, mix, seed):
                return p
        raise UserError(
            f"ladder {self.config.name} has no point {size} x {mix} x seed {seed}; its sizes are "
            f"{', '.join(self.config.sizes)}, mixes {', '.join(self.config.mixes)}, seeds "
            f"{', '.join(map(str, self.config.seeds))}"
        )

    def overrides(self, point: Point) -> list[str]:
        """``train.py`` overrides that compose ``point`` exactly as its sweep job does."""
        c = self.config
        return [
            f"model={point.size}",
            f"data={point.mix}",
            f"seed={point.seed}",
            f"chinchilla_multiple={c.chinchilla_multiple}",
            *c.overrides,
            f"output_root={quote(str(self.sweep_dir))}",
            f"run_name={quote(point.name)}",
        ]

    def run_config(self, point: Point) -> RunConfig:
        """The point's run config: its frozen ``config.yaml`` once it ran, else composed now."""
        saved = point.run_dir / "config.yaml"
        if saved.exists():
            return load_run_config(saved)
        return resolve(compose_checked(self.overrides(point)))

    def plan(self, point: Point) -> Plan:
        """The point's plan: its ``plan.json`` once it ran, else derived now (nothing is written)."""
        if (point.run_dir / "config.yaml").exists():
            return RunDir(point.run_dir).plan()
        return derive_plan(resolve(compose_checked(self.overrides(point))))

    def dry_run(self, size: str, mix: str, seed: int | None = None) -> Plan:
        """The plan of one point (nothing is written)."""
        return derive_plan(resolve(compose_checked(self.overrides(self.point(size, mix, seed)))))

    def get_num_params(self, size: str) -> int:
        """N of ``size``: olmo-core's non-embedding parameters (the untied head included)."""
        return self.plan(self.point(size, self.config.mixes[0])).num_non_embedding_params

    def get_checkpoints(
        self, size: str, mix: str, seed: int | None = None
    ) -> list[RunCheckpointInfo]:
        """The run's checkpoints the plan asks for (step 0 and every permanent one), in order,
        with whether each exists and where its ``metrics_step{N}.json`` is."""
        from olmo_core.train.checkpoint import Checkpointer

        point = self.point(size, mix, seed)
        plan = self.plan(point)
        batch = plan.batch_size_tokens
        wanted = [(0, "initialization")]
        wanted += [(ck.step, ck.label) for ck in plan.checkpoints if ck.step > 0]
        out = []
        for step, label in sorted(dict(reversed(wanted)).items()):
            path = point.run_dir / "checkpoints" / f"step{step}"
            metrics = path.parent / step_metrics_file(step)
            out.append(
                RunCheckpointInfo(
                    name=label,
                    step=step,
                    tokens=step * batch,
                    path=path,
                    metrics_path=metrics if metrics.exists() else None,
                    exists=path.is_dir() and Checkpointer.dir_is_checkpoint(path),
                )
            )
        return out

    def get_metrics(self, size: str, mix: str, seed: int | None = None, prefix: str | None = None):
        """One row per checkpoint with metrics (``name``, ``step``, ``tokens`` and every metric
        of its ``metrics_step{N}.json``, those starting with ``prefix`` when given); ``None``
        when no checkpoint has metrics yet."""
        import pandas as pd

        rows = []
        for ck in self.get_checkpoints(size, mix, seed):
            if ck.metrics_path is None:
                continue
            values = read_step_metrics(ck.metrics_path)
            if prefix is not None:
                values = {k: v for k, v in values.items() if k.startswith(prefix)}
            rows.append({"name": ck.name, "step": ck.step, "tokens": ck.tokens, **values})
        return pd.DataFrame(rows) if rows else None

    def train_command(self, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
        """The ``train.py -m`` command that trains every point (one sweep, resumable)."""
        c = self.config

        def values(items: list[Any]) -> str:
            return ",".join(str(i) for i in items)

        return [
            sys.executable,
            str(REPO / "train.py"),
            "-m",
            f"model={values(c.sizes)}",
            f"data={values(c.mixes)}",
            f"seed={values(c.seeds)}",
            f"chinchilla_multiple={c.chinchilla_multiple}",
            *c.overrides,
            f"output_root={Path(c.output_root).resolve()}",
            f"sweep_name={c.sweep_name}",
            *extra,
        ]

    def run(self, extra: list[str] | tuple[str, ...] = ()) -> int:
        """Train every point (finished ones are reported, unfinished ones resume); exit code."""
        return subprocess.run(self.train_command(extra), cwd=REPO).returncode

    def benchmark(
        self, steps: int = 20, extra: list[str] | tuple[str, ...] = ()
    ) -> list[dict[str, Any]]:
        """A short throughput run per size (the first mix and seed; no checkpoints, no evals):
        tokens/s (median over the steps after the fifth) and MFU (GPUs) per size."""
        from statistics import median

        from olmotrain.metrics import MFU, TPS, read_metrics_log

        results = []
        root = (
            Path(self.config.output_root) / "ladders" / self.config.name / "benchmark"
        ).resolve()
        for size in self.config.sizes:
            point = self.point(size, self.config.mixes[0])
            cmd = [
                sys.executable, str(REPO / "train.py"),
                *[o for o in self.overrides(point) if not o.startswith(("output_root=", "run_name="))],
                f"train.max_steps={steps}", "train.save_checkpoints=false", "data.eval=null",
                "eval.downstream=[]", "wandb.enabled=false", f"output_root={root}",
                f"run_name={size}", "fresh=true", *extra,
            ]  # fmt: skip
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
            if proc.returncode:
                tail = "\n".join(proc.stderr.strip().splitlines()[-3:])
                raise UserError(f"benchmark of {size} failed (exit {proc.returncode}): {tail}")
            records = [
                r for r in read_metrics_log(RunDir(root / size).metrics_path) if r["step"] > 5
            ]
            tps = [r[TPS] for r in records if TPS in r]
            mfu = [r[MFU] for r in records if MFU in r]
            plan = RunDir(root / size).plan()
            results.append(
                {
                    "size": size,
                    "num_params": plan.num_non_embedding_params,
                    "steps": steps,
                    "tokens_per_s": median(tps) if tps else None,
                    "mfu": median(mfu) if mfu else None,
                    "batch_size_tokens": plan.batch_size_tokens,
                }
            )
        return results


def load(name: str, overrides: list[str] | tuple[str, ...] = ()) -> Ladder:
    """A ladder from the command line's ``LADDER key=value ...``."""
    return Ladder(load_ladder(name, overrides))
