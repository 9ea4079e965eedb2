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
#   idle_conns                 10,000 idle clients (fewer if the fd limits say
#                              so): RSS per connection, on a fresh process
#
# On a shared 2-core machine wall-clock throughput swings from run to run, so
# the figure that counts is the proxy's own CPU per request: utime+stime from
# /proc/PID/stat before and after each run, divided by the requests (the
# method twemproxy and Redis are measured with too).  Every figure is the median over the rounds.
# Output: a table, then one machine-readable `BENCH workload=... key=value ...`
# line per workload with the target and whether it was met.  Targets are
# reported, never enforced: the exit status is 0 whatever they say.
#
#   BENCH_QUICK=1     one round, shorter runs (about a minute)
#   BENCH_ROUNDS=N    rounds (default 3, quick 1)
#   BENCH_IDLE=N      idle connections to try (default 10000)
#   BENCH_BUDGET=S    seconds: a round that would not finish within it (on the
#                     pace of the slowest round so far) is skipped (default
#                     540, quick 100), so a slow machine still ends in 10 min
#   SP_BIN=PATH       the shardproxy binary (default ./shardproxy)
#   BENCH_KEEP=1      keep the temp dir (logs, raw results) and print its path
#
# Needs redis-server, redis-benchmark and redis-cli (redis-tools), nutcracker
# and python3; as root with apt-get it installs what is missing, otherwise it
# says what is missing and exits 1.
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
KEYSPACE=100000 # redis-benchmark -r: keys key:000000000000 .. key:000000099999
WORKLOADS=(set_c50_P1 get_c50_P1 set_c50_P16 get_c50_P16 mget10_c50 get_c1_P1)
TARGETS=(redis shardproxy twemproxy)
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

# The idle test needs many descriptors: every process started here (proxies,
# redis-servers, the client) gets the soft limit raised to the hard limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FDLIMIT=$(ulimit -n)
[ "$FDLIMIT" = unlimited ] && FDLIMIT=1048576

# --- temp dir, processes, cleanup -------------------------------------------

tmp='' pids=()
cleanup() {
    local pid
    trap '' INT TERM # a second Ctrl-C must not cut the cleanup short
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
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
# and the idle test's 10,000 client ports cannot collide), never handed out
# twice in this run.
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

# start_redis PORT -> pid in $started
start_redis() {
    redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly no \
        --maxclients $((IDLE_WANT + 200)) --dir "$tmp" \
        --logfile "$tmp/redis-$1.log" --daemonize no >/dev/null 2>&1 &
    started=$!
    pids+=("$started")
    wait_pong "$1" "$started" "redis-server on $1"
}

# write_sp_conf FILE PORT
write_sp_conf() {
    {
        echo "listen 127.0.0.1:$2"
        for p in "${BACKENDS[@]}"; do echo "backend 127.0.0.1:$p"; done
        echo "log_level warn"
        echo "max_clients $((IDLE_WANT + 1000))"
    } >"$1"
}

# start_sp PORT TAG -> pid in $started
start_sp() {
    write_sp_conf "$tmp/sp-$2.conf" "$1"
    "$SP_BIN" -c "$tmp/sp-$2.conf" 2>"$tmp/sp-$2.log" &
    started=$!
    pids+=("$started")
    wait_pong "$1" "$started" "shardproxy ($2)"
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
for p in "${BACKENDS[@]}"; do start_redis "$p"; done
start_sp "$SP_PORT" main
SP_PID=$started
start_tw "$TW_PORT" "$TW_STATS" main
TW_PID=$started
declare -A PORT=([redis]=$B1 [shardproxy]=$SP_PORT [twemproxy]=$TW_PORT)
declare -A PID=([redis]='' [shardproxy]=$SP_PID [twemproxy]=$TW_PID)
say "redis $B1 $B2 $B3, shardproxy $SP_PORT (pid $SP_PID), twemproxy $TW_PORT (pid $TW_PID);" \
    "$ROUNDS round(s)${QUICK:+, quick}; fd limit $FDLIMIT; $(nproc) CPUs"

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

# Both proxies must really serve the workloads before they are timed.
for t in "${TARGETS[@]}"; do
    got=$(redis-cli -p "${PORT[$t]}" get key:000000000007)
    [ "$got" = xxx ] || die "$t: GET answered '$got'"
    got=$(redis-cli -p "${PORT[$t]}" set key:000000000007 xxx)
    [ "$got" = OK ] || die "$t: SET answered '$got'"
    got=$(redis-cli -p "${PORT[$t]}" mget "${MGET_KEYS[@]}" | grep -c '^value-of-' || true)
    [ "$got" = 10 ] || die "$t: MGET returned $got of 10 values"
done

# --- throughput / CPU / latency ---------------------------------------------

RESULTS=$tmp/results # workload target round rps p50 p99 cpu_us rss_kb
: >"$RESULTS"

# bench_args WORKLOAD -> BARGS and NREQ
bench_args() {
    case $1 in
    get_c50_P1) NREQ=$N_P1 BARGS=(-c 50 -P 1 -r "$KEYSPACE" -t get) ;;
    set_c50_P1) NREQ=$N_P1 BARGS=(-c 50 -P 1 -r "$KEYSPACE" -t set) ;;
    get_c50_P16) NREQ=$N_P16 BARGS=(-c 50 -P 16 -r "$KEYSPACE" -t get) ;;
    set_c50_P16) NREQ=$N_P16 BARGS=(-c 50 -P 16 -r "$KEYSPACE" -t set) ;;
    mget10_c50) NREQ=$N_MGET BARGS=(-c 50 -P 1 mget "${MGET_KEYS[@]}") ;;
    get_c1_P1) NREQ=$N_C1 BARGS=(-c 1 -P 1 -r "$KEYSPACE" -t get) ;;
    *) die "unknown workload $1" ;;
    esac
}

