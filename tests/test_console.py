"""How olmotrain talks to a person: the CPU thread count in force, one log format."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO

THREADS = """
import os, sys, types
os.sched_setaffinity(0, {0})            # as taskset or SLURM's CPU binding leaves a process
os.environ.pop("OMP_NUM_THREADS", None)
import torch
torch.set_num_threads(2)                 # what torch picked at import on a bigger machine
from olmotrain.console import setup_logging
from olmotrain.train.trainer import environment
setup_logging()
c = types.SimpleNamespace(cluster=types.SimpleNamespace(device="cpu"), seed=0)
with environment(c):
    print(torch.get_num_threads(), os.environ["OMP_NUM_THREADS"])
"""


def test_the_thread_count_set_is_the_one_in_force():
    # Setting OMP_NUM_THREADS after torch's import changes nothing; the usable CPUs (affinity),
    # not the machine's core count, size the pool.
    proc = subprocess.run(
        [sys.executable, "-c", THREADS], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["1", "1"]
    assert "Will skip setting env var 'OMP_NUM_THREADS'" not in proc.stderr
    assert "1 CPU thread(s) per rank" in proc.stderr
