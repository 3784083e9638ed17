"""What fz-worker puts on the wire about failures, checked against a fake broker (a ROUTER
of this test, no fz-broker): heartbeats of a running attempt carry idle_ms and the cache
tokens; results carry class (absent on success), reset_at and retry_after when reported,
the cache tokens, and fz_vocab's outcome names; a rejected dispatch gets every result field;
stall_kill stops a silent agent (simulated and real) as "stalled"; an agent that exits 127
makes the worker say in its log that the command is not installed; a draining worker pings
after its draining heartbeat and runs a dispatch that arrives before the pong (the broker sent
it before it heard of the drain) instead of leaving without a word about it."""
import os
import signal
import sys
import time

import msgpack
import zmq

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fzharness as h  # noqa: E402

# Every field PROTOCOL.md §5 lists for a result, but the optional ones.
RESULT_FIELDS = ("task", "attempt", "outcome", "exit_code", "signal", "duration_ms", "cost_usd",
                 "tokens_in", "tokens_out", "model", "summary", "output", "log",
                 "tokens_cache_read", "tokens_cache_write")


class FakeBroker:
    """A ROUTER that welcomes workers, answers their heartbeats, acknowledges results and
    records what they sent."""

    def __init__(self, endpoint):
        self.sock = zmq.Context.instance().socket(zmq.ROUTER)
        self.sock.linger = 0
        self.sock.bind(endpoint)
        self.peers = {}  # worker name -> routing id
        self.seen = []  # (name, message)

    def send(self, peer, type_, **fields):
        fields.update(v=1, type=type_)
        self.sock.send_multipart([self.peers[peer], msgpack.packb(fields, use_bin_type=True)])

    def pump(self, timeout):
        """Handles what arrives within timeout seconds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(int(left * 1000) + 1):
                return
            rid, frame = self.sock.recv_multipart()
            m = msgpack.unpackb(frame, raw=False)
            name = m.get("name") if m["type"] == "hello" else next(
                (n for n, r in self.peers.items() if r == rid), "?")
            self.seen.append((name, m))
            if m["type"] == "hello":
                self.peers[name] = rid
                self.send(name, "welcome", heartbeat_ms=200, name=name)
            elif m["type"] == "heartbeat":
                self.send(name, "heartbeat")
            elif m["type"] == "result":
                self.send(name, "result-ack", task=m["task"], attempt=m["attempt"])

    def wait(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            for name, m in self.seen:
                if pred(name, m):
                    return m
            if time.monotonic() > deadline:
                raise h.TestFailure("timed out after %.1f s waiting for %s" % (timeout, what))
            self.pump(0.05)

    def result(self, name, task, timeout=15):
        return self.wait(lambda n, m: n == name and m["type"] == "result" and m["task"] == task,
                         timeout, "the result of task %d from %s" % (task, name))

    def heartbeats(self, name, task):
        return [m for n, m in self.seen if n == name and m["type"] == "heartbeat"
                and m.get("task") == task]


def dispatch(fb, name, task, labels=None, **fields):
    msg = dict(task=task, attempt=1, prompt="p", model="", timeout=0, max_cost=0.0, kill_grace=1,
               labels=labels or {})
    msg.update(fields)
    fb.send(name, "dispatch", **msg)


def check_fields(r, what):
    missing = [k for k in RESULT_FIELDS if k not in r]
    h.check(not missing, "%s: result without %s: %s" % (what, missing, r))


def dry_worker(f, fb):
    f.start_worker("dry", "--broker", f.broker_ep, "--heartbeat", "200", dry_run=True)
    fb.wait(lambda n, m: n == "dry" and m["type"] == "hello", 10, "the dry worker's hello")

    # A simulated rate limit: class, reset time, retry hint and cache tokens on the result.
    reset_at = int(time.time()) + 3600
    dispatch(fb, "dry", 1, {"dry.duration": "0.6", "dry.exit": "1", "dry.class": "rate-limit",
                            "dry.reset-at": str(reset_at), "dry.retry-after": "30",
                            "dry.tokens-cache-read": "5000", "dry.tokens-cache-write": "70"})
    r = fb.result("dry", 1)
    check_fields(r, "rate limit")
    h.check(r["outcome"] == "exited" and r["exit_code"] == 1, "rate limit: %s" % r)
    h.check(r.get("class") == "rate-limit", "rate limit class: %s" % r)
    h.check(r.get("reset_at") == reset_at and r.get("retry_after") == 30, "rate limit times: %s" % r)
    h.check(r["tokens_cache_read"] == 5000 and r["tokens_cache_write"] == 70, "cache tokens: %s" % r)
    hb = fb.heartbeats("dry", 1)
    h.check(hb, "no heartbeat while task 1 ran")
    for m in hb:
        h.check(all(k in m for k in ("idle_ms", "tokens_cache_read", "tokens_cache_write")),
                "heartbeat of a running attempt without idle_ms or cache tokens: %s" % m)
        h.check(m["idle_ms"] < 400, "a busy simulation looks idle: %s" % m)

    # A simulation that goes silent is stopped at stall_kill; the heartbeats show it idle.
    # A dispatch meanwhile is rejected with every result field.
    dispatch(fb, "dry", 2, {"dry.duration": "30", "dry.silent-after": "0.2"}, stall=1, stall_kill=2)
    fb.wait(lambda n, m: n == "dry" and m["type"] == "started" and m["task"] == 2, 5, "task 2 start")
    dispatch(fb, "dry", 3)
    r = fb.result("dry", 3)
    check_fields(r, "rejected")
    h.check(r["outcome"] == "rejected" and "class" not in r, "rejected: %s" % r)
    r = fb.result("dry", 2)
    check_fields(r, "stalled")
    h.check(r["outcome"] == "stalled" and r.get("class") == "stalled", "stalled: %s" % r)
    h.check(2100 <= r["duration_ms"] < 4000, "stalled after %s ms" % r["duration_ms"])
    idle = [m["idle_ms"] for m in fb.heartbeats("dry", 2)]
    h.check(idle and max(idle) >= 1000, "idle_ms of a silent simulation: %s" % idle)

    # Exit 127: agent-missing, and the worker says so in its log.
    dispatch(fb, "dry", 4, {"dry.duration": "0", "dry.exit": "127"})
    r = fb.result("dry", 4)
    h.check(r.get("class") == "agent-missing", "exit 127: %s" % r)
    # A success has no class and no reset time.
    dispatch(fb, "dry", 5, {"dry.duration": "0", "dry.class": "quota", "dry.reset-at": "5"})
    r = fb.result("dry", 5)
    check_fields(r, "success")
    h.check(r["outcome"] == "exited" and r["exit_code"] == 0, "success: %s" % r)
    h.check(not any(k in r for k in ("class", "reset_at", "retry_after")), "success: %s" % r)
    with open(os.path.join(f.dir, "worker-dry.log"), errors="replace") as log:
        text = log.read()
    h.check("is not installed or not runnable" in text, "no agent-missing warning in the log")
    h.check("no output or report line for" in text, "no stall line in the log")


def real_worker(f, fb):
    f.start_worker("real", "--broker", f.broker_ep, "--heartbeat", "200",
                   agent="echo started; sleep 30")
    fb.wait(lambda n, m: n == "real" and m["type"] == "hello", 10, "the real worker's hello")
    dispatch(fb, "real", 6, stall_kill=1)
    r = fb.result("real", 6)
    check_fields(r, "real stalled")
    h.check(r["outcome"] == "stalled" and r.get("class") == "stalled", "real stalled: %s" % r)
    h.check(b"started" in r["output"], "the stalled agent's output: %r" % r["output"])
    h.check(900 <= r["duration_ms"] < 4000, "real stall after %s ms" % r["duration_ms"])


def drain_race(f, fb):
    """The dispatch the broker sent just before the draining heartbeat reached it (it-resilience
    saw the worker leave instead, and the attempt end as lost)."""
    w = f.start_worker("drainer", "--broker", f.broker_ep, "--heartbeat", "200", dry_run=True)
    fb.wait(lambda n, m: n == "drainer" and m["type"] == "hello", 10, "the draining worker's hello")
    w.send_signal(signal.SIGUSR1)
    fb.wait(lambda n, m: n == "drainer" and m["type"] == "heartbeat" and m.get("draining"), 5,
            "the draining heartbeat")
    ping = fb.wait(lambda n, m: n == "drainer" and m["type"] == "ping", 5, "the drain's ping")
    dispatch(fb, "drainer", 7, {"dry.duration": "0.3"})
    fb.send("drainer", "pong", rid=ping["rid"], version=1, broker="fake")
    r = fb.result("drainer", 7)
    h.check(r["outcome"] == "exited" and r["exit_code"] == 0, "the late dispatch did not run: %s" % r)
    t = time.monotonic()
    while w.poll() is None and time.monotonic() < t + 10:
        fb.pump(0.05)
    h.check(w.poll() == 0, "the draining worker did not leave after its task: %s" % w.poll())
    f.procs.pop(w.pid, None)
    h.check(any(n == "drainer" and m["type"] == "bye" for n, m in fb.seen), "no bye from the drainer")


def body(f):
    fb = FakeBroker(f.broker_ep)
    try:
        dry_worker(f, fb)
        real_worker(f, fb)
        drain_race(f, fb)
        fb.pump(0.3)  # the last acknowledgements out
    finally:
        # the workers leave at once on SIGTERM: nothing runs and every result was acknowledged
        for p, label in list(f.procs.values()):
            f.kill(p, wait=False)
        t = time.monotonic()
        while any(p.poll() is None for p, _ in f.procs.values()) and time.monotonic() < t + 10:
            fb.pump(0.05)
        fb.sock.close()


h.run("worker_wire", body)
