/*
 * soak.c — retention under a steady load (issue 12 item 3; `make soak`,
 * and a part of `make bench`): a served queue gets SOAK_RATE tasks/s for
 * BENCH_SOAK_SECONDS (240) with `retention = 20s` and every other setting,
 * autovacuum's included, at its default. The table must stay bounded:
 * pgwork.tasks with its indexes at the end at most 1.5x its size at one
 * minute, and no done task older than retention + SOAK_SLACK_S once the
 * first minute is over.
 *
 * One connection inserts a statement of SOAK_ROWS rows every SOAK_TICK_MS
 * on an absolute schedule (a late tick is caught up, so the rate holds);
 * every SOAK_SAMPLE_MS another reads the sizes (pg_total_relation_size,
 * the heap and each index), the oldest done task's age, the backlog and
 * autovacuum's visits. The pod's own figures: what it deleted
 * (pg_stat_user_tables.n_tup_del — only retention deletes here).
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define SOAK_DB "bench_soak"
#define SOAK_RATE 2000  /* tasks per second */
#define SOAK_TICK_MS 50 /* one INSERT this often */
#define SOAK_ROWS (SOAK_RATE * SOAK_TICK_MS / 1000)
#define SOAK_RETENTION_S 20
#define SOAK_SLACK_S 5 /* "a few seconds" past retention */
#define SOAK_SAMPLE_MS 5000
#define SOAK_FIRST_MINUTE_MS 60000

struct soak_sample {
    int64_t at_ms;        /* since the first insert */
    int64_t total;        /* pg_total_relation_size: heap, toast, indexes */
    int64_t heap;         /* pg_relation_size */
    double oldest_done_s; /* age of the oldest done task, 0 = none */
    int64_t done;         /* done tasks in the table */
    int64_t backlog;      /* pending or running */
    int64_t autovacuums;  /* autovacuum_count so far */
};

static void soak_read(PGconn *conn, int64_t at_ms, struct soak_sample *s)
{
    PGresult *res = PQexec(
        conn, "SELECT pg_total_relation_size('pgwork.tasks'), pg_relation_size('pgwork.tasks'),"
              " coalesce(extract(epoch FROM now() - (SELECT min(finished_at) FROM pgwork.tasks"
              "          WHERE queue = 'soak' AND state = 'done')), 0),"
              " (SELECT count(*) FROM pgwork.tasks WHERE state = 'done'),"
              " (SELECT count(*) FROM pgwork.tasks WHERE state IN ('pending', 'running')),"
              " (SELECT autovacuum_count FROM pg_stat_user_tables"
              "  WHERE relid = 'pgwork.tasks'::regclass)");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        die("soak sample: %s", PQerrorMessage(conn));
    *s = (struct soak_sample){
        .at_ms = at_ms,
        .total = strtoll(PQgetvalue(res, 0, 0), NULL, 10),
        .heap = strtoll(PQgetvalue(res, 0, 1), NULL, 10),
        .oldest_done_s = atof(PQgetvalue(res, 0, 2)),
        .done = strtoll(PQgetvalue(res, 0, 3), NULL, 10),
        .backlog = strtoll(PQgetvalue(res, 0, 4), NULL, 10),
        .autovacuums = strtoll(PQgetvalue(res, 0, 5), NULL, 10),
    };
    PQclear(res);
}

/* "tasks_pkey 1.2 MB, ..." for every index of the table. */
static void soak_index_sizes(PGconn *conn, char *out, size_t len)
{
    PGresult *res = PQexec(conn, "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid)"
                                 " FROM pg_index WHERE indrelid = 'pgwork.tasks'::regclass"
                                 " ORDER BY 1");
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        die("soak index sizes: %s", PQerrorMessage(conn));
    out[0] = '\0';
    for (int i = 0; i < PQntuples(res); i++) {
        size_t used = strlen(out);
        snprintf(out + used, len - used, "%s%s %.2f MB", i ? ", " : "", PQgetvalue(res, i, 0),
                 (double)strtoll(PQgetvalue(res, i, 1), NULL, 10) / 1048576.0);
    }
    PQclear(res);
}

static double mb(int64_t bytes)
{
    return (double)bytes / 1048576.0;
}

