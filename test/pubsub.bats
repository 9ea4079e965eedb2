#!/usr/bin/env bats
#
# pubsub.bats -- pub/sub and MONITOR through the proxy, as Redis 7.0 runs
# them.  A scripted session (two subscribers and a publisher, RESP2 and
# RESP3: SUBSCRIBE/PSUBSCRIBE/SSUBSCRIBE, PUBLISH/SPUBLISH, PING, refused and
# allowed commands while subscribed, (P|S)UNSUBSCRIBE with and without
# arguments, PUBSUB, RESET, QUIT) through 3 backends and through 1 must give
# a plain redis-server's bytes, with channels on every backend and each
# subscribed on the backend that owns it (test/pubsub_check.py diff); 100
# subscribers x 10,000 publishes lose, duplicate or reorder nothing
# (fanout); PSUBSCRIBE hears channels on every backend and PUBLISH counts
# every receiver; PUBSUB merged over the backends equals one redis-server's
# figures; MONITOR merges every backend's lines, each tagged with its
# backend's identity (monitor); a backend dropping a subscriber's connection
# closes that subscriber only; a subscriber or monitor that leaves releases
# its backend connections.  Background subscribers are pubsub_check.py hold,
# their frames printed escaped one a line.

load helper

# check ARGS...: test/pubsub_check.py ARGS, its output shown.
check() {
    run timeout 180 python3 "$BATS_TEST_DIRNAME/pubsub_check.py" "$@"
    printf '%s\n' "${lines[@]}"
    [ "$status" -eq 0 ]
}

# hold_on PORT NAME [--proto 3] CMD ARG... [+ CMD ARG...]: a subscriber in
# the background (pubsub_check.py hold) on PORT; its frames in
# $BATS_TEST_TMPDIR/NAME.out, its PID in HOLD_PID.  Returns once its
# subscriptions are confirmed; fails (showing them) if one was refused.
hold_on() {
    local port=$1 name=$2 d=$BATS_TEST_TMPDIR
    shift 2
    python3 "$BATS_TEST_DIRNAME/pubsub_check.py" hold "$port" "$d/$name.ready" "$@" \
        >"$d/$name.out" 3>&- &
    HOLD_PID=$!
    SP_EXTRA_PIDS+=("$HOLD_PID")
    wait_until test -f "$d/$name.ready"
    if grep -q '^FAIL' "$d/$name.out"; then
        cat "$d/$name.out" >&2
        return 1
    fi
}

# hold NAME ...: hold_on the proxy.
hold() {
    _sp_defaults
    hold_on "$SP_PORT" "$@"
}

# has NAME LINE: subscriber NAME has received the frame LINE (escaped).
has() {
    grep -qxF -- "$2" "$BATS_TEST_TMPDIR/$1.out"
}

# closed NAME: the proxy has closed subscriber NAME's connection.
closed() {
    grep -qxE '<EOF>|<RESET>' "$BATS_TEST_TMPDIR/$1.out"
}

# frames NAME: how many frames (lines) subscriber NAME has printed.
frames() {
    wc -l <"$BATS_TEST_TMPDIR/$1.out"
}

# frame [-3] WORD...: the escaped RESP2 array (with -3 the RESP3 push) of
# bulk strings WORD..., as pubsub_check.py prints it; a word :N is an integer.
frame() {
    local LC_ALL=C head='*' w out
    if [[ "$1" == -3 ]]; then
        head='>'
        shift
    fi
    out="$head$#\\r\\n"
    for w in "$@"; do
        if [[ "$w" =~ ^:[0-9]+$ ]]; then
            out+="$w\\r\\n"
        else
            out+="\$${#w}\\r\\n$w\\r\\n"
        fi
    done
    printf '%s\n' "$out"
}

# pubsub_on I: the pub/sub clients (CLIENT LIST TYPE pubsub) redis I has.
pubsub_on() {
    bcli "$1" client list type pubsub | grep -c '^id=' || true
}

