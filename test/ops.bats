#!/usr/bin/env bats
# Operations: hot reload (SIGHUP and the admin `reload`) under load, rejected
# and restart-only reloads, a removed backend's in-flight requests, client
# AUTH (passwords, rotation, HELLO, the unauthenticated limits), backend
# AUTH/user/db and the handshake failure path, and the build/install targets
# and command-line flags.
#
# Readiness is polled (wait_until, the log, the admin socket's replies), never
# slept for; the only sleeps are deliberate short pauses between reloads.

load helper

# ------------------------------------------------------------------ helpers

# A short directory for UNIX sockets (sun_path holds 107 bytes).
ops_sockdir() {
    if [[ -z "${OPS_SOCKDIR:-}" ]]; then
        local d
        d="$(sp_tmpdir)"
        if ((${#d} < 80)); then
            OPS_SOCKDIR="$d"
        else
            OPS_SOCKDIR="$(mktemp -d /tmp/spops.XXXXXX)"
            OPS_OWN_SOCKDIR=1
        fi
    fi
    echo "$OPS_SOCKDIR"
}

# stop_all also continues a backend a test left SIGSTOPped.
teardown() {
    local rc=0
    stop_all || rc=$?
    if [[ -n "${OPS_OWN_SOCKDIR:-}" ]]; then
        rm -rf "$OPS_SOCKDIR"
    fi
    return "$rc"
}

# One admin command; prints the reply.
admin_cmd() {
    printf '%s\n' "$1" | timeout 15 socat -t 10 - UNIX-CONNECT:"$ADMIN_SOCK"
}

# A config file PATH: listen on $SP_PORT, admin on $ADMIN_SOCK, log_level
# info, then each further argument as a line (backend lines included).
ops_config() {
    local path=$1 line
    shift
    {
        echo "listen 127.0.0.1:$SP_PORT"
        echo "admin $ADMIN_SOCK"
        echo "log_level info"
        for line in "$@"; do
            echo "$line"
        done
    } >"$path"
}

# Replace the live config (the proxy's -c path) atomically with FILE.
install_config() {
    cp "$1" "$SP_CONF.new"
    mv -f "$SP_CONF.new" "$SP_CONF"
}

backend_line() { # I [OPTIONS...]
    local i=$1
    shift
    echo "backend 127.0.0.1:${REDIS_PORTS[$i]}${*:+ $*}"
}

reload_count() {
    grep -c 'configuration reloaded from' "$SP_LOG" || true
}

log_count() { # PATTERN (grep -F)
    grep -cF -- "$1" "$SP_LOG" || true
}

reloads_at_least() {
    (($(reload_count) >= $1))
}

# The address --route gives for KEY under config file CONF.
route_addr() {
    local id addr slot
    read -r id addr slot < <("$SP_BIN" -c "$1" --route "$2") || return 1
    echo "$addr"
}

# Write KEY through the proxy and check that it landed on exactly the
# backend `--route` names under CONF.
check_route() {
    local conf=$1 key=$2 want i found=() got
    want="$(route_addr "$conf" "$key")" || return 1
    got="$(rcli SET "$key" "v-$key")"
    if [[ "$got" != OK ]]; then
        echo "SET $key through the proxy: $got" >&2
        return 1
    fi
    for i in "${!REDIS_PORTS[@]}"; do
        if [[ "$(bcli "$i" EXISTS "$key")" == 1 ]]; then
            found+=("127.0.0.1:${REDIS_PORTS[$i]}")
        fi
    done
    if [[ ${#found[@]} -ne 1 || "${found[0]}" != "$want" ]]; then
        echo "route mismatch for $key: --route -c $conf says $want; found on: ${found[*]:-none}" >&2
        return 1
    fi
}

# A field of one backend (by address) in `stats json`.
backend_json() { # ADDRESS FIELD
    admin_cmd "stats json" | python3 -c '
import json, sys
addr, field = sys.argv[1], sys.argv[2]
for b in json.load(sys.stdin)["backends"]:
    if b["address"] == addr:
        print(b[field])
        sys.exit(0)
sys.exit(1)' "$1" "$2"
}

backend_state_is() { # ADDRESS STATE
    [[ "$(backend_json "$1" state 2>/dev/null)" == "$2" ]]
}

connected_clients() { # I
    bcli "$1" INFO clients | tr -d '\r' | sed -n 's/^connected_clients://p'
}

connected_clients_is() { # I N
    [[ "$(connected_clients "$1")" == "$2" ]]
}

# Client ids of the proxy's connections on backend I (every client but the
# CLIENT LIST caller is the proxy's: the tests' other redis-cli have exited).
proxy_conn_ids() {
    bcli "$1" CLIENT LIST | tr -d '\r' | grep -v ' cmd=client' | sed -n 's/^id=\([0-9]*\) .*/\1/p' |
        sort -n | tr '\n' ' '
}

# ------------------------------------------------------------------ tests

# bats test_tags=valgrind
@test "reload under load: 100 reloads (SIGHUP and admin) alternating two backend sets, no error, no drop" {
    start_redis 4
    ADMIN_SOCK="$(ops_sockdir)/admin.sock"
    _sp_defaults
    local dir confA confB
    dir="$(sp_tmpdir)"
    confA="$dir/A.conf"
    confB="$dir/B.conf"
    ops_config "$confA" "timeout 5000" "$(backend_line 0)" "$(backend_line 1)" "$(backend_line 2)"
    ops_config "$confB" "timeout 5000" "$(backend_line 1 weight=2)" "$(backend_line 2)" \
        "$(backend_line 3)"
    install_config "$confA"
    start_proxy
    local pid=$SP_PID
    # the proxy's connections to backends 1 and 2, in both files: kept throughout
    wait_until eval '[[ -n "$(proxy_conn_ids 1)" && -n "$(proxy_conn_ids 2)" ]]'
    local ids1 ids2
    ids1="$(proxy_conn_ids 1)"
    ids2="$(proxy_conn_ids 2)"

    # the load's key space, each key marked stable when A and B agree on it
    local keys=() args=() c i
    for ((c = 0; c < 8; c++)); do
        for ((i = 0; i < 150; i++)); do
            keys+=("ld:$c:$i")
            args+=(--route "ld:$c:$i")
        done
    done
    "$SP_BIN" -c "$confA" "${args[@]}" | awk '{print $1}' >"$dir/routeA"
    "$SP_BIN" -c "$confB" "${args[@]}" | awk '{print $1}' >"$dir/routeB"
    printf '%s\n' "${keys[@]}" | paste -d' ' - "$dir/routeA" "$dir/routeB" |
        awk '{print $1, ($2 == $3 ? 1 : 0)}' >"$dir/keys"
    local nstable
    nstable=$(awk '$2 == 1' "$dir/keys" | wc -l)
    ((nstable > 100 && nstable < ${#keys[@]}))

    python3 "$BATS_TEST_DIRNAME/loadgen.py" "$SP_PORT" "$dir/keys" "$dir/stop" "$dir/load.json" \
        "$dir/ready" </dev/null >"$dir/load.out" 2>&1 3>&- &
    local lpid=$!
    SP_EXTRA_PIDS+=("$lpid")
    wait_until test -e "$dir/ready"

    local n conf reply checked=0 t0=$SECONDS
    for ((n = 1; n <= 100; n++)); do
        if ((n % 2)); then conf=$confB; else conf=$confA; fi
        install_config "$conf"
        if ((n % 4 < 2)); then
            kill -HUP "$SP_PID"
        else
            reply="$(admin_cmd reload)"
            if [[ "$reply" != "OK reloaded" ]]; then
                echo "reload $n: admin replied '$reply'" >&2
                false
            fi
        fi
        wait_until reloads_at_least "$n"
        # every reload: a new key lands where --route on the new file says
        check_route "$SP_CONF" "probe:$n:$RANDOM"
        checked=$((checked + 1))
        sleep 0.05
    done
    local secs=$((SECONDS - t0))
    touch "$dir/stop"
    wait_until test -e "$dir/load.json"
    wait "$lpid" || { echo "the load generator failed:"; cat "$dir/load.out"; return 1; }

    local requests errors wrong stale dropped timeouts
    read -r requests errors wrong stale dropped timeouts < <(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(d["requests"], d["errors"], d["wrong"], d["stale"], d["dropped"], d["timeouts"])
for s in d["samples"]:
    print(s, file=sys.stderr)' "$dir/load.json")
    echo "# reload under load: 100 reloads in ${secs}s, $checked route checks; requests=$requests errors=$errors wrong_values=$wrong rerouted_stale=$stale dropped=$dropped timeouts=$timeouts" >&3
    [[ "$(reload_count)" -eq 100 ]]
    [[ "$(log_count 'reload rejected')" -eq 0 ]]
    ((requests > 1000))
    [[ "$errors" -eq 0 && "$wrong" -eq 0 && "$dropped" -eq 0 && "$timeouts" -eq 0 ]]
    # a split batch can only happen at a reload: a handful at most
    ((stale <= 100))
    [[ "$SP_PID" == "$pid" ]]
    _sp_alive "$pid"
    [[ "$(admin_cmd 'stats json' | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')" == "$pid" ]]
    # the final config is A: backend 3 retired, backends 0..2 routed
    [[ "$(admin_cmd backends | wc -l)" -eq 3 ]]
    run admin_cmd backends
    [[ "$output" != *":${REDIS_PORTS[3]} "* ]]
    wait_until connected_clients_is 3 1
    # unchanged backends (1 only re-weighted) kept their connections
    [[ "$(proxy_conn_ids 1)" == "$ids1" && "$(proxy_conn_ids 2)" == "$ids2" ]]
}

@test "a rejected reload keeps the running config; a changed listen needs a restart" {
    start_redis 4
    ADMIN_SOCK="$(ops_sockdir)/admin.sock"
    _sp_defaults
    local dir confA bad1 bad2 moved reply n
    dir="$(sp_tmpdir)"
    confA="$dir/A.conf"
    ops_config "$confA" "$(backend_line 0)" "$(backend_line 1)" "$(backend_line 2)"
    install_config "$confA"
    start_proxy
    local pid=$SP_PID

    # a non-prime table_size after a different backend set: admin reload
    bad1="$dir/bad1.conf"
    ops_config "$bad1" "$(backend_line 1 weight=2)" "$(backend_line 2)" "$(backend_line 3)" \
        "table_size 65536"
    n=$(wc -l <"$bad1")
    install_config "$bad1"
    reply="$(admin_cmd reload)"
    echo "reply: $reply"
    [[ "$reply" == "ERR $SP_CONF:$n: table_size 65536 is not prime"* ]]
    wait_until grep -qF "reload rejected, configuration unchanged: $SP_CONF:$n: table_size 65536" "$SP_LOG"

    # an unknown directive: SIGHUP, then admin
    bad2="$dir/bad2.conf"
    ops_config "$bad2" "$(backend_line 3)" "no_such_directive yes" "$(backend_line 1)"
    install_config "$bad2"
    kill -HUP "$SP_PID"
    wait_until grep -qF "reload rejected, configuration unchanged: $SP_CONF:5: unknown directive 'no_such_directive'" "$SP_LOG"
    reply="$(admin_cmd reload)"
    [[ "$reply" == "ERR $SP_CONF:5: unknown directive 'no_such_directive'" ]]
    # a missing file
    rm -f "$SP_CONF"
    reply="$(admin_cmd reload)"
    [[ "$reply" == "ERR $SP_CONF: cannot open: No such file or directory" ]]
    [[ "$(reload_count)" -eq 0 ]]

    # still serving with A: new keys land where A's --route says; nothing on 3
    for ((n = 0; n < 15; n++)); do
        check_route "$confA" "after-bad:$n"
    done
    [[ "$(bcli 3 DBSIZE)" == 0 ]]
    [[ "$(admin_cmd backends | wc -l)" -eq 3 ]]
    [[ "$SP_PID" == "$pid" ]]
    _sp_alive "$pid"

    # a changed listen (and admin) line: logged as needing a restart, ignored
    local newport
    newport=$(free_port)
    sed -e "s/^listen .*/listen 127.0.0.1:$newport/" -e "s|^admin .*|admin $ADMIN_SOCK.2|" \
        "$confA" >"$dir/moved.conf"
    install_config "$dir/moved.conf"
    reply="$(admin_cmd reload)"
    [[ "$reply" == "OK reloaded" ]]
    grep -qF "'listen' changed; that needs a restart, ignored" "$SP_LOG"
    grep -qF "'admin' changed; that needs a restart, ignored" "$SP_LOG"
    # admin_mode was not changed, so it is not named
    run grep -cF "'admin_mode' changed" "$SP_LOG"
    [[ "$output" == 0 ]]
    [[ "$(rcli PING)" == PONG ]]
    run bash -c "exec 9<>/dev/tcp/127.0.0.1/$newport"
    [[ "$status" -ne 0 ]] # nothing listens on the new port
    [[ ! -e "$ADMIN_SOCK.2" ]]
    [[ "$(admin_cmd reload)" == "OK reloaded" ]] # the old admin socket still answers
    check_route "$confA" after-listen
}

# bats test_tags=valgrind
@test "a removed backend's in-flight request gets its real reply, then its connection closes" {
    start_redis 3
    ADMIN_SOCK="$(ops_sockdir)/admin.sock"
    _sp_defaults
    local dir confA confB key key2 reply
    dir="$(sp_tmpdir)"
    confA="$dir/A.conf"
    confB="$dir/B.conf"
    ops_config "$confA" "timeout 5000" "$(backend_line 0)" "$(backend_line 1)" "$(backend_line 2)"
    ops_config "$confB" "timeout 5000" "$(backend_line 1)" "$(backend_line 2)"
    install_config "$confA"
    start_proxy
    key="$(key_on 0 inflight: "$confA")"
    key2="$(key_on 0 later: "$confA")"
    [[ "$(bcli 0 SET "$key" real-value-from-0)" == OK ]]
    [[ "$(rcli GET "$key")" == real-value-from-0 ]] # connects the proxy to backend 0
    wait_until connected_clients_is 0 2             # the proxy's connection + this redis-cli

    kill -STOP "${REDIS_PIDS[0]}"
    rcli GET "$key" >"$dir/inflight.out" 2>&1 3>&- &
    local cpid=$!
    # wait until the request is in flight on backend 0
    wait_until eval "admin_cmd backends | grep ':${REDIS_PORTS[0]} ' | awk '{exit !(\$NF >= 1)}'"

    install_config "$confB"
    reply="$(admin_cmd reload)"
    [[ "$reply" == "OK reloaded" ]]
    grep -qF "removed; closing once in-flight requests finish" "$SP_LOG"
    # new requests for its keys go elsewhere at once, though it is still stopped
    [[ "$(CLI_TIMEOUT=3 rcli SET "$key2" moved)" == OK ]]
    [[ "$(route_addr "$SP_CONF" "$key2")" != "127.0.0.1:${REDIS_PORTS[0]}" ]]
    _sp_alive "$cpid" # the in-flight GET is still waiting

    kill -CONT "${REDIS_PIDS[0]}"
    wait "$cpid"
    echo "in-flight reply: $(cat "$dir/inflight.out")"
    [[ "$(cat "$dir/inflight.out")" == real-value-from-0 ]]
    # then its connection closes: only this redis-cli is left on backend 0
    wait_until connected_clients_is 0 1
    [[ "$(bcli 0 EXISTS "$key2")" == 0 ]]
    run grep "timed out" "$SP_LOG"
    [[ "$status" -eq 1 ]]
}

# bats test_tags=valgrind
@test "client AUTH: NOAUTH, AUTH forms, HELLO, unauthenticated limits, rotation by reload" {
    start_redis 2
    ADMIN_SOCK="$(ops_sockdir)/admin.sock"
    _sp_defaults
    local dir conf2 conf1 conf0 big16k big16k1
    dir="$(sp_tmpdir)"
    conf2="$dir/two.conf"
    conf1="$dir/one.conf"
    conf0="$dir/none.conf"
    ops_config "$conf2" "$(backend_line 0)" "$(backend_line 1)" "password old-Pw1" \
        "password NEW-password-2"
    ops_config "$conf1" "$(backend_line 0)" "$(backend_line 1)" "password NEW-password-2"
    ops_config "$conf0" "$(backend_line 0)" "$(backend_line 1)"
    install_config "$conf2"
    # _sp_proxy_up's PING gets -NOAUTH: wait for the port with our own probe
    "$SP_BIN" -c "$SP_CONF" </dev/null >>"$SP_LOG" 2>&1 3>&- &
    SP_PID=$!
    wait_until eval '[[ "$(timeout 2 redis-cli -p "$SP_PORT" PING 2>&1)" == *NOAUTH* ]]'

    local NOAUTH='-NOAUTH Authentication required.\r\n'
    local WRONGPASS='-WRONGPASS invalid username-password pair or user is disabled.\r\n'

    # before AUTH: NOAUTH (the connection stays); AUTH, then everything works
    run raw 6 < <(resp_lines "PING" "GET k" "AUTH old-Pw1" "PING" "SET k v1" "GET k")
    echo "$output"
    [[ "$status" -eq 0 ]]
    [[ "${lines[0]}" == "$NOAUTH" && "${lines[1]}" == "$NOAUTH" ]]
    [[ "${lines[2]}" == '+OK\r\n' && "${lines[3]}" == '+PONG\r\n' ]]
    [[ "${lines[4]}" == '+OK\r\n' && "${lines[5]}" == '$2\r\nv1\r\n' ]]
    # inline commands too
    run raw 2 < <(printf 'PING\r\nAUTH NEW-password-2\r\n')
    [[ "${lines[0]}" == "$NOAUTH" && "${lines[1]}" == '+OK\r\n' ]]
    # AUTH default PASS, with either password
    run raw 3 < <(resp_lines "AUTH default NEW-password-2" "AUTH default old-Pw1" "GET k")
    [[ "${lines[0]}" == '+OK\r\n' && "${lines[1]}" == '+OK\r\n' && "${lines[2]}" == '$2\r\nv1\r\n' ]]
    # wrong passwords of several lengths, prefixes, extensions, other users
    local pw
    for pw in x old-Pw old-Pw2 old-pw1 old-Pw1x old-Pw1old-Pw1 NEW-password- NEW-password-22 \
        "$(head -c 300 /dev/zero | tr '\0' a)" O; do
        run raw 2 < <(resp_lines "AUTH $pw" "PING")
        [[ "${lines[0]}" == "$WRONGPASS" && "${lines[1]}" == "$NOAUTH" ]] ||
            { echo "AUTH '$pw': $output"; false; }
    done
    run raw 2 < <(printf '*2\r\n$4\r\nAUTH\r\n$0\r\n\r\n'; resp_lines PING)
    [[ "${lines[0]}" == "$WRONGPASS" && "${lines[1]}" == "$NOAUTH" ]]
    run raw 2 < <(resp_lines "AUTH admin old-Pw1" "PING")
    [[ "${lines[0]}" == "$WRONGPASS" && "${lines[1]}" == "$NOAUTH" ]]
    run raw 2 < <(resp_lines "AUTH default old-Pw" "PING")
    [[ "${lines[0]}" == "$WRONGPASS" && "${lines[1]}" == "$NOAUTH" ]]
    # QUIT is allowed before AUTH
    run raw 1 --eof --timeout 5 < <(resp_lines QUIT)
    [[ "$status" -eq 0 && "${lines[0]}" == '+OK\r\n' && "${lines[1]}" == '<EOF>' ]]

    # HELLO
    run raw 2 < <(resp_lines "HELLO 2" "PING")
    echo "$output"
    [[ "${lines[0]}" == '-NOAUTH HELLO must be called with the client already authenticated'* ]]
    [[ "${lines[1]}" == "$NOAUTH" ]]
    run raw 1 < <(resp_lines "HELLO")
    [[ "${lines[0]}" == '-NOAUTH HELLO must be called'* ]]
    run raw 2 < <(resp_lines "HELLO 2 AUTH default wrong" "PING")
    [[ "${lines[0]}" == "$WRONGPASS" && "${lines[1]}" == "$NOAUTH" ]]
    run raw 2 < <(resp_lines "HELLO 2 AUTH bob old-Pw1" "PING")
    [[ "${lines[0]}" == "$WRONGPASS" && "${lines[1]}" == "$NOAUTH" ]]
    run raw 2 < <(resp_lines "HELLO 2 AUTH default old-Pw1 SETNAME me" "CLIENT GETNAME")
    echo "$output"
    [[ "${lines[0]}" == '*14\r\n$6\r\nserver\r\n'* && "${lines[0]}" == *'$5\r\nproto\r\n:2\r\n'* ]]
    [[ "${lines[1]}" == '$2\r\nme\r\n' ]]

    # redis-cli -a / --user --pass
    [[ "$(rcli --no-auth-warning -a old-Pw1 GET k)" == v1 ]]
    [[ "$(rcli --no-auth-warning --user default --pass NEW-password-2 GET k)" == v1 ]]
    run rcli --no-auth-warning -a wrong GET k
    [[ "$output" == *NOAUTH* ]]

    # unauthenticated limits: 10 elements and 16384-byte bulks pass the parser
    # (then NOAUTH); 11 elements or a 16385-byte bulk end the connection
    run raw 1 < <(resp_lines "MSET a 1 b 2 c 3 d 4 e")
    [[ "${lines[0]}" == "$NOAUTH" ]]
    run raw 1 --eof --timeout 5 < <(resp_lines "MSET a 1 b 2 c 3 d 4 e 5")
    echo "$output"
    [[ "$status" -eq 0 ]]
    [[ "${lines[0]}" == '-ERR Protocol error: unauthenticated multibulk length\r\n' ]]
    big16k="$(head -c 16384 /dev/zero | tr '\0' z)"
    big16k1="${big16k}z"
    run raw 1 < <(resp_lines "SET big $big16k")
    [[ "${lines[0]}" == "$NOAUTH" ]]
    run raw 1 --eof --timeout 5 < <(resp_lines "SET big $big16k1")
    echo "${output:0:300}"
    [[ "$status" -eq 0 ]]
    [[ "${lines[0]}" == '-ERR Protocol error: unauthenticated bulk length\r\n' ]]
    # ... and not after AUTH
    run raw 3 < <(resp_lines "AUTH old-Pw1" "MSET a 1 b 2 c 3 d 4 e 5" "SET big $big16k1")
    [[ "${lines[1]}" == '+OK\r\n' && "${lines[2]}" == '+OK\r\n' ]]
    [[ "$(rcli --no-auth-warning -a old-Pw1 STRLEN big)" == 16385 ]]

    # rotation: an authenticated connection survives a reload that drops its
    # password; a new AUTH with the dropped password fails
    exec 5<>"/dev/tcp/127.0.0.1/$SP_PORT"
    local line
    printf 'AUTH old-Pw1\r\n' >&5
    read -r -t 10 line <&5
    [[ "$line" == $'+OK\r' ]]
    install_config "$conf1"
    [[ "$(admin_cmd reload)" == "OK reloaded" ]]
    run raw 3 < <(resp_lines "AUTH old-Pw1" "PING" "AUTH NEW-password-2")
    [[ "${lines[0]}" == "$WRONGPASS" && "${lines[1]}" == "$NOAUTH" && "${lines[2]}" == '+OK\r\n' ]]
    run raw 1 < <(resp_lines "HELLO 2 AUTH default old-Pw1")
    [[ "${lines[0]}" == "$WRONGPASS" ]]
    printf 'SET rot still-authed\r\nGET rot\r\n' >&5
    read -r -t 10 line <&5
    [[ "$line" == $'+OK\r' ]]
    read -r -t 10 line <&5
    [[ "$line" == $'$12\r' ]]
    read -r -t 10 line <&5
    [[ "$line" == $'still-authed\r' ]]
    exec 5>&-

    # no password at all: AUTH pass is Redis's error, AUTH default x passes,
    # nothing needs AUTH, no unauthenticated limits
    install_config "$conf0"
    [[ "$(admin_cmd reload)" == "OK reloaded" ]]
    run raw 3 < <(resp_lines "AUTH x" "AUTH default x" "PING")
    echo "$output"
    [[ "${lines[0]}" == '-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n' ]]
    [[ "${lines[1]}" == '+OK\r\n' && "${lines[2]}" == '+PONG\r\n' ]]
    run raw 2 < <(resp_lines "MSET a 1 b 2 c 3 d 4 e 5" "SET big $big16k1")
    [[ "${lines[0]}" == '+OK\r\n' && "${lines[1]}" == '+OK\r\n' ]]
    [[ "$(rcli GET rot)" == still-authed ]]
}

@test "unauthenticated replies match a real redis-server with requirepass, byte for byte" {
    start_redis 3
    _sp_defaults
    [[ "$(bcli 2 CONFIG SET requirepass pw)" == OK ]]
    write_config "password pw"
    sed -i "/:${REDIS_PORTS[2]}\$/d" "$SP_CONF" # the reference redis is no backend
    "$SP_BIN" -c "$SP_CONF" </dev/null >>"$SP_LOG" 2>&1 3>&- &
    SP_PID=$!
    wait_until eval '[[ "$(timeout 2 redis-cli -p "$SP_PORT" PING 2>&1)" == *NOAUTH* ]]'
    local big16k big16k1 dir
    dir="$(sp_tmpdir)"
    big16k="$(head -c 16384 /dev/zero | tr '\0' z)"
    big16k1="${big16k}z"

    # NREPLIES [--eof] | REQUEST (words; one request)
    local cases=(
        "1|PING" "1|GET k" "1|SET k v" "1|SELECT 0" "1|CLIENT SETNAME x" "1|COMMAND"
        "1|COMMAND COUNT" "1|COMMAND BOGUS" "1|bogus a b" "1|CONFIG"
        "1|AUTH" "1|AUTH wrong" "1|AUTH p" "1|AUTH pww" "1|AUTH default wrong"
        "1|AUTH bob pw" "1|AUTH a b c" "1|HELLO" "1|HELLO 2" "1|HELLO 2 AUTH default wrong"
        "1|HELLO 2 AUTH default" "1|HELLO 2 AUTH bob pw" "1|HELLO 2 SETNAME x"
        "1|MSET a 1 b 2 c 3 d 4 e" "1 --eof|MSET a 1 b 2 c 3 d 4 e 5" "1|SET big $big16k"
        "1 --eof|SET big $big16k1" "1|RESET" "1 --eof|QUIT"
    )
    local c n req mism=0 want got
    for c in "${cases[@]}"; do
        n=${c%%|*}
        req=${c#*|}
        # shellcheck disable=SC2086
        want="$(resp_lines "$req" | timeout 60 python3 "$BATS_TEST_DIRNAME/resp_raw.py" \
            "${REDIS_PORTS[2]}" $n --timeout 5 2>&1)" || true
        # shellcheck disable=SC2086
        got="$(resp_lines "$req" | raw $n --timeout 5 2>&1)" || true
        # closing with the request's tail unread may be a reset: same outcome
        want=${want//<RESET>/<EOF>}
        got=${got//<RESET>/<EOF>}
        if [[ "$got" != "$want" ]]; then
            mism=$((mism + 1))
            echo "MISMATCH for '${req:0:60}':"
            echo "  redis: ${want:0:300}"
            echo "  proxy: ${got:0:300}"
        fi
    done
    # AUTH, then RESET: the authentication must be proven again
    want="$(resp_lines "AUTH pw" "RESET" "GET k" | timeout 60 python3 \
        "$BATS_TEST_DIRNAME/resp_raw.py" "${REDIS_PORTS[2]}" 3 2>&1)" || true
    got="$(resp_lines "AUTH pw" "RESET" "GET k" | raw 3 2>&1)" || true
    if [[ "$got" != "$want" ]]; then
        mism=$((mism + 1))
        echo "MISMATCH for AUTH, RESET, GET: redis '$want', proxy '$got'"
    fi
    # inline
    want="$(printf 'PING\r\nAUTH wrong\r\n' | timeout 60 python3 "$BATS_TEST_DIRNAME/resp_raw.py" \
        "${REDIS_PORTS[2]}" 2 2>&1)" || true
    got="$(printf 'PING\r\nAUTH wrong\r\n' | raw 2 2>&1)" || true
    if [[ "$got" != "$want" ]]; then
        mism=$((mism + 1))
        echo "MISMATCH for inline PING/AUTH: redis: $want / proxy: $got"
    fi
    [[ "$mism" -eq 0 ]]
}

# bats test_tags=valgrind
@test "backend password, user and db; a rejected handshake marks the backend down until fixed" {
    start_redis 3
    ADMIN_SOCK="$(ops_sockdir)/admin.sock"
    _sp_defaults
    [[ "$(bcli 0 CONFIG SET requirepass s3cret)" == OK ]]
    [[ "$(bcli 1 ACL SETUSER proxy on '>pw' '~*' '+@all')" == OK ]]
    [[ "$(bcli 2 CONFIG SET requirepass s3cret)" == OK ]]
    local dir conf1 conf2 conf3 k0 k1 k2 a2 t0 t1 out
    dir="$(sp_tmpdir)"
    a2="127.0.0.1:${REDIS_PORTS[2]}"
    conf1="$dir/per-backend.conf"
    ops_config "$conf1" "$(backend_line 0 password=s3cret db=2)" \
        "$(backend_line 1 user=proxy password=pw)" "$(backend_line 2 password=wrong)"
    install_config "$conf1"
    start_proxy
    k0="$(key_on 0 k0: "$SP_CONF")"
    k1="$(key_on 1 k1: "$SP_CONF")"
    k2="$(key_on 2 k2: "$SP_CONF")"

    # backend 0: AUTH + SELECT 2
    [[ "$(rcli SET "$k0" in-db-2)" == OK ]]
    [[ "$(bcli 0 --no-auth-warning -a s3cret -n 2 GET "$k0")" == in-db-2 ]]
    [[ "$(bcli 0 --no-auth-warning -a s3cret -n 0 EXISTS "$k0")" == 0 ]]
    [[ "$(rcli GET "$k0")" == in-db-2 ]]
    # backend 1: the ACL user
    [[ "$(rcli SET "$k1" via-acl)" == OK ]]
    [[ "$(bcli 1 GET "$k1")" == via-acl ]]
    bcli 1 CLIENT LIST | grep -q ' user=proxy '
    # backend 2: wrong password -> down, with the reason; fast errors
    wait_until backend_state_is "$a2" down
    out="$(backend_json "$a2" last_error)"
    echo "last_error: $out"
    [[ "$out" == *WRONGPASS* ]]
    grep -q "backend $a2 ($a2): rejected AUTH/HELLO/SELECT: WRONGPASS" "$SP_LOG"
    t0=$(date +%s%N)
    out="$(rcli GET "$k2")"
    t1=$(date +%s%N)
    echo "GET $k2: $out ($(((t1 - t0) / 1000000)) ms)"
    [[ "$out" == "ERR backend $a2 unavailable" ]]
    (((t1 - t0) < 3000000000))
    # a split command touching it: the others still serve
    [[ "$(rcli GET "$k0")" == in-db-2 && "$(rcli GET "$k1")" == via-acl ]]

    # the right password but a db the backend does not have: still down, reason
    conf2="$dir/bad-db.conf"
    ops_config "$conf2" "$(backend_line 0 password=s3cret db=2)" \
        "$(backend_line 1 user=proxy password=pw)" "$(backend_line 2 password=s3cret db=99)"
    install_config "$conf2"
    [[ "$(admin_cmd reload)" == "OK reloaded" ]]
    wait_until eval '[[ "$(backend_json "$a2" last_error)" == *"DB index is out of range"* ]]'
    wait_until backend_state_is "$a2" down
    [[ "$(rcli GET "$k2")" == "ERR backend $a2 unavailable" ]]

    # fixed, with the global directives (backend 1 keeps its own user/password)
    conf3="$dir/fixed.conf"
    ops_config "$conf3" "backend_password s3cret" "backend_db 2" "$(backend_line 0)" \
        "$(backend_line 1 user=proxy password=pw db=0)" "$(backend_line 2)"
    install_config "$conf3"
    [[ "$(admin_cmd reload)" == "OK reloaded" ]]
    wait_until eval '[[ "$(rcli SET "$k2" fixed)" == OK ]]'
    wait_until backend_state_is "$a2" up
    [[ "$(backend_json "$a2" last_error)" == "" ]]
    [[ "$(bcli 2 --no-auth-warning -a s3cret -n 2 GET "$k2")" == fixed ]]
    [[ "$(rcli GET "$k0")" == in-db-2 && "$(rcli GET "$k1")" == via-acl ]]
    [[ "$(rcli MGET "$k0" "$k1" "$k2" | tr '\n' ' ')" == "in-db-2 via-acl fixed " ]]
}

@test "make static, make install/uninstall, -h and -V" {
    local tmp src root out size
    tmp="$(sp_tmpdir)"
    src="$tmp/src"
    root="$tmp/root"
    mkdir -p "$src/test"
    # a private copy of the tree, so nothing here races other builds
    cp "$SP_ROOT"/{Makefile,shardproxy.c,shardproxy.h,shardproxy.conf,README.md} "$src/"
    cp "$SP_ROOT/test/deps.sh" "$src/test/" 2>/dev/null || true

    # -h lists every flag; -V prints the version
    run "$SP_BIN" -h
    [[ "$status" -eq 0 ]]
    local f
    for f in -c -t --route --table -V -h; do
        echo "$output" | grep -qE -- "^[[:space:]]+$f( |$)" || { echo "-h misses $f: $output"; false; }
    done
    run "$SP_BIN" -V
    [[ "$status" -eq 0 && "$output" =~ ^shardproxy\ [0-9]+\.[0-9]+\.[0-9]+\ \(events:\ (epoll|kqueue|poll),\ listen:\ (reuseport|shared)\)$ ]]
    # builds below use the platform's event backend, SP_BIN may not (the ASan pass uses poll)
    local version="${output%% (events:*}"
    local native=poll listen=shared
    case "$(uname -s)" in
        Linux) native=epoll listen=reuseport ;;
        FreeBSD) native=kqueue listen=reuseport ;;
        *BSD | Darwin | DragonFly) native=kqueue ;;
    esac
    run "$SP_BIN" --bogus
    [[ "$status" -eq 2 && "$output" == *usage:* ]]

    # make EVENTS=poll forces the portable backend
    run make -C "$src" EVENTS=poll
    echo "$output"
    [[ "$status" -eq 0 && "$output" == *-DEVENTS_POLL* ]]
    [[ "$("$src/shardproxy" -V)" == "$version (events: poll, listen: $listen)" ]]
    rm -f "$src/shardproxy"

    # install / uninstall
    run make -C "$src" install DESTDIR="$root" PREFIX=/usr
    echo "$output"
    [[ "$status" -eq 0 ]]
    [[ -x "$root/usr/bin/shardproxy" ]]
    [[ "$("$root/usr/bin/shardproxy" -V)" == "$version (events: $native, listen: $listen)" ]]
    cmp "$root/usr/share/doc/shardproxy/shardproxy.conf" "$SP_ROOT/shardproxy.conf"
    cmp "$root/usr/share/doc/shardproxy/README.md" "$SP_ROOT/README.md"
    [[ "$(stat -c %a "$root/usr/share/doc/shardproxy/README.md")" == 644 ]]
    [[ "$(stat -c %a "$root/usr/bin/shardproxy")" == 755 ]]
    "$root/usr/bin/shardproxy" -c "$root/usr/share/doc/shardproxy/shardproxy.conf" -t
    run make -C "$src" uninstall DESTDIR="$root" PREFIX=/usr
    echo "$output"
    [[ "$status" -eq 0 ]]
    [[ ! -e "$root/usr/bin/shardproxy" ]]
    [[ ! -e "$root/usr/share/doc/shardproxy" ]]

    # make static (last: it may skip)
    if ! command -v musl-gcc >/dev/null 2>&1; then
        skip "musl-gcc is not installed (Debian: musl-tools): make static not tested"
    fi
    run make -C "$src" static
    echo "$output"
    [[ "$status" -eq 0 ]]
    [[ "$output" =~ shardproxy-static:\ ([0-9]+)\ bytes ]]
    size=${BASH_REMATCH[1]}
    [[ "$size" -eq "$(stat -c %s "$src/shardproxy-static")" ]]
    echo "# shardproxy-static: $size bytes" >&3
    # static: no program interpreter, no dynamic section
    run readelf -l "$src/shardproxy-static"
    [[ "$status" -eq 0 && "$output" != *INTERP* ]]
    run "$src/shardproxy-static" -c "$src/shardproxy.conf" -t
    [[ "$status" -eq 0 && "$output" == "configuration OK" ]]
    [[ "$("$src/shardproxy-static" -V)" == "$version (events: $native, listen: $listen)" ]]
    [[ "$("$src/shardproxy-static" -c "$src/shardproxy.conf" --route foo)" == "$("$SP_BIN" -c "$src/shardproxy.conf" --route foo)" ]]
}

@test "reload with table_size 5000011: built a slice per pass while the old table serves, then in force, as --route computes it" {
    start_redis 4
    ADMIN_SOCK="$(ops_sockdir)/admin.sock"
    _sp_defaults
    local dir conf3 conf4 k i j want got
    dir="$(sp_tmpdir)"
    conf3="$dir/3.conf"
    conf4="$dir/4.conf"
    ops_config "$conf3" "$(backend_line 0)" "$(backend_line 1)" "$(backend_line 2)" \
        "table_size 5000011"
    ops_config "$conf4" "$(backend_line 0)" "$(backend_line 1)" "$(backend_line 2)" \
        "$(backend_line 3)" "table_size 5000011"
    install_config "$conf3"
    start_proxy
    install_config "$conf4"
    kill -HUP "$SP_PID"
    [[ "$(rcli ping)" == PONG ]] # answered while (or after) the table builds
    wait_until reloads_at_least 1
    [[ "$(rcli info proxy | tr -d '\r' | sed -n 's/^backends://p')" == 4 ]]
    # the table built in slices routes every key as the one built at once
    for ((i = 0; i < 50; i++)); do
        k="big$i"
        want=$(route_addr "$conf4" "$k")
        [[ "$(rcli set "$k" v)" == OK ]]
        got=""
        for j in 0 1 2 3; do
            [[ "$(bcli "$j" exists "$k")" == 1 ]] && got="127.0.0.1:${REDIS_PORTS[$j]}"
        done
        [[ "$got" == "$want" ]] || { echo "$k: on $got, --route says $want"; false; }
    done
    # two reloads in a row (the second may supersede the first still
    # building): the later one is in force
    install_config "$conf4"
    kill -HUP "$SP_PID"
    install_config "$conf3"
    kill -HUP "$SP_PID"
    wait_until eval '[ "$(rcli info proxy | tr -d "\r" | sed -n "s/^backends://p")" = 3 ]'
}
