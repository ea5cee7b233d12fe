#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for testing `cifarlab study --executor slurm` against a real Slurm:
# munged + slurmctld + slurmd on localhost, Debian's slurm-wlm and munge (installed with apt-get when missing).
#
#   benchmarks/slurm_local.sh start    # idempotent: a running cluster is left as it is
#   benchmarks/slurm_local.sh stop     # stops the daemons, removes the state and the slurm.conf it wrote
#   benchmarks/slurm_local.sh status
#
# The configuration works in a container: no cgroups (proctrack/linuxproc, task/none), cons_tres on cores with no
# memory enforcement, no accounting database (accounting_storage/none); finished jobs go to the job completion log
# (JobCompType=jobcomp/filetxt, $STATE/jobcomp.log) and stay in `scontrol show job` for MinJobAge (10 min).
# `stop` also ends munged when `start` started it. slurm.conf is written to /etc/slurm/slurm.conf (where every Slurm command looks) only when that file is absent
# or is one this script wrote: a real cluster's configuration is never replaced.
set -euo pipefail
STATE=${CIFARLAB_SLURM_DIR:-/var/tmp/cifarlab-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by cifarlab benchmarks/slurm_local.sh"

ours() { [[ -f $CONF ]] && head -1 "$CONF" | grep -qF "$MARK"; }
alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

install() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null && return
  echo "installing slurm-wlm and munge (apt-get)" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge) >/dev/null
}

write_conf() {
  local host cpus mem
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
  mkdir -p /etc/slurm "$STATE/spool" "$STATE/ctld" "$STATE/log"
  cat >"$CONF" <<CONF
$MARK
ClusterName=cifarlab-local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
JobRequeue=1
MinJobAge=600
KillWait=5
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/jobcomp.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
}

start() {
  if [[ -f $CONF ]] && ! ours; then
    echo "error: $CONF exists and was not written by this script (a real cluster?); not touching it" >&2
    exit 1
  fi
  if alive "$STATE/slurmctld.pid" && alive "$STATE/slurmd.pid" && sinfo -h >/dev/null 2>&1; then
    echo "slurm already running ($CONF)"
    return
  fi
  install
  write_conf
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge 2>/dev/null || true
  [[ -s /etc/munge/munge.key ]] || { mungekey --create >/dev/null 2>&1 || dd if=/dev/urandom bs=1 count=1024 \
    of=/etc/munge/munge.key 2>/dev/null; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
  if ! munge -n >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
    touch "$STATE/munged.ours"  # stop ends only a munged this script started
  fi
  alive "$STATE/slurmctld.pid" || slurmctld
  alive "$STATE/slurmd.pid" || slurmd
  for _ in $(seq 50); do  # the node registers within a second or two
    if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
      echo "slurm running: $(sinfo -h -o '%P %D %T %C')"
      return
    fi
    sleep 0.2
  done
  echo "error: the node did not come up; see $STATE/log/" >&2
  sinfo >&2 || true
  exit 1
}

stop() {
  scancel --quiet --user="$(id -un)" 2>/dev/null || true
  for d in slurmd slurmctld; do
    if alive "$STATE/$d.pid"; then
      pid=$(cat "$STATE/$d.pid")
      kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  done
  if [[ -f $STATE/munged.ours ]] && alive /run/munge/munged.pid; then
    kill "$(cat /run/munge/munged.pid)"
  fi
  ours && rm -f "$CONF"
  rm -rf "$STATE"
  echo "slurm stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) ours && sinfo && squeue || { echo "not running"; exit 1; } ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
