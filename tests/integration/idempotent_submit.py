"""Idempotent submits (issue 12, failure 7): a submit whose reply is lost to a broker killed
between its commit and its reply is stored once when the client sends it again.

A proxy of our own sits between the client and the broker. It passes everything on, but
when the reply chosen by the test comes back from the broker (so the broker has committed
it), it drops that reply, kills the broker with SIGKILL and starts it again on the same
database: exactly a kill -9 between commit and reply. Then:
- the control: a resend without a key stores a second copy (the fault really lands after
  the commit, so the test can fail);
- fz-submit -f of 1,000 lines (one submit each) and of a 1,000-task pipeline (one
  submit-batch) exit 0 and store every task exactly once, printing the ids stored;
- keys survive a broker restart, and are forgotten after --key-ttl."""
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fzharness as h  # noqa: E402
import msgpack  # noqa: E402
import zmq  # noqa: E402


class KillingProxy:
    """ROUTER (clients) <-> DEALER (broker). drop_when(reply) says which reply to drop; on
    it the broker is SIGKILLed and restarted."""

    def __init__(self, f, drop_when):
        self.f = f
        self.drop_when = drop_when
        self.ep = "ipc://%s/proxy-%d.sock" % (f.dir, id(self))
        self.kills = 0
        self.stop = False
        self.ready = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(5)

    def _restart(self):
        self.f.broker.send_signal(signal.SIGKILL)
        self.f.broker.wait(timeout=10)
        self.f.procs.pop(self.f.broker.pid, None)
        self.kills += 1
        self.f.start_broker(*self.f.broker_args, wait=False)

    def _run(self):
        ctx = zmq.Context.instance()
        front, back = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
        front.linger = back.linger = 0
        front.bind(self.ep)
        back.connect(self.f.broker_ep)
        self.ready.set()
        client = None
        poller = zmq.Poller()
        poller.register(front, zmq.POLLIN)
        poller.register(back, zmq.POLLIN)
        try:
            while not self.stop:
                for sock, _ in poller.poll(100):
                    if sock is front:
                        frames = front.recv_multipart()
                        client = frames[0]
                        back.send_multipart(frames[1:])
                    else:
                        payload = back.recv()
                        reply = msgpack.unpackb(payload, raw=False)
                        if self.drop_when(reply):
                            self._restart()
                        elif client is not None:
                            front.send_multipart([client, payload])
        except Exception as e:  # reported by the test, not lost in the thread
            self.error = e
        finally:
            front.close()
            back.close()

    def close(self):
        self.stop = True
        self.thread.join(10)
        h.check(self.error is None, "proxy failed: %r" % self.error)


def nth_reply(kind, n):
    """A drop rule: the n-th reply of type kind (once)."""
    seen = [0]

    def rule(reply):
        if reply.get("type") != kind:
            return False
        seen[0] += 1
        return seen[0] == n
    return rule


def stored(f):
    return f.ok("list", limit=100000)["tasks"]


def control_without_key(f):
    """Without a key a resend is a second task: the fault lands after the commit."""
    proxy = KillingProxy(f, nth_reply("submitted", 1))
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(proxy.ep)

    def send(rid, **fields):
        msg = {"v": 1, "type": "submit", "rid": rid}
        msg.update(fields)
        sock.send(msgpack.packb(msg, use_bin_type=True))
        if not sock.poll(5000):
            return None
        return msgpack.unpackb(sock.recv(), raw=False)

    h.check(send(1, prompt="control") is None, "the first reply was not dropped")
    f.wait_answering(f.broker)
    r = send(2, prompt="control")
    h.check(r and r["type"] == "submitted", "resend failed: %r" % r)
    copies = [t for t in stored(f) if t["prompt"] == "control"]
    h.check(len(copies) == 2, "without a key the resend made %d copies, 2 expected" % len(copies))
    print("control: without a key, a resend after kill -9 stored %d copies" % len(copies))
    # The same with a key: one copy, and the resend is answered with the first id.
    proxy.drop_when = nth_reply("submitted", 1)
    h.check(send(3, prompt="keyed", idempotency_key="k-1") is None, "keyed reply not dropped")
    f.wait_answering(f.broker)
    r = send(4, prompt="keyed", idempotency_key="k-1")
    h.check(r and r["type"] == "submitted" and r.get("duplicate") is True, "keyed resend: %r" % r)
    copies = [t for t in stored(f) if t["prompt"] == "keyed"]
    h.check(len(copies) == 1 and copies[0]["id"] == r["task"], "keyed: %r vs %r" % (copies, r))
    sock.close()
    proxy.close()


