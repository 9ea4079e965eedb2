#!/usr/bin/env bats
# Failure handling against real redis-servers and small fake backends:
# backends killed, stopped (SIGSTOP) past and within `timeout`, down at start,
# refusing connections; fake backends (python, in setup_file) that answer
# garbage, close mid-reply, reply out of turn, never answer, never complete a
# connect, or accept and close every connection; clients that vanish with
# requests in flight; SIGTERM with idle and busy clients; the client limits
# (max_clients, client_output_limit, client_max_pending).
#
# Timings are measured, never assumed: readiness is polled with bounded loops
# (wait_until); the only sleeps are the length of a deliberate pause or of a
# CPU-measurement window.

load helper

# ------------------------------------------------------------------ helpers

# Python side of the tests (fake backends, clients that need raw sockets):
# test/failtool.py.
SPTOOL() {
    python3 "$BATS_TEST_DIRNAME/failtool.py" "$@"
}

# Kill redis I with SIGKILL and reap it.
kill_redis() {
    kill -KILL "${REDIS_PIDS[$1]}"
    wait "${REDIS_PIDS[$1]}" 2>/dev/null || true
}

# The backend identity of redis I as write_config writes it.
rid() {
    echo "127.0.0.1:${REDIS_PORTS[$1]}"
}

# timed_rcli ARGS: run rcli; its output (stderr too) in OUT, wall time in MS.
timed_rcli() {
    local t0=${EPOCHREALTIME/./}
    OUT="$(rcli "$@" 2>&1)" || true
    MS=$(((${EPOCHREALTIME/./} - t0) / 1000))
    echo "rcli $*: '$OUT' in $MS ms"
}

