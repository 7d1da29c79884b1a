"""``verify``: train the proposal, the natural mix and the best swarm mix at two sizes; decide.

The three mixes train as the ``-m`` sweep ``mixture-<name>[-<tag>]-verify`` (sizes x mixes x
seeds, repetition-matched to the target like the swarm), and the winner at every size is
decided by :func:`olmotrain.ladder.decide.decide`, the code ``ladder decide`` runs: the
proposal wins at a size when it ranks first there.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from olmotrain.errors import UserError
from olmotrain.ladder.decide import decide
from olmotrain.mixture.collect import finished_rows
from olmotrain.mixture.experiment import REPO, Mixture, Point, ratios_value
from olmotrain.paths import write_atomically

PROPOSAL_JSON = "proposal.json"
VERIFY_JSON = "verify.json"
OBJECTIVE = "objective"
"""The metric (weighted average of its columns) as a column of the verification's table."""


def read_proposal(mixture: Mixture) -> dict[str, Any]:
    """The proposal ``propose`` wrote; one line when there is none yet."""
    path = mixture.sweep_dir / PROPOSAL_JSON
    if not path.exists():
        raise UserError(
            f"mixture {mixture.config.name} has no proposal yet ({path}); run: "
            f"python -m olmotrain.mixture propose {mixture.config.name}"
        )
    return json.loads(path.read_text())


