"""The command line tools as a user runs them: fz-submit's exit codes for each outcome,
-f with lines and with a pipeline (a cycle is refused and stores nothing), --deadline;
fz-ctl's commands, --json, --tree, escalate and its error codes; fz-watch following a task
and its subtasks."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fzharness as h  # noqa: E402


def code(r, want, what):
    h.check(r.returncode == want, "%s: exit %d, wanted %d; stderr: %s" %
            (what, r.returncode, want, r.stderr.strip()[-300:]))
    return r


def body(f):
    f.start_broker("--models", "dry,other", "--kill-grace", "1")
    f.start_worker("w1", "--models", "dry", dry_run=True)
    f.start_worker("w2", "--models", "dry", dry_run=True)
    sub, ctl = (lambda *a, **k: f.run_tool("fz-submit", *a, **k)), (lambda *a: f.run_tool("fz-ctl", *a))

    # fz-submit --wait: one exit code per outcome
    code(sub("--wait", "--quiet", "-l", "dry.duration=0.1", "ok"), 0, "succeeded")
    code(sub("--wait", "--quiet", "-l", "dry.exit=2", "-l", "dry.duration=0", "fails"), 1, "failed")
    code(sub("--wait", "--quiet", "--timeout", "1", "-l", "dry.duration=5", "slow"), 4, "timed out")
    p = subprocess.Popen([os.path.join(h.BIN, "fz-submit"), "--wait", "--quiet", "-l",
                          "dry.duration=30", "to cancel"], env=f.env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    tid = int(p.stdout.readline())
    h.wait_for(lambda: f.state(tid) == "running", 10, "running")
    code(ctl("cancel", str(tid)), 0, "cancel")
    h.check(p.wait(timeout=20) == 3, "cancelled: exit %s" % p.returncode)
    code(sub("--model", "nope", "x"), 2, "model not allowed")
    code(sub("--priority", "high", "x"), 2, "bad number")
    code(sub("--frobnicate", "x"), 2, "unknown flag")
    code(sub("--after", "999999", "x"), 2, "unknown dependency")
    big = "x" * (300 * 1024)
    code(sub("-", input=big), 2, "prompt too large")
    r = f.run_tool("fz-submit", "--broker", "ipc://%s/none.sock" % f.dir, "x", timeout=30)
    code(r, 5, "unreachable")

    # -f: plain lines, then pipelines
    lines = os.path.join(f.dir, "lines.txt")
    open(lines, "w").write("one\n\ntwo\nthree\n")
    r = code(sub("-f", lines, "-l", "dry.duration=0"), 0, "-f lines")
    h.check(len(r.stdout.split()) == 3, "ids: %r" % r.stdout)
    before = f.ok("list")["total"]
    cyc = os.path.join(f.dir, "cycle.jsonl")
    open(cyc, "w").write('{"name":"a","prompt":"a","after":["b"]}\n{"name":"b","prompt":"b","after":["a"]}\n')
    r = code(sub("-f", cyc), 2, "pipeline with a cycle")
    h.check("cycle" in r.stderr, "cycle message: %s" % r.stderr)
    h.check(f.ok("list")["total"] == before, "a refused pipeline stored tasks")
    refused = os.path.join(f.dir, "refused.jsonl")
    open(refused, "w").write('{"name":"a","prompt":"a"}\n{"name":"b","prompt":"b","model":"nope"}\n')
    r = code(sub("-f", refused), 2, "pipeline with a model the broker refuses")
    h.check("line 2" in r.stderr and "nope" in r.stderr, "refusal not tied to its line: %s" % r.stderr)
    h.check(f.ok("list")["total"] == before, "a refused pipeline stored tasks")
    pipe = os.path.join(f.dir, "pipe.jsonl")
    open(pipe, "w").write('{"name":"deploy","prompt":"deploy","after":["test"]}\n'
                          '{"name":"dev","prompt":"dev"}\n'
                          '{"name":"test","prompt":"test","after":["dev"],"labels":{"dry.exit":"1"}}\n')
    r = code(sub("-f", pipe, "-l", "dry.duration=0.1", "--wait", "--quiet"), 1, "pipeline with a failing test")
    ids = dict(line.split()[:2] for line in r.stdout.splitlines() if len(line.split()) == 2)
    h.check(set(ids) == {"dev", "test", "deploy"}, "pipeline output %r" % r.stdout)
    h.check(f.state(int(ids["deploy"])) == "dep-failed", "deploy not dep-failed")

    # --deadline raises the effective priority
    f.ok("pause")
    d = int(code(sub("--deadline", "+60s", "--model", "dry", "urgent"), 0, "deadline").stdout)
    t = f.task(d)["task"]
    h.check(t["effective_priority"] > 90 and "deadline" in t["priority_why"], "deadline: %s" % t)
    low = int(sub("--priority", "-3", "low").stdout)
    code(ctl("escalate", str(low)), 0, "escalate")
    h.check(f.task(low)["task"]["priority"] > 90, "escalate did not raise the priority")
    code(ctl("escalate", "999999"), 6, "escalate unknown")

    # fz-ctl: tree, json, errors
    parent = int(sub("parent task").stdout)
    child = int(sub("--parent", str(parent), "child task").stdout)
    grandchild = int(sub("--parent", str(child), "grandchild task").stdout)
    r = code(ctl("list", "--tree"), 0, "list --tree")
    rows = [l for l in r.stdout.splitlines() if "child task" in l or "parent task" in l]
    h.check(len(rows) == 3 and "└" in rows[1] and rows[2].index("└") > rows[1].index("└"),
            "tree:\n%s" % "\n".join(rows))
    j = json.loads(code(ctl("--json", "status"), 0, "status --json").stdout)
    h.check(j["paused"] is True and "counts" in j, "status json %s" % j)
    code(ctl("show", "999999"), 6, "show unknown")
    code(ctl("cancel", str(tid)), 7, "cancel a cancelled task")
    code(ctl("frobnicate"), 2, "unknown command")
    code(ctl("purge"), 2, "purge without --before")
    r = code(ctl("purge", "--before", "2099-01-01"), 0, "purge")
    h.check(r.stdout.startswith("0 ended tasks purged"), "today's tasks were purged: %s" % r.stdout)
    code(ctl("list", "--state", "nonsense"), 2, "bad state")

    # fz-watch follows a task and its subtasks, shown under their parent
    w = subprocess.Popen([os.path.join(h.BIN, "fz-watch"), "--task", str(parent), "--timeout", "20"],
                         env=f.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    f.ok("cancel", task=parent)
    h.wait_for(lambda: f.state(grandchild) == "cancelled", 10, "subtree cancelled")
    time.sleep(0.3)
    w.terminate()
    out = w.communicate(timeout=10)[0]
    h.check("task=%d/%d/%d" % (parent, child, grandchild) in out,
            "fz-watch did not show the grandchild under its parents:\n%s" % out)
    f.ok("resume")
    code(ctl("ping"), 0, "ping")

    # Missed events: the broker keeps recent ones; fz-watch --since shows them, in order.
    r = f.ok("events", since=0)
    seqs = [e["seq"] for e in r["events"]]
    h.check(seqs and seqs == list(range(seqs[0], seqs[0] + len(seqs))) and r["last"] == seqs[-1],
            "history not contiguous: %s" % seqs[:20])
    h.check(any(e["event"] == "task.submitted" and e["task"] == parent for e in r["events"]),
            "history lacks the parent's submission")
    out = code(f.run_tool("fz-watch", "--since", "0", "--count", "5", "--json", timeout=20), 0,
               "fz-watch --since").stdout.splitlines()
    got = [json.loads(l)["seq"] for l in out]
    h.check(got == seqs[:5], "fz-watch --since 0 showed %s, wanted %s" % (got, seqs[:5]))


h.run("cli_tools", body)
