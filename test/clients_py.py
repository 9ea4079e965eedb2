#!/usr/bin/env python3
"""clients_py.py -- redis-py against shardproxy (or any Redis), used as an
application would use it: redis.Redis(host, port), default options.

Usage: python3 test/clients_py.py HOST PORT [--direct-backend HOST:PORT]...
                                  [--checks GROUP[,GROUP...]]

GROUPs: compat (the default: the checks below), pubsub, monitor, or all.

Run it with /usr/bin/python3 (Debian's python3-redis).  Each --direct-backend
is a backend behind the proxy, asked directly (with redis-py too) where a check
needs to see where data landed: the db 1 key is in db 1 of exactly one of them
and in db 0 of none; before the script-after-flush check their script caches
are flushed, so the NOSCRIPT fallback is exercised even when the proxy does not
pass SCRIPT FLUSH on.

What redis-py sends on connect (4.3.4, Debian bookworm's; read from
redis/connection.py on_connect and seen on the wire): nothing for db 0 without
a password or client name (no HELLO, no CLIENT SETINFO: those came with 5.0);
`SELECT n` for db=n.  redis-py 5.0+ also sends CLIENT SETINFO LIB-NAME /
LIB-VER (errors ignored), and `HELLO 3` with protocol=3.

register_script: EVALSHA; on NOSCRIPT it sends SCRIPT LOAD and EVALSHA again
(never EVAL).  Lock.release runs such a registered script.

pubsub (redis-py's PubSub, as an application uses it): r.pubsub(), SUBSCRIBE
of two channels, then seven more (eight P:c:N names and P:p:both: over three
backends they land on more than one), PSUBSCRIBE of P:p:*; the subscribe
confirmations with their counts, as get_message returns them; PUBSUB CHANNELS
/ NUMSUB / NUMPAT; three rounds of PUBLISH from the main client (receiver
counts checked), all of it read back with get_message(timeout=...): every
message once, with its type, pattern, channel and data, in publish order
(`pubsub-messages` checks per channel order, `pubsub-order` each
channel's message and pmessage together; channels on different backends
may interleave through the proxy); PING in subscribed mode (RESP2: a pong message); run_in_thread
with handlers; a partial UNSUBSCRIBE/PUNSUBSCRIBE (their counts, nothing
delivered for what was left); UNSUBSCRIBE of everything.  With a
--direct-backend, also a resubscribe: CLIENT KILL TYPE pubsub on each direct
backend (the proxy must then close the subscriber's client connection);
get_message raises ConnectionError once, reconnects, subscribes again, and
messages flow again.

monitor: `with r.monitor() as m:` (its client has socket_timeout=5, so a
stream that says nothing fails instead of hanging), SETs of twelve keys (several
backends) and one in db 1 from other clients, each found by next_command()
with its db, a tcp client address, a numeric port and the command text
(values with spaces and a double quote).  Through the proxy the address field
is `BACKEND-ID/ip:port`; redis-py's parse (rsplit on the last ':') must still
give a numeric port.

Checks run with the defaults (label redis-py) and, when this redis-py has
RESP3 (5.0+), again with protocol=3 (label redis-py-resp3).  One line per
check, `ok LIB CHECK` or `FAIL LIB CHECK: ERROR`; `#` lines are notes.  Exit
0 all passed, 1 some failed, 2 usage or the 20 s limit hit.
"""

import os
import signal
import sys
import threading
import time

import redis

GLOBAL_S = 30
SCAN_N = 500
GROUPS = ("compat", "pubsub", "monitor")
WAIT_S = 3.0  # for pub/sub messages and MONITOR lines to arrive


def usage():
    sys.stderr.write("usage: clients_py.py HOST PORT [--direct-backend HOST:PORT]..."
                     " [--checks compat|pubsub|monitor|all[,...]]\n")
    sys.exit(2)


def parse_args(argv):
    if len(argv) < 2 or not argv[1].isdigit():
        usage()
    host, port, direct, groups = argv[0], int(argv[1]), [], None
    rest = argv[2:]
    while rest:
        if rest[0] == "--checks" and len(rest) >= 2:
            names = rest[1].split(",")
            if "all" in names:
                names = list(GROUPS)
            if not names or any(n not in GROUPS for n in names):
                usage()
            groups = (groups or []) + names
            rest = rest[2:]
            continue
        if rest[0] != "--direct-backend" or len(rest) < 2 or ":" not in rest[1]:
            usage()
        h, _, p = rest[1].rpartition(":")
        if not p.isdigit():
            usage()
        direct.append((h, int(p)))
        rest = rest[2:]
    return host, port, direct, groups or ["compat"]


