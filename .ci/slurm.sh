#!/usr/bin/env bash
# Start Slurm on this machine (one node, one partition) for the tests: munged, slurmctld, slurmd.
# Idempotent: a Slurm that already answers `sinfo` is reused. Needs root on a Debian machine
# (installs slurm-wlm and munge when missing). Prints the partition to use on its last line.
set -euo pipefail
PARTITION="${CUMULO_SLURM_PARTITION:-debug}"
STATE="${CUMULO_SLURM_STATE:-/var/lib/cumulo-slurm}"   # this script's own folder: state, logs, pids
CONF=/etc/slurm/slurm.conf

usable() {  # the partition of a node that takes work, if Slurm answers and has one
  timeout 5 sinfo -h -o '%P %t' 2>/dev/null | awk '$2 ~ /^(idle|mix|alloc|comp)/ {sub(/\*$/, "", $1); print $1; exit}'
}
ours() { [ -f "$CONF" ] && grep -q "written by cumulo's .ci/slurm.sh" "$CONF"; }
if command -v sinfo >/dev/null && [ -n "$(usable)" ] && { ! ours || { pgrep -x -r R,S,D slurmctld && pgrep -x -r R,S,D slurmd; } >/dev/null; }; then
  usable   # already running: reuse it
  exit 0
fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

# munge: one key, one daemon (run as the munge user, as Debian does)
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi
munge -n | unmunge >/dev/null

# slurm.conf: this machine's CPUs and (most of) its memory as one node
CPUS="$(nproc)"
MEM_MB="$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)"
mkdir -p "$STATE/ctld" "$STATE/d" /etc/slurm
if [ -f "$CONF" ] && ! ours; then
  echo "$CONF exists and was not written by this script: not replacing it" >&2; exit 1
fi
cat > "$CONF" <<CONF
# written by cumulo's .ci/slurm.sh
ClusterName=cumulo
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge=3600
KillWait=10
SlurmctldTimeout=30
SlurmdTimeout=60
MpiDefault=none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=$PARTITION Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF

pgrep -x -r R,S,D slurmctld >/dev/null || slurmctld
for _ in $(seq 100); do timeout 5 scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.1; done
pgrep -x -r R,S,D slurmd >/dev/null || slurmd -N localhost
for _ in $(seq 150); do
  state="$(timeout 5 sinfo -h -n localhost -o '%t' 2>/dev/null || true)"
  case "$state" in idle*|mix*|alloc*) break ;; down*|drain*) scontrol update NodeName=localhost State=RESUME 2>/dev/null || true ;; esac
  sleep 0.2
done
timeout 5 sinfo -h -n localhost -o '%t' | grep -Eq '^(idle|mix|alloc)' \
  || { echo "slurmd did not come up: see $STATE/slurmd.log and $STATE/slurmctld.log" >&2; exit 1; }
echo "$PARTITION"
