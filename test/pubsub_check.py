#!/usr/bin/env python3
"""pubsub_check.py -- pub/sub and MONITOR through the proxy, as Redis runs them.

    pubsub_check.py script PORT PROTO [--conf CONF [--bin BIN]]
        run the scripted pub/sub session (below) against PORT in RESP PROTO
        (2 or 3) and print its transcript, one reply per line, escaped
    pubsub_check.py diff PROXY_PORT REDIS_PORT PROTO [--conf CONF [--bin BIN]]
        the same session through the proxy and straight at a redis-server
        (the reference); every transcript line must be the same.  With
        --conf (the proxy's configuration) the channels are picked so that
        they spread over its backends (BIN --route, BIN defaulting to
        ../shardproxy), and while the subscribers are subscribed each
        backend's PUBSUB CHANNELS / SHARDCHANNELS / NUMPAT is checked: every
        channel subscribed on the backend that owns it (as a key of that name
        would be), every pattern on every backend
    pubsub_check.py fanout PORT [--conf CONF [--bin BIN]] [--subscribers N]
                           [--publishes N] [--batch N]
        N (100) subscriber connections (SUBSCRIBE to one or two channels,
        PSUBSCRIBE to all of them or to one, some both), then N (10000)
        PUBLISHes over the channels, pipelined in batches (500): every
        PUBLISH must count exactly its receivers, and every subscriber must
        get every message of each of its subscriptions, in publish order,
        exactly once; prints a summary line
    pubsub_check.py monitor PORT KEY=ID [KEY=ID ...]
        MONITOR on one connection, SET/GET/DEL of each KEY in database 0 and
        SET/DEL in database 3 on another: each must show up as a monitor line
        `+<time> [<db> ID/<addr>] "set" "KEY" ...` tagged with the identity
        ID of the backend that owns KEY, every line must carry a known tag,
        and one backend's lines keep its order.  ID `-` expects a plain
        redis-server's untagged `[<db> <addr>]` (to check the check)
    pubsub_check.py hold PORT READY [--proto 3] CMD ARG... [+ CMD ARG...]
        send each command (SUBSCRIBE-family: wait for one confirmation per
        argument), touch the file READY, then print every frame received,
        escaped, one a line (flushed), until the connection closes: then
        print <EOF> (or <RESET>) and exit 0.  An error reply to a command:
        printed, READY touched, exit 1.  Gives up after 120 s

The script (subscribers S and T, publisher P; channels psA*, psB*, shard
channels psS* on different backends, psT{<a psA channel>} placed by its hash
tag): UNSUBSCRIBE/PUNSUBSCRIBE/SUNSUBSCRIBE with nothing subscribed,
SUBSCRIBE with a duplicate, PSUBSCRIBE (twice the same), SSUBSCRIBE with a
duplicate, PUBLISH and SPUBLISH to each channel (counts, message, pmessage,
smessage, an empty and a binary payload, the two namespaces kept apart),
PUBSUB subcommands, PING with and without an argument, GET, PUBSUB, HELLO
and MULTI while subscribed (refused in RESP2; GET and PUBSUB served in
RESP3), UNSUBSCRIBE / PUNSUBSCRIBE / SUNSUBSCRIBE with arguments and
without, a pipeline of (un)subscribes and PINGs in one write, a 512 KiB
message, RESET (which also goes back to RESP2), QUIT.

What legitimately differs between the proxy and one redis-server, and is
masked (everything else is compared byte for byte):
  - the HELLO 3 reply (client id, and the proxy answers it itself): only
    checked to be a map, not recorded;
  - the order of PUBSUB CHANNELS / SHARDCHANNELS elements (Redis's dict
    order): recorded sorted, with the array header;
  - the order of the per-channel replies of an UNSUBSCRIBE / PUNSUBSCRIBE /
    SUNSUBSCRIBE without arguments (dict order): recorded as the sorted
    frames with the count masked, then the counts in arrival order (which
    must still be N-1, ..., 0 as one Redis counts);
  - how long a subscription takes to go away after RESET or QUIT (the
    proxy may release backend subscriptions asynchronously): PUBSUB is
    polled (up to 5 s) until it shows them gone, and its last reply recorded.

Any failure prints a clear message (no traceback) and exits 1; every socket
has a timeout (PUBSUB_TIMEOUT seconds, default 10), so nothing hangs.
"""
import errno
import fnmatch
import hashlib
import os
import random
import re
import selectors
import socket
import subprocess
import sys
import threading
import time

from resp import connect, enc, escape, parse, Reader  # test/resp.py

TIMEOUT = float(os.environ.get("PUBSUB_TIMEOUT", "10"))
HERE = os.path.dirname(os.path.abspath(__file__))


class Fail(Exception):
    """A check failed or the server misbehaved: the message says how."""


def _b(a):
    return a if isinstance(a, bytes) else str(a).encode()


def show(data, limit=4096):
    """DATA escaped; beyond LIMIT bytes, its length, ends and SHA-1 instead."""
    if len(data) <= limit:
        return escape(data)
    return "<%d bytes: %s ... %s, sha1 %s>" % (len(data), escape(data[:40]), escape(data[-12:]),
                                              hashlib.sha1(data).hexdigest())


