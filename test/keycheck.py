#!/usr/bin/env python3
"""keycheck.py -- differential test of the proxy's key extraction.

    keycheck.py REDIS_PORT CMDDUMP

For every command of CORPUS below, asks a live redis-server for
`COMMAND GETKEYS <command...>` and the proxy's own code (CMDDUMP --keys,
test/cmddump.c, which includes shardproxy.c) for the keys it routes on, and
compares the two key lists (as multisets: the order does not change where a
request goes).  Redis answers an error for a command without key arguments
("The command has no key arguments", "Invalid arguments specified for
command"): that is the empty list; with "Invalid arguments" (e.g. EVAL with
numkeys 0, PFMERGE with no source) the proxy's cmd_keys() may also refuse
the arguments.  A command without arguments is not asked about (COMMAND
GETKEYS needs one): it has no keys.  Any other error means the corpus entry
itself is wrong and is reported as such.

CMDDUMP prints the row kind too: a CMD_ONE row routes on one key, so Redis
finding more keys for it is a mismatch as well; rows without key specs
(local, any-backend, all-backend commands) must be commands Redis finds no
key in.  Refused commands are compared too (their key specs are in the
table), but as they are never forwarded a difference there is printed as a
note and does not fail the check.  So is a shard-channel command (SPUBLISH,
SSUBSCRIBE, SUNSUBSCRIBE): Redis flags its channel spec "not_key", so
GETKEYS finds none, but the proxy places the channel as a key on purpose
(SHARD_CHANNELS), where PUBLISH and SUBSCRIBE place theirs too.

Prints one line per disagreement and a summary; exits 1 on any.
"""
import subprocess
import sys

# Commands whose key spec is a channel (Redis: "not_key"), placed as a key.
SHARD_CHANNELS = {"SPUBLISH": 1, "SSUBSCRIBE": -1, "SUNSUBSCRIBE": -1}

from resp import Err, Reader, connect, enc  # test/resp.py, the suites' one RESP client

