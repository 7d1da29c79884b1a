"""``python -m olmotrain.prepare [SOURCE=]PATH... --output DIR --tokenizer NAME_OR_PATH``.

Turns text into olmo-core token files: tokenize, split train/eval, shard, write a manifest (see
:mod:`olmotrain.data.prepare`). Re-running the same command resumes an interrupted run and does
nothing for a finished one; bad input is one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

from olmotrain.data.prepare.build import prepare_files
from olmotrain.data.prepare.manifest import (
    DEFAULT_EVAL_FRACTION,
    DEFAULT_EVAL_PIECE_TOKENS,
    DEFAULT_SHARD_TOKENS,
    format_data_config,
    format_summary,
)
from olmotrain.data.prepare.progress import Progress
from olmotrain.data.prepare.readers import expand_inputs
from olmotrain.data.remote import store
from olmotrain.data.remote.metadata import copy_tree_to_store, write_metadata
from olmotrain.data.tokenizer import resolve_tokenizer, tokenizer_names
from olmotrain.data.tokens import is_remote, token_dtype
from olmotrain.errors import EXIT_INTERRUPTED, UserError, run_command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m olmotrain.prepare",
        description="Tokenize text into olmo-core token files with a train/eval split. "
        "Re-running the same command resumes an interrupted run and does nothing for a "
        "finished one.",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="[SOURCE=]PATH",
        help="a .txt file (one document), a .jsonl/.jsonl.gz/.jsonl.zst file (one JSON object a "
        "line), a .parquet file, a directory of them, or a glob pattern (quote it); the source "
        "name defaults to the file or directory name",
    )
    parser.add_argument(
        "--output",
        "-o",
        required=True,
        help="dataset directory to write, or a bucket prefix (s3://, r2://, weka://): written "
        "in --staging, then uploaded",
    )
    parser.add_argument(
        "--staging",
        help="local directory of a bucket --output before its upload (default: "
        "$OLMOTRAIN_DATA_ROOT/.staging/<bucket>/<prefix>); kept, so an interrupted run resumes",
    )
    parser.add_argument(
        "--tokenizer",
        required=True,
        help=f"a name train.py knows ({', '.join(tokenizer_names())}) or a tokenizer.json path",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="tokenizer processes (default: one per CPU core; 1: tokenize in the main process)",
    )
    parser.add_argument("--eval-fraction", type=float, default=DEFAULT_EVAL_FRACTION)
    parser.add_argument("--text-field", default="text", help="JSON field / parquet column")
    parser.add_argument(
        "--skip-bad-lines",
        action="store_true",
        help="skip (and count in the manifest) lines that are not valid UTF-8, not JSON "
        "objects, or lack the text field, instead of stopping at the first",
    )
    parser.add_argument("--shard-tokens", type=int, default=DEFAULT_SHARD_TOKENS)
    parser.add_argument(
        "--eval-piece-tokens",
        type=int,
        default=DEFAULT_EVAL_PIECE_TOKENS,
        help="cut eval documents to this many tokens (0: keep them whole)",
    )
    parser.add_argument("--eos-id", type=int, default=None, help="EOS id (tokenizer files)")
    parser.add_argument("--pad-id", type=int, default=None, help="pad id (tokenizer files)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="rebuild from scratch, replacing what the output directory holds (even another "
        "tokenizer's dataset) instead of resuming",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress or notes")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status (2 for user errors)."""
    args = _parser().parse_args(argv)
    progress = Progress(quiet=args.quiet)
    published = args.output if is_remote(args.output) else None
    output = staging_dir(args.output, args.staging) if published else Path(args.output)
    if published:
        store.check_writable_prefix(published)  # a typo in the bucket: said before tokenizing
    try:
        if args.workers is not None and args.workers < 1:
            raise UserError(f"--workers must be at least 1, got {args.workers}")
        if args.shard_tokens < 1:
            raise UserError(f"--shard-tokens must be at least 1, got {args.shard_tokens}")
        if args.eval_piece_tokens < 0 or args.eval_piece_tokens == 1:
            raise UserError(
                f"--eval-piece-tokens must be 0 or at least 2, got {args.eval_piece_tokens}"
            )
        spec = resolve_tokenizer(args.tokenizer, eos_token_id=args.eos_id, pad_token_id=args.pad_id)
        manifest = prepare_files(
            expand_inputs(args.inputs),
            spec,
            output,
            text_field=args.text_field,
            skip_bad_lines=args.skip_bad_lines,
            resume=not args.overwrite,
            overwrite=args.overwrite,
            eval_fraction=args.eval_fraction,
            shard_tokens=args.shard_tokens,
            eval_piece_tokens=args.eval_piece_tokens or None,
            workers=args.workers,
            progress=progress,
        )
    except KeyboardInterrupt:
        raise UserError(
            "interrupted; finished shards are kept: run the same command again to resume",
            EXIT_INTERRUPTED,
        ) from None
    finally:
        progress.finish()
    write_all_metadata(manifest, output)
    if published:
        uploaded = copy_tree_to_store(output, published)
        print(f"uploaded {len(uploaded)} files to {published} (staged in {output})")
    print(format_summary(manifest, output))
    if progress.tokens:
        elapsed = progress.elapsed
        print(
            f"  this run: {progress.tokens:,} tokens in {elapsed:.1f} s "
            f"({progress.tokens / max(elapsed, 1e-9):,.0f} tokens/s, "
            f"{progress.workers or 1} tokenizer process(es))"
        )
    skipped = manifest.get("totals", {}).get("skipped_lines")
    if skipped:
        print(f"  skipped {skipped:,} bad lines (listed per input in the manifest)")
    print(next_step(manifest, output, args.tokenizer, published))
    return 0


