"""``python -m olmotrain.generate RUN_DIR_OR_CHECKPOINT_OR_HF_DIR --prompt "..." [options]``

Streams the completion of each prompt to the terminal as tokens come (CPU or GPU); ``--json``
prints one object per prompt and line: ``{"prompt", "completion", "token_ids"}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from olmotrain.console import setup_logging
from olmotrain.errors import UserError, run_command
from olmotrain.generate.engine import ENGINES, is_hf_dir, load_checkpoint, load_hf_dir, read_prompts
from olmotrain.model.sample import Sampling


def sampling_of(args: argparse.Namespace) -> Sampling:
    """The sampling settings, checked (one line per bad value)."""
    if args.max_new_tokens <= 0:
        raise UserError(f"--max-new-tokens {args.max_new_tokens} must be at least 1")
    if args.temperature < 0:
        raise UserError(f"--temperature {args.temperature} must be >= 0 (0 = greedy)")
    if not 0 < args.top_p <= 1:
        raise UserError(f"--top-p {args.top_p} must be in (0, 1]")
    if args.top_k == 0 or args.top_k < -1:
        raise UserError(f"--top-k {args.top_k} must be a positive count (or -1 for no limit)")
    return Sampling(args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed)


def completion_rule(index: int, count: int) -> str:
    """The line above completion ``index`` (from 0) of ``count``: ``--- 2/3 ---``."""
    return f"--- {index + 1}/{count} ---"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m olmotrain.generate", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "path", type=Path, help="a run dir, RUN_DIR/checkpoints/stepN, or an HF dir"
    )
    parser.add_argument("--prompt", action="append", default=None, help="a prompt (repeatable)")
    parser.add_argument("--prompts-file", type=Path, default=None, help="one prompt per line")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=-1)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--stop", action="append", default=None, help="stop text (repeatable)")
    parser.add_argument("--engine", default="auto", choices=ENGINES)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--json", action="store_true", help="one JSON object per prompt and line")
    args = parser.parse_args(argv)

    prompts = list(args.prompt or [])
    if args.prompts_file is not None:
        prompts += read_prompts(args.prompts_file)
    if not prompts:
        raise UserError("give --prompt TEXT or --prompts-file FILE")
    if any(not p.strip() for p in prompts):
        raise UserError("a prompt is empty; give some text to complete")
    sampling = sampling_of(args)
    setup_logging()  # after the checks: a bad input is one line, nothing else
    from olmotrain.model.parallel import device_type

    device = device_type(args.device)
    path = args.path.resolve()
    if is_hf_dir(path):
        if args.engine == "olmo-core":
            raise UserError(
                f"{path} is a Hugging Face directory: use --engine transformers or auto"
            )
        if args.step is not None:
            raise UserError(f"--step applies to a run dir; {path} is a Hugging Face directory")
        generator = load_hf_dir(path, device)
    else:
        from olmotrain.train.rundir import find_checkpoint

        if (
            path.is_dir()
            and not (path / "config.yaml").exists()
            and path.parent.name != "checkpoints"
        ):
            raise UserError(
                f"{path} is neither an olmotrain run dir, a checkpoint (RUN_DIR/checkpoints/stepN), "
                "nor a Hugging Face model directory (config.json + *.safetensors)"
            )
        target = find_checkpoint(path, args.step)
        generator = load_checkpoint(target.config, target.path, args.engine, device)
    for i, prompt in enumerate(prompts):
        if args.json:
            done = generator.generate(prompt, sampling, args.stop)
            print(json.dumps(done.to_dict()), flush=True)
            continue
        if len(prompts) > 1:  # completions may span lines: a rule says where each one starts
            print(f"{'' if i == 0 else chr(10)}{completion_rule(i, len(prompts))}", flush=True)
        print(prompt, end="", flush=True)
        generator.generate(
            prompt, sampling, args.stop, on_text=lambda t: print(t, end="", flush=True)
        )
        print(flush=True)
    print(f"({generator.engine} engine, {generator.source})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_command(main)
