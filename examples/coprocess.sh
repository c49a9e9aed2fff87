#!/bin/sh
# coprocess.sh — a pgwork co-process in POSIX shell (no jq, no fork per task).
#
#   queue "sh" { handler = "coprocess" command = {"/bin/sh", "examples/coprocess.sh"} }
#
# pgwork writes one JSON line per task on stdin,
#   {"id":42,"attempt":1,"queue":"sh","payload":{"fail": "why"}}
# and waits for one result line on stdout,
#   {"id":42,"ok":true}   or   {"id":42,"ok":false,"error":"why"}
# (the protocol: examples/README.md). stdout is the protocol channel; anything
# else goes to stderr, which pgwork copies into its log. EOF on stdin = exit.
#
# The line is taken apart with parameter expansion, which works because
# pgwork always writes "id" first and "payload" last, and the payload is
# PostgreSQL's jsonb text ("key": value, one space after the colon). The demo
# understands {"sleep": N} (work N seconds) and {"fail": "why"} (fail with
# that text, up to its first double quote); anything else succeeds.
echo "coprocess.sh ready, pid $$" >&2

while IFS= read -r line; do
    id=${line#*\"id\":}
    id=${id%%,*}
    payload=${line#*,\"payload\":}
    payload=${payload%\}}

    case $payload in
    *'"sleep": '*)
        seconds=${payload#*\"sleep\": }
        seconds=${seconds%%[,\}]*}
        sleep "$seconds"
        ;;
    esac

    case $payload in
    *'"fail": "'*)
        # The text is already JSON-escaped (it comes from JSON): keep it as
        # it is, cut at the first quote. An odd number of backslashes before
        # the cut means we cut an escaped quote: drop one to stay valid.
        error=${payload#*\"fail\": \"}
        error=${error%%\"*}
        rest=$error
        odd=0
        while :; do
            case $rest in
            *\\) rest=${rest%\\} odd=$((1 - odd)) ;;
            *) break ;;
            esac
        done
        [ "$odd" -eq 1 ] && error=${error%\\}
        printf '{"id":%s,"ok":false,"error":"%s"}\n' "$id" "$error"
        ;;
    *)
        printf '{"id":%s,"ok":true}\n' "$id"
        ;;
    esac
done
