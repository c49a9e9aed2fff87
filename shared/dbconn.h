/*
 * dbconn.h — the connection parameters every pgwork connection shares.
 *
 * Dead peers must not hang a process forever (DESIGN §6): TCP keepalives
 * and tcp_user_timeout are derived from listener.keepalive_interval and
 * keepalive_timeout, and set *before* the user's conninfo, so anything the
 * operator wrote in the conninfo or URL wins.
 */
#ifndef PGWORK_DBCONN_H
#define PGWORK_DBCONN_H

#include <stdbool.h>

#include <libpq-fe.h>

#include "config.h"

/* Room for the keyword/value arrays dbconn_params() fills (NULL-ended). */
#define DBCONN_PARAMS_MAX 12

struct dbconn_params {
    const char *keywords[DBCONN_PARAMS_MAX];
    const char *values[DBCONN_PARAMS_MAX];
    char storage[4][24]; /* the numbers the values point into */
};

/* Fill params for PQconnectdbParams/PQconnectStartParams with
 * expand_dbname = 1: our defaults, then conninfo (expanded), then
 * application_name. */
void dbconn_params(struct dbconn_params *params, const struct pgwork_config *config,
                   const char *conninfo, const char *application_name);

/* Append keyword = value (after the conninfo: it wins over it). */
void dbconn_params_add(struct dbconn_params *params, const char *keyword, const char *value);

/* A worker's application_name, "pgwork worker <slot>": the supervisor
 * matches it before it stops a dead worker's backend. */
void dbconn_worker_application_name(int slot, char *out, size_t outlen);

/*
 * Guarded statements, for worker processes: every statement run through
 * dbconn_exec / dbconn_exec_params waits at most timeout_ms (+ the extra
 * allowance) for its answer, and stops waiting as soon as death_fd becomes
 * readable (the supervisor died). Then give_up(why) is called; it must not
 * return (a worker exits: its connection is in an unknown state). A peer
 * that acknowledges every byte but never answers (a proxy that lost its
 * upstream, a hung backend) defeats TCP keepalives; this does not.
 * Without a guard (the CLI), they behave like PQexec / PQexecPrepared.
 */
void dbconn_set_guard(int death_fd, int64_t timeout_ms, void (*give_up)(const char *why));

/* Extra time allowed on top of the guard's timeout, e.g. the queue's task
 * timeout while its statements run (0 = none). */
void dbconn_set_guard_extra(int64_t extra_ms);

/*
 * While a guarded statement waits for its answer and fd (a worker's
 * signalfd) becomes readable, on_ready(conn, arg) is called; it must read
 * fd, and may cancel the statement (PQcancel: the task it runs was
 * cancelled). on_ready NULL: none.
 */
void dbconn_set_interrupt(int fd, void (*on_ready)(PGconn *conn, void *arg), void *arg);

/*
 * As extra_ms: no deadline at all, for the statements of a task whose queue
 * has no timeout (DESIGN §6: "no guard cuts it off"). A slow statement is
 * not a dead server: while this is set, a dead peer is found by TCP
 * keepalives and tcp_user_timeout (dbconn_params) or a closed socket, and
 * the supervisor's death still ends the wait. Only a peer that ACKs every
 * byte and never answers (a proxy that lost its upstream) goes unnoticed
 * until the statement's task is taken back by its lease.
 */
#define DBCONN_NO_DEADLINE (-1)

PGresult *dbconn_exec(PGconn *conn, const char *sql);

/*
 * The next result of what was sent with PQsend* (PQgetResult's meaning:
 * NULL ends one query's results; in pipeline mode a PGRES_PIPELINE_SYNC
 * ends each sync), waiting under the guard and sending what a
 * non-blocking connection still buffers, so a long pipeline cannot
 * deadlock against the server's answers.
 */
PGresult *dbconn_next_result(PGconn *conn);

/*
 * Pipeline mode (PQenterPipelineMode), read with the guard above:
 *  - dbconn_pipeline_take: the result of the next query sent (and the NULL
 *    that ends it), or a PGRES_PIPELINE_SYNC; NULL when the connection
 *    broke (no result where one was due). The caller clears it.
 *  - dbconn_pipeline_ok: whether the next query succeeded (rows or not).
 *  - dbconn_pipeline_finish_round: read up to and including the next sync;
 *    false if the connection broke first.
 */
PGresult *dbconn_pipeline_take(PGconn *conn);
bool dbconn_pipeline_ok(PGconn *conn);
bool dbconn_pipeline_finish_round(PGconn *conn);

/* Without blocking: has the query in flight answered (PQgetResult will
 * not wait)? Also sends buffered output. */
bool dbconn_result_ready(PGconn *conn);
PGresult *dbconn_prepare(PGconn *conn, const char *name, const char *sql, int nparams,
                         const Oid *types);

/*
 * Settings for every transaction of this process (a worker), never for
 * its session: one statement, e.g. "SELECT set_config('synchronous_commit',
 * 'off', true)" (NULL or "" = none). Behind PgBouncer's transaction pooling
 * a session belongs to whichever client has the server connection now;
 * a session SET would reach other clients, and a named prepared statement
 * may be missing on the next transaction's server connection (DESIGN §2).
 *  - dbconn_send_params: PQsendQueryParams (an unnamed statement); sent
 *    outside a transaction, the statement gets its own with the settings
 *    (one round trip: a pipeline of the settings and the statement, one
 *    sync; read it with dbconn_next_result as if sent alone). 1 if sent.
 *  - dbconn_exec_params: the same, waited for under the guard.
 *  - dbconn_local: the settings statement, for whoever opens a
 *    transaction with BEGIN (it sends it right after); NULL if none.
 */
void dbconn_set_local(const char *settings);
const char *dbconn_local(void);
int dbconn_send_params(PGconn *conn, const char *sql, int nparams, const Oid *types,
                       const char *const *params);
PGresult *dbconn_exec_params(PGconn *conn, const char *sql, int nparams, const Oid *types,
                             const char *const *params);

/* The prepared statement name, waited for as dbconn_exec_params, with
 * settings (one statement, or NULL) in its transaction instead of the
 * process's: for a statement prepared in a session of our own. */
PGresult *dbconn_exec_prepared(PGconn *conn, const char *settings, const char *name, int nparams,
                               const char *const *params);

/*
 * libpq's messages end in a newline and may span lines (a connection
 * failure's "\n\tIs the server running...", a server error's DETAIL, HINT
 * and CONTEXT lines): make one line of text, in place, for a log line, a
 * CLI message or last_error. Every run of whitespace that holds a line
 * break becomes one space and whitespace at either end goes; spacing
 * within a line stays as libpq wrote it. Returns text.
 */
char *dbconn_one_line(char *text);

/* The primary message of a server error in res or, for a failure that is
 * not one (the connection broke; res may be NULL), the connection's
 * message: as one line (dbconn_one_line) in buf. Returns buf. */
const char *dbconn_primary_line(const PGresult *res, const PGconn *conn, char *buf, size_t len);

#endif