# run_one WORKLOAD TARGET ROUND: one redis-benchmark run, one results line.
run_one() {
    local w=$1 t=$2 r=$3 pid=${PID[$2]} before=0 after=0 cpu=- rss=- line rps p50 p99 out
    bench_args "$w"
    out=$tmp/rb-$w-$t-$r
    [ -z "$pid" ] || before=$(cpu_ticks "$pid")
    # -e: error replies are printed (and then counted as a failure below).
    redis-benchmark -h 127.0.0.1 -p "${PORT[$t]}" -n "$NREQ" -e --csv "${BARGS[@]}" \
        >"$out" 2>"$out.err" || die "$w on $t: redis-benchmark failed: $(tail -3 "$out.err")"
    if [ -n "$pid" ]; then
        after=$(cpu_ticks "$pid")
        cpu=$(awk -v d=$((after - before)) -v hz="$HZ" -v n="$NREQ" \
            'BEGIN { printf "%.3f", d * 1e6 / hz / n }')
        rss=$(rss_kb "$pid")
    fi
    if grep -q 'Error from server' "$out"; then
        die "$w on $t: error replies: $(grep -m1 'Error from server' "$out")"
    fi
    line=$(grep -v '^"test"' "$out" | grep '^"' | tail -1)
    [ -n "$line" ] || die "$w on $t: no result from redis-benchmark: $(tail -3 "$out" "$out.err")"
    # "test","rps","avg","min","p50","p95","p99","max"
    IFS=, read -r _ rps _ _ p50 _ p99 _ <<<"${line//\"/}"
    echo "$w $t $r $rps $p50 $p99 $cpu $rss" >>"$RESULTS"
    printf 'bench: round %d %-12s %-10s %10s rps  p50 %6s  p99 %6s ms  cpu %7s us/req\n' \
        "$r" "$w" "$t" "$rps" "$p50" "$p99" "$cpu" >&2
}

slowest=0
for ((r = 1; r <= ROUNDS; r++)); do
    # the idle test takes about 10 s per round
    if ((r > 1 && SECONDS - START + slowest + 10 * ROUNDS > BUDGET)); then
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
    ((SECONDS - round_start <= slowest)) || slowest=$((SECONDS - round_start))
done
for t in shardproxy twemproxy; do
    alive "${PID[$t]}" || die "$t died during the runs (log in $tmp)"
done

# --- idle connections: memory per connection --------------------------------

# idle.py PID PORT WANT: opens up to WANT connections (each sends PING and
# reads PONG), holds them while it reads the server's RSS, prints
# "N RSS_BEFORE_KB RSS_HELD_KB", closes them.
cat >"$tmp/idle.py" <<'EOF'
import resource, socket, sys, time
pid, port, want = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
server_max = int(sys.argv[4]) if len(sys.argv) > 4 else want

