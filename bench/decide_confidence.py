"""``ladder decide`` with its intervals at DataDecide's shape: 14 sizes x 4 mixes x 3 seeds, 20
evaluations per run (synthetic: a known law per mix, a steep decay at the end, evaluation and
seed noise). Goal: <= 10 s on 2 cores. The baseline, timed in the same run, is the same table's
ranking and decision accuracy without any noise analysis (``--smooth`` 1, points only), so the
ratio is what "how sure" costs.

    .venv/bin/python bench/decide_confidence.py [--json]

The last line is ``RESULT ...`` (or the JSON object with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd

from olmotrain.ladder.decide import decide, ranking, seed_averaged_accuracy


def ladder(rng: np.random.Generator, sizes: int = 14, mixes: int = 4, seeds: int = 3,
           evals: int = 20) -> pd.DataFrame:  # fmt: skip
    rows = []
    offsets = rng.normal(0, 0.03, mixes)
    for i in range(sizes):
        n = 4e6 * 1.45**i
        flops = 6 * n * 100 * n
        for m in range(mixes):
            for seed in range(seeds):
                shift = rng.normal(0, 0.01)
                for k in range(evals):
                    step = 1000 - (evals - 1 - k) * 10
                    rows.append({
                        "size": f"s{i:02d}", "mix": f"m{m}", "seed": seed, "num_params": n,
                        "step": step, "tokens": step, "flops": flops * step / 1000,
                        "loss": 30 * flops**-0.1 + 2 + offsets[m] + 0.002 * (evals - 1 - k)
                        + shift + rng.normal(0, 0.01),
                    })  # fmt: skip
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    frame = ladder(np.random.default_rng(0))

    start = time.perf_counter()
    last = frame.loc[frame.groupby(["size", "mix", "seed"])["step"].idxmax()]
    runs = last.rename(columns={"loss": "value"})
    target = runs[runs["size"] == "s13"].groupby("mix")["value"].mean().to_dict()
    plain = {
        s: seed_averaged_accuracy(runs, s, target, False)
        for s in sorted(runs["size"].unique())[:-1]
    }
    ranking(target, False)
    baseline = time.perf_counter() - start

    start = time.perf_counter()
    result = decide(frame, "loss")
    seconds = time.perf_counter() - start
    assert result["decision_accuracy"] == plain  # same point estimates, intervals added
    out = {
        "rows": len(frame),
        "decide_seconds": round(seconds, 3),
        "baseline_seconds": round(baseline, 4),
        "ratio": round(seconds / baseline, 1),
        "goal_seconds": 10,
        "inconclusive_pairs": sum(p["verdict"] == "inconclusive" for p in result["pairs"]),
        "pairs": len(result["pairs"]),
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(
            f"RESULT decide with intervals over {out['rows']:,} rows: {seconds:.2f} s (goal <= 10 s); "
            f"points only {baseline:.3f} s ({out['ratio']}x); "
            f"{out['inconclusive_pairs']}/{out['pairs']} pairs inconclusive at the target"
        )


if __name__ == "__main__":
    main()
