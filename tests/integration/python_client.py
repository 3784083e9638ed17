"""The Python client (client/python/fz_client.py, no C code) against the real broker and a
real worker: it submits a task, waits for it and reads its result; errors come back as
FzError with the protocol's codes; its command line exits with the documented codes."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fzharness as h  # noqa: E402

sys.path.insert(0, os.path.join(h.SRC, "client", "python"))
from fz_client import Client, FzError  # noqa: E402

CLI = os.path.join(h.SRC, "client", "python", "fz_client.py")


def body(f):
    f.start_broker("--models", "m1,m2")
    f.start_worker("py", "--models", "m1")
    with Client(f.broker_ep, timeout=5.0) as fz:
        tid = fz.submit("hello from python", model="m1", priority=3, labels={"lang": "py"})
        final = fz.wait(tid, timeout=30)
        h.check(final["state"] == "succeeded", "state %s" % final["state"])
        got = fz.get(tid)
        att = got["attempts"][0]
        h.check(att["outcome"] == "exited" and att["exit_code"] == 0, "attempt %s" % att)
        h.check(b"hello from python" in att["output"], "output %r" % att["output"])
        h.check(got["task"]["labels"] == {"lang": "py"}, "labels")
        h.check(any(t["id"] == tid for t in fz.list()), "list")
        try:
            fz.submit("nope", model="m9")
            h.check(False, "a model outside the whitelist was accepted")
        except FzError as e:
            h.check(e.code == "refused", "code %s" % e.code)
            h.check(e.reason == "model-not-allowed", "reason %r" % e.reason)
        # A refused batch names the task it refused: the index, not words in the message.
        try:
            fz.submit_batch([{"prompt": "fine", "model": "m1"},
                             {"prompt": "bad", "model": "m1", "after": [99999]}])
            h.check(False, "a batch with a dangling dependency was accepted")
        except FzError as e:
            h.check(e.code == "invalid" and e.reason == "no-such-dependency" and e.index == 1,
                    "batch refusal %s/%r/%r" % (e.code, e.reason, e.index))
        ids = fz.submit_batch([{"prompt": "build", "model": "m1"},
                               {"prompt": "ship", "model": "m1", "after_index": [0]}])
        h.check(len(ids) == 2 and fz.wait(ids[1], timeout=30)["state"] == "succeeded",
                "batch through the Python client")
        h.check(fz.get(ids[1])["task"]["after"] == [ids[0]], "batch dependency")
        # task.submitted cuts the prompt at 200 bytes: between characters, so that a strict
        # decoder (msgpack raw=False, as this client uses) can still read the events reply.
        fz.submit("a" * 199 + "\u00e9" * 20, model="m2")
        evs = fz.events(0)
        h.check(any(e["event"] == "task.submitted" and e["prompt"] == "a" * 199 for e in evs),
                "task.submitted prompt not cut between characters")
        h.check(any(e["event"] == "task.succeeded" and e["task"] == ids[1] for e in evs),
                "events() lacks the batch's end")
        try:
            fz.get(99999)
            h.check(False, "get of an unknown task worked")
        except FzError as e:
            h.check(e.code == "not-found", "code %s" % e.code)
            h.check(e.reason == "no-such-task", "reason %r" % e.reason)
    env = dict(f.env)
    run = lambda *a: subprocess.run(["/usr/bin/python3", CLI, "--broker", f.broker_ep] + list(a),
                                     env=env, capture_output=True, text=True, timeout=60)
    r = run("submit", "--wait", "--model", "m1", "from the command line")
    h.check(r.returncode == 0, "cli submit --wait: %d %s" % (r.returncode, r.stderr))
    r = run("submit", "--model", "m9", "refused")
    h.check(r.returncode == 2, "cli refused: %d" % r.returncode)
    r = run("get", "99999")
    h.check(r.returncode == 6, "cli not found: %d" % r.returncode)
    r = subprocess.run(["/usr/bin/python3", CLI, "--broker", "ipc://%s/nobody.sock" % f.dir, "ping"],
                       capture_output=True, text=True, timeout=30)
    h.check(r.returncode == 5, "cli unreachable: %d" % r.returncode)


h.run("python_client", body)
