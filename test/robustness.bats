#!/usr/bin/env bats
# Robustness: hostile clients, resource limits, log safety, a backend killed
# under a deep pipeline, and a chaos run that checks data integrity while the
# backends are stopped, paused, cut off and made to refuse connections.
#
# Complements failures.bats (single failures, one request at a time) and
# proxy.bats (the protocol-error table): nothing here repeats those cases.
# In every test a second, well-behaved client (the "bystander" in
# test/robust.py) does SET/GET/PING before, during and after the abuse, and
# the proxy must still be alive at the end.
#
# test/robust.py holds the socket-level clients, test/chaos.py the chaos run
# (CHAOS_SECONDS, default 30).  Figures (peak RSS, connections held at the fd
# limit, chaos counts) are printed to fd 3, so they show in bats' output.

load helper

RB() {
    timeout "${RB_TIMEOUT:-60}" python3 "$BATS_TEST_DIRNAME/robust.py" "$@"
}

RB_CHAOS() {
    timeout "${RB_TIMEOUT:-150}" python3 "$BATS_TEST_DIRNAME/chaos.py" "$@"
}

# Figures for the bats output (fd 3 is bats' own stream).
say() {
    echo "# $*" >&3
}

# The proxy is alive and serves a new client on every backend.
proxy_fine() {
    local i k
    _sp_alive "$SP_PID" || { echo "the proxy is gone" >&2; return 1; }
    [[ "$(rcli ping)" == PONG ]]
    for i in "${!REDIS_PORTS[@]}"; do
        k=$(key_on "$i" fine)
        [[ "$(rcli set "$k" "ok$i")" == OK ]]
        [[ "$(rcli get "$k")" == "ok$i" ]]
    done
}

# Run a background job that creates nothing on fd 3 and is reaped in teardown.
bg() {
    "$@" </dev/null >/dev/null 2>&1 3>&- &
    SP_EXTRA_PIDS+=($!)
}

# ------------------------------------------------------------ 1. bad input

# bats test_tags=valgrind
@test "garbage: 64 KiB of random bytes (5 seeds, 3 shapes) and mutated pipelines; only -ERR back, others unaffected" {
    start_redis 3
    write_config
    start_proxy
    run RB garbage "$SP_PORT" 1 2 3 4 5
    echo "$output"
    ((status == 0))
    run RB mutate "$SP_PORT" 11 12 13 14 15
    echo "$output"
    ((status == 0))
    grep -q 'protocol error' "$SP_LOG"
    proxy_fine
}

# bats test_tags=valgrind
@test "framing: 10^12, negative, non-numeric, overflowing lengths, non-bulk and nested elements; *0 is skipped" {
    start_redis 3
    write_config
    start_proxy
    local rss0 rss1
    rss0=$(awk '/^VmHWM:/ { print $2 }' "/proc/$SP_PID/status")
    run RB framing "$SP_PORT"
    echo "$output"
    ((status == 0))
    rss1=$(awk '/^VmHWM:/ { print $2 }' "/proc/$SP_PID/status")
    echo "proxy VmHWM ${rss0} kB before, ${rss1} kB after"
    ((rss1 < rss0 + 20 * 1024)) # no huge length was allocated up front
    proxy_fine
}

# bats test_tags=valgrind
@test "a 1 MiB inline line: Protocol error 'too big inline request', then close; 64 KiB is still fine" {
    start_redis 3
    write_config
    start_proxy
    run RB biginline "$SP_PORT"
    echo "$output"
    ((status == 0))
    proxy_fine
}

# bats test_tags=valgrind
@test "a request written one byte per write() (SET of 200 bytes, GET, MGET across backends): served whole" {
    start_redis 3
    write_config
    start_proxy
    local k1 k2
    k1=$(key_on 0 trickle)
    k2=$(key_on 2 trickle)
    run RB trickle "$SP_PORT" "$k1" "$k2"
    echo "$output"
    ((status == 0))
    [[ "$(bcli 0 strlen "$k1")" == 200 ]]
    proxy_fine
}

