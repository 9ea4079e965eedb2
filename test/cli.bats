#!/usr/bin/env bats
# The command line: -t, config errors, --table, --route, -V, -h.
# Config files only; no redis-server and no network needed.

load helper

setup() {
    CONF="$(sp_tmpdir)/test.conf"
}

# Write $CONF from the arguments, one line each.
conf() {
    printf '%s\n' "$@" >"$CONF"
}

# slot KEY [M] [on|off]: the slot of KEY computed here, independently of the
# program: MurmurHash64A (seed 0xc70f6907) of the hash tag, mod M (65537), by
# test/resp.py.
slot() {
    python3 "$BATS_TEST_DIRNAME/resp.py" slot "$@"
}

# Expect `-t` to fail with "$CONF:LINE: ..." and exit status 1.
expect_error_at() {
    local line=$1
    run "$SP_BIN" -c "$CONF" -t
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"$CONF:$line: "* ]]
}

@test "-t accepts a minimal config" {
    conf "listen 127.0.0.1:6380" "backend 127.0.0.1:7001"
    run "$SP_BIN" -c "$CONF" -t
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"configuration OK"* ]]
}

# The directive names of the config_directives[] table in shardproxy.c, one a
# line: the leading {"name", of each row between the table's first line and
# its closing }; (read at test time, so a new directive is covered at once).
config_directive_names() {
    sed -n '/^static const struct config_directive config_directives\[\] = {/,/^};/p' \
        "$SP_ROOT/shardproxy.c" | sed -n 's/^[[:space:]]*{[[:space:]]*"\([a-z_0-9]*\)",.*/\1/p'
}

@test "-t accepts every directive, comments and blank lines" {
    # one sample line (or more) per directive; a directive of the table
    # without a sample here fails the test until one is added
    local -A sample=(
        [listen]="listen 127.0.0.1:6380        # repeatable|listen $(sp_tmpdir)/sp.sock"
        [backend]="backend 127.0.0.1:7001       # in order|backend 127.0.0.1:7002 weight=2 name=cache-b|backend 127.0.0.1:7003 name=cache-c weight=3 password=pw3 user=u3 db=2"
        [hash_tags]="   hash_tags off"
        [table_size]="table_size 65537"
        [timeout]="timeout 1000"
        [connect_timeout]="connect_timeout 1000"
        [backend_connections]="backend_connections 1"
        [max_clients]="max_clients 10000"
        [client_max_pending]="client_max_pending 1000"
        [client_timeout]="client_timeout 30"
        [client_output_limit]="client_output_limit 1gb"
        [client_output_soft_limit]="client_output_soft_limit 64mb"
        [client_output_soft_seconds]="client_output_soft_seconds 60"
        [shutdown_grace]="shutdown_grace 5000"
        [max_request_size]="max_request_size 512mb"
        [log_level]="log_level info"
        [admin]="admin $(sp_tmpdir)/admin.sock"
        [admin_mode]="admin_mode 0660"
        [password]="password s3cret-A|password s3cret-B # repeatable: rotation"
        [backend_password]="backend_password backend-s3cret"
        [backend_user]="backend_user proxyuser"
        [backend_db]="backend_db 1"
        [workers]="workers auto"
        [databases]="databases 16"
        [pool_idle_timeout]="pool_idle_timeout 60"
        [blocking_connections]="blocking_connections 1000"
    )
    local names=() name lines=("# full example" "") missing=() more=()
    mapfile -t names < <(config_directive_names)
    echo "config_directives[]: ${#names[@]} directives: ${names[*]}"
    [ "${#names[@]}" -ge 19 ] # the table was found and read
    for name in "${names[@]}"; do
        if [[ -z "${sample[$name]:-}" ]]; then
            missing+=("$name")
            continue
        fi
        IFS='|' read -ra more <<<"${sample[$name]}"
        lines+=("${more[@]}")
    done
    if ((${#missing[@]})); then
        echo "no sample line in this test for directive(s): ${missing[*]}"
        return 1
    fi
    conf "${lines[@]}"
    cat "$CONF"
    # every directive of the table really is in the file
    for name in "${names[@]}"; do
        grep -Eq "^[[:space:]]*$name[[:space:]]" "$CONF" || { echo "$name not written"; return 1; }
    done
    run "$SP_BIN" -c "$CONF" -t
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"configuration OK"* ]]
}

@test "-t accepts timeout 0, every log level, hash_tags on" {
    local level
    for level in error warn info debug; do
        conf "listen 127.0.0.1:6380" "backend 127.0.0.1:7001" "timeout 0" "hash_tags on" \
            "log_level $level"
        run "$SP_BIN" -c "$CONF" -t
        echo "$level: $output"
        [ "$status" -eq 0 ]
    done
}

@test "-t accepts an IPv6 listen address" {
    python3 -c 'import socket; socket.socket(socket.AF_INET6).bind(("::1", 0))' 2>/dev/null ||
        skip "no IPv6 loopback"
    conf "listen [::1]:6380" "backend 127.0.0.1:7001"
    run "$SP_BIN" -c "$CONF" -t
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "-t accepts the repository's shardproxy.conf" {
    [ -f "$SP_ROOT/shardproxy.conf" ] || skip "no shardproxy.conf yet"
    run "$SP_BIN" -c "$SP_ROOT/shardproxy.conf" -t
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"configuration OK"* ]]
}

