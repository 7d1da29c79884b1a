"""Plot a run's metrics.jsonl: train loss and LR per step, held-out loss at the end.

.venv/bin/python docs/plot_run.py RUN_DIR [OUT.png] [--unigram NATS]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

from olmotrain.metrics import CE_LOSS, LR, TRAIN_LOSS, parse_lm, read_metrics_log

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument(
        "out", type=Path, nargs="?", default=Path(__file__).with_name("default_run.png")
    )
    parser.add_argument(
        "--unigram", type=float, help="unigram entropy of the held-out tokens (nats)"
    )
    args = parser.parse_args()
    # Read through olmotrain's reader: the metric names of older run dirs are translated.
    records = read_metrics_log(args.run_dir / "metrics.jsonl")
    trained = [r for r in records if TRAIN_LOSS in r]
    steps = [r["step"] for r in trained]
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(steps, [r[TRAIN_LOSS] for r in trained], label="train loss", lw=1.2)
    last = records[-1]
    for key, value in sorted(last.items()):
        parsed = parse_lm(key)
        if parsed and parsed[1] == CE_LOSS:
            ax.scatter([last["step"]], [value], zorder=5, label=f"held-out {parsed[0]}")
    if args.unigram is not None:
        ax.axhline(args.unigram, color="grey", ls="--", lw=1, label="unigram entropy (held-out)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats)")
    lr_ax = ax.twinx()
    lr_ax.plot(steps, [r.get(LR) for r in trained], color="tab:green", lw=0.8, alpha=0.6)
    lr_ax.set_ylabel("learning rate", color="tab:green")
    ax.set_title(f"{args.run_dir.name}")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
