"""Orchestration: dev -> test -> deploy runs in order and a failing test step makes deploy
dep-failed; a batch (pipeline) is stored whole and a bad one stores nothing; an agent adds
subtasks with `fz-submit --parent "$FZ_TASK_ID"` and a follow-up waits for them; cancelling
a parent cancels its subtree; inheritance lets an urgent task's dependency jump the queue;
aging lets a starved task run."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fzharness as h  # noqa: E402

D = {"dry.duration": "0.2"}


def chain(f):
    dev = f.submit("dev", labels=D)
    test = f.submit("test", after=[dev], labels=D)
    deploy = f.submit("deploy", after=[test], labels=D)
    h.check(f.state(test) == "waiting" and f.state(deploy) == "waiting", "not waiting")
    f.wait_states([dev, test, deploy], {"succeeded"}, 20)
    a = [f.task(t)["attempts"][0] for t in (dev, test, deploy)]
    h.check(a[0]["ended"] <= a[1]["started"] and a[1]["ended"] <= a[2]["started"], "out of order")
    # A failing test step: deploy is dep-failed, and so is what waits on deploy.
    dev = f.submit("dev2", labels=D)
    test = f.submit("test2", after=[dev], labels={"dry.exit": "1", "dry.duration": "0.1"})
    deploy = f.submit("deploy2", after=[test], labels=D)
    notify = f.submit("notify", after=[deploy], labels=D)
    always = f.submit("cleanup", after_any=[deploy], labels=D)
    f.wait_states([deploy, notify], {"dep-failed"}, 20)
    h.check(str(test) in f.task(deploy)["task"]["summary"], "deploy does not say which failed")
    f.wait_states([always], {"succeeded"}, 20)
    # A dependency that ends twice (failed, retried, failed) counts once: the task after-any
    # it and a slow one still waits for the slow one.
    a = f.submit("fails", labels={"dry.exit": "1", "dry.duration": "0"})
    never = f.submit("held: its reservation passes the daily budget", max_cost=1000)
    c = f.submit("after both", after_any=[a, never], labels=D)
    f.wait_states([a], {"failed"}, 10)
    f.ok("retry", task=a)
    f.wait_states([a], {"failed"}, 10)
    h.check(f.state(c) == "waiting", "after-any counted a retried dependency twice: %s" % f.state(c))
    f.ok("cancel", task=never)
    f.wait_states([c], {"succeeded"}, 20)
    # Re-running a pipeline from its failed step: retrying deploy alone is refused (its
    # dependency failed); retrying the failed step brings its dep-failed dependents back.
    t1 = f.submit("flaky test", labels={"dry.fail-attempts": "1", "dry.duration": "0.1"})
    d1 = f.submit("deploy after flaky", after=[t1], labels=D)
    n1 = f.submit("notify after deploy", after=[d1], labels=D)
    f.wait_states([d1, n1], {"dep-failed"}, 20)
    r = f.req("retry", task=d1)
    h.check(r["type"] == "error" and r["code"] == "conflict" and str(t1) in r["message"],
            "retrying a task whose dependency failed: %s" % r)
    h.check(f.ok("retry", task=t1)["state"] == "queued", "retry of the failed step")
    f.wait_states([t1, d1, n1], {"succeeded"}, 20)
    r = f.req("submit", prompt="x", after=[999999])
    h.check(r["type"] == "error" and "999999" in r["message"], "unknown dependency accepted: %s" % r)


def batch(f):
    before = f.ok("list")["total"]
    # A forward reference (what a cycle becomes after ordering) is refused; nothing stored.
    r = f.req("submit-batch", tasks=[{"prompt": "a", "after_index": [1]}, {"prompt": "b"}])
    h.check(r["type"] == "error", "forward reference accepted")
    r = f.req("submit-batch", tasks=[{"prompt": "a"}, {"prompt": "b", "model": 5}])
    h.check(r["type"] == "error", "bad field in a batch accepted")
    h.check(f.ok("list")["total"] == before, "a refused batch stored tasks")
    r = f.ok("submit-batch", tasks=[{"prompt": "build", "labels": D},
                                    {"prompt": "test", "after_index": [0], "labels": D},
                                    {"prompt": "ship", "after_index": [1], "labels": D}])
    ids = r["tasks"]
    h.check(len(ids) == 3, "batch ids %s" % ids)
    h.check(f.task(ids[2])["task"]["after"] == [ids[1]], "batch deps not resolved")
    f.wait_states(ids, {"succeeded"}, 20)


def subtasks(f):
    script = os.path.join(f.dir, "planner.sh")
    with open(script, "w") as fh:
        fh.write(r'''
if [ "$FZ_PROMPT" = plan ]; then
  for step in one two three; do
    "$FZ_BIN/fz-submit" --parent "$FZ_TASK_ID" --quiet "step $step" || exit 9
  done
fi
sleep 0.2
echo "did: $FZ_PROMPT"
''')
    env_bin = "FZ_BIN=%s " % os.path.abspath(h.BIN)
    dry = [p for p, l in f.procs.values() if l == "worker-w"][0]
    f.kill(dry)  # the agents below are real scripts
    f.start_worker("planner", agent=env_bin + "sh " + script)
    f.start_worker("helper", agent=env_bin + "sh " + script)
    plan = f.submit("plan", priority=4, labels={"team": "core"})
    f.wait_states([plan], {"succeeded"}, 20)
    kids = f.task(plan)["children"]
    h.check(len(kids) == 3, "children %s" % kids)
    for k in kids:
        t = f.task(k)["task"]
        h.check(t["parent"] == plan and t["priority"] >= 4, "subtask %s" % t)
        h.check(t["labels"].get("team") == "core", "labels not inherited: %s" % t["labels"])
    follow = f.submit("follow up", after=kids)
    f.wait_states(kids + [follow], {"succeeded"}, 30)
    last_kid_end = max(f.task(k)["attempts"][0]["ended"] for k in kids)
    h.check(f.task(follow)["attempts"][0]["started"] >= last_kid_end, "follow-up ran early")
    # Limits: a runaway agent is refused past --max-children (3 here).
    r = f.req("submit", prompt="fourth", parent=plan)
    h.check(r["type"] == "error" and r["code"] == "refused", "max-children not enforced: %s" % r)
    # Cancelling a parent cancels its subtree.
    f.ok("pause")
    root = f.submit("root")
    c1 = f.submit("c1", parent=root)
    c2 = f.submit("c2", parent=c1)
    r = f.ok("cancel", task=root)
    h.check(r["count"] == 2, "subtree count %s" % r)
    for t in (root, c1, c2):
        h.check(f.state(t) == "cancelled", "task %d not cancelled" % t)
    f.ok("resume")
    for p, l in list(f.procs.values()):
        if l in ("worker-planner", "worker-helper"):
            f.kill(p)
    f.start_worker("w", dry_run=True)


def inheritance_and_aging(f):
    f.ok("pause")
    lows = [f.submit("filler %d" % i, priority=5, labels={"dry.duration": "0.05"}) for i in range(6)]
    dep = f.submit("low dependency", priority=0, labels={"dry.duration": "0.05"})
    urgent = f.submit("urgent", priority=50, after=[dep], labels={"dry.duration": "0.05"})
    t = f.task(dep)["task"]
    h.check(t["effective_priority"] >= 50 and "inherited" in t["priority_why"], "no inheritance: %s" % t)
    f.ok("resume")
    f.wait_states(lows + [dep, urgent], {"succeeded"}, 30)
    dep_start = f.task(dep)["attempts"][0]["started"]
    h.check(all(f.task(x)["attempts"][0]["started"] > dep_start for x in lows),
            "the urgent task's dependency did not jump the queue")
    # escalate puts a task first
    f.ok("pause")
    a = f.submit("a", priority=100, labels={"dry.duration": "0.05"})
    b = f.submit("b", priority=1, labels={"dry.duration": "0.05"})
    f.ok("escalate", task=b)
    h.check(f.task(b)["task"]["priority"] > 100, "escalate")
    f.ok("resume")
    f.wait_states([a, b], {"succeeded"}, 20)
    h.check(f.task(b)["attempts"][0]["started"] < f.task(a)["attempts"][0]["started"], "escalated task not first")


def aging(f):
    # --aging 0.5: +1 per half second. A low task under a stream of higher ones still runs.
    f.kill(f.broker)
    f.start_broker("--aging", "0.5", "--max-children", "3", "--max-running", "1")
    f.ok("pause")
    low = f.submit("starving", priority=0, labels={"dry.duration": "0.05"})
    f.ok("resume")
    deadline = time.monotonic() + 20
    while f.state(low) != "succeeded":
        h.check(time.monotonic() < deadline, "low task starved despite aging")
        f.submit("stream", priority=3, labels={"dry.duration": "0.1"})
        time.sleep(0.1)
    waited = f.task(low)["attempts"][0]["started"] - f.task(low)["task"]["created"]
    print("starving task ran after %.1f s under a stream of priority-3 tasks (aging 0.5 s)" % waited)
    # 3 priority steps at +1/0.5 s: about 1.5 s, plus a task in flight
    h.check(waited < 4, "aging bound not met: %.1f s" % waited)


def body(f):
    f.start_broker("--max-children", "3", "--max-running", "1")
    f.start_worker("w", dry_run=True)
    chain(f)
    batch(f)
    inheritance_and_aging(f)
    subtasks(f)
    aging(f)


h.run("orchestration", body)
