/*
 * queries.c — the dashboard's SQL (queries.h). Each statement is written
 * out whole, fenced from clang-format; the comment above it says which
 * index it reads.
 */
#include "queries.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../shared/dbconn.h"
#include "../shared/requeue_sql.h"

#define STR_(x) #x
#define STR(x) STR_(x)

/* clang-format off */

/* Queue names: loose index scans (one index probe per queue) over the
 * pending and dead partial indexes, the running tasks (few: one per
 * worker), the names of $1 (the config's queues, paused ones) and the
 * planner's most common values of tasks.queue (queues that only have
 * done tasks). Never a scan of the table. */
static const char names_sql[] =
    "WITH RECURSIVE pending(queue) AS ("
    "  (SELECT queue FROM pgwork.tasks WHERE state = 'pending' ORDER BY queue LIMIT 1)"
    "  UNION ALL"
    "  SELECT (SELECT t.queue FROM pgwork.tasks t"
    "          WHERE t.state = 'pending' AND t.queue > p.queue ORDER BY t.queue LIMIT 1)"
    "  FROM pending p WHERE p.queue IS NOT NULL"
    "), dead(queue) AS ("
    "  (SELECT queue FROM pgwork.tasks WHERE state = 'dead' ORDER BY queue LIMIT 1)"
    "  UNION ALL"
    "  SELECT (SELECT t.queue FROM pgwork.tasks t"
    "          WHERE t.state = 'dead' AND t.queue > d.queue ORDER BY t.queue LIMIT 1)"
    "  FROM dead d WHERE d.queue IS NOT NULL"
    ") "
    "SELECT queue FROM ("
    "  SELECT queue FROM pending"
    "  UNION SELECT queue FROM dead"
    "  UNION SELECT queue FROM pgwork.tasks WHERE state = 'running'"
    "  UNION SELECT unnest($1::text[])"
    "  UNION SELECT unnest(most_common_vals::text::text[]) FROM pg_stats"
    "        WHERE schemaname = 'pgwork' AND tablename = 'tasks' AND attname = 'queue'"
    ") q WHERE queue IS NOT NULL "
    "ORDER BY queue COLLATE \"C\" LIMIT " STR(QUERIES_QUEUES_MAX);

/* Counts per queue, each read from its partial index and stopped at the
 * cap ($2 = cap + 1 rows: "more than the cap"). The pending ones go
 * through tasks_poll_idx (queue, run_at), whose predicate needs
 * priority IS NOT NULL. */
static const char stats_sql[] =
    "SELECT q.queue,"
    " (SELECT count(*) FROM (SELECT 1 FROM pgwork.tasks t WHERE t.queue = q.queue"
    "   AND t.state = 'pending' AND t.priority IS NOT NULL AND t.run_at <= now() LIMIT $2) s),"
    " (SELECT count(*) FROM (SELECT 1 FROM pgwork.tasks t WHERE t.queue = q.queue"
    "   AND t.state = 'pending' AND t.priority IS NOT NULL AND t.run_at > now() LIMIT $2) s),"
    " (SELECT count(*) FROM (SELECT 1 FROM pgwork.tasks t WHERE t.queue = q.queue"
    "   AND t.state = 'running' LIMIT $2) s),"
    " (SELECT count(*) FROM (SELECT 1 FROM pgwork.tasks t WHERE t.queue = q.queue"
    "   AND t.state = 'dead' LIMIT $2) s),"
    " (SELECT extract(epoch FROM now() - min(t.run_at))::float8 FROM pgwork.tasks t"
    "   WHERE t.queue = q.queue AND t.state = 'pending' AND t.priority IS NOT NULL"
    "     AND t.run_at <= now())"
    " FROM unnest($1::text[]) WITH ORDINALITY AS q(queue, n) ORDER BY q.n";

/* The planner's row estimate for one queue and state: planning only. */
static const char estimate_sql[] =
    "EXPLAIN SELECT 1 FROM pgwork.tasks WHERE queue = $1 AND state = $2";
static const char estimate_due_sql[] =
    "EXPLAIN SELECT 1 FROM pgwork.tasks WHERE queue = $1 AND state = 'pending'"
    " AND run_at <= now()";
