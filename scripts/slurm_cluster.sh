#!/usr/bin/env bash
# A real SLURM cluster on this machine, from Debian's packages, for olmotrain's cluster tests and
# for trying cluster=slurm without a cluster.
#
#   sudo scripts/slurm_cluster.sh start            # one node: this host; idempotent
#   sudo scripts/slurm_cluster.sh start --nodes 2  # two nodes n1, n2, each its own "host"
#   scripts/slurm_cluster.sh status                # exit 0 when sbatch can reach working nodes
#   sudo scripts/slurm_cluster.sh stop             # stop the daemons, remove what start made
#
# With --nodes N >= 2 every compute node is a host of its own: a network namespace (olmo-nI)
# with its own address (10.77.0.1I on a bridge, olmobr0, that this script creates), a UTS
# namespace with its own hostname (nI), and its own slurmd, started inside both. slurmctld runs
# in the host's namespace on the bridge's address 10.77.0.1; /etc/hosts gets the nodes' names
# (a marked block, removed by stop) so that a job's MASTER_ADDR (the first node) resolves. The
# file system is shared, as on a cluster's shared file system. Only loopback and these
# addresses are contacted. (SLURM's multiple-slurmd mode would give every node the same
# hostname and address: ranks on "two nodes" could not tell one host from the other.)
#
# One partition, "debug" (the default), with every core and 90% of the memory on each node.
# No accounting database: sacct does not work, squeue/scontrol do.
set -euo pipefail

NODES=1
if [[ "${2:-}" == "--nodes" ]]; then NODES=${3:?--nodes needs a number}; fi
[[ "$NODES" =~ ^[1-9][0-9]?$ ]] || { echo "slurm_cluster: --nodes must be 1..99" >&2; exit 2; }
BRIDGE=olmobr0
NET=10.77.0
HOSTS_BEGIN="# olmotrain slurm_cluster.sh nodes: begin"
HOSTS_END="# olmotrain slurm_cluster.sh nodes: end"
PARTITION=${OLMOTRAIN_SLURM_PARTITION:-debug}
CONF=/etc/slurm/slurm.conf

say() { echo "slurm_cluster: $*" >&2; }
die() { say "error: $*"; exit 1; }

healthy() {  # every node of the partition up (as many as asked, when asked)
  command -v sinfo >/dev/null 2>&1 || return 1
  local states
  states=$(timeout 10 sinfo -h -N -p "$PARTITION" -o '%t' 2>/dev/null) || return 1
  [[ -n "$states" ]] || return 1
  if [[ "${1:-}" ]] && [[ $(wc -l <<<"$states") -ne $1 ]]; then return 1; fi
  ! grep -qvE '^(idle|mix|alloc|comp)$' <<<"$states"
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

node_name() { if [[ $NODES -eq 1 ]]; then hostname -s; else echo "n$1"; fi; }
node_addr() { echo "$NET.$((10 + $1))"; }

render_conf() {
  local host cpus mem ctl nodes
  host=$(hostname -s)
  cpus=$(nproc --all)
  mem=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
  if [[ $NODES -eq 1 ]]; then
    ctl=$host
    nodes=$host
  else
    ctl="$host($NET.1)"
    nodes="n[1-$NODES]"
  fi
  cat <<CONF
# Written by olmotrain's scripts/slurm_cluster.sh: $NODES node(s) on $host.
ClusterName=olmotrain
SlurmctldHost=$ctl
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd/%n
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd-%n.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd-%n.log
SlurmctldParameters=preempt_send_user_signal
ReturnToService=2
JobRequeue=1
KillWait=60
MinJobAge=600
MpiDefault=none
SchedulerType=sched/backfill
# A test cluster: schedule every few seconds (a requeued job waits for the next pass), and
# declare a node that stops answering dead after 20 s rather than 5 minutes.
SchedulerParameters=sched_interval=5,bf_interval=5
SlurmdTimeout=20
CONF
  if [[ $NODES -eq 1 ]]; then
    echo "NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN"
  else
    local i
    for i in $(seq "$NODES"); do
      echo "NodeName=n$i NodeAddr=$(node_addr "$i") CPUs=$cpus RealMemory=$mem State=UNKNOWN"
    done
  fi
  echo "PartitionName=$PARTITION Nodes=$nodes Default=YES MaxTime=INFINITE State=UP"
}

make_network() {  # the bridge, one namespace per node, and the nodes' names in /etc/hosts
  command -v ip >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null
  command -v unshare >/dev/null || die "unshare (util-linux) is missing"
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$NET.1/24" dev "$BRIDGE"
  fi
  ip link set "$BRIDGE" up
  local i ns
  for i in $(seq "$NODES"); do
    ns=olmo-n$i
    if ! ip netns list | grep -qx "$ns\( .*\)\?"; then
      ip netns add "$ns"
      ip link add "olmo-v$i" type veth peer name eth0 netns "$ns"
      ip link set "olmo-v$i" master "$BRIDGE" up
      ip -n "$ns" addr add "$(node_addr "$i")/24" dev eth0
      ip -n "$ns" link set eth0 up
      ip -n "$ns" link set lo up
    fi
  done
  remove_hosts
  {
    echo "$HOSTS_BEGIN"
    for i in $(seq "$NODES"); do echo "$(node_addr "$i") n$i"; done
    echo "$HOSTS_END"
  } >>/etc/hosts
}

remove_hosts() {  # /etc/hosts may be a bind mount: edit it in place, never replace it
  if grep -qF "$HOSTS_BEGIN" /etc/hosts; then
    local kept
    kept=$(sed "/^$HOSTS_BEGIN\$/,/^$HOSTS_END\$/d" /etc/hosts)
    printf '%s\n' "$kept" >/etc/hosts
  fi
}

remove_network() {
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '/^olmo-n[0-9]+/ {print $1}'); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    ip netns del "$ns"
  done
  if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE"; fi
  remove_hosts
}

