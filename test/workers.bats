#!/usr/bin/env bats
# `workers N`: a master and N worker processes.  Both workers serve; CLIENT
# IDs stay unique; stats, metrics and INFO are summed over workers and keep a
# dead worker's counters; a killed worker is restarted; a backend one worker
# reconnected to is used by all; SIGTERM drains all
# and exits 0; reload reaches every worker, a bad file none; the master's
# death takes the workers down; max_clients, the descriptor limit and
# backend_connections over workers; a shared UNIX listen socket; the directive's values.
#
# The rest of the suites also run with `workers 2` (make test sets
# SP_WORKERS=2 for the routing, split, failure, reload and CLI suites).

load helper

ADMIN_SOCK=

wk_setup() { # wk_setup [LINE...]: three backends, `workers 2`, an admin socket
    start_redis 3
    ADMIN_SOCK="$(sp_tmpdir)/admin.sock"
    write_config "workers 2" "admin $ADMIN_SOCK" "$@"
    start_proxy
    wait_until wk_running 2
}

admin_cmd() {
    printf '%s\n' "$1" | timeout 15 socat -t 10 - UNIX-CONNECT:"$ADMIN_SOCK"
}

wk_json() { # wk_json EXPR: a Python expression over d, the `stats json` object
    admin_cmd "stats json" | python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"
}

wk_is() { # wk_is EXPR OP N: wk_json EXPR compared with N (test OP), read anew each call
    [ "$(wk_json "$1")" "$2" "$3" ]
}

wk_running() { # wk_running N: the master reports N workers running
    [[ "$(wk_json 'd["workers"]')" == "$1" ]]
}

wk_pids() { # the worker pids the master reports
    wk_json '" ".join(str(w["pid"]) for w in d["workers_by_index"])'
}

@test "workers: both serve, CLIENT IDs are unique, stats/metrics/INFO are summed" {
    wk_setup
    run timeout 60 python3 "$BATS_TEST_DIRNAME/workers_tool.py" "$SP_PORT" 40
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" != *ERR* ]]
    [ "$(echo "$output" | awk '{print $2}' | sort -u | wc -l)" -eq 40 ]
    # every key written through either worker is on the backend that owns it
    local n=0 i
    for i in 0 1 2; do n=$((n + $(bcli "$i" dbsize))); done
    [ "$n" -eq 40 ]
    # 40 connections, 80 commands (CLIENT ID, SET), counted over both workers
    wait_until wk_is 'd["commands"]' -ge 80
    local json
    json="$(admin_cmd "stats json")"
    echo "$json"
    python3 - "$json" <<'PY'
import json, sys
d = json.loads(sys.argv[1])
w = d["workers_by_index"]
assert len(w) == 2 and all(x["pid"] > 0 for x in w), w
assert d["commands"] >= 80 and d["clients"]["total"] >= 40, d  # and start_proxy's PING
assert sum(x["commands"] for x in w) == d["commands"], w
assert d["commands_by_name"]["set"]["calls"] == 40, d["commands_by_name"]
assert sum(b["requests"] for b in d["backends"]) == 40, d["backends"]
assert all(b["connections"] == 2 for b in d["backends"]), d["backends"]
PY
    if [[ "$("$SP_BIN" -V)" == *"listen: reuseport"* ]]; then
        # the kernel spreads connections over the workers' sockets
        [[ "$(wk_json 'min(w["commands"] for w in d["workers_by_index"])')" -gt 0 ]]
    fi
    run admin_cmd metrics
    [[ "$output" == *$'\nshardproxy_workers 2\n'* ]]
    [[ "$output" == *$'\nshardproxy_command_calls_total{command="set"} 40\n'* ]]
    run rcli info stats
    [[ "$output" == *"total_connections_received:4"[0-9]* ]]
    run admin_cmd stats
    [[ "$output" == *"worker 0 pid "* && "$output" == *"worker 1 pid "* ]]
    # SIGUSR1 to the master prints the summed report once
    kill -USR1 "$SP_PID"
    wait_until grep -q "^  workers              2" "$SP_LOG"
}

