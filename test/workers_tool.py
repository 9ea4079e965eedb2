#!/usr/bin/env python3
"""workers_tool.py -- many connections to a shardproxy at once, for workers.bats.

Usage: workers_tool.py PORT N [HOLD_S]

Opens N connections to 127.0.0.1:PORT one after another, keeping each open;
on each sends CLIENT ID and then SET wk:I I, and prints one line per
connection: "I ID" when both were answered (the CLIENT ID, then +OK), or
"I ERR <first error reply>" when the proxy refused it.  Then keeps every
connection open for HOLD_S seconds (default 0), so the caller can look at
the proxy's figures while they are all connected, and closes them.
"""
import sys
import time

import resp


def main(argv):
    port, n = int(argv[1]), int(argv[2])
    hold = float(argv[3]) if len(argv) > 3 else 0.0
    conns = []
    for i in range(n):
        s = resp.connect(port)
        conns.append(s)
        r = resp.Reader(s)
        try:
            s.sendall(resp.enc("CLIENT", "ID"))
            cid = r.reply()
        except OSError as e:  # refused: the error line may be lost to the reset
            print("%d ERR connection closed (%s)" % (i, e), flush=True)
            continue
        if isinstance(cid, resp.Err):
            print("%d ERR %s" % (i, cid.decode()), flush=True)
            continue
        s.sendall(resp.enc("SET", "wk:%d" % i, i))
        ok = r.reply()
        if ok != b"+OK":
            print("%d ERR SET answered %r" % (i, ok), flush=True)
            continue
        print("%d %s" % (i, cid.decode().lstrip(":")), flush=True)
    time.sleep(hold)
    for s in conns:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
