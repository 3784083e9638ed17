"""20 tasks of mixed priority through 2 workers with --max-running 1 run in priority order
(higher first, FIFO among equals)."""
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fzharness as h  # noqa: E402


def body(f):
    f.start_broker("--max-running", "1")
    rng = random.Random(7)
    expected = []
    for i in range(20):
        prio = rng.choice([-5, 0, 0, 3, 10, 10, 42])
        tid = f.submit("task %d" % i, priority=prio, labels={"dry.duration": "0.05"})
        expected.append((-prio, tid))
    # Workers join only now, so all 20 compete from the start.
    f.start_worker("a", dry_run=True)
    f.start_worker("b", dry_run=True)
    ids = [tid for _, tid in expected]
    f.wait_states(ids, {"succeeded"}, 60)
    starts = []
    for tid in ids:
        attempts = f.task(tid)["attempts"]
        h.check(len(attempts) == 1, "task %d ran %d times" % (tid, len(attempts)))
        starts.append((attempts[0]["started"], tid))
    ran = [tid for _, tid in sorted(starts)]
    want = [tid for _, tid in sorted(expected)]
    h.check(ran == want, "run order %s, expected %s" % (ran, want))
    # With one slot at a time, no two attempts overlap.
    spans = sorted((a["started"], a["ended"]) for tid in ids for a in f.task(tid)["attempts"])
    for (s1, e1), (s2, e2) in zip(spans, spans[1:]):
        h.check(s2 >= e1 - 0.001, "attempts overlap: %s and %s" % ((s1, e1), (s2, e2)))
    workers = {f.task(tid)["task"]["worker"] for tid in ids}
    h.check(workers == {"a", "b"}, "both workers should have worked, saw %s" % workers)


h.run("priority_order", body)
