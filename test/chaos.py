#!/usr/bin/env python3
"""chaos.py -- data integrity through shardproxy while its backends misbehave.

    chaos.py --port P --proxy-pid PID --backend PORT:PID [--backend ...]
             [--seconds 30] [--clients 16] [--timeout-ms 500] [--margin-ms 1500]
             [--seed N]

CLIENTS worker processes, each with its own connection and its own keys,
pipeline batches of SET, GET, MGET and MSET through the proxy.  Every value
written encodes who wrote it, for which key, and a per-client sequence
number, so each reply can be checked against what that client did:

  * a SET/MSET reply is +OK or an -ERR line; +OK makes its sequence number
    the key's "last acknowledged" value, an -ERR leaves the write in doubt
    (a timed-out write may still be applied later);
  * a GET/MGET value must be one this client wrote for that key, sent before
    the GET, and not older than the last acknowledged write unless it is a
    write still in doubt; nil only if no write to the key was acknowledged;
  * no reply may take longer than timeout + margin, and the proxy may never
    close or stall a client connection.

Meanwhile the chaos loop, every 0.1-0.5 s, does one of: SIGSTOP a backend
briefly (< timeout) or for longer (> timeout); CLIENT KILL TYPE normal on a
backend (drops the proxy's connections); CLIENT KILL and at once SIGSTOP (the
reconnect hangs for a while); CLIENT PAUSE ALL; CONFIG SET maxclients 1 plus
CLIENT KILL (reconnects are refused with -ERR max number of clients for a
while).  The chaos loop talks to each backend over one held connection
(CLIENT KILL skips the caller).

At the end every backend is resumed and reset, and each key is read back
through the proxy (and from the backends directly): the value must be the
last acknowledged one, or a later or in-doubt one that client really wrote.

Prints a summary (one "# ..." line per item) and exits 1 on any mismatch,
crash, disconnect, stall, or when the chaos provoked no errors at all.
"""
import argparse
import multiprocessing as mp
import os
import random
import signal
import socket
import sys
import time

# ---------------------------------------------------------------- RESP


# enc (a command as a RESP array), Reader (reply framing) and connect come
# from test/resp.py, the suites' one RESP client.
from resp import Reader, connect, enc  # noqa: E402  (test/ is on sys.path: the script's dir)


def err_kind(line):
    """A short name for an -ERR line, for the counts."""
    t = line.decode(errors="replace")
    for k in ("timed out", "unavailable", "max number of clients"):
        if k in t:
            return k
    return t[:60]


# ---------------------------------------------------------------- values

def make_value(cid, key, seq, rnd):
    pad = rnd.choice((0, 8, 40, 200, 1500)) + rnd.randrange(8)
    return b"%d|%s|%d|%d|%s" % (cid, key.encode(), seq, pad, b"x" * pad)


def parse_value(v):
    """(client, key, seq) from a value, or None when it is not one of ours."""
    try:
        cid, key, seq, pad, rest = v.split(b"|", 4)
        if len(rest) != int(pad) or rest.strip(b"x"):
            return None
        return int(cid), key.decode(), int(seq)
    except ValueError:
        return None


class KeyState:
    """What one client did to one key."""
    __slots__ = ("status", "last_ok", "max_sent")

    def __init__(self):
        self.status = {}  # seq -> "pending" | "ok" | "err"
        self.last_ok = 0
        self.max_sent = 0