def version_tuple(v):
    out = []
    for part in v.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits or 0))
    return tuple(out)


class Runner:
    def __init__(self, lib):
        self.lib = lib
        self.fails = 0

    def check(self, name, fn):
        try:
            fn()
        except Exception as e:  # noqa: BLE001 -- any failure is reported
            self.fails += 1
            msg = " ".join(f"{type(e).__name__}: {e}".split())
            print(f"FAIL {self.lib} {name}: {msg}", flush=True)
            return False
        print(f"ok {self.lib} {name}", flush=True)
        return True


def eq(got, want, what):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


def run_suite(lib, host, port, direct, extra, groups=("compat",)):
    """The checks of GROUPS with redis.Redis(host, port, **extra); returns the failures."""
    if "compat" not in groups:
        return run_groups(lib, host, port, direct, extra, groups)
    fails = run_compat(lib, host, port, direct, extra)
    return fails + run_groups(lib, host, port, direct, extra, [g for g in groups if g != "compat"])


def run_groups(lib, host, port, direct, extra, groups):
    """The pubsub and monitor groups (as asked) with one set of clients."""
    if not groups:
        return 0
    t = Runner(lib)
    run = f"{os.getpid()}.{int(time.time() * 1000):x}"
    clients = []

    def client(h, pt, **kw):
        c = redis.Redis(h, pt, **extra, **kw)
        clients.append(c)
        return c

    r = client(host, port)
    directs = [(f"{h}:{pt}", client(h, pt)) for h, pt in direct]
    try:
        if not t.check("connect", lambda: eq(r.ping(), True, "PING")):
            t.fails += 1
            print(f"FAIL {lib} remaining-checks: not run, no connection", flush=True)
            return t.fails
        if "pubsub" in groups:
            pubsub_checks(t, lib, r, f"pubsub:{lib}:{run}", directs, extra.get("protocol") == 3)
        if "monitor" in groups:
            monitor_checks(t, lib, host, port, extra, client, f"monitor:{lib}:{run}")
    finally:
        for c in clients:
            try:
                c.connection_pool.disconnect()
            except Exception:  # noqa: BLE001
                pass
    return t.fails


def read_messages(ps, want_n, what, timeout=WAIT_S):
    """get_message(timeout=...) until WANT_N messages (then a moment for
    strays) or TIMEOUT; returns them as (type, pattern, channel, data) tuples
    (bytes decoded)."""
    out = []
    deadline = time.monotonic() + timeout
    grace = None
    while True:
        now = time.monotonic()
        if len(out) >= want_n and grace is None:
            grace = now + 0.15
        end = grace if grace is not None else deadline
        if now >= end:
            break
        m = ps.get_message(timeout=min(0.2, end - now))
        if m is None:
            continue
        dec = lambda v: v.decode() if isinstance(v, bytes) else v  # noqa: E731
        out.append((m["type"], dec(m["pattern"]), dec(m["channel"]), dec(m["data"])))
    if len(out) < want_n:
        raise AssertionError(f"{what}: {len(out)} of {want_n} messages within {timeout} s"
                             f"{f' (last: {out[-1]})' if out else ''}")
    return out


def same_messages(got, want, what):
    """Every message of WANT once, nothing else; in order per (type, pattern, channel)."""
    missing = [m for m in want if m not in got]
    extra = [m for m in got if m not in want]
    dup = [m for i, m in enumerate(got) if m in got[:i]]
    if missing or extra or dup:
        raise AssertionError(
            f"{what}: {len(got)} messages, {len(want)} expected: {len(missing)} missing"
            f"{f' (e.g. {missing[:2]})' if missing else ''}, {len(extra)} unexpected"
            f"{f' (e.g. {extra[:2]})' if extra else ''}, {len(dup)} duplicated"
            f"{f' (e.g. {dup[0]})' if dup else ''}")
    for k in {m[:3] for m in want}:
        eq([m for m in got if m[:3] == k], [m for m in want if m[:3] == k], f"{what}: order of {k}")


