# test/helper.bash -- shared by every bats suite (`load helper`).
#
# Starts throw-away redis-servers and a shardproxy on free loopback ports in
# the test's own temp dir, polls for readiness instead of sleeping, and stops
# everything in teardown, even after a failure.
#
#   start_redis N        N more redis-servers: REDIS_PORTS[i], REDIS_PIDS[i]
#   write_config [LINE]  $SP_CONF: listen 127.0.0.1:$SP_PORT, one backend per
#                        redis in order, log_level debug, `workers $SP_WORKERS`
#                        when that is set (make test runs suites so), then each LINE
#   start_proxy [ARG]    $SP_BIN -c $SP_CONF [ARG...], log in $SP_LOG, PID in SP_PID
#                        (SP_WRAP: a command line prefixed to it, e.g. valgrind;
#                        SP_NOFILE: the fd limit, soft and hard, to start it with;
#                        a listen port taken meanwhile is replaced, SP_PORT too)
#   stop_proxy           SIGTERM, wait; returns the proxy's exit status
#   stop_all             stops the proxy, the redis-servers and SP_EXTRA_PIDS
#   rcli ARGS / bcli I ARGS   redis-cli against the proxy / backend I
#   wait_until CMD...    polls CMD until it succeeds (~10 s)
#   free_port            prints a free TCP port on 127.0.0.1
#   sp_tmpdir            prints the test's temp dir
#   redis_on PORT        one more redis-server on PORT (PID in STARTED_PID)
#   key_on I [PREFIX [CONF]]  a key (PREFIX0, PREFIX1, ...) that CONF ($SP_CONF)
#                        places on backend I
#   set_ok KEY VALUE / clients_are N   SET through the proxy answers OK / the
#                        proxy's INFO says connected_clients:N
#   cpu_ticks PID        utime + stime of PID, in clock ticks
#   resp ARG...          one command as a RESP array of bulk strings
#   resp_lines LINE...   each LINE (words split on blanks) as one command
#   raw N [--eof] [--timeout S]   test/resp_raw.py: stdin to the proxy, N
#                        replies printed escaped, one per line
#
# Every test has a time limit: BATS_TEST_TIMEOUT (seconds, default 300; bats
# 1.7+) fails a hung test instead of hanging the run (test/valgrind.sh raises
# it).  The Python helpers share one RESP client and the key hash:
# test/resp.py.
#
# Start processes with these functions directly, not through `run` (which is a
# subshell: the PIDs would be lost).  SP_BIN may be set from outside, e.g. to a
# sanitizer build; a proxy log with a sanitizer report fails the test.
# SP_WRAP may be set from outside too (test/valgrind.sh sets a valgrind
# command line): the proxy then runs under it, with the same PID (valgrind
# execs the program in place), and readiness and shutdown waits are longer.

# Loaded at file level, so it is set before any test starts (bats reads it
# when it starts a test); exported for bats versions that read it elsewhere.
: "${BATS_TEST_TIMEOUT:=300}"
export BATS_TEST_TIMEOUT

SP_ROOT="$(cd "$BATS_TEST_DIRNAME/.." && pwd)"
SP_BIN="${SP_BIN:-$SP_ROOT/shardproxy}"
REDIS_PORTS=()
REDIS_PIDS=()
SP_EXTRA_PIDS=() # other background processes a test wants reaped
SP_PID=

sp_tmpdir() {
    if [[ -n "${BATS_TEST_TMPDIR:-}" ]]; then
        echo "$BATS_TEST_TMPDIR"
    else # bats older than 1.4, or used outside a test
        : "${SP_TMPDIR:=$(mktemp -d "${BATS_TMPDIR:-/tmp}/sp.XXXXXX")}"
        echo "$SP_TMPDIR"
    fi
}

# Defaults that need the temp dir; called by the functions that use them.
_sp_defaults() {
    : "${SP_CONF:=$(sp_tmpdir)/shardproxy.conf}"
    : "${SP_LOG:=$(sp_tmpdir)/shardproxy.log}"
    : "${SP_PORT:=$(free_port)}"
}

