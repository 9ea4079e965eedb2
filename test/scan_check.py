#!/usr/bin/env python3
"""scan_check.py -- SCAN through the proxy keeps Redis's guarantees over
every backend.

    scan_check.py PROXY_PORT NKEYS

Loads NKEYS string keys (k:0 ...) and 100 hashes through the proxy, then:
  full     a scan from 0 with COUNT 1000 returns every key (duplicates are
           allowed, as on Redis), and its cursor is 0 only at the end
  churn    a scan while keys are added (new:*) and removed (k:* with an odd
           number below 5000) between its steps: every key present for the
           whole scan (the even ones, and those from 5000 on) is returned
  match    MATCH k:1* returns exactly the loaded keys that match (of those
           present throughout)
  type     TYPE hash returns exactly the 100 hashes
  count    COUNT 10 takes many more steps than COUNT 10000 (a hint, as on
           Redis), and both see every key
Prints one line per check (`ok NAME ...` or `FAIL NAME: why`); exits 1 on any
failure.
"""
import sys

from resp import connect, enc, Reader  # test/resp.py


def call(s, r, *args):
    s.sendall(enc(*args))
    return r.reply()


def pipeline(s, r, cmds):
    s.sendall(b"".join(enc(*c) for c in cmds))
    return [r.reply() for _ in cmds]


def scan(s, r, opts, between=None):
    """Every key a full scan with OPTS returns (a set) and its step count;
    BETWEEN(step) runs after each step.  Fails if the cursor is 0 before the
    end (the scan would stop early) or is not a number."""
    cur, seen, steps = b"0", set(), 0
    while True:
        cur, keys = call(s, r, "SCAN", cur, *opts)
        if not cur.isdigit():
            raise AssertionError("cursor %r" % cur)
        seen.update(keys)
        steps += 1
        if between:
            between(steps)
        if cur == b"0":
            return seen, steps


def main(argv):
    port, n = int(argv[1]), int(argv[2])
    s = connect(port, timeout=60)
    r = Reader(s)
    failed = []

    def check(name, ok, why):
        print(("ok %s" % name) if ok else ("FAIL %s: %s" % (name, why)))
        if not ok:
            failed.append(name)

    for lo in range(0, n, 1000):
        args = ["MSET"]
        for i in range(lo, min(n, lo + 1000)):
            args += ["k:%d" % i, "v"]
        call(s, r, *args)
    pipeline(s, r, [["HSET", "h:%d" % i, "f", "v"] for i in range(100)])
    loaded = {b"k:%d" % i for i in range(n)} | {b"h:%d" % i for i in range(100)}

    seen, steps = scan(s, r, ["COUNT", "1000"])
    check("full", loaded <= seen and len(seen - loaded) == 0,
          "%d of %d keys returned, %d unexpected" % (len(loaded & seen), len(loaded),
                                                  len(seen - loaded)))
    print("   full scan: %d keys in %d steps" % (len(seen), steps))

    gone = ["k:%d" % i for i in range(1, min(n, 5000), 2)]
    def churn(step):
        if step <= 50:  # remove 50 keys and add 20 per step, for 50 steps
            lo = (step - 1) * 50
            if lo < len(gone):
                call(s, r, "DEL", *gone[lo:lo + 50])
            call(s, r, "MSET", *[x for j in range(20) for x in ("new:%d:%d" % (step, j), "v")])
    seen, steps = scan(s, r, ["COUNT", "500"], churn)
    stayed = loaded - {g.encode() for g in gone}
    check("churn", stayed <= seen, "%d keys present throughout were not returned"
          % len(stayed - seen))

    seen, _ = scan(s, r, ["MATCH", "k:1*", "COUNT", "1000"])
    want = {k for k in stayed if k.startswith(b"k:1")}
    check("match", seen == want, "%d returned, %d expected" % (len(seen), len(want)))

    seen, _ = scan(s, r, ["TYPE", "hash", "COUNT", "1000"])
    check("type", seen == {b"h:%d" % i for i in range(100)}, "%d returned" % len(seen))

    small, s_steps = scan(s, r, ["COUNT", "10"])
    big, b_steps = scan(s, r, ["COUNT", "10000"])
    check("count", small == big and stayed <= small and s_steps > 5 * b_steps,
          "COUNT 10: %d keys in %d steps; COUNT 10000: %d keys in %d steps"
          % (len(small), s_steps, len(big), b_steps))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