# Keys are named k:... (and only keys), so a non-key argument taken for a key
# shows in the message.
CORPUS = [
    # strings
    "GET k:a", "SET k:a v", "SET k:a v EX 10 NX", "SETNX k:a v", "SETEX k:a 10 v",
    "PSETEX k:a 100 v", "GETSET k:a v", "GETDEL k:a", "GETEX k:a PERSIST", "GETRANGE k:a 0 1",
    "SETRANGE k:a 0 v", "SUBSTR k:a 0 1", "APPEND k:a v", "STRLEN k:a", "INCR k:a", "DECR k:a",
    "INCRBY k:a 2", "DECRBY k:a 2", "INCRBYFLOAT k:a 1.5", "MGET k:a", "MGET k:a k:b k:c",
    "MSET k:a 1", "MSET k:a 1 k:b 2 k:c 3", "MSETNX k:a 1 k:b 2", "LCS k:a k:b", "LCS k:a k:b LEN",
    "SETBIT k:a 7 1", "GETBIT k:a 7", "BITCOUNT k:a", "BITCOUNT k:a 0 -1 BIT", "BITPOS k:a 1",
    "BITFIELD k:a GET u8 0", "BITFIELD_RO k:a GET u8 0", "BITOP AND k:dst k:a k:b",
    "BITOP NOT k:dst k:a", "BITOP OR k:dst k:a k:b k:c",
    # generic keyspace
    "DEL k:a", "DEL k:a k:b k:c", "UNLINK k:a k:b", "EXISTS k:a k:b", "TOUCH k:a k:b",
    "TYPE k:a", "TTL k:a", "PTTL k:a", "EXPIRE k:a 10", "EXPIRE k:a 10 NX", "PEXPIRE k:a 100",
    "EXPIREAT k:a 2000000000", "PEXPIREAT k:a 2000000000000", "EXPIRETIME k:a",
    "PEXPIRETIME k:a", "PERSIST k:a", "DUMP k:a", "RESTORE k:a 0 payload",
    "RENAME k:a k:b", "RENAMENX k:a k:b", "COPY k:a k:b", "COPY k:a k:b REPLACE",
    "MOVE k:a 1", "OBJECT ENCODING k:a", "OBJECT FREQ k:a", "OBJECT IDLETIME k:a",
    "OBJECT REFCOUNT k:a", "MEMORY USAGE k:a", "MEMORY USAGE k:a SAMPLES 5",
    "MIGRATE 127.0.0.1 1 k:a 0 1000", "MIGRATE 127.0.0.1 1 \"\" 0 1000 KEYS k:a k:b",
    "MIGRATE 127.0.0.1 1 \"\" 0 1000 COPY REPLACE KEYS k:a k:b k:c",
    "SORT k:a", "SORT k:a LIMIT 0 10 ALPHA", "SORT k:a STORE k:dst",
    "SORT k:a BY w_* GET o_* STORE k:dst", "SORT k:a LIMIT 0 1 GET # STORE k:dst DESC",
    "SORT_RO k:a", "SORT_RO k:a BY w_* GET o_*", "WATCH k:a k:b",
    # lists
    "LPUSH k:a v", "RPUSH k:a v w", "LPUSHX k:a v", "RPUSHX k:a v", "LPOP k:a", "RPOP k:a 2",
    "LLEN k:a", "LRANGE k:a 0 -1", "LINDEX k:a 0", "LSET k:a 0 v", "LINSERT k:a BEFORE p v",
    "LREM k:a 0 v", "LTRIM k:a 0 1", "LPOS k:a v", "RPOPLPUSH k:a k:b",
    "LMOVE k:a k:b LEFT RIGHT", "LMPOP 1 k:a LEFT", "LMPOP 3 k:a k:b k:c RIGHT COUNT 2",
    "BLPOP k:a k:b 0", "BRPOP k:a 0", "BRPOPLPUSH k:a k:b 0", "BLMOVE k:a k:b LEFT LEFT 0",
    "BLMPOP 0 2 k:a k:b LEFT",
    # hashes
    "HSET k:a f v", "HSET k:a f v g w", "HSETNX k:a f v", "HGET k:a f", "HMGET k:a f g",
    "HMSET k:a f v", "HDEL k:a f", "HLEN k:a", "HSTRLEN k:a f", "HEXISTS k:a f", "HKEYS k:a",
    "HVALS k:a", "HGETALL k:a", "HINCRBY k:a f 1", "HINCRBYFLOAT k:a f 1.5",
    "HRANDFIELD k:a 2 WITHVALUES", "HSCAN k:a 0 MATCH *",
    # sets
    "SADD k:a m", "SREM k:a m", "SCARD k:a", "SISMEMBER k:a m", "SMISMEMBER k:a m n",
    "SMEMBERS k:a", "SPOP k:a", "SRANDMEMBER k:a 2", "SSCAN k:a 0", "SMOVE k:a k:b m",
    "SINTER k:a k:b", "SUNION k:a k:b k:c", "SDIFF k:a", "SINTERSTORE k:dst k:a k:b",
    "SUNIONSTORE k:dst k:a", "SDIFFSTORE k:dst k:a k:b", "SINTERCARD 2 k:a k:b",
    "SINTERCARD 1 k:a LIMIT 5",
    # sorted sets
    "ZADD k:a 1 m", "ZADD k:a NX 1 m 2 n", "ZINCRBY k:a 1 m", "ZREM k:a m", "ZCARD k:a",
    "ZCOUNT k:a 0 1", "ZLEXCOUNT k:a - +", "ZSCORE k:a m", "ZMSCORE k:a m n", "ZRANK k:a m",
    "ZREVRANK k:a m", "ZRANGE k:a 0 -1", "ZRANGE k:a 0 1 BYSCORE LIMIT 0 1",
    "ZRANGEBYSCORE k:a 0 1", "ZRANGEBYLEX k:a - +", "ZREVRANGE k:a 0 -1",
    "ZREVRANGEBYSCORE k:a 1 0", "ZREVRANGEBYLEX k:a + -", "ZREMRANGEBYRANK k:a 0 1",
    "ZREMRANGEBYSCORE k:a 0 1", "ZREMRANGEBYLEX k:a - +", "ZPOPMIN k:a", "ZPOPMAX k:a 2",
    "ZRANDMEMBER k:a 2", "ZSCAN k:a 0", "ZRANGESTORE k:dst k:a 0 -1",
    "ZUNIONSTORE k:dst 2 k:a k:b", "ZUNIONSTORE k:dst 2 k:a k:b WEIGHTS 1 2 AGGREGATE MAX",
    "ZINTERSTORE k:dst 1 k:a", "ZDIFFSTORE k:dst 2 k:a k:b", "ZUNION 2 k:a k:b",
    "ZINTER 3 k:a k:b k:c WITHSCORES", "ZDIFF 1 k:a", "ZINTERCARD 2 k:a k:b LIMIT 3",
    "ZMPOP 2 k:a k:b MIN", "ZMPOP 1 k:a MAX COUNT 3", "BZPOPMIN k:a k:b 0", "BZPOPMAX k:a 0",
    "BZMPOP 0 1 k:a MIN",
    # hyperloglog
    "PFADD k:a e", "PFCOUNT k:a", "PFCOUNT k:a k:b", "PFMERGE k:dst k:a k:b", "PFMERGE k:dst",
    # streams
    "XADD k:a * f v", "XADD k:a MAXLEN ~ 10 * f v", "XLEN k:a", "XRANGE k:a - +",
    "XREVRANGE k:a + - COUNT 1", "XDEL k:a 1-1", "XTRIM k:a MAXLEN 10", "XSETID k:a 1-1",
    "XACK k:a g 1-1", "XPENDING k:a g", "XPENDING k:a g - + 10 c",
    "XCLAIM k:a g c 0 1-1", "XAUTOCLAIM k:a g c 0 0-0 COUNT 1",
    "XREAD STREAMS k:a 0", "XREAD COUNT 2 STREAMS k:a k:b 0 0",
    "XREAD COUNT 2 BLOCK 10 STREAMS k:a k:b k:c 0 0 0",
    "XREADGROUP GROUP g c STREAMS k:a >", "XREADGROUP GROUP g c COUNT 1 NOACK STREAMS k:a k:b > >",
    "XGROUP CREATE k:a g $", "XGROUP CREATE k:a g $ MKSTREAM", "XGROUP SETID k:a g $",
    "XGROUP DESTROY k:a g", "XGROUP CREATECONSUMER k:a g c", "XGROUP DELCONSUMER k:a g c",
    "XINFO STREAM k:a", "XINFO STREAM k:a FULL", "XINFO GROUPS k:a", "XINFO CONSUMERS k:a g",
    # geo
    "GEOADD k:a 13.36 38.11 p", "GEODIST k:a p q km", "GEOHASH k:a p", "GEOPOS k:a p q",
    "GEORADIUS k:a 15 37 200 km", "GEORADIUS k:a 15 37 200 km STORE k:dst",
    "GEORADIUS k:a 15 37 200 km WITHDIST STOREDIST k:dst",
    "GEORADIUS k:a 15 37 200 km STORE k:b STOREDIST k:c", "GEORADIUS_RO k:a 15 37 200 km",
    "GEORADIUSBYMEMBER k:a p 100 km", "GEORADIUSBYMEMBER k:a p 100 km STORE k:dst",
    "GEORADIUSBYMEMBER_RO k:a p 100 km", "GEOSEARCH k:a FROMMEMBER p BYRADIUS 10 km",
    "GEOSEARCHSTORE k:dst k:a FROMLONLAT 15 37 BYBOX 10 10 km",
    # scripting and functions
    "EVAL s 0", "EVAL s 1 k:a", "EVAL s 2 k:a k:b arg", "EVAL s 0 arg1 arg2", "EVALSHA sha 1 k:a",
    "EVALSHA sha 0", "EVAL_RO s 1 k:a arg", "EVALSHA_RO sha 2 k:a k:b", "FCALL f 0",
    "FCALL f 1 k:a", "FCALL f 2 k:a k:b arg", "FCALL_RO f 1 k:a", "FCALL_RO f 0 arg",
    # pub/sub with keys (shard channels)
    "SPUBLISH k:a msg", "SSUBSCRIBE k:a k:b",
    # commands without keys
    "PING", "ECHO hi", "DBSIZE", "TIME", "INFO", "COMMAND COUNT", "CLIENT ID", "SELECT 0",
    "HELLO 2", "KEYS *", "SCAN 0", "RANDOMKEY", "FLUSHDB", "PUBLISH chan msg", "SUBSCRIBE chan",
    "CONFIG GET maxmemory", "SCRIPT FLUSH", "FUNCTION LIST", "MULTI", "EXEC", "QUIT",
]