static const char estimate_scheduled_sql[] =
    "EXPLAIN SELECT 1 FROM pgwork.tasks WHERE queue = $1 AND state = 'pending'"
    " AND run_at > now()";

/* Finished per queue and minute over the last hour, from the pods' rollup
 * (pgwork.throughput, migration 0013): a range scan of its key from an
 * hour ago, 60 rows per queue whatever the tasks table holds (cached,
 * fill_throughput). The first row carries the minute now; queue NULL: no
 * row at all. */
static const char throughput_sql[] =
    "SELECT extract(epoch FROM date_trunc('minute', now()))::bigint, g.queue,"
    "       extract(epoch FROM g.minute)::bigint, g.done, g.failed"
    " FROM (SELECT 1) one LEFT JOIN ("
    "  SELECT t.queue, t.minute, t.done, t.failed FROM pgwork.throughput t"
    "  WHERE t.minute > date_trunc('minute', now()) - interval '60 minutes') g ON true";

static const char paused_sql[] = "SELECT queue FROM pgwork.paused_queues";

#define TASK_COLUMNS                                                                          \
    "id, queue, state, priority, run_at, attempts, unique_key, locked_by,"                    \
    " left(last_error, 300) AS last_error, created_at, finished_at"

/* Pending tasks in the order they run, along tasks_poll_idx (queue,
 * run_at); the cursor is run_at in microseconds since the epoch and the id. */
static const char pending_first_sql[] =
    "SELECT " TASK_COLUMNS ","
    " (extract(epoch FROM run_at) * 1000000)::bigint || '.' || id AS cursor"
    " FROM pgwork.tasks WHERE queue = $1 AND state = 'pending' AND priority IS NOT NULL"
    " ORDER BY run_at, id LIMIT $2";
static const char pending_next_sql[] =
    "SELECT " TASK_COLUMNS ","
    " (extract(epoch FROM run_at) * 1000000)::bigint || '.' || id AS cursor"
    " FROM pgwork.tasks WHERE queue = $1 AND state = 'pending' AND priority IS NOT NULL"
    "   AND (run_at, id) > ('epoch'::timestamptz + $3::bigint * interval '1 microsecond',"
    "                       $4::bigint)"
    " ORDER BY run_at, id LIMIT $2";
/* The other states newest first: the dead and running partial indexes, or
 * (done) the primary key backwards, where done rows are the dense ones. */
static const char others_sql[] =
    "SELECT " TASK_COLUMNS ", id::text AS cursor"
    " FROM pgwork.tasks WHERE queue = $1 AND state = $3 AND id < $4::bigint"
    " ORDER BY id DESC LIMIT $2";
/* A unique key is held by a pending or running task (tasks_unique_key_idx). */
static const char key_sql[] =
    "SELECT " TASK_COLUMNS ", id::text AS cursor"
    " FROM pgwork.tasks WHERE queue = $1 AND unique_key = $2"
    "   AND state IN ('pending', 'running')";

static const char task_sql[] =
    "SELECT id, queue, state, priority, run_at, attempts, max_attempts, unique_key,"
    " locked_by, locked_until, last_error, created_at, started_at, finished_at, payload,"
    " jsonb_pretty(payload) AS payload_pretty"
    " FROM pgwork.tasks WHERE id = $1";

/* The schedules table (migration 0010) beside the config's schedules: one
 * row each, in_config false for a row no schedule of this config names
 * (another deployment's, or one removed), NULL ticks for a schedule that
 * has not ticked yet. */
static const char schedules_sql[] =
    "WITH cfg(name, queue) AS (SELECT * FROM unnest($1::text[], $2::text[]))"
    " SELECT coalesce(s.name, c.name) AS name, coalesce(s.queue, c.queue) AS queue,"
    "        s.spec, s.last_tick, s.next_tick, s.made_by, s.made_at,"
    "        c.name IS NOT NULL AS in_config"
    " FROM pgwork.schedules s FULL JOIN cfg c ON c.name = s.name"
    " ORDER BY coalesce(s.name, c.name) COLLATE \"C\"";

