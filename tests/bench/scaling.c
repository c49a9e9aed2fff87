/*
 * scaling.c — issue 6 item 9: does pgwork stay as fast with 64 workers as
 * with 1, and with 200 queues as with 1? The wake-up path is meant to be
 * O(1) per notification (a hash probe for the queue, the idle mask for a
 * worker); these rows show it from outside. And what a pod costs in
 * memory: the supervisor's RSS, each worker's private memory and PSS
 * (/proc/PID/smaps_rollup) — after a throughput run, so every worker has
 * used its buffers.
 *
 * One pod per configuration, the sql handler writing one row per task
 * (the pickup table: its clock_timestamp() is the handler start):
 *  - pickup: BENCH_PICKUP_SAMPLES / 3 single tasks, 20 ms apart (one run:
 *    the point is the trend across rows, not the figure);
 *  - throughput: BENCH_TASKS tasks by one INSERT, spread over the queues;
 *    BENCH_REPEAT bursts on the same pod, the median.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define SCALING_DB "bench_scaling"
#define MAX_WORKERS 64

struct memory {
    double supervisor_rss_kb;
    double worker_private_kb[MAX_WORKERS]; /* Private_Clean + Private_Dirty */
    double worker_pss_kb[MAX_WORKERS];
    int workers;
};

/* Sum of the named fields ("Pss:", ...) of a /proc file, in kB; -1 if
 * unreadable. */
static double proc_kb(pid_t pid, const char *file, const char *const *fields)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    double total = 0;
    char line[256];
    while (fgets(line, sizeof(line), f) != NULL)
        for (int i = 0; fields[i] != NULL; i++)
            if (strncmp(line, fields[i], strlen(fields[i])) == 0)
                total += strtod(line + strlen(fields[i]), NULL);
    fclose(f);
    return total;
}

/* The pod's memory: the supervisor and its direct children (the workers). */
static void memory_of(pid_t supervisor, struct memory *m)
{
    static const char *const rss[] = {"VmRSS:", NULL};
    static const char *const private[] = {"Private_Clean:", "Private_Dirty:", NULL};
    static const char *const pss[] = {"Pss:", NULL};
    memset(m, 0, sizeof(*m));
    m->supervisor_rss_kb = proc_kb(supervisor, "status", rss);
    pid_t workers[MAX_WORKERS];
    m->workers = children_of(supervisor, workers, MAX_WORKERS);
    for (int i = 0; i < m->workers; i++) {
        m->worker_private_kb[i] = proc_kb(workers[i], "smaps_rollup", private);
        m->worker_pss_kb[i] = proc_kb(workers[i], "smaps_rollup", pss);
    }
}

struct scaling_result {
    double pickup_p50, pickup_p99;
    double throughput;
    struct memory memory;
};

static void scaling_run(int workers, int queues, struct scaling_result *out)
{
    PGconn *conn = db_connect(SCALING_DB);
    db_exec(conn, "TRUNCATE pickup, pgwork.tasks");
    size_t len = (size_t)queues * 128 + 256;
    char *config = malloc(len);
    if (config == NULL)
        die("out of memory");
    int n = snprintf(config, len, "workers { count = %d max = %d }\nhttp { listen = \"\" }\n",
                     workers, MAX_WORKERS);
    for (int q = 0; q < queues; q++)
        n += snprintf(config + n, len - (size_t)n,
                      "queue \"s%d\" { handler = \"sql\" statement = \"INSERT INTO pickup VALUES "
                      "($2, clock_timestamp())\" }\n",
                      q);
    char name[64];
    snprintf(name, sizeof(name), "scaling-%dw-%dq", workers, queues);
    struct sup sup = {0};
    sup_start(&sup, SCALING_DB, name, config);
    free(config);
    sup_wait_workers(&sup, conn, workers);

    /* Warm-up: a worker prepares a queue's claim statements on its first
     * task there (~0.3 ms, once); one task per queue, so the pickup rows
     * show the steady state. */
    char warm[256];
    snprintf(warm, sizeof(warm),
             "INSERT INTO pgwork.tasks (queue) SELECT 's' || i FROM generate_series(0, %d) i",
             queues - 1);
    db_exec(conn, warm);
    int64_t warm_deadline = mono_ms() + 60000;
    while (db_int(conn, "SELECT count(*) FROM pgwork.tasks WHERE state <> 'done'") > 0) {
        if (mono_ms() > warm_deadline)
            die("scaling: warm-up not done within 60 s (see %s)", sup.log_path);
        sleep_ms(20);
    }
    db_exec(conn, "TRUNCATE pickup, pgwork.tasks");
    sup_wait_workers(&sup, conn, workers);

    double max;
    int samples = bench.pickup_samples / 3 > 20 ? bench.pickup_samples / 3 : 20;
    pickup_run(conn, samples, queues, &out->pickup_p50, &out->pickup_p99, &max);

    /* The burst BENCH_REPEAT times on the same pod; the median. */
    int runs = bench.repeat < 16 ? bench.repeat : 16;
    double rates[16];
    for (int r = 0; r < runs; r++) {
        db_exec(conn, "TRUNCATE pickup, pgwork.tasks");
        sup_wait_workers(&sup, conn, workers);
        char sql[256];
        snprintf(sql, sizeof(sql),
                 "INSERT INTO pgwork.tasks (queue) SELECT 's' || (i %% %d) FROM "
                 "generate_series(1, %d) i",
                 queues, bench.tasks);
        struct burst burst;
        burst_run(conn, sql, &sup, &burst);
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM pickup WHERE task > %" PRId64,
                 burst.before_id);
        if (db_int(conn, sql) != bench.tasks)
            die("scaling: not every task ran once (see %s)", sup.log_path);
        rates[r] = burst_rate(bench.tasks, &burst);
    }
    out->throughput = stat_median(rates, runs);
    memory_of(sup.pid, &out->memory);
    sup_stop(&sup);
    PQfinish(conn);
    say("scaling %d workers, %d queues: pickup p50 %.2f ms, %.0f tasks/s, worker private %.0f kB",
        workers, queues, out->pickup_p50, out->throughput,
        stat_median(out->memory.worker_private_kb, out->memory.workers));
}

