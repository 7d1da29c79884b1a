"""cluster=slurm on a real one-node SLURM cluster (Debian's packages, scripts/slurm_cluster.sh).

Everything goes through sbatch: sweeps, preemption (USR2 and ``scontrol requeue``), a 2-task FSDP
job, configs and code frozen at submit time, failure reports, and bad input refused before
anything is submitted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import (
    ENGLISH_HELD_OUT,
    REPO,
    assert_one_line_error,
    checkpoint_steps,
    metrics,
    run_cli,
    train_main,
)

pytestmark = pytest.mark.slow
SCRIPT = REPO / "scripts" / "slurm_cluster.sh"
CPU = ("cluster=slurm", "cluster.gpus_per_node=0")
SMOKE = ("experiment=smoke",)
NO_EVAL = ("data.eval=null",)  # where training, not held-out evaluation, is what is checked
ALIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD"}


@pytest.fixture(scope="session")
def slurm():
    """A two-node cluster, each node its own network and UTS namespace (hostnames n1, n2),
    started by the repo's script (idempotent; it needs root to start)."""
    if os.geteuid() != 0:
        if subprocess.run([SCRIPT, "status"], capture_output=True).returncode != 0:
            pytest.skip("the SLURM tests start a cluster with apt and daemons: run them as root")
        return SCRIPT
    began = time.time()
    proc = subprocess.run(
        [SCRIPT, "start", "--nodes", "2"], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"\nslurm_cluster.sh start --nodes 2: {time.time() - began:.1f} s")
    return SCRIPT


def job_of(run_dir: Path) -> str:
    return json.loads((run_dir / "jobs.jsonl").read_text().splitlines()[-1])["job_id"]


def job_state(job: str) -> tuple[str, str]:
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", job, "-o", "%T|%r"], capture_output=True, text=True
    ).stdout.strip()
    return tuple(out.split("|")) if out else ("GONE", "")  # type: ignore[return-value]


