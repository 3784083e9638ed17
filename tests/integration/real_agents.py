"""The real agent CLIs (Claude Code, codex-cli, gemini-cli, at the versions scripts/setup pins)
behind scripts/agents/{claude,codex,gemini}, against fz's scripted model server
(tests/lib/fakemodel.py, 127.0.0.1, ephemeral port), in a private HOME and CODEX_HOME.

Through a real fz-broker + fz-worker per CLI: a task whose model answers with a tool call
really edits a file in the task's work folder, and the attempt records the cost (Claude's
own total, else tokens x scripts/agents/prices.json, within 1%), fresh input and output
tokens, the model and the answer; a quota error whose limit resets a few seconds later holds
the task (reason quota, no retry used: the task allows none) until the reset, and its next
attempt succeeds, charged once; a 401 is not retried on its worker, which fz marks unhealthy
for that model, and the task goes back to the queue for another worker; each CLI edits a
real git repository (--repo, --check) in its own worktree and ends on a branch with fz's
commit and a passing check, and a check that fails the first attempt passes on the retry,
whose prompt carries the failure (the model is told, and fixes it); a best-of-3 task races
the three CLIs (its model and two fallbacks), and the first to pass its check wins. The
adapters alone (FZ_REPORT set, the same environment): 429 with
retry-after, a quota error with its reset time, unknown model, prompt too long, a server
that never sends headers, and a stream that stalls, each with its class and exit status.

The CLIs' own retries are bounded (CLAUDE_CODE_MAX_RETRIES=1, API_TIMEOUT_MS; codex's
request/stream retries and idle timeout in config.toml; gemini's general.maxAttempts) and the
adapters' stall limit is short, so the whole test takes about a minute. If the CLIs are not
installed, it runs `scripts/setup --agents`; if npm cannot install them, the test FAILS and
says so (never skipped)."""
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fakemodel  # noqa: E402
import fzharness as h  # noqa: E402
import gitrepo as g  # noqa: E402

AGENTS = os.path.join(h.SRC, "scripts", "agents")
PREFIX = os.environ.get("FZ_AGENTS_PREFIX") or os.path.join(os.path.expanduser("~"), ".local/share/fz/agents")
MODELS = {"claude": "claude-sonnet-4-5", "codex": "gpt-5-codex", "gemini": "gemini-2.5-flash"}
with open(os.path.join(AGENTS, "prices.json")) as fh:
    PRICES = json.load(fh)["models"]
STALL = 6  # the adapters' --stall for the hang and stall cases, seconds (others: 40)
# Claude's hang must end by its own API_TIMEOUT_MS (4 s, one retry: about 10 s), so its stall
# limit is longer than that plus a slow start of the CLI on a loaded machine.
CLAUDE_HANG_STALL = 25
# The stall limit of every case that must not stall: silence that long is a CLI starting on a
# machine loaded by the rest of the suite, not a hang (a real stall is the hang and stall
# cases above). The warm-up's first runs get longer still.
SLOW_START = 90
WARM_STALL = 150


def table_cost(model, usage, n, cache_writes=True):
    r, u = PRICES[model], dict(usage)
    if not cache_writes:  # the server sends cache writes in Anthropic's usage only
        u["cache_write"] = 0
    return n * (u["input"] * r["input"] + u["cached"] * r["cached_input"] + u["cache_write"] * r["cache_write"] +
                u["output"] * r["output"]) / 1e6


def warm_clis(f):
    """Each CLI answers one request of the scripted server, one after the other, untimed,
    before anything is timed, in the HOME and CODEX_HOME the test then uses. Two costs of a
    first start are paid here: the page cache (on a fresh CI machine the CLIs' first starts
    read about 1.6 GB of node_modules and binaries from disk) and the first run in a fresh
    HOME (Claude makes its config, codex its five SQLite stores). In three CI runs, the
    first CLIs started at once (three direct runs of Claude and the three workers' tasks)
    printed nothing for 40 s; --version alone warmed the cache but not the HOME."""
    took = []
    for cli in MODELS:
        rc, _, _, secs = run_direct(f, cli, "answer", stall=WARM_STALL, folder="warm")
        took.append("%s %.1f s%s" % (cli, secs, "" if rc == 0 else " (exit %s)" % rc))
    print("warm-up (one answer each, untimed): %s" % ", ".join(took), flush=True)


