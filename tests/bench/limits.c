/*
 * limits.c — the limits pgwork is compared with, measured on the same
 * cluster in the same run:
 *
 *  - NOTIFY floor: one row inserted into pgwork.tasks (trigger on, the
 *    inserter's own commit as an application would do it) and the arrival
 *    of its notification at a second connection that LISTENs, timestamped
 *    by a thread blocked in poll() on that connection's socket;
 *  - SQL ceiling: pgwork's own claim and completion code (worker/task.c,
 *    worker/handler_sql.c, linked in: the exact statements and round trips)
 *    driven by N threads with one connection each and nothing in between —
 *    what the workers would reach if running a task cost nothing;
 *  - ceiling variants: the same work with fewer round trips (the
 *    proposals in the report), measured the same way;
 *  - enqueue cost of NOTIFY: pgbench, 8 clients inserting single rows,
 *    with the trigger, without it, and with `pgwork.notify = off`.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "bench.h"
#include "../../worker/handler.h"
#include "../../worker/task.h"

#define FLOOR_DB "bench_floor"
#define CEILING_DB "bench_ceiling"
#define ENQUEUE_DB "bench_enqueue"
#define CEILING_TASKS 20000
#define CEILING_STATEMENT "SELECT $2::bigint"

/* --- NOTIFY floor -------------------------------------------------------- */

struct floor_listener {
    PGconn *conn;
    int event_fd;            /* written once per notification */
    _Atomic int64_t arrival; /* wall_us of the last notification */
    atomic_bool stop;
};

static void *floor_listen(void *arg)
{
    struct floor_listener *l = arg;
    struct pollfd pfd = {.fd = PQsocket(l->conn), .events = POLLIN};
    while (!atomic_load(&l->stop)) {
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        int64_t t = wall_us(); /* before libpq touches it */
        if (!PQconsumeInput(l->conn))
            die("floor listener: %s", PQerrorMessage(l->conn));
        PGnotify *n;
        while ((n = PQnotifies(l->conn)) != NULL) {
            PQfreemem(n);
            atomic_store(&l->arrival, t);
            uint64_t one = 1;
            if (write(l->event_fd, &one, sizeof(one)) < 0)
                die("eventfd: %s", strerror(errno));
        }
    }
    return NULL;
}

static void floor_run(PGconn *inserter, struct floor_listener *l, int samples, double *p50,
                      double *p99)
{
    double *lat = calloc((size_t)samples, sizeof(*lat));
    if (lat == NULL)
        die("out of memory");
    for (int i = -20; i < samples; i++) { /* 20 warm-up rounds */
        PGresult *res = PQexec(inserter, "INSERT INTO pgwork.tasks (queue) VALUES ('floor')");
        int64_t committed = wall_us();
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            die("floor insert: %s", PQerrorMessage(inserter));
        PQclear(res);
        struct pollfd pfd = {.fd = l->event_fd, .events = POLLIN};
        if (poll(&pfd, 1, 5000) != 1)
            die("floor: no notification within 5 s");
        uint64_t count;
        if (read(l->event_fd, &count, sizeof(count)) != sizeof(count))
            die("eventfd read: %s", strerror(errno));
        if (i >= 0)
            lat[i] = (double)(atomic_load(&l->arrival) - committed) / 1000.0;
        sleep_ms(1); /* idle between samples, as in the pickup test */
    }
    *p50 = stat_percentile(lat, samples, 50);
    *p99 = stat_percentile(lat, samples, 99);
    free(lat);
}

