#!/bin/sh
# run.sh — the browser test of `make test` (tests/run.sh calls it):
# pgwork web in headless Chromium, as a person uses it.
#
#   sh tests/web/run.sh BUILD_DIR
#
# 1. npm ci of puppeteer-core (package-lock.json) into tests/web/node_modules,
#    skipped while the lockfile is unchanged; the browser is Debian's
#    chromium (scripts/deps.sh installs it), never a download.
# 2. A database of its own on the PostgreSQL tests/run.sh started
#    (PGHOST...), migrated, with tasks in two queues (one dead task's
#    last_error holds a <script>); `pgwork web` on a free loopback port.
# 3. browser.js logs in, opens the overview, a queue, a task, requeues the
#    dead task with a click and sees it move; screenshots in
#    BUILD_DIR/screenshots/. Then the database must show the task pending.
#
# The last line is "browser: N passed, N failed, N skipped"; the exit
# status is non-zero if anything failed.
set -u

if [ $# -ne 1 ]; then
    echo "usage: sh tests/web/run.sh BUILD_DIR" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$1" && pwd) || exit 2
bin="$build/pgwork"
shots="$build/screenshots"

passed=0
failed=0
skipped=0
finish() {
    echo "browser: $passed passed, $failed failed, $skipped skipped"
    [ "$failed" -eq 0 ]
    exit $?
}
chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ] || ! command -v node >/dev/null 2>&1 || [ -z "${PGHOST:-}" ]; then
    echo "skip: browser test: needs $chromium, node and the test cluster (sh scripts/deps.sh)"
    skipped=1
    finish
fi

# --- 1. puppeteer-core ---------------------------------------------------------
stamp="$here/node_modules/.pgwork-lock"
want=$(cat "$here/package-lock.json" "$here/package.json" | cksum)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "browser: npm ci (tests/web/package-lock.json)"
    # No install scripts: puppeteer-core downloads nothing; the browser is
    # the system's.
    if ! (cd "$here" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error); then
        echo "FAIL: npm ci in tests/web"
        failed=1
        finish
    fi
    echo "$want" >"$stamp"
fi

# --- 2. a database and pgwork web ---------------------------------------------
tmp=$(mktemp -d "${PGWORK_TEST_TMPDIR:-${TMPDIR:-/tmp}}/browser.XXXXXX") || exit 1
db="pgwork_browser_$$"
web=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    [ -n "$web" ] && kill "$web" 2>/dev/null && wait "$web" 2>/dev/null
    psql -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

psql -q -d postgres -c "CREATE DATABASE $db" || { failed=1; finish; }
url="postgresql:///$db?host=$PGHOST&port=${PGPORT:-5432}&user=${PGUSER:-$(id -un)}"
PGWORK_DATABASE_URL=$url "$bin" migrate >"$tmp/migrate.log" 2>&1 || {
    cat "$tmp/migrate.log"
    failed=1
    finish
}
dead_id=$(psql -qAt -d "$db" <<'SQL'
INSERT INTO pgwork.tasks (queue, payload, state, finished_at)
    SELECT 'mail', jsonb_build_object('n', g), 'done', now() - g * interval '50 seconds'
    FROM generate_series(1, 40) g;
INSERT INTO pgwork.tasks (queue, run_at) VALUES ('reports', now()), ('reports', now() + interval '1 hour');
INSERT INTO pgwork.tasks (queue, state, attempts, finished_at, last_error)
    VALUES ('mail', 'dead', 25, now() - interval '3 minutes', 'exit status 1: connection refused');
INSERT INTO pgwork.tasks (queue, payload, state, attempts, finished_at, last_error)
    VALUES ('mail', '{"to": "ops@example.com", "subject": "weekly"}', 'dead', 25, now(),
            'exit status 2: <script>alert(1)</script>')
    RETURNING id;
ANALYZE pgwork.tasks;
SQL
)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
token="browser-test-token-$$-0123456789"
printf 'web { listen = "127.0.0.1:%s" }\nlog { format = "text" }\n' "$port" >"$tmp/pgwork.conf"
PGWORK_DATABASE_URL=$url PGWORK_WEB_TOKEN=$token "$bin" -c "$tmp/pgwork.conf" web \
    >"$tmp/web.log" 2>&1 &
web=$!
i=0
until python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null; do
    i=$((i + 1))
    if [ "$i" -gt 100 ] || ! kill -0 "$web" 2>/dev/null; then
        echo "FAIL: pgwork web did not start:"
        sed 's/^/    /' "$tmp/web.log"
        failed=1
        finish
    fi
    sleep 0.1
done

# --- 3. the browser -----------------------------------------------------------
mkdir -p "$shots"
CHROMIUM=$chromium node "$here/browser.js" "http://127.0.0.1:$port" "$token" "$shots" "$dead_id" \
    >"$tmp/browser.log" 2>&1
rc=$?
cat "$tmp/browser.log"
counts=$(sed -n 's/^browser: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$tmp/browser.log")
if [ -n "$counts" ]; then
    # shellcheck disable=SC2086 # split "P F" into $1 $2
    set -- $counts
    passed=$((passed + $1))
    failed=$((failed + $2))
fi
[ "$rc" -eq 0 ] || [ "$failed" -gt 0 ] || failed=$((failed + 1))
state=$(psql -qAt -d "$db" -c "SELECT state FROM pgwork.tasks WHERE id = $dead_id")
if [ "$state" = pending ]; then
    passed=$((passed + 1))
    echo "ok: the database has task $dead_id pending"
else
    failed=$((failed + 1))
    echo "FAIL: task $dead_id is \"$state\" in the database, not pending"
fi
if grep -q "$token" "$tmp/web.log"; then
    failed=$((failed + 1))
    echo "FAIL: the token appears in pgwork web's log"
else
    passed=$((passed + 1))
    echo "ok: the token never appears in the log"
fi
echo "browser: screenshots in $shots"
finish
