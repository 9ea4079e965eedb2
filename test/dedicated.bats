#!/usr/bin/env bats
#
# dedicated.bats -- what runs on dedicated backend connections.  Blocking
# commands (BLPOP ... BZMPOP, XREAD/XREADGROUP BLOCK): served as Redis serves
# them, their own timeouts, many at once beside ordinary traffic, the
# blocking_connections bound, and what a client leaving or a backend dying
# does to a blocked client (test/blocking_check.py).  WATCH: the same bytes
# as a redis-server, optimistic increments that end exact, and a connection
# that still watches never reused (test/watch_check.py).

load helper

# check ARGS...: test/blocking_check.py ARGS, its output shown.
check() {
    run timeout 120 python3 "$BATS_TEST_DIRNAME/blocking_check.py" "$@"
    printf '%s\n' "${lines[@]}"
    [ "$status" -eq 0 ]
}

# dedicated: the dedicated connections clients hold, summed over backends.
dedicated() {
    rcli info backends | tr ',' '\n' | awk -F= '$1 == "dedicated" { s += $2 } END { print s + 0 }'
}

# blocked_on I: clients redis I shows blocked in BLPOP.
blocked_on() {
    bcli "$1" client list | grep -c 'cmd=blpop' || true
}

# bats test_tags=valgrind
@test "blocking: each blocking command, blocked, is served by a later write, with the bytes a redis-server sends" {
    start_redis 4
    local ref=${REDIS_PORTS[3]}
    REDIS_PORTS=("${REDIS_PORTS[@]:0:3}")
    write_config
    start_proxy
    check served "$SP_PORT"
    local proxy=("${lines[@]}")
    [ "${#proxy[@]}" -eq 10 ]
    check served "$ref"
    local i
    for i in "${!lines[@]}"; do
        [ "${proxy[i]}" = "${lines[i]}" ]
    done
    [ "$(dedicated)" = 0 ] # all given back
}

@test "blocking: own timeouts honoured, none cut short by timeout 300" {
    start_redis 3
    write_config "timeout 300"
    start_proxy
    check timeouts "$SP_PORT"
}

@test "blocking: pipelined after a blocking command waits in order; inside MULTI it does not block: as on Redis" {
    start_redis 1
    write_config
    start_proxy
    script() {
        resp DEL q
        resp RPUSH q a
        resp BLPOP q 0 # served at once
        resp BLPOP q 0.2 # times out; what follows waits for it
        resp RPUSH q b
        resp LLEN q
        resp MULTI
        resp BLPOP q 0
        resp BLPOP q 0
        resp EXEC # in a transaction a blocking command never blocks
        resp PING
    }
    run raw 11 < <(script)
    printf '%s\n' "${lines[@]}"
    [ "$status" -eq 0 ]
    local proxy=("${lines[@]}")
    run timeout 20 python3 "$BATS_TEST_DIRNAME/resp_raw.py" "${REDIS_PORTS[0]}" 11 < <(script)
    local i
    for i in "${!lines[@]}"; do
        [ "${proxy[i]}" = "${lines[i]}" ]
    done
    [ "${proxy[5]}" = ':1\r\n' ] # the RPUSH after the timed-out BLPOP ran after it
}

@test "blocking: 500 clients blocked at once beside ordinary traffic; each gets exactly its own value" {
    start_redis 3
    write_config
    start_proxy
    check many "$SP_PORT" 500
    wait_until eval '[ "$(dedicated)" = 0 ]'
}

# bats test_tags=valgrind
@test "blocking: a blocked client that leaves releases its backend connection at once" {
    start_redis 1
    write_config
    start_proxy
    local ready="$BATS_TEST_TMPDIR/ready" pid
    python3 "$BATS_TEST_DIRNAME/blocking_check.py" hold "$SP_PORT" leaveq "$ready" 3>&- &
    pid=$!
    SP_EXTRA_PIDS+=("$pid")
    wait_until test -f "$ready"
    wait_until eval '[ "$(blocked_on 0)" = 1 ]'
    [ "$(dedicated)" = 1 ]
    # a push 0.2 s after the client left, straight to the backend, stays: the
    # block went with the client (a block left behind would pop it for nobody)
    sleep 0.5 # the proxy is idle: nothing else wakes it
    kill "$pid"
    sleep 0.2
    bcli 0 rpush leaveq early >/dev/null
    [ "$(bcli 0 llen leaveq)" = 1 ]
    wait_until eval '[ "$(blocked_on 0)" = 0 ]'
    [ "$(dedicated)" = 0 ]
    # the value pushed later stays for the next reader: nobody popped it
    rcli rpush leaveq v >/dev/null
    [ "$(rcli lpop leaveq)" = early ]
    [ "$(rcli lpop leaveq)" = v ]
}

