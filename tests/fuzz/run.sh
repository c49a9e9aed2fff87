#!/bin/sh
# run.sh — the `make fuzz` driver.
#
#   sh tests/fuzz/run.sh FUZZ_BUILD_DIR SECONDS [TARGET...]
#
# Runs each libFuzzer target (default: every FUZZ_BUILD_DIR/fuzz_*) for
# SECONDS, starting from the seeds in tests/fuzz/corpus/<target>/ and the
# inputs earlier runs found (FUZZ_BUILD_DIR/corpus/<target>/, which is where
# new ones go: the seeds in the repository are never rewritten). A crash,
# leak or sanitizer report leaves its reproducer in
# FUZZ_BUILD_DIR/artifacts/<target>/ — replay it with
#   FUZZ_BUILD_DIR/fuzz_<target> FUZZ_BUILD_DIR/artifacts/<target>/crash-...
# The last lines are a table: target, runs, coverage, corpus size, result.
# Exit status: 0 when no target found anything.
set -u

if [ $# -lt 2 ]; then
    echo "usage: sh tests/fuzz/run.sh FUZZ_BUILD_DIR SECONDS [TARGET...]" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$1" && pwd) || exit 2
seconds=$2
shift 2
if [ $# -eq 0 ]; then
    set --
    for bin in "$build"/fuzz_*; do
        [ -x "$bin" ] && set -- "$@" "${bin##*/fuzz_}"
    done
fi

status=0
summary=""
for target in "$@"; do
    bin="$build/fuzz_$target"
    [ -x "$bin" ] || { echo "fuzz: $bin not built" >&2; status=1; continue; }
    corpus="$build/corpus/$target"
    artifacts="$build/artifacts/$target"
    mkdir -p "$corpus" "$artifacts"
    dict=""
    [ -f "$here/$target.dict" ] && dict="-dict=$here/$target.dict"
    log="$build/fuzz_$target.log"
    echo "==> fuzz_$target for ${seconds}s (log: $log)"
    # shellcheck disable=SC2086 # $dict is one optional word
    "$bin" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$artifacts/" $dict "$corpus" "$here/corpus/$target" >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | sed 's/cov: //')
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -n 1 | sed 's/ft: //')
    units=$(find "$corpus" -type f | wc -l)
    if [ "$rc" -eq 0 ]; then
        result="ok"
    else
        status=1
        found=$(ls -t "$artifacts" 2>/dev/null | head -n 1)
        result="FOUND (exit $rc): $artifacts/$found"
        grep -m 3 -E 'ERROR: |property violated|leaked|SUMMARY' "$log" | sed 's/^/    /'
    fi
    summary="$summary$(printf '%-8s %12s %6s %7s %7s  %s' "$target" "${runs:-?}" "${cov:-?}" "${ft:-?}" "$units" "$result")
"
done
echo
printf '%-8s %12s %6s %7s %7s  %s\n' target runs cov ft corpus result
printf '%s' "$summary"
exit $status
