/*
 * defaults.c — what a new user gets (issue 12 items 2 and 5):
 *
 *  - throughput of the sql no-op handler with default settings (no
 *    `batch` set), 4 workers, BENCH_TASKS tasks by one INSERT, beside
 *  - the one-statement ceiling: pgbench, 4 clients, synchronous_commit off
 *    (as pgwork's workers), each transaction one statement that claims and
 *    completes n tasks — `UPDATE ... WHERE id IN (SELECT ... FOR UPDATE
 *    SKIP LOCKED LIMIT n)` — at n = 10 and n = 100, on the same tasks in
 *    the same database (planner statistics pinned alike); and beside the
 *    peer at its batched best (peer.c);
 *  - the exec makespan: 80 tasks of 100 ms each (/bin/sleep 0.1) on 8
 *    workers, defaults otherwise, against the ideal 80 x 0.1 s / 8 = 1.0 s:
 *    a batch that hoards slow tasks while other workers idle shows here.
 *
 * Windows: the tasks' own timestamps, first started_at to last
 * finished_at, for pgwork and the ceiling alike (both now() of their
 * transactions); the makespan from the INSERT's commit to the last
 * finished_at. Runs interleaved, BENCH_REPEAT of each; medians.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define DEFAULTS_DB "bench_defaults"
#define MAKESPAN_DB "bench_makespan"
#define CEILING_CLIENTS 4
#define MAKESPAN_TASKS 80
#define MAKESPAN_WORKERS 8
#define MAKESPAN_IDEAL_S (MAKESPAN_TASKS * 0.1 / MAKESPAN_WORKERS)

/* One pgbench run of the one-statement ceiling at n tasks per statement;
 * tasks/s over the tasks' window. */
static double one_statement_run(int n)
{
    PGconn *conn = db_connect(DEFAULTS_DB);
    db_exec(conn, "TRUNCATE pgwork.tasks");
    char sql[512];
    snprintf(sql, sizeof(sql),
             "INSERT INTO pgwork.tasks (queue) SELECT 'tp' FROM generate_series(1, %d)",
             bench.tasks);
    db_exec(conn, sql);
    db_exec(conn, "CHECKPOINT");
    /* clang-format off */
    snprintf(sql, sizeof(sql),
             "UPDATE pgwork.tasks\n"
             "SET state = 'done', attempts = attempts + 1, started_at = now(), finished_at = now()\n"
             "WHERE id IN (SELECT id FROM pgwork.tasks\n"
             "             WHERE queue = 'tp' AND state = 'pending' AND run_at <= now()\n"
             "             ORDER BY priority, run_at, id\n"
             "             FOR UPDATE SKIP LOCKED LIMIT %d);\n",
             n);
    /* clang-format on */
    char file[64], name[64];
    snprintf(file, sizeof(file), "one-statement-%d.sql", n);
    snprintf(name, sizeof(name), "one-statement-%d", n);
    const char *script = write_file(file, sql);
    /* Every transaction takes n tasks while there are n left: exactly
     * enough transactions (rounded up) for the tasks. */
    int per_client = (bench.tasks + n * CEILING_CLIENTS - 1) / (n * CEILING_CLIENTS);
    pgbench_tps(DEFAULTS_DB, script, CEILING_CLIENTS, "-t", per_client, "-c synchronous_commit=off",
                name);
    PGresult *res =
        PQexec(conn, "SELECT count(*) FILTER (WHERE state = 'done'),"
                     " extract(epoch FROM max(finished_at) - min(started_at)) FROM pgwork.tasks");
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        die("one-statement ceiling: %s", PQerrorMessage(conn));
    int64_t done = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    double window = strtod(PQgetvalue(res, 0, 1), NULL);
    PQclear(res);
    PQfinish(conn);
    if (done != bench.tasks)
        die("one-statement ceiling, n = %d: %" PRId64 " of %d tasks done", n, done, bench.tasks);
    say("one-statement ceiling, n = %d, %d clients: %.0f tasks/s", n, CEILING_CLIENTS,
        done / window);
    return (double)done / window;
}

/* One makespan run on a running pod: seconds from the INSERT's commit to
 * the last task's finish. */
