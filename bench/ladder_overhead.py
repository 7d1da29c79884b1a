"""The ladder's per-point overhead: ``python -m olmotrain.ladder run`` against the same points
started one by one with ``train.py``, measured in the same run, alternated.

    .venv/bin/python bench/ladder_overhead.py [--rounds 2]

The ladder is 2 sizes x 2 embedded mixes (olmo2_1m, dd_4m; 0.005 x Chinchilla; held-out
evaluation at the permanent checkpoints). Goal: the ladder's wall time within 5% of the
one-by-one total. The last line is ``RATIOS ...``; bench/results/ladder-<timestamp>.json holds
everything.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
GOAL = 0.05
SIZES = ["olmo2_1m", "dd_4m"]
MIXES = ["embedded", "embedded_code_heavy"]
MULTIPLE = 0.005


def ladder_yaml(root: Path) -> Path:
    path = root / "bench_ladder.yaml"
    path.write_text(
        json.dumps(
            {
                "name": "bench",
                "sizes": SIZES,
                "mixes": MIXES,
                "chinchilla_multiple": MULTIPLE,
                "seeds": [1],
                "output_root": str(root / "ladder"),
            }
        )
    )
    return path


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    env = {**os.environ, "OLMOTRAIN_DATA_ROOT": str(ROOT / "data"), "PYTHONUNBUFFERED": "1"}
    rounds = []
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="olmotrain-ladderbench-") as tmp:
            root = Path(tmp)

            def run_ladder(root: Path = root) -> float:
                return timed([PY, "-m", "olmotrain.ladder", "run", str(ladder_yaml(root))], env)

            def run_one_by_one(root: Path = root) -> float:
                return sum(
                    timed(
                        [PY, "train.py", f"model={size}", f"data={mix}", "seed=1",
                         f"chinchilla_multiple={MULTIPLE}", f"output_root={root / 'single'}",
                         f"run_name={size}-{mix}"],
                        env,
                    )
                    for size in SIZES
                    for mix in MIXES
                )  # fmt: skip

            # Alternate which side goes first, so a warming cache or drifting load favours neither.
            if r % 2 == 0:
                ladder, one_by_one = run_ladder(), run_one_by_one()
            else:
                one_by_one = run_one_by_one()
                ladder = run_ladder()
        rounds.append({"ladder_s": ladder, "one_by_one_s": one_by_one})
        print(
            f"  round {r + 1}  ladder {ladder:6.1f} s  one by one {one_by_one:6.1f} s", flush=True
        )
    ladder_s = median(x["ladder_s"] for x in rounds)
    single_s = median(x["one_by_one_s"] for x in rounds)
    overhead = (ladder_s - single_s) / single_s
    out = ROOT / "bench" / "results" / f"ladder-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"rounds": rounds, "points": len(SIZES) * len(MIXES), "overhead": overhead}, indent=2
        )
    )
    print(f"{len(SIZES) * len(MIXES)} points: ladder {ladder_s:.1f} s, one by one {single_s:.1f} s "
          f"({(ladder_s - single_s) / (len(SIZES) * len(MIXES)):+.1f} s per point)")  # fmt: skip
    print(f"results: {out}")
    print(f"RATIOS ladder_overhead={overhead:+.3f} (goal<{GOAL})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
