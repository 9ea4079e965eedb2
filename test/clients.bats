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
# Pub/sub (tests named "clients pubsub"): test/clients/pubsub.js for
# node-redis (RESP3 and RESP2) and ioredis (RESP3, its default, and RESP2),
# and clients_py.py --checks pubsub for redis-py: SUBSCRIBE, PSUBSCRIBE,
# SSUBSCRIBE, PUBLISH/SPUBLISH over channels on several backends, every message
# once and in order, PUBSUB CHANNELS/NUMSUB/NUMPAT/SHARD*, unsubscribing, and
# the library's resubscribe after CLIENT KILL TYPE pubsub on every backend
# makes the proxy close the subscriber.  "clients monitor": redis-py's
# monitor() (clients_py.py --checks monitor) parses the merged stream, whose
# address field is BACKEND-ID/ip:port.  "clients legacy Bull": Bull 4
# (test/clients/bull.js: SUBSCRIBE for its events and delayed jobs,
# BRPOPLPUSH, Lua scripts that PUBLISH) runs a job queue through three
# backends.  All of them pass against a plain redis-server too, e.g.
# `node test/clients/pubsub.js ioredis 127.0.0.1 6379 --kill 127.0.0.1:6379`.
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

need_bull() {
    need_node_clients
    [[ -d "$BATS_TEST_DIRNAME/clients/node_modules/bull" ]] ||
        skip "no bull in test/clients/node_modules (make deps installs it with npm)"
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

# node_pubsub LIB: test/clients/pubsub.js LIB through the proxy, every
# backend given as a --kill (CLIENT KILL TYPE pubsub there, for the
# resubscribe check); its output is shown when the test fails.
node_pubsub() {
    local args=() port
    for port in "${REDIS_PORTS[@]}"; do
        args+=(--kill "127.0.0.1:$port")
    done
    run timeout 60 node "$BATS_TEST_DIRNAME/clients/pubsub.js" "$1" 127.0.0.1 "$SP_PORT" "${args[@]}"
    printf '%s\n' "${lines[@]}"
    [ "$status" -eq 0 ]
    [[ "$output" != *FAIL* ]]
    [[ "$output" == *"ok $1 resubscribe-after-close"* ]]
}

# py_compat [ARG...]: test/clients_py.py through the proxy, every backend given as a
# --direct-backend (where the db 1 key must land; whose script caches it flushes;
# where the pubsub checks CLIENT KILL TYPE pubsub), then ARGs (e.g. --checks pubsub).
py_compat() {
    local args=() port
    for port in "${REDIS_PORTS[@]}"; do
        args+=(--direct-backend "127.0.0.1:$port")
    done
    run timeout 60 /usr/bin/python3 "$BATS_TEST_DIRNAME/clients_py.py" 127.0.0.1 "$SP_PORT" "${args[@]}" "$@"
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

# ------------------------------------------------------------------ pub/sub

@test "clients pubsub, one backend: node-redis with its defaults (RESP3 pushes)" {
    need_node_clients
    proxy_over 1
    node_pubsub node-redis
}

@test "clients pubsub, one backend: ioredis with its defaults (RESP3 pushes)" {
    need_node_clients
    proxy_over 1
    node_pubsub ioredis
}

@test "clients pubsub, one backend: redis-py PubSub (RESP2)" {
    need_redis_py
    proxy_over 1
    py_compat --checks pubsub
    [[ "$output" == *"ok redis-py pubsub-resubscribe"* ]]
}

@test "clients pubsub, three backends: node-redis with its defaults (RESP3 pushes)" {
    need_node_clients
    proxy_over 3
    node_pubsub node-redis
}

@test "clients pubsub, three backends: node-redis with RESP: 2" {
    need_node_clients
    proxy_over 3
    node_pubsub node-redis-resp2
}

@test "clients pubsub, three backends: ioredis with its defaults (RESP3 pushes)" {
    need_node_clients
    proxy_over 3
    node_pubsub ioredis
}

@test "clients pubsub, three backends: ioredis with protocol: 2" {
    need_node_clients
    proxy_over 3
    node_pubsub ioredis-resp2
}

@test "clients pubsub, three backends: redis-py PubSub: get_message, run_in_thread, resubscribe" {
    need_redis_py
    proxy_over 3
    py_compat --checks pubsub
    [[ "$output" == *"ok redis-py pubsub-resubscribe"* ]]
}

# ------------------------------------------------------------------ MONITOR

# monitor_addresses_ok N: the address fields clients_py.py's monitor check
# saw (its `# ... client addresses seen:` note) are all BACKEND-ID/127.0.0.1
# with a backend's identity (127.0.0.1:PORT as write_config writes them), of N
# backends or more.
monitor_addresses_ok() {
    local want=$1 note addr ids=() port ok
    note=$(printf '%s\n' "${lines[@]}" | sed -n 's/^# redis-py monitor: client addresses seen: //p')
    [[ -n "$note" ]] || { echo "no 'client addresses seen' note"; return 1; }
    for addr in $note; do
        ok=
        for port in "${REDIS_PORTS[@]}"; do
            [[ "$addr" == "127.0.0.1:$port/127.0.0.1" ]] && ok=1
        done
        [[ -n "$ok" ]] || { echo "address field $addr: not BACKEND-ID/ip (backends: ${REDIS_PORTS[*]})"; return 1; }
        ids+=("${addr%%/*}")
    done
    ((${#ids[@]} >= want)) || { echo "the MONITOR lines came from ${#ids[@]} backend(s), want $want or more"; return 1; }
}

@test "clients monitor, one backend: redis-py monitor() parses the proxy's MONITOR lines" {
    need_redis_py
    proxy_over 1
    py_compat --checks monitor
    [[ "$output" == *"ok redis-py monitor"* ]]
    monitor_addresses_ok 1
}

@test "clients monitor, three backends: redis-py monitor() over the merged stream (BACKEND-ID/ip:port)" {
    need_redis_py
    proxy_over 3
    py_compat --checks monitor
    [[ "$output" == *"ok redis-py monitor"* ]]
    # 12 keys over 3 backends: lines from more than one
    monitor_addresses_ok 2
}

# ------------------------------------------------------------ legacy Bull

@test "clients legacy Bull, one backend: 200 jobs, delayed and retried jobs, global events" {
    need_bull
    proxy_over 1
    run timeout 120 node "$BATS_TEST_DIRNAME/clients/bull.js" 127.0.0.1 "$SP_PORT" 200 2
    printf '%s\n' "${lines[@]}"
    [ "$status" -eq 0 ]
    [[ "$output" != *FAIL* ]]
    [[ "$output" == *"ok 200 jobs completed once each with the right result"* ]]
}

@test "clients legacy Bull, three backends (prefix {bull}): 200 jobs, 2 queues x 5, delayed and retried jobs, global events" {
    need_bull
    proxy_over 3
    run timeout 120 node "$BATS_TEST_DIRNAME/clients/bull.js" 127.0.0.1 "$SP_PORT" 200 2
    printf '%s\n' "${lines[@]}"
    [ "$status" -eq 0 ]
    [[ "$output" != *FAIL* ]]
    [[ "$output" == *"ok 200 jobs completed once each with the right result"* ]]
    [[ "$output" == *"ok 20 delayed jobs ran after their delay"* ]]
    [[ "$output" == *"ok each of 2 queue instances saw 200 global:completed events"* ]]
    # the blocking commands (BRPOPLPUSH) and subscriptions Bull used were all given back
    wait_until eval '[ "$(rcli info backends | tr , "\n" | grep -c "^dedicated=0")" = 3 ]'
}
