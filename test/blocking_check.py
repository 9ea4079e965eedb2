#!/usr/bin/env python3
"""blocking_check.py -- blocking commands through the proxy, as Redis runs them.

    blocking_check.py served PORT            each blocking command, blocked,
                                             is served by a later write from
                                             another client; prints its reply
    blocking_check.py timeouts PORT          own timeouts honoured (within
                                             200 ms: Redis's own cron checks
                                             them every 100 ms), none cut
                                             short by the proxy's `timeout`
    blocking_check.py many PORT N            N clients blocked at once while
                                             another runs GETs; then each is
                                             served exactly its own value
    blocking_check.py hold PORT KEY READY    block on KEY forever (a PING
                                             pipelined behind); touch READY
                                             once sent, print the BLPOP reply

`served` prints one line per command, `NAME <escaped reply>`, so the same
run against a redis-server can be compared line for line (keys carry the
hash tag {b} where a command names two).  Exits 1 on a failed check.
"""
import select
import sys
import threading
import time

from resp import connect, enc, escape, Reader  # test/resp.py

failed = []


def check(ok, what):
    if not ok:
        print("FAIL " + what)
        failed.append(what)


def call(port, *args):
    s = connect(port)
    r = Reader(s)
    s.sendall(enc(*args))
    out = r.raw()
    s.close()
    return out


def blocked(port, args, write, delay=0.3):
    """ARGS sent on one connection; WRITE (a command) on another DELAY
    seconds later; the first's reply (its bytes), and whether it was still
    blocked (had no reply yet) when WRITE was sent."""
    s = connect(port, timeout=20)
    r = Reader(s)
    s.sendall(enc(*args))
    time.sleep(delay)
    still = not select.select([s], [], [], 0)[0]
    call(port, *write)
    out = r.raw()
    s.close()
    return out, still


SERVED = [
    ("blpop", ["BLPOP", "{b}q1", "{b}q2", "0"], ["RPUSH", "{b}q2", "x"]),
    ("brpop", ["BRPOP", "bq3", "5"], ["LPUSH", "bq3", "a", "b"]),
    ("brpoplpush", ["BRPOPLPUSH", "{b}src", "{b}dst", "0"], ["RPUSH", "{b}src", "v"]),
    ("blmove", ["BLMOVE", "{b}src2", "{b}dst2", "LEFT", "RIGHT", "0"], ["RPUSH", "{b}src2", "w"]),
    ("blmpop", ["BLMPOP", "0", "2", "{b}l1", "{b}l2", "RIGHT", "COUNT", "2"],
     ["RPUSH", "{b}l2", "p", "q", "r"]),
    ("bzpopmin", ["BZPOPMIN", "bz1", "0"], ["ZADD", "bz1", "2", "m"]),
    ("bzpopmax", ["BZPOPMAX", "bz2", "0"], ["ZADD", "bz2", "3", "n"]),
    ("bzmpop", ["BZMPOP", "0", "1", "bz3", "MAX"], ["ZADD", "bz3", "1", "a", "2", "b"]),
    ("xread", ["XREAD", "BLOCK", "0", "STREAMS", "bs1", "$"], ["XADD", "bs1", "5-1", "f", "v"]),
    ("xreadgroup", ["XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", "bs2", ">"],
     ["XADD", "bs2", "6-1", "f", "v"]),
]


def served(port):
    call(port, "XGROUP", "CREATE", "bs2", "g", "$", "MKSTREAM")
    for name, args, write in SERVED:
        out, still = blocked(port, args, write)
        check(still, "%s answered before the write: %s" % (name, escape(out)))
        print("%s %s" % (name, escape(out)))


def timeouts(port):
    for args, want_s in ((["BLPOP", "bt1", "0.5"], 0.5), (["BZPOPMIN", "bt2", "1.5"], 1.5),
                         (["XREAD", "BLOCK", "300", "STREAMS", "bt3", "0"], 0.3),
                         (["BLMPOP", "0.4", "1", "bt4", "LEFT"], 0.4)):
        s = connect(port, timeout=20)
        r = Reader(s)
        t0 = time.monotonic()
        s.sendall(enc(*args))
        out = r.raw()
        took = time.monotonic() - t0
        s.close()
        check(out in (b"*-1\r\n", b"_\r\n"), "%s: %r, not the null of a timeout" % (args[0], out))
        check(want_s - 0.01 <= took <= want_s + 0.2,
              "%s %s s: returned after %.3f s" % (args[0], want_s, took))
        print("%s %s s: %s after %.3f s" % (args[0], want_s, escape(out), took))


def many(port, n):
    conns = []
    for i in range(n):
        s = connect(port, timeout=30)
        s.sendall(enc("BLPOP", "many:%d" % i, "0"))
        conns.append((s, Reader(s)))
    # meanwhile, ordinary traffic on the shared connections is served
    g = connect(port)
    gr = Reader(g)
    t0 = time.monotonic()
    for i in range(200):
        g.sendall(enc("SET", "plain:%d" % i, i))
        gr.raw()
        g.sendall(enc("GET", "plain:%d" % i))
        check(gr.raw() == b"$%d\r\n%d\r\n" % (len(str(i)), i), "GET plain:%d while blocked" % i)
    print("400 SET/GET while %d clients are blocked: %.3f s" % (n, time.monotonic() - t0))
    g.sendall(enc("INFO", "backends"))
    info = gr.reply().decode()
    held = sum(int(f.split("=")[1]) for line in info.splitlines()
               for f in line.split(",") if f.startswith("dedicated="))
    check(held == n, "INFO backends: dedicated connections held %d, expected %d" % (held, n))
    print("dedicated connections held: %d" % held)
    for i in range(n):
        g.sendall(enc("RPUSH", "many:%d" % i, "v%d" % i))
        gr.raw()
    for i, (s, r) in enumerate(conns):
        want = b"*2\r\n$%d\r\nmany:%d\r\n$%d\r\nv%d\r\n" % (len("many:%d" % i), i,
                                                            len("v%d" % i), i)
        got = r.raw()
        check(got == want, "blocked client %d got %r" % (i, got))
        s.close()
    g.close()


def hold(port, key, ready):
    s = connect(port, timeout=60)
    r = Reader(s)
    # a PING pipelined behind: the proxy holds it unparsed while blocked,
    # and must still see this client leave
    s.sendall(enc("BLPOP", key, "0") + enc("PING"))
    open(ready, "w").close()
    try:
        print(escape(r.raw()))
    except (EOFError, OSError) as e:
        print("<%s>" % type(e).__name__)


def main(argv):
    what, port = argv[1], int(argv[2])
    if what == "served":
        served(port)
    elif what == "timeouts":
        timeouts(port)
    elif what == "many":
        many(port, int(argv[3]))
    elif what == "hold":
        hold(port, argv[3], argv[4])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
