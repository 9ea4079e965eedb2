#!/usr/bin/env python3
"""clients_py.py -- redis-py against shardproxy (or any Redis), used as an
application would use it: redis.Redis(host, port), default options.

Usage: python3 test/clients_py.py HOST PORT [--direct-backend HOST:PORT]...

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

Checks run with the defaults (label redis-py) and, when this redis-py has
RESP3 (5.0+), again with protocol=3 (label redis-py-resp3).  One line per
check, `ok LIB CHECK` or `FAIL LIB CHECK: ERROR`; `#` lines are notes.  Exit
0 all passed, 1 some failed, 2 usage or the 20 s limit hit.
"""

import os
import signal
import sys
import time

import redis

GLOBAL_S = 20
SCAN_N = 500


def usage():
    sys.stderr.write("usage: clients_py.py HOST PORT [--direct-backend HOST:PORT]...\n")
    sys.exit(2)


def parse_args(argv):
    if len(argv) < 2 or not argv[1].isdigit():
        usage()
    host, port, direct = argv[0], int(argv[1]), []
    rest = argv[2:]
    while rest:
        if rest[0] != "--direct-backend" or len(rest) < 2 or ":" not in rest[1]:
            usage()
        h, _, p = rest[1].rpartition(":")
        if not p.isdigit():
            usage()
        direct.append((h, int(p)))
        rest = rest[2:]
    return host, port, direct


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


def run_suite(lib, host, port, direct, extra):
    """All checks with redis.Redis(host, port, **extra); returns the failures."""
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
    host, port, direct = parse_args(sys.argv[1:])

    def too_long(_sig, _frame):
        print(f"FAIL redis-py global-timeout: not finished within {GLOBAL_S} s", flush=True)
        os._exit(2)
    signal.signal(signal.SIGALRM, too_long)
    signal.alarm(GLOBAL_S)

    fails = run_suite("redis-py", host, port, direct, {})
    if version_tuple(redis.__version__) >= (5, 0, 0):
        fails += run_suite("redis-py-resp3", host, port, direct, {"protocol": 3})
    else:
        print(f"# redis-py {redis.__version__} has no RESP3 (protocol=3 came with 5.0):"
              " the RESP3 checks are not run", flush=True)
    signal.alarm(0)
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
