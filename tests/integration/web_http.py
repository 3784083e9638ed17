"""fz-web over HTTP, without a browser: /metrics parsed strictly as Prometheus text and checked
against what the broker did; the controls refused without the token, with a wrong one, from
another origin or Host, and with no token configured at all (the broker stays unpaused), and
obeyed with it; the JSON endpoints and their errors; the live stream (SSE): events as they
happen, resuming after Last-Event-ID, a gap frame for an id it cannot resume, a task's stream
with that task's output only; and a clean exit on SIGTERM with a stream open."""
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fzharness as h  # noqa: E402
import fzweb as w  # noqa: E402

TOKEN = "t0ken-for-the-test-1234"


def body(f):
    f.start_broker("--models", "dry,other", "--daily-budget", "5")
    f.start_worker("w1", "--models", "dry", dry_run=True)
    f.start_worker("w2", "--models", "dry", dry_run=True)
    tok = os.path.join(f.dir, "token")
    with open(tok, "w") as fh:
        fh.write(TOKEN + "\n")
    os.chmod(tok, 0o600)
    web, base = w.start_web(f, "--admin-token-file", tok)
    _, base_off = w.start_web(f, label="web-off")
    h.wait_for(lambda: len(f.ok("workers")["workers"]) == 2, 10, "two workers")
    host = base.split("//")[1]

    # ---- the live stream, from before the tasks
    sse = w.SSE(base)
    first = sse.events(1, 0.5)  # open (nothing happened yet)
    ok_ids = [f.submit("ok %d" % i, model="dry", labels={"dry.duration": "0.2"}) for i in range(3)]
    bad = f.submit("fails", model="dry", labels={"dry.duration": "0.1", "dry.exit": "2"})
    f.wait_states(ok_ids + [bad], {"succeeded", "failed"}, 30)
    evs = first + sse.events(40, 3)
    got = [(i, json.loads(d)) for i, e, d in evs if e == "fz"]
    topics = [g["topic"] for _, g in got]
    h.check(any(g["topic"] == "task.submitted" and g["task"] == bad for _, g in got),
            "the stream showed no task.submitted of %d: %s" % (bad, topics[:20]))
    h.check("task.failed" in topics and topics.count("task.succeeded") == 3, "outcomes: %s" % topics)
    h.check("task.output" not in topics, "output on the overview stream")
    ids = [i for i, _ in got]
    run, n2 = ids[1].split(".")
    # latency, one task at a time: from the broker's ts of task.submitted to this reader
    lat = []
    for k in range(10):
        tid = f.submit("latency %d" % k, model="other")  # no worker serves it: stays queued
        for i, e, d in sse.events(1, 5):
            ev = json.loads(d)
            if ev["topic"] == "task.submitted" and ev["task"] == tid:
                lat.append(sse.times[i] - ev["ts"])
    lat.sort()
    h.check(len(lat) == 10, "latency probes: %d of 10 seen" % len(lat))
    print("SSE latency (broker event -> fz-web -> reader), 10 probes: median %.1f ms, max %.1f ms" %
          (1000 * lat[5], 1000 * lat[-1]))
    for k in range(10):
        f.ok("cancel", task=bad + 1 + k)
    sse.close()
    # resume after the second event: the next one is the third, nothing repeated
    again = w.SSE(base, headers={"Last-Event-ID": ids[1]})
    nxt = again.events(1, 5)
    again.close()
    h.check(nxt and nxt[0][0] == "%s.%d" % (run, int(n2) + 1),
            "resume after %s gave %s" % (ids[1], nxt[:1]))
    bogus = w.SSE(base, headers={"Last-Event-ID": "0123456789abcdef.5"})
    g1 = bogus.events(1, 5)
    bogus.close()
    h.check(g1 and g1[0][1] == "gap", "an id of another run must give a gap first: %s" % g1)

    # ---- a task's stream: its output, no other task's
    slow = f.submit("with output", model="dry", labels={"dry.duration": "1.5"})
    ts = w.SSE(base, "/events?task=%d" % slow)
    other = f.submit("another", model="dry", labels={"dry.duration": "0.1"})
    tev = [json.loads(d) for _, e, d in ts.events(12, 8) if e == "fz"]
    ts.close()
    h.check(tev and all(e["task"] == slow for e in tev), "task stream carried other tasks")
    h.check(any(e["topic"] == "task.output" for e in tev), "task stream without output: %s" %
            [e["topic"] for e in tev])
    f.wait_states([slow, other], {"succeeded"}, 30)

    # ---- /metrics
    t0 = time.monotonic()
    st, hd, raw = w.http("GET", base + "/metrics")
    took = time.monotonic() - t0
    h.check(st == 200 and hd["Content-Type"].startswith("text/plain; version=0.0.4"), "metrics: %s %s" % (st, hd))
    fams = w.parse_metrics(raw.decode())
    print("/metrics: %d bytes, %d families, %.1f ms" % (len(raw), len(fams), took * 1000))
    h.check(w.value(fams, "fz_tasks", state="succeeded", model="dry") == 5, "succeeded by model")
    h.check(w.value(fams, "fz_tasks", state="failed", model="dry") == 1, "failed by model")
    h.check(fams["fz_tasks"]["type"] == "gauge", "fz_tasks is a gauge")
    h.check(w.value(fams, "fz_workers", state="idle") == 2, "idle workers")
    h.check(w.value(fams, "fz_budget_cap_usd") == 5, "cap")
    h.check(w.value(fams, "fz_broker_up") == 1, "broker up")
    # The broker's own loop: turns, commits and their seconds, counters that only grow.
    for name in ("fz_broker_turns_total", "fz_broker_turn_seconds_total", "fz_broker_commits_total",
                 "fz_broker_commit_seconds_total", "fz_broker_sync_seconds_total"):
        h.check(fams[name]["type"] == "counter", "%s is a counter" % name)
    h.check(w.value(fams, "fz_broker_commits_total") >= 12, "commits: at least one per submit")
    h.check(w.value(fams, "fz_broker_turns_total") >= w.value(fams, "fz_broker_commits_total"),
            "turns and commits")
    h.check(0 < w.value(fams, "fz_broker_commit_seconds_total")
            <= w.value(fams, "fz_broker_turn_seconds_total"), "commit seconds within turn seconds")
    # --sync full (the default): each commit's fdatasync, beside the loop.
    h.check(w.value(fams, "fz_broker_sync_seconds_total") > 0, "sync seconds")
    h.check(w.value(fams, "fz_running_agents") == 0, "running")
    h.check(fams["fz_cost_usd_total"]["type"] == "counter", "cost is a counter")
    h.check(sum(s[2] for s in fams["fz_cost_usd_total"]["samples"]) > 0, "some cost")
    h.check(sum(s[2] for s in fams["fz_attempts_total"]["samples"]) == 6, "attempts by model")
    h.check(w.value(fams, "fz_attempts_by_class_total", **{"class": "task-failed"}) == 1, "by class")
    h.check(w.value(fams, "fz_attempts_ended_total", outcome="exited", **{"class": "task-failed"}) == 1,
            "ended by outcome and class")
    h.check(fams["fz_dispatch_latency_seconds"]["type"] == "histogram", "latency histogram")
    h.check(w.value(fams, "fz_dispatch_latency_seconds_count") == 6, "latency count")
    h.check(w.value(fams, "fz_budget_spent_today_usd") > 0, "spent")

    # ---- controls
    def paused():
        return f.ok("status")["paused"]
    url = base + "/api/pause"
    for what, hdrs, want in [
        ("no token", {}, 401),
        ("a wrong token", {"X-FZ-Token": TOKEN + "x"}, 401),
        ("the token in a cookie", {"Cookie": "X-FZ-Token=" + TOKEN}, 401),
        ("another origin", {"X-FZ-Token": TOKEN, "Origin": "http://evil.example"}, 403),
        ("a rebound Host", {"X-FZ-Token": TOKEN, "Host": "evil.example:" + host.split(":")[1],
                            "Origin": "http://evil.example:" + host.split(":")[1]}, 421),
    ]:
        st, _, b = w.http("POST", url, hdrs)
        h.check(st == want, "pause with %s: %d %s (wanted %d)" % (what, st, b, want))
        h.check(not paused(), "pause with %s paused the broker" % what)
    st, _, b = w.http("POST", base_off + "/api/pause", {"X-FZ-Token": TOKEN})
    h.check(st == 403 and b"controls are off" in b, "no --admin-token-file: %d %s" % (st, b))
    st, _, _ = w.http("GET", base + "/api/pause")
    h.check(st == 404 and not paused(), "GET must not control: %d" % st)
    good = {"X-FZ-Token": TOKEN, "Origin": "http://" + host}
    st, _, b = w.http("POST", url, good)
    h.check(st == 200 and paused(), "pause with the token: %d %s" % (st, b))
    st, _, b = w.http("POST", base + "/api/resume", {"Authorization": "Bearer " + TOKEN})
    h.check(st == 200 and not paused(), "resume: %d %s" % (st, b))
    long_id = f.submit("long", model="dry", labels={"dry.duration": "30"})
    h.wait_for(lambda: f.state(long_id) == "running", 10, "long task running")
    st, _, b = w.http("POST", base + "/api/task/%d/cancel" % long_id)
    h.check(st == 401 and f.state(long_id) == "running", "cancel without token: %d" % st)
    st, _, b = w.http("POST", base + "/api/task/%d/cancel" % long_id, good)
    h.check(st == 200, "cancel: %d %s" % (st, b))
    h.wait_for(lambda: f.state(long_id) == "cancelled", 10, "cancelled")
    st, _, b = w.http("POST", base + "/api/task/%d/retry" % long_id, good)
    h.check(st == 200 and json.loads(b)["state"] == "queued", "retry: %d %s" % (st, b))
    st, _, b = w.http("POST", base + "/api/task/%d/escalate" % long_id, good)
    h.check(st == 200, "escalate: %d %s" % (st, b))
    st, _, b = w.http("POST", base + "/api/task/%d/retry" % ok_ids[0], good)
    h.check(st == 409 and json.loads(b)["code"] == "conflict", "retry a success: %d %s" % (st, b))
    st, _, b = w.http("POST", base + "/api/task/999999/cancel", good)
    h.check(st == 404, "cancel a missing task: %d" % st)
    st, _, b = w.http("POST", base + "/api/task/%d/frobnicate" % long_id, good)
    h.check(st == 400, "unknown control: %d" % st)
    w.http("POST", base + "/api/task/%d/cancel" % long_id, good)

    # ---- JSON endpoints and their errors, headers
    st, hd, b = w.http("GET", base + "/")
    h.check(st == 200 and b"<script src=\"/app.js\"" in b, "page")
    h.check("script-src 'self'" in hd.get("Content-Security-Policy", "") and
            hd.get("X-Content-Type-Options") == "nosniff", "security headers: %s" % hd)
    st, _, b = w.http("GET", base + "/api/overview")
    ov = json.loads(b)
    h.check(st == 200 and ov["status"]["counts"]["succeeded"] == 5 and len(ov["workers"]["workers"]) == 2,
            "overview: %s" % ov["status"])
    st, _, b = w.http("GET", base + "/api/task/%d" % bad)
    t = json.loads(b)
    h.check(st == 200 and t["task"]["state"] == "failed" and len(t["attempts"]) == 1, "task: %s" % t["task"])
    for path, want in [("/api/task/999999", 404), ("/api/task/x", 400), ("/api/tasks?limit=abc", 400),
                       ("/api/tasks?state=nope", 400), ("/api/digest?since=2x", 400), ("/nope", 404),
                       ("/api/cost?by=day", 200), ("/api/digest?since=1h", 200),
                       ("/api/tasks?state=failed&limit=5", 200)]:
        st, _, b = w.http("GET", base + path)
        h.check(st == want, "%s: %d %s (wanted %d)" % (path, st, b[:200], want))
        json.loads(b)
    st, _, _ = w.http("PUT", base + "/api/overview")
    h.check(st == 405, "PUT: %d" % st)
    st, _, _ = w.http("GET", base + "/api/overview", {"Host": "evil.example:80"})
    h.check(st == 421, "a GET with a foreign Host: %d" % st)

    # ---- bad usage exits 2, a port in use 1
    for args, want, what in [(["--listen", "nowhere"], 2, "a bad --listen"),
                             (["--listen", "127.0.0.1:99999"], 2, "a bad port"),
                             (["--admin-token-file", os.path.join(f.dir, "none")], 2, "no token file"),
                             (["--listen", host], 1, "a port in use"),
                             (["--frobnicate"], 2, "an unknown flag")]:
        r = f.run_tool("fz-web", *args, timeout=20)
        h.check(r.returncode == want and r.stderr.strip(), "fz-web with %s: exit %d (%s)" %
                (what, r.returncode, r.stderr.strip()))
    short = os.path.join(f.dir, "short")
    with open(short, "w") as fh:
        fh.write("abc\n")
    r = f.run_tool("fz-web", "--admin-token-file", short, timeout=20)
    h.check(r.returncode == 2 and "at least 8" in r.stderr, "a short token: %s" % r.stderr)

    # ---- a stream open while fz-web stops: it exits 0, promptly
    s = w.SSE(base)
    s.events(1, 1)
    t0 = time.monotonic()
    f.kill(web)
    h.check(web.returncode == 0 and time.monotonic() - t0 < 5,
            "fz-web exit %s after %.1f s" % (web.returncode, time.monotonic() - t0))
    s.close()


h.run("web_http", body)