def judge(cid, key, ks, v, bound):
    """Check value V read for KEY against what client CID did (KeyState KS),
    for a read sent when BOUND was the highest sequence number sent for the
    key.  Returns None when fine, "stale-in-doubt" when it is an older write
    whose SET failed (in doubt, applied late), else a description."""
    if v is None:
        return None if ks.last_ok == 0 else "nil, but seq %d was acknowledged" % ks.last_ok
    p = parse_value(v)
    if p is None:
        return "not a value of ours: %r" % v[:60]
    vc, vk, seq = p
    if vc != cid or vk != key:
        return "value of client %d key %s, read by client %d for key %s" % (vc, vk, cid, key)
    st = ks.status.get(seq)
    if st is None:
        return "seq %d was never written to %s" % (seq, key)
    if seq > bound:
        return "seq %d was sent after the read (bound %d)" % (seq, bound)
    if seq >= ks.last_ok:
        return None
    if st == "err":
        return "stale-in-doubt"
    return "seq %d is older than the acknowledged seq %d (status %s)" % (seq, ks.last_ok, st)


# ---------------------------------------------------------------- worker

def worker(cid, args, stop_at, out_q):
    rnd = random.Random(args.seed * 1000 + cid)
    keys = ["chaos:%d:%d:%d" % (args.seed, cid, k) for k in range(args.keys)]
    state = dict((k, KeyState()) for k in keys)
    limit = (args.timeout_ms + args.margin_ms) / 1000.0
    st = {"requests": 0, "ok": 0, "values": 0, "nil": 0, "errors": {}, "mismatches": 0,
          "stale_in_doubt": 0, "disconnects": 0, "hangs": 0, "slow": 0, "max_wait_ms": 0.0,
          "batches": 0, "examples": []}
    seq = 0

    def mismatch(msg):
        st["mismatches"] += 1
        if len(st["examples"]) < 10:
            st["examples"].append("client %d: %s" % (cid, msg))

    def check_read(key, v, bound):
        res = judge(cid, key, state[key], v, bound)
        if res == "stale-in-doubt":
            st["stale_in_doubt"] += 1
        elif res:
            mismatch("GET %s: %s" % (key, res))
        elif v is None:
            st["nil"] += 1
        else:
            st["values"] += 1

    s, r = None, None
    while time.time() < stop_at:
        if s is None:
            try:
                s = connect(args.port, limit + 3)
                r = Reader(s)
            except OSError as e:
                mismatch("cannot connect: %s" % e)
                time.sleep(0.5)
                continue
        batch = []  # (kind, keys, seqs or bounds)
        wire = []
        for _ in range(rnd.randrange(1, 41)):
            c = rnd.random()
            if c < 0.5:
                k = rnd.choice(keys)
                seq += 1
                ks = state[k]
                ks.status[seq] = "pending"
                ks.max_sent = seq
                wire.append(enc("SET", k, make_value(cid, k, seq, rnd)))
                batch.append(("set", [k], seq))
            elif c < 0.8:
                k = rnd.choice(keys)
                wire.append(enc("GET", k))
                batch.append(("get", [k], [state[k].max_sent]))
            elif c < 0.93:
                ks3 = rnd.sample(keys, 3)
                wire.append(enc("MGET", *ks3))
                batch.append(("mget", ks3, [state[k].max_sent for k in ks3]))
            else:
                ks2 = rnd.sample(keys, 2)
                seq += 1
                pairs = []
                for k in ks2:
                    state[k].status[seq] = "pending"
                    state[k].max_sent = seq
                    pairs += [k, make_value(cid, k, seq, rnd)]
                wire.append(enc("MSET", *pairs))
                batch.append(("mset", ks2, seq))
        t0 = time.monotonic()
        done = 0
        try:
            s.sendall(b"".join(wire))
            for kind, ks_, extra in batch:
                rep = r.reply()
                wait = time.monotonic() - t0
                st["max_wait_ms"] = max(st["max_wait_ms"], wait * 1000)
                if wait > limit:
                    st["slow"] += 1
                    if len(st["examples"]) < 10:
                        st["examples"].append("client %d: %s %s answered after %.0f ms"
                                              % (cid, kind, ks_, wait * 1000))
                done += 1
                st["requests"] += 1
                if isinstance(rep, bytes) and rep.startswith(b"-"):
                    kd = err_kind(rep)
                    st["errors"][kd] = st["errors"].get(kd, 0) + 1
                    if kind in ("set", "mset"):
                        for k in ks_:
                            state[k].status[extra] = "err"
                    continue
                if kind in ("set", "mset"):
                    if rep == b"+OK":
                        st["ok"] += 1
                        for k in ks_:
                            state[k].status[extra] = "ok"
                            state[k].last_ok = max(state[k].last_ok, extra)
                    else:
                        mismatch("%s %s: reply %r" % (kind, ks_, rep if not isinstance(rep, bytes) else rep[:60]))
                        for k in ks_:
                            state[k].status[extra] = "err"
                elif kind == "get":
                    if isinstance(rep, list) or (isinstance(rep, bytes) and rep[:1] in (b"+", b":")):
                        mismatch("GET %s: reply %r" % (ks_[0], rep))
                    else:
                        check_read(ks_[0], rep, extra[0])
                else:  # mget
                    if not isinstance(rep, list) or len(rep) != len(ks_):
                        mismatch("MGET %s: reply %r" % (ks_, rep))
                    else:
                        for k, v, b in zip(ks_, rep, extra):
                            if isinstance(v, list):
                                mismatch("MGET %s: nested %r" % (k, v))
                            else:
                                check_read(k, v, b)
        except socket.timeout:
            st["hangs"] += 1
            if len(st["examples"]) < 10:
                st["examples"].append("client %d: no reply for %.1f s (request %d of %d in the batch)"
                                      % (cid, limit + 3, done + 1, len(batch)))
        except (EOFError, OSError, ValueError) as e:
            st["disconnects"] += 1
            if len(st["examples"]) < 10:
                st["examples"].append("client %d: %s: %s" % (cid, type(e).__name__, e))
        if done < len(batch):  # the connection is unusable: writes in doubt
            for kind, ks_, extra in batch[done:]:
                if kind in ("set", "mset"):
                    for k in ks_:
                        state[k].status[extra] = "err"
            try:
                s.close()
            except OSError:
                pass
            s = None
        st["batches"] += 1
    if s is not None:
        s.close()
    out_q.put((cid, st, dict((k, (v.status, v.last_ok, v.max_sent)) for k, v in state.items())))