def ensure_clis():
    missing = [c for c in MODELS if not os.access(os.path.join(PREFIX, "node_modules", ".bin", c), os.X_OK)]
    if not missing:
        return
    print("the agent CLIs %s are not in %s: running scripts/setup --agents" % (missing, PREFIX), flush=True)
    p = subprocess.run([os.path.join(h.SRC, "scripts", "setup"), "--agents"], capture_output=True, text=True,
                       timeout=600, env=dict(os.environ, FZ_AGENTS_PREFIX=PREFIX))
    h.check(p.returncode == 0, "the real agent CLIs are not installed and npm could not install them (is the npm "
                               "registry reachable?): scripts/setup --agents exited %d:\n%s%s"
            % (p.returncode, p.stdout[-2000:], p.stderr[-2000:]))


def private_home(f, srv):
    home = os.path.join(f.dir, "home")
    os.makedirs(os.path.join(home, ".gemini"))
    with open(os.path.join(home, ".gemini", "settings.json"), "w") as fh:
        json.dump({"security": {"auth": {"selectedType": "gemini-api-key"}}, "general": {"maxAttempts": 2}}, fh)
    codex_home = os.path.join(f.dir, "codex-home")
    os.makedirs(codex_home)
    with open(os.path.join(codex_home, "config.toml"), "w") as fh:
        fh.write('model_provider = "fzfake"\nmodel = "%s"\n\n[model_providers.fzfake]\nname = "fz scripted server"\n'
                 'base_url = "%s/v1"\nenv_key = "FZ_FAKE_KEY"\nwire_api = "responses"\nrequest_max_retries = 1\n'
                 'stream_max_retries = 1\nstream_idle_timeout_ms = 3000\n' % (MODELS["codex"], srv.url))
    # The CLIs' own temporary files (gemini's error reports, claude's and codex's folders) stay
    # in the test's folder, not in the machine's /tmp.
    tmp = os.path.join(f.dir, "tmp")
    os.makedirs(tmp)
    f.env.update(TMPDIR=tmp)
    f.env.update(HOME=home, CODEX_HOME=codex_home, FZ_AGENTS_PREFIX=PREFIX, FZ_FAKE_KEY="fz-test-key",
                 ANTHROPIC_BASE_URL=srv.url, ANTHROPIC_API_KEY="fz-test-key", CLAUDE_CODE_MAX_RETRIES="1",
                 API_TIMEOUT_MS="4000", DISABLE_AUTOUPDATER="1", CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
                 GOOGLE_GEMINI_BASE_URL=srv.url, GEMINI_API_KEY="fz-test-key", FZ_AGENT_STALL=str(SLOW_START))
    for k in ("ANTHROPIC_AUTH_TOKEN", "OPENAI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_CLOUD_PROJECT",
              "GOOGLE_GENAI_USE_VERTEXAI", "CLAUDE_CONFIG_DIR", "FZ_MODEL"):
        f.env.pop(k, None)


# What the CLIs need of the worker's environment (an agent gets only the basics otherwise).
PASS_ENV = ("CODEX_HOME,FZ_FAKE_KEY,ANTHROPIC_*,CLAUDE_CODE_*,API_TIMEOUT_MS,DISABLE_AUTOUPDATER,"
            "GOOGLE_GEMINI_BASE_URL,GEMINI_API_KEY")


def report_of(path):
    kv, progress = {}, []
    if os.path.exists(path):
        with open(path) as fh:
            for line in fh:
                k, _, v = line.rstrip("\n").partition(" ")
                kv[k] = v
                if k == "progress":
                    progress.append(v)
    return kv, progress


def stall_limit(cli, scenario):
    if cli == "claude" and scenario == "hang":
        return CLAUDE_HANG_STALL
    return STALL if scenario in ("hang", "stall") else SLOW_START


