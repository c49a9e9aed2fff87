/*
 * cli_limits.c — the limited queues' part of `pgwork status` (cli_status.c):
 * each queue with a concurrency cap or a rate in the config, its limits
 * (this config's), and what the database counts for all pods: running
 * tasks, starts in the last period, due tasks held back by a limit.
 * Only queues the config limits are read: without limits, nothing is sent.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_internal.h"
#include "cli_output.h"
#include "limits.h"
#include "../shared/config_value.h"

PGresult *cli_limits_query(PGconn *conn, const struct pgwork_config *config, int *failed)
{
    *failed = 0;
    char *params[4];
    int limited = limits_params(config, params);
    if (limited == 0)
        return NULL;
    PGresult *res = NULL;
    if (limited > 0)
        res = PQexecParams(conn, limits_sql, 4, NULL, (const char *const *)params, NULL, NULL, 0);
    limits_params_free(params);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != 7) {
        *failed = cli_query_failed("cannot read the limited queues", res, conn);
        PQclear(res);
        return NULL;
    }
    return res;
}

/* "10/1s", or "-" without a rate. */
static const char *limits_rate_text(const PGresult *res, int row, char *buf, size_t len)
{
    long count = atol(PQgetvalue(res, row, 2));
    if (count <= 0)
        return "-";
    char period[32];
    config_value_show_duration(atol(PQgetvalue(res, row, 3)), period, sizeof(period));
    snprintf(buf, len, "%ld/%s", count, period);
    return buf;
}

void cli_limits_json(FILE *out, const PGresult *res)
{
    fputs(",\"limits\":[", out);
    for (int row = 0; row < PQntuples(res); row++) {
        fputs(row ? ",\n{\"queue\":" : "\n{\"queue\":", out);
        cli_json_string(out, PQgetvalue(res, row, 0));
        char rate[64];
        const char *text = limits_rate_text(res, row, rate, sizeof(rate));
        fputs(",\"concurrency\":", out);
        cli_json_number(out, res, row, 1);
        fputs(",\"rate\":", out);
        cli_json_string(out, strcmp(text, "-") == 0 ? "" : text);
        fputs(",\"running\":", out);
        cli_json_number(out, res, row, 4);
        fputs(",\"starts_in_period\":", out);
        cli_json_number(out, res, row, 5);
        fputs(",\"waiting_on_limit\":", out);
        cli_json_number(out, res, row, 6);
        putc('}', out);
    }
    fputs("\n]", out);
}

void cli_limits_table(FILE *out, const PGresult *res)
{
    fputs("\n", out);
    fprintf(out, "%11s  %7s  %10s  %6s  %7s  LIMITED QUEUE\n", "CONCURRENCY", "RUNNING", "RATE",
            "STARTS", "WAITING");
    for (int row = 0; row < PQntuples(res); row++) {
        char rate[64];
        const char *cap = PQgetvalue(res, row, 1);
        fprintf(out, "%11s  %7s  %10s  %6s  %7s  ", strcmp(cap, "0") == 0 ? "-" : cap,
                PQgetvalue(res, row, 4), limits_rate_text(res, row, rate, sizeof(rate)),
                atol(PQgetvalue(res, row, 2)) > 0 ? PQgetvalue(res, row, 5) : "-",
                PQgetvalue(res, row, 6));
        cli_text_name(out, PQgetvalue(res, row, 0));
        putc('\n', out);
    }
}