def until(fn, what, timeout=WAIT_S):
    """Poll FN until it returns True; raise WHAT with its last note after TIMEOUT."""
    deadline = time.monotonic() + timeout
    note = ""
    while True:
        res = fn()
        if res is True:
            return
        note = res or note
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} (after {timeout} s{f': {note}' if note else ''})")
        time.sleep(0.025)


def pubsub_checks(t, lib, r, p, directs, resp3=False):
    chans = [f"{p}:c:{i}" for i in range(8)]
    both = f"{p}:p:both"
    pattern = f"{p}:p:*"
    pchans = [f"{p}:p:{i}" for i in range(6)]
    st = {"c": set(), "p": False}
    ps = r.pubsub()
    try:  # PUBSUB NUMPAT counts every client's patterns: compared with this
        numpat0, numpat0_err = r.pubsub_numpat(), ""
    except redis.RedisError as e:
        numpat0, numpat0_err = None, " ".join(f"{type(e).__name__}: {e}".split())

    def numpat_delta():
        if numpat0 is None:
            raise AssertionError(f"PUBSUB NUMPAT before the PSUBSCRIBE failed: {numpat0_err}")
        return r.pubsub_numpat() - numpat0
    plan = []
    for i in range(8):
        plan.append(chans[i])
        if i < 6:
            plan.append(pchans[i])
        if i == 3:
            plan.append(both)

    def expected(tag):
        """(messages a subscriber of ST gets, receiver counts) for PLAN published with TAG"""
        msgs, counts = [], []
        for ch in plan:
            data = f"{tag}:{ch}"
            n = 0
            if ch in st["c"]:
                msgs.append(("message", None, ch, data))
                n += 1
            if st["p"] and ch.startswith(f"{p}:p:"):
                msgs.append(("pmessage", pattern, ch, data))
                n += 1
            counts.append(n)
        return msgs, counts

    def publish(tag):
        return [r.publish(ch, f"{tag}:{ch}") for ch in plan]

    def subscribe():
        ps.subscribe(chans[0], chans[1])  # the two channels, then the rest
        ps.subscribe(*chans[2:], both)
        ps.psubscribe(pattern)
        got = read_messages(ps, 10, "subscribe confirmations")
        want = [("subscribe", None, ch, i + 1) for i, ch in enumerate(chans + [both])]
        want.append(("psubscribe", None, pattern, 10))
        eq(got, want, "subscribe confirmations (type, pattern, channel, count)")
        st["c"].update(chans + [both])
        st["p"] = True
    if not t.check("pubsub-subscribe", subscribe):
        t.fails += 1
        print(f"FAIL {lib} pubsub-remaining-checks: not run, SUBSCRIBE failed", flush=True)
        ps.close()
        return

    def introspection():
        eq(sorted(c.decode() for c in r.pubsub_channels(f"{p}:*")), sorted(st["c"]), f"PUBSUB CHANNELS {p}:*")
        eq(r.pubsub_channels(f"{p}:nothing:*"), [], "PUBSUB CHANNELS of a pattern nothing matches")
        eq(r.pubsub_numsub(chans[0], chans[5], both, f"{p}:none"),
           [(chans[0].encode(), 1), (chans[5].encode(), 1), (both.encode(), 1), (f"{p}:none".encode(), 0)],
           "PUBSUB NUMSUB")
        eq(numpat_delta(), 1, "PUBSUB NUMPAT, less its value before the PSUBSCRIBE")
    t.check("pubsub-introspection", introspection)

    rounds = {}

    def do_publish():
        want, counts, wc = [], [], []
        for rnd in (1, 2, 3):
            m, c = expected(f"r{rnd}")
            want += m
            wc += c
            counts += publish(f"r{rnd}")
        rounds["want"] = want
        eq(counts, wc, "PUBLISH receiver counts")
    t.check("pubsub-publish", do_publish)

    def messages():
        if "want" not in rounds:
            raise AssertionError("nothing published")
        rounds["got"] = read_messages(ps, len(rounds["want"]), "get_message")
        same_messages(rounds["got"], rounds["want"], "get_message")
    t.check("pubsub-messages", messages)

    def order():
        # each channel's events (its message and pmessage both) in publish
        # order; channels on different backends may interleave as they
        # arrive (one Redis would keep even those in publish order)
        if "got" not in rounds:
            raise AssertionError("no messages read")
        for ch in sorted({w[2] for w in rounds["want"]}):
            g = [m for m in rounds["got"] if m[2] == ch]
            w = [m for m in rounds["want"] if m[2] == ch]
            if g != w:
                raise AssertionError(f"channel {ch} not in publish order: got {g}, want {w}")
    t.check("pubsub-order", order)

    def ping():
        if resp3:  # RESP3 answers a plain PONG; redis-py 5's handling of it is not pinned here
            print(f"# {lib} pubsub-ping: RESP3, not checked", flush=True)
            return
        ps.ping()
        got = read_messages(ps, 1, "the PING reply")
        eq(got, [("pong", None, None, "")], "PING in subscribed mode (RESP2: [pong, ''])")
    t.check("pubsub-ping", ping)

    def in_thread():
        seen = []
        lock = threading.Lock()

        def handler(m):
            if m["data"] == b"probe":
                return
            with lock:
                seen.append((m["type"], m["channel"].decode(), m["data"].decode()))
        tch = [f"{p}:t:{i}" for i in range(6)]
        tps = r.pubsub()
        tps.subscribe(**{c: handler for c in tch})
        thread = tps.run_in_thread(sleep_time=0.05, daemon=True)
        try:
            # probes until the thread's SUBSCRIBE took (PUBLISH answers 1 receiver)
            until(lambda: all(r.publish(c, "probe") == 1 for c in tch) or "not all subscribed yet",
                  "the thread's SUBSCRIBE did not take")
            counts = [r.publish(c, f"t{i}") for i, c in enumerate(tch)]
            eq(counts, [1] * 6, "PUBLISH receiver counts")
            until(lambda: len(seen) >= 6 or f"{len(seen)} of 6 messages", "the handler did not get every message")
            with lock:
                eq(sorted(seen), sorted(("message", c, f"t{i}") for i, c in enumerate(tch)), "the handler's messages")
        finally:
            thread.stop()
            thread.join(2)
        if thread.is_alive():
            raise AssertionError("run_in_thread's thread did not stop within 2 s")
        until(lambda: all(r.publish(c, "probe") == 0 for c in tch) or "still subscribed",
              "the thread's connection was closed, but its subscriptions stay")
    t.check("pubsub-run-in-thread", in_thread)

    def partial():
        gone = chans[:4]
        ps.unsubscribe(*gone)
        ps.punsubscribe(pattern)
        st["c"].difference_update(gone)
        st["p"] = False
        got = read_messages(ps, 5, "unsubscribe confirmations")
        want = [("unsubscribe", None, ch, 9 - i) for i, ch in enumerate(gone)]  # 10 subscriptions before
        want.append(("punsubscribe", None, pattern, 5))
        eq(got, want, "unsubscribe confirmations (type, pattern, channel, count)")
        want, wc = expected("after")
        eq(publish("after"), wc, "PUBLISH receiver counts after it")
        eq(r.publish(chans[7], "end"), 1, "PUBLISH of an end marker")
        want.append(("message", None, chans[7], "end"))
        same_messages(read_messages(ps, len(want), "get_message after it"), want, "get_message after it")
    t.check("pubsub-partial-unsubscribe", partial)

    def after_partial():
        eq(sorted(c.decode() for c in r.pubsub_channels(f"{p}:*")), sorted(st["c"]), "PUBSUB CHANNELS")
        eq(r.pubsub_numsub(chans[0], chans[7]), [(chans[0].encode(), 0), (chans[7].encode(), 1)],
           "PUBSUB NUMSUB c:0 c:7")
        eq(numpat_delta(), 0, "PUBSUB NUMPAT after PUNSUBSCRIBE, less its value before")
    t.check("pubsub-introspection-after-partial-unsubscribe", after_partial)

    def unsubscribe_all():
        left = sorted(st["c"])
        ps.unsubscribe()
        st["c"].clear()
        got = read_messages(ps, len(left), "unsubscribe confirmations")
        eq(sorted(m[2] for m in got), left, "channels the UNSUBSCRIBE of everything confirmed")
        eq(sorted(m[3] for m in got), list(range(len(left))), "their counts")
        eq([m for m in got if m[0] != "unsubscribe"], [], "confirmations of another type")
        eq(r.publish(chans[7], "late"), 0, "PUBLISH to a channel no one has now")
    t.check("pubsub-unsubscribe-all", unsubscribe_all)

    def after_all():
        eq(r.pubsub_channels(f"{p}:*"), [], "PUBSUB CHANNELS")
        eq(r.pubsub_numsub(chans[7]), [(chans[7].encode(), 0)], "PUBSUB NUMSUB c:7")
    t.check("pubsub-introspection-after-unsubscribe-all", after_all)
    ps.close()

    if not directs:
        print(f"# {lib} pubsub-resubscribe: not run (no --direct-backend)", flush=True)
        return

    def resubscribe():
        ch = chans[2]
        rps = r.pubsub()
        try:
            rps.subscribe(ch)
            rps.psubscribe(pattern)
            eq(read_messages(rps, 2, "subscribe confirmations"),
               [("subscribe", None, ch, 1), ("psubscribe", None, pattern, 2)], "subscribe confirmations")
            killed = sum(d0.client_kill_filter(_type="pubsub") for _, d0 in directs)
            if killed < 1:
                raise AssertionError(f"CLIENT KILL TYPE pubsub on {len(directs)} server(s) killed no connection")
            errors, msgs = 0, []
            deadline = time.monotonic() + WAIT_S
            while time.monotonic() < deadline and len(msgs) < 2:
                try:
                    m = rps.get_message(timeout=0.2)
                except redis.ConnectionError:
                    errors += 1  # once: then the next call reconnects and resubscribes
                    continue
                if m is not None:
                    msgs.append((m["type"], m["channel"].decode(), m["data"]))
            eq(sorted(msgs), [("psubscribe", pattern, 2), ("subscribe", ch, 1)], "confirmations after the reconnect")
            if errors > 1:
                raise AssertionError(f"{errors} ConnectionErrors from get_message, want at most 1")
            eq(r.publish(ch, "again"), 1, "PUBLISH after the resubscribe")
            eq(r.publish(pchans[4], "again"), 1, "PUBLISH to the pattern after the resubscribe")
            eq(read_messages(rps, 2, "messages after the resubscribe"),
               [("message", None, ch, "again"), ("pmessage", pattern, pchans[4], "again")],
               "messages after the resubscribe")
            print(f"# {lib} pubsub-resubscribe: {killed} connection(s) killed, {errors} ConnectionError(s)",
                  flush=True)
        finally:
            rps.close()
    t.check("pubsub-resubscribe", resubscribe)


