"""Hostile input on the broker's socket: each gets an error reply (or is dropped when it
cannot be answered) and the broker keeps serving."""
import os
import sys

import msgpack
import zmq

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fzharness as h  # noqa: E402


def expect_error(f, code, frames, what):
    f.send_raw(*frames)
    r = f.recv_reply(timeout=5)
    h.check(r is not None, "%s: no reply" % what)
    h.check(r.get("type") == "error" and r.get("code") == code,
            "%s: expected error %s, got %s" % (what, code, r))
    h.check(f.req("ping")["type"] == "pong", "%s: broker stopped serving" % what)
    return r


def pack(m):
    return msgpack.packb(m, use_bin_type=True)


def body(f):
    f.start_broker()
    expect_error(f, "malformed", [b"\xc1\x00garbage"], "garbage frame")
    expect_error(f, "malformed", [b"\x93\x01\x02"], "truncated array")
    expect_error(f, "malformed", [b"\xdd\xff\xff\xff\xff"], "array claiming 4 billion items")
    expect_error(f, "malformed", [pack({"v": 1, "type": "ping"}) + b"\x00"], "trailing bytes")
    expect_error(f, "malformed", [pack([1, 2, 3])], "not a map")
    expect_error(f, "malformed", [pack({"v": 1, "type": "ping"}), b"x"], "two frames")
    deep = b"\x91" * 100 + b"\x00"
    expect_error(f, "malformed", [deep], "deep nesting")
    r = expect_error(f, "version", [pack({"v": 2, "type": "ping", "rid": 5})], "wrong version")
    h.check(r.get("supported") == [1] and r.get("rid") == 5, "version error: %s" % r)
    expect_error(f, "invalid", [pack({"type": "ping"})], "no version")
    expect_error(f, "unknown-type", [pack({"v": 1, "type": "frobnicate"})], "unknown command")
    expect_error(f, "too-large", [pack({"v": 1, "type": "submit", "prompt": "x" * (300 * 1024)})],
                 "oversized prompt")
    expect_error(f, "invalid", [pack({"v": 1, "type": "submit", "prompt": "x", "priority": "hi"})],
                 "wrong field type")
    expect_error(f, "invalid", [pack({"v": 1, "type": "submit", "prompt": b"\xff\xfe"})],
                 "prompt as bin")
    expect_error(f, "invalid", [pack({"v": 1, "type": "submit", "prompt": "a", "labels": {"k": 1}})],
                 "label not a string")
    expect_error(f, "malformed", [b"\x82\xa1v\x01\xa1v\x01"], "duplicate key")
    expect_error(f, "conflict", [pack({"v": 1, "type": "result", "task": 1, "attempt": 1,
                                       "outcome": "exited"})], "worker message before hello")
    expect_error(f, "not-found", [pack({"v": 1, "type": "get", "task": 424242})], "unknown task")
    # A frame over the socket limit: libzmq drops that connection; others are unaffected.
    big = zmq.Context.instance().socket(zmq.DEALER)
    big.linger = 0
    big.connect(f.broker_ep)
    big.send(b"\x00" * (5 * 1024 * 1024))
    big.close()
    h.check(f.req("ping")["type"] == "pong", "broker stopped serving after an oversized frame")
    # Nothing of the above was stored.
    h.check(f.ok("list")["total"] == 0, "garbage created tasks")
    # Random bytes, many times; the error replies are read as they come (a peer that leaves
    # more than 128 replies unread has the rest dropped: see hostile_reader).
    import random
    rng = random.Random(1)
    for i in range(2000):
        f.send_raw(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64))))
        if i % 50 == 49:
            while f.recv_reply(timeout=0.05) is not None:
                pass
    h.check(f.req("ping", reply_timeout=10)["type"] == "pong", "broker stopped serving after random bytes")
    h.check(f.broker.poll() is None, "broker exited")


h.run("bad_input", body)
