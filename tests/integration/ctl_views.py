"""The people-facing views of fz-ctl against a real factory: show, status, workers, budget,
cost (by model, day, task, worker, label), list, list --tree, list --state, as text and as
JSON. Every state shows up: succeeded, failed after a retry, succeeded on a fallback model,
retrying, cancelled, dep-failed, waiting (a pipeline), queued for a model nobody serves,
held by the budget, subtasks under their parent. The numbers in the text are the ones the
agents reported, and what a hostile agent prints (terminal escapes, C1 controls, CR, BEL,
DEL, invalid UTF-8, a very long line) reaches the terminal escaped, never raw."""
import datetime
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fzharness as h  # noqa: E402

# An agent that prints what a terminal would act on, and reports through $FZ_REPORT.
HOSTILE = r'''#!/bin/sh
printf 'plain first line\n'
printf '<script>alert(1)</script>\n'
printf 'red \033[31mRED\033[0m end\n'
printf 'title \033]0;pwned\007 end\n'
printf 'csi \302\2332J end\n'
printf 'carriage\rreturn\n'
printf 'bad utf8 \377\376 end\n'
printf 'del \177 end\n'
printf 'stderr \033[41m line\n' >&2
head -c 10000 /dev/zero | tr '\0' A
printf '\n'
printf 'last line\n'
{
    printf 'cost_usd 0.25\n'
    printf 'tokens_in 100\n'
    printf 'tokens_out 20\n'
    printf 'model m1\n'
    printf 'progress 40 halfway\n'
    printf 'summary sum <script>x</script> csi \302\2332J bad \377 end\n'
} >>"$FZ_REPORT"
exit 0
'''
HOSTILE_NAME = "hostile \x1b[31m name"
HOSTILE_PROMPT = "prompt \x1b]0;pwned\x07 \x1b[2J end"
CAP = 5.0
FAST = ["-l", "dry.duration=0.1"]


def safe(out, what):
    """Fails unless out (bytes) is UTF-8 that a terminal only displays: no C0 control but
    newline (ESC, BEL, CR...), no DEL, no C1 control (U+0080..U+009F)."""
    bad = [b for b in set(out) if (b < 0x20 and b != 0x0a) or b == 0x7f]
    h.check(not bad, "%s: raw control bytes %s in stdout:\n%r" % (what, sorted(bad), out[:3000]))
    try:
        text = out.decode("utf-8")
    except UnicodeDecodeError as e:
        raise h.TestFailure("%s: stdout is not UTF-8 (%s): %r" % (what, e, out[:3000]))
    c1 = sorted({"U+%04X" % ord(c) for c in text if 0x80 <= ord(c) <= 0x9f})
    h.check(not c1, "%s: raw C1 controls %s in stdout:\n%r" % (what, c1, out[:3000]))
    return text


def money(s):
    return round(float(s), 4)


def near(a, b, what):
    h.check(abs(a - b) < 1e-6, "%s: %r, wanted %r" % (what, a, b))


