"""Safety rails: model whitelist refusal (nothing stored), a worker told about refused
models, per-model cap of 1 holding a second task of that model; pause / resume / stop /
cancel / retry, including across a broker restart (a paused broker restarts paused)."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fzharness as h  # noqa: E402


def body(f):
    f.start_broker("--models", "opus,sonnet", "--model-cap", "opus=1", "--max-running", "4")
    r = f.req("submit", prompt="x", model="gpt-9")
    h.check(r["type"] == "error" and r["code"] == "refused" and "gpt-9" in r["message"],
            "whitelist: %s" % r)
    h.check(f.ok("list")["total"] == 0, "a refused task was stored")
    f.start_worker("bad", "--models", "opus,gpt-9", dry_run=True)
    h.wait_for(lambda: "gpt-9" in open(os.path.join(f.dir, "worker-bad.log")).read(), 10,
               "the worker to log the refused model")
    for i in range(2):
        f.start_worker("w%d" % i, "--models", "opus,sonnet", dry_run=True)
    h.wait_for(lambda: f.ok("status")["workers"] == 3, 10, "workers")

    # Per-model cap: two opus tasks never run together; a sonnet task runs beside them.
    o1 = f.submit("o1", model="opus", labels={"dry.duration": "1"})
    o2 = f.submit("o2", model="opus", labels={"dry.duration": "1"})
    s1 = f.submit("s1", model="sonnet", labels={"dry.duration": "1"})
    h.wait_for(lambda: f.state(s1) == "running", 10, "the sonnet task to run")
    h.check([f.state(o1), f.state(o2)].count("running") == 1, "opus cap of 1 not held")
    f.wait_states([o1, o2, s1], {"succeeded"}, 20)
    a1, a2 = f.task(o1)["attempts"][0], f.task(o2)["attempts"][0]
    h.check(a2["started"] >= a1["ended"] - 0.001 or a1["started"] >= a2["ended"] - 0.001,
            "opus tasks overlapped")

    # Pause: nothing starts; resume: it runs.
    f.ok("pause")
    p = f.submit("paused", model="sonnet", labels={"dry.duration": "0.2"})
    time.sleep(1.0)
    h.check(f.state(p) == "queued", "ran while paused")
    h.check("paused" in f.task(p)["task"].get("waiting_for", ""), "no reason shown while paused")
    h.check(f.ok("status")["paused"] is True, "status does not say paused")
    # A paused broker restarts paused, with its queue.
    f.kill(f.broker)
    f.start_broker("--models", "opus,sonnet", "--model-cap", "opus=1", "--max-running", "4")
    h.check(f.ok("status")["paused"] is True, "restarted unpaused")
    h.wait_for(lambda: f.ok("status")["workers"] == 3, 15, "workers to reconnect")
    time.sleep(0.5)
    h.check(f.state(p) == "queued", "ran while paused after restart")
    f.ok("resume")
    f.wait_states([p], {"succeeded"}, 10)

    # Cancel a queued task and a running one; retry both.
    f.ok("pause")
    q = f.submit("queued then cancelled")
    h.check(f.ok("cancel", task=q)["state"] == "cancelled", "cancel queued")
    h.check(f.req("cancel", task=q)["code"] == "conflict", "cancel twice should conflict")
    f.ok("resume")
    long = f.submit("long", model="sonnet", labels={"dry.duration": "30"})
    h.wait_for(lambda: f.state(long) == "running", 10, "the long task to run")
    f.ok("cancel", task=long)
    f.wait_states([long], {"cancelled"}, 10)
    h.check(f.task(long)["attempts"][0]["outcome"] == "cancelled", "attempt not cancelled")
    h.check(f.ok("retry", task=q)["state"] == "queued", "retry")
    f.wait_states([q], {"succeeded"}, 10)

    # Stop: pauses and cancels every running agent.
    longs = [f.submit("long %d" % i, model="sonnet", labels={"dry.duration": "30"}) for i in range(2)]
    h.wait_for(lambda: all(f.state(t) == "running" for t in longs), 10, "two running")
    h.check(f.ok("stop")["count"] == 2, "stop count")
    f.wait_states(longs, {"cancelled"}, 15)
    h.check(f.ok("status")["paused"] is True, "stop did not pause")
    # Retry after a restart, still paused: queued; resume: runs.
    f.kill(f.broker)
    f.start_broker("--models", "opus,sonnet", "--model-cap", "opus=1", "--max-running", "4")
    f.ok("retry", task=longs[0])
    h.check(f.state(longs[0]) == "queued", "retried task not queued")
    f.ok("priority", task=longs[0], priority=5)
    h.check(f.task(longs[0])["task"]["priority"] == 5, "priority change lost")
    h.check(f.req("retry", task=q)["code"] == "conflict", "retry of a succeeded task")


h.run("rails", body)
