/*
 * server.c — libmicrohttpd glue, authentication and routing (server.h).
 *
 * Invariants:
 *  - hostile clients get a 4xx, never a crash or an unbounded buffer:
 *    at most SERVER_CONNECTIONS connections (SERVER_PER_IP from one
 *    address), SERVER_CONNECTION_MEMORY for the request line and headers
 *    (libmicrohttpd answers 431/414 past it), SERVER_BODY_MAX bytes of
 *    body (413), SERVER_TIMEOUT_S of silence, and DEADLINE_REQUEST_S in
 *    all for a request to arrive (deadline.h: a client trickling bytes
 *    is cut off, however often it sends);
 *  - a thread per connection: a page waiting for the database holds only
 *    its own connection (the pool, webdb.h, bounds the database side);
 *  - the token never reaches a log line, a URL or a reply;
 *  - every reply carries a Content-Security-Policy that allows only this
 *    origin's scripts (no inline script runs, whatever a page contains),
 *    and pages are never cached.
 */
#include "server.h"

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "api.h"
#include "assets.h"
#include "deadline.h"
#include "http.h"
#include "pages.h"
#include "render.h"
#include "webdb.h"
#include "../shared/log.h"

#define SERVER_CONNECTIONS 64
#define SERVER_PER_IP 32
#define SERVER_CONNECTION_MEMORY (32 * 1024)
#define SERVER_BODY_MAX (16 * 1024)
#define SERVER_TIMEOUT_S 15
#define SESSION_COOKIE "pgwork_session"

/* One request, from libmicrohttpd's first call to its completion. */
struct pending {
    struct text_buffer body;
    bool too_big;
    struct web_request req;
    char *path; /* the request's path, split in place into req.segments */
};

const char *web_query(const struct web_request *req, const char *name)
{
    /* The unescape callback leaves values as sent: decode a copy here. */
    const char *raw = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
    if (raw == NULL)
        return NULL;
    struct web_request *r = (struct web_request *)req;
    if (r->form_value_count >= WEB_FORM_FIELDS)
        return NULL;
    char *copy = strdup(raw);
    if (copy == NULL || render_unescape(copy, 1) != 0) {
        free(copy);
        return NULL;
    }
    r->form_values[r->form_value_count++] = copy;
    return copy;
}

const char *web_form(struct web_request *req, const char *name)
{
    if (req->form == NULL || req->form_value_count >= WEB_FORM_FIELDS)
        return NULL;
    size_t n = strlen(name);
    for (const char *p = req->form; *p != '\0';) {
        const char *end = strchr(p, '&');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (len > n && strncmp(p, name, n) == 0 && p[n] == '=') {
            char *copy = strndup(p + n + 1, len - n - 1);
            if (copy == NULL || render_unescape(copy, 1) != 0) {
                free(copy);
                return NULL;
            }
            req->form_values[req->form_value_count++] = copy;
            return copy;
        }
        p += len + (end != NULL);
    }
    return NULL;
}

void web_redirect(struct web_reply *reply, const char *path)
{
    /* Only a local path: "//host" or "/\host" would leave the site. */
    if (path == NULL || path[0] != '/' || path[1] == '/' || path[1] == '\\' ||
        strpbrk(path, "\r\n") != NULL)
        path = "/";
    reply->status = MHD_HTTP_SEE_OTHER;
    snprintf(reply->location, sizeof reply->location, "%s", path);
}

/* The values stay as sent: web_query and the path splitter decode them
 * once, where they are used (a %2F in a queue name stays in the name). */
static size_t unescape_nothing(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    return strlen(s);
}

/* Split the path at '/' into segments, each decoded; -1 if malformed. */
static int split_path(struct pending *p, const char *url)
{
    const char *q = strchr(url, '?');
    p->path = q != NULL ? strndup(url, (size_t)(q - url)) : strdup(url);
    if (p->path == NULL || p->path[0] != '/')
        return -1;
    char *save = NULL;
    for (char *seg = strtok_r(p->path + 1, "/", &save); seg != NULL;
         seg = strtok_r(NULL, "/", &save)) {
        if (p->req.segment_count >= WEB_PATH_SEGMENTS || render_unescape(seg, 0) != 0)
            return -1;
        p->req.segments[p->req.segment_count++] = seg;
    }
    return 0;
}

/* "Bearer TOKEN" in the Authorization header, checked. */
static bool bearer_ok(struct MHD_Connection *conn)
{
    const char *h =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    h += 7;
    while (*h == ' ')
        h++;
    return auth_token_ok(h);
}

static void authenticate(struct web_request *req)
{
    bool bearer = bearer_ok(req->conn);
    const char *sid = MHD_lookup_connection_value(req->conn, MHD_COOKIE_KIND, SESSION_COOKIE);
    req->session = auth_session_find(sid, req->csrf);
    if (!req->session)
        req->csrf[0] = '\0';
    const char *type =
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    req->form_post = req->post && !bearer && type != NULL &&
                     strncasecmp(type, "application/x-www-form-urlencoded", 33) == 0;
    req->can_read = bearer || req->session || req->config->web.public_read;
    req->can_act = bearer;
    if (!bearer && req->session && req->form_post) {
        const char *csrf = web_form(req, "csrf");
        req->can_act = csrf != NULL && auth_equal(csrf, req->csrf);
    }
}

