#!/usr/bin/env bash
# test/deps.sh -- make sure the tools the test suites use are installed.
#
# With command names as arguments (e.g. `deps.sh redis-server redis-cli`),
# checks only those.  Quiet when everything is there.  Otherwise, as root with apt-get (Debian,
# Ubuntu, CI), installs the missing packages; anywhere else prints what is
# missing and exits 1.  The suites never use port 6379, so the system redis
# that Debian's redis-server package may start on install does no harm.
#
# clang with its libFuzzer runtime (the fuzz harnesses) is optional for a
# plain run (make test skips the fuzz replay without it: installed when it
# can be, else a note) and required when asked for by name (`deps.sh clang`,
# as make fuzz does).  Debian's clang only recommends the runtime, so
# libclang-rt-N-dev is installed for clang N when a fuzzer does not link.
set -euo pipefail

cd "$(dirname "$0")"

# command -> Debian package
declare -A pkg=(
    [bats]=bats
    [redis-server]=redis-server
    [redis-cli]=redis-tools
    [socat]=socat
    [python3]=python3 # free_port in helper.bash, hash checks in cli.bats
    [musl-gcc]=musl-tools # make static (asked for by name only)
    [clang]=clang # fuzz harnesses (optional unless asked for by name)
    [valgrind]=valgrind # test/valgrind.sh, the memcheck pass of make test
)
pkg[jq]=jq
cmds=(bats redis-server redis-cli socat python3 valgrind)
# jq only when a suite uses it.
if grep -qw jq ./*.bats helper.bash 2>/dev/null; then
    cmds+=(jq)
fi
optional=(clang)
if [ $# -gt 0 ]; then
    for cmd in "$@"; do
        [ -n "${pkg[$cmd]:-}" ] || { echo "deps.sh: unknown command '$cmd'" >&2; exit 2; }
    done
    cmds=("$@")
    optional=()
fi

can_install() { [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; }

apt_updated=
apt_install() {
    echo "deps.sh: installing $*" >&2
    if [ -z "$apt_updated" ]; then
        apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Can clang build and run a libFuzzer program with ASan and UBSan?
fuzzer_ok() {
    local bin rc
    bin=$(mktemp "${TMPDIR:-/tmp}/deps-fuzz.XXXXXX") || return 1
    printf '%s\n' 'int LLVMFuzzerTestOneInput(const unsigned char *d, __SIZE_TYPE__ n);' \
        'int LLVMFuzzerTestOneInput(const unsigned char *d, __SIZE_TYPE__ n) { (void)d; (void)n; return 0; }' |
        clang -fsanitize=fuzzer,address,undefined -x c - -o "$bin" >/dev/null 2>&1 &&
        "$bin" -runs=1 >/dev/null 2>&1
    rc=$?
    rm -f "$bin"
    return $rc
}

# clang and its fuzzer runtime.  REQUIRED=1: exit 1 if they cannot be had;
# else print a note and go on.
ensure_clang() {
    local required=$1 ver
    if ! command -v clang >/dev/null 2>&1; then
        if can_install; then
            apt_install clang || true
        fi
        if ! command -v clang >/dev/null 2>&1; then
            [ "$required" = 1 ] || {
                echo "deps.sh: note: no clang; make test will not replay the fuzz regressions" \
                     "(Debian/Ubuntu: apt-get install clang libclang-rt-14-dev)" >&2
                return 0
            }
            echo "deps.sh: missing commands: clang" >&2
            echo "deps.sh: install it, e.g. on Debian/Ubuntu: sudo apt-get install clang libclang-rt-14-dev" >&2
            exit 1
        fi
    fi
    fuzzer_ok && return 0
    ver=$(clang -dumpversion 2>/dev/null | cut -d. -f1)
    if can_install; then
        apt_install "libclang-rt-${ver:-14}-dev" || apt_install libclang-rt-dev || true
        fuzzer_ok && return 0
    fi
    if [ "$required" = 1 ]; then
        echo "deps.sh: clang cannot link -fsanitize=fuzzer: install libclang-rt-${ver:-14}-dev" >&2
        exit 1
    fi
    echo "deps.sh: note: clang has no libFuzzer runtime (libclang-rt-${ver:-14}-dev);" \
         "make test will not replay the fuzz regressions" >&2
}

# redis-py, the client library tests use Debian's python3-redis through the
# system interpreter (/usr/bin/python3: a python3 earlier in PATH, e.g.
# pyenv's, does not see Debian's modules).  Installed when it can be; a
# suite that needs it skips, saying so, where it cannot.
redis_py_ok() { /usr/bin/python3 -c 'import redis' >/dev/null 2>&1; }
if [ $# -eq 0 ] && ! redis_py_ok; then
    if can_install; then
        apt_install python3 python3-redis || true
    fi
    redis_py_ok || echo "deps.sh: note: no redis-py for /usr/bin/python3 (python3-redis);" \
        "its client-library tests will skip" >&2
fi

# ioredis, node-redis, BullMQ and Bull, for the Node client-library tests: the npm packages
# pinned in test/clients/package.json and its lock file, installed with
# `npm ci` into test/clients/node_modules (Node and npm from Debian's nodejs
# and npm when missing).  A suite that needs them skips, saying so, where
# they cannot be had.
node_clients_ok() {
    local m
    for m in ioredis redis bullmq bull; do # the dependencies in clients/package.json
        [ -d "clients/node_modules/$m" ] || return 1
    done
}
if [ $# -eq 0 ] && ! node_clients_ok; then
    if ! command -v npm >/dev/null 2>&1 && can_install; then
        apt_install nodejs npm || true
    fi
    if command -v npm >/dev/null 2>&1; then
        echo "deps.sh: installing the Node client libraries (npm ci in test/clients)" >&2
        (cd clients && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || true
    fi
    node_clients_ok || echo "deps.sh: note: no ioredis/node-redis in test/clients/node_modules" \
        "(needs node and npm); their client-library tests will skip" >&2
fi

# clang is handled apart: it needs its runtime checked too.
wanted=()
for cmd in "${cmds[@]}"; do
    [ "$cmd" = clang ] && { ensure_clang 1; continue; }
    wanted+=("$cmd")
done
cmds=("${wanted[@]}")
for cmd in "${optional[@]}"; do
    [ "$cmd" = clang ] && ensure_clang 0
done
[ ${#cmds[@]} -eq 0 ] && exit 0

missing_cmds=() missing_pkgs=()
for cmd in "${cmds[@]}"; do
    if ! command -v "$cmd" >/dev/null 2>&1; then
        missing_cmds+=("$cmd")
        missing_pkgs+=("${pkg[$cmd]}")
    fi
done
[ ${#missing_cmds[@]} -eq 0 ] && exit 0

# Unique package names, sorted (redis-server and redis-cli may both be missing).
mapfile -t missing_pkgs < <(printf '%s\n' "${missing_pkgs[@]}" | sort -u)

if can_install; then
    apt_install "${missing_pkgs[@]}"
    for cmd in "${missing_cmds[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 || {
            echo "deps.sh: $cmd still missing after installing ${pkg[$cmd]}" >&2
            exit 1
        }
    done
    exit 0
fi

echo "deps.sh: missing commands: ${missing_cmds[*]}" >&2
echo "deps.sh: install them, e.g. on Debian/Ubuntu: sudo apt-get install ${missing_pkgs[*]}" >&2
exit 1
