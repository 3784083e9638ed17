# tests/lib/fzlib.sh: helpers for the integration tests in tests/integration/. Source it,
# do not run it:
#
#     . "$(dirname "${BASH_SOURCE[0]}")/../lib/fzlib.sh"
#
# On sourcing it turns on `set -Eeuo pipefail`, makes a private temp dir $FZ_TMP and points
# FZ_BROKER / FZ_EVENTS at ipc endpoints inside it (and FZ_STATE at $FZ_TMP/state), so tests
# never touch the default TCP ports, the working directory, or each other. On exit (normal, failure or signal) it stops every process it started,
# then any process of ours that still refers to $FZ_TMP (an agent, a grandchild), prints the
# tail of the logs if the test failed, and removes $FZ_TMP. It never signals a process that
# it did not start or that does not refer to $FZ_TMP.
#
# Needs FZ_BIN, the directory of the fz binaries (ctest sets it, with FZ_SRC).
#
#   fz_start_broker [ARGS]        fz-broker --bind $FZ_BROKER --events $FZ_EVENTS
#                                 --db $FZ_TMP/fz.db ARGS, in the background (log:
#                                 $FZ_TMP/broker.log); returns once `fz-ctl ping` answers.
#                                 Sets FZ_BROKER_PID.
#   fz_start_worker NAME [ARGS]   fz-worker --name NAME ARGS in the background (log:
#                                 $FZ_TMP/worker-NAME.log). Sets FZ_LAST_PID.
#   fz_spawn LOGNAME CMD...       any command, in the background, tracked like the above.
#   fz_kill PID [SIG]             signal (default TERM) a process this test started.
#   fz_wait_exit PID [SECS]       wait for a started process to exit; sets FZ_STATUS.
#   fz_wait_for [-t SECS] CMD...  run CMD every 0.1 s until it succeeds; after SECS (default
#                                 $FZ_WAIT_TIMEOUT = 20) print what timed out and return 1.
#                                 CMD should not block: wrap clients in `timeout`.
#   fz_fail MSG                   print "FAIL: MSG (file:line)" and exit 1.
#   fz_assert_eq ACTUAL EXPECTED MSG
#
# Knobs (environment): FZ_WAIT_TIMEOUT, FZ_START_TIMEOUT (30), FZ_STOP_GRACE (10 s between
# TERM and KILL at cleanup), FZ_KEEP_TMP=1 (keep $FZ_TMP), FZ_LEAK_FATAL=0 (do not fail the
# test when a process outlives a clean shutdown).

# shellcheck shell=bash disable=SC2034  # FZ_* variables are set for the tests that source this

if [[ -n ${FZ_LIB_LOADED:-} ]]; then
    return 0
fi
FZ_LIB_LOADED=1
FZ_LIB_FILE=${BASH_SOURCE[0]}

set -Eeuo pipefail

: "${FZ_WAIT_TIMEOUT:=20}" "${FZ_START_TIMEOUT:=30}" "${FZ_STOP_GRACE:=10}"
: "${FZ_KEEP_TMP:=0}" "${FZ_LEAK_FATAL:=1}"

FZ_PIDS=()         # every process started through this file
FZ_BROKER_PID=""
FZ_LAST_PID=""
FZ_STATUS=""

# ---------------------------------------------------------------- failing clearly