# ---------------------------------------------------------------- chaos

class Backend:
    def __init__(self, spec):
        port, pid = spec.split(":")
        self.port, self.pid = int(port), int(pid)
        self.admin = None
        self.busy_until = 0.0  # CLIENT PAUSE in effect: do not talk to it

    def cmd(self, *a):
        """One command on the held admin connection (reconnects if needed)."""
        for attempt in (1, 2):
            try:
                if self.admin is None:
                    self.admin = connect(self.port, 5)
                    self.reader = Reader(self.admin)
                self.admin.sendall(enc(*a))
                return self.reader.reply()
            except (OSError, EOFError):
                self.admin = None
                if attempt == 2:
                    raise


def alive(pid):
    try:
        os.kill(pid, 0)
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def chaos_loop(args, backends, stop_at, rnd):
    acts = {}
    crashed = False

    def note(a):
        acts[a] = acts.get(a, 0) + 1

    while time.time() < stop_at:
        if not alive(args.proxy_pid):
            crashed = True
            break
        time.sleep(rnd.uniform(0.1, 0.5))
        b = rnd.choice(backends)
        now = time.time()
        if b.busy_until > now:
            time.sleep(b.busy_until - now)
        a = rnd.random()
        try:
            if a < 0.25:
                note("short stop")
                os.kill(b.pid, signal.SIGSTOP)
                time.sleep(rnd.uniform(0.05, args.timeout_ms / 1000.0 * 0.6))
                os.kill(b.pid, signal.SIGCONT)
            elif a < 0.40:
                note("long stop")
                os.kill(b.pid, signal.SIGSTOP)
                time.sleep(rnd.uniform(args.timeout_ms / 1000.0 * 1.2, 1.5))
                os.kill(b.pid, signal.SIGCONT)
            elif a < 0.65:
                note("client kill")
                b.cmd("CLIENT", "KILL", "TYPE", "normal")
            elif a < 0.75:
                note("client kill + stop")
                b.cmd("CLIENT", "KILL", "TYPE", "normal")
                os.kill(b.pid, signal.SIGSTOP)
                time.sleep(rnd.uniform(0.2, 0.8))
                os.kill(b.pid, signal.SIGCONT)
            elif a < 0.88:
                note("client pause")
                ms = rnd.randrange(100, 900)
                b.cmd("CLIENT", "PAUSE", ms, "ALL")
                b.busy_until = time.time() + ms / 1000.0 + 0.05
            else:
                note("refuse connections")
                b.cmd("CONFIG", "SET", "maxclients", "1")
                b.cmd("CLIENT", "KILL", "TYPE", "normal")
                time.sleep(rnd.uniform(0.2, 0.8))
                b.cmd("CONFIG", "SET", "maxclients", "10000")
        except (OSError, EOFError, ValueError) as e:
            note("admin error: %s" % type(e).__name__)
    return acts, crashed


