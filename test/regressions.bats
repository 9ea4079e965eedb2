#!/usr/bin/env bats
# regressions.bats -- defects a review of the code found, each with the test
# that now catches it: a UNIX listen path taken over from a live proxy, a
# reload adding `password` leaving connected clients with full access, the
# SIGUSR1 report blocking the loop on a full stderr pipe, INFO missing
# output_overflows; and in transactions: a queue-time error reply past
# client_output_limit writing to the transaction it had just freed, a
# backend's refusal of MULTI or of a queued command lost, EVAL without keys
# queued, and inline commands passing max_request_size once re-encoded.

load helper

@test "listen on a UNIX path a running proxy serves: a second proxy refuses it; a stale one is replaced" {
    start_redis 1
    sock="$(sp_tmpdir)/data.sock"
    write_config "listen $sock"
    start_proxy
    [[ "$(timeout 5 redis-cli -s "$sock" ping)" == PONG ]]
    conf2="$(sp_tmpdir)/second.conf"
    printf 'listen 127.0.0.1:%s\nlisten %s\nbackend 127.0.0.1:%s\n' "$(free_port)" "$sock" \
        "${REDIS_PORTS[0]}" >"$conf2"
    run timeout 10 "$SP_BIN" -c "$conf2"
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"listen $sock: in use by a running process"* ]]
    # the first proxy still owns the path and serves on it
    [[ -S "$sock" ]]
    [[ "$(timeout 5 redis-cli -s "$sock" set k v)" == OK ]]
    [[ "$(timeout 5 redis-cli -s "$sock" get k)" == v ]]
    # a proxy that died without cleaning up leaves a stale file: replaced at start
    kill -KILL "$SP_PID"
    wait "$SP_PID" 2>/dev/null || true
    SP_PID=
    [[ -S "$sock" ]]
    start_proxy
    [[ "$(timeout 5 redis-cli -s "$sock" get k)" == v ]]
    # a path that is not a socket is never removed
    rm -f "$sock"
    stop_proxy
    echo "precious" >"$sock"
    run timeout 10 "$SP_BIN" -c "$SP_CONF"
    [ "$status" -eq 1 ]
    [[ "$output" == *"listen $sock: exists and is not a socket"* ]]
    [[ "$(cat "$sock")" == precious ]]
}

@test "a reload that adds password: connected clients that never authenticated must AUTH" {
    start_redis 1
    write_config
    start_proxy
    exec 8<>"/dev/tcp/127.0.0.1/$SP_PORT"
    printf 'SET k before\r\n' >&8
    IFS= read -r -t 5 line <&8
    [[ "$line" == $'+OK\r' ]]
    echo "password s3cret" >>"$SP_CONF"
    kill -HUP "$SP_PID"
    wait_until grep -q "configuration reloaded" "$SP_LOG"
    grep -q "password now required: 1 connected client(s) must AUTH" "$SP_LOG"
    # the connection that was open before the reload is asked to AUTH...
    printf 'GET k\r\n' >&8
    IFS= read -r -t 5 line <&8
    [[ "$line" == $'-NOAUTH Authentication required.\r' ]]
    printf 'AUTH wrong\r\n' >&8
    IFS= read -r -t 5 line <&8
    [[ "$line" == -WRONGPASS* ]]
    printf 'AUTH s3cret\r\nGET k\r\n' >&8
    IFS= read -r -t 5 line <&8
    [[ "$line" == $'+OK\r' ]]
    IFS= read -r -t 5 line <&8
    [[ "$line" == $'$6\r' ]]
    IFS= read -r -t 5 line <&8
    [[ "$line" == $'before\r' ]]
    exec 8>&-
    # ...and so is a new one; the password lets it in
    [[ "$(rcli get k)" == *NOAUTH* ]]
    [[ "$(rcli -a s3cret --no-auth-warning get k)" == before ]]
}

