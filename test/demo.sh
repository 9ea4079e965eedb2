#!/usr/bin/env bash
# test/demo.sh -- `make demo`: shardproxy in front of three redis-servers.
#
# Starts one redis-server per backend of shardproxy.conf (127.0.0.1:7001..7003),
# starts ./shardproxy -c shardproxy.conf, writes 10,000 keys (60 s TTL) through
# it, and shows how they spread over the backends next to each backend's share
# of the Maglev table.  Everything it started is stopped on exit, Ctrl-C included.
set -euo pipefail

cd "$(dirname "$0")/.."
CONF=${DEMO_CONF:-shardproxy.conf}
NKEYS=${DEMO_KEYS:-10000}

die() {
    echo "demo: $*" >&2
    exit 1
}

[ -f "$CONF" ] || die "$CONF not found"
command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
    test/deps.sh redis-server redis-cli

# --- what the config asks for -------------------------------------------------

# host:port -> host and port ("[::1]:7001" -> "::1" "7001").
split_addr() {
    local addr=$1
    port=${addr##*:}
    host=${addr%:*}
    host=${host#[}
    host=${host%]}
}

# First TCP listen address (a UNIX socket path starts with '/').
listen=$(awk '$1 == "listen" && $2 !~ /^\// { print $2; exit }' "$CONF")
[ -n "$listen" ] || die "$CONF has no TCP listen address"
split_addr "$listen"
proxy_host=$host proxy_port=$port

# backend lines: ADDRESS and identity (name= if given), comments ignored.
mapfile -t backends < <(awk '$1 == "backend" {
    id = $2
    for (i = 3; i <= NF && $i !~ /^#/; i++)
        if ($i ~ /^name=/) id = substr($i, 6)
    print $2, id
}' "$CONF")
[ ${#backends[@]} -gt 0 ] || die "$CONF has no backend"

# Something already listening there would be written to, or clash: refuse.
port_busy() { (exec 9<>"/dev/tcp/$1/$2") 2>/dev/null; }
for b in "${backends[@]}" "$listen -"; do
    split_addr "${b% *}"
    case $host in
    127.* | localhost | ::1) ;;
    *) die "backend $host:$port is not on this machine; the demo starts its backends locally" ;;
    esac
    if port_busy "$host" "$port"; then
        die "port $port on $host is busy (something is listening there); stop it and retry"
    fi
done

# --- start everything ---------------------------------------------------------

tmp= pids=()
cleanup() {
    local pid
    trap '' INT TERM # a second Ctrl-C must not cut the cleanup short
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    [ -z "$tmp" ] || rm -rf "$tmp"
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted" >&2; exit 130' INT TERM
tmp=$(mktemp -d "${TMPDIR:-/tmp}/shardproxy-demo.XXXXXX")

# Poll until redis-cli gets PONG from HOST PORT (10 s), or PID has died.
wait_pong() {
    local i
    for ((i = 0; i < 200; i++)); do
        [ "$(redis-cli -h "$1" -p "$2" ping 2>/dev/null)" = PONG ] && return 0
        kill -0 "$3" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

echo "== Starting ${#backends[@]} redis-servers"
for b in "${backends[@]}"; do
    split_addr "${b% *}"
    mkdir -p "$tmp/redis-$port"
    redis-server --port "$port" --bind "$host" --save '' --appendonly no --daemonize no \
        --dir "$tmp/redis-$port" --logfile "$tmp/redis-$port/redis.log" </dev/null >/dev/null 2>&1 &
    pids+=($!)
    wait_pong "$host" "$port" $! || {
        cat "$tmp/redis-$port/redis.log" >&2
        die "redis-server on $host:$port did not start"
    }
    echo "   redis-server $host:$port"
done

echo "== Building and starting shardproxy on $proxy_host:$proxy_port"
${MAKE:-make} -s shardproxy # up to date already under `make demo`
./shardproxy -c "$CONF" </dev/null 2>"$tmp/shardproxy.log" >&2 &
pids+=($!)
wait_pong "$proxy_host" "$proxy_port" $! || {
    cat "$tmp/shardproxy.log" >&2
    die "shardproxy did not start"
}
echo "   ./shardproxy -c $CONF"

# --- write keys through the proxy -----------------------------------------------

echo "== Writing $NKEYS keys through the proxy: SET key:N value:N EX 60 (redis-cli --pipe)"
out=$(awk -v n="$NKEYS" 'BEGIN {
    for (i = 1; i <= n; i++) {
        k = "key:" i; v = "value:" i
        printf "*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$2\r\nEX\r\n$2\r\n60\r\n",
            length(k), k, length(v), v
    }
}' | redis-cli -h "$proxy_host" -p "$proxy_port" --pipe 2>&1) || {
    echo "$out" >&2
    die "writing through the proxy failed"
}
echo "   ${out##*$'\n'}"

# --- where they landed -----------------------------------------------------------

# Slots per backend identity, from the Maglev table the proxy uses.
declare -A slots=()
while read -r count id; do
    slots[$id]=$count
done < <(./shardproxy -c "$CONF" --table | sort | uniq -c)
nslots=0
for id in "${!slots[@]}"; do nslots=$((nslots + slots[$id])); done

echo
echo "== Where the keys are (DBSIZE on each backend) and each backend's share of the table"
printf '   %-22s %10s %15s %16s\n' backend keys "share of keys" "share of slots"
total=0
keys=()
for b in "${backends[@]}"; do
    split_addr "${b% *}"
    keys[$port]=$(redis-cli -h "$host" -p "$port" dbsize)
    total=$((total + keys[$port]))
done
for b in "${backends[@]}"; do
    addr=${b% *} id=${b#* }
    split_addr "$addr"
    label=$addr
    [ "$id" = "$addr" ] || label="$addr ($id)"
    awk -v l="$label" -v k="${keys[$port]}" -v t="$total" -v s="${slots[$id]:-0}" -v n="$nslots" \
        'BEGIN { printf "   %-22s %10d %14.1f%% %15.1f%%\n", l, k, t ? 100 * k / t : 0, 100 * s / n }'
done
printf '   %-22s %10d\n' total "$total"

# One key, followed from the proxy's routing to the backend that holds it.
read -r name addr slot < <(./shardproxy -c "$CONF" --route key:42)
split_addr "$addr"
echo
echo "== Following one key"
echo "   ./shardproxy -c $CONF --route key:42  ->  $name $addr (slot $slot of $nslots)"
echo "   redis-cli -h $host -p $port GET key:42  ->  $(redis-cli -h "$host" -p "$port" get key:42)"
echo
echo "The keys expire in 60 s; everything the demo started is stopped now."
