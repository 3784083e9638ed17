"""An agent that writes 50 MiB of output neither stalls nor grows the worker's memory past a
few MiB; the full log is on disk, the result carries a bounded tail; an agent that reads no
stdin (with a large prompt) still runs; one that prints nothing has no log, and its attempt
names none."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fzharness as h  # noqa: E402

FLOOD = 50 * 1024 * 1024


def rss_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise h.TestFailure("no %s for pid %d" % (field, pid))


def body(f):
    f.start_broker()
    agent = ("if [ \"$FZ_TASK_ID\" = 1 ]; then head -c %d /dev/zero | tr '\\0' x; echo; "
             "echo flood-done; elif [ \"$FZ_TASK_ID\" = 3 ]; then :; "
             "else sleep 0.2; echo ignored-stdin; fi" % FLOOD)
    w = f.start_worker("w", agent=agent)
    h.wait_for(lambda: f.ok("status")["workers"] == 1, 10, "the worker to join")
    base = rss_kib(w.pid, "VmHWM")

    flood = f.submit("flood please")
    f.wait_states([flood], {"succeeded", "failed"}, 120)
    t = f.task(flood)
    a = t["attempts"][0]
    h.check(t["task"]["state"] == "succeeded", "flood task: %s" % a)
    out = a["output"]
    h.check(len(out) <= 64 * 1024, "tail is %d bytes" % len(out))
    h.check(out.rstrip().endswith(b"flood-done"), "tail does not end with the last line")
    log = a["log"]
    h.check(os.path.getsize(log) >= FLOOD, "log has %d bytes" % os.path.getsize(log))
    peak = rss_kib(w.pid, "VmHWM")
    growth = (peak - base) / 1024.0
    print("worker peak RSS %d KiB before, %d KiB after 50 MiB of output: +%.1f MiB"
          % (base, peak, growth))
    h.check(growth < 8, "worker memory grew by %.1f MiB" % growth)

    # A 200 KiB prompt to an agent that never reads stdin.
    quiet = f.submit("p" * (200 * 1024))
    f.wait_states([quiet], {"succeeded", "failed"}, 30)
    a = f.task(quiet)["attempts"][0]
    h.check(a["outcome"] == "exited" and a["exit_code"] == 0, "no-stdin agent: %s" % a["outcome"])
    h.check(b"ignored-stdin" in a["output"], "no-stdin agent output: %r" % a["output"])

    # An agent that prints nothing has no log file, and its attempt names none (fz-ctl show
    # prints no log line).
    silent = f.submit("say nothing")
    f.wait_states([silent], {"succeeded", "failed"}, 30)
    a = f.task(silent)["attempts"][0]
    h.check(a["outcome"] == "exited" and a["log"] == "" and a["output"] == b"", "silent agent: %s" % a)
    h.check(not os.path.exists(os.path.join(f.dir, "work", "w", str(silent), "attempt-1.log")),
            "a silent agent's log was made")
    # Its folder, left empty, went back to the worker's spares; the others' folders stay.
    work = os.listdir(os.path.join(f.dir, "work", "w"))
    h.check(str(silent) not in work and any(e.startswith(".fz-spare-") for e in work),
            "a silent task's empty folder was kept: %s" % sorted(work))
    h.check(str(quiet) in work, "a task's folder with its log went: %s" % sorted(work))
    shown = f.run_tool("fz-ctl", "show", str(silent)).stdout
    h.check("  log " not in shown, "fz-ctl show names a log that is not there:\n%s" % shown)


h.run("output_flood", body)