# pubsub_gone: no backend has a pub/sub client.
pubsub_gone() {
    local i
    for i in "${!REDIS_PORTS[@]}"; do
        [ "$(pubsub_on "$i")" = 0 ] || return 1
    done
}

# monitors_gone: no backend has a MONITOR client.
monitors_gone() {
    local i
    for i in "${!REDIS_PORTS[@]}"; do
        [ "$(bcli "$i" client list | grep -c ' flags=O ' || true)" = 0 ] || return 1
    done
}

# bats test_tags=valgrind
@test "pub/sub: a scripted session through 3 backends gets a redis-server's bytes, RESP2 and RESP3" {
    start_redis 4
    local ref=${REDIS_PORTS[3]} proto
    REDIS_PORTS=("${REDIS_PORTS[@]:0:3}")
    write_config
    start_proxy
    for proto in 2 3; do
        check diff "$SP_PORT" "$ref" "$proto" --conf "$SP_CONF" --bin "$SP_BIN"
        [[ "${lines[-1]}" == "RESP$proto: "*" steps, 0 mismatches" ]]
        # every backend had its own channels, and both patterns
        [ "$(printf '%s\n' "${lines[@]}" | grep -c '^placement: backend .*, patterns 2$')" = 3 ]
        # the channels the script picked do spread: no backend went without one
        [ "$(printf '%s\n' "${lines[@]}" | grep -c '^placement: backend [^ ]*: channels -,')" = 0 ]
        # the session's connections are closed: nothing stays subscribed
        wait_until pubsub_gone
    done
}

@test "pub/sub: the scripted session through one backend gets a redis-server's bytes, RESP2 and RESP3" {
    start_redis 2
    local ref=${REDIS_PORTS[1]} proto
    REDIS_PORTS=("${REDIS_PORTS[0]}")
    write_config
    start_proxy
    for proto in 2 3; do
        check diff "$SP_PORT" "$ref" "$proto" --conf "$SP_CONF" --bin "$SP_BIN"
        [[ "${lines[-1]}" == "RESP$proto: "*" steps, 0 mismatches" ]]
        [ "$(printf '%s\n' "${lines[@]}" | grep -c '^placement: backend .*, patterns 2$')" = 1 ]
        wait_until pubsub_gone
    done
}

@test "pub/sub: 100 subscribers x 10,000 PUBLISHes over 3 backends: every message, once, in order, exact counts" {
    start_redis 3
    write_config
    start_proxy
    check fanout "$SP_PORT" --conf "$SP_CONF" --bin "$SP_BIN"
    local i
    for i in 0 1 2; do # the channels spread over every backend
        [[ "${lines[0]}" == "channels: "*" on 127.0.0.1:${REDIS_PORTS[i]}"* ]]
    done
    [[ "${lines[-1]}" =~ ^fanout:\ 100\ subscribers,\ 10000\ publishes\ over\ 6\ channels,\ ([0-9]+)\ messages\ delivered\ \(([0-9]+)\ expected\) ]]
    [ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ]
    [ "${BASH_REMATCH[1]}" -gt 100000 ]
    wait_until pubsub_gone # 100 subscribers gone: every backend connection released
    [ "$(rcli ping)" = PONG ]
}

