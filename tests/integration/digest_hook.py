"""fz-ctl digest and fz-watch --on/--exec against a real broker. The digest: a succeeded, a
failed (with the command to retry it), a dep-failed, a held (budget), a waiting and a blocked
task each land in their section, in text and JSON, the same as fz-web's /api/digest, --since
narrows the window, and bad input exits 2, an absent broker 5. The hook: one run per matching
event with the event on stdin and FZ_EVENT_* set, bounded (--jobs 1, slow hooks) without
holding back fz-watch's own output, a failing hook logged, and the README's curl webhook line
delivering to a local HTTP server."""
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fzharness as h  # noqa: E402
import fzweb as w  # noqa: E402


def code(r, want, what):
    h.check(r.returncode == want, "%s: exit %d, wanted %d; stderr: %s" %
            (what, r.returncode, want, r.stderr.strip()[-300:]))
    return r


def digest_part(f):
    ok = f.submit("all good", model="dry", labels={"dry.duration": "0.1"}, name="good-one")
    bad = f.submit("goes wrong", model="dry", labels={"dry.duration": "0.1", "dry.exit": "2"})
    f.wait_states([ok, bad], {"succeeded", "failed"}, 20)
    depf = f.submit("after the bad one", model="dry", after=[bad])
    held = f.submit("too dear", model="dry", max_cost=5)
    long_ = f.submit("long one", model="dry", labels={"dry.duration": "60"})
    waiting = f.submit("after the long one", model="dry", after=[long_])
    blocked = f.submit("nobody serves it", model="other")
    h.wait_for(lambda: f.state(long_) == "running" and f.state(held) == "held", 10,
               "the long task running and the dear one held")
    r = code(f.run_tool("fz-ctl", "digest", "--since", "1h"), 0, "digest")
    out = r.stdout
    print(out)
    for want in ("Succeeded (1):", "#%d good-one" % ok, "Failed (1):", "(fz-ctl retry %d)" % bad,
                 "[task-failed]", "Dep-failed (1):", "#%d after the bad one" % depf,
                 "Held now (1):", "#%d too dear" % held, "Waiting now (2):",
                 "#%d after the long one" % waiting, "waits for 1 dependencies",
                 "#%d nobody serves it" % blocked, "Cost by model since", "Budget ", "$1.00",
                 "1 running"):
        h.check(want in out, "digest lacks %r:\n%s" % (want, out))
    h.check(len(out.splitlines()) < 40, "the digest is more than one screen")
    d = json.loads(code(f.run_tool("fz-ctl", "digest", "--json"), 0, "digest --json").stdout)
    h.check(d["succeeded"]["count"] == 1 and d["failed"]["count"] == 1 and
            d["held"]["count"] == 1 and d["waiting"]["count"] == 2 and d["dep_failed"]["count"] == 1,
            "digest counts: %s" % {k: v.get("count") for k, v in d.items() if isinstance(v, dict)})
    h.check(d["failed"]["tasks"][0]["retry"] == "fz-ctl retry %d" % bad, "retry hint")
    h.check(d["held"]["tasks"][0]["hold_reason"] == "budget", "held why: %s" % d["held"]["tasks"])
    h.check(d["budget"]["cap"] == 1, "budget in the digest")
    _, base = w.start_web(f)
    st, _, b = w.http("GET", base + "/api/digest?since=1h")
    wd = json.loads(b)
    h.check(st == 200 and all(wd[k]["count"] == d[k]["count"] for k in
                              ("succeeded", "failed", "held", "waiting", "dep_failed", "stalled")),
            "fz-web's digest differs from fz-ctl's")
    time.sleep(1.2)
    d = json.loads(code(f.run_tool("fz-ctl", "digest", "--json", "--since", "1s"), 0, "1s").stdout)
    h.check(d["succeeded"]["count"] == 0 and d["failed"]["count"] == 0, "--since 1s kept old tasks")
    h.check(d["held"]["count"] == 1, "what is held now does not depend on --since")
    r = code(f.run_tool("fz-ctl", "digest", "--since", "2x"), 2, "bad --since")
    h.check("is not a duration" in r.stderr, r.stderr)
    code(f.run_tool("fz-ctl", "digest", "--since", "2099-01-01"), 2, "future --since")
    code(f.run_tool("fz-ctl", "digest", "--by", "day"), 2, "an option digest does not take")
    code(f.run_tool("fz-ctl", "--broker", "ipc://%s/none.sock" % f.dir, "digest", timeout=30), 5,
         "absent broker")
    f.ok("cancel", task=long_)
    f.ok("cancel", task=held)
    f.ok("cancel", task=blocked)