@test "blocking: blocking_connections 2: a third blocked client gets a clear error, the two still get theirs" {
    start_redis 1
    write_config "blocking_connections 2"
    start_proxy
    local i pids=() out="$BATS_TEST_TMPDIR"
    for i in 1 2; do
        python3 "$BATS_TEST_DIRNAME/blocking_check.py" hold "$SP_PORT" "lim$i" "$out/ready$i" \
            >"$out/hold$i" 3>&- &
        pids+=($!)
        SP_EXTRA_PIDS+=($!)
        wait_until test -f "$out/ready$i"
    done
    wait_until eval '[ "$(dedicated)" = 2 ]'
    run rcli blpop lim3 0
    echo "$output"
    [ "$output" = "ERR backend 127.0.0.1:${REDIS_PORTS[0]}: all 2 dedicated connections for blocking commands and WATCH are in use (blocking_connections)" ]
    [ "$(rcli ping)" = PONG ]
    rcli rpush lim1 a >/dev/null
    rcli rpush lim2 b >/dev/null
    wait "${pids[0]}" "${pids[1]}"
    [ "$(cat "$out/hold1")" = '*2\r\n$4\r\nlim1\r\n$1\r\na\r\n' ]
    [ "$(cat "$out/hold2")" = '*2\r\n$4\r\nlim2\r\n$1\r\nb\r\n' ]
}

@test "blocking: a backend dying fails its blocked clients at once with unavailable; the others stay blocked" {
    start_redis 2
    write_config
    start_proxy
    local k0 k1 out="$BATS_TEST_TMPDIR" p0 p1
    k0=$(key_on 0 die)
    k1=$(key_on 1 die)
    python3 "$BATS_TEST_DIRNAME/blocking_check.py" hold "$SP_PORT" "$k0" "$out/r0" >"$out/h0" 3>&- &
    p0=$!
    python3 "$BATS_TEST_DIRNAME/blocking_check.py" hold "$SP_PORT" "$k1" "$out/r1" >"$out/h1" 3>&- &
    p1=$!
    SP_EXTRA_PIDS+=("$p0" "$p1")
    wait_until test -f "$out/r0" -a -f "$out/r1"
    wait_until eval '[ "$(dedicated)" = 2 ]'
    kill -KILL "${REDIS_PIDS[1]}"
    wait "$p1"
    [ "$(cat "$out/h1")" = "-ERR backend 127.0.0.1:${REDIS_PORTS[1]} unavailable\\r\\n" ]
    _sp_alive "$p0" # still blocked on the live backend
    rcli rpush "$k0" v >/dev/null
    wait "$p0"
    [ "$(cat "$out/h0")" = "*2\\r\\n\$${#k0}\\r\\n$k0\\r\\n\$1\\r\\nv\\r\\n" ]
}

# watch ARGS...: test/watch_check.py ARGS, its output shown.
watch() {
    run timeout 120 python3 "$BATS_TEST_DIRNAME/watch_check.py" "$@"
    printf '%s\n' "${lines[@]}"
    [ "$status" -eq 0 ]
}

# bats test_tags=valgrind
@test "WATCH: a watcher and a writer, through one backend and through three, get a redis-server's bytes, RESP2 and RESP3" {
    start_redis 1
    write_config
    start_proxy
    watch diff "$SP_PORT" "${REDIS_PORTS[0]}" 2
    [[ "${lines[-1]}" == "72 steps, 0 mismatches" ]]
    watch diff "$SP_PORT" "${REDIS_PORTS[0]}" 3
    stop_all
    start_redis 4
    local ref=${REDIS_PORTS[3]}
    REDIS_PORTS=("${REDIS_PORTS[@]:0:3}")
    write_config
    start_proxy
    watch diff "$SP_PORT" "$ref" 2
    watch diff "$SP_PORT" "$ref" 3
    [ "$(dedicated)" = 0 ]
}