# bats test_tags=valgrind
@test "client_timeout 2: half a request, silence, a trickle: closed after ~2 s; a client owed a reply: kept" {
    start_redis 3
    write_config "client_timeout 2" "timeout 10000"
    start_proxy
    local stopped tag ready
    stopped=$(key_on 0 owed)
    tag=$(key_on 1 tag)
    [[ "$(rcli set "$stopped" owed-value)" == OK ]]
    ready="$(sp_tmpdir)/ready"
    kill -STOP "${REDIS_PIDS[0]}"
    # the backend answers 3.5 s after the GET is sent: past client_timeout
    bg bash -c "until [ -e '$ready' ]; do sleep 0.05; done; sleep 3.5; kill -CONT ${REDIS_PIDS[0]}"
    BY_TAG="{$tag}" STOPPED_KEY=$stopped READY_FILE=$ready run RB timeouts "$SP_PORT" on
    echo "$output"
    kill -CONT "${REDIS_PIDS[0]}"
    ((status == 0))
    [[ "$output" == *"not closed: got b'owed-value'"* ]]
    grep -q 'incomplete request past client_timeout' "$SP_LOG"
    grep -q 'idle past client_timeout' "$SP_LOG"
    proxy_fine
}

@test "client_timeout 0: half a request, silence, a trickle: all still open after 3.5 s" {
    start_redis 3
    write_config "client_timeout 0"
    start_proxy
    run RB timeouts "$SP_PORT" off
    echo "$output"
    ((status == 0))
    run grep -c 'past client_timeout' "$SP_LOG"
    [[ "$output" == 0 ]] # nobody was closed for it
    proxy_fine
}

# bats test_tags=valgrind
@test "a client pipelining 300 GETs of a 1 MiB value and never reading: cut at client_output_limit 8mb, RSS bounded" {
    start_redis 3
    # (timeout 10000: redis may take over a second to build 300 MiB of replies)
    write_config "client_output_limit 8mb" "timeout 10000" "log_level info"
    start_proxy
    local big tag peak
    big=$(key_on 2 big)
    tag=$(key_on 1 tag)
    head -c 1048576 /dev/zero | tr '\0' x | rcli -x set "$big" >/dev/null
    [[ "$(rcli strlen "$big")" == 1048576 ]]
    BY_TAG="{$tag}" run RB noread "$SP_PORT" "$SP_PID" "$big" 300 "$SP_LOG"
    echo "$output"
    peak=$(sed -n 's/^peak_kb //p' <<<"$output")
    say "peak RSS under a non-reading client (300 GETs x 1 MiB, client_output_limit 8mb): ${peak} kB"
    ((status == 0))
    ((peak > 0 && peak < 150 * 1024))
    grep 'client_output_limit' "$SP_LOG"
    proxy_fine
}

@test "replies held behind a slow request count against client_output_limit (no unbounded buffering)" {
    # The first GET waits on a stopped backend; 200 GETs of a 1 MiB value on
    # another backend are answered meanwhile and must wait in order.  Those
    # held replies are output the client owes: past client_output_limit the
    # client must be cut, not buffered without bound.
    start_redis 3
    write_config "client_output_limit 8mb" "timeout 10000" "log_level info"
    start_proxy
    local big tag slow peak
    big=$(key_on 2 big)
    slow=$(key_on 0 slow)
    tag=$(key_on 1 tag)
    head -c 1048576 /dev/zero | tr '\0' y | rcli -x set "$big" >/dev/null
    kill -STOP "${REDIS_PIDS[0]}"
    BY_TAG="{$tag}" HOLD_KEY=$slow HOLD_PID=${REDIS_PIDS[0]} \
        run RB noread "$SP_PORT" "$SP_PID" "$big" 200 "$SP_LOG"
    echo "$output"
    kill -CONT "${REDIS_PIDS[0]}"
    peak=$(sed -n 's/^peak_kb //p' <<<"$output")
    say "peak RSS with 200 x 1 MiB replies held behind a stalled request (client_output_limit 8mb): ${peak} kB"
    grep 'client_output_limit' "$SP_LOG" # the cut is logged
    ((peak > 0 && peak < 150 * 1024))
    ((status == 0))
    proxy_fine
}

