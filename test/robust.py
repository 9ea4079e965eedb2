#!/usr/bin/env python3
"""robust.py -- hostile and unlucky clients for test/robustness.bats.

    robust.py SUBCOMMAND PORT [ARGS...]

Every subcommand keeps a *bystander*: a second, well-behaved connection that
does SET / GET / PING before and after each case, so a case that disturbs
anybody but its own connection fails.  Each case prints one line starting
with "ok  " or "FAIL"; the exit status is 1 when any case failed.

Subcommands (PORT is the proxy's):
  garbage PORT SEED...        64 KiB of random bytes per seed: as is, without
                              quotes and '*' (all inline), behind a '*'
  mutate PORT SEED...         valid pipelines with a few bytes flipped,
                              inserted or dropped; replies must be well-formed
  framing PORT                hostile RESP framing: huge, negative and
                              non-numeric lengths, nested arrays, *0
  biginline PORT              a 1 MiB inline line
  trickle PORT KEY1 KEY2      SET/GET/MGET written one byte per write()
  timeouts PORT MODE          client_timeout behaviour; MODE on (the proxy
                              runs client_timeout 2) or off (0)
  noread PORT PID KEY N LOG   pipelines N GETs of KEY and never reads; polls
                              the proxy's VmHWM; env HOLD_KEY/HOLD_PID: the
                              first GET waits on a stopped backend
  conns PORT N                opens N connections, PINGs on each, classifies
                              the answers (env CONNS_WAIT, CONNS_READY and
                              CONNS_RELEASE: hold them until told)
  logsafety PORT              unknown command names with control bytes
  checklog LOG                the proxy log holds no raw control bytes
  holdfds SOCK PORT READY RELEASE
                              60 admin connections on SOCK and 100 PINGing
                              clients on PORT, held until RELEASE appears
  killpipe PORT CONF SPBIN VICTIM READY
                              5,000 pipelined requests across backends while
                              the caller SIGKILLs VICTIM (after READY appears)

Env BY_TAG puts the bystander's keys under a {hash tag}.
"""
import os
import random
import select
import socket
import subprocess
import sys
import threading
import time

from resp import Reader, connect, enc, parse_all  # noqa: F401  (one RESP client: test/resp.py)

FAILS = []


def report(ok, what):
    print("%s %s" % ("ok  " if ok else "FAIL", what))
    sys.stdout.flush()
    if not ok:
        FAILS.append(what)


def drain(s, limit):
    """Read until EOF, reset or LIMIT seconds of silence: (bytes, end)."""
    s.settimeout(limit)
    got = b""
    try:
        while True:
            d = s.recv(1 << 16)
            if not d:
                return got, "EOF"
            got += d
    except socket.timeout:
        return got, "OPEN"
    except (ConnectionResetError, BrokenPipeError):
        return got, "RESET"


class Bystander:
    """A second client that must never notice the hostile one."""

    def __init__(self, port):
        self.s = connect(port)
        self.r = Reader(self.s)
        self.n = 0

    def check(self, label):
        self.n += 1
        # BY_TAG (env) keeps the bystander's keys on one backend ({tag}),
        # e.g. away from a backend a test has stopped
        key = b"%sbystander:%d" % (os.environ.get("BY_TAG", "").encode(), self.n)
        val = b"v%d-%s" % (self.n, os.urandom(4).hex().encode())
        try:
            self.s.sendall(enc("SET", key, val) + enc("GET", key) + enc("PING"))
            got = [self.r.reply(), self.r.reply(), self.r.reply()]
        except Exception as e:  # noqa: BLE001 -- any failure is the finding
            got = ["%s: %s" % (type(e).__name__, e)]
        ok = got == [b"+OK", val, b"+PONG"]
        report(ok, "bystander %s: %r" % (label, got))
        return ok


def is_errors_only(data):
    """True when DATA is nothing but complete '-...\\r\\n' lines."""
    if not data:
        return True
    if not data.endswith(b"\r\n"):
        return False
    return all(l.startswith(b"-") for l in data[:-2].split(b"\r\n"))


