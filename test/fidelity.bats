#!/usr/bin/env bats
#
# fidelity.bats -- the proxy as one Redis: the differential corpus
# (test/compat.py) against a real redis-server in RESP2 and RESP3, SCAN over
# every backend (test/scan_check.py), the commands sent to every backend and
# merged (FLUSHALL, SCRIPT, SLOWLOG, ...), the per-database and RESP3
# backend connection pools, and CLIENT LIST / INFO / KILL / REPLY.

load helper

# compat MODE PROTO REF_PORT: the corpus through the proxy vs REF_PORT.
compat() {
    run timeout 120 python3 "$BATS_TEST_DIRNAME/compat.py" "$1" "$SP_PORT" "$3" "$2"
    printf '%s\n' "${lines[@]}"
    [ "$status" -eq 0 ]
    [[ "${lines[-1]}" == "$1 RESP$2: "*" commands, compared "*" match" ]]
}

# backend_clients I: connected_clients of redis I, the proxy's connections
# to it plus the one asking.
backend_clients() {
    bcli "$1" info clients | tr -d '\r' | sed -n 's/^connected_clients://p'
}

# bats test_tags=valgrind
@test "differential: the corpus through one backend is the server's own replies, byte for byte, RESP2 and RESP3" {
    start_redis 1
    write_config
    start_proxy
    [ "$(python3 "$BATS_TEST_DIRNAME/compat.py" count)" -ge 400 ]
    compat one 2 "${REDIS_PORTS[0]}"
    compat one 3 "${REDIS_PORTS[0]}"
}

@test "differential: through three backends, every reply that does not depend on the server matches a plain redis-server" {
    start_redis 4
    local ref=${REDIS_PORTS[3]}
    REDIS_PORTS=("${REDIS_PORTS[@]:0:3}")
    write_config
    start_proxy
    compat many 2 "$ref"
    compat many 3 "$ref"
}

@test "SCAN: 100,000 keys over 3 backends: every key, churn, MATCH, TYPE, COUNT; bad cursors are Redis's error" {
    start_redis 3
    write_config
    start_proxy
    run timeout 300 python3 "$BATS_TEST_DIRNAME/scan_check.py" "$SP_PORT" 100000
    printf '%s\n' "${lines[@]}"
    [ "$status" -eq 0 ]
    local i
    for i in 0 1 2; do # the keys were spread: the scan had three backends to walk
        [ "$(bcli "$i" dbsize)" -gt 20000 ]
    done
    # a cursor mid-scan, then the same with another topology tag (the low 4 bits)
    local cur bad
    cur=$(rcli scan 0 count 10 | head -1)
    [[ "$cur" =~ ^[1-9][0-9]*$ ]]
    bad=$((cur - cur % 16 + cur % 16 % 15 + 1))
    run raw 4 < <(
        resp SCAN "$bad"
        resp SCAN abc
        resp SCAN -1
        resp SCAN 0 COUNT 0
    )
    printf '%s\n' "${lines[@]}"
    [ "${lines[0]}" = '-ERR invalid cursor\r\n' ]
    [ "${lines[1]}" = '-ERR invalid cursor\r\n' ]
    [ "${lines[2]}" = '-ERR invalid cursor\r\n' ]
    [ "${lines[3]}" = '-ERR syntax error\r\n' ] # the backend's own
}

@test "fan-out: FLUSHALL, KEYS, DBSIZE, RANDOMKEY over 3 backends; a backend down is named, the others still answer" {
    start_redis 3
    write_config
    start_proxy
    local i
    for i in 1 2 3 4 5 6 7 8 9; do set_ok "fk$i" v; done
    [ "$(rcli dbsize)" = 9 ]
    [ "$(rcli keys 'fk*' | sort | tr '\n' ' ')" = "fk1 fk2 fk3 fk4 fk5 fk6 fk7 fk8 fk9 " ]
    [[ "$(rcli randomkey)" == fk[1-9] ]]
    [ "$(rcli flushall)" = OK ]
    [ "$(dbsize_sum)" = 0 ]
    [ "$(rcli randomkey)" = "" ]
    for i in 1 2 3 4 5 6 7 8 9; do set_ok "fk$i" v; done
    kill -KILL "${REDIS_PIDS[1]}" "${REDIS_PIDS[2]}"
    local id1="127.0.0.1:${REDIS_PORTS[1]}" id2="127.0.0.1:${REDIS_PORTS[2]}"
    wait_until eval '[[ "$(rcli dbsize)" == *unavailable* ]]'
    run rcli flushall
    echo "$output"
    [[ "$output" == "ERR backend $id1 unavailable (also failed: $id2)" ||
        "$output" == "ERR backend $id2 unavailable (also failed: $id1)" ]]
    [ "$(bcli 0 dbsize)" = 0 ] # the live one did flush: the error says which did not
    run rcli keys '*'
    [[ "$output" == "ERR backend 127.0.0.1:"*" unavailable (also failed: "* ]]
}