@test "WATCH: 20 clients x 50 optimistic increments of one counter over 3 backends end exactly at 1000" {
    start_redis 3
    write_config
    start_proxy
    watch cas "$SP_PORT" 20 50
    [[ "${lines[-1]}" == "20 clients x 50 WATCH/MULTI/EXEC increments: counter 1000, "* ]]
    wait_until eval '[ "$(dedicated)" = 0 ]'
}

@test "WATCH: a connection still watching (pipelined DISCARD, an aborted EXEC, a client gone) is closed, never reused" {
    start_redis 3
    write_config
    start_proxy
    local i
    for i in 1 2 3; do
        # everything pipelined: the WATCH is still in flight when the transaction ends
        case $i in
        1) run raw 3 < <(resp WATCH '{w}k'; resp MULTI; resp DISCARD) ;;
        2) run raw 4 < <(resp WATCH '{w}k'; resp MULTI; resp FOO; resp EXEC) ;;
        3) run raw 1 --eof < <(resp WATCH '{w}k'; resp QUIT) ;;
        esac
        printf '%s\n' "${lines[@]}"
        wait_until eval '[ "$(dedicated)" = 0 ]'
        # another client watches a different key on the same backend, while
        # the key the earlier one watched changes: its EXEC must still run
        run raw 5 < <(
            resp WATCH '{w}j'
            resp SET '{w}k' "v$i"
            resp MULTI
            resp SET '{w}j' "j$i"
            resp EXEC
        )
        printf '%s\n' "${lines[@]}"
        [ "${lines[4]}" = '*1\r\n+OK\r\n' ]
    done
    [ "$(rcli get '{w}j')" = j3 ]
}

@test "WATCH: keys on two backends get -CROSSSLOT; a backend dying under a WATCH fails its EXEC" {
    start_redis 2
    write_config
    start_proxy
    local a b
    a=$(key_on 0 wk)
    b=$(key_on 1 wk)
    run raw 6 < <(
        resp WATCH "$a" "$b"
        resp WATCH "$a"
        resp WATCH "$b" # another backend than the first WATCH's
        resp MULTI
        resp SET "$b" x # the transaction must stay on the watched backend
        resp EXEC
    )
    printf '%s\n' "${lines[@]}"
    [ "${lines[0]}" = "-CROSSSLOT Keys in request don't hash to the same backend\\r\\n" ]
    [ "${lines[1]}" = '+OK\r\n' ]
    [ "${lines[2]}" = "-CROSSSLOT Keys in request don't hash to the same backend\\r\\n" ]
    [ "${lines[4]}" = "-CROSSSLOT Keys in request don't hash to the same backend\\r\\n" ]
    [ "${lines[5]}" = '-EXECABORT Transaction discarded because of previous errors.\r\n' ]
    [ "$(bcli 1 exists "$b")" = 0 ]
    # a watcher whose backend dies: its EXEC fails, and nothing runs
    local d="$BATS_TEST_TMPDIR" pid
    python3 "$BATS_TEST_DIRNAME/watch_check.py" lost "$SP_PORT" "$a" "$d/ready" "$d/go" \
        >"$d/out" 3>&- &
    pid=$!
    SP_EXTRA_PIDS+=("$pid")
    wait_until test -f "$d/ready"
    [ "$(dedicated)" = 1 ]
    kill -KILL "${REDIS_PIDS[0]}"
    wait_until eval '[ "$(dedicated)" = 0 ]'
    touch "$d/go"
    wait "$pid"
    cat "$d/out"
    [ "$(sed -n 1p "$d/out")" = '+OK\r\n' ]
    [ "$(sed -n 3p "$d/out")" = '+QUEUED\r\n' ]
    [ "$(sed -n 4p "$d/out")" = "-ERR backend 127.0.0.1:${REDIS_PORTS[0]} unavailable\\r\\n" ]
}

