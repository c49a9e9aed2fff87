/*
 * http.h — the supervisor's HTTP endpoint (http.listen): /healthz,
 * /readyz, /metrics. libmicrohttpd without threads: its epoll fd sits in
 * the supervisor's epoll set and MHD_run() is called from the main loop.
 */
#ifndef PGWORK_HTTP_H
#define PGWORK_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics.h"

struct http_handlers {
    /* /readyz: true when ready; otherwise a one-line reason in why. */
    bool (*ready)(void *ctx, char *why, size_t len);
    /* /metrics: append the Prometheus text exposition to out. */
    void (*metrics)(void *ctx, struct text_buffer *out);
    void *ctx;
};

struct http_conn; /* one client connection (http.c) */

struct http_server {
    struct MHD_Daemon *daemon; /* NULL = endpoint off */
    struct http_handlers handlers;
    /* Connections waiting for a request, oldest first (http.c): the head
     * is the next to pass its deadline and the first to be dropped when
     * the connections run out. */
    struct http_conn *waiting_head, *waiting_tail;
    unsigned open;           /* connections libmicrohttpd holds */
    unsigned keep_free;      /* drop the oldest waiting one above this many */
    uint64_t drops_unlogged; /* of those, not yet in a log line */
    int64_t drops_logged_at; /* last such line (ms), 0 = none yet */
};

/* Start listening on listen ("host:port", "[v6]:port"; "" = off).
 * Returns 0, or -1 after logging why. */
int http_start(struct http_server *http, const char *listen, const struct http_handlers *handlers);

/* The fd to watch for EPOLLIN (libmicrohttpd's own epoll fd), -1 = off. */
int http_fd(const struct http_server *http);

/* Let libmicrohttpd accept, read, answer and time out connections; close
 * those that have not sent a whole request within HTTP_REQUEST_DEADLINE_MS. */
void http_run(struct http_server *http);

/* Earliest time http_run must be called without an event (connection
 * timeouts, request deadlines), INT64_MAX = none. */
int64_t http_next_deadline(const struct http_server *http, int64_t now);

void http_stop(struct http_server *http);

#endif
