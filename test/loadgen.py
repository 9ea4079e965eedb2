#!/usr/bin/env python3
"""loadgen.py -- the load generator of test/ops.bats.

    loadgen.py PORT KEYFILE STOPFILE OUTFILE READYFILE

NCONN connections, each pipelining batches of GET k / SET k v / GET k on keys
it alone owns, checking every reply, until STOPFILE appears (or MAX_SECONDS);
READYFILE appears once every connection has had a batch answered.  Writes
the totals (requests, errors, wrong, stale, dropped, timeouts, samples) to
OUTFILE as JSON.
"""
import json, os, random, socket, sys, threading, time

from resp import Err, Reader, enc  # test/resp.py, the suites' one RESP client

port, keyfile, stopfile, outfile, readyfile = sys.argv[1:6]
port = int(port)
NCONN, BATCH, MAX_SECONDS = 8, 10, 150
UNKNOWN = object()

# keyfile: "KEY STABLE" per line; STABLE=1 when both configs place KEY on the
# same backend, so its value must survive every reload.
keys = [l.split() for l in open(keyfile) if l.strip()]
own = [[] for _ in range(NCONN)]
for i, (k, st) in enumerate(keys):
    own[i % NCONN].append((k, st == "1"))

lock = threading.Lock()
total = dict(requests=0, errors=0, wrong=0, stale=0, dropped=0, timeouts=0)
samples = []
ready = [0]
deadline = time.time() + MAX_SECONDS

def note(kind, msg):
    with lock:
        total[kind] += 1
        if len(samples) < 20:
            samples.append("%s: %s" % (kind, msg))

def worker(c):
    mine, last, seq, s, r, first = own[c], {}, 0, None, None, True
    while not os.path.exists(stopfile) and time.time() < deadline:
        if s is None:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                r = Reader(s, 1 << 16)
            except OSError as e:
                note("dropped", "connect: %s" % e)
                s = None
                time.sleep(0.1)
                continue
        batch = random.sample(mine, BATCH)
        out, exp = [], []
        for k, stable in batch:
            seq += 1
            v = ("%d:%d" % (c, seq)).encode()
            out += [enc("GET", k), enc("SET", k, v), enc("GET", k)]
            exp += [("get0", k, stable, last.get(k)), ("set", k, stable, b"OK"),
                    ("get1", k, stable, v)]
        try:
            s.sendall(b"".join(out))
            replies = [r.reply() for _ in exp]
        except socket.timeout:
            note("timeouts", "no reply within 10 s")
        except (EOFError, OSError) as e:
            note("dropped", repr(e))
        else:
            n = len(replies)
            with lock:
                total["requests"] += n
            for (kind, k, stable, want), got in zip(exp, replies):
                if isinstance(got, Err):
                    note("errors", "%s %s -> %s" % (kind, k, got.decode(errors="replace")))
                elif kind == "set":
                    if got != b"+OK":
                        note("wrong", "SET %s -> %r" % (k, got))
                elif kind == "get0":
                    if stable and want is not UNKNOWN and got != want:
                        note("wrong", "GET %s before SET: want %r got %r" % (k, want, got))
                elif got != want:
                    # a key that changes backend may see its batch split by a
                    # reload (SET on the old backend, GET on the new one)
                    if stable:
                        note("wrong", "GET %s after SET: want %r got %r" % (k, want, got))
                    else:
                        note("stale", "GET %s after SET: want %r got %r" % (k, want, got))
            for (kind, k, stable, want), got in zip(exp, replies):
                if kind == "get1":
                    last[k] = want if got == want else UNKNOWN
            if first:
                first = False
                with lock:
                    ready[0] += 1
                    if ready[0] == NCONN:
                        open(readyfile, "w").close()
            continue
        for k, _ in batch:  # the batch's fate is unknown: do not check it later
            last[k] = UNKNOWN
        try:
            s.close()
        except OSError:
            pass
        s = None
    if s is not None:
        s.close()

threads = [threading.Thread(target=worker, args=(c,)) for c in range(NCONN)]
for t in threads:
    t.start()
for t in threads:
    t.join()
total["samples"] = samples
with open(outfile + ".tmp", "w") as f:
    json.dump(total, f)
os.rename(outfile + ".tmp", outfile)