def run_direct(f, cli, scenario, model=None, stall=None, folder="direct"):
    """The adapter outside fz; returns (exit status, report dict, progress lines, seconds)."""
    d = os.path.join(f.dir, folder, "%s-%s" % (cli, scenario))
    os.makedirs(d)
    env = dict(f.env, FZ_REPORT=os.path.join(d, "report"), FZ_MODEL=model or MODELS[cli],
               FZ_AGENT_STALL=str(stall or stall_limit(cli, scenario)))
    t0 = time.monotonic()
    p = subprocess.run([os.path.join(AGENTS, cli)], input="please do it fz-scenario:%s\n" % scenario, cwd=d, env=env,
                       capture_output=True, text=True,
                       timeout=int(env["FZ_AGENT_STALL"]) + 60)
    with open(os.path.join(d, "stderr"), "w") as fh:
        fh.write(p.stderr)
    kv, progress = report_of(os.path.join(d, "report"))
    return p.returncode, kv, progress, time.monotonic() - t0


# scenario -> (class, exit status, checks on the report)
DIRECT = {
    # codex shows no retry-after ("exceeded retry limit, last status: 429"): none to check
    "ratelimit": ("rate-limit", 1, lambda cli, kv, pr: ["no retry_after %r" % kv.get("retry_after")]
                  if cli != "codex" and float(kv.get("retry_after", 0)) <= 0 else []),
    "quota": ("quota", 1, lambda cli, kv, pr: [] if (kv.get("reset_at") == str(fakemodel.RESET_AT) or
                                                    (cli == "gemini" and kv.get("reset_at", "").isdigit()))
              else ["reset_at %r" % kv.get("reset_at")]),
    "toolong": ("context-too-long", 75, None),
    "nomodel": ("model-unavailable", 75, None),
    "hang": (None, 1, None),  # Claude: its API_TIMEOUT_MS (timeout); codex, gemini: the adapter (stalled)
    "stall": ("stalled", 1, None),
}


