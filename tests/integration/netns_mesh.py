"""The mesh across simulated hosts: the broker in one network namespace, two workers in two
others, each on its own address behind a bridge (a fourth namespace), over TCP with CURVE on.

1. Tasks flow (submitted from a worker's host). A partition (the link of w1's host down for
   5 s, more than three heartbeats) and then a heal ends with every task recorded exactly
   once: one successful attempt each, the cut-off attempt recorded as `lost` and stopped on
   its worker when it reconnects (its own result is not recorded).
2. 200 ms delay and 5% loss each way on both workers' links (tc netem; on a kernel without
   sch_netem, a delaying TCP relay and iptables' random drop instead, and the test says so)
   at the default heartbeat: tasks flow and there is no dead-worker verdict on either side.
3. Refused: a NULL client, an unknown key, a worker key that submits, a client key that
   registers as a worker.

Needs root and `ip netns`; skipped (exit 77) with a message only where a namespace cannot be
created. Every namespace, link and process it made is removed at the end, on failure and on
SIGTERM/SIGINT too; the whole run is bounded (SIGALRM after 200 s)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fzharness as h  # noqa: E402

TAG = "fz%d" % (os.getpid() % 100000)
NS = {r: TAG + r for r in ("sw", "b", "w1", "w2")}  # switch, broker, workers
ADDR = {"b": "10.77.0.1", "w1": "10.77.0.11", "w2": "10.77.0.12"}
EP = "tcp://%s:5570" % ADDR["b"]
EVENTS = "tcp://%s:5571" % ADDR["b"]
RELAY_PORT = 5580
HEARTBEAT_S = 1.0  # the broker's default


class Mesh:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="fz-it-netns-")
        self.made = []  # namespaces, in order
        self.procs = {}  # pid -> (Popen, label)
        self.env = dict(os.environ, FZ_STATE=os.path.join(self.dir, "state"), FZ_BROKER=EP,
                        FZ_EVENTS=EVENTS)
        self.keys = {}

    # ------------------------------------------------------------ plumbing
    def sh(self, *argv, check=True, timeout=20):
        r = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise h.TestFailure("%s: %s" % (" ".join(argv), r.stderr.strip()))
        return r

    def ns(self, node, *argv, check=False, timeout=30):
        """Runs argv inside the namespace of node; returns CompletedProcess (text)."""
        return subprocess.run(["ip", "netns", "exec", NS[node]] + list(argv), env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=check)

    def spawn(self, node, label, argv):
        log = open(os.path.join(self.dir, label + ".log"), "ab")
        p = subprocess.Popen(["ip", "netns", "exec", NS[node]] + argv, env=self.env,
                             stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        self.procs[p.pid] = (p, label)
        return p

    def stop(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        self.procs.pop(p.pid, None)

    def log(self, label):
        try:
            with open(os.path.join(self.dir, label + ".log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    # ------------------------------------------------------------ the network
    def build(self):
        for role in ("sw", "b", "w1", "w2"):
            self.sh("ip", "netns", "add", NS[role])
            self.made.append(NS[role])
            self.sh("ip", "-n", NS[role], "link", "set", "lo", "up")
        sw = NS["sw"]
        self.sh("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        self.sh("ip", "-n", sw, "link", "set", "br0", "up")
        for node in ("b", "w1", "w2"):
            port = "p-" + node
            self.sh("ip", "-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0",
                    "netns", NS[node])
            self.sh("ip", "-n", sw, "link", "set", port, "master", "br0", "up")
            self.sh("ip", "-n", NS[node], "addr", "add", ADDR[node] + "/24", "dev", "eth0")
            self.sh("ip", "-n", NS[node], "link", "set", "eth0", "up")

    def link(self, node, up):
        self.sh("ip", "-n", NS["sw"], "link", "set", "p-" + node, "up" if up else "down")

    def cleanup(self):
        for p, label in list(self.procs.values()):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p, label in list(self.procs.values()):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()
        # Agents of the dry-run workers end with their workers; any process still inside one
        # of our namespaces is ours: kill it by PID before the namespace goes.
        for name in self.made:
            r = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
            for pid in r.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        for name in reversed(self.made):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        left = [n for n in self.made if os.path.exists("/run/netns/" + n)]
        self.made = []
        return left

    # ------------------------------------------------------------ fz
    def keygen(self, *names):
        os.makedirs(os.path.join(self.dir, "k"), exist_ok=True)
        for n in names:
            base = os.path.join(self.dir, "k", n)
            r = subprocess.run([os.path.join(h.BIN, "fz-ctl"), "keygen", base],
                               capture_output=True, text=True)
            h.check(r.returncode == 0, "keygen: %s" % r.stderr)
            self.keys[n] = (base + ".key", base + ".pub")

    def keyflags(self, name):
        return ["--curve-secret", self.keys[name][0], "--broker-key", self.keys["broker"][1]]

    def ctl(self, node, key, *args, endpoint=EP):
        return self.ns(node, os.path.join(h.BIN, "fz-ctl"), "--broker", endpoint,
                       *(self.keyflags(key) if key else []), *args)

    def ctl_json(self, *args, key="root"):
        r = self.ctl("b", key, "--json", *args)
        h.check(r.returncode == 0, "fz-ctl %s: %s" % (" ".join(args), r.stderr))
        return json.loads(r.stdout)

    def submit(self, node, key, prompt, duration):
        r = self.ns(node, os.path.join(h.BIN, "fz-submit"), "--broker", EP,
                    *self.keyflags(key), "--label", "dry.duration=%s" % duration, prompt)
        h.check(r.returncode == 0, "submit from %s: %s" % (node, r.stderr))
        return int(r.stdout.split()[0])

    def start_worker(self, node, name, key, endpoint=EP):
        argv = [os.path.join(h.BIN, "fz-worker"), "--name", name, "--broker", endpoint,
                "--agent", h.DRY_AGENT, "--workdir", os.path.join(self.dir, "work", name)]
        return self.spawn(node, "worker-" + name, argv + self.keyflags(key))

    def show(self, tid):
        return self.ctl_json("show", str(tid))

    def workers(self):
        return [w["name"] for w in self.ctl_json("workers").get("workers", [])]

    def all_ended(self, ids):
        return all(self.show(t)["task"]["state"] == "succeeded" for t in ids)


def exactly_once(m, ids):
    """Every task succeeded with exactly one successful attempt; returns {id: attempts}."""
    listed = m.ctl_json("list", "--limit", "100000").get("tasks", [])
    h.check(len(listed) == len(set(t["id"] for t in listed)), "duplicate task ids")
    out = {}
    for t in ids:
        got = m.show(t)
        good = [a for a in got["attempts"] if a["outcome"] == "exited" and a["exit_code"] == 0]
        h.check(got["task"]["state"] == "succeeded" and len(good) == 1,
                "task %d: %s, %d successful attempts" % (t, got["task"]["state"], len(good)))
        out[t] = got["attempts"]
    return out


def phase_partition(m):
    quick = [m.submit("w1", "alice", "quick %d" % i, 0.3) for i in range(4)]
    h.wait_for(lambda: m.all_ended(quick), 30, "quick tasks to succeed", 0.3)
    long = [m.submit("w2", "alice", "long %d" % i, 8) for i in range(2)]

    def running():
        got = {t: m.show(t)["task"] for t in long}
        on = {v["worker"] for v in got.values() if v["state"] == "running"}
        return got if on == {"w1", "w2"} else None
    got = h.wait_for(running, 20, "both long tasks running, one per worker", 0.3)
    cut = next(t for t, v in got.items() if v["worker"] == "w1")
    t0 = time.monotonic()
    m.link("w1", False)
    try:
        h.wait_for(lambda: m.show(cut)["attempts"][0]["outcome"] == "lost", 10,
                   "the cut-off attempt to be declared lost", 0.3)
        verdict_s = time.monotonic() - t0
        time.sleep(max(0.0, 5.0 - (time.monotonic() - t0)))
    finally:
        m.link("w1", True)
    print("partition: w1's link down %.1f s; its attempt lost after %.1f s (dead after 3 x %.0f s)"
          % (time.monotonic() - t0, verdict_s, HEARTBEAT_S))
    h.wait_for(lambda: m.all_ended(quick + long), 60, "every task to succeed after the heal", 0.5)
    attempts = exactly_once(m, quick + long)
    first = attempts[cut][0]
    h.check(first["outcome"] == "lost", "the cut-off attempt was recorded as %s" % first)
    h.wait_for(lambda: ("task %d attempt 1: cancelled" % cut) in m.log("worker-w1"), 20,
               "w1 to stop the stale attempt")
    print("partition: %d tasks, each recorded once; task %d: attempt 1 lost and stopped on w1, "
          "%d attempts in all" % (len(quick + long), cut, len(attempts[cut])))
    return quick + long


def impair(m):
    """200 ms and 5% loss each way on both workers' links; returns (mode, endpoint)."""
    args = ["root", "netem", "delay", "200ms", "loss", "5%"]
    r = m.ns("w1", "tc", "qdisc", "add", "dev", "eth0", *args)
    if r.returncode == 0:
        for node, dev in (("w2", "eth0"), ("sw", "p-w1"), ("sw", "p-w2")):
            r = m.ns(node, "tc", "qdisc", "add", "dev", dev, *args)
            h.check(r.returncode == 0, "netem on %s %s: %s" % (node, dev, r.stderr))
        return "tc netem", EP
    print("tc netem is not available here (%s): a TCP relay delays 200 ms each way and "
          "iptables drops 5%% of packets each way instead" % r.stderr.strip())
    m.spawn("b", "relay", ["/usr/bin/python3", os.path.join(h.SRC, "tests", "lib", "delay_relay.py"),
                           ADDR["b"], str(RELAY_PORT), ADDR["b"], "5570", "200"])
    for node in ("w1", "w2"):
        for chain, way in (("OUTPUT", "-o"), ("INPUT", "-i")):
            r = m.ns(node, "iptables", "-A", chain, way, "eth0", "-m", "statistic", "--mode",
                     "random", "--probability", "0.05", "-j", "DROP")
            h.check(r.returncode == 0, "iptables in %s: %s" % (node, r.stderr))
    return "relay + iptables", "tcp://%s:%d" % (ADDR["b"], RELAY_PORT)


