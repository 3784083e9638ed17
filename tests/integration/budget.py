"""Budget: 60 dry-run tasks with random costs through 5 workers under a 2 USD daily cap.
The day's recorded spend never passes the cap; tasks that do not fit are held with reason
"budget" and are released when the cap is raised; spend and cap survive a restart; the cost
report's sums equal the ledger."""
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fzharness as h  # noqa: E402


def body(f):
    f.start_broker("--daily-budget", "2", "--max-running", "5")
    rng = random.Random(3)
    ids = []
    for i in range(60):
        cost = round(rng.uniform(0.01, 0.12), 4)
        # max_cost is the reservation and the cap; the simulated cost stays under it
        ids.append(f.submit("job %d" % i, max_cost=0.12,
                            labels={"dry.cost": str(cost), "dry.duration": "0.1", "team": "t%d" % (i % 3)}))
    for i in range(5):
        f.start_worker("w%d" % i, dry_run=True)

    def settled():
        st = f.ok("status")
        c = st["counts"]
        h.check(st["spent_today"] <= 2.0 + 1e-9, "spent %.4f passed the cap" % st["spent_today"])
        h.check(st["spent_today"] + st["reserved"] <= 2.0 + 1e-9,
                "spent+reserved %.4f passed the cap" % (st["spent_today"] + st["reserved"]))
        return st if c["running"] == 0 and c["queued"] == 0 else None
    st = h.wait_for(settled, 60, "the budget to run out", 0.05)
    held = f.ok("list", state="held", limit=1000)["tasks"]
    h.check(len(held) > 0, "no task was held (spent %.3f)" % st["spent_today"])
    h.check(all(t["hold_reason"] == "budget" for t in held), "held for another reason")
    h.check(held[0]["hold_detail"].startswith("needs 0.12 USD"), "hold detail: %s" % held[0])
    b = f.ok("budget")
    h.check(abs(b["spent"] - st["spent_today"]) < 1e-9 and b["cap"] == 2.0, "budget: %s" % b)
    print("spent %.4f of 2.00 with %d held" % (b["spent"], len(held)))

    # Spend, cap and held tasks survive a restart.
    f.kill(f.broker)
    f.start_broker("--daily-budget", "2", "--max-running", "5")
    b2 = f.ok("budget")
    h.check(abs(b2["spent"] - b["spent"]) < 1e-9, "spent after restart %s != %s" % (b2, b))
    h.check(len(f.ok("list", state="held", limit=1000)["tasks"]) == len(held), "held tasks changed")

    # Raising the cap releases them all; the cap set live persists.
    f.ok("budget", set=100.0)
    f.wait_states(ids, {"succeeded"}, 90)
    h.check(f.ok("budget")["cap"] == 100.0, "cap not kept")
    # The cost report adds up to the ledger, by every grouping.
    total = f.ok("budget")["spent"]
    for by, extra in (("day", {}), ("model", {}), ("task", {}), ("worker", {}),
                      ("label", {"label": "team"})):
        rep = f.ok("cost", by=by, **extra)
        s = sum(r["cost_usd"] for r in rep["rows"])
        h.check(abs(s - total) < 1e-6 and abs(rep["total_cost"] - total) < 1e-6,
                "cost by %s sums to %.6f, ledger %.6f" % (by, s, total))
    h.check(len(f.ok("cost", by="task")["rows"]) == 60, "cost by task should have 60 rows")

    # A task without --max-cost is held to the default reservation (0.5 here), like a cap:
    # an agent that would spend 5 USD is stopped, so the ledger's arithmetic holds.
    greedy = f.submit("greedy", labels={"dry.cost": "5", "dry.duration": "0.5"})
    f.wait_states([greedy], {"failed"}, 20)
    a = f.task(greedy)["attempts"][0]
    h.check(a["outcome"] == "cost-cap" and a["cost_usd"] <= 0.6, "uncapped task: %s" % a)


h.run("budget", body)