@test "SIGUSR1 with stderr a pipe nobody reads: the report waits, traffic does not" {
    start_redis 1
    fifo="$(sp_tmpdir)/stderr.fifo"
    mkfifo "$fifo"
    exec 7<>"$fifo" # holds the pipe open and never reads it (until the end)
    write_config
    sed -i 's/^log_level debug$/log_level error/' "$SP_CONF" # only the report writes
    SP_LOG=$fifo start_proxy
    # a report holds a row per command seen: make it large
    for c in get set incr decr append strlen exists del type ttl; do rcli $c k >/dev/null || true; done
    for ((i = 0; i < 100; i++)); do
        kill -USR1 "$SP_PID"
        sleep 0.01
    done
    # 100 reports are far more than a 64 KiB pipe holds; the loop still serves
    for ((i = 0; i < 20; i++)); do
        [[ "$(CLI_TIMEOUT=2 rcli set "k$i" "v$i")" == OK ]]
        [[ "$(CLI_TIMEOUT=2 rcli get "k$i")" == "v$i" ]]
    done
    # a reader appears: the queued report arrives whole
    out="$(sp_tmpdir)/stderr.out"
    timeout 20 cat <&7 >"$out" &
    SP_EXTRA_PIDS+=($!)
    wait_until grep -q "^command type calls" "$out"
    grep -q "^shardproxy [0-9.]* pid $SP_PID uptime" "$out"
    exec 7>&-
}

@test "INFO proxy reports output_overflows" {
    start_redis 1
    write_config "client_output_limit 1024"
    start_proxy
    [[ "$(rcli info proxy)" == *$'output_overflows:0\r'* ]]
    rcli set big "$(head -c 4096 /dev/zero | tr '\0' x)" >/dev/null
    run rcli get big # cut off: its reply exceeds the limit
    wait_until eval '[[ "$(rcli info proxy)" == *$'"'"'output_overflows:1\r'"'"'* ]]'
}

# bats test_tags=valgrind
@test "transactions: a queue-time error past client_output_limit closes the client, and only it" {
    start_redis 1
    write_config "client_output_limit 1024"
    start_proxy
    # 200 refused commands: their errors pass the limit while MULTI is open
    # (the replies are dropped with the client: nothing is read but the close)
    run raw 0 --eof < <(
        resp MULTI
        for i in $(seq 200); do resp FLUSHALL; done
    )
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == '<EOF>' ]]
    _sp_alive "$SP_PID"
    [[ "$(rcli ping)" == PONG ]]
    grep -q "client_output_limit" "$SP_LOG"
}

@test "transactions: a backend refusing MULTI, or a queued command, is what EXEC answers" {
    start_redis 1
    bcli 0 acl setuser tx on '>pw' '~*' '&*' '+@all' '-multi' >/dev/null
    write_config "backend_user tx" "backend_password pw"
    start_proxy
    run raw 4 < <(
        resp MULTI
        resp SET rk v
        resp INCR rn
        resp EXEC
    )
    printf '%s\n' "${lines[@]}"
    [[ "${lines[1]}" == '+QUEUED\r\n' ]]
    [[ "${lines[3]}" == "-ERR backend 127.0.0.1:${REDIS_PORTS[0]} refused MULTI (NOPERM "*"): the transaction's commands may have run one by one\\r\\n" ]]
    [[ "$(bcli 0 get rn)" == 1 ]] # they did run: the client is not told otherwise
    # the connection is in step again
    [[ "$(rcli get rk)" == v ]]
    # a command the backend refuses at queue time: EXEC's EXECABORT says why
    bcli 0 acl setuser tx '+multi' >/dev/null
    bcli 0 config set maxmemory 1 >/dev/null
    run raw 4 < <(
        resp MULTI
        resp SET rk2 v
        resp EXEC
        resp GET rk
    )
    bcli 0 config set maxmemory 0 >/dev/null
    printf '%s\n' "${lines[@]}"
    [[ "${lines[2]}" == "-EXECABORT Transaction discarded because of previous errors: OOM command not allowed when used memory > 'maxmemory'.\\r\\n" ]]
    [[ "${lines[3]}" == '$1\r\nv\r\n' ]]
    [[ "$(bcli 0 exists rk2)" == 0 ]]
}