def wait_for(predicate, timeout: float, what: str, job: str | None = None):
    """Poll ``predicate``; a job requeued by SLURM waits out its BeginTime hold, so release it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if job is not None and job_state(job) == ("PENDING", "BeginTime"):
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)
        if value := predicate():
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def ended(job: str) -> bool:
    return job_state(job)[0] not in ALIVE


def max_step(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines()[:-1] if path.exists() else []  # the last may be torn
    return max((json.loads(line)["step"] for line in lines), default=0)


def status(path: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "olmotrain.status", str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_sweep_runs_through_sbatch_and_a_rerun_resumes_it(slurm, embedded_data, tmp_path):
    sweep = ("-m", "seed=1,2", *SMOKE, *NO_EVAL, *CPU, "sweep_name=pair", f"output_root={tmp_path}")
    proc = run_cli(*sweep, "cluster.wait=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    root = tmp_path / "sweeps" / "pair"
    runs = [root / "seed=1", root / "seed=2"]
    for run in runs:
        assert checkpoint_steps(run)[-1] == 8 and metrics(run)[-1]["step"] == 8
        assert (run / "code" / "src" / "olmotrain" / "train" / "trainer.py").exists()
        assert len((run / "jobs.jsonl").read_text().splitlines()) == 1
    assert yaml.safe_load((root / "sweep.yaml").read_text())["points"] == [
        ["seed=1", "experiment=smoke", "data.eval=null"],
        ["seed=2", "experiment=smoke", "data.eval=null"],
    ]
    assert (
        metrics(runs[0])[-1]["train/CE loss"] != metrics(runs[1])[-1]["train/CE loss"]
    )  # two seeds, two runs
    assert "2 run(s): 2 done" in status(root)

    # The same command again: both points are finished, nothing is submitted.
    again = run_cli(*sweep, "cluster.wait=true")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("already finished at step 8/8") == 2
    assert all(len((r / "jobs.jsonl").read_text().splitlines()) == 1 for r in runs)

    # Other points under the same sweep name: refused, nothing submitted.
    other = run_cli(
        "-m", "seed=1,3", *SMOKE, *NO_EVAL, *CPU, "sweep_name=pair", f"output_root={tmp_path}"
    )  # fmt: skip
    assert "holds a different sweep" in assert_one_line_error(other)
    assert not (root / "seed=3").exists()


def test_preempted_two_node_run_checkpoints_requeues_and_reaches_the_same_loss(
    slurm, embedded_data, tmp_path
):
    args = (
        "model=olmo2_1m",
        "train.max_steps=40",
        "train.global_batch_size=4096",
        "train.ephemeral_checkpoint_interval=1000",
        "parallel=fsdp",
        ENGLISH_HELD_OUT,
    )
    # The uninterrupted reference, the same two FSDP ranks on this machine, trains meanwhile.
    reference = subprocess.Popen(
        [
            sys.executable,
            "train.py",
            *args,
            "cluster.devices=2",
            "run_name=ref",
            f"output_root={tmp_path}",
        ],
        cwd=REPO,
        env={**os.environ, "OLMOTRAIN_DATA_ROOT": str(REPO / "data")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wandb_env = {"WANDB_MODE": "offline", "WANDB_API_KEY": "offline-test"}
    proc = run_cli(
        *args, *CPU, "cluster.nodes=2", "run_name=pre", "wandb.enabled=true",
        f"output_root={tmp_path}", env=wandb_env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "pre"
    job = job_of(run)
    planned = {c["step"] for c in json.loads((run / "plan.json").read_text())["checkpoints"]}

    def unplanned(low: int) -> list[int]:
        return [s for s in checkpoint_steps(run) if s >= low and s not in planned]

    # 1. SLURM's warning signal: checkpoint at the signal's step, requeue, resume.
    wait_for(lambda: max_step(run) >= 10, 300, "step 10")
    # Signal first: the status command takes seconds under load, and the run trains meanwhile
    # (once it had reached step 51, leaving no room for the second interruption).
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    assert re.search(r"\b(running|queued)\b", status(run))  # checkpointing, or requeued
    wait_for(lambda: job_state(job)[0] == "PENDING", 120, "the requeue")
    first = unplanned(10)
    assert first, checkpoint_steps(run)

    # 2. An admin requeue (SIGTERM, SIGKILL after KillWait): olmo-core checkpoints on SIGTERM.
    wait_for(lambda: max_step(run) >= first[0] + 12, 300, "progress after the resume", job=job)
    subprocess.run(["scontrol", "requeue", job], check=True)
    # SLURM requeues at once; the old attempt saves its checkpoint within KillWait (60 s).
    wait_for(lambda: unplanned(first[0] + 12), 90, "the checkpoint on SIGTERM")
    wait_for(lambda: ended(job), 600, "the job to end", job=job)

    assert checkpoint_steps(run)[-1] == 40 and "1 done" in status(run)
    log = "\n".join(p.read_text() for p in (run / "slurm" / job).glob("*_0_log.*"))
    assert f"checkpoint saved at step {first[0]}; requeueing" in log
    assert log.count("resumed from step") >= 2
    # One W&B run across the three attempts.
    wandb_id = (run / "wandb_id").read_text().strip()
    attempts = list((run / "work" / "wandb" / "wandb").glob(f"offline-run-*-{wandb_id}"))
    assert len(attempts) >= 3, attempts

    assert reference.wait(timeout=600) == 0, reference.stderr.read()[-3000:]
    want = metrics(tmp_path / "ref")[-1]
    got = metrics(run)[-1]
    assert got["step"] == want["step"] == 40
    assert got["train/CE loss"] == pytest.approx(want["train/CE loss"], abs=1e-5)
    # The grace period went to checkpoint + requeue: held-out evals ran at the planned permanent
    # checkpoints (pre-decay 36, end 40) and at no preempted step.
    evals = [r["step"] for r in metrics(run) if any(k.startswith("eval/") for k in r)]
    assert evals == sorted(s for s in planned if s > 0) == [36, 40], (evals, first)


def ranks_by_host(run: Path) -> dict[str, str]:
    """``{"rank/world": host}`` from the job's logs (each rank names its host at start)."""
    found = {}
    for log in (run / "slurm").glob("*/*_log.err"):
        for m in re.finditer(r"rank (\d+/\d+) on (\S+), code", log.read_text()):
            found[m.group(1)] = m.group(2)
    return found


