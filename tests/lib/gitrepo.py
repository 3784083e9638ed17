"""Temporary git repositories for workspace tests: made with a fixed identity (per command,
never the user's global configuration), inspected with plain git."""
import os
import subprocess

import fzharness as h

IDENT = ["-c", "user.name=fz-test", "-c", "user.email=fz-test@localhost",
         "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"]


def git(repo, *args, check=True):
    """git -C repo ARGS; returns stdout (stripped). Fails the test on a non-zero exit."""
    p = subprocess.run(["git", "-C", repo] + IDENT + list(args), capture_output=True, text=True)
    if check and p.returncode != 0:
        raise h.TestFailure("git %s in %s failed: %s" % (" ".join(args), repo, p.stderr.strip()))
    return p.stdout.strip()


def make(path, files=None, bare_origin=False):
    """A repository at path with one commit of files {name: text}; returns path. With
    bare_origin, a bare clone at path + '.git' is made too and returned instead."""
    os.makedirs(path)
    git(path, "init", "-q")
    for name, text in (files or {"README": "hello\n"}).items():
        full = os.path.join(path, name)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(text)
    git(path, "add", "-A")
    git(path, "commit", "-qm", "first")
    if bare_origin:
        subprocess.run(["git", "clone", "-q", "--bare", path, path + ".git"], check=True)
        return path + ".git"
    return path


def commit(repo, branch, files, message):
    """A new commit on branch (created from HEAD if missing) without touching the checkout:
    returns its id."""
    env = dict(os.environ, GIT_INDEX_FILE=os.path.join(repo, ".git", "fz-test-index"))
    parent = git(repo, "rev-parse", "--verify", "-q", branch, check=False) or git(repo, "rev-parse", "HEAD")
    subprocess.run(["git", "-C", repo, "read-tree", parent], env=env, check=True)
    for name, text in files.items():
        blob = subprocess.run(["git", "-C", repo, "hash-object", "-w", "--stdin"], input=text,
                              capture_output=True, text=True, check=True).stdout.strip()
        subprocess.run(["git", "-C", repo, "update-index", "--add", "--cacheinfo",
                        "100644,%s,%s" % (blob, name)], env=env, check=True)
    tree = subprocess.run(["git", "-C", repo, "write-tree"], env=env, capture_output=True,
                          text=True, check=True).stdout.strip()
    os.unlink(env["GIT_INDEX_FILE"])
    c = git(repo, "commit-tree", tree, "-p", parent, "-m", message)
    git(repo, "update-ref", "refs/heads/" + branch, c)
    return c


def worktrees(repo):
    """The folders of git worktree list (the main one first)."""
    out = git(repo, "worktree", "list", "--porcelain")
    return [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("worktree ")]


def check_clean(repo):
    """Only the main worktree is registered and nothing is left to prune."""
    wt = worktrees(repo)
    h.check(len(wt) <= 1, "%s: worktrees left: %s" % (repo, wt))
    left = git(repo, "worktree", "prune", "-n", "-v")
    h.check(left == "", "%s: git worktree prune -n says: %s" % (repo, left))
