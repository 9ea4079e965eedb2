#!/usr/bin/env python3
"""proxy_tool.py -- the socket-level checks of test/proxy.bats.

    proxy_tool.py protocol_errors PORT
        each malformed request gets one -ERR Protocol error reply and the
        connection is closed; earlier requests on it are answered first; a
        bystander connection is not disturbed; "$3\\r\\nfoo" is two inline
        commands, as in Redis
    proxy_tool.py binary PORT BACKEND0 BACKEND1 BACKEND2 TABLE
        keys and values with CR LF, NUL, 0xff round-trip and land on the
        backend that TABLE (`shardproxy --table`) and the hash computed here
        give; a 32 MiB value round-trips
    proxy_tool.py transaction PORT KEY1 KEY2 KEY3
        (needs redis-py: run it with /usr/bin/python3 and python3-redis)
        KEY1 and KEY2 live on one backend, KEY3 on another.  redis-py's
        default pipeline, a MULTI/EXEC transaction, of SET KEY1 and INCR KEY2
        returns both results; one of SET KEY1 and INCR KEY3 raises as a whole
        and applies nothing; plain commands on the connection work after both
    proxy_tool.py txn_hold PORT BACKEND_PORT KEY OTHER
        nothing runs before EXEC: after MULTI and SET KEY have been answered
        (+OK, +QUEUED) the backend (BACKEND_PORT, straight) has no KEY, while
        another client's SET OTHER through the proxy is served at once; EXEC
        then answers [OK] and the backend has KEY
    proxy_tool.py txn_reload PORT PID KEY LOG
        a reload (SIGHUP to PID, then LOG says it was applied) between MULTI,
        SET KEY and EXEC: EXEC aborts (the backends may have moved) and KEY
        is not written; a transaction queued after the reload runs
    proxy_tool.py txn_atomic PORT KEY CLIENTS N
        CLIENTS connections each pipeline N transactions MULTI, INCR KEY,
        INCR KEY, EXEC, while a bystander runs plain INCRs on KEY: every EXEC
        answers two consecutive values (no other command ran inside the
        block on the shared backend connection), and KEY ends at the total

Prints "ok  ..." / "FAIL ..." per case; exit status 1 when any failed.
RESP and the key hash come from test/resp.py, the suites' one RESP client.
"""
import hashlib
import os
import socket
import sys
import time

from resp import Reader, connect, enc, slot


def protocol_errors(port):
    port = int(port)
    PE = b"-ERR Protocol error: "
    cases = [
        (b"*1\r\n$abc\r\n", PE + b"invalid bulk length\r\n"),
        (b"*-5\r\n", PE + b"invalid multibulk length\r\n"),
        (b"*1\r\n:1\r\n", PE + b"expected '$' before a request argument\r\n"),
        (b"*2\r\n$3\r\nGET\r\n+pk\r\n", PE + b"expected '$' before a request argument\r\n"),
        (b"*1\r\n$1000000000000\r\n", PE + b"invalid bulk length\r\n"),
        (b"*99999999999999\r\n", PE + b"invalid multibulk length\r\n"),
        (b"*1\r\n$4\r\nPINGxx\r\n", PE + b"bulk string not terminated by CRLF\r\n"),
        (b'SET "a b\r\n', PE + b"unbalanced quotes in request\r\n"),
        # earlier requests on the connection are answered first, in order
        (b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$2\r\npk\r\n*1\r\n$abc\r\n*1\r\n$4\r\nPING\r\n",
         b"+PONG\r\n$2\r\npv\r\n" + PE + b"invalid bulk length\r\n"),
    ]

    def read_n(s, n):
        got = b""
        while len(got) < n:
            c = s.recv(65536)
            if not c:
                break
            got += c
        return got

    fails = []
    by = socket.create_connection(("127.0.0.1", port), timeout=10)
    for i, (bad, want) in enumerate(cases):
        # the bystander has requests in flight while the bad client is cut off
        key = b"by:%d" % i
        by.sendall(enc(b"SET", key, b"v%d" % i))
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(bad)
        got, end = b"", "timeout (still open)"
        try:
            while True:
                c = s.recv(65536)
                if not c:
                    end = "EOF"
                    break
                got += c
        except socket.timeout:
            pass
        except ConnectionResetError:
            end = "RESET"
        s.close()
        by.sendall(enc(b"GET", key) + enc(b"PING"))
        bwant = b"+OK\r\n$%d\r\nv%d\r\n+PONG\r\n" % (len(b"v%d" % i), i)
        bgot = read_n(by, len(bwant))
        ok = got == want and end in ("EOF", "RESET")
        print("%s case %d: sent %r -> got %r then %s" % ("ok  " if ok else "FAIL", i, bad, got, end))
        if not ok:
            fails.append(i)
            print("     expected %r then EOF" % want)
        if bgot != bwant:
            print("FAIL bystander after case %d: expected %r, got %r" % (i, bwant, bgot))
            fails.append("by%d" % i)
    # "$3\r\nfoo\r\n" is not an array: two inline commands "$3" and "foo", as in Redis
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"$3\r\nfoo\r\n" + enc(b"PING"))
    want = (b"-ERR unknown command '$3', with args beginning with: \r\n"
            b"-ERR unknown command 'foo', with args beginning with: \r\n+PONG\r\n")
    got = read_n(s, len(want))
    print("%s inline '$3' 'foo': got %r" % ("ok  " if got == want else "FAIL", got))
    if got != want:
        fails.append("inline")
    return 1 if fails else 0


