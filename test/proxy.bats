#!/usr/bin/env bats
#
# proxy.bats -- shardproxy end to end, against three real redis-servers.
#
# Every test starts three throw-away redis-servers and a proxy on free
# loopback ports (test/helper.bash); teardown stops them all, even after a
# failure.  Placement is checked against `shardproxy --route` and by asking
# the backends directly with redis-cli.  Replies are compared byte for byte:
# test/resp_raw.py sends raw bytes and prints each RESP reply escaped
# (\r \n \\ \xHH) on one line, so nil ($-1) and "" ($0) differ.
# test/pipeline_check.py drives the concurrent pipelining tests.
#
# Needs redis-server/redis-cli 7.x and python3.

load helper

setup() {
    start_redis 3
    write_config
    start_proxy
}

# ------------------------------------------------------------- local helpers

# bulk STRING: the escaped RESP bulk reply holding STRING (ASCII only).
bulk() {
    local LC_ALL=C
    printf '$%d\\r\\n%s\\r\\n' "${#1}" "$1"
}

# backend_of ADDRESS: the index in REDIS_PORTS of the backend at ADDRESS.
backend_of() {
    local i
    for i in "${!REDIS_PORTS[@]}"; do
        if [[ "$1" == "127.0.0.1:${REDIS_PORTS[$i]}" ]]; then
            echo "$i"
            return 0
        fi
    done
    echo "backend_of: no backend at '$1'" >&2
    return 1
}

