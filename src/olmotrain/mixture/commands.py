"""The commands of ``python -m olmotrain.mixture`` on a named experiment (one function each)."""

from __future__ import annotations

import argparse
import json

from olmotrain.errors import UserError
from olmotrain.mixture.experiment import Mixture
from olmotrain.mixture.swarm_fit import proposal_of, swarm_table
from olmotrain.paths import write_atomically


def plan(mixture: Mixture, args: argparse.Namespace) -> int:
    """The swarm: every mix, its repetition per source in the target's terms, its plan; totals."""
    c = mixture.config
    target = mixture.target_tokens
    cons = mixture.swarm_constraints
    rows = []
    for point in mixture.points:
        p = mixture.plan(point, c.proxy.chinchilla_multiple, mixture.sweep_dir)
        problems = [x for x in p.data.problems if "no files match" not in x]
        if problems:
            raise UserError(f"mixture {c.name}: run {point.name}: {problems[0]}")
        rows.append(
            {
                "run": point.name, "size": point.size, "seed": point.seed,
                "weights": point.weights,
                "repetition": {s.name: s.repetition for s in p.data.sources},
                "duration_tokens": p.duration_tokens, "total_flops": p.total_flops,
                "seconds": p.estimate.seconds, "run_dir": str(point.run_dir),
            }
        )  # fmt: skip
    sources = {
        s.name: {"tokens": s.tokens, "max_repetition_ratio": s.max_repetition_ratio,
                 "cap": u if u < 1 else None}
        for s, u in zip(mixture.sources, cons.upper, strict=True)
    }  # fmt: skip
    totals = {k: sum(r[k] for r in rows) for k in ("duration_tokens", "total_flops", "seconds")}
    if args.json:
        print(json.dumps({
            "mixture": c.name, "data": c.data, "target": {"size": c.target.size, "tokens": target},
            "repetition_matched": c.swarm.repetition_matched, "sources": sources,
            "points": rows, "totals": totals,
        }))  # fmt: skip
        return 0
    print("\n".join(_plan_lines(mixture, rows, sources, totals)))
    return 0


def _plan_lines(mixture: Mixture, rows: list[dict], sources: dict, totals: dict) -> list[str]:
    c = mixture.config
    names = mixture.names
    lines = [
        f"olmotrain mixture {c.name}: {len(rows)} runs of {', '.join(c.proxy.sizes)} on "
        f"{c.data} -> {mixture.sweep_dir}",
        f"target {c.target.size} at {c.target.chinchilla_multiple:g} x Chinchilla = "
        f"{mixture.target_tokens:,} tokens; proxies "
        + ("repetition-matched to it" if c.swarm.repetition_matched else "not repetition-matched"),
        "",
        f"{'source':<16} {'tokens':>12} {'max rep':>8} {'cap':>7}",
    ]
    for name, s in sources.items():
        cap = "-" if s["cap"] is None else f"{s['cap']:.3f}"
        lines.append(f"{name:<16} {s['tokens']:>12,} {s['max_repetition_ratio']:>8g} {cap:>7}")
    head = "  ".join(f"{n[:14]:>14}" for n in names)
    lines += ["", f"{'#':>3} {'size':<10} {head}  {'max rep':>8} {'est. s':>7}"]
    for i, r in enumerate(rows):
        ws = "  ".join(f"{r['weights'][n]:>14.4f}" for n in names)
        reps = [v for v in r["repetition"].values() if v is not None]
        rep = f"{max(reps):.2f}x" if reps else "-"
        lines.append(f"{i:>3} {r['size']:<10} {ws}  {rep:>8} {r['seconds']:>7.0f}")
    lines += [
        "",
        "cap: the largest weight the target can give a source (its tokens x max_repetition_ratio "
        "/ the target's tokens); every mix is within it",
        f"estimated wall time, one run after another: {totals['seconds'] / 60:.1f} min "
        f"({totals['duration_tokens']:,} tokens, {totals['total_flops']:.3g} FLOPs)",
    ]
    return lines


def run(mixture: Mixture, args: argparse.Namespace) -> int:
    """Train the swarm."""
    plan(mixture, argparse.Namespace(json=False))
    return mixture.run_swarm()


def status(mixture: Mixture, args: argparse.Namespace) -> int:
    """Where every run stands (the swarm's, then the verification's)."""
    from olmotrain.launch.status import render, statuses

    if not mixture.sweep_dir.is_dir():
        raise UserError(f"mixture {mixture.config.name} has not run yet (no {mixture.sweep_dir})")
    for root in (mixture.sweep_dir, mixture.verify_sweep_dir):
        if root.is_dir():
            print(render(statuses(root), root))
    return 0


def collect(mixture: Mixture, args: argparse.Namespace) -> int:
    """The swarm's tables."""
    from olmotrain.mixture.collect import collect as collect_tables

    frame = collect_tables(mixture)
    print(
        f"{len(frame)} of {len(mixture.points)} swarm runs finished -> "
        f"{mixture.sweep_dir}/ratios.csv, metrics.csv, collected.csv"
    )
    return 0


def fit(mixture: Mixture, args: argparse.Namespace) -> int:
    """Cross-validate every regression family on the swarm."""
    from olmotrain.mixture.cli_csv import fit_report

    print(fit_report(swarm_table(mixture), mixture.config.metric_weights, None, args.json))
    return 0


def propose(mixture: Mixture, args: argparse.Namespace) -> int:
    """The proposal, as ``proposal.json`` and ``conf/data/<name>_proposed.yaml``."""
    from olmotrain.mixture.cli_csv import proposal_lines
    from olmotrain.mixture.proposed import write_proposed_data

    result = proposal_of(mixture)
    out = result.to_json()
    write_atomically(mixture.sweep_dir / "proposal.json", json.dumps(out, indent=2))
    lo, hi = out["interval"]
    why = (
        f"{result.model} fitted on {result.runs} runs predicts {out['predicted']} "
        f"(95% bootstrap interval {lo} .. {hi})"
    )
    data_file = write_proposed_data(mixture, out["proposal"], why)
    if args.json:
        print(json.dumps({**out, "data_config": str(data_file)}))
        return 0
    c = mixture.config
    lines = proposal_lines(result)
    lines += [
        "",
        f"data config  {data_file}",
        f"train it     python train.py model={c.target.size} data={c.proposed_data_name} "
        f"chinchilla_multiple={c.target.chinchilla_multiple:g}",
        f"verify it    python -m olmotrain.mixture verify {c.name}",
    ]
    print("\n".join(lines))
    return 0


def verify(mixture: Mixture, args: argparse.Namespace) -> int:
    """Train the verification, then say who wins at each size."""
    from olmotrain.mixture.verify import (
        run_verify,
        verdict,
        verdict_lines,
        verify_table,
        write_verdict,
    )

    code = run_verify(mixture)
    if code:
        return code
    result = verdict(mixture, verify_table(mixture))
    write_verdict(mixture, result)
    print(json.dumps(result) if args.json else "\n".join(verdict_lines(result)))
    return 0


def report(mixture: Mixture, args: argparse.Namespace) -> int:
    """The report page."""
    from olmotrain.mixture.report import write_report

    out = args.output or mixture.sweep_dir / "report"
    print(f"report: {write_report(mixture, out)}")
    return 0