def split(cmd):
    """Split on blanks; "" is an empty argument."""
    return ["" if w == '""' else w for w in cmd.split()]


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    port, cmddump = int(argv[1]), argv[2]
    cmds = [split(c) for c in CORPUS]
    for c in cmds:
        if any("\t" in a or "\n" in a for a in c):
            print("corpus: no tabs or newlines in arguments: %r" % c)
            return 2

    proxy = subprocess.run([cmddump, "--keys"], input="".join("\t".join(c) + "\n" for c in cmds),
                           capture_output=True, text=True, timeout=60)
    lines = proxy.stdout.split("\n")[:-1]
    if proxy.returncode != 0 or len(lines) != len(cmds):
        print("%s --keys: status %d, %d lines for %d commands; stderr %r"
              % (cmddump, proxy.returncode, len(lines), len(cmds), proxy.stderr[:500]))
        return 1

    s = connect(port, timeout=20)
    r = Reader(s)
    # COMMAND GETKEYS needs an argument after the name: a command without
    # arguments has no key to find, and is not asked about
    s.sendall(b"".join(enc("COMMAND", "GETKEYS", *c) for c in cmds if len(c) > 1))
    bad = notes = 0
    kinds = {}
    keyed = 0
    families = set()
    for c, line in zip(cmds, lines):
        rep = r.reply() if len(c) > 1 else []
        text = " ".join(a if a else '""' for a in c)
        invalid = False
        if isinstance(rep, Err):
            if b"has no key arguments" in rep:
                want = []
            elif b"Invalid arguments specified" in rep:
                want, invalid = [], True
            else:
                print("CORPUS %s: redis says %s" % (text, rep.decode(errors="replace")))
                bad += 1
                continue
        elif isinstance(rep, list):
            want = [k.decode() for k in rep]
        else:
            print("CORPUS %s: unexpected COMMAND GETKEYS reply %r" % (text, rep))
            bad += 1
            continue
        fields = line.split("\t")
        kind, got = fields[0], fields[1:]
        kinds[kind] = kinds.get(kind, 0) + 1
        if want:
            keyed += 1
            families.add(c[0].upper())
        if kind == "error" and invalid:
            continue  # both find the arguments do not fit the key specs
        if kind in ("unknown", "arity", "error"):
            print("MISMATCH %s: redis keys %r; the proxy: %s" % (text, want, kind))
            bad += 1
        elif sorted(got) != sorted(want) and kind == "CMD_REFUSE":
            # not forwarded, so it routes on nothing: shown, not counted
            print("note     %s: redis keys %r; the proxy's specs (refused, never routed) give %r"
                  % (text, want, got))
            notes += 1
        elif c[0].upper() in SHARD_CHANNELS and not want and got == (
                c[1:] if SHARD_CHANNELS[c[0].upper()] < 0 else c[1:2]):
            print("note     %s: redis keys []; the proxy places the channel(s) %r as keys"
                  % (text, got))
            notes += 1
        elif sorted(got) != sorted(want):
            print("MISMATCH %s: redis keys %r; the proxy (%s) routes on %r" % (text, want, kind, got))
            bad += 1
        elif kind == "CMD_ONE" and len(want) != 1:
            print("MISMATCH %s: a CMD_ONE row, but redis finds keys %r" % (text, want))
            bad += 1
    s.close()
    print("%d commands (%d with keys, %d command names with keys), %s: %d disagreement(s), "
          "%d note(s) on refused commands and shard channels"
          % (len(cmds), keyed, len(families),
             ", ".join("%s %d" % kv for kv in sorted(kinds.items())), bad, notes))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
