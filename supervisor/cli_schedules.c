/*
 * cli_schedules.c — the schedules part of `pgwork status` (cli_status.c):
 * each schedule's last and next tick, read from pgwork.schedules (the row
 * the pods' claims keep, migration 0010), and the config's schedules that
 * have no row yet. One query; the database formats its own timestamps.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cli_internal.h"
#include "cli_output.h"
#include "../shared/text.h"

/* clang-format off */
/*
 * $1: the config's schedule names (text[]), $3, $4: their specs and
 * queues (for those without a row yet), $2: the queues asked for (text[],
 * NULL = all). A schedule shows if it has a row or is in the config;
 * config order first, then the others by name.
 */
static const char schedules_sql[] =
    "WITH conf AS ("
    " SELECT c AS name, n, cs AS spec, cq AS queue"
    " FROM unnest($1::text[], $3::text[], $4::text[]) WITH ORDINALITY AS u(c, cs, cq, n))"
    " SELECT coalesce(s.name, c.name),"
    "  coalesce(s.spec, c.spec), coalesce(s.queue, c.queue),"
    "  to_char(s.last_tick AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
    "  to_char(s.next_tick AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
    "  CASE WHEN isfinite(s.last_tick)"
    "   THEN round(greatest(extract(epoch FROM now() - s.last_tick), 0)::numeric, 3) END,"
    "  CASE WHEN isfinite(s.next_tick)"
    "   THEN round(greatest(extract(epoch FROM s.next_tick - now()), 0)::numeric, 3) END,"
    "  s.made_by,"
    "  c.name IS NOT NULL"
    " FROM pgwork.schedules s FULL JOIN conf c ON c.name = s.name"
    " WHERE $2::text[] IS NULL OR coalesce(s.queue, c.queue) = ANY ($2::text[])"
    " ORDER BY c.n NULLS LAST, coalesce(s.name, c.name) COLLATE \"C\"";
/* clang-format on */

enum schedule_col {
    SCOL_NAME,
    SCOL_SPEC,
    SCOL_QUEUE,
    SCOL_LAST,
    SCOL_NEXT,
    SCOL_LAST_AGE,
    SCOL_NEXT_IN,
    SCOL_MADE_BY,
    SCOL_CONFIGURED,
    SCOL_COUNT,
};

static void json_text_or_null(FILE *out, const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        fputs("null", out);
    else
        cli_json_string(out, PQgetvalue(res, row, col));
}

static void schedules_json(FILE *out, const PGresult *res)
{
    fputs("\"schedules\":[", out);
    for (int row = 0; row < PQntuples(res); row++) {
        fputs(row ? ",\n{\"schedule\":" : "\n{\"schedule\":", out);
        cli_json_string(out, PQgetvalue(res, row, SCOL_NAME));
        static const struct {
            const char *key;
            int col;
            bool number;
        } fields[] = {
            {"spec", SCOL_SPEC, false},
            {"queue", SCOL_QUEUE, false},
            {"last_tick", SCOL_LAST, false},
            {"next_tick", SCOL_NEXT, false},
            {"last_tick_age_seconds", SCOL_LAST_AGE, true},
            {"next_tick_in_seconds", SCOL_NEXT_IN, true},
            {"made_by", SCOL_MADE_BY, false},
        };
        for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
            fprintf(out, ",\"%s\":", fields[i].key);
            if (fields[i].number)
                cli_json_number(out, res, row, fields[i].col);
            else
                json_text_or_null(out, res, row, fields[i].col);
        }
        fprintf(out, ",\"configured\":%s}",
                strcmp(PQgetvalue(res, row, SCOL_CONFIGURED), "t") == 0 ? "true" : "false");
    }
    fputs("\n]", out);
}

/* The table's columns: last and next tick, each with its age. */
static const int schedule_cols[] = {SCOL_LAST, SCOL_LAST_AGE, SCOL_NEXT, SCOL_NEXT_IN};

static void schedule_cell(char *buf, size_t len, const PGresult *res, int r, int c)
{
    int col = schedule_cols[c];
    if (col == SCOL_LAST_AGE || col == SCOL_NEXT_IN)
        cli_format_age(buf, len, res, r, col);
    else if (PQgetisnull(res, r, col))
        snprintf(buf, len, "%s", c == 0 ? "never" : "-");
    else
        snprintf(buf, len, "%s", PQgetvalue(res, r, col));
}

static void schedules_table(FILE *out, const PGresult *res)
{
    if (PQntuples(res) == 0)
        return;
    static const char *const headers[] = {"LAST_TICK", "AGO", "NEXT_TICK", "IN"};
    static const struct cli_table table = {
        .headers = headers,
        .ncols = sizeof(headers) / sizeof(headers[0]),
        .right_align = false,
        .cell = schedule_cell,
        .name_header = "SCHEDULE", /* last, like the queue table's QUEUE: any length */
        .name_col = SCOL_NAME,
    };
    cli_table(out, res, &table, "\n");
}

int cli_status_schedules(PGconn *conn, const struct pgwork_config *config, const char *queues,
                         bool json, FILE *out)
{
    struct text_buffer names = {0}, specs = {0}, targets = {0};
    for (int i = 0; config != NULL && i < config->schedule_count; i++) {
        const struct schedule_config *c = &config->schedules[i];
        char spec[SCHEDULE_CRON_MAX + ZONE_NAME_MAX + 16];
        /* As the pods write it (ticks.c). */
        if (c->cron != NULL)
            snprintf(spec, sizeof(spec), "cron %s %s", c->cron, c->timezone);
        else
            snprintf(spec, sizeof(spec), "every %s", c->every);
        text_array_add_text(&names, c->name);
        text_array_add_text(&specs, spec);
        text_array_add_text(&targets, c->queue);
    }
    char *name_list = text_array_end(&names);
    char *spec_list = text_array_end(&specs);
    char *queue_list = text_array_end(&targets);
    PGresult *res = NULL;
    if (name_list != NULL && spec_list != NULL && queue_list != NULL) {
        const char *params[4] = {name_list, queues, spec_list, queue_list};
        res = PQexecParams(conn, schedules_sql, 4, NULL, params, NULL, NULL, 0);
    }
    free(name_list);
    free(spec_list);
    free(queue_list);
    if (res == NULL) {
        fprintf(stderr, "pgwork: out of memory\n");
        return -1;
    }
    int rc = 0;
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != SCOL_COUNT) {
        if (state != NULL && strcmp(state, SQLSTATE_UNDEFINED_TABLE) == 0) {
            /* A schema from before schedules (migration 0010): none to show. */
            if (json)
                fputs("\"schedules\":[]", out);
        } else {
            rc = -1;
            cli_query_failed("cannot read the schedules", res, conn);
        }
    } else if (json) {
        schedules_json(out, res);
    } else {
        schedules_table(out, res);
    }
    PQclear(res);
    return rc;
}
