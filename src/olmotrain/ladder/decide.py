"""``decide``: which data mix wins, at every size, and how often small runs pick the big winner.

DataDecide (Magnusson et al. 2025, Eq. 3): the decision accuracy of a smaller size is the
fraction of mix pairs ordered at that size as they are at the target (largest) size, by the
metric at each run's final checkpoint. With several seeds, each seed's ordering at the small size
is scored against the seed-averaged target, and the accuracies are averaged. Ties: a pair tied at
the target has no right answer and is left out; a pair tied at the small size counts half (a
coin flip would pick either). The scaling laws predict a ranking too: each mix's law, fitted on
the sizes below the target, evaluated at the target's compute.

How sure (:mod:`olmotrain.ladder.uncertainty`, :mod:`olmotrain.confidence`): every pair of mixes
at the target gets ``p_a_better`` and a verdict (``inconclusive`` below ``confidence``, with the
seeds that would settle it), and every smaller size's decision accuracy an interval, from
re-measuring every run's score with its measured noise (:data:`REPS` times).
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import numpy as np

from olmotrain.confidence.bootstrap import percentile_interval
from olmotrain.confidence.compare import (
    Estimate,
    check_confidence,
    p_a_better,
    seeds_needed,
    verdict,
)
from olmotrain.errors import UserError
from olmotrain.ladder.fit import MIN_SIZES, check_metric, extrapolate, higher_is_better
from olmotrain.ladder.uncertainty import SizeNoise, estimates, redraws, run_scores, size_noise

RUN_KEYS = ["size", "mix", "seed"]
REPS = 2000
"""Re-measurements behind each decision-accuracy interval."""


def decision_accuracy(small: dict[str, float], target: dict[str, float]) -> float | None:
    """Share of mix pairs ordered alike at ``small`` and ``target`` (see the module docstring);
    ``None`` when every pair is tied at the target (or there is one mix). Whether higher is
    better does not matter: an ordering agrees or it does not."""
    agree = counted = 0.0
    for a, b in itertools.combinations(sorted(set(small) & set(target)), 2):
        truth = np.sign(target[a] - target[b])
        if truth == 0:
            continue
        guess = np.sign(small[a] - small[b])
        counted += 1
        agree += 0.5 if guess == 0 else float(guess == truth)
    if not counted:
        return None
    return agree / counted


def ranking(values: dict[str, float], higher: bool) -> list[str]:
    """Mixes best first."""
    return sorted(values, key=lambda m: (-values[m] if higher else values[m], m))


def decide(
    frame: Any,
    metric: str,
    higher: bool | None = None,
    sizes: list[str] | None = None,
    confidence: float = 0.95,
    smooth: int = 1,
) -> dict[str, Any]:
    """The ``decide --json`` object: rankings at every size, decision accuracy of every size below
    the target with its interval, every pair at the target with its confidence, and the scaling
    laws' predicted ranking (see the module docstring). ``smooth``: each run's score is the mean
    of its last ``smooth`` evaluations."""
    check_metric(frame, metric)
    try:
        check_confidence(confidence)
    except ValueError as exc:
        raise UserError(f"--confidence: {exc}") from None
    higher = higher_is_better(metric) if higher is None else higher
    runs = _with_columns(run_scores(frame, metric, smooth), frame)
    by_size = runs.groupby("size")["num_params"].first().sort_values()
    order = [s for s in (sizes or list(by_size.index)) if s in by_size.index]
    if len(order) < 2:
        raise UserError(
            f"decide needs at least 2 sizes with final checkpoints of {metric}; found {len(order)}"
        )
    if runs["mix"].nunique() < 2:
        raise UserError("decide needs at least 2 mixes to rank")
    target = order[-1]
    mean = runs.groupby(["size", "mix"])["value"].mean()
    noise = size_noise(runs, smooth)
    out: dict[str, Any] = {
        "metric": metric,
        "higher_is_better": higher,
        "target_size": target,
        "confidence": confidence,
        "smooth": smooth,
        "rankings": {size: ranking(mean[size].to_dict(), higher) for size in order},
        "decision_accuracy": {},
        "decision_accuracy_interval": {},
        "compute": {},
        "noise": {size: noise[size].to_dict() for size in order},
    }
    out["pairs"] = pairs(
        estimates(runs, noise)[target], out["rankings"][target], higher, confidence
    )
    flops = runs.groupby("size")["flops"].mean()
    for size in order[:-1]:
        out["decision_accuracy"][size] = seed_averaged_accuracy(runs, size, mean[target].to_dict())
        out["decision_accuracy_interval"][size] = accuracy_interval(
            runs, noise, size, target, confidence
        )
        out["compute"][size] = float(flops[size])
    out["predicted"] = _predicted(frame, metric, order, mean[target].to_dict(), higher)
    return out


def _with_columns(runs: Any, frame: Any) -> Any:
    """The run scores with ``num_params`` and ``flops`` of each run's last evaluated step."""
    keep = [c for c in ("num_params", "flops") if c in frame]
    rows = frame.drop_duplicates([*RUN_KEYS, "step"])[[*RUN_KEYS, "step", *keep]]
    runs = runs.merge(rows, on=[*RUN_KEYS, "step"], how="left")
    for column in ("num_params", "flops"):
        if column not in runs:
            runs[column] = np.nan
    return runs


