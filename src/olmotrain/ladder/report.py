"""``report``: the fit and the decision as one markdown page with its pictures (matplotlib PNGs)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from olmotrain.ladder.fit import PowerLaw, final_points
from olmotrain.paths import write_atomically


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_fit(frame: Any, fit: dict[str, Any], path: Path) -> Path:
    """Each mix's final points (metric vs training FLOPs), its law, and the held-out prediction."""
    plt = _plt()
    metric = fit.get("loss_metric", fit["metric"])
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, (mix, entry) in enumerate(fit["fits"].items()):
        color = f"C{i}"
        points = entry["points"]
        c = np.array([p["flops"] for p in points])
        ax.scatter(c, [p["value"] for p in points], color=color, zorder=3, label=f"{mix}")
        grid = np.logspace(math.log10(c.min()) - 0.2, math.log10(c.max()) + 0.4, 200)
        law = PowerLaw(entry["A"], entry["alpha"], entry["E"])
        ax.plot(grid, law(grid), color=color, lw=1, ls="--",
                label=f"  {entry['A']:.3g} C^-{entry['alpha']:.3f} + {entry['E']:.3f}")  # fmt: skip
        if "band" in entry:
            b = entry["band"]
            ax.fill_between(b["flops"], b["lo"], b["hi"], color=color, alpha=0.15, lw=0,
                            label=f"  {fit.get('level', 0.95):.0%} band (measured noise)")  # fmt: skip
        holdout = entry.get("holdout")
        if holdout and "loss_metric" not in fit:
            at = next(p["flops"] for p in points if p["size"] == holdout["size"])
            ax.scatter([at], [holdout["predicted"]], color=color, marker="x", s=80, zorder=4,
                       label=f"  {holdout['size']} predicted without it ({holdout['rel_error']:+.1%})")  # fmt: skip
            if holdout.get("interval"):
                lo, hi = holdout["interval"]
                ax.vlines(at, lo, hi, color=color, lw=2, alpha=0.6, zorder=4)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training FLOPs (final checkpoint)")
    ax.set_ylabel(metric)
    ax.set_title(f"Scaling laws per mix: {metric}", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_decision(decision: dict[str, Any], path: Path) -> Path:
    """Decision accuracy of every smaller size against its compute."""
    plt = _plt()
    sizes = [s for s, v in decision["decision_accuracy"].items() if v is not None]
    fig, ax = plt.subplots(figsize=(7, 4))
    x = [decision["compute"][s] for s in sizes]
    y = [decision["decision_accuracy"][s] for s in sizes]
    ax.plot(x, y, marker="o", label="ranking at that size")
    for xi, yi, s in zip(x, y, sizes, strict=True):
        ax.annotate(s, (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8)
    predicted = decision.get("predicted", {})
    if predicted.get("decision_accuracy") is not None:
        ax.axhline(predicted["decision_accuracy"], color="C1", ls="--",
                   label="ranking predicted by the scaling laws")  # fmt: skip
    ax.set_xscale("log")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("training FLOPs of the smaller size")
    ax.set_ylabel(f"decision accuracy vs {decision['target_size']}")
    ax.set_title(
        f"Which mix wins at {decision['target_size']}? ({decision['metric']})", fontsize=10
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _number(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def write_report(
    name: str, frame: Any, fit: dict[str, Any] | None, decision: dict[str, Any] | None, out: Path,
    notes: list[str] | None = None, snr: dict[str, Any] | None = None,
) -> Path:  # fmt: skip
    """``out/report.md`` with ``fit.png``, ``decision_accuracy.png`` and, with ``snr``,
    ``snr.csv`` and ``snr.png``; returns the page."""
    out.mkdir(parents=True, exist_ok=True)
    metric = (decision or fit or {}).get("metric")
    lines = [f"# Ladder `{name}`", ""]
    lines += notes or []
    sizes = frame.groupby("size", sort=False)["num_params"].first()
    lines += [
        "",
        f"{len(sizes)} sizes x {frame['mix'].nunique()} mixes x {frame['seed'].nunique()} seed(s), "
        f"{len(frame)} checkpoints with metrics.",
        "",
        "| size | N (non-embedding) | final tokens | final FLOPs |",
        "|---|---:|---:|---:|",
    ]
    last = frame.loc[frame.groupby(["size", "mix", "seed"])["step"].idxmax()]
    for size, n in sizes.items():
        rows = last[last["size"] == size]
        lines.append(
            f"| {size} | {n:,} | {int(rows['tokens'].max()):,} | {rows['flops'].max():.3g} |"
        )
    if metric is not None:
        points = final_points(frame, metric)
        table = points.pivot(index="size", columns="mix", values="value").reindex(sizes.index)
        lines += ["", f"## `{metric}` at each run's final checkpoint", ""]
        lines += [
            "| size | " + " | ".join(table.columns) + " |",
            "|---|" + "---:|" * len(table.columns),
        ]
        for size, row in table.iterrows():
            lines.append(f"| {size} | " + " | ".join(_number(v) for v in row) + " |")
    if fit is not None:
        plot_fit(frame, fit, out / "fit.png")
        lines += _fit_section(fit)
    if decision is not None:
        plot_decision(decision, out / "decision_accuracy.png")
        lines += _decision_section(decision)
    if snr is not None:
        lines += _snr_section(snr, out)
    page = out / "report.md"
    write_atomically(page, "\n".join(lines) + "\n")
    return page


def _band(interval: list[float] | None) -> str:
    return "" if not interval else f" ({interval[0]:.4g} .. {interval[1]:.4g})"


def _fit_section(fit: dict[str, Any]) -> list[str]:
    """The scaling-law table: each mix's fit and its held-out size's prediction."""
    lines = [
        "",
        f"## Scaling laws: `{fit.get('loss_metric', fit['metric'])}` = A C^-alpha + E",
        "",
    ]
    level = f"{fit.get('level', 0.95):.0%}"
    lines += [
        f"| mix | A | alpha ({level} interval) | E ({level} interval) | held-out size | predicted "
        f"({level} interval) | actual | error |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    rollouts = []
    for mix, e in fit["fits"].items():
        h = e.get("holdout") or {}
        error = "-" if h.get("rel_error") is None else f"{h['rel_error']:+.2%}"
        iv = e.get("interval") or {}
        lines.append(
            f"| {mix} | {e['A']:.4g} | {e['alpha']:.4f}{_band(iv.get('alpha'))} | "
            f"{e['E']:.4f}{_band(iv.get('E'))} | {h.get('size', '-')} | "
            f"{_number(h.get('predicted'))}{_band(h.get('interval'))} | {_number(h.get('actual'))} "
            f"| {error} |"
        )
        rollouts += [
            f"{mix}: fit on {len(r['fit_sizes'])} sizes, {r['size']} off by {r['rel_error']:+.2%}"
            for r in e.get("rollout", [])
        ]
    if rollouts:
        lines += [
            "",
            "Rollout (fit on the smallest k sizes, predict the next): " + "; ".join(rollouts) + ".",
        ]
    lines += ["", "![fit](fit.png)"]
    return lines


def _pairs_section(decision: dict[str, Any], level: str) -> list[str]:
    """Each pair at the target: how sure, and what would settle the inconclusive ones."""
    lines = [
        "",
        f"Each pair at {decision['target_size']} (score: mean of each run's last "
        f"{decision.get('smooth', 1)} evaluation(s); verdict at {level} confidence):",
        "",
        "| a | b | a - b | p(a better) | verdict |",
        "|---|---|---:|---:|---|",
    ]
    for p in decision.get("pairs", []):
        if p["verdict"] != "inconclusive":
            shown = f"**{p[p['verdict']]}**"
        elif p["p_a_better"] is None:
            shown = "inconclusive: no noise measured (eval.final_evals, seeds)"
        elif p.get("seeds_needed"):
            shown = f"inconclusive: ~{p['seeds_needed']} seeds per mix would settle it"
        else:
            shown = "inconclusive"
        lines.append(
            f"| {p['a']} | {p['b']} | {p['difference']:+.4g} | {_number(p['p_a_better'])} "
            f"| {shown} |"
        )
    return lines


def _snr_section(snr: dict[str, Any], out: Path) -> list[str]:
    """Every metric's SNR per size, the recommended metric and the SNR picture."""
    from olmotrain.ladder.snr import plot_snr, snr_table

    table = snr_table(snr)
    table.to_csv(out / "snr.csv", index=False)
    plot_snr(snr, out / "snr.png")
    lines = ["", "## Which metric to decide by: signal, noise and SNR", ""]
    if snr.get("recommended"):
        lines += [f"Recommended: `{snr['recommended']}`: {snr['why']}.", ""]
    else:
        lines += [f"No recommendation: {snr['why']}.", ""]
    lines += [
        "| metric | size | signal | noise | SNR | decision accuracy |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in table.itertuples():
        lines.append(
            f"| `{r.metric}` | {r.size} | {_number(r.signal)} | {_number(r.noise)} "
            f"| {_number(r.snr)} | {_number(r.decision_accuracy)} |"
        )
    lines += ["", "Full table: [snr.csv](snr.csv).", "", "![SNR vs decision accuracy](snr.png)"]
    return lines


def _decision_section(decision: dict[str, Any]) -> list[str]:
    """The rankings at each size with their decision accuracy, and the predicted ranking."""
    better = "higher" if decision["higher_is_better"] else "lower"
    lines = ["", f"## Which mix wins ({better} `{decision['metric']}` is better)", ""]
    level = f"{decision.get('confidence', 0.95):.0%}"
    lines += [
        f"| size | ranking (best first) | decision accuracy vs {decision['target_size']} "
        f"| {level} interval |",
        "|---|---|---:|---|",
    ]
    for size, order in decision["rankings"].items():
        acc = decision["decision_accuracy"].get(size)
        shown = _number(acc) if size != decision["target_size"] else "target"
        interval = decision.get("decision_accuracy_interval", {}).get(size)
        band = f"{interval[0]:.2f} .. {interval[1]:.2f}" if interval else "-"
        lines.append(f"| {size} | {' > '.join(order)} | {shown} | {band} |")
    lines += _pairs_section(decision, level)
    predicted = decision.get("predicted", {})
    if "ranking" in predicted:
        lines += [
            "",
            f"Predicted by the scaling laws (sizes below {decision['target_size']}): "
            f"{' > '.join(predicted['ranking'])}, decision accuracy "
            f"{_number(predicted['decision_accuracy'])}.",
        ]
    elif "error" in predicted:
        lines += ["", f"No predicted ranking: {predicted['error']}."]
    lines += ["", "![decision accuracy](decision_accuracy.png)"]
    return lines
