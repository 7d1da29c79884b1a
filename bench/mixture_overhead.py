"""The swarm's overhead: ``python -m olmotrain.mixture run`` against the same runs started one by
one with ``train.py`` (the same mixes, ``data.ratios`` and ``data.proxy_for_tokens``), measured in
the same run, alternated.

    .venv/bin/python bench/mixture_overhead.py [--rounds 2] [--runs 6]

The swarm is ``--runs`` olmo2_1m proxies at 0.005 x Chinchilla on the embedded corpus's three
sources (held-out evaluation at the permanent checkpoints). ``mixture run`` also plans every run
first (the table it prints), which the one-by-one side does not: that is part of the overhead
measured. Goal: within 5% of the one-by-one total. Last line ``RATIOS ...``;
bench/results/mixture-<timestamp>.json holds everything.
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
MULTIPLE = 0.005


def mixture_yaml(root: Path, runs: int) -> Path:
    path = root / "bench_mixture.yaml"
    path.write_text(
        json.dumps(
            {
                "name": "bench",
                "data": "embedded_split",
                "proxy": {"sizes": ["olmo2_1m"], "chinchilla_multiple": MULTIPLE},
                "target": {"size": "dd_4m", "chinchilla_multiple": 0.5},
                "swarm": {"runs": runs, "prior": "uniform", "seed": 0},
                "metric": "eval/lm/english_docs/BPB",
                "seeds": [1],
                "overrides": ["eval.downstream=[]"],
                "output_root": str(root / "swarm"),
            }
        )
    )
    return path


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def one_by_one_commands(config: Path, root: Path) -> list[list[str]]:
    """``train.py`` commands of the swarm's runs, as its sweep composes them, elsewhere."""
    sys.path.insert(0, str(ROOT / "src"))
    from olmotrain.mixture.experiment import load

    mixture = load(str(config))
    return [
        [PY, "train.py", *mixture.overrides(p, MULTIPLE, root / "single")] for p in mixture.points
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--runs", type=int, default=6)
    args = p.parse_args()
    env = {**os.environ, "OLMOTRAIN_DATA_ROOT": str(ROOT / "data"), "PYTHONUNBUFFERED": "1"}
    rounds = []
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="olmotrain-mixturebench-") as tmp:
            root = Path(tmp)
            config = mixture_yaml(root, args.runs)
            commands = one_by_one_commands(config, root)

            def swarm(config: Path = config) -> float:
                return timed([PY, "-m", "olmotrain.mixture", "run", str(config)], env)

            def one_by_one(commands: list[list[str]] = commands) -> float:
                return sum(timed(cmd, env) for cmd in commands)

            # Alternate which side goes first, so a warming cache or drifting load favours neither.
            if r % 2 == 0:
                swarm_s, single_s = swarm(), one_by_one()
            else:
                single_s = one_by_one()
                swarm_s = swarm()
        rounds.append({"swarm_s": swarm_s, "one_by_one_s": single_s})
        print(f"  round {r + 1}  swarm {swarm_s:6.1f} s  one by one {single_s:6.1f} s", flush=True)
    swarm_s = median(x["swarm_s"] for x in rounds)
    single_s = median(x["one_by_one_s"] for x in rounds)
    overhead = (swarm_s - single_s) / single_s
    out = ROOT / "bench" / "results" / f"mixture-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"rounds": rounds, "runs": args.runs, "overhead": overhead}, indent=2)
    )
    print(f"{args.runs} runs: swarm {swarm_s:.1f} s, one by one {single_s:.1f} s")
    print(f"results: {out}")
    print(f"RATIOS mixture_overhead={overhead:+.3f} (goal<{GOAL})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