static double makespan_run(PGconn *conn, struct sup *sup)
{
    db_exec(conn, "TRUNCATE pgwork.tasks");
    sup_wait_workers(sup, conn, MAKESPAN_WORKERS);
    char sql[160];
    snprintf(sql, sizeof(sql),
             "INSERT INTO pgwork.tasks (queue) SELECT 'sleep' FROM generate_series(1, %d)",
             MAKESPAN_TASKS);
    struct burst burst;
    burst_run(conn, sql, sup, &burst);
    if (db_int(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = 'done'") != MAKESPAN_TASKS)
        die("makespan: not every task done (see %s)", sup->log_path);
    say("exec makespan, %d x 100 ms on %d workers: %.3f s", MAKESPAN_TASKS, MAKESPAN_WORKERS,
        burst.from_commit_s);
    return burst.from_commit_s;
}

static void runs_list(const double *v, int n, const char *format, char *out, size_t len)
{
    size_t o = 0;
    out[0] = '\0';
    for (int r = 0; r < n && o < len; r++) {
        if (r)
            o += (size_t)snprintf(out + o, len - o, "/");
        if (o < len)
            o += (size_t)snprintf(out + o, len - o, format, v[r]);
    }
}

void measure_defaults(double peer_jobs_per_s)
{
    int n = bench.repeat < 16 ? bench.repeat : 16;
    say("defaults: sql no-op, 4 workers, no batch set, beside the one-statement ceiling "
        "(pgbench, n = 10 and 100), %d runs each",
        n);
    throughput_db_prepare(DEFAULTS_DB);
    double pgwork[16], c10[16], c100[16];
    for (int r = 0; r < n; r++) {
        pgwork[r] = throughput_sql_defaults(DEFAULTS_DB, 4, bench.tasks);
        c10[r] = one_statement_run(10);
        c100[r] = one_statement_run(100);
    }
    char runs[64], runs10[64], runs100[64];
    runs_list(pgwork, n, "%.0f", runs, sizeof(runs));
    runs_list(c10, n, "%.0f", runs10, sizeof(runs10));
    runs_list(c100, n, "%.0f", runs100, sizeof(runs100));
    result_detail("defaults_runs_pgwork_ceiling10_ceiling100", "%s; %s; %s tasks/s", runs, runs10,
                  runs100);
    double value = stat_median(pgwork, n), ceil10 = stat_median(c10, n),
           ceil100 = stat_median(c100, n);

    result_section(SECTION_DEFAULTS);
    struct row a = {.value = value, .limit = ceil100, .ratio = value / ceil100};
    snprintf(a.figure, sizeof(a.figure), "throughput sql no-op, defaults, 4 workers");
    snprintf(a.unit, sizeof(a.unit), "tasks/s");
    snprintf(a.limit_name, sizeof(a.limit_name), "one-statement ceiling, n = 100");
    snprintf(a.goal, sizeof(a.goal), ">= 0.8 x ceiling (n = 100)");
    a.verdict = a.ratio >= 0.8 ? GOAL_MET : GOAL_MISSED;
    snprintf(a.note, sizeof(a.note),
             "%d tasks by one INSERT, no batch set; first started_at to last finished_at; "
             "median of %s. Ceiling: pgbench -c %d, one UPDATE ... IN (SELECT ... FOR UPDATE "
             "SKIP LOCKED LIMIT n) per transaction claims and completes n tasks, "
             "synchronous_commit off, same tasks and table; median of %s",
             bench.tasks, runs, CEILING_CLIENTS, runs100);
    result_add(&a);
    struct row b = {.value = value, .limit = ceil10, .ratio = value / ceil10};
    snprintf(b.figure, sizeof(b.figure), "the same, beside the ceiling at n = 10");
    snprintf(b.unit, sizeof(b.unit), "tasks/s");
    snprintf(b.limit_name, sizeof(b.limit_name), "one-statement ceiling, n = 10");
    snprintf(b.note, sizeof(b.note), "as above, n = 10; median of %s", runs10);
    result_add(&b);
    struct row c = {.value = value, .limit = peer_jobs_per_s, .ratio = value / peer_jobs_per_s};
    snprintf(c.figure, sizeof(c.figure), "the same, beside the peer's batched best");
    snprintf(c.unit, sizeof(c.unit), "tasks/s");
    snprintf(c.limit_name, sizeof(c.limit_name), "graphile-worker 0.17, batched");
    snprintf(c.goal, sizeof(c.goal), ">= 2 x peer");
    c.verdict = isnan(peer_jobs_per_s) ? GOAL_NONE : c.ratio >= 2 ? GOAL_MET : GOAL_MISSED;
    snprintf(c.note, sizeof(c.note),
             "the peer's %d jobs, same durability (synchronous_commit off), same window (first "
             "job started to jobs table empty)%s",
             bench.peer_jobs, isnan(peer_jobs_per_s) ? "; peer not run" : "");
    result_add(&c);
    peer_throughput_row(peer_jobs_per_s);

    say("exec makespan: %d tasks of 100 ms on %d workers, defaults, %d runs", MAKESPAN_TASKS,
        MAKESPAN_WORKERS, n);
    db_create(MAKESPAN_DB);
    PGconn *conn = db_connect(MAKESPAN_DB);
    struct sup sup = {0};
    char config[256];
    snprintf(config, sizeof(config),
             "workers { count = %d }\nhttp { listen = \"\" }\n"
             "queue \"sleep\" { handler = \"exec\" command = {\"/bin/sleep\", \"0.1\"} }\n",
             MAKESPAN_WORKERS);
    sup_start(&sup, MAKESPAN_DB, "makespan", config);
    sup_wait_workers(&sup, conn, MAKESPAN_WORKERS);
    /* Warm-up: one task per worker (the first exec of each). */
    char warm[160];
    snprintf(warm, sizeof(warm),
             "INSERT INTO pgwork.tasks (queue) SELECT 'sleep' FROM generate_series(1, %d)",
             MAKESPAN_WORKERS);
    struct burst burst;
    burst_run(conn, warm, &sup, &burst);
    double spans[16];
    for (int r = 0; r < n; r++)
        spans[r] = makespan_run(conn, &sup);
    sup_stop(&sup);
    PQfinish(conn);
    char list[128];
    runs_list(spans, n, "%.3f", list, sizeof(list));
    double span = stat_median(spans, n);
    struct row m = {.value = span, .limit = MAKESPAN_IDEAL_S, .ratio = span / MAKESPAN_IDEAL_S};
    snprintf(m.figure, sizeof(m.figure), "exec makespan, 80 x 100 ms tasks, 8 workers, defaults");
    snprintf(m.unit, sizeof(m.unit), "s");
    snprintf(m.limit_name, sizeof(m.limit_name), "ideal: 80 x 0.1 s / 8 workers");
    snprintf(m.goal, sizeof(m.goal), "<= 1.2 x ideal");
    m.verdict = m.ratio <= 1.2 ? GOAL_MET : GOAL_MISSED;
    snprintf(m.note, sizeof(m.note),
             "/bin/sleep 0.1 per task (fork+exec included), one INSERT of 80; from its commit "
             "to the last finished_at; median of %s s",
             list);
    result_add(&m);
}