# In-flight requests the proxy reports for backend index I (INFO backends).
inflight_is() {
    local line
    line="$(rcli info backends | tr -d '\r' | grep "^backend$1:")" || return 1
    line=${line##*inflight=}
    [[ "${line%%,*}" == "$2" ]]
}

# True when nothing accepts connections on PORT.
port_closed() {
    ! (exec 9<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Fake backend: fake_start MODE; port in FAKE_PORT, its log in FAKE_LOG.
fake_start() {
    FAKE_PORT=$(free_port)
    FAKE_LOG="$(sp_tmpdir)/fake.log"
    : >"$FAKE_LOG"
    SPTOOL fake "$FAKE_PORT" "$1" "$FAKE_LOG" "$(sp_tmpdir)/fake.ready" \
        </dev/null >"$(sp_tmpdir)/fake.out" 2>&1 3>&- &
    SP_EXTRA_PIDS+=($!)
    wait_until test -e "$(sp_tmpdir)/fake.ready"
}

# Config with the fake backend alone, named "fake", then each LINE.
fake_config() {
    _sp_defaults
    {
        echo "listen 127.0.0.1:$SP_PORT"
        echo "backend 127.0.0.1:$FAKE_PORT name=fake"
        echo "log_level debug"
        printf '%s\n' "$@"
    } >"$SP_CONF"
}

fake_log_has() {
    grep -qx "$1" "$FAKE_LOG"
}

# Wait (bounded) for PID to exit; its status in EXIT_RC.
wait_exit() {
    local pid=$1 limit_ms=$2 t0=${EPOCHREALTIME/./}
    while _sp_alive "$pid"; do
        if (((${EPOCHREALTIME/./} - t0) / 1000 > limit_ms)); then
            echo "process $pid still running after $limit_ms ms" >&2
            return 1
        fi
        sleep 0.02
    done
    EXIT_RC=0
    wait "$pid" || EXIT_RC=$?
}

# -------------------------------------------------------------------- tests

# bats test_tags=valgrind
@test "a killed backend: fast unavailable errors, others served, back after restart" {
    start_redis 3
    write_config "timeout 2000"
    start_proxy
    local k0 k1 k2 i id0 res bg t0 ms
    id0=$(rid 0)
    k0=$(key_for "$id0")
    k1=$(key_for "$(rid 1)")
    k2=$(key_for "$(rid 2)")
    for k in "$k0" "$k1" "$k2"; do
        [[ "$(rcli set "$k" "v-$k")" == OK ]]
    done

    # a request in flight when the backend dies is answered at once
    kill -STOP "${REDIS_PIDS[0]}"
    res="$(sp_tmpdir)/inflight"
    rcli get "$k0" </dev/null >"$res" 2>&1 3>&- &
    bg=$!
    SP_EXTRA_PIDS+=("$bg")
    wait_until inflight_is 0 1
    t0=${EPOCHREALTIME/./}
    kill_redis 0
    wait "$bg" || : # its status is not the point (an error reply): the reply is checked next
    ms=$(((${EPOCHREALTIME/./} - t0) / 1000))
    echo "in flight at the kill: '$(cat "$res")' $ms ms after it"
    [[ "$(cat "$res")" == "ERR backend $id0 unavailable" ]]
    ((ms < 300))

    for i in 1 2 3 4 5; do
        timed_rcli get "$k0"
        [[ "$OUT" == "ERR backend $id0 unavailable" ]]
        ((MS < 300))
    done
    timed_rcli get "$k1"
    [[ "$OUT" == "v-$k1" ]]
    timed_rcli set "$k2" new2
    [[ "$OUT" == OK ]]
    timed_rcli mget "$k1" "$k0" "$k2"
    [[ "$OUT" == "ERR backend $id0 unavailable" ]] # one error, not an array
    ((MS < 300))
    timed_rcli mget "$k1" "$k2"
    [[ "$OUT" == "v-$k1"$'\n'new2 ]]

    # same port, same proxy process: served again once the backoff retries
    redis_on "${REDIS_PORTS[0]}"
    REDIS_PIDS[0]=$STARTED_PID
    WAIT_TIMEOUT=12 wait_until set_ok "$k0" again
    _sp_alive "$SP_PID"
    [[ "$(rcli get "$k0")" == again ]]
    [[ "$(bcli 0 get "$k0")" == again ]]
    [[ "$(rcli mget "$k0" "$k1")" == again$'\n'"v-$k1" ]]
}

# bats test_tags=valgrind
@test "a backend stopped past timeout: timed out after ~timeout, others served meanwhile" {
    start_redis 3
    write_config "timeout 300"
    start_proxy
    local k0 k1 k2 id0 res ms bg i
    id0=$(rid 0)
    k0=$(key_for "$id0")
    k1=$(key_for "$(rid 1)")
    k2=$(key_for "$(rid 2)")
    [[ "$(rcli set "$k0" v0)" == OK ]]
    [[ "$(rcli set "$k1" v1)" == OK ]]

    kill -STOP "${REDIS_PIDS[0]}"
    res="$(sp_tmpdir)/stalled"
    (
        t0=${EPOCHREALTIME/./}
        out="$(rcli get "$k0" 2>&1)"
        echo "$out|$(((${EPOCHREALTIME/./} - t0) / 1000))" >"$res"
    ) </dev/null >/dev/null 2>&1 3>&- &
    bg=$!
    SP_EXTRA_PIDS+=("$bg")
    wait_until inflight_is 0 1 # the request waits on the stopped backend
    timed_rcli get "$k1"
    [[ "$OUT" == v1 ]]
    ((MS < 250))
    timed_rcli set "$k2" v2
    [[ "$OUT" == OK ]]
    ((MS < 250))

    wait "$bg"
    cat "$res"
    [[ "$(cut -d'|' -f1 "$res")" == "ERR backend $id0 timed out" ]]
    ms=$(cut -d'|' -f2 "$res")
    ((ms >= 250 && ms <= 2000))
    # still stopped: later requests fail too, each within about the timeout
    for i in 1 2 3; do
        timed_rcli get "$k0"
        [[ "$OUT" == "ERR backend $id0 "@(timed out|unavailable) ]]
        ((MS < 1000))
    done

    kill -CONT "${REDIS_PIDS[0]}"
    wait_until set_ok "$k0" after
    [[ "$(rcli get "$k0")" == after ]]
    [[ "$(rcli get "$k1")" == v1 ]]
}

@test "a backend paused for less than timeout: the normal reply, no error" {
    start_redis 3
    write_config "timeout 2000"
    start_proxy
    local k0
    k0=$(key_for "$(rid 0)")
    [[ "$(rcli set "$k0" patient)" == OK ]]

    kill -STOP "${REDIS_PIDS[0]}"
    (
        sleep 0.3
        kill -CONT "${REDIS_PIDS[0]}"
    ) </dev/null >/dev/null 2>&1 3>&- &
    SP_EXTRA_PIDS+=($!)
    timed_rcli get "$k0"
    [[ "$OUT" == patient ]]
    ((MS >= 200 && MS < 2000)) # it did wait for the paused backend
    timed_rcli get "$k0"
    [[ "$OUT" == patient ]]
    ((MS < 200))
}

# bats test_tags=valgrind
@test "a client gone while its request is in flight: the late reply is dropped, not misdelivered" {
    start_redis 2
    write_config "timeout 3000"
    start_proxy
    local res bg first second other
    first=$(key_for "$(rid 0)" first)
    second=$(key_for "$(rid 0)" second)
    other=$(key_for "$(rid 1)" other)
    [[ "$(rcli mset "$first" A "$second" B "$other" C)" == OK ]]
    kill -STOP "${REDIS_PIDS[0]}"
    # the first client resets its connection while a GET and an MGET split
    # across both backends wait on the stopped one
    SPTOOL rstclose "$SP_PORT" "$(sp_tmpdir)/go" GET "$first" -- MGET "$other" "$first" \
        </dev/null >/dev/null 2>&1 3>&- &
    bg=$!
    SP_EXTRA_PIDS+=("$bg")
    wait_until inflight_is 0 2
    touch "$(sp_tmpdir)/go"
    wait "$bg"
    wait_until clients_are 1 # the proxy closed it: its requests are orphans now
    inflight_is 0 2
    res="$(sp_tmpdir)/second"
    rcli get "$second" </dev/null >"$res" 2>&1 3>&- &
    bg=$!
    SP_EXTRA_PIDS+=("$bg")
    wait_until inflight_is 0 3
    kill -CONT "${REDIS_PIDS[0]}"
    wait "$bg" # the held GET completes
    cat "$res"
    [[ "$(cat "$res")" == B ]]
    [[ "$(rcli get "$first")" == A ]]
    [[ "$(rcli mget "$second" "$other" "$first")" == B$'\n'C$'\n'A ]]
    wait_until inflight_is 0 0
}

# bats test_tags=valgrind
@test "every backend down at start: PING works, unavailable errors, served once they come up" {
    local ports=() p i keys=() ids=()
    for i in 0 1 2; do ports+=("$(free_port)"); done
    _sp_defaults
    {
        echo "listen 127.0.0.1:$SP_PORT"
        for p in "${ports[@]}"; do echo "backend 127.0.0.1:$p"; done
        echo "log_level debug"
        echo "timeout 2000"
    } >"$SP_CONF"
    start_proxy
    [[ "$(rcli ping)" == PONG ]]
    for i in 0 1 2; do
        ids[i]="127.0.0.1:${ports[i]}"
        keys[i]=$(key_for "${ids[i]}")
        timed_rcli set "${keys[i]}" x
        [[ "$OUT" == "ERR backend ${ids[i]} unavailable" ]]
        ((MS < 300))
    done

    for i in 0 1 2; do
        redis_on "${ports[i]}"
        REDIS_PORTS+=("${ports[i]}")
        REDIS_PIDS+=("$STARTED_PID")
    done
    for i in 0 1 2; do
        WAIT_TIMEOUT=15 wait_until set_ok "${keys[i]}" "up$i"
        [[ "$(bcli "$i" get "${keys[i]}")" == "up$i" ]]
    done
    [[ "$(rcli mget "${keys[@]}")" == up0$'\n'up1$'\n'up2 ]]
}

@test "SIGTERM on an idle proxy: exit 0 promptly, listener closed, idle client closed" {
    start_redis 1
    write_config
    start_proxy
    local pid=$SP_PID out
    out="$(sp_tmpdir)/hold.out"
    SPTOOL hold "$SP_PORT" "$(sp_tmpdir)/hold.ready" </dev/null >"$out" 2>&1 3>&- &
    SP_EXTRA_PIDS+=($!)
    wait_until test -e "$(sp_tmpdir)/hold.ready"

    kill -TERM "$pid"
    wait_exit "$pid" 3000
    SP_PID=
    echo "exit status $EXIT_RC"
    ((EXIT_RC == 0))
    port_closed "$SP_PORT"
    wait_until grep -q . "$out"
    cat "$out"
    [[ "$(cat "$out")" == EOF ]]
}

# bats test_tags=valgrind
@test "SIGTERM while a request waits on a slow backend: the reply is delivered, then exit 0" {
    start_redis 1
    write_config "timeout 2000"
    start_proxy
    local pid=$SP_PID res bg t0
    res="$(sp_tmpdir)/slow"

    kill -STOP "${REDIS_PIDS[0]}"
    t0=${EPOCHREALTIME/./}
    rcli set slowkey slowvalue </dev/null >"$res" 2>&1 3>&- &
    bg=$!
    SP_EXTRA_PIDS+=("$bg")
    wait_until inflight_is 0 1

    kill -TERM "$pid"
    wait_until port_closed "$SP_PORT" # stops accepting at once...
    _sp_alive "$pid"                  # ...but drains what is in flight
    while (((${EPOCHREALTIME/./} - t0) < 300000)); do sleep 0.02; done # 300 ms pause
    kill -CONT "${REDIS_PIDS[0]}"

    wait "$bg" # the SET in flight at SIGTERM completes
    cat "$res"
    [[ "$(cat "$res")" == OK ]]
    wait_exit "$pid" 3000
    SP_PID=
    echo "exit status $EXIT_RC"
    ((EXIT_RC == 0))
    [[ "$(bcli 0 get slowkey)" == slowvalue ]]
}

# bats test_tags=valgrind
@test "max_clients 5: the 6th connection is refused with an error, the 5 keep working" {
    start_redis 1
    write_config "max_clients 5"
    start_proxy
    # redis-cli connections from start-up must be gone before counting
    wait_until clients_are 1
    run SPTOOL maxclients "$SP_PORT" 5
    echo "$output"
    ((status == 0))
    [[ "$output" == *"rejected: -ERR max number of clients reached"* ]]
}

@test "client_output_limit 1mb: a client that does not read is cut off, others unaffected" {
    start_redis 3
    write_config "client_output_limit 1mb"
    start_proxy
    local out rss bg
    head -c 102400 /dev/zero | tr '\0' x | rcli -x set big >/dev/null
    [[ "$(rcli strlen big)" == 102400 ]]
    out="$(sp_tmpdir)/noread.out"
    SPTOOL noread "$SP_PORT" 500 big "$(sp_tmpdir)/go" </dev/null >"$out" 2>&1 3>&- &
    bg=$!
    SP_EXTRA_PIDS+=("$bg")

    wait_until grep -q 'client_output_limit' "$SP_LOG"
    grep 'client_output_limit' "$SP_LOG"
    [[ "$(rcli set small s)" == OK ]]
    [[ "$(rcli get small)" == s ]]
    [[ "$(rcli strlen big)" == 102400 ]]
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$SP_PID/status")
    echo "proxy VmRSS ${rss} kB"
    ((rss < 100 * 1024))

    touch "$(sp_tmpdir)/go"
    wait "$bg"
    cat "$out"
    [[ "$(cat "$out")" =~ ^bytes=([0-9]+)\ end=(EOF|RESET)$ ]]
    ((BASH_REMATCH[1] < 500 * 102400))
    _sp_alive "$SP_PID"
}

# bats test_tags=valgrind
@test "client_max_pending 10: 1000 pipelined requests get 1000 replies in order" {
    start_redis 3
    write_config "client_max_pending 10"
    start_proxy
    run SPTOOL pipeline "$SP_PORT" 1000
    echo "$output"
    ((status == 0))
    [[ "$output" == "ok 2000" ]]
}

# bats test_tags=valgrind
@test "fake backend answering garbage: an error naming it, then a new connection" {
    fake_start garbage
    fake_config "timeout 3000"
    start_proxy
    wait_until fake_log_has "accept 1"
    timed_rcli set foo bar
    [[ "$OUT" == "ERR backend fake "* ]]
    ((MS < 1000)) # detected at once, not by the timeout
    fake_log_has "garbage 1"
    wait_until fake_log_has "accept 2"
    wait_until fake_log_has "closed 1"
    timed_rcli get foo
    [[ "$OUT" == fake ]]
    cat "$FAKE_LOG"
}

# bats test_tags=valgrind
@test "fake backend closing in the middle of a reply: an error, not a truncated reply" {
    fake_start partial
    fake_config "timeout 3000"
    start_proxy
    wait_until fake_log_has "accept 1"
    timed_rcli get foo
    [[ "$OUT" == "ERR backend fake "* ]]
    ((MS < 1000))
    fake_log_has "partial 1"
    wait_until fake_log_has "accept 2"
    timed_rcli get foo
    [[ "$OUT" == fake ]]
}

@test "fake backend whose connects hang: errors after connect_timeout, then at once" {
    fake_start hang
    fake_config "timeout 5000" "connect_timeout 300"
    start_proxy
    local i
    timed_rcli get foo # may wait for the first connect's deadline
    [[ "$OUT" == "ERR backend fake "* ]]
    ((MS < 1000))
    for i in 1 2 3; do
        timed_rcli get foo
        [[ "$OUT" == "ERR backend fake "* ]]
        ((MS < 300))
    done
    cat "$FAKE_LOG"
    grep -q "connect timed out" "$SP_LOG"
}

# bats test_tags=valgrind
@test "fake backend sending a reply nobody asked for: dropped and reconnected" {
    fake_start unsolicited
    fake_config "timeout 3000"
    start_proxy
    wait_until fake_log_has "unsolicited 1"
    wait_until fake_log_has "closed 1"
    wait_until fake_log_has "accept 2"
    cat "$FAKE_LOG"
    timed_rcli set foo bar
    [[ "$OUT" == OK ]]
    grep -qix "req 2 SET foo bar" "$FAKE_LOG"
    # nothing but the handshake's version probe was asked on the first connection
    run grep "^req 1 " "$FAKE_LOG"
    [[ -z "$(grep -v '^req 1 INFO server$' <<<"$output")" ]]
}

# bats test_tags=valgrind
@test "fake backend that never answers: timed out after timeout" {
    fake_start silent
    fake_config "timeout 500"
    start_proxy
    wait_until fake_log_has "accept 1"
    timed_rcli get foo
    [[ "$OUT" == "ERR backend fake timed out" ]]
    ((MS >= 450 && MS <= 2000))
    grep -qix "req 1 GET foo" "$FAKE_LOG"
}

@test "a backend refusing connections: fast unavailable errors and no busy loop" {
    start_redis 1
    local dead k0 kd i t0 t1 hz n0 n1
    dead=$(free_port)
    write_config "backend 127.0.0.1:$dead" "timeout 2000"
    start_proxy
    k0=$(key_for "$(rid 0)")
    kd=$(key_for "127.0.0.1:$dead")
    for i in 1 2 3; do
        timed_rcli get "$kd"
        [[ "$OUT" == "ERR backend 127.0.0.1:$dead unavailable" ]]
        ((MS < 300))
    done
    [[ "$(rcli set "$k0" alive)" == OK ]]

    hz=$(getconf CLK_TCK)
    t0=$(cpu_ticks "$SP_PID")
    n0=$(grep -c "127.0.0.1:$dead.*connect" "$SP_LOG" || true)
    sleep 3 # measurement window, idle
    t1=$(cpu_ticks "$SP_PID")
    n1=$(grep -c "127.0.0.1:$dead.*connect" "$SP_LOG" || true)
    echo "proxy CPU over 3 s: $((t1 - t0)) ticks at $hz Hz; connect attempts logged: $((n1 - n0))"
    ((t1 - t0 < hz / 2))
    ((n1 - n0 < 30))
    timed_rcli get "$kd"
    [[ "$OUT" == "ERR backend 127.0.0.1:$dead unavailable" ]]
    ((MS < 300))
    [[ "$(rcli get "$k0")" == alive ]]
}

@test "a backend that accepts and at once closes every connection: no reconnect busy loop" {
    # What a Redis at maxclients does (or a load balancer with nothing behind it).
    fake_start slam
    fake_config "timeout 2000"
    start_proxy
    # The fake closes its listener after 500 connections, which ends a busy
    # loop; so count connections from the start (a 100 ms backoff doubling
    # to 5 s makes about 6 in 3 s) and measure CPU over the first 3 s.
    local hz t0 t1 n
    t0=$(cpu_ticks "$SP_PID")
    wait_until fake_log_has "accept 1"
    hz=$(getconf CLK_TCK)
    sleep 3 # measurement window
    t1=$(cpu_ticks "$SP_PID")
    n=$(grep -c '^accept' "$FAKE_LOG" || true)
    echo "proxy CPU over 3 s: $((t1 - t0)) ticks at $hz Hz; connections made: $n"
    fake_log_has cap && echo "(the fake hit its cap of 500 connections)"
    timed_rcli get foo
    [[ "$OUT" == "ERR backend fake "* ]]
    ((MS < 300))
    ((n < 50))
    ((t1 - t0 < hz / 2))
}

@test "a slow script: only requests that waited past timeout fail, as timed out, never unavailable; served again at once" {
    start_redis 2
    write_config "timeout 300"
    start_proxy
    local k0 k1 out i script
    k0=$(key_on 0 slow) k1=$(key_on 1 slow)
    [[ "$(rcli set "$k0" v0)" == OK ]]
    out="$(sp_tmpdir)"
    # 1.5 s of Lua on backend 0 (below lua-time-limit: Redis answers nobody meanwhile)
    rcli eval "local t = redis.call('TIME') local s = t[1] * 1000000 + t[2]
        repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - s > 1500000 return 1" \
        1 "$k0" >"$out/script" 2>&1 &
    script=$!
    SP_EXTRA_PIDS+=("$script")
    wait_until inflight_is 0 1
    # a GET of backend 0 every 25 ms for ~2.5 s, each on its own connection, so
    # some arrive just after each timeout; backend 1 answers all along
    for ((i = 0; i < 100; i++)); do
        (rcli get "$k0" >"$out/get.$i" 2>&1 &)
        sleep 0.025
    done
    [[ "$(rcli get "$k1")" == "" ]]
    wait "$script" || true
    for ((i = 0; i < 100; i++)); do
        wait_until test -s "$out/get.$i"
        cat "$out/get.$i" >>"$out/gets"
    done
    cat "$out/script" "$out/gets"
    grep -q "timed out" "$out/gets"     # those behind the script waited past timeout
    [[ "$(grep -c unavailable "$out/gets")" == 0 ]] # but the backend was never declared down
    [[ "$(tail -n 1 "$out/gets")" == v0 ]] # the last ones, well after the script
    # and once the script is over every GET is answered (a new connection at once)
    [[ "$(grep -c '^v0$' "$out/gets")" -ge 5 ]]
}

@test "output limits: a reading client gets a 100 MiB value and 100 pipelined 1 MiB values with the defaults" {
    start_redis 1
    write_config
    start_proxy
    head -c $((100 << 20)) /dev/zero | tr '\0' v | rcli -x set huge >/dev/null
    head -c $((1 << 20)) /dev/zero | tr '\0' m | rcli -x set mib >/dev/null
    run timeout 120 python3 - "$SP_PORT" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(60)
def reply_bytes(want):
    got = 0
    while got < want:
        d = s.recv(1 << 20)
        if not d:
            raise SystemExit("EOF after %d of %d bytes" % (got, want))
        got += len(d)
    return got
s.sendall(b"GET huge\r\n")
one = len(b"$%d\r\n" % (100 << 20)) + (100 << 20) + 2
print("huge", reply_bytes(one))
s.sendall(b"GET mib\r\n" * 100)
each = len(b"$%d\r\n" % (1 << 20)) + (1 << 20) + 2
print("pipelined", reply_bytes(100 * each))
s.sendall(b"PING\r\n")
print("after", s.recv(100))
PY
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"after b'+PONG\\r\\n'"* ]]
    ! grep -q 'output limit' "$SP_LOG" || false
}

@test "output limits: above client_output_soft_limit for client_output_soft_seconds without reading: cut; the others unaffected" {
    start_redis 1
    write_config "client_output_soft_limit 1mb" "client_output_soft_seconds 1"
    start_proxy
    local out bg
    head -c 102400 /dev/zero | tr '\0' x | rcli -x set big >/dev/null
    out="$(sp_tmpdir)/noread.out"
    SPTOOL noread "$SP_PORT" 200 big "$(sp_tmpdir)/go" </dev/null >"$out" 2>&1 3>&- &
    bg=$!
    SP_EXTRA_PIDS+=("$bg")
    wait_until grep -q 'exceed client_output_soft_limit for client_output_soft_seconds' "$SP_LOG"
    [[ "$(rcli get small)" == "" ]]
    touch "$(sp_tmpdir)/go"
    wait "$bg"
    cat "$out"
    [[ "$(cat "$out")" =~ ^bytes=([0-9]+)\ end=(EOF|RESET)$ ]]
    ((BASH_REMATCH[1] < 200 * 102400))
}

@test "SIGTERM under load: served through shutdown_grace, each client let go between requests: no RST, every request run was answered" {
    start_redis 2
    write_config "shutdown_grace 3000"
    start_proxy
    local pid=$SP_PID out
    out="$(sp_tmpdir)/drain"
    # 20 clients, each: 20 pipelined INCRs of its own key, all replies read,
    # then 30-80 ms quiet, watching the socket as an event-driven client does
    timeout 60 python3 - "$SP_PORT" "$out" <<'PY' &
import random, select, socket, sys, threading, time
port, out = int(sys.argv[1]), sys.argv[2]
res = []
def client(i):
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(10)
    key = b"drain:%d" % i
    got = errors = resets = 0
    how = "deadline"
    t_end = time.time() + 30
    while time.time() < t_end:
        # as an event loop would, an EOF that already arrived is seen before the next request
        r, _, _ = select.select([s], [], [], 0)
        if r and s.recv(1, socket.MSG_PEEK) == b"":
            how = "let go"
            break
        try:
            s.sendall(b"*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n" % (len(key), key) * 20)
            buf = b""
            while buf.count(b"\r\n") < 20:
                d = s.recv(65536)
                if not d:
                    errors += 1  # EOF with replies owed: an error the client sees
                    how = "eof mid-request"
                    break
                buf += d
            got += buf.count(b"\r\n")
            if how != "deadline":
                break
        except ConnectionResetError:
            resets += 1
            how = "reset"
            break
        r, _, _ = select.select([s], [], [], random.uniform(0.03, 0.08))
        if r:
            try:
                if s.recv(1) == b"":
                    how = "let go"  # EOF while quiet: it reconnects elsewhere
                    break
            except ConnectionResetError:
                resets += 1
                how = "reset"
                break
    s.close()
    res.append((i, got, errors, resets, how))
ts = [threading.Thread(target=client, args=(i,)) for i in range(20)]
for t in ts:
    t.start()
for t in ts:
    t.join()
with open(out, "w") as f:
    for r in sorted(res):
        f.write("%d %d %d %d %s\n" % r)
PY
    local load=$!
    SP_EXTRA_PIDS+=("$load")
    sleep 1
    kill -TERM "$pid"
    wait "$load"
    wait_exit "$pid" 10000
    SP_PID=
    ((EXIT_RC == 0))
    cat "$out"
    [ "$(wc -l <"$out")" -eq 20 ]
    # a request that crosses the proxy's FIN on the wire can only meet EOF (no
    # RESP server can avoid that race); on a loaded machine one of the 20 may
    # hit it: allowed once, never a reset, never a request run unanswered
    [ "$(grep -c ' let go$' "$out")" -ge 19 ]
    local i got errors resets how n
    while read -r i got errors resets how; do
        [[ "$how" == "let go" || "$how" == "eof mid-request" ]]
        [[ "$resets" == 0 ]]
        # every INCR that ran was answered: the backend's count is the client's
        n=$(rcli_backend_sum "drain:$i")
        [[ "$n" == "$got" ]] || { echo "client $i: ran $n, answered $got"; false; }
    done <"$out"
}

# rcli_backend_sum KEY: KEY's value on whichever backend has it.
rcli_backend_sum() {
    local i v
    for i in "${!REDIS_PORTS[@]}"; do
        v=$(bcli "$i" get "$1")
        [[ -n "$v" ]] && { echo "$v"; return; }
    done
    echo 0
}

@test "noisy neighbours: 4 clients pipelining 100 GETs of 1 MiB without reading cost an innocent client on the same backend no error" {
    start_redis 1
    write_config # the default timeout
    start_proxy
    local d i bg=()
    d="$(sp_tmpdir)"
    head -c $((1 << 20)) /dev/zero | tr '\0' h | rcli -x set heavy >/dev/null
    [[ "$(rcli set light l)" == OK ]]
    for i in 1 2 3 4; do
        SPTOOL noread "$SP_PORT" 100 heavy "$d/go" </dev/null >"$d/noread$i" 2>&1 3>&- &
        bg+=($!)
        SP_EXTRA_PIDS+=($!)
    done
    # the backend streams ~400 MB at the proxy meanwhile: busy, not silent
    for ((i = 0; i < 200; i++)); do
        rcli get light >>"$d/light" 2>&1
    done
    touch "$d/go"
    wait "${bg[@]}"
    sort "$d/light" | uniq -c
    [[ "$(grep -c '^l$' "$d/light")" == 200 ]]
}

@test "SIGTERM: a client quiet inside MULTI is not let go; its EXEC during shutdown_grace is answered" {
    start_redis 1
    write_config "shutdown_grace 3000"
    start_proxy
    local pid=$SP_PID
    timeout 30 python3 - "$SP_PORT" "$pid" <<'PY'
import os, signal, socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(10)
s.sendall(b"MULTI\r\nSET drainq v\r\n")
time.sleep(0.2)
print(s.recv(100))
os.kill(int(sys.argv[2]), signal.SIGTERM)
time.sleep(0.5)  # quiet for ten times DRAIN_IDLE_MS, in the grace
s.sendall(b"EXEC\r\n")
got = s.recv(100)
print(got)
sys.exit(0 if got == b"*1\r\n+OK\r\n" else 1)
PY
    [[ "$(bcli 0 get drainq)" == v ]]
    wait_exit "$pid" 10000
    SP_PID=
    ((EXIT_RC == 0))
}
