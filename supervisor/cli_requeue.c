/*
 * cli_requeue.c — `pgwork requeue-dead QUEUE | --all-queues | --id N...`
 * (cli.h): dead tasks back to pending in one statement that also
 * announces the queues it touched.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cli.h"
#include "cli_internal.h"
#include "../shared/requeue_sql.h"
#include "../shared/text.h"

#define SQLSTATE_UNIQUE_VIOLATION "23505" /* a unique key taken meanwhile */

/* Runs of the requeue statement when a unique key is taken meanwhile. */
#define REQUEUE_TRIES 3

/* clang-format off */
static const char requeue_queue_sql[] = REQUEUE_WITH("queue = $1") "SELECT " REQUEUE_COUNTS;
static const char requeue_all_sql[] = REQUEUE_WITH("true") "SELECT " REQUEUE_COUNTS;

/* One row per id asked for: its state before (NULL: no such task) and
 * whether it moved. */
static const char requeue_ids_sql[] =
    REQUEUE_WITH("id = ANY ($1::bigint[])")
    "SELECT " REQUEUE_COUNTS ", r.id, t.state, r.id IN (SELECT id FROM moved)"
    " FROM unnest($1::bigint[]) WITH ORDINALITY AS r(id, n)"
    " LEFT JOIN pgwork.tasks t ON t.id = r.id"
    " ORDER BY r.n";
/* clang-format on */

/* A bigint[] literal, {1,2,3}; NULL if out of memory. */
static char *id_array_literal(const int64_t *ids, int count)
{
    struct text_buffer b = {0};
    for (int i = 0; i < count; i++)
        text_array_add_int64(&b, ids[i]);
    return text_array_end(&b);
}

int cli_requeue_dead(const struct pgwork_config *config, const struct cli_requeue_options *options)
{
    const char *sql = requeue_all_sql;
    char *ids = NULL;
    const char *params[1] = {NULL};
    int nparams = 0;

    if (options->scope == CLI_REQUEUE_QUEUE) {
        if (!cli_lookup_name_ok(options->queue))
            return EXIT_BAD_INPUT;
        sql = requeue_queue_sql;
        params[0] = options->queue;
        nparams = 1;
    } else if (options->scope == CLI_REQUEUE_IDS) {
        if ((ids = id_array_literal(options->ids, options->id_count)) == NULL) {
            fprintf(stderr, "pgwork: out of memory\n");
            return EXIT_FAILURE_GENERIC;
        }
        sql = requeue_ids_sql;
        params[0] = ids;
        nparams = 1;
    }

    int rc = EXIT_FAILURE_GENERIC;
    PGconn *conn = cli_connect(config);
    if (conn == NULL)
        goto out;
    PGresult *res = NULL;
    for (int attempt = 0; attempt < REQUEUE_TRIES; attempt++) {
        PQclear(res);
        res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
        const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (sqlstate == NULL || strcmp(sqlstate, SQLSTATE_UNIQUE_VIOLATION) != 0)
            break;
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) < 1) {
        rc = cli_query_failed("cannot requeue dead tasks", res, conn);
        PQclear(res);
        PQfinish(conn);
        goto out;
    }
    long long moved = atoll(PQgetvalue(res, 0, 0));
    long long kept = atoll(PQgetvalue(res, 0, 2));
    rc = EXIT_OK;
    /* With ids: name each one that was not requeued, and why. */
    for (int row = 0; options->scope == CLI_REQUEUE_IDS && row < PQntuples(res); row++) {
        if (strcmp(PQgetvalue(res, row, 5), "t") == 0)
            continue;
        const char *id = PQgetvalue(res, row, 3);
        const char *state = PQgetvalue(res, row, 4);
        if (PQgetisnull(res, row, 4))
            fprintf(stderr, "pgwork: task %s: no such task\n", id);
        else if (strcmp(state, "dead") == 0)
            fprintf(stderr,
                    "pgwork: task %s: left dead: a pending or running task holds its unique "
                    "key\n",
                    id);
        else
            fprintf(stderr, "pgwork: task %s: not dead (state %s)\n", id, state);
        rc = EXIT_BAD_INPUT;
    }
    if (options->scope != CLI_REQUEUE_IDS && kept > 0)
        fprintf(stderr,
                "pgwork: kept %lld task%s dead: a pending or running task holds their "
                "unique key\n",
                kept, kept == 1 ? "" : "s");
    PQclear(res);
    PQfinish(conn);
    printf("requeued %lld dead task%s\n", moved, moved == 1 ? "" : "s");
    if (cli_stdout_written("the result") != EXIT_OK)
        rc = EXIT_FAILURE_GENERIC;
out:
    free(ids);
    return rc;
}
