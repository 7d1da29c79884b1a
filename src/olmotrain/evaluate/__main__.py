"""``python -m olmotrain.evaluate RUN_DIR_OR_CHECKPOINT [--step N] [--tasks ...] [--limit N] [--json]``

Evaluates a saved checkpoint (held-out LM metrics and downstream tasks) on CPU or GPU, prints a
table or one JSON object, and adds the results to that checkpoint's ``metrics_step{N}.json``,
keeping the values it already records unless ``--overwrite`` (see
:mod:`olmotrain.evaluate.checkpoint`). ``--list-tasks`` prints every task and group name.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from olmotrain.console import setup_logging
from olmotrain.errors import UserError, run_command
from olmotrain.eval.tasks import describe
from olmotrain.metrics import BPB, CE_LOSS, PPL, SCORED_TOKENS


def render(results: dict[str, Any]) -> str:
    """The results as tables a person reads."""
    lines = [f"{results['run']}  step {results['step']:,}  ({results['tokens']:,} tokens)"]
    if results["lm"]:
        lines += ["", f"  {'held-out source':<20} {CE_LOSS:>8} {PPL:>10} {BPB:>7} {'tokens':>11}"]
        for source, m in results["lm"].items():
            bpb = f"{m[BPB]:.4f}" if BPB in m else "-"
            tokens = f"{int(m[SCORED_TOKENS]):,}" if SCORED_TOKENS in m else "-"
            lines.append(f"  {source:<20} {m[CE_LOSS]:>8.4f} {m[PPL]:>10.2f} {bpb:>7} {tokens:>11}")
    if results["downstream"]:
        width = max(len(t) for t in results["downstream"])
        lines += ["", f"  {'task':<{width}}  {'primary metric':<28} {'value':>7}  {CE_LOSS}"]
        for task, entry in results["downstream"].items():
            primary = entry["primary"] or {"name": "-", "value": float("nan")}
            ce = entry["metrics"].get(CE_LOSS, float("nan"))
            lines.append(
                f"  {task:<{width}}  {primary['name']:<28} {primary['value']:>7.4f}  {ce:.4f}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """The command (``argv``: its arguments, default ``sys.argv[1:]``); the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m olmotrain.evaluate", description=__doc__.splitlines()[0]
    )
    parser.add_argument("path", nargs="?", type=Path, help="a run dir or RUN_DIR/checkpoints/stepN")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    parser.add_argument(
        "--tasks",
        default=None,
        help="downstream task and group names, comma-separated (default: the run's eval.downstream)",
    )
    parser.add_argument("--limit", type=int, default=None, help="items per downstream task")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument(
        "--batch",
        type=int,
        default=None,
        help="sequences per forward pass (default: ~64 MiB of logits on CPU, the run's micro-batch on GPU)",
    )
    parser.add_argument("--no-heldout", action="store_true", help="skip the held-out sets")
    parser.add_argument(
        "--heldout-tokens",
        type=int,
        default=None,
        help="scored tokens per held-out source, first whole documents (default: the run's eval.heldout_tokens)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace values metrics_stepN.json already records (default: keep them, add new ones)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--list-tasks", action="store_true", help="every task and group name")
    args = parser.parse_args(argv)
    if args.list_tasks:
        print(describe())
        return 0
    if args.path is None:
        raise UserError("give a run dir or a checkpoint (RUN_DIR/checkpoints/stepN) to evaluate")
    from olmotrain.evaluate.checkpoint import evaluate_checkpoint, with_evaluation
    from olmotrain.model.parallel import device_type
    from olmotrain.train.rundir import find_checkpoint

    target = find_checkpoint(args.path, args.step)
    tasks = None if args.tasks is None else [t for t in args.tasks.split(",") if t.strip()]
    target.config = with_evaluation(
        target.config, tasks, args.limit, not args.no_heldout, args.heldout_tokens
    )
    device_type(args.device)  # cuda without a GPU: one line, before any model
    setup_logging()  # after the checks: a bad input is one line, nothing else
    if args.batch is not None and args.batch < 1:
        raise UserError(f"--batch {args.batch} must be at least 1 sequence")
    results = evaluate_checkpoint(
        target, device=args.device, batch_sequences=args.batch, overwrite=args.overwrite
    )
    print(json.dumps(results) if args.json else render(results))
    if not args.json:
        print(f"\nmerged into {target.metrics_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_command(main)