@test "workers: a killed worker is logged and restarted, and its counters stay in the totals" {
    wk_setup
    run timeout 60 python3 "$BATS_TEST_DIRNAME/workers_tool.py" "$SP_PORT" 20
    [ "$status" -eq 0 ]
    wait_until wk_is 'd["commands"]' -ge 40
    local pids victim before
    before="$(wk_json 'd["commands"]')"
    pids="$(wk_pids)"
    victim="${pids%% *}"
    kill -9 "$victim"
    wait_until grep -q "worker 0 (pid $victim) killed by signal 9" "$SP_LOG"
    wait_until wk_running 2
    [[ "$(wk_pids)" != "$pids" && "$(wk_pids)" != *"$victim"* ]]
    [ "$(wk_json 'd["worker_restarts"]')" -eq 1 ]
    [ "$(wk_json 'd["commands"]')" -eq "$before" ]
    [ "$(wk_json 'd["commands_by_name"]["set"]["calls"]')" -eq 20 ]
    # and the replacement serves
    run timeout 60 python3 "$BATS_TEST_DIRNAME/workers_tool.py" "$SP_PORT" 20
    [ "$status" -eq 0 ]
    [[ "$output" != *ERR* ]]
    wait_until wk_is 'd["commands"]' -eq $((before + 40))
}

@test "workers: a backend back up for one worker is used at once by a worker still backing off" {
    wk_setup
    local k pids i
    k=$(key_on 0 back)
    kill -KILL "${REDIS_PIDS[0]}"
    wait "${REDIS_PIDS[0]}" 2>/dev/null || :
    # worker 0 backs off for seconds by now (100 ms doubling); worker 1 is
    # restarted, so its backoff starts again from 100 ms
    sleep 3.5
    pids="$(wk_pids)"
    kill -9 "${pids##* }"
    wait_until wk_running 2
    [[ "$(wk_pids)" != "$pids" ]]
    redis_on "${REDIS_PORTS[0]}"
    REDIS_PIDS[0]=$STARTED_PID
    # the first SET that works is served by the worker that reconnected
    WAIT_TIMEOUT=15 wait_until set_ok "$k" again
    # from then on every connection, whichever worker takes it, is served,
    # though worker 0's own next retry is up to seconds away
    for i in $(seq 30); do
        [[ "$(rcli get "$k")" == again ]]
    done
}

@test "workers: SIGTERM drains every worker (a slow request in flight is answered) and exits 0" {
    wk_setup "timeout 5000" # the script below runs 1.5 s
    local key out
    key="$(key_for 127.0.0.1:"${REDIS_PORTS[0]}")"
    out="$(sp_tmpdir)/slow.out"
    redis-cli -p "$SP_PORT" eval "local t = redis.call('TIME'); while true do local n = redis.call('TIME'); if (n[1] - t[1]) * 1000000 + n[2] - t[2] > 1500000 then break end end; return redis.call('SET', KEYS[1], 'done')" 1 "$key" >"$out" 2>&1 &
    SP_EXTRA_PIDS+=($!)
    # 1.5 s: time for this poll to see it in flight on a busy machine
    wait_until wk_is 'd["inflight"]' -eq 1
    local pids p
    pids="$(wk_pids)"
    stop_proxy # fails the test unless the master exits 0
    [ "$(cat "$out")" == OK ]
    [ "$(bcli 0 get "$key")" == done ]
    for p in $pids; do ! kill -0 "$p" 2>/dev/null; done
    grep -q "shutting down: draining 2 worker(s)" "$SP_LOG"
}

@test "workers: reload reaches every worker; a bad file changes nothing anywhere" {
    wk_setup
    # remove backend 2: after the reload no worker may send it anything
    local keep="${REDIS_PORTS[0]} ${REDIS_PORTS[1]}"
    {
        echo "listen 127.0.0.1:$SP_PORT"
        echo "backend 127.0.0.1:${REDIS_PORTS[0]}"
        echo "backend 127.0.0.1:${REDIS_PORTS[1]}"
        echo "log_level debug"
        echo "workers 2"
        echo "admin $ADMIN_SOCK"
    } >"$SP_CONF"
    run admin_cmd reload
    echo "$output"
    [ "$output" == "OK reloaded" ]
    [ "$(grep -c "configuration reloaded from" "$SP_LOG")" -eq 3 ] # the master and each worker
    run timeout 60 python3 "$BATS_TEST_DIRNAME/workers_tool.py" "$SP_PORT" 30
    [ "$status" -eq 0 ]
    [[ "$output" != *ERR* ]]
    [ "$(bcli 2 dbsize)" -eq 0 ]
    [ "$(( $(bcli 0 dbsize) + $(bcli 1 dbsize) ))" -eq 30 ]
    [ "$(admin_cmd backends | wc -l)" -eq 2 ]
    # a bad file: refused by the master, no worker touched
    echo "backend nonsense:port:x" >>"$SP_CONF"
    run admin_cmd reload
    echo "$output"
    [[ "$output" == ERR* ]]
    [ "$(grep -c "configuration reloaded from" "$SP_LOG")" -eq 3 ]
    kill -HUP "$SP_PID"
    wait_until eval '[ "$(grep -c "reload rejected" "$SP_LOG")" -ge 2 ]'
    [ "$(grep -c "reload rejected" "$SP_LOG")" -eq 2 ] # the master's only
    run timeout 60 python3 "$BATS_TEST_DIRNAME/workers_tool.py" "$SP_PORT" 10
    [[ "$output" != *ERR* ]]
    [ "$(bcli 2 dbsize)" -eq 0 ]
    # a reload that changes `workers` keeps the running number and says so
    sed -i '/^backend nonsense/d; s/^workers 2$/workers 3/' "$SP_CONF"
    run admin_cmd reload
    [ "$output" == "OK reloaded" ]
    grep -q "'workers' changed; that needs a restart" "$SP_LOG"
    wk_running 2
}