@test "unknown directive: FILE:LINE and status 1" {
    conf "listen 127.0.0.1:6380" "backend 127.0.0.1:7001" "frobnicate yes" "log_level info"
    expect_error_at 3
    [[ "$output" == *frobnicate* ]]
}

@test "table_size that is not prime" {
    conf "listen 127.0.0.1:6380" "backend 127.0.0.1:7001" "table_size 10" "log_level info"
    expect_error_at 3
    [[ "$output" == *table_size* ]]
}

@test "table_size too big (5000017, and the prime 5000077)" {
    conf "listen 127.0.0.1:6380" "backend 127.0.0.1:7001" "table_size 5000017" "log_level info"
    expect_error_at 3
    conf "listen 127.0.0.1:6380" "backend 127.0.0.1:7001" "table_size 5000077" "log_level info"
    expect_error_at 3
}

@test "table_size smaller than the number of backends" {
    conf "listen 127.0.0.1:6380" "backend 127.0.0.1:7001" "backend 127.0.0.1:7002" \
        "backend 127.0.0.1:7003" "table_size 2" "log_level info"
    run "$SP_BIN" -c "$CONF" -t
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"$CONF:"* ]]
}

@test "timeout abc" {
    conf "listen 127.0.0.1:6380" "backend 127.0.0.1:7001" "timeout abc" "log_level info"
    expect_error_at 3
    [[ "$output" == *timeout* ]]
}

@test "timeout -1 and a missing value" {
    conf "listen 127.0.0.1:6380" "backend 127.0.0.1:7001" "timeout -1" "log_level info"
    expect_error_at 3
    conf "listen 127.0.0.1:6380" "backend 127.0.0.1:7001" "max_clients" "log_level info"
    expect_error_at 3
}

@test "weight=0" {
    conf "listen 127.0.0.1:6380" "backend 127.0.0.1:7001" "backend 127.0.0.1:7002 weight=0" \
        "log_level info"
    expect_error_at 3
    [[ "$output" == *weight* ]]
}

@test "bad backend: unknown option, no port, port out of range, weight=abc" {
    local bad
    for bad in "backend 127.0.0.1:7002 color=red" "backend 127.0.0.1" "backend 127.0.0.1:99999" \
        "backend 127.0.0.1:7002 weight=abc"; do
        conf "listen 127.0.0.1:6380" "backend 127.0.0.1:7001" "$bad" "log_level info"
        echo "case: $bad"
        expect_error_at 3
    done
}

