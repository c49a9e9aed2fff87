/*
 * noop_coprocess.c — the cheapest possible co-process (protocol:
 * examples/README.md): answer every task line with {"id":N,"ok":true}.
 * `make bench` runs it to measure what the coprocess handler itself costs,
 * without an interpreter's; examples/coprocess.py is measured beside it.
 *
 * One read() per batch of arriving lines, one write() per batch of
 * answers. The id is the first field pgwork writes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char in[1 << 20];
static char out[1 << 16];

static int write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(1, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int main(void)
{
    size_t len = 0;
    for (;;) {
        ssize_t n = read(0, in + len, sizeof(in) - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return 0; /* EOF: pgwork wants us gone */
        len += (size_t)n;
        size_t start = 0, o = 0;
        char *nl;
        while ((nl = memchr(in + start, '\n', len - start)) != NULL) {
            *nl = '\0';
            const char *id = strstr(in + start, "\"id\":");
            long long v = id != NULL ? strtoll(id + 5, NULL, 10) : 0;
            o += (size_t)snprintf(out + o, sizeof(out) - o, "{\"id\":%lld,\"ok\":true}\n", v);
            start = (size_t)(nl - in) + 1;
            if (o > sizeof(out) - 64) {
                if (write_all(out, o) != 0)
                    return 1;
                o = 0;
            }
        }
        if (o > 0 && write_all(out, o) != 0)
            return 1;
        memmove(in, in + start, len - start);
        len -= start;
        if (len == sizeof(in))
            len = 0; /* a line longer than the buffer: drop it (no-op anyway) */
    }
}
