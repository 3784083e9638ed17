"""A scripted model server for fz's real-agent tests (Python standard library only).

It listens on 127.0.0.1 on an ephemeral port and speaks, streamed (server-sent events), just
enough of three APIs for the real CLIs to run against it:

  Anthropic Messages   POST /v1/messages                         (Claude Code)
  OpenAI Responses     POST /v1/responses                        (codex-cli)
  Gemini               POST /v1beta/models/M:streamGenerateContent (gemini-cli)
                       POST /v1beta/models/M:generateContent / :countTokens

What it answers is chosen by a marker in the request: `fz-scenario:NAME` anywhere in the
body (the prompt), or the model name `no-such-model`:

  answer     a short answer ("FZ-ANSWER ...") with fixed usage (USAGE below)
  edit       first a tool call that writes the file fz-edited.txt in the agent's folder
             (Write / apply_patch or shell / write_file, whichever the CLI offers), then,
             once the tool's result comes back, an answer
  fixup      as edit, but what it writes is "edited by the agent" until the request carries
             fz's heading for a failed check ("The check failed on attempt"), and then
             "fixed by the agent": a check that wants the second passes on the retry
  ratelimit  429 with retry-after (Anthropic also sends anthropic-ratelimit-unified-* headers;
             Gemini a RetryInfo)
  quota      a quota error with a reset time (RESET_AT): Anthropic 429 with
             anthropic-ratelimit-unified-status: rejected and -reset; OpenAI 429
             usage_limit_reached{resets_at}; Gemini 429 RESOURCE_EXHAUSTED with QuotaFailure
  quota-soon the quota error of each API with a reset SOON_S seconds after this API's first
             request of the scenario (an exact time: OpenAI's resets_at, Anthropic's
             "limit reached|EPOCH", an ISO time for Gemini), then, once that time has passed,
             the answer: a run that waits for the reset succeeds on its next attempt
  auth       401 (Gemini: 400 API_KEY_INVALID, as Google sends it)
  toolong    400 prompt is too long / context_length_exceeded / token count exceeds
  hang       accepts the request and never sends headers (until the server stops)
  stall      sends the headers and the first event, then nothing (until the server stops)
  and model `no-such-model`: 404 not_found_error / model_not_found / NOT_FOUND.

Side requests the CLIs make on their own (Claude's quota probe and title requests, Gemini's
countTokens, ...) are answered too and counted apart: `served` lists the usage of the
answers to the main conversation only, so a test can compare what a CLI reports with what
was really sent.

Use it from a test: `srv = FakeModel(); srv.start(); ... srv.url ...; srv.stop()`; or run it
as a program: `fakemodel.py [--port-file F] [--log F]` serves until SIGTERM.
"""

import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Usage per answer, per API: known numbers, so that a test can check tokens and cost.
USAGE = {"input": 1200, "cached": 300, "cache_write": 50, "output": 80}
RESET_AT = 4102444800  # 2100-01-01T00:00:00Z: a reset time no clock reaches in a test
RETRY_AFTER = 2
SOON_S = 8  # quota-soon: how long after the first request the limit resets
ANSWER = "FZ-ANSWER all done"
EDIT_FILE = "fz-edited.txt"
EDIT_TEXT = "edited by the agent\n"
# fz-scenario:fixup writes EDIT_TEXT, or FIXED_TEXT once its prompt carries the heading fz
# appends after a failed check (the feedback loop: the agent is given the check's failure).
FIXED_TEXT = "fixed by the agent\n"
CHECK_FAILED_HEADING = "The check failed on attempt"
SCEN_RE = re.compile(r"fz-scenario:([a-z-]+)")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class FakeModel:
    def __init__(self, log_path=None):
        self.log_path = log_path
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.requests = []  # (api, path, scenario, model)
        self.served = []  # (api, usage dict) of main-conversation answers
        self.soon = {}  # api -> when quota-soon's limit resets
        self.httpd = None

    def start(self):
        fake = self

        class Handler(_Handler):
            model = fake

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        t = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        t.start()
        return self

    def stop(self):
        self.stopping.set()
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()

    def reset(self):
        with self.lock:
            self.requests.clear()
            self.served.clear()

    def note(self, api, path, scen, model, body):
        with self.lock:
            self.requests.append((api, path, scen, model))
        if self.log_path:
            with open(self.log_path, "a") as f:
                f.write(json.dumps({"t": time.time(), "api": api, "path": path, "scenario": scen,
                                    "model": model, "body": body[:400000]}) + "\n")

    def count(self, api, usage):
        with self.lock:
            self.served.append((api, dict(usage)))


