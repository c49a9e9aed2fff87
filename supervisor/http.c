/*
 * http.c — /healthz, /readyz and /metrics on http.listen.
 *
 * Invariants:
 *  - no threads: libmicrohttpd runs in MHD_USE_EPOLL mode without an
 *    internal thread; the supervisor watches its epoll fd and calls
 *    http_run(), so a slow client costs a socket, never the loop;
 *  - answers are computed from memory (shared-memory counters, the
 *    listener's state and cached queue depth): a scrape never waits for the
 *    database;
 *  - GET and HEAD only; anything else is 405, unknown paths 404;
 *  - slow clients cannot starve the probes (a kubelet's liveness probe
 *    that times out restarts the pod): a connection has
 *    HTTP_REQUEST_DEADLINE_MS to deliver a whole request, counted from its
 *    start or its previous answer, however steadily it trickles bytes
 *    (libmicrohttpd's own timeout is reset by every byte); and when the
 *    connections run short, the one that has waited longest for its
 *    request is closed to make room, so a new connection — the probe's —
 *    is always accepted. No per-address limit: the kubelet probes from
 *    the node's address, which other clients may share.
 */
#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "http.h"
#include "../shared/log.h"
#include "../shared/timeutil.h"

/* Idle HTTP connections are closed after this many seconds. */
#define HTTP_CONNECTION_TIMEOUT_S 10
/* A whole request within this, from the connection's start or its last
 * answer: a probe, a scrape send theirs at once. */
#define HTTP_REQUEST_DEADLINE_MS 5000
/* Connections libmicrohttpd may hold: a quarter of the fd limit (the rest
 * is the supervisor's: workers' eventfds, pidfds, the database), within
 * these bounds. */
#define HTTP_CONNECTIONS_MIN 64
#define HTTP_CONNECTIONS_MAX 1024
#define HTTP_FD_SOFT_LIMIT 4096 /* 4 x HTTP_CONNECTIONS_MAX */
/* Room kept free by dropping the oldest waiting connection: new ones are
 * accepted while the dropped ones are being closed. */
#define HTTP_CONNECTIONS_SPARE 16
/* Per-connection memory (request line and headers); probes and scrapes
 * send a few hundred bytes. */
#define HTTP_CONNECTION_MEMORY (16 * 1024)
/* Drops are logged at most this often (a flood must not flood the log). */
#define HTTP_DROP_LOG_INTERVAL_MS 60000

/* One connection, from libmicrohttpd's STARTED to its CLOSED notification.
 * On the server's waiting list while no request of it is being answered. */
struct http_conn {
    struct http_conn *prev, *next;
    int fd;
    int64_t since; /* waiting for a request since (CLOCK_MONOTONIC ms) */
    bool waiting;  /* on the list */
    bool dropped;  /* shut down by us; libmicrohttpd closes it */
};

static void waiting_remove(struct http_server *http, struct http_conn *c)
{
    if (!c->waiting)
        return;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        http->waiting_head = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    else
        http->waiting_tail = c->prev;
    c->prev = c->next = NULL;
    c->waiting = false;
}

/* Appending keeps the list sorted by since: every since is "now". */
static void waiting_append(struct http_server *http, struct http_conn *c, int64_t now)
{
    waiting_remove(http, c);
    if (c->dropped)
        return;
    c->since = now;
    c->prev = http->waiting_tail;
    if (http->waiting_tail != NULL)
        http->waiting_tail->next = c;
    else
        http->waiting_head = c;
    http->waiting_tail = c;
    c->waiting = true;
}

/* Close c from under libmicrohttpd: shutdown() (never close(): the fd is
 * libmicrohttpd's) makes its socket readable at EOF, and libmicrohttpd
 * closes the connection on its next run. */
static void http_drop(struct http_server *http, struct http_conn *c)
{
    waiting_remove(http, c);
    c->dropped = true;
    if (shutdown(c->fd, SHUT_RDWR) != 0 && errno != ENOTCONN)
        log_warn("http: cannot shut down a slow connection: %s", strerror(errno));
    http->drops_unlogged++;
}