class Sink(http.server.BaseHTTPRequestHandler):
    got = []

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        Sink.got.append((self.path, self.headers.get("Content-Type"), self.rfile.read(n)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a):
        pass


def hook_part(f):
    code(f.run_tool("fz-watch", "--on", "task.failed"), 2, "--on without --exec")
    code(f.run_tool("fz-watch", "--on", "Task Failed", "--exec", "true"), 2, "bad topic")
    code(f.run_tool("fz-watch", "--on", "task.failed", "--exec", "true", "--jobs", "0"), 2, "--jobs 0")
    hd = os.path.join(f.dir, "hooks")
    os.makedirs(hd)
    srv = http.server.HTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = "http://127.0.0.1:%d/fz" % srv.server_port
    slow = ("cat > %s/$FZ_EVENT_SEQ.json; env | grep ^FZ_EVENT_ | sort > %s/$FZ_EVENT_SEQ.env; "
            "sleep 0.6; date +%%s.%%N > %s/$FZ_EVENT_SEQ.t && mv %s/$FZ_EVENT_SEQ.t %s/$FZ_EVENT_SEQ.done"
            % (hd, hd, hd, hd, hd))
    def watch(*a):
        p = subprocess.Popen([os.path.join(h.BIN, "fz-watch")] + list(a), env=f.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        f.procs[p.pid] = (p, "watch")  # so the harness ends it if this test fails early
        return p
    p1 = watch("--on", "task.failed,task.succeeded", "--exec", slow, "--jobs", "1")
    p2 = watch("--on", "task.failed", "--exec", "exit 9")
    p3 = watch("--on", "task.failed", "--exec",
               "curl -s --noproxy '*' -X POST -H 'Content-Type: application/json' --data-binary @- " + url)
    time.sleep(0.8)  # subscribed
    ids = [f.submit("hooked %d" % i, model="dry", labels={"dry.duration": "0"}) for i in range(3)]
    ids.append(f.submit("hooked bad", model="dry", labels={"dry.duration": "0", "dry.exit": "1"}))
    f.wait_states(ids, {"succeeded", "failed"}, 20)
    t_end = time.time()
    h.wait_for(lambda: len([n for n in os.listdir(hd) if n.endswith(".done")]) == 4, 15,
               "four hooks to finish")
    dones = sorted(float(open(os.path.join(hd, n)).read()) for n in os.listdir(hd) if n.endswith(".done"))
    h.check(dones[-1] - dones[0] > 1.5, "--jobs 1 ran hooks at once: %s" % dones)
    for p in (p1, p2, p3):
        p.send_signal(signal.SIGTERM)
    outs = [p.communicate(timeout=20) for p in (p1, p2, p3)]
    for p in (p1, p2, p3):
        f.procs.pop(p.pid, None)
    h.check(all(p.returncode == 0 for p in (p1, p2, p3)), "fz-watch exits: %s" %
            [p.returncode for p in (p1, p2, p3)])
    shown = [l for l in outs[0][0].splitlines() if "task.succeeded" in l or "task.failed" in l]
    h.check(len(shown) == 4, "fz-watch printed %d outcome lines: %s" % (len(shown), outs[0][0]))
    h.check(dones[-1] > t_end + 0.5, "the hooks did not lag behind the stream: %s vs %s" % (dones, t_end))
    events = [json.load(open(os.path.join(hd, n))) for n in sorted(os.listdir(hd)) if n.endswith(".json")]
    h.check(sorted(e["task"] for e in events) == sorted(ids), "hooked tasks: %s" % events)
    h.check({e["topic"] for e in events} == {"task.succeeded", "task.failed"}, "topics")
    bad_ev = next(e for e in events if e["topic"] == "task.failed")
    env = open(os.path.join(hd, "%d.env" % bad_ev["seq"])).read()
    for want in ("FZ_EVENT_TOPIC=task.failed", "FZ_EVENT_TASK=%d" % ids[3], "FZ_EVENT_STATE=failed",
                 "FZ_EVENT_CLASS=task-failed", "FZ_EVENT_SEQ=%d" % bad_ev["seq"], "FZ_EVENT_WORKER=w1"):
        h.check(want in env, "hook env lacks %s:\n%s" % (want, env))
    h.check("hook for task.failed seq %d task %d: exited 9" % (bad_ev["seq"], ids[3]) in outs[1][1],
            "a failing hook is logged: %s" % outs[1][1])
    h.wait_for(lambda: Sink.got, 5, "the curl webhook")
    path, ctype, data = Sink.got[0]
    h.check(path == "/fz" and ctype == "application/json" and json.loads(data)["task"] == ids[3],
            "webhook: %s %s %s" % (path, ctype, data[:200]))
    srv.shutdown()


def body(f):
    f.start_broker("--models", "dry,other", "--daily-budget", "1")
    f.start_worker("w1", "--models", "dry", dry_run=True)
    h.wait_for(lambda: f.ok("workers")["workers"], 10, "the worker")
    digest_part(f)
    hook_part(f)


h.run("digest_hook", body)
