"""The LR schedule's picture, drawn with matplotlib from a plain description (JSON) to PNG bytes.

It imports nothing of olmotrain, so a dry run can run this file as a script in a helper process
started before olmo-core is imported (:class:`olmotrain.plan.lr_plot.Drawer`): matplotlib's
import (~0.3 s on 2 cores) then overlaps olmo-core's instead of adding to the dry run's latency.
As a script it reads the description on stdin and writes the PNG to stdout (nothing on empty
input: the run stopped before planning).
"""

from __future__ import annotations

import io
import json
import sys
from typing import Any


def draw_png(figure: dict[str, Any]) -> bytes:
    """The picture of ``figure``: ``samples`` ([step, tokens, lr]), ``warmup_step``, ``periods``
    ([step, label]), ``checkpoints`` (steps), ``peak_lr``, ``title`` and ``caption``."""
    # Figure + Agg canvas, not pyplot: pyplot's import alone is ~0.4 s.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    samples, peak = figure["samples"], figure["peak_lr"]
    by_step = {step: lr for step, _, lr in samples}
    fig = Figure(figsize=(10, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    fig.subplots_adjust(left=0.07, right=0.98, top=0.92, bottom=0.17)  # tight_layout costs ~0.2 s
    ax.plot([s for s, _, _ in samples], [lr for _, _, lr in samples], lw=1.8, color="C0")
    warmup = figure["warmup_step"]
    ax.axvspan(0, warmup, color="C1", alpha=0.15, label=f"warmup ({warmup:.1f} steps)")
    for step, label in figure["periods"]:
        ax.axvline(step, color="grey", ls=":", lw=0.8)
        ax.text(step, peak * 1.03, label, ha="right", fontsize=8)
    cks = figure["checkpoints"]
    ax.scatter(cks, [by_step[s] for s in cks], color="black", s=16, zorder=5,
               label="permanent checkpoints")  # fmt: skip
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.set_ylim(0, peak * 1.12)
    ax.set_title(figure["title"], fontsize=10)
    fig.text(0.01, 0.01, figure["caption"], fontsize=8)
    ax.legend(loc="lower left", fontsize=8)
    image = io.BytesIO()
    fig.savefig(image, dpi=100, format="png")
    return image.getvalue()


def main() -> None:
    """Import matplotlib at once (why this process was started early), then draw what comes."""
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401

    text = sys.stdin.read()
    if text.strip():
        sys.stdout.buffer.write(draw_png(json.loads(text)))


if __name__ == "__main__":
    main()
