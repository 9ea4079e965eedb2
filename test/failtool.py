#!/usr/bin/env python3
"""failtool.py -- the Python side of test/failures.bats: fake backends and
clients that need raw sockets.

    failtool.py fake PORT MODE LOG READY     a one-backend fake Redis (MODE:
                                             garbage, partial, unsolicited,
                                             silent, slam, hang)
    failtool.py hold PORT READY              PING, then wait for the close
    failtool.py rstclose PORT GO ARG...      send requests ("--" between
                                             them), on GO close with an RST
    failtool.py maxclients PORT N            N served, N+1st rejected
    failtool.py noread PORT N KEY GO         N GETs unread until GO
    failtool.py pipeline PORT N              N SETs then N GETs pipelined

enc, Reader and connect come from test/resp.py, the suites' one RESP client.
"""
import os, socket, sys, threading, time
from resp import Reader, connect, enc

def call(s, r, *args):
    s.sendall(enc(*args))
    return r.reply()

def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)

def wait_file(path, limit=30):
    deadline = time.time() + limit
    while not os.path.exists(path):
        if time.time() > deadline:
            fail("no %s within %d s" % (path, limit))
        time.sleep(0.02)

# --- fake backend -----------------------------------------------------------

def parse_reqs(buf):
    """Complete RESP (or inline) requests in buf, and the rest."""
    cmds, pos = [], 0
    while pos < len(buf):
        e = buf.find(b"\r\n", pos)
        if e < 0:
            break
        if buf[pos:pos + 1] != b"*":
            cmds.append(buf[pos:e].split())
            pos = e + 2
            continue
        n, p, args = int(buf[pos + 1:e]), e + 2, []
        for _ in range(n):
            e = buf.find(b"\r\n", p)
            if e < 0:
                break
            ln = int(buf[p + 1:e])
            if len(buf) < e + 2 + ln + 2:
                break
            args.append(buf[e + 2:e + 2 + ln])
            p = e + 2 + ln + 2
        if len(args) < n:
            break
        cmds.append(args)
        pos = p
    return cmds, buf[pos:]

def normal_reply(cmd):
    name = cmd[0].lower() if cmd else b""
    if name == b"ping":
        return b"+PONG\r\n"
    if name == b"get":
        return b"$4\r\nfake\r\n"
    if name == b"info":  # the proxy's version probe
        body = b"# Server\r\nredis_version:7.0.0\r\n"
        return b"$%d\r\n%s\r\n" % (len(body), body)
    return b"+OK\r\n"

def fake(port, mode, logpath, readypath):
    """A one-backend fake Redis.  Connection 1 misbehaves per MODE, later
    connections answer normally, except in modes silent (answers only the
    proxy's INFO version probe, never a request) and slam (every connection
    gets an error and is closed at once; after 500 connections the listener
    closes, to bound the damage of a busy loop)."""
    lock = threading.Lock()
    logf = open(logpath, "a", buffering=1)
    def log(msg):
        with lock:
            logf.write(msg + "\n")
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    if mode == "hang":
        # never accept, and fill the accept queue: further connects hang
        # (their SYNs are dropped), as with a host that does not answer
        import select
        ls.listen(0)
        held = []
        for i in range(20):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", port))
            held.append(c)
            _, w, _ = select.select([], [c], [], 0.3)
            if not w:
                break
        else:
            fail("could not fill the accept queue")
        log("hanging after %d" % (len(held) - 1))
        open(readypath, "w").close()
        time.sleep(3600)
    ls.listen(128)
    open(readypath, "w").close()

    def serve(s, n):
        buf = b""
        if mode == "unsolicited" and n == 1:
            s.sendall(b"+OK\r\n")
            log("unsolicited %d" % n)
        while True:
            try:
                d = s.recv(65536)
            except OSError:
                d = b""
            if not d:
                log("closed %d" % n)
                s.close()
                return
            buf += d
            cmds, buf = parse_reqs(buf)
            for c in cmds:
                log("req %d %s" % (n, b" ".join(c).decode(errors="replace")))
                if mode == "silent" and c[:1] != [b"INFO"]:
                    continue  # but the handshake's version probe: requests go unanswered
                if mode == "partial" and n == 1:
                    s.sendall(b"$10\r\nabc")
                    log("partial %d" % n)
                    s.close()
                    log("closed %d" % n)
                    return
                if mode == "garbage" and n == 1:
                    s.sendall(b"?garbage\r\n")
                    log("garbage %d" % n)
                    continue
                s.sendall(normal_reply(c))

    n = 0
    while True:
        s, _ = ls.accept()
        n += 1
        log("accept %d" % n)
        if mode == "slam":
            try:
                s.sendall(b"-ERR max number of clients reached\r\n")
            except OSError:
                pass
            s.close()
            if n >= 500:
                log("cap")
                ls.close()
                time.sleep(3600)
            continue
        threading.Thread(target=serve, args=(s, n), daemon=True).start()

