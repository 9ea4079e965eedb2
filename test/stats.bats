#!/usr/bin/env bats
#
# stats.bats -- the proxy's statistics and its admin socket, end to end.
#
# Every test starts three throw-away redis-servers and a proxy with an
# `admin $BATS_TEST_TMPDIR/admin.sock` line (test/helper.bash); teardown stops
# them all, even after a failure.  Covered: exact counter deltas for a known
# request mix (`stats json`), the JSON report's fields and string escaping,
# the Prometheus exposition format (`metrics`), the SIGUSR1 report under load,
# an interactive admin session and the socket file's life cycle, many admin
# clients and an admin client that never reads its replies, INFO, the
# `clients` / `route` admin commands, and three edge cases: keys starting with
# '#' in `route`, client names from HELLO SETNAME in `clients`, and a latency
# sample equal to a histogram bucket bound (Prometheus `le` is "<=").
#
# The admin socket is driven with socat (as the README shows) and with python3
# (test/stats_tool.py) where a test needs to hold a connection or count bytes.
# No timing is asserted except a loose floor (20% of a baseline) on
# redis-benchmark throughput while an admin client misbehaves.
#
# Needs redis-server/redis-cli/redis-benchmark 7.x, socat and python3.

load helper

# ------------------------------------------------------------------ helpers

setup() {
    ADMIN_SOCK="$BATS_TEST_TMPDIR/admin.sock"
    start_redis 3
}

# The default setup: helper's config plus the admin socket, proxy started,
# every backend connected.
start_default() {
    write_config "admin $ADMIN_SOCK" "$@"
    start_proxy
    wait_until all_up
}

# Backend names with a quote and backslashes, weights 1/2/1, a small table.
NAME0='we"ird\name'
NAME1='back\\slash"q"'
write_named_config() {
    _sp_defaults
    {
        echo "listen 127.0.0.1:$SP_PORT"
        printf 'backend 127.0.0.1:%s name=%s\n' "${REDIS_PORTS[0]}" "$NAME0"
        printf 'backend 127.0.0.1:%s weight=2 name=%s\n' "${REDIS_PORTS[1]}" "$NAME1"
        printf 'backend 127.0.0.1:%s\n' "${REDIS_PORTS[2]}"
        echo "table_size 1009"
        echo "log_level debug"
        echo "admin $ADMIN_SOCK"
    } >"$SP_CONF"
}

# admin CMD...: each CMD as one line on one admin connection; prints the
# replies (the proxy answers everything, then closes on our EOF).
admin() {
    printf '%s\n' "$@" | timeout 30 socat -t 20 - "UNIX-CONNECT:$ADMIN_SOCK"
}

