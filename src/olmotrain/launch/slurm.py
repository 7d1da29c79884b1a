"""Cluster launching: ``cluster=slurm`` (and ``cluster=submitit_local``) through submitit.

The launching process does all the checking: it composes, plans and checks every sweep point
(config, data, run dir, and the cluster: ``sbatch`` present, partition known, GPUs there), and
only when all pass claims the run dirs and submits one job per point. A job carries its resolved
config (pickled at submit time) and runs olmotrain from a code snapshot in ``RUN_DIR/code``, so
editing ``conf/`` or the source while it waits in the queue changes nothing.

On the nodes every rank gets submitit's ``TorchDistributedEnvironment`` (with
``set_cuda_visible_devices=False``, as olmo-core picks ``cuda:LOCAL_RANK`` itself) and
``OLMO_SHARED_FS=1``, and all ranks train the one run dir. SLURM's warning signal (USR2, sent
``signal_delay_s`` before the time limit, or by ``scancel --signal=USR2``) makes olmo-core stop
and save a checkpoint on every rank; then rank 0 requeues the job through submitit, and the
requeued job resumes from that checkpoint in the same run dir.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import hashlib
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from olmotrain.config.schema import ClusterSchema, RunConfig
from olmotrain.console import setup_logging
from olmotrain.errors import UserError
from olmotrain.launch import compat
from olmotrain.launch.jobs import live_jobs, record_job
from olmotrain.launch.rendezvous import wait_for_master
from olmotrain.launch.status import render, run_status
from olmotrain.launch.sweep import name_points, record_sweep
from olmotrain.model.parallel import check_devices
from olmotrain.squeue import squeue
from olmotrain.train.lock import Holder, RunLock
from olmotrain.train.rundir import RunDir
from olmotrain.train.startup import check_run, plan_run, print_plan

log = logging.getLogger("olmotrain")

# -- what runs on the nodes -------------------------------------------------------------------


@dataclass
class ClusterJob:
    """One run as a submitit job: train ``config`` (frozen at submit time) in ``run_dir``."""

    run_dir: str
    config: RunConfig
    owner_token: str | None = None
    """The token of the run dir's owner lock its launcher took for this job."""

    def __call__(self) -> str:
        import submitit

        from olmotrain.train.callbacks import PreemptionCallback
        from olmotrain.train.trainer import train

        setup_logging()
        env = submitit.helpers.TorchDistributedEnvironment().export(
            set_cuda_visible_devices=False, overwrite=True
        )
        os.environ["OLMO_SHARED_FS"] = "1"  # every rank sees the one run dir
        job = submitit.JobEnvironment()
        log.info(
            "olmotrain job %s: rank %d/%d on %s, code %s",
            job.job_id, env.rank, env.world_size, job.hostname, Path(__file__).parents[1],
        )  # fmt: skip
        requeue = compat.requeue_handler()  # submitit's checkpoint-and-requeue handler
        preemption = PreemptionCallback()
        run = RunDir(Path(self.run_dir))
        plan = run.plan()  # written at submission, beside the frozen config
        if env.rank != 0:  # bounded: a node that cannot reach the first one says so
            wait_for_master(
                env.master_addr, env.master_port, self.config.cluster.rendezvous_timeout_s, env.rank
            )
        lock = RunLock(run.path)
        if env.rank == 0:  # the job owns the run dir: the lock its launcher took, or a free one
            slurm_job = job.job_id if os.environ.get("SLURM_JOB_ID") else None
            lock.acquire(Holder.this_process(self.owner_token, slurm_job))
        requeued = False
        try:
            train(self.config, plan, run, callbacks={"preemption": preemption})
            step = run.latest_step() or 0
            if step < plan.max_steps and preemption.signaled:
                if env.rank == 0 and requeue is not None:
                    log.info("checkpoint saved at step %d; requeueing", step)
                    requeued = True  # the requeued job is the same owner: it keeps the lock
                    # Pickles self.checkpoint(), requeues the job, exits this process.
                    requeue(compat.REQUEUE_SIGNAL, None)
                return f"preempted at step {step}"
            return f"step {step}/{plan.max_steps}"
        finally:
            if not requeued:
                lock.release()

    def checkpoint(self) -> Any:
        """submitit's hook on requeue: run this same job again (it resumes from the run dir)."""
        import submitit

        return submitit.helpers.DelayedSubmission(self)


# -- checking the cluster ---------------------------------------------------------------------


def _run(cmd: list[str]) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout


