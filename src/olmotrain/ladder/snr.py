"""``snr``: which metric to decide by, from the ladder's own noise (Heineman et al. 2025).

For every evaluation metric collected (held-out CE loss, PPL and BPB per source, each task's
accuracies and losses as ai2-olmo-eval gives them) and every size:

- signal: how far apart the mixes are, the relative dispersion ``(max - min) / |mean|`` of the
  mixes' scores;
- noise: how much one run's score moves, its standard deviation (checkpoint-to-checkpoint,
  detrended, and over seeds where there are several: :mod:`olmotrain.ladder.uncertainty`) over
  ``|mean|``;
- SNR: their ratio; and the decision accuracy of each smaller size when that metric decides.

The recommended metric is the one with the highest median SNR at the sizes below the target:
the decisions are made there, and there a high SNR predicts a high decision accuracy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from olmotrain.errors import UserError
from olmotrain.ladder.decide import ranking, seed_averaged_accuracy
from olmotrain.ladder.fit import higher_is_better
from olmotrain.ladder.uncertainty import run_scores, size_noise
from olmotrain.metrics import EVAL_PREFIX, SCORED_TOKENS


def metric_columns(frame: Any) -> list[str]:
    """The evaluation metrics of a collected table with at least one value (not the counts of
    scored tokens)."""
    return [
        c
        for c in frame.columns
        if c.startswith(EVAL_PREFIX)
        and not c.endswith(f"/{SCORED_TOKENS}")
        and frame[c].notna().any()
    ]


def metric_snr(frame: Any, metric: str, order: list[str], smooth: int) -> dict[str, Any]:
    """One metric's ``signal``, ``noise``, ``snr`` per size and ``decision_accuracy`` per
    smaller size (``None`` where not measurable)."""
    runs = run_scores(frame, metric, smooth)
    noise = size_noise(runs, smooth)
    mean = runs.groupby(["size", "mix"])["value"].mean()
    higher = higher_is_better(metric)
    out: dict[str, dict[str, float | None]] = {
        "signal": {}, "noise": {}, "snr": {}, "decision_accuracy": {},
    }  # fmt: skip
    sizes = [s for s in order if s in noise]
    for size in sizes:
        values = mean[size].to_numpy(float)
        centre = abs(float(values.mean()))
        signal = float(np.ptp(values)) / centre if centre and len(values) > 1 else None
        sd = noise[size].run.sd
        rel = sd / centre if sd is not None and centre else None
        out["signal"][size] = signal
        out["noise"][size] = rel
        out["snr"][size] = signal / rel if signal is not None and rel else None
    if sizes:
        target = mean[sizes[-1]].to_dict()
        for size in sizes[:-1]:
            out["decision_accuracy"][size] = seed_averaged_accuracy(runs, size, target)
        out["ranking"] = ranking(target, higher)  # type: ignore[assignment]
    return out


def snr(frame: Any, sizes: list[str] | None = None, smooth: int = 1) -> dict[str, Any]:
    """The ``snr --json`` object: every metric's figures and the recommended one, with why."""
    columns = metric_columns(frame)
    if not columns:
        raise UserError(
            "no evaluation metric was collected (eval/...); evaluate the runs "
            "(eval.final_evals, eval.downstream) and collect again"
        )
    by_size = frame.groupby("size")["num_params"].first().sort_values()
    order = [s for s in (sizes or list(by_size.index)) if s in by_size.index]
    metrics = {c: metric_snr(frame, c, order, smooth) for c in columns}
    below = order[:-1] or order
    scored = {
        c: float(np.median(values))
        for c, m in metrics.items()
        if (values := [m["snr"][s] for s in below if m["snr"].get(s) is not None])
    }
    out: dict[str, Any] = {"sizes": order, "smooth": smooth, "metrics": metrics}
    if not scored:
        out["recommended"] = None
        out["why"] = (
            "no metric has measured noise: evaluate each run several times near its end "
            "(eval.final_evals) or train several seeds"
        )
        return out
    best = max(scored, key=lambda c: scored[c])
    others = sorted((v, c) for c, v in scored.items() if c != best)
    runner = f"; next best {others[-1][1]} at {others[-1][0]:.3g}" if others else ""
    out["recommended"] = best
    out["why"] = (
        f"highest median SNR at {', '.join(below)} ({scored[best]:.3g}{runner}): its mixes "
        "differ most relative to how much one run's score moves"
    )
    return out


def snr_table(result: dict[str, Any]):
    """One row per (metric, size): signal, noise, snr, decision_accuracy (a DataFrame)."""
    import pandas as pd

    rows = [
        {"metric": metric, "size": size,
         **{k: m[k].get(size) for k in ("signal", "noise", "snr", "decision_accuracy")}}
        for metric, m in result["metrics"].items()
        for size in result["sizes"]
    ]  # fmt: skip
    return pd.DataFrame(
        rows, columns=["metric", "size", "signal", "noise", "snr", "decision_accuracy"]
    )


def plot_snr(result: dict[str, Any], path) -> None:
    """SNR against decision accuracy, one point per (metric, smaller size)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = snr_table(result).dropna(subset=["snr", "decision_accuracy"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (metric, rows) in enumerate(table.groupby("metric", sort=False)):
        ax.scatter(rows["snr"], rows["decision_accuracy"], label=metric, color=f"C{i % 10}")
    ax.set_xscale("log")
    ax.set_xlabel("signal-to-noise ratio at the smaller size")
    ax.set_ylabel(f"decision accuracy for {result['sizes'][-1]}")
    ax.set_ylim(-0.05, 1.05)
    if len(table):
        ax.legend(fontsize=6, loc="best")
    ax.set_title("Which metric decides best: SNR vs decision accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
