#!/usr/bin/python3
"""http_get.py URL [--metrics] — for the integration tests.

Prints the HTTP status on the first line, then the body. With --metrics the
body is parsed by prometheus_client's exposition-format parser (a malformed
exposition raises, and the script exits 1) and printed as one sample per
line: name{label="value",...} value, labels sorted.
"""
import sys
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def escape(value):
    """A label value as the exposition format writes it."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def main():
    url = sys.argv[1]
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            status, body = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read().decode()
    print(status)
    if "--metrics" not in sys.argv[2:]:
        sys.stdout.write(body)
        return 0
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            labels = ",".join(
                '%s="%s"' % (k, escape(v)) for k, v in sorted(sample.labels.items())
            )
            print("%s{%s} %r" % (sample.name, labels, float(sample.value)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
