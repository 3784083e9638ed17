"""The adapters scripts/agents/{claude,codex,gemini} on recorded event streams of the real
CLIs (tests/fixtures/agents/): a stand-in CLI replays a recording (stdout, stderr, exit
status) and the test checks the adapter's report lines (tokens kept apart, cost, model,
summary, class, reset_at, retry_after) and its exit status. Also: agent-missing (exit 127),
an unknown model priced at the default rate with a warning, and the rate-limit progress line."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fzharness as h  # noqa: E402

FIX = os.path.join(h.SRC, "tests", "fixtures", "agents")
AGENTS = os.path.join(h.SRC, "scripts", "agents")
with open(os.path.join(AGENTS, "prices.json")) as f:
    PRICES = json.load(f)["models"]


def price(model, t):
    r = PRICES[model]
    return (t[0] * r["input"] + t[1] * r["cached_input"] + t[2] * r["cache_write"] + t[3] * r["output"]) / 1e6


# case -> (exit status, class or None, extra checks)
CASES = {
    "claude-answer": (0, None, {"model": "claude-sonnet-4-5", "summary": "FZ-ANSWER all done",
                                "tokens": (1205, 300, 50, 81), "cost": 0.005108}),
    "claude-edit": (0, None, {"summary": "FZ-ANSWER edited fz-edited.txt", "tokens": (2405, 600, 100, 161),
                              "cost": 0.010185, "progress": "tool Write"}),
    "claude-denied": (75, "permission-denied", {}),
    "claude-ratelimit": (1, "rate-limit", {"retry_after": "2", "progress": "rate-limited, retry 1/1 in 2.0 s"}),
    "claude-quota": (1, "quota", {"reset_at": "4102444800"}),
    "claude-auth": (75, "auth", {}),
    "claude-toolong": (75, "context-too-long", {}),
    "claude-nomodel": (75, "model-unavailable", {}),
    "claude-hang": (1, "timeout", {}),
    "codex-answer": (0, None, {"model": "gpt-5-codex", "summary": "FZ-ANSWER all done",
                               "tokens": (1200, 300, 0, 80), "cost": price("gpt-5-codex", (1200, 300, 0, 80))}),
    "codex-edit": (0, None, {"tokens": (2400, 600, 0, 160), "progress": "running"}),
    "codex-ratelimit": (1, "rate-limit", {"progress": "rate-limited, retry 1/1"}),
    "codex-quota": (1, "quota", {"reset_at": "4102444800"}),
    "codex-auth": (75, "auth", {}),
    "codex-toolong": (75, "context-too-long", {}),
    "codex-nomodel": (75, "model-unavailable", {}),
    "codex-stall": (1, "stalled", {}),
    "gemini-answer": (0, None, {"model": "gemini-2.5-flash", "summary": "FZ-ANSWER all done",
                                "tokens": (1200, 300, 0, 80), "cost": price("gemini-2.5-flash", (1200, 300, 0, 80))}),
    "gemini-edit": (0, None, {"tokens": (2400, 600, 0, 160), "progress": "tool write_file"}),
    "gemini-ratelimit": (1, "rate-limit", {"retry_after": "2", "progress": "rate-limited, retry 1"}),
    "gemini-quota": (1, "quota", {"reset_at": None}),
    "gemini-auth": (75, "auth", {}),
    "gemini-toolong": (75, "context-too-long", {}),
    "gemini-nomodel": (75, "model-unavailable", {}),
}


def read_report(path):
    kv, progress = {}, []
    with open(path) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition(" ")
            kv[k] = v
            if k == "progress":
                progress.append(v)
    return kv, progress


def run_adapter(f, cli, bin_, env_extra=(), model=None):
    d = os.path.join(f.dir, "case-%d" % len(os.listdir(f.dir)))
    os.makedirs(d)
    report = os.path.join(d, "report")
    env = dict(f.env, FZ_REPORT=report, FZ_MODEL=model or "", FZ_AGENT_STALL="30", **dict(env_extra))
    p = subprocess.run([os.path.join(AGENTS, cli), "--bin", bin_], input="the prompt", cwd=d, env=env,
                       capture_output=True, text=True, timeout=60)
    kv, progress = read_report(report) if os.path.exists(report) else ({}, [])
    return p, kv, progress


def body(f):
    replay = os.path.join(f.dir, "replay")
    with open(replay, "w") as fh:
        fh.write('#!/bin/sh\ncat >/dev/null\ncat "$FZ_FIXTURE.jsonl"\ncat "$FZ_FIXTURE.stderr" >&2\n'
                 'exit "$(cat "$FZ_FIXTURE.rc")"\n')
    os.chmod(replay, 0o755)
    problems = []
    for case, (rc, cls, more) in sorted(CASES.items()):
        cli = case.split("-")[0]
        p, kv, progress = run_adapter(f, cli, replay, {"FZ_FIXTURE": os.path.join(FIX, case)},
                                      model="gpt-5-codex" if cli == "codex" else None)
        got = (p.returncode, kv.get("class"))
        if got != (rc, cls):
            problems.append("%s: exit %s class %s, expected exit %s class %s\n%s" % (case, got[0], got[1], rc, cls,
                                                                                   p.stderr[-600:]))
            continue
        for k in ("model", "summary", "retry_after", "reset_at"):
            if k in more and more[k] is not None and kv.get(k) != more[k]:
                problems.append("%s: %s is %r, expected %r" % (case, k, kv.get(k), more[k]))
        if "reset_at" in more and more["reset_at"] is None and not kv.get("reset_at", "").isdigit():
            problems.append("%s: no reset_at" % case)
        if "tokens" in more:
            t = tuple(int(kv.get(k, -1)) for k in ("tokens_in", "tokens_cache_read", "tokens_cache_write", "tokens_out"))
            if t != more["tokens"]:
                problems.append("%s: tokens %s, expected %s" % (case, t, more["tokens"]))
        if "cost" in more and abs(float(kv.get("cost_usd", -1)) - more["cost"]) > 0.01 * more["cost"] + 1e-6:
            problems.append("%s: cost %s, expected %.6f" % (case, kv.get("cost_usd"), more["cost"]))
        if "progress" in more and not any(more["progress"] in x for x in progress):
            problems.append("%s: no progress line with %r in %s" % (case, more["progress"], progress))
        if cls and not kv.get("summary", "").startswith(cls + ":"):
            problems.append("%s: the summary does not say the class: %r" % (case, kv.get("summary")))
        if rc == 0 and not p.stdout.strip():
            problems.append("%s: the answer was not printed" % case)

    # agent-missing: exit 127, class line
    p, kv, _ = run_adapter(f, "codex", os.path.join(f.dir, "no-such-cli"))
    if (p.returncode, kv.get("class")) != (127, "agent-missing"):
        problems.append("missing CLI: exit %s class %s" % (p.returncode, kv.get("class")))
    # an unknown model: default rate and a warning, never a silent $0
    with open(os.path.join(f.dir, "odd.jsonl"), "w") as fh:
        for line in open(os.path.join(FIX, "codex-answer.jsonl")):
            fh.write(line)
    for ext in ("stderr", "rc"):
        subprocess.run(["cp", os.path.join(FIX, "codex-answer." + ext), os.path.join(f.dir, "odd." + ext)], check=True)
    p, kv, _ = run_adapter(f, "codex", replay, {"FZ_FIXTURE": os.path.join(f.dir, "odd"),
                                               "FZ_PRICE_DEFAULT": "10,1,10,100"}, model="fz-unknown-model")
    want = (1200 * 10 + 300 * 1 + 80 * 100) / 1e6
    if p.returncode != 0 or abs(float(kv.get("cost_usd", 0)) - want) > 1e-6 or "no price for model" not in p.stderr:
        problems.append("unknown model: exit %s cost %s (want %.6f) stderr %r" % (p.returncode, kv.get("cost_usd"),
                                                                               want, p.stderr[-300:]))
    # Reset times in the CLIs' words (fzagent.parse_clock), at a fixed "now" in local time.
    sys.path.insert(0, AGENTS)
    import time
    import fzagent
    now = time.mktime((2026, 12, 1, 19, 56, 30, 0, 0, -1))
    for text, want in (("try again at 7:56 PM.", now - 30 + 60),        # this minute, not tomorrow
                       ("try again at 7:55 PM.", now - 90 + 60),        # just past: still today
                       ("try again at 7:50 PM.", now - 390 + 86400 + 60),  # long past: tomorrow
                       ("try again at 8:10 PM", now + 810 + 60),           # the end of that minute
                       ("usage limit reached|1767225600", 1767225600),
                       ("it resets at 2026-12-01T20:00:08Z", 1796155208),
                       ("no time in here", None)):
        got = fzagent.parse_clock(text, now=now)
        if got != (int(want) if want is not None else None):
            problems.append("parse_clock(%r) = %r, want %r" % (text, got, want))
    # --help of each adapter
    for cli in ("claude", "codex", "gemini"):
        p = subprocess.run([os.path.join(AGENTS, cli), "--help"], capture_output=True, text=True, timeout=30)
        if p.returncode != 0 or "Usage" not in p.stdout or "Permissions" not in p.stdout:
            problems.append("%s --help: exit %s" % (cli, p.returncode))
    h.check(not problems, "%d problem(s):\n  %s" % (len(problems), "\n  ".join(problems)))


h.run("agent_fixtures", body)
