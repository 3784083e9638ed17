#!/usr/bin/python3
"""fz_client: a Python client of the fz broker, written from proto/PROTOCOL.md alone.

It is the proof that the protocol is language-neutral, so it uses nothing of the project's C
code: only Debian's python3-zmq and python3-msgpack. Run it with /usr/bin/python3 (another
python3 first on PATH may not see Debian's modules).

    from fz_client import Client, FzError
    with Client() as fz:                       # FZ_BROKER or tcp://127.0.0.1:5570
        task_id = fz.submit("fix the 404 page", priority=5, labels={"team": "web"})
        final = fz.wait(task_id, timeout=600)  # the task object, once it has ended
        print(final["state"], final["summary"])

Every request gets exactly one reply carrying the request's rid (PROTOCOL.md section 4); an
`error` reply raises FzError(code, message), where code is the protocol's error code
("not-found", "refused", ...). No reply within the timeout raises FzError("unreachable", ...).

With CURVE on (PROTOCOL.md section 9): Client(curve_secret="alice.key", broker_key="broker.pub"),
or FZ_CURVE_SECRET and FZ_BROKER_KEY, or --curve-secret and --broker-key.

As a program:  fz_client.py [--broker EP] submit PROMPT [--wait] [options]
               fz_client.py [--broker EP] get|cancel ID
               fz_client.py [--broker EP] list|status|workers|ping
"""

import argparse
import itertools
import json
import os
import struct
import sys
import time

try:
    import msgpack
    import zmq
except ImportError as e:  # pragma: no cover - depends on the machine
    sys.stderr.write("fz_client.py: %s; install Debian's python3-zmq and python3-msgpack and "
                     "run with /usr/bin/python3\n" % e)
    sys.exit(5)

PROTOCOL_VERSION = 1
DEFAULT_BROKER = "tcp://127.0.0.1:5570"
MAX_FRAME = 4 * 1024 * 1024
MAX_PROMPT = 256 * 1024
_MONITORS = itertools.count(1)  # serials of the clients' monitor names
FINAL_STATES = frozenset(("succeeded", "failed", "cancelled", "dep-failed"))

# Exit codes of the command line, the same as fz-submit's and fz-ctl's.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED, EXIT_TIMEOUT = 0, 1, 2, 3, 4
EXIT_UNAVAILABLE, EXIT_NOTFOUND, EXIT_CONFLICT, EXIT_INTERRUPTED = 5, 6, 7, 130
_EXIT_OF_CODE = {"invalid": EXIT_USAGE, "too-large": EXIT_USAGE, "refused": EXIT_USAGE,
                 "not-found": EXIT_NOTFOUND, "conflict": EXIT_CONFLICT}


class FzError(Exception):
    """An error reply from the broker, or no usable reply at all.

    code is the protocol's error code ("invalid", "not-found", "refused", ...), or
    "unreachable" when no reply came in time (reason "handshake" when the broker refused the
    connection's keys: at once, and resending cannot help), or "malformed" when the reply was
    unreadable.
    reason is the machine-readable why (section 3: "name-taken", "no-such-task", ...; "" when
    the reply gave none): programs decide on code and reason, never on message, which is for
    people. index names the refused task of a submit-batch (None otherwise). supported lists
    the broker's protocol versions after a "version" error."""

    def __init__(self, code, message, supported=None, reason="", index=None):
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message
        self.supported = supported or []
        self.reason = reason
        self.index = index


