"""``propose_from_table`` end to end at olmix's scale: a synthetic swarm of 512 mixes of 8 sources,
metric columns from a known data mixing law plus noise.

    .venv/bin/python bench/mixture_fit.py [--columns 3] [--runs 512] [--sources 8] [--json]
    .venv/bin/python bench/mixture_fit.py --model lightgbm      # the slowest family, forced

Timed: cross-validation of every family (5-fold), the fit of the chosen one, the proposal and its
bootstrap interval (``--reps`` resamples). Goal: <= 30 s on 2 cores. Also reported: the regret of
the proposal under the true law (true objective at the proposal minus the true optimum), as a
share of the objective's range over the simplex.

The law: domain i's loss ``c_i + k_i exp(t_i . r)`` with ``t_ii`` in [-4, -2] and the other
``t_ij`` ~ N(0, 0.3); ``--columns`` domains are measured (noise sd 0.01) and the objective is
their average. The last line is ``RESULT ...`` (or the JSON object with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from olmotrain.mixture.propose import REPS, propose_from_table
from olmotrain.mixture.tables import from_frames

GOAL_S = 30.0
NOISE = 0.01


def law(sources: int, columns: int, seed: int):
    """Per-domain losses of mixes (rows), one column per measured domain."""
    rng = np.random.default_rng(seed)
    T = 0.3 * rng.normal(size=(sources, columns))
    T[np.arange(columns), np.arange(columns)] = -rng.uniform(2, 4, size=columns)
    c, k = 1 + rng.uniform(size=columns), 0.5 + rng.uniform(size=columns)
    return lambda R: c + k * np.exp(np.atleast_2d(R) @ T)


def true_optimum(objective, sources: int) -> tuple[float, float]:
    """The objective's minimum over the simplex (convex: SLSQP from a few starts) and maximum
    (at a corner)."""
    best = np.inf
    for start in np.random.default_rng(1).dirichlet(np.ones(sources), 8):
        result = minimize(
            lambda w: float(objective(w)[0]), start, method="SLSQP",
            bounds=[(0, 1)] * sources, options={"ftol": 1e-14, "maxiter": 1000},
            constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}],
        )  # fmt: skip
        best = min(best, float(result.fun))
    return best, float(objective(np.eye(sources)).max())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=512)
    p.add_argument("--sources", type=int, default=8)
    p.add_argument("--columns", type=int, default=3, help="measured domains (<= sources)")
    p.add_argument("--reps", type=int, default=REPS, help="bootstrap resamples")
    p.add_argument("--model", default=None, help="a family (default: the best by CV)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    domains = law(args.sources, args.columns, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    R = rng.dirichlet(np.ones(args.sources), args.runs)
    Y = domains(R) + NOISE * rng.normal(size=(args.runs, args.columns))
    runs = [f"run{i:04d}" for i in range(args.runs)]
    names = [f"eval/lm/d{j}/BPB" for j in range(args.columns)]
    table = from_frames(
        pd.DataFrame(R, columns=[f"src{j}" for j in range(args.sources)]).assign(run=runs),
        pd.DataFrame(Y, columns=names).assign(run=runs),
        "bench",
    )
    metric = {n: 1.0 / args.columns for n in names}
    start = time.perf_counter()
    proposal = propose_from_table(
        table, metric, prior="uniform", model=args.model, seed=args.seed, reps=args.reps
    )
    seconds = time.perf_counter() - start

    def objective(W):
        return domains(W).mean(axis=1)

    low, high = true_optimum(objective, args.sources)
    w = np.array(list(proposal.proposal.values()))
    regret = (float(objective(w)[0]) - low) / (high - low)
    best_run = (float(objective(R).min()) - low) / (high - low)
    result = {
        "seconds": round(seconds, 2),
        "goal_s": GOAL_S,
        "ok": seconds <= GOAL_S,
        "runs": args.runs,
        "sources": args.sources,
        "columns": args.columns,
        "reps": args.reps,
        "model": proposal.model,
        "cv_rmse": {f: round(s.rmse, 5) for f, s in proposal.cv.items()},
        "regret": regret,
        "best_run_regret": best_run,
        "cores": os.cpu_count(),
        "load": os.getloadavg()[0],
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"RESULT {seconds:.1f} s (goal <= {GOAL_S:g} s, {'ok' if result['ok'] else 'SLOW'}) "
            f"{args.runs} runs x {args.sources} sources x {args.columns} column(s), {args.reps} "
            f"resamples, model {proposal.model}; regret {regret:.2e} of the range (best run "
            f"{best_run:.2e}); load {result['load']:.1f} on {result['cores']} cores"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
