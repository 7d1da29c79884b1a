"""Regressions from a mix (weights over sources) to a metric, and their cross-validation.

The objective is a weighted average of metric columns (say, the BPB of several held-out
domains); each column gets its own regression and the objective's prediction is the same
weighted average of theirs, as the Data Mixing Laws fit one law per domain. Families:

- ``log_linear``: the data mixing law of Ye et al. 2024 (arXiv 2403.16952),
  ``y = c + k * exp(sum_j t_j r_j)``. For fixed ``t`` the law is linear in ``(c, k)``, so those
  are solved in closed form and least squares searches ``t`` alone (variable projection), from
  several starts. Shifting every ``t_j`` by the same amount multiplies ``exp(t . r)`` by a
  constant (the weights add up to 1), which ``k`` absorbs: a tiny ridge on ``t`` picks one of
  those equivalent laws. ``k`` may be negative (a metric that rises with the mix, an accuracy).
- ``lightgbm``: gradient-boosted trees per column, RegMix's regression (Liu et al. 2024,
  arXiv 2407.01492), deterministic, with leaf sizes scaled down so that swarms of 16-64 runs
  still split.
- ``linear``: ridge regression on the weights, the baseline.

Columns are standardised before fitting, so the ridges and tolerances mean the same for a loss
near 3 and an accuracy near 0.3. :func:`cross_validate` scores a family by K-fold out-of-fold
predictions of the objective; :func:`choose` takes the lowest RMSE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from olmotrain.errors import UserError

FAMILIES = ("log_linear", "lightgbm", "linear")
LOG_LINEAR_RIDGE = 1e-6
"""On ``t``, against squared residuals of the standardised column: picks among equivalent laws."""
LINEAR_RIDGE = 1e-3
EXP_CLIP = 50.0
"""``t . r`` is clipped here so that a wild start cannot overflow ``exp``."""
TREES = 100
LEARNING_RATE = 0.1
FOLDS = 5


def min_runs(num_sources: int, folds: int = FOLDS) -> int:
    """Runs a fit of ``num_sources`` needs: every training fold of K-fold CV must keep more runs
    than the log-linear law has free parameters (S + 1: c, k and t up to the shared shift)."""
    params = num_sources + 1
    return max(8, math.ceil((params + 1) * folds / (folds - 1)))


MIN_RUNS = min_runs


def check_runs(num_runs: int, num_sources: int, folds: int = FOLDS) -> None:
    """:class:`UserError` when there are too few runs to fit and cross-validate."""
    need = min_runs(num_sources, folds)
    if num_runs < need:
        raise UserError(
            f"a fit of {num_sources} sources needs at least {need} runs (the log-linear law has "
            f"{num_sources + 1} free parameters and {folds}-fold CV holds 1/{folds} of the runs "
            f"out); got {num_runs}: run a larger swarm"
        )


@dataclass(frozen=True)
class LogLinear:
    """``y = c + k * exp(R @ t)`` for one column."""

    c: float
    k: float
    t: np.ndarray

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        return self.c + self.k * np.exp(np.clip(weights @ self.t, -EXP_CLIP, EXP_CLIP))


@dataclass(frozen=True)
class Linear:
    """``y = b0 + R @ b`` for one column."""

    b0: float
    b: np.ndarray

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        return self.b0 + weights @ self.b


@dataclass(frozen=True)
class Trees:
    """A fitted LightGBM booster for one column (its prediction in the column's units)."""

    booster: Any
    mean: float
    scale: float

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        return self.mean + self.scale * self.booster.predict(weights)


@dataclass(frozen=True)
class Model:
    """One family's regressions, one per metric column, and the columns' weights."""

    family: str
    laws: tuple[Any, ...]
    column_weights: np.ndarray

    @property
    def smooth(self) -> bool:
        """Whether the prediction is differentiable in the mix (trees are piecewise constant)."""
        return self.family != "lightgbm"

    def predict(self, weights: np.ndarray) -> np.ndarray:
        """The objective predicted for each row of ``weights`` (runs x sources)."""
        w = np.atleast_2d(np.asarray(weights, dtype=float))
        out = np.zeros(len(w))
        for law, cw in zip(self.laws, self.column_weights, strict=True):
            if cw:
                out += cw * law(w)
        return out


@dataclass(frozen=True)
class CVScore:
    """Out-of-fold RMSE and Spearman correlation of the objective, and the predictions."""

    rmse: float
    spearman: float
    oof: np.ndarray


def fit(
    family: str,
    weights: np.ndarray,
    Y: np.ndarray,
    column_weights: np.ndarray,
    seed: int = 0,
    *,
    warm: Model | None = None,
) -> Model:
    """Fit ``family`` to every column of ``Y`` (runs x columns). ``warm``: a model of the same
    family whose parameters start the search (one start instead of several; for resampling)."""
    R = np.asarray(weights, dtype=float)
    Y = np.asarray(Y, dtype=float).reshape(len(R), -1)
    cw = np.asarray(column_weights, dtype=float)
    laws = []
    for j in range(Y.shape[1]):
        y = Y[:, j]
        if not cw[j]:
            laws.append(Linear(float(y.mean()), np.zeros(R.shape[1])))
            continue
        start = warm.laws[j] if warm is not None and warm.family == family else None
        if family == "log_linear":
            laws.append(_fit_log_linear(R, y, start))
        elif family == "lightgbm":
            laws.append(_fit_trees(R, y, seed))
        elif family == "linear":
            laws.append(_fit_linear(R, y))
        else:
            raise UserError(f"unknown model {family!r}; choose one of {', '.join(FAMILIES)}")
    return Model(family, tuple(laws), cw)


def _standardised(y: np.ndarray) -> tuple[np.ndarray, float, float]:
    mean = float(y.mean())
    scale = float(y.std()) or 1.0  # a constant column: nothing to explain, any scale does
    return (y - mean) / scale, mean, scale


def _fit_linear(R: np.ndarray, y: np.ndarray) -> Linear:
    z, mean, scale = _standardised(y)
    X = R - R.mean(axis=0)
    b = np.linalg.solve(X.T @ X + LINEAR_RIDGE * len(R) * np.eye(R.shape[1]), X.T @ z)
    b0 = -float(R.mean(axis=0) @ b)
    return Linear(mean + scale * b0, scale * b)


def _solve_ck(e: np.ndarray, z: np.ndarray) -> tuple[float, float]:
    """Least-squares ``c, k`` of ``z = c + k e``."""
    ec = e - e.mean()
    k = float(ec @ (z - z.mean()) / max(ec @ ec, 1e-300))
    return float(z.mean() - k * e.mean()), k


def _fit_log_linear(R: np.ndarray, y: np.ndarray, warm: Any = None) -> LogLinear:
    from scipy.optimize import least_squares

    z, mean, scale = _standardised(y)
    ridge = math.sqrt(LOG_LINEAR_RIDGE)

    def residuals(t: np.ndarray) -> np.ndarray:
        e = np.exp(np.clip(R @ t, -EXP_CLIP, EXP_CLIP))
        c, k = _solve_ck(e, z)
        return np.concatenate([c + k * e - z, ridge * t])

    if isinstance(warm, LogLinear):
        starts = [warm.t]
    else:
        # Near t = 0 the law is linear in the mix with slopes proportional to t: the linear fit
        # gives t's direction, its scale and sign are searched.
        b = _fit_linear(R, z).b
        b = b - b.mean()
        direction = b / (np.linalg.norm(b) or 1.0)
        starts = [s * direction for s in (-4.0, -1.0, 1.0, 4.0)]
    best = None
    for start in starts:
        result = least_squares(residuals, start, method="lm", xtol=1e-10, ftol=1e-10, max_nfev=400)
        if best is None or result.cost < best.cost:
            best = result
    t = best.x  # type: ignore[union-attr]
    c, k = _solve_ck(np.exp(np.clip(R @ t, -EXP_CLIP, EXP_CLIP)), z)
    return LogLinear(mean + scale * c, scale * k, t)


def _fit_trees(R: np.ndarray, y: np.ndarray, seed: int) -> Trees:
    import lightgbm

    z, mean, scale = _standardised(y)
    n = len(R)
    params = {
        "objective": "regression",
        "learning_rate": LEARNING_RATE,
        "num_leaves": 15,
        # LightGBM's defaults (20 per leaf, 3 per bin) would not split a swarm of 32 runs.
        "min_data_in_leaf": max(2, min(20, n // 8)),
        "min_sum_hessian_in_leaf": 1e-6,
        "min_data_in_bin": 1,
        "deterministic": True,
        "force_row_wise": True,
        "seed": seed,
        "num_threads": 1,
        "verbose": -1,
    }
    # The native API: the scikit-learn wrapper would need scikit-learn for nothing else.
    data = lightgbm.Dataset(R, z, params={"verbose": -1, "min_data_in_bin": 1})
    model = lightgbm.train(params, data, num_boost_round=TREES)
    return Trees(model, mean, scale)


def cross_validate(
    family: str,
    weights: np.ndarray,
    Y: np.ndarray,
    column_weights: np.ndarray,
    folds: int = FOLDS,
    seed: int = 0,
) -> CVScore:
    """K-fold (``min(folds, runs)``, shuffled by ``seed``) out-of-fold predictions of the
    objective, their RMSE and Spearman correlation against the objective measured."""
    from scipy.stats import spearmanr

    R = np.asarray(weights, dtype=float)
    Y = np.asarray(Y, dtype=float).reshape(len(R), -1)
    cw = np.asarray(column_weights, dtype=float)
    truth = Y @ cw
    k = min(folds, len(R))
    order = np.random.default_rng(seed).permutation(len(R))
    oof = np.empty(len(R))
    for held in np.array_split(order, k):
        train = np.setdiff1d(order, held)
        oof[held] = fit(family, R[train], Y[train], cw, seed).predict(R[held])
    rmse = float(np.sqrt(np.mean((oof - truth) ** 2)))
    spearman = float(spearmanr(oof, truth).statistic) if np.ptp(oof) and np.ptp(truth) else math.nan
    return CVScore(rmse=rmse, spearman=spearman, oof=oof)


def choose(scores: dict[str, CVScore]) -> str:
    """The family with the lowest out-of-fold RMSE (ties: the earlier in :data:`FAMILIES`)."""
    ranked = [f for f in FAMILIES if f in scores and np.isfinite(scores[f].rmse)]
    ranked += [f for f in scores if f not in FAMILIES and np.isfinite(scores[f].rmse)]
    if not ranked:
        raise ValueError("no family has a finite cross-validation score")
    return min(ranked, key=lambda f: scores[f].rmse)
