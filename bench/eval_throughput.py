"""Evaluation throughput: tokens scored per second by ``olmotrain.evaluate`` on the full core9
suite, against the same model's training tokens/s, measured in the same run on the same machine.

    .venv/bin/python bench/eval_throughput.py [--model olmo2_14m --train-steps 40 --limit N]

1. Trains ``experiment=cpu_demo model=MODEL train.max_steps=STEPS`` (the training rate: median
   tokens/s of the steps after the first five, from metrics.jsonl).
2. Evaluates its last checkpoint on core9 (every validation item unless ``--limit``) with
   ``python -m olmotrain.evaluate --json`` and times each task's evaluation from the log.
3. Counts the tokens scored (the real, unpadded query tokens) and the tokens the model computed
   in olmotrain's batches (and, for comparison, in ai2-olmo-eval's own: padded to 128).

A forward pass costs about a third of a training step, so the goal is >= 2.5x. The last line is
``RATIOS ...``; bench/results/eval-<timestamp>.json holds everything.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

from olmotrain.metrics import METRICS_LOG, TPS, read_metrics_log

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
GOAL = 2.5
FINISHED = re.compile(r"Finished downstream '([^']+)' evals in ([\d.]+) seconds")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="olmo2_14m")
    p.add_argument("--train-steps", type=int, default=40)
    p.add_argument("--limit", type=int, default=None, help="items per task (default: all)")
    p.add_argument("--tmp", default=None)
    return p.parse_args()


def batch_tokens(run_dir: Path, tasks: list[str], limit: int | None) -> dict[str, dict[str, int]]:
    """Per task: instances, real tokens, and the tokens the model computes in olmotrain's
    batches (longest first, filled to olmo-core's token budget, each cut to its longest query
    rounded up to 8) and in ai2-olmo-eval's own (in item order, padded to a multiple of 128)."""
    import yaml
    from olmo_eval import HFTokenizer, build_task

    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    tok, seq = config["tokenizer"], config["train"]["sequence_length"]
    from olmotrain.config.compose import load_run_config
    from olmotrain.eval.evaluators import PAD_MULTIPLE, length_batches
    from olmotrain.evaluate.checkpoint import eval_batch_sequences
    from olmotrain.train.rundir import RunDir

    run = RunDir(run_dir)
    config = load_run_config(run.config_path)
    rank_batch_tokens = eval_batch_sequences(config, run.plan(), "auto") * seq
    tokenizer = HFTokenizer(
        tok["path"], pad_token_id=tok["pad_token_id"], eos_token_id=tok["eos_token_id"]
    )
    counts = {}
    for name in tasks:
        task = build_task(name, tokenizer, model_ctx_len=seq)
        per_batch = rank_batch_tokens // task.max_sequence_length  # olmo-core's batch size
        budget = per_batch * task.max_sequence_length
        if limit is not None:
            task.samples = [s for s in task.samples if s["doc_id"] < limit]
        lengths = [len(s["query"]) for s in task.samples]
        computed = sum(
            len(batch) * PAD_MULTIPLE * math.ceil(lengths[batch[0]] / PAD_MULTIPLE)
            for batch in length_batches(task, budget)
        )
        default = sum(
            len(lengths[i : i + per_batch]) * 128 * math.ceil(max(lengths[i : i + per_batch]) / 128)
            for i in range(0, len(lengths), per_batch)
        )
        counts[name] = {
            "instances": len(lengths),
            "real": sum(lengths),
            "computed": computed,
            "computed_olmo_eval_default": default,
        }
    return counts


def main() -> int:
    args = parse_args()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OLMOTRAIN_DATA_ROOT": str(ROOT / "data")}
    tmp = Path(args.tmp or tempfile.mkdtemp(prefix="olmotrain-evalbench-"))
    run_dir = tmp / "run"
    train = [
        PY, "train.py", "experiment=cpu_demo", f"model={args.model}",
        f"train.max_steps={args.train_steps}", "data.eval=null",
        f"output_root={tmp}", "run_name=run",
    ]  # fmt: skip
    subprocess.run(train, cwd=ROOT, env=env, check=True, capture_output=True)
    records = read_metrics_log(run_dir / METRICS_LOG)
    train_tps = median(r[TPS] for r in records if r["step"] > 5 and TPS in r)

    evaluate = [PY, "-m", "olmotrain.evaluate", str(run_dir), "--tasks", "core9", "--json"]
    if args.limit:
        evaluate += ["--limit", str(args.limit)]
    start = time.perf_counter()
    proc = subprocess.run(evaluate, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    results = json.loads(proc.stdout)
    seconds = {task: float(s) for task, s in FINISHED.findall(proc.stderr)}
    counts = batch_tokens(run_dir, sorted(results["downstream"]), args.limit)
    real = sum(c["real"] for c in counts.values())
    computed = sum(c["computed"] for c in counts.values())
    default = sum(c["computed_olmo_eval_default"] for c in counts.values())
    eval_seconds = sum(seconds.values())
    scored_tps = real / eval_seconds
    summary = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "model": args.model,
        "training_tokens_per_s": train_tps,
        "eval_scored_tokens_per_s": scored_tps,
        "eval_computed_tokens_per_s": computed / eval_seconds,
        "ratio": scored_tps / train_tps,
        "padding_waste": 1 - real / computed,
        "padding_waste_olmo_eval_batching": 1 - real / default,
        "eval_seconds": eval_seconds,
        "evaluate_wall_s": wall,
        "tasks": {t: {**counts[t], "seconds": seconds.get(t)} for t in counts},
        "scores": {t: r["primary"] for t, r in results["downstream"].items()},
    }
    out = ROOT / "bench" / "results" / f"eval-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    print(
        f"training {train_tps:,.0f} tokens/s; evaluation {scored_tps:,.0f} tokens scored/s "
        f"({computed / eval_seconds:,.0f} computed), {real:,} tokens of "
        f"{sum(c['instances'] for c in counts.values()):,} instances in {eval_seconds:.1f} s; "
        f"padding {1 - real / computed:.1%} (ai2-olmo-eval's own batching: {1 - real / default:.1%})"
    )
    for task, c in sorted(counts.items()):
        print(f"  {task:<14} {c['instances']:>7,} instances {c['real']:>11,} tokens "
              f"{seconds.get(task, float('nan')):>7.1f} s  {summary['scores'][task]}")  # fmt: skip
    print(f"results: {out}")
    print(
        f"RATIOS eval_vs_train={scored_tps / train_tps:.2f} (goal>={GOAL}) "
        f"padding={1 - real / computed:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