def repo_edits(f):
    """Each real CLI edits a real git repository through fz: its own worktree, fz's commit of
    what it changed on fz/TASK-ATTEMPT, a check that must pass, the user's checkout untouched
    and no worktree left behind. Returns the problems found."""
    repo = g.make(os.path.join(f.dir, "repo"), {"README": "a repository for the agents\n"})
    check = "grep -qx 'edited by the agent' %s" % fakemodel.EDIT_FILE
    tids = {cli: f.submit("edit the file fz-scenario:edit", model=m, repo=repo, check=check)
            for cli, m in MODELS.items()}
    # The feedback loop: a check the first try fails; the retry's prompt carries its output,
    # and the model, told, writes what passes.
    fix_check = "grep -qx 'fixed by the agent' %s || { echo 'want: fixed by the agent'; exit 1; }" % (
        fakemodel.EDIT_FILE)
    problems = []
    fixups = {cli: f.submit("edit the file fz-scenario:fixup", model=m, repo=repo, check=fix_check, retries=1)
              for cli, m in MODELS.items()}
    states = f.wait_states(list(tids.values()) + list(fixups.values()), {"succeeded", "failed", "cancelled"}, 180)
    # Best of 3 across the three CLIs, with every worker idle: the task's model and its two
    # fallbacks race, one worktree each; the first whose check passes wins, the others are
    # cancelled, and every run is charged.
    race = f.submit("edit the file fz-scenario:edit", model=MODELS["claude"],
                    fallback=[MODELS["codex"], MODELS["gemini"]], repo=repo, check=check, best_of=3)
    # Code flows along a dependency: Claude's edit is where codex starts (its base), and
    # codex's branch holds it, which its check sees.
    dev = f.submit("edit the file fz-scenario:edit", model=MODELS["claude"],
                   repo=os.path.join(f.dir, "repo"), check=check)
    test = f.submit("fz-scenario:answer", model=MODELS["codex"], repo=os.path.join(f.dir, "repo"),
                    after=[dev], check="test -f %s" % fakemodel.EDIT_FILE)
    states.update(f.wait_states([race, dev, test], {"succeeded", "failed", "cancelled", "dep-failed"}, 120))
    d, t2 = f.task(dev)["attempts"][-1], f.task(test)["attempts"][-1] if f.task(test)["attempts"] else {}
    if states[test] != "succeeded" or t2.get("base_commit") != d["head_commit"] or not d["head_commit"]:
        problems.append("pipeline across CLIs: dev %s (head %s), test %s (base %s)" % (
            states[dev], d["head_commit"], states[test], t2.get("base_commit")))
    else:
        print("  pipeline  -> codex's attempt started from Claude's commit %s and its check saw "
              "the file" % d["head_commit"][:10], flush=True)
    h.wait_for(lambda: all(a["outcome"] != "running" for a in f.task(race)["attempts"]), 60,
               "the best-of losers' results")
    t = f.task(race)
    atts = t["attempts"]
    winners = [a for a in atts if a["head_commit"] and a["head_commit"] == t["task"]["head_commit"]]
    charged = sum(a["cost_usd"] for a in atts)
    if (states[race] != "succeeded" or sorted(a["model"] for a in atts) != sorted(MODELS.values())
            or len(winners) != 1 or winners[0]["check_status"] != "passed"
            or abs(t["task"]["cost_usd"] - charged) > 1e-9):
        problems.append("best of 3 across CLIs: %s, task cost %.6f, attempts %s" % (
            states[race], t["task"]["cost_usd"],
            [(a["model"], a["outcome"], a["check_status"], a["cost_usd"]) for a in atts]))
    else:
        print("  best of 3 -> %s won on %s; the others: %s; charged %.6f for all three" % (
            winners[0]["model"], winners[0]["branch"],
            ", ".join("%s %s" % (a["model"], a["outcome"]) for a in atts if a is not winners[0]), charged),
            flush=True)
    for cli, tid in tids.items():
        t = f.task(tid)
        a = t["attempts"][-1]
        if states[tid] != "succeeded" or a["check_status"] != "passed":
            problems.append("%s repo edit: %s, check %s: %s" % (cli, states[tid], a["check_status"],
                                                                a.get("summary")))
            continue
        text = g.git(repo, "show", "%s:%s" % (a["branch"], fakemodel.EDIT_FILE), check=False)
        if text + "\n" != fakemodel.EDIT_TEXT or (a["files"], a["insertions"]) != (1, 1):
            problems.append("%s repo edit: branch %s has %r, diff stat %s/%s" % (
                cli, a["branch"], text, a["files"], a["insertions"]))
            continue
        print("  %-6s repo edit -> succeeded on %s (check passed, 1 file +1), cost %.6f" % (
            cli, a["branch"], a["cost_usd"]), flush=True)
    for cli, tid in fixups.items():
        atts = f.task(tid)["attempts"]
        got = [(a["check_status"], a["class"]) for a in atts]
        if states[tid] != "succeeded" or got != [("failed", "check-failed"), ("passed", "")]:
            problems.append("%s check feedback: %s after %s" % (cli, states[tid], got))
            continue
        text = g.git(repo, "show", "%s:%s" % (atts[1]["branch"], fakemodel.EDIT_FILE), check=False)
        if text + "\n" != fakemodel.FIXED_TEXT:
            problems.append("%s check feedback: attempt 2 wrote %r" % (cli, text))
            continue
        print("  %-6s check fix -> attempt 1 check-failed, attempt 2 (told why) passed on %s" % (
            cli, atts[1]["branch"]), flush=True)
    if g.git(repo, "status", "--porcelain") != "":
        problems.append("repo edit: the user's checkout changed")
    try:
        g.check_clean(repo)
    except h.TestFailure as e:
        problems.append("repo edit: %s" % e)
    return problems


def body(f):
    ensure_clis()
    fakemodel.serve(os.path.join(f.dir, "model-server.jsonl"), with_server, f)


