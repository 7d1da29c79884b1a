"""``python -m olmotrain.export RUN_DIR_OR_CHECKPOINT --output DIR [--step N] [--dtype float32|bfloat16]``

Writes a Hugging Face model directory (safetensors, config, generation config, tokenizer) that
``AutoModelForCausalLM.from_pretrained`` and ``AutoTokenizer.from_pretrained`` load offline, then
checks that it computes the same logits as the checkpoint on real text of the run
(:mod:`olmotrain.export.parity`). The measurements go into ``DIR/olmotrain_export.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from olmotrain.console import setup_logging
from olmotrain.errors import UserError, run_command
from olmotrain.export.hf import DTYPES, REPORT, check_export, export_hf


def render(report: dict) -> str:
    """The measured parity, as a person reads it."""
    return (
        f"exported {report['model']} step {report['step']:,} ({report['tokens']:,} tokens, "
        f"{report['dtype']}) in {report['seconds']:.1f} s\n"
        f"  parity on {report['sequences']} {report['text']} sequences x "
        f"{report['sequence_length']} tokens: max |delta logit| {report['max_abs_logit_diff']:.2e}, "
        f"mean {report['mean_abs_logit_diff']:.2e} (tolerance {report['tolerance']:g})\n"
        f"  loss olmo-core {report['loss_olmo_core']:.5f}, transformers {report['loss_hf']:.5f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m olmotrain.export", description=__doc__.splitlines()[0]
    )
    parser.add_argument("path", type=Path, help="a run dir or RUN_DIR/checkpoints/stepN")
    parser.add_argument("--output", type=Path, required=True, help="the HF model directory")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    parser.add_argument("--dtype", default="float32", help=f"{' | '.join(DTYPES)}")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a non-empty --output (moved aside)"
    )
    parser.add_argument(
        "--sequences", type=int, default=4, help="sequences of real text for the parity check"
    )
    parser.add_argument("--json", action="store_true", help="the report as one JSON object")
    args = parser.parse_args(argv)
    from olmotrain.train.rundir import find_checkpoint

    if args.sequences < 1:
        raise UserError(f"--sequences {args.sequences} must be at least 1")
    target = find_checkpoint(args.path, args.step)
    check_export(target.config, args.output.resolve(), args.dtype, args.overwrite)
    setup_logging()  # after the checks: a bad input is one line, nothing else
    tokens = target.step * target.run.plan().batch_size_tokens
    report = export_hf(
        target.config,
        target.path,
        args.output,
        step=target.step,
        tokens=tokens,
        dtype=args.dtype,
        overwrite=args.overwrite,
        sequences=args.sequences,
        run=str(target.run.path),
    )
    print(json.dumps(report) if args.json else render(report))
    if not args.json:
        print(f"\n{args.output} ({REPORT})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_command(main)
