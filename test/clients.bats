#!/usr/bin/env bats
#
# clients.bats -- client-library compatibility: node-redis (its RESP3 default
# and RESP: 2), ioredis and redis-py, each with its DEFAULT options as an
# application uses it, through shardproxy in front of one backend, and of
# three.  The checks themselves (connect, SET/GET, db 1 isolation, scripts with
# one key and none, the SCAN helpers over 500 keys, HGETALL, ZRANGE
# WITHSCORES, pipelines and MULTI, redis-py's Lock) are in
# test/clients/compat.js and test/clients_py.py: one `ok LIB CHECK` /
# `FAIL LIB CHECK: ERROR` line each, shown here when a test fails.  Both run
# against a plain redis-server too (`node test/clients/compat.js ioredis
# 127.0.0.1 6379`), where everything passes.  BullMQ, unchanged, runs a job
# queue through three backends (test/clients/bullmq.js).
#
# Skips, saying why, without the Node libraries (test/clients/node_modules:
# deps.sh installs them with npm ci) or without redis-py for /usr/bin/python3.

load helper

need_node_clients() {
    command -v node >/dev/null 2>&1 || skip "no node"
    [[ -d "$BATS_TEST_DIRNAME/clients/node_modules/ioredis" &&
        -d "$BATS_TEST_DIRNAME/clients/node_modules/redis" ]] ||
        skip "no ioredis/node-redis in test/clients/node_modules (make deps installs them with npm)"
}

need_redis_py() {
    /usr/bin/python3 -c 'import redis' 2>/dev/null ||
        skip "no redis-py for /usr/bin/python3 (apt-get install python3-redis)"
}

# proxy_over N: N redis-servers and the proxy in front of them.
proxy_over() {
    start_redis "$1"
    write_config
    start_proxy
}

# node_compat LIB: test/clients/compat.js LIB through the proxy; its output
# is shown when the test fails.
node_compat() {
    run timeout 60 node "$BATS_TEST_DIRNAME/clients/compat.js" "$1" 127.0.0.1 "$SP_PORT"
    printf '%s\n' "${lines[@]}"
    [ "$status" -eq 0 ]
    [[ "$output" != *FAIL* ]]
}

# py_compat: test/clients_py.py through the proxy, every backend given as a
# --direct-backend (where the db 1 key must land; whose script caches it flushes).
py_compat() {
    local args=() port
    for port in "${REDIS_PORTS[@]}"; do
        args+=(--direct-backend "127.0.0.1:$port")
    done
    run timeout 60 /usr/bin/python3 "$BATS_TEST_DIRNAME/clients_py.py" 127.0.0.1 "$SP_PORT" "${args[@]}"
    printf '%s\n' "${lines[@]}"
    [ "$status" -eq 0 ]
    [[ "$output" != *FAIL* ]]
}

# ------------------------------------------------------------ one backend

@test "clients, one backend: node-redis with its defaults (RESP3: HELLO 3)" {
    need_node_clients
    proxy_over 1
    node_compat node-redis
}

@test "clients, one backend: node-redis with RESP: 2" {
    need_node_clients
    proxy_over 1
    node_compat node-redis-resp2
}

@test "clients, one backend: ioredis with its defaults" {
    need_node_clients
    proxy_over 1
    node_compat ioredis
}

@test "clients, one backend: redis-py with its defaults" {
    need_redis_py
    proxy_over 1
    py_compat
}

# --------------------------------------------------------- three backends

@test "clients, three backends: node-redis with its defaults (RESP3: HELLO 3)" {
    need_node_clients
    proxy_over 3
    node_compat node-redis
}

@test "clients, three backends: node-redis with RESP: 2" {
    need_node_clients
    proxy_over 3
    node_compat node-redis-resp2
}

@test "clients, three backends: ioredis with its defaults" {
    need_node_clients
    proxy_over 3
    node_compat ioredis
}

@test "clients, three backends: redis-py with its defaults" {
    need_redis_py
    proxy_over 3
    py_compat
}

# ------------------------------------------------------------------ BullMQ

@test "clients, three backends: BullMQ (prefix {bull}): 1,000 jobs, 4 workers, delayed jobs, QueueEvents" {
    need_node_clients
    [[ -d "$BATS_TEST_DIRNAME/clients/node_modules/bullmq" ]] ||
        skip "no bullmq in test/clients/node_modules (make deps installs it with npm)"
    proxy_over 3
    run timeout 150 node "$BATS_TEST_DIRNAME/clients/bullmq.js" 127.0.0.1 "$SP_PORT" 1000 4
    printf '%s\n' "${lines[@]}"
    [ "$status" -eq 0 ]
    [[ "$output" != *FAIL* ]]
    [[ "$output" == *"ok 1000 jobs completed once each with the right result"* ]]
    [[ "$output" == *"ok QueueEvents saw 1000 completions"* ]]
    # the blocking commands and watches BullMQ used were all given back
    wait_until eval '[ "$(rcli info backends | tr , "\n" | grep -c "^dedicated=0")" = 3 ]'
}