void measure_notify_floor(double *p50_ms, double *p99_ms)
{
    say("NOTIFY floor: %d x %d samples", bench.repeat, bench.floor_samples);
    db_create(FLOOR_DB);
    struct floor_listener l = {.conn = db_connect(FLOOR_DB)};
    db_exec(l.conn, "LISTEN pgwork_tasks");
    /* Armed as a pod arms a queue (the doorbell, migration 0008): the
     * trigger rings this connection, and the floor includes its lookup. */
    char arm[320];
    snprintf(arm, sizeof(arm),
             "INSERT INTO pgwork.doorbell (queue, pod, channel, backend_pid, backend_start, armed)"
             " SELECT 'floor', 'bench', 'pgwork_tasks', pid, backend_start, true"
             " FROM pg_stat_activity WHERE pid = %d",
             PQbackendPID(l.conn));
    db_exec(l.conn, arm);
    l.event_fd = eventfd(0, EFD_CLOEXEC);
    PGconn *inserter = db_connect(FLOOR_DB);
    pthread_t thread;
    if (pthread_create(&thread, NULL, floor_listen, &l) != 0)
        die("pthread_create failed");

    double p50[16], p99[16];
    int runs = bench.repeat < 16 ? bench.repeat : 16;
    char detail[512] = "";
    for (int r = 0; r < runs; r++) {
        floor_run(inserter, &l, bench.floor_samples, &p50[r], &p99[r]);
        size_t len = strlen(detail);
        snprintf(detail + len, sizeof(detail) - len, "%s%.3f/%.3f", r ? ", " : "", p50[r], p99[r]);
    }
    atomic_store(&l.stop, true);
    pthread_join(thread, NULL);
    PQfinish(inserter);
    PQfinish(l.conn);
    close(l.event_fd);
    result_detail("notify_floor_runs_p50_p99_ms", "%s", detail);
    *p50_ms = stat_median(p50, runs);
    *p99_ms = stat_median(p99, runs);
}

/* --- SQL ceiling ---------------------------------------------------------- */

enum ceiling_kind {
    CEIL_EXEC_PIPE,     /* the exec/coprocess statements as fast as the database takes them:
                           task_claim, then the batch's completion as one
                           pgwork_done_many UPDATE (what the worker's background
                           completions send when tasks take no time): 2 round trips
                           per batch */
    CEIL_SQL_PIPE,      /* the sql path's statements as fast as the database takes them: the
                           claim (committed at its sync) in one round trip; BEGIN, SET LOCAL
                           statement_timeout, every statement, pgwork_finish_claimed and
                           COMMIT in a second (the worker's two pipelined round trips) */
    CEIL_EXEC_PER_TASK, /* for comparison: task_claim, then a done UPDATE per task, each
                          a round trip (the worker before background completions) */
    CEIL_SQL_PER_TASK,  /* for comparison: the sql handler's own transaction per task (the
                           worker's fallback after a failed batch) */
};

struct ceiling_thread {
    enum ceiling_kind kind;
    int batch;
    int index;
    pthread_barrier_t *barrier;
    PGconn *conn;
    int64_t done;
    int64_t finished_us;
    struct claim_state claim; /* the queue's claim statements and cursor, as a worker's */
};

/* Read the results of `results` pipelined queries and the sync; the rows of
 * query number `keep_index` are handed back in *keep (caller clears). */
static void pipe_expect(PGconn *conn, int results, int keep_index, PGresult **keep)
{
    for (int i = 0; i < results; i++) {
        PGresult *res;
        while ((res = PQgetResult(conn)) != NULL) {
            ExecStatusType st = PQresultStatus(res);
            if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
                die("pipelined statement %d: %s", i, PQresultErrorMessage(res));
            if (keep != NULL && i == keep_index && *keep == NULL)
                *keep = res;
            else
                PQclear(res);
        }
    }
    PGresult *sync = PQgetResult(conn);
    if (PQresultStatus(sync) != PGRES_PIPELINE_SYNC)
        die("pipeline: no sync: %s", PQerrorMessage(conn));
    PQclear(sync);
}

/* A bigint[] literal of the batch's ids. */
static void id_array(const struct task_batch *batch, int64_t *ids, char *out, size_t len)
{
    size_t o = 0;
    out[o++] = '{';
    for (int i = 0; i < batch->count && o < len - 32; i++) {
        ids[i] = batch->tasks[i].id;
        o += (size_t)snprintf(out + o, len - o, "%s%" PRId64, i ? "," : "", ids[i]);
    }
    out[o++] = '}';
    out[o] = '\0';
}

