#!/usr/bin/env python3
"""resp_raw.py -- a raw RESP client for the bats suites.

    resp_raw.py PORT NREPLIES [--eof] [--timeout SECONDS] < request-bytes

Connects to 127.0.0.1:PORT, sends stdin byte for byte in one write, then reads
exactly NREPLIES complete RESP2 or RESP3 replies and prints each one on its own line,
escaped, so nil ($-1) and the empty string ($0) stay distinguishable:

    \\r \\n \\\\ as written, other bytes outside 0x20..0x7e as \\xHH.

With --eof it then waits for the server to close the connection and prints
<EOF> (orderly close), <RESET> (connection reset), <OPEN> (still open after
the timeout) or <EXTRA ...> (more bytes arrived first).  A connection that
ends before NREPLIES replies prints what it got as <PARTIAL ...> and then
<EOF>/<RESET>; a reply that does not come in time prints <TIMEOUT>.
Exit status 0 when NREPLIES replies were read (and, with --eof, <EOF> seen).
"""
import socket
import sys

from resp import escape, reply_end  # test/resp.py, the suites' one RESP client


def main():
    args = sys.argv[1:]
    want_eof = "--eof" in args
    timeout = 10.0
    if "--timeout" in args:
        timeout = float(args[args.index("--timeout") + 1])
    port, nreplies = int(args[0]), int(args[1])
    request = sys.stdin.buffer.read()

    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.settimeout(timeout)
    if request:
        s.sendall(request)
    buf = bytearray()
    pos = 0
    got = 0
    closed = None
    while got < nreplies:
        end = reply_end(buf, pos) if pos < len(buf) else None
        if end is not None:
            print(escape(buf[pos:end]))
            pos = end
            got += 1
            continue
        try:
            chunk = s.recv(1 << 16)
        except socket.timeout:
            closed = "<TIMEOUT>"
            break
        except ConnectionResetError:
            closed = "<RESET>"
            break
        if not chunk:
            closed = "<EOF>"
            break
        buf += chunk
    if closed is not None:
        if pos < len(buf):
            print("<PARTIAL %s>" % escape(buf[pos:]))
        print(closed)
        sys.stdout.flush()
        return 1
    ok = True
    if want_eof:
        extra = bytearray(buf[pos:])
        state = "<OPEN>"
        while True:
            try:
                chunk = s.recv(1 << 16)
            except socket.timeout:
                break
            except ConnectionResetError:
                state = "<RESET>"
                break
            if not chunk:
                state = "<EOF>"
                break
            extra += chunk
        if extra:
            print("<EXTRA %s>" % escape(extra))
            ok = False
        print(state)
        ok = ok and state == "<EOF>"
    s.close()
    sys.stdout.flush()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
