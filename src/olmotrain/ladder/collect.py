"""``collect``: one tidy table over every point and evaluated step of a ladder.

One row per permanent checkpoint that has its ``metrics_step{N}.json`` (``kind`` ``permanent``)
and per other evaluated step in the run's ``metrics.jsonl`` (``kind`` ``interval``: the
``eval.interval`` and ``eval.final_evals`` evaluations, the checkpoint-to-checkpoint noise
``decide`` and ``snr`` measure): ``size, mix, seed, num_params`` (N, as the Chinchilla math
counts it), ``num_params_total``, ``step``, ``tokens``, ``flops`` (training FLOPs up to that
step: olmo-core's FLOPs per token x tokens), ``checkpoint`` (the plan's name for it: ``period 1
0.5xC pre-decay``, ...; empty for an interval row), ``kind``, ``path``, then one column per
metric as olmo-core names it (``train/CE loss``, ``eval/lm/<source>/CE loss``,
``eval/lm/<source>/BPB``, ``eval/downstream/<task> (<metric>)``, ...).

A checkpoint whose eval metrics repeat the run's next checkpoint's exactly is the same model (a
run so short that its decay is one step at LR 0): its row is dropped, the kept (later) row names
its step in ``same_as_step``, and :func:`repeated_note` says so in one line.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from olmotrain.errors import UserError
from olmotrain.ladder.ladder import Ladder
from olmotrain.metrics import (
    EVAL_PREFIX,
    METRICS_LOG,
    TOTAL_TOKENS,
    read_metrics_log,
    read_step_metrics,
)

SAME_AS = "same_as_step"
"""The earlier checkpoint (its step) whose eval metrics this one repeats; that row was dropped."""
KIND, PERMANENT, INTERVAL = "kind", "permanent", "interval"
"""The ``kind`` column: a permanent checkpoint's row, or an evaluation between checkpoints."""
FIXED_COLUMNS = [
    "size", "mix", "seed", "num_params", "num_params_total", "step", "tokens", "flops",
    "checkpoint", KIND, "path", SAME_AS,
]  # fmt: skip