# A port below the kernel's ephemeral range (so no outgoing connection can be
# holding it), with nothing listening on it now, never 6379/6380/7001-7003 (a
# system redis, `make demo`), and not handed out before in this test (the list
# lives in a file because callers use $(free_port), a subshell).
free_port() {
    local used port lo=32768 try
    used="$(sp_tmpdir)/.ports"
    read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || lo=32768
    ((lo > 12000)) || lo=32768
    for ((try = 0; try < 500; try++)); do
        port=$((10000 + (RANDOM * 32768 + RANDOM) % (lo - 10000)))
        case " 6379 6380 7001 7002 7003 " in *" $port "*) continue ;; esac
        grep -qx "$port" "$used" 2>/dev/null && continue
        # a listener accepts the connection; a free port refuses it at once
        (exec 9<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue
        echo "$port" >>"$used"
        echo "$port"
        return 0
    done
    echo "free_port: no free port found" >&2
    return 1
}

# True while PID runs (a zombie, exited but not yet reaped, does not count).
_sp_alive() {
    local stat
    kill -0 "$1" 2>/dev/null || return 1
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0 # no /proc: trust kill -0
    stat="${stat##*) }"
    [[ "${stat:0:1}" != Z ]]
}

# Poll CMD... every 50 ms until it succeeds; fail after WAIT_TIMEOUT (10) s.
wait_until() {
    local deadline=$((SECONDS + ${WAIT_TIMEOUT:-10}))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            echo "wait_until: timed out after ${WAIT_TIMEOUT:-10} s: $*" >&2
            return 1
        fi
        sleep 0.05
    done
}

# redis-cli with a time limit, so a hung proxy fails the test instead of the run.
_sp_cli() {
    timeout "${CLI_TIMEOUT:-10}" redis-cli "$@"
}

rcli() {
    _sp_defaults
    _sp_cli -h 127.0.0.1 -p "$SP_PORT" "$@"
}

bcli() {
    local i=$1
    shift
    _sp_cli -h 127.0.0.1 -p "${REDIS_PORTS[$i]}" "$@"
}

_sp_pong() {
    [[ "$(timeout 2 redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" == PONG ]]
}

# Start N redis-servers (default 1) on free ports; if one cannot bind (a port
# raced away), retry on another.
start_redis() {
    local n=${1:-1} i try port pid dir
    for ((i = 0; i < n; i++)); do
        for try in 1 2 3; do
            port=$(free_port) || return 1
            dir="$(sp_tmpdir)/redis-$port"
            mkdir -p "$dir"
            # fd 3 is bats' own: a background child holding it hangs the run.
            # DEBUG (e.g. DEBUG SLEEP for timeout tests) is allowed from loopback.
            redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
                --daemonize no --dir "$dir" --logfile "$dir/redis.log" \
                --pidfile "$dir/redis.pid" --enable-debug-command local \
                </dev/null >/dev/null 2>&1 3>&- &
            pid=$!
            if wait_until _sp_redis_up "$port" "$pid" 2>/dev/null && _sp_alive "$pid"; then
                REDIS_PORTS+=("$port")
                REDIS_PIDS+=("$pid")
                continue 2
            fi
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
            echo "start_redis: redis-server on port $port did not start (try $try):" >&2
            tail -n 5 "$dir/redis.log" >&2 2>/dev/null
        done
        return 1
    done
}

# Start one more redis-server on PORT (e.g. a port a killed one had); its
# PID goes to STARTED_PID.  Not added to REDIS_PIDS: the caller decides.
redis_on() {
    local port=$1 dir
    dir="$(sp_tmpdir)/redis-$port"
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no --dir "$dir" --logfile "$dir/redis.log" \
        --pidfile "$dir/redis.pid" </dev/null >/dev/null 2>&1 3>&- &
    STARTED_PID=$!
    wait_until _sp_redis_up "$port" "$STARTED_PID" && _sp_alive "$STARTED_PID"
}

# Up, or dead (then wait_until stops early and the caller sees it dead).
_sp_redis_up() {
    _sp_pong "$1" || ! _sp_alive "$2"
}

write_config() {
    _sp_defaults
    local port line
    {
        echo "listen 127.0.0.1:$SP_PORT"
        for port in "${REDIS_PORTS[@]}"; do
            echo "backend 127.0.0.1:$port"
        done
        echo "log_level debug"
        [[ -z "${SP_WORKERS:-}" ]] || echo "workers $SP_WORKERS"
        for line in "$@"; do
            echo "$line"
        done
    } >"$SP_CONF"
}