def load_curve(curve_secret=None, broker_key=None):
    """The CURVE keys of a client (PROTOCOL.md section 9): (public, secret, broker public) as
    Z85 bytes, from the files given or FZ_CURVE_SECRET / FZ_BROKER_KEY, or None when neither
    is set. The files are zcert files (what `fz-ctl keygen` writes); pyzmq reads them."""
    curve_secret = curve_secret or os.environ.get("FZ_CURVE_SECRET") or None
    broker_key = broker_key or os.environ.get("FZ_BROKER_KEY") or None
    if not curve_secret and not broker_key:
        return None
    if not curve_secret or not broker_key:
        raise FzError("invalid", "CURVE needs both a secret key (--curve-secret, "
                      "FZ_CURVE_SECRET) and the broker's public key (--broker-key, FZ_BROKER_KEY)")
    import zmq.auth
    try:
        public, secret = zmq.auth.load_certificate(curve_secret)
        server, _ = zmq.auth.load_certificate(broker_key)
    except (OSError, ValueError) as e:
        raise FzError("invalid", "cannot read a key file: %s" % e)
    if not secret:
        raise FzError("invalid", "%s holds no secret key" % curve_secret)
    return public, secret, server


class Client:
    """A request/reply connection to the broker's ROUTER over one DEALER socket."""

    def __init__(self, broker=None, timeout=5.0, curve_secret=None, broker_key=None):
        self.broker = broker or os.environ.get("FZ_BROKER") or DEFAULT_BROKER
        self.timeout = timeout
        self._curve = load_curve(curve_secret, broker_key)
        self._rids = itertools.count(1)
        self._sock = None
        self._mon = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._sock is not None:
            self._sock.disable_monitor()
            self._mon.close(linger=0)
            self._sock.close(linger=0)
            self._sock = self._mon = None

    def _socket(self):
        if self._sock is None:
            sock = zmq.Context.instance().socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME)
            if self._curve:
                sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = self._curve
            # The handshake's deliberate refusals (a key the broker does not know, keys where
            # it wants none or none where it wants them) end a call at once, saying which;
            # so do three handshakes in a row that the broker closed without a word (as
            # fz_client.c: a wrong broker key, a broker at its --max-peers).
            # Each monitor gets a name of its own: pyzmq's default names it by the socket's
            # descriptor, which a new socket reuses while libzmq may still hold the old
            # monitor's name (an inproc name is freed only when libzmq's reaper gets to it).
            self._mon = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                                zmq.EVENT_HANDSHAKE_FAILED_AUTH |
                                                zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                                                zmq.EVENT_HANDSHAKE_SUCCEEDED,
                                                "inproc://fz-client-monitor-%d-%d"
                                                % (os.getpid(), next(_MONITORS)))
            self._closed = 0
            sock.connect(self.broker)
            self._sock = sock
        return self._sock

    def _refusal(self):
        """The reason of a refusal among the handshake events the monitor reported, or None."""
        why = None
        while why is None and self._mon.poll(0):
            event, value = struct.unpack("=HI", self._mon.recv_multipart()[0][:6])
            why = self._why(event, value)
        return why

    def _why(self, event, value):
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self._closed = 0
            return None
        if event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            self._closed += 1
            if self._closed < 3:
                return None
            return ("the broker at %s closed %d connections in a row during the handshake (%s)" % (
                self.broker, self._closed, "is broker_key that broker's public key? or it is at its --max-peers"
                if self._curve else "does it require CURVE keys? or it is at its --max-peers"))
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            return "the broker at %s refused this key (not in its key folder, or removed)" % self.broker
        if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH and self._curve:
            return "the broker at %s does not use CURVE keys, and this client was given some" % self.broker
        if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            return ("the broker at %s requires CURVE keys: pass curve_secret and broker_key "
                    "(or FZ_CURVE_SECRET and FZ_BROKER_KEY)" % self.broker)
        return "the handshake with the broker at %s failed (event %#x, %#x)" % (self.broker, event, value)

    # ------------------------------------------------------------ the one primitive

    def call(self, type_, **fields):
        """Sends request `type_` with `fields` (None values left out) and returns the reply as
        a dict. Raises FzError on an error reply, an unreadable reply, or none in time."""
        rid = next(self._rids)
        msg = {"v": PROTOCOL_VERSION, "type": type_, "rid": rid}
        msg.update((k, v) for k, v in fields.items() if v is not None)
        sock = self._socket()
        sock.send(msgpack.packb(msg, use_bin_type=True))
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._mon, zmq.POLLIN)
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            ready = dict(poller.poll(int(left * 1000) + 1)) if left > 0 else {}
            if not ready:
                break
            why = self._refusal() if self._mon in ready else None
            if why:
                self.close()  # nothing sent on this connection reached the broker
                raise FzError("unreachable", why, reason="handshake")
            if sock not in ready:
                continue
            reply = self._read(sock.recv_multipart(), rid)
            if reply is not None:
                return reply
        # A new socket drops the request still queued for an absent broker, so it cannot
        # be delivered later behind the caller's back.
        self.close()
        raise FzError("unreachable", "no reply from broker at %s within %g s — is fz-broker "
                      "running?" % (self.broker, self.timeout))

    @staticmethod
    def _read(frames, rid):
        """The reply to request rid, or None for anything else (a late reply to an earlier
        request that timed out, or garbage that is nobody's)."""
        if len(frames) != 1:
            return None
        try:
            reply = msgpack.unpackb(frames[0], raw=False)
        except Exception:  # msgpack raises several types on bad input
            return None
        if not isinstance(reply, dict):
            return None
        is_error = reply.get("type") == "error"
        # An error without rid answers a request whose rid the broker could not read.
        if reply.get("rid", 0) != rid and not (is_error and "rid" not in reply):
            return None
        if reply.get("v") != PROTOCOL_VERSION:
            raise FzError("version", "the broker replied in protocol version %r; this client "
                          "speaks %d" % (reply.get("v"), PROTOCOL_VERSION))
        if is_error:
            code = reply.get("code") if isinstance(reply.get("code"), str) else "internal"
            message = reply.get("message") if isinstance(reply.get("message"), str) else code
            supported = reply.get("supported") or []
            if code == "version":
                # Negotiation (section 3): retry with the highest version both speak. This
                # client speaks only version 1, which the broker just refused: nothing to
                # retry with.
                message = "the broker does not speak protocol version %d (it speaks %s)" % (
                    PROTOCOL_VERSION, ", ".join(str(v) for v in supported) or "none it named")
            reason = reply.get("reason") if isinstance(reply.get("reason"), str) else ""
            index = reply.get("index") if isinstance(reply.get("index"), int) else None
            raise FzError(code, message, supported, reason, index)
        return reply

    def _expect(self, type_, expect, **fields):
        reply = self.call(type_, **fields)
        if reply.get("type") != expect:
            raise FzError("malformed", "the broker answered %s with %r where %r was due"
                          % (type_, reply.get("type"), expect))
        return reply

    # ------------------------------------------------------------ requests

    def submit(self, prompt, priority=None, model=None, timeout=None, max_cost=None,
               labels=None, retries=None, fallback=None, after=None, after_any=None,
               parent=None, name=None, deadline=None, idempotency_key=None, tries=6):
        """Submits a task; returns its id. The task is stored durably when this returns.
        With idempotency_key (at most 128 bytes) the broker stores it once: a reply lost to
        a timeout is asked for again, up to `tries` sends, and a resend is answered with
        the task the first one stored."""
        if isinstance(prompt, bytes):
            prompt = prompt.decode("utf-8")
        if len(prompt.encode("utf-8")) > MAX_PROMPT:
            raise FzError("too-large", "the prompt is over the limit of %d bytes" % MAX_PROMPT)
        reply = self._keyed("submit", "submitted", idempotency_key, tries, prompt=prompt,
                            priority=priority,
                             model=model, timeout=timeout,
                             max_cost=None if max_cost is None else float(max_cost),
                             labels=labels, retries=retries,
                             fallback=None if fallback is None else list(fallback),
                             after=None if after is None else list(after),
                             after_any=None if after_any is None else list(after_any),
                             parent=parent, name=name,
                             deadline=None if deadline is None else float(deadline))
        return reply["task"]

    def _keyed(self, type_, expect, key, tries, **fields):
        """A request with an idempotency key, sent again while its reply is lost (or the
        broker could not store it): the key makes every resend safe. Without a key: once."""
        for i in range(1, (tries if key else 1) + 1):
            try:
                return self._expect(type_, expect, idempotency_key=key, **fields)
            except FzError as e:
                if i >= tries or e.code not in ("unreachable", "unavailable") or e.reason == "handshake":
                    raise
                if e.code == "unavailable":
                    time.sleep(1.0)

    def submit_batch(self, tasks, idempotency_key=None, tries=6):
        """Submits a graph of tasks at once (PROTOCOL.md, submit-batch): each a dict of submit
        fields, naming earlier ones of the list by position in "after_index" /
        "after_any_index". All are stored, or none (FzError). Returns their ids, in order.
        idempotency_key and tries as for submit: a resend returns the same ids."""
        for i, t in enumerate(tasks):
            for key in ("after_index", "after_any_index"):
                if any(not isinstance(j, int) or not 0 <= j < i for j in t.get(key, [])):
                    raise FzError("invalid", "task %d: %s must name earlier tasks" % (i, key))
        return self._keyed("submit-batch", "submitted-batch", idempotency_key, tries,
                           tasks=list(tasks))["tasks"]

    def events(self, since=0):
        """The recent events numbered after `since` that the broker still holds, oldest first
        (to fill a gap seen on the event stream)."""
        return self._expect("events", "events", since=since).get("events", [])

    def get(self, task):
        """{"task": task object, "attempts": [attempt objects]} (PROTOCOL.md section 7)."""
        reply = self._expect("get", "task", task=task)
        return {"task": reply["task"], "attempts": reply.get("attempts", [])}

    def wait(self, task, timeout=None, poll=1.0):
        """Polls `get` until the task is in a final state; returns the task object. Raises
        TimeoutError if `timeout` seconds pass first (the task goes on)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            t = self.get(task)["task"]
            if t.get("state") in FINAL_STATES:
                return t
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError("task %s still %s after %g s" % (task, t.get("state"),
                                                                    timeout))
            time.sleep(poll if deadline is None else
                       max(0.0, min(poll, deadline - time.monotonic())))

    def list(self, state=None, limit=None):
        """Task objects (with the prompt's first 80 characters, no output), by id."""
        return self._expect("list", "tasks", state=state, limit=limit)["tasks"]

    def status(self):
        return _body(self._expect("status", "status"))

    def workers(self):
        return self._expect("workers", "workers").get("workers", [])

    def cancel(self, task):
        """{"task": id, "state": new state}; FzError("conflict") if it had already ended."""
        return _body(self._expect("cancel", "ok", task=task))

    def ping(self):
        return _body(self._expect("ping", "pong"))


def _body(reply):
    """A reply without its envelope (v, type, rid)."""
    return {k: v for k, v in reply.items() if k not in ("v", "type", "rid")}


def exit_code_of(task):
    """The exit code the tools use for a task in a final state."""
    state = task.get("state")
    if state == "succeeded":
        return EXIT_OK
    if state == "cancelled":
        return EXIT_CANCELLED
    if state == "failed" and task.get("outcome") == "timeout":
        return EXIT_TIMEOUT
    return EXIT_FAILED


# ---------------------------------------------------------------- command line

def _json_default(o):
    if isinstance(o, bytes):
        return o.decode("utf-8", "replace")
    raise TypeError(repr(o))


def _print_json(obj):
    print(json.dumps(obj, default=_json_default, sort_keys=False))


def _label(s):
    key, eq, value = s.partition("=")
    if not eq or not key:
        raise argparse.ArgumentTypeError("%r is not KEY=VALUE" % s)
    return key, value


def _ids(s):
    try:
        ids = [int(x) for x in s.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a comma-separated list of task ids" % s)
    if any(i < 1 for i in ids):
        raise argparse.ArgumentTypeError("%r is not a list of task ids" % s)
    return ids


def _parser():
    p = argparse.ArgumentParser(
        prog="fz_client.py", description="A Python client of the fz broker.",
        epilog="exit codes: 0 ok / succeeded, 1 task failed, 2 bad usage or refused, "
               "3 cancelled, 4 timed out, 5 broker unreachable or protocol error, "
               "6 not found, 7 conflict, 130 interrupted")
    p.add_argument("--broker", help="broker endpoint (default $FZ_BROKER or %s)"
                   % DEFAULT_BROKER)
    p.add_argument("--json", action="store_true", help="print replies as JSON")
    p.add_argument("--curve-secret", help="this client's secret key file (default "
                   "$FZ_CURVE_SECRET): CURVE, with --broker-key")
    p.add_argument("--broker-key", help="the broker's public key file (default $FZ_BROKER_KEY)")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("submit", help="submit a task and print its id")
    s.add_argument("prompt", help="the prompt ('-' reads standard input)")
    s.add_argument("--wait", action="store_true", help="wait for the end; exit with outcome")
    s.add_argument("-p", "--priority", type=int)
    s.add_argument("-m", "--model")
    s.add_argument("-t", "--timeout", type=int, help="seconds per attempt")
    s.add_argument("-c", "--max-cost", type=float, help="USD per attempt")
    s.add_argument("-l", "--label", type=_label, action="append", help="KEY=VALUE (repeatable)")
    s.add_argument("-r", "--retries", type=int)
    s.add_argument("--fallback", type=lambda v: v.split(","))
    s.add_argument("--after", type=_ids)
    s.add_argument("--after-any", type=_ids)
    s.add_argument("--parent", type=int)
    s.add_argument("--name")
    s.add_argument("--idempotency-key", help="stored once per key; a lost reply is resent")
    for name in ("get", "cancel"):
        sub.add_parser(name, help="%s a task" % name).add_argument("id", type=int)
    for name in ("list", "status", "workers", "ping"):
        sub.add_parser(name)
    return p


def _submit(fz, a):
    prompt = sys.stdin.read() if a.prompt == "-" else a.prompt
    task_id = fz.submit(prompt, priority=a.priority, model=a.model, timeout=a.timeout,
                        max_cost=a.max_cost, labels=dict(a.label) if a.label else None,
                        retries=a.retries, fallback=a.fallback, after=a.after,
                        after_any=a.after_any, parent=a.parent, name=a.name,
                        idempotency_key=a.idempotency_key)
    if not a.wait:
        if a.json:
            _print_json({"task": task_id, "state": "queued"})
        else:
            print(task_id)
        return EXIT_OK
    if not a.json:
        print(task_id, flush=True)
    task = fz.wait(task_id)
    if a.json:
        _print_json(task)
    else:
        outcome = task.get("outcome") or "-"
        if outcome == "exited":
            outcome = "exited %s" % task.get("exit_code", 0)
        print("task %s %s (%s), $%.4f" % (task_id, task.get("state"), outcome,
                                          task.get("cost_usd", 0.0)))
        if task.get("summary"):
            print(task["summary"])
    return exit_code_of(task)


def main(argv=None):
    a = _parser().parse_args(argv)
    try:
        with Client(a.broker, curve_secret=a.curve_secret, broker_key=a.broker_key) as fz:
            if a.command == "submit":
                return _submit(fz, a)
            if a.command == "get":
                result = fz.get(a.id)
            elif a.command == "cancel":
                result = fz.cancel(a.id)
            else:
                result = getattr(fz, a.command)()
            if a.json or not isinstance(result, list):
                _print_json(result)
            else:
                for item in result:
                    _print_json(item)
            return EXIT_OK
    except FzError as e:
        sys.stderr.write("fz_client.py: %s\n" % e.message)
        return _EXIT_OF_CODE.get(e.code, EXIT_UNAVAILABLE)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    import signal
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` ends us quietly, like a C tool
    sys.exit(main())