def rss():
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
n = min(want, mine - 64, nofile(pid) - 64, server_max)

def ping_all(socks):
    for s in socks:
        s.sendall(b'*1\r\n$4\r\nPING\r\n')
    for s in socks:
        got = b''
        while not got.endswith(b'\r\n'):
            chunk = s.recv(64)
            if not chunk:
                sys.exit('connection closed by the server')
            got += chunk
        if got != b'+PONG\r\n':
            sys.exit('PING got %r' % got)

# one warm-up connection, so one-time allocations are not counted
w = socket.create_connection(('127.0.0.1', port))
ping_all([w])
w.close()
time.sleep(0.3)
before = rss()
socks = []
while len(socks) < n:
    batch = [socket.create_connection(('127.0.0.1', port))
             for _ in range(min(256, n - len(socks)))]
    ping_all(batch)
    socks += batch
time.sleep(0.5)
held = rss()
print(n, before, held)
for s in socks:
    s.close()
EOF

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
        out=$(python3 "$tmp/idle.py" "$pid" "$port" "$IDLE_WANT") ||
            die "idle connections to $t failed"
        read -r n before held <<<"$out"
        echo "$t $r $n $before $held" >>"$IDLE"
        say "round $r idle_conns   $t: $n connections, RSS ${before} KB -> ${held} KB" \
            "($(((held - before) * 1024 / n)) bytes each)"
        stop "$pid"
    done
done

# --- report -------------------------------------------------------------------

python3 - "$RESULTS" "$IDLE" $((SECONDS - START)) "$ROUNDS" <<'EOF'
import statistics, sys
from collections import defaultdict

results, idle, elapsed, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
WORKLOADS = ['get_c50_P1', 'set_c50_P1', 'get_c50_P16', 'set_c50_P16', 'mget10_c50', 'get_c1_P1']
TARGETS = ['redis', 'shardproxy', 'twemproxy']
# workload -> (limit on shardproxy CPU / twemproxy CPU, text)
CPU_TARGET = {'get_c50_P1': 0.5, 'set_c50_P1': 0.5, 'get_c50_P16': 0.7,
              'set_c50_P16': 0.7, 'mget10_c50': 1.0}

runs = defaultdict(list)
by_round = {}  # (workload, target, round) -> p50, p99
for line in open(results):
    w, t, r, rps, p50, p99, cpu, rss = line.split()
    runs[w, t].append((float(rps), float(p50), float(p99),
                       None if cpu == '-' else float(cpu), None if rss == '-' else int(rss)))
    by_round[w, t, r] = (float(p50), float(p99))

def added(w, t, i):
    """Latency a proxy adds over direct Redis: the median over the rounds of
    the difference within each round (the runs of one round are back to back,
    so a busy spell on the machine hits both sides of a difference)."""
    d = [by_round[k][i] - by_round[w, 'redis', k[2]][i] for k in by_round
         if k[0] == w and k[1] == t and (w, 'redis', k[2]) in by_round]
    return statistics.median(d) if d else None

def med(w, t, i):
    vals = [x[i] for x in runs[w, t] if x[i] is not None]
    return statistics.median(vals) if vals else None

def f(v, fmt):
    return '-' if v is None else fmt % v

def ratio(a, b):
    return None if a is None or b is None or b <= 0 else a / b

print()
print('shardproxy vs twemproxy vs direct Redis: medians over %d round(s)' % rounds)
print()
hdr = '%-12s %-10s %10s %8s %8s %14s %9s' % ('workload', 'target', 'rps', 'p50 ms', 'p99 ms',
                                            'proxy cpu us', 'rss KB')
