#!/usr/bin/env python3
"""watch_check.py -- WATCH through the proxy, as Redis runs it.

    watch_check.py diff PROXY_PORT REDIS_PORT PROTO   the same WATCH script
                         (two clients: one watches, the other writes) through
                         the proxy and straight at a redis-server, in RESP
                         PROTO (2 or 3); every reply must be the same bytes
    watch_check.py lost PORT KEY READY GO             WATCH KEY, touch READY,
                         wait for the file GO, then MULTI, SET KEY, EXEC;
                         print each reply (the backend is killed meanwhile)
    watch_check.py cas PORT CLIENTS ROUNDS            CLIENTS threads each add
                         1 to one counter ROUNDS times with WATCH/GET/MULTI/
                         SET/EXEC, retrying when EXEC says the key changed;
                         the counter must end at CLIENTS x ROUNDS exactly

The keys carry the hash tag {w}, so they live on one backend with several.
Prints one line per step (diff) or a summary (cas); exits 1 on a mismatch.
"""
import os
import sys
import threading
import time

from resp import connect, enc, escape, Reader  # test/resp.py

K, J, NOSUCH = "{w}k", "{w}j", "{w}nosuch"


def script(A, B):
    """The steps: A watches and runs transactions, B writes meanwhile."""
    A("FLUSHALL")
    A("SET", K, "1"); A("WATCH", K); B("SET", K, "2"); A("MULTI"); A("INCR", K); A("EXEC")
    A("GET", K)
    A("WATCH", K); A("MULTI"); A("INCR", K); A("EXEC")  # nobody wrote: it runs
    A("WATCH", K); A("UNWATCH"); B("SET", K, "5"); A("MULTI"); A("INCR", K); A("EXEC")
    A("WATCH", K); B("SET", K, "6"); A("MULTI"); A("EXEC")  # empty, but watched: null
    A("WATCH", K); A("MULTI"); A("EXEC")
    A("WATCH", K); A("MULTI"); A("DISCARD"); B("SET", K, "7"); A("MULTI"); A("INCR", K)
    A("EXEC")  # DISCARD unwatched
    A("WATCH", K, J); B("SET", J, "1"); A("MULTI"); A("GET", K); A("EXEC")
    A("WATCH", K); A("MULTI"); A("WATCH", "{w}x"); A("EXEC")
    A("WATCH", K); A("MULTI"); A("FOO"); A("EXEC"); B("SET", K, "8"); A("MULTI"); A("INCR", K)
    A("EXEC")  # the aborted EXEC unwatched
    A("WATCH", K); A("SET", K, "9"); A("MULTI"); A("INCR", K); A("EXEC")  # its own write
    A("WATCH", K); A("RESET"); B("SET", K, "10"); A("MULTI"); A("INCR", K); A("EXEC")
    A("WATCH", NOSUCH); B("SET", NOSUCH, "1"); B("DEL", NOSUCH); A("MULTI"); A("PING")
    A("EXEC")
    A("WATCH", K); A("WATCH", J); B("SET", J, "2"); A("MULTI"); A("EXEC")  # two WATCHes
    A("WATCH")


def record(port, proto):
    a, b = connect(port), connect(port)
    ra, rb = Reader(a), Reader(b)
    if proto == 3:
        for s, r in ((a, ra), (b, rb)):
            s.sendall(enc("HELLO", "3"))
            r.raw()
    out = []

    def step(who, s, r):
        def send(*args):
            s.sendall(enc(*args))
            out.append("%s %s -> %s" % (who, " ".join(args), escape(r.raw())))
        return send
    script(step("A", a, ra), step("B", b, rb))
    return out


def diff(pport, rport, proto):
    via, direct = record(pport, proto), record(rport, proto)
    bad = 0
    for x, y in zip(via, direct):
        if x == y:
            print("   " + x)
        else:
            print("XX %s\n   redis: %s" % (x, y))
            bad += 1
    print("%d steps, %d mismatches" % (len(via), bad))
    return 1 if bad or len(via) != len(direct) else 0


def cas(port, clients, rounds):
    s = connect(port)
    r = Reader(s)
    s.sendall(enc("SET", "{w}counter", "0"))
    r.raw()
    retries = [0] * clients
    errors = []

    def worker(i):
        c = connect(port, timeout=30)
        cr = Reader(c)

        def call(*args):
            c.sendall(enc(*args))
            return cr.reply()
        done = 0
        while done < rounds:
            call("WATCH", "{w}counter")
            v = int(call("GET", "{w}counter"))
            call("MULTI")
            call("SET", "{w}counter", v + 1)
            res = call("EXEC")
            if res is None:
                retries[i] += 1
            elif res == [b"+OK"]:
                done += 1
            else:
                errors.append(res)
                return
        c.close()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s.sendall(enc("GET", "{w}counter"))
    final = int(r.reply())
    print("%d clients x %d WATCH/MULTI/EXEC increments: counter %d, %d EXECs refused "
          "because the key changed, %d errors" % (clients, rounds, final, sum(retries),
                                                   len(errors)))
    return 0 if final == clients * rounds and not errors else 1


def lost(port, key, ready, go):
    s = connect(port, timeout=30)
    r = Reader(s)
    s.sendall(enc("WATCH", key))
    print(escape(r.raw()))
    open(ready, "w").close()
    deadline = time.monotonic() + 30
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.02)
    for args in (("MULTI",), ("SET", key, "x"), ("EXEC",)):
        s.sendall(enc(*args))
        print(escape(r.raw()))
    return 0


def main(argv):
    if argv[1] == "diff":
        return diff(int(argv[2]), int(argv[3]), int(argv[4]))
    if argv[1] == "lost":
        return lost(int(argv[2]), argv[3], argv[4], argv[5])
    return cas(int(argv[2]), int(argv[3]), int(argv[4]))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
