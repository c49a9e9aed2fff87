/*
 * migrate.c — apply the embedded migrations (migrations/NNNN_*.sql, compiled
 * in by scripts/embed-migrations.sh) to the database.
 *
 * Invariants:
 *  - Everything happens under one session-level advisory lock
 *    (MIGRATE_LOCK_KEY), taken before the first DDL: two pods migrating at
 *    once serialise, and the second finds nothing left to do. Even
 *    `CREATE SCHEMA IF NOT EXISTS` must be under the lock: two sessions
 *    racing on it can both pass the existence check and one then fails
 *    with a unique violation on pg_namespace.
 *  - Each migration runs in its own transaction together with the
 *    schema_migrations row that records it: a migration is applied and
 *    recorded, or neither.
 *  - Forward only: a database newer than this binary is left alone.
 *  - The lock is released on every path; if the connection is gone, the
 *    session's end releases it. The connection is left as it was found:
 *    settings are changed only with SET LOCAL.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrate.h"
#include "../shared/log.h"

/* The advisory lock key: the ASCII bytes of "pgwork" (70 67 77 6f 72 6b)
 * read as one big-endian integer. Any fixed value would do; this one is
 * unlikely to collide with an application's own keys. */
#define MIGRATE_LOCK_KEY "123589687734891"

int migrate_latest_version(void)
{
    int latest = 0;
    for (int i = 0; i < migration_count; i++) {
        if (migrations[i].version > latest)
            latest = migrations[i].version;
    }
    return latest;
}

/* libpq's messages end in a newline; keep log lines one line. */
static const char *pq_message(const PGresult *res, const PGconn *conn)
{
    static char buf[1024];
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (msg == NULL || msg[0] == '\0')
        msg = PQerrorMessage(conn);
    snprintf(buf, sizeof(buf), "%s", msg);
    size_t len = strlen(buf);
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
        buf[--len] = '\0';
    for (char *p = buf; *p; p++) {
        if (*p == '\n')
            *p = ' ';
    }
    return buf;
}

/* Run one command that returns no rows; log and return false on failure. */
static bool exec_command(PGconn *conn, const char *sql, const char *what)
{
    PGresult *res = PQexec(conn, sql);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok)
        log_error("migrate: %s failed: %s", what, pq_message(res, conn));
    PQclear(res);
    return ok;
}

/* Is version in the sorted list of applied versions? */
static bool is_applied(const int *applied, int count, int version)
{
    for (int i = 0; i < count; i++) {
        if (applied[i] == version)
            return true;
    }
    return false;
}

/* Read the applied versions (ascending) into a new array; -1 on failure. */
static int read_applied(PGconn *conn, int **out)
{
    PGresult *res = PQexec(conn, "SELECT version FROM pgwork.schema_migrations ORDER BY version");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        log_error("migrate: reading pgwork.schema_migrations failed: %s", pq_message(res, conn));
        PQclear(res);
        return -1;
    }
    int count = PQntuples(res);
    int *applied = calloc(count > 0 ? (size_t)count : 1, sizeof(*applied));
    if (applied == NULL) {
        log_error("migrate: out of memory");
        PQclear(res);
        return -1;
    }
    for (int i = 0; i < count; i++)
        applied[i] = atoi(PQgetvalue(res, i, 0));
    PQclear(res);
    *out = applied;
    return count;
}

/* Apply one migration and record it, in one transaction. */
static bool apply_one(PGconn *conn, const struct migration *m)
{
    /* SET LOCAL: routine NOTICEs ("... already exists, skipping") are not
     * worth a line on the operator's terminal; the session keeps its own
     * setting. */
    if (!exec_command(conn, "BEGIN; SET LOCAL client_min_messages = warning", "begin"))
        return false;

    /* The file may hold many statements: PQexec runs them all, in order,
     * inside our transaction, and returns the first error. */
    PGresult *res = PQexec(conn, m->sql);
    ExecStatusType status = PQresultStatus(res);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && status != PGRES_EMPTY_QUERY) {
        log_error("migration %s failed: %s", m->name, pq_message(res, conn));
        PQclear(res);
        exec_command(conn, "ROLLBACK", "rollback");
        return false;
    }
    PQclear(res);

    char version[16];
    snprintf(version, sizeof(version), "%d", m->version);
    const char *params[2] = {version, m->name};
    res = PQexecParams(conn, "INSERT INTO pgwork.schema_migrations (version, name) VALUES ($1, $2)",
                       2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        log_error("migration %s failed: recording it: %s", m->name, pq_message(res, conn));
        PQclear(res);
        exec_command(conn, "ROLLBACK", "rollback");
        return false;
    }
    PQclear(res);

    /* COMMIT can fail too (deferred constraints, lost connection). */
    res = PQexec(conn, "COMMIT");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        log_error("migration %s failed: commit: %s", m->name, pq_message(res, conn));
        PQclear(res);
        return false;
    }
    PQclear(res);
    log_info("migration %s applied", m->name);
    return true;
}

int migrate_run(PGconn *conn)
{
    int result = -1;
    int *applied = NULL;

    if (!exec_command(conn, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", "taking the lock"))
        return -1;

    if (!exec_command(conn,
                      "BEGIN;"
                      " SET LOCAL client_min_messages = warning;"
                      " CREATE SCHEMA IF NOT EXISTS pgwork;"
                      " CREATE TABLE IF NOT EXISTS pgwork.schema_migrations ("
                      "  version integer PRIMARY KEY,"
                      "  name text NOT NULL,"
                      "  applied_at timestamptz NOT NULL DEFAULT now());"
                      " COMMIT",
                      "creating pgwork.schema_migrations"))
        goto out_unlock;

    int applied_count = read_applied(conn, &applied);
    if (applied_count < 0)
        goto out_unlock;

    int latest = migrate_latest_version();
    int current = applied_count > 0 ? applied[applied_count - 1] : 0;
    if (current > latest)
        log_warn("migrate: database schema version %d is newer than this binary's %d; "
                 "leaving it alone",
                 current, latest);

    int done = 0;
    for (int i = 0; i < migration_count; i++) {
        const struct migration *m = &migrations[i];
        if (is_applied(applied, applied_count, m->version))
            continue;
        if (m->version < current) {
            /* Forward only: a hole below the database's version means the
             * history diverged; applying it now could be wrong. */
            log_error("migration %s failed: not applied, but the database is already at "
                      "version %d",
                      m->name, current);
            goto out_unlock;
        }
        if (!apply_one(conn, m))
            goto out_unlock;
        done++;
    }
    result = done;
    if (done > 0)
        log_info("migrate: %d migration%s applied, schema at version %d", done,
                 done == 1 ? "" : "s", latest);
    else
        log_info("migrate: schema is current (version %d)", current);

out_unlock:
    /* A failed statement may leave us inside an aborted transaction: end it
     * first, or the unlock itself would fail. */
    if (PQtransactionStatus(conn) != PQTRANS_IDLE)
        exec_command(conn, "ROLLBACK", "rollback");
    exec_command(conn, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", "releasing the lock");
    free(applied);
    return result;
}