# bats test_tags=valgrind
@test "scripts: SCRIPT LOAD on every backend, EXISTS only where all have it, EVALSHA by key anywhere, NOSCRIPT as Redis sends it" {
    start_redis 3
    write_config
    start_proxy
    local sha i k
    sha=$(rcli script load "return redis.call('incr', KEYS[1])")
    [ "$sha" = "$(bcli 0 script load "return redis.call('incr', KEYS[1])")" ]
    for i in 0 1 2; do
        [ "$(bcli "$i" script exists "$sha")" = 1 ]
        k=$(key_on "$i" sc)
        [ "$(rcli evalsha "$sha" 1 "$k")" = 1 ]
        [ "$(bcli "$i" get "$k")" = 1 ]
    done
    bcli 1 script flush >/dev/null # backend 1 restarted, say
    run raw 3 < <(
        resp SCRIPT EXISTS "$sha" ffffffffffffffffffffffffffffffffffffffff
        resp EVALSHA "$sha" 1 "$(key_on 1 sc)"
        resp EVALSHA "$sha" 1 "$(key_on 0 sc)"
    )
    printf '%s\n' "${lines[@]}"
    [ "${lines[0]}" = '*2\r\n:0\r\n:0\r\n' ]
    [ "${lines[1]}" = '-NOSCRIPT No matching script. Please use EVAL.\r\n' ]
    [ "${lines[2]}" = ':2\r\n' ]
    [ "$(rcli script flush)" = OK ]
    [ "$(bcli 0 script exists "$sha")" = 0 ]
    [ "$(rcli script kill)" = "NOTBUSY No scripts in execution right now." ]
}

@test "SLOWLOG: LEN summed, GET merged with each entry tagged with its backend, RESET on all" {
    start_redis 3
    write_config
    start_proxy
    local i
    for i in 0 1 2; do
        bcli "$i" config set slowlog-log-slower-than 0 >/dev/null
        bcli "$i" slowlog reset >/dev/null
    done
    rcli set "$(key_on 0 sl)" v >/dev/null
    rcli set "$(key_on 1 sl)" v >/dev/null
    local len
    len=$(rcli slowlog len)
    [ "$len" -ge 2 ] # the SETs, and the backends' own SLOWLOG calls meanwhile
    run raw 1 < <(resp SLOWLOG GET -1)
    echo "$output"
    [[ "$output" == *"\$3\\r\\nset\\r\\n"* ]]
    [[ "$output" == *"127.0.0.1:${REDIS_PORTS[0]}\\r\\n"* ]]
    [[ "$output" == *"127.0.0.1:${REDIS_PORTS[1]}\\r\\n"* ]]
    [ "$(rcli slowlog reset)" = OK ]
    for i in 0 1 2; do
        [ "$(bcli "$i" slowlog len)" -le 1 ] # at most that RESET itself
    done
}

