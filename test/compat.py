#!/usr/bin/env python3
"""compat.py -- the differential suite: a corpus of Redis commands sent to a
plain redis-server and through shardproxy, replies compared byte for byte.

    compat.py one PROXY_PORT REDIS_PORT PROTO
    compat.py many PROXY_PORT REDIS_PORT PROTO
    compat.py count

one:  the proxy has exactly one backend, REDIS_PORT itself.  The corpus runs
      through the proxy, the server is reset (FLUSHALL, SCRIPT FLUSH,
      FUNCTION FLUSH, SLOWLOG RESET), and it runs again straight at the
      server; every reply must be the same bytes.  Running both against the
      same server makes even LASTSAVE and CONFIG GET comparable.
many: the proxy has several backends; REDIS_PORT is another, plain server.
      Every reply whose meaning does not depend on which server answered
      must be the same bytes; the masking rule is below.
PROTO 2 or 3: with 3 each connection starts with HELLO 3 (its reply, which
      names the server's id, is not compared).
count: print how many commands the corpus has.

Masking rule, stated once: a corpus line may start with a marker.
  ~any   the reply depends on the server or the moment (TIME, RANDOMKEY on
         several keys, SLOWLOG GET, which the proxy tags with the backend):
         never compared, only required not to be an error unless Redis's is
  ~set   the order of an array's elements is not Redis's to keep (KEYS walks
         the keyspace hash table, whose layout depends on when it rehashed,
         and with several backends on how keys were spread): compared as
         sorted elements
  ~one   the reply depends on which backend answered, or on a cursor
         (SCAN, DBSIZE after writes the other servers cannot see, LASTSAVE,
         OBJECT FREQ): compared with one backend only
Keys that commands use together carry the hash tag {t}, so they live on one
backend in the many mode too.

Prints one line per mismatch and a summary `compared N of M, K match`;
exits 1 on any mismatch.
"""
import shlex
import sys

from resp import connect, enc, parse, Reader, escape  # test/resp.py

LUA_SET = "redis.call('set', KEYS[1], ARGV[1]); return redis.call('get', KEYS[1])"
LIB = "#!lua name=mylib\nredis.register_function('myfunc', function(keys, args) return args[1] end)"
LIB_RO = ("#!lua name=rolib\nredis.register_function{function_name='ro', "
          "callback=function(keys, args) return #keys end, flags={'no-writes'}}")