# wait_replica I OF: redis I replicates redis OF, online.
wait_replica() {
    bcli "$1" replicaof 127.0.0.1 "${REDIS_PORTS[$2]}" >/dev/null
    wait_until sh -c "redis-cli -p ${REDIS_PORTS[$2]} info replication | grep -q 'slave0:.*state=online'"
}

# bats test_tags=valgrind
@test "WAIT: the least count over the backends written to, after the writes; a lagging replica holds only its waiter" {
    start_redis 3
    wait_replica 2 0 # backend 0 has one replica; backend 1 none
    write_config
    sed -i "/^backend 127.0.0.1:${REDIS_PORTS[2]}\$/d" "$SP_CONF"
    start_proxy
    local k0 k1
    k0=$(key_on 0 w) k1=$(key_on 1 w)

    # the writes before WAIT are answered (applied) first, the read after it waits
    run raw 3 < <(resp_lines "SET $k0 v0" "WAIT 1 5000" "GET $k0")
    [ "$status" -eq 0 ]
    [ "${lines[*]}" = '+OK\r\n :1\r\n $2\r\nv0\r\n' ] || { printf '%s\n' "${lines[@]}"; false; }
    [ "$(bcli 2 get "$k0")" = v0 ] # the replica has it: acknowledged for real
    # a write to the backend without a replica: 0 after WAIT's own timeout
    run raw 2 < <(resp_lines "SET $k1 v1" "WAIT 1 200")
    [ "${lines[*]}" = '+OK\r\n :0\r\n' ]
    # both written: the least of 1 and 0; then the next WAIT asks both again
    run raw 4 < <(resp_lines "SET $k0 a" "SET $k1 b" "WAIT 1 200" "WAIT 0 0")
    [ "${lines[*]}" = '+OK\r\n +OK\r\n :0\r\n :0\r\n' ]
    # only backend 0 written since the last WAIT: backend 1 is not asked
    run raw 4 < <(resp_lines "SET $k1 b" "WAIT 0 0" "SET $k0 c" "WAIT 1 5000")
    [ "${lines[*]}" = '+OK\r\n :0\r\n +OK\r\n :1\r\n' ]
    # bad arguments: the backend's own words
    local a b
    for args in "WAIT x 0" "WAIT 0 -1" "WAIT 0 zz"; do
        a=$(raw 1 < <(resp_lines "$args")) b=$(bcli 0 $args 2>&1)
        [ "$a" = "-$b\\r\\n" ] || { echo "$args: proxy $a, redis $b"; false; }
    done

    # the replica stops acknowledging: a WAIT blocks (its client alone; GET
    # beside it is answered), and returns 1 once the replica is back
    kill -STOP "${REDIS_PIDS[2]}"
    (raw 2 --timeout 30 < <(resp_lines "SET $k0 late" "WAIT 1 20000") >"$(sp_tmpdir)/wait.out") &
    local waiter=$!
    wait_until eval '[ "$(dedicated)" -ge 1 ]'
    [ "$(rcli get "$k1")" = b ]
    kill -0 "$waiter" # still waiting
    kill -CONT "${REDIS_PIDS[2]}"
    wait "$waiter"
    [ "$(tr '\n' ' ' <"$(sp_tmpdir)/wait.out")" = '+OK\r\n :1\r\n ' ]
    wait_until eval '[ "$(dedicated)" = 0 ]'
}

@test "WAIT: a client that leaves while its WAIT waits frees its dedicated connections at once" {
    start_redis 1
    write_config "blocking_connections 2"
    start_proxy
    local i
    for i in 1 2 3 4; do # each WAIT would wait forever: no replica
        timeout 0.5 redis-cli -p "$SP_PORT" wait 1 0 >/dev/null 2>&1 || true
    done
    wait_until eval '[ "$(dedicated)" = 0 ]'
    # their connections are free: a blocking command and a WAIT still get one
    [ "$(rcli blpop wait:none 0.1)" = "" ]
    [ "$(rcli wait 0 100)" = 0 ]
}