def binary(port, b0, b1, b2, table):
    port, backends = int(port), [int(b0), int(b1), int(b2)]
    idents = ["127.0.0.1:%d" % p for p in backends]
    slots = open(table).read().split("\n")[:-1]
    def owner(key):  # placement computed here, independently
        return idents.index(slots[slot(key, len(slots))])

    class Conn:
        def __init__(self, p):
            self.s = connect(p, timeout=30)
            self.r = Reader(self.s)
        def cmd(self, *a):
            self.s.sendall(enc(*a))
            return self.r.reply()

    fails = [0]
    def check(what, got, want):
        ok = got == want
        fails[0] += not ok
        g, w = repr(got), repr(want)
        print("%s %s: got %s%s" % ("ok  " if ok else "FAIL", what, g[:100], "" if ok else ", want " + w[:100]))

    pairs = [
        (b"bin\r\nkey", b"val\r\nue"),
        (b"nul\x00key\x00", b"\x00\x00\x00"),
        (b"\xff\xfe\xff", b"\xff" * 10 + b"\r\n$-1\r\n"),
        (b"\x00", b""),
        (b"*1\r\n$4\r\nPING\r\n", b"+OK\r\n"),
        (b"mix\r\n\x00\xff{t\x00g}", bytes(range(256))),
        (b"{t\x00g}other", b"same tag"),
    ]
    p = Conn(port)
    be = [Conn(b) for b in backends]
    for k, v in pairs:
        check("SET %r" % k, p.cmd(b"SET", k, v), b"+OK")
    for k, v in pairs:
        check("GET %r" % k, p.cmd(b"GET", k), v)
        want = owner(k)
        on = [i for i, c in enumerate(be) if c.cmd(b"EXISTS", k) == b":1"]
        check("%r only on backend %d" % (k, want), on, [want])
        check("%r value on the backend" % k, be[want].cmd(b"GET", k), v)
    check("MGET binary", p.cmd(b"MGET", *[k for k, _ in pairs]), [v for _, v in pairs])
    check("binary tags co-locate", owner(pairs[5][0]), owner(pairs[6][0]))

    big = os.urandom(32 << 20) + b"\r\n\x00end"
    key = b"big\x00value"
    check("SET 32 MiB", p.cmd(b"SET", key, big), b"+OK")
    got = p.cmd(b"GET", key)
    check("GET 32 MiB: length", len(got), len(big))
    check("GET 32 MiB: sha256", hashlib.sha256(got).hexdigest(), hashlib.sha256(big).hexdigest())
    check("STRLEN on its backend", be[owner(key)].cmd(b"STRLEN", key), b":%d" % len(big))
    check("PING after", p.cmd(b"PING"), b"+PONG")
    return 1 if fails[0] else 0


def _checker():
    fails = [0]

    def check(what, got, want):
        ok = got == want
        fails[0] += not ok
        print("%s %s: got %r%s" % ("ok  " if ok else "FAIL", what, got, "" if ok else ", want %r" % (want,)))
    return check, fails