def restore(backends):
    for b in backends:
        try:
            os.kill(b.pid, signal.SIGCONT)
        except OSError:
            pass
    for b in backends:
        now = time.time()
        if b.busy_until > now:
            time.sleep(b.busy_until - now)
        try:
            b.cmd("CONFIG", "SET", "maxclients", "10000")
            b.cmd("CLIENT", "UNPAUSE")
        except (OSError, EOFError) as e:
            print("# restoring backend %d: %s" % (b.port, e))


# ---------------------------------------------------------------- readback

def read_back(args, keys, deadline):
    """Final values of KEYS through the proxy: dict key -> value (None for
    nil); a key whose GET keeps failing past DEADLINE maps to an -ERR line."""
    vals, todo = {}, list(keys)
    while todo:
        s = connect(args.port, 10)
        r = Reader(s)
        s.sendall(b"".join(enc("GET", k) for k in todo))
        again = []
        for k in todo:
            v = r.reply()
            if isinstance(v, bytes) and v.startswith(b"-"):
                again.append(k)
                vals[k] = v
            else:
                vals[k] = v
        s.close()
        todo = again
        if todo:
            if time.time() > deadline:
                break
            time.sleep(0.3)
    return vals


def direct(backends, keys):
    """The value each backend holds for each key (at most one may)."""
    found = {}
    for b in backends:
        s = connect(b.port, 10)
        r = Reader(s)
        s.sendall(b"".join(enc("GET", k) for k in keys))
        for k in keys:
            v = r.reply()
            if v is not None:
                found.setdefault(k, []).append((b.port, v))
        s.close()
    return found


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--proxy-pid", type=int, required=True)
    ap.add_argument("--backend", action="append", required=True)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--keys", type=int, default=24)
    ap.add_argument("--timeout-ms", type=int, default=500)
    ap.add_argument("--margin-ms", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    args = ap.parse_args()
    backends = [Backend(x) for x in args.backend]
    rnd = random.Random(args.seed)
    print("# chaos: seed %d, %d clients, %.0f s, timeout %d ms (+%d ms margin), backends %s"
          % (args.seed, args.clients, args.seconds, args.timeout_ms, args.margin_ms,
             " ".join(str(b.port) for b in backends)))
    sys.stdout.flush()

    q = mp.Queue()
    stop_at = time.time() + args.seconds
    procs = [mp.Process(target=worker, args=(c, args, stop_at, q)) for c in range(args.clients)]
    for p in procs:
        p.start()
    try:
        acts, crashed = chaos_loop(args, backends, stop_at, rnd)
    finally:
        restore(backends)
    results = {}
    deadline = time.time() + (args.timeout_ms + args.margin_ms) / 1000.0 + 30
    while len(results) < len(procs) and time.time() < deadline:
        try:
            cid, st, keys = q.get(timeout=max(0.1, deadline - time.time()))
            results[cid] = (st, keys)
        except Exception:  # noqa: BLE001 -- queue.Empty
            break
    for p in procs:
        p.join(5)
        if p.is_alive():
            p.kill()
    lost_workers = len(procs) - len(results)
    crashed = crashed or not alive(args.proxy_pid)

    tot = {"requests": 0, "ok": 0, "values": 0, "nil": 0, "mismatches": 0, "stale_in_doubt": 0,
           "disconnects": 0, "hangs": 0, "slow": 0, "batches": 0}
    errors, examples, max_wait = {}, [], 0.0
    for st, _ in results.values():
        for k in tot:
            tot[k] += st[k]
        for k, v in st["errors"].items():
            errors[k] = errors.get(k, 0) + v
        examples += st["examples"]
        max_wait = max(max_wait, st["max_wait_ms"])

    # read every key back, through the proxy and from the backends
    final_bad, final_stale, checked = 0, 0, 0
    if not crashed:
        allkeys = {}
        for cid, (_, keys) in results.items():
            for k, v in keys.items():
                allkeys[k] = (cid, v)
        names = sorted(allkeys)
        vals = read_back(args, names, time.time() + 20)
        held = direct(backends, names)
        for k in names:
            cid, (status, last_ok, max_sent) = allkeys[k]
            ks = KeyState()
            ks.status, ks.last_ok, ks.max_sent = status, last_ok, max_sent
            v = vals.get(k)
            checked += 1
            if isinstance(v, bytes) and v.startswith(b"-"):
                final_bad += 1
                examples.append("final GET %s through the proxy keeps failing: %r" % (k, v))
                continue
            res = judge(cid, k, ks, v, max_sent)
            if res == "stale-in-doubt":
                final_stale += 1
            elif res:
                final_bad += 1
                examples.append("final %s: %s" % (k, res))
            on = held.get(k, [])
            if len(on) > 1 or (on and on[0][1] != v) or (not on and v is not None):
                final_bad += 1
                examples.append("final %s: proxy says %r, backends hold %r" % (k, v and v[:40], on))

    print("# chaos actions: %s" % ", ".join("%s %d" % kv for kv in sorted(acts.items())))
    print("# requests %d in %d batches: %d writes acknowledged, %d values read, %d nils"
          % (tot["requests"], tot["batches"], tot["ok"], tot["values"], tot["nil"]))
    print("# errors by kind: %s" % (", ".join("%s %d" % kv for kv in sorted(errors.items())) or "none"))
    print("# mismatches %d (during the run), %d (final read-back of %d keys); crashes %d; "
          "client disconnects %d; stalls %d; lost workers %d"
          % (tot["mismatches"], final_bad, checked, int(crashed), tot["disconnects"], tot["hangs"],
             lost_workers))
    print("# max wait %.0f ms (limit %d ms), replies over the limit %d; stale reads of in-doubt "
          "writes %d (during), %d (final)" % (max_wait, args.timeout_ms + args.margin_ms,
                                             tot["slow"], tot["stale_in_doubt"], final_stale))
    for e in examples[:20]:
        print("#   " + e)
    fail = []
    if crashed:
        fail.append("the proxy crashed")
    if tot["mismatches"] or final_bad:
        fail.append("mismatches")
    if tot["disconnects"] or tot["hangs"] or lost_workers:
        fail.append("client connections broke or stalled")
    if tot["slow"]:
        fail.append("replies slower than timeout + margin")
    if not errors:
        fail.append("the chaos provoked no errors at all (is it working?)")
    if tot["ok"] < 100:
        fail.append("almost no progress (%d writes acknowledged)" % tot["ok"])
    print("RESULT %s" % ("OK" if not fail else "FAIL: " + "; ".join(fail)))
    sys.exit(1 if fail else 0)


if __name__ == "__main__":
    main()