# Every backend reported "state up" by the admin `backends` command.
all_up() {
    local out
    out="$(admin backends 2>/dev/null)" || return 1
    [[ "$(grep -c ' state up ' <<<"$out")" -eq ${#REDIS_PORTS[@]} ]]
}

# py CHECK ARG...: test/stats_tool.py's CHECK with the test's ports.
py() {
    SP_PORT="$SP_PORT" ADMIN_SOCK="$ADMIN_SOCK" REDIS_PORTS="${REDIS_PORTS[*]}" \
        SP_PID="$SP_PID" NAME0="$NAME0" NAME1="$NAME1" \
        timeout 120 python3 "$BATS_TEST_DIRNAME/stats_tool.py" "$@"
}

# bench OUTFILE [ARGS...]: redis-benchmark against the proxy in the
# background (PID in BENCH_PID, reaped by teardown if the test fails).
bench() {
    local out=$1
    shift
    timeout 120 redis-benchmark -h 127.0.0.1 -p "$SP_PORT" -n 20000 -c 20 -t get,set -q "$@" \
        </dev/null >"$out" 2>&1 3>&- &
    BENCH_PID=$!
    SP_EXTRA_PIDS+=("$BENCH_PID")
}

# bench_ok OUTFILE: the run printed both summaries and no error line.
bench_ok() {
    local out=$1
    if grep -qi 'error' "$out" || ! grep -q 'SET: [0-9.]* requests per second' "$out" ||
        ! grep -q 'GET: [0-9.]* requests per second' "$out"; then
        echo "redis-benchmark output:" >&2
        tr '\r' '\n' <"$out" | grep -v 'rps=' >&2
        return 1
    fi
}

# bench_rps OUTFILE: requests per second, SET + GET.
bench_rps() {
    grep -o '[A-Z]*: [0-9.]* requests per second' "$1" |
        awk '{ s += $2 } END { printf "%d\n", s }'
}

# route_file OUT KEY...: `shardproxy --route` for each KEY, one line per key.
route_file() {
    local out=$1 k args=()
    shift
    for k in "$@"; do
        args+=(--route "$k")
    done
    "$SP_BIN" -c "$SP_CONF" "${args[@]}" >"$out"
}

# Count of SIGUSR1 report headers in the proxy log.
report_count() {
    grep -c "^shardproxy [^ ]* pid $SP_PID uptime [0-9]*s\$" "$SP_LOG" || true
}

# --------------------------------------------------------------------- tests

@test "stats json: counters move by exactly the commands sent" {
    start_default
    local keys=() i
    for ((i = 0; i < 300; i++)); do
        keys+=("stat:$i")
    done
    route_file "$BATS_TEST_TMPDIR/routes" "${keys[@]}"
    py counters "$BATS_TEST_TMPDIR/routes"
}

@test "stats json: parses, has every field, escapes names, slots sum to the table" {
    write_named_config
    start_proxy
    wait_until all_up
    rcli set foo bar >/dev/null
    rcli get foo >/dev/null
    rcli ping >/dev/null
    local version
    version="$("$SP_BIN" -V | awk '{ print $2 }')"
    py json_fields "$version"
}

@test "metrics: Prometheus text format, HELP/TYPE, _total, histograms, escaping" {
    write_named_config
    start_proxy
    wait_until all_up
    redis-benchmark -h 127.0.0.1 -p "$SP_PORT" -n 3000 -c 4 -t get,set,incr -q \
        </dev/null >"$BATS_TEST_TMPDIR/bench" 2>&1 3>&-
    rcli ping >/dev/null
    rcli keys '*' >/dev/null || : # one more command for the histograms; its reply does not matter
    py metrics
}

@test "SIGUSR1 writes the stats report to stderr while redis-benchmark runs cleanly" {
    start_default
    local out="$BATS_TEST_TMPDIR/bench" sent=0 rc=0
    bench "$out"
    while _sp_alive "$BENCH_PID" || ((sent < 3)); do
        kill -USR1 "$SP_PID"
        sent=$((sent + 1))
        sleep 0.1
    done
    wait "$BENCH_PID" || rc=$?
    [[ $rc -eq 0 ]] || { echo "redis-benchmark exited $rc" >&2; cat "$out" >&2; false; }
    bench_ok "$out"
    _sp_alive "$SP_PID"
    wait_until eval '(( $(report_count) >= 1 ))'
    local n
    n=$(report_count)
    echo "sent $sent SIGUSR1, saw $n reports" >&2
    ((n <= sent))
    # quiescent now (every benchmark client gone): one more report must equal the admin `stats` text
    # (uptime aside), and its lines must not be interleaved with others
    wait_until eval "admin 'stats json' | grep -q '\"current\":0,'"
    kill -USR1 "$SP_PID"
    wait_until eval '(( $(report_count) == n + 1 ))'
    admin stats >"$BATS_TEST_TMPDIR/admin.txt"
    local lines
    lines=$(wc -l <"$BATS_TEST_TMPDIR/admin.txt")
    ((lines > 10))
    awk -v pid="$SP_PID" '$1 == "shardproxy" && $3 == "pid" && $4 == pid { buf = "" ; on = 1 }
        on { buf = buf $0 "\n" } END { printf "%s", buf }' "$SP_LOG" |
        head -n "$lines" >"$BATS_TEST_TMPDIR/usr1.txt"
    sed -i -E 's/ uptime [0-9]+s$/ uptime Ns/' "$BATS_TEST_TMPDIR/admin.txt" "$BATS_TEST_TMPDIR/usr1.txt"
    diff "$BATS_TEST_TMPDIR/admin.txt" "$BATS_TEST_TMPDIR/usr1.txt"
    grep -q '^command get calls 20000 errors 0$' "$BATS_TEST_TMPDIR/admin.txt"
    grep -q '^command set calls 20000 errors 0$' "$BATS_TEST_TMPDIR/admin.txt"
}

@test "admin socket: interactive session, modes 0600/0660, removed on exit, stale file replaced" {
    start_default
    [[ "$(stat -c %a "$ADMIN_SOCK")" == 600 ]]
    [[ -S "$ADMIN_SOCK" ]]
    local route
    route="$("$SP_BIN" -c "$SP_CONF" --route foo)"
    # one connection, one command at a time, each reply read before the next
    py session "$route"
    # the same as a socat pipeline
    local out
    local nhelp
    nhelp=$(admin help | wc -l)
    out="$(admin help backends 'route foo' 'stats json' quit)"
    [[ "$(wc -l <<<"$out")" -eq $((nhelp + 5)) ]]
    [[ "$(sed -n "${nhelp}p" <<<"$out")" == "quit "* ]]
    [[ "$(sed -n "$((nhelp + 4))p" <<<"$out")" == "$route" ]]
    sed -n "$((nhelp + 5))p" <<<"$out" | python3 -c 'import json, sys; json.load(sys.stdin)'

    # a second proxy must not steal a socket in use
    local conf2="$BATS_TEST_TMPDIR/second.conf" rc=0
    printf 'listen 127.0.0.1:%s\nbackend 127.0.0.1:%s\nadmin %s\n' "$(free_port)" \
        "${REDIS_PORTS[0]}" "$ADMIN_SOCK" >"$conf2"
    timeout 10 "$SP_BIN" -c "$conf2" </dev/null >"$BATS_TEST_TMPDIR/second.log" 2>&1 3>&- || rc=$?
    ((rc != 0 && rc != 124)) || { cat "$BATS_TEST_TMPDIR/second.log" >&2; false; }
    [[ "$(admin backends | wc -l)" -eq 3 ]]

    # removed on SIGTERM
    stop_proxy
    [[ ! -e "$ADMIN_SOCK" ]]

    # admin_mode 0660
    write_config "admin $ADMIN_SOCK" "admin_mode 0660"
    start_proxy
    [[ "$(stat -c %a "$ADMIN_SOCK")" == 660 ]]
    admin help | grep -q '^quit '
    stop_proxy
    [[ ! -e "$ADMIN_SOCK" ]]

    # a stale socket file (its listener gone) is replaced at start
    python3 -c 'import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.close()' \
        "$ADMIN_SOCK"
    [[ -S "$ADMIN_SOCK" ]]
    start_proxy
    [[ "$(stat -c %a "$ADMIN_SOCK")" == 660 ]]
    [[ "$(admin backends | wc -l)" -eq 3 ]]
    stop_proxy
    [[ ! -e "$ADMIN_SOCK" ]]
}

@test "admin: 100 clients at once and a client that never reads leave the data path alone" {
    start_default
    local out="$BATS_TEST_TMPDIR/bench" rc=0
    # baseline
    bench "$BATS_TEST_TMPDIR/base"
    wait "$BENCH_PID" || rc=$?
    ((rc == 0))
    bench_ok "$BATS_TEST_TMPDIR/base"
    local base
    base=$(bench_rps "$BATS_TEST_TMPDIR/base")

    # 100 admin connections open together, each asks `stats json`, during a run
    bench "$out" -n 60000
    py many_admins
    wait "$BENCH_PID" || rc=$?
    ((rc == 0)) || { echo "redis-benchmark exited $rc" >&2; cat "$out" >&2; false; }
    bench_ok "$out"

    # an admin client that sends `stats` 10,000 times and never reads; first
    # some forty more commands, so that one `stats` reply is several KB and
    # unbounded buffering of 10,000 of them would show in the RSS
    py stats_lines
    local ready="$BATS_TEST_TMPDIR/hog.ready" rss0 size
    size=$(admin stats | wc -c)
    rss0=$(awk '/^VmRSS:/ { print $2 }' "/proc/$SP_PID/status")
    ADMIN_SOCK="$ADMIN_SOCK" python3 "$BATS_TEST_DIRNAME/stats_tool.py" hog "$ready" >"$BATS_TEST_TMPDIR/hog.log" 2>&1 3>&- &
    SP_EXTRA_PIDS+=("$!")
    WAIT_TIMEOUT=20 wait_until test -s "$ready"
    sleep 1 # let the proxy run into its output bound
    bench "$out"
    wait "$BENCH_PID" || rc=$?
    ((rc == 0)) || { echo "redis-benchmark exited $rc" >&2; cat "$out" >&2; false; }
    bench_ok "$out"
    local hog rss
    hog=$(bench_rps "$out")
    echo "baseline $base req/s, with a stuck admin client $hog req/s" >&2
    ((hog * 5 > base))
    # the admin socket still serves others
    admin 'stats json' | python3 -c 'import json, sys; json.load(sys.stdin)'
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$SP_PID/status")
    echo "proxy RSS ${rss0} kB before the stuck admin client, ${rss} kB after" \
        "(10,000 stats replies would be $((size * 10000 / 1024)) kB)" >&2
    ((rss < 100 * 1024))
    ((rss - rss0 < size * 10000 / 1024 / 2)) # far less than the replies asked for
}

@test "INFO: server, clients, stats, backends and keyspace sections" {
    start_default
    py info_keys
    local info sum=0 exp=0 i n
    info="$(rcli info | tr -d '\r')"
    echo "$info" >&2
    grep -qx '# Server' <<<"$info"
    grep -qx "shardproxy_version:$("$SP_BIN" -V | awk '{ print $2 }')" <<<"$info"
    grep -qE '^uptime_in_seconds:[0-9]+$' <<<"$info"
    grep -qx "process_id:$SP_PID" <<<"$info"
    grep -qx "tcp_port:$SP_PORT" <<<"$info"
    grep -qx '# Clients' <<<"$info"
    grep -qE '^connected_clients:[1-9][0-9]*$' <<<"$info"
    grep -qx '# Stats' <<<"$info"
    n=$(sed -n 's/^total_commands_processed://p' <<<"$info")
    ((n >= 232)) # 230 SETs, the readiness PING, this INFO
    grep -qx '# Backends' <<<"$info"
    for i in 0 1 2; do
        grep -qE "^backend$i:id=127\.0\.0\.1:${REDIS_PORTS[$i]},addr=127\.0\.0\.1:${REDIS_PORTS[$i]},(weight=1,)?state=up,slots=[0-9]+,connections=1,dedicated=0,inflight=[0-9]+$" <<<"$info"
    done
    grep -qx '# Keyspace' <<<"$info"
    # the keyspace is the sum over the backends
    for i in 0 1 2; do
        sum=$((sum + $(bcli "$i" dbsize)))
        n=$(bcli "$i" info keyspace | tr -d '\r' | sed -n 's/^db0:keys=[0-9]*,expires=\([0-9]*\),.*/\1/p')
        exp=$((exp + ${n:-0}))
    done
    ((sum == 230 && exp == 30))
    info="$(rcli info keyspace | tr -d '\r')"
    grep -qE "^db0:keys=$sum,expires=$exp,avg_ttl=[0-9]+$" <<<"$info"
    [[ "$(grep -c '^# ' <<<"$info")" -eq 1 ]]
    # INFO server: that section only
    info="$(rcli info server | tr -d '\r')"
    [[ "$(grep '^# ' <<<"$info")" == "# Server" ]]
    grep -qx "tcp_port:$SP_PORT" <<<"$info"
    ! grep -q '^db0:' <<<"$info" || false
}

@test "admin clients/route/unknown; the data port runs no admin command" {
    start_default "timeout 30000"
    local keys=() i
    for ((i = 0; i < 60; i++)); do
        keys+=("key:$i" "{user$i}.name" "a{}b$i" "x{y$i}z")
    done
    keys+=("{" "}{" "{}" "{a" "é" 'q"uote' 'back\slash')
    # admin route == --route, for every key, 50 keys a line
    route_file "$BATS_TEST_TMPDIR/cli.route" "${keys[@]}"
    local lines=()
    for ((i = 0; i < ${#keys[@]}; i += 50)); do
        lines+=("route ${keys[*]:i:50}")
    done
    admin "${lines[@]}" >"$BATS_TEST_TMPDIR/admin.route"
    diff "$BATS_TEST_TMPDIR/cli.route" "$BATS_TEST_TMPDIR/admin.route"
    # unknown admin commands
    [[ "$(admin nosuch)" == "ERR unknown admin command 'nosuch'" ]]
    [[ "$(admin 'frobnicate now')" == "ERR unknown admin command 'frobnicate'" ]]
    # the data port never runs admin commands
    local cmd out
    for cmd in stats metrics backends clients; do # (redis-cli answers `help` itself)
        out="$(rcli "$cmd" 2>&1)"
        [[ "$out" == "ERR unknown command '$cmd'"* ]] || { echo "$cmd -> $out" >&2; false; }
    done
    out="$(rcli stats json 2>&1)"
    [[ "$out" == "ERR unknown command 'stats'"* ]]
    # clients: a named idle client, then one with a request pending on a
    # stopped backend
    local slow
    slow="$("$SP_BIN" -c "$SP_CONF" --route pending:key | awk '{ print $2 }')"
    for i in 0 1 2; do
        [[ "$slow" == "127.0.0.1:${REDIS_PORTS[$i]}" ]] && slow=$i
    done
    [[ "$slow" == [012] ]]
    py clients "${REDIS_PIDS[$slow]}"
}

@test "admin route: a key starting with '#' is routed like --route" {
    start_default
    local key route
    for key in '#x' '#tag' 'a#b'; do
        route="$("$SP_BIN" -c "$SP_CONF" --route "$key")"
        out="$(admin "route $key")"
        [[ "$out" == "$route" ]] || {
            echo "admin 'route $key' -> '$out'; --route $key -> '$route'" >&2
            false
        }
    done
    route="$("$SP_BIN" -c "$SP_CONF" --route foo --route '#bar' --route baz)"
    out="$(admin 'route foo #bar baz')"
    [[ "$out" == "$route" ]] || {
        echo "admin 'route foo #bar baz' -> '$out'; --route -> '$route'" >&2
        false
    }
}

@test "clients: a name given with HELLO SETNAME cannot forge admin lines" {
    start_default
    py hello_setname
}

@test "metrics: a latency equal to a bucket bound counts in that bucket (le is <=)" {
    # Samples are whole microseconds and Prometheus buckets are "<= le".  A
    # command called once has one sample, which `stats json` reports exactly
    # as its max; when that is a power of two (a bucket bound), the bucket
    # with that le must hold it.  Fresh proxies until such a sample shows up.
    write_config "admin $ADMIN_SOCK"
    local trial rc
    for ((trial = 1; trial <= 15; trial++)); do
        start_proxy
        wait_until all_up
        rc=0
        py le_bound || rc=$?
        stop_proxy
        ((rc != 3)) || continue
        ((rc == 0))
        return 0
    done
    skip "no latency sample equal to a power of two in 15 tries"
}