/* Requeue, as `pgwork requeue-dead` does it (shared/requeue_sql.h);
 * returns moved, queues announced, left dead for their key, and task $2's
 * state as the statement found it. */
#define REQUEUE_WEB(selector)                                                                 \
    REQUEUE_WITH(selector) "SELECT " REQUEUE_COUNTS ", (SELECT state FROM pgwork.tasks WHERE id = $2)"

static const char requeue_task_sql[] = REQUEUE_WEB("id = $1::bigint AND $2::bigint IS NOT NULL");
static const char requeue_queue_sql[] = REQUEUE_WEB("queue = $1 AND $2::bigint IS NULL");

static const char cancel_sql[] = "SELECT pgwork.cancel($1::bigint)::text";
static const char pause_sql[] = "SELECT pgwork.pause($1)::text";
static const char resume_sql[] = "SELECT pgwork.resume($1)::text";
/* Run now: one task as the schedule's tick makes it (queue, payload,
 * priority from the config), due now; the tick row is not touched, so the
 * next tick still comes on time. */
static const char run_schedule_sql[] =
    "INSERT INTO pgwork.tasks (queue, payload, priority) VALUES ($1, $2::jsonb, $3::int)"
    " RETURNING id";

/* clang-format on */

static PGresult *run(PGconn *conn, const char *sql, int n, const char *const *params,
                     ExecStatusType want, char *err, size_t errlen)
{
    PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != want) {
        dbconn_primary_line(res, conn, err, errlen);
        PQclear(res);
        return NULL;
    }
    return res;
}

/* The planner's estimate from an EXPLAIN's first line ("... rows=N ..."). */
static long long estimate(PGconn *conn, const char *sql, int n, const char *const *params)
{
    char err[256];
    PGresult *res = run(conn, sql, n, params, PGRES_TUPLES_OK, err, sizeof err);
    long long rows = 0;
    if (res != NULL && PQntuples(res) > 0) {
        const char *at = strstr(PQgetvalue(res, 0, 0), "rows=");
        if (at != NULL)
            rows = strtoll(at + 5, NULL, 10);
    }
    PQclear(res);
    return rows;
}

static char *names_array(const struct pgwork_config *config, PGresult *paused)
{
    struct text_buffer b = {0};
    for (int i = 0; i < config->queue_count; i++)
        text_array_add_text(&b, config->queues[i].name);
    for (int i = 0; paused != NULL && i < PQntuples(paused); i++)
        text_array_add_text(&b, PQgetvalue(paused, i, 0));
    return text_array_end(&b);
}

static void set_count(struct count *c, const char *value, long long est)
{
    c->n = strtoll(value, NULL, 10);
    c->estimated = false;
    if (c->n > QUERIES_COUNT_CAP) {
        c->n = est > QUERIES_COUNT_CAP ? est : QUERIES_COUNT_CAP + 1;
        c->estimated = true;
    }
}

/* The throughput statement's last answer, shared by every request for
 * THROUGHPUT_CACHE_MS: per-minute figures need no fresher, and an open
 * overview refreshing every 5 s (or several) then costs the database one
 * scan of the recent rows per period, not one per page. Read only under
 * the lock (a PGresult is not copied). */
