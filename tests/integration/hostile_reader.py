"""A peer that asks and never reads (issue 12's first failure): with 1,000 tasks stored, a
client whose receive queue holds one message sends 2,000 `list` requests (about 0.8 MB of
reply each, 1.6 GB in all) and reads none. Before, the broker queued every reply for it
(about 2 GiB of RSS for 1,000 requests of 3 MiB) and answered others only after it had built
them all. Now a peer holds at most 256 queued messages (the rest of its replies are dropped)
and a turn stops reading once 32 MiB of replies wait to go out, so the broker's RSS stays
bounded and another client's ping is still answered meanwhile (the slowest ping is printed: 0.6 s plain, 1.2 s under ASan, 2.7 s before the fix)."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fzharness as h  # noqa: E402
import msgpack  # noqa: E402
import zmq  # noqa: E402

REQUESTS = 2000


def body(f):
    h.small_asan_quarantine(f)
    f.start_broker("--sync", "normal")
    prompt = "p" * 200
    batch = [{"prompt": "%s %d" % (prompt, i)} for i in range(1000)]
    r = f.req("submit-batch", tasks=batch)
    h.check(r.get("type") == "submitted-batch", "batch: %r" % r.get("type"))
    before = h.rss_kib(f.broker.pid)
    ctx = zmq.Context()
    greedy = ctx.socket(zmq.DEALER)
    greedy.setsockopt(zmq.RCVHWM, 1)
    greedy.setsockopt(zmq.SNDHWM, 0)
    greedy.connect(f.broker_ep)
    for i in range(REQUESTS):
        greedy.send(msgpack.packb({"v": 1, "type": "list", "rid": i + 1, "limit": 1000}))
    worst = 0.0
    peak = before
    deadline = time.monotonic() + 60
    # Others are answered meanwhile; RSS is sampled until the broker has built every reply.
    while time.monotonic() < deadline:
        t = time.monotonic()
        f.ok("ping")
        worst = max(worst, time.monotonic() - t)
        peak = max(peak, h.rss_kib(f.broker.pid))
        if _idle(f):
            break
        time.sleep(0.2)
    print("%d unread list requests: broker RSS %d -> peak %d KiB; slowest ping %.3f s" % (
        REQUESTS, before, peak, worst), flush=True)
    # 256 replies of 0.8 MB (200 MiB), and what the turn building them holds (32 MiB).
    h.check(peak - before < 280 * 1024, "broker RSS grew by %d KiB (bound: 256 replies of 0.8 MB)"
            % (peak - before))
    h.check(worst < 5.0, "a ping took %.3f s while one peer hogged the broker" % worst)
    greedy.close(0)
    ctx.term()


def _idle(f):
    """True once the broker's CPU time stops moving (it has built every reply it will)."""
    with open("/proc/%d/stat" % f.broker.pid) as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    cpu = int(fields[11]) + int(fields[12])
    prev = getattr(_idle, "prev", None)
    _idle.prev = cpu
    return prev is not None and cpu - prev == 0


h.run("hostile_reader", body)
