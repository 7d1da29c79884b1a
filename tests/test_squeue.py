"""The one ``squeue`` reader (:mod:`olmotrain.squeue`). Runs against a real SLURM cluster are in
``tests/test_slurm.py``; here ``squeue`` is a script on PATH that answers as SLURM 23 does."""

from __future__ import annotations

import pytest

from olmotrain import squeue


def test_rows_are_parsed_with_their_state_reason_and_script():
    rows = squeue.parse(
        "12|PENDING|Priority|/runs/a/slurm/submission_file.sh\n13|COMPLETED|None|/runs/b/x|y.sh\n\n"
    )
    assert rows == [
        squeue.Job("12", "PENDING", "Priority", "/runs/a/slurm/submission_file.sh"),
        squeue.Job("13", "COMPLETED", "None", "/runs/b/x|y.sh"),
    ]
    assert rows[0].alive and not rows[1].alive
    assert squeue.QUEUED | squeue.RUNNING == squeue.ALIVE and not squeue.QUEUED & squeue.RUNNING


@pytest.fixture
def fake_squeue(tmp_path, monkeypatch):
    """Install ``squeue`` printing ``out`` / ``err`` and exiting ``rc``; records its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"

    def install(out: str = "", err: str = "", rc: int = 0) -> None:
        (tmp_path / "out").write_text(out)
        (tmp_path / "err").write_text(err)
        script = bin_dir / "squeue"
        script.write_text(
            f'#!/bin/sh\necho "$@" >> {calls}\ncat {tmp_path / "out"}\n'
            f"cat {tmp_path / 'err'} >&2\nexit {rc}\n"
        )
        script.chmod(0o755)

    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    install.calls = calls  # type: ignore[attr-defined]
    return install


def test_one_call_for_all_job_ids(fake_squeue):
    fake_squeue("7|RUNNING|None|/r/7.sh\n")
    assert [j.job_id for j in squeue.squeue(["7", "8"])] == ["7"]
    assert fake_squeue.calls.read_text().split() == [
        "-h", "-t", "all", "-j", "7,8", "-o", squeue.FORMAT,
    ]  # fmt: skip


def test_job_state_alive_gone_or_unknown(fake_squeue, monkeypatch):
    fake_squeue("7|REQUEUED|BeginTime|/r/7.sh\n")
    assert squeue.job_state("7") == "alive"
    fake_squeue("7|CANCELLED|None|/r/7.sh\n")
    assert squeue.job_state("7") == "gone"
    fake_squeue(err="slurm_load_jobs error: Invalid job id specified\n", rc=1)
    assert squeue.job_state("7") == "gone"  # SLURM forgot it
    fake_squeue(err="slurm_load_jobs error: Unable to contact slurm controller\n", rc=1)
    assert squeue.job_state("7") == "unknown"
    assert squeue.squeue(["7"]) is None
    monkeypatch.setenv("PATH", "/nonexistent")
    assert squeue.job_state("7") == "unknown"  # no SLURM here
    assert squeue.squeue([]) == []