def submit_file(f, name, lines, drop_rule, expect_lines):
    path = os.path.join(f.dir, name)
    with open(path, "w") as out:
        out.write("\n".join(lines) + "\n")
    before = {t["id"] for t in stored(f)}
    proxy = KillingProxy(f, drop_rule)
    r = f.run_tool("fz-submit", "--broker", proxy.ep, "-f", path, timeout=120)
    proxy.close()
    h.check(r.returncode == 0, "fz-submit -f %s exited %d: %s" % (name, r.returncode, r.stderr))
    h.check(proxy.kills == 1, "the broker was killed %d times" % proxy.kills)
    h.check("sending it again" in r.stderr, "fz-submit did not resend: %r" % r.stderr)
    printed = [int(line.split()[-1]) for line in r.stdout.split()
               if line.strip().isdigit()] if expect_lines == "ids" else \
        [int(line.split()[1]) for line in r.stdout.splitlines()]
    new = [t for t in stored(f) if t["id"] not in before]
    prompts = [t["prompt"] for t in new]
    h.check(len(new) == len(lines), "%s: %d tasks stored for %d lines" % (name, len(new), len(lines)))
    h.check(len(set(prompts)) == len(prompts), "%s: duplicate prompts stored" % name)
    h.check(sorted(printed) == sorted(t["id"] for t in new),
            "%s: printed ids differ from the stored ones" % name)
    print("%s: %d lines, broker killed between commit and reply, %d stored, 0 duplicates, "
          "exit 0" % (name, len(lines), len(new)))


def keys_last(f):
    """A key survives a restart, and is forgotten after --key-ttl."""
    a = f.ok("submit", prompt="restart me", idempotency_key="survivor")
    f.kill(f.broker)
    f.start_broker(*f.broker_args)
    b = f.ok("submit", prompt="restart me", idempotency_key="survivor")
    h.check(b["task"] == a["task"] and b.get("duplicate") is True, "after a restart: %r %r" % (a, b))
    h.check("duplicate" not in a, "a first submit said duplicate")
    ids = f.ok("submit-batch", tasks=[{"prompt": "b1"}, {"prompt": "b2", "after_index": [0]}],
               idempotency_key="batch-key")["tasks"]
    again = f.ok("submit-batch", tasks=[{"prompt": "b1"}, {"prompt": "b2"}],
                 idempotency_key="batch-key")
    h.check(again["tasks"] == ids and again.get("duplicate") is True, "batch: %r %r" % (ids, again))
    e = f.req("submit", prompt="b1", idempotency_key="batch-key")
    h.check(e["type"] == "error" and e["code"] == "invalid", "key of a batch on a submit: %r" % e)
    e = f.req("submit", prompt="x", idempotency_key="")
    h.check(e["type"] == "error" and e["code"] == "invalid", "empty key: %r" % e)
    # Forgotten after the TTL.
    f.kill(f.broker)
    f.broker_args = ["--key-ttl", "1"]
    f.start_broker(*f.broker_args)
    time.sleep(1.5)
    c = f.ok("submit", prompt="restart me", idempotency_key="survivor")
    h.check(c["task"] != a["task"] and "duplicate" not in c, "key not forgotten: %r" % c)
    print("keys survive a restart; forgotten after --key-ttl")


def body(f):
    f.broker_args = []
    f.start_broker()
    control_without_key(f)
    submit_file(f, "tasks.txt", ["plain task %d" % i for i in range(1000)],
                nth_reply("submitted", 300), "ids")
    pipeline = ['{"name": "n%d", "prompt": "pipeline task %d"%s}'
                % (i, i, ', "after": ["n%d"]' % (i - 1) if i % 10 else "") for i in range(1000)]
    submit_file(f, "pipeline.jsonl", pipeline, nth_reply("submitted-batch", 1), "names")
    keys_last(f)


h.run("idempotent_submit", body)
