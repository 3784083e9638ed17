"""fz-worker --prefetch (issue 14): a worker takes the next task while one runs and starts it
the moment that one ends, never two agents at once; the held task shows in `workers`, a
cancel of it ends it cancelled while the running one goes on, a stopped worker gives it
back to the queue, and so does a worker whose broker restarted (at its hello, using no
retry); --prefetch with --once is a usage error."""
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fzharness as h  # noqa: E402


def held(f, name):
    for w in f.ok("workers")["workers"]:
        if w["name"] == name:
            return w.get("next")
    return None


def runs_ahead_never_two(f):
    lock, log = os.path.join(f.dir, "lock"), os.path.join(f.dir, "ran")
    # The agent fails (exit 9) if another agent of this worker holds the lock.
    agent = ("sh -c 'mkdir %s || exit 9; echo $FZ_TASK_ID >> %s; sleep 0.05; rmdir %s'"
             % (lock, log, lock))
    ids = [f.submit("short %d" % i, retries=0) for i in range(30)]
    w = f.start_worker("pf", "--prefetch", agent=agent)
    states = f.wait_states(ids, {"succeeded", "failed"}, 60)
    h.check(all(s == "succeeded" for s in states.values()), "states: %s" % states)
    with open(log) as fh:
        ran = [int(x) for x in fh.read().split()]
    h.check(sorted(ran) == sorted(ids), "ran %s" % ran)
    # Each next task was dispatched before the one before it ended: it was held ahead.
    attempts = [f.task(i)["attempts"] for i in ids]
    h.check(all(len(a) == 1 for a in attempts), "attempts per task: %s" % [len(a) for a in attempts])
    ahead = sum(1 for a, b in zip(attempts, attempts[1:]) if b[0]["started"] < a[0]["ended"])
    h.check(ahead >= len(ids) // 2, "only %d of %d tasks were dispatched ahead" % (ahead, len(ids) - 1))
    print("--prefetch: 30 tasks, one agent at a time, %d dispatched while the one before ran" % ahead)
    f.kill(w)


def cancel_and_stop(f):
    mark = os.path.join(f.dir, "short-ran")
    agent = "sh -c 'case \"$FZ_TASK_ID\" in %s) sleep 30;; *) touch %s;; esac'"
    long_id = f.submit("long")
    short_id = f.submit("short")
    w = f.start_worker("pf2", "--prefetch", agent=agent % (long_id, mark))
    h.wait_for(lambda: held(f, "pf2") == short_id, 15, "the short task to be held ahead")
    h.check(f.state(short_id) == "running", "held ahead: %s" % f.state(short_id))
    r = f.run_tool("fz-ctl", "workers")
    h.check("%d+%d" % (long_id, short_id) in r.stdout, "fz-ctl workers: %r" % r.stdout)
    f.ok("cancel", task=short_id)
    h.wait_for(lambda: f.state(short_id) == "cancelled", 10, "the held task to be cancelled")
    h.check(f.state(long_id) == "running" and not os.path.exists(mark),
            "after the cancel: long %s, short ran %s" % (f.state(long_id), os.path.exists(mark)))
    # Another short one is held ahead; a stop gives it back, and the long one is requeued.
    again = f.submit("short again")
    h.wait_for(lambda: held(f, "pf2") == again, 15, "the next task to be held ahead")
    f.kill(w, signal.SIGTERM)
    states = f.wait_states([long_id, again], {"queued"}, 20)
    h.check(not os.path.exists(mark), "a held task ran after the stop")
    print("--prefetch: cancel of the held task -> cancelled, the running one went on; a stop "
          "gave both back: %s" % states)
    for i in (long_id, again):
        f.ok("cancel", task=i)


def broker_restart(f):
    """The broker is SIGKILLed and restarted while the worker runs one task and holds the
    next: the worker keeps the one it runs, and the one it held, dropped at its hello, is
    given back then (no retry used) instead of waiting out the orphan timeout as lost."""
    go = os.path.join(f.dir, "go")
    agent = ("sh -c 'if [ \"$FZ_TASK_ID\" = %d ]; then while [ ! -e %s ]; do sleep 0.05; "
             "done; fi'")
    long_id = f.submit("long, across a restart")
    short_id = f.submit("short, held across a restart")
    w = f.start_worker("pf3", "--prefetch", agent=agent % (long_id, go))
    h.wait_for(lambda: held(f, "pf3") == short_id, 15, "the short task to be held ahead")
    f.kill(f.broker, signal.SIGKILL)
    f.start_broker("--heartbeat", "200")
    # (It is then dispatched ahead again, as the worker still runs the long one.)
    h.wait_for(lambda: f.task(short_id)["attempts"][0].get("outcome") == "lost", 15,
               "the held task to be given back")
    h.check(f.state(long_id) == "running", "the running task after the restart: %s"
            % f.state(long_id))
    open(go, "w").close()
    states = f.wait_states([long_id, short_id], {"succeeded", "failed"}, 30)
    h.check(all(s == "succeeded" for s in states.values()), "states: %s" % states)
    first = f.task(short_id)["attempts"][0]
    h.check(first["outcome"] == "lost" and "not started" in first.get("summary", ""),
            "the held attempt: %s" % first)
    h.check(len(f.task(long_id)["attempts"]) == 1, "the running task ran again")
    with contextlib.closing(sqlite3.connect("file:%s?mode=ro" % f.db, uri=True)) as db:
        base = db.execute("SELECT attempt_base FROM tasks WHERE id = ?", (short_id,)).fetchone()
    h.check(base == (1,), "the held attempt used a retry: attempt_base %s" % (base,))
    print("--prefetch across a broker restart: the running task kept, the held one given back "
          "at the hello (%s)" % first["summary"])
    f.kill(w)


def bad_flags(f):
    r = subprocess.run([os.path.join(h.BIN, "fz-worker"), "--dry-run", "--prefetch", "--once"],
                       env=f.env, capture_output=True, text=True, timeout=10)
    h.check(r.returncode == 2 and "--prefetch" in r.stderr, "exit %d %r" % (r.returncode, r.stderr))


def body(f):
    f.start_broker("--heartbeat", "200")
    bad_flags(f)
    runs_ahead_never_two(f)
    cancel_and_stop(f)
    broker_restart(f)


h.run("worker_prefetch", body)