def _text(obj):
    """Every string inside a JSON value, joined (to look for markers and tool results)."""
    out = []

    def walk(v):
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(obj)
    return "\n".join(out)


def _last_user_text(api, req):
    """The text of the latest user turn (where the prompt or the tool results are)."""
    if api == "anthropic":
        msgs = req.get("messages") or []
        return _text(msgs[-1]) if msgs else ""
    if api == "openai":
        items = req.get("input") or []
        return _text(items)
    contents = req.get("contents") or []
    return _text(contents)


class _Handler(BaseHTTPRequestHandler):
    model = None  # FakeModel, set by a subclass
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    # ---------------------------------------------------------------- plumbing
    def _json(self, status, obj, headers=()):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _sse_start(self, headers=()):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.close_connection = True

    def _sse(self, data, event=None):
        chunk = ""
        if event:
            chunk += "event: %s\n" % event
        chunk += "data: %s\n\n" % json.dumps(data)
        self.wfile.write(chunk.encode())
        self.wfile.flush()

    def _hang(self):
        self.model.stopping.wait(600)
        self.close_connection = True

    def do_GET(self):
        # codex asks for /models; anything else: 404
        if self.path.rstrip("/").endswith("/models"):
            self._json(200, {"object": "list", "data": [], "models": []})
        else:
            self._json(404, {"error": {"message": "not found: " + self.path}})

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_POST(self):
        n = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(n) if n else b""
        if self.headers.get("content-encoding", "") == "zstd":
            self._json(415, {"error": {"message": "no zstd here"}})
            return
        try:
            req = json.loads(raw or b"{}")
        except ValueError:
            req = {}
        path = self.path.split("?")[0]
        if path.endswith("/v1/messages/count_tokens"):
            self._json(200, {"input_tokens": 10})
            return
        if path.endswith("/v1/messages"):
            api, model = "anthropic", req.get("model", "")
        elif path.endswith("/responses"):
            api, model = "openai", req.get("model", "")
        elif ":" in path and "/models/" in path:
            api = "gemini"
            model, _, verb = path.rsplit("/", 1)[1].partition(":")
            if verb == "countTokens":
                self._json(200, {"totalTokens": 10})
                return
        else:
            self._json(404, {"error": {"message": "not found: " + path}})
            return
        body_text = _text(req)
        m = SCEN_RE.search(_last_user_text(api, req)) or SCEN_RE.search(body_text)
        scen = m.group(1) if m else None
        if model == "no-such-model":
            scen = "nomodel"
        if api == "anthropic" and not req.get("tools"):
            scen = None  # Claude's side requests (session title, ...) offer no tools
        self.model.note(api, path, scen, model, raw.decode("utf-8", "replace"))
        if scen is None:
            # a side request (title, quota probe, summary): a tiny answer, not counted
            return self._answer(api, model, "ok", {"input": 5, "cached": 0, "cache_write": 0, "output": 1},
                                stream=self._wants_stream(api, req, path), count=False)
        getattr(self, "_s_" + scen.replace("-", "_"), self._s_answer)(api, model, req, path)

    def _wants_stream(self, api, req, path):
        if api == "gemini":
            return "streamGenerateContent" in path
        return bool(req.get("stream", api == "openai"))

    # ---------------------------------------------------------------- scenarios
    def _s_answer(self, api, model, req, path):
        self._answer(api, model, ANSWER, USAGE, stream=self._wants_stream(api, req, path))

    def _s_edit(self, api, model, req, path, text=EDIT_TEXT):
        if self._has_tool_result(api, req):
            return self._answer(api, model, "FZ-ANSWER edited " + EDIT_FILE, USAGE,
                                stream=self._wants_stream(api, req, path))
        call = self._pick_tool(api, req, text)
        if call is None:
            return self._answer(api, model, "FZ-ANSWER no write tool was offered", USAGE,
                                stream=self._wants_stream(api, req, path))
        self._tool_call(api, model, call, stream=self._wants_stream(api, req, path))

    def _s_fixup(self, api, model, req, path):
        told = CHECK_FAILED_HEADING in json.dumps(req)
        self._s_edit(api, model, req, path, FIXED_TEXT if told else EDIT_TEXT)

    def _s_ratelimit(self, api, model, req, path):
        if api == "anthropic":
            self._json(429, {"type": "error", "error": {"type": "rate_limit_error",
                                                       "message": "Number of request tokens has exceeded your per-minute rate limit"}},
                       headers=[("retry-after", str(RETRY_AFTER)),
                                ("anthropic-ratelimit-unified-status", "allowed_warning"),
                                ("anthropic-ratelimit-unified-reset", str(RESET_AT))])
        elif api == "openai":
            self._json(429, {"error": {"type": "rate_limit_exceeded", "code": "rate_limit_exceeded",
                                       "message": "Rate limit reached. Please try again in %ds." % RETRY_AFTER}},
                       headers=[("retry-after", str(RETRY_AFTER))])
        else:
            self._json(429, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                                       "message": "Resource has been exhausted (e.g. check quota).",
                                       "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                                    "retryDelay": "%ds" % RETRY_AFTER}]}},
                       headers=[("retry-after", str(RETRY_AFTER))])

    def _s_quota(self, api, model, req, path):
        if api == "anthropic":
            when = time.strftime("%Y-%m-%d at %H:%M UTC", time.gmtime(RESET_AT))
            self._json(429, {"type": "error", "error": {"type": "rate_limit_error",
                                                       "message": "You have reached your specified API usage limits. "
                                                                  "You will regain access on %s." % when}},
                       headers=[("anthropic-ratelimit-unified-status", "rejected"),
                                ("anthropic-ratelimit-unified-reset", str(RESET_AT)),
                                ("anthropic-ratelimit-unified-representative-claim", "five_hour")])
        elif api == "openai":
            self._json(429, {"error": {"type": "usage_limit_reached", "plan_type": "plus",
                                       "message": "You've hit your usage limit.",
                                       "resets_at": RESET_AT, "resets_in_seconds": RESET_AT - int(time.time())}})
        else:
            self._json(429, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                                       "message": "You exceeded your current quota, please check your plan and billing details.",
                                       "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                                                    "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                                                                    "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]},
                                                   {"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                                    "retryDelay": "%ds" % (RESET_AT - int(time.time()))}]}})

    def _s_quota_soon(self, api, model, req, path):
        with self.model.lock:
            reset = self.model.soon.setdefault(api, int(time.time()) + SOON_S)
        if time.time() >= reset:
            return self._s_answer(api, model, req, path)
        if api == "anthropic":
            self._json(429, {"type": "error", "error": {"type": "rate_limit_error",
                                                       "message": "Claude AI usage limit reached|%d" % reset}},
                       headers=[("anthropic-ratelimit-unified-status", "rejected"),
                                ("anthropic-ratelimit-unified-reset", str(reset))])
        elif api == "openai":
            self._json(429, {"error": {"type": "usage_limit_reached", "plan_type": "plus",
                                       "message": "You've hit your usage limit.",
                                       "resets_at": reset, "resets_in_seconds": reset - int(time.time())}})
        else:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(reset))
            self._json(429, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                                       "message": "You exceeded your current quota; it resets at %s." % when}})

    def _s_auth(self, api, model, req, path):
        if api == "anthropic":
            self._json(401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})
        elif api == "openai":
            self._json(401, {"error": {"type": "invalid_request_error", "code": "invalid_api_key",
                                       "message": "Incorrect API key provided: fz-bad."}})
        else:
            self._json(400, {"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                       "message": "API key not valid. Please pass a valid API key.",
                                       "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                                    "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}})

    def _s_nomodel(self, api, model, req, path):
        if api == "anthropic":
            self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": "model: %s" % model}})
        elif api == "openai":
            self._json(404, {"error": {"type": "invalid_request_error", "code": "model_not_found",
                                       "message": "The model `%s` does not exist or you do not have access to it." % model}})
        else:
            self._json(404, {"error": {"code": 404, "status": "NOT_FOUND",
                                       "message": "models/%s is not found for API version v1beta, or is not supported for generateContent." % model}})

    def _s_toolong(self, api, model, req, path):
        if api == "anthropic":
            self._json(400, {"type": "error", "error": {"type": "invalid_request_error",
                                                       "message": "prompt is too long: 250000 tokens > 200000 maximum"}})
        elif api == "openai":
            self._json(400, {"error": {"type": "invalid_request_error", "code": "context_length_exceeded",
                                       "message": "Your input exceeds the context window of this model. Please adjust your input and try again."}})
        else:
            self._json(400, {"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                       "message": "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."}})

    def _s_hang(self, api, model, req, path):
        self._hang()

    def _s_stall(self, api, model, req, path):
        self._sse_start()
        if api == "anthropic":
            self._sse({"type": "message_start", "message": self._a_message(model, [], None, 1)}, "message_start")
        elif api == "openai":
            self._sse({"type": "response.created", "sequence_number": 0,
                       "response": {"id": "resp_stall", "object": "response", "status": "in_progress",
                                    "model": model, "output": []}}, "response.created")
        else:
            self._sse({"candidates": [{"content": {"parts": [{"text": "Thinking"}], "role": "model"}, "index": 0}],
                       "modelVersion": model})
        self._hang()

    # ---------------------------------------------------------------- tools
    def _has_tool_result(self, api, req):
        if api == "anthropic":
            for m in req.get("messages") or []:
                c = m.get("content")
                if isinstance(c, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in c):
                    return True
            return False
        if api == "openai":
            return any(isinstance(i, dict) and i.get("type") in ("function_call_output", "custom_tool_call_output")
                       for i in req.get("input") or [])
        return any("functionResponse" in p for c in req.get("contents") or [] for p in c.get("parts") or []
                   if isinstance(p, dict))

    def _pick_tool(self, api, req, text=EDIT_TEXT):
        """(name, arguments, kind) for a call that writes EDIT_FILE with the tools offered."""
        tools = req.get("tools") or []
        if api == "anthropic":
            names = {t.get("name") for t in tools}
            cwd = self._cwd_from(_text(req.get("system")) + "\n" + _text(req.get("messages")))
            if "Write" in names and cwd:
                return ("Write", {"file_path": os.path.join(cwd, EDIT_FILE), "content": text}, "tool_use")
            if "Bash" in names:
                return ("Bash", {"command": "printf '%s' > %s" % (text.replace("\n", "\\n"), EDIT_FILE),
                                 "description": "write the file"}, "tool_use")
            return None
        if api == "openai":
            by = {t.get("name"): t for t in tools if isinstance(t, dict)}
            if "apply_patch" in by:
                patch = "*** Begin Patch\n*** Add File: %s\n+%s*** End Patch\n" % (EDIT_FILE, text)
                if by["apply_patch"].get("type") == "custom":
                    return ("apply_patch", patch, "custom")
                return ("apply_patch", {"input": patch}, "function")
            cmd = "printf '%s' > %s" % (text.replace("\n", "\\n"), EDIT_FILE)
            for name in ("shell_command", "exec_command", "shell"):
                if name in by:
                    if name == "shell":
                        return (name, {"command": ["bash", "-lc", cmd]}, "function")
                    return (name, {"command": cmd} if name == "shell_command" else {"cmd": cmd}, "function")
            return None
        decls = [d for t in tools for d in (t.get("functionDeclarations") or [])]
        names = {d.get("name") for d in decls}
        cwd = self._cwd_from(_text(req.get("contents")) + "\n" + _text(req.get("systemInstruction")))
        if "write_file" in names:
            return ("write_file", {"file_path": os.path.join(cwd, EDIT_FILE) if cwd else EDIT_FILE,
                                   "content": text}, "function")
        if "run_shell_command" in names:
            return ("run_shell_command", {"command": "printf '%s' > %s" % (text.replace("\n", "\\n"), EDIT_FILE)}, "function")
        return None

    @staticmethod
    def _cwd_from(text):
        for pat in (r"[Ww]orking directory: *(/[^\s]+)", r"current working directory[^/\n]*?(/[^\s'\"`]+)",
                    r"<cwd>(/[^<]+)</cwd>", r"fz-cwd:(/[^\s]+)"):
            m = re.search(pat, text)
            if m:
                return m.group(1).rstrip(".,;:")
        return None

    # ---------------------------------------------------------------- answers
    def _a_message(self, model, content, stop, out_tokens, usage=None):
        u = usage or {"input": 0, "cached": 0, "cache_write": 0}
        return {"id": "msg_fz%d" % int(time.time() * 1000), "type": "message", "role": "assistant",
                "model": model, "content": content, "stop_reason": stop, "stop_sequence": None,
                "usage": {"input_tokens": u["input"], "cache_read_input_tokens": u["cached"],
                          "cache_creation_input_tokens": u["cache_write"], "output_tokens": out_tokens}}

    def _answer(self, api, model, text, usage, stream=True, count=True):
        if count:
            self.model.count(api, usage)
        if api == "anthropic":
            if not stream:
                msg = self._a_message(model, [{"type": "text", "text": text}], "end_turn", usage["output"], usage)
                return self._json(200, msg)
            self._sse_start()
            self._sse({"type": "message_start", "message": self._a_message(model, [], None, 1, usage)}, "message_start")
            self._sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                      "content_block_start")
            self._sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
                      "content_block_delta")
            self._sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
            self._sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                       "usage": {"output_tokens": usage["output"]}}, "message_delta")
            self._sse({"type": "message_stop"}, "message_stop")
            return
        if api == "openai":
            item = {"type": "message", "id": "msg_fz1", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}
            return self._o_stream(model, [item], usage)
        self._g_reply(model, [{"text": text}], usage, stream)

    def _tool_call(self, api, model, call, stream=True):
        name, args, kind = call
        usage = USAGE
        self.model.count(api, usage)
        if api == "anthropic":
            block = {"type": "tool_use", "id": "toolu_fz1", "name": name, "input": {}}
            if not stream:
                block["input"] = args
                return self._json(200, self._a_message(model, [block], "tool_use", usage["output"], usage))
            self._sse_start()
            self._sse({"type": "message_start", "message": self._a_message(model, [], None, 1, usage)}, "message_start")
            self._sse({"type": "content_block_start", "index": 0, "content_block": block}, "content_block_start")
            self._sse({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "input_json_delta", "partial_json": json.dumps(args)}}, "content_block_delta")
            self._sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
            self._sse({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                       "usage": {"output_tokens": usage["output"]}}, "message_delta")
            self._sse({"type": "message_stop"}, "message_stop")
            return
        if api == "openai":
            if kind == "custom":
                item = {"type": "custom_tool_call", "id": "ctc_fz1", "status": "completed", "call_id": "call_fz1",
                        "name": name, "input": args}
            else:
                item = {"type": "function_call", "id": "fc_fz1", "status": "completed", "call_id": "call_fz1",
                        "name": name, "arguments": json.dumps(args)}
            return self._o_stream(model, [item], usage)
        self._g_reply(model, [{"functionCall": {"name": name, "args": args}}], usage, stream)

    def _o_stream(self, model, items, usage):
        self._sse_start()
        seq = [0]

        def ev(kind, **kw):
            kw["type"] = kind
            kw["sequence_number"] = seq[0]
            seq[0] += 1
            self._sse(kw, kind)

        resp = {"id": "resp_fz%d" % int(time.time() * 1000), "object": "response", "status": "in_progress",
                "model": model, "output": []}
        ev("response.created", response=resp)
        for i, item in enumerate(items):
            ev("response.output_item.added", output_index=i, item=dict(item, status="in_progress"))
            if item["type"] == "message":
                ev("response.output_text.delta", output_index=i, item_id=item["id"], content_index=0,
                   delta=item["content"][0]["text"])
            ev("response.output_item.done", output_index=i, item=item)
        done = dict(resp, status="completed", output=items,
                    usage={"input_tokens": usage["input"] + usage["cached"],
                           "input_tokens_details": {"cached_tokens": usage["cached"]},
                           "output_tokens": usage["output"], "output_tokens_details": {"reasoning_tokens": 0},
                           "total_tokens": usage["input"] + usage["cached"] + usage["output"]})
        ev("response.completed", response=done)

    def _g_reply(self, model, parts, usage, stream):
        meta = {"promptTokenCount": usage["input"] + usage["cached"], "cachedContentTokenCount": usage["cached"],
                "candidatesTokenCount": usage["output"],
                "totalTokenCount": usage["input"] + usage["cached"] + usage["output"]}
        chunk = {"candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": "STOP", "index": 0}],
                 "usageMetadata": meta, "modelVersion": model}
        if not stream:
            return self._json(200, chunk)
        self._sse_start()
        self._sse(chunk)


def main(argv):
    import argparse
    import signal
    ap = argparse.ArgumentParser(description="fz's scripted model server (see the module text)")
    ap.add_argument("--port-file")
    ap.add_argument("--log")
    a = ap.parse_args(argv)
    srv = FakeModel(a.log).start()
    if a.port_file:
        with open(a.port_file + ".tmp", "w") as f:
            f.write("%d\n" % srv.port)
        os.rename(a.port_file + ".tmp", a.port_file)
    print(srv.url, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    while not done.wait(1):
        pass
    srv.stop()


def serve(log_path, fn, *args):
    """Runs fn(*args, server) with a FakeModel started for it (logging to log_path), and stops
    the server whatever happens."""
    srv = FakeModel(log_path).start()
    try:
        return fn(*args, srv)
    finally:
        srv.stop()


if __name__ == "__main__":
    main(sys.argv[1:])

