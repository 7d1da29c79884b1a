"""Faults that lose nothing, and one writer per run dir (real runs of train.py on the CPU).

Two runs of one run dir at once, a lock held on another host (a lock left by a killed run is
taken over: tests/test_train_e2e.py); a full
disk while a checkpoint is written (a tmpfs output_root, root only); a latest checkpoint cut
short; a token file changed after its check was cached; one of two local ranks killed with
SIGKILL; a NaN loss. Each ends in one line and a run that a plain re-run resumes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    DATA_ROOT,
    assert_one_line_error,
    checkpoint_steps,
    kill_at_step,
    metrics,
    run_cli,
    start_train,
    train_main,
)

pytestmark = pytest.mark.slow
AS_ROOT = os.geteuid() == 0
TINY = ("model=olmo2_1m", "train.global_batch_size=4096", "train.log_interval=1", "data.eval=null")


def start(*args: str) -> subprocess.Popen:
    return start_train(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def logged_step(run: Path) -> int:
    path = run / "metrics.jsonl"
    lines = path.read_text().splitlines()[:-1] if path.exists() else []  # the last may be torn
    return max((json.loads(line)["step"] for line in lines), default=0)


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def last_error(stderr: str, tracebacks: bool = False) -> str:
    """A run that failed while training: its log, then exactly one ``error:`` line, and no
    traceback (``tracebacks``: a rank whose peer died may print its own above the line)."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert tracebacks or "Traceback" not in stderr, stderr[-3000:]
    assert lines[-1].startswith("error: ") and sum(ln.startswith("error: ") for ln in lines) == 1
    return lines[-1]


def test_two_runs_of_one_run_dir_started_together_one_trains_one_is_refused(
    embedded_data, tmp_path
):
    args = (*TINY, "train.max_steps=12", "run_name=x", f"output_root={tmp_path}")
    first, second = start(*args), start(*args)
    outs = [p.communicate(timeout=600) for p in (first, second)]
    codes = sorted((first.returncode, second.returncode))
    assert codes == [0, 2], [o[1][-2000:] for o in outs]
    refused = outs[[first.returncode, second.returncode].index(2)][1]
    line = assert_one_line_error(subprocess.CompletedProcess([], 2, "", refused))
    assert f"{tmp_path / 'x'} is in use by pid " in line and "run_name=x" in line, line
    run = tmp_path / "x"
    assert checkpoint_steps(run)[-1] == 12 and metrics(run)[-1]["step"] == 12
    assert [r["step"] for r in metrics(run)] == list(range(1, 13))  # one writer: one history
    assert not (run / "owner.lock").exists()  # released at the end


def test_a_lock_held_on_another_host_is_refused_naming_it(embedded_data, tmp_path):
    run = tmp_path / "elsewhere"
    run.mkdir()
    holder = {
        "token": "t", "host": "node-17", "pid": 4242, "pid_start": "1", "slurm_job": None,
        "started": "2026-12-01T09:00:00", "command": "train.py run_name=elsewhere",
    }  # fmt: skip
    (run / "owner.lock").write_text(json.dumps(holder))
    line = assert_one_line_error(
        run_cli("experiment=smoke", "run_name=elsewhere", f"output_root={tmp_path}")
    )
    assert "in use by pid 4242 on node-17" in line and f"remove {run / 'owner.lock'}" in line
    assert sorted(p.name for p in run.iterdir()) == [".owner.guard", "owner.lock"]  # no run


@contextlib.contextmanager
def small_disk(path: Path, size_mb: int):
    path.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)], check=True
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def fill(path: Path) -> Path:
    """Fill ``path``'s filesystem. Unbuffered: a buffered file's close would retry the bytes the
    last write could not place and raise ENOSPC itself."""
    filler = path / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 65536)
    finally:
        os.close(fd)
    return filler