def read_lines(s, n, limit):
    """Read until N CRLF-terminated lines arrived: (bytes, "OPEN"), or the
    connection ended (EOF/RESET) or LIMIT seconds passed ("TIMEOUT")."""
    s.settimeout(limit)
    got = b""
    try:
        while got.count(b"\r\n") < n:
            d = s.recv(1 << 16)
            if not d:
                return got, "EOF"
            got += d
    except socket.timeout:
        return got, "TIMEOUT"
    except (ConnectionResetError, BrokenPipeError):
        return got, "RESET"
    return got, "OPEN"


def blank_lines(data):
    """Complete inline lines of DATA that hold only blanks (no reply)."""
    lines = data.split(b"\n")[:-1]
    return sum(1 for l in lines if not l.strip(b" \t\r\n\x0b\x0c"))


def send_all_tolerant(s, data):
    """sendall that stops quietly when the peer closes or resets."""
    try:
        s.sendall(data)
        return "sent"
    except (BrokenPipeError, ConnectionResetError):
        return "peer closed while sending"


# ----------------------------------------------------------------- garbage

def cmd_garbage(port, *seeds):
    by = Bystander(port)
    by.check("before")
    for seed in seeds:
        rnd = random.Random(int(seed))
        blob = bytes(rnd.getrandbits(8) for _ in range(64 * 1024))
        # as is; without quote characters and '*' (so every line of it goes
        # through the inline parser: ~256 unknown commands); behind a '*'
        tame = blob.translate(bytes.maketrans(b"\"'*", b"xyz")) + b"\r\n"
        for prefix, data in ((b"", blob), (b"", tame), (b"*", blob)):
            label = "seed %s%s" % (seed, " behind '*'" if prefix else
                                   " (no quotes, no '*')" if data is tame else "")
            s = connect(port)
            # a writer thread: the proxy may close (protocol error) or answer
            # many inline errors while we are still sending
            res = {}
            t = threading.Thread(target=lambda: res.update(w=send_all_tolerant(s, prefix + data)))
            t.start()
            if data is tame:  # every line is answered and the connection stays
                want = tame.count(b"\n") - blank_lines(tame)
                got, end = read_lines(s, want, 15)
                if end == "OPEN":
                    s.sendall(enc("PING"))
                    more, end2 = read_lines(s, 1, 10)
                    end = "OPEN" if more == b"+PONG\r\n" else "PING got %r, %s" % (more, end2)
            else:
                got, end = drain(s, 3)
            t.join(10)
            s.close()
            nerr = got.count(b"\r\n")
            ok = is_errors_only(got) and (end in ("EOF", "RESET", "OPEN"))
            if prefix:  # a RESP array header of garbage: protocol error and close
                ok = ok and got.startswith(b"-ERR Protocol error: ") and end in ("EOF", "RESET")
            if data is tame:  # nothing to choke on: every line answered, still open
                ok = ok and end == "OPEN" and nerr == want
            report(ok, "%s: %d reply lines (all -ERR: %s), writer %s, then %s; first %r"
                   % (label, nerr, is_errors_only(got), res.get("w"), end, got[:60]))
            by.check("after " + label)


def cmd_mutate(port, *seeds):
    """Valid pipelines (SET, GET, MGET, DEL, PING, ECHO, inline) with a few
    bytes flipped, inserted or dropped, sent, then the write side shut: the
    proxy answers what it could frame and closes.  Whatever it answers must
    be well-formed RESP; nothing may hang."""
    by = Bystander(port)
    by.check("before")
    for seed in seeds:
        rnd = random.Random(int(seed))
        stats = {"replies": 0, "closed": 0, "errors": 0}
        for it in range(12):
            parts = []
            for j in range(40):
                k = "mut:%d" % rnd.randrange(50)
                parts.append(rnd.choice([
                    enc("SET", k, "v" * rnd.randrange(0, 300)), enc("GET", k),
                    enc("MGET", k, "mut:%d" % rnd.randrange(50), "mut:x"), enc("DEL", k),
                    enc("PING"), enc("ECHO", "e" * rnd.randrange(0, 40)),
                    b"GET %s\r\n" % k.encode(), b"PING\r\n"]))
            data = bytearray(b"".join(parts))
            for _ in range(rnd.randrange(1, 6)):
                pos, op = rnd.randrange(len(data)), rnd.randrange(3)
                if op == 0:
                    data[pos] = rnd.randrange(256)
                elif op == 1:
                    data[pos:pos] = bytes([rnd.choice(b"*$:+-\r\n0123456789")])
                else:
                    del data[pos]
            s = connect(port)
            res = {}
            t = threading.Thread(target=lambda: res.update(w=send_all_tolerant(s, bytes(data))))
            t.start()
            t.join(10)
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            got, end = drain(s, 10)
            s.close()
            n = parse_all(got)
            ok = n is not None and end in ("EOF", "RESET")
            stats["replies"] += n or 0
            stats["errors"] += got.count(b"\r\n-")+ got.startswith(b"-")
            if not ok:
                report(False, "seed %s pipeline %d: %s reply bytes (%s), then %s"
                       % (seed, it, len(got), "well-formed" if n is not None else "MALFORMED", end))
        report(True, "seed %s: 12 mutated pipelines, %d well-formed replies (%d error lines), "
               "each connection closed after the client's EOF" % (seed, stats["replies"], stats["errors"]))
        by.check("after mutated seed %s" % seed)


