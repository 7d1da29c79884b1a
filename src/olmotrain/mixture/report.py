"""``report``: the experiment on one markdown page with its pictures.

Swarm -> fit (out-of-fold predictions against the measured objective, per family) -> proposal
(weights against the prior and the best swarm mix, with the caps) -> verification (the
objective of each mix at each size, and who wins). A step that cannot be made yet (no
verification run) is a note on the page, not an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from olmotrain.errors import UserError
from olmotrain.mixture.experiment import Mixture


def write_report(mixture: Mixture, out: Path) -> Path:
    """Write ``report.md`` and its PNGs into ``out``; returns the page's path."""
    import matplotlib

    matplotlib.use("Agg")
    from olmotrain.mixture.cli_csv import proposal_lines
    from olmotrain.mixture.swarm_fit import proposal_of, swarm_table
    from olmotrain.mixture.tables import metric_matrix

    out.mkdir(parents=True, exist_ok=True)
    c = mixture.config
    table = swarm_table(mixture)
    result = proposal_of(mixture)
    measured = metric_matrix(table, result.metric) @ np.array(list(result.metric.values()))
    _fit_picture(result, measured, out / "fit.png")
    verification, note = _verification(mixture)
    _mixes_picture(mixture, result, verification, out / "mixes.png")
    _swarm_picture(mixture, table, measured, result, out / "swarm.png")
    lines = [
        f"# Mixture {c.name}",
        "",
        f"Which mix of **{c.data}**'s sources ({', '.join(mixture.names)}) should "
        f"{c.target.size} at {c.target.chinchilla_multiple:g} x Chinchilla "
        f"({mixture.target_tokens:,} tokens) train on? {len(table.runs)} proxy runs of "
        f"{c.proxy.sizes[-1]} at {c.proxy.chinchilla_multiple:g} x Chinchilla"
        + (", repetition-matched to the target" if c.swarm.repetition_matched else "")
        + ".",
        "",
        "## Fit",
        "",
        "Out-of-fold predictions (5-fold) of each regression against the measured objective; "
        "the proposal uses the family with the lowest RMSE.",
        "",
        "![fit](fit.png)",
        "",
        "## Proposal",
        "",
        "```",
        *proposal_lines(result),
        "```",
        "",
        "![mixes](mixes.png)",
        "",
        "![swarm](swarm.png)",
        "",
        "## Verification",
        "",
    ]
    if verification is None:
        lines.append(note)
    else:
        from olmotrain.mixture.verify import verdict_lines

        _verify_picture(verification, out / "verify.png")
        lines += ["```", *verdict_lines(verification), "```", "", "![verify](verify.png)"]
    page = out / "report.md"
    page.write_text("\n".join(lines) + "\n")
    return page


def _verification(mixture: Mixture) -> tuple[dict[str, Any] | None, str]:
    from olmotrain.mixture.verify import verdict, verify_table

    try:
        return verdict(mixture, verify_table(mixture)), ""
    except UserError as exc:
        return None, f"Not verified yet: {exc}."


def _fit_picture(result: Any, measured: np.ndarray, path: Path) -> None:
    import matplotlib.pyplot as plt

    families = list(result.cv)
    fig, axes = plt.subplots(1, len(families), figsize=(4 * len(families), 3.8), squeeze=False)
    lo, hi = float(measured.min()), float(measured.max())
    for ax, family in zip(axes[0], families, strict=True):
        score = result.cv[family]
        ax.scatter(measured, score.oof, s=18, alpha=0.8)
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--")
        chosen = " (used)" if family == result.model else ""
        ax.set_title(
            f"{family}{chosen}\nRMSE {score.rmse:.3g}, Spearman {score.spearman:.2f}", fontsize=9
        )
        ax.set_xlabel("measured")
        ax.set_ylabel("predicted (out of fold)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _mixes_picture(mixture: Mixture, result: Any, verification: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    names = mixture.names
    mixes = {"proposed": result.proposal, "prior": result.prior}
    for label in ("natural", "best_swarm"):
        if verification is not None and label in verification["mixes"]:
            mixes[label.replace("_", " ")] = verification["mixes"][label]
    x = np.arange(len(names))
    width = 0.8 / len(mixes)
    fig, ax = plt.subplots(figsize=(1.8 * len(names) + 2, 3.6))
    for i, (label, mix) in enumerate(mixes.items()):
        ax.bar(x + i * width, [mix[n] for n in names], width, label=label)
    for j, n in enumerate(names):
        cap = result.caps.get(n)
        if cap is not None:
            ax.hlines(cap, j - 0.1, j + 0.9, color="black", lw=1.5)
            ax.text(j + 0.4, cap, " cap", va="bottom", fontsize=8)
    ax.set_xticks(x + 0.4 - width / 2, names)
    ax.set_ylabel("weight")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _swarm_picture(mixture: Mixture, table: Any, measured: np.ndarray, result: Any, path: Path):
    import matplotlib.pyplot as plt

    names = mixture.names
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.2), squeeze=False)
    for j, (ax, n) in enumerate(zip(axes[0], names, strict=True)):
        ax.scatter(table.weights[:, j], measured, s=16)
        ax.axvline(result.proposal[n], color="C3", lw=1.5, label="proposed")
        ax.set_xlabel(f"weight of {n}")
        ax.set_ylabel("objective")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _verify_picture(verification: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    sizes = verification["sizes"]
    fig, axes = plt.subplots(1, len(sizes), figsize=(3.6 * len(sizes), 3.2), squeeze=False)
    for ax, size in zip(axes[0], sizes, strict=True):
        values = verification["values"][size]
        ax.bar(
            list(values),
            list(values.values()),
            color=["C3" if m == "proposed" else "C0" for m in values],
        )
        low = min(values.values())
        ax.set_ylim(low - 0.1 * (max(values.values()) - low + 1e-9) - 1e-3, None)
        ax.set_title(size)
        ax.set_ylabel("objective")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
