"""``python -m olmotrain.ladder COMMAND LADDER [key=value ...]``: model ladders and DataDecide.

    plan     every point's plan as one table (size, N, mix, batch, steps, tokens, FLOPs, memory,
             device-hours) with totals; --json
    run      train every point as one resumable -m sweep (finished points are skipped);
             --benchmark: a short no-checkpoint throughput run per size
    fetch    copy every mix's remote files into data.cache before the run (see
             ``python -m olmotrain.data fetch``)
    status   where every point stands
    collect  one CSV over all points and checkpoints (--output FILE)
    fit      scaling laws per mix, with the largest size predicted from the others (--json)
    decide   mix rankings at every size and DataDecide's decision accuracy, how sure each
             pair is (--confidence 0.95, --smooth N, --json)
    snr      signal, noise and SNR of every metric per size; the one to decide by (--json)
    report   fit + decide + pictures as a markdown page (--output DIR)

LADDER is a name in conf/ladder/ or a YAML path; ``key=value`` pairs override its settings.
``fit``, ``decide`` and ``report`` read the collected table (``--points FILE.csv``: any table in
that format, then LADDER may be left out).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from olmotrain.errors import UserError, run_command
from olmotrain.metrics import TRAIN_LOSS

COMMANDS = ("plan", "run", "fetch", "status", "collect", "fit", "decide", "snr", "report")
DEFAULT_METRIC = TRAIN_LOSS


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f}"


def plan(ladder: Any, as_json: bool) -> None:
    """Every point's plan; a mix whose data is missing (and cannot be built) is refused."""
    from olmotrain.config.compose import compose, resolve
    from olmotrain.plan import derive_plan

    rows = []
    for point in ladder.points:
        config = resolve(compose(ladder.overrides(point)))
        p = derive_plan(config)
        problems = [
            x for x in p.data.problems if not (config.data.builder and "no files match" in x)
        ]
        if problems:
            raise UserError(f"ladder {ladder.config.name}: mix {point.mix}: {problems[0]}")
        rows.append(
            {
                "size": point.size, "mix": point.mix, "seed": point.seed,
                "num_params": p.num_non_embedding_params, "batch_size_tokens": p.batch_size_tokens,
                "max_steps": p.max_steps, "duration_tokens": p.duration_tokens,
                "total_flops": p.total_flops, "memory_per_device": p.memory.total,
                "memory_fits": p.memory_fit.fits, "gpu_hours": p.estimate.gpu_hours,
                "device_type": p.estimate.device_type, "run_dir": str(point.run_dir),
                "seconds": p.estimate.seconds, "throughput_source": p.estimate.throughput_source,
            }
        )  # fmt: skip
    totals = {
        k: sum(r[k] for r in rows)
        for k in ("duration_tokens", "total_flops", "gpu_hours", "seconds")
    }
    if as_json:
        print(json.dumps({"ladder": ladder.config.name, "points": rows, "totals": totals}))
        return
    head = f"{'size':<11} {'N':>13} {'mix':<26} {'seed':>4} {'batch':>9} {'steps':>7} {'tokens':>15} {'FLOPs':>9} {'GiB/dev':>8} {'dev-h':>8}"
    lines = [
        f"olmotrain ladder {ladder.config.name}: {len(rows)} points -> {ladder.sweep_dir}",
        "",
        head,
    ]
    for r in rows:
        fits = "" if r["memory_fits"] else " !"
        lines.append(
            f"{r['size']:<11} {r['num_params']:>13,} {r['mix']:<26} {r['seed']:>4} "
            f"{r['batch_size_tokens']:>9,} {r['max_steps']:>7,} {r['duration_tokens']:>15,} "
            f"{r['total_flops']:>9.3g} {_gib(r['memory_per_device']):>8}{fits} {r['gpu_hours']:>8.3g}"
        )
    lines.append(
        f"{'total':<11} {'':>13} {'':<26} {'':>4} {'':>9} {'':>7} {totals['duration_tokens']:>15,} "
        f"{totals['total_flops']:>9.3g} {'':>8} {totals['gpu_hours']:>8.3g}"
    )
    lines.append(
        f"\ndevice-hours on {rows[0]['device_type']} (cluster.device_type=...); ! = does not fit the device"
    )
    lines.append(
        f"estimated wall time, one point after another: {totals['seconds'] / 60:.1f} min "
        "(start-up, training, evaluation and checkpoints of every point)"
    )
    print("\n".join(lines))