start_slurmds() {
  if [[ $NODES -eq 1 ]]; then
    mkdir -p "/var/spool/slurmd/$(hostname -s)"
    pgrep -x slurmd >/dev/null || slurmd
    return
  fi
  local i
  for i in $(seq "$NODES"); do
    mkdir -p "/var/spool/slurmd/n$i"
    if ! pgrep -f "^slurmd -N n$i\$" >/dev/null; then
      # Its own network (the namespace) and its own hostname (a new UTS namespace).
      # nsenter, not `ip netns exec`: that remounts /sys, hiding the cgroup fs slurmd reads.
      nsenter --net="/run/netns/olmo-n$i" unshare --uts sh -c "hostname n$i && exec slurmd -N n$i"
    fi
  done
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
  if healthy "$NODES" && [[ -r "$CONF" ]] && cmp -s <(render_conf) "$CONF"; then
    say "already running (partition $PARTITION, $NODES node(s))"
    return
  fi
  need_root start
  install_packages
  start_munge
  if write_conf; then stop_daemons; fi
  if [[ $NODES -gt 1 ]]; then make_network; else remove_network; fi
  pgrep -x slurmctld >/dev/null || slurmctld
  for _ in $(seq 50); do scontrol ping >/dev/null 2>&1 && break; sleep 0.2; done
  start_slurmds
  local names
  names=$(for i in $(seq "$NODES"); do node_name "$i"; done | paste -sd,)
  for _ in $(seq 300); do
    if healthy "$NODES"; then
      say "running: partition $PARTITION on $names ($(nproc --all) CPUs each)"
      return
    fi
    # A node left down/drained by an earlier run (or a node killed by a test) comes back.
    if timeout 5 sinfo -h -N -o '%t' 2>/dev/null | grep -qE 'down|drain'; then
      scontrol update NodeName="$names" State=RESUME >/dev/null 2>&1 || true
    fi
    sleep 0.2
  done
  die "the nodes did not become idle; see /var/log/slurm/slurmctld.log and slurmd-*.log"
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
  remove_network
  say "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status)
    if healthy; then
      say "running (partition $PARTITION: $(sinfo -h -p "$PARTITION" -o '%D node(s) %N'))"
    else
      say "not running"; exit 1
    fi ;;
  *) echo "usage: $0 start [--nodes N]|stop|status" >&2; exit 2 ;;
esac