/* One round of the kind; the number of tasks it finished. */
static int ceiling_round(struct ceiling_thread *t, struct queue_config *queue,
                         struct handler_env *env, void *sql_state, const char *locked_by,
                         struct task_batch *batch)
{
    PGconn *conn = t->conn;
    int64_t ids[1024];
    char array[32 * 1024];
    int n;
    switch (t->kind) {
    case CEIL_EXEC_PER_TASK:
        t->claim.cursor_set = false; /* as before the cursor */
        n = task_claim(conn, queue, locked_by, 300000, &t->claim, batch);
        for (int i = 0; i < n; i++)
            if (task_mark_done(conn, batch->tasks[i].id, locked_by, true) != 1)
                die("done failed");
        return n;
    case CEIL_SQL_PER_TASK:
        t->claim.cursor_set = false;
        n = task_claim(conn, queue, locked_by, 300000, &t->claim, batch);
        for (int i = 0; i < n; i++) {
            struct task task = {.id = batch->tasks[i].id,
                                .payload = batch->tasks[i].payload,
                                .attempt = 1,
                                .max_attempts = 25};
            char error[HANDLER_ERROR_MAX];
            if (handler_sql.run(sql_state, env, &task, error, sizeof(error)) != HANDLER_DONE)
                die("sql handler: %s", error);
        }
        return n;
    case CEIL_EXEC_PIPE: {
        n = task_claim(conn, queue, locked_by, 300000, &t->claim, batch);
        if (n <= 0)
            return n;
        id_array(batch, ids, array, sizeof(array));
        const char *params[] = {array, locked_by};
        PGresult *res = PQexecPrepared(conn, "pgwork_done_many", 2, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK || atoi(PQcmdTuples(res)) != n)
            die("batch done: %s", PQerrorMessage(conn));
        PQclear(res);
        return n;
    }
    case CEIL_SQL_PIPE: {
        PQenterPipelineMode(conn);
        task_send_claim(conn, queue, locked_by, 300000, &t->claim);
        PQpipelineSync(conn);
        PGresult *locked = NULL;
        pipe_expect(conn, 1, 0, &locked);
        n = locked != NULL ? task_batch_take(batch, locked, &t->claim) : 0;
        if (n > 0) {
            PQsendQueryParams(conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
            PQsendQueryParams(conn, "SET LOCAL statement_timeout = 60000", 0, NULL, NULL, NULL,
                              NULL, 0);
        }
        size_t o = 0;
        array[o++] = '{';
        for (int i = 0; i < n; i++) {
            const char *params[] = {PQgetvalue(locked, i, 1), PQgetvalue(locked, i, 0)};
            PQsendQueryPrepared(conn, "stmt", 2, params, NULL, NULL, 0);
            o += (size_t)snprintf(array + o, sizeof(array) - o, "%s%s", i ? "," : "",
                                  PQgetvalue(locked, i, 0));
        }
        array[o++] = '}';
        array[o] = '\0';
        char count[16];
        snprintf(count, sizeof(count), "%d", n);
        const char *fparams[] = {array, locked_by, count};
        if (n > 0) {
            PQsendQueryPrepared(conn, "pgwork_finish_claimed", 3, fparams, NULL, NULL, 0);
            PQsendQueryParams(conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0);
            PQpipelineSync(conn);
            pipe_expect(conn, 2 + n + 2, -1, NULL);
        }
        PQexitPipelineMode(conn);
        PQclear(locked);
        return n;
    }
    }
    return -1;
}

static void *ceiling_work(void *arg)
{
    struct ceiling_thread *t = arg;
    PGconn *conn = t->conn;
    struct queue_config queue = {
        .name = "ceil",
        .handler = HANDLER_SQL,
        .statement = CEILING_STATEMENT,
        .batch = t->batch,
        .timeout_ms = 60000,
        .max_attempts = 25,
        .keep_done = true,
    };
    char locked_by[64];
    snprintf(locked_by, sizeof(locked_by), "bench/%d/%d", t->index, (int)getpid());
    struct handler_env env = {.conn = conn,
                              .queue = &queue,
                              .locked_by = locked_by,
                              .keep_done = true,
                              .death_fd = -1,
                              .signal_fd = -1};
    void *sql_state = NULL;
    if (t->kind == CEIL_SQL_PER_TASK && handler_sql.init(&env, &sql_state) != 0)
        die("sql handler init failed");
    if (t->kind == CEIL_SQL_PIPE) {
        static const Oid types[] = {3802, 20}; /* jsonb, bigint: as handler_sql.c */
        PGresult *res = PQprepare(conn, "stmt", CEILING_STATEMENT, 2, types);
        PQclear(res);
    }
    struct task_batch batch = {0};
    pthread_barrier_wait(t->barrier);
    for (;;) {
        int n = ceiling_round(t, &queue, &env, sql_state, locked_by, &batch);
        if (n < 0)
            die("ceiling round failed: %s", PQerrorMessage(conn));
        t->done += n;
        if (n < t->batch)
            break;
    }
    t->finished_us = mono_us();
    task_batch_free(&batch);
    if (sql_state != NULL)
        handler_sql.fini(sql_state);
    return NULL;
}

static double ceiling_run(enum ceiling_kind kind, int connections, int batch)
{
    PGconn *admin = db_connect(CEILING_DB);
    db_exec(admin, "TRUNCATE pgwork.tasks");
    char sql[256];
    snprintf(sql, sizeof(sql),
             "INSERT INTO pgwork.tasks (queue) SELECT 'ceil' FROM generate_series(1, %d)",
             CEILING_TASKS);
    db_exec(admin, sql);
    db_exec(admin, "VACUUM ANALYZE pgwork.tasks");

    struct ceiling_thread t[64];
    pthread_t threads[64];
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)connections + 1);
    for (int i = 0; i < connections; i++) {
        t[i] =
            (struct ceiling_thread){.kind = kind, .batch = batch, .index = i, .barrier = &barrier};
        t[i].conn = db_connect(CEILING_DB);
        /* As the workers do by default (database.synchronous_commit = false). */
        db_exec(t[i].conn, "SET synchronous_commit = off");
        db_exec(t[i].conn, "SET plan_cache_mode = force_custom_plan"); /* as the workers */
        if (task_prepare(t[i].conn) != 0)
            die("task_prepare failed");
        if (pthread_create(&threads[i], NULL, ceiling_work, &t[i]) != 0)
            die("pthread_create failed");
    }
    pthread_barrier_wait(&barrier);
    int64_t start = mono_us();
    int64_t end = start, done = 0;
    for (int i = 0; i < connections; i++) {
        pthread_join(threads[i], NULL);
        if (t[i].finished_us > end)
            end = t[i].finished_us;
        done += t[i].done;
        PQfinish(t[i].conn);
    }
    pthread_barrier_destroy(&barrier);
    if (done != CEILING_TASKS)
        die("ceiling: %" PRId64 " of %d tasks done", done, CEILING_TASKS);
    if (db_int(admin, "SELECT count(*) FROM pgwork.tasks WHERE state <> 'done'") != 0)
        die("ceiling: tasks left undone");
    PQfinish(admin);
    return CEILING_TASKS / ((double)(end - start) / 1e6);
}

