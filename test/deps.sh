#!/usr/bin/env bash
# test/deps.sh -- make sure the tools the test suites use are installed.
#
# With command names as arguments (e.g. `deps.sh redis-server redis-cli`),
# checks only those.  Quiet when everything is there.  Otherwise, as root with apt-get (Debian,
# Ubuntu, CI), installs the missing packages; anywhere else prints what is
# missing and exits 1.  The suites never use port 6379, so the system redis
# that Debian's redis-server package may start on install does no harm.
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
)
pkg[jq]=jq
cmds=(bats redis-server redis-cli socat python3)
# jq only when a suite uses it.
if grep -qw jq ./*.bats helper.bash 2>/dev/null; then
    cmds+=(jq)
fi
if [ $# -gt 0 ]; then
    for cmd in "$@"; do
        [ -n "${pkg[$cmd]:-}" ] || { echo "deps.sh: unknown command '$cmd'" >&2; exit 2; }
    done
    cmds=("$@")
fi

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

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "deps.sh: installing ${missing_pkgs[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing_pkgs[@]}" >/dev/null
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
