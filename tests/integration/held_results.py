"""Results held to their attempt (issue 12, failure 6), against the real broker with fake
workers that speak the protocol:
- a worker reports cost_usd 1e6 for a task capped at 1 USD: the attempt keeps what it
  reported but is flagged suspect (on the task event too) and charges the day at most
  2 USD, so the other tasks keep running (before: the day's budget was spent until
  midnight), after a broker restart too;
- a worker that says hello, takes the dispatch and leaves, again and again, is quarantined
  (worker.unhealthy, class quarantined: no dispatch to that name) on its third loss, and
  its losses after the first do not use the task's retries: the task (retries 0) runs on an
  honest worker and succeeds (before: the fourth loss failed it)."""
import os
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fzharness as h  # noqa: E402
import msgpack  # noqa: E402
import zmq  # noqa: E402


class FakeWorker:
    """One connection of a worker that speaks the protocol by hand."""

    def __init__(self, f, name):
        self.name = name
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(f.broker_ep)
        self.send("hello", name=name, models=[], labels={}, nonce=uuid.uuid4().hex)

    def send(self, type_, **fields):
        fields.update(v=1, type=type_)
        self.sock.send(msgpack.packb(fields, use_bin_type=True))

    def next(self, kind, timeout):
        """The next message of type kind within timeout s (heartbeats answered), or None."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(int(left * 1000) + 1):
                return None
            m = msgpack.unpackb(self.sock.recv(), raw=False)
            if m["type"] == "heartbeat":
                self.send("heartbeat")
            if m["type"] == kind:
                return m

    def close(self, bye=True):
        if bye:
            self.send("bye")
            time.sleep(0.1)
        self.sock.close()


class Events:
    def __init__(self, f):
        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.linger = 0
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect(f.events_ep)
        self.seen = []

    def pump(self):
        while self.sock.poll(0):
            topic, body = self.sock.recv_multipart()
            self.seen.append((topic.decode(), msgpack.unpackb(body, raw=False)))
        return self.seen


def suspect_cost(f, ev):
    liar = FakeWorker(f, "liar")
    h.check(liar.next("welcome", 5), "no welcome")
    tid = f.submit("lie about the cost", max_cost=1.0)
    d = liar.next("dispatch", 5)
    h.check(d and d["task"] == tid, "no dispatch: %r" % d)
    liar.send("started", task=tid, attempt=1, pid=1)
    liar.send("result", task=tid, attempt=1, outcome="exited", exit_code=0, cost_usd=1e6,
              tokens_in=10, tokens_out=10, summary="trust me")
    h.check(liar.next("result-ack", 5), "the result was not acknowledged")
    liar.close()
    t = f.task(tid)
    a = t["attempts"][0]
    h.check(a["cost_usd"] == 1e6 and a.get("suspect") is True and a.get("charged") == 2.0,
            "the attempt: cost %r suspect %r charged %r" % (a["cost_usd"], a.get("suspect"), a.get("charged")))
    shown = f.run_tool("fz-ctl", "show", str(tid)).stdout
    h.check("SUSPECT" in shown and "$2.0000" in shown, "fz-ctl show says nothing: %s" % shown)
    budget = f.ok("budget")
    h.check(budget["spent"] == 2.0, "the day's spend after the lie: %r" % budget["spent"])
    h.wait_for(lambda: [e for topic, e in ev.pump() if topic == "task.succeeded"
                        and e["task"] == tid and e.get("suspect") is True and e.get("charged") == 2.0],
               5, "task.succeeded with suspect and charged")
    # The rest of the day goes on: five more 1-USD tasks run.
    others = [f.submit("honest %d" % i, max_cost=1.0) for i in range(5)]
    f.start_worker("honest", "--dry-duration", "0.1", dry_run=True)
    f.wait_states(others, {"succeeded"}, 30)
    f.kill(f.broker)
    f.start_broker(*f.broker_args)
    spent = f.ok("budget")["spent"]
    h.check(abs(spent - 2.05) < 1e-6, "the day's spend after a restart: %r" % spent)
    print("suspect cost: reported 1e6 on a 1 USD cap, charged 2 USD (after a restart too); "
          "5 other tasks ran")


def quarantine(f, ev):
    # The honest worker of the first part is still there: give it nothing for now.
    f.ok("pause")
    tid = f.submit("for whoever takes it", retries=0)
    got = 0
    for round_ in range(4):
        w = FakeWorker(f, "flaky")
        h.check(w.next("welcome", 5), "no welcome in round %d" % round_)
        if round_ == 0:
            f.ok("resume")
        d = None
        deadline = time.monotonic() + (10 if round_ < 3 else 3)
        while time.monotonic() < deadline and not d:
            d = w.next("dispatch", 0.5)
            if d and d["task"] != tid:
                w.send("result", task=d["task"], attempt=d["attempt"], outcome="rejected")
                d = None
        if d:
            got += 1
        w.close()  # bye while holding the attempt: lost (the honest worker is gone: only
        # "flaky" can take the task)
        if round_ < 3:
            h.check(d, "round %d: no dispatch before the quarantine" % round_)
            h.wait_for(lambda: f.state(tid) == "queued" or f.state(tid) == "failed", 10,
                       "the lost attempt to be requeued")
            h.check(f.state(tid) == "queued", "round %d: the task is %s" % (round_, f.state(tid)))
    h.check(got == 3, "a quarantined name got a dispatch (%d dispatches)" % got)
    events = [e for topic, e in ev.pump() if topic == "worker.unhealthy" and e["worker"] == "flaky"]
    h.check(events and events[0]["class"] == "quarantined" and events[0].get("until", 0) > time.time(),
            "worker.unhealthy for flaky: %r" % events)
    f.start_worker("honest2", "--dry-duration", "0.1", dry_run=True)
    f.wait_states([tid], {"succeeded"}, 30)
    print("quarantine: 3 lost attempts, then no dispatch to 'flaky'; the task (retries 0) "
          "succeeded on an honest worker")


def body(f):
    f.broker_args = ["--heartbeat", "200", "--daily-budget", "20"]
    f.start_broker(*f.broker_args)
    ev = Events(f)
    time.sleep(0.3)
    suspect_cost(f, ev)
    for pid, (p, label) in list(f.procs.items()):
        if label == "worker-honest":
            f.kill(p)
    ev = Events(f)
    time.sleep(0.3)
    quarantine(f, ev)


h.run("held_results", body)