def monitor_checks(t, lib, host, port, extra, client, p):
    keys = [f"{p}:k{i}" for i in range(12)]  # over 3 backends: surely on more than one
    vals = [f'v{i} with spaces and a "quote"' for i in range(12)]
    mc = redis.Redis(host, port, socket_timeout=5, **extra)  # its MONITOR connection

    def monitor():
        w = client(host, port)
        w1 = client(host, port, db=1)
        want = {f"SET {k} {v}": 0 for k, v in zip(keys, vals)}
        want[f"SET {p}:db1 one"] = 1
        found = {}
        with mc.monitor() as m:
            for k, v in zip(keys, vals):
                w.set(k, v)
            w1.set(f"{p}:db1", "one")
            deadline = time.monotonic() + WAIT_S
            other = 0
            while len(found) < len(want):
                if time.monotonic() >= deadline:
                    raise AssertionError(f"{len(found)} of {len(want)} commands seen within {WAIT_S} s"
                                         f" ({other} other lines); missing e.g. "
                                         f"{[c for c in want if c not in found][:1]}")
                cmd = m.next_command()  # socket_timeout=5: raises instead of hanging
                if cmd["command"] in want:
                    found[cmd["command"]] = cmd
                else:
                    other += 1
        addrs = set()
        for text, db in want.items():
            cmd = found[text]
            eq(cmd["db"], db, f"db of {text!r}")
            eq(cmd["client_type"], "tcp", f"client_type of {text!r}")
            if not cmd["client_port"].isdigit():
                raise AssertionError(f"client_port of {text!r}: {cmd['client_port']!r}, not a number")
            if abs(cmd["time"] - time.time()) > 60:
                raise AssertionError(f"time of {text!r}: {cmd['time']}, not now")
            addrs.add(cmd["client_address"])
        print(f"# {lib} monitor: client addresses seen: {' '.join(sorted(addrs))}", flush=True)
        w.delete(*keys)
        w1.delete(f"{p}:db1")
    try:
        t.check("monitor", monitor)
    finally:
        mc.connection_pool.disconnect()