static void http_notify_connection(void *cls, struct MHD_Connection *connection,
                                   void **socket_context, enum MHD_ConnectionNotificationCode toe)
{
    struct http_server *http = cls;
    if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        struct http_conn *c = *socket_context;
        if (c != NULL) {
            waiting_remove(http, c);
            free(c);
            http->open--;
        }
        *socket_context = NULL;
        return;
    }
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct http_conn *c = calloc(1, sizeof(*c));
    if (c == NULL || info == NULL) {
        free(c); /* untracked: only libmicrohttpd's idle timeout applies */
        *socket_context = NULL;
        return;
    }
    c->fd = info->connect_fd;
    *socket_context = c;
    http->open++;
    waiting_append(http, c, time_now_ms());
    /* Out of room: the connection that has waited longest for its request
     * goes (never the new one, which has not had a chance yet). */
    if (http->open > http->keep_free && http->waiting_head != c)
        http_drop(http, http->waiting_head);
}

/* The connection of a request, as http_notify_connection() tracks it. */
static struct http_conn *http_conn_of(struct MHD_Connection *connection)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info != NULL ? info->socket_context : NULL;
}

/* A request was answered (or failed): its connection waits for the next
 * one, with a fresh deadline. */
static void http_request_completed(void *cls, struct MHD_Connection *connection,
                                   void **request_state, enum MHD_RequestTerminationCode toe)
{
    (void)request_state;
    (void)toe;
    struct http_conn *c = http_conn_of(connection);
    if (c != NULL)
        waiting_append(cls, c, time_now_ms());
}

static enum MHD_Result http_reply(struct MHD_Connection *connection, unsigned status,
                                  const char *content_type, const char *body, size_t len)
{
    struct MHD_Response *response =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (response == NULL)
        return MHD_NO;
    MHD_add_response_header(response, "Content-Type", content_type);
    MHD_add_response_header(response, "Cache-Control", "no-store");
    enum MHD_Result rc = MHD_queue_response(connection, status, response);
    MHD_destroy_response(response);
    return rc;
}

static enum MHD_Result http_answer(void *cls, struct MHD_Connection *connection, const char *url,
                                   const char *method, const char *version, const char *upload_data,
                                   size_t *upload_data_size, void **request_state)
{
    struct http_server *http = cls;
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)request_state;

    /* The whole request is in: no deadline while it is answered. */
    struct http_conn *c = http_conn_of(connection);
    if (c != NULL)
        waiting_remove(http, c);
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return http_reply(connection, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain",
                          "method not allowed\n", 19);
    if (strcmp(url, "/healthz") == 0) {
        /* Answering at all proves the loop turns. */
        return http_reply(connection, MHD_HTTP_OK, "text/plain", "ok\n", 3);
    }
    if (strcmp(url, "/readyz") == 0) {
        char why[256] = "";
        if (http->handlers.ready(http->handlers.ctx, why, sizeof(why) - 1))
            return http_reply(connection, MHD_HTTP_OK, "text/plain", "ready\n", 6);
        strcat(why, "\n");
        return http_reply(connection, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain", why, strlen(why));
    }
    if (strcmp(url, "/metrics") == 0) {
        struct text_buffer body = {0};
        http->handlers.metrics(http->handlers.ctx, &body);
        enum MHD_Result rc;
        if (body.failed)
            rc = http_reply(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain",
                            "out of memory\n", 14);
        else
            rc = http_reply(connection, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                            body.data != NULL ? body.data : "", body.len);
        text_free(&body);
        return rc;
    }
    return http_reply(connection, MHD_HTTP_NOT_FOUND, "text/plain",
                      "not found: try /healthz, /readyz or /metrics\n", 45);
}

