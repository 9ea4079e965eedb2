#!/usr/bin/env bash
# test/fuzz/run.sh -- run one libFuzzer harness for a bounded time (make fuzz).
#
#   test/fuzz/run.sh NAME SECONDS [libFuzzer options...]
#
# Runs test/fuzz/fuzz_NAME for SECONDS with a scratch corpus in
# test/fuzz/work/NAME/corpus (kept between runs, never committed), seeded from
# test/fuzz/corpus/NAME, and crash artifacts in test/fuzz/work/NAME/.  Prints
# one summary line: executions, corpus size, crashes.  Exits 1 if the run
# crashed (an ASan/UBSan report, a failed invariant, a leak, a timeout or an
# out-of-memory), after printing the artifact path and the end of the log.
set -uo pipefail

cd "$(dirname "$0")/../.."
name=$1 seconds=$2
shift 2
bin=test/fuzz/fuzz_$name
work=test/fuzz/work/$name
log=$work/fuzz.log

mkdir -p "$work/corpus"
stamp=$work/.started
touch "$stamp"
# The scratch corpus comes first: libFuzzer writes new inputs to the first
# directory, so the committed seeds stay as they are.
"$bin" "$work/corpus" "test/fuzz/corpus/$name" -max_total_time="$seconds" \
    -artifact_prefix="$work/" -print_final_stats=1 "$@" >"$log" 2>&1
rc=$?

execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
corpus=$(grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' "$log" | tail -n 1 | sed 's/corp: //')
mapfile -t crashes < <(find "$work" -maxdepth 1 -type f -newer "$stamp" \
    \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \
    -o -name 'slow-unit-*' \) | sort)
rm -f "$stamp"

printf 'fuzz_%-8s %6ss  executions %-10s corpus %-14s crashes %d\n' "$name" "$seconds" \
    "${execs:-?}" "${corpus:-?}" "${#crashes[@]}"
if [ "$rc" -ne 0 ] || [ "${#crashes[@]}" -gt 0 ]; then
    echo "fuzz_$name FAILED (exit $rc); log: $log" >&2
    for f in "${crashes[@]}"; do
        echo "  crash input: $f" >&2
    done
    echo "---- end of $log ----" >&2
    tail -n 60 "$log" >&2
    echo "----" >&2
    echo "replay with: $bin ${crashes[0]:-<input>}" >&2
    exit 1
fi
exit 0
