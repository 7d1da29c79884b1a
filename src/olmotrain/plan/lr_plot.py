"""The dry run's picture of the LR schedule: periods, warmup and permanent checkpoints marked.

Drawn from :func:`olmotrain.plan.schedule.sampled_lrs`, i.e. from olmo-core's scheduler itself,
with its samples beside it as CSV. Written outside the run dir (nothing goes into a run dir
before training claims it): ``${output_root}/plans/<run_name>/``. The drawing itself
(:mod:`.lr_picture`, matplotlib) runs in this process, or in a :class:`Drawer` that ``train.py``
starts before olmo-core is imported, so that the two imports overlap.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from olmotrain.chinchilla import format_multiple
from olmotrain.config.schema import RunConfig
from olmotrain.paths import write_atomically
from olmotrain.plan.lr_picture import draw_png
from olmotrain.plan.plan import Plan
from olmotrain.plan.schedule import sampled_lrs

PICTURE_SCRIPT = Path(__file__).with_name("lr_picture.py")


class Drawer:
    """A helper process that imports matplotlib now and draws the picture when it is asked to.

    Run as a plain script (not ``-m``), so that it imports nothing of olmotrain or olmo-core.
    """

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(PICTURE_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def draw(self, figure: dict[str, Any]) -> bytes:
        """The PNG of ``figure`` (see :func:`.lr_picture.draw_png`)."""
        out, err = self.process.communicate(json.dumps(figure).encode(), timeout=300)
        if self.process.returncode:
            tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"the LR schedule picture could not be drawn: {tail[0]}")
        return out


def plan_dir(c: RunConfig) -> Path:
    """Where the dry run of ``c`` writes its pictures (beside the run dirs, never inside one)."""
    return Path(c.output_root) / "plans" / c.run_name


def plot_lr_schedule(c: RunConfig, plan: Plan, drawer: Drawer | None = None) -> Path:
    """Write ``lr_schedule.png`` and ``lr_schedule.csv`` (step, tokens, lr); returns the PNG."""
    samples = sampled_lrs(c, plan)
    out = plan_dir(c)
    out.mkdir(parents=True, exist_ok=True)
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(["step", "tokens", "lr"])
    writer.writerows(samples)
    # Two dry runs of the same run name may draw at once (a sweep, parallel tests): whole files.
    write_atomically(out / "lr_schedule.csv", table.getvalue())
    figure = {
        "samples": samples,
        "peak_lr": plan.lr,
        "warmup_step": plan.warmup_tokens / plan.batch_size_tokens,
        "periods": [
            [end // plan.batch_size_tokens, f"{format_multiple(multiple)}xC"]
            for multiple, end in zip(plan.period_multiples, plan.period_ends, strict=True)
        ],
        "checkpoints": [ck.step for ck in plan.checkpoints],
        "title": f"{plan.run_name}: {plan.schedule} schedule",
        "caption": (
            f"peak LR {plan.lr:.3g}; batch {plan.batch_size_tokens:,} tokens; warmup "
            f"{plan.warmup_tokens:,} tokens; {plan.max_steps:,} steps = {plan.duration_tokens:,} "
            f"tokens ({plan.chinchilla_multiple:g} x Chinchilla)"
        ),
    }
    png = out / "lr_schedule.png"
    write_atomically(png, drawer.draw(figure) if drawer else draw_png(figure))
    return png
