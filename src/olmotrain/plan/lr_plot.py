"""The dry run's picture of the LR schedule: periods, warmup and permanent checkpoints marked.

Drawn (matplotlib, Agg) from :func:`olmotrain.plan.schedule.sampled_lrs`, i.e. from olmo-core's
scheduler itself, with its samples beside it as CSV. Written outside the run dir (nothing goes
into a run dir before training claims it): ``${output_root}/plans/<run_name>/``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from olmotrain.chinchilla import format_multiple
from olmotrain.config.schema import RunConfig
from olmotrain.paths import write_atomically
from olmotrain.plan.schedule import sampled_lrs


def plan_dir(c: RunConfig) -> Path:
    """Where the dry run of ``c`` writes its pictures (beside the run dirs, never inside one)."""
    return Path(c.output_root) / "plans" / c.run_name


def plot_lr_schedule(c: RunConfig, plan) -> Path:
    """Write ``lr_schedule.png`` and ``lr_schedule.csv`` (step, tokens, lr); returns the PNG."""
    # Figure + Agg canvas, not pyplot: pyplot's import alone is ~0.4 s of every dry run.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    samples = sampled_lrs(c, plan)
    out = plan_dir(c)
    out.mkdir(parents=True, exist_ok=True)
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(["step", "tokens", "lr"])
    writer.writerows(samples)
    # Two dry runs of the same run name may draw at once (a sweep, parallel tests): whole files.
    write_atomically(out / "lr_schedule.csv", table.getvalue())

    by_step = {step: lr for step, _, lr in samples}
    fig = Figure(figsize=(10, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    fig.subplots_adjust(left=0.07, right=0.98, top=0.92, bottom=0.17)  # tight_layout costs ~0.2 s
    ax.plot([s for s, _, _ in samples], [lr for _, _, lr in samples], lw=1.8, color="C0")
    warmup_step = plan.warmup_tokens / plan.batch_size_tokens
    ax.axvspan(0, warmup_step, color="C1", alpha=0.15, label=f"warmup ({warmup_step:.1f} steps)")
    for multiple, end in zip(plan.period_multiples, plan.period_ends, strict=True):
        step = end // plan.batch_size_tokens
        ax.axvline(step, color="grey", ls=":", lw=0.8)
        ax.text(step, plan.lr * 1.03, f"{format_multiple(multiple)}xC", ha="right", fontsize=8)
    cks = [ck.step for ck in plan.checkpoints]
    ax.scatter(cks, [by_step[s] for s in cks], color="black", s=16, zorder=5,
               label="permanent checkpoints")  # fmt: skip
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.set_ylim(0, plan.lr * 1.12)
    ax.set_title(f"{plan.run_name}: {plan.schedule} schedule", fontsize=10)
    fig.text(
        0.01,
        0.01,
        f"peak LR {plan.lr:.3g}; batch {plan.batch_size_tokens:,} tokens; warmup "
        f"{plan.warmup_tokens:,} tokens; {plan.max_steps:,} steps = {plan.duration_tokens:,} "
        f"tokens ({plan.chinchilla_multiple:g} x Chinchilla)",
        fontsize=8,
    )
    ax.legend(loc="lower left", fontsize=8)
    png = out / "lr_schedule.png"
    image = io.BytesIO()
    fig.savefig(image, dpi=100, format="png")
    write_atomically(png, image.getvalue())
    return png
