"""``decide``: which data mix wins, at every size, and how often small runs pick the big winner.

DataDecide (Magnusson et al. 2025, Eq. 3): the decision accuracy of a smaller size is the
fraction of mix pairs ordered at that size as they are at the target (largest) size, by the
metric at each run's final checkpoint. With several seeds, each seed's ordering at the small size
is scored against the seed-averaged target, and the accuracies are averaged. Ties: a pair tied at
the target has no right answer and is left out; a pair tied at the small size counts half (a
coin flip would pick either). The scaling laws predict a ranking too: each mix's law, fitted on
the sizes below the target, evaluated at the target's compute.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from olmotrain.errors import UserError
from olmotrain.ladder.fit import MIN_SIZES, check_metric, extrapolate, higher_is_better


def decision_accuracy(
    small: dict[str, float], target: dict[str, float], higher: bool
) -> float | None:
    """Share of mix pairs ordered alike at ``small`` and ``target`` (see the module docstring);
    ``None`` when every pair is tied at the target (or there is one mix)."""
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
    frame: Any, metric: str, higher: bool | None = None, sizes: list[str] | None = None
) -> dict[str, Any]:
    """The ``decide --json`` object: rankings at every size, decision accuracy of every size below
    the target, and the scaling laws' predicted ranking (see the module docstring)."""
    check_metric(frame, metric)
    higher = higher_is_better(metric) if higher is None else higher
    last = frame.loc[frame.groupby(["mix", "size", "seed"])["step"].idxmax()].dropna(
        subset=[metric]
    )
    by_size = last.groupby("size")["num_params"].first().sort_values()
    order = [s for s in (sizes or list(by_size.index)) if s in by_size.index]
    if len(order) < 2:
        raise UserError(
            f"decide needs at least 2 sizes with final checkpoints of {metric}; found {len(order)}"
        )
    if last["mix"].nunique() < 2:
        raise UserError("decide needs at least 2 mixes to rank")
    target = order[-1]
    mean = last.groupby(["size", "mix"])[metric].mean()
    target_values = mean[target].to_dict()
    out: dict[str, Any] = {
        "metric": metric,
        "higher_is_better": higher,
        "target_size": target,
        "rankings": {size: ranking(mean[size].to_dict(), higher) for size in order},
        "decision_accuracy": {},
        "compute": {},
    }
    flops = last.groupby("size")["flops"].mean()
    for size in order[:-1]:
        scores = []
        for _, seed_rows in last[last["size"] == size].groupby("seed"):
            score = decision_accuracy(
                dict(zip(seed_rows["mix"], seed_rows[metric], strict=True)), target_values, higher
            )
            if score is not None:
                scores.append(score)
        out["decision_accuracy"][size] = float(np.mean(scores)) if scores else None
        out["compute"][size] = float(flops[size])
    out["predicted"] = _predicted(frame, metric, order, target_values, higher)
    return out


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
        "decision_accuracy": decision_accuracy(predicted, target, higher),
    }