# file:line of the first caller outside this file.
s_fz_where() {
    local i
    for ((i = 1; i < ${#BASH_SOURCE[@]}; i++)); do
        if [[ ${BASH_SOURCE[i]} != "$FZ_LIB_FILE" ]]; then
            printf '%s:%s' "${BASH_SOURCE[i]}" "${BASH_LINENO[i - 1]}"
            return
        fi
    done
    printf '?'
}

fz_fail() {
    printf 'FAIL: %s (%s)\n' "$*" "$(s_fz_where)" >&2
    exit 1
}

fz_assert_eq() {
    if [[ $1 != "$2" ]]; then
        fz_fail "${3:-values differ}: expected '$2', got '$1'"
    fi
}

# A command that fails under `set -e` says which one, where, and with what status.
s_fz_on_err() {
    local rc=$1 cmd=$2
    if [[ $cmd == return* ]]; then # a function failed: it has said why
        printf 'FAIL: a function returned status %s (%s)\n' "$rc" "$(s_fz_where)" >&2
    else
        printf 'FAIL: command exited with status %s: %s (%s)\n' "$rc" "$cmd" "$(s_fz_where)" >&2
    fi
}
trap 's_fz_on_err $? "$BASH_COMMAND"' ERR

# ---------------------------------------------------------------- set-up

if [[ -z ${FZ_BIN:-} ]]; then
    echo "FAIL: FZ_BIN is not set (run through ctest, or export FZ_BIN=<build>/bin)" >&2
    exit 1
fi
if [[ -d $FZ_BIN ]]; then
    FZ_BIN=$(cd "$FZ_BIN" && pwd)
fi
export FZ_BIN

# ipc paths must fit in sun_path (107 bytes): fall back to /tmp if TMPDIR is long.
s_fz_base=${TMPDIR:-/tmp}
if ((${#s_fz_base} > 60)); then
    s_fz_base=/tmp
fi
FZ_TMP=$(mktemp -d "$s_fz_base/fz-test.XXXXXXXX")
export FZ_TMP
export FZ_BROKER="ipc://$FZ_TMP/broker.sock"
export FZ_EVENTS="ipc://$FZ_TMP/events.sock"
export FZ_STATE="$FZ_TMP/state" # default home of the database and the workers' folders

# ---------------------------------------------------------------- processes

# True if PID exists and is not a zombie (kill -0 succeeds on an unreaped zombie).
s_fz_alive() {
    local stat
    [[ -r /proc/$1/stat ]] || return 1
    read -r stat <"/proc/$1/stat" 2>/dev/null || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

s_fz_tracked() {
    local p
    for p in "${FZ_PIDS[@]}"; do
        [[ $p == "$1" ]] && return 0
    done
    return 1
}

fz_spawn() {
    local log=$1
    shift
    "$@" >>"$FZ_TMP/$log.log" 2>&1 </dev/null &
    FZ_LAST_PID=$!
    FZ_PIDS+=("$FZ_LAST_PID")
}

s_fz_need() {
    local b
    for b in "$@"; do
        [[ -x $FZ_BIN/$b ]] || fz_fail "$FZ_BIN/$b is missing or not executable"
    done
}

fz_start_broker() {
    s_fz_need fz-broker fz-ctl
    fz_spawn broker "$FZ_BIN/fz-broker" --bind "$FZ_BROKER" --events "$FZ_EVENTS" \
        --db "$FZ_TMP/fz.db" "$@"
    FZ_BROKER_PID=$FZ_LAST_PID
    local deadline=$((SECONDS + FZ_START_TIMEOUT))
    # ping bounded by `timeout`: fz-ctl must not hang the test if the broker does.
    until timeout -k 1 5 "$FZ_BIN/fz-ctl" ping >/dev/null 2>&1; do
        if ! s_fz_alive "$FZ_BROKER_PID"; then
            local rc=0
            wait "$FZ_BROKER_PID" || rc=$?
            fz_fail "fz-broker exited with status $rc during start-up (log below)"
        fi
        ((SECONDS < deadline)) ||
            fz_fail "fz-broker did not answer 'fz-ctl ping' within ${FZ_START_TIMEOUT}s"
        sleep 0.1
    done
}

fz_start_worker() {
    local name=${1:?fz_start_worker NAME [ARGS]}
    shift
    s_fz_need fz-worker
    fz_spawn "worker-$name" "$FZ_BIN/fz-worker" --name "$name" "$@"
}

fz_kill() {
    local pid=${1:?fz_kill PID [SIG]} sig=${2:-TERM}
    s_fz_tracked "$pid" || fz_fail "fz_kill: $pid was not started by this test"
    kill -s "$sig" "$pid"
}

fz_wait_exit() {
    local pid=${1:?fz_wait_exit PID [SECS]} secs=${2:-$FZ_WAIT_TIMEOUT}
    s_fz_tracked "$pid" || fz_fail "fz_wait_exit: $pid was not started by this test"
    local deadline=$((SECONDS + secs))
    while s_fz_alive "$pid"; do
        ((SECONDS < deadline)) || fz_fail "process $pid still running after ${secs}s"
        sleep 0.1
    done
    FZ_STATUS=0
    wait "$pid" || FZ_STATUS=$?
}

fz_wait_for() {
    local secs=$FZ_WAIT_TIMEOUT
    if [[ ${1:-} == -t ]]; then
        secs=$2
        shift 2
    fi
    local deadline=$((SECONDS + secs))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            printf 'fz_wait_for: timed out after %ss waiting for: %s\n' "$secs" "$*" >&2
            return 1
        fi
        sleep 0.1
    done
}

# ---------------------------------------------------------------- cleanup

# True if process dir $1 has $FZ_TMP in its command line or environment. Builtins only, so
# the scan never finds itself.
s_fz_refers() {
    local word
    while IFS= read -r -d '' word || [[ -n $word ]]; do
        [[ $word == *"$FZ_TMP"* ]] && return 0
    done 2>/dev/null <"$1/cmdline"
    while IFS= read -r -d '' word || [[ -n $word ]]; do
        [[ $word == *"$FZ_TMP"* ]] && return 0
    done 2>/dev/null <"$1/environ"
    return 1
}

# Fills S_FZ_STRAYS with our processes (not this shell) that refer to $FZ_TMP.
s_fz_find_strays() {
    local d pid
    S_FZ_STRAYS=()
    for d in /proc/[0-9]*; do
        pid=${d#/proc/}
        [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
        [[ -O $d ]] || continue
        s_fz_alive "$pid" || continue
        s_fz_refers "$d" && S_FZ_STRAYS+=("$pid")
    done
    return 0
}

# TERM the given PIDs, wait up to $1 seconds, KILL what is left. Sets S_FZ_KILLED to the
# PIDs that needed KILL.
s_fz_stop() {
    local grace=$1 pid deadline
    shift
    S_FZ_KILLED=()
    for pid in "$@"; do
        s_fz_alive "$pid" && kill -TERM "$pid" 2>/dev/null
    done
    deadline=$((SECONDS + grace))
    for pid in "$@"; do
        while s_fz_alive "$pid" && ((SECONDS < deadline)); do
            sleep 0.1
        done
        if s_fz_alive "$pid"; then
            kill -KILL "$pid" 2>/dev/null
            S_FZ_KILLED+=("$pid")
        fi
    done
    return 0
}

s_fz_cmdline() {
    local word line=""
    while IFS= read -r -d '' word || [[ -n $word ]]; do
        line+="$word "
    done 2>/dev/null <"/proc/$1/cmdline"
    printf '%s' "${line:-?}"
}

fz_cleanup() {
    local rc=$? pid f
    set +eE
    trap - ERR
    # 1. What we started: TERM, grace, KILL; then reap.
    s_fz_stop "$FZ_STOP_GRACE" "${FZ_PIDS[@]}"
    local graceful=$((${#S_FZ_KILLED[@]} == 0))
    for pid in "${S_FZ_KILLED[@]}"; do
        echo "cleanup: process $pid ignored TERM for ${FZ_STOP_GRACE}s; killed" >&2
    done
    for pid in "${FZ_PIDS[@]}"; do
        wait "$pid" 2>/dev/null
    done
    # 2. Anything else of ours still referring to $FZ_TMP (agents, grandchildren), once
    #    processes that are just exiting have had a second to go.
    local tries=10
    s_fz_find_strays
    while ((${#S_FZ_STRAYS[@]} > 0 && tries-- > 0)); do
        sleep 0.1
        s_fz_find_strays
    done
    if ((${#S_FZ_STRAYS[@]} > 0)); then
        for pid in "${S_FZ_STRAYS[@]}"; do
            echo "cleanup: process $pid outlived the test: $(s_fz_cmdline "$pid")" >&2
        done
        s_fz_stop 2 "${S_FZ_STRAYS[@]}"
        if ((rc == 0 && graceful && FZ_LEAK_FATAL)); then
            echo "FAIL: processes outlived a clean shutdown of everything the test started" >&2
            rc=1
        fi
    fi
    # 3. Logs, when the test failed.
    if ((rc != 0)); then
        for f in "$FZ_TMP"/*.log; do
            [[ -s $f ]] || continue
            echo "---- last 40 lines of ${f##*/} ----" >&2
            tail -n 40 "$f" >&2
        done
    fi
    # 4. The temp dir.
    if [[ $FZ_KEEP_TMP == 1 ]]; then
        echo "cleanup: kept $FZ_TMP" >&2
    elif [[ $FZ_TMP == */fz-test.* ]]; then
        rm -rf -- "$FZ_TMP"
    fi
    exit "$rc"
}

trap fz_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