print(hdr)
print('-' * len(hdr))
summary, verdicts = [], []
for w in WORKLOADS:
    if not any((w, t) in runs for t in TARGETS):
        continue
    m = {t: [med(w, t, i) for i in range(5)] for t in TARGETS}
    for t in TARGETS:
        rps, p50, p99, cpu, rss = m[t]
        print('%-12s %-10s %10s %8s %8s %14s %9s' % (w, t, f(rps, '%.0f'), f(p50, '%.3f'),
              f(p99, '%.3f'), f(cpu, '%.2f'), f(rss, '%d')))
    sp, tw, rd = m['shardproxy'], m['twemproxy'], m['redis']
    cr = ratio(sp[3], tw[3])
    kv = [('workload', w)]
    for t in TARGETS:
        kv.append(('%s_rps' % t, f(m[t][0], '%.0f')))
    kv += [('shardproxy_cpu_us', f(sp[3], '%.3f')), ('twemproxy_cpu_us', f(tw[3], '%.3f')),
           ('ratio', f(cr, '%.3f'))]
    for t in TARGETS:
        kv.append(('%s_p50_ms' % t, f(m[t][1], '%.3f')))
    for t in TARGETS:
        kv.append(('%s_p99_ms' % t, f(m[t][2], '%.3f')))
    kv += [('shardproxy_rss_kb', f(sp[4], '%d')), ('twemproxy_rss_kb', f(tw[4], '%d'))]
    if w in CPU_TARGET:
        lim = CPU_TARGET[w]
        met = cr is not None and cr <= lim
        kv += [('target', 'cpu_ratio<=%g' % lim), ('met', 'yes' if met else 'no')]
        verdicts.append((w, 'CPU per request <= %g x twemproxy' % lim,
                         'ratio %s' % f(cr, '%.2f'), met))
    elif w == 'get_c1_P1':
        spa, twa = added(w, 'shardproxy', 0), added(w, 'twemproxy', 0)
        spa99, twa99 = added(w, 'shardproxy', 1), added(w, 'twemproxy', 1)
        met = spa is not None and twa is not None and spa <= twa
        kv += [('shardproxy_added_p50_ms', f(spa, '%.3f')), ('twemproxy_added_p50_ms', f(twa, '%.3f')),
               ('shardproxy_added_p99_ms', f(spa99, '%.3f')), ('twemproxy_added_p99_ms', f(twa99, '%.3f')),
               ('added_p50_ratio', f(ratio(spa, twa), '%.3f')),
               ('target', 'added_p50<=twemproxy'), ('met', 'yes' if met else 'no')]
        verdicts.append((w, 'added p50 latency at -c 1 <= twemproxy\'s',
                         '%s vs %s us' % (f(None if spa is None else spa * 1000, '%.0f'),
                                          f(None if twa is None else twa * 1000, '%.0f')), met))
    summary.append(' '.join('%s=%s' % x for x in kv))

# idle connections
per = defaultdict(list)
conns = {}
for line in open(idle):
    t, r, n, before, held = line.split()
    n, before, held = int(n), int(before), int(held)
    per[t].append((held - before) * 1024 / n)
    conns[t] = n
if per:
    print()
    print('%-12s %-10s %12s %16s' % ('idle', 'target', 'connections', 'bytes/conn (RSS)'))
    for t in TARGETS:
        if t in per:
            print('%-12s %-10s %12d %16.0f' % ('idle_conns', t, conns[t], statistics.median(per[t])))
    sp = statistics.median(per['shardproxy']) if 'shardproxy' in per else None
    tw = statistics.median(per['twemproxy']) if 'twemproxy' in per else None
    rd = statistics.median(per['redis']) if 'redis' in per else None
    met = sp is not None and sp <= 1024
    summary.append(' '.join('%s=%s' % x for x in [
        ('workload', 'idle_conns'), ('conns', conns.get('shardproxy', 0)),
        ('shardproxy_bytes_per_conn', f(sp, '%.0f')), ('twemproxy_bytes_per_conn', f(tw, '%.0f')),
        ('redis_bytes_per_conn', f(rd, '%.0f')), ('ratio', f(ratio(sp, tw), '%.3f')),
        ('target', 'shardproxy_bytes_per_conn<=1024'), ('met', 'yes' if met else 'no')]))
    verdicts.append(('idle_conns', 'RSS per idle client connection <= 1 KB',
                     '%s bytes (twemproxy %s)' % (f(sp, '%.0f'), f(tw, '%.0f')), met))

print()
print('targets (reported, not enforced):')
for w, what, val, met in verdicts:
    print('  %-4s %-12s %-42s %s' % ('MET' if met else 'MISS', w, what, val))
print()
for line in summary:
    print('BENCH ' + line)
print('BENCH summary targets_met=%d/%d rounds=%d elapsed_s=%d' %
      (sum(1 for v in verdicts if v[3]), len(verdicts), rounds, elapsed))
EOF
