#!/bin/sh
# pg.sh — a throwaway PostgreSQL cluster for the tests and the demo.
#
#   sh tests/pg.sh start DIR    initdb (if needed) and start a cluster in DIR,
#                               wait until it accepts connections, print the
#                               environment on stdout (eval it)
#   sh tests/pg.sh stop DIR     stop it (fast shutdown); no-op if not running
#   sh tests/pg.sh env DIR      print the environment again
#   sh tests/pg.sh destroy DIR  stop it and delete its files (and DIR)
#
# The printed environment is one line:
#   export PGHOST=<DIR>/socket PGPORT=<port> PGUSER=pgwork PGDATABASE=postgres
#
# Layout: DIR/data (cluster), DIR/socket (unix socket), DIR/log/postgresql.log.
# Authentication is `trust`; the bootstrap superuser is `pgwork`; encoding
# UTF8, locale C. The cluster listens only on the unix socket in DIR/socket.
#
# Options (environment, read by `start`):
#   PGWORK_PG_TCP=1     also listen on 127.0.0.1, on a free port (PGPORT)
#   PGWORK_PG_FSYNC=on  durable settings (fsync, full_page_writes) for the
#                       benchmark; the default is fsync=off, fine for tests
#
# PostgreSQL refuses to run as root. Run as root, the server runs as the
# `postgres` system user (runuser), so DIR is chown'ed to it; if postgres
# cannot reach DIR (a parent directory it cannot traverse, or a path too long
# for a unix socket), the cluster lives in a fresh directory under /tmp and
# DIR/cluster-dir records where. Run as any other user, everything runs as
# that user. Progress and errors go to stderr; stdout carries only the
# environment line.

# shellcheck disable=SC2016 # in sh -c '... "$1"', $1 belongs to the inner shell
set -eu

usage() {
    echo "usage: sh tests/pg.sh start|stop|env|destroy DIR" >&2
    exit 2
}

die() {
    echo "pg.sh: $*" >&2
    exit 1
}

