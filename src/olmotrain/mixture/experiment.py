"""A loaded mixture experiment: its sources, the swarm's mixes and runs, training them.

Every swarm run is one point of the ``-m`` sweep ``mixture-<name>[-<tag>]``
(:mod:`olmotrain.launch.sweep`) over ``model`` (the proxy sizes), ``data.ratios`` (the mixes)
and ``seed``: an ordinary run dir whose frozen ``config.yaml`` holds its mix, so a re-run skips
finished runs and resumes the others, here or as SLURM jobs (``cluster=slurm``). With
``swarm.repetition_matched`` every run is a proxy of the target (``data.proxy_for_tokens``).
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from olmotrain.config.checks import compose_checked
from olmotrain.config.compose import load_run_config, resolve
from olmotrain.errors import UserError
from olmotrain.launch.sweep import point_names, quote
from olmotrain.metrics import read_step_metrics, step_metrics_file
from olmotrain.mixture.config import MixtureConfig, load_mixture
from olmotrain.mixture.simplex import Constraints, dirichlet, project
from olmotrain.plan import Plan, derive_plan
from olmotrain.train.rundir import RunDir

REPO = Path(__file__).resolve().parents[3]
DECIMALS = 4
"""Mix weights are written with this many decimals (and still add up to exactly 1)."""


@dataclass(frozen=True)
class Source:
    """One source of the mixed data: what it holds and how far it may be repeated."""

    name: str
    tokens: int
    max_repetition_ratio: float
    max_source_fraction: float

    def cap(self, run_tokens: float) -> float:
        """The largest weight a run of ``run_tokens`` may give this source."""
        return self.tokens * self.max_source_fraction * self.max_repetition_ratio / run_tokens


@dataclass(frozen=True)
class Point:
    """One run: a size, a mix, a seed, and where it trains."""

    size: str
    weights: dict[str, float]
    seed: int
    name: str
    run_dir: Path


def ratios_value(weights: dict[str, float]) -> str:
    """A mix as a Hydra dict value, as Hydra itself writes it in a sweep's job overrides."""
    items = ",".join(f"{_key(k)}:{_number(v)}" for k, v in weights.items())
    return "{" + items + "}"


def _key(name: str) -> str:
    # Hydra's grammar takes no quoted dict keys: its own escaping (``wiki\\:en``), as in job overrides.
    from hydra._internal.grammar.utils import escape_special_characters

    return escape_special_characters(name)


def _number(value: float) -> str:
    return str(round(float(value), DECIMALS))


