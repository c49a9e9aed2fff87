#!/bin/sh
# deps.sh — make sure the Debian packages pgwork needs are installed.
#
#   sh scripts/deps.sh            install whatever is missing (as root)
#   sh scripts/deps.sh --check    the same, but quiet and fast when nothing
#                                 is missing (`make` runs it before run/test)
#
# As root, missing packages are installed with apt-get (one `apt-get update`
# first). As any other user nothing is installed: the exact `sudo apt-get
# install ...` line is printed and the script exits 1.
set -eu

# build: gcc/make, pkg-config, libpq, libconfuse, libmicrohttpd, libssl (libcrypto), Check (unit tests)
# run/test: tzdata (schedules' time zones), PostgreSQL 15 server (its client brings pgbench,
# which make bench drives) + contrib (pg_stat_statements), jq,
# PgBouncer (the pgbouncer suite runs pgwork behind Debian's 1.18)
# lint/debug: cppcheck, clang-format, valgrind
# deploy checks (tests/deploy): Node.js (+ npm) for the Dockerfile linter and
# the Kubernetes schema validator, shellcheck for the Dockerfile's RUNs
# dashboard: Chromium for its browser test (tests/web, driven by puppeteer-core);
# the npm packages come from lockfiles: uPlot (web/assets) when `make` builds,
# puppeteer-core (tests/web) when `make test` runs
PACKAGES="build-essential pkg-config libpq-dev libconfuse-dev libmicrohttpd-dev libssl-dev check tzdata
postgresql-15 postgresql-contrib pgbouncer jq python3 python3-prometheus-client valgrind cppcheck
clang-format nodejs shellcheck chromium"

check_only=false
case "${1:-}" in
--check) check_only=true ;;
"") ;;
-h | --help)
    sed -n '2,10s/^# \{0,1\}//p' "$0"
    exit 0
    ;;
*)
    echo "usage: sh scripts/deps.sh [--check]" >&2
    exit 2
    ;;
esac

missing=""
for pkg in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    case "$status" in
    *" installed") ;;
    *) missing="$missing $pkg" ;;
    esac
done
# npm: part of some nodejs builds (NodeSource), its own package in Debian.
command -v npm >/dev/null 2>&1 || missing="$missing npm"
missing=${missing# }

if [ -z "$missing" ]; then
    $check_only || echo "deps: all packages installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing Debian packages: $missing" >&2
    echo "deps: install them with:" >&2
    echo "  sudo apt-get install -y --no-install-recommends $missing" >&2
    exit 1
fi

echo "deps: installing $missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086 # word splitting of the package list is wanted
apt-get install -y -q --no-install-recommends $missing
echo "deps: done"
