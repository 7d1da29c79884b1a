"""The two-node SLURM cluster on this machine (scripts/slurm_cluster.sh --nodes 2): how long it
takes to start from nothing, how long a job waits to start, and a 2-node FSDP run against the
same two ranks trained locally.

    sudo .venv/bin/python bench/slurm_multinode.py        # root: it stops and starts the cluster

Figures (printed, and written to bench/results/slurm_multinode.json):
- cluster start: `slurm_cluster.sh stop` then `start --nodes 2` until both nodes are idle (the
  Debian packages already installed);
- job start latency: sbatch of a 2-node `srun hostname` job to its end, and of olmotrain's smoke
  run to the first rank's "rank 0/2 on n1" log line (SLURM's scheduling pass is every 5 s here);
- the loss curve of `experiment=smoke cluster=slurm cluster.nodes=2 parallel=fsdp` against
  `cluster.devices=2 parallel=fsdp` on this machine: the largest |delta loss| over its steps.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from olmotrain.metrics import METRICS_LOG, TRAIN_LOSS, read_metrics_log
from olmotrain.squeue import job_state

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "slurm_cluster.sh"


def timed(cmd: list[str]) -> float:
    began = time.monotonic()
    subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO)
    return time.monotonic() - began


def job_done(job: str) -> bool:
    return job_state(job) == "gone"


def train(*args: str) -> None:
    env = {**os.environ, "OLMOTRAIN_DATA_ROOT": str(REPO / "data")}
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=REPO, env=env,
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])


def losses(run: Path) -> list[float]:
    return [r[TRAIN_LOSS] for r in read_metrics_log(run / METRICS_LOG)]


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("run as root: the benchmark stops and starts the test cluster")
    results: dict[str, float] = {}
    subprocess.run([str(SCRIPT), "stop"], check=True, capture_output=True)
    results["cluster_start_s"] = timed([str(SCRIPT), "start", "--nodes", "2"])

    began = time.monotonic()
    out = subprocess.run(["sbatch", "--parsable", "-N2", "-n2", "--wrap", "srun hostname"],
                         check=True, capture_output=True, text=True, cwd=tempfile.gettempdir())  # fmt: skip
    job = out.stdout.strip().split(";")[0]
    while not job_done(job):
        time.sleep(0.1)
    results["srun_hostname_job_s"] = time.monotonic() - began

    with tempfile.TemporaryDirectory() as tmp:
        common = ("experiment=smoke", "parallel=fsdp", "data.eval=null")
        began = time.monotonic()
        env = {**os.environ, "OLMOTRAIN_DATA_ROOT": str(REPO / "data")}
        subprocess.run([sys.executable, "train.py", *common, "cluster=slurm",
                        "cluster.gpus_per_node=0", "cluster.nodes=2", f"output_root={tmp}/slurm"],
                       check=True, cwd=REPO, env=env, capture_output=True)  # fmt: skip
        results["submit_s"] = time.monotonic() - began
        run = Path(tmp) / "slurm" / "smoke"
        pattern = re.compile(r"rank 0/2 on n1")
        while not any(pattern.search(p.read_text()) for p in run.glob("slurm/*/*_0_log.err")):
            time.sleep(0.1)
        results["olmotrain_job_to_first_rank_s"] = time.monotonic() - began
        job = json.loads((run / "jobs.jsonl").read_text().splitlines()[-1])["job_id"]
        while not job_done(job):
            time.sleep(0.5)
        results["olmotrain_job_to_end_s"] = time.monotonic() - began
        train(*common, "cluster.devices=2", f"output_root={tmp}/local")
        a, b = losses(run), losses(Path(tmp) / "local" / "smoke")
        results["max_abs_loss_delta_vs_local_2_ranks"] = max(
            abs(x - y) for x, y in zip(a, b, strict=True)
        )
        results["steps"] = len(a)

    for key, value in results.items():
        print(f"{key:40s} {value:.6g}")
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "slurm_multinode.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
