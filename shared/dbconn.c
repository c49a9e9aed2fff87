/*
 * dbconn.c — what every pgwork connection shares (see dbconn.h): the
 * connection parameters, guarded statements (a deadline and the
 * supervisor's death), and reading pipelines under the same guard.
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dbconn.h"
#include "timeutil.h"

static struct {
    int death_fd;
    int64_t timeout_ms; /* 0 = no guard */
    int64_t extra_ms;   /* or DBCONN_NO_DEADLINE */
    void (*give_up)(const char *why);
    int interrupt_fd; /* dbconn_set_interrupt: -1 = none */
    void (*on_interrupt)(PGconn *conn, void *arg);
    void *interrupt_arg;
} guard = {.death_fd = -1, .interrupt_fd = -1};

/*
 * Per-transaction settings (dbconn_set_local): one statement, sent first in
 * every transaction the process runs, never for the session — behind
 * PgBouncer's transaction pooling a session's SET reaches whichever client
 * gets that server connection next (DESIGN §2). "" = none.
 */
static char local_settings[256];

/*
 * A statement dbconn_send_params sent outside a transaction, wrapped in
 * its own: pipeline mode, the settings, the statement, one sync. The
 * statements before a sync share one implicit transaction, committed (or,
 * after an error, rolled back) at the sync, so the settings last exactly
 * as long as the statement's transaction. Its results are read as if the
 * statement had been sent alone (dbconn_next_result drops the settings'
 * results and the sync, and leaves pipeline mode).
 */
static struct {
    bool active;
    bool prelude;            /* the settings' results are still to come */
    PGresult *prelude_error; /* why the settings failed (the statement is then skipped) */
} wrapped;

void dbconn_params(struct dbconn_params *params, const struct pgwork_config *config,
                   const char *conninfo, const char *application_name)
{
    int64_t idle_s = config->listener.keepalive_interval_ms / 1000;
    int64_t probe_s = config->listener.keepalive_timeout_ms / 3000;
    int64_t user_timeout_ms =
        config->listener.keepalive_interval_ms + config->listener.keepalive_timeout_ms;
    snprintf(params->storage[0], sizeof(params->storage[0]), "%lld",
             (long long)(idle_s > 0 ? idle_s : 1));
    snprintf(params->storage[1], sizeof(params->storage[1]), "%lld",
             (long long)(probe_s > 0 ? probe_s : 1));
    snprintf(params->storage[2], sizeof(params->storage[2]), "%lld", (long long)user_timeout_ms);

    int n = 0;
    /* Keepalive probes find a dead peer on an idle connection; the user
     * timeout finds one while data we sent stays unacknowledged. */
    params->keywords[n] = "keepalives";
    params->values[n++] = "1";
    params->keywords[n] = "keepalives_idle";
    params->values[n++] = params->storage[0];
    params->keywords[n] = "keepalives_interval";
    params->values[n++] = params->storage[1];
    params->keywords[n] = "keepalives_count";
    params->values[n++] = "3";
    params->keywords[n] = "tcp_user_timeout";
    params->values[n++] = params->storage[2];
    params->keywords[n] = "connect_timeout";
    params->values[n++] = "10";
    /* Expanded in place: its settings override the defaults above. */
    params->keywords[n] = "dbname";
    params->values[n++] = conninfo;
    params->keywords[n] = "fallback_application_name";
    params->values[n++] = application_name;
    params->keywords[n] = NULL;
    params->values[n] = NULL;
}

void dbconn_params_add(struct dbconn_params *params, const char *keyword, const char *value)
{
    int n = 0;
    while (params->keywords[n] != NULL)
        n++;
    if (n + 1 >= DBCONN_PARAMS_MAX)
        return; /* cannot happen: DBCONN_PARAMS_MAX leaves room */
    params->keywords[n] = keyword;
    params->values[n] = value;
    params->keywords[n + 1] = NULL;
    params->values[n + 1] = NULL;
}

void dbconn_worker_application_name(int slot, char *out, size_t outlen)
{
    snprintf(out, outlen, "pgwork worker %d", slot);
}

void dbconn_set_guard(int death_fd, int64_t timeout_ms, void (*give_up)(const char *why))
{
    guard.death_fd = death_fd;
    guard.timeout_ms = timeout_ms;
    guard.give_up = give_up;
}

void dbconn_set_guard_extra(int64_t extra_ms)
{
    guard.extra_ms = extra_ms;
}

void dbconn_set_interrupt(int fd, void (*on_ready)(PGconn *conn, void *arg), void *arg)
{
    guard.interrupt_fd = on_ready != NULL ? fd : -1;
    guard.on_interrupt = on_ready;
    guard.interrupt_arg = arg;
}

/* Wait until conn has input to read (or, while fill_output, room to send
 * what libpq still buffers), within the guard's deadline and watching
 * death_fd. Returns only when there is something to do. */
