"""Sweeps without a cluster: points named by their overrides, a sweep dir per sweep, refusals
(dry runs of train.py in this process)."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import assert_one_line_error, train_main

from olmotrain.config.naming import sweep_name
from olmotrain.launch.sweep import point_names


def test_sweep_name_is_the_training_overrides_sorted():
    assert sweep_name(None, ["seed=1,2", "model=olmo2_1m", "cluster=slurm", "dry_run=true"]) == (
        "model=olmo2_1m+seed=1,2"
    )
    assert sweep_name("lr-ablation", ["seed=1,2"]) == "lr-ablation"
    assert sweep_name(None, []) == "default"
    long = sweep_name(None, [f"train.lr_multiplier={x / 10}," * 20 for x in range(3)])
    assert len(long) <= 120 and long != sweep_name(None, ["train.lr_multiplier=0.5," * 40])


def test_points_are_named_by_the_keys_that_vary():
    points = [
        ["model=olmo2_1m", "seed=1", "cluster=slurm"],
        ["model=olmo2_1m", "seed=2", "cluster=slurm"],
    ]
    assert point_names(points) == ["seed=1", "seed=2"]
    assert (
        point_names([["model=olmo2_1m"]]) is None
    )  # a single run keeps ${output_root}/${run_name}


def test_local_sweep_points_get_their_own_run_dirs(tmp_path):
    proc = train_main("-m", "seed=1,2", "model=olmo2_1m", "dry_run=json", f"output_root={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    dirs = [
        json.loads(line)["run_dir"] for line in proc.stdout.splitlines() if line.startswith("{")
    ]
    sweep = tmp_path / "sweeps" / "model=olmo2_1m+seed=1,2"
    assert dirs == [str(sweep / "seed=1"), str(sweep / "seed=2")]
    assert not (sweep / "sweep.yaml").exists()  # a dry run records nothing


@pytest.mark.parametrize(
    "args, message",
    [
        (["-m", "cluster.devices=1,2"], "train the same run"),
        (["-m", "seed=1,2", "sweep_name=a/b"], "must be a plain name"),
    ],
)
def test_bad_sweeps_are_one_line(tmp_path, args, message):
    line = assert_one_line_error(train_main(*args, "dry_run=true", f"output_root={tmp_path}"))
    assert message in line


def test_a_sweep_dir_holding_another_sweep_is_refused(tmp_path):
    sweep = tmp_path / "sweeps" / "mine"
    sweep.mkdir(parents=True)
    # What a finished `-m seed=1,2 sweep_name=mine` leaves (see test_slurm for a real one).
    (sweep / "sweep.yaml").write_text(
        yaml.safe_dump({"overrides": ["seed=1,2"], "points": [["seed=1"], ["seed=2"]]})
    )
    line = assert_one_line_error(
        train_main("-m", "seed=1,3", "sweep_name=mine", "dry_run=true", f"output_root={tmp_path}")
    )
    assert f"{sweep} holds a different sweep" in line and "sweep_name=" in line
    ok = train_main("-m", "seed=2,1", "sweep_name=mine", "dry_run=json", f"output_root={tmp_path}")
    assert ok.returncode == 0, ok.stderr[-2000:]  # the same points, in any order