def phase_impaired(m, workers):
    for p in workers:
        m.stop(p)
    mode, endpoint = impair(m)
    watch = m.spawn("b", "watch", [os.path.join(h.BIN, "fz-watch"), "--events", EVENTS,
                                   "--broker", EP, "--json"] + m.keyflags("alice"))
    time.sleep(1.0)
    ws = [m.start_worker("w1", "n1", "w1", endpoint), m.start_worker("w2", "n2", "w2", endpoint)]
    h.wait_for(lambda: {"n1", "n2"} <= set(m.workers()), 30, "impaired workers to join", 0.5)
    t0 = time.monotonic()
    ids = [m.submit("b", "alice", "impaired %d" % i, 1.5) for i in range(10)]
    h.wait_for(lambda: m.all_ended(ids), 90, "tasks over the impaired links", 1.0)
    time.sleep(max(0.0, 20.0 - (time.monotonic() - t0)))  # at least 20 s of heartbeats
    observed = time.monotonic() - t0
    m.stop(watch)
    events = [json.loads(line) for line in m.log("watch").splitlines() if line.startswith("{")]
    left = [e for e in events if e.get("topic") == "worker.left"]
    lost = [a for t in ids for a in m.show(t)["attempts"] if a["outcome"] == "lost"]
    silent = [n for n in ("n1", "n2") if "broker silent" in m.log("worker-" + n)]
    exactly_once(m, ids)
    print("impaired (%s): %.0f s, %d tasks succeeded, %d events seen; verdicts: worker.left %d, "
          "lost attempts %d, workers that took the broker for dead %d"
          % (mode, observed, len(ids), len(events), len(left), len(lost), len(silent)))
    h.check(events, "the event stream (CURVE) carried nothing")
    h.check(not left and not lost and not silent,
            "false dead verdicts: left %s, lost %s, worker side %s" % (left, lost, silent))
    for p in ws:
        m.stop(p)
    for node in ("w1", "w2"):  # the refusals below run on clean links
        m.ns(node, "tc", "qdisc", "del", "dev", "eth0", "root")
        m.ns(node, "iptables", "-F")
    for dev in ("p-w1", "p-w2"):
        m.ns("sw", "tc", "qdisc", "del", "dev", dev, "root")


