#!/bin/sh
# run-demo.sh — `make run`: pgwork end to end on one machine.
#
#   sh scripts/run-demo.sh PGWORK_BIN
#
# 1. PostgreSQL: $PGWORK_DATABASE_URL if set; else a throwaway PostgreSQL 15
#    in .pgrun/ (tests/pg.sh; kept between runs, `sh tests/pg.sh destroy
#    .pgrun` resets it).
# 2. `pgwork migrate`, and the demo's own table pgwork_demo.audit.
# 3. The supervisor on deploy/pgwork.example.conf, in the background, and
#    the dashboard (`pgwork web`, web.listen's default 127.0.0.1:9188) with
#    a fresh random token; its URL and token are printed.
# 4. Sample tasks, enqueued every way an application can.
# 5. A line of task counts every 2 s until Ctrl-C, which sends SIGTERM to the
#    supervisor (graceful drain), waits for it and stops the cluster. A
#    second Ctrl-C asks for a fast shutdown (SIGQUIT).
set -eu

if [ $# -ne 1 ]; then
    echo "usage: sh scripts/run-demo.sh PGWORK_BIN" >&2
    exit 2
fi
case "$1" in
/*) bin=$1 ;;
*) bin="$(pwd)/$1" ;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
config=deploy/pgwork.example.conf
pgdir="$root/.pgrun"
[ -x "$bin" ] || { echo "run-demo: $bin is not built" >&2; exit 1; }

bindir=$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)
psql_bin=$bindir/psql
[ -x "$psql_bin" ] || psql_bin=psql

# sql SQL: run SQL on the demo database, unaligned output, stop on error.
sql() {
    if [ -n "${PGWORK_DATABASE_URL:-}" ]; then
        "$psql_bin" -X -q -At -v ON_ERROR_STOP=1 -d "$PGWORK_DATABASE_URL" -c "$1"
    else
        "$psql_bin" -X -q -At -v ON_ERROR_STOP=1 -c "$1"
    fi
}

# Bold headings and dim status lines on a terminal; plain text in a log.
if [ -t 1 ]; then
    bold=$(printf '\033[1m') dim=$(printf '\033[2m') plain=$(printf '\033[0m')
else
    bold="" dim="" plain=""
fi

say() {
    printf '%s==> %s%s\n' "$bold" "$*" "$plain"
}

# --- cleanup, whatever ends the demo ----------------------------------------
sup_pid=""
web_pid=""
own_cluster=false

# shellcheck disable=SC2317 # called from traps
stop_all() {
    trap '' INT TERM
    if [ -n "$web_pid" ]; then
        kill -TERM "$web_pid" 2>/dev/null || true
        wait "$web_pid" 2>/dev/null || true
        web_pid=""
    fi
    if [ -n "$sup_pid" ]; then
        # The terminal's Ctrl-C may have reached the supervisor already (it
        # treats INT like TERM); if not, ask it to drain.
        if kill -0 "$sup_pid" 2>/dev/null; then
            say "stopping pgwork: SIGTERM to the supervisor (pid $sup_pid); running tasks finish"
            kill -TERM "$sup_pid" 2>/dev/null || true
        fi
        # A second Ctrl-C: fast shutdown (requeue what is running, exit).
        trap 'echo; say "fast shutdown: SIGQUIT"; kill -QUIT "$sup_pid" 2>/dev/null || true' INT
        rc=""
        while [ -z "$rc" ] || kill -0 "$sup_pid" 2>/dev/null; do
            wait "$sup_pid" 2>/dev/null && rc=0 || rc=$?
        done
        say "supervisor exited (status $rc)"
        trap '' INT
    fi
    sup_pid=""
    if $own_cluster; then
        sh "$root/tests/pg.sh" stop "$pgdir" || true
        own_cluster=false
    fi
}
trap 'stop_all' EXIT
trap 'echo; stop_all; exit 0' INT TERM

# --- 1. PostgreSQL ------------------------------------------------------------
if [ -n "${PGWORK_DATABASE_URL:-}" ]; then
    say "using PGWORK_DATABASE_URL"
else
    say "starting a throwaway PostgreSQL 15 in .pgrun/"
    env_line=$(sh "$root/tests/pg.sh" start "$pgdir")
    own_cluster=true
    eval "$env_line"
    export PGHOST PGPORT PGUSER PGDATABASE
    echo "    for psql in another terminal: $env_line"
fi

# --- 2. schema ----------------------------------------------------------------
say "pgwork migrate"
"$bin" -c "$config" migrate
sql "SET client_min_messages = warning;
     CREATE SCHEMA IF NOT EXISTS pgwork_demo;
     CREATE TABLE IF NOT EXISTS pgwork_demo.audit (body jsonb, task bigint)"

# --- 3. the supervisor --------------------------------------------------------
say "starting: pgwork -c $config run"
"$bin" -c "$config" run &
sup_pid=$!

# Wait (up to 5 s) for its listener connection, so the tasks below show the
# wake-up path; tasks enqueued earlier would be found by its start-up sweep
# anyway.
i=0
while [ $i -lt 50 ]; do
    kill -0 "$sup_pid" 2>/dev/null || { wait "$sup_pid" || true; sup_pid=""; echo "run-demo: the supervisor exited at start" >&2; exit 1; }
    n=$(sql "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database()
               AND (application_name ILIKE 'pgwork%listen%' OR query ILIKE 'listen%')")
    [ "$n" -gt 0 ] && break
    i=$((i + 1))
    sleep 0.1
done

# The dashboard: its own process, its own token (PGWORK_WEB_TOKEN).
web_token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
PGWORK_WEB_TOKEN=$web_token "$bin" -c "$config" web &
web_pid=$!

# --- 4. sample tasks ----------------------------------------------------------
say "enqueueing sample tasks"
for n in 1 2 3; do
    printf '    pgwork enqueue default {"n":%s}  -> id ' "$n"
    "$bin" -c "$config" enqueue default "{\"n\":$n}"
done
echo "    INSERT ... SELECT generate_series: 20 tasks in one statement (one notification)"
sql "INSERT INTO pgwork.tasks (queue, payload)
     SELECT 'default', jsonb_build_object('n', i, 'batch', true)
     FROM generate_series(4, 23) AS i"
printf '    pgwork enqueue audit {"event":"signup","user":"alice"}  -> id '
"$bin" -c "$config" enqueue audit '{"event":"signup","user":"alice"}'
echo "    SELECT pgwork.enqueue('audit', ...)"
sql "SELECT pgwork.enqueue('audit', '{\"event\": \"login\", \"user\": \"bob\"}')" >/dev/null
echo "    one task for 3 s from now (run_at = now() + 3 s)"
sql "INSERT INTO pgwork.tasks (queue, payload, run_at)
     VALUES ('default', '{\"n\": \"in 3 s\"}', now() + interval '3 seconds')"

cat <<EOF

    The supervisor holds one LISTEN connection; each INSERT's trigger sent one
    notification per queue, and the supervisor woke one idle worker per hint.
    Queue "default" runs /bin/sh per task with the payload on its stdin;
    queue "audit" inserts into pgwork_demo.audit in the transaction that marks
    the task done. The delayed task is woken by a timer, not by polling.

    Try, in another terminal (with the environment printed above):
      psql -c "INSERT INTO pgwork.tasks (queue, payload) VALUES ('default', '{\"hi\": 1}')"
      kill -USR1 $sup_pid     # a status line per worker and queue
      kill -TTIN $sup_pid     # one worker more (TTOU: one fewer)

    The dashboard: http://127.0.0.1:9188/  (log in with the token
    $web_token)

    Ctrl-C stops the demo (graceful drain), a second Ctrl-C stops it fast.

EOF

# --- 5. a status line every 2 s until Ctrl-C ------------------------------------
while kill -0 "$sup_pid" 2>/dev/null; do
    line=$(sql "SELECT coalesce((SELECT string_agg(state || '=' || n, ' ' ORDER BY state)
                                  FROM (SELECT state, count(*) AS n FROM pgwork.tasks
                                        GROUP BY state) s), 'none')
                || ' | audit rows: ' || (SELECT count(*) FROM pgwork_demo.audit)" 2>/dev/null) ||
        line="(database unreachable)"
    printf '%s[%s] tasks: %s%s\n' "$dim" "$(date +%H:%M:%S)" "$line" "$plain"
    sleep 2
done

# The supervisor ended by itself.
wait "$sup_pid" && rc=0 || rc=$?
sup_pid=""
echo "run-demo: the supervisor exited with status $rc" >&2
exit 1
