#!/bin/sh
# bench.sh — the `make bench` driver (issue 6).
#
#   sh tests/bench/bench.sh BUILD_DIR
#
# Starts a throwaway PostgreSQL 15 with durable settings (tests/pg.sh with
# PGWORK_PG_FSYNC=on: fsync and full_page_writes on, so commits cost what
# they cost in production) in a fresh temp directory, installs the peer
# (`npm ci` in tests/bench/peer from the committed package-lock.json; the
# peer's rows are skipped, with a message, when node/npm or the registry is
# unavailable), runs BUILD_DIR/tests/bench/bench, and removes the cluster and
# the directory on exit — also after a failure or Ctrl-C.
#
# The table goes to stdout, progress to stderr, the same table as JSON to
# BUILD_DIR/bench.json and as Markdown (a table per section, as the
# README's Performance section shows them) to BUILD_DIR/bench.md.
# BENCH_* variables pass through (tests/bench/bench.h): BENCH_REPEAT (3),
# BENCH_TASKS (50000), BENCH_EXEC_TASKS (5000), BENCH_FLOOR_SAMPLES (1000),
# BENCH_PICKUP_SAMPLES (300), BENCH_IDLE_SECONDS (120),
# BENCH_ENQUEUE_SECONDS (5), BENCH_PEER_JOBS (= BENCH_TASKS), BENCH_BASE
# (an absolute path to another pgwork binary: the pickup step measures it
# beside this build, samples interleaved, and prints the p50 ratio).
# BENCH_KEEP=1 keeps the temp directory (supervisor logs, configs);
# BENCH_ONLY=claims,producers runs just those steps (names in bench.c's
# steps[]: pickup peer defaults throughput pgbouncer idle claims producers
# enqueue lateness scaling caps), a quick look while working.
set -u

if [ $# -ne 1 ]; then
    echo "usage: sh tests/bench/bench.sh BUILD_DIR" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "$1" && pwd) || exit 2
for bin in pgwork tests/bench/bench tests/bench/noop_coprocess; do
    [ -x "$build/$bin" ] || { echo "bench.sh: $build/$bin not built (make bench)" >&2; exit 2; }
done
command -v pgbench >/dev/null 2>&1 || { echo "bench.sh: pgbench not found (postgresql-15)" >&2; exit 2; }
command -v python3 >/dev/null 2>&1 || { echo "bench.sh: python3 not found" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pgwork-bench.XXXXXX") || exit 1
chmod 755 "$tmp"
mkdir "$tmp/work"

bouncer_pid="" # the PgBouncer below, once started
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    [ -n "$bouncer_pid" ] && kill "$bouncer_pid" 2>/dev/null && wait "$bouncer_pid" 2>/dev/null
    sh "$root/tests/pg.sh" destroy "$tmp/pg" 2>/dev/null
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        echo "bench.sh: kept $tmp/work" >&2
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ! env_line=$(PGWORK_PG_FSYNC=on sh "$root/tests/pg.sh" start "$tmp/pg"); then
    echo "bench.sh: could not start PostgreSQL" >&2
    exit 1
fi
eval "$env_line"
export PGHOST PGPORT PGUSER PGDATABASE
unset PGWORK_CONFIG PGWORK_DATABASE_URL PGOPTIONS

# A PgBouncer in transaction mode in front of the cluster, for the rows that
# measure what pooling costs (as root it runs as the cluster's owner: it
# refuses root). Skipped, with a message, without Debian's pgbouncer.
bouncer_port=""
if [ -x /usr/sbin/pgbouncer ]; then
    mkdir "$tmp/bouncer"
    bouncer_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    printf '"%s" ""\n' "$PGUSER" >"$tmp/bouncer/users.txt"
    cat >"$tmp/bouncer/pgbouncer.ini" <<EOF_INI
[databases]
* = host=$PGHOST port=$PGPORT
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bouncer_port
unix_socket_dir =
auth_type = trust
auth_file = $tmp/bouncer/users.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 200
log_connections = 0
log_disconnections = 0
EOF_INI
    as_owner=""
    if [ "$(id -u)" -eq 0 ]; then
        owner=$(stat -c %U "$PGHOST")
        chown -R "$owner" "$tmp/bouncer"
        as_owner="setpriv --reuid=$owner --regid=$(id -g "$owner") --clear-groups"
    fi
    # shellcheck disable=SC2086 # as_owner is a command prefix, or nothing
    $as_owner /usr/sbin/pgbouncer "$tmp/bouncer/pgbouncer.ini" >"$tmp/bouncer/log" 2>&1 &
    bouncer_pid=$!
    tries=0
    until pg_isready -q -h 127.0.0.1 -p "$bouncer_port" -d pgbouncer; do
        tries=$((tries + 1))
        if [ "$tries" -gt 100 ] || ! kill -0 "$bouncer_pid" 2>/dev/null; then
            echo "bench.sh: PgBouncer did not start, its rows are skipped:" >&2
            tail -n 5 "$tmp/bouncer/log" >&2
            bouncer_port=""
            break
        fi
        sleep 0.1
    done
else
    echo "bench.sh: /usr/sbin/pgbouncer not found, its rows are skipped (sh scripts/deps.sh)" >&2
fi

node=""
case ",${BENCH_ONLY:-peer}," in
*,peer,* | *,defaults,*) want_peer=1 ;;
*) want_peer=0 ;; # the steps asked for do not run the peer (make soak)
esac
if [ "$want_peer" = 0 ]; then
    :
elif command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    echo "bench: npm ci in tests/bench/peer (graphile-worker)" >&2
    if (cd "$here/peer" && npm ci --no-audit --no-fund --loglevel=error) >"$tmp/npm.log" 2>&1; then
        node=$(command -v node)
    else
        echo "bench.sh: npm ci failed, the peer is skipped:" >&2
        tail -n 5 "$tmp/npm.log" >&2
    fi
else
    echo "bench.sh: node/npm not found, the peer is skipped" >&2
fi

git_rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null) || git_rev=""
if [ -n "$git_rev" ] && [ -n "$(git -C "$root" status --porcelain 2>/dev/null | head -n 1)" ]; then
    git_rev="$git_rev+changes"
fi

BENCH_PGWORK="$build/pgwork" BENCH_TMP="$tmp/work" BENCH_SRC="$root" \
    BENCH_NOOP="$build/tests/bench/noop_coprocess" BENCH_NODE="$node" \
    BENCH_JSON="$build/bench.json" BENCH_MD="$build/bench.md" BENCH_GIT="$git_rev" BENCH_PGBOUNCER_PORT="$bouncer_port" \
    "$build/tests/bench/bench"