@test "transactions: EVAL without keys is queued and runs in the block; inline commands count re-encoded" {
    start_redis 1
    write_config "max_request_size 1024"
    start_proxy
    run raw 3 < <(
        resp MULTI
        resp EVAL "return 1" 0
        resp EXEC
    )
    printf '%s\n' "${lines[@]}"
    [[ "${lines[1]}" == '+QUEUED\r\n' ]]
    [[ "${lines[2]}" == '*1\r\n:1\r\n' ]]
    # 307 bytes inline, about 1,070 as the RESP array the backend would get
    run raw 3 < <(printf 'MULTI\r\nSADD s %s\r\nEXEC\r\n' "$(printf 'x%.0s ' {1..150})")
    printf '%s\n' "${lines[@]}"
    [[ "${lines[1]}" == '-ERR transaction too large for the proxy: more than max_request_size bytes queued\r\n' ]]
    [[ "${lines[2]}" == '-EXECABORT Transaction discarded because of previous errors.\r\n' ]]
    [[ "$(bcli 0 exists s)" == 0 ]]
}

# same_as_redis N SCRIPT-FUNCTION: the proxy's N replies to the bytes the
# function prints are the bytes the first redis-server sends.
same_as_redis() {
    local n=$1 fn=$2 proxy i
    run raw "$n" < <("$fn")
    printf '%s\n' "${lines[@]}"
    [ "$status" -eq 0 ]
    proxy=("${lines[@]}")
    bcli 0 flushall >/dev/null
    run timeout 20 python3 "$BATS_TEST_DIRNAME/resp_raw.py" "${REDIS_PORTS[0]}" "$n" < <("$fn")
    [ "$status" -eq 0 ]
    for i in "${!lines[@]}"; do
        [ "${proxy[i]}" = "${lines[i]}" ] || {
            echo "reply $i: proxy '${proxy[i]}', redis '${lines[i]}'"
            return 1
        }
    done
}

@test "WATCH pipelined with the client's own write, GET after EXEC, SELECT in between: Redis's order and db" {
    start_redis 1
    write_config
    start_proxy
    script() {
        resp SET k 1
        resp WATCH k
        resp SET k x # its own write: the EXEC below must abort
        resp MULTI
        resp SET k y
        resp EXEC
        resp WATCH k
        resp MULTI
        resp SET k 2
        resp EXEC
        resp GET k # after the EXEC, not before it
        resp WATCH k
        resp SELECT 1 # the EXEC runs in db 1, as on Redis
        resp MULTI
        resp SET k in1
        resp EXEC
        resp GET k
        resp SELECT 0
        resp GET k
    }
    same_as_redis 19 script
}

@test "blocking: CLIENT REPLY SKIP before a deferred BLPOP does not stall the client; timeout 0 never cuts a block" {
    start_redis 1
    write_config "timeout 0"
    start_proxy
    script() {
        resp CLIENT REPLY SKIP
        resp SET a 1
        resp BLPOP q 0.2
        resp PING
    }
    same_as_redis 2 script
    # with `timeout 0` (never time out) a block that expires is Redis's null
    run raw 1 < <(resp BLPOP q 0.3)
    [ "${lines[0]}" = '*-1\r\n' ]
}

@test "blocking: XREADGROUP with a consumer named streams and BLOCK runs on a dedicated connection" {
    start_redis 1
    write_config
    start_proxy
    rcli xgroup create s g '$' mkstream >/dev/null
    local out="$BATS_TEST_TMPDIR/x" pid t0 t1
    timeout 20 python3 "$BATS_TEST_DIRNAME/resp_raw.py" "$SP_PORT" 1 --timeout 10 \
        < <(resp XREADGROUP GROUP g streams BLOCK 1500 STREAMS s '>') >"$out" 3>&- &
    pid=$!
    SP_EXTRA_PIDS+=("$pid")
    wait_until eval '[ "$(rcli info backends | grep -c "dedicated=1")" = 1 ]'
    t0=$(date +%s%N)
    [ "$(rcli set other 1)" = OK ] # the shared connection is not stuck behind it
    t1=$(date +%s%N)
    (((t1 - t0) / 1000000 < 1000))
    wait "$pid"
    [ "$(cat "$out")" = '*-1\r\n' ]
}