static bool ceiling_db_ready;

static void ceiling_db(void)
{
    if (!ceiling_db_ready)
        db_create(CEILING_DB);
    ceiling_db_ready = true;
}

double measure_sql_ceiling(int connections, int batch, bool sql)
{
    ceiling_db();
    double runs[16];
    int n = bench.repeat < 16 ? bench.repeat : 16;
    for (int r = 0; r < n; r++)
        runs[r] = ceiling_run(sql ? CEIL_SQL_PIPE : CEIL_EXEC_PIPE, connections, batch);
    double median = stat_median(runs, n);
    say("SQL ceiling (%s path pipelined, %d connections, batch %d): %.0f tasks/s",
        sql ? "sql" : "exec", connections, batch, median);
    return median;
}

void measure_ceiling_variants(int connections, int batch)
{
    ceiling_db();
    static const struct {
        enum ceiling_kind kind;
        const char *key;
    } variants[] = {
        {CEIL_EXEC_PER_TASK, "ceiling_exec_path_done_update_per_task"},
        {CEIL_SQL_PER_TASK, "ceiling_sql_path_transaction_per_task"},
    };
    for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++) {
        double runs[16];
        int n = bench.repeat < 16 ? bench.repeat : 16;
        for (int r = 0; r < n; r++)
            runs[r] = ceiling_run(variants[v].kind, connections, batch);
        double median = stat_median(runs, n);
        result_detail(variants[v].key, "%.0f tasks/s (%d connections, batch %d, median of %d)",
                      median, connections, batch, n);
        say("ceiling variant %s: %.0f tasks/s", variants[v].key, median);
    }
}

