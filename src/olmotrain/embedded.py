"""``python -m olmotrain.embedded [--root DIR] [--tokenizer NAME] [--force]``: build the
embedded dataset, a small offline text corpus made from this environment's Python sources and
package docs (see :mod:`olmotrain.data.embedded`); ``make data`` runs it.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from olmotrain.data.embedded import DEFAULT_ROOT, TOKENIZERS, build_embedded
from olmotrain.data.prepare import format_summary, load_manifest
from olmotrain.errors import run_command


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status (2 for user errors)."""
    parser = argparse.ArgumentParser(
        prog="python -m olmotrain.embedded",
        description="Build the embedded dataset: a small offline text corpus (not embeddings) "
        "made from this Python's standard library code and the installed packages' docs.",
    )
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="parent directory")
    parser.add_argument("--tokenizer", choices=TOKENIZERS, default="embedded_bpe8k")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    dataset_dir = build_embedded(args.root, args.tokenizer, force=args.force)
    manifest = load_manifest(dataset_dir)
    print(format_summary(manifest, dataset_dir))
    print(f"  ready in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run_command(main)