CORPUS = r"""
# ---- strings
SET s1 hello
GET s1
GET nosuch
SET s1 world XX
SET s2 v NX
SET s2 w NX
SET s3 v EX 100
TTL s3
SET s4 v PX 100000 GET
SET s4 new KEEPTTL GET
SETNX s5 a
SETNX s5 b
SETEX s6 100 v
PSETEX s7 100000 v
GETSET s1 again
GETDEL s5
GETEX s6 PERSIST
GETEX s6 EX 50
APPEND s1 -tail
APPEND newappend x
STRLEN s1
STRLEN nosuch
GETRANGE s1 0 3
GETRANGE s1 -4 -1
SETRANGE s1 2 XY
SETRANGE pad 5 z
GET pad
INCR n1
INCRBY n1 10
DECR n1
DECRBY n1 3
INCRBYFLOAT f1 1.5
INCRBYFLOAT f1 -0.25
INCR s1
INCRBY n1 notanumber
INCRBYFLOAT n1 abc
SET big 9223372036854775807
INCR big
MSET {t}m1 a {t}m2 b {t}m3 c
MGET {t}m1 {t}m2 {t}m3 nosuch
MSETNX {t}m1 x {t}m4 y
MSETNX {t}m5 x {t}m6 y
LCS {t}m1 {t}m2
SET {t}l1 ohmytext
SET {t}l2 mynewtext
LCS {t}l1 {t}l2
LCS {t}l1 {t}l2 LEN
LCS {t}l1 {t}l2 IDX MINMATCHLEN 2 WITHMATCHLEN
SET
GET a b
SET s1 v EX 0
SET s1 v EX notint
SET s1 v NX XX
# ---- keys
EXISTS s1
EXISTS s1 s2 nosuch s1
DEL s2
DEL nosuch
UNLINK s3
TOUCH s1 nosuch
TYPE s1
TYPE nosuch
EXPIRE s1 100
EXPIRE s1 100 NX
EXPIRE s1 200 XX
EXPIRE s1 50 GT
EXPIRE s1 50 LT
TTL s1
PTTL nosuch
PERSIST s1
TTL s1
PEXPIRE s1 100000
EXPIREAT s1 4102444800
EXPIRETIME s1
PEXPIREAT s1 4102444800000
PEXPIRETIME s1
EXPIRE s1 abc
RENAME {t}m1 {t}r1
RENAME {t}nosuch {t}r2
RENAMENX {t}r1 {t}m2
RENAMENX {t}r1 {t}r3
COPY {t}r3 {t}c1
COPY {t}r3 {t}c1
COPY {t}r3 {t}c1 REPLACE
DUMP nosuch
OBJECT ENCODING s1
OBJECT ENCODING n1
OBJECT ENCODING nosuch
OBJECT REFCOUNT n1
~one OBJECT FREQ s1
OBJECT IDLETIME nosuch
OBJECT HELP
MEMORY USAGE nosuch
MOVE n1 1
MOVE n1 1
SORT nosuch
RPUSH sortme 3 1 2
SORT sortme
SORT sortme DESC
SORT sortme LIMIT 0 2 ALPHA
SORT_RO sortme
# ---- hashes
HSET h1 f1 v1 f2 v2
HSET h1 f1 v1b
HGET h1 f1
HGET h1 nosuch
HGET nosuch f
HMSET h1 f3 v3 f4 v4
HMGET h1 f1 nosuch f3
HGETALL h1
HGETALL nosuch
HKEYS h1
HVALS h1
HLEN h1
HEXISTS h1 f1
HEXISTS h1 zz
HDEL h1 f4 nosuch
HSETNX h1 f1 x
HSETNX h1 f9 x
HINCRBY h1 cnt 5
HINCRBY h1 cnt -2
HINCRBYFLOAT h1 fl 2.5
HINCRBY h1 f1 1
HSTRLEN h1 f1
HRANDFIELD nosuch
HSCAN h1 0
HSCAN h1 0 MATCH f* COUNT 100
HSET h1
HGET s1 f
# ---- lists
RPUSH l1 a b c
LPUSH l1 z y
LRANGE l1 0 -1
LRANGE l1 1 2
LRANGE nosuch 0 -1
LLEN l1
LINDEX l1 0
LINDEX l1 99
LSET l1 0 first
LSET l1 99 x
LSET nosuch 0 x
LINSERT l1 BEFORE a ins
LINSERT l1 AFTER nosuch x
LPOS l1 b
LPOS l1 nosuch
RPUSH l2 a b a c a
LPOS l2 a RANK 2
LPOS l2 a COUNT 0
LREM l2 2 a
LRANGE l2 0 -1
LTRIM l1 1 3
LRANGE l1 0 -1
LPOP l1
RPOP l1
LPOP l1 2
RPOP nosuch
LPOP nosuch 2
LPUSHX nosuch a
RPUSHX l2 d
RPUSH {t}src 1 2 3
LMOVE {t}src {t}dst LEFT RIGHT
LMOVE {t}src {t}dst RIGHT LEFT
RPOPLPUSH {t}src {t}dst
LRANGE {t}dst 0 -1
LMPOP 2 {t}src {t}dst LEFT
LMPOP 1 {t}nosuch LEFT COUNT 2
LPUSH s1 x
# ---- sets
SADD set1 a b c
SADD set1 a d
SMEMBERS nosuch
SCARD set1
SISMEMBER set1 a
SISMEMBER set1 zz
SMISMEMBER set1 a zz b
SREM set1 d nosuch
SRANDMEMBER nosuch
SPOP nosuch
SADD {t}sa 1 2 3 4
SADD {t}sb 3 4 5
SINTER {t}sa {t}sb
SUNION {t}sa {t}sb
SDIFF {t}sa {t}sb
SINTERSTORE {t}si {t}sa {t}sb
SUNIONSTORE {t}su {t}sa {t}sb
SDIFFSTORE {t}sd {t}sa {t}sb
SINTERCARD 2 {t}sa {t}sb
SINTERCARD 2 {t}sa {t}sb LIMIT 1
SMOVE {t}sa {t}sb 1
SMOVE {t}sa {t}sb nosuch
SMEMBERS {t}si
SSCAN {t}sb 0
SADD intset 1 2 3
OBJECT ENCODING intset
SADD s1 x
# ---- sorted sets
ZADD z1 1 a 2 b 3 c
ZADD z1 NX 5 a 4 d
ZADD z1 XX CH 10 a
ZADD z1 GT 1 b
ZADD z1 INCR 2 c
ZADD z1 nan x
ZSCORE z1 a
ZSCORE z1 nosuch
ZMSCORE z1 a nosuch b
ZINCRBY z1 1.5 b
ZCARD z1
ZCOUNT z1 1 5
ZCOUNT z1 (1 +inf
ZRANK z1 c
ZREVRANK z1 c
ZRANK z1 nosuch
ZRANGE z1 0 -1
ZRANGE z1 0 -1 WITHSCORES
ZRANGE z1 (1 5 BYSCORE LIMIT 0 2
ZRANGE z1 0 -1 REV
ZRANGEBYSCORE z1 -inf +inf WITHSCORES
ZREVRANGEBYSCORE z1 +inf -inf LIMIT 0 1
ZREVRANGE z1 0 1 WITHSCORES
ZADD zl 0 a 0 b 0 c 0 d
ZRANGEBYLEX zl [b (d
ZREVRANGEBYLEX zl + -
ZLEXCOUNT zl - +
ZREMRANGEBYLEX zl [a [a
ZREMRANGEBYSCORE z1 100 200
ZREMRANGEBYRANK zl 0 0
ZREM z1 d nosuch
ZPOPMIN z1
ZPOPMAX z1 2
ZPOPMIN nosuch
ZADD {t}za 1 a 2 b 3 c
ZADD {t}zb 10 b 20 c 30 d
ZUNION 2 {t}za {t}zb WITHSCORES
ZINTER 2 {t}za {t}zb WEIGHTS 1 2 AGGREGATE MAX WITHSCORES
ZDIFF 2 {t}za {t}zb
ZUNIONSTORE {t}zu 2 {t}za {t}zb
ZINTERSTORE {t}zi 2 {t}za {t}zb
ZDIFFSTORE {t}zd 2 {t}za {t}zb
ZINTERCARD 2 {t}za {t}zb
ZRANGESTORE {t}zr {t}za 0 1
ZMPOP 2 {t}za {t}zb MIN COUNT 2
ZRANDMEMBER nosuch
ZSCAN {t}zb 0
ZADD z1 1
ZADD z1 x a
# ---- streams
XADD st1 1-1 f v
XADD st1 1-2 f2 v2
XADD st1 1-1 f v
XADD st1 2-0 a b c d
XLEN st1
XRANGE st1 - +
XRANGE st1 - + COUNT 1
XREVRANGE st1 + - COUNT 2
XRANGE nosuch - +
XREAD COUNT 2 STREAMS st1 0
XREAD STREAMS st1 $
XGROUP CREATE st1 g1 0
XGROUP CREATE st1 g1 0
XGROUP CREATE nosuch g1 0
XGROUP CREATE nosuch2 g1 0 MKSTREAM
XREADGROUP GROUP g1 c1 COUNT 1 STREAMS st1 >
XPENDING st1 g1
XACK st1 g1 1-1
XACK st1 g1 9-9
XGROUP CREATECONSUMER st1 g1 c2
XGROUP DELCONSUMER st1 g1 c2
XGROUP SETID st1 g1 0
XINFO GROUPS st1
XTRIM st1 MAXLEN 2
XDEL st1 2-0 9-9
XLEN st1
XSETID st1 5-0
XADD st1 NOMKSTREAM 6-0 k v
XADD nosuch3 NOMKSTREAM 1-1 k v
XADD st1 MAXLEN 1 7-0 k v
XAUTOCLAIM st1 g1 c1 0 0
XCLAIM st1 g1 c1 0 7-0
XGROUP DESTROY st1 g1
XGROUP DESTROY st1 g1
XADD st1 bad f v
# ---- geo
GEOADD geo 13.361389 38.115556 Palermo 15.087269 37.502669 Catania
GEOADD geo XX 13.361389 38.115556 Palermo
GEODIST geo Palermo Catania
GEODIST geo Palermo Catania km
GEODIST geo Palermo nosuch
GEOHASH geo Palermo nosuch
GEOPOS geo Palermo nosuch
GEOSEARCH geo FROMLONLAT 15 37 BYRADIUS 200 km ASC
GEOSEARCH geo FROMMEMBER Palermo BYBOX 400 400 km ASC WITHDIST
GEORADIUS geo 15 37 200 km WITHDIST ASC
GEORADIUSBYMEMBER geo Palermo 200 km ASC
GEORADIUS_RO geo 15 37 200 km ASC
GEOADD {t}g2 13.361389 38.115556 Palermo
GEOSEARCHSTORE {t}g3 {t}g2 FROMLONLAT 15 37 BYRADIUS 300 km
GEOADD geo 200 100 bad
# ---- hyperloglog
PFADD hll a b c
PFADD hll a
PFCOUNT hll
PFCOUNT nosuch
PFADD {t}h1 a b
PFADD {t}h2 b c
PFMERGE {t}h3 {t}h1 {t}h2
PFCOUNT {t}h1 {t}h2
PFCOUNT {t}h3
PFADD s1 x
# ---- bitmaps
SETBIT b1 7 1
SETBIT b1 7 0
SETBIT b1 100 1
GETBIT b1 100
GETBIT b1 5000
GETBIT nosuch 1
BITCOUNT b1
BITCOUNT b1 0 0
BITCOUNT b1 0 100 BIT
BITPOS b1 1
BITPOS b1 0 0 -1 BIT
SET {t}bx abc
SET {t}by abd
BITOP AND {t}bz {t}bx {t}by
BITOP NOT {t}bn {t}bx
GET {t}bz
BITFIELD b2 SET u8 0 200 GET u8 0 INCRBY u8 0 100
BITFIELD b2 OVERFLOW FAIL INCRBY u8 0 200
BITFIELD_RO b2 GET u4 0
SETBIT b1 -1 1
SETBIT b1 1 2
# ---- scripts
EVAL "return 1" 0
EVAL "return {1,2,'three'}" 0
EVAL "return redis.status_reply('FINE')" 0
EVAL "return redis.error_reply('MYERR bad')" 0
EVAL "return 3.99" 0
EVAL "return nil" 0
EVAL "return ARGV[1]" 0 argv1
EVAL "return KEYS[1]" 1 ek1
EVAL "LUA_SET" 1 ek2 val
EVAL "return redis.call('incr', KEYS[1])" 1 ek3
EVAL "return redis.call('nosuchcmd')" 0
EVAL "syntax error here" 0
EVAL "return 1" -1
EVAL "return 1" 5 a
EVAL_RO "return redis.call('get', KEYS[1])" 1 ek2
EVAL_RO "return redis.call('set', KEYS[1], 'x')" 1 ek2
SCRIPT LOAD "return 'loaded'"
SCRIPT LOAD "return 'loaded'"
SCRIPT EXISTS 4cd23ac1de3b0e5d27e44b9a5fc8c0e27bd4fd4f ffffffffffffffffffffffffffffffffffffffff
SCRIPT EXISTS ffffffffffffffffffffffffffffffffffffffff
EVALSHA 4cd23ac1de3b0e5d27e44b9a5fc8c0e27bd4fd4f 0
EVALSHA ffffffffffffffffffffffffffffffffffffffff 0
EVALSHA ffffffffffffffffffffffffffffffffffffffff 1 ek1
EVALSHA_RO 4cd23ac1de3b0e5d27e44b9a5fc8c0e27bd4fd4f 0
SCRIPT LOAD "syntax error here"
SCRIPT KILL
SCRIPT FLUSH
SCRIPT EXISTS 4cd23ac1de3b0e5d27e44b9a5fc8c0e27bd4fd4f
EVALSHA 4cd23ac1de3b0e5d27e44b9a5fc8c0e27bd4fd4f 0
SCRIPT FLUSH ASYNC
SCRIPT FLUSH SYNC
SCRIPT FLUSH BAD
SCRIPT LOAD
# ---- functions
FUNCTION FLUSH
FUNCTION LOAD "LIB"
FUNCTION LOAD "LIB"
FUNCTION LOAD REPLACE "LIB"
FUNCTION LOAD "LIB_RO"
FUNCTION LOAD "not a library"
FCALL myfunc 0 hello
FCALL myfunc 1 fk1 hello
FCALL nosuch 0
FCALL_RO ro 2 {t}f1 {t}f2
FCALL_RO myfunc 0 x
FUNCTION LIST LIBRARYNAME mylib
FUNCTION LIST LIBRARYNAME nosuchlib
FUNCTION DELETE rolib
FUNCTION DELETE rolib
FUNCTION KILL
FUNCTION STATS
FUNCTION FLUSH ASYNC
FUNCTION LIST
FUNCTION RESTORE notadump
FUNCTION DELETE
# ---- server and keyspace-wide
CONFIG GET maxmemory
CONFIG GET maxmemory-policy
CONFIG GET nosuchparam
CONFIG GET
~one LASTSAVE
SLOWLOG LEN
SLOWLOG RESET
~any SLOWLOG GET
SLOWLOG GET 0
~any TIME
ECHO hello
PING
PING message
SELECT 1
SET indb1 x
GET indb1
~one DBSIZE
~set KEYS *
SWAPDB 0 1
~set KEYS *
SWAPDB 0 1
SELECT 0
GET indb1
SWAPDB 0 99
SWAPDB a b
FLUSHDB
DBSIZE
KEYS *
~one SCAN 0
SCAN notacursor
SCAN 0 COUNT 0
~one SCAN 0 MATCH x* COUNT 10 TYPE string
RANDOMKEY
SET only one
RANDOMKEY
~set KEYS *
~one SCAN 0 MATCH o*
FLUSHDB ASYNC
FLUSHDB SYNC
FLUSHDB BAD
FLUSHALL
FLUSHALL ASYNC
FLUSHALL BAD
DBSIZE
SELECT 16
SELECT -1
SELECT notanumber
NOSUCHCOMMAND a b
"""


