#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for tests/test_slurm.py (CI runs as root on
# Debian). `cluster.sh install` installs SLURM and munge from Debian, `cluster.sh start` boots
# munged, slurmctld and slurmd (two fake GPUs) and waits for the node, `cluster.sh stop` stops
# them by the PIDs in their pid files, `cluster.sh uninstall` removes what install and start
# added: the packages (if install added them) and the config files start wrote.
set -euo pipefail
STATE=${SLURM_TEST_STATE:-/tmp/slurm-test}
PACKAGES="slurmctld slurmd slurm-client munge"
INSTALLED=/var/tmp/slurm-test-installed  # outside $STATE, which start wipes

case "${1:-}" in
install)
  command -v slurmctld >/dev/null && exit 0
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $PACKAGES >/dev/null
  touch "$INSTALLED"
  ;;
uninstall)
  rm -f /etc/slurm/slurm.conf /etc/slurm/gres.conf
  rm -rf "$STATE"
  if [ -f "$INSTALLED" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq $PACKAGES >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get autoremove -y -qq --purge >/dev/null
    rm -f "$INSTALLED"
  fi
  ;;
start)
  "$0" stop  # a cluster left by an earlier run of this script
  if pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null; then
    echo "a slurmctld or slurmd not started by $0 is running: stop it first" >&2
    exit 1
  fi
  rm -rf "$STATE" && mkdir -p "$STATE"/{spool,state,log,dev} /run/munge
  chown munge:munge /run/munge
  runuser -u munge -- /usr/sbin/munged --force
  # SLURM checks that GPU "devices" are character devices; /dev/null's numbers do.
  mknod "$STATE/dev/nvidia0" c 1 3 && mknod "$STATE/dev/nvidia1" c 1 3
  host=$(hostname -s)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 2048 ))
  # The config must sit at /etc/slurm/slurm.conf: the jobstep plugin drops SLURM_CONF.
  cat > /etc/slurm/slurm.conf <<CONF
ClusterName=ci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MinJobAge=600
DefMemPerCPU=500
ReturnToService=2
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
GresTypes=gpu
NodeName=$host CPUs=$(nproc) RealMemory=$mem Gres=gpu:2 State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  echo "NodeName=$host Name=gpu File=$STATE/dev/nvidia[0-1]" > /etc/slurm/gres.conf
  slurmctld -i
  slurmd
  for _ in $(seq 60); do
    [ "$(sinfo -h -N -o %T 2>/dev/null)" = idle ] && exit 0
    sleep 1
  done
  echo "the SLURM node did not become idle" >&2
  sinfo -N -l >&2 || true
  exit 1
  ;;
stop)
  # Wait for each daemon to exit: a new one cannot bind the ports while the old one holds them.
  for pid_file in "$STATE/slurmd.pid" "$STATE/slurmctld.pid" /run/munge/munged.pid; do
    [ -f "$pid_file" ] || continue
    pid=$(cat "$pid_file")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  done
  ;;
*)
  echo "usage: $0 install|start|stop|uninstall" >&2
  exit 2
  ;;
esac