def test_two_node_fsdp_and_hsdp_jobs_train_across_both_nodes_and_match_one_rank(
    slurm, embedded_data, tmp_path
):
    two_nodes = (*SMOKE, *NO_EVAL, *CPU, "cluster.nodes=2")
    # HSDP, one replica per node (2 nodes x 2 ranks), is queued first and runs meanwhile.
    hsdp = run_cli(
        *two_nodes, "cluster.tasks_per_node=2", "parallel=hsdp", f"output_root={tmp_path / 'hsdp'}"
    )
    assert hsdp.returncode == 0, hsdp.stderr[-3000:]
    began = time.time()
    fsdp = run_cli(
        *two_nodes, "cluster.tasks_per_node=1", "parallel=fsdp", "cluster.wait=true",
        f"output_root={tmp_path / 'fsdp'}",
    )  # fmt: skip
    assert fsdp.returncode == 0, fsdp.stderr[-3000:]
    print(f"\n2-node FSDP smoke job, submit to end: {time.time() - began:.1f} s")
    run = tmp_path / "fsdp" / "smoke"
    assert ranks_by_host(run) == {"0/2": "n1", "1/2": "n2"}  # one rank on each node
    shards = {p.name for p in (run / "checkpoints" / "step8" / "model_and_optim").iterdir()}
    assert any(s.startswith("__1_") for s in shards), shards  # rank 1 (on n2) wrote its shard

    # One rank through submitit's local executor: the same cluster path without SLURM.
    one = run_cli(*SMOKE, *NO_EVAL, "cluster=submitit_local", f"output_root={tmp_path / 'one'}")
    assert one.returncode == 0, one.stderr[-3000:]
    want = metrics(tmp_path / "one" / "smoke")
    hsdp_run = tmp_path / "hsdp" / "smoke"
    wait_for(lambda: ended(job_of(hsdp_run)), 600, "the HSDP job to end")
    assert ranks_by_host(hsdp_run) == {"0/4": "n1", "1/4": "n1", "2/4": "n2", "3/4": "n2"}
    for got in (metrics(run), metrics(hsdp_run)):
        assert [r["step"] for r in got] == [r["step"] for r in want]
        for a, b in zip(got, want, strict=True):
            assert a["train/CE loss"] == pytest.approx(b["train/CE loss"], abs=2e-4)


def test_a_node_lost_mid_run_fails_the_job_with_one_line_and_a_rerun_resumes(
    slurm, embedded_data, tmp_path
):
    args = (
        "model=olmo2_1m", "train.max_steps=24", "train.global_batch_size=4096",
        "train.ephemeral_checkpoint_interval=4", "data.eval=null", *CPU, "cluster.nodes=2",
        "parallel=fsdp", "run_name=lost", f"output_root={tmp_path}",
    )  # fmt: skip
    assert run_cli(*args).returncode == 0
    run = tmp_path / "lost"
    job = job_of(run)
    wait_for(lambda: max_step(run) >= 9, 300, "step 9")
    # The job's rank on n2 dies as with its node: SIGKILL to every process of it there.
    pids = subprocess.run(
        ["ip", "netns", "pids", "olmo-n2"], capture_output=True, text=True
    ).stdout.split()
    ranks = [
        p
        for p in pids
        if "submitit" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")
    ]
    assert ranks, pids
    for pid in ranks:
        os.kill(int(pid), 9)
    killed = time.time()
    wait_for(lambda: ended(job), 120, "the job to end")
    print(f"\nnode lost -> job ended in {time.time() - killed:.1f} s")
    report = status(run)
    print(report)
    first = report.splitlines()[1]
    assert "failed" in first and "rank 1 on n2: killed" in first.lower(), report
    step = checkpoint_steps(run)[-1]
    assert 4 <= step < 24

    again = run_cli(*args, "cluster.wait=true")
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumes from step {step}" in again.stdout
    assert checkpoint_steps(run)[-1] == 24 and ranks_by_host(run)["1/2"] == "n2"