# key_for ID [PREFIX [CONF]]: the first of PREFIX0 ... PREFIX299 (PREFIX
# defaults to "key") that the proxy's own --route, under CONF (default
# $SP_CONF), puts on the backend with identity or address ID.
key_for() {
    local want=$1 prefix=${2:-key} conf=${3:-$SP_CONF} args=() i k
    for ((i = 0; i < 300; i++)); do args+=(--route "$prefix$i"); done
    k="$("$SP_BIN" -c "$conf" "${args[@]}" |
        awk -v w="$want" -v p="$prefix" '$1 == w || $2 == w { print p (NR - 1); exit }')"
    [[ -n "$k" ]] || { echo "key_for: no key for $want under $conf" >&2; return 1; }
    echo "$k"
}

# key_on I [PREFIX [CONF]]: the same for redis I (backend 127.0.0.1:PORT).
key_on() {
    key_for "127.0.0.1:${REDIS_PORTS[$1]}" "${2:-key}" "${3:-$SP_CONF}"
}

# dbsize_sum: the sum of the backends' DBSIZE.
dbsize_sum() {
    local i n sum=0
    for i in "${!REDIS_PORTS[@]}"; do
        n=$(bcli "$i" dbsize) || return 1
        sum=$((sum + n))
    done
    echo "$sum"
}

set_ok() {
    [[ "$(rcli set "$1" "$2" 2>&1)" == OK ]]
}

clients_are() {
    [[ "$(rcli info clients | tr -d '\r' | grep connected_clients)" == "connected_clients:$1" ]]
}

# utime + stime of PID, in clock ticks.
cpu_ticks() {
    local stat f
    stat="$(cat "/proc/$1/stat")"
    read -ra f <<<"${stat##*) }"
    echo $((f[11] + f[12]))
}

# resp ARG...: the RESP array of bulk strings for one command.
resp() {
    local LC_ALL=C a
    printf '*%d\r\n' "$#"
    for a in "$@"; do
        printf '$%d\r\n%s\r\n' "${#a}" "$a"
    done
}

# resp_lines LINE...: each LINE, its words split on blanks, as one command.
resp_lines() {
    local cmd words
    for cmd in "$@"; do
        read -r -a words <<<"$cmd"
        resp "${words[@]}"
    done
}

# raw N [--eof] [--timeout S] < bytes: send stdin to the proxy, print N replies.
raw() {
    timeout 60 python3 "$BATS_TEST_DIRNAME/resp_raw.py" "$SP_PORT" "$@"
}

_sp_proxy_up() {
    _sp_pong "$SP_PORT" || ! _sp_alive "$SP_PID"
}

# Seconds to wait for the proxy to come up or to exit: longer under SP_WRAP
# (valgrind takes seconds to start and to check for leaks at exit).
_sp_proxy_wait() {
    if [[ -n "${SP_WRAP:-}" ]]; then
        echo "${SP_WRAP_WAIT:-60}"
    else
        echo "${WAIT_TIMEOUT:-10}"
    fi
}

# Start the proxy (writing a default config first if there is none) and wait
# until it answers PING; on failure print its log and return 1.  SP_WRAP
# (words) is prefixed to the command; SP_NOFILE sets its descriptor limit
# (soft and hard, so the proxy cannot raise it) in the subshell that execs it.
start_proxy() {
    _sp_defaults
    [[ -f "$SP_CONF" ]] || write_config
    local wrap=() wait_s try port
    read -ra wrap <<<"${SP_WRAP:-}"
    wait_s=$(_sp_proxy_wait)
    for try in 1 2 3; do
        if [[ -n "${SP_NOFILE:-}" ]]; then
            (ulimit -n "$SP_NOFILE" && exec "${wrap[@]}" "$SP_BIN" -c "$SP_CONF" "$@") \
                </dev/null >>"$SP_LOG" 2>&1 3>&- &
        else
            "${wrap[@]}" "$SP_BIN" -c "$SP_CONF" "$@" </dev/null >>"$SP_LOG" 2>&1 3>&- &
        fi
        SP_PID=$!
        if WAIT_TIMEOUT=$wait_s wait_until _sp_proxy_up 2>/dev/null && _sp_alive "$SP_PID"; then
            return 0
        fi
        # something bound the port between free_port and the proxy's bind (as
        # start_redis, try another): only for the listen line write_config wrote
        _sp_alive "$SP_PID" && break
        ((try < 3)) && grep -q "^listen 127.0.0.1:$SP_PORT\$" "$SP_CONF" &&
            grep -q "listen 127.0.0.1:$SP_PORT: bind: Address already in use" "$SP_LOG" || break
        wait "$SP_PID" 2>/dev/null || true
        port=$(free_port) || break
        echo "start_proxy: port $SP_PORT was taken; trying $port" >>"$SP_LOG"
        sed -i "s/^listen 127.0.0.1:$SP_PORT\$/listen 127.0.0.1:$port/" "$SP_CONF"
        SP_PORT=$port
    done
    if _sp_alive "$SP_PID"; then
        echo "start_proxy: no PONG on port $SP_PORT within $wait_s s; log:" >&2
    else
        local rc=0
        wait "$SP_PID" || rc=$?
        echo "start_proxy: $SP_BIN exited with status $rc; log:" >&2
        SP_PID=
    fi
    cat "$SP_LOG" >&2
    return 1
}

