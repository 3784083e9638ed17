"""Workers supplied by batch systems and autoscalers (issue 12): fz-worker --once takes one
task, reports it, waits for the broker's acknowledgement (across a broker restart too) and
exits 0, leaving the other tasks queued; --idle-exit S exits 0 after S seconds without a task,
never while one runs; bad values are usage errors (exit 2)."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fzharness as h  # noqa: E402


def exits(p, timeout, what):
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise h.TestFailure("%s did not exit within %d s" % (what, timeout))


def once_takes_one(f):
    ids = [f.submit("once %d" % i) for i in range(3)]
    # What an autoscaler reads first: the queue's depth by model and label.
    f.submit("for sonnet", model="sonnet", labels={"team": "web"})
    r = f.run_tool("fz-ctl", "status", "--json")
    st = json.loads(r.stdout)
    by_model = {row["key"]: row for row in st["by_model"]}
    h.check(by_model[""]["queued"] == 3 and by_model["sonnet"]["queued"] == 1,
            "by_model: %s" % st["by_model"])
    h.check([row["key"] for row in st["by_label"]] == ["team=web"], "by_label: %s" % st["by_label"])
    sonnet = [t["id"] for t in f.ok("list", state="queued")["tasks"] if t["model"] == "sonnet"]
    f.ok("cancel", task=sonnet[0])
    w = f.start_worker("once", "--once", "--dry-duration", "0.3", dry_run=True)
    h.check(exits(w, 20, "fz-worker --once") == 0, "fz-worker --once exited %s" % w.returncode)
    f.procs.pop(w.pid, None)
    states = [f.state(i) for i in ids]
    h.check(states.count("succeeded") == 1 and states.count("queued") == 2,
            "after one --once worker: %s" % states)
    h.wait_for(lambda: f.ok("status")["workers"] == 0, 5, "the worker to have left")
    print("--once: ran 1 of 3 tasks, exit 0, %s" % states)
    for i in ids:
        if f.state(i) == "queued":
            f.ok("cancel", task=i)


def once_waits_for_ack(f):
    tid = f.submit("outlive the broker")
    w = f.start_worker("ack", "--once", "--heartbeat", "200", agent="sleep 2; echo done")
    h.wait_for(lambda: f.state(tid) == "running", 10, "the task to run")
    f.kill(f.broker)  # SIGTERM: the agent goes on; its result cannot be acknowledged
    time.sleep(3.5)
    h.check(w.poll() is None, "--once left before its result was acknowledged (exit %s)" % w.poll())
    f.start_broker(*f.broker_args)
    h.check(exits(w, 30, "fz-worker --once after the restart") == 0, "exit %s" % w.returncode)
    f.procs.pop(w.pid, None)
    t = f.task(tid)
    h.check(t["task"]["state"] == "succeeded" and len(t["attempts"]) == 1,
            "after the restart: %s, %d attempts" % (t["task"]["state"], len(t["attempts"])))
    print("--once: waited out a broker restart for its acknowledgement, then exit 0")


def idle_exit(f):
    w = f.start_worker("idle", "--idle-exit", "1", dry_run=True)
    t0 = time.monotonic()
    h.check(exits(w, 20, "fz-worker --idle-exit 1") == 0, "exit %s" % w.returncode)
    f.procs.pop(w.pid, None)
    took = time.monotonic() - t0
    h.check(took >= 1.0, "--idle-exit 1 left after %.1f s" % took)
    # Busy longer than the idle limit: it stays for the task, then leaves.
    tid = f.submit("longer than idle", labels={"dry.duration": "2.5"})
    w = f.start_worker("busy", "--idle-exit", "1", dry_run=True)
    h.check(exits(w, 30, "fz-worker --idle-exit after a task") == 0, "exit %s" % w.returncode)
    f.procs.pop(w.pid, None)
    h.check(f.state(tid) == "succeeded", "the task of an idle-exit worker: %s" % f.state(tid))
    print("--idle-exit: left after %.1f s idle; a 2.5 s task on an --idle-exit 1 worker "
          "succeeded first" % took)


def bad_flags(f):
    for args in (["--idle-exit", "0"], ["--idle-exit", "x"], ["--pass-env", "BAD-NAME"],
                 ["--pass-env", "A,,B"], ["--pass-env", "9LIVES"]):
        r = subprocess.run([os.path.join(h.BIN, "fz-worker"), "--dry-run"] + args, env=f.env,
                           capture_output=True, text=True, timeout=10)
        h.check(r.returncode == 2 and r.stderr.strip(), "%s: exit %d %r" % (args, r.returncode, r.stderr))


def body(f):
    f.broker_args = ["--heartbeat", "200"]
    f.start_broker(*f.broker_args)
    bad_flags(f)
    once_takes_one(f)
    once_waits_for_ack(f)
    idle_exit(f)


h.run("worker_once", body)