static void scaling_row(const char *figure, const char *unit, double value, const char *limit_name,
                        double limit, const char *note)
{
    struct row row = {.value = value, .limit = limit, .ratio = value / limit};
    snprintf(row.figure, sizeof(row.figure), "%s", figure);
    snprintf(row.unit, sizeof(row.unit), "%s", unit);
    snprintf(row.limit_name, sizeof(row.limit_name), "%s", limit_name);
    snprintf(row.note, sizeof(row.note), "%s", note);
    result_add(&row);
}

void measure_scaling(double floor_p50_ms)
{
    static const int worker_counts[] = {1, 4, 16, 64};
    say("scaling: 1/4/16/64 workers (1 queue), 1/200 queues (4 workers)");
    db_create(SCALING_DB);
    PGconn *conn = db_connect(SCALING_DB);
    db_exec(conn, "CREATE TABLE pickup (task bigint PRIMARY KEY, started timestamptz)");
    PQfinish(conn);

    struct scaling_result by_workers[4], many_queues;
    for (int i = 0; i < 4; i++)
        scaling_run(worker_counts[i], 1, &by_workers[i]);
    scaling_run(4, 200, &many_queues);

    char figure[96], note[256];
    result_section(SECTION_SCALING);
    for (int i = 0; i < 4; i++) {
        snprintf(figure, sizeof(figure), "scaling: pickup p50, %d worker%s", worker_counts[i],
                 worker_counts[i] == 1 ? "" : "s");
        snprintf(note, sizeof(note),
                 "one pod, 1 queue, sql handler (one INSERT per task); %d samples; p99 %.2f "
                 "ms; ratio to the 1-worker pod's p50",
                 bench.pickup_samples / 3 > 20 ? bench.pickup_samples / 3 : 20,
                 by_workers[i].pickup_p99);
        scaling_row(figure, "ms", by_workers[i].pickup_p50, "1 worker, same run",
                    by_workers[0].pickup_p50, note);
    }
    for (int i = 0; i < 4; i++) {
        snprintf(figure, sizeof(figure), "scaling: throughput, %d worker%s", worker_counts[i],
                 worker_counts[i] == 1 ? "" : "s");
        scaling_row(figure, "tasks/s", by_workers[i].throughput, "4 workers, same run",
                    by_workers[1].throughput,
                    i == 0 ? "same pods: one INSERT of BENCH_TASKS tasks, sql handler inserting a "
                             "row per task, median of BENCH_REPEAT bursts; 2 cores: beyond 2-4 "
                             "workers they share the CPU with PostgreSQL"
                           : "");
    }
    snprintf(note, sizeof(note),
             "4 workers, 200 queues configured, pickup tasks round-robin over them; p99 %.2f ms "
             "(1 queue: %.2f); NOTIFY floor p50 %.2f ms",
             many_queues.pickup_p99, by_workers[1].pickup_p99, floor_p50_ms);
    scaling_row("scaling: pickup p50, 200 queues", "ms", many_queues.pickup_p50,
                "1 queue, 4 workers", by_workers[1].pickup_p50, note);
    scaling_row("scaling: throughput, 200 queues", "tasks/s", many_queues.throughput,
                "1 queue, 4 workers", by_workers[1].throughput,
                "4 workers; the tasks spread round-robin over the 200 queues");

    const struct memory *m = &by_workers[3].memory;
    double worker_private[MAX_WORKERS], worker_pss[MAX_WORKERS];
    memcpy(worker_private, m->worker_private_kb, sizeof(worker_private));
    memcpy(worker_pss, m->worker_pss_kb, sizeof(worker_pss));
    double private_median = stat_median(worker_private, m->workers);
    double private_max = stat_percentile(worker_private, m->workers, 100);
    double pss_median = stat_median(worker_pss, m->workers);
    struct row row = {.value = private_median / 1024.0, .limit = 2.0};
    row.ratio = row.value / row.limit;
    snprintf(row.figure, sizeof(row.figure), "memory: private per worker (64 workers)");
    snprintf(row.unit, sizeof(row.unit), "MB");
    snprintf(row.limit_name, sizeof(row.limit_name), "goal");
    snprintf(row.goal, sizeof(row.goal), "<= 2 MB private per worker");
    row.verdict = private_max / 1024.0 <= 2.0 ? GOAL_MET : GOAL_MISSED;
    snprintf(row.note, sizeof(row.note),
             "Private_Clean + Private_Dirty from /proc/PID/smaps_rollup after the throughput "
             "run: median of %d workers, max %.2f MB; PSS median %.2f MB",
             m->workers, private_max / 1024.0, pss_median / 1024.0);
    result_add(&row);
    struct row sup_row = {.value = m->supervisor_rss_kb / 1024.0, .limit = NAN, .ratio = NAN};
    snprintf(sup_row.figure, sizeof(sup_row.figure), "memory: supervisor RSS (64 workers)");
    snprintf(sup_row.unit, sizeof(sup_row.unit), "MB");
    snprintf(sup_row.note, sizeof(sup_row.note),
             "VmRSS, shared libraries and the shared-memory segment included");
    result_add(&sup_row);
}