@test "workers: the master killed with SIGKILL takes its workers down" {
    wk_setup
    local pids p
    pids="$(wk_pids)"
    kill -9 "$SP_PID"
    wait "$SP_PID" || true
    SP_PID=
    for p in $pids; do
        wait_until eval "! kill -0 $p 2>/dev/null"
    done
    grep -q "control: the master is gone; draining and exiting" "$SP_LOG"
}

@test "workers: max_clients counts the clients of every worker" {
    wk_setup "max_clients 10"
    run timeout 60 python3 "$BATS_TEST_DIRNAME/workers_tool.py" "$SP_PORT" 14
    echo "$output"
    [ "$(echo "$output" | grep -vc ERR)" -eq 10 ]
    [ "$(echo "$output" | grep -c ERR)" -eq 4 ]
    [ "$(wk_json 'd["clients"]["rejected"]')" -eq 4 ]
}

@test "workers: the descriptor limit is per worker: two workers hold twice what one can" {
    # 64 descriptors less 3 backend connections, the listener, one more and
    # the reserve of 32: 27 clients per process, 54 for the proxy
    SP_NOFILE=64 wk_setup
    grep -q "max_clients 10000 lowered to 54 by the descriptor limit (64 per process)" "$SP_LOG"
    # 30 at once: more than one process holds, spread over both by the kernel
    run timeout 60 python3 "$BATS_TEST_DIRNAME/workers_tool.py" "$SP_PORT" 30
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" != *ERR* ]]
    [ "$(echo "$output" | wc -l)" -eq 30 ]
}

@test "workers: backend_connections is per worker: 2 workers x 3 connections per backend" {
    wk_setup "backend_connections 3"
    wait_until wk_is 'd["backends"][0]["connections"]' -eq 6
    local i
    for i in 0 1 2; do
        # the backend's own view: six proxy connections and this redis-cli
        wait_until eval "[ \"\$(bcli $i info clients | tr -d '\\r' | sed -n 's/^connected_clients://p')\" -eq 7 ]"
    done
}

@test "workers: a UNIX listen socket is shared by the workers and removed at exit" {
    start_redis 3
    local sock
    sock="$(sp_tmpdir)/sp.sock"
    ADMIN_SOCK="$(sp_tmpdir)/admin.sock"
    write_config "listen $sock" "workers 2" "admin $ADMIN_SOCK"
    start_proxy
    wait_until wk_running 2
    local i
    for i in $(seq 1 20); do
        [ "$(redis-cli -s "$sock" set "u$i" "$i")" == OK ]
    done
    [ "$(redis-cli -s "$sock" mget u1 u20 | tr '\n' ' ')" == "1 20 " ]
    # a worker's restart must not remove the socket file the others serve
    kill -9 "$(wk_pids | cut -d' ' -f1)"
    wait_until wk_running 2
    [ -S "$sock" ]
    [ "$(redis-cli -s "$sock" get u5)" == 5 ]
    stop_proxy
    [ ! -e "$sock" ]
}

@test "workers: -t accepts 1..256 and auto, rejects 0, 257 and words" {
    start_redis 1
    local v
    for v in 1 256 auto; do
        write_config "workers $v"
        run "$SP_BIN" -t -c "$SP_CONF"
        [ "$status" -eq 0 ]
    done
    for v in 0 257 x -1 "2 3"; do
        write_config "workers $v"
        run "$SP_BIN" -t -c "$SP_CONF"
        echo "$output"
        [ "$status" -ne 0 ]
        [[ "$output" == *"'workers'"* ]]
    done
}