#define THROUGHPUT_CACHE_MS 10000
static pthread_mutex_t throughput_lock = PTHREAD_MUTEX_INITIALIZER;
static PGresult *throughput_res;
static int64_t throughput_at;

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fill_throughput(PGconn *conn, struct overview *o, char *err, size_t errlen)
{
    pthread_mutex_lock(&throughput_lock);
    bool stale = throughput_res == NULL || monotonic_ms() - throughput_at > THROUGHPUT_CACHE_MS;
    pthread_mutex_unlock(&throughput_lock);
    if (stale) {
        PGresult *fresh = run(conn, throughput_sql, 0, NULL, PGRES_TUPLES_OK, err, errlen);
        if (fresh == NULL)
            return -1;
        pthread_mutex_lock(&throughput_lock);
        PQclear(throughput_res);
        throughput_res = fresh;
        throughput_at = monotonic_ms();
        pthread_mutex_unlock(&throughput_lock);
    }
    pthread_mutex_lock(&throughput_lock);
    const PGresult *res = throughput_res;
    if (PQntuples(res) > 0) {
        int64_t now_minute = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        o->minute0 = now_minute - 60 * (THROUGHPUT_MINUTES - 1);
    }
    for (int i = 0; i < PQntuples(res); i++) {
        if (PQgetisnull(res, i, 1))
            continue;
        const char *queue = PQgetvalue(res, i, 1);
        long long minute = strtoll(PQgetvalue(res, i, 2), NULL, 10);
        long long done = strtoll(PQgetvalue(res, i, 3), NULL, 10);
        long long failed = strtoll(PQgetvalue(res, i, 4), NULL, 10);
        long long slot = (minute - o->minute0) / 60;
        if (slot >= 0 && slot < THROUGHPUT_MINUTES) {
            o->done_per_minute[slot] += done;
            o->failed_per_minute[slot] += failed;
        }
        for (int q = 0; q < o->queue_count; q++)
            if (strcmp(o->queues[q].name, queue) == 0) {
                o->queues[q].done_hour += done;
                o->queues[q].failed_hour += failed;
            }
    }
    pthread_mutex_unlock(&throughput_lock);
    return 0;
}

void queries_fini(void)
{
    pthread_mutex_lock(&throughput_lock);
    PQclear(throughput_res);
    throughput_res = NULL;
    pthread_mutex_unlock(&throughput_lock);
}