def run_compat(lib, host, port, direct, extra):
    """The compat checks with redis.Redis(host, port, **extra); returns the failures."""
    t = Runner(lib)
    run = f"{os.getpid()}.{int(time.time() * 1000):x}"
    p = f"compat:{lib}:{run}"
    script_keys = [f"{p}:script:{i}" for i in range(6)]  # several backends
    one_key = f"-- compat {lib} {run} one key\n" \
        "redis.call('SET', KEYS[1], ARGV[1]) return redis.call('STRLEN', KEYS[1])"
    zero_key = f"-- compat {lib} {run} zero keys\nreturn 'hello ' .. ARGV[1]"
    clients = []

    def client(h, pt, **kw):
        c = redis.Redis(h, pt, **extra, **kw)
        clients.append(c)
        return c

    r = client(host, port)
    directs = [(f"{h}:{pt}", client(h, pt), client(h, pt, db=1)) for h, pt in direct]
    st = {}
    try:
        if not t.check("connect", lambda: eq(r.ping(), True, "PING")):
            t.fails += 1
            print(f"FAIL {lib} remaining-checks: not run, no connection", flush=True)
            return t.fails

        def set_get():
            eq(r.set(f"{p}:k", "v1"), True, "SET")
            eq(r.get(f"{p}:k"), b"v1", "GET")
        t.check("set-get", set_get)

        t.check("get-missing-none", lambda: eq(r.get(f"{p}:missing"), None, "GET of a missing key"))

        def db1():
            r1 = client(host, port, db=1)
            k = f"{p}:db1only"
            eq(r1.set(k, "one"), True, "SET in db 1")
            eq(r1.get(k), b"one", "GET in db 1")
            eq(r.get(k), None, "GET in db 0 of the key written in db 1")
            eq(r1.get(f"{p}:k"), None, "GET in db 1 of the key written in db 0")
            if directs:
                in1 = [a for a, _, d1 in directs if d1.get(k) == b"one"]
                in0 = [a for a, d0, _ in directs if d0.exists(k)]
                eq((len(in1), in0), (1, []),
                   "(backends holding it in db 1, backends holding it in db 0), asked directly")
            r1.delete(k)
        t.check("db1-isolation", db1)

        def script_one_key(tag):
            for rnd in (1, 2):  # 1: EVALSHA, NOSCRIPT, SCRIPT LOAD, EVALSHA; 2: EVALSHA
                for k in script_keys:
                    v = f"{tag}{rnd}-{k}"
                    eq(st["s1"](keys=[k], args=[v]), len(v), f"script on {k}, call {rnd}")
            eq(r.get(script_keys[0]), f"{tag}2-{script_keys[0]}".encode(), "GET of the key the script set")

        def script_zero_keys():
            eq(st["s0"](args=["one"]), b"hello one", "zero-key script, call 1")
            eq(st["s0"](args=["two"]), b"hello two", "zero-key script, call 2")

        def register():
            st["s1"] = r.register_script(one_key)
            st["s0"] = r.register_script(zero_key)
            script_one_key("r")
        t.check("script-one-key", register)
        st.setdefault("s1", r.register_script(one_key))
        st.setdefault("s0", r.register_script(zero_key))
        t.check("script-zero-keys", script_zero_keys)

        t.check("script-flush", lambda: eq(r.script_flush(), True, "SCRIPT FLUSH"))

        def after_flush():
            for a, d0, _ in directs:
                eq(d0.script_flush(), True, f"SCRIPT FLUSH on {a} directly")
            script_one_key("f")  # the first EVALSHA of each gets NOSCRIPT
        t.check("script-after-flush", after_flush)
        t.check("script-zero-keys-after-flush", script_zero_keys)

        def lock():
            name = f"{p}:lock"
            lk = r.lock(name, timeout=10)
            eq(lk.acquire(blocking=False), True, "acquire")
            eq(r.get(name), lk.local.token, "the lock key holds the token")
            eq(r.lock(name, timeout=10).acquire(blocking=False), False, "a second acquire while held")
            lk.release()  # the release script: EVALSHA (after the flush: NOSCRIPT, SCRIPT LOAD)
            eq(r.exists(name), 0, "the lock key after release")
            lk2 = r.lock(name, timeout=10)
            eq(lk2.acquire(blocking=False), True, "acquire again after release")
            lk2.release()
        t.check("lock-acquire-release", lock)

        def scan():
            pl = r.pipeline(transaction=False)
            for i in range(SCAN_N):
                pl.set(f"{p}:scan:{i}", str(i))
            res = pl.execute()
            eq(res.count(True), SCAN_N, "SETs of the keys")
            want = {f"{p}:scan:{i}".encode() for i in range(SCAN_N)}
            total = 0
            seen = set()
            for k in r.scan_iter(match=f"{p}:scan:*", count=100):
                seen.add(k)
                total += 1
            missing, extra_keys = want - seen, seen - want
            if missing or extra_keys:
                raise AssertionError(
                    f"{len(seen)} distinct keys ({total} returned): {len(missing)} missing"
                    f" (e.g. {sorted(missing)[:3]}), {len(extra_keys)} not matching"
                    f" (e.g. {sorted(extra_keys)[:3]})")
        t.check("scan-iter", scan)

        def hgetall():
            r.hset(f"{p}:h", mapping={"f1": "v1", "f2": "v2", "n": 3})
            got = r.hgetall(f"{p}:h")
            eq(type(got), dict, "HGETALL reply type")
            eq(got, {b"f1": b"v1", b"f2": b"v2", b"n": b"3"}, "HGETALL")
            eq(r.hgetall(f"{p}:nohash"), {}, "HGETALL of a missing key")
        t.check("hgetall-dict", hgetall)

        def zset():
            eq(r.zadd(f"{p}:z", {"a": 1, "b": 2.5, "c": -3}), 3, "ZADD")
            eq(r.zrange(f"{p}:z", 0, -1, withscores=True),
               [(b"c", -3.0), (b"a", 1.0), (b"b", 2.5)], "ZRANGE WITHSCORES")
        t.check("zadd-zrange-withscores", zset)

        def multi():
            a, b = f"{{{p}}}:ma", f"{{{p}}}:mb"  # one hash tag: one backend
            pl = r.pipeline(transaction=True)
            pl.set(a, "x").incr(b).get(a)
            eq(pl.execute(), [True, 1, b"x"], "MULTI/EXEC replies")
        t.check("pipeline-transaction", multi)

        def pipeline():
            a, b = f"{p}:pa", f"{p}:pb"
            pl = r.pipeline(transaction=False)
            pl.set(a, "1").set(b, "2").mget(a, b).incr(a).get(f"{p}:missing")
            eq(pl.execute(), [True, True, [b"1", b"2"], 2, None], "pipeline replies")
        t.check("pipeline", pipeline)

        try:  # best effort: leave nothing behind
            keys = [f"{p}:{s}" for s in ("k", "h", "z", "pa", "pb", "lock")] + script_keys
            keys += [f"{{{p}}}:ma", f"{{{p}}}:mb"] + [f"{p}:scan:{i}" for i in range(SCAN_N)]
            r.delete(*keys)
        except redis.RedisError:
            pass
    finally:
        for c in clients:
            try:
                c.connection_pool.disconnect()
            except Exception:  # noqa: BLE001
                pass
    return t.fails


def main():
    host, port, direct, groups = parse_args(sys.argv[1:])

    def too_long(_sig, _frame):
        print(f"FAIL redis-py global-timeout: not finished within {GLOBAL_S} s", flush=True)
        os._exit(2)
    signal.signal(signal.SIGALRM, too_long)
    signal.alarm(GLOBAL_S)

    fails = run_suite("redis-py", host, port, direct, {}, groups)
    if version_tuple(redis.__version__) >= (5, 0, 0):
        fails += run_suite("redis-py-resp3", host, port, direct, {"protocol": 3}, groups)
    else:
        print(f"# redis-py {redis.__version__} has no RESP3 (protocol=3 came with 5.0):"
              " the RESP3 checks are not run", flush=True)
    signal.alarm(0)
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
