"""Training throughput for the plan's time estimate: measured where olmotrain can, else modelled.

In order: the tokens/s an earlier run of the same model on the same kind of device recorded in
its ``metrics.jsonl`` (olmo-core's speed monitor, ``throughput/device/TPS``), found under the
runs root; else a short timed calibration of forward + backward + optimizer step at the run's
micro-batch on this machine (a few seconds; only with ``OLMOTRAIN_CALIBRATE=1``, as it proved
unreliable on a shared machine); else the FLOP model of :mod:`olmotrain.plan.cost`. Small models on CPU run far
below their FLOP-model rate (per-step overheads, the vocabulary's logits), so a measurement is
worth much more than a better constant.
"""

from __future__ import annotations

import json
import os
import pickle
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from olmotrain.metrics import METRICS_LOG, TPS, read_metrics_log

CALIBRATE_ENV = "OLMOTRAIN_CALIBRATE"
"""``1``: calibrate when no earlier run was measured (off by default, see
:func:`calibration_enabled`)."""
CALIBRATION_BUDGET_S = 1.0
"""Timed seconds of the calibration (after one warm-up step; at least two steps)."""
MAX_CALIBRATION_STEP_S = 2.0
"""A micro-step the FLOP model puts above this is not calibrated (too slow for a dry run)."""
MIN_RECORDS = 3
"""Logged steps (after the first, which pays for warm-up) a run needs to count as measured."""


@dataclass(frozen=True)
class RunKey:
    """What must match for an earlier run's throughput to apply to this one."""

    model: str
    num_params: int
    sequence_length: int
    micro_batch_instances: int
    devices: int
    device_type: str


@dataclass(frozen=True)
class Throughput:
    """Training tokens/s of the whole run (all devices) and where the figure came from."""

    tokens_per_s: float
    source: str


def measured(runs_root: Path, key: RunKey) -> Throughput | None:
    """The median tokens/s of the newest earlier run under ``runs_root`` (``RUN/plan.json``,
    also one level down, e.g. sweeps) that matches ``key``; ``None`` when none does."""
    root = Path(runs_root)
    if not root.is_dir():
        return None
    found = []
    for plan_path in (*root.glob("*/plan.json"), *root.glob("*/*/plan.json")):
        metrics = plan_path.parent / METRICS_LOG
        if metrics.is_file() and _matches(plan_path, key):
            found.append((metrics.stat().st_mtime, plan_path.parent))
    for _, run_dir in sorted(found, reverse=True):
        rate = run_tokens_per_s(run_dir / METRICS_LOG)
        if rate is not None:
            total = rate * key.devices  # TPS is per device
            return Throughput(total, f"run {_shown(run_dir)} (measured {total:,.0f} tokens/s)")
    return None


def run_tokens_per_s(metrics_path: Path) -> float | None:
    """Median per-device tokens/s a run logged, its first logged step (warm-up) left out."""
    try:
        records = read_metrics_log(metrics_path)
    except (OSError, ValueError):
        return None
    first = min((r.get("step", 0) for r in records if TPS in r), default=0)
    values = [float(r[TPS]) for r in records if TPS in r and r.get("step", 0) > first]
    values = [v for v in values if v > 0]
    return statistics.median(values) if len(values) >= MIN_RECORDS else None


def calibrated(
    model_cfg: Any, micro_batch_instances: int, sequence_length: int, vocab_size: int
) -> Throughput | None:
    """Time forward + backward + AdamW on ``micro_batch_instances`` random sequences on this
    machine's CPU (or GPU): a warm-up step on one sequence, then at least two steps and about
    :data:`CALIBRATION_BUDGET_S` seconds; the fastest step's rate (``None`` if it failed)."""
    key = (repr(model_cfg), micro_batch_instances, sequence_length, vocab_size)
    if key not in _CALIBRATIONS:
        _CALIBRATIONS[key] = _calibrate(
            model_cfg, micro_batch_instances, sequence_length, vocab_size
        )
    rate = _CALIBRATIONS[key]
    if rate is None:
        return None
    return Throughput(rate, f"calibration ({rate:,.0f} tokens/s, timed here)")


_CALIBRATIONS: dict[tuple, float | None] = {}  # one calibration per model and shape per process


def calibration_enabled(asked: bool | None) -> bool:
    """Whether to calibrate: ``asked`` when given, else ``OLMOTRAIN_CALIBRATE=1``. Off by
    default: on the shared 2-core machine the same calibration measured from 416 to 8,816
    tokens/s from one process to the next (2026-12-05), worse than the FLOP model."""
    return asked if asked is not None else os.environ.get(CALIBRATE_ENV) == "1"


def _calibrate(model_cfg: Any, micro: int, seq: int, vocab: int) -> float | None:
    """The calibration in a fresh Python process: there denormal numbers can be flushed to zero
    before torch starts its thread pool (flushing is per thread). Random tokens through a fresh
    model fill the arithmetic with denormals, which made dd_8m's steps 8x slower than in
    training (measured: 9 s against 1.1 s); training does not run into them."""
    job = pickle.dumps((model_cfg, micro, seq, vocab, CALIBRATION_BUDGET_S))
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CALIBRATION_SCRIPT],
            input=job,
            capture_output=True,
            timeout=120,
        )
        return float(proc.stdout.decode().strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None  # no figure: the estimate falls back to the FLOP model


_CALIBRATION_SCRIPT = """
import logging, pickle, sys, time
import torch
torch.set_flush_denormal(True)  # before any parallel op: every pool thread inherits it
cfg, micro, seq, vocab, budget = pickle.loads(sys.stdin.buffer.read())
logging.getLogger("olmo_core").setLevel(logging.WARNING)
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
model = cfg.build(init_device=device.type)
model.init_weights(max_seq_len=seq, device=device)
optim = torch.optim.AdamW(model.parameters(), lr=1e-4)
ids = torch.randint(0, vocab, (micro, seq), device=device)
def step(batch):
    model(batch, labels=batch).loss.backward()
    optim.step()
    optim.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
step(ids[:1])  # warm-up on one sequence: the optimizer's state, kernels chosen
times = []
while len(times) < 2 or (sum(times) < budget and len(times) < 10):
    start = time.perf_counter()
    step(ids)
    times.append(time.perf_counter() - start)
print(micro * seq / min(times))  # the fastest step: a shared machine's stalls left out
"""


def _matches(plan_path: Path, key: RunKey) -> bool:
    try:
        p = json.loads(plan_path.read_text())
        return (
            p["model"] == key.model
            and p["num_params"] == key.num_params
            and p["sequence_length"] == key.sequence_length
            and p["micro_batch_instances"] == key.micro_batch_instances
            and p["dp_size"] == key.devices
            and p["estimate"]["device_type"] == key.device_type
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _shown(run_dir: Path) -> str:
    """``run_dir`` relative to the working directory when it is below it."""
    try:
        return str(run_dir.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(run_dir)