def test_config_and_code_are_frozen_at_submit_time(slurm, embedded_data, tmp_path):
    repo = tmp_path / "repo"  # a checkout we can edit while the job waits
    shutil.copytree(REPO / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "conf", repo / "conf")
    shutil.copy2(REPO / "train.py", repo / "train.py")
    env = {"PYTHONPATH": str(repo / "src")}
    proc = run_cli(
        *SMOKE,
        *NO_EVAL,
        *CPU,
        "+cluster.additional_parameters.hold=true",  # sbatch --hold: it waits until released
        f"output_root={tmp_path / 'runs'}",
        script=str(repo / "train.py"),
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "smoke"
    job = job_of(run)
    assert job_state(job)[0] == "PENDING"
    # A local run of the same run dir while the job waits: refused, naming the job.
    local = run_cli(*SMOKE, *NO_EVAL, f"output_root={tmp_path / 'runs'}")
    assert f"is in use by SLURM job {job}" in assert_one_line_error(local)
    # Submitting it again while it waits: refused as a duplicate, nothing submitted.
    again = run_cli(
        *SMOKE, *NO_EVAL, *CPU, f"output_root={tmp_path / 'runs'}",
        script=str(repo / "train.py"), env=env,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"already queued or running as job {job}; not submitted again" in again.stdout
    assert len((run / "jobs.jsonl").read_text().splitlines()) == 1
    assert "queued (JobHeldUser)" in status(run)

    # Edit the model config and break the package while the job is queued.
    model = repo / "conf" / "model" / "olmo2_1m.yaml"
    model.write_text(model.read_text() + "d_model: 24\n")
    training = repo / "src" / "olmotrain" / "train" / "trainer.py"
    training.write_text('raise SystemExit("edited after submit")\n' + training.read_text())
    subprocess.run(["scontrol", "release", job], check=True)
    wait_for(lambda: ended(job), 300, "the job to end")

    assert checkpoint_steps(run)[-1] == 8, status(run)
    frozen = yaml.safe_load((run / "config.yaml").read_text())
    assert frozen["model"]["d_model"] is None  # the factory's own width, not the edit
    assert "derived" not in frozen  # what follows from the config is the plan's
    assert json.loads((run / "plan.json").read_text())["num_params"] == 236780  # olmo2_1M, 8k vocab
    log = "\n".join(p.read_text() for p in (run / "slurm").glob("*/*_0_log.err"))
    assert f"code {run / 'code' / 'src' / 'olmotrain'}" in log


def test_a_cancelled_run_is_reported_and_a_rerun_resumes_it(slurm, embedded_data, tmp_path):
    args = (
        "model=olmo2_1m",
        "train.max_steps=20",
        "train.global_batch_size=4096",
        *NO_EVAL,
        *CPU,
        "run_name=cut",
        f"output_root={tmp_path}",
    )
    assert run_cli(*args).returncode == 0
    run = tmp_path / "cut"
    job = job_of(run)
    wait_for(lambda: max_step(run) >= 5, 300, "step 5")
    subprocess.run(["scancel", job], check=True)  # SIGTERM: olmo-core checkpoints, no requeue
    wait_for(lambda: ended(job), 120, "the cancelled job to end")
    report = status(run)
    assert "failed (cancelled)" in report and "CANCELLED" in report, report
    step = checkpoint_steps(run)[-1]
    assert 5 <= step < 20

    again = run_cli(*args, "cluster.wait=true")
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumes from step {step}" in again.stdout
    assert (
        checkpoint_steps(run)[-1] == 20 and len((run / "jobs.jsonl").read_text().splitlines()) == 2
    )


def test_a_failed_job_is_reported_with_its_log(slurm, embedded_data, tmp_path):
    proc = run_cli(
        *SMOKE,
        *CPU,
        'cluster.setup=["echo node-setup-broke >&2","exit 3"]',
        "cluster.wait=true",
        f"output_root={tmp_path}",
    )
    assert "1 run(s) ended unfinished" in assert_one_line_error(proc)
    report = status(tmp_path)
    assert "failed" in report and "node-setup-broke" in report


def test_dry_run_shows_the_sbatch_script(slurm, tmp_path):
    proc = run_cli(
        *SMOKE,
        "cluster=slurm",
        "cluster.nodes=2",
        "cluster.gpus_per_node=8",  # a dry run plans for the cluster, not for this machine
        "cluster.time_min=90",
        "cluster.account=acct",
        "cluster.qos=high",
        "cluster.mem_gb=64",
        'cluster.setup=["module load cuda/12.4"]',
        "+cluster.additional_parameters.mail-type=END",
        "hydra.launcher.comment=ablation",  # any other hydra-submitit-launcher key
        "dry_run=true",
        f"output_root={tmp_path}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = tmp_path / "smoke"
    for line in (
        "data-parallel 16",  # the plan: 2 nodes x 8 GPUs
        "#SBATCH --nodes=2",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --ntasks-per-node=8",
        "#SBATCH --signal=USR2@120",
        "#SBATCH --time=90",
        "#SBATCH --requeue",
        "#SBATCH --account=acct",
        "#SBATCH --qos=high",
        "#SBATCH --mem=64GB",
        "#SBATCH --mail-type=END",
        "#SBATCH --comment=ablation",
        f"export PYTHONPATH={run / 'code' / 'src'}",
        "module load cuda/12.4",
        "srun",
    ):
        assert line in proc.stdout, line
    plan = json.loads(run_cli(*SMOKE, *CPU, "dry_run=json", f"output_root={tmp_path}").stdout)
    assert "#SBATCH --ntasks-per-node=1" in plan["sbatch"] and plan["run_name"] == "smoke"
    assert not run.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["cluster.partition=gpu-h100"], "unknown partition 'gpu-h100'; this cluster has debug"),
        (["cluster.gpus_per_node=8"], "cluster.gpus_per_node=8 but partition debug has no GPUs"),
        (["cluster.nodes=4"], "cluster.nodes=4 but partition debug has 2 node(s)"),
    ],
)
def test_requests_the_cluster_cannot_meet_are_refused(
    slurm, embedded_data, tmp_path, args, message
):
    line = assert_one_line_error(run_cli(*SMOKE, *CPU, *args, f"output_root={tmp_path}"))
    assert message in line
    assert not (tmp_path / "smoke").exists()  # nothing claimed, nothing submitted


