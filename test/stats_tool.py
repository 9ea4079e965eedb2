#!/usr/bin/env python3
"""stats_tool.py -- the Python side of test/stats.bats: the admin socket, a
raw RESP client of the proxy, and the checks of the tests that need them.

    stats_tool.py CHECK [ARG...]

Environment (set by stats.bats' `py`): SP_PORT, ADMIN_SOCK, REDIS_PORTS
(space-separated), SP_PID, NAME0, NAME1.  Each CHECK is a function named
check_CHECK below; it prints "FAIL: ..." to stderr and exits 1 on the first
failed check.
"""
import json, os, re, socket, sys, time

from resp import enc, reply_end  # test/resp.py, the suites' one RESP client

SOCK = os.environ.get("ADMIN_SOCK", "")
PORT = int(os.environ.get("SP_PORT", "0") or 0)
REDIS_PORTS = os.environ.get("REDIS_PORTS", "").split()


def fail(msg):
    sys.stderr.write("FAIL: %s\n" % msg)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def admin_conn(timeout=20):
    # A blocking connect, as socat's: with a timeout set, Python's connect is
    # non-blocking and fails with EAGAIN while the listen backlog is full.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(SOCK)
    s.settimeout(timeout)
    return s


def admin(*cmds, timeout=20):
    """Send each command as a line on one connection, half-close, read to EOF."""
    s = admin_conn(timeout)
    s.sendall("".join(c + "\n" for c in cmds).encode())
    s.shutdown(socket.SHUT_WR)
    data = b""
    while True:
        d = s.recv(1 << 16)
        if not d:
            break
        data += d
    s.close()
    return data.decode("utf-8")


def stats_json():
    out = admin("stats json")
    check(out.endswith("\n") and out.count("\n") == 1,
          "stats json is not exactly one line: %r" % out[:300])
    try:
        return json.loads(out)
    except ValueError as e:
        fail("stats json does not parse (%s): %r" % (e, out[:500]))


