"""``python -m olmotrain.status DIR``: where each run of a sweep (or one run) stands.

For every run dir under DIR: its state (queued / running / done / failed from SLURM where it
knows the job, else from the run dir), step/total, last train loss, latest checkpoint, job id; and
the log tail of each failed run. ``--json`` prints one JSON object per run instead.

    python -m olmotrain.status runs/sweeps/model=olmo2_1m,olmo2_14m
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from olmotrain.console import setup_logging
from olmotrain.errors import UserError, run_command
from olmotrain.launch.status import render, statuses


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status (user errors raise ``UserError``)."""
    parser = argparse.ArgumentParser(
        prog="python -m olmotrain.status", description=__doc__.splitlines()[0]
    )
    parser.add_argument("dir", type=Path, help="a sweep dir, a run dir, or an output root")
    parser.add_argument("--json", action="store_true", help="one JSON object per run")
    parser.add_argument("--lines", type=int, default=15, help="log lines shown per failed run")
    args = parser.parse_args(argv)
    setup_logging()
    root = args.dir.resolve()
    if not root.is_dir():
        raise UserError(f"{args.dir} is not a directory")
    rows = statuses(root, args.lines)
    if not rows:
        raise UserError(
            f"no run dirs under {args.dir} (a run dir holds config.yaml and metrics.jsonl, checkpoints/ or jobs.jsonl)"
        )
    if args.json:
        for r in rows:
            print(json.dumps(asdict(r)))
    else:
        print(render(rows, root))
    return 0


if __name__ == "__main__":
    run_command(main)
