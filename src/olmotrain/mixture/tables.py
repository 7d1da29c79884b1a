"""A swarm's results as two CSV files, olmix's layout: ``ratios.csv`` (the mix of each run) and
``metrics.csv`` (what each run scored), joined on the run.

- ``ratios.csv``: a ``run`` column (olmix's ``run_id`` is read as ``run``), then one column per
  source holding its weight in that run (>= 0, adding up to 1 within 1e-3). olmix's own id
  columns ``name`` and ``index`` are ignored; every other column is a source and must be numeric.
- ``metrics.csv``: a ``run`` column (or ``run_id``), ``name``/``index`` ignored, every other
  column a metric, numeric; an empty cell is a metric the run lacks, an error only when that
  metric is the one optimised (:func:`metric_matrix`).

Every problem is one :class:`UserError` line naming the file and the run.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from olmotrain.errors import UserError

RUN = "run"
RUN_ALIASES = ("run", "run_id")
IGNORED = ("name", "index")
"""olmix's descriptive columns: the run's display name and its position in the swarm."""
SUM_TOLERANCE = 1e-3
SHOWN = 3
"""Runs named in an error about several runs (then the count of the rest)."""


@dataclass
class MixtureTable:
    """Runs (in ``ratios.csv``'s order), sources, their weights (runs x sources) and the metrics
    (indexed by run, rows in the same order)."""

    runs: list[str]
    sources: list[str]
    weights: np.ndarray
    metrics: pd.DataFrame


def read_tables(ratios: Path, metrics: Path) -> MixtureTable:
    """Read and check ``ratios.csv`` and ``metrics.csv`` (see the module docstring)."""
    return _build(_read(Path(ratios)), _read(Path(metrics)), str(ratios), str(metrics))


def from_frames(ratios_df: pd.DataFrame, metrics_df: pd.DataFrame, where: str) -> MixtureTable:
    """The same checks on frames already in memory; ``where`` says where they came from (a
    swarm's directory, say) in error messages."""
    return _build(ratios_df.copy(), metrics_df.copy(), f"{where} (ratios)", f"{where} (metrics)")


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise UserError(f"{path}: no such file; give the path of an existing CSV file")
    try:
        # Run names stay text: "007" and "7" are different runs.
        return pd.read_csv(path, dtype={a: str for a in RUN_ALIASES})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: not a readable CSV file ({detail})") from None


def _build(ratios: pd.DataFrame, metrics: pd.DataFrame, rname: str, mname: str) -> MixtureTable:
    ratios = _with_runs(ratios, rname)
    metrics = _with_runs(metrics, mname)
    sources = [c for c in ratios.columns if c not in IGNORED]
    if not sources:
        raise UserError(f"{rname}: no source columns; add one weight column per source")
    weights = _numeric(ratios[sources], rname).to_numpy(dtype=float)
    _check_weights(weights, list(ratios.index), sources, rname)
    columns = [c for c in metrics.columns if c not in IGNORED]
    if not columns:
        raise UserError(f"{mname}: no metric columns; add one column per metric")
    values = _numeric(metrics[columns], mname)
    only_r = [r for r in ratios.index if r not in values.index]
    only_m = [r for r in values.index if r not in ratios.index]
    for missing, have, lack in ((only_r, rname, mname), (only_m, mname, rname)):
        if missing:
            raise UserError(
                f"{len(missing)} run(s) in {have} are not in {lack}: {_few(missing)}; "
                "give both files the same runs"
            )
    return MixtureTable(
        runs=list(ratios.index),
        sources=[str(s) for s in sources],
        weights=weights,
        metrics=values.loc[ratios.index],
    )


def _with_runs(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """The frame indexed by its run column, checked for duplicates and empty names."""
    present = [a for a in RUN_ALIASES if a in frame.columns]
    if not present:
        raise UserError(
            f"{name}: no 'run' column (columns: {', '.join(map(str, frame.columns[:8]))}); "
            "name the column of run names 'run'"
        )
    frame = frame.drop(columns=present[1:])
    runs = frame[present[0]]
    if runs.isna().any():
        row = int(np.flatnonzero(runs.isna().to_numpy())[0]) + 2  # 1-based, after the header
        raise UserError(f"{name}: line {row} has no run name; give every row one")
    runs = runs.astype(str)
    dup = runs[runs.duplicated()].unique().tolist()
    if dup:
        raise UserError(f"{name}: run {dup[0]} appears more than once; keep one row per run")
    return frame.drop(columns=[present[0]]).set_axis(pd.Index(runs, name=RUN), axis=0)


def _numeric(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """The frame as floats; a cell that is not a number is an error naming it."""
    out = frame.apply(pd.to_numeric, errors="coerce")
    bad = out.isna() & frame.notna()
    if bad.to_numpy().any():
        col = bad.columns[bad.any(axis=0)][0]
        run = bad.index[bad[col]][0]
        raise UserError(
            f"{name}: run {run}: {col} is {frame.loc[run, col]!r}, not a number; "
            "every value must be numeric (leave a missing one empty)"
        )
    return out.astype(float)


def _check_weights(weights: np.ndarray, runs: list[str], sources: list[str], name: str) -> None:
    missing = np.isnan(weights)
    if missing.any():
        i, j = np.argwhere(missing)[0]
        raise UserError(f"{name}: run {runs[i]}: no weight for {sources[j]}; give 0 if unused")
    negative = weights < 0
    if negative.any():
        i, j = np.argwhere(negative)[0]
        raise UserError(
            f"{name}: run {runs[i]}: weight of {sources[j]} is {weights[i, j]:g}; "
            "weights must be >= 0"
        )
    sums = weights.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1) > SUM_TOLERANCE)
    if off.size:
        i = off[0]
        raise UserError(
            f"{name}: run {runs[i]}: weights add up to {sums[i]:.4g}, not 1"
            + (f" (and {off.size - 1} more run(s))" if off.size > 1 else "")
            + "; give each run's mix as fractions of 1"
        )


def _few(items: list[str]) -> str:
    shown = ", ".join(map(str, items[:SHOWN]))
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def parse_metric(spec: list[str]) -> dict[str, float]:
    """The objective from ``--metric`` values: ``["COL"]`` is that column; ``["a=0.5",
    "b=1.5"]`` (or several plain columns, weight 1 each) the weighted average, weights normalised
    to add up to 1. Column names may hold spaces and slashes but not ``=``."""
    if not spec:
        raise UserError("no metric given; name a metrics.csv column (or several, COL=WEIGHT)")
    out: dict[str, float] = {}
    for item in spec:
        column, sep, text = item.rpartition("=") if "=" in item else (item, "", "1")
        column = column.strip()
        try:
            weight = float(text)
        except ValueError:
            weight = float("nan")
        if not column or not weight >= 0 or not np.isfinite(weight):
            raise UserError(f"metric {item!r}: write COLUMN or COLUMN=WEIGHT with a weight >= 0")
        if column in out:
            raise UserError(f"metric {column!r} is given twice; give each column once")
        out[column] = weight
    total = sum(out.values())
    if total <= 0:
        raise UserError("the metric weights add up to 0; give at least one a positive weight")
    return {k: v / total for k, v in out.items()}


def check_metric(table: MixtureTable, metric: dict[str, float]) -> None:
    """One :class:`UserError` for a metric column the table lacks, with close matches."""
    columns = [str(c) for c in table.metrics.columns]
    for name in metric:
        if name in columns:
            continue
        close = difflib.get_close_matches(name, columns, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise UserError(
            f"no metric column {name!r}; {hint}the columns are {', '.join(columns[:12])}"
            + (f" and {len(columns) - 12} more" if len(columns) > 12 else "")
        )


def metric_matrix(table: MixtureTable, metric: dict[str, float]) -> np.ndarray:
    """The metric's columns as runs x columns, checked present in every run."""
    check_metric(table, metric)
    values = table.metrics[list(metric)]
    missing = values.isna()
    if missing.to_numpy().any():
        col = missing.columns[missing.any(axis=0)][0]
        runs = list(values.index[missing[col]])
        raise UserError(
            f"{len(runs)} run(s) have no {col}: {_few(runs)}; evaluate them or drop them from "
            "both files"
        )
    return values.to_numpy(dtype=float)


def objective(table: MixtureTable, metric: dict[str, float]) -> np.ndarray:
    """The objective of every run: the metric columns' weighted average."""
    return metric_matrix(table, metric) @ np.array(list(metric.values()))
