/*
 * handler_sql.c — the `sql` handler: run the queue's statement with the
 * payload as $1 (jsonb) and the task id as $2 (bigint) in the same
 * transaction that marks the task done (DESIGN §3).
 *
 * Invariant: the statement's effect and the task's `done` commit together
 * or not at all, so database-side work is exactly-once even though
 * delivery is at-least-once. A task that is no longer ours (lease lost) is
 * rolled back, effect included.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handler.h"
#include "task.h"
#include "../shared/dbconn.h"
#include "../shared/log.h"

#define OID_JSONB 3802
#define OID_INT8 20

/* $1 the payload, $2 the task id. */
static const Oid sql_types[] = {OID_JSONB, OID_INT8};

/* The task's transaction around the queue's statement (sql_run). */
/* clang-format off */
static const char begin_sql[] = "BEGIN";
static const char set_timeout_format[] = "SET LOCAL statement_timeout = %lld";
static const char commit_sql[] = "COMMIT";
static const char rollback_sql[] = "ROLLBACK";
/* clang-format on */

/* The statement is sent unnamed each time (DESIGN §2: behind PgBouncer a
 * named one may be missing on the next transaction's server connection). */
struct sql_state {
    const char *statement; /* the queue's */
};

/*
 * Whether a failed preparation of the queue's statement is the statement's
 * own fault, which only a new configuration can cure — SQLSTATE class 42
 * (syntax error, undefined table, column or function, no privilege), 0A
 * (not supported), 22 (a bad literal), 3F (no such schema), on a
 * connection still up — rather than a passing state of the database or
 * the connection (a statement or lock timeout, a dropped connection, a
 * server shutting down), after which the worker is simply restarted. A
 * statement name already taken (42P05, a pooler's recycled connection) is
 * never the statement's fault.
 */
static bool sql_statement_at_fault(PGconn *conn, const PGresult *res)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (PQstatus(conn) != CONNECTION_OK || state == NULL || strlen(state) != 5)
        return false;
    if (strcmp(state, "42P05") == 0)
        return false;
    return strncmp(state, "42", 2) == 0 || strncmp(state, "0A", 2) == 0 ||
           strncmp(state, "22", 2) == 0 || strncmp(state, "3F", 2) == 0;
}

static int sql_init(struct handler_env *env, void **state)
{
    struct sql_state *sql = calloc(1, sizeof(*sql));
    if (sql == NULL)
        return -1;
    sql->statement = env->queue->statement;

    /* Parsed once now (as the unnamed statement) so that a statement that
     * cannot work is reported at start. */
    PGresult *res = dbconn_prepare(env->conn, "", sql->statement, 2, sql_types);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        log_error("queue \"%s\": cannot prepare its statement: %s", env->queue->name,
                  PQerrorMessage(env->conn));
        bool config = sql_statement_at_fault(env->conn, res);
        PQclear(res);
        free(sql);
        return config ? HANDLER_INIT_CONFIG : HANDLER_INIT_AGAIN;
    }
    PQclear(res);
    *state = sql;
    return HANDLER_INIT_OK;
}

static bool exec_simple(PGconn *conn, const char *command)
{
    PGresult *res = dbconn_exec(conn, command);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    return ok;
}

/* A statement run for its side effect that may return rows (set_config). */
static bool exec_simple_rows(PGconn *conn, const char *command)
{
    PGresult *res = dbconn_exec(conn, command);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
    PQclear(res);
    return ok;
}

static enum handler_outcome sql_run(void *state, struct handler_env *env, const struct task *task,
                                    char *error, size_t errlen)
{
    struct sql_state *sql = state;
    char id[24];
    snprintf(id, sizeof(id), "%" PRId64, task->id);
    const char *params[] = {task->payload, id};

    if (!exec_simple(env->conn, begin_sql)) {
        /* A connection that broke before the task (a crash restarted the
         * cluster): it never ran; it goes back untried. */
        if (PQstatus(env->conn) != CONNECTION_OK)
            return HANDLER_ABORTED;
        snprintf(error, errlen, "begin failed: %s", PQerrorMessage(env->conn));
        return HANDLER_FAILED;
    }
    if (env->queue->timeout_ms > 0) {
        /* The queue's timeout, for this transaction only: a statement that
         * hangs is cancelled by the server and the task is retried. */
        char set_timeout[64];
        snprintf(set_timeout, sizeof(set_timeout), set_timeout_format,
                 (long long)env->queue->timeout_ms);
        if (!exec_simple(env->conn, set_timeout)) {
            snprintf(error, errlen, "cannot set statement_timeout: %s", PQerrorMessage(env->conn));
            exec_simple(env->conn, rollback_sql);
            return HANDLER_FAILED;
        }
    }
    /* The worker's settings, for this transaction only. */
    if (dbconn_local() != NULL && !exec_simple_rows(env->conn, dbconn_local())) {
        snprintf(error, errlen, "cannot apply settings: %s", PQerrorMessage(env->conn));
        exec_simple(env->conn, rollback_sql);
        return HANDLER_FAILED;
    }
    PGresult *res = dbconn_exec_params(env->conn, sql->statement, 2, sql_types, params);
    ExecStatusType status = PQresultStatus(res);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
        snprintf(error, errlen, "%s", PQresultErrorMessage(res));
        dbconn_one_line(error);
        PQclear(res);
        exec_simple(env->conn, rollback_sql);
        return HANDLER_FAILED;
    }
    PQclear(res);

    int marked = task_mark_done(env->conn, task->id, env->locked_by, env->keep_done);
    if (marked != 1) {
        exec_simple(env->conn, rollback_sql);
        if (marked == 0) {
            log_task(LOG_LEVEL_WARN, env->queue->name, task->id,
                     "task is no longer ours (its lease expired, or a crash undid its claim): "
                     "its effect was rolled back");
            return HANDLER_ABORTED;
        }
        snprintf(error, errlen, "marking done failed: %s", PQerrorMessage(env->conn));
        return HANDLER_FAILED;
    }
    if (!exec_simple(env->conn, commit_sql)) {
        snprintf(error, errlen, "commit failed: %s", PQerrorMessage(env->conn));
        return HANDLER_FAILED;
    }
    return HANDLER_DONE;
}

/* Inside the worker's batch transaction: just the statement, queued in
 * its pipeline. The queue's timeout was set for the transaction by the
 * worker (SET LOCAL). The batch's first task parses the statement as the
 * unnamed one; the others bind it again: parsed once a batch, not once a
 * task (measured: ~20-40 us a task), and it cannot outlive the
 * transaction's server connection (PgBouncer, DESIGN §2). Each execution
 * is still planned for its parameters (plan_cache_mode, set per
 * transaction by the worker). */
static int sql_send_in_transaction(void *state, struct handler_env *env, const struct task *task)
{
    struct sql_state *sql = state;
    char id[24];
    snprintf(id, sizeof(id), "%" PRId64, task->id);
    const char *params[] = {task->payload, id};
    int sent = env->batch_index == 0 ? PQsendQueryParams(env->conn, sql->statement, 2, sql_types,
                                                         params, NULL, NULL, 0)
                                     : PQsendQueryPrepared(env->conn, "", 2, params, NULL, NULL, 0);
    return sent ? 0 : -1;
}

static void sql_fini(void *state)
{
    free(state);
}

const struct handler handler_sql = {
    .name = "sql",
    .init = sql_init,
    .run = sql_run,
    .fini = sql_fini,
    .uses_connection = true,
    .send_in_transaction = sql_send_in_transaction,
};
