#!/bin/sh
# run.sh — the `make chaos` driver.
#
#   sh tests/chaos/run.sh BUILD_DIR [SCENARIO...]
#
# Starts a throwaway PostgreSQL 15 (tests/pg.sh) in a fresh temp directory,
# runs BUILD_DIR/tests/chaos/chaos against it with PGWORK_BIN=BUILD_DIR/pgwork
# (scenarios: storm storm-exec restart-fast restart-immediate outage valgrind; default
# all), prints its table, and removes the cluster on exit — also after a
# failure or Ctrl-C. Logs and configs stay in the temp directory when a
# scenario failed (its path is printed) and are removed otherwise.
#
# Tuning (environment): CHAOS_TASKS (10000), CHAOS_OUTAGE_S (10).
# CHAOS_PROGRAM=torture runs BUILD_DIR/tests/chaos/torture instead (make
# torture; its TORTURE_* variables pass through). CHAOS_KEEP=1 keeps the
# logs after a passing run too (a near miss is worth reading).
set -u

if [ $# -lt 1 ]; then
    echo "usage: sh tests/chaos/run.sh BUILD_DIR [SCENARIO...]" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$1" && pwd) || exit 2
shift
[ -x "$build/pgwork" ] || { echo "chaos: $build/pgwork not built" >&2; exit 2; }
program=${CHAOS_PROGRAM:-chaos}
case "$program" in
chaos | torture) ;;
*) echo "chaos: CHAOS_PROGRAM must be chaos or torture" >&2; exit 2 ;;
esac
[ -x "$build/tests/chaos/$program" ] || { echo "chaos: $build/tests/chaos/$program not built" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pgwork-$program.XXXXXX") || exit 1
chmod 755 "$tmp"
mkdir "$tmp/work"
keep=false
[ "${CHAOS_KEEP:-}" = 1 ] && keep=true

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    sh "$here/../pg.sh" destroy "$tmp/pg" 2>/dev/null
    if $keep; then
        echo "$program: logs kept in $tmp/work"
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

env_line=$(sh "$here/../pg.sh" start "$tmp/pg") || { echo "chaos: could not start PostgreSQL" >&2; exit 1; }
eval "$env_line"
export PGHOST PGPORT PGUSER PGDATABASE
export PGWORK_BIN="$build/pgwork"
export CHAOS_DIR="$tmp/work"
unset PGWORK_CONFIG PGWORK_DATABASE_URL

"$build/tests/chaos/$program" "$@"
status=$?
[ $status -eq 0 ] || keep=true
exit $status
