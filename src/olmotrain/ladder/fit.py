"""Scaling laws fitted to a ladder: the two-step method of the OLMo ladder paper (Bhagia et al.
2024, arXiv 2412.04403), DataDecide's default way of extrapolating (Magnusson et al. 2025).

- Step 1, compute -> task loss: ``L(C) = A * C**-alpha + E`` over sizes, C = training FLOPs of
  each size's final checkpoint (seeds averaged), fitted by least squares on the log residuals
  ``log L_fit - log L`` with a Huber loss (delta 1e-3, as the paper), from a grid of starts.
- Step 2, task loss -> accuracy: ``Acc(L) = a / (1 + exp(-k (L - L0))) + b`` over every
  checkpoint, for downstream accuracies (a loss metric needs no second step).
- With several durations per size: ``L(N, D) = E + A / N**alpha + B / D**beta``.
- Leave-largest-out: fit without the largest size, predict it, report the relative error.
- Every fit reports ``dof``, its points minus its parameters: at 0 a law passes through its
  points whatever they are, which :func:`no_dof_warning` says in one line.

Pure functions over arrays and the collected table; scipy does the optimizing.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from olmotrain.errors import UserError
from olmotrain.metrics import BPB, CE_LOSS, labelled, split_label

HUBER_DELTA = 1e-3
MIN_SIZES = 3
PARAMS = {"L(C)": 3, "Acc(L)": 4, "L(N, D)": 5}
"""Free parameters of each law: a fit to no more points than these has no degrees of freedom."""


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better (ai2-olmo-eval's accuracies and F1) or
    worse (losses, perplexities, BPB)."""
    return bool(re.search(r"accuracy|\(F1|\bacc\b", metric))


@dataclass(frozen=True)
class PowerLaw:
    """``L(C) = A * C**-alpha + E``."""

    A: float
    alpha: float
    E: float

    def __call__(self, compute: Any) -> Any:
        return self.A * np.asarray(compute, dtype=float) ** -self.alpha + self.E


@dataclass(frozen=True)
class Sigmoid:
    """``Acc(L) = a / (1 + exp(-k (L - L0))) + b``."""

    a: float
    k: float
    L0: float
    b: float

    def __call__(self, loss: Any) -> Any:
        return self.a / (1 + np.exp(-self.k * (np.asarray(loss, dtype=float) - self.L0))) + self.b


@dataclass(frozen=True)
class Chinchilla:
    """``L(N, D) = E + A / N**alpha + B / D**beta``."""

    E: float
    A: float
    alpha: float
    B: float
    beta: float

    def __call__(self, n: Any, d: Any) -> Any:
        n, d = np.asarray(n, dtype=float), np.asarray(d, dtype=float)
        return self.E + self.A / n**self.alpha + self.B / d**self.beta


def fit_power_law(compute: Any, loss: Any, start: PowerLaw | None = None) -> PowerLaw:
    """Fit ``L(C) = A C^-alpha + E`` (see the module docstring); needs 3 or more points.
    ``start``: one start there instead of the grid (a refit of nearby data: the bootstrap)."""
    from scipy.optimize import least_squares

    c, y = np.asarray(compute, dtype=float), np.asarray(loss, dtype=float)
    if len(c) < MIN_SIZES or np.any(c <= 0) or np.any(y <= 0):
        raise ValueError("a power law needs 3 or more points with positive compute and loss")
    x = np.log(c)
    log_y = np.log(y)

    def residuals(p: np.ndarray) -> np.ndarray:
        a, alpha, e = p
        return np.logaddexp(a - alpha * x, e) - log_y

    def jacobian(p: np.ndarray) -> np.ndarray:
        # d/d(a, alpha, e) of log(exp(a - alpha x) + exp(e)): the power term's share s of the
        # loss, -x s, and 1 - s (exact, and ~3x faster than finite differences).
        a, alpha, e = p
        share = 1.0 / (1.0 + np.exp(np.clip(e - (a - alpha * x), -700, 700)))
        return np.column_stack([share, -x * share, 1.0 - share])

    best = None
    starts = []
    for alpha in (0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.8):
        for share in (0.1, 0.5, 0.8, 0.95):
            e = math.log(share * y.min())
            head = y[np.argmin(x)] - share * y.min()
            starts.append(np.array([math.log(max(head, 1e-12)) + alpha * x.min(), alpha, e]))
    if start is not None:
        e = math.log(min(start.E, 0.999 * y.min()))
        starts = [np.array([math.log(start.A), min(start.alpha, 5.0), max(e, -30.0)])]
    # A warm start is near its answer already: a bootstrap refit needs neither the grid's
    # precision nor its patience (a flat, unidentified law would use up 5,000 evaluations).
    tol, patience = (1e-14, 5000) if start is None else (1e-9, 200)
    for first in starts:
        result = least_squares(
            residuals,
            first,
            jac=jacobian,
            loss="huber",
            f_scale=HUBER_DELTA,
            bounds=([-np.inf, 0.0, -30.0], [np.inf, 5.0, math.log(y.min())]),
            xtol=tol,
            ftol=tol,
            gtol=tol,
            max_nfev=patience,
        )
        if best is None or result.cost < best.cost:
            best = result
    a, alpha, e = best.x  # type: ignore[union-attr]
    return PowerLaw(A=float(math.exp(a)), alpha=float(alpha), E=float(math.exp(e)))