# bats test_tags=valgrind
@test "pub/sub: PSUBSCRIBE hears channels on every backend; PUBLISH counts every receiver, RESP2 and RESP3" {
    start_redis 3
    write_config
    start_proxy
    local c0 c1 c2 h
    c0=$(key_on 0 pc)
    c1=$(key_on 1 pc)
    c2=$(key_on 2 pc)
    hold p1 PSUBSCRIBE 'pc*'
    hold p2 PSUBSCRIBE 'pc*' 'zz*'
    hold p3 PSUBSCRIBE 'pc*' + SUBSCRIBE "$c2"
    hold p4 --proto 3 PSUBSCRIBE 'pc*'
    hold s1 SUBSCRIBE "$c2"
    hold s2 SUBSCRIBE "$c1" "$c2"
    # the confirmations count as one redis-server would
    has p2 "$(frame psubscribe 'zz*' :2)"
    has p3 "$(frame subscribe "$c2" :2)"
    has p4 "$(frame -3 psubscribe 'pc*' :1)"
    has s2 "$(frame subscribe "$c2" :2)"
    # every pattern is on every backend; NUMPAT counts distinct patterns
    for h in 0 1 2; do
        [ "$(bcli "$h" pubsub numpat)" = 2 ]
    done
    [ "$(rcli pubsub numpat)" = 2 ]
    [ "$(rcli publish "$c0" m0)" = 4 ] # the 4 pattern subscribers
    [ "$(rcli publish "$c1" m1)" = 5 ] # and s2
    [ "$(rcli publish "$c2" m2)" = 7 ] # and p3, s1, s2
    [ "$(rcli publish pcnosuch m)" = 4 ]
    [ "$(rcli publish nomatch m)" = 0 ]
    [ "$(rcli spublish "$c2" m)" = 0 ] # shard channels are another namespace
    for h in p1 p2 p3; do
        wait_until has "$h" "$(frame pmessage 'pc*' "$c0" m0)"
        wait_until has "$h" "$(frame pmessage 'pc*' "$c1" m1)"
        wait_until has "$h" "$(frame pmessage 'pc*' "$c2" m2)"
        wait_until has "$h" "$(frame pmessage 'pc*' pcnosuch m)"
    done
    wait_until has p4 "$(frame -3 pmessage 'pc*' "$c0" m0)"
    wait_until has p4 "$(frame -3 pmessage 'pc*' "$c1" m1)"
    wait_until has p4 "$(frame -3 pmessage 'pc*' "$c2" m2)"
    wait_until has p4 "$(frame -3 pmessage 'pc*' pcnosuch m)"
    wait_until has p3 "$(frame message "$c2" m2)"
    wait_until has s1 "$(frame message "$c2" m2)"
    wait_until has s2 "$(frame message "$c1" m1)"
    wait_until has s2 "$(frame message "$c2" m2)"
    # and nothing else: confirmations + messages
    sleep 0.2
    [ "$(frames p1)" = 5 ]
    [ "$(frames p2)" = 6 ]
    [ "$(frames p3)" = 7 ]
    [ "$(frames p4)" = 5 ]
    [ "$(frames s1)" = 2 ]
    [ "$(frames s2)" = 4 ]
}

