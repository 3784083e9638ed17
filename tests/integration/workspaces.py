"""Workspaces end to end (issue 11, PROTOCOL.md section 8): a real broker, three real workers
and temporary git repositories. Two tasks on one repository edit the same file at the same
time, each in its own worktree, and end on their own branches with their own diffs; a
three-step pipeline (--after chain) ends with one branch holding all three steps' commits;
two dependencies whose results conflict fail the task after them with class merge-conflict
(not retried); a check that fails once passes on the retry, whose prompt carries the first
failure's output; best-of-3 where only one attempt can pass its check picks it and cancels
the other two, which keep their branches; a missing repository and a bad base fail with
class workspace, not retried. Afterwards every test repository lists only its main worktree and has nothing to
prune."""
import os
import stat
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fzharness as h  # noqa: E402
import gitrepo as g  # noqa: E402

# The agent: keeps its prompt for the test (outside the worktree) and runs its first line.
AGENT = """#!/bin/sh
printf '%%s' "$FZ_PROMPT" > '%s'/"prompt-$FZ_TASK_ID-$FZ_ATTEMPT"
eval "$(printf '%%s\\n' "$FZ_PROMPT" | head -n 1)"
"""
END = ("succeeded", "failed", "cancelled", "dep-failed")


def get(f, tid):
    r = f.task(tid)
    return r["task"], r["attempts"]


def concurrent(f, repo):
    a = f.submit("sleep 1; echo alpha >> README", repo=repo)
    b = f.submit("sleep 1; echo beta >> README", repo=repo)
    f.wait_states([a, b], END, 30)
    ta, aa = get(f, a)
    tb, ab = get(f, b)
    h.check(ta["state"] == tb["state"] == "succeeded", "concurrent: %s %s" % (ta, tb))
    h.check(aa[0]["worker"] != ab[0]["worker"], "concurrent: both ran on %s" % aa[0]["worker"])
    h.check(aa[0]["started"] < ab[0]["ended"] and ab[0]["started"] < aa[0]["ended"],
            "concurrent: the attempts did not overlap")
    for t, att, mine, other in ((ta, aa, "alpha", "beta"), (tb, ab, "beta", "alpha")):
        text = g.git(repo, "show", "%s:README" % att[0]["branch"])
        h.check(mine in text and other not in text, "%s sees %r" % (att[0]["branch"], text))
        h.check((att[0]["files"], att[0]["insertions"]) == (1, 1), "diff stat: %s" % att[0])
        h.check(t["branch"] == "fz/%d" % t["id"] and t["head_commit"] == att[0]["head_commit"],
                "task branch: %s" % t)
    h.wait_for(lambda: g.git(repo, "rev-parse", "fz/%d" % a, check=False) == ta["head_commit"], 10,
               "fz/%d to be promoted" % a)
    h.check(g.git(repo, "status", "--porcelain") == "", "the user's checkout changed")


def pipeline(f, repo):
    dev = f.submit("echo dev > dev.txt", repo=repo)
    test = f.submit("echo test > test.txt; test -f dev.txt", repo=repo, after=[dev])
    docs = f.submit("echo docs > docs.txt; test -f test.txt", repo=repo, after=[test])
    f.wait_states([dev, test, docs], END, 40)
    heads = []
    for tid in (dev, test, docs):
        t, att = get(f, tid)
        h.check(t["state"] == "succeeded", "pipeline step %d: %s / %s" % (tid, t, att))
        heads.append(t["head_commit"])
    last = get(f, docs)[1][-1]["branch"]
    for name in ("dev.txt", "test.txt", "docs.txt"):
        g.git(repo, "cat-file", "-e", "%s:%s" % (last, name))
    for head in heads:
        g.git(repo, "merge-base", "--is-ancestor", head, last)
    h.check(len(g.git(repo, "rev-list", "HEAD.." + last).split()) == 3,
            "the last branch does not hold exactly the three steps' commits")


def conflict(f, repo):
    a = f.submit("echo from-a > clash.txt", repo=repo)
    b = f.submit("echo from-b > clash.txt", repo=repo)
    c = f.submit("echo never > c.txt", repo=repo, after=[a, b], retries=2)
    f.wait_states([a, b, c], END, 40)
    t, att = get(f, c)
    h.check(t["state"] == "failed" and t["class"] == "merge-conflict" and len(att) == 1,
            "merge conflict: %s / %s" % (t, att))
    h.check("clash.txt" in att[0]["summary"], "merge conflict summary: %s" % att[0]["summary"])
    h.check(not os.path.exists(os.path.join(f.dir, "out", "prompt-%d-1" % c)), "its agent ran")


