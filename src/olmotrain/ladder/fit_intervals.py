"""How sure a scaling-law fit is: parameter intervals, the held-out prediction's interval, and
the rollout check.

- Intervals: a parametric bootstrap over the points. Each (mix, size) point is drawn again
  around the fitted law with its own measured noise (the variance of the mix's score at that
  size: :mod:`olmotrain.ladder.uncertainty`, checkpoint-to-checkpoint and over seeds), the law
  refitted, and the central ``level`` interval of each parameter taken. A point with no measured
  noise takes the fit's own residual variance (in log space, which needs a degree of freedom);
  with neither, there is no interval.
- Rollout (the OLMo ladder paper's check, as in olmo-core's unmerged bootstrapped-fit work):
  fit on the smallest ``k`` sizes, predict size ``k + 1``, for every ``k >= 3``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from olmotrain.confidence.bootstrap import percentile_interval
from olmotrain.ladder.fit import MIN_SIZES, PARAMS, PowerLaw, fit_power_law
from olmotrain.ladder.uncertainty import estimates, run_scores, size_noise

REPS = 200
"""Bootstrap refits per interval (each a single warm-started least-squares fit)."""


def point_variances(frame: Any, metric: str) -> dict[tuple[str, str], float | None]:
    """The measured variance of every (mix, size)'s final score (``None``: not measured)."""
    runs = run_scores(frame, metric)
    est = estimates(runs, size_noise(runs))
    return {(mix, size): e.variance for size, by_mix in est.items() for mix, e in by_mix.items()}


def _noise_sd(
    law: PowerLaw, flops: np.ndarray, values: np.ndarray, variances: list
) -> np.ndarray | None:
    """Each point's sd: its measured one; where unmeasured, the fit's residual sd, or with no
    residual left (as many points as parameters), the median relative sd of the measured ones."""
    fallback = None
    dof = len(values) - PARAMS["L(C)"]
    measured = [np.sqrt(v) / y for v, y in zip(variances, values, strict=True) if v is not None]
    if dof > 0:
        log_resid = np.log(law(flops)) - np.log(values)
        fallback = np.sqrt((log_resid @ log_resid) / dof) * values  # relative -> absolute
    elif measured:
        fallback = float(np.median(measured)) * values
    sd = []
    for i, v in enumerate(variances):
        if v is not None:
            sd.append(np.sqrt(v))
        elif fallback is not None:
            sd.append(fallback[i])
        else:
            return None
    return np.asarray(sd, dtype=float)


def law_bootstrap(law: PowerLaw, flops, values, variances: list, reps: int = REPS,
                  seed: int = 0) -> list[PowerLaw] | None:  # fmt: skip
    """``reps`` refits of ``law`` to its points redrawn with their noise (see the module
    docstring); ``None`` when some point's noise is unknown."""
    c, y = np.asarray(flops, dtype=float), np.asarray(values, dtype=float)
    sd = _noise_sd(law, c, y, variances)
    if sd is None:
        return None
    rng = np.random.default_rng(seed)
    centre = law(c)
    laws = []
    for _ in range(reps):
        drawn = centre + rng.normal(0.0, sd)
        if np.any(drawn <= 0):
            continue
        try:
            laws.append(fit_power_law(c, drawn, start=law))
        except ValueError:
            continue
    return laws or None


def parameter_intervals(laws: list[PowerLaw] | None, level: float) -> dict[str, list[float]] | None:
    """The central ``level`` interval of ``A``, ``alpha`` and ``E`` over bootstrap refits."""
    if not laws:
        return None
    return {
        name: list(percentile_interval(np.array([getattr(w, name) for w in laws]), level))
        for name in ("A", "alpha", "E")
    }


def prediction_interval(laws: list[PowerLaw] | None, flops: float, level: float,
                        then=None) -> list[float] | None:  # fmt: skip
    """The central ``level`` interval of the laws' prediction at ``flops`` (through ``then``,
    the loss-to-accuracy step, when given)."""
    if not laws:
        return None
    predicted = np.array([float(w(flops)) for w in laws])
    if then is not None:
        predicted = np.asarray(then(predicted), dtype=float)
    return list(percentile_interval(predicted, level))


def band(laws: list[PowerLaw], flops, level: float, n: int = 40) -> dict[str, list[float]]:
    """The laws' central ``level`` band over a log grid a little past the points (for the fit
    picture: ``flops``, ``lo``, ``hi``)."""
    c = np.asarray(flops, dtype=float)
    grid = np.logspace(np.log10(c.min()) - 0.2, np.log10(c.max()) + 0.4, n)
    curves = np.array([w(grid) for w in laws])
    tail = 100 * (1 - level) / 2
    lo, hi = np.nanpercentile(curves, [tail, 100 - tail], axis=0)
    return {"flops": grid.tolist(), "lo": lo.tolist(), "hi": hi.tolist()}


def rollout(points: Any) -> list[dict[str, Any]]:
    """Fit on the smallest ``k`` sizes, predict size ``k + 1``, for every ``k >= 3``
    (``points``: one mix's final points, smallest first, with ``size``, ``flops``, ``value``)."""
    out = []
    for k in range(MIN_SIZES, len(points)):
        fitted = points.iloc[:k]
        target = points.iloc[k]
        predicted = float(fit_power_law(fitted["flops"], fitted["value"])(target["flops"]))
        actual = float(target["value"])
        out.append(
            {
                "fit_sizes": list(fitted["size"]),
                "size": str(target["size"]),
                "predicted": predicted,
                "actual": actual,
                "rel_error": (predicted - actual) / actual if actual else None,
            }
        )
    return out


def add_intervals(result: dict[str, Any], frame: Any, level: float = 0.95) -> dict[str, Any]:
    """``fit_ladder``'s result with, per mix, ``interval`` (A, alpha, E), the held-out
    prediction's ``interval`` and, with 4 or more sizes, ``rollout`` (of step 1, the loss)."""
    import pandas as pd

    from olmotrain.ladder.fit import Sigmoid

    loss_metric = result.get("loss_metric", result["metric"])
    variances = point_variances(frame, loss_metric)
    result["level"] = level
    for mix, entry in result["fits"].items():
        points = pd.DataFrame(entry["points"])
        noise = [variances.get((mix, s)) for s in points["size"]]
        law = PowerLaw(entry["A"], entry["alpha"], entry["E"])
        laws = law_bootstrap(law, points["flops"], points["value"], noise)
        entry["interval"] = parameter_intervals(laws, level)
        if laws:
            entry["band"] = band(laws, points["flops"], level)
        step2 = entry.get("step2", {})
        then = Sigmoid(*(step2[k] for k in ("a", "k", "L0", "b"))) if "a" in step2 else None
        holdout = entry.get("holdout")
        if holdout is not None:
            below = points.iloc[:-1]
            fitted = fit_power_law(below["flops"], below["value"])
            laws = law_bootstrap(fitted, below["flops"], below["value"], noise[:-1])
            holdout["interval"] = prediction_interval(
                laws, float(points["flops"].iloc[-1]), level, then
            )
        if len(points) >= MIN_SIZES + 1:
            entry["rollout"] = rollout(points)
    return result