@test "hash_tags maybe" {
    conf "listen 127.0.0.1:6380" "backend 127.0.0.1:7001" "hash_tags maybe" "log_level info"
    expect_error_at 3
    [[ "$output" == *hash_tags* ]]
}

@test "log_level loud" {
    conf "listen 127.0.0.1:6380" "backend 127.0.0.1:7001" "log_level loud" "timeout 5"
    expect_error_at 3
    [[ "$output" == *log_level* ]]
}

@test "bad sizes: client_output_limit 64zb, max_request_size lots" {
    conf "listen 127.0.0.1:6380" "backend 127.0.0.1:7001" "client_output_limit 64zb" "timeout 5"
    expect_error_at 3
    conf "listen 127.0.0.1:6380" "backend 127.0.0.1:7001" "max_request_size lots" "timeout 5"
    expect_error_at 3
}

@test "missing listen" {
    conf "backend 127.0.0.1:7001" "log_level info"
    run "$SP_BIN" -c "$CONF" -t
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"$CONF"* ]]
    [[ "$output" == *listen* ]]
}

@test "missing backend" {
    conf "listen 127.0.0.1:6380" "log_level info"
    run "$SP_BIN" -c "$CONF" -t
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"$CONF"* ]]
    [[ "$output" == *backend* ]]
}

@test "nonexistent config file" {
    run "$SP_BIN" -c "$(sp_tmpdir)/nope.conf" -t
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"$(sp_tmpdir)/nope.conf"* ]]
}

@test "--table: Envoy's vector for 127.0.0.1:90..95, M=7" {
    conf "listen 127.0.0.1:6380" "table_size 7"
    local p
    for p in 90 91 92 93 94 95; do echo "backend 127.0.0.1:$p" >>"$CONF"; done
    run "$SP_BIN" -c "$CONF" --table
    echo "$output"
    [ "$status" -eq 0 ]
    # host indexes 2 4 0 1 5 0 3 in config order
    [ "$output" = "$(printf '127.0.0.1:%s\n' 92 94 90 91 95 90 93)" ]
}

@test "--table: Envoy's vector for names 90..95, M=7" {
    conf "listen 127.0.0.1:6380" "table_size 7"
    local p
    for p in 90 91 92 93 94 95; do echo "backend 127.0.0.1:70$p name=$p" >>"$CONF"; done
    run "$SP_BIN" -c "$CONF" --table
    echo "$output"
    [ "$status" -eq 0 ]
    # host indexes 2 5 0 3 4 1 0
    [ "$output" = "$(printf '%s\n' 92 95 90 93 94 91 90)" ]
}

@test "--table: Envoy's weighted vector, M=17" {
    conf "listen 127.0.0.1:6380" "table_size 17" "backend 127.0.0.1:90 weight=1" \
        "backend 127.0.0.1:91 weight=2"
    run "$SP_BIN" -c "$CONF" --table
    echo "$output"
    [ "$status" -eq 0 ]
    # host indexes 1 0 0 1 0 1 1 0 1 1 1 1 1 0 1 0 1
    local want="" i
    for i in 1 0 0 1 0 1 1 0 1 1 1 1 1 0 1 0 1; do want+="127.0.0.1:9$i"$'\n'; done
    [ "$output" = "${want%$'\n'}" ]
}

@test "--table prints table_size lines, shares follow weights" {
    conf "listen 127.0.0.1:6380" "backend 127.0.0.1:7001" "backend 127.0.0.1:7002 weight=3"
    "$SP_BIN" -c "$CONF" --table >"$(sp_tmpdir)/table"
    [ "$(wc -l <"$(sp_tmpdir)/table")" -eq 65537 ]
    local a b
    a=$(grep -cx '127.0.0.1:7001' "$(sp_tmpdir)/table")
    b=$(grep -cx '127.0.0.1:7002' "$(sp_tmpdir)/table")
    echo "7001: $a, 7002: $b"
    [ $((a + b)) -eq 65537 ]
    # 1:3 within 1% of the table
    [ $((a * 4 - 65537)) -lt 2621 ]
    [ $((65537 - a * 4)) -lt 2621 ]
}

