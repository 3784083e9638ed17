"""A damaged store (issue 12, failure 4), checked and rebuilt: flipped bits in the entries of
the tasks_state index pass SQLite's quick_check (the broker's default check at start) but
not integrity_check: `fz-broker --integrity-check` refuses the file (exit 1, naming the way
out), `fz-broker --recover` rebuilds it (every task back, the damaged file kept beside it),
and the rebuilt store passes --integrity-check and serves all its tasks. A store whose index
pages are garbage is refused by the default check and rebuilt the same way. --recover is
refused while a broker holds the database. A damaged page of the tasks table itself loses
the rows on it, and only those: the rest are read from both ends of the table."""
import glob
import os
import sqlite3
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fzharness as h  # noqa: E402

N = 298


def broker_run(f, *args, env=None, timeout=60):
    return subprocess.run([os.path.join(h.BIN, "fz-broker"), "--bind", f.broker_ep, "--events",
                           f.events_ep, "--db", f.db] + list(args), env=env or f.env,
                          capture_output=True, text=True, timeout=timeout)


def fill(f):
    f.start_broker()
    ids = f.ok("submit-batch", tasks=[{"prompt": "task %d" % i} for i in range(N)])["tasks"]
    f.kill(f.broker)
    return ids


def leaves(f, name="tasks_state"):
    c = sqlite3.connect(f.db)
    pages = [r[0] for r in c.execute(
        "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno", (name,))]
    size = c.execute("PRAGMA page_size").fetchone()[0]
    c.close()
    h.check(pages, "no leaf page of %s" % name)
    return pages, size


def damage(f, how):
    pages, size = leaves(f, "tasks" if how == "table" else "tasks_state")
    h.check(how != "table" or len(pages) >= 3, "the tasks table has %d leaf pages" % len(pages))
    with open(f.db, "r+b") as fh:
        off = (pages[len(pages) // 2 if how == "table" else -1] - 1) * size
        fh.seek(off)
        page = bytearray(fh.read(size))
        if how == "entries":  # a few flipped bits in the keys: the structure is intact
            page = page.replace(b"queued", b"queuee", 3)
        else:  # the page's header and cells are garbage
            page[8:72] = b"\xa5" * 64
        fh.seek(off)
        fh.write(page)


def recover_and_serve(f, ids, label):
    before = open(f.db, "rb").read()
    r = broker_run(f, "--recover")
    h.check(r.returncode == 0, "%s: --recover exited %d: %s" % (label, r.returncode, r.stderr))
    h.check("%d tasks" % N in r.stdout, "%s: --recover said %r" % (label, r.stdout))
    kept = [p for p in glob.glob(f.db + ".damaged-*") if not p.endswith(("-wal", "-shm"))]
    h.check(len(kept) == 1 and open(kept[0], "rb").read() == before,
            "%s: the damaged file was not kept as it was: %s" % (label, kept))
    f.start_broker("--integrity-check")
    lst = f.ok("list", state="queued", limit=100000)
    h.check(sorted(t["id"] for t in lst["tasks"]) == sorted(ids),
            "%s: %d of %d tasks after the rebuild" % (label, len(lst["tasks"]), N))
    h.check(f.ok("status")["counts"]["queued"] == N, "%s: status counts" % label)
    f.kill(f.broker)
    for p in glob.glob(f.db + ".damaged-*"):
        os.unlink(p)
    print("%s: rebuilt, %d of %d tasks served, damaged file kept" % (label, len(lst["tasks"]), N))


def body(f):
    ids = fill(f)
    damage(f, "entries")
    f.start_broker()  # quick_check does not see it: this is what --integrity-check is for
    seen = f.ok("list", state="queued", limit=100000)["tasks"]
    f.kill(f.broker)
    r = broker_run(f, "--integrity-check")
    h.check(r.returncode == 1, "--integrity-check on a damaged index: exit %d" % r.returncode)
    h.check("integrity_check" in r.stderr and "--recover" in r.stderr, "message: %r" % r.stderr)
    print("flipped index entries: quick_check starts it (%d of %d tasks listed), "
          "--integrity-check refuses it" % (len(seen), N))
    # Not while a broker holds it; not without the sqlite3 tool (and nothing is touched).
    f.start_broker()
    r = broker_run(f, "--recover")
    h.check(r.returncode == 1 and "another fz-broker" in r.stderr, "recover while held: %r" % r.stderr)
    f.kill(f.broker)
    r = subprocess.run([os.path.join(h.BIN, "fz-broker"), "--db", f.db + ".nothing", "--recover"],
                       env=f.env, capture_output=True, text=True, timeout=30)
    h.check(r.returncode == 1 and "nothing" in r.stderr, "recover of no file: %r" % r.stderr)
    recover_and_serve(f, ids, "flipped index entries")

    damage(f, "garbage")
    r = broker_run(f)
    h.check(r.returncode == 1 and "quick_check" in r.stderr, "garbage index page: %r" % r.stderr)
    recover_and_serve(f, ids, "garbage index page")

    # A page of the table itself: its rows are lost, the others come back from both ends.
    damage(f, "table")
    r = broker_run(f, "--recover")
    h.check(r.returncode == 0 and "cut short" in r.stdout, "table page: %r %r" % (r.stdout, r.stderr))
    f.start_broker("--integrity-check")
    back = {t["id"] for t in f.ok("list", limit=100000)["tasks"]}
    h.check(back <= set(ids) and len(ids) - 60 < len(back) < len(ids),
            "a damaged table page: %d of %d tasks back" % (len(back), len(ids)))
    h.check(min(ids) in back and max(ids) in back, "the rows on both sides of the damage")
    print("garbage table page: %d of %d tasks read back (both ends), the page's rows lost"
          % (len(back), len(ids)))


h.run("store_recover", body)
