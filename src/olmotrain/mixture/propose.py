"""The proposal: the feasible mix a fitted regression predicts best, and how sure that is.

:func:`propose` scores a large set of feasible candidates (Dirichlet draws at several
concentrations around the prior and around the uniform mix, each source's corner, the prior, the
swarm's own mixes) by the predicted objective plus ``kl_weight * KL(w || prior)`` (the penalty
counts as worse whichever way the metric goes), then refines the best few with SLSQP when the
regression is smooth; for trees the proposal is the mean of the best candidates (RegMix averages
its best predicted mixes too). :func:`bootstrap_interval` refits the regression on runs
resampled with replacement and takes the percentile interval of its prediction at the proposal
(:mod:`olmotrain.confidence.bootstrap`).

:func:`propose_from_table` is the whole step from a swarm's table: caps from the data each source
has, the prior, cross-validation of the families, the fit, the proposal and its interval.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from olmotrain.confidence.bootstrap import bootstrap, percentile_interval
from olmotrain.errors import UserError
from olmotrain.ladder.fit import higher_is_better
from olmotrain.mixture.regression import (
    FAMILIES,
    FOLDS,
    CVScore,
    Model,
    check_runs,
    choose,
    cross_validate,
    fit,
)
from olmotrain.mixture.simplex import Constraints, dirichlet, project
from olmotrain.mixture.tables import MixtureTable, metric_matrix

CANDIDATES = 20_000
CONCENTRATIONS = (0.25, 1.0, 4.0, 16.0)
"""Dirichlet concentrations per source: near the corners (0.25) to near the centre (16)."""
REFINE = 4
"""Best candidates refined by SLSQP."""
TOP_AVERAGED = 100
"""Trees: the proposal is the mean of this many best candidates (RegMix's choice): their
prediction is piecewise constant, so many candidates tie and any one of them is arbitrary."""
REPS = 200
LEVEL = 0.95
DIGITS = 6
"""Decimals of the weights shown in the JSON (rounded so that they stay feasible)."""
STEP = 1e-7
"""Forward-difference step of the gradient that SLSQP gets."""


def _kl(W: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``KL(w || q)`` per row, ``0 log 0 = 0``."""
    safe = np.maximum(W, 1e-300)
    return np.where(W > 0, W * np.log(safe / q), 0.0).sum(axis=1)


def _scorer(model: Model, c: Constraints, minimize: bool) -> Any:
    """Rows -> what the search minimises: the objective (negated when higher is better) plus the
    KL penalty toward the prior."""
    sign = 1.0 if minimize else -1.0
    q = np.maximum(c.anchor(), 1e-12)

    def score(W: np.ndarray) -> np.ndarray:
        W = np.atleast_2d(W)
        value = sign * model.predict(W)
        return value + c.kl_weight * _kl(W, q) if c.kl_weight else value

    return score


def candidate_mixes(
    c: Constraints, rng: np.random.Generator, n: int = CANDIDATES, include: Any = None
) -> np.ndarray:
    """Feasible mixes to score: Dirichlet draws around the prior and the uniform mix at
    :data:`CONCENTRATIONS`, each source's corner, the prior, and ``include`` (projected)."""
    size = len(c.sources)
    uniform = Constraints(c.sources, c.upper, c.fixed, (1.0 / size,) * size)
    per = max(1, n // (2 * len(CONCENTRATIONS)))
    draws = [
        dirichlet(per, conc * size, around, rng)
        for around in (c, uniform)
        for conc in CONCENTRATIONS
    ]
    extra = [np.atleast_2d(include)] if include is not None else []
    return project(np.vstack([*draws, np.eye(size), c.anchor()[None, :], *extra]), c)


def propose(
    model: Model,
    c: Constraints,
    minimize: bool,
    rng: np.random.Generator,
    candidates: int = CANDIDATES,
    include: Any = None,
) -> np.ndarray:
    """The feasible mix with the best predicted objective (plus the KL penalty), exactly
    feasible (trees: the mean of the best candidates). ``include``: more mixes to consider (the
    swarm's own)."""
    score = _scorer(model, c, minimize)
    pool = candidate_mixes(c, rng, candidates, include)
    order = np.argsort(score(pool), kind="stable")
    if not model.smooth:
        return project(pool[order[:TOP_AVERAGED]].mean(axis=0), c)  # a mean of feasible mixes
    tried = [pool[order[0]]]
    if c.free().any():
        tried += [_refine(score, start, c) for start in pool[order[:REFINE]]]
    # The first of the best: a refinement must beat the best candidate to replace it.
    return project(tried[int(np.argmin(score(np.vstack(tried))))], c)


def _refine(score: Any, start: np.ndarray, c: Constraints) -> np.ndarray:
    """SLSQP from ``start`` over the free sources (bounds [0, cap], adding up to the free mass)."""
    from scipy.optimize import minimize

    free = c.free()
    lo, hi = c.bounds()
    mass = 1.0 - float(lo[~free].sum())
    m = int(free.sum())

    def full(x: np.ndarray) -> np.ndarray:
        w = start.copy()
        w[free] = x
        return w

    def jac(x: np.ndarray) -> np.ndarray:
        # One vectorised call: the model predicts all S + 1 rows at once.
        W = np.tile(full(x), (m + 1, 1))
        W[1:, free] += STEP * np.eye(m)
        v = score(W)
        return (v[1:] - v[0]) / STEP

    result = minimize(
        lambda x: float(score(full(x))[0]),
        start[free],
        jac=jac,
        method="SLSQP",
        bounds=list(zip(lo[free], hi[free], strict=True)),
        constraints=[{"type": "eq", "fun": lambda x: x.sum() - mass, "jac": lambda x: np.ones(m)}],
        options={"maxiter": 200, "ftol": 1e-12},
    )
    return project(full(result.x), c)


def bootstrap_interval(
    family: str,
    weights: np.ndarray,
    Y: np.ndarray,
    column_weights: np.ndarray,
    at: np.ndarray,
    reps: int = REPS,
    level: float = LEVEL,
    seed: int = 0,
    *,
    warm: Model | None = None,
) -> tuple[float, float]:
    """Percentile interval of the objective predicted at ``at`` by fits on runs resampled with
    replacement. ``warm``: the fit on all runs, which starts each refit (else it is fitted)."""
    R = np.asarray(weights, dtype=float)
    Y = np.asarray(Y, dtype=float).reshape(len(R), -1)
    point = np.atleast_2d(np.asarray(at, dtype=float))
    warm = warm if warm is not None else fit(family, R, Y, column_weights, seed)

    def statistic(rows: np.ndarray) -> float:
        refit = fit(family, R[rows], Y[rows], column_weights, seed, warm=warm)
        return float(refit.predict(point)[0])

    samples = bootstrap(statistic, len(R), reps, np.random.default_rng(seed))
    return percentile_interval(samples, level)


def round_feasible(w: np.ndarray, c: Constraints, digits: int = DIGITS) -> np.ndarray:
    """``w`` on a grid of ``10**-digits`` that still adds up to 1 and keeps the caps and fixed
    weights: floors, then the units left over go where rounding lost the most."""
    unit = 10.0**digits
    lo, hi = c.bounds()
    scaled = np.asarray(w, dtype=float) * unit
    fixed = ~c.free()
    grid = np.where(fixed, np.round(scaled), np.floor(scaled + 1e-6))
    room = np.where(fixed, 0, np.floor(hi * unit + 1e-6) - grid)
    left = int(round(unit - grid.sum()))
    # Units short go to the largest remainders with room; units over (floors of values a hair
    # below a grid point round up) come off the smallest remainders.
    step = 1 if left > 0 else -1
    remainder = scaled - grid
    for j in np.argsort(-step * remainder, kind="stable"):
        if left == 0:
            break
        if not fixed[j] and (room[j] >= 1 if step > 0 else grid[j] >= 1):
            grid[j] += step
            left -= step
    out = grid / unit
    return np.where(fixed, lo, out)


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


@dataclass
class Proposal:
    """What :func:`propose_from_table` found; :meth:`to_json` is the ``fit --json`` object."""

    metric: dict[str, float]
    model: str
    cv: dict[str, CVScore]
    proposal: dict[str, float]
    """The exact weights (feasible to rounding); :meth:`to_json` rounds them for display."""
    predicted: float
    interval: tuple[float, float]
    repetition: dict[str, float | None]
    minimize: bool
    prior: dict[str, float]
    caps: dict[str, float | None]
    """Per source its cap, ``None`` when uncapped."""
    fixed: dict[str, float]
    kl_weight: float
    runs: int
    best_run: dict[str, Any]
    constraints: Constraints = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        """The contract's keys first (metric ... repetition), then the rest."""
        shown = round_feasible(np.array(list(self.proposal.values())), self.constraints)
        return {
            "metric": next(iter(self.metric)) if len(self.metric) == 1 else dict(self.metric),
            "model": self.model,
            "cv": {
                f: {"rmse": _finite(s.rmse), "spearman": _finite(s.spearman)}
                for f, s in self.cv.items()
            },
            "proposal": {s: float(v) for s, v in zip(self.proposal, shown, strict=True)},
            "predicted": _finite(self.predicted),
            "interval": [_finite(self.interval[0]), _finite(self.interval[1])],
            "repetition": {
                s: _finite(r) if r is not None else None for s, r in self.repetition.items()
            },
            "minimize": self.minimize,
            "prior": dict(self.prior),
            "caps": dict(self.caps),
            "fixed": dict(self.fixed),
            "kl_weight": self.kl_weight,
            "runs": self.runs,
            "best_run": dict(self.best_run),
        }


def _tokens(n: float) -> str:
    """``2.1M``, ``62M``, ``1.5B``: token counts as people say them."""
    units = ("", "K", "M", "B", "T")
    k = 0
    while k < len(units) - 1 and abs(n) >= 1000 ** (k + 1):
        k += 1
    x = n / 1000**k
    text = f"{x:g}" if k == 0 else f"{x:.2g}" if abs(x) < 10 else f"{x:.0f}"
    if abs(float(text)) >= 1000 and k < len(units) - 1:  # 999,999 shows as 1M, not 1000K
        return f"{'-' if n < 0 else ''}1{units[k + 1]}"
    return text + units[k]


def _check_names(option: str, names: Any, sources: list[str]) -> None:
    """:class:`UserError` for a name in ``option`` that is no source of the table."""
    for name in names or ():
        if name not in sources:
            close = difflib.get_close_matches(name, sources, n=3, cutoff=0.5)
            hint = f"did you mean {' or '.join(close)}? " if close else ""
            raise UserError(
                f"{option}: unknown source {name!r}; {hint}the sources are {', '.join(sources)}"
            )


def _prior(prior: str | dict[str, float], sources: list[str], available: Any) -> np.ndarray:
    """The prior as weights over ``sources``: natural (in proportion to the tokens each has),
    uniform, or given (normalised; sources it leaves out get 0)."""
    if isinstance(prior, dict):
        _check_names("--prior", prior, sources)
        values = np.array([float(prior.get(s, 0.0)) for s in sources])
        if np.any(~(values >= 0)) or values.sum() <= 0:
            raise UserError("--prior: give non-negative weights, at least one of them positive")
        return values / values.sum()
    if prior == "uniform":
        return np.full(len(sources), 1.0 / len(sources))
    if prior != "natural":
        raise UserError(f"--prior {prior}: choose natural, uniform or src=weight,...")
    missing = [s for s in sources if s not in (available or {})]
    if missing:
        raise UserError(
            "--prior natural needs --available src=tokens,... for every source (missing: "
            f"{', '.join(missing)}); give it, or use --prior uniform"
        )
    values = np.array([float(available[s]) for s in sources])
    if values.sum() <= 0:
        raise UserError("--prior natural: the sources have no tokens available; check --available")
    return values / values.sum()


def constraints_for(
    sources: list[str],
    prior: np.ndarray,
    *,
    kl_weight: float = 0.0,
    available: dict[str, int] | None = None,
    target_tokens: int | None = None,
    max_repetition: dict[str, float] | None = None,
    fixed: dict[str, float] | None = None,
) -> Constraints:
    """Checked :class:`Constraints`: a source's cap is ``available * max_repetition /
    target_tokens`` (max_repetition 1.0 by default, olmo-core's) when the target is given."""
    for option, names in (("--available", available), ("--max-repetition", max_repetition),
                          ("--fixed", fixed)):  # fmt: skip
        _check_names(option, names, sources)
    for option, values in (("--available", available), ("--max-repetition", max_repetition)):
        for s, v in (values or {}).items():
            if not v >= 0 or (option == "--max-repetition" and not v > 0):
                raise UserError(f"{option}: {s} is {v}; it must be a positive number")
    upper = [1.0] * len(sources)
    reasons: dict[str, str] = {}
    if target_tokens is not None:
        if not target_tokens > 0:
            raise UserError(f"--target-tokens is {target_tokens}; it must be positive")
        missing = [s for s in sources if s not in (available or {})]
        if missing:
            raise UserError(
                "--target-tokens needs --available src=tokens for every source to cap its weight "
                f"(missing: {', '.join(missing)}); give them, or leave out --target-tokens"
            )
        for j, s in enumerate(sources):
            ratio = (max_repetition or {}).get(s, 1.0)
            cap = available[s] * ratio / target_tokens  # type: ignore[index]
            if cap < 1:
                upper[j] = cap
                reasons[s] = (
                    f"{s} has {_tokens(available[s])} tokens x max_repetition_ratio {ratio:g} "  # type: ignore[index]
                    f"for the target's {_tokens(target_tokens)}"
                )
    c = Constraints(tuple(sources), tuple(upper), dict(fixed or {}), tuple(prior),
                    kl_weight, reasons)  # fmt: skip
    c.check()
    return c


def propose_from_table(
    table: MixtureTable,
    metric: dict[str, float],
    *,
    minimize: bool | None = None,
    model: str | None = None,
    prior: str | dict[str, float] = "natural",
    kl_weight: float = 0.0,
    available: dict[str, int] | None = None,
    target_tokens: int | None = None,
    max_repetition: dict[str, float] | None = None,
    fixed: dict[str, float] | None = None,
    seed: int = 0,
    reps: int = REPS,
    folds: int = FOLDS,
    candidates: int = CANDIDATES,
) -> Proposal:
    """From a swarm's table to a proposal (see the module docstring). ``minimize=None``: by the
    first column's name (losses down, accuracies up); ``model=None``: every family is
    cross-validated and the lowest out-of-fold RMSE fits, else only ``model`` is."""
    Y = metric_matrix(table, metric)
    sources = list(table.sources)
    if model is not None and model not in FAMILIES:
        raise UserError(f"--model {model}: choose one of {', '.join(FAMILIES)}")
    c = constraints_for(
        sources,
        _prior(prior, sources, available),
        kl_weight=kl_weight,
        available=available,
        target_tokens=target_tokens,
        max_repetition=max_repetition,
        fixed=fixed,
    )
    check_runs(len(table.runs), len(sources), folds)
    if minimize is None:
        minimize = not higher_is_better(next(iter(metric)))
    cw = np.array(list(metric.values()))
    R = table.weights
    families = FAMILIES if model is None else (model,)
    cv = {f: cross_validate(f, R, Y, cw, folds, seed) for f in families}
    family = choose(cv)
    fitted = fit(family, R, Y, cw, seed)
    w = propose(fitted, c, minimize, np.random.default_rng(seed), candidates, include=R)
    interval = bootstrap_interval(family, R, Y, cw, w, reps, LEVEL, seed, warm=fitted)
    observed = Y @ cw
    best = int(np.argmin(observed) if minimize else np.argmax(observed))
    return Proposal(
        metric=dict(metric),
        model=family,
        cv=cv,
        proposal={s: float(v) for s, v in zip(sources, w, strict=True)},
        predicted=float(fitted.predict(w)[0]),
        interval=interval,
        repetition=_repetition(sources, w, available, target_tokens),
        minimize=minimize,
        prior={s: float(p) for s, p in zip(sources, c.prior, strict=True)},
        caps={s: (u if u < 1 else None) for s, u in zip(sources, c.upper, strict=True)},
        fixed=dict(c.fixed),
        kl_weight=kl_weight,
        runs=len(table.runs),
        best_run={"run": table.runs[best], "value": float(observed[best])},
        constraints=c,
    )


def _repetition(
    sources: list[str], w: np.ndarray, available: Any, target_tokens: int | None
) -> dict[str, float | None]:
    """How many times the target would repeat each source at ``w`` (``None``: not known)."""
    out: dict[str, float | None] = {}
    for s, weight in zip(sources, w, strict=True):
        tokens = (available or {}).get(s)
        if tokens is None or target_tokens is None:
            out[s] = None
        else:
            out[s] = float(weight * target_tokens / tokens) if tokens else 0.0
    return out