def check_retry(f, repo):
    t = f.submit('if [ "$FZ_ATTEMPT" -ge 2 ]; then echo ok > fixed.txt; fi', repo=repo,
                 check='test -f fixed.txt || { echo "MISSING fixed.txt"; exit 4; }', retries=1)
    f.wait_states([t], END, 30)
    task, att = get(f, t)
    h.check(task["state"] == "succeeded" and len(att) == 2, "check retry: %s / %s" % (task, att))
    h.check(att[0]["class"] == "check-failed" and att[0]["check_status"] == "failed"
            and att[0]["check_exit"] == 4 and b"MISSING" in att[0]["check_output"],
            "check retry, attempt 1: %s" % att[0])
    h.check(att[1]["check_status"] == "passed" and att[1]["class"] == "", "attempt 2: %s" % att[1])
    with open(os.path.join(f.dir, "out", "prompt-%d-2" % t)) as p:
        prompt = p.read()
    h.check("## The check failed on attempt 1" in prompt and "MISSING fixed.txt" in prompt
            and "Exit status: 4" in prompt, "the second prompt: %r" % prompt)


def best_of(f, repo):
    # Three attempts race, one worker each; only attempt 2 can pass its check, and it ends
    # first (after 2 s, when all three agents run): it wins, and the other two, still working,
    # are cancelled and keep their branches. (One cancelled before its agent started would
    # keep nothing: its worktree was never worked in.)
    t = f.submit('echo "$FZ_ATTEMPT" > who.txt; [ "$FZ_ATTEMPT" = 2 ] && sleep 2 || sleep 20',
                 repo=repo,
                 best_of=3, check='test "$(cat who.txt)" = 2')
    f.wait_states([t], END, 40)
    # the losers are recorded when their workers report them, after the win
    h.wait_for(lambda: all(a["outcome"] != "running" for a in get(f, t)[1]), 15,
               "the best-of losers' results")
    task, att = get(f, t)
    h.check(task["state"] == "succeeded", "best-of: %s / %s" % (task, att))
    by_n = {a["n"]: a for a in att}
    h.check(sorted(by_n) == [1, 2, 3] and len({a["worker"] for a in att}) == 3,
            "best-of: attempts %s" % [(a["n"], a["worker"], a["outcome"]) for a in att])
    h.check(by_n[2]["check_status"] == "passed" and task["head_commit"] == by_n[2]["head_commit"],
            "best-of: the winner %s" % by_n[2])
    for n in (1, 3):
        a = by_n[n]
        h.check(a["outcome"] == "cancelled" and a["branch"] == "fz/%d-%d" % (t, n), "best-of loser %s" % a)
        h.check(a["duration_ms"] < 15000, "best-of loser ran on: %s" % a)
        g.git(repo, "rev-parse", "--verify", "fz/%d-%d" % (t, n))
    h.wait_for(lambda: g.git(repo, "rev-parse", "fz/%d" % t, check=False) == by_n[2]["head_commit"],
               10, "fz/%d to point at the winner" % t)


def bad_input(f, repo):
    missing = f.submit("true", repo=os.path.join(f.dir, "no-such-repo"), retries=2)
    badbase = f.submit("true", repo=repo, base="no-such-branch", retries=2)
    f.wait_states([missing, badbase], END, 20)
    for tid, words in ((missing, "does not exist"), (badbase, "no-such-branch")):
        t, att = get(f, tid)
        h.check(t["state"] == "failed" and t["class"] == "workspace" and len(att) == 1,
                "bad input %d: %s / %s" % (tid, t, att))
        h.check(words in att[0]["summary"], "bad input summary: %s" % att[0]["summary"])


def body(f):
    out = os.path.join(f.dir, "out")
    os.makedirs(out)
    agent = os.path.join(f.dir, "agent.sh")
    with open(agent, "w") as a:
        a.write(AGENT % out)
    os.chmod(agent, stat.S_IRWXU)
    repos = [g.make(os.path.join(f.dir, n), {"README": "hello\n"}) for n in ("r1", "r2", "r3", "r4")]
    f.start_broker()
    for name in ("w1", "w2", "w3"):
        f.start_worker(name, agent=agent)
    h.wait_for(lambda: len(f.ok("workers")["workers"]) == 3, 10, "three workers")
    t0 = time.monotonic()
    concurrent(f, repos[0])
    pipeline(f, repos[1])
    conflict(f, repos[2])
    check_retry(f, repos[3])
    best_of(f, repos[3])
    bad_input(f, repos[3])
    print("workspaces: %.1f s" % (time.monotonic() - t0))
    for p, label in list(f.procs.values()):  # the workers finish and remove what they hold
        if label != "broker":
            f.kill(p)
    for r in repos:
        g.check_clean(r)


h.run("workspaces", body)
