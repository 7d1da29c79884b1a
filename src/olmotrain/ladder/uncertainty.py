"""How sure a ladder's numbers are: each run's score and noise, each mix's estimate at a size.

A run's *score* is the mean of its last ``smooth`` evaluations of the metric (``decide --smooth``;
Heineman et al. 2025 average the last checkpoints to cut noise). Its *checkpoint noise* comes
from its evaluations over the last :data:`NOISE_SPAN` of its steps (at most
:data:`NOISE_EVALS` of them: ``eval.final_evals`` puts them there), detrended; the *seed noise*
from the spread of scores over seeds. Both are pooled over the runs of a size (every mix of a
size is assumed to be as noisy as the others: too few evaluations per run to tell them apart),
and combined by :func:`olmotrain.confidence.noise.run_variance`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from olmotrain.confidence.compare import Estimate
from olmotrain.confidence.noise import Variance, detrended, pooled, run_variance, seed_squares
from olmotrain.errors import UserError

NOISE_SPAN = 0.3
"""The share of a run, at its end, whose evaluations measure its checkpoint noise."""
NOISE_EVALS = 10
"""At most this many of the run's last evaluations measure it."""
RUN = ["size", "mix", "seed"]


@dataclass(frozen=True)
class SizeNoise:
    """The noise of one size's runs: per evaluation, over seeds, and of one run's score."""

    checkpoint: Variance
    seed: Variance
    run: Variance

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint_sd": self.checkpoint.sd,
            "checkpoint_dof": self.checkpoint.dof,
            "seed_sd": self.seed.sd,
            "seed_dof": self.seed.dof,
            "run_sd": self.run.sd,
        }


def check_smooth(smooth: int) -> None:
    if smooth < 1:
        raise UserError(f"--smooth {smooth} must be at least 1 (the evaluations averaged per run)")


def run_scores(frame: Any, metric: str, smooth: int = 1) -> Any:
    """One row per run: ``size, mix, seed, step`` (its last evaluated step), ``value`` (its
    score), ``evals`` (evaluations averaged), ``ss`` and ``dof`` (its detrended noise)."""
    import pandas as pd

    check_smooth(smooth)
    rows = []
    for (size, mix, seed), run in frame.dropna(subset=[metric]).groupby(RUN, sort=False):
        run = run.sort_values("step")
        steps, values = run["step"].to_numpy(float), run[metric].to_numpy(float)
        window = steps >= steps[-1] * (1 - NOISE_SPAN)
        ss, dof = detrended(steps[window][-NOISE_EVALS:], values[window][-NOISE_EVALS:])
        tail = values[-smooth:]
        rows.append(
            {
                "size": size, "mix": mix, "seed": seed, "step": int(steps[-1]),
                "value": float(tail.mean()), "evals": len(tail), "ss": ss, "dof": dof,
            }
        )  # fmt: skip
    return pd.DataFrame(rows, columns=[*RUN, "step", "value", "evals", "ss", "dof"])


def size_noise(scores: Any, smooth: int = 1) -> dict[str, SizeNoise]:
    """Every size's :class:`SizeNoise`, from :func:`run_scores`."""
    out = {}
    for size, runs in scores.groupby("size", sort=False):
        checkpoint = pooled(list(zip(runs["ss"], runs["dof"], strict=True)))
        seed = pooled([seed_squares(g["value"]) for _, g in runs.groupby("mix", sort=False)])
        out[str(size)] = SizeNoise(checkpoint, seed, run_variance(checkpoint, seed, smooth))
    return out


def estimates(scores: Any, noise: dict[str, SizeNoise]) -> dict[str, dict[str, Estimate]]:
    """Every (size, mix)'s :class:`~olmotrain.confidence.compare.Estimate`."""
    out: dict[str, dict[str, Estimate]] = {}
    for (size, mix), runs in scores.groupby(["size", "mix"], sort=False):
        out.setdefault(str(size), {})[str(mix)] = Estimate(
            float(runs["value"].mean()), len(runs), noise[str(size)].run
        )
    return out


def redraws(scores: Any, noise: dict[str, SizeNoise], size: str, mixes: list[str], reps: int,
            rng: np.random.Generator) -> np.ndarray | None:  # fmt: skip
    """``reps`` re-measurements of every run of ``size`` (a parametric bootstrap: each score
    drawn around itself with the size's run variance), shape ``(reps, mixes, seeds)`` (NaN where
    a mix lacks that seed); ``None`` when the size's noise was not measured."""
    variance = noise[size].run
    if not variance.measured:
        return None
    runs = scores[scores["size"] == size]
    table = runs.pivot_table(index="mix", columns="seed", values="value").reindex(mixes)
    values = table.to_numpy(float)
    return values + rng.normal(0.0, np.sqrt(variance.value), size=(reps, *values.shape))
