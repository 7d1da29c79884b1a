"""Launching: one process per local device, no torchrun for the user.

``python train.py cluster.devices=N`` plans, checks and claims the run dir once, in the launching
process, then starts N ranks with ``python -m olmotrain.launch.local RUN_DIR``. Every rank reads the
same frozen ``RUN_DIR/config.yaml`` (so all ranks train one config and write one run dir) and gets
the torch.distributed environment olmo-core expects (RANK, LOCAL_RANK, WORLD_SIZE, ... and
``OLMO_SHARED_FS``). If a rank fails the others are stopped; Ctrl-C and SIGTERM are passed on, so
olmo-core saves a checkpoint on every rank before exiting.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from olmotrain.config.compose import load_run_config
from olmotrain.errors import UserError
from olmotrain.machine import usable_cpus


def free_port() -> int:
    """A free TCP port on this machine for the rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env(rank: int, world_size: int, port: int, threads: int) -> dict[str, str]:
    """The torchrun-style environment of one local rank."""
    return {
        **os.environ,
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(world_size),
        "LOCAL_WORLD_SIZE": str(world_size),
        "NUM_NODES": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "OLMO_SHARED_FS": "1",  # all ranks see the one run dir
        "OMP_NUM_THREADS": str(threads),
    }


def _die_with_parent() -> None:
    """In a rank, before exec: SIGKILL when the launcher dies, so that a killed launcher (a
    timeout, ``kill -9``) leaves no rank behind holding the run dir or waiting on its peers."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: ranks outlive a killed launcher there
        pass


def run_local_ranks(run_dir: Path, world_size: int, device: str) -> None:
    """Start ``world_size`` ranks on this machine training ``run_dir``'s config; wait for them."""
    port = free_port()
    # CPU ranks share the cores; GPU ranks each drive their own device.
    threads = (
        max(1, usable_cpus() // world_size)
        if device == "cpu"
        else int(os.environ.get("OMP_NUM_THREADS", "8"))
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "olmotrain.launch.local", str(run_dir)],
            env=rank_env(r, world_size, port, threads),
            preexec_fn=_die_with_parent,
        )
        for r in range(world_size)
    ]

    def forward(signum, _frame):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        failed = None
        while any(p.poll() is None for p in procs):
            failed = next((p for p in procs if p.returncode not in (None, 0)), None)
            if failed is not None:
                break
            time.sleep(0.5)
        failed = failed or next((p for p in procs if p.returncode != 0), None)
        if failed is not None:
            # A rank killed by a signal is the cause; its peers fail right after, on the lost link.
            failed = next((p for p in procs if (p.returncode or 0) < 0), failed)
            stop_ranks(procs)
            rank, code = procs.index(failed), failed.returncode
            how = (
                f"was killed by {signal.Signals(-code).name}"
                if code < 0 and -code in signal.valid_signals()
                else f"exited with code {code}"
            )
            raise UserError(
                f"rank {rank} of {world_size} {how}; the other ranks were stopped; re-run the same "
                "command to resume from the latest checkpoint (the rank's log is above)"
            )
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def stop_ranks(procs: list[subprocess.Popen], grace_s: float = 10.0) -> None:
    """Stop the ranks still running: SIGTERM, then SIGKILL after ``grace_s``. A rank whose peer
    died can block in a collective that never completes, so waiting for it alone could hang."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.time() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def rank_main(run_dir: Path) -> None:
    """One rank: train the frozen config of ``run_dir``."""
    from olmotrain.console import setup_logging
    from olmotrain.train.rundir import RunDir
    from olmotrain.train.trainer import train

    setup_logging()
    run = RunDir(run_dir)
    train(load_run_config(run.config_path), run.plan(), run)


if __name__ == "__main__":
    rank_main(Path(sys.argv[1]))