# --- clients ----------------------------------------------------------------

def hold(port, readypath):
    """Connect, PING, then wait for the proxy to close the connection."""
    s = connect(port, timeout=20)
    r = Reader(s)
    if call(s, r, "PING") != b"+PONG":
        fail("no PONG")
    open(readypath, "w").close()
    try:
        d = s.recv(100)
    except OSError as e:
        print("ERROR %s" % e)
        return
    print("EOF" if d == b"" else "DATA %r" % d)

def rstclose(port, gopath, args):
    """Send one request, wait for GOPATH, then close with a reset (the
    proxy sees the connection gone at once, not a half-close)."""
    import struct
    s = connect(port)
    req, cur = b"", []
    for a in args + ["--"]:  # "--" separates pipelined commands
        if a == "--":
            req += enc(*cur)
            cur = []
        else:
            cur.append(a)
    s.sendall(req)
    wait_file(gopath, 30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    print("reset")

def maxclients(port, limit):
    conns = []
    for i in range(limit):
        s = connect(port)
        r = Reader(s)
        rep = call(s, r, "PING")
        if rep != b"+PONG":
            fail("connection %d of %d: PING got %r" % (i + 1, limit, rep))
        conns.append((s, r))
    extra = connect(port)
    extra.settimeout(5)
    got = b""
    try:
        while True:
            d = extra.recv(4096)
            if not d:
                break
            got += d
    except socket.timeout:
        fail("connection %d: not closed within 5 s (got %r)" % (limit + 1, got))
    except ConnectionResetError:
        pass
    if got != b"-ERR max number of clients reached\r\n":
        fail("connection %d got %r" % (limit + 1, got))
    print("rejected: %s" % got.decode().strip())
    for i, (s, r) in enumerate(conns):
        rep = call(s, r, "ECHO", "still-%d" % i)
        if rep != b"still-%d" % i:
            fail("connection %d after the rejection: %r" % (i + 1, rep))
    print("first %d still work" % limit)
    # a freed place is given to the next client
    conns[0][0].close()
    deadline = time.time() + 5
    while True:
        s = connect(port)
        s.sendall(enc("PING"))
        try:
            rep = Reader(s).reply()
        except EOFError:
            rep = None
        s.close()
        if rep == b"+PONG":
            break
        if time.time() > deadline:
            fail("no connection accepted after one of %d closed: %r" % (limit, rep))
        time.sleep(0.05)
    print("a closed place is reused")

def noread(port, n, key, gopath):
    """Pipeline N GETs of KEY without reading; after GOPATH appears read
    everything and report how it ended."""
    s = connect(port, timeout=10)
    s.sendall(enc("GET", key) * n)
    wait_file(gopath, 60)
    total, end = 0, "TIMEOUT"
    try:
        while True:
            d = s.recv(1 << 20)
            if not d:
                end = "EOF"
                break
            total += len(d)
    except ConnectionResetError:
        end = "RESET"
    except socket.timeout:
        pass
    print("bytes=%d end=%s" % (total, end))

def pipeline(port, n):
    """SET then GET N keys in one pipeline each; every reply in order."""
    s = connect(port, timeout=20)
    r = Reader(s)
    val = lambda i: ("value-%d-" % i) + "v" * (i % 97)
    sets = b"".join(enc("SET", "pipe:%d" % i, val(i)) for i in range(n))
    gets = b"".join(enc("GET", "pipe:%d" % i) for i in range(n))
    t = threading.Thread(target=s.sendall, args=(sets + gets,), daemon=True)
    t.start()
    for i in range(n):
        rep = r.reply()
        if rep != b"+OK":
            fail("SET reply %d: %r" % (i, rep))
    for i in range(n):
        rep = r.reply()
        if rep != val(i).encode():
            fail("GET reply %d: %r, want %r" % (i, rep, val(i)))
    t.join(5)
    print("ok %d" % (2 * n))

if __name__ == "__main__":
    cmd, a = sys.argv[1], sys.argv[2:]
    if cmd == "fake":
        fake(int(a[0]), a[1], a[2], a[3])
    elif cmd == "hold":
        hold(int(a[0]), a[1])
    elif cmd == "rstclose":
        rstclose(int(a[0]), a[1], a[2:])
    elif cmd == "maxclients":
        maxclients(int(a[0]), int(a[1]))
    elif cmd == "noread":
        noread(int(a[0]), int(a[1]), a[2], a[3])
    elif cmd == "pipeline":
        pipeline(int(a[0]), int(a[1]))
    else:
        fail("unknown command " + cmd)