def body(f):
    agent = os.path.join(f.dir, "hostile.sh")
    with open(agent, "w") as fh:
        fh.write(HOSTILE)
    os.chmod(agent, 0o755)
    f.start_broker("--daily-budget", str(CAP), "--max-running", "3", "--backoff-min", "3000",
                   "--backoff-max", "3000", "--kill-grace", "1")
    # One model per worker, so every attempt's worker is known in advance.
    f.start_worker("wsim", "--models", "alpha", dry_run=True)
    f.start_worker("wscript", "--models", "beta")  # scripts/agents/dry-run
    f.start_worker("whostile", "--models", "m1", agent=agent)
    h.wait_for(lambda: len(f.ok("workers")["workers"]) == 3, 10, "three workers")

    def ctl(*args):
        """fz-ctl ARGS, which must exit 0 with safe stdout; returns the text."""
        r = subprocess.run([os.path.join(h.BIN, "fz-ctl")] + list(args), env=f.env,
                           capture_output=True, timeout=20)
        h.check(r.returncode == 0, "fz-ctl %s: exit %d; stderr %r" %
                (" ".join(args), r.returncode, r.stderr[-300:]))
        return safe(r.stdout, "fz-ctl " + " ".join(args))

    def js(*args):
        return json.loads(ctl("--json", *args))

    def sub(*args):
        r = f.run_tool("fz-submit", *args)
        h.check(r.returncode == 0, "fz-submit %s: %d %s" % (args, r.returncode, r.stderr))
        return int(r.stdout)

    # ------------------------------------------------------------------ the tasks
    big = sub("-n", "big", "--model", "alpha", "--max-cost", "10", "too big for the budget")
    ok = sub("-n", "ok", "--model", "alpha", "--max-cost", "0.5", "-l", "dry.cost=0.10",
             "-l", "team=web", *FAST, "an easy one")
    flaky = sub("-n", "flaky", "--model", "alpha", "--fallback", "beta", "--retries", "1",
                "--max-cost", "0.5", "-l", "dry.fail-attempts=1", "-l", "dry.cost=0.05",
                "-l", "team=api", *FAST, "fails once, then works on the fallback")
    broken = sub("-n", "broken", "--model", "beta", "--retries", "1", "--max-cost", "0.5",
                 "-l", "dry.exit=3", "-l", "dry.cost=0.02", "-l", "team=api", *FAST,
                 "always exits 3")
    after_broken = sub("-n", "after-broken", "--model", "beta", "--after", str(broken),
                       "runs after broken")
    hostile = sub("-n", HOSTILE_NAME, "--model", "m1", "--max-cost", "1",
                  "-l", "note=\x1b[5mblink", HOSTILE_PROMPT)
    pipe = os.path.join(f.dir, "pipe.jsonl")
    with open(pipe, "w") as fh:
        fh.write('{"name": "dev", "prompt": "implement", "model": "gamma"}\n'
                 '{"name": "test", "prompt": "test it", "after": ["dev"]}\n'
                 '{"name": "deploy", "prompt": "ship it", "after": ["test"]}\n')
    r = f.run_tool("fz-submit", "-f", pipe)
    h.check(r.returncode == 0, "pipeline: %s" % r.stderr)
    p = {name: int(i) for name, i in (line.split() for line in r.stdout.splitlines())}
    parent = sub("-n", "parent", "--model", "gamma", "a parent nobody runs")
    child1 = sub("-n", "child-1", "--parent", str(parent), "--model", "alpha", "--max-cost",
                 "0.5", "-l", "dry.cost=0.01", *FAST, "first subtask")
    child2 = sub("-n", "child-2", "--parent", str(parent), "--model", "alpha", "--max-cost",
                 "0.5", "-l", "dry.cost=0.01", *FAST, "second subtask")
    grandchild = sub("-n", "grandchild", "--parent", str(child1), "--model", "gamma",
                     "a subtask of a subtask")

    # ------------------------------------------------------------------ retrying, on the way
    h.wait_for(lambda: f.state(flaky) == "retrying", 10, "flaky to wait out its backoff", 0.02)
    text = ctl("show", str(flaky))
    h.check(re.search(r"^  state     retrying \(last attempt: exited 1\)$", text, re.M),
            "show of a retrying task:\n%s" % text)
    h.check("attempt 1: exited 1 on worker wsim, model alpha\n" in text,
            "retrying task's first attempt:\n%s" % text)
    h.check(re.search(r"^tasks    .*\bretrying [12]\b", ctl("status"), re.M),
            "status does not count the retrying task")

    # ------------------------------------------------------------------ running, then cancelled
    f.wait_states([ok, flaky, broken, after_broken, hostile, child1, child2],
                  {"succeeded", "failed", "dep-failed"}, 20)
    long_ = sub("-n", "long", "--model", "beta", "--max-cost", "0.5", "-l", "dry.duration=30",
                "runs until cancelled")
    h.wait_for(lambda: f.state(long_) == "running", 10, "the long task to run")
    text = ctl("workers")
    row = [l for l in text.splitlines() if l.startswith("wscript ")]
    h.check(len(row) == 1 and row[0].split()[1:3] == ["busy", str(long_)],
            "workers while the long task runs:\n%s" % text)
    text = ctl("status")
    h.check("agents    1 running (at most 3)\n" in text and "workers   3 connected, 2 idle\n" in text,
            "status while one runs:\n%s" % text)
    m = re.search(r"budget    \$(\S+) spent \+ \$(\S+) reserved of \$5\.00 today", text)
    h.check(m and money(m.group(2)) == 0.5, "the running task reserves its --max-cost:\n%s" % text)
    text = ctl("show", str(long_))
    h.check("  state     running\n" in text and
            "attempt 1: running on worker wscript, model beta\n" in text and
            re.search(r"^  started   \S+Z   ended \(running\)   duration ", text, re.M),
            "show of a running task:\n%s" % text)
    ctl("cancel", str(long_))
    f.wait_states([long_], {"cancelled"}, 15)

    # ------------------------------------------------------------------ the facts, from JSON
    want_state = {big: "held", ok: "succeeded", flaky: "succeeded", broken: "failed",
                  after_broken: "dep-failed", hostile: "succeeded", p["dev"]: "queued",
                  p["test"]: "waiting", p["deploy"]: "waiting", parent: "queued",
                  child1: "succeeded", child2: "succeeded", grandchild: "queued",
                  long_: "cancelled"}
    shown = {i: js("show", str(i)) for i in want_state}
    got = {i: s["task"]["state"] for i, s in shown.items()}
    h.check(got == want_state, "states %s, wanted %s" % (got, want_state))
    # What each attempt ran on and reported: (outcome, exit code, worker, model, cost).
    want_attempts = {
        ok: [("exited", 0, "wsim", "alpha", 0.10)],
        flaky: [("exited", 1, "wsim", "alpha", 0.05), ("exited", 0, "wscript", "beta", 0.05)],
        broken: [("exited", 3, "wscript", "beta", 0.02), ("exited", 3, "wscript", "beta", 0.02)],
        hostile: [("exited", 0, "whostile", "m1", 0.25)],
        child1: [("exited", 0, "wsim", "alpha", 0.01)],
        child2: [("exited", 0, "wsim", "alpha", 0.01)],
        long_: [("cancelled", None, "wscript", "beta", 0.0)],
    }
    for i, want in want_attempts.items():
        att = shown[i]["attempts"]
        have = [(a["outcome"], a["exit_code"] if a["outcome"] == "exited" else None, a["worker"],
                 a["model"], round(a["cost_usd"], 6)) for a in att]
        h.check(have == want, "task %d attempts %s, wanted %s" % (i, have, want))
    for i in set(want_state) - set(want_attempts):
        h.check(shown[i]["attempts"] == [], "task %d ran: %s" % (i, shown[i]["attempts"]))
    h.check((shown[hostile]["task"]["tokens_in"], shown[hostile]["task"]["tokens_out"]) ==
            (100, 20), "hostile tokens %s" % shown[hostile]["task"])
    attempts = [a for i in want_attempts for a in shown[i]["attempts"]]
    spent = round(sum(a["cost_usd"] for a in attempts), 6)
    near(spent, 0.51, "what the agents reported")

    # ------------------------------------------------------------------ show
    text = ctl("show", str(flaky))
    h.check(text.startswith("task %d  flaky\n  state     succeeded (last attempt: exited 0)\n"
                            % flaky), "show head:\n%s" % text)
    for line in ("  model     alpha   fallback beta", "  labels    ",
                 "  limits    timeout 3600s, max cost $0.5000, retries 1",
                 "  worker    wscript   attempts 2",
                 "  cost      $0.1000   tokens ",
                 "attempt 1: exited 1 on worker wsim, model alpha",
                 "  cost      $0.0500   tokens ",
                 "attempt 2: exited 0 on worker wscript, model beta",
                 "  log       %s/work/wscript/%d/attempt-2.log" % (f.dir, flaky)):
        h.check("\n" + line in text, "show %d lacks %r:\n%s" % (flaky, line, text))
    h.check("team=api" in text and "dry.fail-attempts=1" in text, "labels:\n%s" % text)
    # Each attempt's own tokens, as the JSON has them.
    for a in shown[flaky]["attempts"]:
        h.check(re.search(r"^attempt %d: .*\n.*\n  cost      \$%.4f   tokens %d in / %d out$" %
                          (a["n"], a["cost_usd"], a["tokens_in"], a["tokens_out"]), text, re.M),
                "attempt %d's cost line:\n%s" % (a["n"], text))
    text = ctl("show", str(broken))
    h.check("  state     failed (last attempt: exited 3)\n" in text and
            text.count("exited 3 on worker wscript, model beta\n") == 2, "show broken:\n%s" % text)
    text = ctl("show", str(after_broken))
    # Never ran: no "last attempt", and its cost cap is the broker's default, not $0.
    h.check("  state     dep-failed\n" in text and "  after     %d   " % broken in text and
            "  limits    timeout 3600s, max cost the broker's default, retries 0\n" in text,
            "show after-broken:\n%s" % text)
    h.check(re.search(r"^summary:\n  .*\b%d\b" % broken, text, re.M),
            "dep-failed does not say which dependency failed:\n%s" % text)
    text = ctl("show", str(long_))
    h.check("  state     cancelled (last attempt: cancelled)\n" in text and
            "attempt 1: cancelled on worker wscript, model beta\n" in text,
            "show long:\n%s" % text)
    # Why a task does not run.
    left = CAP - spent
    text = ctl("show", str(big))
    h.check("\n  held      budget: needs 10.00 USD, %.2f left of today's 5.00; more than the whole "
            "daily cap" % left in text, "show of a held task:\n%s" % text)
    text = ctl("show", str(p["dev"]))
    h.check("\n  waiting   no connected worker serves model 'gamma'\n" in text, "dev:\n%s" % text)
    text = ctl("show", str(p["deploy"]))
    h.check("  state     waiting\n  waiting   for 1 dependency to end\n" in text and
            "  after     %d   " % p["test"] in text, "deploy:\n%s" % text)
    text = ctl("show", str(parent))
    h.check("   subtasks %d, %d\n" % (child1, child2) in text, "parent:\n%s" % text)
    text = ctl("show", str(grandchild))
    h.check("   parent %d" % child1 in text, "grandchild:\n%s" % text)

    # ------------------------------------------------------------------ hostile output
    text = ctl("show", str(hostile))
    for part in ("task %d  hostile \\x1b[31m name\n" % hostile,
                 "attempt 1: exited 0 on worker whostile, model m1\n",
                 "\n  cost      $0.2500   tokens 100 in / 20 out\n",
                 "    | <script>alert(1)</script>\n",
                 "    | red \\x1b[31mRED\\x1b[0m end\n",
                 "    | title \\x1b]0;pwned\\x07 end\n",
                 "    | csi \\u009b2J end\n",
                 "    | carriage\\rreturn\n",
                 "    | bad utf8 \\xff\\xfe end\n",
                 "    | del \\x7f end\n",
                 "    | stderr \\x1b[41m line\n",
                 "    | " + "A" * 1997 + "...\n",
                 "    | last line\n",
                 "  labels    note=\\x1b[5mblink\n",
                 "\nprompt:\n  prompt \\x1b]0;pwned\\x07 \\x1b[2J end\n",
                 "summary:\n    sum <script>x</script> csi \\u009b2J bad "):
        h.check(part in text, "show of the hostile task lacks %r:\n%s" % (part, text[:4000]))
    longest = max(len(l) for l in text.splitlines())
    h.check(longest <= 2010, "a line of %d characters" % longest)
    r = js("show", str(hostile))
    out = r["attempts"][0]["output"]
    for part in ("red \x1b[31mRED\x1b[0m end\n", "csi \x9b2J end\n", "carriage\rreturn\n",
                 "bad utf8 \ufffd\ufffd end\n", "del \x7f end\n", "\n" + "A" * 10000 + "\n"):
        h.check(part in out, "JSON output lacks %r" % part)
    h.check(r["task"]["name"] == HOSTILE_NAME and r["task"]["prompt"] == HOSTILE_PROMPT and
            r["task"]["labels"]["note"] == "\x1b[5mblink", "JSON task: %s" % r["task"])
    # The hostile task in the other views.
    text = ctl("list")
    h.check(re.search(r"^%d +succeeded .* m1 +1 whostile +hostile \\x1b\[31m name$" % hostile,
                      text, re.M), "list, hostile row:\n%s" % text)
    text = ctl("cost", "--by", "label", "--label", "note")
    h.check(re.search(r"^\\x1b\[5mblink +1 +0\.2500 +100 +20 ", text, re.M),
            "cost by the hostile label:\n%s" % text)

    # ------------------------------------------------------------------ status, budget
    counts = {"queued": 3, "waiting": 2, "held": 1, "succeeded": 5, "failed": 1,
              "cancelled": 1, "dep-failed": 1}
    text = ctl("status")
    want = ("dispatch  running\n"
            "agents    0 running (at most 3)\n"
            "workers   3 connected, 3 idle\n"
            "budget    $%.2f spent + $0.00 reserved of $5.00 today ($%.2f left)\n"
            "tasks     queued 3, waiting 2, held 1, succeeded 5, failed 1, cancelled 1, "
            "dep-failed 1\n" % (spent, left))
    h.check(text == want, "status:\n%s\nwanted:\n%s" % (text, want))
    st = js("status")
    h.check({k: v for k, v in st["counts"].items() if v} == counts and st["running"] == 0 and
            st["workers"] == 3 and st["idle_workers"] == 3 and st["paused"] is False,
            "status JSON %s" % st)
    near(st["spent_today"], spent, "status spent_today")
    text = ctl("budget")
    day = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    want = ("day       %s (UTC)\ncap       $5.00\nspent     $%.4f\nreserved  $0.0000\n"
            "left      $%.4f\n" % (day, spent, left))
    h.check(text == want, "budget:\n%s\nwanted:\n%s" % (text, want))
    b = js("budget")
    near(b["spent"], spent, "budget spent")
    near(b["left"], b["cap"] - b["spent"] - b["reserved"], "budget left")
    h.check(b["cap"] == CAP and b["reserved"] == 0 and b["day"] == day, "budget JSON %s" % b)

    # ------------------------------------------------------------------ workers
    text = ctl("workers")
    rows = {l.split()[0]: l.split() for l in text.splitlines()[1:]}
    h.check(text.splitlines()[0].split() == ["NAME", "STATE", "TASK", "SINCE", "LAST", "SEEN",
                                             "MODELS"], "workers header:\n%s" % text)
    for name, model in (("wsim", "alpha"), ("wscript", "beta"), ("whostile", "m1")):
        h.check(name in rows and rows[name][1:3] == ["idle", "-"] and rows[name][-1] == model,
                "workers row %s:\n%s" % (name, text))
    h.check(len(rows) == 3, "workers:\n%s" % text)
    w = {x["name"]: x for x in js("workers")["workers"]}
    h.check({n: (x["models"], x["state"], x["task"]) for n, x in w.items()} ==
            {"wsim": (["alpha"], "idle", 0), "wscript": (["beta"], "idle", 0),
             "whostile": (["m1"], "idle", 0)}, "workers JSON %s" % w)

    # ------------------------------------------------------------------ cost
    def cost_rows(text, by):
        lines = text.splitlines()
        h.check(lines[0].split() == [by.upper(), "ATTEMPTS", "COST", "TOKENS", "IN", "TOKENS",
                                     "OUT", "DURATION"], "cost by %s header:\n%s" % (by, text))
        h.check(lines[-1].split() == ["total", "%.4f" % spent], "cost by %s total:\n%s" % (by, text))
        return {l.split()[0]: (int(l.split()[1]), money(l.split()[2])) for l in lines[1:-1]}

    def expect(key_of):
        rows = {}
        for i in want_attempts:
            for a in shown[i]["attempts"]:
                k = key_of(i, a)
                n, c = rows.get(k, (0, 0.0))
                rows[k] = (n + 1, round(c + a["cost_usd"], 6))
        return {k: (n, money(c)) for k, (n, c) in rows.items()}

    def team(i):
        return shown[i]["task"].get("labels", {}).get("team") or "-"

    for by, key_of, extra in (("model", lambda i, a: a["model"], []),
                              ("worker", lambda i, a: a["worker"], []),
                              ("task", lambda i, a: str(i), []),
                              ("day", lambda i, a: day, []),
                              ("label", lambda i, a: team(i), ["--label", "team"])):
        text = ctl("cost", "--by", by, *extra)
        want = expect(key_of)
        got = cost_rows(text, by)
        h.check(got == want, "cost by %s: %s, wanted %s\n%s" % (by, got, want, text))
        j = js("cost", "--by", by, *extra)
        near(j["total_cost"], spent, "cost by %s JSON total" % by)
        jrows = {(r["key"] or "-"): (r["attempts"], money(r["cost_usd"])) for r in j["rows"]}
        h.check(jrows == want, "cost by %s JSON %s, wanted %s" % (by, jrows, want))
        # Tokens in the text are the JSON's.
        for r in j["rows"]:
            line = [l for l in text.splitlines() if l.split()[0] == (r["key"] or "-")][0]
            h.check(line.split()[3:5] == [str(r["tokens_in"]), str(r["tokens_out"])],
                    "cost by %s tokens of %s: %s" % (by, r["key"], line))

    # ------------------------------------------------------------------ list, --state, --tree
    text = ctl("list")
    lines = text.splitlines()
    h.check(lines[0].split() == ["ID", "STATE", "PRIO", "EFF", "MODEL", "ATT", "WORKER", "NAME"],
            "list header:\n%s" % text)
    rows = {int(l.split()[0]): l.split() for l in lines[1:]}
    h.check({i: r[1] for i, r in rows.items()} == want_state, "list states:\n%s" % text)
    for i, r in rows.items():
        t = shown[i]["task"]
        h.check(r[4] == (t["model"] or "-") and int(r[5]) == len(shown[i]["attempts"]),
                "list row %d: %s, task %s" % (i, r, t))
    h.check(rows[flaky][6] == "wscript" and rows[flaky][7] == "flaky", "list flaky: %s" % rows[flaky])
    h.check([l.split()[0] for l in lines[1:]] == [str(i) for i in sorted(want_state)],
            "list not by id:\n%s" % text)
    j = js("list")
    h.check({t["id"]: t["state"] for t in j["tasks"]} == want_state and j["total"] == 14,
            "list JSON %s" % j)
    text = ctl("list", "--state", "held")
    lines = text.splitlines()
    h.check(len(lines) == 2 and lines[1].split()[:3] == [str(big), "held", "0"] and
            lines[1].split()[-1] == "big", "list --state held:\n%s" % text)
    j = js("list", "--state", "held")
    h.check([(t["id"], t["hold_reason"]) for t in j["tasks"]] == [(big, "budget")] and
            j["tasks"][0]["hold_detail"].startswith("needs 10.00 USD"), "held JSON %s" % j)
    text = ctl("list", "--tree")
    lines = text.splitlines()[1:]
    ids = [int(l.split()[0]) for l in lines]
    h.check(sorted(ids) == sorted(want_state), "tree lists %s" % ids)
    at = ids.index(parent)
    h.check(ids[at:at + 4] == [parent, child1, grandchild, child2],
            "subtasks not under their parent:\n%s" % text)
    col = lines[at].index("parent")
    h.check(lines[at + 1].index("└ child-1") == col + 2 and
            lines[at + 2].index("└ grandchild") == col + 4 and
            lines[at + 3].index("└ child-2") == col + 2, "tree indentation:\n%s" % text)
    h.check(all("└" not in l for i, l in zip(ids, lines) if i not in (child1, child2, grandchild)),
            "a root indented:\n%s" % text)


h.run("ctl_views", body)