@test "pub/sub: PUBSUB NUMSUB, CHANNELS, NUMPAT, SHARDNUMSUB, SHARDCHANNELS merged over 3 backends equal one redis-server's" {
    start_redis 4
    local ref=${REDIS_PORTS[3]} port a b c t sa sb i args
    REDIS_PORTS=("${REDIS_PORTS[@]:0:3}")
    write_config
    start_proxy
    a=$(key_on 0 nc)
    b=$(key_on 1 nc)
    c=$(key_on 2 nc)
    t="nt{$b}" # placed by its hash tag, with b
    sa=$(key_on 0 ns)
    sb=$(key_on 2 ns)
    # the same subscribers through the proxy and on the reference
    for port in "$SP_PORT" "$ref"; do
        hold_on "$port" "h1-$port" SUBSCRIBE "$a" "$b" "$c" "$t" + SSUBSCRIBE "$sa" "$sb" + \
            PSUBSCRIBE 'n*'
        hold_on "$port" "h2-$port" SUBSCRIBE "$b" + PSUBSCRIBE 'n*' 'x*' + SSUBSCRIBE "$sb"
        hold_on "$port" "h3-$port" --proto 3 SUBSCRIBE "$c" + PSUBSCRIBE 'x*'
    done
    pubsub() { # pubsub PORT ARGS: PUBSUB ARGS on PORT, as redis-cli prints it
        timeout 10 redis-cli -h 127.0.0.1 -p "$1" pubsub "${@:2}"
    }
    local q
    for q in "numsub $a $b $c $t nosuch" "numsub" "numpat" "shardnumsub $sa $sb nosuch" \
        "shardnumsub" "channels nomatch*"; do
        read -r -a args <<<"$q"
        run pubsub "$SP_PORT" "${args[@]}"
        echo "proxy: PUBSUB $q: $output"
        [ "$status" -eq 0 ]
        [ "$output" = "$(pubsub "$ref" "${args[@]}")" ]
    done
    [ "$(pubsub "$SP_PORT" numsub "$a" "$b" "$c" "$t" nosuch | paste -sd ' ')" = "$a 1 $b 2 $c 2 $t 1 nosuch 0" ]
    [ "$(pubsub "$SP_PORT" numpat)" = 2 ]
    [ "$(pubsub "$SP_PORT" shardnumsub "$sa" "$sb" | paste -sd ' ')" = "$sa 1 $sb 2" ]
    # CHANNELS and SHARDCHANNELS: the same sets (the order is Redis's dict order)
    for q in "channels" "channels nc*" "channels $t" "shardchannels" "shardchannels $sb"; do
        read -r -a args <<<"$q"
        run pubsub "$SP_PORT" "${args[@]}"
        echo "proxy: PUBSUB $q: $output"
        [ "$status" -eq 0 ]
        [ "$(sort <<<"$output")" = "$(pubsub "$ref" "${args[@]}" | sort)" ]
    done
    [ "$(pubsub "$SP_PORT" channels | sort | paste -sd ' ')" = "$(printf '%s\n' "$a" "$b" "$c" "$t" | sort | paste -sd ' ')" ]
    # each channel is subscribed on the backend a key of its name lives on
    [ "$(bcli 0 pubsub channels)" = "$a" ]
    [ "$(bcli 1 pubsub channels | sort | paste -sd ' ')" = "$(printf '%s\n' "$b" "$t" | sort | paste -sd ' ')" ]
    [ "$(bcli 2 pubsub channels)" = "$c" ]
    [ "$(bcli 0 pubsub shardchannels)" = "$sa" ]
    [ -z "$(bcli 1 pubsub shardchannels)" ]
    [ "$(bcli 2 pubsub shardchannels)" = "$sb" ]
    for i in 0 1 2; do
        [ "$(bcli "$i" pubsub numpat)" = 2 ]
    done
}

@test "MONITOR: every backend's lines in one stream, each tagged with its backend's identity" {
    start_redis 3
    write_config
    start_proxy
    local k0 k1 k2 i
    k0=$(key_on 0 mon)
    k1=$(key_on 1 mon)
    k2=$(key_on 2 mon)
    check monitor "$SP_PORT" "$k0=127.0.0.1:${REDIS_PORTS[0]}" \
        "$k1=127.0.0.1:${REDIS_PORTS[1]}" "$k2=127.0.0.1:${REDIS_PORTS[2]}"
    [[ "${lines[-1]}" == "monitor: 15 commands, "*" lines read, 15 found, 0 problems" ]]
    # the exact form: Redis's line with "ID/" before the client address
    for i in 0 1 2; do
        local k="k$i"
        printf '%s\n' "${lines[@]}" | grep -E "^set ${!k} v[0-9] \\(db 0\\) +\\+[0-9]+\\.[0-9]{6} \\[0 127\\.0\\.0\\.1:${REDIS_PORTS[i]}/127\\.0\\.0\\.1:[0-9]+\\] \"set\" \"${!k}\" \"v[0-9]\"\\\\r\\\\n\$"
        printf '%s\n' "${lines[@]}" | grep -E "^set ${!k} db3 \\(db 3\\) +\\+[0-9]+\\.[0-9]{6} \\[3 127\\.0\\.0\\.1:${REDIS_PORTS[i]}/"
    done
    # the monitor is gone: so are its backend connections
    wait_until monitors_gone
    [ "$(rcli ping)" = PONG ]
}

