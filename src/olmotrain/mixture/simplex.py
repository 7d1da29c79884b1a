"""The feasible mixes: the probability simplex with a cap per source and some weights fixed.

A source's cap comes from how much data it has: a mix that gives it weight ``w`` of a target of
``T`` tokens repeats it ``w * T / available`` times, so ``max_repetition_ratio`` bounds ``w``. A
fixed source keeps its weight whatever the optimiser would like. :func:`project` is the Euclidean
projection onto that set (a bisection on the one Lagrange multiplier of ``sum = 1``, then solved
exactly on the active set), :func:`dirichlet` draws random feasible mixes around a prior.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import numpy as np

from olmotrain.errors import UserError

TOLERANCE = 1e-9
"""Slack in the feasibility checks, for weights that went through decimal text."""
BISECTION_STEPS = 100


@dataclass(frozen=True)
class Constraints:
    """Which mixes are allowed, and the prior a KL penalty pulls toward.

    ``upper[j]`` caps source j (1.0: no cap); ``fixed`` pins sources to a weight; ``prior`` sums to
    1 over all sources (a fixed source's prior is ignored: see :meth:`anchor`); ``cap_reason``
    says in words why a capped source has its cap, for error messages."""

    sources: tuple[str, ...]
    upper: tuple[float, ...]
    fixed: dict[str, float] = field(default_factory=dict)
    prior: tuple[float, ...] = ()
    kl_weight: float = 0.0
    cap_reason: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.prior:  # frozen: set through object.__setattr__
            object.__setattr__(self, "prior", (1.0 / len(self.sources),) * len(self.sources))
        if not len(self.upper) == len(self.prior) == len(self.sources):
            raise ValueError("sources, upper and prior must have one entry per source")

    def free(self) -> np.ndarray:
        """Boolean mask of the sources not fixed."""
        return np.array([s not in self.fixed for s in self.sources])

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bound per source (a fixed source: its weight twice)."""
        lo = np.array([self.fixed.get(s, 0.0) for s in self.sources], dtype=float)
        hi = np.array(
            [self.fixed.get(s, min(u, 1.0)) for s, u in zip(self.sources, self.upper, strict=True)],
            dtype=float,
        )
        return lo, hi

    def anchor(self) -> np.ndarray:
        """The prior as a mix with the fixed weights: fixed sources at their weight, the free ones
        sharing the rest in proportion to the prior (uniformly when it gives them nothing)."""
        free = self.free()
        lo, _ = self.bounds()
        out = lo.copy()
        if not free.any():  # every weight fixed: the one feasible mix
            return out
        prior = np.asarray(self.prior, dtype=float)[free]
        prior = prior / prior.sum() if prior.sum() > 0 else np.full(len(prior), 1.0 / len(prior))
        out[free] = prior * (1.0 - lo.sum())
        return out

    def check(self) -> None:
        """Raise :class:`UserError` when a cap or weight is out of range or no mix is feasible."""
        for name in self.fixed:
            if name not in self.sources:
                raise UserError(f"fixed weight for unknown source {name!r}; {_known(name, self)}")
        for s, u in zip(self.sources, self.upper, strict=True):
            if not u >= 0:  # also catches NaN
                raise UserError(f"source {s}: its cap {u} is negative; a cap must be >= 0")
        for s, w in self.fixed.items():
            if not 0 <= w <= 1:
                raise UserError(f"source {s}: fixed weight {w} is outside [0, 1]")
        prior = np.asarray(self.prior, dtype=float)
        if np.any(~(prior >= 0)) or abs(prior.sum() - 1) > 1e-6:
            raise UserError("the prior must be non-negative weights adding up to 1")
        if self.kl_weight < 0:
            raise UserError(f"kl_weight is {self.kl_weight}; it must be >= 0")
        self._check_feasible()

    def _check_feasible(self) -> None:
        lo, hi = self.bounds()
        free = self.free()
        fixed_sum = float(lo[~free].sum())
        for s, w in self.fixed.items():
            cap = self.upper[self.sources.index(s)]
            if w > cap + TOLERANCE:
                raise UserError(
                    f"no feasible mix: {s} is fixed at {w:g} above its cap {cap:.3g}"
                    f"{self._why(s)}; lower its fixed weight or raise its cap"
                )
        if fixed_sum > 1 + TOLERANCE:
            raise UserError(
                f"no feasible mix: the fixed weights ({self._listed(~free, lo)}) add up to "
                f"{fixed_sum:.4g} > 1; lower them"
            )
        if not free.any():
            if abs(fixed_sum - 1) > TOLERANCE:
                raise UserError(
                    f"no feasible mix: every source is fixed and the weights add up to "
                    f"{fixed_sum:.4g}, not 1; fix them to add up to 1 or free a source"
                )
            return
        total = fixed_sum + float(hi[free].sum())
        if total < 1 - TOLERANCE:
            capped = [j for j in np.argsort(hi) if free[j] and hi[j] < 1]
            limiting = self.sources[capped[0]]
            head = f"fixed weights {fixed_sum:.4g} + " if self.fixed else ""
            raise UserError(
                f"no feasible mix: {head}the caps of the free sources ("
                f"{self._listed(free, hi)}) add up to {total:.4g} < 1; add data, raise "
                f"max_repetition_ratio of the most limiting source {limiting}, or shorten the target"
            )

    def _why(self, source: str) -> str:
        return f" ({self.cap_reason[source]})" if source in self.cap_reason else ""

    def _listed(self, mask: np.ndarray, values: np.ndarray) -> str:
        return ", ".join(
            f"{s} {values[j]:.3g}{self._why(s)}" for j, s in enumerate(self.sources) if mask[j]
        )


def _known(name: str, c: Constraints) -> str:
    close = difflib.get_close_matches(name, c.sources, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return f"{hint}the sources are {', '.join(c.sources)}"


def project(points: np.ndarray, c: Constraints) -> np.ndarray:
    """The nearest feasible mix to each row of ``points`` (Euclidean).

    The projection is ``clip(x - tau, lo, hi)`` with the one ``tau`` that makes the row add up to
    1 (KKT of the problem). ``tau`` is bisected for all rows at once, then solved exactly from
    the coordinates strictly between their bounds, so the caps hold exactly (``clip``) and the sum
    to rounding. ``c`` must be feasible (:meth:`Constraints.check`)."""
    x = np.atleast_2d(np.asarray(points, dtype=float))
    lo, hi = c.bounds()
    # Bracket: below `low` every coordinate sits at its upper bound (sum >= 1), above `high`
    # at its lower bound (sum <= 1).
    low = (x - hi).min(axis=1) - 1.0
    high = (x - lo).max(axis=1) + 1.0
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (low + high)
        over = np.clip(x - mid[:, None], lo, hi).sum(axis=1) > 1.0
        low = np.where(over, mid, low)
        high = np.where(over, high, mid)
    tau = 0.5 * (low + high)
    shifted = x - tau[:, None]
    inside = (shifted > lo) & (shifted < hi)
    clipped = np.where(inside, 0.0, np.clip(shifted, lo, hi)).sum(axis=1)
    count = inside.sum(axis=1)
    exact = (np.where(inside, x, 0.0).sum(axis=1) + clipped - 1.0) / np.maximum(count, 1)
    tau = np.where(count > 0, exact, tau)
    out = np.clip(x - tau[:, None], lo, hi)
    return out.reshape(np.shape(points)) if np.ndim(points) == 1 else out


def dirichlet(n: int, concentration: float, c: Constraints, rng: np.random.Generator) -> np.ndarray:
    """``n`` random feasible mixes: the free sources drawn from Dirichlet(``concentration`` x the
    prior over them) and scaled to the free mass, the fixed ones at their weight, then projected
    onto the caps. The same generator state gives the same draws."""
    anchor = c.anchor()
    free = c.free()
    lo, _ = c.bounds()
    out = np.tile(lo, (n, 1))
    if free.any():
        mass = 1.0 - lo.sum()
        share = anchor[free] / mass if mass > 0 else np.full(free.sum(), 1.0 / free.sum())
        # A zero prior would be an invalid Dirichlet parameter: a small one keeps such sources rare.
        alpha = np.maximum(concentration * share, 1e-3)
        out[:, free] = rng.dirichlet(alpha, size=n) * mass
    return project(out, c)
