#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, from Debian's packages, for olmotrain's cluster
# tests and for trying cluster=slurm without a cluster.
#
#   sudo scripts/slurm_cluster.sh start    # install (apt) if needed, configure, start; idempotent
#   scripts/slurm_cluster.sh status        # exit 0 when sbatch can reach a working node
#   sudo scripts/slurm_cluster.sh stop     # stop slurmd and slurmctld (munged stays: harmless)
#
# One partition, "debug" (the default), with every core and 90% of the memory of this machine.
# No accounting database: sacct does not work, squeue/scontrol do.
set -euo pipefail

PARTITION=${OLMOTRAIN_SLURM_PARTITION:-debug}
CONF=/etc/slurm/slurm.conf

say() { echo "slurm_cluster: $*" >&2; }
die() { say "error: $*"; exit 1; }

healthy() {
  command -v sinfo >/dev/null 2>&1 || return 1
  local state
  state=$(timeout 10 sinfo -h -N -p "$PARTITION" -o '%t' 2>/dev/null | head -n1) || return 1
  [[ "$state" =~ ^(idle|mix|alloc|comp)$ ]]
}

need_root() { [[ $(id -u) -eq 0 ]] || die "$1 needs root (run with sudo)"; }

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
     && command -v munged >/dev/null && command -v pgrep >/dev/null; then
    return
  fi
  say "installing slurmctld slurmd slurm-client munge procps (apt)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge procps >/dev/null
}

start_munge() {
  if [[ ! -s /etc/munge/munge.key ]]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  if ! pgrep -x munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged
  fi
  for _ in $(seq 50); do munge -n </dev/null >/dev/null 2>&1 && return; sleep 0.1; done
  die "munged did not start (see /var/log/munge/munged.log)"
}

render_conf() {
  local host cpus mem
  host=$(hostname -s)
  cpus=$(nproc --all)
  mem=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
  cat <<CONF
# Written by olmotrain's scripts/slurm_cluster.sh: a one-node cluster on $host.
ClusterName=olmotrain
SlurmctldHost=$host
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldParameters=preempt_send_user_signal
ReturnToService=2
JobRequeue=1
KillWait=30
MinJobAge=600
MpiDefault=none
SchedulerType=sched/backfill
# A test cluster: schedule every few seconds (a requeued job waits for the next pass).
SchedulerParameters=sched_interval=5,bf_interval=5
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
}

write_conf() {  # returns 0 when the file changed
  mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
  local tmp
  tmp=$(mktemp)
  render_conf >"$tmp"
  if ! cmp -s "$tmp" "$CONF"; then
    mv "$tmp" "$CONF"
    chmod 644 "$CONF"
    return 0  # changed
  fi
  rm -f "$tmp"
  return 1
}

start() {
  if healthy && [[ -r "$CONF" ]] && cmp -s <(render_conf) "$CONF"; then
    say "already running (partition $PARTITION)"
    return
  fi
  need_root start
  install_packages
  start_munge
  if write_conf; then stop_daemons; fi
  pgrep -x slurmctld >/dev/null || slurmctld
  for _ in $(seq 50); do scontrol ping >/dev/null 2>&1 && break; sleep 0.2; done
  pgrep -x slurmd >/dev/null || slurmd
  local host
  host=$(hostname -s)
  for _ in $(seq 300); do
    if healthy; then say "running: partition $PARTITION on $host ($(nproc --all) CPUs)"; return; fi
    # A node left down/drained by an earlier run comes back.
    if timeout 5 sinfo -h -N -o '%t' 2>/dev/null | grep -qE 'down|drain'; then
      scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true
    fi
    sleep 0.2
  done
  die "the node did not become idle; see /var/log/slurm/slurmctld.log and slurmd.log"
}

stop_daemons() {
  local sig
  for sig in TERM KILL; do  # a slurmd that lost its controller can ignore TERM
    pkill "-$sig" -x slurmd 2>/dev/null || true
    pkill "-$sig" -x slurmctld 2>/dev/null || true
    for _ in $(seq 50); do
      if ! pgrep -x slurmd >/dev/null && ! pgrep -x slurmctld >/dev/null; then return 0; fi
      sleep 0.1
    done
  done
  die "slurmd/slurmctld did not stop"
}

stop() {
  need_root stop
  stop_daemons
  say "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if healthy; then say "running (partition $PARTITION)"; else say "not running"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