def rounded(weights: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """``weights`` to ``DECIMALS`` decimals, still adding up to 1 and within ``upper``: the
    rounding's remainder goes to the source with the most room."""
    step = 10.0**-DECIMALS
    out = np.floor(np.asarray(weights) / step + 1e-9) * step
    room = np.floor(np.asarray(upper) / step + 1e-9) * step - out
    left = int(round((1.0 - out.sum()) / step))
    for _ in range(left):
        j = int(np.argmax(room))
        out[j] += step
        room[j] -= step
    return np.round(out, DECIMALS)


def swarm_draws(
    n: int, concentration: float, cons: Constraints, rng: np.random.Generator
) -> np.ndarray:
    """``n`` feasible mixes spread over the feasible set: Dirichlet draws that meet the caps as
    drawn (a projected draw sits exactly on a cap; piling half the swarm onto the caps' faces
    would leave the regressions nothing to learn inside), topped up with projected ones when
    the caps leave too little room for that."""
    upper = np.array(cons.upper)
    free = cons.free()
    kept: list[np.ndarray] = []
    for _ in range(50):
        batch = dirichlet(max(4 * n, 256), concentration, cons, rng)
        on_cap = np.isclose(batch[:, free], upper[free], rtol=0, atol=1e-12).any(axis=1)
        kept.extend(batch[~on_cap])
        if len(kept) >= n:
            return np.array(kept[:n])
    return np.array(kept + list(dirichlet(n - len(kept), concentration, cons, rng)))


class Mixture:
    """A loaded mixture experiment (see the module docstring)."""

    def __init__(self, config: MixtureConfig) -> None:
        self.config = config

    @property
    def sweep_dir(self) -> Path:
        return self.config.sweep_dir.resolve()

    @property
    def verify_sweep_dir(self) -> Path:
        return (Path(self.config.output_root) / "sweeps" / self.config.verify_sweep_name).resolve()

    # --- what the data holds, what the runs ask ---------------------------------------------

    def base_overrides(self, size: str, multiple: float) -> list[str]:
        """``train.py`` overrides of a run of ``size`` on the data's natural mix."""
        c = self.config
        return [
            f"model={size}",
            f"data={c.data}",
            f"chinchilla_multiple={multiple}",
            *c.overrides,
        ]

    def _plan(self, overrides: list[str]) -> tuple[Any, Plan]:
        config = resolve(compose_checked(overrides))
        return config, derive_plan(config)

    @cached_property
    def sources(self) -> list[Source]:
        """The sources with their token counts (the embedded dataset is built when missing)."""
        from olmotrain.train.startup import ensure_data

        c = self.config
        config, plan = self._plan(
            self.base_overrides(c.proxy.sizes[0], c.proxy.chinchilla_multiple)
        )
        report = ensure_data(config, plan).report
        missing = [r for r in report.sources if r.tokens is None]
        if missing:
            raise UserError(
                f"mixture {c.name}: data {c.data}: {missing[0].name} has no local token files "
                f"({', '.join(missing[0].patterns)}); prepare them first"
            )
        return [
            Source(s.name, int(r.tokens), s.max_repetition_ratio, s.max_source_fraction)
            for s, r in zip(config.data.sources, report.sources, strict=True)
        ]

    @cached_property
    def target_tokens(self) -> int:
        """The target run's token count (its plan's duration)."""
        t = self.config.target
        return self._plan(self.base_overrides(t.size, t.chinchilla_multiple))[1].duration_tokens

    def run_tokens(self, size: str, multiple: float) -> int:
        return self._plan(self.base_overrides(size, multiple))[1].duration_tokens

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sources]

    def prior(self) -> np.ndarray:
        """The swarm's prior over the sources (natural: in proportion to their tokens)."""
        prior = self.config.swarm.prior
        if prior == "natural":
            w = np.array([s.tokens for s in self.sources], dtype=float)
        elif prior == "uniform":
            w = np.ones(len(self.sources))
        else:
            unknown = sorted(set(prior) - set(self.names))
            if unknown:
                raise UserError(
                    f"mixture {self.config.name}: swarm.prior names {unknown[0]}, not a source of "
                    f"{self.config.data} ({', '.join(self.names)})"
                )
            w = np.array([float(prior.get(n, 0.0)) for n in self.names])
            if (w < 0).any() or w.sum() <= 0:
                raise UserError(f"mixture {self.config.name}: swarm.prior weights must be >= 0")
        return w / w.sum()

    def constraints(self, run_tokens: float, for_what: str) -> Constraints:
        """The feasible mixes of a run of ``run_tokens``: each source within its repetition cap,
        the fixed weights, the prior and the KL pull."""
        c = self.config
        unknown = sorted(set(c.swarm.fixed) - set(self.names))
        if unknown:
            raise UserError(
                f"mixture {c.name}: swarm.fixed names {unknown[0]}, not a source of {c.data} "
                f"({', '.join(self.names)})"
            )
        upper = tuple(min(1.0, s.cap(run_tokens)) for s in self.sources)
        reasons = {
            s.name: f"{s.tokens:,} tokens x max_repetition_ratio {s.max_repetition_ratio:g}"
            + (
                f" x max_source_fraction {s.max_source_fraction:g}"
                if s.max_source_fraction < 1
                else ""
            )
            + f" for {for_what}'s {run_tokens:,.0f} tokens"
            for s, u in zip(self.sources, upper, strict=True)
            if u < 1
        }
        return Constraints(
            sources=tuple(self.names),
            upper=upper,
            fixed={k: float(v) for k, v in c.swarm.fixed.items()},
            prior=tuple(self.prior()),
            kl_weight=c.kl_weight,
            cap_reason=reasons,
        )

    # --- the swarm --------------------------------------------------------------------------

    @cached_property
    def swarm_constraints(self) -> Constraints:
        """The swarm's feasible set: the target's caps when repetition-matched (the proxy sees
        each source scaled down alike), else the largest proxy run's own."""
        c = self.config
        if c.swarm.repetition_matched:
            return self.constraints(self.target_tokens, "the target")
        tokens = max(self.run_tokens(s, c.proxy.chinchilla_multiple) for s in c.proxy.sizes)
        return self.constraints(tokens, "the proxy")

    @cached_property
    def mixes(self) -> list[dict[str, float]]:
        """The swarm's mixes: reproducible for a seed, each feasible."""
        c = self.config
        cons = self.swarm_constraints
        cons.check()
        concentration = c.swarm.concentration or (len(self.names) - len(c.swarm.fixed))
        draws = swarm_draws(c.swarm.runs, concentration, cons, np.random.default_rng(c.swarm.seed))
        upper = np.array(cons.upper)
        mixes = [dict(zip(self.names, rounded(w, upper).tolist(), strict=True)) for w in draws]
        unique = {ratios_value(m): m for m in mixes}
        return list(unique.values())

    def feasible(self, weights: np.ndarray, cons: Constraints) -> dict[str, float]:
        """``weights`` projected onto ``cons`` and rounded, as a mix."""
        w = project(np.asarray(weights, dtype=float)[None, :], cons)[0]
        return dict(zip(self.names, rounded(w, np.array(cons.upper)).tolist(), strict=True))

    def points_of(
        self, sizes: list[str], mixes: list[dict[str, float]], sweep_dir: Path
    ) -> list[Point]:
        """Runs of every size x mix x seed, named as their sweep names them."""
        combos = list(itertools.product(sizes, mixes, self.config.seeds))
        jobs = [
            [f"model={s}", f"data.ratios={ratios_value(m)}", f"seed={seed}"]
            for s, m, seed in combos
        ]
        names = point_names(jobs) or ["default"]
        return [
            Point(s, m, seed, name, sweep_dir / name)
            for (s, m, seed), name in zip(combos, names, strict=True)
        ]

    @cached_property
    def points(self) -> list[Point]:
        """The swarm's runs."""
        return self.points_of(self.config.proxy.sizes, self.mixes, self.sweep_dir)

    def overrides(self, point: Point, multiple: float, sweep_dir: Path) -> list[str]:
        """``train.py`` overrides that compose ``point`` as its sweep job does."""
        return [
            *self.base_overrides(point.size, multiple),
            f"data.ratios={ratios_value(point.weights)}",
            f"seed={point.seed}",
            *self._proxy_overrides(),
            f"output_root={quote(str(sweep_dir))}",
            f"run_name={quote(point.name)}",
        ]

    def _proxy_overrides(self) -> list[str]:
        if not self.config.swarm.repetition_matched:
            return []
        return [f"data.proxy_for_tokens={self.target_tokens}"]

    def plan(self, point: Point, multiple: float, sweep_dir: Path) -> Plan:
        """The run's plan: its ``plan.json`` once it ran, else derived now."""
        if (point.run_dir / "config.yaml").exists():
            return RunDir(point.run_dir).plan()
        return derive_plan(resolve(compose_checked(self.overrides(point, multiple, sweep_dir))))

    def train_command(
        self, sizes: list[str], mixes: list[dict[str, float]], multiple: float, sweep_name: str
    ) -> list[str]:
        """The ``train.py -m`` command that trains ``sizes`` x ``mixes`` x seeds (resumable)."""
        c = self.config
        return [
            sys.executable,
            str(REPO / "train.py"),
            "-m",
            f"model={','.join(sizes)}",
            f"data={c.data}",
            f"data.ratios={','.join(ratios_value(m) for m in mixes)}",
            f"seed={','.join(str(s) for s in c.seeds)}",
            f"chinchilla_multiple={multiple}",
            *self._proxy_overrides(),
            *c.overrides,
            f"output_root={Path(c.output_root).resolve()}",
            f"sweep_name={sweep_name}",
        ]

    def run_swarm(self) -> int:
        """Train the swarm (finished runs are reported, unfinished ones resume); exit code."""
        c = self.config
        cmd = self.train_command(
            c.proxy.sizes, self.mixes, c.proxy.chinchilla_multiple, c.sweep_name
        )
        return subprocess.run(cmd, cwd=REPO).returncode


def final_metrics(run_dir: Path) -> tuple[int, dict[str, Any]] | None:
    """(final step, its metrics) of a finished run; ``None`` before its last checkpoint."""
    if not (run_dir / "config.yaml").exists():
        return None
    plan = RunDir(run_dir).plan()
    path = run_dir / "checkpoints" / step_metrics_file(plan.max_steps)
    if not path.exists():
        return None
    return plan.max_steps, read_step_metrics(path)


def run_weights(run_dir: Path) -> dict[str, float]:
    """The mix a run trained on, from its frozen config."""
    data = load_run_config(run_dir / "config.yaml").data
    if data.ratios is not None:
        return {k: float(v) for k, v in data.ratios.items()}
    return {s.name: float(s.ratio or 0.0) for s in data.sources}


def load(name: str, overrides: list[str] | tuple[str, ...] = ()) -> Mixture:
    """A mixture experiment from the command line's ``NAME key=value ...``."""
    return Mixture(load_mixture(name, overrides))