# bats test_tags=valgrind
@test "dedicated connections: reused after a blocked client left, and after an UNWATCH cut short by CLIENT KILL" {
    start_redis 1
    write_config
    start_proxy
    # a blocked client leaves; past its block's deadline the connection serves a WATCH
    run raw 0 < <(resp BLPOP b 1)
    sleep 2.2
    run raw 4 < <(resp WATCH b; resp MULTI; resp SET b 1; resp EXEC)
    printf '%s\n' "${lines[@]}"
    [ "${lines[3]}" = '*1\r\n+OK\r\n' ]
    # an UNWATCH still in flight when its client is killed
    SP_TEST_DIR=$BATS_TEST_DIRNAME run timeout 20 python3 - "$SP_PORT" "${REDIS_PORTS[0]}" <<'PY'
import os, subprocess, sys, time
sys.path.insert(0, os.environ["SP_TEST_DIR"])
from resp import connect, enc, Reader
port, rport = int(sys.argv[1]), sys.argv[2]
a, b = connect(port), connect(port)
ra, rb = Reader(a), Reader(b)
a.sendall(enc("WATCH", "k")); ra.raw()
a.sendall(enc("CLIENT", "ID")); cid = ra.reply()[1:].decode()
subprocess.run(["redis-cli", "-p", rport, "CLIENT", "PAUSE", "700", "ALL"], check=True,
               stdout=subprocess.DEVNULL)
a.sendall(enc("UNWATCH"))
time.sleep(0.1)
b.sendall(enc("CLIENT", "KILL", "ID", cid)); print(rb.raw())
time.sleep(1)
b.sendall(enc("PING")); print(rb.raw())
PY
    printf '%s\n' "${lines[@]}"
    [ "${lines[0]}" = "b':1\\r\\n'" ]
    [ "${lines[1]}" = "b'+PONG\\r\\n'" ]
    wait_until eval '[ "$(rcli info backends | grep -c "dedicated=0")" = 1 ]'
}

@test "WATCH pipelined with SELECT, HELLO, DISCARD, RESET and a bad EXEC; CLIENT REPLY and RESET: Redis's bytes" {
    start_redis 1
    write_config
    start_proxy
    script() {
        resp WATCH k1 # the connection is still connecting when SELECT follows
        resp SELECT 1
        resp SET k1 in-db1 # not the watched key: that one is in db 0
        resp MULTI
        resp EXEC
        resp SELECT 0
        resp WATCH k1
        resp SET '{k1}x' 1
        resp MULTI
        resp DISCARD
        resp GET '{k1}x' # after the DISCARD, not overtaking the SET
        resp WATCH k1
        resp SET '{k1}y' 2
        resp RESET
        resp GET '{k1}y'
        resp WATCH k1
        resp EXEC foo # rejected EXEC outside MULTI: EXECABORT, and it unwatches
        resp SET k1 z
        resp MULTI
        resp EXEC
        resp CLIENT REPLY OFF
        resp RESET # answered: RESET turns REPLY OFF off
        resp PING
        resp CLIENT REPLY SKIP
        resp RESET # not answered: the SKIP covers it
        resp PING
    }
    same_as_redis 23 script
}

@test "WATCH: connections answered last by a SELECT or HELLO that followed a WATCH are freed, not leaked" {
    start_redis 1
    write_config "blocking_connections 2"
    start_proxy
    local i
    for i in 1 2 3 4; do
        run raw 3 < <(resp WATCH k; resp UNWATCH; resp SELECT 1)
        [ "${lines[2]}" = '+OK\r\n' ]
        run raw 6 < <(resp WATCH k; resp MULTI; resp SET k v; resp EXEC; resp HELLO 3; resp HELLO 2)
        [ "${lines[3]}" = '*1\r\n+OK\r\n' ]
    done
    # with only 2 dedicated connections, a leak would refuse these
    run raw 2 < <(resp WATCH k; resp UNWATCH)
    [ "${lines[0]}" = '+OK\r\n' ]
    run raw 1 < <(resp BLPOP nosuch 0.1)
    [ "${lines[0]}" = '*-1\r\n' ]
}
