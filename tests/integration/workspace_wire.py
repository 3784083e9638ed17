"""fz-worker's workspaces (PROTOCOL.md section 8) on the wire, against a fake broker (a ROUTER
of this test, no fz-broker) and real git repositories in the test's folder: the agent runs
in its own worktree with FZ_WORKTREE, FZ_BRANCH and FZ_BASE; the result carries the branch,
the commits and the diff stat; the check gates success (passed, failed with its output, and
stopped at what is left of the timeout while heartbeats go on); a missing repository, a bad
base and two bases that conflict end the attempt before any agent starts, with class
workspace or merge-conflict; a cancel while the worktree is being made (the repository's lock
held by this test) or while the check runs stops at once; promote in the result-ack points
fz/TASK at the attempt; a URL repository is mirrored and the branch pushed back; a worker
killed with SIGKILL leaves a worktree that its restart removes; a --once worker sets fz/TASK
before it leaves. Every test repository ends
with only its main worktree registered and nothing to prune."""
import fcntl
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fzharness as h  # noqa: E402
import gitrepo as g  # noqa: E402
from fakebroker import FakeBroker, dispatch  # noqa: E402

# The prompt is the agent: a shell script run in the worktree.
AGENT = 'eval "$FZ_PROMPT"'


def start(f, fb, name, *args):
    f.start_worker(name, "--broker", f.broker_ep, "--heartbeat", "200", *args, agent=AGENT)
    fb.wait(lambda n, m: n == name and m["type"] == "hello", 10, "the hello of " + name)


def no_started(fb, name, task):
    h.check(not fb.messages(name, "started", task), "task %d: an agent started" % task)


def result_and_branch(f, fb, repo):
    base = g.git(repo, "rev-parse", "HEAD")
    fb.promote.add((1, 1))
    dispatch(fb, "w", 1, repo=repo, check="test -f one.txt && echo checked && touch artifact",
             prompt='test "$PWD" = "$FZ_WORKTREE" || exit 9; echo one > one.txt; '
                    'env | grep -E "^FZ_(WORKTREE|BRANCH|BASE)=" | sort > env.txt; '
                    'ls -a "$FZ_WORKDIR" > ls.txt')
    r = fb.result("w", 1)
    h.check(r["outcome"] == "exited" and r["exit_code"] == 0 and "class" not in r, "1: %s" % r)
    h.check(r["branch"] == "fz/1-1" and r["base_commit"] == base, "1: branch/base %s" % r)
    h.check(r["head_commit"] == g.git(repo, "rev-parse", "fz/1-1"), "1: head %s" % r)
    # one.txt (1 line), env.txt (3), ls.txt (the folder's entries)
    h.check(r["files"] == 3 and r["insertions"] >= 6 and r["deletions"] == 0, "1: diff stat %s" % r)
    h.check(r["check_status"] == "passed" and r["check_exit"] == 0, "1: check %s" % r)
    h.check(b"checked" in r["check_output"], "1: check output %r" % r["check_output"])
    h.check(g.git(repo, "cat-file", "-e", "fz/1-1:artifact", check=False) == "" and
            "artifact" not in g.git(repo, "ls-tree", "--name-only", "fz/1-1"),
            "1: what the check left was committed")
    env = g.git(repo, "show", "fz/1-1:env.txt")
    h.check("FZ_BRANCH=fz/1-1" in env and "FZ_BASE=" + base in env and "FZ_WORKTREE=/" in env,
            "1: the agent's environment: %s" % env)
    ls = g.git(repo, "show", "fz/1-1:ls.txt")
    h.check(".fz-report" not in ls and "attempt-1.log" not in ls, "1: fz's files in the worktree: %s" % ls)
    fb.until(lambda: g.git(repo, "rev-parse", "--verify", "-q", "fz/1", check=False)
             == r["head_commit"], 10, "fz/1 to point at attempt 1 (promote)")
    g.check_clean(repo)
    h.check(g.git(repo, "status", "--porcelain") == "", "the user's checkout was touched")


def dirty(f, fb, repo):
    # Uncommitted changes in the user's checkout and no base: class workspace, saying how out,
    # nothing made, the checkout left alone; with an explicit base HEAD the attempt runs.
    with open(os.path.join(repo, "README"), "a") as rd:
        rd.write("not committed\n")
    dispatch(fb, "w", 14, repo=repo, prompt="cat README > seen.txt")
    r = fb.result("w", 14)
    h.check(r.get("class") == "workspace" and r["outcome"] == "spawn-failed"
            and "uncommitted changes" in r["summary"] and "--base HEAD" in r["summary"],
            "14: %s" % r)
    no_started(fb, "w", 14)
    h.check(g.git(repo, "rev-parse", "--verify", "-q", "fz/14-1", check=False) == "",
            "14: a branch was left")
    dispatch(fb, "w", 114, repo=repo, bases=["HEAD"], prompt="cat README > seen.txt")
    r = fb.result("w", 114)
    h.check("class" not in r, "114: %s" % r)
    h.check("not committed" not in g.git(repo, "show", "fz/114-1:seen.txt"), "114: saw it")
    h.check(g.git(repo, "status", "--porcelain") == "M README", "14: the checkout was touched")
    g.git(repo, "checkout", "README")
    g.check_clean(repo)