def _points(args: argparse.Namespace, ladder: Any):
    from olmotrain.ladder.collect import collect, read_points

    if args.points is not None:
        return read_points(args.points)
    return collect(ladder)


def _metric(args: argparse.Namespace, ladder: Any) -> str:
    if args.metric:
        return args.metric
    if ladder is not None and ladder.config.metric:
        return ladder.config.metric
    return DEFAULT_METRIC


def _higher(args: argparse.Namespace, ladder: Any) -> bool | None:
    if args.higher_is_better:
        return True
    return ladder.config.higher_is_better if ladder is not None else None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m olmotrain.ladder",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.split("\n\n")[1:]),
    )
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("ladder", nargs="?", help="a name in conf/ladder/ or a YAML file")
    parser.add_argument("overrides", nargs="*", help="key=value settings of the ladder")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--points", type=Path, default=None, help="a collected CSV to read instead")
    parser.add_argument("--metric", default=None, help="the collected column to fit or rank by")
    parser.add_argument(
        "--higher-is-better", action="store_true", help="for --metric (default: by its name)"
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="collect: the CSV; report: the directory"
    )
    parser.add_argument(
        "--confidence", type=float, default=0.95,
        help="decide: a pair's verdict is inconclusive below this confidence (0.5, 1)",
    )  # fmt: skip
    parser.add_argument(
        "--smooth", type=int, default=1,
        help="decide, snr: each run's score is the mean of its last N evaluations",
    )  # fmt: skip
    parser.add_argument("--benchmark", action="store_true", help="run: throughput per size only")
    parser.add_argument("--steps", type=int, default=20, help="run --benchmark: steps per size")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    args = _parser().parse_args(argv)

    from olmotrain.ladder.ladder import load

    if args.ladder is None and not (
        args.points is not None and args.command in ("fit", "decide", "snr", "report")
    ):
        raise UserError(f"`{args.command}` needs a LADDER (a name in conf/ladder/ or a YAML path)")
    ladder = load(args.ladder, args.overrides) if args.ladder is not None else None

    if args.command == "plan":
        plan(ladder, args.json)
    elif args.command == "run":
        if args.benchmark:
            _benchmark(args, ladder)
            return 0
        plan(ladder, as_json=False)
        return ladder.run()
    elif args.command == "fetch":
        from olmotrain.data.__main__ import fetch_runs

        first = {}  # one run per mix: its sizes and seeds read the same files
        for point in ladder.points:
            first.setdefault(point.mix, point)
        fetch_runs([ladder.run_config(p) for p in first.values()])
    elif args.command == "status":
        from olmotrain.launch.status import render, statuses

        if not ladder.sweep_dir.is_dir():
            raise UserError(f"ladder {ladder.config.name} has not run yet (no {ladder.sweep_dir})")
        print(render(statuses(ladder.sweep_dir), ladder.sweep_dir))
    elif args.command == "collect":
        from olmotrain.ladder.collect import repeated_note

        frame = _points(args, ladder)
        if note := repeated_note(frame):
            print(note)
        out = args.output or ladder.sweep_dir / "collected.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out, index=False)
        print(
            f"{len(frame)} checkpoints of {frame.groupby(['size', 'mix', 'seed']).ngroups} runs -> {out}"
        )
    elif args.command == "fit":
        from olmotrain.ladder.fit import fit_ladder
        from olmotrain.ladder.fit_intervals import add_intervals

        frame = _points(args, ladder)
        result = add_intervals(fit_ladder(frame, _metric(args, ladder)), frame, args.confidence)
        print(json.dumps(result) if args.json else _fit_table(result))
    elif args.command == "decide":
        from olmotrain.ladder.decide import decide

        frame = _points(args, ladder)
        sizes = list(ladder.config.sizes) if ladder is not None else None
        result = decide(
            frame, _metric(args, ladder), _higher(args, ladder), sizes, args.confidence, args.smooth
        )
        print(json.dumps(result) if args.json else _decide_table(result))
    elif args.command == "snr":
        from olmotrain.ladder.snr import snr

        sizes = list(ladder.config.sizes) if ladder is not None else None
        result = snr(_points(args, ladder), sizes, args.smooth)
        print(json.dumps(result) if args.json else _snr_text(result))
    elif args.command == "report":
        _report(args, ladder)
    return 0