def with_server(f, srv):
    t_start = time.monotonic()
    private_home(f, srv)
    warm_clis(f)
    base_env = dict(f.env)
    f.start_broker("--backoff-min", "100", "--backoff-max", "200", "--kill-grace", "3")
    for cli, model in MODELS.items():
        f.env = dict(base_env, FZ_AGENT_EVENTS=os.path.join(f.dir, "events-%s.jsonl" % cli))
        f.start_worker(cli, "--models", model, "--pass-env", PASS_ENV, agent=os.path.join(AGENTS, cli))
    f.env = base_env
    h.wait_for(lambda: f.ok("status")["workers"] == 3, 20, "three workers")

    # Through fz: an edit, and a quota that resets soon (retries 0: the wait must use none).
    edits = {cli: f.submit("edit the file fz-scenario:edit", model=m) for cli, m in MODELS.items()}
    quotas = {cli: f.submit("fz-scenario:quota-soon", model=m, retries=0) for cli, m in MODELS.items()}
    # Permanent errors fail at once although the task allows retries (no fallback here).
    permanent = {(cli, s): f.submit("fz-scenario:" + s, model=m, retries=2)
                 for cli, m in MODELS.items() for s in ("toolong", "nomodel")}
    problems = []

    # Meanwhile, the adapters alone (3 at a time: 2 cores).
    results = {}
    with ThreadPoolExecutor(max_workers=3) as pool:
        futs = {(cli, s): pool.submit(run_direct, f, cli, s, "no-such-model" if s == "nomodel" else None)
                for cli in MODELS for s in DIRECT}
        for k, fut in futs.items():
            results[k] = fut.result()
    for (cli, s), (rc, kv, progress, secs) in sorted(results.items()):
        cls, want_rc, more = DIRECT[s]
        if s == "hang":
            cls = "timeout" if cli == "claude" else "stalled"
        if (kv.get("class"), rc) != (cls, want_rc):
            problems.append("%s %s: class %s exit %s, expected %s %s (%.1f s; stderr in %s)" % (
                cli, s, kv.get("class"), rc, cls, want_rc, secs, os.path.join(f.dir, "direct", cli + "-" + s)))
            continue
        if more:
            problems += ["%s %s: %s" % (cli, s, x) for x in more(cli, kv, progress)]
        if s == "ratelimit" and not any("rate-limited, retry" in x for x in progress):
            problems.append("%s ratelimit: no retry progress line in %s" % (cli, progress))
        print("  %-6s %-9s -> class %-17s exit %-3d %5.1f s %s" % (
            cli, s, kv.get("class"), rc, secs, " ".join("%s=%s" % (k, kv[k]) for k in ("reset_at", "retry_after")
                                                        if k in kv)), flush=True)

    states = f.wait_states(list(edits.values()) + list(quotas.values()) + list(permanent.values()),
                           {"succeeded", "failed", "cancelled"}, 180)
    want_class = {"toolong": "context-too-long", "nomodel": "model-unavailable"}
    for (cli, s), tid in sorted(permanent.items()):
        atts = f.task(tid)["attempts"]
        if states[tid] != "failed" or len(atts) != 1 or atts[0].get("class") != want_class[s]:
            problems.append("%s %s through fz: %s after %s (want failed after 1 attempt, %s)" % (
                cli, s, states[tid], [(x["outcome"], x["exit_code"], x.get("class")) for x in atts],
                want_class[s]))
        else:
            print("  %-6s %-9s -> failed after 1 attempt (of 3 allowed), class %s" % (cli, s, want_class[s]),
                  flush=True)
    for cli, tid in edits.items():
        t = f.task(tid)
        a = t["attempts"][-1]
        if states[tid] != "succeeded":
            problems.append("%s edit: task %s %s: %s" % (cli, tid, states[tid], a.get("summary")))
            continue
        path = os.path.join(f.dir, "work", cli, str(tid), fakemodel.EDIT_FILE)
        if not os.path.exists(path) or open(path).read() != fakemodel.EDIT_TEXT:
            problems.append("%s edit: %s was not written" % (cli, path))
        model = MODELS[cli]
        if cli == "claude":
            res = [r for r in (json.loads(x) for x in open(os.path.join(f.dir, "events-claude.jsonl")))
                   if r.get("type") == "result" and str(r.get("result")).startswith("FZ-ANSWER edited")][-1]
            want_cost = res["total_cost_usd"]
            want_in = sum(v["inputTokens"] for v in res["modelUsage"].values())
            want_out = sum(v["outputTokens"] for v in res["modelUsage"].values())
            # and the CLI's own total agrees with the table for what the server sent (+ its title request)
            table = table_cost(model, fakemodel.USAGE, 2)
            if not table <= want_cost <= table * 1.02:
                problems.append("claude edit: its total %.6f is not the table's %.6f" % (want_cost, table))
        else:
            want_cost = table_cost(model, fakemodel.USAGE, 2, cache_writes=False)
            want_in, want_out = 2 * fakemodel.USAGE["input"], 2 * fakemodel.USAGE["output"]
        if abs(a["cost_usd"] - want_cost) > 0.01 * want_cost:
            problems.append("%s edit: cost %.6f recorded, expected %.6f" % (cli, a["cost_usd"], want_cost))
        if (a["tokens_in"], a["tokens_out"]) != (want_in, want_out):
            problems.append("%s edit: tokens %s/%s, expected %s/%s" % (cli, a["tokens_in"], a["tokens_out"],
                                                                     want_in, want_out))
        if a["model"] != model:
            problems.append("%s edit: model %r" % (cli, a["model"]))
        if a.get("summary") != "FZ-ANSWER edited " + fakemodel.EDIT_FILE:
            problems.append("%s edit: summary %r" % (cli, a.get("summary")))
        print("  %-6s edit      -> succeeded, cost %.6f, tokens %d/%d, model %s" % (
            cli, a["cost_usd"], a["tokens_in"], a["tokens_out"], a["model"]), flush=True)
    for cli, tid in quotas.items():
        t = f.task(tid)
        atts = t["attempts"]
        if states[tid] != "succeeded" or len(atts) != 2 or atts[0].get("class") != "quota":
            problems.append("%s quota through fz: %s after %s (want succeeded after a quota wait)" % (
                cli, states[tid], [(x["outcome"], x["exit_code"], x.get("class")) for x in atts]))
            continue
        waited = atts[1]["started"] - atts[0]["ended"]
        if not atts[0].get("reset_at") or atts[1]["started"] < atts[0]["reset_at"] - 1:
            problems.append("%s quota through fz: attempt 2 started %.1f s after attempt 1, before "
                            "the reset %s" % (cli, waited, atts[0].get("reset_at")))
        charged = sum(x["cost_usd"] for x in atts)
        if abs(t["task"]["cost_usd"] - charged) > 1e-9 or atts[1]["cost_usd"] <= 0:
            problems.append("%s quota through fz: task cost %.6f, attempts %s" % (
                cli, t["task"]["cost_usd"], [x["cost_usd"] for x in atts]))
        print("  %-6s quota     -> held %.1f s until the reset, then succeeded (retries 0), cost "
              "%.6f once" % (cli, waited, charged), flush=True)

    problems += repo_edits(f)

    # A 401: not retried on that worker, which is unhealthy for the model until it says hello
    # again; the task waits in the queue for another worker (there is none here).
    denied = {cli: f.submit("fz-scenario:auth", model=m, retries=2) for cli, m in MODELS.items()}

    def unhealthy():
        ws = {w["name"]: w for w in f.ok("workers")["workers"]}
        return all(MODELS[cli] in ws[cli].get("unhealthy", []) for cli in MODELS)
    h.wait_for(unhealthy, 150, "the three workers marked unhealthy after their 401")
    for cli, tid in denied.items():
        t = f.task(tid)
        atts = t["attempts"]
        if t["task"]["state"] != "queued" or len(atts) != 1 or atts[0].get("class") != "auth":
            problems.append("%s auth through fz: %s after %s (want queued after 1 auth attempt)" % (
                cli, t["task"]["state"], [(x["outcome"], x["exit_code"], x.get("class")) for x in atts]))
        elif "no connected worker serves" not in t["task"].get("waiting_for", ""):
            problems.append("%s auth through fz: waiting_for %r" % (cli, t["task"].get("waiting_for")))
        else:
            print("  %-6s auth      -> 1 attempt, worker unhealthy for %s, task queued for another "
                  "worker" % (cli, MODELS[cli]), flush=True)
        f.ok("cancel", task=tid)
    print("real agents: %.1f s" % (time.monotonic() - t_start), flush=True)
    h.check(not problems, "%d problem(s):\n  %s" % (len(problems), "\n  ".join(problems)))


h.run("real_agents", body)