static void dbconn_wait_socket(PGconn *conn, int64_t deadline, bool want_output)
{
    int64_t left = deadline - time_now_ms();
    if (left <= 0) {
        char why[96];
        snprintf(why, sizeof(why), "the database did not answer within %lld ms",
                 (long long)(guard.timeout_ms + guard.extra_ms));
        guard.give_up(why);
    }
    /* A fd of -1 is skipped by poll (revents 0). */
    struct pollfd fds[3] = {{.fd = PQsocket(conn), .events = POLLIN | (want_output ? POLLOUT : 0)},
                            {.fd = guard.death_fd, .events = POLLIN},
                            {.fd = guard.interrupt_fd, .events = POLLIN}};
    int rc = poll(fds, 3, left > 60000 ? 60000 : (int)left);
    if (rc < 0 && errno != EINTR)
        guard.give_up("poll failed while waiting for the database");
    if (guard.death_fd >= 0 && (fds[1].revents & (POLLIN | POLLHUP)))
        guard.give_up("the supervisor died");
    if (guard.interrupt_fd >= 0 && (fds[2].revents & POLLIN))
        guard.on_interrupt(conn, guard.interrupt_arg);
    /* A broken connection makes PQconsumeInput fail; PQisBusy is then
     * false and PQgetResult reports the error. */
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR))
        PQconsumeInput(conn);
}

static PGresult *next_result_raw(PGconn *conn)
{
    int64_t deadline = guard.extra_ms == DBCONN_NO_DEADLINE
                           ? INT64_MAX
                           : time_now_ms() + guard.timeout_ms + guard.extra_ms;
    for (;;) {
        /* Send what is buffered (a non-blocking connection may hold some
         * back); 1 means the socket is full for now. -1: the error shows
         * in the next result. */
        int unsent = PQflush(conn);
        if (!PQisBusy(conn) || unsent < 0)
            return PQgetResult(conn);
        if (guard.timeout_ms == 0) {
            /* No guard (the CLI): block in poll without a deadline. */
            struct pollfd fd = {.fd = PQsocket(conn), .events = POLLIN | (unsent ? POLLOUT : 0)};
            if (poll(&fd, 1, -1) < 0 && errno != EINTR)
                return PQgetResult(conn);
            if (fd.revents & (POLLIN | POLLHUP | POLLERR))
                PQconsumeInput(conn);
            continue;
        }
        dbconn_wait_socket(conn, deadline, unsent == 1);
    }
}

/* One result of the settings sent before a wrapped statement (NULL: they
 * are over). An error is kept: it is why the statement was skipped. */
static void wrapped_prelude_take(PGresult *res)
{
    if (res == NULL)
        wrapped.prelude = false;
    else if (PQresultStatus(res) == PGRES_FATAL_ERROR && wrapped.prelude_error == NULL)
        wrapped.prelude_error = res;
    else
        PQclear(res);
}

PGresult *dbconn_next_result(PGconn *conn)
{
    if (!wrapped.active)
        return next_result_raw(conn);
    while (wrapped.prelude)
        wrapped_prelude_take(next_result_raw(conn));
    PGresult *res = next_result_raw(conn);
    if (res != NULL) {
        if (PQresultStatus(res) == PGRES_PIPELINE_ABORTED && wrapped.prelude_error != NULL) {
            PQclear(res);
            res = wrapped.prelude_error;
            wrapped.prelude_error = NULL;
        }
        return res;
    }
    /* The statement's results are over: the sync follows (none if the
     * connection broke). */
    if (PQstatus(conn) == CONNECTION_OK)
        PQclear(next_result_raw(conn));
    PQexitPipelineMode(conn);
    PQclear(wrapped.prelude_error);
    wrapped.prelude_error = NULL;
    wrapped.active = false;
    return NULL;
}

bool dbconn_result_ready(PGconn *conn)
{
    PQflush(conn);
    if (!PQconsumeInput(conn))
        return true; /* broken: PQgetResult reports it without blocking */
    while (wrapped.active && wrapped.prelude) {
        if (PQisBusy(conn))
            return false;
        wrapped_prelude_take(PQgetResult(conn));
    }
    return !PQisBusy(conn);
}

void dbconn_set_local(const char *settings)
{
    snprintf(local_settings, sizeof(local_settings), "%s", settings != NULL ? settings : "");
}

const char *dbconn_local(void)
{
    return local_settings[0] != '\0' ? local_settings : NULL;
}

/* The statement sql, or the prepared statement name when sql is NULL. */
static int send_one(PGconn *conn, const char *name, const char *sql, int nparams, const Oid *types,
                    const char *const *params)
{
    return sql != NULL ? PQsendQueryParams(conn, sql, nparams, types, params, NULL, NULL, 0)
                       : PQsendQueryPrepared(conn, name, nparams, params, NULL, NULL, 0);
}