def check_fails(f, fb, repo):
    dispatch(fb, "w", 2, repo=repo, prompt="echo two > two.txt",
             check='echo "line one"; echo "it failed here" >&2; exit 3')
    r = fb.result("w", 2)
    h.check(r["outcome"] == "exited" and r["exit_code"] == 0, "2: %s" % r)
    h.check(r.get("class") == "check-failed" and r["check_status"] == "failed"
            and r["check_exit"] == 3, "2: %s" % r)
    h.check(b"line one" in r["check_output"] and b"it failed here" in r["check_output"], "2: %r" % r)
    h.check("exit status 3" in r["summary"] and "it failed here" in r["summary"], "2: %s" % r["summary"])
    h.check(r["files"] == 1 and g.git(repo, "show", "fz/2-1:two.txt") == "two", "2: the branch %s" % r)
    # No repository: the check runs in the attempt's folder.
    dispatch(fb, "w", 3, prompt="echo x > out.txt", check="test -f out.txt")
    r = fb.result("w", 3)
    h.check(r["check_status"] == "passed" and "class" not in r and "branch" not in r, "3: %s" % r)


def check_timeout(f, fb, repo):
    dispatch(fb, "w", 4, repo=repo, timeout=3, prompt="sleep 1; echo four > four.txt",
             check="echo checking; sleep 30")
    t0 = time.monotonic()
    r = fb.result("w", 4, timeout=20)
    took = time.monotonic() - t0
    h.check(r.get("class") == "check-failed" and r["check_status"] == "failed"
            and r["check_exit"] == -1, "4: %s" % r)
    h.check(2.5 < took < 8, "4: the check was stopped after %.1f s of a 3 s task" % took)
    h.check("timed out" in r["summary"], "4: %s" % r["summary"])
    beats = [t for m, t in fb.messages("w", "heartbeat", 4)]
    h.check(len(beats) >= 8, "4: %d heartbeats in %.1f s" % (len(beats), took))
    gaps = [b - a for a, b in zip(beats, beats[1:])]
    h.check(max(gaps) < 0.6, "4: a heartbeat gap of %.2f s" % max(gaps))


def bad_input(f, fb, repo):
    dispatch(fb, "w", 5, repo=os.path.join(f.dir, "nope"), prompt="true")
    r = fb.result("w", 5)
    h.check(r["outcome"] == "spawn-failed" and r.get("class") == "workspace", "5: %s" % r)
    h.check("does not exist" in r["summary"], "5: %s" % r["summary"])
    dispatch(fb, "w", 6, repo=repo, bases=["no-such-ref"], prompt="true")
    r = fb.result("w", 6)
    h.check(r.get("class") == "workspace" and "no-such-ref" in r["summary"]
            and "does not resolve" in r["summary"], "6: %s" % r)
    a = g.commit(repo, "side-a", {"README": "from a\n"}, "a")
    b = g.commit(repo, "side-b", {"README": "from b\n"}, "b")
    dispatch(fb, "w", 7, repo=repo, bases=[a, b], prompt="true")
    r = fb.result("w", 7)
    h.check(r["outcome"] == "spawn-failed" and r.get("class") == "merge-conflict"
            and "README" in r["summary"], "7: %s" % r)
    for t in (5, 6, 7):
        no_started(fb, "w", t)
    h.check(g.git(repo, "branch", "--list", "fz/6-1", "fz/7-1") == "", "failed opens left branches")
    # Two bases that merge: the agent starts from their merge.
    c = g.commit(repo, "side-c", {"other.txt": "c\n"}, "c")
    dispatch(fb, "w", 8, repo=repo, bases=[a, c], prompt="cat README other.txt > both.txt")
    r = fb.result("w", 8)
    h.check("class" not in r and g.git(repo, "show", "fz/8-1:both.txt") == "from a\nc", "8: %s" % r)
    g.check_clean(repo)