int queries_overview(PGconn *conn, const struct pgwork_config *config,
                     const struct webdb_features *f, struct overview *o, char *err, size_t errlen)
{
    memset(o, 0, sizeof *o);
    PGresult *paused = NULL;
    if (f->paused_table &&
        (paused = run(conn, paused_sql, 0, NULL, PGRES_TUPLES_OK, err, errlen)) == NULL)
        return -1;
    char *array = names_array(config, paused);
    PGresult *names = NULL, *stats = NULL;
    int rc = -1;
    if (array == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    const char *p1[] = {array};
    if ((names = run(conn, names_sql, 1, p1, PGRES_TUPLES_OK, err, errlen)) == NULL)
        goto out;
    free(array);
    struct text_buffer b = {0};
    for (int i = 0; i < PQntuples(names); i++)
        text_array_add_text(&b, PQgetvalue(names, i, 0));
    array = text_array_end(&b);
    if (array == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    char cap[24]; /* cap + 1 rows: "more than the cap" */
    snprintf(cap, sizeof cap, "%d", QUERIES_COUNT_CAP + 1);
    const char *p3[] = {array, cap};
    if ((stats = run(conn, stats_sql, 2, p3, PGRES_TUPLES_OK, err, errlen)) == NULL)
        goto out;
    int n = PQntuples(stats);
    o->queues = calloc((size_t)(n > 0 ? n : 1), sizeof *o->queues);
    if (o->queues == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        struct queue_row *q = &o->queues[i];
        const char *name = PQgetvalue(stats, i, 0);
        const char *pe[] = {name};
        if ((q->name = strdup(name)) == NULL) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        o->queue_count = i + 1;
        const char *v1 = PQgetvalue(stats, i, 1), *v2 = PQgetvalue(stats, i, 2);
        const char *v3 = PQgetvalue(stats, i, 3), *v4 = PQgetvalue(stats, i, 4);
        const char *ps_running[] = {name, "running"}, *ps_dead[] = {name, "dead"};
        set_count(&q->due, v1,
                  atoll(v1) > QUERIES_COUNT_CAP ? estimate(conn, estimate_due_sql, 1, pe) : 0);
        set_count(&q->scheduled, v2,
                  atoll(v2) > QUERIES_COUNT_CAP ? estimate(conn, estimate_scheduled_sql, 1, pe)
                                                : 0);
        set_count(&q->running, v3,
                  atoll(v3) > QUERIES_COUNT_CAP ? estimate(conn, estimate_sql, 2, ps_running) : 0);
        set_count(&q->dead, v4,
                  atoll(v4) > QUERIES_COUNT_CAP ? estimate(conn, estimate_sql, 2, ps_dead) : 0);
        const char *ps_done[] = {name, "done"};
        q->done.n = estimate(conn, estimate_sql, 2, ps_done);
        q->done.estimated = true;
        q->oldest_pending_s = PQgetisnull(stats, i, 5) ? -1 : strtod(PQgetvalue(stats, i, 5), NULL);
        for (int p = 0; paused != NULL && p < PQntuples(paused); p++)
            if (strcmp(PQgetvalue(paused, p, 0), name) == 0)
                q->paused = true;
    }
    if (f->throughput) {
        rc = fill_throughput(conn, o, err, errlen);
    } else {
        o->throughput_missing = true;
        o->minute0 = (int64_t)time(NULL) / 60 * 60 - 60 * (THROUGHPUT_MINUTES - 1);
        rc = 0;
    }
out:
    free(array);
    PQclear(paused);
    PQclear(names);
    PQclear(stats);
    return rc;
}

void queries_overview_free(struct overview *o)
{
    for (int i = 0; i < o->queue_count; i++)
        free(o->queues[i].name);
    free(o->queues);
    memset(o, 0, sizeof *o);
}

bool queries_state_ok(const char *state)
{
    static const char *const states[] = {"pending", "running", "done", "dead", "cancelled"};
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
        if (strcmp(state, states[i]) == 0)
            return true;
    return false;
}

bool queries_list_params(const char **state, const char **after, const char **key)
{
    if (*state == NULL || (*state)[0] == '\0')
        *state = "pending";
    if (*after != NULL && (*after)[0] == '\0')
        *after = NULL;
    if (*key != NULL && (*key)[0] == '\0')
        *key = NULL;
    return queries_state_ok(*state);
}

/* A decimal int64 that is all digits, else NULL. */
static bool digits(const char *s, size_t n)
{
    if (n == 0 || n > 19)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

PGresult *queries_tasks(PGconn *conn, const char *queue, const char *state, const char *after,
                        const char *key, char *err, size_t errlen)
{
    char limit[16];
    snprintf(limit, sizeof limit, "%d", QUERIES_PAGE_ROWS + 1);
    if (key != NULL) {
        const char *p[] = {queue, key};
        return run(conn, key_sql, 2, p, PGRES_TUPLES_OK, err, errlen);
    }
    if (strcmp(state, "pending") == 0) {
        if (after == NULL) {
            const char *p[] = {queue, limit};
            return run(conn, pending_first_sql, 2, p, PGRES_TUPLES_OK, err, errlen);
        }
        const char *dot = strchr(after, '.');
        if (dot == NULL || !digits(after, (size_t)(dot - after)) ||
            !digits(dot + 1, strlen(dot + 1))) {
            snprintf(err, errlen, "bad cursor");
            return NULL;
        }
        char us[24];
        snprintf(us, sizeof us, "%.*s", (int)(dot - after), after);
        const char *p[] = {queue, limit, us, dot + 1};
        return run(conn, pending_next_sql, 4, p, PGRES_TUPLES_OK, err, errlen);
    }
    if (after != NULL && !digits(after, strlen(after))) {
        snprintf(err, errlen, "bad cursor");
        return NULL;
    }
    const char *p[] = {queue, limit, state, after != NULL ? after : "9223372036854775807"};
    return run(conn, others_sql, 4, p, PGRES_TUPLES_OK, err, errlen);
}

PGresult *queries_task(PGconn *conn, const char *id, char *err, size_t errlen)
{
    if (!digits(id, strlen(id))) {
        snprintf(err, errlen, "bad task id");
        return NULL;
    }
    const char *p[] = {id};
    return run(conn, task_sql, 1, p, PGRES_TUPLES_OK, err, errlen);
}

PGresult *queries_schedules(PGconn *conn, const struct pgwork_config *config, char *err,
                            size_t errlen)
{
    struct text_buffer names = {0}, queues = {0};
    for (int i = 0; i < config->schedule_count; i++) {
        text_array_add_text(&names, config->schedules[i].name);
        text_array_add_text(&queues, config->schedules[i].queue);
    }
    char *n = text_array_end(&names), *q = text_array_end(&queues);
    PGresult *res = NULL;
    if (n == NULL || q == NULL) {
        snprintf(err, errlen, "out of memory");
    } else {
        const char *p[] = {n, q};
        res = run(conn, schedules_sql, 2, p, PGRES_TUPLES_OK, err, errlen);
    }
    free(n);
    free(q);
    return res;
}

/* The requeue statement; a holder of a key committed after its snapshot
 * makes it fail with a unique violation: it is run again, as the CLI does. */
static void requeue(PGconn *conn, const char *sql, const char *const *params, const char *id,
                    struct action_result *r)
{
    PGresult *res = NULL;
    for (int attempt = 0; attempt < 3; attempt++) {
        PQclear(res);
        res = PQexecParams(conn, sql, 2, NULL, params, NULL, NULL, 0);
        const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (PQresultStatus(res) == PGRES_TUPLES_OK || code == NULL || strcmp(code, "23505") != 0)
            break;
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        r->status = 500;
        dbconn_primary_line(res, conn, r->message, sizeof r->message);
    } else {
        r->count = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        long long kept = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
        r->status = 200;
        if (id != NULL && r->count == 0) {
            if (PQgetisnull(res, 0, 3)) {
                r->status = 404;
                snprintf(r->message, sizeof r->message, "no task %s", id);
            } else if (kept > 0) {
                r->status = 409;
                snprintf(r->message, sizeof r->message,
                         "task %s stays dead: another task of its queue holds its unique key", id);
            } else {
                r->status = 409;
                snprintf(r->message, sizeof r->message, "task %s is %s, not dead", id,
                         PQgetvalue(res, 0, 3));
            }
        } else {
            snprintf(r->message, sizeof r->message, "%lld requeued%s", r->count,
                     kept > 0 ? ", some stay dead: their unique key is held" : "");
        }
    }
    PQclear(res);
}

void queries_requeue_task(PGconn *conn, const char *id, struct action_result *r)
{
    memset(r, 0, sizeof *r);
    if (!digits(id, strlen(id))) {
        r->status = 404;
        snprintf(r->message, sizeof r->message, "bad task id");
        return;
    }
    const char *p[] = {id, id};
    requeue(conn, requeue_task_sql, p, id, r);
}

void queries_requeue_queue(PGconn *conn, const char *queue, struct action_result *r)
{
    memset(r, 0, sizeof *r);
    const char *p[] = {queue, NULL};
    requeue(conn, requeue_queue_sql, p, NULL, r);
}

/* A SQL API function of another turn's migration, with one argument. */
static void call(PGconn *conn, bool present, const char *sql, const char *what, const char *arg,
                 struct action_result *r)
{
    memset(r, 0, sizeof *r);
    if (!present) {
        r->status = 501;
        snprintf(r->message, sizeof r->message, "%s: not in this database's schema (migrate?)",
                 what);
        return;
    }
    const char *p[] = {arg};
    PGresult *res = PQexecParams(conn, sql, 1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        /* A bad argument (no such task, queue or schedule) is the caller's. */
        r->status = code != NULL && (code[0] == '2' || strncmp(code, "P0", 2) == 0) ? 409 : 500;
        dbconn_primary_line(res, conn, r->message, sizeof r->message);
    } else {
        r->status = 200;
        r->value_null = PQntuples(res) != 1 || PQgetisnull(res, 0, 0);
        snprintf(r->value, sizeof r->value, "%s", r->value_null ? "" : PQgetvalue(res, 0, 0));
        snprintf(r->message, sizeof r->message, "%s %.200s: %s", what, arg,
                 r->value_null ? "ok" : r->value);
    }
    PQclear(res);
}

void queries_cancel(PGconn *conn, const struct webdb_features *f, const char *id,
                    struct action_result *r)
{
    if (!digits(id, strlen(id))) {
        memset(r, 0, sizeof *r);
        r->status = 404;
        snprintf(r->message, sizeof r->message, "bad task id");
        return;
    }
    call(conn, f->cancel, cancel_sql, "cancel", id, r);
    /* pgwork.cancel returns the state the task had: NULL for no task, a
     * finished state when there was nothing to cancel (migration 0011). */
    if (r->status == 200 && r->value_null) {
        r->status = 404;
        snprintf(r->message, sizeof r->message, "no task %s", id);
    } else if (r->status == 200 && strcmp(r->value, "pending") != 0 &&
               strcmp(r->value, "running") != 0) {
        r->status = 409;
        snprintf(r->message, sizeof r->message, "task %s is %s: nothing to cancel", id, r->value);
    } else if (r->status == 200) {
        r->count = 1;
        snprintf(r->message, sizeof r->message, "task %s cancelled (it was %s)", id, r->value);
    }
}

void queries_pause(PGconn *conn, const struct webdb_features *f, const char *queue, bool pause,
                   struct action_result *r)
{
    call(conn, f->pause, pause ? pause_sql : resume_sql, pause ? "pause" : "resume", queue, r);
}

void queries_run_schedule(PGconn *conn, const struct pgwork_config *config, const char *name,
                          struct action_result *r)
{
    memset(r, 0, sizeof *r);
    const struct schedule_config *s = NULL;
    for (int i = 0; i < config->schedule_count && s == NULL; i++)
        if (strcmp(config->schedules[i].name, name) == 0)
            s = &config->schedules[i];
    if (s == NULL) {
        r->status = 404;
        snprintf(r->message, sizeof r->message,
                 "no schedule \"%.200s\" in this config (pgwork web reads the pods' config file)",
                 name);
        return;
    }
    char priority[16];
    snprintf(priority, sizeof priority, "%d", s->priority);
    const char *p[] = {s->queue, s->payload != NULL ? s->payload : "{}", priority};
    PGresult *res = PQexecParams(conn, run_schedule_sql, 3, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        r->status = 500;
        dbconn_primary_line(res, conn, r->message, sizeof r->message);
    } else {
        r->status = 200;
        r->count = 1;
        snprintf(r->message, sizeof r->message, "schedule %.200s: task %s made in queue %.200s",
                 name, PQgetvalue(res, 0, 0), s->queue);
    }
    PQclear(res);
}

/* --- the reads pages and the API share, on a connection of the pool ---- */

/* A connection of the pool and the features it found (into f, unless
 * NULL); NULL with *status 503 and err set when there is none. */
static PGconn *pooled(struct webdb_features *f, int *status, char *err, size_t errlen)
{
    PGconn *conn = webdb_acquire();
    if (conn == NULL) {
        snprintf(err, errlen, "%s", QUERIES_NO_CONNECTION);
        *status = 503;
    } else if (f != NULL) {
        *f = webdb_features();
    }
    return conn;
}

int queries_overview_pooled(const struct pgwork_config *config, struct webdb_features *f,
                            struct overview *o, char *err, size_t errlen)
{
    memset(o, 0, sizeof(*o));
    int status;
    PGconn *conn = pooled(f, &status, err, errlen);
    if (conn == NULL)
        return status;
    int rc = queries_overview(conn, config, f, o, err, errlen);
    webdb_release(conn);
    if (rc != 0) {
        queries_overview_free(o);
        return 500;
    }
    return 0;
}

PGresult *queries_tasks_pooled(const char *queue, const char *state, const char *after,
                               const char *key, struct webdb_features *f, int *status, char *err,
                               size_t errlen)
{
    PGconn *conn = pooled(f, status, err, errlen);
    if (conn == NULL)
        return NULL;
    PGresult *res = queries_tasks(conn, queue, state, after, key, err, errlen);
    webdb_release(conn);
    if (res == NULL)
        *status = strcmp(err, "bad cursor") == 0 ? 400 : 500;
    return res;
}

PGresult *queries_task_pooled(const char *id, struct webdb_features *f, int *status, char *err,
                              size_t errlen)
{
    PGconn *conn = pooled(f, status, err, errlen);
    if (conn == NULL)
        return NULL;
    PGresult *res = queries_task(conn, id, err, errlen);
    webdb_release(conn);
    if (res == NULL || PQntuples(res) == 0) {
        PQclear(res);
        snprintf(err, errlen, "no such task");
        *status = 404;
        return NULL;
    }
    return res;
}
