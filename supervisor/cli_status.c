/*
 * cli_status.c — `pgwork status [--json] [QUEUE...]` (cli.h): one query
 * over pgwork.tasks, printed as a table or as JSON.
 */
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

/* A text[] literal, {"a","b\"c"}: any name is one element. NULL if out
 * of memory (caller frees). */
static char *text_array_literal(const char *const *items, int count)
{
    struct text_buffer b = {0};
    for (int i = 0; i < count; i++)
        text_array_add_text(&b, items[i]);
    return text_array_end(&b);
}

/*
 * One pass over pgwork.tasks, grouped by queue. Counting `done` rows
 * visits each of them whatever the plan (no index covers every state, and
 * keep_done makes them the bulk of the table), so one sequential scan that
 * aggregates every state at once is the cheapest plan there is; a
 * "distinct queues" query first would only add a pass. Ages are computed
 * by the database from its own clock; infinite timestamps give NULL.
 */
/* clang-format off */
#define STATUS_STATS(filter)                                                                \
    "stats AS ("                                                                            \
    " SELECT queue,"                                                                        \
    "  count(*) FILTER (WHERE state = 'pending' AND run_at <= now()) AS due,"               \
    "  count(*) FILTER (WHERE state = 'pending' AND run_at > now()) AS later,"              \
    "  count(*) FILTER (WHERE state = 'running') AS running,"                               \
    "  count(*) FILTER (WHERE state = 'done') AS done,"                                     \
    "  count(*) FILTER (WHERE state = 'dead') AS dead,"                                     \
    "  count(*) FILTER (WHERE state = 'cancelled') AS cancelled,"                           \
    "  min(run_at) FILTER (WHERE state = 'pending' AND run_at <= now()) AS oldest_due,"     \
    "  min(started_at) FILTER (WHERE state = 'running') AS oldest_running,"                 \
    "  min(run_at) FILTER (WHERE state = 'pending' AND run_at > now()) AS next_due"         \
    " FROM pgwork.tasks " filter " GROUP BY queue) "

/* Seconds (>= 0, to the ms) of an interval ending or starting at ts;
 * NULL when ts is infinite. */
#define STATUS_SECONDS(expr, ts)                                                            \
    "CASE WHEN isfinite(" ts ")"                                                            \
    " THEN round(greatest(extract(epoch FROM " expr "), 0)::numeric, 3) END"

/* Columns of both queries after the queue name: the row layout
 * cli_status() reads. paused: whether the queue is paused (migration
 * 0011). */
#define STATUS_COLUMNS(paused)                                                              \
    " coalesce(s.due, 0), coalesce(s.later, 0), coalesce(s.running, 0),"                    \
    " coalesce(s.done, 0), coalesce(s.dead, 0), coalesce(s.cancelled, 0), " paused ", "     \
    STATUS_SECONDS("now() - s.oldest_due", "s.oldest_due") ", "                             \
    STATUS_SECONDS("now() - s.oldest_running", "s.oldest_running") ", "                     \
    STATUS_SECONDS("s.next_due - now()", "s.next_due")

/* Every queue with tasks, and every paused one (it may have none yet). */
static const char status_all_sql[] =
    "WITH " STATUS_STATS("")
    "SELECT coalesce(s.queue, p.queue)," STATUS_COLUMNS("p.queue IS NOT NULL")
    " FROM stats s FULL JOIN pgwork.paused_queues p ON p.queue = s.queue"
    " ORDER BY coalesce(s.queue, p.queue) COLLATE \"C\"";

/* Named queues: in the order given, duplicates once, zeros when unknown. */
static const char status_named_sql[] =
    "WITH wanted AS ("
    " SELECT q AS queue, min(n) AS n FROM unnest($1::text[]) WITH ORDINALITY AS u(q, n)"
    " GROUP BY q), "
    STATUS_STATS("WHERE queue IN (SELECT queue FROM wanted)")
    "SELECT w.queue,"
    STATUS_COLUMNS("EXISTS (SELECT FROM pgwork.paused_queues p WHERE p.queue = w.queue)")
    " FROM wanted w LEFT JOIN stats s ON s.queue = w.queue"
    " ORDER BY w.n";
/* clang-format on */

enum status_col {
    COL_QUEUE,
    COL_DUE,
    COL_LATER,
    COL_RUNNING,
    COL_DONE,
    COL_DEAD,
    COL_CANCELLED,
    COL_PAUSED, /* boolean */
    COL_OLDEST_DUE,
    COL_OLDEST_RUNNING,
    COL_NEXT_DUE,
    COL_COUNT,
};