@test "MONITOR: with name= identities, the tag is the backend's name" {
    start_redis 2
    write_config
    sed -i -e "s/^backend 127.0.0.1:${REDIS_PORTS[0]}\$/& name=alpha/" \
        -e "s/^backend 127.0.0.1:${REDIS_PORTS[1]}\$/& name=beta/" "$SP_CONF"
    grep -q 'name=alpha' "$SP_CONF"
    start_proxy
    local ka kb
    ka=$(key_for alpha mon)
    kb=$(key_for beta mon)
    check monitor "$SP_PORT" "$ka=alpha" "$kb=beta"
    [[ "${lines[-1]}" == "monitor: 10 commands, "*" lines read, 10 found, 0 problems" ]]
    printf '%s\n' "${lines[@]}" | grep -E "^get $ka \\(db 0\\) +\\+[0-9]+\\.[0-9]{6} \\[0 alpha/127\\.0\\.0\\.1:[0-9]+\\] \"get\" \"$ka\"\\\\r\\\\n\$"
    printf '%s\n' "${lines[@]}" | grep -E "^get $kb \\(db 0\\) +\\+[0-9]+\\.[0-9]{6} \\[0 beta/127\\.0\\.0\\.1:[0-9]+\\] \"get\" \"$kb\"\\\\r\\\\n\$"
    wait_until monitors_gone
}

# bats test_tags=valgrind
@test "pub/sub: a backend dropping a subscriber's connection closes that subscriber, and only it" {
    start_redis 3
    write_config
    start_proxy
    local c0 c1 a b p
    c0=$(key_on 0 kc)
    c1=$(key_on 1 kc)
    hold a SUBSCRIBE "$c0" # on backend 0 only
    a=$HOLD_PID
    hold b SUBSCRIBE "$c1" # on backend 1 only
    b=$HOLD_PID
    hold p PSUBSCRIBE 'kc*' # on every backend, backend 1 too
    p=$HOLD_PID
    [ "$(pubsub_on 1)" -ge 1 ]
    run bcli 1 client kill type pubsub
    echo "CLIENT KILL TYPE pubsub on backend 1: $output"
    [ "$output" -ge 1 ]
    # the two that had a connection to backend 1 are closed: they may have lost messages
    wait_until closed b
    wait_until closed p
    wait "$b"
    wait "$p"
    # the other is still subscribed and still hears its channel
    _sp_alive "$a"
    [ "$(rcli publish "$c0" after)" = 1 ]
    wait_until has a "$(frame message "$c0" after)"
    run closed a
    [ "$status" -ne 0 ]
    # backend 1 serves new subscribers
    hold b2 SUBSCRIBE "$c1"
    [ "$(rcli publish "$c1" again)" = 1 ]
    wait_until has b2 "$(frame message "$c1" again)"
    [ "$(rcli ping)" = PONG ]
}

# bats test_tags=valgrind
@test "pub/sub: a subscriber that leaves releases its backend connections" {
    start_redis 3
    write_config
    start_proxy
    local c0 s2 i
    c0=$(key_on 0 lc)
    s2=$(key_on 2 ls)
    hold h SUBSCRIBE "$c0" + PSUBSCRIBE 'lc*' + SSUBSCRIBE "$s2"
    for i in 0 1 2; do
        [ "$(pubsub_on "$i")" -ge 1 ]
    done
    [ "$(bcli 0 pubsub numsub "$c0" | sed -n 2p)" = 1 ]
    [ "$(bcli 2 pubsub shardnumsub "$s2" | sed -n 2p)" = 1 ]
    kill "$HOLD_PID"
    wait_until pubsub_gone
    [ "$(rcli publish "$c0" x)" = 0 ]
    [ "$(rcli spublish "$s2" x)" = 0 ]
    [ "$(rcli pubsub numpat)" = 0 ]
    # a subscriber that vanishes while messages flow to it: released too
    hold v SUBSCRIBE "$c0"
    for i in $(seq 1 200); do rcli publish "$c0" "msg$i" >/dev/null; done &
    local pub=$!
    kill -KILL "$HOLD_PID"
    wait "$pub"
    wait_until pubsub_gone
    [ "$(rcli ping)" = PONG ]
}