/* --- enqueue cost of NOTIFY --------------------------------------------- */

struct sampler {
    atomic_bool stop;
    int total;
    int lock_waits; /* Lock:object — the notify commit lock */
    int io_waits;   /* IO:* and LWLock:WAL* — the commits' WAL flush */
    int cpu;        /* no wait event: running */
    int other;
};

/* Sample what the pgbench backends wait on, every 10 ms. */
static void *sample_waits(void *arg)
{
    struct sampler *s = arg;
    PGconn *conn = db_connect("postgres");
    while (!atomic_load(&s->stop)) {
        PGresult *res =
            PQexec(conn, "SELECT coalesce(wait_event_type, ''), coalesce(wait_event, '')"
                         " FROM pg_stat_activity WHERE application_name = 'pgbench'"
                         " AND state = 'active'");
        if (PQresultStatus(res) == PGRES_TUPLES_OK) {
            for (int i = 0; i < PQntuples(res); i++) {
                const char *type = PQgetvalue(res, i, 0), *event = PQgetvalue(res, i, 1);
                s->total++;
                if (strcmp(type, "Lock") == 0 && strcmp(event, "object") == 0)
                    s->lock_waits++;
                else if (strcmp(type, "IO") == 0 || strncmp(event, "WAL", 3) == 0)
                    s->io_waits++;
                else if (type[0] == '\0')
                    s->cpu++;
                else
                    s->other++;
            }
        }
        PQclear(res);
        sleep_ms(10);
    }
    PQfinish(conn);
    return NULL;
}

/* One pgbench run: 8 clients, single-row INSERTs; its tps. */
static double pgbench_inserts(const char *pgoptions, struct sampler *sampler)
{
    PGconn *conn = db_connect(ENQUEUE_DB);
    db_exec(conn, "TRUNCATE pgwork.tasks");
    db_exec(conn, "CHECKPOINT");
    PQfinish(conn);
    const char *script =
        write_file("enqueue.sql", "INSERT INTO pgwork.tasks (queue) VALUES ('enqueue');\n");
    pthread_t thread;
    if (sampler != NULL && pthread_create(&thread, NULL, sample_waits, sampler) != 0)
        die("pthread_create failed");
    double tps =
        pgbench_tps(ENQUEUE_DB, script, 8, "-T", bench.enqueue_seconds, pgoptions, "enqueue");
    if (sampler != NULL) {
        atomic_store(&sampler->stop, true);
        pthread_join(thread, NULL);
    }
    return tps;
}