/* dbconn_send_params with these settings, for sql or a prepared name. */
static int send_wrapped(PGconn *conn, const char *settings, const char *name, const char *sql,
                        int nparams, const Oid *types, const char *const *params)
{
    /* Inside a transaction the settings were sent after its BEGIN. */
    if (settings == NULL || settings[0] == '\0' || PQtransactionStatus(conn) != PQTRANS_IDLE ||
        PQpipelineStatus(conn) != PQ_PIPELINE_OFF)
        return send_one(conn, name, sql, nparams, types, params);
    if (!PQenterPipelineMode(conn))
        return 0;
    if (!PQsendQueryParams(conn, settings, 0, NULL, NULL, NULL, NULL, 0))
        return 0;
    /* From here the reader expects the settings' results. */
    wrapped.active = true;
    wrapped.prelude = true;
    return send_one(conn, name, sql, nparams, types, params) && PQpipelineSync(conn);
}

int dbconn_send_params(PGconn *conn, const char *sql, int nparams, const Oid *types,
                       const char *const *params)
{
    return send_wrapped(conn, local_settings, NULL, sql, nparams, types, params);
}

/* Collect a sent query's results like PQexec does (the last one wins). */
static PGresult *dbconn_wait(PGconn *conn)
{
    PGresult *last = NULL;
    for (;;) {
        PGresult *res = dbconn_next_result(conn);
        if (res == NULL)
            return last;
        PQclear(last);
        last = res;
    }
}

PGresult *dbconn_exec(PGconn *conn, const char *sql)
{
    if (guard.timeout_ms == 0)
        return PQexec(conn, sql);
    if (!PQsendQuery(conn, sql))
        return NULL; /* PQresultStatus(NULL) is PGRES_FATAL_ERROR */
    return dbconn_wait(conn);
}

PGresult *dbconn_exec_params(PGconn *conn, const char *sql, int nparams, const Oid *types,
                             const char *const *params)
{
    if (guard.timeout_ms == 0)
        return PQexecParams(conn, sql, nparams, types, params, NULL, NULL, 0);
    if (!dbconn_send_params(conn, sql, nparams, types, params))
        return NULL;
    return dbconn_wait(conn);
}

PGresult *dbconn_exec_prepared(PGconn *conn, const char *settings, const char *name, int nparams,
                               const char *const *params)
{
    if (!send_wrapped(conn, settings, name, NULL, nparams, NULL, params))
        return NULL;
    return dbconn_wait(conn);
}

PGresult *dbconn_prepare(PGconn *conn, const char *name, const char *sql, int nparams,
                         const Oid *types)
{
    if (guard.timeout_ms == 0)
        return PQprepare(conn, name, sql, nparams, types);
    if (!PQsendPrepare(conn, name, sql, nparams, types))
        return NULL;
    return dbconn_wait(conn);
}

/* --- pipeline mode ---------------------------------------------------------- */

/* The result of one query sent in pipeline mode, and the NULL that ends
 * it. NULL when the connection broke (no result where one was due). */
PGresult *dbconn_pipeline_take(PGconn *conn)
{
    PGresult *res = dbconn_next_result(conn);
    if (res != NULL && PQresultStatus(res) != PGRES_PIPELINE_SYNC) {
        PGresult *end = dbconn_next_result(conn);
        PQclear(end); /* NULL, unless the protocol went astray */
    }
    return res;
}

/* One query's status in a pipeline: whether it succeeded (rows or not). */
bool dbconn_pipeline_ok(PGconn *conn)
{
    PGresult *res = dbconn_pipeline_take(conn);
    ExecStatusType status = PQresultStatus(res);
    PQclear(res);
    return status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK;
}

/* Read up to and including the sync that ends a pipeline round; false if
 * the connection broke first. */
bool dbconn_pipeline_finish_round(PGconn *conn)
{
    for (int nulls = 0; nulls < 2;) {
        PGresult *res = dbconn_next_result(conn);
        if (res == NULL) {
            /* One NULL ends a query; two in a row: nothing more comes. */
            if (PQstatus(conn) != CONNECTION_OK)
                return false;
            nulls++;
            continue;
        }
        nulls = 0;
        ExecStatusType status = PQresultStatus(res);
        PQclear(res);
        if (status == PGRES_PIPELINE_SYNC)
            return true;
    }
    return false;
}

char *dbconn_one_line(char *text)
{
    char *out = text;
    bool space = false;  /* whitespace is pending since the last character */
    bool breaks = false; /* ... and it holds a line break */
    const char *pending = NULL;
    for (const char *p = text; *p; p++) {
        if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
            if (!space)
                pending = p;
            space = true;
            breaks = breaks || *p == '\n' || *p == '\r';
            continue;
        }
        if (space && out != text) {
            if (breaks) {
                *out++ = ' ';
            } else {
                /* Spacing within a line: copied as it was. */
                memmove(out, pending, (size_t)(p - pending));
                out += p - pending;
            }
        }
        space = breaks = false;
        *out++ = *p;
    }
    *out = '\0';
    return text;
}

const char *dbconn_primary_line(const PGresult *res, const PGconn *conn, char *buf, size_t len)
{
    const char *primary = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    snprintf(buf, len, "%s",
             primary != NULL && primary[0] != '\0' ? primary : PQerrorMessage(conn));
    return dbconn_one_line(buf);
}
