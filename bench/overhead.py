"""olmotrain's overhead over plain olmo-core, as ratios against baselines measured in the same run.

1. Training: the same workload trained by ``train.py`` and by ``bench/plain_olmo_core.py``
   (alternated), compared on steady-state tokens/s and on time to the end of step 1.
2. CLI latency: ``train.py model=olmo2_30m dry_run=json`` against importing olmo-core's
   transformer config module (alternated).

    .venv/bin/python bench/overhead.py [--model olmo2_14m --seq 512 --batch 8192 --steps 40 --rounds 3]

The last line printed is ``RATIOS ...``; bench/results/overhead-<timestamp>.json holds everything.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
EPHEMERAL_INTERVAL = 250  # olmotrain's default, passed to both sides
GOAL_THROUGHPUT, GOAL_CLI = 0.98, 1.3
# olmo-core's console logger ("[step=5/40,epoch=1...]" then "throughput/device/TPS=6,518" lines)
# and olmotrain's progress lines ("[step=5/40] tokens=... tokens/s=6,518 eta=..."), both from
# olmo-core's speed monitor.
STEP_LINE = re.compile(r"\[step=(\d+)/\d+[,\]]")
TPS_LINE = re.compile(r"(?:throughput/device/TPS=([\d,.]+)\s*$|tokens/s=([\d,.]+))")
CLI_OLMOTRAIN = [PY, "train.py", "model=olmo2_30m", "dry_run=json"]
CLI_BASELINE = [PY, "-c", "import olmo_core.nn.transformer.config"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="olmo2_14m", help="olmotrain model name (conf/model)")
    p.add_argument("--seq", type=int, default=512, help="sequence length")
    p.add_argument("--batch", type=int, default=8192, help="global batch, tokens")
    p.add_argument("--steps", type=int, default=40, help="training steps per run")
    p.add_argument("--rounds", type=int, default=3, help="training runs per side")
    p.add_argument("--skip", type=int, default=5, help="steps left out of the steady state")
    p.add_argument("--cli-rounds", type=int, default=5, help="CLI latency runs per side")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="OMP_NUM_THREADS")
    p.add_argument("--no-eval", action="store_true", help="no held-out eval at the end (both)")
    p.add_argument("--no-cli", action="store_true", help="skip the CLI latency benchmark")
    p.add_argument("--no-train", action="store_true", help="skip the training benchmark")
    p.add_argument("--tmp", default=None, help="where runs write (default: the system temp dir)")
    p.add_argument("--compile", action="store_true", help="both sides: torch.compile (CUDA)")
    p.add_argument(
        "--fsdp", action="store_true", help="both sides: FSDP bf16 parameters, fp32 reduction"
    )
    p.add_argument("--json-out", default=None, help="also write the result JSON here")
    return p.parse_args()


def child_env(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}


def olmotrain_overrides(args: argparse.Namespace) -> list[str]:
    out = [
        f"model={args.model}",
        "tokenizer=embedded_bpe8k",
        "data=embedded",
        "schedule=wsds",
        "wandb.enabled=false",
        f"train.sequence_length={args.seq}",
        f"train.global_batch_size={args.batch}",
        f"train.max_steps={args.steps}",
        f"train.ephemeral_checkpoint_interval={EPHEMERAL_INTERVAL}",
        "train.log_interval=1",
    ]
    out += ["parallel.compile=true"] if args.compile else []
    out += ["parallel.name=fsdp"] if args.fsdp else []
    return out + (["data.eval=null"] if args.no_eval else [])


def get_plan(args: argparse.Namespace, env: dict[str, str]) -> dict:
    """olmotrain's plan for the workload: the values the plain script is given."""
    cmd = [PY, "train.py", *olmotrain_overrides(args), "dry_run=json"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"olmotrain could not plan the workload:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def plain_command(plan: dict, out: Path) -> list[str]:
    """The plain olmo-core run equivalent to ``plan``."""
    steps = plan["max_steps"]
    fixed = sorted({ck["step"] for ck in plan["checkpoints"] if 0 < ck["step"] <= steps})
    cmd = [PY, "bench/plain_olmo_core.py", "--out", str(out), "--factory", plan["factory"]]
    if plan["factory"] == "olmo2":
        layer = plan["layers"][0]
        cmd += ["--d-model", str(plan["d_model"]), "--n-layers", str(plan["n_layers"])]
        cmd += ["--n-heads", str(layer["n_heads"]), "--ffn-hidden", str(layer["ffn_hidden"])]
    cmd += ["--compile"] if plan["compile"] else []
    cmd += ["--fsdp"] if plan["parallel"] == "fsdp" else []
    cmd += ["--vocab-size", str(plan["vocab_size"]), "--seq", str(plan["sequence_length"])]
    cmd += ["--batch-tokens", str(plan["batch_size_tokens"]), "--steps", str(steps)]
    cmd += ["--micro-batch-tokens", str(plan["micro_batch_instances"] * plan["sequence_length"])]
    cmd += ["--seed", str(plan["seed"]), "--lr", repr(plan["lr"])]
    cmd += ["--betas", *map(repr, plan["betas"]), "--weight-decay", repr(plan["weight_decay"])]
    cmd += ["--warmup-tokens", str(plan["warmup_tokens"]), "--decay-fraction"]
    cmd += [repr(plan["decay_fraction"]), "--period-lengths", *map(str, plan["period_lengths"])]
    cmd += ["--fixed-steps", *map(str, fixed), "--ephemeral-interval", str(EPHEMERAL_INTERVAL)]
    cmd += ["--train", *[p for s in plan["data"]["sources"] for p in s["patterns"]]]
    evals = [f"{s['name']}={p}" for s in plan["data"]["eval"] for p in s["patterns"]]
    return cmd + (["--eval", *evals] if evals else [])


def timed_run(cmd: list[str], log_path: Path, env: dict[str, str], skip: int) -> dict:
    """Run one training process; time-to-step-1 and per-step TPS from its console log lines."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    first_step, step, tps = None, None, {}
    with open(log_path, "w") as log:
        for line in proc.stdout:  # type: ignore[union-attr]
            log.write(line)
            if m := STEP_LINE.search(line):
                step = int(m[1])
                if step == 1 and first_step is None:
                    first_step = time.perf_counter() - t0
            if step is not None and (m := TPS_LINE.search(line)):
                tps[step] = float((m[1] or m[2]).replace(",", ""))
    total = time.perf_counter() - t0
    if proc.wait() or first_step is None or not tps:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-30:])
        sys.exit(f"{' '.join(cmd[:3])} ... failed (exit {proc.returncode}):\n{tail}")
    steady = [v for s, v in tps.items() if s > skip] or list(tps.values())
    return {
        "tokens_per_s": median(steady),
        "first_step_s": first_step,
        "total_s": total,
        "steady_steps": len(steady),
    }


def wall(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
    )
    return time.perf_counter() - t0


def machine(env: dict[str, str]) -> str:
    probe = "import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
    gpu = subprocess.run([PY, "-c", probe], env=env, capture_output=True, text=True).stdout.strip()
    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").exists():
        names = re.findall(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
        cpu = names[0] if names else cpu
    desc = f"{cpu}, {os.cpu_count()} cores"
    torch_v, olmo_v = version("torch"), version("ai2-olmo-core")
    return f"{f'GPU {gpu}; ' if gpu else 'CPU only; '}{desc}; torch {torch_v}, olmo-core {olmo_v}"


def model_flops_utilization(plan: dict, env: dict[str, str]) -> float | None:
    """MFU per token/s on this machine's GPU (``None`` without one or for an unknown GPU)."""
    probe = "import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
    name = subprocess.run([PY, "-c", probe], env=env, capture_output=True, text=True).stdout.strip()
    if not name:
        return None
    from olmotrain.plan.cost import device_peak_flops

    peak, _ = device_peak_flops(name)
    return plan["flops_per_token"] / peak if peak else None


def bench_training(args: argparse.Namespace, env: dict[str, str], logs: Path) -> dict:
    plan = get_plan(args, env)
    if plan["data"]["problems"]:  # the embedded data set is not built yet
        root = os.environ.get("OLMOTRAIN_DATA_ROOT", "data")
        print(f"building the embedded data set under {root}/embedded ...")
        cmd = [PY, "-m", "olmotrain.embedded", "--root", f"{root}/embedded"]
        subprocess.run(cmd, cwd=ROOT, env=env, check=True)
        plan = get_plan(args, env)
    print(
        f"workload: {plan['model']} ({plan['factory']}, {plan['num_params']:,} params), "
        f"seq {plan['sequence_length']}, batch {plan['batch_size_tokens']:,} tokens, "
        f"{plan['max_steps']} steps, eval {'off' if args.no_eval else 'at the end'}, "
        f"OMP_NUM_THREADS={args.threads}; steady state = median TPS of steps > {args.skip}"
    )
    runs = []
    with tempfile.TemporaryDirectory(prefix="olmotrain-bench-", dir=args.tmp) as tmp:
        for r in range(1, args.rounds + 1):
            for side in ("olmotrain", "plain"):
                out = Path(tmp) / f"{side}-r{r}"
                if side == "olmotrain":
                    cmd = [PY, "train.py", *olmotrain_overrides(args), f"output_root={out}"]
                    cmd.append("run_name=bench")
                else:
                    cmd = plain_command(plan, out)
                res = timed_run(cmd, logs / f"{side}-r{r}.log", env, args.skip)
                runs.append({"side": side, "round": r, **res})
                print(
                    f"  round {r}  {side:<9}  {res['tokens_per_s']:>12,.0f} tok/s  "
                    f"first step {res['first_step_s']:7.2f} s  total {res['total_s']:7.1f} s"
                )
                shutil.rmtree(out, ignore_errors=True)  # checkpoints can be large
    med = {
        side: {
            k: median(x[k] for x in runs if x["side"] == side)
            for k in ("tokens_per_s", "first_step_s", "total_s")
        }
        for side in ("olmotrain", "plain")
    }
    a, b = med["olmotrain"], med["plain"]
    mfu = model_flops_utilization(plan, env)
    if mfu is not None:  # by olmo-core's FLOP count (the plan's), against the device's real peak
        for side in med.values():
            side["mfu"] = side["tokens_per_s"] * mfu
        print(f"  MFU      olmotrain {a['mfu']:.1%}  plain {b['mfu']:.1%}")
    print(
        f"  median    olmotrain  {a['tokens_per_s']:>12,.0f} tok/s  first step "
        f"{a['first_step_s']:7.2f} s  total {a['total_s']:7.1f} s\n"
        f"  median    plain      {b['tokens_per_s']:>12,.0f} tok/s  first step "
        f"{b['first_step_s']:7.2f} s  total {b['total_s']:7.1f} s"
    )
    return {
        "workload": {k: plan[k] for k in ("model", "factory", "num_params", "max_steps")}
        | {"seq": plan["sequence_length"], "batch_tokens": plan["batch_size_tokens"]},
        "runs": runs,
        "medians": med,
        "throughput_ratio": a["tokens_per_s"] / b["tokens_per_s"],
        "first_step_ratio": a["first_step_s"] / b["first_step_s"],
        "total_ratio": a["total_s"] / b["total_s"],
    }


def bench_cli(args: argparse.Namespace, env: dict[str, str]) -> dict:
    print(f"CLI latency: `{' '.join(CLI_OLMOTRAIN[1:])}` vs `python -c '{CLI_BASELINE[2]}'`")
    rows = []
    for r in range(1, args.cli_rounds + 1):
        rows.append({"round": r, "olmotrain_s": wall(CLI_OLMOTRAIN, env)})
        rows[-1]["baseline_s"] = wall(CLI_BASELINE, env)
        row = rows[-1]
        print(
            f"  round {r}  train.py {row['olmotrain_s']:6.2f} s  import {row['baseline_s']:6.2f} s"
        )
    a, b = median(x["olmotrain_s"] for x in rows), median(x["baseline_s"] for x in rows)
    print(f"  median   train.py {a:6.2f} s  import {b:6.2f} s")
    return {"runs": rows, "medians": {"olmotrain_s": a, "baseline_s": b}, "ratio": a / b}


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    args = parse_args()
    env = child_env(args.threads)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = ROOT / "bench" / "results"
    logs = results / f"overhead-{stamp}-logs"  # each training run's console output
    logs.mkdir(parents=True, exist_ok=True)
    result: dict = {"timestamp": stamp, "machine": machine(env), "args": vars(args)}
    print(f"machine: {result['machine']}")
    if not args.no_train:
        result["training"] = bench_training(args, env, logs)
    if not args.no_cli:
        result["cli"] = bench_cli(args, env)

    ratios, missed = [], []
    if t := result.get("training"):
        ratios += [f"throughput={t['throughput_ratio']:.3f} (goal>={GOAL_THROUGHPUT})"]
        ratios += [f"first_step={t['first_step_ratio']:.3f}"]
        if t["throughput_ratio"] < GOAL_THROUGHPUT:
            missed.append(f"throughput {t['throughput_ratio']:.3f} < {GOAL_THROUGHPUT}")
    if c := result.get("cli"):
        ratios += [f"cli_latency={c['ratio']:.3f} (goal<={GOAL_CLI})"]
        if c["ratio"] > GOAL_CLI:
            missed.append(f"cli_latency {c['ratio']:.3f} > {GOAL_CLI}")
    result["goals_missed"] = missed

    path = results / f"overhead-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {path.relative_to(ROOT)} (logs: {logs.relative_to(ROOT)}/)")
    print(f"goals missed: {'; '.join(missed)}" if missed else "goals: all met")
    print("RATIOS " + " ".join(ratios))


if __name__ == "__main__":
    main()