def transaction(port, key1, key2, key3):
    import redis  # only this check needs redis-py

    check, fails = _checker()
    r = redis.Redis(port=int(port), socket_timeout=30)
    pipe = r.pipeline(transaction=True)
    pipe.set(key1, "v").incr(key2)
    check("pipeline(transaction=True), keys on one backend", pipe.execute(), [True, 1])
    check("its SET applied", r.get(key1), b"v")
    pipe = r.pipeline(transaction=True)
    pipe.set(key1, "w").incr(key3)
    try:
        got = "executed: %r" % (pipe.execute(),)
    except redis.exceptions.ResponseError as e:  # redis-py raises the first queue-time error
        got = type(e).__name__ + (": CROSSSLOT" if "same backend" in str(e) else ": %s" % e)
    check("pipeline(transaction=True), keys on two backends", got, "ResponseError: CROSSSLOT")
    check("its SET not applied", r.get(key1), b"v")
    check("its INCR not applied", r.exists(key3), 0)
    check("SET after", r.set(key1, "after"), True)
    check("GET after", r.get(key1), b"after")
    return 1 if fails[0] else 0


def txn_hold(port, backend_port, key, other):
    check, fails = _checker()
    a, direct, b = connect(int(port)), connect(int(backend_port)), connect(int(port))
    ra, rd, rb = Reader(a), Reader(direct), Reader(b)
    a.sendall(enc("MULTI") + enc("SET", key, "v"))
    check("MULTI", ra.reply(), b"+OK")
    check("SET queued", ra.reply(), b"+QUEUED")
    time.sleep(0.3)  # were it sent, it would have run by now
    direct.sendall(enc("EXISTS", key))
    check("on the backend before EXEC", rd.reply(), b":0")
    b.sendall(enc("SET", other, "o") + enc("GET", other))
    check("another client meanwhile: SET", rb.reply(), b"+OK")
    check("another client meanwhile: GET", rb.reply(), b"o")
    a.sendall(enc("EXEC"))
    check("EXEC", ra.reply(), [b"+OK"])
    direct.sendall(enc("GET", key))
    check("on the backend after EXEC", rd.reply(), b"v")
    return 1 if fails[0] else 0


def txn_reload(port, pid, key, log):
    import signal

    check, fails = _checker()
    s = connect(int(port))
    r = Reader(s)
    s.sendall(enc("MULTI") + enc("SET", key, "v"))
    check("MULTI", r.reply(), b"+OK")
    check("SET queued", r.reply(), b"+QUEUED")
    before = open(log, "rb").read().count(b"configuration reloaded")
    os.kill(int(pid), signal.SIGHUP)
    deadline = time.time() + 10
    while open(log, "rb").read().count(b"configuration reloaded") == before and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # with workers, the master logs before every worker has applied it
    s.sendall(enc("EXEC") + enc("EXISTS", key) + enc("MULTI") + enc("SET", key, "w") + enc("EXEC"))
    check("EXEC after a reload", r.reply(), b"-EXECABORT Transaction discarded: the proxy's "
          b"configuration was reloaded while it was queued")
    check("its SET not applied", r.reply(), b":0")
    check("the next MULTI", r.reply(), b"+OK")
    check("its SET queued", r.reply(), b"+QUEUED")
    check("its EXEC", r.reply(), [b"+OK"])
    return 1 if fails[0] else 0


def txn_atomic(port, key, clients, n):
    import threading

    clients, n = int(clients), int(n)
    bad, done = [], []

    def worker():
        s = connect(int(port))
        r = Reader(s)
        s.sendall(b"".join(enc("MULTI") + enc("INCR", key) + enc("INCR", key) + enc("EXEC")
                           for _ in range(n)))
        for _ in range(n):
            got = [r.reply() for _ in range(4)]
            ex = got[3]
            if got[:3] != [b"+OK", b"+QUEUED", b"+QUEUED"] or not isinstance(ex, list) or \
                    len(ex) != 2 or int(ex[1][1:]) != int(ex[0][1:]) + 1:
                bad.append(got)
        done.append(1)
        s.close()

    def bystander():
        s = connect(int(port))
        r = Reader(s)
        for _ in range(n):
            s.sendall(enc("INCR", key))
            if not r.reply().startswith(b":"):
                bad.append("bystander")
        s.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    threads.append(threading.Thread(target=bystander))
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    check, fails = _checker()
    check("transactions answered", len(done), clients)
    check("EXEC replies that are not two consecutive values", bad[:3], [])
    s = connect(int(port))
    s.sendall(enc("GET", key))
    check("final value", Reader(s).reply(), b"%d" % (2 * clients * n + n))
    return 1 if fails[0] else 0


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    sys.exit({"protocol_errors": protocol_errors, "binary": binary,
              "transaction": transaction, "txn_hold": txn_hold, "txn_reload": txn_reload,
              "txn_atomic": txn_atomic}[cmd](*args))