def phase_refusals(m):
    ctl = os.path.join(h.BIN, "fz-ctl")
    r = m.ns("w2", ctl, "--broker", EP, "ping")
    h.check(r.returncode == 5, "a NULL client: exit %d %s" % (r.returncode, r.stderr))
    r = m.ns("w2", ctl, "--broker", EP, *m.keyflags("stranger"), "ping")
    h.check(r.returncode == 5, "an unknown key: exit %d %s" % (r.returncode, r.stderr))
    r = m.ns("w2", os.path.join(h.BIN, "fz-submit"), "--broker", EP, *m.keyflags("w2"), "x")
    h.check(r.returncode == 2 and "may not send 'submit'" in r.stderr,
            "a worker key that submits: exit %d %s" % (r.returncode, r.stderr))
    spy = m.start_worker("w2", "spy", "alice")
    h.wait_for(lambda: "may not send 'hello'" in m.log("worker-spy"), 20,
               "the client-keyed worker to be refused")
    h.check("spy" not in m.workers(), "a client key registered as a worker")
    m.stop(spy)
    broker = m.log("broker")
    h.check("unknown key" in broker and "refused 'submit' from worker:w2" in broker and
            "refused 'hello' from client:alice" in broker, "the broker's log of refusals")
    print("refused: a NULL client, an unknown key, a worker key that submits, a client key "
          "that registers as a worker")