# route KEY...: one backend index per key, as `shardproxy --route` places it
# with the running config.  The identity printed must be the address as
# written (write_config sets no name=).
route() {
    local args=() k id addr slot out n=0
    for k in "$@"; do
        args+=(--route "$k")
    done
    out=$("$SP_BIN" -c "$SP_CONF" "${args[@]}") || return 1
    while read -r id addr slot; do
        [[ "$id" == "$addr" ]] || { echo "route: identity '$id' is not the address '$addr'" >&2; return 1; }
        [[ "$slot" =~ ^[0-9]+$ ]] || { echo "route: bad slot in '$id $addr $slot'" >&2; return 1; }
        backend_of "$addr" || return 1
        n=$((n + 1))
    done <<<"$out"
    [[ $n -eq $# ]] || { echo "route: $n lines for $# keys" >&2; return 1; }
}

# pick_keys PREFIX: fill ON0, ON1, ON2 with keys PREFIX0, PREFIX1, ... that
# --route places on backends 0, 1 and 2 (at least 4 each).
pick_keys() {
    local prefix=$1 i b keys=() where=()
    ON0=() ON1=() ON2=()
    for ((i = 0; i < 90; i++)); do
        keys+=("$prefix$i")
    done
    where=($(route "${keys[@]}")) || return 1
    for i in "${!keys[@]}"; do
        b=${where[$i]}
        eval "ON$b+=(\"\${keys[$i]}\")"
    done
    [[ ${#ON0[@]} -ge 4 && ${#ON1[@]} -ge 4 && ${#ON2[@]} -ge 4 ]] || {
        echo "pick_keys: uneven spread ${#ON0[@]} ${#ON1[@]} ${#ON2[@]}" >&2
        return 1
    }
}

# info_has SECTION REGEX: a line of the proxy's INFO SECTION matches REGEX whole.
info_has() {
    rcli info "$1" | tr -d '\r' | grep -qx -- "$2"
}

# on_backends KEY: the indexes of the backends that hold KEY, space separated.
on_backends() {
    local i found=()
    for i in "${!REDIS_PORTS[@]}"; do
        [[ "$(bcli "$i" exists "$1")" == 1 ]] && found+=("$i")
    done
    echo "${found[*]}"
}

# check_placement KEY...: write every KEY through the proxy (value "v-KEY"),
# then each backend must hold exactly the keys --route gives it, with those
# values, and every backend must hold some.
check_placement() {
    local keys=("$@") where=() i b n=${#keys[@]} want got
    where=($(route "${keys[@]}"))
    [ "${#where[@]}" -eq "$n" ]
    run raw "$n" < <(for k in "${keys[@]}"; do resp SET "$k" "v-$k"; done)
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq "$n" ]
    for i in "${!lines[@]}"; do
        [ "${lines[$i]}" = '+OK\r\n' ]
    done
    local mine=() vals=()
    for b in 0 1 2; do
        mine=() vals=()
        for i in "${!keys[@]}"; do
            if [[ ${where[$i]} == "$b" ]]; then
                mine+=("${keys[$i]}")
                vals+=("v-${keys[$i]}")
            fi
        done
        want=$(printf '%s\n' "${mine[@]}" | sort)
        got=$(bcli "$b" keys "*" | sort)
        echo "backend $b: $(wc -l <<<"$got") keys, want ${#mine[@]}"
        [ "${#mine[@]}" -gt 0 ]
        [ "$got" = "$want" ]
        # and the values written
        [ "$(bcli "$b" mget "${mine[@]}")" = "$(printf '%s\n' "${vals[@]}")" ]
    done
    # read back through the proxy
    run raw "$n" < <(for k in "${keys[@]}"; do resp GET "$k"; done)
    [ "$status" -eq 0 ]
    for i in "${!keys[@]}"; do
        [ "${lines[$i]}" = "$(bulk "v-${keys[$i]}")" ]
    done
}

# ------------------------------------------------------------- 1. placement

@test "placement: 200 keys land on exactly the backend --route names, and on no other" {
    local keys=() i
    for ((i = 0; i < 200; i++)); do
        keys+=("key:$i:$((i * 7919 % 1000))")
    done
    check_placement "${keys[@]}"
    [ "$(dbsize_sum)" -eq 200 ]
}

@test "placement: with name= identities, keys follow the names (--route shows NAME ADDRESS SLOT)" {
    stop_proxy
    {
        echo "listen 127.0.0.1:$SP_PORT"
        echo "backend 127.0.0.1:${REDIS_PORTS[0]} name=alpha"
        echo "backend 127.0.0.1:${REDIS_PORTS[1]} name=beta"
        echo "backend 127.0.0.1:${REDIS_PORTS[2]} name=gamma"
    } >"$SP_CONF"
    start_proxy
    local keys=() i id addr slot b want got names=(alpha beta gamma)
    for ((i = 0; i < 200; i++)); do
        keys+=("user:$i")
    done
    # the identity column is the name, the address column the address as written
    run "$SP_BIN" -c "$SP_CONF" --route user:0 --route user:1 --route user:2 --route user:3
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq 4 ]
    for i in 0 1 2 3; do
        read -r id addr slot <<<"${lines[$i]}"
        [[ "$slot" =~ ^[0-9]+$ ]]
        b=$(backend_of "$addr")
        [ "$id" = "${names[$b]}" ]
    done
    # route() wants identity == address; here check placement by address
    local where=()
    where=($("$SP_BIN" -c "$SP_CONF" $(printf -- '--route %s ' "${keys[@]}") | while read -r id addr slot; do backend_of "$addr"; done))
    [ "${#where[@]}" -eq 200 ]
    run raw 200 < <(for k in "${keys[@]}"; do resp SET "$k" "n-$k"; done)
    [ "$status" -eq 0 ]
    for b in 0 1 2; do
        want=$(for i in "${!keys[@]}"; do [[ ${where[$i]} == "$b" ]] && echo "${keys[$i]}"; done | sort)
        got=$(bcli "$b" keys "*" | sort)
        [ -n "$want" ]
        [ "$got" = "$want" ]
    done
}

@test "placement: {tag} keys co-locate on the tag's backend, as --route says" {
    # user1, plus the first tag --route places on each backend, so every
    # backend receives a tag group
    local cands=() where=() tags=(user1) seen=() t keys=() i b n
    for ((i = 2; i < 40; i++)); do
        cands+=("user$i")
    done
    where=($(route "${cands[@]}"))
    for i in "${!cands[@]}"; do
        if [[ -z "${seen[${where[$i]}]:-}" ]]; then
            seen[${where[$i]}]=1
            tags+=("${cands[$i]}")
        fi
    done
    [ "${#tags[@]}" -eq 4 ]
    for t in "${tags[@]}"; do
        keys=("{$t}.a" "{$t}.b" "{$t}" "x{$t}" "{$t}}.z" "{$t}{x}" "{$t}.following")
        for ((i = 0; i < 10; i++)); do
            keys+=("{$t}.$i")
        done
        n=${#keys[@]}
        b=$(route "$t")
        where=($(route "${keys[@]}"))
        echo "$t -> backend $b; its keys -> ${where[*]}"
        for i in "${!keys[@]}"; do
            [ "${where[$i]}" = "$b" ]
        done
        run raw "$n" < <(for k in "${keys[@]}"; do resp SET "$k" "$t"; done)
        [ "$status" -eq 0 ]
        for i in 0 1 2; do # all on b, none elsewhere, with their values
            if [[ $i == "$b" ]]; then
                [ "$(bcli "$i" exists "${keys[@]}")" = "$n" ]
                [ "$(bcli "$i" mget "${keys[@]}" | sort -u)" = "$t" ]
            else
                [ "$(bcli "$i" exists "${keys[@]}")" = 0 ]
            fi
        done
    done
    # the tag is what decides: with hash_tags off, user1's keys spread out
    cp "$SP_CONF" "$(sp_tmpdir)/notags.conf"
    echo "hash_tags off" >>"$(sp_tmpdir)/notags.conf"
    run "$SP_BIN" -c "$(sp_tmpdir)/notags.conf" $(for ((i = 0; i < 30; i++)); do printf -- '--route {user1}.%s ' "$i"; done)
    [ "$status" -eq 0 ]
    [ "$(printf '%s\n' "${lines[@]}" | awk '{print $1}' | sort -u | wc -l)" -eq 3 ]
    # empty braces: the whole key is hashed, and the proxy agrees with --route
    run raw 1 < <(resp SET 'foo{}{bar}' 1)
    [ "$output" = '+OK\r\n' ]
    [ "$(on_backends 'foo{}{bar}')" = "$(route 'foo{}{bar}')" ]
}

# ---------------------------------------------------------- 2. split commands

# bats test_tags=valgrind
@test "split: MGET across all backends returns values in request order, nil for missing" {
    pick_keys mg
    local a0=${ON0[0]} a1=${ON0[1]} b0=${ON1[0]} b1=${ON1[1]} c0=${ON2[0]} c1=${ON2[1]}
    local m0=${ON0[2]} m2=${ON2[2]}
    bcli 0 set "$a0" va0 >/dev/null
    bcli 0 set "$a1" "" >/dev/null # empty string, not nil
    bcli 1 set "$b0" $'b\r\n0' >/dev/null
    bcli 1 set "$b1" vb1 >/dev/null
    bcli 2 set "$c0" vc0 >/dev/null
    bcli 2 set "$c1" "v c1" >/dev/null
    run raw 1 < <(resp MGET "$c0" "$a0" "$m0" "$b0" "$a1" "$m2" "$c1" "$b1" "$a0")
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$output" = '*9\r\n$3\r\nvc0\r\n$3\r\nva0\r\n$-1\r\n$4\r\nb\r\n0\r\n$0\r\n\r\n$-1\r\n$4\r\nv c1\r\n$3\r\nvb1\r\n$3\r\nva0\r\n' ]
    # all missing, on several backends
    run raw 1 < <(resp MGET "$m0" "$m2" "${ON1[3]}")
    [ "$output" = '*3\r\n$-1\r\n$-1\r\n$-1\r\n' ]
    # one backend only
    run raw 1 < <(resp MGET "$a1" "$a0")
    [ "$output" = '*2\r\n$0\r\n\r\n$3\r\nva0\r\n' ]
    # a wrong-type key is nil in MGET, as in Redis
    bcli 1 rpush "${ON1[2]}" x >/dev/null
    run raw 1 < <(resp MGET "${ON1[2]}" "$c0")
    [ "$output" = '*2\r\n$-1\r\n$3\r\nvc0\r\n' ]
}

# bats test_tags=valgrind
@test "split: MSET writes each pair to its own backend; the last of a repeated key wins" {
    pick_keys ms
    local args=() k i
    for k in "${ON0[@]:0:3}" "${ON1[@]:0:3}" "${ON2[@]:0:3}"; do
        args+=("$k" "val-$k")
    done
    args+=("${ON1[0]}" "second")
    run raw 1 < <(resp MSET "${args[@]}")
    echo "$output"
    [ "$output" = '+OK\r\n' ]
    for i in 0 1 2; do
        eval "local mine=(\"\${ON$i[@]:0:3}\")"
        for k in "${mine[@]}"; do
            [ "$(on_backends "$k")" = "$i" ]
            if [[ "$k" == "${ON1[0]}" ]]; then
                [ "$(bcli "$i" get "$k")" = second ]
            else
                [ "$(bcli "$i" get "$k")" = "val-$k" ]
            fi
        done
    done
    [ "$(dbsize_sum)" -eq 9 ]
    run raw 2 < <(resp MSET a; resp MSET "${ON0[0]}" 1 "${ON1[0]}")
    [ "${lines[0]}" = "-ERR wrong number of arguments for 'mset' command\\r\\n" ]
    [ "${lines[1]}" = "-ERR wrong number of arguments for 'mset' command\\r\\n" ]
    [ "$(bcli 0 get "${ON0[0]}")" = "val-${ON0[0]}" ]
}

# bats test_tags=valgrind
@test "split: DEL, UNLINK, EXISTS, TOUCH sum their backends' counts" {
    pick_keys dl
    local k
    for k in "${ON0[@]:0:3}"; do bcli 0 set "$k" x >/dev/null; done
    for k in "${ON1[@]:0:3}"; do bcli 1 set "$k" x >/dev/null; done
    for k in "${ON2[@]:0:3}"; do bcli 2 set "$k" x >/dev/null; done
    local a0=${ON0[0]} a1=${ON0[1]} a2=${ON0[2]} b0=${ON1[0]} b1=${ON1[1]} b2=${ON1[2]}
    local c0=${ON2[0]} c1=${ON2[1]} c2=${ON2[2]} m0=${ON0[3]} m1=${ON1[3]} m2=${ON2[3]}
    run raw 8 < <(
        resp EXISTS "$a0" "$a0" "$b0" "$c0" "$m1" "$c0" # duplicates count, as in Redis
        resp EXISTS "$m0" "$m1" "$m2"
        resp TOUCH "$a0" "$a0" "$b0" "$m2" "$c0"
        resp DEL "$a0" "$b0" "$c0" "$m0" "$a0"          # a0 deleted once
        resp EXISTS "$a0" "$b0" "$c0" "$a1" "$b1" "$c1"
        resp UNLINK "$a1" "$b1" "$m2" "$c1" "$c2"
        resp DEL "$m0" "$m1" "$m2"
        resp DEL
    )
    echo "$output"
    [ "$status" -eq 0 ]
    [ "${lines[0]}" = ':5\r\n' ]
    [ "${lines[1]}" = ':0\r\n' ]
    [ "${lines[2]}" = ':4\r\n' ]
    [ "${lines[3]}" = ':3\r\n' ]
    [ "${lines[4]}" = ':3\r\n' ]
    [ "${lines[5]}" = ':4\r\n' ]
    [ "${lines[6]}" = ':0\r\n' ]
    [ "${lines[7]}" = "-ERR wrong number of arguments for 'del' command\\r\\n" ]
    # what is left, asked of the backends themselves
    [ "$(bcli 0 exists "$a0" "$a1" "$a2")" = 1 ]
    [ "$(bcli 1 exists "$b0" "$b1" "$b2")" = 1 ]
    [ "$(bcli 2 exists "$c0" "$c1" "$c2")" = 0 ]
    [ "$(dbsize_sum)" -eq 2 ]
}

@test "split: DBSIZE is the sum of the backends' DBSIZE" {
    run raw 1 < <(resp DBSIZE)
    [ "$output" = ':0\r\n' ]
    local i args=()
    for ((i = 0; i < 57; i++)); do
        args+=("db:$i" "$i")
    done
    run raw 1 < <(resp MSET "${args[@]}")
    [ "$output" = '+OK\r\n' ]
    bcli 2 set only-on-2 x >/dev/null # written behind the proxy's back
    [ "$(dbsize_sum)" -eq 58 ]
    for i in 0 1 2; do
        [ "$(bcli "$i" dbsize)" -gt 0 ]
    done
    run raw 1 < <(resp DBSIZE)
    [ "$output" = ':58\r\n' ]
}

# -------------------------------------------------------------- 3. CROSSSLOT

@test "CROSSSLOT: RENAME across backends is refused and changes nothing; hash tags make it work" {
    pick_keys rn
    local a=${ON0[0]} b=${ON1[0]} c=${ON0[1]} t
    bcli 0 set "$a" va >/dev/null
    run raw 1 < <(resp RENAME "$a" "$b")
    echo "$output"
    [ "$output" = "-CROSSSLOT Keys in request don't hash to the same backend\\r\\n" ]
    [ "$(on_backends "$a")" = 0 ]
    [ "$(bcli 0 get "$a")" = va ]
    [ "$(on_backends "$b")" = "" ]
    [ "$(dbsize_sum)" -eq 1 ]
    # same backend, no tag needed
    run raw 1 < <(resp RENAME "$a" "$c")
    [ "$output" = '+OK\r\n' ]
    [ "$(on_backends "$c")" = 0 ]
    [ "$(on_backends "$a")" = "" ]
    # with a hash tag
    t=$(route grp)
    run raw 3 < <(resp SET '{grp}a' tv; resp RENAME '{grp}a' '{grp}b'; resp GET '{grp}b')
    [ "${lines[0]}" = '+OK\r\n' ]
    [ "${lines[1]}" = '+OK\r\n' ]
    [ "${lines[2]}" = '$2\r\ntv\r\n' ]
    [ "$(on_backends '{grp}b')" = "$t" ]
    [ "$(on_backends '{grp}a')" = "" ]
}

@test "CROSSSLOT: SUNIONSTORE across backends is refused and creates nothing; hash tags make it work" {
    pick_keys su
    local s1=${ON0[0]} s2=${ON1[0]} s3=${ON0[1]} dst=${ON2[0]} dst0=${ON0[2]} t
    bcli 0 sadd "$s1" a b >/dev/null
    bcli 1 sadd "$s2" b c >/dev/null
    bcli 0 sadd "$s3" c d >/dev/null
    run raw 4 < <(
        resp SUNIONSTORE "$dst" "$s1" "$s2"  # three backends
        resp SUNIONSTORE "$dst" "$s1" "$s3"  # sources together, destination elsewhere
        resp SUNIONSTORE "$dst0" "$s1" "$s3" # all on backend 0
        resp SMEMBERS "$dst0"
    )
    echo "$output"
    [ "${lines[0]}" = "-CROSSSLOT Keys in request don't hash to the same backend\\r\\n" ]
    [ "${lines[1]}" = "-CROSSSLOT Keys in request don't hash to the same backend\\r\\n" ]
    [ "${lines[2]}" = ':4\r\n' ]
    [[ "${lines[3]}" == '*4\r\n'* ]]
    [ "$(on_backends "$dst")" = "" ]
    [ "$(bcli 0 smembers "$dst0" | sort | tr '\n' ' ')" = "a b c d " ]
    t=$(route set)
    run raw 3 < <(resp SADD '{set}1' x y; resp SADD '{set}2' y z; resp SUNIONSTORE '{set}dst' '{set}1' '{set}2')
    [ "${lines[2]}" = ':3\r\n' ]
    [ "$(bcli "$t" smembers '{set}dst' | sort | tr '\n' ' ')" = "x y z " ]
    [ "$(on_backends '{set}dst')" = "$t" ]
}

# bats test_tags=valgrind
@test "CROSSSLOT: EVAL with keys on two backends is refused; on one backend it runs; with no keys it runs on the first backend" {
    pick_keys ev
    local a=${ON0[0]} b=${ON1[0]} c=${ON0[1]}
    local script="redis.call('set', KEYS[1], ARGV[1]); redis.call('set', KEYS[2], ARGV[1]); return 7"
    bcli 0 set "$a" old >/dev/null
    run raw 6 < <(
        resp EVAL "$script" 2 "$a" "$b" new
        resp EVAL "$script" 2 "$a" "$c" new
        resp EVAL "$script" 2 '{ev}x' '{ev}y' tagged
        resp EVAL "redis.call('set', 'ev:keyless', 'here'); return 1" 0
        resp EVAL "return redis.call('get', KEYS[1])" 1 "$a"
        resp EVALSHA 0123456789012345678901234567890123456789 2 "$a" "$b"
    )
    echo "$output"
    [ "${lines[0]}" = "-CROSSSLOT Keys in request don't hash to the same backend\\r\\n" ]
    [ "${lines[1]}" = ':7\r\n' ]
    [ "${lines[2]}" = ':7\r\n' ]
    [ "${lines[3]}" = ':1\r\n' ]
    [ "$(bcli 0 get ev:keyless)" = here ] # the first backend of the configuration
    [ "${lines[4]}" = '$3\r\nnew\r\n' ]
    [ "${lines[5]}" = "-CROSSSLOT Keys in request don't hash to the same backend\\r\\n" ]
    # the refused script touched nothing on backend 1
    [ "$(on_backends "$b")" = "" ]
    [ "$(bcli 0 get "$c")" = new ]
    local t
    t=$(route ev)
    [ "$(bcli "$t" get '{ev}x')" = tagged ]
    [ "$(bcli "$t" get '{ev}y')" = tagged ]
}

# -------------------------------------------------------- 4. local commands

# bats test_tags=valgrind
@test "local: PING, ECHO, SELECT, HELLO, CLIENT, AUTH, COMMAND COUNT, TIME, INFO on one connection" {
    local ver rver count now
    ver=$("$SP_BIN" -V | awk '{print $2}')
    [ -n "$ver" ]
    rver=$(bcli 0 info server | tr -d '\r' | sed -n 's/^redis_version://p')
    [ -n "$rver" ]
    count=$(bcli 0 command count)
    now=$(date +%s)
    run raw 24 < <(
        resp PING
        resp PING 'hello world'
        resp ECHO 'hi there'
        resp ECHO ''
        resp SELECT 0
        resp SELECT 16
        resp CLIENT ID
        resp HELLO
        resp HELLO 2
        resp HELLO 4
        resp CLIENT GETNAME
        resp CLIENT SETNAME myname
        resp CLIENT GETNAME
        resp CLIENT SETINFO lib-name x
        resp AUTH x
        resp COMMAND COUNT
        resp TIME
        resp INFO
        resp PING
        resp INFO server
        resp HELLO 3
        resp CLIENT SETNAME ''
        resp CLIENT GETNAME
        resp INFO proxy
    )
    printf "%s\n" "${lines[@]}"
    [ "$status" -eq 0 ]
    [ "${lines[0]}" = '+PONG\r\n' ]
    [ "${lines[1]}" = '$11\r\nhello world\r\n' ]
    [ "${lines[2]}" = '$8\r\nhi there\r\n' ]
    [ "${lines[3]}" = '$0\r\n\r\n' ]
    [ "${lines[4]}" = '+OK\r\n' ]
    [ "${lines[5]}" = '-ERR DB index is out of range\r\n' ]
    [[ "${lines[6]}" =~ ^:([0-9]+)\\r\\n$ ]]
    local id=${BASH_REMATCH[1]}
    # the HELLO reply up to its proto value, and after it
    local h1="\$6\\r\\nserver\\r\\n\$5\\r\\nredis\\r\\n\$7\\r\\nversion\\r\\n$(bulk "$rver")\$5\\r\\nproto\\r\\n:"
    local h2="\\r\\n\$2\\r\\nid\\r\\n:$id\\r\\n\$4\\r\\nmode\\r\\n\$10\\r\\nstandalone\\r\\n\$4\\r\\nrole\\r\\n\$6\\r\\nmaster\\r\\n\$7\\r\\nmodules\\r\\n*0\\r\\n"
    [ "${lines[7]}" = "*14\\r\\n${h1}2${h2}" ]
    [ "${lines[8]}" = "${lines[7]}" ]
    [ "${lines[9]}" = '-NOPROTO unsupported protocol version\r\n' ]
    [ "${lines[10]}" = '$-1\r\n' ]
    [ "${lines[11]}" = '+OK\r\n' ]
    [ "${lines[12]}" = '$6\r\nmyname\r\n' ]
    [ "${lines[13]}" = '+OK\r\n' ]
    [ "${lines[14]}" = '-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n' ]
    [ "${lines[15]}" = ":$count\\r\\n" ]
    [[ "${lines[16]}" =~ ^\*2\\r\\n\$[0-9]+\\r\\n([0-9]+)\\r\\n\$[0-9]+\\r\\n[0-9]+\\r\\n$ ]]
    local t=${BASH_REMATCH[1]}
    ((t >= now - 5 && t <= now + 5))
    [[ "${lines[17]}" == '$'*'# Server\r\n'*"redis_version:$rver\\r\\n"*'# Proxy\r\n'*"shardproxy_version:$ver\\r\\n"* ]]
    [ "${lines[18]}" = '+PONG\r\n' ]
    [[ "${lines[19]}" == '$'*'# Server\r\nredis_version:'"$rver"'\r\nredis_mode:standalone\r\n'* ]]
    [[ "${lines[19]}" != *'# Clients'* ]]
    # RESP3 from HELLO 3 on: the map, a null name, INFO as a verbatim string
    [ "${lines[20]}" = "%7\\r\\n${h1}3${h2}" ]
    [ "${lines[21]}" = '+OK\r\n' ]
    [ "${lines[22]}" = '_\r\n' ]
    [[ "${lines[23]}" == '='*'\r\ntxt:# Proxy\r\nshardproxy_version:'"$ver"'\r\n'* ]]
    # (a wrong INFO bulk length would have shifted the replies after it)
    # CLIENT ID differs per connection
    run raw 1 < <(resp CLIENT ID)
    [[ "$output" =~ ^:([0-9]+)\\r\\n$ ]]
    [ "${BASH_REMATCH[1]}" != "$id" ]
}

# bats test_tags=valgrind
@test "local: QUIT answers +OK after the earlier pipelined replies, then the proxy closes" {
    pick_keys q
    bcli 1 set "${ON1[0]}" one >/dev/null
    run raw 5 --eof < <(
        resp GET "${ON1[0]}"
        resp MGET "${ON0[0]}" "${ON1[0]}" "${ON2[0]}"
        resp SET "${ON2[1]}" two
        resp PING
        resp QUIT
        resp SET "${ON0[1]}" after-quit
        resp PING
    )
    echo "$output"
    [ "$status" -eq 0 ]
    [ "${lines[0]}" = '$3\r\none\r\n' ]
    [ "${lines[1]}" = '*3\r\n$-1\r\n$3\r\none\r\n$-1\r\n' ]
    [ "${lines[2]}" = '+OK\r\n' ]
    [ "${lines[3]}" = '+PONG\r\n' ]
    [ "${lines[4]}" = '+OK\r\n' ]
    [ "${lines[5]}" = '<EOF>' ]
    [ "${#lines[@]}" -eq 6 ]
    [ "$(bcli 2 get "${ON2[1]}")" = two ]
    [ "$(on_backends "${ON0[1]}")" = "" ] # nothing after QUIT runs
    # the proxy is fine
    [ "$(rcli ping)" = PONG ]
}

# ------------------------------------------ 5. refused and unknown commands

# bats test_tags=valgrind
@test "refused: each unsupported command gets one -ERR naming it, and the connection stays usable" {
    pick_keys rf
    bcli 0 set "${ON0[0]}" keep >/dev/null
    bcli 0 rpush "${ON0[1]}" item >/dev/null
    run raw 22 < <(
        resp CONFIG SET maxmemory 1
        resp PING
        resp SHUTDOWN
        resp DEBUG SLEEP 0
        resp REPLICAOF no one
        resp BGSAVE
        resp PING
        resp CLIENT TRACKING on
        resp PING
        resp FAILOVER
        resp CLUSTER INFO
        resp ACL SETUSER someone
        resp SAVE
        resp FOO a b
        resp GET
        resp get a b
        resp EXEC
        resp CLIENT PAUSE 10
        resp XREAD COUNT 1 STREAMS "${ON0[2]}" 0
        resp PING
        resp GET "${ON0[0]}"
        resp LLEN "${ON0[1]}"
    )
    printf '%s\n' "${lines[@]}"
    [ "$status" -eq 0 ]
    [ "${lines[0]}" = "-ERR 'config|set' is not supported by the proxy\\r\\n" ]
    [ "${lines[1]}" = '+PONG\r\n' ]
    [ "${lines[2]}" = "-ERR 'shutdown' is not supported by the proxy\\r\\n" ]
    [ "${lines[3]}" = "-ERR 'debug' is not supported by the proxy\\r\\n" ]
    [ "${lines[4]}" = "-ERR 'replicaof' is not supported by the proxy\\r\\n" ]
    [ "${lines[5]}" = "-ERR 'bgsave' is not supported by the proxy\\r\\n" ]
    [ "${lines[6]}" = '+PONG\r\n' ]
    [ "${lines[7]}" = "-ERR 'client|tracking' is not supported by the proxy\\r\\n" ]
    [ "${lines[8]}" = '+PONG\r\n' ]
    [ "${lines[9]}" = "-ERR 'failover' is not supported by the proxy\\r\\n" ]
    [ "${lines[10]}" = "-ERR 'cluster|info' is not supported by the proxy\\r\\n" ]
    [ "${lines[11]}" = "-ERR 'acl|setuser' is not supported by the proxy\\r\\n" ]
    [ "${lines[12]}" = "-ERR 'save' is not supported by the proxy\\r\\n" ]
    [ "${lines[13]}" = "-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \\r\\n" ]
    [ "${lines[14]}" = "-ERR wrong number of arguments for 'get' command\\r\\n" ]
    [ "${lines[15]}" = "-ERR wrong number of arguments for 'get' command\\r\\n" ]
    [ "${lines[16]}" = '-ERR EXEC without MULTI\r\n' ] # Redis's reply
    [ "${lines[17]}" = "-ERR 'client|pause' is not supported by the proxy\\r\\n" ]
    [ "${lines[18]}" = '*-1\r\n' ] # XREAD without BLOCK is served
    [ "${lines[19]}" = '+PONG\r\n' ]
    [ "${lines[20]}" = '$4\r\nkeep\r\n' ]
    [ "${lines[21]}" = ':1\r\n' ]
    # nothing was flushed or moved on the backends
    [ "$(bcli 0 get "${ON0[0]}")" = keep ]
    [ "$(bcli 0 -n 1 dbsize)" = 0 ]
    [ "$(dbsize_sum)" -eq 2 ]
    # and the same through redis-cli reading several commands from stdin
    run bash -c "printf 'config set maxmemory 1\nping\nfoo a b\nping\n' | timeout 10 redis-cli -p $SP_PORT"
    [ "${lines[0]}" = "ERR 'config|set' is not supported by the proxy" ]
    [ "${lines[1]}" = PONG ]
    [ "${lines[2]}" = "ERR unknown command 'foo', with args beginning with: 'a' 'b' " ]
    [ "${lines[3]}" = PONG ]
}

# ------------------------------------------------------- 5b. transactions

# txn_script A B: a pipeline of transactions over keys A and B, one reply
# per command (TXN_REPLIES): queued writes, errors inside EXEC, an empty
# transaction, queue-time errors (EXECABORT), what Redis answers at once
# inside MULTI (nested MULTI, WATCH), EXEC and DISCARD without MULTI,
# UNWATCH with nothing watched, RESET inside MULTI.
TXN_REPLIES=47
txn_script() {
    local a=$1 b=$2
    resp MULTI
    resp SET "$a" 1
    resp INCR "$b"
    resp PING
    resp ECHO hi
    resp GET "$a"
    resp LPUSH "$a" z # WRONGTYPE, inside the EXEC array
    resp EXEC
    resp MULTI
    resp EXEC # empty: *0
    resp MULTI
    resp SET "$a" 2
    resp FOO
    resp EXEC # EXECABORT: nothing of it applies
    resp GET "$a"
    resp MULTI
    resp GET # wrong arity: EXECABORT
    resp EXEC
    resp MULTI
    resp MULTI
    resp WATCH "$a"
    resp SET "$a" 3
    resp EXEC # those two errors do not abort it
    resp EXEC
    resp DISCARD
    resp MULTI
    resp SET "$b" x
    resp DISCARD
    resp GET "$b"
    resp MULTI
    resp INCR "$b"
    resp EXEC x # wrong arity: rejected, and the transaction stays open
    resp EXEC
    resp MULTI
    resp INCR "$b"
    resp DISCARD
    resp UNWATCH
    resp MULTI
    resp UNWATCH
    resp EXEC
    resp CLIENT SETNAME tx
    resp MULTI
    resp SET "$a" 4
    resp RESET # ends the transaction at once (and clears the name)
    resp CLIENT GETNAME
    resp EXEC
    resp GET "$a"
}

# bats test_tags=valgrind
@test "transactions: MULTI, EXEC, DISCARD answer as a real redis-server does, byte for byte" {
    pick_keys tx
    local a=${ON0[0]} b=${ON0[1]} proxy
    run raw "$TXN_REPLIES" < <(txn_script "$a" "$b")
    printf '%s\n' "${lines[@]}"
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq "$TXN_REPLIES" ]
    [ "${lines[7]}" = '*6\r\n+OK\r\n:1\r\n+PONG\r\n$2\r\nhi\r\n$1\r\n1\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n' ]
    [ "$(bcli 0 get "$a")" = 3 ]
    proxy=("${lines[@]}")
    # the same bytes straight at a redis-server that starts empty too
    bcli 0 flushall >/dev/null
    run timeout 60 python3 "$BATS_TEST_DIRNAME/resp_raw.py" "${REDIS_PORTS[0]}" "$TXN_REPLIES" \
        < <(txn_script "$a" "$b")
    [ "$status" -eq 0 ]
    local i
    for i in "${!lines[@]}"; do
        [ "${proxy[i]}" = "${lines[i]}" ] || {
            echo "reply $i: proxy '${proxy[i]}', redis '${lines[i]}'"
            return 1
        }
    done
    [ "${#proxy[@]}" -eq "${#lines[@]}" ]
}

# bats test_tags=valgrind
@test "transactions: keys on two backends, or a command without one backend, abort at EXEC" {
    pick_keys tc
    run raw 12 < <(
        resp MULTI
        resp SET "${ON0[0]}" v
        resp SET "${ON1[0]}" v # another backend than the first key's
        resp EXEC
        resp MULTI
        resp MSET "${ON0[1]}" v "${ON2[0]}" v # one command, two backends
        resp EXEC
        resp MULTI
        resp DBSIZE # every backend: no one backend to run it on
        resp SET "${ON0[2]}" v
        resp EXEC
        resp WATCH "${ON0[0]}" # outside MULTI: served (on a dedicated connection)
    )
    printf '%s\n' "${lines[@]}"
    [ "$status" -eq 0 ]
    local cross='-CROSSSLOT Keys in request don'"'"'t hash to the same backend\r\n'
    local abort='-EXECABORT Transaction discarded because of previous errors.\r\n'
    [ "${lines[0]}" = '+OK\r\n' ]
    [ "${lines[1]}" = '+QUEUED\r\n' ]
    [ "${lines[2]}" = "$cross" ]
    [ "${lines[3]}" = "$abort" ]
    [ "${lines[5]}" = "$cross" ]
    [ "${lines[6]}" = "$abort" ]
    [ "${lines[8]}" = "-ERR 'dbsize' cannot be queued in a transaction by the proxy\r\n" ]
    [ "${lines[9]}" = '+QUEUED\r\n' ]
    [ "${lines[10]}" = "$abort" ]
    [ "${lines[11]}" = '+OK\r\n' ]
    # a client that leaves inside MULTI: what it queued is dropped
    run raw 2 < <(
        resp MULTI
        resp SET "${ON0[3]}" v
    )
    [ "$status" -eq 0 ]
    [ "${lines[1]}" = '+QUEUED\r\n' ]
    [ "$(dbsize_sum)" -eq 0 ] # nothing of them ran anywhere
}

@test "transactions: nothing runs before EXEC; other clients are served meanwhile" {
    pick_keys th
    run timeout 60 python3 "$BATS_TEST_DIRNAME/proxy_tool.py" txn_hold "$SP_PORT" \
        "${REDIS_PORTS[0]}" "${ON0[0]}" "${ON0[1]}"
    printf '%s\n' "${lines[@]}"
    [ "$status" -eq 0 ]
}

@test "transactions: a reload between MULTI and EXEC aborts the transaction" {
    pick_keys tr
    run timeout 60 python3 "$BATS_TEST_DIRNAME/proxy_tool.py" txn_reload "$SP_PORT" "$SP_PID" \
        "${ON0[0]}" "$SP_LOG"
    printf '%s\n' "${lines[@]}"
    [ "$status" -eq 0 ]
    [ "$(bcli 0 get "${ON0[0]}")" = w ]
}

@test "transactions: 20 clients' pipelined transactions and a bystander on one backend stay atomic" {
    pick_keys ta
    run timeout 120 python3 "$BATS_TEST_DIRNAME/proxy_tool.py" txn_atomic "$SP_PORT" "${ON1[0]}" 20 100
    printf '%s\n' "${lines[@]}"
    [ "$status" -eq 0 ]
    [ "$(bcli 1 get "${ON1[0]}")" = 4100 ]
}

@test "transactions: redis-py's transactional pipeline runs whole, or fails whole and applies nothing" {
    /usr/bin/python3 -c 'import redis' 2>/dev/null ||
        skip "no redis-py for /usr/bin/python3 (apt-get install python3-redis)"
    pick_keys rp
    run timeout 60 /usr/bin/python3 "$BATS_TEST_DIRNAME/proxy_tool.py" transaction "$SP_PORT" \
        "${ON0[0]}" "${ON0[1]}" "${ON1[0]}"
    printf '%s\n' "${lines[@]}"
    [ "$status" -eq 0 ]
    [ "$(bcli 0 get "${ON0[0]}")" = after ]
    [ "$(bcli 0 get "${ON0[1]}")" = 1 ]
    [ "$(bcli 1 exists "${ON1[0]}")" = 0 ]
}

@test "transactions: ioredis and node-redis multi() run whole, or fail whole and apply nothing" {
    [[ -d "$BATS_TEST_DIRNAME/clients/node_modules/ioredis" ]] ||
        skip "no ioredis/node-redis in test/clients/node_modules (make deps installs them with npm)"
    pick_keys nm
    run timeout 60 node "$BATS_TEST_DIRNAME/clients/txn.js" "$SP_PORT" "${ON0[0]}" "${ON0[1]}" "${ON1[0]}"
    printf '%s\n' "${lines[@]}"
    [ "$status" -eq 0 ]
    [ "$(bcli 0 get "${ON0[0]}")" = nr ]
    [ "$(bcli 0 get "${ON0[1]}")" = 2 ]
    [ "$(bcli 1 exists "${ON1[0]}")" = 0 ]
}

# --------------------------------------------------------- 6. inline commands

# bats test_tags=valgrind
@test "inline: telnet-style commands, with quoting, are served and routed by key" {
    pick_keys il
    local a=${ON0[0]} b=${ON1[0]} c=${ON2[0]} ab
    ab=$(route 'a b')
    run raw 11 < <(
        printf 'SET %s va\r\nSET %s vb\r\nSET %s vc\r\n' "$a" "$b" "$c"
        printf 'GET %s\r\n' "$b"
        printf 'MGET %s %s %s missing\r\n' "$c" "$a" "$b"
        printf 'SET "a b" "c d"\r\n'
        printf 'GET "a b"\r\n'
        printf "SET 'q x' \"e\\\\x41\\\\n\"\r\n" # SET 'q x' "e\x41\n"
        printf "GET 'q x'\r\n"
        printf '\r\n   \r\nPING\n' # blank lines are skipped; a bare \n ends a line
        printf '*1\r\n$4\r\nPING\r\n'   # RESP and inline mix
    )
    printf '%s\n' "${lines[@]}"
    [ "$status" -eq 0 ]
    [ "${lines[0]}" = '+OK\r\n' ]
    [ "${lines[1]}" = '+OK\r\n' ]
    [ "${lines[2]}" = '+OK\r\n' ]
    [ "${lines[3]}" = '$2\r\nvb\r\n' ]
    [ "${lines[4]}" = '*4\r\n$2\r\nvc\r\n$2\r\nva\r\n$2\r\nvb\r\n$-1\r\n' ]
    [ "${lines[5]}" = '+OK\r\n' ]
    [ "${lines[6]}" = '$3\r\nc d\r\n' ]
    [ "${lines[7]}" = '+OK\r\n' ]
    [ "${lines[8]}" = '$3\r\neA\n\r\n' ]
    [ "${lines[9]}" = '+PONG\r\n' ]
    [ "${lines[10]}" = '+PONG\r\n' ]
    [ "$(on_backends "$a")" = 0 ]
    [ "$(on_backends "$b")" = 1 ]
    [ "$(on_backends "$c")" = 2 ]
    [ "$(bcli 2 get "$c")" = vc ]
    [ "$(on_backends 'a b')" = "$ab" ]
    [ "$(bcli "$ab" get 'a b')" = 'c d' ]
    [ "$(on_backends 'q x')" = "$(route 'q x')" ]
    [ "$(bcli "$(route 'q x')" strlen 'q x')" = 3 ]
}

# --------------------------------------------------------- 7. protocol errors

# bats test_tags=valgrind
@test "protocol errors: one -ERR Protocol error reply, then close; another client is not disturbed" {
    bcli "$(route pk)" set pk pv >/dev/null
    run timeout 60 python3 "$BATS_TEST_DIRNAME/proxy_tool.py" protocol_errors "$SP_PORT"
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$(rcli ping)" = PONG ]
    _sp_alive "$SP_PID"
}

# ------------------------------------------------------------ 8. binary data

# bats test_tags=valgrind
@test "binary: keys and values with CR LF, NUL and 0xff round-trip; a 32 MiB value round-trips" {
    "$SP_BIN" -c "$SP_CONF" --table >"$(sp_tmpdir)/table"
    run timeout 60 python3 "$BATS_TEST_DIRNAME/proxy_tool.py" binary "$SP_PORT" "${REDIS_PORTS[@]}" \
        "$(sp_tmpdir)/table"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" != *FAIL* ]]
}

# ------------------------------------------------------ 9. concurrent pipelines

@test "pipelines: 20 concurrent clients x 5,000 mixed commands each get exactly their own replies" {
    run timeout 120 python3 "$BATS_TEST_DIRNAME/pipeline_check.py" "$SP_PORT" --clients 20 --commands 5000
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$output" = "OK clients=20 commands=5000 vanished=0" ]
    local i
    for i in 0 1 2; do # the keys were spread over every backend
        [ "$(bcli "$i" dbsize)" -gt 100 ]
    done
    _sp_alive "$SP_PID"
}

# ------------------------------------------------------- 10. vanishing client

# bats test_tags=valgrind
@test "vanishing: clients that send 10,000 requests and leave without reading disturb nobody" {
    run timeout 120 python3 "$BATS_TEST_DIRNAME/pipeline_check.py" "$SP_PORT" \
        --clients 2 --commands 20000 --vanish 4 --vanish-requests 10000 --prefix van
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$output" = "OK clients=2 commands=20000 vanished=4" ]
    _sp_alive "$SP_PID"
    [ "$(rcli ping)" = PONG ]
    # the vanished clients are gone and the orphaned replies were drained
    wait_until info_has clients connected_clients:1
    wait_until info_has backends "backend0:.*,inflight=0"
    wait_until info_has backends "backend1:.*,inflight=0"
    wait_until info_has backends "backend2:.*,inflight=0"
    run timeout 60 python3 "$BATS_TEST_DIRNAME/pipeline_check.py" "$SP_PORT" \
        --clients 3 --commands 3000 --prefix after
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$output" = "OK clients=3 commands=3000 vanished=0" ]
    _sp_alive "$SP_PID"
}
