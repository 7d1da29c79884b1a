"""Training from object storage: tokens/s streaming from a local S3-compatible server, and from
the cache's copies, each against the same run on local files, alternated in the same invocation.

    .venv/bin/python bench/remote_data.py [--rounds 3] [--steps 60] [--json]

The server is moto's S3 server on 127.0.0.1 (as in the tests), holding the embedded dataset's
python_code and english_docs token files with their document metadata. The workload is a 50/50
mix of the two, olmo2_1m at sequence 512, batch 4,096, no held-out evaluation, no checkpoints
beyond olmo-core's step-0 one. The cache is filled once before the timed runs (``python -m
olmotrain.data fetch``), so its runs measure reading the copies, not the first download. Goal:
cache >= 0.98x local. The streaming ratio is reported as it is: it is what a user without a
cache gets (here over loopback; a real bucket adds the network's latency).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the S3 server the tests use

from overhead import PY, child_env, machine, timed_run  # noqa: E402
from stores import s3_server  # noqa: E402

DATA = ROOT / "data" / "embedded" / "embedded_bpe8k"
SOURCES = ("python_code", "english_docs")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--skip", type=int, default=5, help="steps left out of the median")
    p.add_argument("--json", action="store_true")
    return p.parse_args()


def mix(paths: dict[str, str]) -> str:
    items = ", ".join(f"{{name: {s}, paths: ['{p}'], ratio: 0.5}}" for s, p in paths.items())
    return f"data.sources=[{items}]"


def main() -> int:
    args = parse_args()
    if not all((DATA / s / "train-00000.npy").exists() for s in SOURCES):
        sys.exit("the embedded dataset is missing: run `make data` first")
    common = [
        "model=olmo2_1m",
        "tokenizer=embedded_bpe8k",
        "data=embedded",
        "data.builder=null",
        "data.eval=null",
        "train.sequence_length=512",
        "train.global_batch_size=4096",
        f"train.max_steps={args.steps}",
        "train.save_checkpoints=false",
        "eval.downstream=[]",
    ]
    local = {s: str(DATA / s / "train-*.npy") for s in SOURCES}
    remote = {s: f"s3://corpus/tok/{s}/train-*.npy" for s in SOURCES}
    runs: list[dict] = []
    with s3_server() as s3, tempfile.TemporaryDirectory(prefix="olmotrain-bench-remote-") as tmp:
        for s in SOURCES:
            s3.upload(DATA / s / "train-00000.npy", f"tok/{s}/train-00000.npy")
        env = {
            **child_env(os.cpu_count() or 1),
            **s3.env,
            "OLMOTRAIN_DATA_ROOT": str(ROOT / "data"),
        }
        subprocess.run(
            [PY, "-m", "olmotrain.data", "index", "s3://corpus/tok/*/train-*.npy",
             "--tokenizer", "embedded_bpe8k"], cwd=ROOT, env=env, check=True, capture_output=True,
        )  # fmt: skip
        cache = f"data.cache={tmp}/cache"
        subprocess.run(
            [PY, "-m", "olmotrain.data", "fetch", *common, mix(remote), cache, "--quiet"],
            cwd=ROOT, env=env, check=True, capture_output=True,
        )  # fmt: skip
        sides = {
            "local": [mix(local)],
            "s3 stream": [mix(remote)],
            "s3 cache": [mix(remote), cache],
        }
        for r in range(1, args.rounds + 1):
            for side, extra in sides.items():
                out = f"output_root={tmp}/runs-{r}-{side.replace(' ', '_')}"
                cmd = [PY, "train.py", *common, *extra, out, "run_name=bench"]
                res = timed_run(cmd, Path(tmp) / f"{side}-{r}.log", env, args.skip)
                runs.append({"side": side, "round": r, **res})
                print(f"  round {r}  {side:<10} {res['tokens_per_s']:>10,.0f} tok/s  "
                      f"first step {res['first_step_s']:6.2f} s")  # fmt: skip
    med = {s: median(x["tokens_per_s"] for x in runs if x["side"] == s) for s in sides}
    result = {
        "machine": machine(env),
        "tokens_per_s": med,
        "stream_vs_local": med["s3 stream"] / med["local"],
        "cache_vs_local": med["s3 cache"] / med["local"],
        "goal_cache_vs_local": 0.98,
        "runs": runs,
    }
    if args.json:
        print(json.dumps(result))
    print(
        f"RESULT remote data: s3 stream {result['stream_vs_local']:.3f}x local, s3 cache "
        f"{result['cache_vs_local']:.3f}x local (goal >= 0.98) [{result['machine']}]"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
