#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for tests/test_slurm.py and CI (Debian, as root).
#
#   .ci/slurm-localhost.sh start   # install slurm-wlm + munge if missing, configure, start,
#                                  # wait until the node is up; prints "started" or "running"
#   .ci/slurm-localhost.sh stop    # stop slurmctld and slurmd (by their pid files)
#
# Works without systemd: munged (as the munge user), slurmctld and slurmd are started by hand.
# The node is named after `hostname -s`, has the machine's CPUs and memory (`slurmd -C`) and two
# fake GPUs (gres on /dev/zero and /dev/full), so `--gpus=N` jobs schedule and see
# CUDA_VISIBLE_DEVICES. Partitions `cpu` (default) and `gpu` are those that
# workflow/profiles/slurm names. No accounting database: job states come from squeue, which
# shows finished jobs for MinJobAge seconds.
# Exit status: 0 ready; 2 cannot run here (the reason on stderr); 1 the daemons did not come up.
set -euo pipefail

CONF_DIR=/etc/slurm
STATE=/var/spool/slurm
LOGS=/var/log/slurm
RUN=/run/uvis-slurm
NODE=$(hostname -s)

die() {
    echo "slurm-localhost: $2" >&2
    exit "$1"
}

node_state() {
    sinfo --noheader --Node --format=%T 2>/dev/null | head -n 1
}

running() {
    [ -s "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null
}

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
        command -v munged >/dev/null; then
        return
    fi
    command -v apt-get >/dev/null || die 2 "apt-get not found (Debian/Ubuntu only)"
    export DEBIAN_FRONTEND=noninteractive
    # Wait for another apt/dpkg run to finish rather than fail on its lock.
    local apt=(apt-get -q -o DPkg::Lock::Timeout=600)
    if ! "${apt[@]}" install -y slurm-wlm munge >/dev/null 2>&1; then
        "${apt[@]}" update >/dev/null 2>&1 || die 2 "apt-get update failed (no package repository?)"
        "${apt[@]}" install -y slurm-wlm munge >/dev/null ||
            die 2 "apt-get install slurm-wlm munge failed"
    fi
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        return
    fi
    [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 20); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return
        sleep 0.5
    done
    die 1 "munged did not start"
}

slurm_conf() {
    # "NodeName=<host> CPUs=.. Boards=.. SocketsPerBoard=.. ... RealMemory=..": this machine.
    local node_line
    node_line=$(slurmd -C | head -n 1)
    [[ $node_line == NodeName=* ]] || die 1 "slurmd -C printed no node line: $node_line"
    cat <<EOF
# Written by uvis .ci/slurm-localhost.sh: a one-node test cluster.
ClusterName=uvis-localhost
SlurmctldHost=$NODE
SlurmUser=root
AuthType=auth/munge
# A requeued job waits cred_expire seconds before it starts again (default 120).
AuthInfo=cred_expire=10
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=300
ReturnToService=2
GresTypes=gpu
$node_line Gres=gpu:2 State=UNKNOWN
PartitionName=cpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=ALL MaxTime=INFINITE State=UP
EOF
}

gres_conf() {
    cat <<EOF
# Two fake GPUs: devices that exist everywhere, so jobs get CUDA_VISIBLE_DEVICES.
AutoDetect=off
Name=gpu File=/dev/zero
Name=gpu File=/dev/full
EOF
}

cgroup_conf() {
    cat <<EOF
# No cgroup plugin is used (proctrack/linuxproc, task/none): nothing to constrain.
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=no
EOF
}

# Write the configuration; exit status 0 when a file changed.
write_config() {
    local changed=1 name text
    install -d "$CONF_DIR" "$STATE/ctld" "$STATE/d" "$LOGS" "$RUN"
    for name in slurm gres cgroup; do
        text=$("${name}_conf")
        if [ "$text" != "$(cat "$CONF_DIR/$name.conf" 2>/dev/null)" ]; then
            printf '%s\n' "$text" >"$CONF_DIR/$name.conf"
            changed=0
        fi
    done
    return "$changed"
}

start() {
    local what=running
    [ "$(id -u)" = 0 ] || die 2 "needs root (installs packages, starts daemons)"
    [ -r /etc/debian_version ] || die 2 "not a Debian system"
    install_packages
    start_munge
    if write_config && running slurmctld; then
        scontrol reconfigure
    fi
    if ! running slurmctld; then
        slurmctld
        what=started
    fi
    if ! running slurmd; then
        slurmd
        what=started
    fi
    for _ in $(seq 60); do
        case $(node_state) in
        idle* | mix* | alloc*)
            echo "$what"
            return
            ;;
        down* | drain*)
            scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true
            ;;
        esac
        sleep 1
    done
    tail -n 20 "$LOGS/slurmctld.log" "$LOGS/slurmd.log" >&2 || true
    die 1 "node $NODE not up after 60 s (sinfo: $(node_state))"
}

stop() {
    local name
    for name in slurmd slurmctld; do
        if running "$name"; then
            kill "$(cat "$RUN/$name.pid")"
        fi
    done
}

case ${1:-} in
start) start ;;
stop) stop ;;
*) die 2 "usage: $0 start|stop" ;;
esac
