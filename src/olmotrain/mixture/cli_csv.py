"""``fit`` and ``propose`` from CSVs alone (``--ratios R.csv --metrics M.csv``), and the text
both paths print."""

from __future__ import annotations

import argparse
import json
from typing import Any

from olmotrain.errors import UserError
from olmotrain.mixture.regression import FAMILIES, choose, cross_validate
from olmotrain.mixture.tables import MixtureTable, metric_matrix, parse_metric, read_tables


def from_csvs(args: argparse.Namespace) -> str:
    """What ``fit`` or ``propose`` prints for ``--ratios``/``--metrics``."""
    from olmotrain.mixture.propose import propose_from_table

    if args.ratios is None or args.metrics is None:
        raise UserError("give both --ratios R.csv and --metrics M.csv")
    if not args.metric:
        raise UserError("--metric COLUMN is needed with --ratios/--metrics (repeat it to average)")
    table = read_tables(args.ratios, args.metrics)
    metric = parse_metric(args.metric)
    if args.command == "fit":
        return fit_report(table, metric, args.model, args.json)
    minimize = True if args.minimize else False if args.maximize else None
    prior: Any = args.prior or ("natural" if args.available else "uniform")
    if prior not in ("natural", "uniform"):
        prior = parse_pairs(prior, "--prior")
    target = args.target_tokens
    result = propose_from_table(
        table,
        metric,
        minimize=minimize,
        model=args.model,
        prior=prior,
        kl_weight=args.kl_weight or 0.0,
        available=parse_pairs(args.available, "--available", int),
        target_tokens=int(target) if target is not None else None,
        max_repetition=parse_pairs(args.max_repetition, "--max-repetition"),
        fixed=parse_pairs(args.fixed, "--fixed"),
    )
    if args.json:
        return json.dumps(result.to_json())
    return "\n".join(proposal_lines(result))


def fit_report(
    table: MixtureTable, metric: dict[str, float], model: str | None, as_json: bool
) -> str:
    """Every family (or ``model``) cross-validated on ``table``: RMSE and Spearman."""
    from olmotrain.mixture.regression import check_runs

    if model is not None and model not in FAMILIES:
        raise UserError(f"--model {model}: choose one of {', '.join(FAMILIES)}")
    Y = metric_matrix(table, metric)
    check_runs(len(table.runs), len(table.sources))
    import numpy as np

    cw = np.array(list(metric.values()))
    families = FAMILIES if model is None else (model,)
    cv = {f: cross_validate(f, table.weights, Y, cw) for f in families}
    best = choose(cv)
    if as_json:
        return json.dumps({
            "metric": _metric_json(metric), "runs": len(table.runs), "chosen": best,
            "cv": {f: {"rmse": _finite(s.rmse), "spearman": _finite(s.spearman)} for f, s in cv.items()},
        })  # fmt: skip
    lines = [
        f"{_metric_text(metric)}: {len(table.runs)} runs, {len(table.sources)} sources; "
        "5-fold out-of-fold predictions",
        "",
        f"{'model':<12} {'RMSE':>10} {'Spearman':>9}",
    ]
    for f, s in cv.items():
        mark = "  <- best" if f == best else ""
        lines.append(f"{f:<12} {_num(s.rmse, '.4g'):>10} {_num(s.spearman, '.3f'):>9}{mark}")
    return "\n".join(lines)


def _finite(value: float) -> float | None:
    return None if value != value else float(value)


def _num(value: float | None, spec: str) -> str:
    """A number for a table; ``-`` for one that could not be computed (a constant prediction
    has no Spearman correlation)."""
    return "-" if value is None or value != value else format(value, spec)


def _metric_json(metric: dict[str, float]) -> Any:
    return next(iter(metric)) if len(metric) == 1 else metric


def _metric_text(metric: dict[str, float]) -> str:
    if len(metric) == 1:
        return next(iter(metric))
    return "mean of " + ", ".join(f"{k} x {w:.3g}" for k, w in metric.items())


def proposal_lines(result: Any) -> list[str]:
    """A proposal as a table: weight, prior, cap, repetition per source; prediction, CV."""
    out = result.to_json()
    way = "minimised" if result.minimize else "maximised"
    lo, hi = out["interval"]
    lines = [
        f"{_metric_text(result.metric)} ({way}) by {result.model}, fitted on {result.runs} runs",
        "",
        f"{'source':<20} {'proposed':>9} {'prior':>7} {'cap':>7} {'repetition':>11}",
    ]
    for s, w in out["proposal"].items():
        cap = out["caps"].get(s)
        rep = out["repetition"].get(s)
        lines.append(
            f"{s:<20} {w:>9.4f} {out['prior'][s]:>7.3f} "
            f"{'-' if cap is None else f'{cap:.3f}':>7} {'-' if rep is None else f'{rep:.2f}x':>11}"
        )
    lines += [
        "",
        f"predicted    {_num(out['predicted'], '.4f')} (95% bootstrap interval "
        f"{_num(lo, '.4f')} .. {_num(hi, '.4f')})",
        f"best run     {out['best_run']['run']}: {out['best_run']['value']:.4f} (measured)",
        "models       "
        + ", ".join(
            f"{f} RMSE {_num(s['rmse'], '.3g')} Spearman {_num(s['spearman'], '.2f')}"
            for f, s in out["cv"].items()
        ),
    ]
    return lines


def parse_pairs(text: str | None, option: str, kind: type = float) -> dict[str, Any] | None:
    """``a=1,b=2`` -> ``{"a": 1.0, "b": 2.0}``; one line for a malformed pair."""
    if text is None:
        return None
    out: dict[str, Any] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        try:
            if not sep or not key.strip():
                raise ValueError
            out[key.strip()] = kind(float(value))
        except ValueError:
            raise UserError(
                f"{option} {text!r}: write src=value pairs, e.g. {option} web=0.6,code=0.4"
            ) from None
    return out