# ----------------------------------------------------------------- framing

PE = b"-ERR Protocol error: "
FRAMING = [
    # (label, bytes, expected reply, connection closes)
    ("10^12 bulk length on the 3rd argument",
     b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000000000000\r\n", PE + b"invalid bulk length\r\n", True),
    ("bulk length one above max_request_size (512mb)",
     b"*2\r\n$3\r\nGET\r\n$536870913\r\n", PE + b"invalid bulk length\r\n", True),
    ("20-digit bulk length (overflows int64)",
     b"*1\r\n$99999999999999999999\r\n", PE + b"invalid bulk length\r\n", True),
    ("array count 2^63 (overflows int64)",
     b"*9223372036854775808\r\n", PE + b"invalid multibulk length\r\n", True),
    ("bulk length $-1 inside a request",
     b"*2\r\n$3\r\nGET\r\n$-1\r\n", PE + b"invalid bulk length\r\n", True),
    ("bulk length $-5", b"*2\r\n$3\r\nGET\r\n$-5\r\n", PE + b"invalid bulk length\r\n", True),
    ("non-numeric bulk length $1a", b"*2\r\n$3\r\nGET\r\n$1a\r\n", PE + b"invalid bulk length\r\n", True),
    ("empty bulk length $", b"*1\r\n$\r\n", PE + b"invalid bulk length\r\n", True),
    ("bulk length with a sign $+4", b"*1\r\n$+4\r\nPING\r\n", PE + b"invalid bulk length\r\n", True),
    ("non-numeric array count *x", b"*x\r\n", PE + b"invalid multibulk length\r\n", True),
    ("empty array count *", b"*\r\n", PE + b"invalid multibulk length\r\n", True),
    ("headers ended by a bare LF", b"*1\n$4\nPING\n", PE + b"invalid multibulk length\r\n", True),
    ("a 100-digit array count, no newline",
     b"*" + b"1" * 100, PE + b"too big mbulk count string\r\n", True),
    ("a 100-digit bulk length, no newline",
     b"*1\r\n$" + b"9" * 100, PE + b"too big bulk count string\r\n", True),
    ("an integer element", b"*2\r\n$3\r\nGET\r\n:5\r\n",
     PE + b"expected '$' before a request argument\r\n", True),
    ("a simple-string element", b"*1\r\n+PING\r\n",
     PE + b"expected '$' before a request argument\r\n", True),
    ("a nested array as the command", b"*1\r\n*1\r\n$4\r\nPING\r\n",
     PE + b"expected '$' before a request argument\r\n", True),
    ("a nested array as an argument, after a served PING",
     b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n*1\r\n$1\r\nk\r\n",
     b"+PONG\r\n" + PE + b"expected '$' before a request argument\r\n", True),
    ("a null array element $-1 in MGET", b"*3\r\n$4\r\nMGET\r\n$1\r\na\r\n$-1\r\n",
     PE + b"invalid bulk length\r\n", True),
    ("*0 is skipped, then PING", b"*0\r\n*1\r\n$4\r\nPING\r\n", b"+PONG\r\n", False),
    ("several *0 around commands",
     b"*0\r\n*0\r\n*1\r\n$4\r\nPING\r\n*0\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n*0\r\n",
     b"+PONG\r\n$2\r\nhi\r\n", False),
]


def cmd_framing(port):
    by = Bystander(port)
    by.check("before")
    for label, data, want, closes in FRAMING:
        s = connect(port)
        s.sendall(data)
        got, end = drain(s, 1.5 if not closes else 5)
        if not closes and end == "OPEN":
            # still usable: one more PING must be answered
            s.settimeout(5)
            s.sendall(enc("PING"))
            more, _ = Reader(s).reply(), None
            got += more + b"\r\n" if isinstance(more, bytes) else b""
            want = want + b"+PONG\r\n"
        s.close()
        ok = got == want and (end in ("EOF", "RESET") if closes else end == "OPEN")
        report(ok, "%s: got %r then %s%s" % (label, got, end,
                                            "" if ok else " (want %r, %s)" %
                                            (want, "close" if closes else "open")))
        by.check("after: " + label)


# --------------------------------------------------------------- biginline

def cmd_biginline(port):
    by = Bystander(port)
    by.check("before")
    want = PE + b"too big inline request\r\n"
    for label, data in (("1 MiB inline line, no newline", b"A" * (1 << 20)),
                        ("1 MiB inline line ending in CRLF", b"SET k " + b"v" * ((1 << 20) - 8) + b"\r\n"),
                        ("64 KiB + 1 inline line, no newline", b"B" * (64 * 1024 + 1))):
        s = connect(port)
        res = {}
        t = threading.Thread(target=lambda: res.update(w=send_all_tolerant(s, data)))
        t.start()
        got, end = drain(s, 5)
        t.join(10)
        s.close()
        ok = got == want and end in ("EOF", "RESET")
        report(ok, "%s: got %r then %s (writer: %s)" % (label, got[:80], end, res.get("w")))
        by.check("after: " + label)
    # the longest inline line that is allowed (64 KiB) is still served
    s = connect(port)
    s.sendall(b"ECHO " + b"e" * (64 * 1024 - 5) + b"\r\n")
    r = Reader(s).reply()
    s.close()
    report(r == b"e" * (64 * 1024 - 5), "a 64 KiB inline ECHO is served (%d bytes back)"
           % (len(r) if isinstance(r, bytes) else -1))
    by.check("after the 64 KiB inline line")


# ----------------------------------------------------------------- trickle

def cmd_trickle(port, k1, k2):
    by = Bystander(port)
    by.check("before")
    value = bytes(random.Random(7).choice(b"abcdefghij\r\n\x00\xff") for _ in range(200))
    stream = (enc("SET", k1, value) + enc("GET", k1) + enc("SET", k2, "second") +
              enc("MGET", k2, k1, "trickle:missing") + b"PING\r\n")
    s = connect(port)
    t0 = time.time()
    mid = False
    for i in range(len(stream)):
        s.send(stream[i:i + 1])
        time.sleep(0.002)
        if not mid and i == len(stream) // 2:
            mid = by.check("while the trickle is half sent")
    r = Reader(s)
    got = [r.reply() for _ in range(5)]
    want = [b"+OK", value, b"+OK", [b"second", value, None], b"+PONG"]
    report(got == want, "%d bytes one per write in %.1f s: replies %s"
           % (len(stream), time.time() - t0,
              "as expected" if got == want else repr(got)[:300]))
    s.close()
    by.check("after")


# ---------------------------------------------------------------- timeouts

def wait_close(s, limit):
    """Seconds until the peer closes S (EOF/reset), or None after LIMIT."""
    t0 = time.time()
    s.settimeout(0.05)
    while time.time() - t0 < limit:
        try:
            d = s.recv(4096)
            if not d:
                return time.time() - t0
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.time() - t0
    return None


def cmd_timeouts(port, mode):
    """MODE on: the proxy runs client_timeout 2; off: client_timeout 0.
    With STOPPED_KEY (env) set, one more client GETs that key, whose backend
    the caller has stopped; READY_FILE is created once the GET is sent, and
    the caller resumes the backend some seconds later."""
    by = Bystander(port)
    by.check("before")
    results = {}
    lim = 7.0 if mode == "on" else 3.5  # off: must still be open after this

    def half():  # half a request, then silence
        s = connect(port)
        s.sendall(enc("SET", "half", "x" * 10)[:-7])
        results["half"] = wait_close(s, lim)

    def idle():  # connects, says nothing
        s = connect(port)
        results["idle"] = wait_close(s, lim)

    def served_then_idle():  # one request answered, then silence
        s = connect(port)
        s.sendall(enc("PING"))
        r = Reader(s).reply()
        results["served"] = (r, wait_close(s, lim))

    def trickle():  # an incomplete request growing by a byte every 0.4 s
        s = connect(port)
        req = enc("SET", "trickle", "y" * 100)
        t0, i = time.time(), 0
        s.settimeout(0.4)
        while time.time() - t0 < lim and i < len(req) - 1:
            try:
                s.send(req[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
            i += 1
            try:
                if s.recv(4096) == b"":
                    break
            except socket.timeout:
                pass
            except ConnectionResetError:
                break
        results["trickle"] = (time.time() - t0 if time.time() - t0 < lim else None, i)

    def waiting():  # owed a reply by a stopped backend: not idle
        key = os.environ.get("STOPPED_KEY")
        if not key:
            return
        s = connect(port)
        s.sendall(enc("GET", key))
        open(os.environ["READY_FILE"], "w").close()  # caller resumes the backend later
        s.settimeout(12)
        try:
            r = Reader(s).reply()
        except Exception as e:  # noqa: BLE001
            r = "%s: %s" % (type(e).__name__, e)
        results["waiting"] = r

    threads = [threading.Thread(target=f) for f in (half, idle, served_then_idle, trickle, waiting)]
    for t in threads:
        t.start()
    # the bystander keeps talking (an idle one would be closed too)
    t0, n = time.time(), 0
    while any(t.is_alive() for t in threads) and time.time() - t0 < 15:
        time.sleep(0.5)
        n += 1
        if not by.check("while the others sit (%d)" % n):
            break
    for t in threads:
        t.join(15)
    by.check("after")
    h, i_, (sr, sv), (tr, tn) = results["half"], results["idle"], results["served"], results["trickle"]
    fmt = lambda v: "still open after %.1f s" % lim if v is None else "closed after %.2f s" % v
    if mode == "on":
        report(h is not None and 1.5 <= h <= 5, "half a request, then silence: %s" % fmt(h))
        report(i_ is not None and 1.5 <= i_ <= 5, "connected, silent: %s" % fmt(i_))
        report(sr == b"+PONG" and sv is not None and 1.5 <= sv <= 5,
               "PING answered (%r), then silent: %s" % (sr, fmt(sv)))
        report(tr is not None and 1.5 <= tr <= 5.5,
               "a byte every 0.4 s (%d sent): %s" % (tn, fmt(tr)))
        if "waiting" in results or os.environ.get("STOPPED_KEY"):
            w = results.get("waiting")
            report(isinstance(w, bytes) and not w.startswith(b"-"),
                   "a client owed a reply for > client_timeout is not closed: got %r" % (w,))
    else:
        report(h is None, "client_timeout 0: half a request, then silence: %s" % fmt(h))
        report(i_ is None, "client_timeout 0: connected, silent: %s" % fmt(i_))
        report(sr == b"+PONG" and sv is None, "client_timeout 0: PING, then silent: %s" % fmt(sv))
        report(tr is None, "client_timeout 0: a byte every 0.4 s (%d sent): %s" % (tn, fmt(tr)))


# ------------------------------------------------------------------ noread

def vm(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def cmd_noread(port, pid, key, n, cutlog):
    """Pipeline N GETs of KEY (a large value) and never read.  Polls the
    proxy's VmHWM/VmRSS meanwhile.  Waits for the proxy's log (CUTLOG) to
    report the client_output_limit cut, up to 5 s.  With HOLD_KEY and
    HOLD_PID (env): the first request is a GET of HOLD_KEY, whose backend
    HOLD_PID the caller has stopped; it is resumed (SIGCONT) after that
    wait, so the replies held behind it can drain."""
    pid, n = int(pid), int(n)
    hold_key, hold_pid = os.environ.get("HOLD_KEY"), os.environ.get("HOLD_PID")
    by = Bystander(port)
    by.check("before")
    s = connect(port)
    reqs = enc("GET", key) * n
    if hold_key:
        reqs = enc("GET", hold_key) + reqs
    state = {"peak": 0, "stop": False}

    def poll_rss():
        while not state["stop"]:
            try:
                state["peak"] = max(state["peak"], vm(pid, "VmHWM"), vm(pid, "VmRSS"))
            except OSError:
                break
            time.sleep(0.02)

    base = os.path.getsize(cutlog)  # only what the log says from now on counts

    def cut():
        with open(cutlog, "rb") as f:
            f.seek(base)
            return b"client_output_limit" in f.read()

    poller = threading.Thread(target=poll_rss)
    poller.start()
    t0 = time.time()
    res = {}
    wt = threading.Thread(target=lambda: res.update(w=send_all_tolerant(s, reqs)))
    wt.start()
    while time.time() - t0 < 5 and not cut():
        time.sleep(0.05)
    cut_at = time.time() - t0 if cut() else None
    if hold_pid:
        by.check("while the replies are held")
        os.kill(int(hold_pid), 18)  # SIGCONT
        while time.time() - t0 < 16 and not cut():
            time.sleep(0.05)
    t_cut = time.time() - t0
    time.sleep(0.5)  # let the proxy settle; keep polling
    state["stop"] = True
    poller.join()
    got, how = drain(s, 5)  # what was delivered, then the close
    wt.join(10)
    s.close()
    print("# timings: cut seen %.1f s, drained %.1f s after the start" % (t_cut, time.time() - t0))
    print("# %d GETs of %s%s, writer %s; cut %s; %d reply bytes readable afterwards, then %s"
          % (n, key, " behind a GET on a stopped backend" if hold_key else "", res.get("w"),
             "logged %.1f s after the start" % cut_at if cut_at is not None else
             ("not within 5 s" + (" (cut after the backend resumed)" if cut() else " at all")),
             len(got), how))
    print("peak_kb %d" % state["peak"])
    report(cut_at is not None, "cut off at client_output_limit while requests were still held")
    report(how in ("EOF", "RESET"), "the non-reading client was disconnected (%s)" % how)
    t1 = time.time()
    by.check("after")
    print("# the bystander's check after took %.1f s" % (time.time() - t1))


# ------------------------------------------------------------------- conns

def cmd_conns(port, n):
    """Open N connections (as fast as possible), PING on each, classify what
    each one gets within a few seconds.  Prints a summary line."""
    n = int(n)
    by = Bystander(port)
    by.check("before")
    socks, failed = [], 0
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=1)
            socks.append(s)
        except OSError:
            failed += 1
            if failed > 5:
                break
    for s in socks:
        s.setblocking(False)
        try:
            s.send(b"PING\r\n")
        except OSError:
            pass
    got = {}
    pending = dict((s.fileno(), s) for s in socks)
    idx = dict((s.fileno(), i) for i, s in enumerate(socks))
    deadline = time.time() + float(os.environ.get("CONNS_WAIT", "4"))
    poller = select.poll()  # select() stops at fd 1024
    for fd in pending:
        poller.register(fd, select.POLLIN)
    while pending and time.time() < deadline:
        for fd, _ in poller.poll(200):
            if fd not in pending:
                continue
            s = pending[fd]
            i = idx[fd]
            try:
                d = s.recv(200)
            except OSError:
                d = None
            if d is None:
                got[i] = got.get(i, b"") + b"<RESET>"
            elif d == b"":
                got[i] = got.get(i, b"") + b"<EOF>"
            else:
                got[i] = got.get(i, b"") + d
                if b"<" not in got[i] and not got[i].startswith(b"-"):
                    if got[i].endswith(b"\r\n"):
                        del pending[fd]
                        poller.unregister(fd)
                continue
            del pending[fd]
            poller.unregister(fd)
    served = sum(1 for v in got.values() if v == b"+PONG\r\n")
    refused = sum(1 for v in got.values() if v.startswith(b"-ERR max number of clients reached"))
    closed = sum(1 for v in got.values() if v in (b"<EOF>", b"<RESET>"))
    other = len(got) - served - refused - closed
    unanswered = sum(1 for fd in pending if idx[fd] not in got)  # not a byte, no close
    print("opened=%d connect_failed=%d served=%d refused=%d closed=%d other=%d unanswered=%d"
          % (len(socks), failed, served, refused, closed, other, unanswered))
    for v in set(got.values()) - {b"+PONG\r\n"}:
        if not v.startswith(b"-ERR max number of clients reached") and v not in (b"<EOF>", b"<RESET>"):
            print("# other reply: %r" % v[:100])
    sys.stdout.flush()
    by.check("with every connection open")
    # hold them until told, so the caller can look at the proxy meanwhile
    ready, release = os.environ.get("CONNS_READY"), os.environ.get("CONNS_RELEASE")
    if ready:
        open(ready, "w").close()
        t0 = time.time()
        while release and not os.path.exists(release) and time.time() - t0 < 60:
            time.sleep(0.05)
        by.check("before closing them")
    for s in socks:
        s.close()


# --------------------------------------------------------------- logsafety

NASTY = [b"\x1b[31mred\x1b[0m", b"bad\r\nname", b"nul\x00byte", b"\x07bell\x7f\xff\xfe",
         b"evil\n2026-01-01T00:00:00.000Z [error] forged", b"back\\slash\x1b]0;title\x07"]


def cmd_logsafety(port):
    by = Bystander(port)
    by.check("before")
    s = connect(port)
    r = Reader(s)
    for name in NASTY:
        s.sendall(enc(name, "arg\r\n\x1b[0m"))
        got = r.reply()
        ok = isinstance(got, bytes) and got.startswith(b"-ERR unknown command") and \
            b"\r" not in got and b"\n" not in got
        report(ok, "unknown command %r: one error line %r" % (name, got[:90]))
    # an inline command whose quoted name unescapes to ESC, CR, LF, NUL
    s.sendall(b'"\\x1b[32minline\\r\\n\\x00" arg\r\n')
    got = r.reply()
    report(isinstance(got, bytes) and got.startswith(b"-ERR unknown command"),
           "inline unknown command with escapes: %r" % got[:90])
    s.sendall(enc("PING"))
    report(r.reply() == b"+PONG", "the connection stays usable")
    s.close()
    by.check("after")


def check_log(path):
    """Every byte of the log is printable ASCII or a newline; the nasty
    names appear escaped."""
    data = open(path, "rb").read()
    bad = [(i, data[i]) for i in range(len(data)) if not (0x20 <= data[i] < 0x7f or data[i] == 0x0a)]
    report(not bad, "log %s: %d bytes, %d raw control/non-ASCII bytes%s"
           % (path, len(data), len(bad), "" if not bad else " e.g. at %r" % (bad[:5],)))
    for want in (b"\\x1b[31mred\\x1b[0m", b"bad\\x0d\\x0aname", b"nul\\x00byte",
                 b"\\x07bell\\x7f\\xff\\xfe", b"evil\\x0a2026-01-01", b"back\\x5cslash\\x1b]0;title\\x07",
                 b"\\x1b[32minline\\x0d\\x0a\\x00"):
        report(want in data, "log holds the escaped name %r" % want.decode())
    report(b"[error] forged" not in data.replace(b"\\x0a2026-01-01T00:00:00.000Z [error] forged", b""),
           "no forged log line")


# ---------------------------------------------------------------- killpipe

def cmd_killpipe(port, conf, spbin, victim, ready):
    """5,000 pipelined requests (GET, SET, MGET, PING, and slow EVALs on the
    VICTIM backend so that it has work queued); READY is created once 1,500
    replies are in, and the caller SIGKILLs VICTIM.  Every request must get
    exactly one reply, in order: the right value, or an -ERR naming the key's
    own backend; nothing after the last."""
    def route(keys):
        own = {}
        for j in range(0, len(keys), 500):
            chunk = keys[j:j + 500]
            out = subprocess.run([spbin, "-c", conf] + sum([["--route", k] for k in chunk], []),
                                 check=True, capture_output=True, text=True).stdout.split("\n")
            own.update((k, line.split()[0]) for k, line in zip(chunk, out))
        return own

    keys = ["kp:%d" % i for i in range(300)]
    wkeys = ["kpw:%d" % i for i in range(5000)]
    owner = route(keys + wkeys)
    slow = [k for k in keys if owner[k] == victim]
    if not slow:
        report(False, "no key on the victim backend %s" % victim)
        return
    by = Bystander(port)
    by.check("before")
    s = connect(port, timeout=30)
    r = Reader(s)
    s.sendall(b"".join(enc("SET", k, "v-" + k) for k in keys))
    pre = [r.reply() for _ in keys]
    report(pre == [b"+OK"] * len(keys), "preloaded %d keys" % len(keys))
    spin = "local i = 0 while i < 100000 do i = i + 1 end return redis.call('get', KEYS[1])"
    rnd = random.Random(42)
    reqs, expect = [], []
    for i in range(5000):
        c = rnd.random()
        if c < 0.4:
            k = rnd.choice(keys)
            reqs.append(enc("GET", k))
            expect.append(("get", [k], b"v-" + k.encode()))
        elif c < 0.7:
            k = wkeys[i]
            reqs.append(enc("SET", k, "w%d" % i))
            expect.append(("set", [k], b"+OK"))
        elif c < 0.85:
            ks = rnd.sample(keys, 3)
            reqs.append(enc("MGET", *ks))
            expect.append(("mget", ks, [b"v-" + k.encode() for k in ks]))
        elif c < 0.95:
            k = rnd.choice(slow)
            reqs.append(enc("EVAL", spin, 1, k))
            expect.append(("eval", [k], b"v-" + k.encode()))
        else:
            reqs.append(enc("PING"))
            expect.append(("ping", [], b"+PONG"))
    state = {"sent": 0}

    def writer():
        for q in reqs:
            s.sendall(q)
            state["sent"] += 1

    wt = threading.Thread(target=writer)
    wt.start()
    counts = {"value": 0, "unavailable": 0, "timed out": 0, "wrong": 0}
    bad = []
    mark = None
    t0 = time.time()
    for i, (kind, ks, want) in enumerate(expect):
        if i == 1500:
            mark = state["sent"]
            open(ready, "w").close()  # the caller SIGKILLs the victim now
        try:
            got = r.reply()
        except Exception as e:  # noqa: BLE001
            bad.append("reply %d: %s: %s" % (i, type(e).__name__, e))
            counts["wrong"] += len(expect) - i
            break
        if got == want:
            counts["value"] += 1
            continue
        owners = {owner[k] for k in ks}
        kinds = [w for o in owners for w in ("unavailable", "timed out")
                 if got == b"-ERR backend %s %s" % (o.encode(), w.encode())]
        if kinds:
            counts[kinds[0]] += 1
        else:
            counts["wrong"] += 1
            bad.append("reply %d (%s %s): got %r, want %r or an error naming %s"
                       % (i, kind, ks, got if not isinstance(got, bytes) else got[:80], want,
                          sorted(owners)))
    wt.join(30)
    s.settimeout(10)
    try:
        s.sendall(enc("PING", "last"))
        last = r.reply()
    except Exception as e:  # noqa: BLE001
        last = "%s: %s" % (type(e).__name__, e)
    print("# %d replies in %.1f s: %d values, %d unavailable, %d timed out, %d wrong; "
          "the kill was signalled after 1500 replies, with %s requests written"
          % (len(expect), time.time() - t0, counts["value"], counts["unavailable"],
             counts["timed out"], counts["wrong"], mark))
    for b in bad[:10]:
        print("#   " + b)
    report(counts["wrong"] == 0 and sum(counts.values()) == len(expect),
           "5000 requests, exactly one right reply each, in order: %s" % counts)
    report(counts["unavailable"] + counts["timed out"] > 0,
           "some requests were caught by the kill (%d errors)"
           % (counts["unavailable"] + counts["timed out"]))
    report(last == b"last" and r.buf == b"",
           "no extra reply afterwards: PING -> %r, leftover %r" % (last, r.buf[:80]))
    s.close()
    by.check("after")


def hold_fds(path, port, ready, release):
    """Fill the proxy's descriptors: 60 admin connections on the UNIX socket
    PATH (the backlog takes what the proxy cannot accept), then 100 clients
    on PORT each with a PING sent; create READY, hold everything until
    RELEASE appears (80 s at most)."""
    held = []
    for _ in range(60):
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        held.append(s)
    for _ in range(100):
        c = socket.create_connection(("127.0.0.1", int(port)))
        c.sendall(enc("PING"))
        held.append(c)
    open(ready, "w").close()
    deadline = time.time() + 80
    while not os.path.exists(release) and time.time() < deadline:
        time.sleep(0.05)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "checklog":
        check_log(args[0])
    elif cmd == "holdfds":
        hold_fds(*args)
    else:
        port = int(args[0])
        globals()["cmd_" + cmd](port, *args[1:])
    if FAILS:
        print("%d check(s) failed" % len(FAILS))
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
