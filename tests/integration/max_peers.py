"""Connections bounded: a broker limited to 256 open files (soft and hard) takes 400 peers at
once over ipc, and a broker with --max-peers 50 takes 150 over TCP (requests and event
subscribers), without aborting (libzmq 4.3.4 aborts on EMFILE in its ipc listener: "Too many
open files (src/ipc_listener.cpp)"). It keeps at most the bound open, closes the rest as they
come and says so in its log; a client connected before the flood is answered during it, and
fz-ctl is answered once the flood is gone."""
import os
import resource
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fzharness as h  # noqa: E402

import msgpack  # noqa: E402
import zmq  # noqa: E402


def broker_sockets(pid):
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            n += os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:")
        except OSError:
            pass
    return n


def ping(sock, rid):
    sock.send(msgpack.packb({"v": 1, "type": "ping", "rid": rid}))
    return sock.poll(5000) and msgpack.unpackb(sock.recv(), raw=False).get("type") == "pong"


def flood(f, broker, endpoint, events, n, bound, label):
    ctx = zmq.Context()
    ctx.set(zmq.MAX_SOCKETS, 4 * n)
    pre = ctx.socket(zmq.DEALER)
    pre.linger = 0
    pre.connect(endpoint)
    h.check(ping(pre, 1), "%s: no pong before the flood" % label)
    socks = []
    for i in range(n):
        s = ctx.socket(zmq.DEALER if i % 3 else zmq.SUB)
        s.linger = 0
        if i % 3 == 0:
            s.setsockopt(zmq.SUBSCRIBE, b"")
        s.connect(endpoint if i % 3 else events)
        socks.append(s)
    time.sleep(1.5)  # every connection tried, the refused ones retried
    h.check(broker.poll() is None, "%s: the broker died under %d peers" % (label, n))
    held = broker_sockets(broker.pid)
    h.check(held <= bound + 3, "%s: %d sockets open, bound %d" % (label, held, bound))
    h.check(ping(pre, 2), "%s: the client connected before the flood got no pong" % label)
    for s in socks:
        s.close()
    pre.close()
    ctx.term()
    r = h.wait_for(lambda: (lambda r: r if r.returncode == 0 else None)(
        f.run_tool("fz-ctl", "--broker", endpoint, "status")), 10, "fz-ctl after the flood", 0.2)
    h.check("dispatch" in r.stdout, "%s: fz-ctl status said %r" % (label, r.stdout))
    h.wait_for(lambda: "refused a connection: at the maximum" in open(
        os.path.join(f.dir, "%s.log" % label)).read(), 5, "the log to say so")
    print("%s: %d peers at once, %d sockets held (bound %d), the broker up, fz-ctl answered"
          % (label, n, held, bound))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def body(f):
    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    ipc = os.path.join(h.BIN, "fz-broker")
    b = f._spawn("ipc-broker", [ipc, "--bind", f.broker_ep, "--events", f.events_ep, "--db",
                                f.db], preexec_fn=low_limit)
    f.wait_answering(b)
    flood(f, b, f.broker_ep, f.events_ep, 400, 256 - 64, "ipc-broker")
    f.kill(b)

    port = free_port()
    tcp, ev = "tcp://127.0.0.1:%d" % port, "tcp://127.0.0.1:%d" % free_port()
    b = f._spawn("tcp-broker", [ipc, "--bind", tcp, "--events", ev, "--db",
                                os.path.join(f.dir, "tcp.db"), "--max-peers", "50"])
    h.wait_for(lambda: f.run_tool("fz-ctl", "--broker", tcp, "ping").returncode == 0, 10,
               "the tcp broker")
    flood(f, b, tcp, ev, 150, 50, "tcp-broker")
    f.kill(b)

    # A bound above what the open files allow is lowered, and said so.
    b = f._spawn("big-broker", [ipc, "--bind", f.broker_ep, "--events", f.events_ep, "--db",
                                f.db, "--max-peers", "100000"], preexec_fn=low_limit)
    f.wait_answering(b)
    with open(os.path.join(f.dir, "big-broker.log")) as log:
        h.check("at most 192 connections" in log.read(), "the bound was not lowered")
    r = f.run_tool("fz-broker", "--max-peers", "0")
    h.check(r.returncode == 2, "--max-peers 0 exited %d" % r.returncode)


h.run("max_peers", body)