def fit_sigmoid(loss: Any, accuracy: Any) -> Sigmoid:
    """Fit ``Acc(L)`` over checkpoints (4 or more points)."""
    from scipy.optimize import least_squares

    x, y = np.asarray(loss, dtype=float), np.asarray(accuracy, dtype=float)
    if len(x) < 4:
        raise ValueError("the loss-to-accuracy step needs 4 or more checkpoints")
    span = max(float(np.ptp(x)), 1e-6)

    def residuals(p: np.ndarray) -> np.ndarray:
        a, k, l0, b = p
        return a / (1 + np.exp(np.clip(-k * (x - l0), -50, 50))) + b - y

    start = np.array(
        [max(float(np.ptp(y)), 0.05), -4.0 / span, float(np.median(x)), float(y.min())]
    )
    result = least_squares(residuals, start, max_nfev=5000)
    a, k, l0, b = result.x
    return Sigmoid(a=float(a), k=float(k), L0=float(l0), b=float(b))


def fit_chinchilla(n: Any, d: Any, loss: Any) -> Chinchilla:
    """Fit ``L(N, D)`` on log residuals with a Huber loss (5 or more points)."""
    from scipy.optimize import least_squares

    n, d, y = (np.asarray(v, dtype=float) for v in (n, d, loss))
    if len(y) < 5:
        raise ValueError("L(N, D) needs 5 or more points")
    log_n, log_d, log_y = np.log(n), np.log(d), np.log(y)

    def residuals(p: np.ndarray) -> np.ndarray:
        e, a, alpha, b, beta = p
        return (
            np.logaddexp.reduce([np.full_like(log_n, e), a - alpha * log_n, b - beta * log_d])
            - log_y
        )

    best = None
    for alpha in (0.2, 0.35, 0.5):
        for beta in (0.2, 0.35, 0.5):
            start = np.array([math.log(0.5 * y.min()), 5.0, alpha, 5.0, beta])
            result = least_squares(
                residuals, start, loss="huber", f_scale=HUBER_DELTA, max_nfev=5000,
                bounds=([-30, -np.inf, 0, -np.inf, 0], [math.log(y.min()), np.inf, 3, np.inf, 3]),
            )  # fmt: skip
            if best is None or result.cost < best.cost:
                best = result
    e, a, alpha, b, beta = best.x  # type: ignore[union-attr]
    return Chinchilla(
        E=math.exp(e), A=math.exp(a), alpha=float(alpha), B=math.exp(b), beta=float(beta)
    )


def final_points(frame: Any, metric: str) -> Any:
    """Per (mix, size): the final checkpoint's ``flops``, ``num_params`` and ``metric``, averaged
    over seeds (the rows of each point's largest step)."""
    frame = frame.reset_index(drop=True)  # idxmax gives labels: make them unique positions
    last = frame.loc[frame.groupby(["mix", "size", "seed"])["step"].idxmax()]
    return (
        last.groupby(["mix", "size"], sort=False)
        .agg(num_params=("num_params", "first"), flops=("flops", "mean"), value=(metric, "mean"))
        .reset_index()
        .sort_values(["mix", "flops"])
    )


def task_loss_column(frame: Any, metric: str) -> str:
    """The loss step 1 fits for ``metric``: itself for a loss, the task's BPB (or CE loss) for
    a downstream accuracy (``eval/downstream/<task> (accuracy)``)."""
    if not higher_is_better(metric):
        return metric
    task = (split_label(metric) or (metric, ""))[0]
    for label in (BPB, CE_LOSS):
        if labelled(task, label) in frame.columns:
            return labelled(task, label)
    raise UserError(
        f"{metric}: no task loss ({labelled(task, BPB)} or ({CE_LOSS})) was collected to fit it by"
    )


def check_metric(frame: Any, metric: str) -> None:
    """One clear error for a metric no run has."""
    import difflib

    if metric in frame.columns and frame[metric].notna().any():
        return
    fixed = {
        "size",
        "mix",
        "seed",
        "num_params",
        "num_params_total",
        "step",
        "tokens",
        "flops",
        "checkpoint",
        "kind",
        "path",
        "same_as_step",
    }
    columns = [c for c in frame.columns if c not in fixed and c != metric]
    close = difflib.get_close_matches(metric, columns, n=3, cutoff=0.4)
    hint = (
        f"did you mean {' or '.join(repr(c) for c in close)}?"
        if close
        else f"the collected metrics are {', '.join(columns[:8])} ..."
    )
    raise UserError(f"no run has the metric '{metric}'; {hint}")