@test "the test's own MurmurHash64A matches the known test vectors" {
    run python3 "$BATS_TEST_DIRNAME/resp.py" selftest
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$output" = ok ]
}

@test "--route prints NAME ADDRESS SLOT per key, in argument order" {
    conf "listen 127.0.0.1:6380" "backend 127.0.0.1:7001 name=a" "backend 127.0.0.1:7002 name=b" \
        "backend 127.0.0.1:7003 name=c"
    "$SP_BIN" -c "$CONF" --table >"$(sp_tmpdir)/table"
    run "$SP_BIN" -c "$CONF" --route foo --route bar --route lyft
    echo "$output"
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq 3 ]
    local i key name addr s want
    local keys=(foo bar lyft)
    for i in 0 1 2; do
        key=${keys[$i]}
        read -r name addr s <<<"${lines[$i]}"
        want=$(slot "$key")
        echo "$key: got $name $addr $s, want slot $want"
        [ "$s" = "$want" ]
        # the backend is the one the table holds at that slot
        [ "$name" = "$(sed -n "$((want + 1))p" "$(sp_tmpdir)/table")" ]
        case $name in
        a) [ "$addr" = 127.0.0.1:7001 ] ;;
        b) [ "$addr" = 127.0.0.1:7002 ] ;;
        c) [ "$addr" = 127.0.0.1:7003 ] ;;
        *) false ;;
        esac
    done
    # foo's slot, spelled out: 9631199822919835226 % 65537
    [ "$(slot foo)" = "$(python3 -c 'print(9631199822919835226 % 65537)')" ]
}

@test "--route follows hash tags, and table_size" {
    conf "listen 127.0.0.1:6380" "backend 127.0.0.1:7001" "backend 127.0.0.1:7002" "table_size 251"
    run "$SP_BIN" -c "$CONF" --route '{user1000}.following' --route user1000 --route 'foo{}{bar}'
    echo "$output"
    [ "$status" -eq 0 ]
    local s0 s1 s2
    s0=$(echo "${lines[0]}" | awk '{print $3}')
    s1=$(echo "${lines[1]}" | awk '{print $3}')
    s2=$(echo "${lines[2]}" | awk '{print $3}')
    [ "$s0" = "$(slot user1000 251)" ]
    [ "$s1" = "$s0" ]
    [ "$s2" = "$(slot 'foo{}{bar}' 251)" ]
}

@test "--route with hash_tags off hashes the whole key" {
    conf "listen 127.0.0.1:6380" "backend 127.0.0.1:7001" "backend 127.0.0.1:7002" "hash_tags off"
    run "$SP_BIN" -c "$CONF" --route '{user1000}.following'
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$(echo "$output" | awk '{print $3}')" = "$(slot '{user1000}.following' 65537 off)" ]
}

@test "-V prints the version" {
    local version
    version=$(sed -n 's/^#define SHARDPROXY_VERSION "\(.*\)"/\1/p' "$SP_ROOT/shardproxy.h")
    run "$SP_BIN" -V
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"$version"* ]]
}

@test "-h prints usage" {
    run "$SP_BIN" -h
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *[Uu]sage* ]]
    [[ "$output" == *--route* ]]
    [[ "$output" == *--table* ]]
}

@test "an unknown flag exits non-zero with usage" {
    run "$SP_BIN" --bogus
    echo "$output"
    [ "$status" -ne 0 ]
    [[ "$output" == *[Uu]sage* ]]
}

@test "-c without a file exits non-zero" {
    run "$SP_BIN" -c
    echo "$output"
    [ "$status" -ne 0 ]
}
