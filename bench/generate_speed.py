"""Generation speed and export time, as ratios against transformers measured in the same run.

    .venv/bin/python bench/generate_speed.py [--steps 40 --new-tokens 256 --rounds 3 --export-model olmo2_190m]

1. Trains the embedded default (``experiment=cpu_demo``, olmo2_14m) for ``--steps`` steps and
   exports its checkpoint with ``python -m olmotrain.export`` (parity check included).
2. Generation: greedy, ``--new-tokens`` new tokens from a 32-token prompt of the run's held-out
   text, timed in this process after loading: olmotrain's generator on the *checkpoint*
   (``olmotrain.generate.engine.load_checkpoint``, engine ``auto``), transformers'
   ``generate(do_sample=False)`` with its KV cache on the *export*, and olmotrain's olmo-core engine
   (no KV cache: every token re-reads the prefix), alternated ``--rounds`` times, medians.
   **Goal: olmotrain >= 0.9x transformers** (new tokens/s).
3. Export wall time of ``--export-model`` (one training step, then ``olmotrain.export``, which
   converts, reloads both models and checks parity) against one ``save_pretrained`` of the same
   weights (reported, no goal).

The last line is ``RATIOS ...``; bench/results/generate-<timestamp>.json holds everything.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
GOAL = 0.9


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OLMOTRAIN_DATA_ROOT": str(ROOT / "data")}
    proc = subprocess.run([PY, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"failed: {' '.join(args)}\n{proc.stderr[-3000:]}")
    return proc


def train(root: Path, name: str, *overrides: str) -> Path:
    run("train.py", "experiment=cpu_demo", f"run_name={name}", f"output_root={root}", *overrides)
    return root / name


def timed_export(run_dir: Path, out: Path) -> tuple[float, dict]:
    start = time.perf_counter()
    proc = run("-m", "olmotrain.export", str(run_dir), "--output", str(out), "--json")
    return time.perf_counter() - start, json.loads(proc.stdout)


def generation(run_dir: Path, hf_dir: Path, new_tokens: int, rounds: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from olmotrain.export.native import text_sequences
    from olmotrain.generate.engine import load_checkpoint
    from olmotrain.model.sample import Sampling
    from olmotrain.train.rundir import find_checkpoint

    target = find_checkpoint(run_dir)
    prompt = [int(t) for t in text_sequences(target.config, 1, 32)[0][0]]
    ours = load_checkpoint(target.config, target.path, "auto", "cpu")
    native = load_checkpoint(target.config, target.path, "olmo-core", "cpu")
    hf = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    sampling = Sampling(max_new_tokens=new_tokens)

    def olmotrain_side(gen) -> tuple[float, list[int]]:
        start = time.perf_counter()
        ids = list(gen.stream_ids(prompt, sampling))
        return time.perf_counter() - start, ids

    def transformers_side() -> tuple[float, list[int]]:
        ids = torch.tensor([prompt])
        start = time.perf_counter()
        with torch.inference_mode():
            out = hf.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                max_new_tokens=new_tokens, min_new_tokens=0,
                eos_token_id=target.config.tokenizer.eos_token_id,
                pad_token_id=target.config.tokenizer.pad_token_id,
            )  # fmt: skip
        return time.perf_counter() - start, out[0, len(prompt) :].tolist()

    rates: dict[str, list[float]] = {"olmotrain": [], "transformers": [], "olmo_core_engine": []}
    same = True
    for _ in range(rounds):
        t_ours, ids_ours = olmotrain_side(ours)
        t_hf, ids_hf = transformers_side()
        t_native, ids_native = olmotrain_side(native)
        same &= ids_ours == ids_hf == ids_native
        rates["olmotrain"].append(len(ids_ours) / t_ours)
        rates["transformers"].append(len(ids_hf) / t_hf)
        rates["olmo_core_engine"].append(len(ids_native) / t_native)
    med = {k: median(v) for k, v in rates.items()}
    return {
        "new_tokens_per_s": med,
        "rounds": rates,
        "engine": ours.engine,
        "same_greedy_tokens": same,
        "ratio": med["olmotrain"] / med["transformers"],
        "olmo_core_engine_ratio": med["olmo_core_engine"] / med["transformers"],
    }


def export_time(root: Path, model: str) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    run_dir = train(
        root, f"export-{model}", f"model={model}", "train.max_steps=1", "data.eval=null"
    )
    seconds, report = timed_export(run_dir, root / "export")
    hf = AutoModelForCausalLM.from_pretrained(root / "export", dtype=torch.float32)
    start = time.perf_counter()
    hf.save_pretrained(root / "save_pretrained")
    save_s = time.perf_counter() - start
    return {
        "model": model,
        "export_s": seconds,
        "convert_s": report["convert_seconds"],
        "parity_text": report["text"],
        "save_pretrained_s": save_s,
        "ratio": seconds / save_s,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--export-model", default="olmo2_190m")
    p.add_argument("--no-export", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="olmotrain-bench-gen-") as tmp:
        root = Path(tmp)
        run_dir = train(root, "demo", f"train.max_steps={args.steps}")
        _, report = timed_export(run_dir, root / "demo-hf")
        result = {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "export_parity": {
                k: report[k] for k in ("max_abs_logit_diff", "loss_olmo_core", "loss_hf")
            },
            "generation": generation(run_dir, root / "demo-hf", args.new_tokens, args.rounds),
        }
        if not args.no_export:
            result["export"] = export_time(root, args.export_model)
    gen = result["generation"]
    print(json.dumps(result, indent=2))
    out = ROOT / "bench" / "results" / f"generate-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    line = f"RATIOS generation {gen['ratio']:.3f} (goal >= {GOAL}, engine {gen['engine']})"
    line += f", olmo-core engine {gen['olmo_core_engine_ratio']:.3f}"
    if "export" in result:
        line += f", export/save_pretrained {result['export']['ratio']:.2f}"
    print(line)


if __name__ == "__main__":
    main()
