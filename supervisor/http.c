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
 *  - GET and HEAD only; anything else is 405, unknown paths 404.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "http.h"
#include "../shared/log.h"

/* Idle HTTP connections are closed after this many seconds. */
#define HTTP_CONNECTION_TIMEOUT_S 10

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

    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return http_reply(connection, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain",
                          "method not allowed\n", 19);
    http->requests++;
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
    http->daemon = MHD_start_daemon(
        flags, port, NULL, NULL, http_answer, http, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_CONNECTION_TIMEOUT_S,
        MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_END);
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
    if (http->daemon != NULL)
        MHD_run(http->daemon);
}

int64_t http_next_deadline(const struct http_server *http, int64_t now)
{
    MHD_UNSIGNED_LONG_LONG timeout;
    if (http->daemon == NULL || MHD_get_timeout(http->daemon, &timeout) != MHD_YES)
        return INT64_MAX;
    return now + (int64_t)timeout;
}

void http_stop(struct http_server *http)
{
    if (http->daemon != NULL)
        MHD_stop_daemon(http->daemon);
    http->daemon = NULL;
}
