#!/usr/bin/env python3
"""pipeline_check.py -- concurrent pipelining clients against the proxy.

    pipeline_check.py PORT [--clients N] [--commands M] [--vanish V]
                           [--vanish-requests R] [--prefix P] [--timeout S]

Starts N checking clients at once.  Each pipelines M mixed commands (SET, GET,
INCR, MGET, DEL on its own keys, which spread over every backend, plus PING
and ECHO that the proxy answers itself) from a sender thread while a reader
thread compares every reply byte for byte with what a model of that client's
keys predicts.  Values and ECHO messages encode the client id and sequence
number, so a reply delivered to the wrong client or out of order cannot
match.

With --vanish V, V more clients start at the same moment; each writes R
requests (SET/GET/MGET/INCR/DEL) without reading a byte and disconnects (odd
ones with an RST, even ones with a normal close), leaving replies in flight.

At the end a fresh connection checks PING and a SET/GET round trip.  Prints
one line per failure and exits 1 on any, else prints a summary and exits 0.
"""
import argparse
import bisect
import random
import socket
import struct
import sys
import threading

from resp import enc, reply_end  # test/resp.py, the suites' one RESP client


def bulk(v):
    return b"$-1\r\n" if v is None else b"$%d\r\n%s\r\n" % (len(v), v)


def plan(cid, ncmd, prefix):
    """The request bytes and the expected reply bytes of client CID, with the
    end offset of every expected reply (to name the command that failed)."""
    rnd = random.Random(1000 + cid)
    ns = "%s:c%d:" % (prefix, cid)
    skeys = [ns + "k%d" % i for i in range(40)]
    nkeys = [ns + "n%d" % i for i in range(10)]
    allkeys = skeys + nkeys
    model = {}
    reqs, exp, ends, names = [], [], [], []
    total = 0
    for i in range(ncmd):
        r = rnd.random()
        if r < 0.25:
            k = rnd.choice(skeys)
            pad = "x" * (20000 if rnd.random() < 0.01 else rnd.randrange(0, 200))
            v = ("v:%d:%d:%s" % (cid, i, pad)).encode()
            model[k] = v
            req, rep, name = enc("SET", k, v), b"+OK\r\n", "SET " + k
        elif r < 0.50:
            k = rnd.choice(allkeys)
            req, rep, name = enc("GET", k), bulk(model.get(k)), "GET " + k
        elif r < 0.65:
            k = rnd.choice(nkeys)
            n = int(model.get(k, b"0")) + 1
            model[k] = b"%d" % n
            req, rep, name = enc("INCR", k), b":%d\r\n" % n, "INCR " + k
        elif r < 0.75:
            ks = [rnd.choice(allkeys) for _ in range(rnd.randrange(2, 7))]
            req = enc("MGET", *ks)
            rep = b"*%d\r\n" % len(ks) + b"".join(bulk(model.get(k)) for k in ks)
            name = "MGET " + " ".join(ks)
        elif r < 0.85:
            ks = rnd.sample(allkeys, rnd.randrange(1, 4))
            n = sum(1 for k in ks if k in model)
            for k in ks:
                model.pop(k, None)
            req, rep, name = enc("DEL", *ks), b":%d\r\n" % n, "DEL " + " ".join(ks)
        elif r < 0.92:
            req, rep, name = enc("PING"), b"+PONG\r\n", "PING"
        else:
            m = "e:%d:%d" % (cid, i)
            req, rep, name = enc("ECHO", m), bulk(m.encode()), "ECHO " + m
        reqs.append(req)
        exp.append(rep)
        total += len(rep)
        ends.append(total)
        names.append(name)
    return b"".join(reqs), b"".join(exp), ends, names


def reply_at(buf, pos):
    """The RESP reply starting at buf[pos] (best effort, for messages)."""
    try:
        end = reply_end(buf, pos)
    except ValueError:
        end = None
    return bytes(buf[pos:end if end is not None else pos + 200])


def short(b, n=120):
    return repr(b if len(b) <= n else b[:n] + b"...(%d bytes)" % len(b))


def go(start):
    """Wait until every client is connected (a failed one breaks the barrier)."""
    try:
        start.wait(30)
    except threading.BrokenBarrierError:
        pass