def test_no_sbatch_on_path_is_one_line(embedded_data, tmp_path):
    proc = train_main(*SMOKE, *CPU, f"output_root={tmp_path}", env={"PATH": str(tmp_path)})
    assert "needs SLURM's sbatch" in assert_one_line_error(proc)
    assert not (tmp_path / "smoke").exists()


def test_a_ladder_goes_to_slurm_from_the_command_line(slurm, embedded_data, tmp_path):
    """``python -m olmotrain.ladder run L cluster=slurm``: one sbatch job per point, through the
    same machinery as a -m sweep; a re-run submits nothing."""
    ladder = tmp_path / "onslurm.yaml"
    ladder.write_text(
        json.dumps(
            {
                "name": "onslurm",
                "sizes": ["olmo2_1m", "olmo3_1m"],
                "mixes": ["embedded"],
                "chinchilla_multiple": 0.01,
                "overrides": ["train.max_steps=4", ENGLISH_HELD_OUT],
                "metric": "eval/lm/english_docs/CE loss",
                "output_root": str(tmp_path / "runs"),
            }
        )
    )

    def ladder_cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "olmotrain.ladder", *args], cwd=REPO, capture_output=True,
            text=True, timeout=900, env={**os.environ, "OLMOTRAIN_DATA_ROOT": str(REPO / "data")},
        )  # fmt: skip

    args = ("run", str(ladder), *CPU, "cluster.wait=true")
    proc = ladder_cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    sweep = tmp_path / "runs" / "sweeps" / "ladder-onslurm"
    for size in ("olmo2_1m", "olmo3_1m"):
        run = sweep / f"model={size}"  # one mix and one seed: the sweep names points by size
        assert job_of(run), run  # submitted through sbatch, not trained here
        assert metrics(run)[-1]["step"] == 4  # the job has ended: the last line is whole
    again = ladder_cli(*args)
    assert again.returncode == 0 and again.stdout.count("already finished") == 2
    assert "2 run(s): 2 done" in ladder_cli("status", str(ladder)).stdout
    assert ladder_cli("collect", str(ladder)).returncode == 0