def seed_averaged_accuracy(runs: Any, size: str, target: dict[str, float]) -> float | None:
    """``size``'s decision accuracy: each seed's ordering scored, averaged over seeds."""
    scores = []
    for _, seed_rows in runs[runs["size"] == size].groupby("seed"):
        score = decision_accuracy(
            dict(zip(seed_rows["mix"], seed_rows["value"], strict=True)), target
        )
        if score is not None:
            scores.append(score)
    return float(np.mean(scores)) if scores else None


def pairs(
    at: dict[str, Estimate], order: list[str], higher: bool, confidence: float
) -> list[dict[str, Any]]:
    """Every pair of mixes at one size, the better-ranked one as ``a``: ``difference`` (a - b),
    ``p_a_better``, ``verdict`` and, when inconclusive, ``seeds_needed``."""
    out = []
    for a, b in itertools.combinations(order, 2):
        p = p_a_better(at[a], at[b], higher)
        entry: dict[str, Any] = {
            "a": a,
            "b": b,
            "difference": at[a].mean - at[b].mean,
            "p_a_better": p,
            "verdict": verdict(p, confidence),
        }
        if entry["verdict"] == "inconclusive":
            entry["seeds_needed"] = seeds_needed(at[a], at[b], confidence)
        out.append(entry)
    return out


def accuracy_interval(
    scores: Any, noise: dict[str, SizeNoise], small: str, target: str, level: float
) -> list[float] | None:
    """The central ``level`` interval of ``small``'s decision accuracy for ``target`` when
    every run's score at both sizes is re-measured with its noise; ``None`` when the noise of
    either size was not measured."""
    mixes = sorted(set(scores.loc[scores["size"] == small, "mix"]))
    rng = np.random.default_rng(0)
    s = redraws(scores, noise, small, mixes, REPS, rng)
    t = redraws(scores, noise, target, mixes, REPS, rng)
    if s is None or t is None:
        return None
    truth = _finite_mean(t, axis=2)  # (reps, mixes): the seed-averaged target, as decide does
    agree = np.zeros(s.shape[::2])  # (reps, seeds)
    counted = np.zeros(s.shape[::2])
    for i, j in itertools.combinations(range(len(mixes)), 2):
        sign = np.sign(truth[:, i] - truth[:, j])[:, None]
        guess = np.sign(s[:, i, :] - s[:, j, :])
        # A pair counts where the target orders it (a mix the target lacks has a NaN truth,
        # and the point accuracy leaves it out too) and the small size has both runs.
        valid = np.isfinite(sign) & (sign != 0) & np.isfinite(guess)
        agree += np.where(valid, np.where(guess == 0, 0.5, guess == sign), 0.0)
        counted += valid
    per_seed = np.where(counted > 0, agree / np.maximum(counted, 1), np.nan)  # (reps, seeds)
    lo, hi = percentile_interval(_finite_mean(per_seed, axis=1), level)
    return None if np.isnan(lo) else [lo, hi]


def _finite_mean(x: np.ndarray, axis: int) -> np.ndarray:
    """The mean of the finite values along ``axis``; NaN where there are none (a mix the
    target lacks, a seed without a pair), without numpy's warning for it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=axis)


def _predicted(
    frame: Any, metric: str, order: list[str], target: dict[str, float], higher: bool
) -> dict[str, Any]:
    """The target's ranking as each mix's scaling laws (sizes below the target) predict it."""
    below = order[:-1]
    if len(below) < MIN_SIZES:
        return {"error": f"needs {MIN_SIZES} sizes below the target to fit; has {len(below)}"}
    at = frame[frame["size"] == order[-1]].groupby("mix")["flops"].max()
    predicted = {}
    for mix, flops in at.items():
        value = extrapolate(frame, str(mix), metric, below, float(flops))
        if value is not None:
            predicted[str(mix)] = value
    return {
        "values": predicted,
        "ranking": ranking(predicted, higher),
        "decision_accuracy": decision_accuracy(predicted, target),
    }
