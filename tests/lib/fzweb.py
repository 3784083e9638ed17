"""Helpers for the fz-web tests: start fz-web in a harness Factory on a free port (it prints
the URL it serves), HTTP without any proxy, a server-sent-events reader and a strict parser of
the Prometheus text format."""
import os
import re
import socket
import time
import urllib.error
import urllib.request

import fzharness as h

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def start_web(f, *args, label="web"):
    """Starts fz-web on 127.0.0.1:0 for factory f; returns (process, base URL)."""
    argv = [os.path.join(h.BIN, "fz-web"), "--listen", "127.0.0.1:0", "--broker", f.broker_ep,
            "--events", f.events_ep] + list(args)
    p = f._spawn(label, argv)
    log = os.path.join(f.dir, label + ".log")

    def url():
        try:
            m = re.search(r"serving (http://127\.0\.0\.1:\d+/)", open(log).read())
        except OSError:
            return None
        return m and m.group(1)
    base = h.wait_for(url, 15, "fz-web to say where it serves")
    return p, base.rstrip("/")


def http(method, url, headers=None, body=None, timeout=10):
    """(status, headers, body bytes) of one request; HTTP errors are answers too."""
    req = urllib.request.Request(url, method=method, headers=headers or {},
                                 data=body if body is not None else (b"{}" if method == "POST" else None))
    try:
        with _opener.open(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


class SSE:
    """A raw server-sent-events stream over a socket (so a test sees the bytes, and may send
    any header, Host included)."""

    def __init__(self, base, path="/events", headers=None):
        host, port = base.split("//")[1].split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        lines = ["GET %s HTTP/1.1" % path, "Host: %s:%s" % (host, port), "Accept: text/event-stream"]
        lines += ["%s: %s" % kv for kv in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        self.status = None
        self.times = {}

    def _fill(self, deadline):
        self.sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        if not data:
            raise EOFError("stream closed")
        self.buf += data
        return True

    def events(self, n, timeout):
        """The next n events as (id, event, data) tuples (chunked framing undone); the time
        each was read is kept in self.times, by id."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            if self.status is None:
                if b"\r\n\r\n" not in self.buf:
                    self._fill(deadline)
                    continue
                head, self.buf = self.buf.split(b"\r\n\r\n", 1)
                self.status = int(head.split()[1])
                self.chunked = b"chunked" in head.lower()
                self.body = b""
            self._dechunk()
            while b"\n\n" in self.body and len(out) < n:
                frame, self.body = self.body.split(b"\n\n", 1)
                fields = {}
                data = []
                for line in frame.decode().split("\n"):
                    if line.startswith(":") or not line:
                        continue
                    k, _, v = line.partition(": ")
                    if k == "data":
                        data.append(v)
                    else:
                        fields[k] = v
                if data or "event" in fields:
                    out.append((fields.get("id"), fields.get("event"), "\n".join(data)))
                    self.times[fields.get("id")] = time.time()
            if len(out) < n:
                self._fill(deadline)
        return out

    def _dechunk(self):
        if not self.chunked:
            self.body += self.buf
            self.buf = b""
            return
        while b"\r\n" in self.buf:
            size_line, rest = self.buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            if len(rest) < size + 2:
                return
            self.body += rest[:size]
            self.buf = rest[size + 2:]

    def close(self):
        self.sock.close()


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def parse_metrics(text):
    """Parses Prometheus text format 0.0.4 strictly: every sample belongs to a family declared
    by # HELP and # TYPE just before its samples, families are contiguous and declared once,
    label values are escaped, values are floats. Returns {family: {"type", "samples":
    [(name, {labels}, value)]}}; raises AssertionError on any deviation."""
    fams, current, seen_names = {}, None, set()
    for n, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert name not in fams, "line %d: family %s declared twice" % (n, name)
            fams[name] = {"type": None, "help": line.split(" ", 3)[3], "samples": []}
            current = name
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ")
            assert name == current and fams[name]["type"] is None, "line %d: TYPE out of place" % n
            assert typ in ("counter", "gauge", "histogram", "summary", "untyped"), typ
            fams[name]["type"] = typ
            continue
        assert not line.startswith("#"), "line %d: stray comment %r" % (n, line)
        m = _SAMPLE.match(line)
        assert m, "line %d: not a sample: %r" % (n, line)
        name, labels_txt, value = m.group(1), m.group(3) or "", m.group(4)
        fam = current
        assert fam, "line %d: sample before any family" % n
        typ = fams[fam]["type"]
        allowed = {fam} if typ != "histogram" else {fam + "_bucket", fam + "_sum", fam + "_count"}
        assert name in allowed, "line %d: %s outside its family %s" % (n, name, fam)
        labels, pos = {}, 0
        while pos < len(labels_txt):
            lm = _LABEL.match(labels_txt, pos)
            assert lm, "line %d: bad labels %r" % (n, labels_txt)
            labels[lm.group(1)] = lm.group(2).replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
            pos = lm.end()
        v = float(value.replace("+Inf", "inf").replace("-Inf", "-inf"))
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen_names, "line %d: duplicate sample %s" % (n, key)
        seen_names.add(key)
        fams[fam]["samples"].append((name, labels, v))
    for name, fam in fams.items():
        assert fam["type"], "family %s has no TYPE" % name
        if fam["type"] == "counter":
            assert name.endswith("_total"), "counter %s does not end in _total" % name
            assert all(s[2] >= 0 for s in fam["samples"]), "negative counter %s" % name
        if fam["type"] == "histogram":
            buckets = [s for s in fam["samples"] if s[0] == name + "_bucket"]
            les = [float(s[1]["le"].replace("+Inf", "inf")) for s in buckets]
            assert les == sorted(les) and les[-1] == float("inf"), "buckets of %s: %s" % (name, les)
            counts = [s[2] for s in buckets]
            assert counts == sorted(counts), "buckets of %s not cumulative" % name
            count = [s[2] for s in fam["samples"] if s[0] == name + "_count"]
            assert count and count[0] == counts[-1], "%s_count != +Inf bucket" % name
    return fams


def value(fams, name, **labels):
    """The value of the one sample called name (a family, or a histogram's name_count...)
    with exactly these labels."""
    got = [s[2] for fam in fams.values() for s in fam["samples"] if s[0] == name and s[1] == labels]
    assert len(got) == 1, "%s%s: %d samples" % (name, labels, len(got))
    return got[0]
