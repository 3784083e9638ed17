"""A peer floods the event stream while a subscriber never reads (issue 12's second failure):
a fake worker that took a dispatch sends 20,000 output messages of 16 KiB (320 MiB) as fast as
it can, and a SUB connected with a receive queue of 1 never reads. Before, the broker queued
every event for the stuck subscriber (about 900 MiB for 50,000). Now one attempt's output
passes at most 128 KiB/s and a subscriber's queue holds at most 5,000 events, so the broker's
RSS stays far below the flood, a ping from another client is answered within a second, and an
attentive subscriber sees the surviving output events count what was dropped."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fzharness as h  # noqa: E402
import msgpack  # noqa: E402
import zmq  # noqa: E402

FLOOD = 20000
CHUNK = b"x" * (16 * 1024 - 64)


def body(f):
    h.small_asan_quarantine(f)
    f.start_broker()
    ctx = zmq.Context()
    stuck = ctx.socket(zmq.SUB)
    stuck.setsockopt(zmq.RCVHWM, 1)
    stuck.setsockopt(zmq.SUBSCRIBE, b"")
    stuck.connect(f.events_ep)
    seen = ctx.socket(zmq.SUB)
    seen.setsockopt(zmq.SUBSCRIBE, b"task.output")
    seen.connect(f.events_ep)
    w = ctx.socket(zmq.DEALER)
    w.setsockopt(zmq.SNDHWM, 0)
    w.connect(f.broker_ep)
    w.send(msgpack.packb({"v": 1, "type": "hello", "rid": 1, "name": "flooder", "nonce": "n"}))
    tid = f.submit("print a lot")
    deadline = time.monotonic() + 20
    attempt = None
    while attempt is None and time.monotonic() < deadline:
        if w.poll(200):
            m = msgpack.unpackb(w.recv(), raw=False)
            if m.get("type") == "dispatch":
                attempt = m["attempt"]
    h.check(attempt is not None, "no dispatch reached the fake worker")
    before = h.rss_kib(f.broker.pid)
    t0 = time.monotonic()
    for i in range(FLOOD):
        w.send(msgpack.packb({"v": 1, "type": "output", "task": tid, "attempt": attempt,
                              "data": CHUNK}, use_bin_type=True))
        if i % 2000 == 0:  # keep its heartbeat alive meanwhile
            w.send(msgpack.packb({"v": 1, "type": "heartbeat", "task": tid, "attempt": attempt}))
    # Ping from another client while the flood is digested: answered within a second.
    t = time.monotonic()
    f.ok("ping")
    ping_s = time.monotonic() - t
    # A request on the flooder's own connection is answered after everything it sent before.
    w.send(msgpack.packb({"v": 1, "type": "ping", "rid": 99}))
    h.wait_for(lambda: w.poll(100) and msgpack.unpackb(w.recv(), raw=False).get("rid") == 99, 120,
               "the broker to digest the flood")
    peak = h.rss_kib(f.broker.pid)
    got = dropped = 0
    while seen.poll(100):
        topic, data = seen.recv_multipart()
        ev = msgpack.unpackb(data, raw=False)
        got += 1
        dropped = max(dropped, ev.get("dropped", 0))
    print("flood: %d x 16 KiB in %.1f s; broker RSS %d -> %d KiB; ping %.3f s; %d output events "
          "passed, %d bytes dropped" % (FLOOD, time.monotonic() - t0, before, peak, ping_s, got, dropped),
          flush=True)
    h.check(peak - before < 200 * 1024, "broker RSS grew by %d KiB (limit 200 MiB)" % (peak - before))
    h.check(ping_s < 1.0, "a ping took %.3f s during the flood" % ping_s)
    h.check(0 < got < FLOOD // 4, "%d output events passed of %d" % (got, FLOOD))
    h.check(dropped > 0, "no surviving output event counted the dropped bytes")
    for s in (stuck, seen, w):
        s.close(0)
    ctx.term()


h.run("hostile_output", body)
