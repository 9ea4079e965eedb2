#!/usr/bin/env bash
# test/bench.sh -- `make bench`: shardproxy against twemproxy and direct Redis.
#
# Starts three redis-servers, one shardproxy and one nutcracker (twemproxy) on
# the same three backends, all on free 127.0.0.1 ports in a temp dir, and runs
# every workload against direct Redis, shardproxy and twemproxy in turn,
# interleaved (the order rotates each round), for several rounds:
#
#   get_c50_P1  set_c50_P1     redis-benchmark -t get|set -c 50 -P 1
#   get_c50_P16 set_c50_P16    the same with -P 16
#   mget10_c50                 MGET of 10 keys spread over the 3 backends, -c 50
#   get_c1_P1                  -c 1 -P 1 GET: the latency a proxy adds
#   get_c50_P1_idle5k          GET -c 50 -P 1 and -P 16 while 5,000 more idle
#   get_c50_P16_idle5k         clients are connected to the target measured:
#                              the CPU an idle connection costs a busy server
#   get_c50_P1_blocked500      GET -c 50 -P 1 while 500 more clients are each
#                              blocked in BLPOP on a key of their own (BLPOP
#                              <key> 0, keys spread evenly over the 3
#                              backends), checked before the run: the backends'
#                              blocked_clients and, through shardproxy, its
#                              `dedicated` connections must sum to 500; after
#                              it the clients disconnect and both must fall
#                              back to 0.  Against shardproxy, and direct Redis
#                              (all 500 on the one measured) as the reference;
#                              not twemproxy, which refuses blocking commands.
#                              Against get_c50_P1 of the same round: the CPU
#                              (and req/s) held blocked clients cost a busy proxy
#   get_c50_P16_workers        GET -c 50 -P 16 against a shardproxy with
#                              `workers 1` and with `workers 2`: throughput and
#                              the CPU of the master and all its workers
#                              (skipped when the build has no such directive)
#   idle_conns                 10,000 idle clients (fewer if the fd limits say
#                              so): RSS per connection, on a fresh process
#   conns_20k                  20,000 clients connected to a fresh shardproxy
#                              at once, then PING sent on every one and +PONG
#                              read on all: every connection must be served;
#                              RSS in all and per connection; where one
#                              process's fd limit cannot hold them all, with
#                              `workers K` and K client processes instead
#
# On a shared 2-core machine wall-clock throughput swings from run to run, so
# the figure that counts is the proxy's own CPU per request: utime+stime from
# /proc/PID/stat before and after each run, divided by the requests (the
# method twemproxy and Redis are measured with too).  Redis's CPU per request
# (the floor a proxy is held to) is the backends' utime+stime over a run
# straight at Redis; through a proxy the backends' CPU is recorded as well.
# Every figure is the median over the rounds; a ratio between two runs of the
# same round (idle or blocked clients vs none, shardproxy vs Redis) is the
# median of the per-round ratios, so a busy spell on the machine hits both of
# its sides.
# Output: one Markdown table (rows: workloads; per target: CPU us/request,
# requests/s, p50/p99 latency; plus the idle- and blocked-client cost rows), the
# targets met or missed, then one machine-readable `BENCH workload=...
# key=value ...` line per workload.  Targets are reported, never enforced: the
# exit status is 0 whatever they say.
#
#   BENCH_QUICK=1     one round, shorter runs (one to two minutes)
#   BENCH_ROUNDS=N    rounds (default 3, quick 1)
#   BENCH_IDLE=N      idle connections to try in idle_conns (default 10000)
#   BENCH_CONNS=N     connections in the concurrency check (default 20000)
#   BENCH_WORKERS=N   workers in the second workers run (default 2)
#   BENCH_BUDGET=S    seconds: a round that would not finish within it (on the
#                     pace of the slowest round so far) is skipped (default
#                     540, quick 100), so a slow machine still ends in 10 min
#   SP_BIN=PATH       the shardproxy binary (default ./shardproxy)
#   BENCH_KEEP=1      keep the temp dir (logs, raw results) and print its path
#
# Needs redis-server, redis-benchmark and redis-cli (redis-tools), nutcracker
# and python3; as root with apt-get it installs what is missing, otherwise it
# says what is missing and exits 1.  The connection tests need about 25,000
# descriptors per process: the hard limit is raised to 65536 when it is lower
# (as root), the soft one to the hard one.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
SP_BIN=${SP_BIN:-$ROOT/shardproxy}
QUICK=${BENCH_QUICK:-0}
[ "$QUICK" = 0 ] && QUICK=
if [ -n "$QUICK" ]; then
    ROUNDS=${BENCH_ROUNDS:-1}
    BUDGET=${BENCH_BUDGET:-100}
    N_P1=50000 N_P16=500000 N_MGET=30000 N_C1=15000
else
    ROUNDS=${BENCH_ROUNDS:-3}
    BUDGET=${BENCH_BUDGET:-540}
    N_P1=150000 N_P16=1500000 N_MGET=80000 N_C1=40000
fi
IDLE_WANT=${BENCH_IDLE:-10000}
CONNS_WANT=${BENCH_CONNS:-20000}
WORKERS_N=${BENCH_WORKERS:-2}
((WORKERS_N >= 2)) || WORKERS_N=2 # compared with workers 1
HOLD_N=5000     # the idle clients of the *_idle5k workloads
BLOCK_N=500     # the clients blocked in BLPOP of the *_blocked500 workloads
KEYSPACE=100000 # redis-benchmark -r: keys key:000000000000 .. key:000000099999
WORKLOADS=(set_c50_P1 get_c50_P1 set_c50_P16 get_c50_P16 mget10_c50 get_c1_P1)
IDLE_WORKLOADS=(get_c50_P1_idle5k get_c50_P16_idle5k)
BLOCK_WORKLOADS=(get_c50_P1_blocked500)
BLOCK_TARGETS=(redis shardproxy) # twemproxy refuses blocking commands
TARGETS=(redis shardproxy twemproxy)
MAXCONN=$((IDLE_WANT > CONNS_WANT ? IDLE_WANT : CONNS_WANT))
MAXCONN=$((MAXCONN > HOLD_N ? MAXCONN : HOLD_N))
START=$SECONDS

say() { printf 'bench: %s\n' "$*" >&2; }
die() {
    say "$*"
    exit 1
}

# --- tools --------------------------------------------------------------------

declare -A pkg=([redis-server]=redis-server [redis-cli]=redis-tools
    [redis-benchmark]=redis-tools [nutcracker]=nutcracker [python3]=python3)
missing=() pkgs=()
for cmd in redis-server redis-cli redis-benchmark nutcracker python3; do
    # Debian installs nutcracker in /usr/sbin, which a user's PATH may lack.
    if [ "$cmd" = nutcracker ] && ! command -v nutcracker >/dev/null && [ -x /usr/sbin/nutcracker ]; then
        PATH=$PATH:/usr/sbin
    fi
    command -v "$cmd" >/dev/null 2>&1 || { missing+=("$cmd"); pkgs+=("${pkg[$cmd]}"); }