@dataclass
class Partition:
    """What ``sinfo`` says about a partition (maxima over its nodes)."""

    name: str
    default: bool
    nodes: int
    cpus: int
    memory_mb: int
    gpus: int


def partitions() -> dict[str, Partition]:
    """The cluster's partitions, from ``sinfo``."""
    found: dict[str, Partition] = {}
    for line in _run(["sinfo", "-h", "-o", "%P|%D|%c|%m|%G"]).splitlines():
        name, nodes, cpus, memory, gres = line.strip().split("|")
        default = name.endswith("*")
        name = name.rstrip("*")
        gpus = max(
            [int(g.split(":")[-1].split("(")[0]) for g in gres.split(",") if g.startswith("gpu")]
            or [0]
        )
        p = found.setdefault(name, Partition(name, default, 0, 0, 0, 0))
        p.nodes += int(nodes)
        p.cpus = max(p.cpus, int(cpus.rstrip("+")))
        p.memory_mb = max(p.memory_mb, int(memory.rstrip("+")))
        p.gpus = max(p.gpus, gpus)
    return found


def read_partitions() -> dict[str, Partition]:
    """The SLURM cluster's partitions; one clear error when SLURM is missing or down."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        raise UserError(
            "cluster=slurm needs SLURM's sbatch and sinfo on PATH (not found): run from a SLURM "
            "login node, use cluster=submitit_local, or start a one-node test cluster with "
            "scripts/slurm_cluster.sh start"
        )
    try:
        return partitions()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        detail = (getattr(exc, "stderr", "") or "").strip().splitlines()
        raise UserError(
            f"sinfo failed ({detail[-1] if detail else exc}); is the SLURM controller up?"
        ) from exc


def check_cluster(cluster: ClusterSchema, found: dict[str, Partition] | None) -> None:
    """One clear error for a job the cluster cannot run (``found``: its partitions, ``None`` for
    local jobs, checked against this machine); nothing has been submitted yet."""
    ranks = cluster.devices // cluster.nodes
    cpus = ranks * (cluster.cpus_per_task or 1)
    if found is None:
        check_devices(cluster.device, ranks)
        return
    names = ", ".join(f"{p.name}{' (default)' if p.default else ''}" for p in found.values())
    wanted = cluster.partition
    if wanted is None:
        part = next((p for p in found.values() if p.default), None)
        if part is None:
            raise UserError(
                f"this cluster has no default partition; set cluster.partition= one of {names}"
            )
    elif wanted not in found:
        raise UserError(f"unknown partition '{wanted}'; this cluster has {names}")
    else:
        part = found[wanted]
    gpus = cluster.gpus_per_node
    if gpus > part.gpus:
        have = f"{part.gpus} GPU(s) per node" if part.gpus else "no GPUs"
        raise UserError(
            f"cluster.gpus_per_node={gpus} but partition {part.name} has {have}; "
            f"use cluster.gpus_per_node={part.gpus}"
            + (" (CPU ranks, set cluster.tasks_per_node)" if not part.gpus else "")
        )
    if cluster.nodes > part.nodes:
        raise UserError(
            f"cluster.nodes={cluster.nodes} but partition {part.name} has {part.nodes} node(s)"
        )
    if cpus > part.cpus:
        raise UserError(
            f"{ranks} rank(s) x {cluster.cpus_per_task or 1} CPU(s) per node but partition "
            f"{part.name} nodes have {part.cpus} CPUs; lower cluster.tasks_per_node or cluster.cpus_per_task"
        )
    if cluster.mem_gb and cluster.mem_gb * 1024 > part.memory_mb:
        raise UserError(
            f"cluster.mem_gb={cluster.mem_gb} but partition {part.name} nodes have "
            f"{part.memory_mb // 1024} GB"
        )


# -- jobs and their records -------------------------------------------------------------------


def snapshot_code(dest: Path) -> str:
    """Copy the olmotrain package, ``train.py`` and ``conf/`` to ``dest``; their sha256.

    Jobs import olmotrain from ``dest/src`` (``PYTHONPATH``), so the code that runs is the code
    at submit time, also after a requeue.
    """
    import olmotrain

    src = Path(olmotrain.__file__).resolve().parent
    repo = src.parents[1]
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(src, tmp / "src" / "olmotrain", ignore=ignore)
    if (repo / "conf").is_dir():
        shutil.copytree(repo / "conf", tmp / "conf", ignore=ignore)
    if (repo / "train.py").exists():
        shutil.copy2(repo / "train.py", tmp / "train.py")
    digest = hashlib.sha256()
    for f in sorted(p for p in tmp.rglob("*") if p.is_file()):
        digest.update(str(f.relative_to(tmp)).encode() + b"\0" + f.read_bytes())
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return digest.hexdigest()


def executor_params(
    launcher_params: dict[str, Any], cluster: ClusterSchema, name: str, executor: str, code: Path
) -> dict[str, Any]:
    """submitit parameters: ``hydra.launcher.*`` overlaid with the point's ``cluster.*``."""
    ours = {
        "timeout_min": cluster.time_min,
        "nodes": cluster.nodes,
        "tasks_per_node": cluster.devices // cluster.nodes,
        "gpus_per_node": cluster.gpus_per_node or None,
        "cpus_per_task": cluster.cpus_per_task,
        "mem_gb": cluster.mem_gb,
        "name": name,
        "partition": cluster.partition,
        "account": cluster.account,
        "qos": cluster.qos,
        "constraint": cluster.constraint,
        "signal_delay_s": cluster.signal_delay_s,
        "additional_parameters": {
            "requeue": True,  # let the job be requeued where the cluster's default is not to
            **(launcher_params.get("additional_parameters") or {}),
            **cluster.additional_parameters,
        },
        # The code snapshot comes first on the job's import path.
        "setup": [
            f"export PYTHONPATH={code / 'src'}${{PYTHONPATH:+:$PYTHONPATH}}",
            *(launcher_params.get("setup") or []),
            *cluster.setup,
        ],
    }
    params = {
        k: v
        for k, v in launcher_params.items()
        if k not in ("submitit_folder", "max_num_timeout", "_target_")
    }
    params.update({k: v for k, v in ours.items() if v is not None or k not in params})
    # Keys every submitit executor takes go unprefixed, as hydra-submitit-launcher does.
    generic = compat.submitit_queue_keys()
    slurm_only = {"partition", "account", "qos", "constraint", "signal_delay_s", "setup", "additional_parameters"}  # fmt: skip
    return {
        k if k in generic else f"{'slurm' if k in slurm_only else executor}_{k}": v
        for k, v in params.items()
        if v is not None
    }


