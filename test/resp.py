#!/usr/bin/env python3
"""resp.py -- the one RESP client of the test suites, and the key hash.

Every Python helper under test/ imports this module (test/ is on sys.path:
it is the scripts' own directory) instead of carrying its own encoder,
reply reader or MurmurHash:

  enc(*args)            a command as a RESP array of bulk strings (str, bytes
                        or anything str() takes)
  parse(buf, pos)       the RESP2 or RESP3 reply at buf[pos]: (value, end), or
                        None when it is not complete yet; ValueError when it
                        is not RESP
  reply_end(buf, pos)   end offset of that reply, or None (framing only)
  parse_all(data)       how many complete replies DATA is, or None when it is
                        not a sequence of well-formed replies
  Reader(sock)          .reply(): the next reply, parsed; .raw(): its bytes
  connect(port, timeout)  a TCP_NODELAY connection to 127.0.0.1:PORT
  escape(data)          bytes as printable text (\\r \\n \\\\ \\xHH)
  murmur64a(b, seed)    MurmurHash64A, seed 0xc70f6907 by default (the proxy's)
  hash_tag(key)         the part of KEY between the first { and the next }, if
                        not empty, else KEY (Redis Cluster's rule)
  slot(key, m, tags)    the proxy's slot of KEY: murmur64a(tag) % M

Parsed values: a status, error or integer reply is its line without CRLF
(b"+OK", b"-ERR ...", b":1"; an error is an Err, a bytes subclass, so
isinstance() tells it apart), a bulk string its bytes, nil None, an array a
list.  RESP3: a null (_) is None, a boolean, double or big number its line
like an integer, a verbatim string or blob error its bytes (a blob error
an Err), a map, set or push a list of its elements (a map's keys and
values alternating), an attribute is skipped (the value it annotates is
returned).

Run as a program (the bats suites use it for the independent slot check):

  resp.py slot KEY [M [on|off]]   print slot(KEY, M (65537), tags on|off)
  resp.py selftest                murmur64a's known vectors; prints ok
"""
import socket
import sys

HASH_SEED = 0xC70F6907
_MASK, _MUL = (1 << 64) - 1, 0xC6A4A7935BD1E995


# ------------------------------------------------------------------ encoding

def _b(a):
    return a if isinstance(a, bytes) else str(a).encode()


def enc(*args):
    """ARGS as one RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = _b(a)
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


# ------------------------------------------------------------------- replies

class Err(bytes):
    """An error reply's line (b"-ERR ..."): compares equal to those bytes."""


def parse(buf, pos=0):
    """The RESP2 or RESP3 reply starting at buf[pos]: (value, end offset), or
    None when it is incomplete.  ValueError when buf[pos] does not start a
    reply."""
    nl = buf.find(b"\r\n", pos)
    if nl < 0:
        return None
    kind, end = buf[pos:pos + 1], nl + 2
    line = bytes(buf[pos:nl])
    if kind == b"-":
        return Err(line), end
    if kind in (b"+", b":", b"#", b",", b"("):
        return line, end
    if kind == b"_":
        return None, end
    if kind in (b"$", b"=", b"!"):
        n = int(line[1:])
        if n < 0:
            return None, end
        if len(buf) < end + n + 2:
            return None
        v = bytes(buf[end:end + n])
        return (Err(v) if kind == b"!" else v), end + n + 2
    if kind in (b"*", b"%", b"~", b">", b"|"):
        n = int(line[1:])
        if n < 0:
            return None, end
        n *= 2 if kind in (b"%", b"|") else 1
        items = []
        for _ in range(n):
            r = parse(buf, end)
            if r is None:
                return None
            items.append(r[0])
            end = r[1]
        if kind == b"|":  # an attribute: the reply it annotates follows
            return parse(buf, end)
        return items, end
    raise ValueError("not a RESP reply at offset %d: %r" % (pos, bytes(buf[pos:pos + 40])))


