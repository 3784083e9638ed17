"""Harness for fz integration tests: starts the real binaries on private ipc endpoints in a
temporary folder, talks to the broker with the Python client, and cleans up every process it
started, by PID, including agents left behind by a killed worker (found by the private
endpoint in their environment, which only processes of this test carry).

Used by tests/integration/*.py; run with Debian's /usr/bin/python3 (python3-zmq,
python3-msgpack)."""

import os
import signal
import subprocess
import sys
import tempfile
import time

SRC = os.environ.get("FZ_SRC") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("FZ_BIN") or os.path.join(SRC, "build", "bin")
import msgpack
import zmq

DRY_AGENT = os.path.join(SRC, "scripts", "agents", "dry-run")


class TestFailure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def rss_kib(pid):
    """Resident memory of a process, KiB (0 if it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def small_asan_quarantine(f):
    """Under AddressSanitizer freed memory waits in a quarantine (256 MiB by default) before it
    is reused, which a memory bound would count as growth: keep it small for the processes f
    starts from now on (plain builds ignore the variable)."""
    f.env["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=4").lstrip(":")


def wait_for(pred, timeout, what, interval=0.05):
    """Polls pred() until it returns a true value; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TestFailure("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(interval)


class Factory:
    """One private factory: a temp folder, endpoints, and the processes started in it."""

    def __init__(self, name):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="fz-it-%s-" % name)
        self.broker_ep = "ipc://%s/broker.sock" % self.dir
        self.events_ep = "ipc://%s/events.sock" % self.dir
        self.db = os.path.join(self.dir, "fz.db")
        self.procs = {}  # pid -> (Popen, label)
        self.broker = None
        self.env = dict(os.environ, FZ_BROKER=self.broker_ep, FZ_EVENTS=self.events_ep,
                        FZ_STATE=os.path.join(self.dir, "state"))
        self._sock = None
        self._rid = 0
        self.expect_orphans = False  # set when the test SIGKILLs a worker under an agent

    # ------------------------------------------------------------------ processes
    def _spawn(self, label, argv, **kw):
        log = open(os.path.join(self.dir, label + ".log"), "ab")
        p = subprocess.Popen(argv, env=kw.pop("env", self.env), stdout=log, stderr=log,
                             stdin=subprocess.DEVNULL, **kw)
        log.close()
        self.procs[p.pid] = (p, label)
        return p

    def start_broker(self, *args, wait=True):
        argv = [os.path.join(BIN, "fz-broker"), "--bind", self.broker_ep,
                "--events", self.events_ep, "--db", self.db] + list(args)
        self.broker = self._spawn("broker", argv)
        if wait:
            self.wait_answering(self.broker)
        return self.broker

    def wait_answering(self, broker, timeout=30):
        """Waits until broker answers ping; fails at once if it exited. The time allowed is
        long because a loaded machine can hold a starting broker in its first fsync for
        seconds; a broker that is up answers in milliseconds."""
        def up():
            rc = broker.poll()
            if rc is not None:
                raise TestFailure("the broker exited with status %d before answering ping" % rc)
            return self._ping()
        wait_for(up, timeout, "the broker to answer ping")

    def start_worker(self, name, *args, dry_run=False, agent=None):
        argv = [os.path.join(BIN, "fz-worker"), "--name", name,
                "--workdir", os.path.join(self.dir, "work", name)]
        if dry_run:
            argv.append("--dry-run")
        else:
            argv += ["--agent", agent or DRY_AGENT]
        return self._spawn("worker-" + name, argv + list(args))

    def run_tool(self, tool, *args, input=None, timeout=30):
        """Runs fz-submit / fz-ctl / fz-watch; returns CompletedProcess (text)."""
        return subprocess.run([os.path.join(BIN, tool)] + list(args), env=self.env,
                              input=input, capture_output=True, text=True, timeout=timeout)

    def kill(self, proc, sig=signal.SIGTERM, wait=True):
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
        if wait:
            proc.wait(timeout=30)
            self.procs.pop(proc.pid, None)

    def _ping(self):
        r = self.req("ping", reply_timeout=0.5, must=False)
        return r and r.get("type") == "pong"

    def _socket(self):
        if self._sock is None:
            self._sock = zmq.Context.instance().socket(zmq.DEALER)
            self._sock.linger = 0
            self._sock.connect(self.broker_ep)
        return self._sock

    def send_raw(self, *frames):
        self._socket().send_multipart(list(frames))

    def recv_reply(self, rid=None, timeout=5.0):
        """The next reply (with this rid, if given) as a dict, or None on timeout."""
        sock = self._socket()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sock.poll(int(left * 1000)):
                return None
            reply = msgpack.unpackb(sock.recv(), raw=False)
            if rid is None or reply.get("rid") == rid:
                return reply

    def req(self, type_, reply_timeout=5.0, must=True, **fields):
        """One request; returns the reply dict (an error reply too). On no reply: fails the
        test when must, else returns None after resetting the socket."""
        self._rid += 1
        msg = {"v": 1, "type": type_, "rid": self._rid}
        msg.update(fields)
        self.send_raw(msgpack.packb(msg, use_bin_type=True))
        reply = self.recv_reply(self._rid, reply_timeout)
        if reply is None:
            self._sock.close()
            self._sock = None
            if must:
                raise TestFailure("no reply to %s within %.1f s" % (type_, reply_timeout))
        return reply

    def ok(self, type_, **fields):
        """A request that must succeed; returns the reply."""
        r = self.req(type_, **fields)
        check(r["type"] != "error", "%s failed: %s" % (type_, r))
        return r

    def submit(self, prompt, **fields):
        return self.ok("submit", prompt=prompt, **fields)["task"]

    def task(self, tid):
        return self.ok("get", task=tid)

    def state(self, tid):
        return self.task(tid)["task"]["state"]

    def wait_states(self, ids, states, timeout):
        """Waits until every task is in one of states; returns {id: state}."""
        def done():
            got = {i: self.state(i) for i in ids}
            return got if all(s in states for s in got.values()) else None
        return wait_for(done, timeout, "tasks %s to reach %s" % (ids, states), 0.1)

    # ------------------------------------------------------------------ leftovers
    def own_pids(self):
        """PIDs of live processes whose environment names this factory's endpoint: every fz
        process and agent this test started (children inherit the environment)."""
        mine = []
        needle = ("FZ_BROKER=" + self.broker_ep).encode()
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == os.getpid():
                continue
            try:
                with open("/proc/%s/environ" % d, "rb") as f:
                    env = f.read()
                with open("/proc/%s/stat" % d) as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z" and needle in env.split(b"\0"):
                mine.append(int(d))
        return mine

    def cleanup(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        # Workers first, while the broker can still acknowledge their last results.
        ordered = sorted(self.procs.values(), key=lambda pl: pl[1] == "broker")
        for group in ([pl for pl in ordered if pl[1] != "broker"],
                      [pl for pl in ordered if pl[1] == "broker"]):
            for p, label in group:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 20
            for p, label in group:
                try:
                    p.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs.clear()
        # Agents of workers killed with SIGKILL are orphans now: end them by PID.
        left = self.own_pids()
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return left

    def logs(self):
        out = []
        for name in sorted(os.listdir(self.dir)):
            if name.endswith(".log"):
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    out.append("---- %s ----\n%s" % (name, f.read()[-4000:]))
        return "\n".join(out)


def run(name, body):
    """Runs body(factory); cleans up; exits 0 on success, 1 on failure (with logs)."""
    fac = Factory(name)
    ok = False
    try:
        body(fac)
        ok = True
    except (TestFailure, subprocess.TimeoutExpired, AssertionError) as e:
        print("FAIL %s: %s" % (name, e), file=sys.stderr)
    except Exception:  # a bug in the test or an unexpected reply: still clean up, and say so
        import traceback
        traceback.print_exc()
    finally:
        left = fac.cleanup()
        if left and not fac.expect_orphans:
            print("FAIL %s: processes left behind after cleanup: %s" % (name, left), file=sys.stderr)
            ok = False
        if not ok:
            print(fac.logs(), file=sys.stderr)
        else:
            subprocess.run(["rm", "-rf", fac.dir])
    print("%s %s" % ("PASS" if ok else "FAIL", name))
    sys.exit(0 if ok else 1)