def make_executor(
    launcher_params: dict[str, Any], config: RunConfig, run_dir: Path, executor: str
) -> Any:
    """A submitit executor for one run: logs in ``RUN_DIR/slurm/<job id>/``."""
    import submitit

    cluster = config.cluster
    ex = submitit.AutoExecutor(
        folder=run_dir / "slurm" / "%j",
        cluster=executor,
        **{f"{executor}_max_num_timeout": cluster.max_num_timeout},
    )
    ex.update_parameters(
        **executor_params(launcher_params, cluster, config.run_name, executor, run_dir / "code")
    )
    return ex


def sbatch_script(ex: Any) -> str:
    """The sbatch script ``ex`` would submit (submitit writes it the same way)."""
    return compat.sbatch_preview(ex)


@contextlib.contextmanager
def _pythonpath_first(path: Path):
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = f"{path}:{old}" if old else str(path)
    try:
        yield
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old


def submit(launcher_params: dict[str, Any], start: Any, executor: str) -> Any:
    """Claim the run dir, snapshot the code and submit the run; records the job in ``jobs.jsonl``."""
    lock = start.run.claim(start.config, start.plan, fresh=start.config.fresh)
    try:
        start.run.record_data_files(start.data.file_sha256)
        code = start.run.path / "code"
        digest = snapshot_code(code)
        ex = make_executor(launcher_params, start.config, start.run.path, executor)
        task = ClusterJob(str(start.run.path), start.config, lock.held.token)  # type: ignore[union-attr]
        if executor == "local":  # local jobs inherit this environment (no sbatch setup lines)
            with _pythonpath_first(code / "src"):
                job = ex.submit(task)
        else:
            job = ex.submit(task)
            lock.hand_to_job(str(job.job_id))  # the job holds it from now on, also queued
    except BaseException:
        lock.release()
        raise
    record = {
        "job_id": str(job.job_id),
        "cluster": "slurm" if executor == "slurm" else "submitit_local",
        "submitted": datetime.datetime.now().isoformat(timespec="seconds"),
        "logs": str(Path(job.paths.stdout).parent),
        "code_sha256": digest,
    }
    record_job(start.run, record)
    return job


# -- the launcher -----------------------------------------------------------------------------