def fit_ladder(frame: Any, metric: str) -> dict[str, Any]:
    """Every mix's scaling law for ``metric``, with the leave-largest-out prediction: the
    ``fit --json`` object."""
    check_metric(frame, metric)
    loss_metric = task_loss_column(frame, metric)
    check_metric(frame, loss_metric)
    losses = final_points(frame, loss_metric)
    values = final_points(frame, metric)
    fits: dict[str, Any] = {}
    for mix, group in losses.groupby("mix", sort=False):
        group = group.dropna(subset=["value"])
        if len(group) < MIN_SIZES:
            raise UserError(
                f"mix {mix}: {len(group)} size(s) have a final checkpoint with {loss_metric}; a "
                f"scaling-law fit needs at least {MIN_SIZES}"
            )
        law = fit_power_law(group["flops"], group["value"])
        entry: dict[str, Any] = {
            **asdict(law),
            "dof": len(group) - PARAMS["L(C)"],
            "points": [
                {
                    "size": r.size,
                    "num_params": int(r.num_params),
                    "flops": float(r.flops),
                    "value": float(r.value),
                }
                for r in group.itertuples()
            ],
        }
        if loss_metric != metric:
            rows = frame[frame["mix"] == mix][[loss_metric, metric]].dropna()
            try:
                entry["step2"] = {
                    **asdict(fit_sigmoid(rows[loss_metric], rows[metric])),
                    "dof": len(rows) - PARAMS["Acc(L)"],
                }
            except ValueError as exc:
                entry["step2"] = {"error": str(exc)}
        entry["holdout"] = _holdout(frame, str(mix), metric, group, values[values["mix"] == mix])
        chinchilla = _chinchilla(frame[frame["mix"] == mix], loss_metric)
        if chinchilla is not None:
            entry["chinchilla"] = {**asdict(chinchilla[0]), "dof": chinchilla[1]}
        fits[str(mix)] = entry
    out: dict[str, Any] = {"metric": metric, "fits": fits}
    if loss_metric != metric:
        out["loss_metric"] = loss_metric
    return out


def no_dof_warning(result: dict[str, Any]) -> str | None:
    """One line naming the fits of a ``fit_ladder`` result with no degrees of freedom left
    (points <= parameters); ``None`` when every fit has some."""
    tight = []
    for mix, entry in result["fits"].items():
        for law, fit in (
            ("L(C)", entry),
            ("Acc(L)", entry.get("step2")),
            ("L(N, D)", entry.get("chinchilla")),
        ):
            if fit and "dof" in fit and fit["dof"] <= 0:
                n = fit["dof"] + PARAMS[law]
                tight.append(f"{mix} {law}: {n} points for {PARAMS[law]} parameters")
    if not tight:
        return None
    return (
        f"warning: no degrees of freedom left ({'; '.join(tight)}): such a law passes through its "
        "points whatever they are, so it tests nothing; add sizes (or checkpoints) to the ladder"
    )


def extrapolate(frame: Any, mix: str, metric: str, sizes: list[str], flops: float) -> float | None:
    """``metric`` of ``mix`` at ``flops``, from the laws fitted on ``sizes`` alone (step 1 on the
    task loss, step 2 for an accuracy); ``None`` with fewer than 3 such sizes."""
    loss_metric = task_loss_column(frame, metric)
    rows = frame[(frame["mix"] == mix) & frame["size"].isin(sizes)]
    points = final_points(rows, loss_metric).dropna(subset=["value"])
    if len(points) < MIN_SIZES:
        return None
    loss = float(fit_power_law(points["flops"], points["value"])(flops))
    if loss_metric == metric:
        return loss
    pairs = rows[[loss_metric, metric]].dropna()
    try:
        return float(fit_sigmoid(pairs[loss_metric], pairs[metric])(loss))
    except ValueError:
        return None


def _holdout(frame: Any, mix: str, metric: str, losses: Any, values: Any) -> dict[str, Any] | None:
    """Fit without the largest size, predict it."""
    if len(losses) < MIN_SIZES + 1:
        return None  # the fit without it would have fewer points than parameters
    target = losses.iloc[-1]
    predicted = extrapolate(
        frame, mix, metric, list(losses["size"].iloc[:-1]), float(target["flops"])
    )
    actual = float(values[values["size"] == target["size"]]["value"].iloc[0])
    if predicted is None:
        return None
    return {
        "size": str(target["size"]),
        "predicted": predicted,
        "actual": actual,
        "rel_error": (predicted - actual) / actual if actual else None,
    }


def _chinchilla(frame: Any, metric: str) -> tuple[Chinchilla, int] | None:
    """``L(N, D)`` and its degrees of freedom, when some size has several durations (decayed
    checkpoints: period ends)."""
    ends = (
        frame[frame["checkpoint"].astype(str).str.endswith(" end")]
        if "checkpoint" in frame
        else frame
    )
    ends = (
        ends.groupby(["size", "tokens"])
        .agg(n=("num_params", "first"), value=(metric, "mean"))
        .reset_index()
    )
    ends = ends.dropna()
    if ends.groupby("size")["tokens"].nunique().max() < 2 or len(ends) < 5:
        return None
    try:
        law = fit_chinchilla(ends["n"], ends["tokens"], ends["value"])
        return law, len(ends) - PARAMS["L(N, D)"]
    except ValueError:
        return None