class Client:
    """A raw TCP client of the proxy's data port."""
    def __init__(self, port=None, timeout=20):
        self.s = socket.create_connection(("127.0.0.1", port or PORT), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def replies(self, n):
        out = []
        while len(out) < n:
            end = reply_end(self.buf, 0) if self.buf else None
            if end is None:
                d = self.s.recv(1 << 16)
                if not d:
                    fail("connection closed after %d of %d replies" % (len(out), n))
                self.buf += d
                continue
            out.append(self.buf[:end])
            self.buf = self.buf[end:]
        return out

    def call(self, *args):
        self.send(enc(*args))
        return self.replies(1)[0]

    def local(self):
        return "%s:%d" % self.s.getsockname()[:2]

# ------------------------------------------------------------ the checks

def check_counters(argv):
    routes = [l.split() for l in open(argv[1])]
    check(len(routes) == 300, "--route printed %d lines for 300 keys" % len(routes))
    addr = {"127.0.0.1:%s" % p: i for i, p in enumerate(REDIS_PORTS)}
    pool = [[], [], []]
    for i, (ident, a, slot) in enumerate(routes):
        pool[addr[a]].append("stat:%d" % i)
    want_get, want_set = [20, 12, 5], [2, 3, 6]     # 37 GETs, 11 SETs
    for b in range(3):
        check(len(pool[b]) >= want_get[b] + want_set[b], "too few keys on backend %d" % b)
    gets = [(b, k) for b in range(3) for k in pool[b][:want_get[b]]]
    sets = [(b, k) for b in range(3) for k in pool[b][want_get[b]:want_get[b] + want_set[b]]]
    # Interleave: SETs, GETs (never of a key set here, so every GET is nil), PINGs,
    # an unknown command and a refused one, all pipelined on one connection.
    reqs, expect = [], []
    to_backend = [0, 0, 0]
    bytes_to = [0, 0, 0]
    for i in range(max(len(gets), len(sets))):
        if i < len(sets):
            b, k = sets[i]
            reqs.append(enc("SET", k, "v%d" % i)); expect.append(b"+OK\r\n")
            to_backend[b] += 1; bytes_to[b] += len(reqs[-1])
        if i < len(gets):
            b, k = gets[i]
            reqs.append(enc("GET", k)); expect.append(b"$-1\r\n")
            to_backend[b] += 1; bytes_to[b] += len(reqs[-1])
        if i in (3, 17, 30):
            reqs.append(enc("PING")); expect.append(b"+PONG\r\n")
        if i == 10:
            reqs.append(enc("NOSUCHCMD", "a")); expect.append(b"-ERR unknown command")
        if i == 20:
            reqs.append(enc("CONFIG", "SET", "maxmemory", "1")); expect.append(b"-ERR")
    # one MGET split over the three backends: one sub-request (MGET of its keys) each
    used = [want_get[b] + want_set[b] for b in range(3)]
    mkeys = [(0, pool[0][used[0]]), (1, pool[1][used[1]]), (0, pool[0][used[0] + 1]), (2, pool[2][used[2]])]
    reqs.append(enc("MGET", *[k for b, k in mkeys])); expect.append(b"*4\r\n" + b"$-1\r\n" * 4)
    mget_bytes_in = [0, 0, 0]
    for b in range(3):
        ks = [k for bb, k in mkeys if bb == b]
        to_backend[b] += 1
        bytes_to[b] += len(enc("MGET", *ks))
        mget_bytes_in[b] = len(b"*%d\r\n" % len(ks)) + 5 * len(ks)
    # an error the backend makes: INCR of a key just SET to a non-number
    eb, ek = sets[0]
    reqs.append(enc("INCR", ek)); expect.append(b"-ERR value is not an integer")
    to_backend[eb] += 1; bytes_to[eb] += len(reqs[-1])
    req = b"".join(reqs)
    check(len(reqs) == 55, "built %d requests" % len(reqs))

    before = stats_json()
    for name in ("get", "set"):
        check(name not in before["commands_by_name"],
              "fresh proxy already counts %s: %r" % (name, before["commands_by_name"].get(name)))
    c = Client()
    c.send(req)
    got = c.replies(len(reqs))
    for i, (g, e) in enumerate(zip(got, expect)):
        check(g.startswith(e), "reply %d: expected %r..., got %r" % (i, e, g))
    c.s.close()
    after = stats_json()

    cbn = after["commands_by_name"]
    check(cbn["get"]["calls"] == 37, "get.calls: expected 37, got %r" % cbn["get"]["calls"])
    check(cbn["set"]["calls"] == 11, "set.calls: expected 11, got %r" % cbn["set"]["calls"])
    check(cbn["get"]["errors"] == 0 and cbn["set"]["errors"] == 0,
          "get/set errors: %r %r" % (cbn["get"]["errors"], cbn["set"]["errors"]))
    pb = before["commands_by_name"].get("ping", {"calls": 0, "errors": 0})
    check(cbn["ping"]["calls"] - pb["calls"] == 3,
          "ping.calls delta: expected 3, got %d" % (cbn["ping"]["calls"] - pb["calls"]))
    kb = before["commands_by_name"].get("config|set", {"calls": 0, "errors": 0})
    check("config|set" in cbn and cbn["config|set"]["calls"] - kb["calls"] == 1
          and cbn["config|set"]["errors"] - kb["errors"] == 1,
          "refused CONFIG SET: expected calls+1 errors+1, got %r (before %r)"
          % (cbn.get("config|set"), kb))
    check(after["commands"] - before["commands"] == 55,
          "commands delta: expected 55, got %d" % (after["commands"] - before["commands"]))
    ib = before["commands_by_name"].get("incr", {"calls": 0, "errors": 0})
    check(cbn["incr"]["calls"] - ib["calls"] == 1 and cbn["incr"]["errors"] - ib["errors"] == 1,
          "incr (backend error): expected calls+1 errors+1, got %r (before %r)" % (cbn.get("incr"), ib))
    mb = before["commands_by_name"].get("mget", {"calls": 0, "errors": 0})
    check(cbn["mget"]["calls"] - mb["calls"] == 1 and cbn["mget"]["errors"] == mb["errors"],
          "mget: expected calls+1 errors+0, got %r (before %r)" % (cbn.get("mget"), mb))
    check(after["errors"] - before["errors"] == 3,
          "errors delta (unknown + refused + backend's): expected 3, got %d"
          % (after["errors"] - before["errors"]))
    check(after["clients"]["total"] - before["clients"]["total"] == 1,
          "clients.total delta: expected 1, got %d"
          % (after["clients"]["total"] - before["clients"]["total"]))
    check(after["bytes_in"] - before["bytes_in"] == len(req),
          "bytes_in delta: expected %d (the request bytes), got %d"
          % (len(req), after["bytes_in"] - before["bytes_in"]))
    nout = sum(len(g) for g in got)
    check(after["bytes_out"] - before["bytes_out"] == nout,
          "bytes_out delta: expected %d (the reply bytes), got %d"
          % (nout, after["bytes_out"] - before["bytes_out"]))
    check(after["protocol_errors"] == before["protocol_errors"], "protocol_errors moved")
    for b in range(3):
        A, B = after["backends"][b], before["backends"][b]
        check(A["address"] == "127.0.0.1:%s" % REDIS_PORTS[b], "backend %d address %r" % (b, A["address"]))
        nerr = int(b == eb)
        bytes_from = 5 * (to_backend[b] - 1 - nerr) + mget_bytes_in[b] + nerr * len(got[-1])
        for f, want in (("requests", to_backend[b]), ("responses", to_backend[b]),
                        ("errors", nerr), ("failures", 0), ("timeouts", 0), ("reconnects", 0),
                        ("bytes_out", bytes_to[b]), ("bytes_in", bytes_from)):
            check(A[f] - B[f] == want, "backend %d (%s) %s delta: expected %d, got %d (before %d, after %d)"
                  % (b, A["name"], f, want, A[f] - B[f], B[f], A[f]))
        check(A["inflight"] == 0, "backend %d inflight %d after every reply" % (b, A["inflight"]))
    print("deltas ok: per backend %r" % to_backend)


def check_json_fields(argv):
    version = argv[1]
    j = stats_json()

    def ints(obj, keys, where):
        for k in keys:
            check(k in obj, "%s: field %r missing (have %s)" % (where, k, sorted(obj)))
            check(isinstance(obj[k], int) and not isinstance(obj[k], bool) and obj[k] >= 0,
                  "%s.%s: not a non-negative integer: %r" % (where, k, obj[k]))

    def latency(obj, where):
        check(isinstance(obj.get("latency_us"), dict), "%s: latency_us missing" % where)
        lat = obj["latency_us"]
        ints(lat, ["p50", "p90", "p99", "p999", "max"], where + ".latency_us")
        check(lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"],
              "%s.latency_us not ordered: %r" % (where, lat))

    check(j.get("version") == version, "version %r, expected %r" % (j.get("version"), version))
    check(j.get("pid") == int(os.environ["SP_PID"]), "pid %r, expected %s" % (j.get("pid"), os.environ["SP_PID"]))
    ints(j, ["pid", "uptime_s", "commands", "errors", "protocol_errors", "bytes_in", "bytes_out"], "top")
    check(isinstance(j.get("clients"), dict), "clients missing")
    ints(j["clients"], ["current", "total", "rejected"], "clients")
    check(j["commands"] >= 3, "commands %d after 3 commands" % j["commands"])
    check(j["clients"]["total"] >= 3, "clients.total %d after 3 connections" % j["clients"]["total"])
    check(isinstance(j.get("backends"), list) and len(j["backends"]) == 3,
          "backends: expected a list of 3, got %r" % j.get("backends"))
    names = [os.environ["NAME0"], os.environ["NAME1"], "127.0.0.1:%s" % REDIS_PORTS[2]]
    for i, b in enumerate(j["backends"]):
        w = "backends[%d]" % i
        check(b.get("name") == names[i], "%s.name: expected %r, got %r" % (w, names[i], b.get("name")))
        check(b.get("address") == "127.0.0.1:%s" % REDIS_PORTS[i], "%s.address %r" % (w, b.get("address")))
        check(b.get("state") == "up", "%s.state %r" % (w, b.get("state")))
        ints(b, ["weight", "slots", "requests", "responses", "errors", "failures", "timeouts",
                 "reconnects", "inflight", "bytes_in", "bytes_out"], w)
        check(b["slots"] > 0, "%s owns no slot" % w)
        latency(b, w)
    check([b["weight"] for b in j["backends"]] == [1, 2, 1],
          "weights %r, expected [1, 2, 1]" % [b["weight"] for b in j["backends"]])
    total = sum(b["slots"] for b in j["backends"])
    check(total == 1009, "slots sum to %d, expected table_size 1009" % total)
    check(sum(b["requests"] for b in j["backends"]) == 2, "requests: SET + GET should be 2 in all")
    cbn = j.get("commands_by_name")
    check(isinstance(cbn, dict), "commands_by_name missing")
    for name in ("get", "set", "ping"):
        check(name in cbn, "commands_by_name.%s missing (have %s)" % (name, sorted(cbn)))
    for name, cs in cbn.items():
        ints(cs, ["calls", "errors"], "commands_by_name." + name)
        latency(cs, "commands_by_name." + name)
    check(cbn["get"]["calls"] == 1 and cbn["set"]["calls"] == 1, "get/set calls %r" % cbn)
    # the exact names survive every admin report
    out = admin("backends")
    for n in names:
        check(any(l.startswith(n + " ") for l in out.splitlines()), "backends lacks %r: %r" % (n, out))
    txt = admin("stats")
    for n in names:
        check("backend %s address " % n in txt, "stats text lacks backend %r" % n)


def check_metrics(argv):
    import math
    NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
    LNAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
    LVAL = r'"(?:[^"\\\n]|\\[\\"n])*"'
    LPAIR = r"%s=%s" % (LNAME, LVAL)
    LABELS = r"\{(?:%s(?:,%s)*,?)?\}" % (LPAIR, LPAIR)
    VALUE = r"(?:[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?Inf|NaN)"
    SAMPLE = re.compile(r"^(%s)(%s)? (%s)(?: -?[0-9]+)?$" % (NAME, LABELS, VALUE))
    HELP = re.compile(r"^# HELP (%s) (.*)$" % NAME)
    TYPE = re.compile(r"^# TYPE (%s) (counter|gauge|histogram|summary|untyped)$" % NAME)
    PAIR = re.compile(r'(%s)="((?:[^"\\\n]|\\[\\"n])*)"' % LNAME)

    def labels(s):
        out = {}
        for m in PAIR.finditer(s or ""):
            v = re.sub(r'\\(.)', lambda x: "\n" if x.group(1) == "n" else x.group(1), m.group(2))
            check(m.group(1) not in out, "duplicate label %r in %r" % (m.group(1), s))
            out[m.group(1)] = v
        return out

    def val(s):
        return float(s.replace("Inf", "inf"))

    j = stats_json()           # quiescent: the two reports must agree
    text = admin("metrics")
    check(text.endswith("\n"), "metrics does not end in a newline")
    helps, types, samples = {}, {}, []
    current, closed = None, set()
    for ln, line in enumerate(text.split("\n")[:-1], 1):
        if line == "":
            continue
        if line.startswith("#"):
            m = HELP.match(line)
            if m:
                check(m.group(1) not in helps, "line %d: second HELP for %s" % (ln, m.group(1)))
                helps[m.group(1)] = m.group(2)
                continue
            m = TYPE.match(line)
            if m:
                f = m.group(1)
                check(f not in types, "line %d: second TYPE for %s" % (ln, f))
                check(f not in closed and f != current, "line %d: TYPE %s after its samples" % (ln, f))
                types[f] = m.group(2)
                continue
            check(not line.startswith("# HELP") and not line.startswith("# TYPE"),
                  "line %d: malformed HELP/TYPE: %r" % (ln, line))
            continue
        m = SAMPLE.match(line)
        check(m, "line %d is not `name{labels} value`: %r" % (ln, line))
        name, lab, v = m.group(1), m.group(2), m.group(3)
        fam = name
        for suf in ("_bucket", "_sum", "_count"):
            if name.endswith(suf) and types.get(name[:-len(suf)]) == "histogram":
                fam = name[:-len(suf)]
        check(fam in helps, "line %d: sample of %s before its # HELP" % (ln, fam))
        check(fam in types, "line %d: sample of %s before its # TYPE" % (ln, fam))
        if fam != current:
            check(fam not in closed, "line %d: samples of %s are not together" % (ln, fam))
            if current:
                closed.add(current)
            current = fam
        samples.append((fam, name, labels(lab), val(v), ln))
    check(set(helps) == set(types), "HELP without TYPE or back: %r" % (set(helps) ^ set(types)))
    check(len(samples) > 50, "only %d samples" % len(samples))
    fams_with_samples = {s[0] for s in samples}
    for f, t in types.items():
        if t == "counter":
            check(f.endswith("_total"), "counter %s does not end in _total" % f)
        else:
            check(not f.endswith("_total"), "%s %s ends in _total" % (t, f))
    for fam, name, lab, v, ln in samples:
        if types[fam] == "counter":
            check(v >= 0 and v == int(v), "line %d: counter value %r" % (ln, v))
        if fam.startswith("shardproxy_backend"):
            check("backend" in lab, "line %d: %s sample without a backend label" % (ln, fam))
    for f in ("shardproxy_commands_total", "shardproxy_errors_total", "shardproxy_backend_requests_total",
              "shardproxy_backend_responses_total", "shardproxy_backend_latency_seconds",
              "shardproxy_command_calls_total", "shardproxy_command_latency_seconds"):
        check(f in fams_with_samples, "family %s missing" % f)

    # label values: every configured identity, exactly, after unescaping
    names = [os.environ["NAME0"], os.environ["NAME1"], "127.0.0.1:%s" % REDIS_PORTS[2]]
    seen = {lab["backend"] for fam, name, lab, v, ln in samples if "backend" in lab}
    check(seen == set(names), "backend label values %r, expected %r" % (seen, names))
    check('backend="we\\"ird\\\\name"' in text, "name with quote/backslash not escaped as expected")
    check('backend="back\\\\\\\\slash\\"q\\""' in text, "name with two backslashes not escaped as expected")

    # histograms: per labelset (le aside), cumulative buckets ending in +Inf == _count, _sum, _count
    hists = {}
    for fam, name, lab, v, ln in samples:
        if types[fam] != "histogram":
            continue
        key = (fam, tuple(sorted((k, x) for k, x in lab.items() if k != "le")))
        h = hists.setdefault(key, {"buckets": [], "sum": None, "count": None})
        if name == fam + "_bucket":
            check("le" in lab, "line %d: bucket without le" % ln)
            h["buckets"].append((val(lab["le"]), v, ln))
        elif name == fam + "_sum":
            check(h["sum"] is None, "line %d: second _sum for %r" % (ln, key))
            h["sum"] = v
        elif name == fam + "_count":
            check(h["count"] is None, "line %d: second _count for %r" % (ln, key))
            h["count"] = v
        else:
            fail("line %d: %s in histogram %s" % (ln, name, fam))
    check(len(hists) >= 3 + 3, "expected 3 backend and >= 3 command histograms, got %d" % len(hists))
    for key, h in hists.items():
        b = h["buckets"]
        check(b, "%r: no buckets" % (key,))
        check(h["sum"] is not None and h["count"] is not None, "%r: _sum or _count missing" % (key,))
        for (le1, c1, l1), (le2, c2, l2) in zip(b, b[1:]):
            check(le2 > le1, "%r: le not increasing at line %d" % (key, l2))
            check(c2 >= c1, "%r: bucket counts decrease at line %d (%r -> %r)" % (key, l2, c1, c2))
        check(math.isinf(b[-1][0]), "%r: last bucket is not le=+Inf" % (key,))
        check(b[-1][1] == h["count"], "%r: +Inf bucket %r != _count %r" % (key, b[-1][1], h["count"]))
        check(h["sum"] >= 0, "%r: negative _sum" % (key,))

    # agree with stats json, and the largest sample (exact in JSON) falls in
    # every bucket with le >= it (Prometheus le is "less than or equal")
    def one(fam, label, value):
        r = [v for f, n, lab, v, ln in samples if n == fam and lab.get(label) == value]
        check(len(r) == 1, "%s{%s=%r}: %d samples" % (fam, label, value, len(r)))
        return r[0]
    def le_check(key, max_us):
        count = hists[key]["count"]
        for le, c, ln in hists[key]["buckets"]:
            le_us = le if math.isinf(le) else round(le * 1e6)
            if le_us >= max_us:
                check(c == count, "line %d: bucket le=%s (%s us) holds %d of %d samples, but the "
                      "largest sample, %d us (stats json max), is <= le (the same proxy bug as the "
                      "'le is <=' test)" % (ln, le, le_us, c, count, max_us))
            elif count:
                check(c < count, "line %d: bucket le=%s (%s us) holds all %d samples, but the "
                      "largest is %d us > le" % (ln, le, le_us, count, max_us))
    for b in j["backends"]:
        n = b["name"]
        check(one("shardproxy_backend_requests_total", "backend", n) == b["requests"], "requests of %r" % n)
        check(one("shardproxy_backend_responses_total", "backend", n) == b["responses"], "responses of %r" % n)
        check(one("shardproxy_backend_slots", "backend", n) == b["slots"], "slots of %r" % n)
        key = ("shardproxy_backend_latency_seconds", (("backend", n),))
        check(key in hists, "no latency histogram for backend %r" % n)
        check(hists[key]["count"] == b["responses"], "latency _count %r != responses %r for %r"
              % (hists[key]["count"], b["responses"], n))
        le_check(key, b["latency_us"]["max"])
    for cmd, cs in j["commands_by_name"].items():
        check(one("shardproxy_command_calls_total", "command", cmd) == cs["calls"], "calls of %s" % cmd)
        check(one("shardproxy_command_errors_total", "command", cmd) == cs["errors"], "errors of %s" % cmd)
        key = ("shardproxy_command_latency_seconds", (("command", cmd),))
        check(key in hists, "no latency histogram for command %s" % cmd)
        le_check(key, cs["latency_us"]["max"])
    tot = [v for f, n, lab, v, ln in samples if n == "shardproxy_commands_total"]
    check(tot == [j["commands"]], "commands_total %r != stats json %r" % (tot, j["commands"]))
    print("%d samples, %d families, %d histograms" % (len(samples), len(types), len(hists)))


def check_session(argv):
    route = argv[1]
    s = admin_conn()
    buf = b""
    def lines(n):
        nonlocal buf
        while buf.count(b"\n") < n:
            d = s.recv(65536)
            check(d, "connection closed while waiting for %d lines, have %r" % (n, buf))
            buf += d
        parts = buf.split(b"\n")
        out, rest = parts[:n], b"\n".join(parts[n:])
        check(rest == b"", "more than %d lines in the reply: extra %r" % (n, rest[:200]))
        buf = b""
        return [p.decode() for p in out]
    s.sendall(b"help\n")
    while not (buf.startswith(b"quit ") or b"\nquit " in buf) or not buf.endswith(b"\n"):
        d = s.recv(65536)
        check(d, "connection closed in the help reply: %r" % buf)
        buf += d
    h = lines(buf.count(b"\n"))
    check(h[-1].startswith("quit "), "help does not end with quit: %r" % h)
    for cmd in ("help", "stats", "stats json", "metrics", "backends", "route KEY...", "clients", "quit"):
        check(any(l.startswith(cmd + " ") for l in h), "help lacks %r: %r" % (cmd, h))
    s.sendall(b"backends\n")
    b = lines(3)
    for i, l in enumerate(b):
        a = "127.0.0.1:%s" % REDIS_PORTS[i]
        check(l.startswith("%s %s weight 1 state up slots " % (a, a)), "backends line %d: %r" % (i, l))
    s.sendall(b"route foo\n")
    r = lines(1)
    check(r == [route], "route foo: %r, --route says %r" % (r, route))
    s.sendall(b"stats json\n")
    j = json.loads(lines(1)[0])
    check(j["pid"] == int(os.environ["SP_PID"]) and len(j["backends"]) == 3, "stats json: %r" % j)
    s.sendall(b"bogus thing\n")
    check(lines(1) == ["ERR unknown admin command 'bogus'"], "unknown command reply")
    s.sendall(b"stats\r\n")
    s.sendall(b"quit\n")          # the stats reply, then EOF: the proxy closes
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    check(data.startswith(b"shardproxy "), "stats over CRLF: %r" % data[:80])
    check(data.endswith(b"\n"), "stats reply cut: %r" % data[-80:])
    print("interactive session ok")


def check_many_admins(argv):
    conns = [admin_conn() for _ in range(100)]
    for s in conns:
        s.sendall(b"stats json\n")
    for i, s in enumerate(conns):
        data = b""
        while not data.endswith(b"\n"):
            d = s.recv(1 << 16)
            check(d, "admin client %d: closed after %r" % (i, data[:100]))
            data += d
        try:
            j = json.loads(data)
        except ValueError as e:
            fail("admin client %d: bad JSON (%s): %r" % (i, e, data[:300]))
        check(len(j["backends"]) == 3, "admin client %d: %r" % (i, j))
    for s in conns:
        s.close()
    print("100 admin clients answered")


def check_stats_lines(argv):
    c = Client()
    for cmd in (["INCR", "n"], ["DECR", "n"], ["INCRBY", "n", 5], ["DECRBY", "n", 2], ["APPEND", "s", "x"],
                ["STRLEN", "s"], ["GETRANGE", "s", 0, 1], ["SETRANGE", "s", 0, "y"], ["SETNX", "s", 1],
                ["SETEX", "e", 100, 1], ["GETSET", "s", 2], ["EXISTS", "s"], ["TYPE", "s"], ["TTL", "e"],
                ["PTTL", "e"], ["EXPIRE", "s", 100], ["PERSIST", "s"], ["LPUSH", "l", 1], ["RPUSH", "l", 2],
                ["LLEN", "l"], ["LRANGE", "l", 0, -1], ["LPOP", "l"], ["RPOP", "l"], ["SADD", "t", 1],
                ["SCARD", "t"], ["SISMEMBER", "t", 1], ["SMEMBERS", "t"], ["SREM", "t", 1],
                ["HSET", "h", "f", 1], ["HGET", "h", "f"], ["HLEN", "h"], ["HGETALL", "h"], ["HDEL", "h", "f"],
                ["ZADD", "z", 1, "m"], ["ZCARD", "z"], ["ZSCORE", "z", "m"], ["ZRANGE", "z", 0, -1],
                ["ZREM", "z", "m"], ["MSET", "a", 1, "b", 2], ["MGET", "a", "b"], ["DEL", "a", "b"],
                ["ECHO", "hi"], ["PFADD", "p", 1], ["PFCOUNT", "p"], ["STRLEN", "nope"]):
        c.call(*cmd)
    n = admin("stats").count("\n")
    check(n > 100, "stats text has only %d lines" % n)


def check_hog(argv):
    s = admin_conn()
    s.settimeout(10)
    sent = 0
    try:
        s.sendall(b"stats\n" * 10000)
        sent = 10000
    except socket.timeout:
        sent = -1          # the proxy stopped reading: allowed, it is the bound
    open(argv[1], "w").write("%d\n" % sent)
    time.sleep(300)        # hold the connection, never read


def check_info_keys(argv):
    c = Client()
    reqs = b"".join(enc("SET", "info:%d" % i, "x") for i in range(200))
    reqs += b"".join(enc("SET", "ttl:%d" % i, "y", "EX", "1000") for i in range(30))
    c.send(reqs)
    for r in c.replies(230):
        check(r == b"+OK\r\n", "SET reply %r" % r)


def check_clients(argv):
    import signal
    def clients():
        out = admin("clients")
        rows = {}
        for l in out.splitlines():
            m = re.match(r"^id (\d+) addr (\S+) age (\d+)s idle (\d+)s pending (\d+) out (\d+) name (\S+)$", l)
            check(m, "clients line does not parse: %r" % l)
            rows[m.group(2)] = dict(id=int(m.group(1)), age=int(m.group(3)), idle=int(m.group(4)),
                                    pending=int(m.group(5)), out=int(m.group(6)), name=m.group(7))
        return rows
    a = Client()
    r = a.call("HELP")
    check(r.startswith(b"-ERR unknown command 'HELP'"), "HELP on the data port: %r" % r)
    check(a.call("CLIENT", "SETNAME", "statsy") == b"+OK\r\n", "setname")
    ida = int(a.call("CLIENT", "ID")[1:-2])
    rows = clients()
    check(a.local() in rows, "client %s not listed: %r" % (a.local(), rows))
    r = rows[a.local()]
    check(r["id"] == ida and r["name"] == "statsy" and r["pending"] == 0, "row %r (id %d)" % (r, ida))
    deadline = time.time() + 10
    while len(rows) != 1:       # earlier redis-cli connections may still be closing
        check(time.time() < deadline, "expected one client, got %r" % rows)
        time.sleep(0.05)
        rows = clients()
    time.sleep(2.2)
    r = clients()[a.local()]
    check(r["age"] >= 2 and r["idle"] >= 2, "after 2.2 s idle: %r" % r)
    check(a.call("PING") == b"+PONG\r\n", "ping")
    r = clients()[a.local()]
    check(r["idle"] < r["age"], "idle should reset on a command: %r" % r)
    # a second client with a request held by a SIGSTOPped backend
    pid = int(argv[1])
    b = Client()
    os.kill(pid, signal.SIGSTOP)
    try:
        b.send(enc("GET", "pending:key"))
        deadline = time.time() + 10
        while True:
            rows = clients()
            if rows.get(b.local(), {}).get("pending") == 1:
                break
            check(time.time() < deadline, "pending never reached 1: %r" % rows)
            time.sleep(0.05)
        check(len(rows) == 2 and rows[b.local()]["name"] == "-", "rows %r" % rows)
        check(stats_json()["clients"]["current"] == 2, "clients.current != 2")
    finally:
        os.kill(pid, signal.SIGCONT)
    check(b.replies(1)[0] == b"$-1\r\n", "GET after SIGCONT")
    b.s.close()
    a.s.close()
    deadline = time.time() + 10
    while clients():
        check(time.time() < deadline, "clients still listed after close: %r" % clients())
        time.sleep(0.05)
    check(stats_json()["clients"]["current"] == 0, "clients.current != 0 after close")
    print("clients ok")


def check_hello_setname(argv):
    c = Client()
    bad = b"x\nid 999 addr 6.6.6.6:1 age 0s idle 0s pending 0 out 0 name forged"
    r = c.call("HELLO", "2", "SETNAME", bad)
    lines = admin("clients").splitlines()
    check(len(lines) == 1, "HELLO SETNAME %r (reply %r) -> `clients` shows %d lines: %r"
          % (bad, r[:40], len(lines), lines))
    check(r.startswith(b"-ERR Client names cannot contain"),
          "HELLO 2 SETNAME with a newline: expected -ERR Client names cannot contain..., got %r" % r[:60])
    r = c.call("HELLO", "2", "SETNAME", "a b")
    check(r.startswith(b"-ERR Client names cannot contain"),
          "HELLO 2 SETNAME 'a b': expected -ERR Client names cannot contain..., got %r" % r[:60])


def check_le_bound(argv):
    c = Client()
    for cmd in (["GET", "a"], ["STRLEN", "a"], ["EXISTS", "a"], ["TYPE", "a"], ["TTL", "a"], ["PTTL", "a"],
                ["LLEN", "a"], ["SCARD", "a"], ["HLEN", "a"], ["ZCARD", "a"], ["GETRANGE", "a", 0, 1],
                ["LRANGE", "a", 0, 1], ["SMEMBERS", "a"], ["HGETALL", "a"], ["ZRANGE", "a", 0, 1],
                ["INCR", "n"], ["DECR", "n"], ["APPEND", "s", "x"], ["HGET", "h", "f"], ["ZSCORE", "z", "m"],
                ["SISMEMBER", "t", "x"], ["HEXISTS", "h", "f"], ["LINDEX", "l", 0], ["SRANDMEMBER", "t"],
                ["HKEYS", "h"], ["HVALS", "h"], ["ZRANK", "z", "m"], ["BITCOUNT", "b"], ["GETBIT", "b", 1],
                ["PFCOUNT", "p"], ["XLEN", "x"], ["GETDEL", "zz"], ["SETNX", "q", 1], ["DEL", "q"],
                ["EXPIRE", "a", 10], ["PERSIST", "a"], ["INCRBY", "n", 2], ["DECRBY", "n", 2],
                ["SET", "k", "v"], ["HSET", "h", "f", "v"], ["SADD", "t", "m"], ["ZADD", "z", 1, "m"]):
        c.call(*cmd)
    j = stats_json()
    m = admin("metrics")
    found = False
    for name, cs in sorted(j["commands_by_name"].items()):
        mx = cs["latency_us"]["max"]
        if mx <= 0 or mx & (mx - 1) or mx > (1 << 26):
            continue
        found = True
        le = "%d.%06d" % (mx // 1000000, mx % 1000000)
        pre = 'shardproxy_command_latency_seconds_bucket{command="%s",le="' % name
        row = {l[len(pre):].split('"', 1)[0]: int(l.rsplit(" ", 1)[1])
               for l in m.splitlines() if l.startswith(pre)}
        check(row, "no buckets for command %s" % name)
        for k, v in sorted((float(k), v) for k, v in row.items() if k != "+Inf"):
            le_us = round(k * 1e6)
            if le_us >= mx:
                check(v == cs["calls"],
                      "command %s: %d call(s), largest latency exactly %d us (stats json max), but the "
                      "bucket le=\"%.6f\" holds %d; Prometheus buckets count samples <= le"
                      % (name, cs["calls"], mx, k, v))
            else:
                check(v < cs["calls"], "command %s: bucket le=%.6f holds all %d samples, max %d us"
                      % (name, k, v, mx))
        print("command %s: max %d us, bucket le=%s holds %d of %d"
              % (name, mx, le, row.get(le, -1), cs["calls"]))
    sys.exit(0 if found else 3)


def main(argv):
    fn = globals().get("check_" + argv[0].replace("-", "_")) if argv else None
    if fn is None:
        sys.stderr.write(__doc__)
        return 2
    fn(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