def checker(port, cid, ncmd, prefix, timeout, start, errors):
    req, exp, ends, names = plan(cid, ncmd, prefix)
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError as e:
        errors.append("client %d: connect: %s" % (cid, e))
        start.abort()
        return
    s.settimeout(timeout)
    send_err = []

    def sender():
        try:
            for off in range(0, len(req), 1 << 16):
                s.sendall(req[off:off + (1 << 16)])
        except OSError as e:
            send_err.append(e)

    go(start)
    t = threading.Thread(target=sender)
    t.start()
    got = bytearray()
    try:
        while len(got) < len(exp):
            chunk = s.recv(1 << 18)
            if not chunk:
                raise ConnectionError("connection closed by the proxy")
            old = len(got)
            got += chunk
            upto = min(len(got), len(exp))
            if got[old:upto] != exp[old:upto]:
                for off in range(old, upto):
                    if got[off] != exp[off]:
                        break
                idx = bisect.bisect_right(ends, off)
                start_off = ends[idx - 1] if idx else 0
                errors.append("client %d: reply %d (%s): expected %s, got %s" % (
                    cid, idx, names[idx][:80], short(exp[start_off:ends[idx]]),
                    short(reply_at(got, start_off))))
                break
        else:
            # nothing may follow the last reply
            s.settimeout(0.05)
            try:
                extra = s.recv(1 << 16)
                if extra:
                    errors.append("client %d: extra bytes after the last reply: %s"
                                  % (cid, short(extra)))
            except socket.timeout:
                pass
    except (OSError, ConnectionError) as e:
        idx = bisect.bisect_right(ends, len(got))
        errors.append("client %d: %s after %d of %d replies (%d bytes)" % (
            cid, e, idx, len(ends), len(got)))
    if len(got) < len(exp):
        try:
            s.shutdown(socket.SHUT_RDWR)  # unblock the sender
        except OSError:
            pass
    t.join()
    if send_err:
        errors.append("client %d: send: %s" % (cid, send_err[0]))
    s.close()


def vanisher(port, vid, nreq, prefix, start, errors):
    rnd = random.Random(5000 + vid)
    ns = "%s:v%d:" % (prefix, vid)
    keys = [ns + "k%d" % i for i in range(30)]
    reqs = []
    for i in range(nreq):
        r = rnd.random()
        k = rnd.choice(keys)
        if r < 0.4:
            reqs.append(enc("SET", k, "w:%d:%d:%s" % (vid, i, "y" * rnd.randrange(0, 100))))
        elif r < 0.7:
            reqs.append(enc("GET", k))
        elif r < 0.8:
            reqs.append(enc("MGET", *rnd.sample(keys, 4)))
        elif r < 0.9:
            reqs.append(enc("INCR", ns + "n"))
        else:
            reqs.append(enc("DEL", *rnd.sample(keys, 3)))
    data = b"".join(reqs)
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=20)
    except OSError as e:
        errors.append("vanisher %d: connect: %s" % (vid, e))
        start.abort()
        return
    go(start)
    try:
        s.sendall(data)
    except OSError:
        pass  # the proxy may stop reading us; we leave either way
    if vid % 2:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def final_check(port, prefix, errors):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(enc("PING") + enc("SET", prefix + ":final", "done") +
                  enc("GET", prefix + ":final"))
        want = b"+PONG\r\n+OK\r\n$4\r\ndone\r\n"
        got = b""
        while len(got) < len(want):
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        if got != want:
            errors.append("final check: expected %r, got %r" % (want, got))
        s.close()
    except OSError as e:
        errors.append("final check: %s" % e)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--commands", type=int, default=5000)
    ap.add_argument("--vanish", type=int, default=0)
    ap.add_argument("--vanish-requests", type=int, default=10000)
    ap.add_argument("--prefix", default="pc")
    ap.add_argument("--timeout", type=float, default=30)
    a = ap.parse_args()

    errors = []
    start = threading.Barrier(a.clients + a.vanish)
    threads = [threading.Thread(target=checker, args=(a.port, c, a.commands, a.prefix,
                                                      a.timeout, start, errors))
               for c in range(a.clients)]
    threads += [threading.Thread(target=vanisher, args=(a.port, v, a.vanish_requests,
                                                        a.prefix, start, errors))
                for v in range(a.vanish)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final_check(a.port, a.prefix, errors)
    for e in errors:
        print(e)
    if errors:
        return 1
    print("OK clients=%d commands=%d vanished=%d" % (a.clients, a.commands, a.vanish))
    return 0


if __name__ == "__main__":
    sys.exit(main())
