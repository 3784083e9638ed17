"""fz-web fills gaps in the event stream as fz-watch does. A scripted broker (a Python XPUB and
ROUTER on private endpoints) publishes seq 1, 2, then 5: fz-web must ask `events since 2`,
get 3 and 4 from the reply and put 1..5 on its live stream in order, each once; then 9, with
a reply that no longer holds 6..8: those are counted in fz_web_events_missed_total and the
stream goes on; then broker.started (a new broker run numbering from 1) is not taken for a
gap."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fzharness as h  # noqa: E402
import fzweb as w  # noqa: E402
import msgpack  # noqa: E402
import zmq  # noqa: E402


def ev(seq, topic="task.queued", task=7):
    m = {"seq": seq, "ts": time.time(), "event": topic}
    if topic.startswith("task."):
        m.update(task=task, state="queued", priority=0, model="")
    return m


def body(f):
    ctx = zmq.Context()
    pub = ctx.socket(zmq.XPUB)
    pub.bind(f.events_ep)
    router = ctx.socket(zmq.ROUTER)
    router.bind(f.broker_ep)
    held = {s: ev(s) for s in range(1, 6)}  # what the scripted broker still holds
    asks = []

    def publish(m):
        pub.send_multipart([m["event"].encode(), msgpack.packb(m, use_bin_type=True)])

    def serve(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if router.poll(20):
                ident, raw = router.recv_multipart()
                req = msgpack.unpackb(raw, raw=False)
                rep = {"v": 1, "rid": req.get("rid", 0)}
                if req["type"] == "events":
                    asks.append(req["since"])
                    evs = [m for s, m in sorted(held.items()) if s > req["since"]]
                    rep.update(type="events", events=evs, first=min(held), last=max(held))
                elif req["type"] == "ping":
                    rep.update(type="pong", version=1, broker="scripted")
                else:
                    rep.update(type="error", code="unknown-type", message="scripted broker")
                router.send_multipart([ident, msgpack.packb(rep, use_bin_type=True)])

    web, base = w.start_web(f)
    h.check(pub.poll(10000), "fz-web did not subscribe")
    pub.recv()  # its subscription
    sse = w.SSE(base)
    sse.events(1, 0.3)
    publish(held[1])
    publish(held[2])
    publish(held[5])
    serve(1.5)
    got = [json.loads(d)["seq"] for _, e, d in sse.events(5, 5) if e == "fz"]
    h.check(got == [1, 2, 3, 4, 5], "stream after a gap: %s (asks %s)" % (got, asks))
    h.check(asks == [2], "fz-web asked for %s" % asks)
    # a gap the broker cannot fill any more: counted, and the stream goes on
    held.clear()
    held[9] = ev(9)
    publish(held[9])
    serve(1.5)
    got = [json.loads(d)["seq"] for _, e, d in sse.events(1, 5) if e == "fz"]
    h.check(got == [9], "after an unfillable gap: %s" % got)
    fams = w.parse_metrics(w.http("GET", base + "/metrics")[2].decode())
    h.check(w.value(fams, "fz_web_events_missed_total") == 3, "missed 6..8: %s" %
            w.value(fams, "fz_web_events_missed_total"))
    # a new broker run: seq 1 again, not a gap and not a duplicate
    publish(ev(1, "broker.started"))
    publish(ev(2))
    serve(1)
    got = [json.loads(d) for _, e, d in sse.events(2, 5) if e == "fz"]
    h.check([(g["topic"], g["seq"]) for g in got] == [("broker.started", 1), ("task.queued", 2)],
            "after a restart: %s" % got)
    h.check(asks == [2, 5], "asks after the restart: %s" % asks)
    sse.close()
    f.kill(web)
    h.check(web.returncode == 0, "fz-web exit %s" % web.returncode)
    pub.close(0)
    router.close(0)
    ctx.term()


h.run("web_gap", body)