def reply_end(buf, pos=0):
    """End offset of the complete RESP2 or RESP3 reply starting at buf[pos], or None."""
    r = parse(buf, pos)
    return None if r is None else r[1]


def parse_all(data):
    """Number of complete RESP replies in DATA, or None if DATA is not a
    sequence of well-formed replies (a truncated last one included)."""
    pos, n = 0, 0
    try:
        while pos < len(data):
            r = parse(data, pos)
            if r is None:
                return None
            pos, n = r[1], n + 1
    except ValueError:
        return None
    return n


class Reader:
    """Replies from a blocking socket, one at a time (EOFError when the
    connection closes before a reply is complete)."""

    def __init__(self, s, chunk=1 << 20):
        self.s, self.buf, self.chunk = s, b"", chunk

    def fill(self):
        d = self.s.recv(self.chunk)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def _next(self):
        while True:
            r = parse(self.buf, 0) if self.buf else None
            if r is not None:
                return r
            self.fill()

    def reply(self):
        """The next reply, parsed (see the module's doc)."""
        value, end = self._next()
        self.buf = self.buf[end:]
        return value

    def raw(self):
        """The next reply's bytes, CRLFs included."""
        _, end = self._next()
        out, self.buf = self.buf[:end], self.buf[end:]
        return out


def connect(port, timeout=10, host="127.0.0.1"):
    s = socket.create_connection((host, int(port)), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def escape(data):
    """DATA (bytes) as text: \\r \\n \\\\ spelled so, other bytes outside
    0x20..0x7e as \\xHH, so nil ($-1) and "" ($0) stay distinguishable."""
    out = []
    for b in data:
        if b == 0x5C:
            out.append("\\\\")
        elif b == 0x0D:
            out.append("\\r")
        elif b == 0x0A:
            out.append("\\n")
        elif 0x20 <= b <= 0x7E:
            out.append(chr(b))
        else:
            out.append("\\x%02x" % b)
    return "".join(out)


# ---------------------------------------------------------------- key hash

def murmur64a(b, seed=HASH_SEED):
    """MurmurHash64A of bytes B, computed here independently of the proxy."""
    h = (seed ^ (len(b) * _MUL)) & _MASK
    n = len(b) // 8 * 8
    for i in range(0, n, 8):
        k = (int.from_bytes(b[i:i + 8], "little") * _MUL) & _MASK
        k ^= k >> 47
        h = ((h ^ ((k * _MUL) & _MASK)) * _MUL) & _MASK
    if len(b) & 7:
        h = ((h ^ int.from_bytes(b[n:], "little")) * _MUL) & _MASK
    h ^= h >> 47
    h = (h * _MUL) & _MASK
    return h ^ (h >> 47)


def hash_tag(key):
    key = _b(key)
    i = key.find(b"{")
    j = key.find(b"}", i + 1) if i >= 0 else -1
    return key[i + 1:j] if j > i + 1 else key


def slot(key, m=65537, tags=True):
    key = _b(key)
    return murmur64a(hash_tag(key) if tags else key) % m


VECTORS = [  # MurmurHash64A, seed 0xc70f6907
    (b"foo", 9631199822919835226),
    (b"bar", 11474628671133349555),
    (b"foo\nbar", 16306510975912980159),
    (b"lyft", 12847078931730529320),
    (b"", 6142509188972423790),
]


def main(argv):
    if argv[:1] == ["selftest"]:
        for data, want in VECTORS:
            got = murmur64a(data)
            if got != want:
                print("murmur64a(%r) = %d, want %d" % (data, got, want))
                return 1
        print("ok")
        return 0
    if argv[:1] == ["slot"] and 2 <= len(argv) <= 4:
        m = int(argv[2]) if len(argv) > 2 else 65537
        tags = (argv[3] if len(argv) > 3 else "on") == "on"
        print(slot(argv[1].encode(), m, tags))
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
