"""``collect``: the swarm's results as olmix's two tables and one tidy table.

- ``ratios.csv``: ``run`` and one weight column per source (the mix each run trained on, read
  from its frozen ``config.yaml``);
- ``metrics.csv``: ``run`` and every numeric metric of the run's final checkpoint
  (``eval/lm/<source>/BPB``, ``train/CE loss``, ...);
- ``collected.csv``: one row per finished run: ``run, size, seed, num_params, tokens, flops,
  path``, the weights, then the metrics.

Only finished runs are collected (their last checkpoint has its ``metrics_step{N}.json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from olmotrain.errors import UserError
from olmotrain.metrics import TOTAL_TOKENS
from olmotrain.mixture.experiment import Mixture, Point, final_metrics, run_weights
from olmotrain.train.rundir import RunDir

RATIOS_CSV = "ratios.csv"
METRICS_CSV = "metrics.csv"
COLLECTED_CSV = "collected.csv"


def finished_rows(points: list[Point], sources: list[str]) -> list[dict[str, Any]]:
    """One row per finished run of ``points`` (see the module docstring)."""
    rows = []
    for point in points:
        final = final_metrics(point.run_dir)
        if final is None:
            continue
        step, metrics = final
        plan = RunDir(point.run_dir).plan()
        weights = run_weights(point.run_dir)
        tokens = int(metrics.get(TOTAL_TOKENS, plan.duration_tokens))
        rows.append(
            {
                "run": point.name,
                "size": point.size,
                "seed": point.seed,
                "num_params": plan.num_non_embedding_params,
                "step": step,
                "tokens": tokens,
                "flops": float(plan.flops_per_token) * tokens,
                "path": str(point.run_dir),
                **{s: weights.get(s, 0.0) for s in sources},
                **{k: v for k, v in metrics.items() if isinstance(v, (int, float))},
            }
        )
    return rows


def collect(mixture: Mixture, out_dir: Path | None = None):
    """Collect the swarm into ``out_dir`` (default: the sweep dir); returns the tidy table."""
    import pandas as pd

    sources = mixture.names
    rows = finished_rows(mixture.points, sources)
    if not rows:
        raise UserError(
            f"mixture {mixture.config.name} has no finished run under {mixture.sweep_dir}; train "
            f"the swarm first: python -m olmotrain.mixture run {mixture.config.name}"
        )
    frame = pd.DataFrame(rows)
    fixed = ["run", "size", "seed", "num_params", "step", "tokens", "flops", "path", *sources]
    metrics = sorted(c for c in frame.columns if c not in fixed)
    frame = frame[fixed + metrics]
    out = out_dir or mixture.sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    frame[["run", *sources]].to_csv(out / RATIOS_CSV, index=False)
    frame[["run", *metrics]].to_csv(out / METRICS_CSV, index=False)
    frame.to_csv(out / COLLECTED_CSV, index=False)
    return frame


def read_collected(mixture: Mixture):
    """The collected table (``collect`` runs first when it is missing or older than a run)."""
    import pandas as pd

    path = mixture.sweep_dir / COLLECTED_CSV
    finals = [p.run_dir / "checkpoints" for p in mixture.points if p.run_dir.exists()]
    newest = max((f.stat().st_mtime for f in finals if f.exists()), default=0.0)
    if not path.exists() or path.stat().st_mtime < newest:
        return collect(mixture)
    return pd.read_csv(path)