def _compose(launcher: Any, overrides: Sequence[str], idx: int) -> Any:
    """A sweep point's config, composed as Hydra composes a job (without the ``hydra`` node)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict, read_write

    config = compat.load_sweep_config(launcher, overrides)
    with open_dict(config):
        config.hydra.job.id = f"point{idx}"
        config.hydra.job.num = idx
    HydraConfig.instance().set_config(config)
    task = copy.deepcopy(config)
    with read_write(task), open_dict(task):
        del task["hydra"]
    return task


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list:
    """Check every point, then submit one job per unfinished point; see the module docstring."""
    setup_logging()
    executor = compat.submitit_executor(launcher)  # "slurm" or "local"
    params = compat.launcher_params(launcher)
    points = name_points(launcher.config, job_overrides)
    checked, dry, found = [], False, None
    for idx, overrides in enumerate(points, initial_job_idx):
        config, plan, mode = plan_run(_compose(launcher, overrides, idx))
        if mode is not None:
            dry = True
            _print_dry_run(params, config, plan, mode, executor)
            continue
        if executor == "slurm" and found is None:
            found = read_partitions()  # once per sweep
        check_cluster(config.cluster, found)
        start = check_run(config, plan, local=False)
        start.run = RunDir(start.run.path.resolve())  # jobs may start in another directory
        checked.append((overrides, start))
    if dry:
        return [_job_return(o, "dry run") for o in points]
    alive = live_jobs([start.run for _, start in checked])
    for _, start in checked:  # a run dir another process trains: nothing is submitted
        if start.finished_step is None and start.run.path not in alive:
            RunLock(start.run.path).refuse_if_held()

    record_sweep(launcher.config, job_overrides)
    jobs, returns = [], []
    for overrides, start in checked:
        name = start.plan.run_name
        if start.finished_step is not None:
            print(start.finished_message())
            returns.append(_job_return(overrides, "finished"))
            continue
        if job_id := alive.get(start.run.path):
            print(
                f"olmotrain: {name} is already queued or running as job {job_id}; not submitted again"
            )
            returns.append(_job_return(overrides, f"job {job_id}"))
            continue
        step = start.run.latest_step()
        job = submit(params, start, executor)
        jobs.append((start, job))
        resume = f", resumes from step {step}" if step else ""
        print(f"olmotrain: {name}: submitted job {job.job_id}{resume} -> {start.run.path}")
        returns.append(_job_return(overrides, f"job {job.job_id}"))
    where = _status_target(launcher.config, checked)
    print(f"olmotrain: follow with `python -m olmotrain.status {where}`", flush=True)
    if jobs and (executor == "local" or checked[0][1].config.cluster.wait):
        wait_for(jobs, executor)
    return returns


def _status_target(config: Any, checked: list) -> str:
    if len(checked) == 1:
        return str(checked[0][1].run.path)
    return str(Path(str(config.hydra.sweep.dir)))


def _print_dry_run(params: dict, config: RunConfig, plan: Any, mode: str, executor: str) -> None:
    """The plan, and for SLURM the sbatch script each run would be submitted with."""

    script = None
    if executor == "slurm":
        script = sbatch_script(
            make_executor(params, config, Path(plan.run_dir).resolve(), executor)
        )
    print_plan(config, plan, mode, {"sbatch": script} if script else None)
    if script and mode != "json":
        print("\nsbatch script (submitted per run; RUN_DIR/slurm/<job id>/ holds its logs):\n")
        print(script)


def _job_return(overrides: Sequence[str], value: str) -> Any:
    from hydra.core.utils import JobReturn, JobStatus

    ret = JobReturn(overrides=list(overrides))
    ret.status = JobStatus.COMPLETED
    ret.return_value = value
    return ret


def wait_for(jobs: list, executor: str, poll_s: float = 2.0) -> None:
    """Block until every job ended (requeues included); raise for runs left unfinished."""
    if executor == "local":
        for _, job in jobs:
            job.wait()
    else:
        ids = [str(job.job_id) for _, job in jobs]
        while any(job.alive for job in squeue(ids) or []):
            time.sleep(poll_s)
    rows = [run_status(start.run.path, {}) for start, _ in jobs]
    print(render(rows, Path.cwd()), flush=True)
    failed = [start for start, _ in jobs if (start.run.latest_step() or 0) < start.plan.max_steps]
    if failed:
        names = ", ".join(str(s.run.path) for s in failed)
        raise UserError(
            f"{len(failed)} run(s) ended unfinished: {names}; see `python -m olmotrain.status` for their logs"
        )
