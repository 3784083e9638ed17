"""CURVE with roles, on one host (ipc): a broker with --curve-secret and --keys admits only
known keys, gives each the role of its folder and enforces it per message; a key removed from
the folder is refused on its next connection and one added is admitted, without a restart;
the event stream is protected the same way; every task records who submitted it.

Refused at the handshake (no reply at all): a NULL client, an unknown key, a worker key on
the event stream. Refused per message (error refused/forbidden): a worker key that submits or
asks status, a client key that says hello (not registered) or pauses, a client key that
cancels another key's task; an admin key may do all of it. A name belongs to the key that
registered it (another worker key's hello with it is refused), and a worker key that keeps
losing dispatches is quarantined by key, whatever names it takes. Also measured (printed, not
asserted): a fresh connection's handshake plus one ping, with and without CURVE."""
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fzharness as h  # noqa: E402

sys.path.insert(0, os.path.join(h.SRC, "client", "python"))
from fz_client import Client, FzError  # noqa: E402

import msgpack  # noqa: E402
import zmq  # noqa: E402
import zmq.auth  # noqa: E402


def keygen(f, name):
    base = os.path.join(f.dir, "k", name)
    r = f.run_tool("fz-ctl", "keygen", base)
    h.check(r.returncode == 0, "keygen %s: %s" % (name, r.stderr))
    return base + ".key", base + ".pub"


def client(f, name, timeout=5.0, endpoint=None):
    return Client(endpoint or f.broker_ep, timeout=timeout,
                  curve_secret=f.keys[name][0], broker_key=f.keys["broker"][1])


def refused_call(fz, type_, reason="forbidden", **fields):
    try:
        fz.call(type_, **fields)
    except FzError as e:
        h.check(e.code == "refused" and e.reason == reason,
                "%s: expected refused/%s, got %s/%s" % (type_, reason, e.code, e.reason))
        return
    raise h.TestFailure("%s was not refused" % type_)


# Without keys, the tool learns why from the broker's greeting (mechanism mismatch) or, when
# the broker closes first, from three handshakes in a row closed: either is said at once.
NO_KEYS = ("requires CURVE keys", "does it require CURVE keys")


def tool_refused(f, args, wants):
    """A C tool refused at the handshake exits 5 at once, saying why."""
    t0 = time.monotonic()
    r = f.run_tool("fz-ctl", *args, "ping")
    secs = time.monotonic() - t0
    h.check(r.returncode == 5 and any(w in r.stderr for w in wants) and secs < 3,
            "fz-ctl %s: exit %d after %.1f s: %s" % (args, r.returncode, secs, r.stderr))


def unreachable(fz, what):
    try:
        fz.ping()
    except FzError as e:
        h.check(e.code == "unreachable", "%s: %s" % (what, e))
        return
    raise h.TestFailure("%s got an answer" % what)


def sub_socket(f, name):
    s = zmq.Context.instance().socket(zmq.SUB)
    s.linger = 0
    if name:
        pub, sec = zmq.auth.load_certificate(f.keys[name][0])
        s.curve_publickey, s.curve_secretkey = pub, sec
        s.curve_serverkey = zmq.auth.load_certificate(f.keys["broker"][1])[0]
    s.setsockopt(zmq.SUBSCRIBE, b"")
    s.connect(f.events_ep)
    return s


def worker_socket(f, name):
    """A DEALER with a worker's key, speaking the protocol by hand."""
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.linger = 0
    s.curve_publickey, s.curve_secretkey = zmq.auth.load_certificate(f.keys[name][0])
    s.curve_serverkey = zmq.auth.load_certificate(f.keys["broker"][1])[0]
    s.connect(f.broker_ep)
    return s


def next_of(sock, kind, timeout):
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not sock.poll(int(left * 1000) + 1):
            return None
        m = msgpack.unpackb(sock.recv(), raw=False)
        if m["type"] == "heartbeat":
            sock.send(msgpack.packb({"v": 1, "type": "heartbeat"}, use_bin_type=True))
        if m["type"] == kind:
            return m