/* "host:port" or "[v6host]:port" -> a bound address (numeric or a name). */
static int http_resolve(const char *listen, struct sockaddr_storage *addr, socklen_t *len)
{
    char host[256], port[16];
    const char *colon;
    if (listen[0] == '[') {
        const char *end = strchr(listen, ']');
        if (end == NULL || end[1] != ':')
            return -1;
        snprintf(host, sizeof(host), "%.*s", (int)(end - listen - 1), listen + 1);
        colon = end + 1;
    } else {
        colon = strrchr(listen, ':');
        if (colon == NULL)
            return -1;
        snprintf(host, sizeof(host), "%.*s", (int)(colon - listen), listen);
    }
    snprintf(port, sizeof(port), "%s", colon + 1);

    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (rc != 0) {
        log_error("http.listen \"%s\": %s", listen, gai_strerror(rc));
        return -1;
    }
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/*
 * How many connections libmicrohttpd may hold, from RLIMIT_NOFILE. The
 * soft limit is raised first, up to the hard one and at most
 * HTTP_FD_SOFT_LIMIT: images often start with 1024, which would leave
 * room for fewer slow clients than a probe must survive. Workers and
 * handlers inherit the raised limit; a program that keeps under 1024
 * open fds never sees a higher fd number, so select() users are safe.
 */
static unsigned http_connection_limit(void)
{
    struct rlimit rl;
    rlim_t limit = HTTP_CONNECTIONS_MAX;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rlim_t want = rl.rlim_max < HTTP_FD_SOFT_LIMIT ? rl.rlim_max : HTTP_FD_SOFT_LIMIT;
        if (rl.rlim_cur < want) {
            struct rlimit raised = {.rlim_cur = want, .rlim_max = rl.rlim_max};
            if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
                rl.rlim_cur = want;
            else
                log_warn("cannot raise the open files limit to %llu: %s", (unsigned long long)want,
                         strerror(errno));
        }
        if (rl.rlim_cur != RLIM_INFINITY)
            limit = rl.rlim_cur / 4;
    }
    if (limit < HTTP_CONNECTIONS_MIN)
        limit = HTTP_CONNECTIONS_MIN;
    if (limit > HTTP_CONNECTIONS_MAX)
        limit = HTTP_CONNECTIONS_MAX;
    return (unsigned)limit;
}

int http_start(struct http_server *http, const char *listen, const struct http_handlers *handlers)
{
    memset(http, 0, sizeof(*http));
    http->handlers = *handlers;
    if (listen == NULL || listen[0] == '\0')
        return 0;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    if (http_resolve(listen, &addr, &addrlen) != 0)
        return -1;
    unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    if (addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    uint16_t port = addr.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&addr)->sin6_port)
                                               : ntohs(((struct sockaddr_in *)&addr)->sin_port);
    unsigned limit = http_connection_limit();
    http->keep_free = limit - HTTP_CONNECTIONS_SPARE;
    http->daemon = MHD_start_daemon(
        flags, port, NULL, NULL, http_answer, http, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_CONNECTION_TIMEOUT_S,
        MHD_OPTION_CONNECTION_LIMIT, limit, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)HTTP_CONNECTION_MEMORY, MHD_OPTION_NOTIFY_CONNECTION, http_notify_connection, http,
        MHD_OPTION_NOTIFY_COMPLETED, http_request_completed, http, MHD_OPTION_END);
    if (http->daemon == NULL) {
        log_error("cannot listen for HTTP on %s: %s", listen,
                  errno ? strerror(errno) : "libmicrohttpd refused");
        return -1;
    }
    log_info("http endpoint on %s (/healthz, /readyz, /metrics)", listen);
    return 0;
}

int http_fd(const struct http_server *http)
{
    if (http->daemon == NULL)
        return -1;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(http->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    return info != NULL ? info->epoll_fd : -1;
}

void http_run(struct http_server *http)
{
    if (http->daemon == NULL)
        return;
    MHD_run(http->daemon);
    int64_t now = time_now_ms();
    while (http->waiting_head != NULL &&
           now - http->waiting_head->since >= HTTP_REQUEST_DEADLINE_MS)
        http_drop(http, http->waiting_head);
    if (http->drops_unlogged > 0 && now - http->drops_logged_at >= HTTP_DROP_LOG_INTERVAL_MS) {
        log_warn("http: closed %llu connection(s) that did not send a request in time or "
                 "waited longest while connections ran short (%u open)",
                 (unsigned long long)http->drops_unlogged, http->open);
        http->drops_unlogged = 0;
        http->drops_logged_at = now;
    }
}

int64_t http_next_deadline(const struct http_server *http, int64_t now)
{
    MHD_UNSIGNED_LONG_LONG timeout;
    if (http->daemon == NULL)
        return INT64_MAX;
    int64_t next = INT64_MAX;
    if (MHD_get_timeout(http->daemon, &timeout) == MHD_YES)
        next = now + (int64_t)timeout;
    if (http->waiting_head != NULL && http->waiting_head->since + HTTP_REQUEST_DEADLINE_MS < next)
        next = http->waiting_head->since + HTTP_REQUEST_DEADLINE_MS;
    return next;
}

void http_stop(struct http_server *http)
{
    if (http->daemon != NULL)
        MHD_stop_daemon(http->daemon);
    http->daemon = NULL;
}
