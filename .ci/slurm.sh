#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for the Slurm tests (tests/test_slurm.py):
#   .ci/slurm.sh start    install Debian's slurmctld slurmd slurm-client munge if missing (with
#                         apt-get), start munged, slurmctld and slurmd, wait for the node
#   .ci/slurm.sh stop     cancel what is left, stop the daemons this script started
#   .ci/slurm.sh status   exit 0 if the cluster answers and its node is up
# Everything it writes (slurm.conf, state, logs) lives in $SLURM_CI_DIR (default build/slurm);
# clients reach it with SLURM_CONF=$SLURM_CI_DIR/slurm.conf. No accounting database: submitit's
# `sacct` calls are answered by .ci/bin/sacct from squeue, which keeps finished jobs for MinJobAge.
# The daemons run as root: as root, or through passwordless sudo. Where Slurm cannot be installed
# or started, `start` says why and exits 0 (the tests then skip); with CI=true it exits 1, so CI
# never passes without having run them.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${SLURM_CI_DIR:-$ROOT/build/slurm}
CONF=$DIR/slurm.conf
NODE=ci
export SLURM_CONF=$CONF

say() { echo "slurm.sh: $*" >&2; }

if [ "$(id -u)" = 0 ]; then
    AS_ROOT=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    AS_ROOT=(sudo -n --preserve-env=SLURM_CONF)
else
    AS_ROOT=(false)  # no way to root: `start` gives up when it needs it
fi
as_root() { "${AS_ROOT[@]}" "$@"; }

give_up() {
    say "$*"
    if [ "${CI:-}" = true ]; then
        say "CI=true: the Slurm tests must run here; failing"
        exit 1
    fi
    say "the Slurm tests will be skipped"
    exit 0
}

have_slurm() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null
}

install_slurm() {
    have_slurm && return 0
    as_root true || give_up "Slurm is not installed, and installing it needs root or sudo (apt-get install slurmctld slurmd slurm-client munge)"
    command -v apt-get >/dev/null || give_up "Slurm is not installed and there is no apt-get to install it"
    say "installing slurmctld slurmd slurm-client munge with apt-get"
    local pkgs=(slurmctld slurmd slurm-client munge)
    export DEBIAN_FRONTEND=noninteractive
    if ! as_root apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >"$DIR/apt.log" 2>&1; then
        { as_root apt-get update -qq && as_root apt-get install -y -qq --no-install-recommends "${pkgs[@]}"; } >>"$DIR/apt.log" 2>&1 \
            || give_up "apt-get install ${pkgs[*]} failed (log: $DIR/apt.log)"
    fi
    have_slurm || give_up "apt-get installed the packages but slurmctld/slurmd/sbatch/munged are not on PATH"
}

node_up() {
    local state
    state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null) || return 1
    case "$state" in idle*|mixed*|allocated*|completing*) return 0 ;; *) return 1 ;; esac
}

start_munge() {
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        return 0  # a munged is already running
    fi
    as_root test -s /etc/munge/munge.key || as_root runuser -u munge -- mungekey --create >/dev/null 2>&1 \
        || give_up "no /etc/munge/munge.key and mungekey --create failed"
    # munged refuses to run as root with a log file root could be tricked into writing: run it as munge
    as_root install -d -o munge -g munge -m 0755 /run/munge
    as_root install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
    as_root runuser -u munge -- munged || give_up "munged did not start (see /var/log/munge/munged.log)"
    touch "$DIR/munged.ours"
}

write_conf() {
    local cpus mem host
    cpus=$(nproc)
    mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    host=$(hostname -s)
    mkdir -p "$DIR/state" "$DIR/spool"
    cat >"$CONF" <<EOF
# Written by .ci/slurm.sh: one node with this machine's CPUs, no accounting.
ClusterName=thesislib-ci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
# finished jobs stay visible to squeue (and so to .ci/bin/sacct) for a day
MinJobAge=86400
# scancel's SIGTERM is ignored by submitit's jobs: kill them 1 s later, not 30
KillWait=1
NodeName=$NODE NodeHostname=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
    mkdir -p "$DIR"
    if [ -f "$CONF" ] && node_up; then
        say "already running (SLURM_CONF=$CONF)"
        return 0
    fi
    install_slurm
    as_root true || give_up "starting slurmctld and slurmd needs root or passwordless sudo"
    start_munge
    write_conf
    as_root slurmctld -c -f "$CONF" || give_up "slurmctld did not start (log: $DIR/slurmctld.log)"
    as_root slurmd -c -f "$CONF" -N "$NODE" || give_up "slurmd did not start (log: $DIR/slurmd.log)"
    for _ in $(seq 1 60); do
        if node_up; then
            say "node $NODE up with $(nproc) CPUs (SLURM_CONF=$CONF)"
            return 0
        fi
        sleep 0.5
    done
    tail -n 5 "$DIR/slurmctld.log" "$DIR/slurmd.log" >&2 || true
    give_up "the node did not come up within 30 s (logs: $DIR/slurmctld.log, $DIR/slurmd.log)"
}

stop_pid() {  # stop_pid FILE: TERM the daemon whose pid FILE holds, wait up to 10 s
    local pid
    [ -f "$1" ] || return 0
    pid=$(cat "$1")
    if as_root kill "$pid" 2>/dev/null; then
        for _ in $(seq 1 50); do as_root kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        as_root kill -0 "$pid" 2>/dev/null && as_root kill -KILL "$pid" 2>/dev/null
    fi
    as_root rm -f "$1"
}

stop() {
    [ -f "$CONF" ] || return 0
    scancel --user "$(id -un)" 2>/dev/null || true
    stop_pid "$DIR/slurmd.pid"
    stop_pid "$DIR/slurmctld.pid"
    if [ -f "$DIR/munged.ours" ]; then
        stop_pid /run/munge/munged.pid
        rm -f "$DIR/munged.ours"
    fi
    say "stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) [ -f "$CONF" ] && node_up ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
