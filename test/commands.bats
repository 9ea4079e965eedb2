#!/usr/bin/env bats
#
# commands.bats -- shardproxy's command table (cmd_table[] in shardproxy.c)
# against a live redis-server's own key specs.
#
# setup_file starts a throwaway redis-server on a free port, saves its
# `COMMAND` reply (every command and subcommand, with arity, flags and key
# specs) as JSON, stops it, and builds test/cmddump.c, which includes
# shardproxy.c and prints the table.  The tests then run test/cmdcheck.py on
# the two; each disagreement is printed on its own line.  The last test asks
# a live redis-server `COMMAND GETKEYS` for a corpus of commands of every
# keyed family and compares the keys with those the proxy's own code routes
# on (test/keycheck.py, with cmddump --keys).
#
# Needs redis-server and redis-cli 7.x (for --json), a C compiler (cc, or $CC)
# and python3.

load helper

REPO="$(cd "$BATS_TEST_DIRNAME/.." && pwd)"

# Print a python3 that works (a pyenv shim may exist without an interpreter).
cmdtest_python() {
    local p
    for p in python3 /usr/bin/python3 /usr/local/bin/python3; do
        if "$p" -c 'import json, sys' >/dev/null 2>&1; then
            command -v "$p"
            return 0
        fi
    done
    return 1
}

# Stop the redis-server whose pid is in $1/redis.pid, if it runs; poll until gone.
cmdtest_stop_redis() {
    local dir=$1 pid
    [ -f "$dir/redis.pid" ] || return 0
    pid=$(cat "$dir/redis.pid")
    rm -f "$dir/redis.pid"
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 200); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.05
    done
    kill -9 "$pid" 2>/dev/null || true
}

# Start redis-server in $1 on a free port; on success print the port.
cmdtest_start_redis() {
    local dir=$1 port pid
    for _ in $(seq 20); do
        port=$((20000 + RANDOM % 40000))
        # Something already listening there: try another port.
        if (: >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            continue
        fi
        redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
            --daemonize no --dir "$dir" --logfile "$dir/redis.log" \
            </dev/null >"$dir/redis.out" 2>&1 3>&- &
        pid=$!
        echo "$pid" >"$dir/redis.pid"
        for _ in $(seq 200); do
            if [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ]; then
                echo "$port"
                return 0
            fi
            kill -0 "$pid" 2>/dev/null || break # exited: most likely the port was taken
            sleep 0.05
        done
        cmdtest_stop_redis "$dir"
    done
    echo "could not start redis-server; its last output and log:" >&2
    cat "$dir/redis.out" "$dir/redis.log" >&2 2>/dev/null
    return 1
}

setup_file() {
    local dir=$BATS_FILE_TMPDIR port
    command -v redis-server >/dev/null && command -v redis-cli >/dev/null || return 0
    cmdtest_python >/dev/null || return 0
    if port=$(cmdtest_start_redis "$dir" 2>"$dir/command.err"); then
        redis-cli -p "$port" --json COMMAND >"$dir/command.json" 2>>"$dir/command.err" ||
            echo "redis-cli -p $port --json COMMAND failed" >>"$dir/command.err"
    fi
    cmdtest_stop_redis "$dir"
    if ${CC:-cc} -std=c99 -o "$dir/cmddump" "$REPO/test/cmddump.c" >"$dir/build.log" 2>&1 &&
        "$dir/cmddump" >"$dir/table.txt" 2>>"$dir/build.log"; then
        touch "$dir/dump.ok"
    fi
}

teardown_file() {
    cmdtest_stop_redis "$BATS_FILE_TMPDIR"
}

setup() {
    command -v redis-server >/dev/null || skip "redis-server not installed"
    command -v redis-cli >/dev/null || skip "redis-cli not installed"
    PYTHON=$(cmdtest_python) || skip "python3 not found: test/cmdcheck.py needs it"
}

# Run cmdcheck.py's check $1 on the server's reply and the dumped table.
cmdtest_check() {
    if [ ! -f "$BATS_FILE_TMPDIR/dump.ok" ]; then
        echo "test/cmddump.c did not build or run; see the first test"
        return 1
    fi
    if [ ! -s "$BATS_FILE_TMPDIR/command.json" ]; then
        cat "$BATS_FILE_TMPDIR/command.err" 2>/dev/null
        echo "no COMMAND reply from a live redis-server"
        return 1
    fi
    run "$PYTHON" "$REPO/test/cmdcheck.py" "$1" \
        "$BATS_FILE_TMPDIR/command.json" "$BATS_FILE_TMPDIR/table.txt"
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "commands: test/cmddump.c builds against shardproxy.c and dumps cmd_table[]" {
    if [ ! -f "$BATS_FILE_TMPDIR/dump.ok" ]; then
        cat "$BATS_FILE_TMPDIR/build.log"
        return 1
    fi
    [ -s "$BATS_FILE_TMPDIR/table.txt" ]
}

@test "commands: every server command and subcommand has a row with its arity and key specs, and no other row" {
    cmdtest_check rows
}

@test "commands: rows are sorted by strcmp, no duplicates" {
    cmdtest_check sorted
}

@test "commands: kinds follow the routing policy (keys, one-key, containers, blocking, pub/sub)" {
    cmdtest_check kinds
}

@test "commands: the keys the proxy routes on are COMMAND GETKEYS's, for a corpus of every keyed family" {
    if [ ! -f "$BATS_FILE_TMPDIR/dump.ok" ]; then
        echo "test/cmddump.c did not build or run; see the first test"
        return 1
    fi
    start_redis 1
    run "$PYTHON" "$REPO/test/keycheck.py" "${REDIS_PORTS[0]}" "$BATS_FILE_TMPDIR/cmddump"
    echo "$output"
    [ "$status" -eq 0 ]
    local summary n
    summary=${lines[${#lines[@]} - 1]}
    [[ "$summary" == *": 0 disagreement(s),"* ]]
    n=${summary%% commands*}
    ((n >= 150))
}