[ $# -eq 2 ] || usage
command=$1
dir=$2
case "$command" in
start | stop | env | destroy) ;;
*) usage ;;
esac
case "$dir" in
/*) ;;
*) dir="$(pwd)/$dir" ;;
esac

# --- the server binaries ---------------------------------------------------
bindir=$(pg_config --bindir 2>/dev/null || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
    bindir=/usr/lib/postgresql/15/bin
fi
[ -x "$bindir/initdb" ] || die "initdb not found (install postgresql-15: sh scripts/deps.sh)"

is_root=false
[ "$(id -u)" -eq 0 ] && is_root=true

# run_pg CMD...: run a server binary as the user who owns the cluster. From /
# so that a cwd the postgres user cannot enter produces no warnings.
run_pg() {
    if $is_root; then
        (cd / && runuser -u "$pg_user" -- "$@")
    else
        "$@"
    fi
}

# can_use DIR: can the server user create and traverse files in DIR?
can_use() {
    if $is_root; then
        (cd / && runuser -u "$pg_user" -- sh -c 'test -d "$1" && test -w "$1" && test -x "$1"' sh "$1")
    else
        test -d "$1" && test -w "$1" && test -x "$1"
    fi
}

# The socket path ("<base>/socket/.s.PGSQL.NNNNN") must fit sun_path (108).
socket_path_fits() {
    [ "$(printf '%s' "$1/socket/.s.PGSQL.65535" | wc -c)" -le 107 ]
}

# --- where the cluster lives -----------------------------------------------
# base: the directory holding data/, socket/, log/ — DIR itself, or the
# directory named in DIR/cluster-dir.
resolve_base() {
    base=$dir
    if [ -f "$dir/cluster-dir" ]; then
        base=$(cat "$dir/cluster-dir")
    fi
}

pg_user=$(id -un)
if $is_root; then
    pg_user=postgres
    resolve_base
    # A cluster made earlier by some other (non-root) user stays theirs.
    if [ -d "$base/data" ]; then
        owner=$(stat -c %U "$base/data")
        [ "$owner" != root ] && pg_user=$owner
    fi
    id "$pg_user" >/dev/null 2>&1 || die "user $pg_user does not exist (install postgresql-15)"
fi

# Decide (at start) where the cluster lives and make the directories.
prepare_base() {
    mkdir -p "$dir"
    resolve_base
    if [ "$base" != "$dir" ] && [ -d "$base/data" ]; then
        return 0 # an earlier start chose a directory under /tmp
    fi
    base=$dir
    if $is_root && [ ! -d "$dir/data" ]; then
        chown "$pg_user:" "$dir"
    fi
    why=""
    if ! socket_path_fits "$dir"; then
        why="its path is too long for a unix socket"
    elif ! can_use "$dir"; then
        why="$pg_user cannot use it"
    fi
    if [ -n "$why" ]; then
        base=$(mktemp -d /tmp/pgwork-pg.XXXXXX)
        if $is_root; then
            chown "$pg_user:" "$base"
        fi
        printf '%s\n' "$base" >"$dir/cluster-dir"
        echo "pg.sh: not using $dir ($why); the cluster lives in $base" >&2
    fi
    for sub in data socket log; do
        [ -d "$base/$sub" ] || run_pg mkdir -p "$base/$sub"
    done
    run_pg chmod 700 "$base/data"
}

# A free TCP port on 127.0.0.1: random in 20000..59999, not listening now.
free_port() {
    listening=$(cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
        awk '$4 == "0A" { split($2, a, ":"); print a[2] }')
    tries=0
    while [ $tries -lt 100 ]; do
        tries=$((tries + 1))
        n=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
        p=$((20000 + n % 40000))
        hex=$(printf '%04X' "$p")
        if ! printf '%s\n' "$listening" | grep -qx "$hex"; then
            echo "$p"
            return 0
        fi
    done
    die "no free TCP port found"
}

print_env() {
    [ -f "$base/port" ] || die "no cluster in $dir (run: sh tests/pg.sh start $dir)"
    port=$(cat "$base/port")
    socket="$base/socket"
    case "$socket" in
    *[!A-Za-z0-9/._-]*) socket="'$(printf '%s' "$socket" | sed "s/'/'\\\\''/g")'" ;;
    esac
    echo "export PGHOST=$socket PGPORT=$port PGUSER=pgwork PGDATABASE=postgres"
}

is_running() {
    [ -f "$base/data/PG_VERSION" ] && run_pg "$bindir/pg_ctl" status -D "$base/data" >/dev/null 2>&1
}

# Settings are rewritten at every start, so options apply on restart.
write_settings() {
    port=$1
    if [ "${PGWORK_PG_TCP:-0}" = 1 ]; then
        listen="127.0.0.1"
    else
        listen=""
    fi
    case "${PGWORK_PG_FSYNC:-off}" in
    on | 1 | true) durable=on ;;
    *) durable=off ;;
    esac
    run_pg sh -c 'cat >"$1"' sh "$base/data/pgwork.conf" <<EOF
# written by tests/pg.sh at every start — edits are lost
listen_addresses = '$listen'
port = $port
unix_socket_directories = '$base/socket'
max_connections = 200
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
fsync = $durable
full_page_writes = $durable
max_wal_size = '1GB'
log_line_prefix = '%m [%p] %q%u@%d [%a] '
log_timezone = 'UTC'
EOF
    echo "$port" >"$base/port.tmp" && mv "$base/port.tmp" "$base/port"
}

start() {
    prepare_base
    if is_running; then
        echo "pg.sh: already running in $base" >&2
        print_env
        return 0
    fi
    if [ ! -f "$base/data/PG_VERSION" ]; then
        # An interrupted initdb leaves a partial directory: start over.
        run_pg rm -rf "$base/data"
        run_pg mkdir -m 700 "$base/data"
        echo "pg.sh: initdb in $base/data" >&2
        if ! run_pg "$bindir/initdb" -D "$base/data" -U pgwork --auth=trust \
            --encoding=UTF8 --locale=C --no-sync >"$base/log/initdb.log" 2>&1; then
            cat "$base/log/initdb.log" >&2
            die "initdb failed"
        fi
        echo "include_if_exists = 'pgwork.conf'" |
            run_pg sh -c 'cat >>"$1"' sh "$base/data/postgresql.conf"
    fi
    attempt=0
    while :; do
        attempt=$((attempt + 1))
        if [ "${PGWORK_PG_TCP:-0}" = 1 ]; then
            write_settings "$(free_port)"
        else
            write_settings 5432 # only a unix socket in a private directory
        fi
        if run_pg "$bindir/pg_ctl" start -w -t 60 -D "$base/data" \
            -l "$base/log/postgresql.log" >/dev/null 2>&1; then
            break
        fi
        # A port taken between free_port and bind: try another.
        if [ "${PGWORK_PG_TCP:-0}" = 1 ] && [ $attempt -lt 5 ] &&
            tail -n 20 "$base/log/postgresql.log" | grep -q 'could not bind'; then
            continue
        fi
        tail -n 30 "$base/log/postgresql.log" >&2 || true
        die "could not start PostgreSQL in $base (log: $base/log/postgresql.log)"
    done
    echo "pg.sh: started in $base" >&2
    print_env
}

stop() {
    resolve_base
    if is_running; then
        run_pg "$bindir/pg_ctl" stop -w -t 60 -m fast -D "$base/data" >/dev/null
        echo "pg.sh: stopped $base" >&2
    fi
}

case "$command" in
start) start ;;
stop) stop ;;
env)
    resolve_base
    print_env
    ;;
destroy)
    stop
    [ "$base" != "$dir" ] && rm -rf "$base"
    rm -rf "$dir"
    ;;
esac
