"""Watching a run: the live display (a real pseudo-terminal), plain lines elsewhere, the LR
schedule's picture, W&B offline without a key, and the memory estimate against a measured peak."""

from __future__ import annotations

import csv
import json
import os
import pty
import subprocess
import sys

import pytest
from conftest import DATA_ROOT, REPO, assert_one_line_error, dry_run_json, kill_at_step, run_cli

pytestmark = pytest.mark.slow


def test_lr_plot_samples_are_olmo_cores_scheduler(tmp_path):
    from olmo_core.optim import WSDS, SchedulerUnits

    args = ["model=olmo2_30m", "chinchilla_multiple=4", f"output_root={tmp_path}"]
    plan = dry_run_json(*args)
    png = tmp_path / "plans" / plan["run_name"] / "lr_schedule.png"
    assert plan["lr_schedule_plot"] == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    scheduler = WSDS(
        units=SchedulerUnits.tokens,
        warmup=plan["warmup_tokens"],
        period_lengths=plan["period_lengths"],
        decay_fraction=plan["decay_fraction"],
    )
    with open(png.with_suffix(".csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) > 1000 and int(rows[-1]["step"]) == plan["max_steps"]
    for row in rows:
        expected = scheduler.get_lr(plan["lr"], int(row["tokens"]), plan["duration_tokens"])
        assert float(row["lr"]) == pytest.approx(float(expected), rel=1e-12, abs=1e-15)
    # Every permanent checkpoint is sampled (and drawn); nothing went into a run dir.
    steps = {int(r["step"]) for r in rows}
    assert {c["step"] for c in plan["checkpoints"]} <= steps
    assert not (tmp_path / plan["run_name"]).exists()


def test_the_table_names_the_plot_and_the_estimates(tmp_path):
    proc = run_cli(
        "model=olmo2_190m", "cluster.device_type=h100", f"output_root={tmp_path}", "dry_run=true"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert any(line.startswith("lr schedule plot  ") for line in lines)
    assert (
        "memory/device" in proc.stdout and "h100" in proc.stdout and "device-hours" in proc.stdout
    )


def test_estimate_keys_and_a_run_that_does_not_fit(tmp_path):
    plan = dry_run_json("model=olmo2_7b", "cluster.device_type=a100", "train.micro_batch_size=8")
    e = plan["estimate"]
    assert {"device_type", "peak_flops", "mfu", "seconds", "gpu_hours"} <= e.keys()
    assert e["device_type"] == "a100" and e["peak_flops"] == 312e12 and e["mfu"] == 0.4
    assert e["train_s"] == pytest.approx(plan["total_flops"] / (312e12 * 0.4))
    assert e["seconds"] > e["train_s"] and e["throughput_source"] == "FLOP model"
    assert e["disk_bytes"] == e["checkpoint_bytes"] * e["checkpoints_kept"]
    m = plan["memory"]
    assert {"params", "grads", "optimizer", "activations", "total"} <= m.keys()
    assert m["total"] == sum(
        m[k] for k in ("params", "grads", "optimizer", "activations", "buffers", "runtime")
    )
    fit = plan["memory_fit"]
    assert fit["fits"] is False and fit["would_fit_with"]
    assert any("does not fit" in w for w in plan["warnings"])


def test_plain_lines_off_a_terminal_and_one_live_display_on_one(embedded_data, tmp_path):
    args = ["experiment=smoke", "train.log_interval=2", "data.eval=null"]
    plain = run_cli(*args, f"output_root={tmp_path / 'plain'}")
    assert plain.returncode == 0, plain.stderr[-2000:]
    marks = [line for line in plain.stderr.splitlines() if line.startswith("[step=")]
    assert [m.split("]")[0] for m in marks] == ["[step=2/8", "[step=4/8", "[step=6/8", "[step=8/8"]
    assert all("loss=" in m and "lr=" in m and "tokens=" in m and "eta=" in m for m in marks)
    assert "console_logger:" not in plain.stderr  # olmo-core's own per-step log is replaced

    # On a terminal: rich's bar, no plain step lines.
    main, worker = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "train.py", *args, f"output_root={tmp_path / 'tty'}"],
        cwd=REPO,
        env={**os.environ, "OLMOTRAIN_DATA_ROOT": str(DATA_ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=worker,
    )
    os.close(worker)
    out = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    assert proc.wait(timeout=600) == 0
    text = out.decode(errors="replace")
    assert "━" in text and "8/8" in text  # the bar, at its end
    assert "[step=" not in text


def wandb_dirs(run_dir):
    return sorted((run_dir / "work" / "wandb" / "wandb").glob("offline-run-*"))


@pytest.fixture
def no_wandb_key(monkeypatch):
    for key in [k for k in os.environ if k.startswith("WANDB_")]:
        monkeypatch.delenv(key)


def test_each_point_of_a_sweep_logs_to_its_own_wandb_run_and_resumes_into_it(
    embedded_data, tmp_path, no_wandb_key
):
    """Without a key W&B runs offline. A local ``-m`` sweep trains its points one after another in
    one process: each run dir gets its own W&B run, and a point killed and resumed by re-running
    the sweep continues its own run (W&B is the subject: no held-out evaluation)."""
    args = ["-m", "seed=1,2", "experiment=smoke", "data.eval=null", "wandb.enabled=true",
            "wandb.tags=[ablation,cpu]", "sweep_name=pair", f"output_root={tmp_path}"]  # fmt: skip
    first, second = tmp_path / "sweeps" / "pair" / "seed=1", tmp_path / "sweeps" / "pair" / "seed=2"
    kill_at_step(*args, run_dir=second, step=5)  # the first point finished, the second half-way
    again = run_cli(*args)  # the first is reported finished, the second resumes
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed from step" in again.stderr
    ids = [(run / "wandb_id").read_text().strip() for run in (first, second)]
    assert ids[0] != ids[1]
    assert [len(wandb_dirs(first)), len(wandb_dirs(second))] == [1, 2]
    for run, wandb_id in zip((first, second), ids, strict=True):
        assert all(p.name.endswith(f"-{wandb_id}") for p in wandb_dirs(run))


def test_the_wandb_key_is_never_written(embedded_data, tmp_path):
    secret = "sk-olmotrain-test-0123456789abcdef0123456789abcdef"
    proc = run_cli(
        "experiment=smoke",
        "data.eval=null",
        "wandb.enabled=true",
        f"output_root={tmp_path}",
        env={"WANDB_API_KEY": secret, "WANDB_MODE": "offline"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert wandb_dirs(tmp_path / "smoke")
    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaked == []


def test_wandb_online_without_a_key_is_refused_before_any_work(tmp_path, no_wandb_key):
    proc = run_cli(
        "experiment=smoke",
        "wandb.enabled=true",
        f"output_root={tmp_path}",
        env={"WANDB_MODE": "online"},
    )
    assert "WANDB_MODE=online needs WANDB_API_KEY" in assert_one_line_error(proc)
    assert not (tmp_path / "smoke").exists()


def test_memory_estimate_is_within_25_percent_of_the_measured_peak(embedded_data, tmp_path):
    """olmo2_190m with the 8k vocabulary: 125.9M parameters, 2.0 GB of fp32 model state."""
    args = [
        "model=olmo2_190m",
        "train.global_batch_size=1024",
        "train.micro_batch_size=2",
        "train.max_steps=2",
        "data.eval=null",
        f"output_root={tmp_path}",
    ]
    plan = dry_run_json(*args)
    state = sum(plan["memory"][k] for k in ("params", "grads", "optimizer"))
    assert state >= 2e9
    # Peak resident memory of the training process, measured by a parent that runs only it.
    measure = (
        "import resource, subprocess, sys; "
        "rc = subprocess.run(sys.argv[1:]).returncode; "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024); sys.exit(rc)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", measure, sys.executable, "train.py", *args],
        cwd=REPO,
        env={**os.environ, "OLMOTRAIN_DATA_ROOT": str(DATA_ROOT)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    peak = int(proc.stdout.strip().splitlines()[-1])
    estimate = plan["memory"]["total"]
    print(json.dumps({"estimate": estimate, "measured_peak_rss": peak, "ratio": estimate / peak}))
    assert abs(estimate - peak) / peak <= 0.25, (estimate, peak)