def collect(ladder: Ladder):
    """The ladder's table (a pandas DataFrame, ``FIXED_COLUMNS`` first)."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    for point in ladder.points:
        if not (point.run_dir / "config.yaml").exists():
            continue
        plan = None
        permanent: set[int] = set()
        for ck in ladder.get_checkpoints(point.size, point.mix, point.seed):
            if ck.metrics_path is None or not ck.exists:
                continue
            plan = plan or ladder.plan(point)
            permanent.add(ck.step)
            metrics = read_step_metrics(ck.metrics_path)
            tokens = int(metrics.get(TOTAL_TOKENS, ck.tokens))
            rows.append(
                {
                    **_point_columns(point, plan),
                    "step": ck.step,
                    "tokens": tokens,
                    "flops": float(plan.flops_per_token) * tokens,
                    "checkpoint": ck.name,
                    KIND: PERMANENT,
                    "path": str(ck.path),
                    **{k: v for k, v in metrics.items() if isinstance(v, (int, float))},
                }
            )
        if plan is not None:
            rows += _interval_rows(point, plan, permanent)
    if not rows:
        raise UserError(
            f"ladder {ladder.config.name} has no finished checkpoint with metrics under "
            f"{ladder.sweep_dir}; train it first: python -m olmotrain.ladder run {ladder.config.name}"
        )
    frame = pd.DataFrame(rows)
    metric_columns = sorted(c for c in frame.columns if c not in FIXED_COLUMNS)
    frame = drop_repeated_checkpoints(frame)
    return frame[FIXED_COLUMNS + metric_columns].sort_values(
        ["size", "mix", "seed", "step"], key=_order(ladder)
    )


def _point_columns(point, plan) -> dict[str, Any]:
    return {
        "size": point.size,
        "mix": point.mix,
        "seed": point.seed,
        "num_params": plan.num_non_embedding_params,
        "num_params_total": plan.num_params,
    }


def _interval_rows(point, plan, permanent: set[int]) -> list[dict[str, Any]]:
    """The run's evaluations at steps that are not permanent checkpoints, from its
    ``metrics.jsonl`` (an evaluation logged in several records is merged into one row)."""
    by_step: dict[int, dict[str, Any]] = {}
    for record in read_metrics_log(point.run_dir / METRICS_LOG):
        if record["step"] not in permanent:
            by_step.setdefault(int(record["step"]), {}).update(record)
    rows = []
    for step, record in sorted(by_step.items()):
        if not any(k.startswith(EVAL_PREFIX) for k in record):
            continue  # a training step, not an evaluation
        tokens = int(record.get("tokens", step * plan.batch_size_tokens))
        values = {k: v for k, v in record.items() if k not in ("step", "tokens")}
        rows.append(
            {
                **_point_columns(point, plan),
                "step": step,
                "tokens": tokens,
                "flops": float(plan.flops_per_token) * tokens,
                "checkpoint": "",
                KIND: INTERVAL,
                "path": "",
                **{k: v for k, v in values.items() if isinstance(v, (int, float))},
            }
        )
    return rows


def drop_repeated_checkpoints(frame):
    """``frame`` without the checkpoints whose eval metrics (every ``eval/`` column, at least one
    of them measured) equal the same run's next checkpoint's: the same weights, one point
    counted twice. The kept, later row gets the first such step in ``same_as_step``."""
    import pandas as pd

    frame = frame.sort_values(["size", "mix", "seed", "step"]).copy()
    frame[SAME_AS] = pd.array([pd.NA] * len(frame), dtype="Int64")
    evals = [c for c in frame.columns if c.startswith(EVAL_PREFIX)]
    if not evals:
        return frame  # nothing tells the models apart (train metrics differ batch to batch)
    drop = []
    permanent = frame[frame[KIND] == PERMANENT] if KIND in frame else frame
    for _, run in permanent.groupby(["size", "mix", "seed"], sort=False):
        rows = list(run.index)
        for before, after in itertools.pairwise(rows):
            a, b = frame.loc[before, evals], frame.loc[after, evals]
            if a.notna().any() and a.equals(b):
                drop.append(before)
                earlier = frame.loc[before, SAME_AS]
                frame.loc[after, SAME_AS] = (
                    frame.loc[before, "step"] if pd.isna(earlier) else earlier
                )
    return frame.drop(index=drop)


def repeated_note(frame) -> str | None:
    """One line on the rows :func:`drop_repeated_checkpoints` dropped; ``None`` when none was."""
    if SAME_AS not in frame:
        return None
    kept = frame[frame[SAME_AS].notna()]
    if kept.empty:
        return None
    examples = [
        f"{r.size} x {r.mix} (seed {r.seed}): step {int(getattr(r, SAME_AS))} = step {r.step}"
        for r in kept.head(2).itertuples()
    ]
    more = f", +{len(kept) - 2} more" if len(kept) > 2 else ""
    return (
        f"{len(kept)} run(s) have a checkpoint whose eval metrics repeat the next one's exactly "
        f"({'; '.join(examples)}{more}): the same model (a decay at LR 0 in a run this short), "
        f"kept once, the later row marked in {SAME_AS}; train longer runs for distinct points"
    )


def _order(ladder: Ladder):
    """Sort sizes and mixes in the ladder's own order (smallest first), not alphabetically."""
    rank = {n: i for i, n in enumerate([*ladder.config.sizes, *ladder.config.mixes])}

    def key(column):
        return column.map(rank) if column.name in ("size", "mix") else column

    return key


def read_points(path: Path):
    """A collected table from its CSV (``--points FILE.csv``), checked for the fixed columns."""
    import pandas as pd

    if not path.is_file():
        raise UserError(f"--points {path}: no such file")
    try:
        frame = pd.read_csv(path)
    except (ValueError, OSError) as exc:
        raise UserError(f"--points {path} is not a readable CSV ({exc})") from None
    missing = [
        c
        for c in ("size", "mix", "seed", "num_params", "step", "tokens", "flops")
        if c not in frame
    ]
    if missing:
        raise UserError(
            f"--points {path} lacks the column(s) {', '.join(missing)}; write it in the format of "
            "`python -m olmotrain.ladder collect`"
        )
    if KIND not in frame:
        frame[KIND] = PERMANENT  # a table of checkpoints only (an older collect, another tool)
    return frame