# bats test_tags=valgrind
@test "databases: SELECT n isolates keys on every backend, per-db pools open lazily and close after pool_idle_timeout" {
    start_redis 3
    write_config "pool_idle_timeout 1"
    start_proxy
    local i k before
    before=$(backend_clients 0)
    run raw 32 < <(
        resp SELECT 3
        for i in $(seq 1 30); do resp SET "db3k$i" "v$i"; done
        resp DBSIZE
    )
    [ "${lines[0]}" = '+OK\r\n' ]
    [ "${lines[31]}" = ':30\r\n' ]
    for i in 0 1 2; do
        [ "$(bcli "$i" dbsize)" = 0 ]
        [ "$(bcli "$i" -n 3 dbsize)" -ge 1 ]
    done
    [ "$(rcli dbsize)" = 0 ]
    [ "$(rcli -n 3 dbsize)" = 30 ]
    [ "$(rcli -n 3 get db3k7)" = v7 ]
    k=$(key_on 2 dbk)
    [ "$(rcli -n 3 set "$k" there)" = OK ]
    [ "$(bcli 2 -n 3 get "$k")" = there ] # on its own backend, in db 3
    [ "$(bcli 2 exists "$k")" = 0 ]
    [[ "$(rcli info keyspace | tr -d '\r')" == *"db3:keys=31,expires=0"* ]]
    # MOVE to another db of the same backend; SWAPDB on every backend
    [ "$(rcli -n 3 move db3k1 4)" = 1 ]
    [ "$(rcli -n 4 get db3k1)" = v1 ]
    [ "$(rcli swapdb 3 5)" = OK ]
    [ "$(rcli -n 5 dbsize)" = 30 ]
    [ "$(rcli -n 3 dbsize)" = 0 ]
    # db 3..5 pools were opened beside db 0's; unused for 1 s they close
    [ "$(backend_clients 0)" -gt "$before" ]
    wait_until eval '[ "$(backend_clients 0)" -le "$before" ]'
    [ "$(rcli -n 5 get db3k7)" = v7 ] # and reopen when needed
    # out-of-range and pinned databases
    [ "$(rcli select 16)" = "ERR DB index is out of range" ]
    [ "$(rcli select -1)" = "ERR DB index is out of range" ]
}

@test "RESP3: HELLO 3 replies pass through untouched; what the proxy merges is RESP3 too" {
    start_redis 3
    write_config
    start_proxy
    local h3
    h3=$(key_on 0 h3)
    rcli hset "$h3" a 1 >/dev/null
    rcli set "$(key_on 0 r3)" x >/dev/null
    rcli set "$(key_on 1 r3)" y >/dev/null
    run raw 7 < <(
        resp HELLO 3
        resp HGETALL "$h3"
        resp GET nosuch
        resp MGET "$(key_on 0 r3)" nosuch "$(key_on 1 r3)"
        resp ZSCORE nosuch a
        resp RANDOMKEY
        resp HELLO 2
    )
    printf '%s\n' "${lines[@]}"
    [[ "${lines[0]}" == '%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n'* ]]
    [ "${lines[1]}" = '%1\r\n$1\r\na\r\n$1\r\n1\r\n' ]
    [ "${lines[2]}" = '_\r\n' ]
    [ "${lines[3]}" = '*3\r\n$1\r\nx\r\n_\r\n$1\r\ny\r\n' ]
    [ "${lines[4]}" = '_\r\n' ]
    [[ "${lines[5]}" == '$'* ]]
    [[ "${lines[6]}" == '*14\r\n$6\r\nserver\r\n'* ]]
    # the same bytes straight from a backend over RESP3
    run timeout 20 python3 "$BATS_TEST_DIRNAME/resp_raw.py" "${REDIS_PORTS[0]}" 2 \
        < <(resp HELLO 3; resp HGETALL "$h3")
    [ "${lines[1]}" = '%1\r\n$1\r\na\r\n$1\r\n1\r\n' ]
}

# client_script PORT: two connections to PORT; the first names itself and
# stays; the second lists, kills it by ID, and reads what it was told.
client_script() {
    SP_TEST_DIR=$BATS_TEST_DIRNAME python3 - "$1" <<'PY'
import os, sys
sys.path.insert(0, os.environ["SP_TEST_DIR"])
from resp import connect, enc, Reader
port = int(sys.argv[1])
a = connect(port); ra = Reader(a)
a.sendall(enc("CLIENT", "SETNAME", "victim")); ra.reply()
a.sendall(enc("CLIENT", "ID")); aid = int(ra.reply()[1:])
b = connect(port); rb = Reader(b)
b.sendall(enc("CLIENT", "LIST")); lst = rb.reply().decode()
# the field names of every line (the server's list also has the proxy's own)
for fields in sorted({" ".join(f.split("=")[0] for f in l.split(" ")) for l in lst.splitlines()}):
    print("LINE " + fields)
print("NAMED %d" % sum("name=victim " in l for l in lst.splitlines()))
b.sendall(enc("CLIENT", "KILL", "ID", aid)); print("KILL %s" % rb.reply().decode())
b.sendall(enc("CLIENT", "KILL", "ID", aid)); print("AGAIN %s" % rb.reply().decode())
a.settimeout(5)
print("VICTIM %s" % ("EOF" if a.recv(10) == b"" else "OPEN"))
PY
}