def quarantine_by_key(f, root):
    """A worker key that takes dispatches and leaves, under a new name each time, is
    quarantined by its key: the fourth name gets nothing."""
    for pid, (p, label) in list(f.procs.items()):
        if label == "worker-good":
            f.kill(p)
    h.wait_for(lambda: not root.workers(), 10, "the workers to leave")
    tid = root.submit("for whoever takes it", retries=0)
    got = 0
    for round_ in range(4):
        s = worker_socket(f, "w2")
        s.send(msgpack.packb({"v": 1, "type": "hello", "name": "flaky-%d" % round_, "models": [],
                              "nonce": "n%d" % round_}, use_bin_type=True))
        h.check(next_of(s, "welcome", 5), "flaky-%d: no welcome" % round_)
        d = next_of(s, "dispatch", 10 if round_ < 3 else 3)
        got += d is not None
        s.send(msgpack.packb({"v": 1, "type": "bye"}, use_bin_type=True))
        time.sleep(0.1)
        s.close()
        if round_ < 3:
            h.check(d, "flaky-%d: no dispatch before the quarantine" % round_)
            h.wait_for(lambda: root.get(tid)["task"]["state"] == "queued", 10, "the task requeued")
    h.check(got == 3, "the key got a dispatch under a fourth name (%d dispatches)" % got)
    with open(os.path.join(f.dir, "broker.log")) as log:
        h.check("dispatch to worker:w2" in log.read(), "the quarantine was not by key")
    print("quarantine by key: 3 names of one key lost their attempts; the fourth got nothing")


def agent_key(f, root):
    """fz-worker --agent-key: its agents get a client key of their own (never the worker's)
    and submit a subtask with it; a worker without one gives its agents no keys."""
    submit = os.path.join(h.BIN, "fz-submit")
    agent = ('if [ -n "$FZ_LABEL_SPAWN" ]; then %s --parent "$FZ_TASK_ID" -q "from the agent" || exit 3; fi; '
             'echo "secret=$FZ_CURVE_SECRET"' % submit)
    w = f.start_worker("keyed", "--curve-secret", f.keys["w1"][0], "--broker-key", f.keys["broker"][1],
                       "--agent-key", f.keys["agents"][0], agent=agent)
    parent = root.submit("decompose", labels={"spawn": "1"})
    h.wait_for(lambda: root.get(parent)["task"]["state"] in ("succeeded", "failed"), 20, "the parent")
    got = root.get(parent)
    h.check(got["task"]["state"] == "succeeded", "the agent could not submit: %s" % got["attempts"])
    subs = [t for t in root.call("list", limit=1000)["tasks"] if t.get("parent") == parent]
    h.check(len(subs) == 1 and subs[0]["submitted_by"] == "client:agents", "subtasks %s" % subs)
    h.check(b"secret=" + os.path.abspath(f.keys["agents"][0]).encode() in got["attempts"][-1]["output"],
            "the agent's FZ_CURVE_SECRET: %r" % got["attempts"][-1]["output"])
    f.kill(w)
    # Without --agent-key the agent has no key: its fz-submit is not let in, and says why at
    # once (exit 5: the handshake failed, nothing to retry).
    f.start_worker("keyless", "--curve-secret", f.keys["w1"][0], "--broker-key", f.keys["broker"][1],
                   agent=agent)
    lone = root.submit("decompose without a key", labels={"spawn": "1"}, retries=0)
    h.wait_for(lambda: root.get(lone)["task"]["state"] in ("succeeded", "failed"), 15, "the keyless parent")
    got = root.get(lone)
    h.check(got["task"]["state"] == "failed" and any(w.encode() in got["attempts"][-1]["output"] for w in NO_KEYS)
            and got["attempts"][-1]["duration_ms"] < 3000,
            "an agent without a key: %s" % got["attempts"])
    print("--agent-key: the agent submitted a subtask as client:agents; without it, it could not")


def answers_as(f, name):
    try:
        with client(f, name, timeout=0.5) as fz:
            return fz.ping()
    except FzError:
        return None


def answers(endpoint):
    try:
        with Client(endpoint, timeout=0.5) as fz:
            return fz.ping()
    except FzError:
        return None


def handshake_ms(endpoint, keys=None, n=30):
    """Median ms of: a new DEALER, its handshake, one ping and its pong."""
    times = []
    for _ in range(n):
        t0 = time.monotonic()
        with Client(endpoint, timeout=5.0, **(keys or {})) as fz:
            fz.ping()
        times.append((time.monotonic() - t0) * 1000)
    return statistics.median(times)


