"""A protocol-level stand-in for fz-broker, for tests of what fz-worker puts on the wire: a
ROUTER that welcomes workers, answers their heartbeats, acknowledges results (with
promote: true when told to) and records everything they sent, with the time it came.

It answers from a thread of its own, so a test that spends a while in git between two
waits does not go silent for the worker (which, at 3 heartbeats of 200 ms, would take the
broker for dead and reconnect). The socket is used under one lock."""
import threading
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
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _send_rid(self, rid, type_, **fields):
        fields.update(v=1, type=type_)
        self.sock.send_multipart([rid, msgpack.packb(fields, use_bin_type=True)])

    def send(self, peer, type_, **fields):
        with self.lock:
            self._send_rid(self.peers[peer], type_, **fields)

    def _handle_one(self):
        rid, frame = self.sock.recv_multipart()
        m = msgpack.unpackb(frame, raw=False)
        name = m.get("name") if m["type"] == "hello" else next(
            (n for n, r in self.peers.items() if r == rid), "?")
        self.seen.append((name, m, time.monotonic()))
        if m["type"] == "hello":
            self.peers[name] = rid
            self._send_rid(rid, "welcome", heartbeat_ms=self.heartbeat_ms, name=name)
        elif m["type"] == "heartbeat":
            self._send_rid(rid, "heartbeat")
        elif m["type"] == "result" and self.ack:
            extra = {"promote": True} if (m["task"], m["attempt"]) in self.promote else {}
            self._send_rid(rid, "result-ack", task=m["task"], attempt=m["attempt"], **extra)

    def _serve(self):
        while not self.stopping:
            with self.lock:
                if self.stopping:
                    return
                for i in range(64):  # a bounded batch: send() gets the lock between them
                    if not self.sock.poll(20 if i == 0 else 0):
                        break
                    self._handle_one()
            time.sleep(0.002)

    def pump(self, timeout):
        """Lets timeout seconds pass (the thread answers the workers meanwhile)."""
        time.sleep(timeout)

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
        self.stopping = True
        self.thread.join()
        self.sock.close()


def dispatch(fb, name, task, attempt=1, labels=None, **fields):
    msg = dict(task=task, attempt=attempt, prompt="p", model="", timeout=0, max_cost=0.0,
               kill_grace=1, labels=labels or {})
    msg.update(fields)
    fb.send(name, "dispatch", **msg)
