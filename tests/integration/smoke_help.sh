#!/usr/bin/env bash
# smoke_help: every fz binary answers --help (exit 0, "Usage" on stdout) and --version
# (exit 0, something on stdout), and refuses an unknown flag with exit status 2 and a message
# on stderr. Needs no broker. Checks every binary and reports every problem before failing.

# shellcheck source=../lib/fzlib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/fzlib.sh"

BINARIES=(fz-broker fz-worker fz-submit fz-watch fz-ctl fz-web fz-keeper)
problems=()

# run BIN ARGS...: runs the binary from $FZ_TMP with a 10 s limit; sets rc, out, err.
# False (and a problem noted) if it had to be killed.
run() {
    local bin=$1
    shift
    rc=0
    (cd "$FZ_TMP" && timeout -k 2 10 "$FZ_BIN/$bin" "$@" >"$FZ_TMP/out" 2>"$FZ_TMP/err" \
        </dev/null) || rc=$?
    out=$(<"$FZ_TMP/out")
    err=$(<"$FZ_TMP/err")
    if ((rc == 124 || rc == 137)); then
        problems+=("$bin $*: did not exit within 10 s")
        return 1
    fi
}

for bin in "${BINARIES[@]}"; do
    if [[ ! -x $FZ_BIN/$bin ]]; then
        problems+=("$bin: missing ($FZ_BIN/$bin is not an executable file)")
        continue
    fi

    if run "$bin" --help; then
        ((rc == 0)) || problems+=("$bin --help: exit status $rc, expected 0")
        [[ ${out,,} == *usage* ]] || problems+=("$bin --help: no 'Usage' on stdout")
    fi

    if run "$bin" --version; then
        ((rc == 0)) || problems+=("$bin --version: exit status $rc, expected 0")
        [[ -n $out ]] || problems+=("$bin --version: nothing on stdout")
    fi

    if run "$bin" --no-such-flag-for-fz-smoke; then
        ((rc == 2)) || problems+=("$bin --no-such-flag-for-fz-smoke: exit status $rc, expected 2")
        [[ -n $err ]] || problems+=("$bin --no-such-flag-for-fz-smoke: nothing on stderr")
    fi
done

if ((${#problems[@]} > 0)); then
    printf '  %s\n' "${problems[@]}" >&2
    fz_fail "${#problems[@]} problem(s) with --help / --version / unknown flags (listed above)"
fi
echo "PASS: ${BINARIES[*]} answer --help, --version and refuse unknown flags"