static void status_json(FILE *out, const PGresult *res)
{
    static const char *const keys[COL_COUNT] = {
        [COL_DUE] = "pending_due",
        [COL_LATER] = "pending_scheduled",
        [COL_RUNNING] = "running",
        [COL_DONE] = "done",
        [COL_DEAD] = "dead",
        [COL_CANCELLED] = "cancelled",
        [COL_PAUSED] = "paused",
        [COL_OLDEST_DUE] = "oldest_pending_age_seconds",
        [COL_OLDEST_RUNNING] = "oldest_running_age_seconds",
        [COL_NEXT_DUE] = "next_scheduled_in_seconds",
    };
    fputs("{\"queues\":[", out);
    for (int row = 0; row < PQntuples(res); row++) {
        fputs(row ? ",\n{\"queue\":" : "\n{\"queue\":", out);
        cli_json_string(out, PQgetvalue(res, row, COL_QUEUE));
        for (int col = COL_DUE; col < COL_COUNT; col++) {
            fprintf(out, ",\"%s\":", keys[col]);
            if (col == COL_PAUSED)
                fputs(strcmp(PQgetvalue(res, row, col), "t") == 0 ? "true" : "false", out);
            else
                cli_json_number(out, res, row, col);
        }
        putc('}', out);
    }
    fputs("\n]", out); /* the object goes on: cli_status adds the schedules */
}

static void status_cell(char *buf, size_t len, const PGresult *res, int r, int c)
{
    int col = COL_DUE + c;
    if (col >= COL_OLDEST_DUE)
        cli_format_age(buf, len, res, r, col);
    else if (col == COL_PAUSED)
        snprintf(buf, len, "%s", strcmp(PQgetvalue(res, r, col), "t") == 0 ? "yes" : "no");
    else
        snprintf(buf, len, "%s", PQgetvalue(res, r, col));
}

static void status_table(FILE *out, const PGresult *res)
{
    if (PQntuples(res) == 0) {
        fputs("no tasks\n", out);
        return;
    }
    static const char *const headers[] = {"PENDING", "SCHEDULED",      "RUNNING",
                                          "DONE",    "DEAD",           "CANCELLED",
                                          "PAUSED",  "OLDEST_PENDING", "OLDEST_RUNNING"};
    static const struct cli_table table = {
        .headers = headers,
        .ncols = sizeof(headers) / sizeof(headers[0]),
        .right_align = true,
        .cell = status_cell,
        .name_header = "QUEUE", /* last, like ps's COMMAND: any length, any script */
        .name_col = COL_QUEUE,
    };
    cli_table(out, res, &table, "");
}

int cli_status(const struct pgwork_config *config, const struct cli_status_options *options)
{
    for (int i = 0; i < options->queue_count; i++)
        if (!cli_lookup_name_ok(options->queues[i]))
            return EXIT_BAD_INPUT;
    char *names = NULL;
    if (options->queue_count > 0 &&
        (names = text_array_literal(options->queues, options->queue_count)) == NULL) {
        fprintf(stderr, "pgwork: out of memory\n");
        return EXIT_FAILURE_GENERIC;
    }

    int rc = EXIT_FAILURE_GENERIC;
    PGconn *conn = cli_connect(config);
    if (conn == NULL)
        goto out;
    const char *params[1] = {names};
    PGresult *res = names ? PQexecParams(conn, status_named_sql, 1, NULL, params, NULL, NULL, 0)
                          : PQexec(conn, status_all_sql);
    int limits_failed = 0;
    PGresult *limits = NULL;
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != COL_COUNT) {
        rc = cli_query_failed("cannot read the queues", res, conn);
    } else if ((limits = cli_limits_query(conn, config, &limits_failed)), limits_failed != 0) {
        rc = limits_failed;
    } else {
        if (options->json)
            status_json(stdout, res);
        else
            status_table(stdout, res);
        if (options->json)
            fputc(',', stdout);
        int schedules = cli_status_schedules(conn, config, names, options->json, stdout);
        if (limits != NULL && options->json)
            cli_limits_json(stdout, limits);
        else if (limits != NULL)
            cli_limits_table(stdout, limits);
        if (options->json)
            fputs("}\n", stdout);
        rc = cli_stdout_written("the status");
        if (schedules != 0)
            rc = EXIT_FAILURE_GENERIC;
    }
    PQclear(limits);
    PQclear(res);
    PQfinish(conn);
out:
    free(names);
    return rc;
}