void measure_soak(void)
{
    int seconds = bench.soak_seconds;
    say("soak: %d tasks/s for %d s into a served queue, retention = %d s, default autovacuum",
        SOAK_RATE, seconds, SOAK_RETENTION_S);
    db_create(SOAK_DB);
    struct sup sup;
    char config[512];
    snprintf(config, sizeof(config),
             "http { listen = \"\" }\n"
             "queue \"soak\" { handler = \"sql\" statement = \"SELECT $2::bigint\" "
             "retention = %ds }\n",
             SOAK_RETENTION_S);
    sup_start(&sup, SOAK_DB, "soak", config);
    PGconn *ins = db_connect(SOAK_DB);
    PGconn *obs = db_connect(SOAK_DB);
    char insert[160];
    snprintf(insert, sizeof(insert),
             "INSERT INTO pgwork.tasks (queue) SELECT 'soak' FROM generate_series(1, %d)",
             SOAK_ROWS);

    int max_samples = seconds * 1000 / SOAK_SAMPLE_MS + 2;
    struct soak_sample *samples = calloc((size_t)max_samples, sizeof(*samples));
    if (samples == NULL)
        die("out of memory");
    int n = 0;
    char indexes_1min[512] = "", indexes_end[512] = "";
    int64_t start = mono_ms(), ticks = 0, next_sample = SOAK_SAMPLE_MS;
    double worst_age = 0;
    int64_t max_backlog = 0;
    for (;;) {
        int64_t now = mono_ms() - start;
        if (now >= (int64_t)seconds * 1000)
            break;
        while (ticks * SOAK_TICK_MS <= now) {
            db_exec(ins, insert);
            ticks++;
        }
        if (now >= next_sample && n < max_samples) {
            soak_read(obs, now, &samples[n]);
            if (now >= SOAK_FIRST_MINUTE_MS && samples[n].oldest_done_s > worst_age)
                worst_age = samples[n].oldest_done_s;
            if (samples[n].backlog > max_backlog)
                max_backlog = samples[n].backlog;
            if (next_sample == SOAK_FIRST_MINUTE_MS)
                soak_index_sizes(obs, indexes_1min, sizeof(indexes_1min));
            n++;
            next_sample += SOAK_SAMPLE_MS;
        }
        int64_t wait = ticks * SOAK_TICK_MS - (mono_ms() - start);
        if (wait > 0)
            sleep_ms(wait);
    }
    struct soak_sample end;
    soak_read(obs, mono_ms() - start, &end);
    if (end.oldest_done_s > worst_age)
        worst_age = end.oldest_done_s;
    soak_index_sizes(obs, indexes_end, sizeof(indexes_end));
    int64_t deleted = db_int(obs, "SELECT n_tup_del FROM pg_stat_user_tables"
                                  " WHERE relid = 'pgwork.tasks'::regclass");
    sup_stop(&sup);
    PQfinish(ins);
    PQfinish(obs);

    /* The sample at one minute (the first at or after it). */
    const struct soak_sample *minute = NULL;
    for (int i = 0; i < n && minute == NULL; i++)
        if (samples[i].at_ms >= SOAK_FIRST_MINUTE_MS)
            minute = &samples[i];
    if (minute == NULL)
        die("soak: shorter than a minute (BENCH_SOAK_SECONDS >= 70)");
    double inserted = (double)ticks * SOAK_ROWS;
    double ratio = (double)end.total / (double)minute->total;

    result_section(SECTION_RETENTION);
    struct row size = {.value = mb(end.total), .limit = mb(minute->total), .ratio = ratio};
    snprintf(size.figure, sizeof(size.figure), "soak: tasks table + indexes at %d s", seconds);
    snprintf(size.unit, sizeof(size.unit), "MB");
    snprintf(size.limit_name, sizeof(size.limit_name), "the same at 60 s");
    snprintf(size.goal, sizeof(size.goal), "<= 1.5x the size at 1 min");
    size.verdict = ratio <= 1.5 ? GOAL_MET : GOAL_MISSED;
    snprintf(size.note, sizeof(size.note),
             "%.0f tasks inserted (%d/s, %d-row INSERTs every %d ms), retention = %ds, defaults "
             "otherwise (autovacuum ran %" PRId64 " times); heap %.1f MB at 60 s, %.1f MB at the "
             "end; %" PRId64 " rows deleted; backlog at most %" PRId64,
             inserted, SOAK_RATE, SOAK_ROWS, SOAK_TICK_MS, SOAK_RETENTION_S, end.autovacuums,
             mb(minute->heap), mb(end.heap), deleted, max_backlog);
    result_add(&size);

    struct row age = {.value = worst_age,
                      .limit = SOAK_RETENTION_S + SOAK_SLACK_S,
                      .ratio = worst_age / (SOAK_RETENTION_S + SOAK_SLACK_S)};
    snprintf(age.figure, sizeof(age.figure), "soak: oldest done task after the first minute");
    snprintf(age.unit, sizeof(age.unit), "s");
    snprintf(age.limit_name, sizeof(age.limit_name), "retention + %d s", SOAK_SLACK_S);
    snprintf(age.goal, sizeof(age.goal), "<= retention + a few s");
    age.verdict = worst_age <= SOAK_RETENTION_S + SOAK_SLACK_S ? GOAL_MET : GOAL_MISSED;
    snprintf(age.note, sizeof(age.note),
             "now() - min(finished_at) of the done tasks, every %d s from 60 s to the end",
             SOAK_SAMPLE_MS / 1000);
    result_add(&age);

    char series[1024] = "";
    for (int i = 0; i < n; i += 3) {
        size_t used = strlen(series);
        snprintf(series + used, sizeof(series) - used, "%s%" PRId64 "s %.1f MB/%.0fs",
                 i ? ", " : "", samples[i].at_ms / 1000, mb(samples[i].total),
                 samples[i].oldest_done_s);
    }
    result_detail("soak_sizes", "total/oldest done every %d s: %s", 3 * SOAK_SAMPLE_MS / 1000,
                  series);
    result_detail("soak_indexes_60s", "%s", indexes_1min);
    result_detail("soak_indexes_end", "%s", indexes_end);
    say("soak: %.1f MB at 60 s, %.1f MB at %d s (%.2fx); oldest done task %.1f s",
        mb(minute->total), mb(end.total), seconds, ratio, worst_age);
    free(samples);
}
