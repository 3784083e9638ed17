"""A full disk: once the database cannot grow, submits are refused with `unavailable`
(nothing half-stored, nothing acknowledged that is not stored), reads keep working, the
broker does not crash, and every acknowledged task is there after a restart with room."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fzharness as h  # noqa: E402


def body(f):
    f.env["FZ_STORE_MAX_PAGES"] = "60"  # about 240 KiB
    f.start_broker("--heartbeat", "200")
    # A task running when the disk fills keeps its worker: nothing is run twice.
    f.start_worker("w", "--heartbeat", "200", agent="sleep 3; echo finished")
    running = f.submit("running through the full disk")
    h.wait_for(lambda: f.state(running) == "running", 10, "the task to run")
    acked, refused = [running], 0
    for i in range(400):
        r = f.req("submit", prompt="job %d %s" % (i, "x" * 2000))
        if r["type"] == "submitted":
            acked.append(r["task"])
        else:
            h.check(r["code"] == "unavailable", "refusal code %s" % r)
            refused += 1
    h.check(acked and refused, "acked %d, refused %d: the cap did not bite" % (len(acked), refused))
    # Reads still work, and list exactly the acknowledged tasks.
    lst = f.ok("list", limit=100000)
    h.check(sorted(t["id"] for t in lst["tasks"]) == sorted(acked),
            "stored %d tasks, acknowledged %d" % (lst["total"], len(acked)))
    h.check(f.ok("status")["counts"]["queued"] == len(acked) - 1, "status counts")
    h.check(f.broker.poll() is None, "the broker died")
    f.wait_states([running], {"succeeded"}, 20)
    atts = f.task(running)["attempts"]
    h.check(len(atts) == 1 and atts[0]["outcome"] == "exited",
            "the running task was disturbed by the failed commits: %s" % atts)
    # With room again, everything acknowledged is there and new submits work.
    f.kill(f.broker)
    del f.env["FZ_STORE_MAX_PAGES"]
    f.start_broker()
    lst = f.ok("list", limit=100000)
    h.check(sorted(t["id"] for t in lst["tasks"]) == sorted(acked), "tasks after restart")
    f.submit("after the disk was freed")
    print("acknowledged %d, refused %d as unavailable, all acknowledged kept" % (len(acked), refused))


h.run("disk_full", body)
