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

# Python side of the tests: fake backends and clients that need raw sockets.
setup_file() {
    # robust.py (next to this file) provides enc() and the RESP Reader
    printf 'import sys\nsys.path.insert(0, "%s")\n' "$BATS_TEST_DIRNAME" >"$BATS_FILE_TMPDIR/sptool.py"
    cat >>"$BATS_FILE_TMPDIR/sptool.py" <<'EOF'
import os, socket, sys, threading, time
from robust import Reader, enc

def connect(port, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s

def call(s, r, *args):
    s.sendall(enc(*args))
    return r.reply()

def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)

def wait_file(path, limit=30):
    deadline = time.time() + limit
    while not os.path.exists(path):
        if time.time() > deadline:
            fail("no %s within %d s" % (path, limit))
        time.sleep(0.02)

# --- fake backend -----------------------------------------------------------

def parse_reqs(buf):
    """Complete RESP (or inline) requests in buf, and the rest."""
    cmds, pos = [], 0
    while pos < len(buf):
        e = buf.find(b"\r\n", pos)
        if e < 0:
            break
        if buf[pos:pos + 1] != b"*":
            cmds.append(buf[pos:e].split())
            pos = e + 2
            continue
        n, p, args = int(buf[pos + 1:e]), e + 2, []
        for _ in range(n):
            e = buf.find(b"\r\n", p)
            if e < 0:
                break
            ln = int(buf[p + 1:e])
            if len(buf) < e + 2 + ln + 2:
                break
            args.append(buf[e + 2:e + 2 + ln])
            p = e + 2 + ln + 2
        if len(args) < n:
            break
        cmds.append(args)
        pos = p
    return cmds, buf[pos:]

def normal_reply(cmd):
    name = cmd[0].lower() if cmd else b""
    if name == b"ping":
        return b"+PONG\r\n"
    if name == b"get":
        return b"$4\r\nfake\r\n"
    return b"+OK\r\n"

def fake(port, mode, logpath, readypath):
    """A one-backend fake Redis.  Connection 1 misbehaves per MODE, later
    connections answer normally, except in modes silent (never answers) and
    slam (every connection gets an error and is closed at once; after 500
    connections the listener closes, to bound the damage of a busy loop)."""
    lock = threading.Lock()
    logf = open(logpath, "a", buffering=1)
    def log(msg):
        with lock:
            logf.write(msg + "\n")
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    if mode == "hang":
        # never accept, and fill the accept queue: further connects hang
        # (their SYNs are dropped), as with a host that does not answer
        import select
        ls.listen(0)
        held = []
        for i in range(20):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", port))
            held.append(c)
            _, w, _ = select.select([], [c], [], 0.3)
            if not w:
                break
        else:
            fail("could not fill the accept queue")
        log("hanging after %d" % (len(held) - 1))
        open(readypath, "w").close()
        time.sleep(3600)
    ls.listen(128)
    open(readypath, "w").close()

    def serve(s, n):
        buf = b""
        if mode == "unsolicited" and n == 1:
            s.sendall(b"+OK\r\n")
            log("unsolicited %d" % n)
        while True:
            try:
                d = s.recv(65536)
            except OSError:
                d = b""
            if not d:
                log("closed %d" % n)
                s.close()
                return
            buf += d
            cmds, buf = parse_reqs(buf)
            for c in cmds:
                log("req %d %s" % (n, b" ".join(c).decode(errors="replace")))
                if mode == "silent":
                    continue
                if mode == "partial" and n == 1:
                    s.sendall(b"$10\r\nabc")
                    log("partial %d" % n)
                    s.close()
                    log("closed %d" % n)
                    return
                if mode == "garbage" and n == 1:
                    s.sendall(b"?garbage\r\n")
                    log("garbage %d" % n)
                    continue
                s.sendall(normal_reply(c))

    n = 0
    while True:
        s, _ = ls.accept()
        n += 1
        log("accept %d" % n)
        if mode == "slam":
            try:
                s.sendall(b"-ERR max number of clients reached\r\n")
            except OSError:
                pass
            s.close()
            if n >= 500:
                log("cap")
                ls.close()
                time.sleep(3600)
            continue
        threading.Thread(target=serve, args=(s, n), daemon=True).start()

# --- clients ----------------------------------------------------------------

def hold(port, readypath):
    """Connect, PING, then wait for the proxy to close the connection."""
    s = connect(port, timeout=20)
    r = Reader(s)
    if call(s, r, "PING") != b"+PONG":
        fail("no PONG")
    open(readypath, "w").close()
    try:
        d = s.recv(100)
    except OSError as e:
        print("ERROR %s" % e)
        return
    print("EOF" if d == b"" else "DATA %r" % d)

def rstclose(port, gopath, args):
    """Send one request, wait for GOPATH, then close with a reset (the
    proxy sees the connection gone at once, not a half-close)."""
    import struct
    s = connect(port)
    req, cur = b"", []
    for a in args + ["--"]:  # "--" separates pipelined commands
        if a == "--":
            req += enc(*cur)
            cur = []
        else:
            cur.append(a)
    s.sendall(req)
    wait_file(gopath, 30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    print("reset")

def maxclients(port, limit):
    conns = []
    for i in range(limit):
        s = connect(port)
        r = Reader(s)
        rep = call(s, r, "PING")
        if rep != b"+PONG":
            fail("connection %d of %d: PING got %r" % (i + 1, limit, rep))
        conns.append((s, r))
    extra = connect(port)
    extra.settimeout(5)
    got = b""
    try:
        while True:
            d = extra.recv(4096)
            if not d:
                break
            got += d
    except socket.timeout:
        fail("connection %d: not closed within 5 s (got %r)" % (limit + 1, got))
    except ConnectionResetError:
        pass
    if got != b"-ERR max number of clients reached\r\n":
        fail("connection %d got %r" % (limit + 1, got))
    print("rejected: %s" % got.decode().strip())
    for i, (s, r) in enumerate(conns):
        rep = call(s, r, "ECHO", "still-%d" % i)
        if rep != b"still-%d" % i:
            fail("connection %d after the rejection: %r" % (i + 1, rep))
    print("first %d still work" % limit)
    # a freed place is given to the next client
    conns[0][0].close()
    deadline = time.time() + 5
    while True:
        s = connect(port)
        s.sendall(enc("PING"))
        try:
            rep = Reader(s).reply()
        except EOFError:
            rep = None
        s.close()
        if rep == b"+PONG":
            break
        if time.time() > deadline:
            fail("no connection accepted after one of %d closed: %r" % (limit, rep))
        time.sleep(0.05)
    print("a closed place is reused")

def noread(port, n, key, gopath):
    """Pipeline N GETs of KEY without reading; after GOPATH appears read
    everything and report how it ended."""
    s = connect(port, timeout=10)
    s.sendall(enc("GET", key) * n)
    wait_file(gopath, 60)
    total, end = 0, "TIMEOUT"
    try:
        while True:
            d = s.recv(1 << 20)
            if not d:
                end = "EOF"
                break
            total += len(d)
    except ConnectionResetError:
        end = "RESET"
    except socket.timeout:
        pass
    print("bytes=%d end=%s" % (total, end))

def pipeline(port, n):
    """SET then GET N keys in one pipeline each; every reply in order."""
    s = connect(port, timeout=20)
    r = Reader(s)
    val = lambda i: ("value-%d-" % i) + "v" * (i % 97)
    sets = b"".join(enc("SET", "pipe:%d" % i, val(i)) for i in range(n))
    gets = b"".join(enc("GET", "pipe:%d" % i) for i in range(n))
    t = threading.Thread(target=s.sendall, args=(sets + gets,), daemon=True)
    t.start()
    for i in range(n):
        rep = r.reply()
        if rep != b"+OK":
            fail("SET reply %d: %r" % (i, rep))
    for i in range(n):
        rep = r.reply()
        if rep != val(i).encode():
            fail("GET reply %d: %r, want %r" % (i, rep, val(i)))
    t.join(5)
    print("ok %d" % (2 * n))

if __name__ == "__main__":
    cmd, a = sys.argv[1], sys.argv[2:]
    if cmd == "fake":
        fake(int(a[0]), a[1], a[2], a[3])
    elif cmd == "hold":
        hold(int(a[0]), a[1])
    elif cmd == "rstclose":
        rstclose(int(a[0]), a[1], a[2:])
    elif cmd == "maxclients":
        maxclients(int(a[0]), int(a[1]))
    elif cmd == "noread":
        noread(int(a[0]), int(a[1]), a[2], a[3])
    elif cmd == "pipeline":
        pipeline(int(a[0]), int(a[1]))
    else:
        fail("unknown command " + cmd)
EOF
}

SPTOOL() {
    python3 "$BATS_FILE_TMPDIR/sptool.py" "$@"
}

# Stopped processes cannot act on SIGTERM: wake everything first.
teardown() {
    local pid
    for pid in "${REDIS_PIDS[@]}" "${SP_EXTRA_PIDS[@]}" $SP_PID; do
        kill -CONT "$pid" 2>/dev/null || true
    done
    stop_all
}

# Start a redis-server on PORT (nothing else may listen there); its PID goes
# to STARTED_PID.  The caller records it in REDIS_PIDS so teardown stops it.
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

# Kill redis I with SIGKILL and reap it.
kill_redis() {
    kill -KILL "${REDIS_PIDS[$1]}"
    wait "${REDIS_PIDS[$1]}" 2>/dev/null || true
}

# key_for ID [PREFIX]: the first key PREFIX0, PREFIX1, ... that the proxy's
# own --route puts on the backend with identity or address ID.
key_for() {
    local want=$1 prefix=${2:-key} args=() i k
    for ((i = 0; i < 300; i++)); do args+=(--route "$prefix$i"); done
    k="$("$SP_BIN" -c "$SP_CONF" "${args[@]}" |
        awk -v w="$want" -v p="$prefix" '$1 == w || $2 == w { print p (NR - 1); exit }')"
    [[ -n "$k" ]] || { echo "key_for: no key for $want" >&2; return 1; }
    echo "$k"
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

# SET KEY VALUE through the proxy succeeds.
set_ok() {
    [[ "$(rcli set "$1" "$2" 2>&1)" == OK ]]
}

# The proxy reports N connected clients (the asking one included).
clients_are() {
    [[ "$(rcli info clients | tr -d '\r' | grep connected_clients)" == "connected_clients:$1" ]]
}

# In-flight requests the proxy reports for backend index I (INFO backends).
inflight_is() {
    local line
    line="$(rcli info backends | tr -d '\r' | grep "^backend$1:")" || return 1
    [[ "${line##*inflight=}" == "$2" ]]
}

# utime+stime of PID in clock ticks.
cpu_ticks() {
    local stat f
    stat="$(cat "/proc/$1/stat")"
    read -ra f <<<"${stat##*) }"
    echo $((f[11] + f[12]))
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
    wait "$bg" || true
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
    wait "$bg" || true
    cat "$res"
    [[ "$(cat "$res")" == B ]]
    [[ "$(rcli get "$first")" == A ]]
    [[ "$(rcli mget "$second" "$other" "$first")" == B$'\n'C$'\n'A ]]
    wait_until inflight_is 0 0
}

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

    wait "$bg" || true
    cat "$res"
    [[ "$(cat "$res")" == OK ]]
    wait_exit "$pid" 3000
    SP_PID=
    echo "exit status $EXIT_RC"
    ((EXIT_RC == 0))
    [[ "$(bcli 0 get slowkey)" == slowvalue ]]
}

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

@test "client_max_pending 10: 1000 pipelined requests get 1000 replies in order" {
    start_redis 3
    write_config "client_max_pending 10"
    start_proxy
    run SPTOOL pipeline "$SP_PORT" 1000
    echo "$output"
    ((status == 0))
    [[ "$output" == "ok 2000" ]]
}

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
    run grep "^req 1 " "$FAKE_LOG"
    ((status != 0)) # nothing was asked on the first connection
}

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