@pytest.mark.skipif(not AS_ROOT, reason="mounts a small tmpfs as the output root (root only)")
def test_a_full_disk_while_a_checkpoint_is_written_loses_nothing(embedded_data, tmp_path):
    with small_disk(tmp_path / "disk", 64) as disk:
        args = (*TINY, "train.max_steps=12", "train.ephemeral_checkpoint_interval=5")
        args = (*args, "run_name=full", f"output_root={disk}")
        run = disk / "full"
        proc = start(*args)
        wait_until(lambda: (run / "checkpoints" / "step5").is_dir(), 300, "checkpoint step5")
        filler = fill(disk)  # the disk fills up before the next checkpoint (step 10)
        _, err = proc.communicate(timeout=600)
        line = last_error(err)
        assert proc.returncode == 2
        assert f"no space left on device under {run}" in line and "step5" in line, line
        assert checkpoint_steps(run) == [0, 5]  # the previous checkpoint is whole...
        kept = metrics(run)  # ...and every line of the log parses
        assert kept[-1]["step"] >= 5

        filler.unlink()  # space again: the same command resumes
        again = run_cli(*args)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "resumed from step 5" in again.stderr
        assert checkpoint_steps(run)[-1] == 12 and metrics(run)[-1]["step"] == 12


def test_a_cut_short_latest_checkpoint_falls_back_to_the_one_before(embedded_data, tmp_path):
    args = (*TINY, "train.max_steps=12", "train.ephemeral_checkpoint_interval=4")
    args = (*args, "run_name=cut", f"output_root={tmp_path}")
    run = tmp_path / "cut"
    kill_at_step(*args, run_dir=run, step=10)
    *_, before, latest = checkpoint_steps(run)
    shard = max((run / "checkpoints" / f"step{latest}" / "model_and_optim").glob("*.distcp"))
    with open(shard, "r+b") as f:  # a copy or a disk that lost the end of a file
        f.truncate(shard.stat().st_size // 2)

    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"olmotrain: checkpoint step{latest} cannot be resumed (model_and_optim/" in proc.stderr
    assert "is cut short" in proc.stderr and f"resumed from step {before}" in proc.stderr
    assert any(p.name.startswith(f"step{latest}.broken-") for p in (run / "checkpoints").iterdir())
    assert checkpoint_steps(run)[-1] == 12 and metrics(run)[-1]["step"] == 12

    # Every checkpoint broken: refused, never a silent restart from step 0.
    for step in checkpoint_steps(run):
        for f in (run / "checkpoints" / f"step{step}" / "model_and_optim").glob("*.distcp"):
            f.write_bytes(b"")
    line = assert_one_line_error(run_cli(*args))
    assert f"no checkpoint of {run} can be resumed" in line and "fresh=true" in line, line


def copy_embedded(dest: Path) -> Path:
    """The embedded dataset under another data root (hard links would share the changes)."""
    import shutil

    shutil.copytree(embedded_data_dir(), dest / "embedded" / "embedded_bpe8k")
    return dest / "embedded" / "embedded_bpe8k" / "python_code" / "train-00000.npy"


def embedded_data_dir() -> Path:
    return DATA_ROOT / "embedded" / "embedded_bpe8k"


def rewrite_keeping_stat(path: Path, tokens: np.ndarray) -> None:
    """Same name, same size, same mtime: only the content (and the ctime, which nobody can set)."""
    st = path.stat()
    with open(path, "r+b") as f:
        f.write(tokens.tobytes())
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size


def test_a_token_file_changed_after_its_check_is_caught_before_training(embedded_data, tmp_path):
    path = copy_embedded(tmp_path / "data")
    runs = tmp_path / "runs"
    args = (*TINY, "train.max_steps=12", "train.ephemeral_checkpoint_interval=2")
    args = (*args, f"data_root={tmp_path / 'data'}", f"output_root={runs}")
    kill_at_step(*args, "run_name=b", run_dir=runs / "b", step=4)  # checked, cached, trained on

    # Valid ids, other content, same size and mtime: resuming would train on other data.
    tokens = np.fromfile(path, dtype=np.uint16)
    rewrite_keeping_stat(path, np.roll(tokens, 1))
    line = assert_one_line_error(train_main(*args, "run_name=b"))  # refused before training
    assert f"token file {path} changed since this run started training on it" in line, line
    assert "fresh=true" in line

    # An id outside the vocabulary written in place: the cached check does not hide it.
    bad = tokens.copy()
    bad[1000] = 9000  # vocab 8192
    rewrite_keeping_stat(path, bad)
    line = assert_one_line_error(train_main(*args, "run_name=c"))
    assert f"{path} holds token id 9000" in line, line
    assert not (runs / "c").exists()

    # Back to what run b started on: it resumes, and says the file was checked again.
    rewrite_keeping_stat(path, tokens)
    again = run_cli(*args, "run_name=b")
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"token file {path} changed since it was checked at" in again.stderr
    assert "resumed from step" in again.stderr and checkpoint_steps(runs / "b")[-1] == 12


def rank_pids(run: Path) -> dict[int, int]:
    """``{rank: pid}`` of the local ranks training ``run`` (from /proc)."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            if b"olmotrain.launch.local" in cmd and str(run).encode() in cmd:
                env = dict(
                    kv.split("=", 1)
                    for kv in (proc / "environ").read_text().split("\0")
                    if "=" in kv
                )
                found[int(env["RANK"])] = int(proc.name)
    return found


def test_one_of_two_ranks_killed_stops_the_other_and_a_rerun_resumes(embedded_data, tmp_path):
    args = (*TINY, "cluster.devices=2", "parallel=fsdp", "train.max_steps=16")
    args = (*args, "train.ephemeral_checkpoint_interval=4", "run_name=r", f"output_root={tmp_path}")
    run = tmp_path / "r"
    proc = start(*args)
    wait_until(lambda: logged_step(run) >= 6, 300, "step 6")
    pids = rank_pids(run)
    assert sorted(pids) == [0, 1], pids
    os.kill(pids[1], signal.SIGKILL)
    killed = time.time()
    _, err = proc.communicate(timeout=120)
    stopped_in = time.time() - killed
    line = last_error(err, tracebacks=True)
    assert proc.returncode == 2
    assert "rank 1 of 2 was killed by SIGKILL; the other ranks were stopped" in line, line
    assert stopped_in < 30, stopped_in  # the surviving rank does not wait out a collective
    assert not any(p in rank_pids(run).values() for p in pids.values())
    step = checkpoint_steps(run)[-1]
    assert step >= 4

    again = run_cli(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumed from step {step}" in again.stderr
    assert checkpoint_steps(run)[-1] == 16


def test_a_nan_loss_stops_with_one_line_and_keeps_the_checkpoint_before_it(embedded_data, tmp_path):
    args = (*TINY, "train.max_steps=30", "train.lr=100", "train.ephemeral_checkpoint_interval=3")
    proc = run_cli(*args, "run_name=nan", f"output_root={tmp_path}")
    line = last_error(proc.stderr)
    assert proc.returncode == 2
    assert "training loss is nan at step" in line or "training loss is inf at step" in line, line
    bad = int(line.split(" at step ")[1].split(":")[0])
    kept = checkpoint_steps(tmp_path / "nan")
    assert kept and max(kept) < bad and f"checkpoint step{max(kept)} (before it) is kept" in line
    assert all(
        np.isfinite(r["train/CE loss"]) for r in metrics(tmp_path / "nan") if "train/CE loss" in r
    )


def test_a_rank_that_cannot_reach_the_first_node_fails_in_bounded_time():
    import socket

    from olmotrain.errors import UserError
    from olmotrain.launch.rendezvous import wait_for_master

    with socket.socket() as s:  # a port nobody listens on (bound, not listening: refused)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        began = time.monotonic()
        with pytest.raises(UserError) as refused:
            wait_for_master("127.0.0.1", port, 3, rank=1)
        assert 3 <= time.monotonic() - began < 10
    line = str(refused.value)
    assert f"could not reach the rendezvous at 127.0.0.1 (127.0.0.1):{port} within 3 s" in line
    assert "rank 1 on " in line and "cluster.rendezvous_timeout_s" in line

    with pytest.raises(UserError, match="MASTER_ADDR=n9.invalid does not resolve"):
        wait_for_master("n9.invalid", port, 3, rank=1)

    with socket.socket() as server:  # the master listening: returns at once
        server.bind(("127.0.0.1", 0))
        server.listen()
        began = time.monotonic()
        wait_for_master("127.0.0.1", server.getsockname()[1], 30, rank=1)
        assert time.monotonic() - began < 2
