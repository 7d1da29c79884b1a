"""``python -m olmotrain.data COMMAND ...``: remote data ahead of training.

    fetch [OVERRIDES...]         copy a run's remote files into data.cache, as train.py would
                                 (``data=my_s3_mix data.cache=/scratch/cache``); for every mix
                                 of a ladder: ``python -m olmotrain.ladder fetch LADDER``
    index PATH... --tokenizer T  write the document metadata (``.csv.gz``) beside token files,
                                 local or remote, that lack it (olmo-core needs it to mix remote
                                 files without a cache)

Filling the cache on a login node means a SLURM job starts without touching the network: the
job finds every file, and the listing of every glob, in the cache.
"""

from __future__ import annotations

import argparse
from typing import Any

from olmotrain.errors import UserError, run_command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m olmotrain.data",
        description="remote token files: fill the local cache ahead of training, write document metadata",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser(
        "fetch", help="copy a run's (or a ladder's) remote files into data.cache"
    )
    fetch.add_argument("overrides", nargs="*", help="train.py overrides (data=..., data.cache=...)")
    fetch.add_argument("--quiet", action="store_true", help="no progress bar")
    index = sub.add_parser("index", help="write .csv.gz document metadata beside token files")
    index.add_argument(
        "paths", nargs="+", help="token files or globs (local, s3://, r2://, weka://)"
    )
    index.add_argument(
        "--tokenizer", required=True, help="a conf/tokenizer name (its vocab and EOS)"
    )
    index.add_argument("--overwrite", action="store_true", help="write it even where it exists")
    return parser


def fetch(args: argparse.Namespace) -> int:
    """Fill ``data.cache`` with every remote file of the run the overrides compose."""
    from olmotrain.config.checks import compose_checked
    from olmotrain.config.compose import resolve

    fetch_runs([resolve(compose_checked(list(args.overrides)))], quiet=args.quiet)
    return 0


def fetch_runs(configs: list[Any], quiet: bool = False) -> None:
    """Fill each run's ``data.cache`` (and held-out cache) with its remote files; prints where."""
    from olmotrain.data.remote.localize import cache_of, fill, heldout_cache
    from olmotrain.data.tokens import is_remote

    for config in configs:
        data = config.data
        train = [p for s in data.sources for p in s.paths if is_remote(p)]
        held_out = [p for v in (data.eval or {}).values() for p in v if is_remote(p)]
        if not train and not held_out:
            print(f"data {data.name}: no remote files (nothing to fetch)")
            continue
        cache = cache_of(config)
        if train and cache is None:
            raise UserError(
                f"data {data.name} has remote files but no cache to fill; add data.cache=DIR "
                "(the same one the training run will use)"
            )
        progress = False if quiet else None
        for patterns, where in ((train, cache), (held_out, heldout_cache(config))):
            if patterns:
                copies = fill(where, patterns, progress=progress)
                count = sum(len(v) for v in copies.values())
                size = sum(p.stat().st_size for v in copies.values() for p in v)
                print(
                    f"data {data.name}: {count} file(s) ({size / 2**20:,.1f} MiB) in {where.root}"
                )
    return 0


def index(args: argparse.Namespace) -> int:
    """Write the ``.csv.gz`` document metadata of every token file that lacks it."""
    from olmotrain.config.compose import tokenizer_option
    from olmotrain.data.remote.metadata import index as write_index
    from olmotrain.data.tokens import token_dtype

    try:
        tok = tokenizer_option(args.tokenizer)
    except FileNotFoundError:
        raise UserError(
            f"--tokenizer {args.tokenizer}: no conf/tokenizer/{args.tokenizer}.yaml"
        ) from None
    written = write_index(
        list(args.paths), token_dtype(tok.vocab_size), tok.eos_token_id, args.overwrite
    )
    for w in written:
        print(f"wrote {w}")
    if not written:
        print("every file already has its metadata (--overwrite writes it again)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return fetch(args) if args.command == "fetch" else index(args)


if __name__ == "__main__":
    run_command(main)