def verify_mixes(mixture: Mixture, proposal: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``proposed``, ``natural`` (the data as it is: each source in proportion to its tokens,
    what one trains without a proposal) and ``best_swarm`` (the swarm run that measured best);
    a mix listed once, under its first label."""
    cons = mixture.constraints(mixture.target_tokens, "the target")
    names = mixture.names
    best_run = proposal["best_run"]["run"]
    best = next((p.weights for p in mixture.points if p.name == best_run), None)
    tokens = [float(s.tokens) for s in mixture.sources]
    candidates = {
        "proposed": proposal["proposal"],
        "natural": {n: t / sum(tokens) for n, t in zip(names, tokens, strict=True)},
        "best_swarm": best,
    }
    mixes: dict[str, dict[str, float]] = {}
    for label, weights in candidates.items():
        if weights is None:
            continue
        mix = mixture.feasible(np.array([weights[n] for n in names]), cons)
        if ratios_value(mix) not in {ratios_value(m) for m in mixes.values()}:
            mixes[label] = mix
    return mixes


def verify_points(mixture: Mixture, mixes: dict[str, dict[str, float]]) -> dict[str, list[Point]]:
    """The verification's runs, by label."""
    points = mixture.points_of(
        mixture.config.verify_sizes, list(mixes.values()), mixture.verify_sweep_dir
    )
    by_label: dict[str, list[Point]] = {label: [] for label in mixes}
    for point in points:
        for label, mix in mixes.items():
            if ratios_value(mix) == ratios_value(point.weights):
                by_label[label].append(point)
    return by_label


def run_verify(mixture: Mixture) -> int:
    """Train the verification (finished runs are skipped); exit code."""
    c = mixture.config
    mixes = verify_mixes(mixture, read_proposal(mixture))
    write_atomically(mixture.sweep_dir / VERIFY_JSON, json.dumps({"mixes": mixes}, indent=2))
    cmd = mixture.train_command(
        c.verify_sizes, list(mixes.values()), c.verify_multiple, c.verify_sweep_name
    )
    return subprocess.run(cmd, cwd=REPO).returncode


def verify_table(mixture: Mixture):
    """One row per finished verification run: ``mix`` (its label), size, seed, ..., objective."""
    import pandas as pd

    path = mixture.sweep_dir / VERIFY_JSON
    if not path.exists():
        raise UserError(
            f"mixture {mixture.config.name} has not been verified yet; run: "
            f"python -m olmotrain.mixture verify {mixture.config.name}"
        )
    mixes = json.loads(path.read_text())["mixes"]
    rows = []
    for label, points in verify_points(mixture, mixes).items():
        for row in finished_rows(points, mixture.names):
            rows.append({"mix": label, **row})
    if not rows:
        raise UserError(f"no verification run of mixture {mixture.config.name} has finished yet")
    frame = pd.DataFrame(rows)
    weights = mixture.config.metric_weights
    missing = [m for m in weights if m not in frame]
    if missing:
        raise UserError(f"the verification runs have no column {missing[0]!r}")
    frame[OBJECTIVE] = sum(frame[m] * w for m, w in weights.items())
    return frame


def verdict(mixture: Mixture, frame) -> dict[str, Any]:
    """Who wins at every verified size (``ladder decide``'s code) and whether it is the proposal."""
    c = mixture.config
    higher = c.higher_is_better
    if higher is None:
        from olmotrain.ladder.fit import higher_is_better

        higher = higher_is_better(next(iter(c.metric_weights)))
    # Only sizes where every mix and seed finished: a lone finished run would "win" there.
    runs = frame.groupby("size").size()
    complete = frame["mix"].nunique() * len(c.seeds)
    sizes = [s for s in c.verify_sizes if runs.get(s, 0) >= complete]
    if len(sizes) < 2 or frame["mix"].nunique() < 2:
        raise UserError(
            f"verification of mixture {c.name}: {len(sizes)} size(s) and "
            f"{frame['mix'].nunique()} mix(es) finished everywhere; it needs 2 sizes with every "
            "mix finished"
        )
    decision = decide(frame, OBJECTIVE, higher, sizes)
    values = frame.groupby(["size", "mix"])[OBJECTIVE].mean()
    return {
        "metric": c.metric_weights,
        "higher_is_better": higher,
        "sizes": sizes,
        "values": {s: {m: float(v) for m, v in values[s].items()} for s in sizes},
        "rankings": decision["rankings"],
        "proposal_wins": {s: decision["rankings"][s][0] == "proposed" for s in sizes},
        "decision_accuracy": decision["decision_accuracy"],
        "decision_accuracy_interval": decision["decision_accuracy_interval"],
        # how sure each ordering at the largest size is: ladder decide's pairs, one machinery
        "pairs": decision["pairs"],
        "confidence": decision["confidence"],
        "mixes": json.loads((mixture.sweep_dir / VERIFY_JSON).read_text())["mixes"],
    }


def verdict_lines(result: dict[str, Any]) -> list[str]:
    """The verdict as lines of text."""
    better = "higher" if result["higher_is_better"] else "lower"
    lines = [f"objective ({better} is better) at each verified size:"]
    if any(p["p_a_better"] is None for p in result.get("pairs", [])):
        lines.append(
            "  (one seed per mix: no noise measured, so no ordering is sure; add seeds to the "
            "mixture's seeds for a verdict with its confidence)"
        )
    for size in result["sizes"]:
        ranked = result["rankings"][size]
        shown = "  ".join(f"{m} {result['values'][size][m]:.4f}" for m in ranked)
        wins = "proposal wins" if result["proposal_wins"][size] else f"{ranked[0]} wins"
        lines.append(f"  {size:<10} {shown}   -> {wins}")
    for p in result.get("pairs", []):
        sure = "-" if p["p_a_better"] is None else f"{p['p_a_better']:.3f}"
        settles = f", ~{p['seeds_needed']} seeds per mix would settle it" if p.get(
            "seeds_needed") else ""  # fmt: skip
        shown = (
            f"inconclusive{settles}"
            if p["verdict"] == "inconclusive"
            else f"{p[p['verdict']]} is better"
        )
        lines.append(
            f"  at {result['sizes'][-1]}: {p['a']} vs {p['b']}: p(a better) {sure} -> {shown}"
        )
    for size, acc in result["decision_accuracy"].items():
        if acc is not None:
            lines.append(
                f"  decision accuracy of {size} for {result['sizes'][-1]}: {acc:.3f} "
                "(share of mix pairs it orders as the larger size does)"
            )
    return lines


def write_verdict(mixture: Mixture, result: dict[str, Any], out: Path | None = None) -> Path:
    path = out or mixture.sweep_dir / "verdict.json"
    write_atomically(path, json.dumps(result, indent=2))
    return path