void measure_enqueue(void)
{
    say("enqueue cost of NOTIFY: pgbench -c 8, %d s per run, %d runs per variant",
        bench.enqueue_seconds, bench.repeat);
    db_create(ENQUEUE_DB);
    PGconn *conn = db_connect(ENQUEUE_DB);
    bool has_switch = db_int(conn, "SELECT count(*) FROM pgwork.schema_migrations"
                                   " WHERE name = '0003_notify_switch'") == 1;
    /* A pod LISTENs as in production (its listener drains every
     * notification); it serves another queue, so no task is claimed. */
    struct sup sup = {0};
    sup_start(&sup, ENQUEUE_DB, "enqueue-pod",
              "workers { count = 1 }\nhttp { listen = \"\" }\n"
              "queue \"elsewhere\" { handler = \"exec\" command = {\"/bin/true\"} }\n");

    double with[16], without[16], switched[16];
    int n = bench.repeat < 16 ? bench.repeat : 16;
    struct sampler sampler = {0};
    for (int r = 0; r < n; r++) {
        /* Interleaved, so drift on a shared machine hits every variant. */
        with[r] = pgbench_inserts(NULL, r == 0 ? &sampler : NULL);
        db_exec(conn, "ALTER TABLE pgwork.tasks DISABLE TRIGGER tasks_notify");
        without[r] = pgbench_inserts(NULL, NULL);
        db_exec(conn, "ALTER TABLE pgwork.tasks ENABLE TRIGGER tasks_notify");
        switched[r] = has_switch ? pgbench_inserts("-c pgwork.notify=off", NULL) : NAN;
    }
    sup_stop(&sup);
    PQfinish(conn);

    double w = stat_median(with, n), wo = stat_median(without, n);
    result_section(SECTION_PRODUCERS);
    struct row row = {.value = w, .limit = wo, .ratio = w / wo, .verdict = GOAL_NONE};
    snprintf(row.figure, sizeof(row.figure), "enqueue, trigger on (8 clients, 1-row INSERTs)");
    snprintf(row.unit, sizeof(row.unit), "inserts/s");
    snprintf(row.limit_name, sizeof(row.limit_name), "same without the trigger");
    snprintf(row.goal, sizeof(row.goal), "(the cost being reduced)");
    snprintf(row.note, sizeof(row.note),
             "pgbench -c 8 -j 2 -T %d, median of %d; a pod LISTENs; fsync on; backends sampled "
             "every 10 ms: %.0f%% waiting on the NOTIFY commit lock (Lock:object), %.0f%% on WAL,"
             " %.0f%% running",
             bench.enqueue_seconds, n,
             sampler.total ? 100.0 * sampler.lock_waits / sampler.total : 0.0,
             sampler.total ? 100.0 * sampler.io_waits / sampler.total : 0.0,
             sampler.total ? 100.0 * sampler.cpu / sampler.total : 0.0);
    result_add(&row);
    result_detail("enqueue_wait_samples",
                  "%d samples: Lock:object %d, IO/WAL %d, running %d, other %d", sampler.total,
                  sampler.lock_waits, sampler.io_waits, sampler.cpu, sampler.other);

    if (has_switch) {
        double s = stat_median(switched, n);
        struct row sw = {.value = s, .limit = wo, .ratio = s / wo};
        snprintf(sw.figure, sizeof(sw.figure), "enqueue, SET pgwork.notify = off (bulk producer)");
        snprintf(sw.unit, sizeof(sw.unit), "inserts/s");
        snprintf(sw.limit_name, sizeof(sw.limit_name), "same without the trigger");
        snprintf(sw.goal, sizeof(sw.goal), ">= 0.8 x no trigger");
        sw.verdict = sw.ratio >= 0.8 ? GOAL_MET : GOAL_MISSED;
        snprintf(sw.note, sizeof(sw.note),
                 "migration 0003: the trigger skips pg_notify when the session or transaction "
                 "sets pgwork.notify = off (here via PGOPTIONS); idle pickup unaffected: other "
                 "sessions still notify");
        result_add(&sw);
    }
}