def cancels(f, fb, repo):
    # The repository's lock held here: the open waits for it; heartbeats go on; a cancel ends it.
    lockf = open(os.path.join(repo, ".git", "fz.lock"), "w")
    fcntl.flock(lockf, fcntl.LOCK_EX)
    dispatch(fb, "w", 9, repo=repo, prompt="true")
    fb.pump(1.5)
    beats = fb.messages("w", "heartbeat", 9)
    h.check(len(beats) >= 4, "9: heartbeats while opening: %d" % len(beats))
    fb.send("w", "cancel", task=9, attempt=1, reason="test")
    t0 = time.monotonic()
    r = fb.result("w", 9)
    h.check(time.monotonic() - t0 < 2 and r["outcome"] == "cancelled" and "class" not in r, "9: %s" % r)
    no_started(fb, "w", 9)
    lockf.close()
    # A cancel while the check runs: stopped at once, the branch kept, the worktree gone.
    dispatch(fb, "w", 10, repo=repo, prompt="echo ten > ten.txt", check="sleep 30")
    fb.wait(lambda n, m: m["type"] == "started" and m["task"] == 10, 10, "task 10 to start")
    fb.pump(1.0)
    fb.send("w", "cancel", task=10, attempt=1, reason="test")
    t0 = time.monotonic()
    r = fb.result("w", 10)
    h.check(time.monotonic() - t0 < 3 and r["outcome"] == "cancelled", "10: %s" % r)
    h.check(g.git(repo, "show", "fz/10-1:ten.txt") == "ten", "10: the branch %s" % r)
    g.check_clean(repo)


def kept_and_url(f, fb, repo):
    dispatch(fb, "w", 11, repo=repo, keep_worktree=True, prompt="echo k > k.txt")
    r = fb.result("w", 11)
    kept = [w for w in g.worktrees(repo) if w.endswith("/11-1")]
    h.check(len(kept) == 1 and os.path.exists(os.path.join(kept[0], "k.txt")), "11: %s" % kept)
    g.git(repo, "worktree", "remove", "--force", kept[0])
    # A URL: mirrored in the cache, the branch pushed back, fz/TASK too on promote.
    origin = g.make(os.path.join(f.dir, "upstream"), bare_origin=True)
    url = "file://" + origin
    fb.promote.add((12, 1))
    dispatch(fb, "w", 12, repo=url, prompt="echo u > u.txt", check="test -f u.txt")
    r = fb.result("w", 12)
    h.check("class" not in r and r["files"] == 1, "12: %s" % r)
    h.check(g.git(origin, "rev-parse", "fz/12-1") == r["head_commit"], "12: not pushed")
    fb.until(lambda: g.git(origin, "rev-parse", "--verify", "-q", "fz/12", check=False)
             == r["head_commit"], 10, "fz/12 pushed (promote)")
    g.check_clean(origin)
    return origin


def restart_prunes(f, fb, repo):
    dispatch(fb, "w", 13, repo=repo, prompt="echo partial > p.txt; sleep 60")
    fb.wait(lambda n, m: m["type"] == "started" and m["task"] == 13, 10, "task 13 to start")
    h.check(len(g.worktrees(repo)) == 2, "13: no worktree while the agent runs")
    proc = next(p for p, label in f.procs.values() if label == "worker-w")
    f.kill(proc, signal.SIGKILL)
    left = g.worktrees(repo)[1]
    h.check(os.path.isdir(left), "13: the worktree went with the worker")
    start(f, fb, "w")
    fb.until(lambda: len(g.worktrees(repo)) == 1 and not os.path.exists(left), 10,
             "the restarted worker to remove the worktree left behind")
    g.check_clean(repo)


def once_promotes(f, fb, repo):
    # --once leaves after its one result's ack, but only once the promote it asked for is done.
    start(f, fb, "o", "--once")
    fb.promote.add((15, 1))
    dispatch(fb, "o", 15, repo=repo, prompt="echo once > once.txt")
    r = fb.result("o", 15)
    proc = next(p for p, label in f.procs.values() if label == "worker-o")
    fb.until(lambda: proc.poll() is not None, 15, "the --once worker to leave")
    h.check(proc.returncode == 0, "--once exit status %s" % proc.returncode)
    h.check(g.git(repo, "rev-parse", "--verify", "-q", "fz/15", check=False) == r["head_commit"],
            "--once left before setting fz/15")


def body(f):
    fb = FakeBroker(f.broker_ep)
    try:
        repo = g.make(os.path.join(f.dir, "repo"), {"README": "hello\n", "src/a.c": "int a;\n"})
        # The user's own worktree, which fz must never touch.
        mine = os.path.join(f.dir, "users-own")
        g.git(repo, "worktree", "add", "-q", "-b", "mine", mine)
        start(f, fb, "w")
        g.git(repo, "worktree", "remove", mine)
        result_and_branch(f, fb, repo)
        dirty(f, fb, repo)
        check_fails(f, fb, repo)
        check_timeout(f, fb, repo)
        bad_input(f, fb, repo)
        cancels(f, fb, repo)
        origin = kept_and_url(f, fb, repo)
        restart_prunes(f, fb, repo)
        once_promotes(f, fb, repo)
        fb.pump(0.3)
        for r in (repo, origin):
            g.check_clean(r)
    finally:
        fb.close_after(f)


h.run("workspace_wire", body)
