/*
 * migrate.c — apply the embedded migrations (migrations/NNNN_*.sql, compiled
 * in by scripts/embed-migrations.sh) to the database.
 *
 * Invariants:
 *  - Every transaction takes one transaction-level advisory lock
 *    (MIGRATE_LOCK_KEY) before anything else: two pods migrating at once
 *    serialise, and the second finds nothing left to do. Even
 *    `CREATE SCHEMA IF NOT EXISTS` must be under the lock: two sessions
 *    racing on it can both pass the existence check and one then fails
 *    with a unique violation on pg_namespace.
 *  - Each migration runs in its own transaction together with the
 *    schema_migrations row that records it: a migration is applied and
 *    recorded, or neither. Whether it is due is decided in that
 *    transaction, under the lock.
 *  - Nothing lives in the session (DESIGN §2): behind PgBouncer's
 *    transaction pooling consecutive transactions may run on different
 *    server connections, so a session lock would be taken on one and
 *    "released" on another. A transaction's lock ends with it, whatever
 *    happens to the connection. Settings are changed only with SET LOCAL.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrate.h"
#include "../shared/dbconn.h"
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

/* The error as one log line (not reentrant: one use per log call). */
static const char *pq_message(const PGresult *res, const PGconn *conn)
{
    static char buf[1024];
    return dbconn_primary_line(res, conn, buf, sizeof(buf));
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

/* BEGIN, quiet NOTICEs, take the lock. */
static bool begin_locked(PGconn *conn)
{
    /* SET LOCAL: routine NOTICEs ("... already exists, skipping") are not
     * worth a line on the operator's terminal; the session keeps its own
     * setting. */
    return exec_command(conn,
                        "BEGIN; SET LOCAL client_min_messages = warning;"
                        " SELECT pg_advisory_xact_lock(" MIGRATE_LOCK_KEY ")",
                        "taking the lock");
}

/* What to do with m, decided under the lock from the applied versions. */
enum step { STEP_APPLY, STEP_SKIP, STEP_FAIL };

static enum step migration_step(PGconn *conn, const struct migration *m)
{
    int *applied = NULL;
    int count = read_applied(conn, &applied);
    if (count < 0)
        return STEP_FAIL;
    enum step step = STEP_APPLY;
    int current = count > 0 ? applied[count - 1] : 0;
    if (is_applied(applied, count, m->version)) {
        step = STEP_SKIP; /* by us earlier, or by someone who had the lock */
    } else if (m->version < current) {
        /* Forward only: a hole below the database's version means the
         * history diverged; applying it now could be wrong. */
        log_error("migration %s failed: not applied, but the database is already at version %d",
                  m->name, current);
        step = STEP_FAIL;
    }
    free(applied);
    return step;
}

/* Apply one migration and record it, in one transaction, unless it is
 * applied already. 1 applied, 0 skipped, -1 failed (logged). */
static int apply_one(PGconn *conn, const struct migration *m)
{
    if (!begin_locked(conn))
        return -1;
    enum step step = migration_step(conn, m);
    if (step != STEP_APPLY) {
        exec_command(conn, "ROLLBACK", "rollback");
        return step == STEP_SKIP ? 0 : -1;
    }

    /* The file may hold many statements: PQexec runs them all, in order,
     * inside our transaction, and returns the first error. */
    PGresult *res = PQexec(conn, m->sql);
    ExecStatusType status = PQresultStatus(res);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && status != PGRES_EMPTY_QUERY) {
        log_error("migration %s failed: %s", m->name, pq_message(res, conn));
        PQclear(res);
        exec_command(conn, "ROLLBACK", "rollback");
        return -1;
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
        return -1;
    }
    PQclear(res);

    /* COMMIT can fail too (deferred constraints, lost connection). */
    res = PQexec(conn, "COMMIT");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        log_error("migration %s failed: commit: %s", m->name, pq_message(res, conn));
        PQclear(res);
        return -1;
    }
    PQclear(res);
    log_info("migration %s applied", m->name);
    return 1;
}

int migrate_run(PGconn *conn)
{
    int result = -1;
    int *applied = NULL;

    if (!begin_locked(conn) ||
        !exec_command(conn,
                      "CREATE SCHEMA IF NOT EXISTS pgwork;"
                      " CREATE TABLE IF NOT EXISTS pgwork.schema_migrations ("
                      "  version integer PRIMARY KEY,"
                      "  name text NOT NULL,"
                      "  applied_at timestamptz NOT NULL DEFAULT now());",
                      "creating pgwork.schema_migrations"))
        goto out;
    int applied_count = read_applied(conn, &applied);
    if (applied_count < 0 || !exec_command(conn, "COMMIT", "creating pgwork.schema_migrations"))
        goto out;

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
        int rc = apply_one(conn, m);
        if (rc < 0)
            goto out;
        done += rc;
    }
    result = done;
    if (done > 0)
        log_info("migrate: %d migration%s applied, schema at version %d", done,
                 done == 1 ? "" : "s", latest);
    else
        log_info("migrate: schema is current (version %d)", current > latest ? current : latest);

out:
    /* A failed statement may leave us inside an aborted transaction (its
     * lock goes with it). */
    if (PQtransactionStatus(conn) != PQTRANS_IDLE)
        exec_command(conn, "ROLLBACK", "rollback");
    free(applied);
    return result;
}
