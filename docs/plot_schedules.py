"""Plot the LR schedules olmotrain plans, with olmo-core's own schedulers: docs/lr_schedules.png.

.venv/bin/python docs/plot_schedules.py [OVERRIDES...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from olmotrain.config.compose import compose, resolve  # noqa: E402
from olmotrain.plan import derive_plan  # noqa: E402
from olmotrain.plan.schedule import scheduler  # noqa: E402

BASE = ["model=olmo2_30m", "chinchilla_multiple=4", "data=olmo_mix_v1_5", "tokenizer=gpt_neox_olmo"]


def main(overrides: list[str]) -> Path:
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for name in ("wsds", "wsd", "cosine", "constant"):
        c = resolve(compose([*BASE, *overrides, f"schedule={name}"]))
        plan = derive_plan(c)
        sched = scheduler(c, plan)
        tokens = range(0, plan.duration_tokens + 1, plan.batch_size_tokens)
        lrs = [float(sched.get_lr(plan.lr, t, plan.duration_tokens)) for t in tokens]
        ax.plot([t / 1e9 for t in tokens], lrs, label=name, lw=2 if name == "wsds" else 1.2)
        if name == "wsds":
            pts = [ck.tokens for ck in plan.checkpoints]
            ax.scatter(
                [t / 1e9 for t in pts],
                [float(sched.get_lr(plan.lr, t, plan.duration_tokens)) for t in pts],
                color="black",
                zorder=5,
                s=18,
                label="WSD-S checkpoints",
            )
            for c_mult, end in zip(plan.period_multiples, plan.period_ends, strict=True):
                ax.axvline(end / 1e9, color="grey", ls=":", lw=0.8)
                ax.text(
                    end / 1e9, plan.lr * 1.02, f"{c_mult:g}xC", ha="right", fontsize=8, color="grey"
                )
    ax.set_xlabel("tokens (billions)")
    ax.set_ylabel("learning rate")
    ax.set_title(
        f"{plan.model} at {plan.chinchilla_multiple:g} x Chinchilla: peak LR {plan.lr:.2e}, "
        f"batch {plan.batch_size_tokens:,} tokens, warmup {plan.warmup_tokens / 1e6:.1f}M tokens"
    )
    ax.legend(loc="lower left")
    fig.tight_layout()
    out = Path(__file__).with_name("lr_schedules.png")
    fig.savefig(out, dpi=110)
    return out


if __name__ == "__main__":
    print(main(sys.argv[1:]))
