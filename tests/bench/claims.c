/*
 * claims.c — claim statements per task (issue 12 items 1 and 5): 50
 * single tasks into an idle deployment with default settings, each one
 * isolated (inserted once the previous one is done and every claim it
 * caused has returned), with 1 pod and with 3 pods of 4 workers serving
 * the queue. Every pod that hears a notification wakes a worker, and each
 * woken worker claims; the count says how many claims one task costs.
 *
 * Counted by PostgreSQL, not by pgwork: pg_stat_statements (tests/pg.sh
 * preloads it, track = all) for the pods' database, reset once every pod
 * has settled, so start-up sweeps are not counted. The claim is the
 * statement worker/task.c sends (CLAIM_LIKE); its `rows` say how many of
 * those claims found the task.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define CLAIMS_DB "bench_claims"
#define CLAIMS_TASKS 50
/* worker/task.c's claim_sql_format, as pg_stat_statements keeps it. */
#define CLAIM_LIKE "WITH picked AS (%"

struct claims_result {
    int64_t claims; /* claim statements run */
    int64_t found;  /* tasks they returned */
    char top[512];  /* the window's statements, most called first */
};

/* How many statements of the claims database ran since the reset. */
static void claims_count(PGconn *admin, struct claims_result *out)
{
    PGresult *res =
        PQexec(admin, "SELECT s.calls, s.rows, left(regexp_replace(s.query, '\\s+', ' ', 'g'), 40),"
                      " s.query LIKE '" CLAIM_LIKE "'"
                      " FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
                      " WHERE d.datname = '" CLAIMS_DB "' AND s.toplevel ORDER BY s.calls DESC");
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        die("pg_stat_statements: %s", PQerrorMessage(admin));
    out->claims = out->found = 0;
    out->top[0] = '\0';
    for (int i = 0; i < PQntuples(res); i++) {
        int64_t calls = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        if (strcmp(PQgetvalue(res, i, 3), "t") == 0) {
            out->claims += calls;
            out->found += strtoll(PQgetvalue(res, i, 1), NULL, 10);
        }
        size_t len = strlen(out->top);
        if (i < 6)
            snprintf(out->top + len, sizeof(out->top) - len, "%s%" PRId64 "x %s", i ? "; " : "",
                     calls, PQgetvalue(res, i, 2));
    }
    PQclear(res);
}

static void claims_run(int pods, struct claims_result *out)
{
    say("claims per task: %d isolated single tasks, %d pod%s of 4 workers", CLAIMS_TASKS, pods,
        pods == 1 ? "" : "s");
    PGconn *conn = db_connect(CLAIMS_DB);
    PGconn *admin = db_connect("postgres"); /* its statements are not the claims database's */
    db_exec(admin, "SET client_min_messages = warning"); /* no "already exists" */
    db_exec(admin, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    db_exec(conn, "TRUNCATE pgwork.tasks");
    struct sup sups[3] = {{0}};
    for (int p = 0; p < pods; p++) {
        char name[32];
        snprintf(name, sizeof(name), "claims-%dpods-%d", pods, p);
        /* Default settings but the HTTP port (no clash) and the queue. */
        sup_start(&sups[p], CLAIMS_DB, name,
                  "http { listen = \"\" }\n"
                  "queue \"iso\" { handler = \"sql\" statement = \"SELECT $2::bigint\" }\n");
    }
    sup_wait_workers(&sups[0], conn, 4 * pods);
    sleep_ms(1000); /* the start-up sweeps have returned */
    db_exec(admin, "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE "
                   "datname = '" CLAIMS_DB "'), 0)");

    for (int i = 0; i < CLAIMS_TASKS; i++) {
        db_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('iso')");
        int64_t deadline = mono_ms() + 10000;
        while (db_int(conn, "SELECT count(*) FROM pgwork.tasks"
                            " WHERE state IN ('pending', 'running')") > 0) {
            if (mono_ms() > deadline)
                die("claims: a task not done within 10 s (see %s)", sups[0].log_path);
            sleep_ms(2);
        }
        /* The other woken workers' claims (they found nothing) return
         * within a few ms of the winner's; then every worker is idle. */
        sleep_ms(50);
        sup_wait_workers(&sups[0], conn, 4 * pods);
    }
    sleep_ms(200);
    claims_count(admin, out);
    for (int p = 0; p < pods; p++)
        sup_stop(&sups[p]);
    PQfinish(admin);
    PQfinish(conn);
    if (out->found != CLAIMS_TASKS)
        die("claims: the claims returned %" PRId64 " tasks, not %d", out->found, CLAIMS_TASKS);
    say("claims per task, %d pod(s): %" PRId64 " claims for %d tasks", pods, out->claims,
        CLAIMS_TASKS);
}

void measure_claims(void)
{
    db_create(CLAIMS_DB);
    struct claims_result one, three;
    claims_run(1, &one);
    claims_run(3, &three);
    result_detail("claims_statements_1_pod", "%s", one.top);
    result_detail("claims_statements_3_pods", "%s", three.top);

    result_section(SECTION_CLAIMS);
    for (int k = 0; k < 2; k++) {
        const struct claims_result *c = k == 0 ? &one : &three;
        double per = (double)c->claims / CLAIMS_TASKS;
        struct row row = {.value = per};
        snprintf(row.figure, sizeof(row.figure), "claims per task, %d pod%s of 4 workers, defaults",
                 k == 0 ? 1 : 3, k == 0 ? "" : "s");
        snprintf(row.unit, sizeof(row.unit), "claims");
        if (k == 0) {
            row.limit = 1;
            snprintf(row.limit_name, sizeof(row.limit_name), "one claim per task");
        } else {
            row.limit = 1.2;
            snprintf(row.limit_name, sizeof(row.limit_name), "goal");
            snprintf(row.goal, sizeof(row.goal), "<= 1.2 with 3 pods");
            row.verdict = per <= 1.2 ? GOAL_MET : GOAL_MISSED;
        }
        row.ratio = per / row.limit;
        snprintf(row.note, sizeof(row.note),
                 "%d single tasks, each inserted when the last was done and every worker idle "
                 "again; claim statements (%" PRId64 ") counted by pg_stat_statements for the "
                 "pods' database",
                 CLAIMS_TASKS, c->claims);
        result_add(&row);
    }
}
