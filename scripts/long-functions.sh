#!/bin/sh
# long-functions.sh — list the functions of the production C files longer
# than a limit (default 80 lines), and fail on any not in the allow-list.
#
#   sh scripts/long-functions.sh [--all] [LIMIT]
#
# A function is what clang-format leaves as: a definition whose opening
# brace is alone on a line at column 0 and whose closing brace is the next
# `}` at column 0; its length is the lines between the two braces. Prints
# "lines file:line name" for each function over LIMIT, marked "allowed" when
# the allow-list below states why it stays long. Exits 1 when one is not in
# the list (or the list names one that is no longer long: keep it true).
# --all: also list every function over LIMIT / 2, for a look.
set -eu

all=0
if [ "${1:-}" = "--all" ]; then
    all=1
    shift
fi
limit=${1:-80}
cd "$(dirname "$0")/.."

# Functions that stay longer, one a line: "file:function: why".
allowed='
'

files=$(git ls-files 'supervisor/*.c' 'worker/*.c' 'shared/*.c' 'web/*.c')
# shellcheck disable=SC2086 # the file list splits on whitespace on purpose
awk -v limit="$limit" -v all="$all" -v allowed="$allowed" '
    BEGIN {
        n = split(allowed, lines, "\n")
        for (i = 1; i <= n; i++) {
            if (lines[i] == "")
                continue
            split(lines[i], part, ":") # "file:function: why"
            ok[part[1] ":" part[2]] = 1
        }
    }
    FNR == 1 { sig = ""; start = 0 }
    start == 0 && /^[A-Za-z_].*\(/ { sig = $0; sigline = FNR }
    start == 0 && /^[A-Za-z_]/ && !/\(/ && sig == "" { next }
    $0 == "{" && start == 0 {
        start = FNR
        name = sig
        sub(/\(.*/, "", name)
        sub(/.*[ *]/, "", name)
        next
    }
    $0 == "}" && start > 0 {
        len = FNR - start - 1
        key = FILENAME ":" name
        if (len > limit) {
            mark = (key in ok) ? "allowed" : "TOO LONG"
            printf "%4d %s:%d %s  %s\n", len, FILENAME, sigline, name, mark
            if (!(key in ok))
                bad++
            seen[key] = 1
        } else if (all && len > limit / 2) {
            printf "%4d %s:%d %s\n", len, FILENAME, sigline, name
        }
        start = 0
        sig = ""
    }
    END {
        for (k in ok)
            if (!(k in seen)) {
                printf "allow-list names %s, which is no longer over %d lines\n", k, limit
                bad++
            }
        exit bad > 0
    }
' $files