@test "CLIENT LIST, INFO, KILL as Redis: the same fields in the same order, kill by ID closes that client only" {
    start_redis 1
    write_config
    start_proxy
    run client_script "$SP_PORT"
    printf '%s\n' "${lines[@]}"
    [ "$status" -eq 0 ]
    local proxy=("${lines[@]}")
    run client_script "${REDIS_PORTS[0]}"
    printf '%s\n' "${lines[@]}"
    [ "${#proxy[@]}" -eq "${#lines[@]}" ]
    local i
    for i in "${!lines[@]}"; do
        [ "${proxy[i]}" = "${lines[i]}" ]
    done
    [ "${proxy[-1]}" = "VICTIM EOF" ]
    [[ "$(rcli client info)" =~ ^id=[0-9]+\ addr=127\.0\.0\.1:[0-9]+\ laddr=127\.0\.0\.1:$SP_PORT\ fd=[0-9]+\ name=\ age=0\ idle=0\ flags=N\ db=0\  ]]
}

@test "CLIENT REPLY OFF / SKIP / ON, KILL's errors, NO-EVICT, NO-TOUCH, SETINFO: the bytes a redis-server sends" {
    start_redis 1
    write_config
    start_proxy
    script() {
        printf 'CLIENT REPLY OFF\r\nSET a 1\r\nGET a\r\nCLIENT REPLY ON\r\nGET a\r\n'
        printf 'CLIENT REPLY SKIP\r\nGET a\r\nPING\r\nCLIENT REPLY SKIP\r\nCLIENT REPLY SKIP\r\nECHO x\r\nECHO y\r\n'
        resp CLIENT REPLY maybe
        resp CLIENT KILL 1.2.3.4:5
        resp CLIENT KILL ID 999999
        resp CLIENT KILL ID 0
        resp CLIENT KILL SKIPME maybe
        resp CLIENT KILL TYPE pubsub
        resp CLIENT KILL USER nobody
        resp CLIENT LIST TYPE foo
        resp CLIENT LIST ID abc
        resp CLIENT LIST TYPE pubsub
        resp CLIENT NO-EVICT on
        resp CLIENT NO-EVICT maybe
        resp CLIENT SETINFO lib-name "a b"
        resp CLIENT SETINFO lib-ver 1.0
        resp CLIENT SETINFO lib-foo x
    }
    local n=19
    run raw "$n" < <(script)
    printf '%s\n' "${lines[@]}"
    [ "$status" -eq 0 ]
    local proxy=("${lines[@]}")
    run timeout 20 python3 "$BATS_TEST_DIRNAME/resp_raw.py" "${REDIS_PORTS[0]}" "$n" < <(script)
    [ "$status" -eq 0 ]
    local i
    for i in "${!lines[@]}"; do
        [ "${proxy[i]}" = "${lines[i]}" ] || {
            echo "reply $i: proxy '${proxy[i]}', redis '${lines[i]}'"
            # CLIENT SETINFO is Redis 7.2's: a 7.0 server does not know it
            [[ "${lines[i]}" == "-ERR unknown subcommand 'SETINFO'"* || "${lines[i]}" == "-ERR unknown subcommand 'NO-TOUCH'"* ]] || return 1
        }
    done
    [ "${proxy[16]}" = '-ERR lib-name cannot contain spaces, newlines or special characters.\r\n' ]
    [ "${proxy[17]}" = '+OK\r\n' ]
    [ "${proxy[18]}" = "-ERR Unrecognized option 'lib-foo'\\r\\n" ]
}