def _benchmark(args: argparse.Namespace, ladder: Any) -> None:
    if args.steps < 6:
        raise UserError(f"--steps {args.steps} must be at least 6 (the first 5 are warm-up)")
    results = ladder.benchmark(args.steps)
    if args.json:
        print(json.dumps(results))
        return
    for r in results:
        mfu = f"{r['mfu']:.1f}%" if r["mfu"] is not None else "- (CPU)"
        print(
            f"{r['size']:<11} N {r['num_params']:>13,}  {r['tokens_per_s']:>10,.0f} tokens/s  MFU {mfu}"
        )


def _report(args: argparse.Namespace, ladder: Any) -> None:
    """The report page; a fit or decision that cannot be made is a note on it, not an error."""
    from olmotrain.ladder.decide import decide
    from olmotrain.ladder.fit import fit_ladder, no_dof_warning
    from olmotrain.ladder.report import write_report

    frame = _points(args, ladder)
    metric = _metric(args, ladder)
    notes: list[str] = []
    fit = decision = None
    try:
        from olmotrain.ladder.fit_intervals import add_intervals

        fit = add_intervals(fit_ladder(frame, metric), frame, args.confidence)
    except UserError as exc:
        notes.append(f"No scaling-law fit: {exc}.")
    if fit is not None and (warning := no_dof_warning(fit)):
        notes.append(warning)
    try:
        sizes = list(ladder.config.sizes) if ladder else None
        decision = decide(frame, metric, _higher(args, ladder), sizes, args.confidence, args.smooth)
    except UserError as exc:
        notes.append(f"No decision: {exc}.")
    from olmotrain.ladder.snr import snr

    signal = None
    try:
        signal = snr(frame, list(ladder.config.sizes) if ladder else None, args.smooth)
    except UserError as exc:
        notes.append(f"No SNR: {exc}.")
    out = args.output or (ladder.sweep_dir / "report" if ladder else Path("ladder-report"))
    name = ladder.config.name if ladder else args.points.stem
    page = write_report(name, frame, fit, decision, out, notes, signal)
    frame.to_csv(out / "collected.csv", index=False)
    print(f"report: {page}")


