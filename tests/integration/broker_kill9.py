"""Every acknowledged task survives kill -9 of the broker: submit a burst with no worker,
SIGKILL the broker mid-burst, restart it on the same database, and find every task whose
submit was acknowledged, once, still queued, with its fields intact."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fzharness as h  # noqa: E402


def body(f):
    f.start_broker()
    acked = {}
    # Acknowledged submits before the kill.
    for i in range(200):
        tid = f.submit("job %d" % i, priority=i % 7, labels={"n": str(i)})
        acked[tid] = i
    # A burst of 1000 submits, cut by the kill once about half are acknowledged: whatever
    # was acknowledged must survive, and nothing may appear twice.
    burst = 0
    for i in range(200, 1200):
        if burst == 500:
            f.broker.send_signal(signal.SIGKILL)
        r = f.req("submit", prompt="job %d" % i, priority=i % 7, labels={"n": str(i)},
                  reply_timeout=1.0, must=False)
        if r and r.get("type") == "submitted":
            acked[r["task"]] = i
            burst += 1
        elif burst >= 500:
            break
    f.broker.wait(timeout=10)
    f.procs.pop(f.broker.pid, None)
    h.check(burst >= 500, "the burst got %d acknowledgements" % burst)

    f.start_broker()
    lst = f.ok("list", limit=100000)
    by_id = {t["id"]: t for t in lst["tasks"]}
    missing = [tid for tid in acked if tid not in by_id]
    h.check(not missing, "%d acknowledged tasks lost, e.g. %s" % (len(missing), missing[:5]))
    h.check(len(lst["tasks"]) == len(by_id), "duplicate ids in the list")
    for tid, i in acked.items():
        t = by_id[tid]
        h.check(t["state"] == "queued", "task %d is %s" % (tid, t["state"]))
        h.check(t["priority"] == i % 7, "task %d lost its priority" % tid)
    sample = f.task(max(acked))["task"]
    h.check(sample["prompt"] == "job %d" % acked[max(acked)], "prompt changed: %r" % sample["prompt"])
    h.check(sample["labels"] == {"n": str(acked[max(acked)])}, "labels changed")
    print("acknowledged %d tasks, all %d found after kill -9" % (len(acked), len(acked)))
    # And the reloaded queue still runs.
    f.start_worker("w", dry_run=True, *["--dry-duration", "0"])
    some = sorted(acked)[:5]
    f.wait_states(some, {"succeeded"}, 30)


h.run("broker_kill9", body)