# Stop PID with SIGTERM (SIGKILL after ~10 s, or SECONDS); its exit status goes
# to _SP_RC (not printed: $(...) is a subshell, which cannot wait for our child).
_sp_stop() {
    local pid=$1 i limit=$((${2:-10} * 20))
    _SP_RC=0
    kill -TERM "$pid" 2>/dev/null || true # may be gone already
    for ((i = 0; i < limit; i++)); do
        _sp_alive "$pid" || break
        sleep 0.05
    done
    if _sp_alive "$pid"; then
        echo "process $pid ignored SIGTERM for $((limit / 20)) s; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || _SP_RC=$?
    [[ $_SP_RC -eq 127 ]] && _SP_RC=0 # not our child: status unknown
    return 0
}

# SIGTERM the proxy, wait for it to exit, return its exit status (under bats'
# errexit, check a non-zero one with `stop_proxy || rc=$?`; not via `run`).
stop_proxy() {
    _SP_RC=0
    if [[ -n "$SP_PID" ]]; then
        _sp_stop "$SP_PID" "$([[ -n "${SP_WRAP:-}" ]] && echo "${SP_WRAP_WAIT:-60}" || echo 10)"
        SP_PID=
    fi
    return "$_SP_RC"
}

# Teardown: stop everything this test started, whatever state it is in
# (stopped processes are continued first).
# Fails (showing the log) when the proxy log holds a sanitizer report, or
# when SP_WRAP_LOG (a valgrind --log-file pattern with %p) names a log of
# the proxy that reports errors or definite leaks.
stop_all() {
    local pid status=0 proxy_pid=$SP_PID vglog
    # a test may leave processes SIGSTOPped: they could not act on SIGTERM
    for pid in "${REDIS_PIDS[@]}" "${SP_EXTRA_PIDS[@]}" $SP_PID; do
        kill -CONT "$pid" 2>/dev/null || true
    done
    stop_proxy >/dev/null 2>&1 || true
    if [[ -n "${SP_WRAP_LOG:-}" && -n "$proxy_pid" ]]; then
        vglog=${SP_WRAP_LOG//%p/$proxy_pid}
        if [[ -f "$vglog" ]] && grep -qE 'ERROR SUMMARY: [1-9]|definitely lost: [1-9]' "$vglog"; then
            echo "valgrind report in $vglog:" >&2
            cat "$vglog" >&2
            status=1
        fi
    fi
    for pid in "${SP_EXTRA_PIDS[@]}" "${REDIS_PIDS[@]}"; do
        _sp_stop "$pid" >/dev/null 2>&1
    done
    REDIS_PIDS=()
    REDIS_PORTS=()
    SP_EXTRA_PIDS=()
    if [[ -n "${SP_LOG:-}" && -f "$SP_LOG" ]]; then
        if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$SP_LOG"; then
            echo "sanitizer report in $SP_LOG:" >&2
            cat "$SP_LOG" >&2
            status=1
        elif [[ -z "${BATS_TEST_COMPLETED:-}" ]]; then
            echo "--- last lines of the proxy log ($SP_LOG):" >&2
            tail -n 30 "$SP_LOG" >&2
        fi
    fi
    return "$status"
}

teardown() {
    stop_all
}