done
if [ ${#missing[@]} -gt 0 ]; then
    mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" | sort -u)
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing ${pkgs[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${pkgs[@]}" >/dev/null
        PATH=$PATH:/usr/sbin
        for cmd in "${missing[@]}"; do
            command -v "$cmd" >/dev/null 2>&1 || die "$cmd still missing after installing ${pkg[$cmd]}"
        done
    else
        say "missing commands: ${missing[*]}"
        die "install them, e.g. on Debian/Ubuntu: sudo apt-get install ${pkgs[*]}"
    fi
fi
[ -x "$SP_BIN" ] || die "$SP_BIN not found (run make)"
[ -r /proc/self/stat ] || die "needs Linux /proc for CPU and RSS figures"
HZ=$(getconf CLK_TCK)

# Versions for the table header.  `shardproxy -V` names the event backend
# ("shardproxy 0.1.0 (events: epoll, listen: reuseport)"); a build whose -V does not predates the
# backends and has only poll().
SP_VERSION=$("$SP_BIN" -V 2>/dev/null | head -n 1) || SP_VERSION=
case $SP_VERSION in
*'(events: '*')'*)
    EVENTS=${SP_VERSION##*(events: }
    EVENTS=${EVENTS%%[,)]*}
    ;;
shardproxy*) EVENTS='poll (assumed: -V names no event backend)' ;;
*) EVENTS=unknown ;;
esac
SP_VERSION=${SP_VERSION%% (*}
RD_VERSION=$(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')
TW_VERSION=$(nutcracker --version 2>&1 | sed -n 's/.*nutcracker-\([^ ]*\).*/\1/p' | head -n 1)

# The connection tests need many descriptors (20,000 clients in one Python
# process, as many in the proxy): every process started here (proxies,
# redis-servers, the clients) gets the hard limit raised to FD_WANT if it is
# lower (root may) and the soft limit raised to the hard one.  shardproxy
# raises its own soft limit to the hard one too.
FD_WANT=$((CONNS_WANT + 4096 > 65536 ? CONNS_WANT + 4096 : 65536))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && ((hard < FD_WANT)); then
    nr_open=$(cat /proc/sys/fs/nr_open 2>/dev/null || echo "$FD_WANT")
    ulimit -Hn "$((FD_WANT < nr_open ? FD_WANT : nr_open))" 2>/dev/null || true
fi
ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
FDLIMIT=$(ulimit -n)
[ "$FDLIMIT" = unlimited ] && FDLIMIT=1048576
((FDLIMIT >= CONNS_WANT + 1000)) ||
    say "warning: fd limit $FDLIMIT and the hard limit cannot be raised (needs root with" \
        "CAP_SYS_RESOURCE): conns_20k will hold fewer than $CONNS_WANT connections"

# --- temp dir, processes, cleanup -------------------------------------------

# pids: processes this script started.  wpids: "PID:STARTTIME" of the worker
# processes a shardproxy master forked; killed by cleanup only while that
# PID still is that process (same start time), so never a reused PID.
tmp='' pids=() wpids=()
cleanup() {
    local pid w st
    trap '' INT TERM # a second Ctrl-C must not cut the cleanup short
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    for w in "${wpids[@]}"; do
        st=$(start_time "${w%%:*}") || continue
        if [ "$st" = "${w#*:}" ]; then kill "${w%%:*}" 2>/dev/null || true; fi
    done
    if [ -n "${BENCH_KEEP:-}" ] && [ -n "$tmp" ]; then
        say "kept $tmp"
    elif [ -n "$tmp" ]; then
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'echo; say interrupted; exit 130' INT TERM
tmp=$(mktemp -d "${TMPDIR:-/tmp}/shardproxy-bench.XXXXXX")

# Free ports below the ephemeral range (so no outgoing connection holds them,
# and the connection tests' 20,000 client ports cannot collide), never handed
# out twice in this run.
cat >"$tmp/ports.py" <<'EOF'
import random, socket, sys
n, used_file = int(sys.argv[1]), sys.argv[2]
try:
    lo = int(open('/proc/sys/net/ipv4/ip_local_port_range').read().split()[0])
except Exception:
    lo = 32768
lo = lo if lo > 12000 else 32768
try:
    used = set(int(x) for x in open(used_file).read().split())
except FileNotFoundError:
    used = set()
used |= {6379, 6380, 7001, 7002, 7003, 22222}
out = []
for _ in range(5000):
    if len(out) == n:
        break
    p = random.randrange(10000, lo)
    if p in used:
        continue
    s = socket.socket()
    try:
        s.bind(('127.0.0.1', p))
    except OSError:
        continue
    finally:
        s.close()
    used.add(p)
    out.append(p)
if len(out) < n:
    sys.exit('no free ports')
with open(used_file, 'a') as f:
    f.write(''.join('%d\n' % p for p in out))
print(' '.join(map(str, out)))
EOF
free_ports() { python3 "$tmp/ports.py" "$1" "$tmp/.ports"; }

# True while PID runs (a zombie does not count).
alive() {
    local st
    kill -0 "$1" 2>/dev/null || return 1
    st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    st=${st##*) }
    [ "${st:0:1}" != Z ]
}

# Poll until PORT answers PING (10 s), or fail if PID died.
wait_pong() {
    local port=$1 pid=$2 what=$3 i
    for ((i = 0; i < 200; i++)); do
        [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ] && return 0
        alive "$pid" || die "$what exited at start (log in $tmp)"
        sleep 0.05
    done
    die "$what did not answer PING on port $port"
}

# utime+stime of PID in clock ticks (fields 14 and 15; comm may hold blanks,
# so count from after its closing parenthesis).
cpu_ticks() {
    local st
    st=$(cat "/proc/$1/stat") || die "process $1 is gone"
    st=${st##*) }
    # shellcheck disable=SC2086
    set -- $st
    echo $((${12} + ${13}))
}
rss_kb() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"; }

# start_time PID: field 22 of /proc/PID/stat (fails if PID is gone).
start_time() {
    local st
    { read -r st <"/proc/$1/stat"; } 2>/dev/null || return 1
    st=${st##*) }
    # shellcheck disable=SC2086
    set -- $st
    echo "${20}"
}

# children PID: the PIDs whose parent is PID, from /proc/*/stat (no fork per
# process: this runs around every timed workers run).
children() {
    local parent=$1 f st ppid
    for f in /proc/[0-9]*/stat; do
        { read -r st <"$f"; } 2>/dev/null || continue
        st=${st##*) }
        ppid=${st#* }
        ppid=${ppid%% *}
        if [ "$ppid" = "$parent" ]; then
            f=${f#/proc/}
            echo "${f%/stat}"
        fi
    done
    return 0
}

# sum_ticks PID...: utime+stime summed over the PIDs (0 for one that is gone).
sum_ticks() {
    local p st s=0
    for p in "$@"; do
        { read -r st <"/proc/$p/stat"; } 2>/dev/null || continue
        st=${st##*) }
        # shellcheck disable=SC2086
        set -- $st
        s=$((s + ${12} + ${13}))
    done
    echo "$s"
}

# start_redis PORT -> pid in $started.  No protected mode: it would refuse
# the connection tests' clients, which come from 127.0.0.2-9 (the server
# still listens on 127.0.0.1 only).
start_redis() {
    redis-server --port "$1" --bind 127.0.0.1 --protected-mode no --save '' --appendonly no \
        --maxclients $((MAXCONN + 200)) --dir "$tmp" \
        --logfile "$tmp/redis-$1.log" --daemonize no >/dev/null 2>&1 &
    started=$!
    pids+=("$started")
    wait_pong "$1" "$started" "redis-server on $1"
}

# write_sp_conf FILE PORT [LINE...]: LINEs are appended (e.g. "workers 2").
write_sp_conf() {
    local f=$1 port=$2
    shift 2
    {
        echo "listen 127.0.0.1:$port"
        for p in "${BACKENDS[@]}"; do echo "backend 127.0.0.1:$p"; done
        echo "log_level warn"
        echo "max_clients $((MAXCONN + 1000))"
        for l in "$@"; do echo "$l"; done
    } >"$f"
}

# start_sp PORT TAG [LINE...] -> pid in $started
start_sp() {
    local port=$1 tag=$2
    shift 2
    write_sp_conf "$tmp/sp-$tag.conf" "$port" "$@"
    "$SP_BIN" -c "$tmp/sp-$tag.conf" 2>"$tmp/sp-$tag.log" &
    started=$!
    pids+=("$started")
    wait_pong "$port" "$started" "shardproxy ($tag)"
}

# start_tw PORT STATSPORT TAG -> pid in $started
start_tw() {
    {
        echo "bench:"
        echo "  listen: 127.0.0.1:$1"
        echo "  hash: murmur"
        echo "  distribution: ketama"
        echo "  redis: true"
        echo "  auto_eject_hosts: false"
        echo "  server_connections: 1"
        echo "  servers:"
        for p in "${BACKENDS[@]}"; do echo "   - 127.0.0.1:$p:1"; done
    } >"$tmp/tw-$3.yml"
    nutcracker -c "$tmp/tw-$3.yml" -s "$2" -a 127.0.0.1 -v 4 \
        -o "$tmp/tw-$3.log" -p "$tmp/tw-$3.pid" >/dev/null 2>&1 &
    started=$!
    pids+=("$started")
    wait_pong "$1" "$started" "nutcracker ($3)"
}

# stop PID: SIGTERM and reap (SIGKILL after 10 s).
stop() {
    local i
    kill "$1" 2>/dev/null || return 0
    for ((i = 0; i < 200; i++)); do
        alive "$1" || break
        sleep 0.05
    done
    alive "$1" && kill -9 "$1" 2>/dev/null
    wait "$1" 2>/dev/null || true
    for i in "${!pids[@]}"; do # reaped: cleanup must not signal a reused PID
        [ "${pids[$i]}" != "$1" ] || unset "pids[$i]"
    done
}

# --- start everything ---------------------------------------------------------

read -r B1 B2 B3 SP_PORT TW_PORT TW_STATS <<<"$(free_ports 6)"
BACKENDS=("$B1" "$B2" "$B3")
BPIDS=()
for p in "${BACKENDS[@]}"; do
    start_redis "$p"
    BPIDS+=("$started")
done
start_sp "$SP_PORT" main
SP_PID=$started
start_tw "$TW_PORT" "$TW_STATS" main
TW_PID=$started
declare -A PORT=([redis]=$B1 [shardproxy]=$SP_PORT [twemproxy]=$TW_PORT)
declare -A PID=([redis]='' [shardproxy]=$SP_PID [twemproxy]=$TW_PID)
say "redis $B1 $B2 $B3, shardproxy $SP_PORT (pid $SP_PID), twemproxy $TW_PORT (pid $TW_PID);" \
    "$ROUNDS round(s)${QUICK:+, quick}; fd limit $FDLIMIT; $(nproc) CPUs; events: $EVENTS"

# wait_children PID K: a master with K workers has K children once they all
# run (with workers 1 it serves alone): wait up to 5 s for them; they are
# left in kids and recorded in wpids for cleanup.
wait_children() {
    local i c st
    for ((i = 0; i < 100; i++)); do
        mapfile -t kids < <(children "$1")
        ((${#kids[@]} >= ($2 > 1 ? $2 : 0))) && break
        sleep 0.05
    done
    for c in "${kids[@]}"; do
        st=$(start_time "$c") && wpids+=("$c:$st")
    done
}

# Workers: a shardproxy with `workers 1` and one with `workers N`, if this
# build knows the directive (`-t` accepts it).  Each master's children are
# found once it answers; their CPU counts with the master's.
WORKERS_SKIP=
write_sp_conf "$tmp/sp-wcheck.conf" "$SP_PORT" "workers $WORKERS_N"
if ! "$SP_BIN" -t -c "$tmp/sp-wcheck.conf" >"$tmp/sp-wcheck.out" 2>&1; then
    WORKERS_SKIP="this build has no workers directive ($(head -n 1 "$tmp/sp-wcheck.out"))"
    say "get_c50_P16_workers skipped: $WORKERS_SKIP"
else
    read -r W1_PORT W2_PORT <<<"$(free_ports 2)"
    for k in 1 "$WORKERS_N"; do
        port=$W1_PORT
        [ "$k" = 1 ] || port=$W2_PORT
        start_sp "$port" "workers$k" "workers $k"
        PORT[workers$k]=$port
        PID[workers$k]=$started
        wait_children "$started" "$k"
        say "shardproxy workers $k: port $port, master $started, ${#kids[@]} child process(es)" \
            "${kids[*]}"
        ((${#kids[@]} >= (k > 1 ? k : 0))) ||
            say "warning: workers $k: expected $k worker processes, found ${#kids[@]}"
    done
fi
WORKER_TARGETS=(workers1 "workers$WORKERS_N")

# Every backend holds every key, so GET and MGET find their values whichever
# way (direct, Maglev, ketama) they are routed.
for p in "${BACKENDS[@]}"; do
    redis-cli -p "$p" eval "for i = 0, $((KEYSPACE - 1)) do redis.call('SET', string.format('key:%012d', i), 'xxx') end" 0 >/dev/null
done

# MGET keys: 10 keys that both proxies spread over all 3 backends (3/3/4).
# shardproxy says where with --route; twemproxy's placement is seen by writing
# candidates through it and asking each backend which it holds.
cands=()
for ((i = 0; i < 120; i++)); do cands+=("mk:$i"); done
route_args=()
for k in "${cands[@]}"; do route_args+=(--route "$k"); done
"$SP_BIN" -c "$tmp/sp-main.conf" "${route_args[@]}" | awk '{ print $1 }' >"$tmp/sp-route"
for k in "${cands[@]}"; do printf '%s\n' "SET $k x"; done |
    redis-cli -p "$TW_PORT" >/dev/null
for p in "${BACKENDS[@]}"; do
    redis-cli -p "$p" --scan --pattern 'mk:*' | sed "s/\$/ 127.0.0.1:$p/"
done >"$tmp/tw-route"
mapfile -t MGET_KEYS < <(python3 - "$tmp/sp-route" "$tmp/tw-route" "${cands[@]}" <<'EOF'
import sys
sp = open(sys.argv[1]).read().split()
keys = sys.argv[3:]
tw = dict(l.split() for l in open(sys.argv[2]) if l.strip())
spb, twb = sorted(set(sp)), sorted(set(tw.values()))
if len(sp) != len(keys) or len(spb) != 3 or len(twb) != 3 or set(tw) != set(keys):
    sys.exit('cannot place the MGET candidates (%d/%d/%d)' % (len(sp), len(spb), len(twb)))
# one key for each (shardproxy backend, twemproxy backend) pair: 3 per backend
# on both sides; then one more.
pick, seen = [], set()
for k, s in zip(keys, sp):
    pair = (s, tw[k])
    if pair not in seen:
        seen.add(pair)
        pick.append(k)
if len(pick) < 9:
    sys.exit('candidates do not cover every backend pair')
pick.append(next(k for k in keys if k not in pick))
print('\n'.join(pick))
EOF
)
[ ${#MGET_KEYS[@]} -eq 10 ] || die "could not choose the MGET keys"
mset=()
for k in "${MGET_KEYS[@]}"; do mset+=("$k" "value-of-$k"); done
for p in "${BACKENDS[@]}"; do
    redis-cli -p "$p" mset "${mset[@]}" >/dev/null
done

# Keys of the blocked clients: BLOCK_N keys that no workload writes, spread
# evenly over the 3 backends as shardproxy routes them (--route), one list
# each.
cands=()
for ((i = 0; i < BLOCK_N * 2; i++)); do cands+=("blk:$i"); done
route_args=()
for k in "${cands[@]}"; do route_args+=(--route "$k"); done
"$SP_BIN" -c "$tmp/sp-main.conf" "${route_args[@]}" | awk '{ print $1 }' |
    paste -d ' ' - <(printf '%s\n' "${cands[@]}") |
    awk -v n="$BLOCK_N" -v q=$(((BLOCK_N + 2) / 3)) \
        'got < n && c[$1] < q { c[$1]++; got++; print $2 }' >"$tmp/block-keys"
[ "$(wc -l <"$tmp/block-keys")" -eq "$BLOCK_N" ] || die "could not choose the BLPOP keys"

# Both proxies must really serve the workloads before they are timed.
for t in "${TARGETS[@]}"; do
    got=$(redis-cli -p "${PORT[$t]}" get key:000000000007)
    [ "$got" = xxx ] || die "$t: GET answered '$got'"
    got=$(redis-cli -p "${PORT[$t]}" set key:000000000007 xxx)
    [ "$got" = OK ] || die "$t: SET answered '$got'"
    got=$(redis-cli -p "${PORT[$t]}" mget "${MGET_KEYS[@]}" | grep -c '^value-of-' || true)
    [ "$got" = 10 ] || die "$t: MGET returned $got of 10 values"
done

# --- many client connections ------------------------------------------------

cat >"$tmp/conns.py" <<'EOF'
"""conns.py MODE ARGS: many client connections to a Redis-protocol server.

  rss PID PORT WANT      opens up to WANT connections (each sends PING and
                         reads PONG), holds them while it reads PID's RSS,
                         prints "N RSS_BEFORE_KB RSS_HELD_KB", closes them
  hold PORT WANT READY   opens WANT connections the same way (fewer if one
                         fails), writes how many to the file READY, holds
                         them until SIGTERM, then prints "N CLOSED" (CLOSED:
                         how many the server closed meanwhile), closes them
  blpop PORT KEYFILE READY
                         one connection per key of KEYFILE (one a line), each
                         sending BLPOP <key> 0 and no more; writes how many to
                         READY, holds them until SIGTERM, then prints "N
                         WOKEN" (WOKEN: how many got a reply or were closed
                         meanwhile: a client still blocked gets neither)
  pingall PIDS PORT WANT [DIR I K]
                         opens up to WANT connections (as many as the fd
                         limits let) first and holds them all, then sends
                         PING on every one at once and reads the replies on
                         all (epoll); prints "N ANSWERED RSS_BEFORE_KB
                         RSS_HELD_KB CONNECT_S PING_S MY_FDS SERVER_FDS ERROR".
                         PIDS: the server's processes, comma-separated (RSS is
                         their sum, SERVER_FDS the lowest limit).  With DIR I
                         K it is client I of K sharing the work: each waits
                         in DIR until all K hold their connections before
                         it sends its PINGs, and until all K have their
                         replies before it closes any, so every connection
                         of every client is open at once while all are served
"""
import os, resource, selectors, signal, socket, sys, time

PING = b'*1\r\n$4\r\nPING\r\n'
mode = sys.argv[1]
if mode in ('hold', 'blpop'):
    # SIGTERM waits for sigwait() at the end, whenever it comes
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

def rss(pid):
    for line in open('/proc/%d/status' % pid):
        if line.startswith('VmRSS:'):
            return int(line.split()[1])

def nofile(p):
    for line in open('/proc/%d/limits' % p):
        if line.startswith('Max open files'):
            v = line.split()[3]
            return 1 << 20 if v == 'unlimited' else int(v)

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft != hard:
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass
mine = resource.getrlimit(resource.RLIMIT_NOFILE)[0]

# Client addresses: 127.0.0.2-9 in turn.  From one address, Linux picks a
# connect()'s port by scanning the ephemeral range, which gets slow (seconds
# per thousand) once most of it is in use; with IP_BIND_ADDRESS_NO_PORT and
# eight addresses a port is found at once and 20,000 connections fit.
SOURCES = ['127.0.0.%d' % i for i in range(2, 10)]
BIND_NO_PORT = getattr(socket, 'IP_BIND_ADDRESS_NO_PORT', 24)
nconnect = 0

def connect(port):
    global nconnect, SOURCES
    s = socket.socket()
    if SOURCES:
        try:
            s.setsockopt(socket.IPPROTO_IP, BIND_NO_PORT, 1)
            s.bind((SOURCES[nconnect % len(SOURCES)], 0))
        except OSError:  # not Linux: from 127.0.0.1 as connect() picks
            SOURCES = []
            s.close()
            s = socket.socket()
    nconnect += 1
    s.settimeout(30)
    try:
        s.connect(('127.0.0.1', port))
    except OSError:
        s.close()
        raise
    return s

def ping_all(socks):
    for s in socks:
        s.sendall(PING)
    for s in socks:
        got = b''
        while not got.endswith(b'\r\n'):
            chunk = s.recv(64)
            if not chunk:
                raise OSError('connection closed by the server')
            got += chunk
        if got != b'+PONG\r\n':
            raise OSError('PING got %r' % got)

def open_pinged(port, n):
    socks = []
    while len(socks) < n:
        batch = [connect(port) for _ in range(min(256, n - len(socks)))]
        ping_all(batch)
        socks += batch
    return socks

def warm_up(pids, port):
    """One connection first, so one-time allocations are not counted;
    returns the RSS of PIDS summed."""
    w = connect(port)
    ping_all([w])
    w.close()
    time.sleep(0.3)
    return sum(rss(p) for p in pids)

def ephemeral_ports():
    try:
        lo, hi = map(int, open('/proc/sys/net/ipv4/ip_local_port_range').read().split())
        return hi - lo + 1
    except Exception:
        return 28232

if mode == 'rss':
    pid, port, want = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    n = min(want, mine - 64, nofile(pid) - 64)
    before = warm_up([pid], port)
    try:
        socks = open_pinged(port, n)
    except OSError as e:
        sys.exit('%s' % e)
    time.sleep(0.5)
    print(n, before, rss(pid))
    for s in socks:
        s.close()

elif mode == 'hold':
    port, want, ready = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    want = min(want, mine - 64)
    socks = []
    try:
        while len(socks) < want:
            batch = []
            try:
                for _ in range(min(256, want - len(socks))):
                    batch.append(connect(port))
                ping_all(batch)
            finally:
                socks += batch
    except OSError as e:
        print('hold: stopped at %d connections: %s' % (len(socks), e), file=sys.stderr)
        # keep only the ones that answered: the batch that failed goes
        for s in socks[len(socks) - len(batch):]:
            s.close()
        socks = socks[:len(socks) - len(batch)]
    with open(ready + '.tmp', 'w') as f:
        f.write('%d\n' % len(socks))
    os.rename(ready + '.tmp', ready)
    signal.sigwait({signal.SIGTERM})
    closed = 0
    for s in socks:
        s.setblocking(False)  # a socket with a timeout would wait for data
        try:
            if s.recv(64) == b'':
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        s.close()
    print(len(socks), closed)

elif mode == 'blpop':
    port, keys, ready = int(sys.argv[2]), open(sys.argv[3]).read().split(), sys.argv[4]
    socks = []
    try:
        for k in keys:
            s = connect(port)
            socks.append(s)
            k = k.encode()
            s.sendall(b'*3\r\n$5\r\nBLPOP\r\n$%d\r\n%s\r\n$1\r\n0\r\n' % (len(k), k))
    except OSError as e:
        sys.exit('blpop: stopped at %d connections: %s' % (len(socks), e))
    with open(ready + '.tmp', 'w') as f:
        f.write('%d\n' % len(socks))
    os.rename(ready + '.tmp', ready)
    signal.sigwait({signal.SIGTERM})
    woken = 0
    for s in socks:
        s.setblocking(False)
        try:
            s.recv(64)  # a reply, or b'' for a close: either way not blocked
            woken += 1
        except BlockingIOError:
            pass
        except OSError:
            woken += 1
        s.close()
    print(len(socks), woken)

elif mode == 'pingall':
    pids = [int(x) for x in sys.argv[2].split(',')]
    port, want = int(sys.argv[3]), int(sys.argv[4])
    bdir, me, peers = (sys.argv[5], int(sys.argv[6]), int(sys.argv[7])) \
        if len(sys.argv) > 7 else (None, 0, 1)

    def server_fds():
        return min(nofile(p) for p in pids)

    def barrier(name):
        """Wait (up to 120 s) until all PEERS clients have reached NAME."""
        if bdir is None:
            return
        open(os.path.join(bdir, '%s.%d' % (name, me)), 'w').close()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if all(os.path.exists(os.path.join(bdir, '%s.%d' % (name, i)))
                   for i in range(peers)):
                return
            time.sleep(0.05)
        raise SystemExit('barrier %s: not all %d clients arrived' % (name, peers))

    # one server process holds them all, or each of several about its share
    n = min(want, mine - 64, server_fds() * len(pids) - 64 * len(pids),
            (ephemeral_ports() * max(1, len(SOURCES)) - 1000) // peers)
    before = warm_up(pids, port)
    socks, err = [], '-'
    t0 = time.monotonic()
    try:
        for _ in range(n):
            socks.append(connect(port))
    except OSError as e:
        err = 'connect #%d: %s' % (len(socks) + 1, e)
    t1 = time.monotonic()
    barrier('connected')
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        s.send(PING)  # 14 bytes into an empty socket buffer: all of it
        sel.register(s, selectors.EVENT_READ, bytearray())
    answered, pending = 0, len(socks)
    deadline = time.monotonic() + 60
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1):
            s, buf = key.fileobj, key.data
            try:
                chunk = s.recv(64)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b''
            buf += chunk
            if chunk and not buf.endswith(b'\r\n'):
                continue
            if buf == b'+PONG\r\n':
                answered += 1
            elif err == '-':
                err = 'a PING got %r' % bytes(buf)
            sel.unregister(s)
            pending -= 1
    if pending and err == '-':
        err = '%d connections had no reply after 60 s' % pending
    t2 = time.monotonic()
    barrier('answered')
    time.sleep(0.5)
    held = sum(rss(p) for p in pids)
    print(n, answered, before, held, '%.2f' % (t1 - t0), '%.2f' % (t2 - t1), mine,
          server_fds(), err.replace(' ', '_'))
    barrier('measured')
    for s in socks:
        s.close()
EOF

# hold_open PORT: HOLD_N idle clients on PORT (a background conns.py hold,
# pid in HOLD_PID), once every one of them has answered a PING.
hold_open() {
    local i
    rm -f "$tmp/hold.ready" "$tmp/hold.out"
    python3 "$tmp/conns.py" hold "$1" "$HOLD_N" "$tmp/hold.ready" \
        >"$tmp/hold.out" 2>>"$tmp/hold.err" &
    HOLD_PID=$!
    pids+=("$HOLD_PID")
    for ((i = 0; i < 1200; i++)); do
        [ -e "$tmp/hold.ready" ] && break
        alive "$HOLD_PID" || die "idle clients on port $1 failed: $(tail -3 "$tmp/hold.err")"
        sleep 0.05
    done
    [ -e "$tmp/hold.ready" ] || die "idle clients on port $1: not connected after 60 s"
    read -r HOLD_GOT <"$tmp/hold.ready"
}

# hold_close TARGET ROUND: closes the idle clients, records how many there
# were and how many the server had closed in between.
hold_close() {
    local n closed
    stop "$HOLD_PID"
    read -r n closed <"$tmp/hold.out" || { n=$HOLD_GOT closed='?'; }
    echo "$1 $2 $n $closed" >>"$HOLDS"
    if [ "$n" != "$HOLD_N" ] || [ "$closed" != 0 ]; then
        say "warning: $1: $n of $HOLD_N idle clients held, $closed closed by the server" \
            "($(tail -1 "$tmp/hold.err" 2>/dev/null))"
    fi
    sleep 0.3 # let the server take the closes before the next run
}

# blocked_counts TARGET: "BLOCKED DEDICATED CONNS": the clients the three
# backends hold blocked (INFO's blocked_clients, summed) and, for shardproxy,
# the dedicated connections its clients hold and all its backend connections
# (INFO backends, dedicated= and connections= summed; '-' for Redis).
blocked_counts() {
    local p v b=0 dc='- -'
    for p in "${BACKENDS[@]}"; do
        v=$(redis-cli -p "$p" info clients | tr -d '\r' | sed -n 's/^blocked_clients://p')
        b=$((b + ${v:-0}))
    done
    if [ "$1" = shardproxy ]; then
        dc=$(redis-cli -p "${PORT[$1]}" info backends | tr -d '\r' |
            sed -n 's/.*,connections=\([0-9]*\),dedicated=\([0-9]*\),.*/\2 \1/p' |
            awk '{ d += $1; c += $2 } END { print d + 0, c + 0 }')
    fi
    echo "$b $dc"
}

# blocked_ok TARGET BLOCKED DEDICATED [MAX_CONNS]: poll blocked_counts (10 s)
# until the backends hold BLOCKED blocked clients and, for shardproxy, its
# clients DEDICATED dedicated connections and it at most MAX_CONNS backend
# connections in all; the last counts are left in BLK_B, BLK_D and BLK_C.
blocked_ok() {
    local i
    for ((i = 0; i < 200; i++)); do
        read -r BLK_B BLK_D BLK_C <<<"$(blocked_counts "$1")"
        if [ "$BLK_B" = "$2" ]; then
            [ "$1" = shardproxy ] || return 0
            [ "$BLK_D" = "$3" ] && { [ -z "${4:-}" ] || ((BLK_C <= $4)); } && return 0
        fi
        sleep 0.05
    done
    return 1
}

# block_open TARGET: BLOCK_N clients blocked in BLPOP through TARGET (a
# background conns.py blpop, pid in BLOCK_PID), once the backends hold them
# all blocked and shardproxy its clients' BLOCK_N dedicated connections.
block_open() {
    local i port=${PORT[$1]}
    read -r _ _ BLOCK_C0 <<<"$(blocked_counts "$1")" # backend connections before
    rm -f "$tmp/block.ready" "$tmp/block.out"
    python3 "$tmp/conns.py" blpop "$port" "$tmp/block-keys" "$tmp/block.ready" \
        >"$tmp/block.out" 2>>"$tmp/block.err" &
    BLOCK_PID=$!
    pids+=("$BLOCK_PID")
    for ((i = 0; i < 1200; i++)); do
        [ -e "$tmp/block.ready" ] && break
        alive "$BLOCK_PID" || die "blocked clients on $1 failed: $(tail -3 "$tmp/block.err")"
        sleep 0.05
    done
    [ -e "$tmp/block.ready" ] || die "blocked clients on $1: not connected after 60 s"
    read -r BLOCK_GOT <"$tmp/block.ready"
    blocked_ok "$1" "$BLOCK_N" "$BLOCK_N" ||
        say "warning: $1: $BLOCK_N clients sent BLPOP, but $BLK_B are blocked on the backends" \
            "(dedicated connections: $BLK_D)"
    BLOCK_SB=$BLK_B BLOCK_SD=$BLK_D
    sleep 0.3 # let the blocking settle before the run
}

# block_close TARGET ROUND: disconnects the blocked clients and waits until
# the backends hold none blocked and shardproxy no dedicated connection, its
# backend connections back to as many as before; records: target round
# clients blocked dedicated woken_early blocked_after dedicated_after
# conns_after_minus_before
block_close() {
    local n woken extra=-
    stop "$BLOCK_PID"
    read -r n woken <"$tmp/block.out" || { n=$BLOCK_GOT woken='?'; }
    blocked_ok "$1" 0 0 "$BLOCK_C0" ||
        say "warning: $1: blocked clients gone, yet $BLK_B still blocked on the backends" \
            "(dedicated connections: $BLK_D, backend connections $BLOCK_C0 -> $BLK_C)"
    [ "$1" != shardproxy ] || extra=$((BLK_C - BLOCK_C0))
    echo "$1 $2 $n $BLOCK_SB $BLOCK_SD $woken $BLK_B $BLK_D $extra" >>"$BLOCKS"
    if [ "$n" != "$BLOCK_N" ] || [ "$woken" != 0 ]; then
        say "warning: $1: $n of $BLOCK_N blocked clients held, $woken woken or closed meanwhile" \
            "($(tail -1 "$tmp/block.err" 2>/dev/null))"
    fi
    if [ "$1" = shardproxy ]; then
        say "round $2 blocked500   $1: $n clients; blocked on the backends / dedicated" \
            "connections: $BLOCK_SB / $BLOCK_SD, after release $BLK_B / $BLK_D" \
            "(backend connections $BLOCK_C0 -> $BLK_C)"
    else
        say "round $2 blocked500   $1: $n clients; blocked: $BLOCK_SB, after release $BLK_B"
    fi
    sleep 0.3
}

# --- throughput / CPU / latency ---------------------------------------------

# workload target round rps p50 p99 cpu_us rss_kb redis_cpu_us procs
# cpu_us: the target's own CPU per request ('-' for direct Redis; master and
# workers summed for workers*); redis_cpu_us: the three backends'.
RESULTS=$tmp/results
HOLDS=$tmp/holds # target round idle_clients closed_by_server
BLOCKS=$tmp/blocks # as block_close says
: >"$RESULTS"
: >"$HOLDS"
: >"$BLOCKS"

# bench_args WORKLOAD -> BARGS and NREQ
bench_args() {
    case $1 in
    get_c50_P1 | get_c50_P1_idle5k | get_c50_P1_blocked500) NREQ=$N_P1 BARGS=(-c 50 -P 1 -r "$KEYSPACE" -t get) ;;
    set_c50_P1) NREQ=$N_P1 BARGS=(-c 50 -P 1 -r "$KEYSPACE" -t set) ;;
    get_c50_P16 | get_c50_P16_idle5k | get_c50_P16_workers)
        NREQ=$N_P16 BARGS=(-c 50 -P 16 -r "$KEYSPACE" -t get)
        ;;
    set_c50_P16) NREQ=$N_P16 BARGS=(-c 50 -P 16 -r "$KEYSPACE" -t set) ;;
    mget10_c50) NREQ=$N_MGET BARGS=(-c 50 -P 1 mget "${MGET_KEYS[@]}") ;;
    get_c1_P1) NREQ=$N_C1 BARGS=(-c 1 -P 1 -r "$KEYSPACE" -t get) ;;
    *) die "unknown workload $1" ;;
    esac
}

# target_procs TARGET: the processes whose CPU is the target's: the proxy, or
# a workers master and its children; none for direct Redis.
target_procs() {
    local pid=${PID[$1]}
    [ -n "$pid" ] || return 0
    echo "$pid"
    case $1 in workers*) children "$pid" ;; esac
}

# per_req TICKS: microseconds of CPU per request of the run (NREQ).
per_req() { awk -v d="$1" -v hz="$HZ" -v n="$NREQ" 'BEGIN { printf "%.3f", d * 1e6 / hz / n }'; }

# run_one WORKLOAD TARGET ROUND: one redis-benchmark run, one results line.
run_one() {
    local w=$1 t=$2 r=$3 pid=${PID[$2]} before=0 after=0 cpu=- rss=- line rps p50 p99 out
    local bbefore bafter bcpu procs=() procs2=() nproc=- p
    bench_args "$w"
    out=$tmp/rb-$w-$t-$r
    case $t in
    workers*)
        mapfile -t procs < <(target_procs "$t")
        before=$(sum_ticks "${procs[@]}")
        ;;
    *) [ -z "$pid" ] || before=$(cpu_ticks "$pid") ;;
    esac
    bbefore=$(sum_ticks "${BPIDS[@]}")
    # -e: error replies are printed (and then counted as a failure below).
    redis-benchmark -h 127.0.0.1 -p "${PORT[$t]}" -n "$NREQ" -e --csv "${BARGS[@]}" \
        >"$out" 2>"$out.err" || die "$w on $t: redis-benchmark failed: $(tail -3 "$out.err")"
    bafter=$(sum_ticks "${BPIDS[@]}")
    case $t in
    workers*)
        mapfile -t procs2 < <(target_procs "$t")
        [ "${procs[*]}" = "${procs2[*]}" ] ||
            say "warning: $t: processes changed during the run (${procs[*]} -> ${procs2[*]})"
        after=$(sum_ticks "${procs[@]}")
        cpu=$(per_req $((after - before)))
        rss=0
        for p in "${procs2[@]}"; do rss=$((rss + $(rss_kb "$p" 2>/dev/null || echo 0))); done
        nproc=${#procs2[@]}
        ;;
    *)
        if [ -n "$pid" ]; then
            after=$(cpu_ticks "$pid")
            cpu=$(per_req $((after - before)))
            rss=$(rss_kb "$pid")
        fi
        ;;
    esac
    bcpu=$(per_req $((bafter - bbefore)))
    if grep -q 'Error from server' "$out"; then
        die "$w on $t: error replies: $(grep -m1 'Error from server' "$out")"
    fi
    line=$(grep -v '^"test"' "$out" | grep '^"' | tail -1)
    [ -n "$line" ] || die "$w on $t: no result from redis-benchmark: $(tail -3 "$out" "$out.err")"
    # "test","rps","avg","min","p50","p95","p99","max"
    IFS=, read -r _ rps _ _ p50 _ p99 _ <<<"${line//\"/}"
    echo "$w $t $r $rps $p50 $p99 $cpu $rss $bcpu $nproc" >>"$RESULTS"
    printf 'bench: round %d %-21s %-10s %10s rps  p50 %6s  p99 %6s ms  cpu %7s us/req  redis %7s\n' \
        "$r" "$w" "$t" "$rps" "$p50" "$p99" "$cpu" "$bcpu" >&2
}

# After the rounds: idle_conns (about 10 s a round) and conns_20k (about 20 s).
RESERVE=$((10 * ROUNDS + 20))
slowest=0
for ((r = 1; r <= ROUNDS; r++)); do
    if ((r > 1 && SECONDS - START + slowest + RESERVE > BUDGET)); then
        say "time budget (${BUDGET}s): stopping after $((r - 1)) round(s)"
        ROUNDS=$((r - 1))
        break
    fi
    round_start=$SECONDS
    for w in "${WORKLOADS[@]}"; do
        for ((i = 0; i < 3; i++)); do
            run_one "$w" "${TARGETS[$(((i + r - 1) % 3))]}" "$r"
        done
    done
    # the same GET runs with HOLD_N idle clients on the target measured
    for ((i = 0; i < 3; i++)); do
        t=${TARGETS[$(((i + r - 1) % 3))]}
        hold_open "${PORT[$t]}"
        for w in "${IDLE_WORKLOADS[@]}"; do run_one "$w" "$t" "$r"; done
        hold_close "$t" "$r"
    done
    # the GET at -P 1 with BLOCK_N clients blocked in BLPOP through the target
    for ((i = 0; i < ${#BLOCK_TARGETS[@]}; i++)); do
        t=${BLOCK_TARGETS[$(((i + r - 1) % ${#BLOCK_TARGETS[@]}))]}
        block_open "$t"
        for w in "${BLOCK_WORKLOADS[@]}"; do run_one "$w" "$t" "$r"; done
        block_close "$t" "$r"
    done
    if [ -z "$WORKERS_SKIP" ]; then
        for ((i = 0; i < 2; i++)); do
            run_one get_c50_P16_workers "${WORKER_TARGETS[$(((i + r - 1) % 2))]}" "$r"
        done
    fi
    ((SECONDS - round_start <= slowest)) || slowest=$((SECONDS - round_start))
done
for t in shardproxy twemproxy; do
    alive "${PID[$t]}" || die "$t died during the runs (log in $tmp)"
done

# --- idle connections: memory per connection --------------------------------

IDLE=$tmp/idle # target round n rss_before rss_held
: >"$IDLE"
for ((r = 1; r <= ROUNDS; r++)); do
    for ((i = 0; i < 3; i++)); do
        t=${TARGETS[$(((i + r - 1) % 3))]}
        # a fresh process each time: memory freed by an earlier test would be
        # reused and hide the cost.
        case $t in
        redis)
            port=$(free_ports 1)
            start_redis "$port"
            ;;
        shardproxy)
            port=$(free_ports 1)
            start_sp "$port" "idle$r"
            ;;
        twemproxy)
            read -r port sport <<<"$(free_ports 2)"
            start_tw "$port" "$sport" "idle$r"
            ;;
        esac
        pid=$started
        out=$(python3 "$tmp/conns.py" rss "$pid" "$port" "$IDLE_WANT") ||
            die "idle connections to $t failed"
        read -r n before held <<<"$out"
        echo "$t $r $n $before $held" >>"$IDLE"
        say "round $r idle_conns   $t: $n connections, RSS ${before} KB -> ${held} KB" \
            "($(((held - before) * 1024 / n)) bytes each)"
        stop "$pid"
    done
done

# --- 20,000 clients at once, each one served ----------------------------------

# On a fresh shardproxy: every connection open first, then a PING on each.
# A failure here is a missed target, not an error of the script.  One
# process holds at most its fd limit less a reserve (backends, listeners);
# where that is fewer than CONNS_WANT and the limit cannot be raised, the
# check runs against `workers K` with K client processes, each holding its
# share, all open at once (conns.py's barriers), which is how such a box
# would be run.
# want n answered rss_before rss_held connect_s ping_s client_fds server_fds error workers
CONNS=$tmp/conns
PER_PROC=$((FDLIMIT - 1000))
CONNS_K=$(((CONNS_WANT + PER_PROC - 1) / PER_PROC))
if ((CONNS_K > 1)) && [ -n "$WORKERS_SKIP" ]; then
    CONNS_K=1
fi
port=$(free_ports 1)
if ((CONNS_K > 1)); then
    start_sp "$port" conns "workers $CONNS_K"
else
    start_sp "$port" conns
fi
pid=$started
wait_children "$pid" "$CONNS_K"
spids=$(IFS=,; echo "$pid${kids[*]:+,${kids[*]}}")
mkdir -p "$tmp/barrier"
cpids=() ok=1
for ((i = 0; i < CONNS_K; i++)); do
    share=$((CONNS_WANT / CONNS_K + (i < CONNS_WANT % CONNS_K ? 1 : 0)))
    args=(pingall "$spids" "$port" "$share")
    ((CONNS_K == 1)) || args+=("$tmp/barrier" "$i" "$CONNS_K")
    python3 "$tmp/conns.py" "${args[@]}" >"$tmp/conns.out$i" 2>"$tmp/conns.err$i" &
    cpids+=($!)
done
for c in "${cpids[@]}"; do wait "$c" || ok=0; done
if ((ok)); then
    # sums over the clients; RSS, limits and the first error from client 0
    n=0 answered=0 cs=0 ps=0 err=-
    for ((i = 0; i < CONNS_K; i++)); do
        read -r cn ca cb ch ccs cps cfd sfd cerr <"$tmp/conns.out$i"
        ((i > 0)) || { before=$cb held=$ch client_fds=$cfd server_fds=$sfd; }
        n=$((n + cn)) answered=$((answered + ca))
        cs=$(awk -v a="$cs" -v b="$ccs" 'BEGIN { print (b > a ? b : a) }')
        ps=$(awk -v a="$ps" -v b="$cps" 'BEGIN { print (b > a ? b : a) }')
        [ "$err" != - ] || err=$cerr
    done
    echo "$CONNS_WANT $n $answered $before $held $cs $ps $client_fds $server_fds $err $CONNS_K" >"$CONNS"
    say "conns_20k    shardproxy ($CONNS_K process(es) serving, $CONNS_K client(s)):" \
        "$answered of $n connections (of $CONNS_WANT) answered PING;" \
        "connect ${cs}s, PING all ${ps}s; RSS ${before} KB -> ${held} KB" \
        "($(((held - before) * 1024 / (n > 0 ? n : 1))) bytes each)"
    [ "$err" = - ] || say "conns_20k: ${err//_/ }"
    ((n == CONNS_WANT)) || say "conns_20k: only $n connections fit the fd limits"
else
    echo "$CONNS_WANT 0 0 0 0 0 0 0 0 client_failed:$(tail -q -n 1 "$tmp"/conns.err* | head -n 1 | tr ' ' _) $CONNS_K" >"$CONNS"
    say "conns_20k    shardproxy: the client failed: $(tail -q -n 3 "$tmp"/conns.err*)"
fi
alive "$pid" || say "conns_20k: shardproxy died (log in $tmp/sp-conns.log)"
stop "$pid"

# --- report -------------------------------------------------------------------

META=("$SP_VERSION" "$EVENTS" "$TW_VERSION" "$RD_VERSION" "$(nproc)" "$WORKERS_N" "$WORKERS_SKIP"
    "$HOLD_N" "$BLOCK_N")
python3 - "$RESULTS" "$IDLE" "$HOLDS" "$BLOCKS" "$CONNS" $((SECONDS - START)) "$ROUNDS" \
    "${META[@]}" <<'EOF'
import statistics, sys
from collections import defaultdict

(results, idle, holds, blocks, conns_file, elapsed, rounds, sp_version, events, tw_version,
 rd_version, ncpu, workers_n, workers_skip, hold_n, block_n) = sys.argv[1:]
elapsed, rounds, hold_n, block_n = int(elapsed), int(rounds), int(hold_n), int(block_n)
WORKLOADS = ['get_c50_P1', 'set_c50_P1', 'get_c50_P16', 'set_c50_P16', 'mget10_c50', 'get_c1_P1',
             'get_c50_P1_idle5k', 'get_c50_P16_idle5k', 'get_c50_P1_blocked500']
TARGETS = ['redis', 'shardproxy', 'twemproxy']
COLS = ['shardproxy', 'twemproxy', 'redis']  # the table's order
LABEL = {'get_c50_P1': 'GET -c 50 -P 1', 'set_c50_P1': 'SET -c 50 -P 1',
         'get_c50_P16': 'GET -c 50 -P 16', 'set_c50_P16': 'SET -c 50 -P 16',
         'mget10_c50': 'MGET 10 keys -c 50', 'get_c1_P1': 'GET -c 1 -P 1',
         'get_c50_P1_idle5k': 'GET -c 50 -P 1, %s idle clients' % format(hold_n, ','),
         'get_c50_P16_idle5k': 'GET -c 50 -P 16, %s idle clients' % format(hold_n, ','),
         'get_c50_P1_blocked500': 'GET -c 50 -P 1, %s clients blocked in BLPOP'
                                  % format(block_n, ',')}
# workload -> limit on shardproxy CPU / twemproxy CPU
CPU_TARGET = {'get_c50_P1': 0.5, 'set_c50_P1': 0.5, 'get_c50_P16': 0.7,
              'set_c50_P16': 0.7, 'mget10_c50': 1.0}
IDLE_LIMIT, REDIS_LIMIT = 1.15, 1.3  # *_idle5k: vs no idle clients; vs Redis's CPU

# (workload, target, round) -> dict of the run's figures
run = {}
for line in open(results):
    w, t, r, rps, p50, p99, cpu, rss, bcpu, nproc = line.split()
    num = lambda v, conv=float: None if v == '-' else conv(v)
    run[w, t, r] = dict(rps=float(rps), p50=float(p50), p99=float(p99), cpu=num(cpu),
                        rss=num(rss, int), bcpu=float(bcpu), nproc=num(nproc, int))
    # the CPU a target costs per request: its own, or Redis's when it is Redis
    run[w, t, r]['tcpu'] = run[w, t, r]['bcpu'] if t == 'redis' else run[w, t, r]['cpu']

def med(w, t, k):
    vals = [v[k] for (w2, t2, _), v in run.items() if (w2, t2) == (w, t) and v[k] is not None]
    return statistics.median(vals) if vals else None

def paired(w1, t1, k1, w2, t2, k2, op):
    """Median over the rounds of op(figure of run 1, figure of run 2), both of
    one round (back to back, so a busy spell on the machine hits both)."""
    d = []
    for (w, t, r), v in run.items():
        o = run.get((w2, t2, r))
        if (w, t) == (w1, t1) and o is not None and v[k1] is not None and o[k2] is not None:
            x = op(v[k1], o[k2])
            if x is not None:
                d.append(x)
    return statistics.median(d) if d else None

def ratio(a, b):
    return None if a is None or b is None or b <= 0 else a / b

def added(w, t, k):
    """Latency a proxy adds over direct Redis, paired per round."""
    return paired(w, t, k, w, 'redis', k, lambda a, b: a - b)

def f(v, fmt):
    return '-' if v is None else fmt % v

def cpu_s(v):
    return '-' if v is None else '%.2f' % v if v < 10 else '%.1f' % v

def rps_s(v):
    return '-' if v is None else format(int(round(v)), ',')

def lat_s(a, b):
    return '-' if a is None else '%.3f / %.3f' % (a, b)

rows, summary, verdicts = [], [], []

def cells(w, t):
    if not any((w2, t2) == (w, t) for (w2, t2, _) in run):
        return ['-', '-', '-']
    return [cpu_s(med(w, t, 'tcpu')), rps_s(med(w, t, 'rps')),
            lat_s(med(w, t, 'p50'), med(w, t, 'p99'))]

for w in WORKLOADS:
    if not any((w, t) == (w2, t2) for (w2, t2, _) in run for t in TARGETS):
        continue
    rows.append([LABEL[w]] + [c for t in COLS for c in cells(w, t)])
    m = {t: {k: med(w, t, k) for k in ('rps', 'p50', 'p99', 'cpu', 'rss', 'bcpu', 'tcpu')}
         for t in TARGETS}
    sp, tw, rd = m['shardproxy'], m['twemproxy'], m['redis']
    cr = ratio(sp['cpu'], tw['cpu'])
    kv = [('workload', w)]
    if w.endswith('_idle5k'):
        kv.append(('idle_clients', hold_n))
    if w.endswith('_blocked500'):
        kv.append(('blocked_clients', block_n))
    for t in TARGETS:
        kv.append(('%s_rps' % t, f(m[t]['rps'], '%.0f')))
    kv += [('shardproxy_cpu_us', f(sp['cpu'], '%.3f')), ('twemproxy_cpu_us', f(tw['cpu'], '%.3f')),
           ('redis_cpu_us', f(rd['bcpu'], '%.3f')), ('ratio', f(cr, '%.3f'))]
    for t in TARGETS:
        kv.append(('%s_p50_ms' % t, f(m[t]['p50'], '%.3f')))
    for t in TARGETS:
        kv.append(('%s_p99_ms' % t, f(m[t]['p99'], '%.3f')))
    kv += [('shardproxy_backends_cpu_us', f(sp['bcpu'], '%.3f')),
           ('twemproxy_backends_cpu_us', f(tw['bcpu'], '%.3f')),
           ('shardproxy_rss_kb', f(sp['rss'], '%d')), ('twemproxy_rss_kb', f(tw['rss'], '%d'))]
    if w in CPU_TARGET:
        lim = CPU_TARGET[w]
        met = cr is not None and cr <= lim
        kv += [('target', 'cpu_ratio<=%g' % lim), ('met', 'yes' if met else 'no')]
        verdicts.append((w, 'CPU per request <= %g x twemproxy' % lim,
                         'ratio %s' % f(cr, '%.2f'), met))
    elif w == 'get_c1_P1':
        spa, twa = added(w, 'shardproxy', 'p50'), added(w, 'twemproxy', 'p50')
        spa99, twa99 = added(w, 'shardproxy', 'p99'), added(w, 'twemproxy', 'p99')
        met = spa is not None and twa is not None and spa <= twa
        kv += [('shardproxy_added_p50_ms', f(spa, '%.3f')), ('twemproxy_added_p50_ms', f(twa, '%.3f')),
               ('shardproxy_added_p99_ms', f(spa99, '%.3f')), ('twemproxy_added_p99_ms', f(twa99, '%.3f')),
               ('added_p50_ratio', f(ratio(spa, twa), '%.3f')),
               ('target', 'added_p50<=twemproxy'), ('met', 'yes' if met else 'no')]
        verdicts.append((w, 'added p50 latency at -c 1 <= twemproxy\'s',
                         '%s vs %s us' % (f(None if spa is None else spa * 1000, '%.0f'),
                                          f(None if twa is None else twa * 1000, '%.0f')), met))
    elif w.endswith('_blocked500'):  # no target: reported only
        base = w[:-len('_blocked500')]
        cpu_r = {t: paired(w, t, 'tcpu', base, t, 'tcpu', ratio) for t in TARGETS}
        rps_r = {t: paired(w, t, 'rps', base, t, 'rps', ratio) for t in TARGETS}
        p99_r = {t: paired(w, t, 'p99', base, t, 'p99', ratio) for t in TARGETS}
        red_r = paired(w, 'shardproxy', 'cpu', w, 'redis', 'bcpu', ratio)
        red_r0 = paired(base, 'shardproxy', 'cpu', base, 'redis', 'bcpu', ratio)
        kv += [('shardproxy_noblock_cpu_us', f(med(base, 'shardproxy', 'cpu'), '%.3f')),
               ('redis_noblock_cpu_us', f(med(base, 'redis', 'bcpu'), '%.3f')),
               ('shardproxy_noblock_rps', f(med(base, 'shardproxy', 'rps'), '%.0f')),
               ('redis_noblock_rps', f(med(base, 'redis', 'rps'), '%.0f'))]
        for t in ('shardproxy', 'redis'):
            kv += [('%s_blocked_ratio' % t, f(cpu_r[t], '%.3f')),
                   ('%s_blocked_rps_ratio' % t, f(rps_r[t], '%.3f')),
                   ('%s_blocked_p99_ratio' % t, f(p99_r[t], '%.3f'))]
        kv += [('shardproxy_redis_ratio', f(red_r, '%.3f')),
               ('shardproxy_redis_ratio_noblock', f(red_r0, '%.3f'))]
        rows.append(['CPU/GET and req/s with %s clients blocked vs none, -P %s'
                     % (format(block_n, ','), base.split('_P')[-1])]
                    + [c for t in COLS for c in (f(cpu_r[t], '%.2fx'), f(rps_r[t], '%.2fx'), '')])
    else:  # *_idle5k
        base = w[:-len('_idle5k')]
        idle_r = {t: paired(w, t, 'tcpu', base, t, 'tcpu', ratio) for t in TARGETS}
        red_r = paired(w, 'shardproxy', 'cpu', w, 'redis', 'bcpu', ratio)
        red_r0 = paired(base, 'shardproxy', 'cpu', base, 'redis', 'bcpu', ratio)
        met_i = idle_r['shardproxy'] is not None and idle_r['shardproxy'] <= IDLE_LIMIT
        met_r = red_r is not None and red_r <= REDIS_LIMIT
        kv += [('shardproxy_noidle_cpu_us', f(med(base, 'shardproxy', 'cpu'), '%.3f')),
               ('twemproxy_noidle_cpu_us', f(med(base, 'twemproxy', 'cpu'), '%.3f')),
               ('redis_noidle_cpu_us', f(med(base, 'redis', 'bcpu'), '%.3f'))]
        for t in TARGETS:
            kv.append(('%s_idle_ratio' % t, f(idle_r[t], '%.3f')))
        kv += [('shardproxy_redis_ratio', f(red_r, '%.3f')),
               ('shardproxy_redis_ratio_noidle', f(red_r0, '%.3f')),
               ('target_idle', 'shardproxy_idle_ratio<=%g' % IDLE_LIMIT),
               ('met_idle', 'yes' if met_i else 'no'),
               ('target_redis', 'shardproxy_redis_ratio<=%g' % REDIS_LIMIT),
               ('met_redis', 'yes' if met_r else 'no'), ('met', 'yes' if met_i and met_r else 'no')]
        verdicts.append((w, 'CPU/GET, %d idle clients <= %g x none' % (hold_n, IDLE_LIMIT),
                         'ratio %s' % f(idle_r['shardproxy'], '%.2f'), met_i))
        verdicts.append((w, 'CPU/GET, %d idle clients <= %g x Redis\'s' % (hold_n, REDIS_LIMIT),
                         'ratio %s (no idle clients: %s)' % (f(red_r, '%.2f'), f(red_r0, '%.2f')),
                         met_r))
        rows.append(['CPU/GET with %s idle clients vs none, -P %s' % (format(hold_n, ','),
                                                                     base.split('_P')[-1])]
                    + [c for t in COLS for c in (f(idle_r[t], '%.2fx'), '', '')])
    summary.append(' '.join('%s=%s' % x for x in kv))

# idle clients actually held in the *_idle5k runs
held = [line.split() for line in open(holds)]
short = [h for h in held if h[2] != str(hold_n) or h[3] != '0']
if held:
    summary.append(' '.join('%s=%s' % x for x in [
        ('workload', 'idle5k_clients'), ('wanted', hold_n), ('holds', len(held)),
        ('min_held', min(int(h[2]) for h in held)),
        ('closed_by_server', sum(int(h[3]) for h in held if h[3].isdigit())),
        ('ok', 'no' if short else 'yes')]))

# clients actually blocked in the *_blocked500 runs: target round clients
# blocked dedicated woken_early blocked_after dedicated_after conns_left
blk = [line.split() for line in open(blocks)]
if blk:
    num_i = lambda v: int(v) if v.lstrip('-').isdigit() else None
    sp_blk = [b for b in blk if b[0] == 'shardproxy']
    bad = [b for b in blk if b[2] != str(block_n) or b[3] != str(block_n) or b[5] != '0'
           or b[6] != '0' or (b[0] == 'shardproxy' and (b[4] != str(block_n) or b[7] != '0'
                                                         or (num_i(b[8]) or 0) > 0
                                                         or b[8] == '-'))]
    summary.append(' '.join('%s=%s' % x for x in [
        ('workload', 'blocked500_clients'), ('wanted', block_n), ('holds', len(blk)),
        ('min_blocked', min(num_i(b[3]) or 0 for b in blk)),
        ('min_dedicated', min(num_i(b[4]) or 0 for b in sp_blk) if sp_blk else '-'),
        ('woken_early', sum(num_i(b[5]) or 0 for b in blk)),
        ('max_blocked_after', max(num_i(b[6]) or 0 for b in blk)),
        ('max_dedicated_after', max(num_i(b[7]) or 0 for b in sp_blk) if sp_blk else '-'),
        ('max_conns_left', max(num_i(b[8]) or 0 for b in sp_blk) if sp_blk else '-'),
        ('ok', 'no' if bad else 'yes')]))

# workers
W = 'get_c50_P16_workers'
wk = ['workers1', 'workers' + workers_n]
if workers_skip:
    rows.append(['GET -c 50 -P 16, workers: skipped (%s)' % workers_skip.split(' (')[0]]
                + ['-'] * 9)
    summary.append('workload=%s skipped=no_workers_directive' % W)
else:
    mw = {k: {x: med(W, k, x) for x in ('rps', 'p50', 'p99', 'cpu', 'rss', 'bcpu', 'nproc')}
          for k in wk}
    for k in wk:
        rows.append(['GET -c 50 -P 16, %s %s' % (k[:7], k[7:])] + cells(W, k) + ['-'] * 6)
    kv = [('workload', W)]
    for k in wk:
        kv += [('%s_rps' % k, f(mw[k]['rps'], '%.0f')), ('%s_cpu_us' % k, f(mw[k]['cpu'], '%.3f')),
               ('%s_p50_ms' % k, f(mw[k]['p50'], '%.3f')), ('%s_p99_ms' % k, f(mw[k]['p99'], '%.3f')),
               ('%s_procs' % k, f(mw[k]['nproc'], '%d')), ('%s_rss_kb' % k, f(mw[k]['rss'], '%d')),
               ('%s_backends_cpu_us' % k, f(mw[k]['bcpu'], '%.3f'))]
    kv += [('rps_ratio', f(paired(W, wk[1], 'rps', W, wk[0], 'rps', ratio), '%.3f')),
           ('cpu_ratio', f(paired(W, wk[1], 'cpu', W, wk[0], 'cpu', ratio), '%.3f'))]
    summary.append(' '.join('%s=%s' % x for x in kv))

# idle connections
per = defaultdict(list)
conns = {}
for line in open(idle):
    t, r, n, before, heldkb = line.split()
    n, before, heldkb = int(n), int(before), int(heldkb)
    per[t].append((heldkb - before) * 1024 / n)
    conns[t] = n
if per:
    pm = {t: statistics.median(per[t]) if t in per else None for t in TARGETS}
    rows.append(['%s idle connections, RSS per connection'
                 % format(conns.get('shardproxy', max(conns.values())), ',')]
                + [c for t in COLS for c in ('-' if pm[t] is None else
                                             '%s B' % format(int(round(pm[t])), ','), '', '')])
    sp, tw, rd = pm['shardproxy'], pm['twemproxy'], pm['redis']
    met = sp is not None and sp <= 557  # round one's figure, which must not grow
    summary.append(' '.join('%s=%s' % x for x in [
        ('workload', 'idle_conns'), ('conns', conns.get('shardproxy', 0)),
        ('shardproxy_bytes_per_conn', f(sp, '%.0f')), ('twemproxy_bytes_per_conn', f(tw, '%.0f')),
        ('redis_bytes_per_conn', f(rd, '%.0f')), ('ratio', f(ratio(sp, tw), '%.3f')),
        ('target', 'shardproxy_bytes_per_conn<=557'), ('met', 'yes' if met else 'no')]))
    verdicts.append(('idle_conns', 'RSS per idle client connection <= 557 B',
                     '%s bytes (twemproxy %s)' % (f(sp, '%.0f'), f(tw, '%.0f')), met))

# 20,000 connections at once
c = open(conns_file).read().split()
if c:
    want, n, answered, before, heldkb = map(int, c[:5])
    cs, ps, my_fds, sp_fds, err = c[5], c[6], int(c[7]), int(c[8]), c[9].replace('_', ' ')
    procs = int(c[10]) if len(c) > 10 else 1
    per_conn = (heldkb - before) * 1024 / n if n else None
    met = n == want and answered == want
    rows.append(['%s connections at once, PING on each%s'
                 % (format(want, ','), ', workers %d' % procs if procs > 1 else '')]
                + ['%s/%s PONG, RSS %s KB, %s B/conn' % (format(answered, ','), format(want, ','),
                                                        format(heldkb, ','), f(per_conn, '%.0f')),
                   '', ''] + ['-'] * 6)
    summary.append(' '.join('%s=%s' % x for x in [
        ('workload', 'conns_20k'), ('wanted', want), ('conns', n), ('answered', answered),
        ('shardproxy_rss_kb', heldkb), ('shardproxy_rss_before_kb', before),
        ('shardproxy_bytes_per_conn', f(per_conn, '%.0f')), ('connect_s', cs), ('ping_all_s', ps),
        ('client_fd_limit', my_fds), ('shardproxy_fd_limit', sp_fds), ('workers', procs),
        ('limited_by', 'fd_limits' if 0 < n < want else '-'), ('error', c[9]),
        ('target', 'all_answer_ping'), ('met', 'yes' if met else 'no')]))
    why = []
    if 0 < n < want:
        why.append('only %s fit the fd limits: %d here, %d in shardproxy; the hard limit'
                   ' must be raised (root, CAP_SYS_RESOURCE)' % (format(n, ','), my_fds, sp_fds))
    if err != '-':
        why.append(err)
    verdicts.append(('conns_20k', 'all %s connections at once answer PING' % format(want, ','),
                     '%s of %s answered%s' % (format(answered, ','), format(n, ','),
                                             ''.join('; ' + x for x in why)), met))

print()
print('shardproxy vs twemproxy vs direct Redis: medians over %d round(s)' % rounds)
print('shardproxy %s, event backend: %s; twemproxy (nutcracker) %s; redis %s; %s CPUs' %
      (sp_version.replace('shardproxy ', '') or '?', events, tw_version or '?', rd_version or '?', ncpu))
print('CPU: µs of utime+stime per request, the proxy\'s own (master and workers summed);'
      ' for direct Redis, redis-server\'s')
print()
hdr = ['workload'] + ['%s %s' % (t if t != 'redis' else 'direct Redis', x)
                      for t in COLS for x in ('CPU µs/req', 'req/s', 'p50 / p99 ms')]
print('| ' + ' | '.join(hdr) + ' |')
print('|' + '---|' * len(hdr))
for row in rows:
    print('| ' + ' | '.join(row) + ' |')

print()
print('targets (reported, not enforced):')
for w, what, val, met in verdicts:
    print('  %-4s %-18s %-44s %s' % ('MET' if met else 'MISS', w, what, val))
if workers_skip:
    print('  get_c50_P16_workers skipped: %s' % workers_skip)
print()
for line in summary:
    print('BENCH ' + line)
print('BENCH summary targets_met=%d/%d rounds=%d elapsed_s=%d events=%s' %
      (sum(1 for v in verdicts if v[3]), len(verdicts), rounds, elapsed, events.split()[0]))
EOF