# ------------------------------------------------------- backends, placement

def route(conf, binary, names):
    """[(identity, address)] of each of NAMES under the proxy's CONF."""
    try:
        out = subprocess.run([binary, "-c", conf] + [a for n in names for a in ("--route", n)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Fail("cannot run %s --route: %s" % (binary, e))
    lines = out.stdout.decode().splitlines()
    if out.returncode != 0 or len(lines) != len(names):
        raise Fail("%s -c %s --route: status %d, %d lines for %d names: %s"
                   % (binary, conf, out.returncode, len(lines), len(names),
                      out.stderr.decode().strip()))
    return [tuple(line.split()[:2]) for line in lines]


def spread(prefix, count, conf, binary):
    """COUNT channel names PREFIX<n>: without CONF PREFIX0, PREFIX1, ...; with
    it, taken round robin over the backends (in the order they first own one
    of PREFIX0..PREFIX299), so COUNT >= backends names cover every backend."""
    if not conf:
        return ["%s%d" % (prefix, i) for i in range(count)]
    names = ["%s%d" % (prefix, i) for i in range(300)]
    by_owner = {}
    for name, (ident, _) in zip(names, route(conf, binary, names)):
        by_owner.setdefault(ident, []).append(name)
    queues = list(by_owner.values())
    out = []
    while len(out) < count:
        for q in queues:
            if q and len(out) < count:
                out.append(q.pop(0))
    return out


def conf_backends(conf):
    """The addresses (host, port) of CONF's backend lines (sockets skipped)."""
    out = []
    with open(conf) as f:
        for line in f:
            w = line.split()
            if len(w) >= 2 and w[0] == "backend" and not w[1].startswith("/"):
                host, _, port = w[1].rpartition(":")
                out.append((host.strip("[]"), int(port)))
    return out


# -------------------------------------------------------------- the script

class Conn:
    def __init__(self, name, port):
        self.name = name
        try:
            self.s = connect(port, timeout=TIMEOUT)
        except OSError as e:
            raise Fail("cannot connect to 127.0.0.1:%s: %s" % (port, e))
        self.r = Reader(self.s)
        self.closed = False

    def send(self, *args):
        try:
            self.s.sendall(enc(*args))
        except OSError as e:
            raise Fail("%s: sending %s: %s" % (self.name, " ".join(map(str, args)), e))

    def frame(self, what):
        """The next frame's bytes; Fail on a timeout or a close."""
        try:
            return self.r.raw()
        except socket.timeout:
            raise Fail("%s: no reply within %g s to %s (unread: %r)"
                       % (self.name, TIMEOUT, what, self.r.buf[:200]))
        except (EOFError, OSError) as e:
            self.closed = True
            raise Fail("%s: connection lost waiting for the reply to %s: %s (unread: %r)"
                       % (self.name, what, e, self.r.buf[:200]))
        except ValueError as e:
            raise Fail("%s: not RESP, in reply to %s: %s" % (self.name, what, e))

    def eof(self, wait):
        """'<EOF>' if the server closes within WAIT seconds, else what came."""
        self.s.settimeout(wait)
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    break
                self.r.buf += d
        except socket.timeout:
            return "<OPEN> " + escape(self.r.buf)
        except OSError as e:
            return "<%s> %s" % (errno.errorcode.get(e.errno, e), escape(self.r.buf))
        finally:
            self.s.settimeout(TIMEOUT)
        return "<EOF>" + (" after " + escape(self.r.buf) if self.r.buf else "")

    def quiet(self, wait=0.3):
        """'' if nothing more arrives within WAIT seconds, else what did."""
        self.s.settimeout(wait)
        try:
            d = self.s.recv(65536)
            self.r.buf += d if d else b"<EOF>"
        except socket.timeout:
            pass
        except OSError as e:
            self.r.buf += ("<%s>" % e).encode()
        finally:
            self.s.settimeout(TIMEOUT)
        out, self.r.buf = self.r.buf, b""
        return escape(out)


class Session:
    """Runs the script's steps against one server and records the transcript."""

    def __init__(self, port, proto):
        self.port, self.proto, self.out, self.n = port, proto, [], 0
        self.c = {n: Conn(n, port) for n in ("S", "T", "P")}
        if proto == 3:
            for c in self.c.values():
                c.send("HELLO", "3")
                hello = c.frame("HELLO 3")
                if not hello.startswith(b"%"):
                    raise Fail("%s: HELLO 3 answered %s, not a map" % (c.name, escape(hello)))

    def step(self):
        """Begin the next step: its lines are compared as a group."""
        self.n += 1
        self.out.append([])

    def rec(self, who, args, text):
        self.out[-1].append("%03d %s %s -> %s" % (self.n, who, " ".join(show(_b(a), 200)
                                                                        for a in args), text))

    def cmd(self, who, *args, frames=1):
        """ARGS on WHO; FRAMES replies (one per channel of a (un)subscribe),
        fewer when the first is an error."""
        self.step()
        c = self.c[who]
        c.send(*args)
        for i in range(frames):
            f = c.frame(" ".join(map(str, args)))
            self.rec(who, args, show(f) if frames == 1 else "[%d/%d] %s" % (i + 1, frames,
                                                                                show(f)))
            if i == 0 and f.startswith(b"-"):
                break

    def pub(self, *args, **expect):
        """PUBLISH/SPUBLISH ARGS on P, then the frames each subscriber in
        EXPECT (S=n, T=m) must get for it (none when the publish failed)."""
        self.step()
        p = self.c["P"]
        p.send(*args)
        f = p.frame(" ".join(map(str, args)))
        self.rec("P", args, show(f))
        if f.startswith(b"-"):
            return
        for who, n in sorted(expect.items()):
            for i in range(n):
                self.rec(who, ["<-", args[1]], show(self.c[who].frame(
                    "the message %d/%d for %s %s" % (i + 1, n, args[0], args[1]))))

    def unordered(self, who, *args, frames):
        """An (un)subscribe without arguments: FRAMES replies in dict order."""
        self.step()
        c = self.c[who]
        c.send(*args)
        got, counts = [], []
        for i in range(frames):
            f = c.frame(" ".join(map(str, args)))
            if i == 0 and f.startswith(b"-"):
                self.rec(who, args, show(f))
                return
            head, sep, count = f.rpartition(b":")
            got.append(escape(head + sep) + "<count>" if sep else show(f))
            counts.append(count.rstrip(b"\r\n").decode(errors="replace"))
        for g in sorted(got):
            self.rec(who, args, "(any order) " + g)
        self.rec(who, args, "counts in order: " + " ".join(counts))

    def pipeline(self, who, parts):
        """PARTS, [(args, frames, any_order)], sent in one write; then each
        part's FRAMES replies read in turn (ANY_ORDER: an (un)subscribe
        without arguments, recorded as unordered does)."""
        self.step()
        c = self.c[who]
        try:
            c.s.sendall(b"".join(enc(*args) for args, _, _ in parts))
        except OSError as e:
            raise Fail("%s: sending a pipeline: %s" % (who, e))
        for args, frames, any_order in parts:
            what = "pipelined " + " ".join(map(str, args))
            got, counts = [], []
            for i in range(frames):
                f = c.frame(what)
                if not any_order:
                    self.rec(who, ["|"] + list(args), show(f))
                    continue
                head, sep, count = f.rpartition(b":")
                got.append(escape(head + sep) + "<count>" if sep else show(f))
                counts.append(count.rstrip(b"\r\n").decode(errors="replace"))
            for g in sorted(got):
                self.rec(who, ["|"] + list(args), "(any order) " + g)
            if any_order:
                self.rec(who, ["|"] + list(args), "counts in order: " + " ".join(counts))

    def as_set(self, who, *args):
        """A reply whose array elements come in dict order: sorted."""
        self.step()
        c = self.c[who]
        c.send(*args)
        f = c.frame(" ".join(map(str, args)))
        v = parse(f)[0]
        if isinstance(v, list) and f[:1] in (b"*", b"~"):
            items = sorted(escape(_b(x)) for x in v)
            self.rec(who, args, " ".join(["(sorted)", escape(f[:f.index(b"\r\n") + 2])]
                                         + items))
        else:
            self.rec(who, args, show(f))

    def poll(self, who, want, *args, secs=5):
        """ARGS repeated until the reply is WANT (bytes) or SECS pass; the last
        reply recorded."""
        self.step()
        c, deadline = self.c[who], time.monotonic() + secs
        while True:
            c.send(*args)
            f = c.frame(" ".join(map(str, args)))
            if f == want or f.startswith(b"-") or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        self.rec(who, args, "(polled) " + show(f))


def channels(conf, binary):
    """The script's channel names: (A, B, SH, tagged)."""
    a = spread("psA", 3, conf, binary)
    b = spread("psB", 3, conf, binary)
    sh = spread("psS", 3, conf, binary)
    return a, b, sh, "psT{%s}" % a[1]


def placement(conf, binary, names, shard, patterns):
    """Each backend's PUBSUB view against where the channels belong: a list
    of failure messages (printed)."""
    owners = dict(zip(names + shard, route(conf, binary, names + shard)))
    bad = []
    for host, port in conf_backends(conf):
        addr = "%s:%d" % (host, port)
        try:
            s = connect(port, timeout=TIMEOUT, host=host)
            r = Reader(s)
            views = []
            for args in (("PUBSUB", "CHANNELS", "ps*"), ("PUBSUB", "SHARDCHANNELS", "ps*"),
                         ("PUBSUB", "NUMPAT")):
                s.sendall(enc(*args))
                views.append(r.reply())
            s.close()
        except (OSError, EOFError) as e:
            bad.append("backend %s: PUBSUB: %s" % (addr, e))
            continue
        want_ch = sorted(n for n in names if owners[n][1] == addr)
        want_sh = sorted(n for n in shard if owners[n][1] == addr)
        got_ch = sorted(x.decode() for x in views[0])
        got_sh = sorted(x.decode() for x in views[1])
        line = "placement: backend %s: channels %s, shard channels %s, patterns %s" % (
            addr, " ".join(got_ch) or "-", " ".join(got_sh) or "-", views[2].decode()[1:])
        if got_ch != want_ch or got_sh != want_sh or views[2] != b":%d" % patterns:
            line += ("  FAIL: want channels %s, shard channels %s, patterns %d"
                     % (" ".join(want_ch) or "-", " ".join(want_sh) or "-", patterns))
            bad.append(line)
        print(line)
    return bad


def script(port, proto, conf=None, binary=None, probe=False):
    """The scripted session: its steps (each a list of transcript lines), and the
    placement failures."""
    A, B, SH, TAG = channels(conf, binary)
    x = Session(port, proto)
    failures = []
    nokey = "ps:nokey"
    resp3 = proto == 3
    # A Fail ends the session (the rest would only cascade); it is recorded
    try:
        x.cmd("P", "DEL", nokey)
        # nothing subscribed yet
        x.cmd("S", "UNSUBSCRIBE")
        x.cmd("S", "PUNSUBSCRIBE")
        x.cmd("S", "SUNSUBSCRIBE")
        x.cmd("S", "UNSUBSCRIBE", A[0], "ps:nosuch", frames=2)
        x.cmd("S", "PUNSUBSCRIBE", "psA*", frames=1)
        x.cmd("S", "SUNSUBSCRIBE", SH[0], frames=1)
        # S: psA0-2 (one twice), psB0, pattern psB* (twice); shard psS0-2 (one twice)
        x.cmd("S", "SUBSCRIBE", A[0], A[1], A[2], A[0], frames=4)
        x.cmd("S", "SUBSCRIBE", B[0], frames=1)
        x.cmd("S", "PSUBSCRIBE", "psB*", frames=1)
        x.cmd("S", "PSUBSCRIBE", "psB*", frames=1)
        x.cmd("S", "SSUBSCRIBE", SH[0], SH[1], SH[0], frames=3)
        x.cmd("S", "SSUBSCRIBE", SH[2], frames=1)
        # T: psA1 and the tagged channel, pattern psA*, shard psS1
        x.cmd("T", "SUBSCRIBE", A[1], TAG, frames=2)
        x.cmd("T", "PSUBSCRIBE", "psA*", frames=1)
        x.cmd("T", "SSUBSCRIBE", SH[1], frames=1)
        if probe:
            failures += placement(conf, binary, A + B[:1] + [TAG], SH, 2)
        # each channel: the count, and what each subscriber gets
        x.pub("PUBLISH", A[0], "m-a0", S=1, T=1)
        x.pub("PUBLISH", A[1], "m-a1", S=1, T=2)
        x.pub("PUBLISH", A[2], "m-a2", S=1, T=1)
        x.pub("PUBLISH", B[0], "m-b0", S=2)
        x.pub("PUBLISH", B[1], "m-b1", S=1)
        x.pub("PUBLISH", B[2], "m-b2", S=1)
        x.pub("PUBLISH", TAG, "m-tag", T=1)
        x.pub("PUBLISH", "ps:nosuch", "m-none")
        x.pub("PUBLISH", SH[0], "m-plain-to-shard")  # the namespaces are apart
        x.pub("SPUBLISH", SH[0], "s-0", S=1)
        x.pub("SPUBLISH", SH[1], "s-1", S=1, T=1)
        x.pub("SPUBLISH", SH[2], "s-2", S=1)
        x.pub("SPUBLISH", A[0], "s-to-plain")
        x.pub("SPUBLISH", "ps:nosuch", "s-none")
        x.pub("PUBLISH", A[2], "", S=1, T=1)  # empty payload
        x.pub("PUBLISH", B[1], b"bin\r\n\x00\xff*3\r\n", S=1)  # framing-like bytes
        x.cmd("P", "PUBLISH", A[0])  # wrong arity
        x.cmd("P", "SPUBLISH", SH[0])
        # PUBSUB, merged over the backends
        x.cmd("P", "PUBSUB", "NUMSUB", A[0], A[1], A[2], B[0], B[1], TAG, "ps:nosuch")
        x.cmd("P", "PUBSUB", "NUMSUB")
        x.cmd("P", "PUBSUB", "NUMPAT")
        x.as_set("P", "PUBSUB", "CHANNELS")
        x.as_set("P", "PUBSUB", "CHANNELS", "psA*")
        x.as_set("P", "PUBSUB", "CHANNELS", A[1])
        x.as_set("P", "PUBSUB", "CHANNELS", "nomatch*")
        x.cmd("P", "PUBSUB", "SHARDNUMSUB", SH[0], SH[1], SH[2], "ps:nosuch")
        x.cmd("P", "PUBSUB", "SHARDNUMSUB")
        x.as_set("P", "PUBSUB", "SHARDCHANNELS")
        x.as_set("P", "PUBSUB", "SHARDCHANNELS", SH[1])
        # what a subscribed connection may do
        x.cmd("S", "PING")
        x.cmd("S", "PING", "hello")
        x.cmd("S", "GET", nokey)  # RESP2: refused; RESP3: served
        x.cmd("S", "PUBSUB", "NUMSUB", A[0])
        if not resp3:
            x.cmd("S", "HELLO", "3")  # refused while subscribed in RESP2
            x.cmd("S", "MULTI")
        x.cmd("S", "SUBSCRIBE")  # wrong arity
        # unsubscribe with arguments
        x.cmd("S", "UNSUBSCRIBE", A[0], "ps:nosuch", frames=2)
        x.cmd("S", "PUNSUBSCRIBE", "psB*", "nosuch*", frames=2)
        x.cmd("S", "SUNSUBSCRIBE", SH[0], "ps:nosuch", frames=2)
        x.pub("PUBLISH", A[0], "m-a0-again", T=1)
        x.pub("PUBLISH", B[1], "m-b1-again")
        x.pub("SPUBLISH", SH[0], "s-0-again")
        # unsubscribe without arguments: S has psA1 psA2 psB0, no pattern, psS1 psS2
        x.unordered("S", "UNSUBSCRIBE", frames=3)
        x.cmd("S", "PUNSUBSCRIBE")  # none left: null channel
        x.cmd("S", "PING")  # still subscribed: the shard channels
        x.cmd("S", "GET", nokey)
        x.unordered("S", "SUNSUBSCRIBE", frames=2)
        x.cmd("S", "UNSUBSCRIBE")  # nothing left at all
        x.cmd("S", "GET", nokey)  # no longer subscribed
        x.cmd("S", "PING")
        # all of it pipelined in one write: the replies in order, counts as one Redis's
        x.pipeline("S", [
            (("SUBSCRIBE", A[0], A[1], A[2]), 3, False),
            (("PSUBSCRIBE", "psB*"), 1, False),
            (("PING",), 1, False),
            (("SSUBSCRIBE", SH[2], SH[0]), 2, False),
            (("UNSUBSCRIBE",), 3, True),
            (("PING", "hi"), 1, False),
            (("SUBSCRIBE", B[0]), 1, False),
            (("PUNSUBSCRIBE", "psB*"), 1, False),
            (("SUNSUBSCRIBE",), 2, True),
            (("UNSUBSCRIBE", B[0]), 1, False),
            (("GET", nokey), 1, False),  # out of subscribed mode again
        ])
        # a message larger than any one read (T: channel and pattern)
        big = bytes(range(256)) * 2048 + b"\r\n*3\r\n$7\r\nmessage\r\nend"
        x.pub("PUBLISH", A[1], big, T=2)
        # T: patterns and channels together, without arguments
        x.cmd("T", "PSUBSCRIBE", "psB*", "psS*", frames=2)
        x.unordered("T", "PUNSUBSCRIBE", frames=3)
        x.pub("PUBLISH", A[1], "m-a1-t", T=1)
        x.pub("PUBLISH", B[2], "m-b2-none")
        # RESET leaves subscribed mode (and, in RESP3, goes back to RESP2)
        x.cmd("S", "SUBSCRIBE", A[2], B[2], frames=2)
        x.cmd("S", "PSUBSCRIBE", "psB*", frames=1)
        x.cmd("S", "RESET")
        x.cmd("S", "GET", nokey)
        x.cmd("S", "PING")
        x.poll("P", b"*4\r\n$%d\r\n%s\r\n:0\r\n$%d\r\n%s\r\n:0\r\n"
               % (len(A[2]), A[2].encode(), len(B[2]), B[2].encode()),
               "PUBSUB", "NUMSUB", A[2], B[2])
        x.pub("PUBLISH", A[2], "m-after-reset")
        x.pub("PUBLISH", B[2], "m-after-reset")
        # QUIT while subscribed
        x.step()
        x.c["T"].send("QUIT")
        x.rec("T", ["QUIT"], show(x.c["T"].frame("QUIT")))
        x.rec("T", ["QUIT"], x.c["T"].eof(TIMEOUT))
        x.poll("P", b":0\r\n", "PUBSUB", "NUMPAT")
        x.poll("P", b"*0\r\n", "PUBSUB", "CHANNELS")
        x.poll("P", b"*0\r\n", "PUBSUB", "SHARDCHANNELS")
        x.pub("SPUBLISH", SH[1], "s-1-after-quit")
        # nothing else arrived anywhere
        for who in ("S", "P"):
            x.step()
            x.rec(who, ["<nothing more>"], x.c[who].quiet())
    except Fail as e:
        x.out.append(["ABORTED: %s" % e])
    for c in x.c.values():
        c.s.close()
    return x.out, failures


# ------------------------------------------------------------------ fanout

class Sub:
    def __init__(self, i, chans, pats):
        self.i, self.chans, self.pats = i, chans, pats
        self.buf, self.pos = bytearray(), 0
        self.next = {}  # (kind, pattern, channel) -> next seq expected
        self.got, self.errors = 0, []
        self.closed = False

    def want(self, ch):
        """The streams one PUBLISH to CH delivers to this subscriber."""
        out = [("message", b"", ch)] if ch in self.chans else []
        return out + [("pmessage", p, ch) for p in self.pats if fnmatch.fnmatchcase(ch, p)]

    def describe(self):
        parts = []
        if self.chans:
            parts.append("SUBSCRIBE " + " ".join(c.decode() for c in self.chans))
        if self.pats:
            parts.append("PSUBSCRIBE " + " ".join(p.decode() for p in self.pats))
        return "subscriber %d (%s)" % (self.i, "; ".join(parts))

    def consume(self):
        while True:
            try:
                r = parse(self.buf, self.pos)
            except ValueError as e:
                self.errors.append("not RESP: %s" % e)
                self.closed = True
                return
            if r is None:
                break
            v, self.pos = r
            self.take(v)
        if self.pos > 1 << 16:
            del self.buf[:self.pos]
            self.pos = 0

    def take(self, v):
        if (isinstance(v, list) and len(v) == 3 and v[0] == b"message"):
            key, payload = ("message", b"", v[1]), v[2]
        elif isinstance(v, list) and len(v) == 4 and v[0] == b"pmessage":
            key, payload = ("pmessage", v[1], v[2]), v[3]
        else:
            self.errors.append("unexpected frame %r" % (v,))
            return
        self.got += 1
        ch, _, seq = payload.rpartition(b":")
        want = self.next.get(key, 0)
        if ch != key[2] or not seq.isdigit() or int(seq) != want:
            if len(self.errors) < 5:
                self.errors.append("%s %s%s: expected payload %s:%d, got %r" % (
                    key[0], key[1].decode() + " " if key[1] else "", key[2].decode(),
                    key[2].decode(), want, payload))
            if seq.isdigit():
                want = int(seq)
        self.next[key] = want + 1


def fanout(port, conf, binary, nsubs, npub, batch):
    chans = [c.encode() for c in spread("fan", 6, conf, binary)]
    if conf:
        owners = route(conf, binary, [c.decode() for c in chans])
        print("channels: " + ", ".join("%s on %s" % (c.decode(), o[0])
                                       for c, o in zip(chans, owners)))
    subs = []
    for i in range(nsubs):
        if i % 10 == 0:
            s = Sub(i, [], [b"fan*"])
        elif i % 10 == 5:
            s = Sub(i, [chans[i % len(chans)]], [chans[(i + 1) % len(chans)] + b"*"])
        elif i % 3 == 0:
            s = Sub(i, [chans[i % len(chans)], chans[(i * 5 + 2) % len(chans)]], [])
            if s.chans[0] == s.chans[1]:
                s.chans.pop()
        else:
            s = Sub(i, [chans[i % len(chans)]], [])
        subs.append(s)
    # subscribe: every confirmation read before anything is published
    socks = []
    for s in subs:
        c = Conn("subscriber %d" % s.i, port)
        n = 0
        for cmd, args in (("SUBSCRIBE", s.chans), ("PSUBSCRIBE", s.pats)):
            if not args:
                continue
            c.send(cmd, *args)
            for a in args:
                n += 1
                f = c.frame("%s %s" % (cmd, " ".join(x.decode() for x in args)))
                want = b"*3\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n:%d\r\n" % (
                    len(cmd), cmd.lower().encode(), len(a), a, n)
                if f != want:
                    raise Fail("%s: %s %s confirmed %s, want %s" % (
                        s.describe(), cmd, a.decode(), escape(f), escape(want)))
        s.buf += c.r.buf
        c.s.setblocking(False)
        socks.append(c.s)
    seq = {c: 0 for c in chans}
    rnd = random.Random(7)
    plan = []
    for _ in range(npub):
        ch = chans[rnd.randrange(len(chans))]
        plan.append((ch, seq[ch]))
        seq[ch] += 1
    receivers = {c: sum(len(s.want(c)) for s in subs) for c in chans}
    expected = sum(receivers[ch] for ch, _ in plan)
    per_sub = [sum(seq[c] * len(s.want(c)) for c in chans) for s in subs]

    sel = selectors.DefaultSelector()
    for s, sock in zip(subs, socks):
        sel.register(sock, selectors.EVENT_READ, s)
    stop = threading.Event()
    fault = []

    def drain():
        try:
            while not stop.is_set():
                for key, _ in sel.select(0.05):
                    s = key.data
                    try:
                        d = key.fileobj.recv(1 << 18)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as e:
                        d = b""
                        s.errors.append("connection error: %s" % e)
                    if not d:
                        s.closed = True
                        sel.unregister(key.fileobj)
                        continue
                    s.buf += d
                    s.consume()
        except Exception as e:  # shown by the main thread
            fault.append(repr(e))
    t = threading.Thread(target=drain, daemon=True)
    t0 = time.monotonic()
    t.start()
    pub = Conn("publisher", port)
    bad_counts = []
    try:
        for start in range(0, npub, batch):
            part = plan[start:start + batch]
            pub.s.sendall(b"".join(enc("PUBLISH", ch, b"%s:%d" % (ch, n)) for ch, n in part))
            for k, (ch, n) in enumerate(part):
                f = pub.frame("PUBLISH %s (publish %d)" % (ch.decode(), start + k))
                if f != b":%d\r\n" % receivers[ch] and len(bad_counts) < 5:
                    bad_counts.append("PUBLISH %d to %s answered %s, want :%d (receivers)" % (
                        start + k, ch.decode(), escape(f), receivers[ch]))
        t_pub = time.monotonic() - t0
        # wait for the deliveries: fail when none progresses for TIMEOUT s
        last, last_t = -1, time.monotonic()
        while True:
            got = sum(s.got for s in subs)
            if got >= expected or fault or all(s.closed for s in subs):
                break
            if got != last:
                last, last_t = got, time.monotonic()
            elif time.monotonic() - last_t > TIMEOUT:
                break
            time.sleep(0.02)
        time.sleep(0.3)  # anything beyond the expected would show now
    finally:
        stop.set()
        t.join(5)
        pub.s.close()
        for sock in socks:
            sock.close()
    took = time.monotonic() - t0
    got = sum(s.got for s in subs)
    problems = list(bad_counts)
    if fault:
        problems.append("reader thread failed: %s" % fault[0])
    for s, want in zip(subs, per_sub):
        for e in s.errors:
            problems.append("%s: %s" % (s.describe(), e))
        if s.got != want:
            problems.append("%s: got %d messages, want %d%s" % (
                s.describe(), s.got, want, " (connection closed)" if s.closed else ""))
        elif s.closed:
            problems.append("%s: connection closed" % s.describe())
    for p in problems[:30]:
        print("FAIL " + p)
    if len(problems) > 30:
        print("FAIL ... and %d more" % (len(problems) - 30))
    print("fanout: %d subscribers, %d publishes over %d channels, %d messages delivered "
          "(%d expected), %.2f s (publishing %.2f s)"
          % (nsubs, npub, len(chans), got, expected, took, t_pub))
    return 1 if problems else 0


# ----------------------------------------------------------------- monitor

LINE = re.compile(rb'^\+(\d+)\.(\d{6}) \[(\d+) ([^\]]*)\] (.*)\r\n$', re.S)


def monitor(port, mapping):
    ids = sorted(set(mapping.values()))
    m = Conn("monitor", port)
    m.send("MONITOR")
    ok = m.frame("MONITOR")
    if ok != b"+OK\r\n":
        raise Fail("MONITOR answered %s, want +OK\\r\\n" % escape(ok))
    c = Conn("client", port)
    expect = []  # (db, id, args) in the order sent
    for n, (key, ident) in enumerate(sorted(mapping.items())):
        for args in (("set", key, "v%d" % n), ("get", key)):
            c.send(*args)
            c.frame(" ".join(args))
            expect.append((0, ident, args))
    for args in (("select", "3"),):
        c.send(*args)
        r = c.frame("select 3")
        if r != b"+OK\r\n":
            raise Fail("SELECT 3 answered %s" % escape(r))
    for key, ident in sorted(mapping.items()):
        for args in (("set", key, "db3"), ("del", key)):
            c.send(*args)
            c.frame(" ".join(args))
            expect.append((3, ident, args))
    c.send("select", "0")
    c.frame("select 0")
    for key in sorted(mapping):
        c.send("del", key)
        c.frame("del " + key)
        expect.append((0, mapping[key], ("del", key)))
    # read monitor lines until every expected one is seen
    problems, seen, pending = [], [], list(expect)
    last_ts = {}
    deadline = time.monotonic() + TIMEOUT
    m.s.settimeout(0.2)
    while pending and time.monotonic() < deadline:
        try:
            f = m.r.raw()
        except socket.timeout:
            continue
        except (EOFError, OSError) as e:
            problems.append("monitor connection lost: %s" % e)
            break
        except ValueError as e:
            problems.append("monitor stream is not RESP: %s" % e)
            break
        seen.append(f)
        g = LINE.match(f)
        if not g:
            problems.append("not a monitor line: %s" % escape(f))
            continue
        tag = g.group(4).decode(errors="replace")
        ident, slash, addr = tag.rpartition("/")
        if ids == ["-"]:
            ident, addr = "-", tag
        elif not slash or ident not in ids:
            problems.append("line without a known backend tag (%s): %s"
                            % (", ".join(ids), escape(f)))
            ident = None
        if ident is not None:
            if not re.match(r"^(\d+\.\d+\.\d+\.\d+|\[[0-9a-f:]+\]|[0-9a-f:]+):\d+$"
                            r"|^lua$|^unix:", addr):
                problems.append("tag %r: %r is not the backend's client address" % (tag, addr))
            ts = int(g.group(1)) * 10**6 + int(g.group(2))
            if ts < last_ts.get(ident, 0):
                problems.append("backend %s's lines out of order: %s" % (ident, escape(f)))
            last_ts[ident] = ts
        words = re.findall(rb'"((?:[^"\\]|\\.)*)"', g.group(5))
        for k, (db, want_id, args) in enumerate(pending):
            if (len(words) == len(args) and words[0].lower() == args[0].encode()
                    and [w for w in words[1:]] == [a.encode() for a in args[1:]]):
                if ident is not None and (db != int(g.group(3)) or want_id != ident):
                    problems.append("%s: tagged [%s %s], want [%d %s/...]: %s" % (
                        " ".join(args), g.group(3).decode(), tag, db, want_id, escape(f)))
                if k != 0 and any(p[1] == ident for p in pending[:k]):
                    problems.append("%s seen before earlier commands on %s: %s"
                                    % (" ".join(args), ident, escape(f)))
                del pending[k]
                print("%-40s %s" % (" ".join(args) + " (db %d)" % db, escape(f)))
                break
    for db, ident, args in pending:
        problems.append("no monitor line for %s (db %d, backend %s) within %g s"
                        % (" ".join(args), db, ident, TIMEOUT))
    m.s.close()
    c.s.close()
    for p in problems[:20]:
        print("FAIL " + p)
    print("monitor: %d commands, %d lines read, %d found, %d problems"
          % (len(expect), len(seen), len(expect) - len(pending), len(problems)))
    return 1 if problems else 0


# -------------------------------------------------------------------- hold

def hold(port, ready, proto, cmds):
    deadline = time.monotonic() + 120
    c = Conn("hold", port)

    def out(text):
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    if proto == 3:
        c.send("HELLO", "3")
        c.frame("HELLO 3")
    for cmd in cmds:
        c.send(*cmd)
        n = len(cmd) - 1 if cmd[0].upper() in ("SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE") else 1
        for _ in range(n):
            f = c.frame(" ".join(cmd))
            out(escape(f))
            if f.startswith(b"-"):
                out("FAIL %s: %s" % (" ".join(cmd), escape(f)))
                open(ready, "w").close()
                return 1
    open(ready, "w").close()
    c.s.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            while c.r.buf and parse(c.r.buf) is not None:
                out(escape(c.r.raw()))
            c.r.fill()
        except socket.timeout:
            continue
        except EOFError:
            out("<EOF>" + (" after " + escape(c.r.buf) if c.r.buf else ""))
            return 0
        except ConnectionResetError:
            out("<RESET>")
            return 0
        except OSError as e:
            out("FAIL connection error: %s" % e)
            return 1
    out("<TIMEOUT>")
    return 1


# -------------------------------------------------------------------- main

def opt(args, name, default=None):
    if name in args:
        i = args.index(name)
        if i + 1 >= len(args):
            raise Fail("%s needs a value" % name)
        v = args[i + 1]
        del args[i:i + 2]
        return v
    return default


def main(argv):
    args = argv[1:]
    if not args:
        sys.stdout.write(__doc__)
        return 2
    mode = args.pop(0)
    conf = opt(args, "--conf")
    binary = opt(args, "--bin", os.path.join(HERE, "..", "shardproxy"))
    if mode == "script":
        steps, bad = script(int(args[0]), int(args[1]), conf, binary, probe=bool(conf))
        for line in (x for st in steps for x in st):
            print(line)
        return 1 if bad or any(x.startswith("ABORTED") for st in steps for x in st) else 0
    if mode == "diff":
        pport, rport, proto = int(args[0]), int(args[1]), int(args[2])
        via, bad = script(pport, proto, conf, binary, probe=bool(conf))
        direct, _ = script(rport, proto, conf, binary)
        mism = 0
        for k in range(max(len(via), len(direct))):
            x = via[k] if k < len(via) else ["<missing step %d>" % (k + 1)]
            y = direct[k] if k < len(direct) else ["<missing step %d>" % (k + 1)]
            if x == y:
                for line in x:
                    print("   " + line)
            else:
                for line in x:
                    print("XX " + line)
                for line in y:
                    print("   redis: " + line)
                mism += 1
        print("RESP%d: %d steps, %d mismatches%s" % (
            proto, len(direct), mism, ", %d placement failures" % len(bad) if bad else ""))
        return 1 if mism or bad else 0
    if mode == "fanout":
        n = int(opt(args, "--subscribers", 100))
        p = int(opt(args, "--publishes", 10000))
        b = int(opt(args, "--batch", 500))
        return fanout(int(args[0]), conf, binary, n, p, b)
    if mode == "monitor":
        mapping = {}
        for a in args[1:]:
            k, sep, v = a.rpartition("=")
            if not sep:
                raise Fail("monitor: %r is not KEY=ID" % a)
            mapping[k] = v
        if not mapping:
            raise Fail("monitor: no KEY=ID given")
        return monitor(int(args[0]), mapping)
    if mode == "hold":
        port, ready = int(args[0]), args[1]
        proto = int(opt(args, "--proto", 2))
        cmds, cur = [], []
        for a in args[2:]:
            if a == "+":
                cmds.append(cur)
                cur = []
            else:
                cur.append(a)
        if cur:
            cmds.append(cur)
        return hold(port, ready, proto, cmds)
    sys.stdout.write(__doc__)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except Fail as e:
        print("FAIL %s" % e)
        sys.exit(1)
    except (IndexError, ValueError) as e:
        print("pubsub_check.py: bad arguments (%s); usage:" % e)
        sys.stdout.write(__doc__)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
