#!/usr/bin/env python3
"""coprocess.py — a pgwork co-process in Python 3, standard library only.

A queue configured with

    queue "py" { handler = "coprocess" command = {"python3", "examples/coprocess.py"} }

keeps one of these running per worker. pgwork writes one JSON line per task
on our stdin and waits for one JSON result line on our stdout (the protocol
is examples/README.md). stdout is the protocol channel: print anything else to
stderr, which pgwork copies line by line into its log. EOF on stdin means
"exit now".

The demo handler understands two payload fields, so the tests can drive it:
  {"sleep": 1.5}      work for 1.5 s before answering
  {"fail": "why"}     answer with ok=false and error "why"
Anything else succeeds at once. Replace handle() with real work.
"""
import json
import os
import sys
import time


def handle(task):
    """Run one task; raise to fail it (the message becomes last_error)."""
    payload = task["payload"]
    if isinstance(payload, dict):
        if "sleep" in payload:
            time.sleep(float(payload["sleep"]))
        if "fail" in payload:
            raise RuntimeError(str(payload["fail"]))


def main():
    print(f"coprocess.py ready, pid {os.getpid()}", file=sys.stderr, flush=True)
    out = sys.stdout
    for line in sys.stdin:  # one task per line; the loop ends at EOF
        if not line.strip():
            continue
        task = json.loads(line)
        try:
            handle(task)
            result = {"id": task["id"], "ok": True}
        except Exception as e:  # any failure of the task, not of the protocol
            result = {"id": task["id"], "ok": False, "error": str(e) or type(e).__name__}
        out.write(json.dumps(result) + "\n")
        out.flush()  # pgwork waits for this line: never leave it in a buffer


if __name__ == "__main__":
    main()
