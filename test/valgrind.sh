#!/usr/bin/env bash
# test/valgrind.sh -- run the proxy under valgrind memcheck through a
# representative subset of the bats suites, then check every valgrind log.
#
#   test/valgrind.sh            (from the repository root or anywhere)
#
# The subset exercises request splitting and merging, refused and unknown
# commands, protocol errors and hostile input, a 32 MiB value, clients that
# vanish or never read, backends killed, stopped, timing out or answering
# garbage, SIGTERM with requests in flight, a short chaos run, and (when
# ops.bats is present) reloads.  helper.bash runs the proxy as $SP_WRAP $SP_BIN ... (valgrind execs
# the proxy in place, so the PID and the signals are the proxy's) and waits
# longer for it to start and exit.  Tests whose asserts measure the proxy's
# CPU time or RSS are left out: valgrind inflates both.  The subset is the
# tests tagged `# bats test_tags=valgrind` (bats --filter-tags, bats 1.8+).
#
# Every log must say "ERROR SUMMARY: 0 errors" and "definitely lost: 0 bytes"
# (or "no leaks are possible"); a log without an ERROR SUMMARY means the
# proxy did not exit by itself (killed after the grace period).  Exit status:
# 0 when every selected test passed and every log is clean.
#
# Environment: CHAOS_SECONDS (default 10 here), VG_BIN (default ./shardproxy;
# not the ASan build), VG_OUT (log directory, default a new temp dir),
# VG_QUICK=1 (the robustness.bats subset only).
set -u
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
command -v valgrind >/dev/null || { echo "valgrind.sh: valgrind is not installed" >&2; exit 2; }
command -v bats >/dev/null || { echo "valgrind.sh: bats is not installed" >&2; exit 2; }
if [[ -z "${VG_BIN:-}" ]]; then
    make --no-print-directory shardproxy >/dev/null || exit 2
fi
OUT=${VG_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/sp-valgrind.XXXXXX")}
mkdir -p "$OUT"
export SP_BIN=${VG_BIN:-$ROOT/shardproxy}
export SP_WRAP_LOG="$OUT/vg.%p.log"
export CHAOS_SECONDS=${CHAOS_SECONDS:-10}
export SP_WRAP="valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect --error-exitcode=99 --log-file=$SP_WRAP_LOG"

# The subset: the tests tagged `# bats test_tags=valgrind` in these suites
# (bats 1.8+ for --filter-tags).
SUBSET=(robustness.bats)
if [[ "${VG_QUICK:-}" != 1 ]]; then
    SUBSET+=(proxy.bats failures.bats ops.bats fidelity.bats dedicated.bats pubsub.bats)
fi
if ! bats --filter-tags valgrind --count "test/${SUBSET[0]}" >/dev/null 2>&1; then
    echo "valgrind.sh: this bats ($(bats --version)) has no --filter-tags (bats 1.8+ needed)" >&2
    exit 2
fi
# valgrind makes every test slower: a longer per-test limit than helper.bash's
export BATS_TEST_TIMEOUT=${BATS_TEST_TIMEOUT:-1200}

rc=0
t0=$SECONDS
for file in "${SUBSET[@]}"; do
    [[ -f "test/$file" ]] || { echo "== $file: not present, skipped"; continue; }
    echo "== bats --filter-tags valgrind test/$file (under valgrind)"
    bats --filter-tags valgrind "test/$file" || rc=1
done

echo "== valgrind logs in $OUT ($((SECONDS - t0)) s)"
n=0 bad=0
for log in "$OUT"/vg.*.log; do
    [[ -e "$log" ]] || continue
    n=$((n + 1))
    errs=$(grep -o 'ERROR SUMMARY: [0-9,]* errors' "$log" | tail -n 1)
    lost=$(grep -o 'definitely lost: [0-9,]* bytes' "$log" | tail -n 1)
    [[ -z "$lost" ]] && grep -q 'no leaks are possible' "$log" && lost="no leaks are possible"
    heap=$(grep -o 'total heap usage: .*' "$log" | tail -n 1)
    printf '%s: %s; %s; %s\n' "$(basename "$log")" "${errs:-NO ERROR SUMMARY (killed?)}" \
        "${lost:-no leak summary}" "$heap"
    if [[ "$errs" != "ERROR SUMMARY: 0 errors" ]] ||
        [[ "$lost" != "definitely lost: 0 bytes" && "$lost" != "no leaks are possible" ]]; then
        bad=$((bad + 1))
        echo "---- $log:"
        cat "$log"
    fi
done
if ((n == 0)); then
    echo "valgrind.sh: no valgrind logs: the proxy never ran under valgrind" >&2
    rc=1
fi
echo "== valgrind summary: $n proxy runs, $bad with errors or leaks; bats status $rc"
((bad == 0)) || rc=1
exit "$rc"
