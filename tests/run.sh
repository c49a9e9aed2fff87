#!/bin/sh
# run.sh — the `make test` driver.
#
#   sh tests/run.sh BUILD_DIR
#
# Starts a throwaway PostgreSQL 15 (tests/pg.sh) in a fresh temp directory,
# runs BUILD_DIR/tests/unit_tests, then BUILD_DIR/tests/integration_tests
# (when built) against it with PGWORK_BIN=BUILD_DIR/pgwork, then
# tests/deploy/run.sh (Dockerfile, deploy/kubernetes, PID 1 as in the image),
# tests/web/run.sh (pgwork web in headless Chromium),
# and removes the cluster and the directory on exit — also after a failure
# or Ctrl-C.
#
# The last line is always "N passed, N failed, N skipped" (Check's tests of
# both binaries, and the deploy checks); the exit status is non-zero if
# anything failed. A test that cannot run here (root only) prints
# "SKIP: <test>: <why>" (harness_skip) and counts as skipped, not passed;
# with CI=true a skip fails the run: CI runs as root and must run them all. Binaries built with sanitizers (make test SANITIZE=1) run with
# errors fatal and leak detection on. Check's variables (CK_RUN_SUITE,
# CK_RUN_CASE, CK_FORK, ...) pass through, e.g. CK_RUN_SUITE=migrate make test.
set -u

if [ $# -ne 1 ]; then
    echo "usage: sh tests/run.sh BUILD_DIR" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$1" && pwd) || exit 2
unit_bin="$build/tests/unit_tests"
integ_bin="$build/tests/integration_tests"
[ -x "$build/pgwork" ] || { echo "run.sh: $build/pgwork not built" >&2; exit 2; }

# --- a throwaway cluster, removed whatever happens --------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pgwork-test.XXXXXX") || exit 1
# As root the server runs as `postgres`, which must traverse this directory.
chmod 755 "$tmp"
mkdir "$tmp/work"

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    sh "$here/pg.sh" destroy "$tmp/pg" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ! env_line=$(sh "$here/pg.sh" start "$tmp/pg"); then
    echo "run.sh: could not start PostgreSQL" >&2
    echo "0 passed, 1 failed, 0 skipped"
    exit 1
fi
eval "$env_line"
export PGHOST PGPORT PGUSER PGDATABASE
export PGWORK_BIN="$build/pgwork"
export PGWORK_TEST_TMPDIR="$tmp/work"
unset PGWORK_CONFIG PGWORK_DATABASE_URL

# --- sanitizer builds -------------------------------------------------------
if [ "${SANITIZE:-}" = 1 ] || grep -q __asan_init "$build/pgwork" 2>/dev/null; then
    export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:abort_on_error=0"
    export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
    # Sanitized code is slower: give Check's per-test timeouts room.
    export CK_TIMEOUT_MULTIPLIER="${CK_TIMEOUT_MULTIPLIER:-3}"
    echo "run.sh: sanitizer build: ASAN_OPTIONS=$ASAN_OPTIONS"
fi

# --- run the test binaries --------------------------------------------------
passed=0
failed=0
skipped=0
status=0

# run_check NAME BIN: run a Check binary, show its output as it comes, and add
# its "NN%: Checks: C, Failures: F, Errors: E" line to the totals.
run_check() {
    name=$1
    bin=$2
    log="$tmp/$name.log"
    echo "==> $name"
    { "$bin" 2>&1; echo $? >"$tmp/$name.rc"; } | tee "$log"
    rc=$(cat "$tmp/$name.rc" 2>/dev/null || echo 1)
    # Not anchored: with no suite selected the line follows "Running suite(s):".
    summary=$(sed -n 's/.*[0-9]%: Checks: \([0-9]*\), Failures: \([0-9]*\), Errors: \([0-9]*\).*/\1 \2 \3/p' "$log" | tail -n 1)
    if [ -z "$summary" ]; then
        echo "run.sh: $name exited $rc without a Check summary" >&2
        failed=$((failed + 1))
        status=1
        return
    fi
    # shellcheck disable=SC2086 # split "C F E" into $1 $2 $3
    set -- $summary
    # Check has no skipped state: a skipped test returned early, "passed".
    skips=$(grep -c '^SKIP: ' "$log")
    skipped=$((skipped + skips))
    passed=$((passed + $1 - $2 - $3 - skips))
    failed=$((failed + $2 + $3))
    if [ "$rc" -ne 0 ]; then
        status=1
        # Failures are counted above; a non-zero exit with none is a crash
        # after the run (a leak report, say).
        if [ $(($2 + $3)) -eq 0 ]; then
            echo "run.sh: $name exited $rc" >&2
            failed=$((failed + 1))
        fi
    fi
}

if [ -x "$unit_bin" ]; then
    run_check unit_tests "$unit_bin"
else
    echo "run.sh: $unit_bin not built" >&2
    failed=$((failed + 1))
    status=1
fi
if [ -x "$integ_bin" ]; then
    run_check integration_tests "$integ_bin"
fi

# Dockerfile and deploy/kubernetes checked offline, and the binary run as the
# image runs it (tests/deploy/run.sh); its last line is
# "deploy: N passed, N failed, N skipped".
echo "==> deploy"
{ sh "$here/deploy/run.sh" "$build" 2>&1; echo $? >"$tmp/deploy.rc"; } | tee "$tmp/deploy.log"
deploy_counts=$(sed -n 's/^deploy: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped.*/\1 \2 \3/p' "$tmp/deploy.log" | tail -n 1)
if [ -n "$deploy_counts" ]; then
    # shellcheck disable=SC2086 # split "P F S" into $1 $2 $3
    set -- $deploy_counts
    passed=$((passed + $1))
    failed=$((failed + $2))
    skipped=$((skipped + $3))
else
    failed=$((failed + 1))
fi
[ "$(cat "$tmp/deploy.rc" 2>/dev/null || echo 1)" -eq 0 ] || status=1

# pgwork web in headless Chromium (tests/web/run.sh); its last line is
# "browser: N passed, N failed, N skipped". Not with a filtered Check run
# (CK_RUN_SUITE/CK_RUN_CASE) unless that names the web suite.
case "${CK_RUN_SUITE:-web}" in
web)
    echo "==> browser"
    { sh "$here/web/run.sh" "$build" 2>&1; echo $? >"$tmp/browser.rc"; } | tee "$tmp/browser.log"
    browser_counts=$(sed -n 's/^browser: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped.*/\1 \2 \3/p' "$tmp/browser.log" | tail -n 1)
    if [ -n "$browser_counts" ]; then
        # shellcheck disable=SC2086 # split "P F S" into $1 $2 $3
        set -- $browser_counts
        passed=$((passed + $1))
        failed=$((failed + $2))
        skipped=$((skipped + $3))
    else
        failed=$((failed + 1))
    fi
    [ "$(cat "$tmp/browser.rc" 2>/dev/null || echo 1)" -eq 0 ] || status=1
    ;;
esac

[ "$failed" -eq 0 ] || status=1
if [ "$skipped" -gt 0 ]; then
    echo "run.sh: skipped:" >&2
    grep -h '^SKIP: \|^skip: ' "$tmp"/*.log >&2
    # CI runs as root: a test skipped there is a test that never runs.
    if [ "${CI:-}" = true ]; then
        echo "run.sh: CI=true: $skipped test(s) skipped (running as uid $(id -u));" \
            "CI must run every test (as root)" >&2
        status=1
    fi
fi
echo "$passed passed, $failed failed, $skipped skipped"
exit $status