def corpus():
    """(marker, argv) per corpus line; LUA_SET, LIB, LIB_RO expanded."""
    out = []
    for line in CORPUS.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        marker = ""
        if line.startswith("~"):
            marker, line = line.split(None, 1)
        argv = [{"LUA_SET": LUA_SET, "LIB": LIB, "LIB_RO": LIB_RO}.get(a, a)
                for a in shlex.split(line)]
        out.append((marker, argv))
    return out


RESET = [["SELECT", "0"], ["FLUSHALL"], ["SCRIPT", "FLUSH"], ["FUNCTION", "FLUSH"],
         ["SLOWLOG", "RESET"]]


def run(port, proto, cmds):
    """Each of CMDS on one connection to PORT, its reply's bytes in order."""
    s = connect(port, timeout=30)
    r = Reader(s)
    if proto == 3:
        s.sendall(enc("HELLO", "3"))
        r.raw()
    out = []
    for argv in cmds:
        s.sendall(enc(*argv))
        out.append(r.raw())
    s.close()
    return out


def sorted_reply(raw):
    """An array reply's elements, sorted (the ~set rule)."""
    value, _ = parse(raw, 0)
    return sorted(value) if isinstance(value, list) else value


def main(argv):
    entries = corpus()
    if argv[1:] == ["count"]:
        print(len(entries))
        return 0
    mode, pport, rport, proto = argv[1], int(argv[2]), int(argv[3]), int(argv[4])
    cmds = [a for _, a in entries]
    run(rport, 2, RESET)
    if mode == "one":
        via = run(pport, proto, cmds)
        run(rport, 2, RESET)
    else:
        run(pport, 2, RESET)  # every backend, through the proxy
        via = run(pport, proto, cmds)
    direct = run(rport, proto, cmds)
    compared = match = 0
    for (marker, a), got, want in zip(entries, via, direct):
        line = " ".join(a)[:70]
        if marker == "~any":
            if got[:1] in (b"-", b"!") and want[:1] not in (b"-", b"!"):
                print("MISMATCH (error) %s: proxy %s" % (line, escape(got[:200])))
            continue
        if marker == "~one" and mode != "one":
            continue
        compared += 1
        if marker == "~set":
            ok = sorted_reply(got) == sorted_reply(want)
        else:
            ok = got == want
        if ok:
            match += 1
        else:
            print("MISMATCH %s\n  proxy %s\n  redis %s" % (line, escape(got[:300]),
                                                         escape(want[:300])))
    print("%s RESP%d: %d commands, compared %d, %d match" % (mode, proto, len(entries),
                                                            compared, match))
    return 0 if match == compared else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