def body(f):
    os.makedirs(os.path.join(f.dir, "k"))
    f.keys = {n: keygen(f, n) for n in ("broker", "alice", "bob", "w1", "w2", "root", "stranger", "agents")}
    kdir = os.path.join(f.dir, "keys")
    for role, names in (("clients", ("alice", "bob", "agents")), ("workers", ("w1", "w2")), ("admins", ("root",))):
        os.makedirs(os.path.join(kdir, role))
        for n in names:
            shutil.copy(f.keys[n][1], os.path.join(kdir, role))
    f.start_broker("--curve-secret", f.keys["broker"][0], "--keys", kdir, wait=False)
    alice, bob, w1, root = (client(f, n) for n in ("alice", "bob", "w1", "root"))
    h.wait_for(lambda: answers_as(f, "alice"), 10, "the broker to answer alice")

    # Refused at the handshake: nothing comes back.
    h.check(f.req("ping", reply_timeout=1.0, must=False) is None, "a NULL client was answered")
    unreachable(client(f, "stranger", timeout=1.0), "an unknown key")
    # The Python client, too, is told at once why (the C tools: tool_refused below).
    t0 = time.monotonic()
    try:
        Client(f.broker_ep, timeout=5.0, curve_secret=f.keys["stranger"][0],
               broker_key=f.keys["broker"][1]).ping()
        raise h.TestFailure("an unknown key was answered")
    except FzError as e:
        h.check(e.reason == "handshake" and "refused this key" in e.message and time.monotonic() - t0 < 3,
                "python client, unknown key: %s (%.1f s)" % (e, time.monotonic() - t0))
    t0 = time.monotonic()
    try:
        Client(f.broker_ep, timeout=5.0, curve_secret=f.keys["alice"][0], broker_key=f.keys["bob"][1]).ping()
        raise h.TestFailure("a wrong broker key was answered")
    except FzError as e:
        h.check(e.reason == "handshake" and "public key" in e.message and time.monotonic() - t0 < 3,
                "python client, wrong broker key: %s (%.1f s)" % (e, time.monotonic() - t0))
    tool_refused(f, [], NO_KEYS)
    tool_refused(f, ["--curve-secret", f.keys["stranger"][0], "--broker-key", f.keys["broker"][1]],
                 ["refused this key"])
    # The wrong broker key: the broker cannot read the handshake and closes it, again and again.
    tool_refused(f, ["--curve-secret", f.keys["alice"][0], "--broker-key", f.keys["bob"][1]],
                 ["that broker's public key"])

    # Roles, per message.
    tid = alice.submit("alice's task", labels={"dry.duration": "0.2"})
    got = root.get(tid)["task"]
    h.check(got["submitted_by"] == "client:alice", "submitted_by %r" % got["submitted_by"])
    refused_call(w1, "submit", prompt="a worker submits")
    refused_call(w1, "status")
    refused_call(alice, "hello", name="fake", nonce="x")
    h.check(all(w["name"] != "fake" for w in root.workers()), "a client key registered a worker")
    refused_call(alice, "pause")
    refused_call(alice, "budget", set=100.0)
    h.check(alice.call("budget")["type"] == "budget", "a client may read the budget")
    refused_call(bob, "cancel", task=tid)
    refused_call(bob, "priority", task=tid, priority=5)
    h.check(root.call("pause")["type"] == "ok", "admin pause")
    h.check(root.call("resume")["type"] == "ok", "admin resume")
    h.check(alice.call("priority", task=tid, priority=3)["type"] == "ok", "own priority")

    # A worker with a worker key runs alice's task; one with a client key is not registered.
    f.start_worker("good", "--dry-run", "--curve-secret", f.keys["w1"][0],
                   "--broker-key", f.keys["broker"][1])
    f.start_worker("bad", "--dry-run", "--curve-secret", f.keys["bob"][0],
                   "--broker-key", f.keys["broker"][1])
    h.wait_for(lambda: alice.get(tid)["task"]["state"] == "succeeded", 20, "alice's task")
    names = [w["name"] for w in root.workers()]
    h.check("good" in names and "bad" not in names, "workers %s" % names)
    h.wait_for(lambda: "may not send 'hello'" in open(os.path.join(f.dir, "worker-bad.log")).read(),
               10, "the client-keyed worker to be told why")
    # Another worker key cannot come back as "good" (a hello without a nonce would evict a
    # live worker of that name and take its task): the name belongs to w1's key.
    w2 = client(f, "w2")
    try:
        w2.call("hello", name="good")
        raise h.TestFailure("w2's key took the name of w1's worker")
    except FzError as e:
        h.check(e.code == "conflict" and e.reason == "name-taken", "w2 as good: %s/%s" % (e.code, e.reason))
    h.check(any(w["name"] == "good" for w in root.workers()), "w1's worker was evicted by w2's hello")
    w2.close()
    # A client cancels its own task, not another's; an admin cancels any.
    t2 = bob.submit("bob's task", labels={"dry.duration": "30"})
    refused_call(alice, "cancel", task=t2)
    h.check(bob.cancel(t2)["state"] in ("cancelled", "running"), "bob cancels his own")
    t3 = bob.submit("bob's other task", labels={"dry.duration": "30"})
    h.check(root.cancel(t3)["state"] in ("cancelled", "running"), "admin cancels bob's")

    # The C tools: keys from flags or the environment, submitter shown, bad keys exit 2.
    env_keys = ["--curve-secret", f.keys["alice"][0], "--broker-key", f.keys["broker"][1]]
    r = f.run_tool("fz-ctl", *env_keys, "show", str(tid))
    h.check(r.returncode == 0 and "submitter client:alice" in r.stdout, "show: %s" % r.stdout)
    r = f.run_tool("fz-ctl", *env_keys, "pause")
    h.check(r.returncode == 2 and "may not" in r.stderr, "fz-ctl pause as a client: %s" % r.stderr)
    r = f.run_tool("fz-submit", "--curve-secret", f.keys["w1"][0], "--broker-key",
                   f.keys["broker"][1], "from a worker key")
    h.check(r.returncode == 2, "fz-submit with a worker key exited %d" % r.returncode)
    r = f.run_tool("fz-ctl", "--curve-secret", f.keys["alice"][1], "--broker-key",
                   f.keys["broker"][1], "ping")
    h.check(r.returncode == 2 and "secret-key" in r.stderr, "a public file as secret: %s" % r.stderr)

    # Events: a client's SUB hears, a worker's and a NULL one do not.
    subs = {n: sub_socket(f, n) for n in ("alice", "w1", None)}
    time.sleep(0.5)
    for i in range(5):
        alice.submit("event %d" % i, labels={"dry.duration": "0"})
    heard = {}
    deadline = time.monotonic() + 3
    for n, s in subs.items():
        heard[n] = 0
        while time.monotonic() < deadline and s.poll(200):
            s.recv_multipart()
            heard[n] += 1
        s.close()
    h.check(heard["alice"] > 0 and heard["w1"] == 0 and heard[None] == 0, "events %s" % heard)

    quarantine_by_key(f, root)
    agent_key(f, root)

    # A key removed is refused on its next connection, one added back admitted: no restart.
    os.unlink(os.path.join(kdir, "clients", "bob.pub"))
    bob.close()
    unreachable(client(f, "bob", timeout=1.0), "bob after his key was removed")
    shutil.copy(f.keys["bob"][1], os.path.join(kdir, "clients"))
    h.check(client(f, "bob").ping(), "bob after his key came back")
    for c in (alice, bob, w1, root):
        c.close()

    # Handshake cost, printed: CURVE here, and a plain broker for comparison.
    curve = handshake_ms(f.broker_ep, {"curve_secret": f.keys["alice"][0],
                                       "broker_key": f.keys["broker"][1]})
    plain_ep = "ipc://%s/plain.sock" % f.dir
    f._spawn("plain", [os.path.join(h.BIN, "fz-broker"), "--bind", plain_ep, "--events",
                       "ipc://%s/plain-ev.sock" % f.dir, "--db", os.path.join(f.dir, "p.db")])
    h.wait_for(lambda: answers(plain_ep), 10, "the plain broker")
    plain = handshake_ms(plain_ep)
    print("connect + handshake + ping, median of 30: CURVE %.2f ms, plain %.2f ms" % (curve, plain))


h.run("curve_roles", body)