def staging_dir(url: str, given: str | None) -> Path:
    """Where a dataset bound for ``url`` is written first."""
    if given:
        return Path(given)
    root = Path(os.environ.get("OLMOTRAIN_DATA_ROOT", "data"))
    return root / ".staging" / url.replace("://", "/")


def write_all_metadata(manifest: dict, output: Path) -> None:
    """Each token file's ``.csv.gz`` document metadata beside it (what olmo-core reads to mix
    remote files; dolma writes the same)."""
    tok = manifest["tokenizer"]
    dtype = token_dtype(tok["vocab_size"])
    for entry in manifest["sources"].values():
        for split in ("train", "eval"):
            for f in entry[split]["files"]:
                write_metadata(output / f, dtype, tok["eos_token_id"])


def next_step(manifest: dict, output: Path, tokenizer: str, published: str | None = None) -> str:
    """How to train on what was written: a data config to paste into ``conf/data/NAME.yaml``
    (and, for a tokenizer given as a file, a ``conf/tokenizer/`` config), and the command.
    ``published``: the bucket prefix the dataset was uploaded to (its files' URLs)."""
    name = re.sub(
        r"\W", "_", published.rstrip("/").rsplit("/", 1)[1] if published else output.resolve().name
    )
    tok = manifest["tokenizer"]
    parts = []
    if tokenizer not in tokenizer_names():  # train.py knows tokenizers by name only
        tok_name = re.sub(r"\W", "_", tok["name"])
        if tok_name in tokenizer_names():  # never ask to overwrite a shipped tokenizer config
            tok_name = f"{name}_tokenizer"
        file = json.dumps(str((output / tok["path"]).resolve()))
        parts.append(
            f"\nSave this as conf/tokenizer/{tok_name}.yaml:\n"
            f"name: {tok_name}\nvocab_size: {tok['vocab_size']}\n"
            f"eos_token_id: {tok['eos_token_id']}\npad_token_id: {tok['pad_token_id']}\n"
            f"path: {file}"
        )
        tokenizer = tok_name
    parts.append(
        f"\nSave this as conf/data/{name}.yaml, then train with "
        f"`python train.py data={name} tokenizer={tokenizer}`:\n"
        + format_data_config(manifest, published or output)
    )
    return "\n".join(parts)


if __name__ == "__main__":
    run_command(main)