def _fit_table(result: dict[str, Any]) -> str:
    from olmotrain.ladder.fit import no_dof_warning

    lines = [
        f"scaling laws of {result.get('loss_metric', result['metric'])} = A * C^-alpha + E (C: training FLOPs)",
        "",
    ]
    lines.append(
        f"{'mix':<24} {'A':>10} {'alpha':>8} {'E':>8}   held-out size: predicted / actual (error)"
    )
    for mix, e in result["fits"].items():
        h = e.get("holdout")
        span = (
            f" [{h['interval'][0]:.4g}, {h['interval'][1]:.4g}]" if h and h.get("interval") else ""
        )
        held = (
            f"{h['size']}: {h['predicted']:.4g}{span} / {h['actual']:.4g} ({h['rel_error']:+.2%})"
            if h
            else "- (needs 4 sizes)"
        )
        lines.append(f"{mix:<24} {e['A']:>10.4g} {e['alpha']:>8.4f} {e['E']:>8.4f}   {held}")
        if e.get("interval"):
            band = "  ".join(f"{k} {lo:.4g}..{hi:.4g}" for k, (lo, hi) in e["interval"].items())
            lines.append(f"{'':<24} {result.get('level', 0.95):.0%} intervals: {band}")
        for r in e.get("rollout", []):
            lines.append(
                f"{'':<24} rollout: fit on {len(r['fit_sizes'])} sizes, {r['size']} predicted "
                f"{r['predicted']:.4g} / actual {r['actual']:.4g} ({r['rel_error']:+.2%})"
            )
    if warning := no_dof_warning(result):
        lines += ["", warning]
    return "\n".join(lines)


def _decide_table(result: dict[str, Any]) -> str:
    better = "higher" if result["higher_is_better"] else "lower"
    lines = [f"{result['metric']} ({better} is better); target {result['target_size']}", ""]
    for size, order in result["rankings"].items():
        acc = result["decision_accuracy"].get(size)
        tail = (
            "target"
            if size == result["target_size"]
            else f"decision accuracy {acc:.3f}"
            if acc is not None
            else "-"
        )
        lines.append(f"  {size:<11} {' > '.join(order):<60} {tail}{_interval(result, size)}")
    lines += _pair_lines(result)
    predicted = result.get("predicted", {})
    if "ranking" in predicted and predicted["decision_accuracy"] is not None:
        lines.append(
            f"\n  predicted by the scaling laws: {' > '.join(predicted['ranking'])} "
            f"(decision accuracy {predicted['decision_accuracy']:.3f})"
        )
    return "\n".join(lines)


def _snr_text(result: dict[str, Any]) -> str:
    from olmotrain.ladder.snr import snr_table

    table = snr_table(result)
    lines = [f"{'metric':<48} {'size':<10} {'signal':>8} {'noise':>8} {'SNR':>8} {'dec.acc':>8}"]
    for r in table.itertuples():
        cells = [
            "-" if v is None or v != v else f"{v:.3g}"
            for v in (r.signal, r.noise, r.snr, r.decision_accuracy)
        ]
        lines.append(f"{r.metric:<48} {r.size:<10} " + " ".join(f"{c:>8}" for c in cells))
    lines.append(
        f"\nrecommended: {result['recommended']} ({result['why']})"
        if result["recommended"]
        else f"\nno recommendation: {result['why']}"
    )
    return "\n".join(lines)


def _interval(result: dict[str, Any], size: str) -> str:
    interval = result.get("decision_accuracy_interval", {}).get(size)
    if interval is None:
        return ""
    return f" [{interval[0]:.2f}, {interval[1]:.2f}]"


def _pair_lines(result: dict[str, Any]) -> list[str]:
    """The target's pairs: difference, confidence, verdict, and what would settle the rest."""
    level = f"{result['confidence']:.0%}"
    lines = [f"\n  pairs at {result['target_size']} (verdict at {level} confidence):"]
    for p in result["pairs"]:
        sure = "p(a better) -" if p["p_a_better"] is None else f"p(a better) {p['p_a_better']:.3f}"
        if p["verdict"] == "inconclusive":
            need = p.get("seeds_needed")
            why = (
                "no noise measured: evaluate near the end (eval.final_evals) or add seeds"
                if p["p_a_better"] is None
                else f"~{need} seeds per mix would settle it"
                if need
                else "a tie"
            )
            shown = f"inconclusive ({why})"
        else:
            shown = f"{p[p['verdict']]} is better"
        lines.append(
            f"    {p['a']} vs {p['b']}: difference {p['difference']:+.4g}, {sure} -> {shown}"
        )
    return lines


if __name__ == "__main__":
    run_command(main)