@test "fd limit 256, max_clients 1000: connections up to the limit are served, the rest refused or closed, never left hanging" {
    start_redis 3
    write_config "max_clients 1000" "log_level info"
    SP_NOFILE=256 start_proxy
    grep -E '^Max open files +256 +256' "/proc/$SP_PID/limits"
    CONNS_WAIT=4 run RB conns "$SP_PORT" 700
    echo "$output"
    local line served
    line=$(grep '^opened=' <<<"$output")
    served=${line#* served=}
    served=${served%% *}
    say "fd limit 256, max_clients 1000, 700 connections: $line"
    _sp_alive "$SP_PID"
    [[ "$output" != *"FAIL bystander"* ]]
    ((served >= 200 && served <= 256))
    # after they are gone, new clients are served
    WAIT_TIMEOUT=10 wait_until proxy_fine
    # every connection got an answer: served, refused with an error, or closed
    [[ "$line" == *" other=0 unanswered=0" ]]
}

@test "max_clients 100 under a flood of 300 connections: 99 served besides the bystander, 201 refused with an error" {
    start_redis 3
    write_config "max_clients 100" "log_level info"
    start_proxy
    wait_until clients_are 1 # redis-cli connections from start-up are gone
    CONNS_WAIT=4 run RB conns "$SP_PORT" 300
    echo "$output"
    ((status == 0))
    [[ "$output" == *"opened=300 connect_failed=0 served=99 refused=201 closed=0 other=0 unanswered=0"* ]]
    WAIT_TIMEOUT=10 wait_until proxy_fine
}

@test "fd limit 256: while clients hold every descriptor, lost backend connections are re-established" {
    # Clients must not be able to starve the proxy of the descriptors it
    # needs for its backends: a flood that uses them all, then every backend
    # connection dropped (CLIENT KILL on the backends).  An already connected
    # client must be served again within a few seconds.
    start_redis 3
    write_config "max_clients 1000" "log_level info"
    SP_NOFILE=256 start_proxy
    local ready release out pid i b line keys=() ok=0 t0 ms
    for b in 0 1 2; do keys+=("$(key_on "$b" held)"); done
    ready="$(sp_tmpdir)/conns.ready"
    release="$(sp_tmpdir)/conns.release"
    out="$(sp_tmpdir)/conns.out"
    # a client connected before the flood, with keys on every backend
    exec 8<>"/dev/tcp/127.0.0.1/$SP_PORT"
    CONNS_WAIT=3 CONNS_READY=$ready CONNS_RELEASE=$release \
        timeout 90 python3 "$BATS_TEST_DIRNAME/robust.py" conns "$SP_PORT" 600 \
        </dev/null >"$out" 2>&1 3>&- &
    pid=$!
    SP_EXTRA_PIDS+=("$pid")
    wait_until test -e "$ready"
    cat "$out"
    for i in 0 1 2; do
        bcli "$i" client kill type normal >/dev/null
    done
    t0=${EPOCHREALTIME/./}
    for ((i = 0; ; i++)); do # up to 5 s
        ok=0
        for b in 0 1 2; do
            printf '*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\nv\r\n' "${#keys[b]}" "${keys[b]}" >&8
            read -r -t 5 line <&8 || line=timeout
            [[ "$line" == "+OK"$'\r' ]] && ok=$((ok + 1))
            ((i % 10 == 0)) && echo "try $i, backend $b: ${line%$'\r'}"
        done
        ((ok == 3 || ${EPOCHREALTIME/./} - t0 > 5000000)) && break
        sleep 0.1
    done
    ms=$(((${EPOCHREALTIME/./} - t0) / 1000))
    touch "$release"
    wait "$pid" || true
    exec 8>&-
    # for the output only (not an assertion): what the proxy logged at the limit
    grep -i 'backend.*\(descriptor\|open files\)' "$SP_LOG" | tail -n 3 || :
    if ((ok == 3)); then
        say "fd limit 256, every descriptor held: all 3 backends served again ${ms} ms after their connections were killed"
    else
        say "fd limit 256, every descriptor held: $((3 - ok)) of 3 backends still unavailable ${ms} ms after their connections were killed"
    fi
    ((ok == 3))
    WAIT_TIMEOUT=10 wait_until proxy_fine
}

@test "accept() failing with EMFILE (fd limit 64, max_clients 10000): no busy loop, recovery after" {
    # Clients alone cannot exhaust the descriptors (max_clients is lowered to
    # fit under the limit, with a reserve), so admin connections, which have
    # no such cap below 256, take the rest; then 100 clients wait in the
    # backlog and accept() on both listeners fails with EMFILE.
    start_redis 3
    local sock hz t0 t1 n0 hold
    sock="$(sp_tmpdir)/admin.sock"
    write_config "max_clients 10000" "log_level info" "admin $sock"
    SP_NOFILE=64 start_proxy
    timeout 120 python3 "$BATS_TEST_DIRNAME/robust.py" holdfds "$sock" "$SP_PORT" "$(sp_tmpdir)/held" \
        "$(sp_tmpdir)/release" </dev/null 3>&- &
    hold=$!
    SP_EXTRA_PIDS+=("$hold")
    wait_until test -e "$(sp_tmpdir)/held"
    wait_until grep -q 'Too many open files' "$SP_LOG"
    hz=$(getconf CLK_TCK)
    t0=$(cpu_ticks "$SP_PID")
    n0=$(grep -c 'accept: ' "$SP_LOG" || true)
    sleep 3 # measurement window, at the limit
    t1=$(cpu_ticks "$SP_PID")
    touch "$(sp_tmpdir)/release"
    wait "$hold" || true
    say "EMFILE at fd limit 64 (60 admin + 100 client connections): proxy CPU over 3 s at the limit: $((t1 - t0)) ticks at $hz Hz; accept warnings before the window: $n0"
    _sp_alive "$SP_PID"
    ((t1 - t0 < hz / 2))
    WAIT_TIMEOUT=10 wait_until proxy_fine
}

# ----------------------------------------------------------- 2. log safety

# bats test_tags=valgrind
@test "log safety: unknown command names with ESC, CR LF, NUL, DEL, 0xff are logged escaped only" {
    start_redis 3
    write_config "log_level debug"
    start_proxy
    run RB logsafety "$SP_PORT"
    echo "$output"
    ((status == 0))
    run RB checklog "$SP_LOG"
    echo "$output"
    ((status == 0))
    proxy_fine
}

# ------------------------------------------------------ 3. backend faults

# bats test_tags=valgrind
@test "a backend SIGKILLed under 5,000 pipelined requests: one reply each, in order, none lost or doubled; served after restart" {
    start_redis 3
    write_config "timeout 2000" "client_max_pending 10000" "log_level info"
    start_proxy
    local ready victim tag k
    victim="127.0.0.1:${REDIS_PORTS[0]}"
    ready="$(sp_tmpdir)/kill.ready"
    tag=$(key_on 1 tag)
    bg bash -c "until [ -e '$ready' ]; do sleep 0.005; done; kill -KILL ${REDIS_PIDS[0]}"
    BY_TAG="{$tag}" run RB killpipe "$SP_PORT" "$SP_CONF" "$SP_BIN" "$victim" "$ready"
    echo "$output"
    ((status == 0))
    wait "${REDIS_PIDS[0]}" 2>/dev/null || true
    if _sp_alive "${REDIS_PIDS[0]}"; then false; fi # really killed
    _sp_alive "$SP_PID"
    # the same port again: served once the proxy reconnects
    redis_on "${REDIS_PORTS[0]}"
    REDIS_PIDS[0]=$STARTED_PID
    k=$(key_on 0 back)
    WAIT_TIMEOUT=15 wait_until set_ok "$k" again
    [[ "$(rcli get "$k")" == again ]]
    [[ "$(bcli 0 get "$k")" == again ]]
    proxy_fine
}

# --------------------------------------------------------------- 4. chaos

# bats test_tags=valgrind
@test "chaos: 16 pipelining clients while backends are stopped, paused, cut off, refusing: no reply misdelivered, no write lost" {
    start_redis 3
    write_config "timeout 500" "connect_timeout 500" "backend_connections 2" "log_level info"
    start_proxy
    local args=() i secs=${CHAOS_SECONDS:-30}
    for i in 0 1 2; do args+=(--backend "${REDIS_PORTS[$i]}:${REDIS_PIDS[$i]}"); done
    RB_TIMEOUT=$((secs + 120)) run RB_CHAOS --port "$SP_PORT" --proxy-pid "$SP_PID" \
        --seconds "$secs" --timeout-ms 500 --margin-ms "${CHAOS_MARGIN_MS:-1500}" "${args[@]}"
    echo "$output"
    grep '^# ' <<<"$output" | head -n 12 >&3
    _sp_alive "$SP_PID"
    ((status == 0))
    [[ "$output" == *"RESULT OK"* ]]
    [[ "$output" == *"# mismatches 0 (during the run), 0 (final read-back"*"; crashes 0;"* ]]
    proxy_fine
}
