"""``python -m olmotrain.mixture COMMAND NAME [key=value ...]``: which data mix to train.

    plan     the swarm: every mix, its repetition per source, its plan; totals (--json)
    run      train the swarm as one resumable -m sweep (cluster=slurm works as for ladders)
    status   where every swarm run stands
    collect  ratios.csv + metrics.csv (olmix's layout) + collected.csv
    fit      every regression family, cross-validated: out-of-fold RMSE and Spearman (--json)
    propose  the best feasible mix -> conf/data/<name>_proposed.yaml (--json)
    verify   train the proposal, the natural mix and the best swarm mix at two sizes; who wins
    report   report.md + pictures (--output DIR)

NAME is a name in conf/mixture/ or a YAML path; ``key=value`` pairs override its settings.
``propose`` (and ``fit``) also work from CSVs alone, e.g. olmix's own files:
``propose --ratios R.csv --metrics M.csv --metric COLUMN [--minimize|--maximize] [--model NAME]
[--prior natural|uniform|src=w,...] [--kl-weight X] [--available src=tokens,...]
[--target-tokens N] [--max-repetition src=x,...] [--json]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from olmotrain.errors import UserError, run_command

COMMANDS = ("plan", "run", "status", "collect", "fit", "propose", "verify", "report")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m olmotrain.mixture",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.split("\n\n")[1:]),
    )
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("name", nargs="?", help="a name in conf/mixture/ or a YAML file")
    parser.add_argument("overrides", nargs="*", help="key=value settings of the experiment")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--output", type=Path, default=None, help="report: the directory")
    csv = parser.add_argument_group("from CSVs (fit, propose)")
    csv.add_argument("--ratios", type=Path, help="run + one weight column per source")
    csv.add_argument("--metrics", type=Path, help="run + metric columns")
    csv.add_argument(
        "--metric", action="append", default=None, help="COLUMN or COLUMN=WEIGHT (repeatable)"
    )
    way = csv.add_mutually_exclusive_group()
    way.add_argument("--minimize", action="store_true", default=None)
    way.add_argument("--maximize", action="store_true", default=None)
    csv.add_argument("--model", default=None, help="log_linear, lightgbm or linear (default: CV)")
    csv.add_argument("--prior", default=None, help="natural, uniform or src=w,...")
    csv.add_argument("--kl-weight", type=float, default=None)
    csv.add_argument("--available", default=None, help="src=tokens,... (usable tokens)")
    csv.add_argument("--target-tokens", type=float, default=None)
    csv.add_argument("--max-repetition", default=None, help="src=x,... (default 1 each)")
    csv.add_argument("--fixed", default=None, help="src=w,...: weights held fixed")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    from_csv = args.ratios is not None or args.metrics is not None
    if from_csv:
        if args.command not in ("fit", "propose"):
            raise UserError(f"--ratios/--metrics are for fit and propose, not {args.command}")
        from olmotrain.mixture.cli_csv import from_csvs

        print(from_csvs(args))
        return 0
    if args.name is None:
        raise UserError(
            f"`{args.command}` needs a NAME (a name in conf/mixture/ or a YAML path), or "
            "--ratios R.csv --metrics M.csv for fit and propose"
        )
    _refuse_csv_options(args)
    from olmotrain.mixture import commands
    from olmotrain.mixture.experiment import load

    mixture = load(args.name, args.overrides)
    return getattr(commands, args.command)(mixture, args) or 0


def _refuse_csv_options(args: argparse.Namespace) -> None:
    given = [
        f"--{k.replace('_', '-')}"
        for k in ("metric", "model", "prior", "kl_weight", "available", "target_tokens",
                  "max_repetition", "fixed", "minimize", "maximize")
        if getattr(args, k) is not None
    ]  # fmt: skip
    if given:
        raise UserError(
            f"{given[0]} is for --ratios/--metrics; with a NAME set it in conf/mixture/ or as "
            "key=value (metric=..., model=..., kl_weight=..., swarm.prior=..., higher_is_better=...)"
        )


if __name__ == "__main__":
    run_command(main)
