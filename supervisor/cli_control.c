/*
 * cli_control.c — `pgwork cancel ID...`, `pgwork pause QUEUE...` and
 * `pgwork resume QUEUE...` (cli.h): thin wrappers of the SQL API of
 * migration 0011 (pgwork.cancel, pgwork.pause, pgwork.resume), which does
 * the work and tells the pods; one statement, one transaction, whatever
 * the number of arguments.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cli.h"
#include "cli_internal.h"
#include "cli_output.h"
#include "../shared/text.h"

/* clang-format off */
/* One row per id, in the order given: the id, its state before. */
static const char cancel_sql[] =
    "SELECT r.id, pgwork.cancel(r.id)"
    " FROM unnest($1::bigint[]) WITH ORDINALITY AS r(id, n)"
    " ORDER BY r.n";

/* One row per queue, in the order given: the name, whether it changed. */
static const char pause_sql[] =
    "SELECT q, pgwork.pause(q) FROM unnest($1::text[]) WITH ORDINALITY AS u(q, n) ORDER BY n";
static const char resume_sql[] =
    "SELECT q, pgwork.resume(q) FROM unnest($1::text[]) WITH ORDINALITY AS u(q, n) ORDER BY n";
/* clang-format on */

static int cli_finish_output(int rc)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "pgwork: cannot write the result: %s\n", strerror(errno));
        return EXIT_FAILURE_GENERIC;
    }
    return rc;
}

/* Run sql with one array parameter (a literal, owned and freed here; NULL:
 * out of memory building it); the result, or NULL after saying why (*rc
 * set). */
static PGresult *cli_control_exec(const struct pgwork_config *config, const char *sql, char *array,
                                  const char *what, int *rc)
{
    if (array == NULL) {
        fprintf(stderr, "pgwork: out of memory\n");
        *rc = EXIT_FAILURE_GENERIC;
        return NULL;
    }
    PGconn *conn = cli_connect(config);
    if (conn == NULL) {
        free(array);
        *rc = EXIT_FAILURE_GENERIC;
        return NULL;
    }
    const char *params[1] = {array};
    PGresult *res = PQexecParams(conn, sql, 1, NULL, params, NULL, NULL, 0);
    free(array);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        *rc = cli_query_failed(what, res, conn);
        PQclear(res);
        res = NULL;
    }
    PQfinish(conn);
    return res;
}

int cli_cancel(const struct pgwork_config *config, const int64_t *ids, int count)
{
    struct text_buffer b = {0};
    for (int i = 0; i < count; i++)
        text_array_add_int64(&b, ids[i]);
    int rc = EXIT_OK;
    PGresult *res =
        cli_control_exec(config, cancel_sql, text_array_end(&b), "cannot cancel tasks", &rc);
    if (res == NULL)
        return rc;
    bool missing = false, finished = false;
    for (int row = 0; row < PQntuples(res); row++) {
        const char *id = PQgetvalue(res, row, 0);
        const char *was = PQgetvalue(res, row, 1);
        if (PQgetisnull(res, row, 1)) {
            fprintf(stderr, "pgwork: task %s: no such task\n", id);
            missing = true;
        } else if (strcmp(was, "pending") == 0) {
            printf("task %s: cancelled (it was pending)\n", id);
        } else if (strcmp(was, "running") == 0) {
            printf("task %s: cancelled while running; the pod running it stops it\n", id);
        } else {
            fprintf(stderr, "pgwork: task %s: already %s, nothing to cancel\n", id, was);
            finished = true;
        }
    }
    PQclear(res);
    return cli_finish_output(missing ? EXIT_BAD_INPUT : finished ? EXIT_NOTHING_TO_DO : EXIT_OK);
}

int cli_pause(const struct pgwork_config *config, const char *const *queues, int count, bool resume)
{
    struct text_buffer b = {0};
    for (int i = 0; i < count; i++) {
        if (!cli_lookup_name_ok(queues[i])) {
            free(text_array_end(&b));
            return EXIT_BAD_INPUT;
        }
        text_array_add_text(&b, queues[i]);
    }
    int rc = EXIT_OK;
    PGresult *res = cli_control_exec(config, resume ? resume_sql : pause_sql, text_array_end(&b),
                                     resume ? "cannot resume queues" : "cannot pause queues", &rc);
    if (res == NULL)
        return rc;
    for (int row = 0; row < PQntuples(res); row++) {
        bool changed = strcmp(PQgetvalue(res, row, 1), "t") == 0;
        fputs("queue ", stdout);
        cli_text_name(stdout, PQgetvalue(res, row, 0));
        if (resume)
            fputs(changed ? ": resumed\n" : ": was not paused\n", stdout);
        else
            fputs(changed ? ": paused (running tasks finish; pgwork resume undoes it)\n"
                          : ": was paused already\n",
                  stdout);
    }
    PQclear(res);
    return cli_finish_output(EXIT_OK);
}
