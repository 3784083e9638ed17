"""Timeouts and cost caps leave nothing behind: an agent that ignores SIGTERM and has a
child, a grandchild and a setsid'd child is gone, with all of them, within
timeout + grace + 1 s, and its partial output is kept. An agent that reports costs past its
cap is stopped and the ledger shows what it reported. A worker that stops has reaped its own
helpers (the keeper spawner and the idle keeper): none is left, not even a zombie for init."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fzharness as h  # noqa: E402

STUBBORN = r"""
trap '' TERM
echo "partial: started $FZ_TASK_ID"
sleep 1000 &
echo $! > pids
sh -c 'trap "" TERM; sleep 1000 & echo $! >> pids; wait' &
echo $! >> pids
setsid sleep 1000 &
echo $! >> pids
echo $$ >> pids
echo "cost_usd 0.01" >> "$FZ_REPORT"
while :; do sleep 0.1; done
"""

COSTLY = r"""
echo "spending"
for i in 1 2 3 4 5 6 7 8 9 10; do echo "cost_usd 0.$i" >> "$FZ_REPORT"; sleep 0.2; done
sleep 30
"""


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def children(pid):
    """PIDs whose parent is pid (zombies too)."""
    kids = []
    for d in os.listdir("/proc"):
        try:
            with open("/proc/%s/stat" % d) as fh:
                if d.isdigit() and int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(d))
        except (OSError, ValueError):
            continue
    return kids


def exists(pid):
    return os.path.exists("/proc/%d" % pid)


def body(f):
    f.start_broker("--kill-grace", "1")
    script = os.path.join(f.dir, "agent.sh")
    with open(script, "w") as fh:
        fh.write("case \"$FZ_TASK_ID\" in 1) %s ;; *) %s ;; esac\n" % (STUBBORN, COSTLY))
    w = f.start_worker("w", agent="sh " + script)
    t0 = time.monotonic()
    tid = f.submit("stubborn", timeout=2)
    h.wait_for(lambda: f.state(tid) == "running", 10, "the agent to start")
    pidfile = os.path.join(f.dir, "work", "w", str(tid), "pids")
    h.wait_for(lambda: os.path.exists(pidfile) and len(open(pidfile).read().split()) >= 5, 10,
               "the agent's pid file")
    pids = [int(p) for p in open(pidfile).read().split()]
    f.wait_states([tid], {"failed"}, 15)
    deadline = t0 + 2 + 1 + 1 + 1.5  # timeout + grace + 1 s (+ start-up slack)
    h.wait_for(lambda: not any(alive(p) for p in pids), max(0.1, deadline - time.monotonic()),
               "every agent process (%s) to be gone" % pids)
    took = time.monotonic() - t0
    a = f.task(tid)["attempts"][0]
    h.check(a["outcome"] == "timeout", "outcome %s" % a["outcome"])
    h.check(b"partial: started" in a["output"], "partial output lost: %r" % a["output"])
    h.check(abs(a["cost_usd"] - 0.01) < 1e-9, "partial cost lost: %s" % a["cost_usd"])
    print("stubborn agent tree of %d processes gone %.2f s after submit (timeout 2 s, grace 1 s)"
          % (len(pids), took))

    c = f.submit("costly", max_cost=0.35)
    f.wait_states([c], {"failed"}, 20)
    a = f.task(c)["attempts"][0]
    h.check(a["outcome"] == "cost-cap", "outcome %s" % a["outcome"])
    h.check(0.35 < a["cost_usd"] <= 0.5, "recorded cost %s" % a["cost_usd"])
    b = f.ok("budget")
    h.check(abs(b["spent"] - (0.01 + a["cost_usd"])) < 1e-9, "ledger %s" % b)
    h.check(b["reserved"] == 0, "reservation left: %s" % b)

    # The worker's own helpers: after an agent, its keeper spawner and idle keeper.
    helpers = children(w.pid)
    h.check(len(helpers) >= 2, "keeper spawner and idle keeper: %s" % helpers)
    f.kill(w)
    left = [p for p in helpers if exists(p)]
    h.check(not left, "the worker exited leaving %s (zombies for init to reap)" % left)


h.run("kill_tree", body)