# bats test_tags=valgrind
@test "pub/sub: a reload that moves a subscriber's channel or adds a backend under its pattern closes it; the others stay" {
    start_redis 3
    write_config
    start_proxy
    local conf3 c2 kept p moved
    conf3="$(sp_tmpdir)/three.conf"
    cp "$SP_CONF" "$conf3"
    # with two backends: one channel that stays put, one on backend 2 later
    sed -i "/^backend 127.0.0.1:${REDIS_PORTS[2]}\$/d" "$SP_CONF"
    kill -HUP "$SP_PID"
    wait_until eval '[ "$(rcli info proxy | tr -d "\r" | sed -n "s/^backends://p")" = 2 ]'
    kept=$(key_for "127.0.0.1:${REDIS_PORTS[0]}" mv "$conf3") # on backend 0 under both
    moved=$(key_for "127.0.0.1:${REDIS_PORTS[2]}" mv "$conf3") # moves to the new backend
    hold k SUBSCRIBE "$kept"
    hold m SUBSCRIBE "$moved"
    hold p PSUBSCRIBE 'mv*'
    cp "$conf3" "$SP_CONF"
    kill -HUP "$SP_PID"
    wait_until closed m # PUBLISH would now go where it is not subscribed
    wait_until closed p # the new backend does not have its pattern
    [ "$(rcli publish "$kept" still)" = 1 ]
    wait_until has k "$(frame message "$kept" still)"
    run closed k
    [ "$status" -ne 0 ]
    # and back to two backends: the one whose connection's backend is gone goes too
    hold p2 PSUBSCRIBE 'mv*'
    sed -i "/^backend 127.0.0.1:${REDIS_PORTS[2]}\$/d" "$SP_CONF"
    kill -HUP "$SP_PID"
    wait_until closed p2
    [ "$(rcli publish "$kept" again)" = 1 ]
}

@test "pub/sub: WAIT's no-op PUBLISH is not heard through the proxy; a RESP3 subscriber blocked in BLPOP hears pushes at once and is closed if it loses a subscription" {
    start_redis 2
    write_config
    start_proxy
    local c0 k0 out
    c0=$(key_on 0 wn)
    k0=$(key_on 0 wnk)
    hold all PSUBSCRIBE '*'
    [ "$(rcli wait 0 0)" = 0 ]
    [ "$(rcli publish "$c0" real)" = 1 ]
    wait_until has all "$(frame pmessage '*' "$c0" real)"
    run grep -F '__shardproxy__' "$BATS_TEST_TMPDIR/all.out"
    [ "$status" -ne 0 ]
    # RESP3: subscribed, then blocked; a message is pushed while it blocks
    out="$(sp_tmpdir)/blocked"
    python3 - "$SP_PORT" "$c0" "$out" "$k0" <<'PY' &
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(20)
ch = sys.argv[2].encode()
s.sendall(b"HELLO 3\r\n")
time.sleep(0.3)
s.recv(65536)
s.sendall(b"SUBSCRIBE " + ch + b"\r\nBLPOP " + sys.argv[4].encode() + b" 0\r\n")
got = b""
try:
    while True:
        d = s.recv(65536)
        if not d:
            break
        got += d
        open(sys.argv[3], "wb").write(got)
except OSError:
    pass
open(sys.argv[3] + ".eof", "w").write("eof")
PY
    SP_EXTRA_PIDS+=($!)
    wait_until eval '[ "$(bcli 0 client list | grep -c cmd=blpop)" = 1 ]'
    [ "$(rcli publish "$c0" pushed)" = 2 ]
    wait_until grep -q pushed "$out"
    # its pub/sub connection is lost: it is closed, its block with it
    bcli 0 client kill type pubsub >/dev/null
    wait_until test -f "$out.eof"
    wait_until eval '[ "$(bcli 0 client list | grep -c cmd=blpop)" = 0 ]'
}
