"""A protocol-level stand-in for fz-broker, for tests of what fz-worker puts on the wire: a
ROUTER that welcomes workers, answers their heartbeats, acknowledges results (with
promote: true when told to) and records everything they sent, with the time it came."""
import time

import msgpack
import zmq

import fzharness as h


class FakeBroker:
    def __init__(self, endpoint, heartbeat_ms=200):
        self.sock = zmq.Context.instance().socket(zmq.ROUTER)
        self.sock.linger = 0
        self.sock.bind(endpoint)
        self.heartbeat_ms = heartbeat_ms
        self.peers = {}  # worker name -> routing id
        self.seen = []  # (name, message, monotonic time)
        self.promote = set()  # (task, attempt) whose result-ack says promote: true
        self.ack = True  # acknowledge results at all

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
            self.seen.append((name, m, time.monotonic()))
            if m["type"] == "hello":
                self.peers[name] = rid
                self.send(name, "welcome", heartbeat_ms=self.heartbeat_ms, name=name)
            elif m["type"] == "heartbeat":
                self.send(name, "heartbeat")
            elif m["type"] == "result" and self.ack:
                extra = {"promote": True} if (m["task"], m["attempt"]) in self.promote else {}
                self.send(name, "result-ack", task=m["task"], attempt=m["attempt"], **extra)

    def wait(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            for name, m, _ in self.seen:
                if pred(name, m):
                    return m
            if time.monotonic() > deadline:
                raise h.TestFailure("timed out after %.1f s waiting for %s" % (timeout, what))
            self.pump(0.05)

    def until(self, pred, timeout, what):
        """Answers the workers until pred() is true."""
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise h.TestFailure("timed out after %.1f s waiting for %s" % (timeout, what))
            self.pump(0.05)

    def result(self, name, task, timeout=15, attempt=None):
        return self.wait(lambda n, m: n == name and m["type"] == "result" and m["task"] == task
                         and (attempt is None or m["attempt"] == attempt),
                         timeout, "the result of task %d from %s" % (task, name))

    def messages(self, name, type_, task):
        return [(m, t) for n, m, t in self.seen if n == name and m["type"] == type_
                and m.get("task") == task]

    def close_after(self, f):
        """Stops f's workers (SIGTERM) while still answering them, then closes."""
        for p, label in list(f.procs.values()):
            if p.poll() is None:
                f.kill(p, wait=False)
        t = time.monotonic()
        while any(p.poll() is None for p, _ in f.procs.values()) and time.monotonic() < t + 15:
            self.pump(0.05)
        self.sock.close()


def dispatch(fb, name, task, attempt=1, labels=None, **fields):
    msg = dict(task=task, attempt=attempt, prompt="p", model="", timeout=0, max_cost=0.0,
               kill_grace=1, labels=labels or {})
    msg.update(fields)
    fb.send(name, "dispatch", **msg)