/* POST /login: the token from the form starts a session (cookie). */
static void login(struct web_request *req, struct web_reply *reply)
{
    const char *token = web_form(req, "token");
    if (token == NULL || !auth_token_ok(token)) {
        pages_login(req, reply, MHD_HTTP_UNAUTHORIZED, "wrong token");
        return;
    }
    char sid[AUTH_COOKIE_MAX], csrf[AUTH_ID_LEN + 1];
    if (auth_session_new(sid, csrf) != 0) {
        pages_error(req, reply, MHD_HTTP_INTERNAL_SERVER_ERROR, "no randomness for a session");
        return;
    }
    snprintf(reply->cookie, sizeof reply->cookie,
             SESSION_COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%d", sid,
             AUTH_SESSION_TTL_S);
    web_redirect(reply, web_form(req, "back"));
}

static void logout(struct web_request *req, struct web_reply *reply)
{
    /* Stateless: the browser forgets the cookie (auth.h). */
    (void)req;
    snprintf(reply->cookie, sizeof reply->cookie,
             SESSION_COOKIE "=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    web_redirect(reply, "/login");
}

static bool is(const struct web_request *req, int i, const char *s)
{
    return i < req->segment_count && strcmp(req->segments[i], s) == 0;
}

/* /readyz: the database answers. No token: a probe has none. */
static void readyz(struct web_reply *reply)
{
    PGconn *conn = webdb_acquire();
    PGresult *res = conn != NULL ? PQexec(conn, "SELECT 1") : NULL;
    bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    PQclear(res);
    webdb_release(conn);
    reply->status = ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE;
    reply->type = "text/plain; charset=utf-8";
    text_appendf(&reply->body, "%s\n", ok ? "ok" : "database unreachable");
}

static void route(struct web_request *req, struct web_reply *reply)
{
    int n = req->segment_count;
    bool api = is(req, 0, "api");
    if (!req->post && n == 1 && (is(req, 0, "healthz") || is(req, 0, "readyz"))) {
        if (is(req, 0, "readyz")) {
            readyz(reply);
        } else {
            reply->type = "text/plain; charset=utf-8";
            text_appendf(&reply->body, "ok\n");
        }
        return;
    }
    if (!req->post && is(req, 0, "assets") && n == 2) {
        const struct web_asset *a = assets_find(req->segments[1]);
        if (a == NULL) {
            pages_error(req, reply, MHD_HTTP_NOT_FOUND, "no such asset");
            return;
        }
        reply->type = a->type;
        reply->cacheable = true;
        text_append(&reply->body, (const char *)a->data, a->size);
        return;
    }
    if (is(req, 0, "login") && n == 1) {
        if (req->post)
            login(req, reply);
        else
            pages_login(req, reply, MHD_HTTP_OK, NULL);
        return;
    }
    if (req->post && is(req, 0, "logout") && n == 1) {
        logout(req, reply);
        return;
    }
    if (req->post) {
        if (!api) {
            pages_error(req, reply, MHD_HTTP_NOT_FOUND, "no such action");
        } else if (!req->can_act) {
            /* Nothing is changed without the token (or a session and its
             * CSRF token). */
            if (req->form_post)
                pages_login(req, reply, MHD_HTTP_UNAUTHORIZED,
                            req->session ? "the form expired: reload the page" : "log in first");
            else
                api_error(reply, MHD_HTTP_UNAUTHORIZED, "this action needs the token");
        } else {
            api_post(req, reply);
        }
        return;
    }
    if (!req->can_read) {
        if (api)
            api_error(reply, MHD_HTTP_UNAUTHORIZED, "reading needs the token");
        else
            pages_login(req, reply, MHD_HTTP_UNAUTHORIZED, NULL);
        return;
    }
    if (api)
        api_get(req, reply);
    else if (n == 0)
        pages_overview(req, reply);
    else if (is(req, 0, "queues") && n == 2)
        pages_queue(req, reply, req->segments[1]);
    else if (is(req, 0, "tasks") && n == 2)
        pages_task(req, reply, req->segments[1]);
    else if (is(req, 0, "schedules") && n == 1)
        pages_schedules(req, reply);
    else
        pages_error(req, reply, MHD_HTTP_NOT_FOUND, "no such page");
}

static enum MHD_Result send_reply(struct MHD_Connection *conn, struct web_reply *reply)
{
    if (reply->body.failed) {
        text_free(&reply->body);
        reply->status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        reply->type = "text/plain; charset=utf-8";
        text_appendf(&reply->body, "out of memory\n");
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(
        reply->body.len, reply->body.data != NULL ? reply->body.data : (char *)"",
        MHD_RESPMEM_MUST_COPY);
    text_free(&reply->body);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            reply->type != NULL ? reply->type : "text/html; charset=utf-8");
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'none'; script-src 'self'; style-src 'self'; "
                            "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
                            "frame-ancestors 'none'; base-uri 'none'");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "X-Frame-Options", "DENY");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL,
                            reply->cacheable ? "public, max-age=3600" : "no-store");
    if (reply->location[0] != '\0')
        MHD_add_response_header(r, MHD_HTTP_HEADER_LOCATION, reply->location);
    if (reply->cookie[0] != '\0')
        MHD_add_response_header(r, MHD_HTTP_HEADER_SET_COOKIE, reply->cookie);
    if (reply->status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"pgwork\"");
    enum MHD_Result ok = MHD_queue_response(conn, reply->status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result plain(struct MHD_Connection *conn, unsigned status, const char *text)
{
    struct web_reply reply = {.status = status, .type = "text/plain; charset=utf-8"};
    text_appendf(&reply.body, "%s\n", text);
    return send_reply(conn, &reply);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    const struct pgwork_config *config = cls;
    struct pending *p = *con_cls;
    if (p == NULL) {
        bool get =
            strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
        bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
        if (!get && !post) {
            deadline_arrived(conn);
            return plain(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed");
        }
        if ((p = calloc(1, sizeof *p)) == NULL)
            return MHD_NO;
        p->req.conn = conn;
        p->req.config = config;
        p->req.post = post;
        *con_cls = p;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (p->body.len + *upload_data_size > SERVER_BODY_MAX)
            p->too_big = true;
        else
            text_append(&p->body, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    deadline_arrived(conn); /* whole: served from here on, however long it takes */
    if (p->too_big)
        return plain(conn, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large");
    if (p->body.failed)
        return plain(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    if (split_path(p, url) != 0)
        return plain(conn, MHD_HTTP_BAD_REQUEST, "bad path");
    p->req.form = p->body.data != NULL ? p->body.data : (char *)"";
    authenticate(&p->req);
    struct web_reply reply = {.status = MHD_HTTP_OK};
    route(&p->req, &reply);
    return send_reply(conn, &reply);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode code)
{
    (void)cls;
    (void)code;
    deadline_rearm(conn);
    struct pending *p = *con_cls;
    if (p == NULL)
        return;
    for (int i = 0; i < p->req.form_value_count; i++)
        free(p->req.form_values[i]);
    text_free(&p->body);
    free(p->path);
    free(p);
    *con_cls = NULL;
}

/* libmicrohttpd's own messages (a client's bad request, mostly): one log
 * line each, at debug level, so a hostile client cannot flood the log. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    log_debug("web: libmicrohttpd: %s", line);
}

/* host:port (or [v6]:port) into a socket address. */
static int resolve(const char *listen, struct sockaddr_storage *addr, socklen_t *len, char *err,
                   size_t errlen)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    if (colon == NULL || colon == listen || (size_t)(colon - listen) >= sizeof host) {
        snprintf(err, errlen, "web: bad web.listen \"%s\": expected host:port", listen);
        return -1;
    }
    snprintf(host, sizeof host, "%.*s", (int)(colon - listen), listen);
    char *h = host;
    size_t hl = strlen(h);
    if (h[0] == '[' && hl > 1 && h[hl - 1] == ']') {
        h[hl - 1] = '\0';
        h++;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(h[0] != '\0' ? h : NULL, colon + 1, &hints, &ai);
    if (rc != 0 || ai == NULL) {
        snprintf(err, errlen, "web: cannot resolve web.listen \"%s\": %s", listen,
                 gai_strerror(rc));
        return -1;
    }
    memcpy(addr, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

struct MHD_Daemon *server_start(const struct pgwork_config *config, char *err, size_t errlen)
{
    struct sockaddr_storage addr;
    socklen_t addrlen;
    if (resolve(config->web.listen, &addr, &addrlen, err, errlen) != 0)
        return NULL;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG;
    if (addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (deadline_start() != 0) {
        snprintf(err, errlen, "web: cannot start the request deadline's thread");
        return NULL;
    }
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, (void *)config, MHD_OPTION_SOCK_ADDR, &addr,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)SERVER_CONNECTIONS,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)SERVER_PER_IP,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)SERVER_CONNECTION_MEMORY,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)SERVER_TIMEOUT_S, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, NULL, MHD_OPTION_UNESCAPE_CALLBACK, unescape_nothing, NULL,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_NOTIFY_CONNECTION, deadline_on_connection, NULL, MHD_OPTION_END);
    if (d == NULL) {
        snprintf(err, errlen, "web: cannot listen on %s: %s", config->web.listen,
                 errno != 0 ? strerror(errno) : "libmicrohttpd refused");
        deadline_stop();
    }
    return d;
}

void server_stop(struct MHD_Daemon *daemon)
{
    MHD_stop_daemon(daemon);
    deadline_stop();
}
