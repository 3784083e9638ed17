#!/usr/bin/env bash
# hostile_logs: what peers send cannot forge the broker's log or exhaust its descriptors.
# - A worker named with a CR, LF and an ANSI escape (from hostile_peer.py-like raw msgpack,
#   sent here by the Python client library's encoder) shows up escaped in broker.log: the
#   log has no raw control character and no forged line.
# - Started with a soft open-files limit of 1024 under a hard limit of 8192, the broker
#   raises its soft limit to the hard one (every peer takes a descriptor) and says so if low.

# shellcheck source=../lib/fzlib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/fzlib.sh"

fz_spawn broker prlimit --nofile=1024:8192 "$FZ_BIN/fz-broker" --bind "$FZ_BROKER" \
    --events "$FZ_EVENTS" --db "$FZ_TMP/fz.db"
broker_pid=$FZ_LAST_PID
fz_wait_for timeout 5 "$FZ_BIN/fz-ctl" ping >/dev/null
# prlimit execs the broker: the pid is the broker's.
soft=$(awk '/Max open files/ {print $4}' "/proc/$broker_pid/limits")
fz_assert_eq "$soft" 8192 "soft open-files limit after start"

/usr/bin/python3 - "$FZ_BROKER" <<'PY'
import sys, zmq, msgpack
ctx = zmq.Context()
s = ctx.socket(zmq.DEALER)
s.connect(sys.argv[1])
name = "evil\r\n12:00:00 fz-broker[1] info: root\x1b[2K\x1b]0;x\x07\xc2\x9b"
s.send(msgpack.packb({"v": 1, "type": "hello", "rid": 1, "name": name, "nonce": "n"}))
s.send(msgpack.packb({"v": 1, "type": "no\rsuch\ntype", "rid": 2}))
s.RCVTIMEO = 5000
s.recv()
s.recv()
s.close(0)
ctx.term()
PY
fz_wait_for grep -q 'evil' "$FZ_TMP/broker.log"
if LC_ALL=C grep -q $'[\x01-\x08\x0b-\x1f\x7f]' "$FZ_TMP/broker.log"; then
    fz_fail "broker.log holds a raw control character: $(cat -v "$FZ_TMP/broker.log")"
fi
if grep -q $'\xc2\x9b' "$FZ_TMP/broker.log"; then
    fz_fail "broker.log holds a raw C1 control character"
fi
if grep -q '^12:00:00 fz-broker\[1\]' "$FZ_TMP/broker.log"; then
    fz_fail "a peer forged a log line"
fi
grep -q 'evil\\x0d\\x0a12:00:00' "$FZ_TMP/broker.log" || fz_fail "the name is not shown escaped"
echo "PASS hostile_logs"