def body(m):
    m.keygen("broker", "alice", "root", "w1", "w2", "stranger")
    kdir = os.path.join(m.dir, "keys")
    for role, names in (("clients", ("alice",)), ("workers", ("w1", "w2")), ("admins", ("root",))):
        os.makedirs(os.path.join(kdir, role))
        for n in names:
            shutil.copy(m.keys[n][1], os.path.join(kdir, role))
    m.build()
    m.spawn("b", "broker", [os.path.join(h.BIN, "fz-broker"), "--bind", EP, "--events", EVENTS,
                            "--db", os.path.join(m.dir, "fz.db"), "--curve-secret",
                            m.keys["broker"][0], "--keys", kdir])
    h.wait_for(lambda: m.ctl("b", "root", "ping").returncode == 0, 15, "the broker")
    workers = [m.start_worker("w1", "w1", "w1"), m.start_worker("w2", "w2", "w2")]
    h.wait_for(lambda: {"w1", "w2"} <= set(m.workers()), 20, "both workers to join", 0.3)
    phase_partition(m)
    phase_impaired(m, workers)
    phase_refusals(m)
    h.check(m.ctl("b", "root", "ping").returncode == 0, "the broker answers at the end")


def main():
    if os.geteuid() != 0 or not shutil.which("ip"):
        print("SKIP netns_mesh: needs root and iproute2's ip to make network namespaces")
        return 77
    probe = TAG + "probe"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        print("SKIP netns_mesh: cannot create a network namespace here: %s" % r.stderr.strip())
        return 77
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)

    def on_signal(sig, frame):
        raise h.TestFailure("stopped by signal %d" % sig)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM):
        signal.signal(sig, on_signal)
    signal.alarm(200)
    m = Mesh()
    ok = False
    t0 = time.monotonic()
    try:
        body(m)
        ok = True
    except (h.TestFailure, subprocess.TimeoutExpired, AssertionError, json.JSONDecodeError) as e:
        print("FAIL netns_mesh: %s" % e, file=sys.stderr)
    except Exception:
        import traceback
        traceback.print_exc()
    finally:
        signal.alarm(0)
        left = m.cleanup()
        if left:
            print("FAIL netns_mesh: namespaces left: %s" % left, file=sys.stderr)
            ok = False
        if not ok:
            for name in sorted(os.listdir(m.dir)):
                if name.endswith(".log"):
                    print("---- %s ----\n%s" % (name, m.log(name[:-4])[-3000:]), file=sys.stderr)
        else:
            shutil.rmtree(m.dir, ignore_errors=True)
    print("%s netns_mesh (%.0f s)" % ("PASS" if ok else "FAIL", time.monotonic() - t0))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
