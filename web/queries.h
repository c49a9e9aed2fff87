/*
 * queries.h — every statement the dashboard runs, and the overview's
 * model. Pages (pages.c) and the JSON API (api.c) both read through here,
 * so a page and its API twin always show the same thing.
 *
 * Cost bounds (the dashboard shares the database with the workers):
 *  - queue names come from loose index scans over the partial indexes
 *    (pending, dead), the running index, the config and the planner's
 *    statistics, never from a scan of the table;
 *  - counts are exact up to QUERIES_COUNT_CAP rows (read from the partial
 *    indexes); above that, and always for `done` (no index has them), they
 *    are the planner's estimate and flagged as such;
 *  - throughput reads the pods' per-minute rollup (pgwork.throughput,
 *    migration 0013: 60 rows per queue), at most once per 10 s for all
 *    requests together;
 *  - task lists are keyset-paginated (never OFFSET) along an index.
 * Names travel as parameters, never as SQL text.
 */
#ifndef PGWORK_WEB_QUERIES_H
#define PGWORK_WEB_QUERIES_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "webdb.h"
#include "../shared/config.h"
#include "../shared/text.h"

#define QUERIES_COUNT_CAP 1000
#define QUERIES_PAGE_ROWS 50
#define QUERIES_QUEUES_MAX 500

/* A count and how it was made. */
struct count {
    long long n;
    bool estimated; /* the planner's estimate (above the cap, or `done`) */
};

struct queue_row {
    char *name;
    struct count due, scheduled, running, done, dead;
    double oldest_pending_s; /* age of the oldest due pending task; < 0: none */
    bool paused;
    long long done_hour, failed_hour; /* attempts done and failed, last hour (rollup) */
};

#define THROUGHPUT_MINUTES 60
struct overview {
    struct queue_row *queues;
    int queue_count;
    /* [59] = the current minute, which pods add to when it ends (or they
     * stop): attempts done, and failed (retried or dead). */
    long long done_per_minute[THROUGHPUT_MINUTES];
    long long failed_per_minute[THROUGHPUT_MINUTES];
    int64_t minute0;         /* unix time of [0]'s minute */
    bool throughput_missing; /* no pgwork.throughput (migration 0013 not applied) */
};

/* Fill the overview (every queue). 0, or -1 with the error in err. */
int queries_overview(PGconn *conn, const struct pgwork_config *config,
                     const struct webdb_features *f, struct overview *out, char *err,
                     size_t errlen);
void queries_overview_free(struct overview *o);

/* Drop the cached throughput (at exit). */
void queries_fini(void);

/* The states a task list can show. */
bool queries_state_ok(const char *state);

/* A task list's parameters as the request gave them (NULL: absent), made
 * what queries_tasks takes: state "pending" when absent or empty, after
 * and key NULL when empty. false: a state no list shows. */
bool queries_list_params(const char **state, const char **after, const char **key);

/*
 * One page of a queue's tasks in state, after the opaque cursor `after`
 * (NULL: the first page): QUERIES_PAGE_ROWS + 1 rows (one more than shown:
 * whether a next page exists). Pending tasks come in the order they will
 * run (run_at, id); the others newest first (id descending). The cursor
 * of a row is its `cursor` column. NULL res with err on failure.
 * key: search by unique key among pending and running tasks instead.
 */
PGresult *queries_tasks(PGconn *conn, const char *queue, const char *state, const char *after,
                        const char *key, char *err, size_t errlen);

/* One task, payload pretty-printed as payload_pretty. */
PGresult *queries_task(PGconn *conn, const char *id, char *err, size_t errlen);

/* The schedules: pgwork.schedules beside the config's (queries.c). */
PGresult *queries_schedules(PGconn *conn, const struct pgwork_config *config, char *err,
                            size_t errlen);

/* Outcome of an action. */
struct action_result {
    int status; /* HTTP status: 200, 404, 409, 500, 501 */
    char message[512];
    long long count;
    char value[64];  /* a SQL function's answer, as text */
    bool value_null; /* ... which was NULL */
};

void queries_requeue_task(PGconn *conn, const char *id, struct action_result *r);
void queries_requeue_queue(PGconn *conn, const char *queue, struct action_result *r);
void queries_cancel(PGconn *conn, const struct webdb_features *f, const char *id,
                    struct action_result *r);
void queries_pause(PGconn *conn, const struct webdb_features *f, const char *queue, bool pause,
                   struct action_result *r);
/* One task now, as the config's schedule `name` makes them. */
void queries_run_schedule(PGconn *conn, const struct pgwork_config *config, const char *name,
                          struct action_result *r);

/* --- the reads pages and the API share, on a connection of the pool ---- */

/* What a page or the API says when the pool has no connection to give. */
#define QUERIES_NO_CONNECTION "the database is unreachable or every connection is busy"

/* queries_overview on a connection of the pool (webdb_acquire), with the
 * features as that connection found them (into f): 0, or the HTTP status
 * with err set — 503 (no connection), 500 (the read failed; o is freed). */
int queries_overview_pooled(const struct pgwork_config *config, struct webdb_features *f,
                            struct overview *o, char *err, size_t errlen);

/* queries_tasks likewise: the rows, or NULL with *status 503, 400 (a bad
 * cursor) or 500 and err set. f (NULL: not wanted): the features. */
PGresult *queries_tasks_pooled(const char *queue, const char *state, const char *after,
                               const char *key, struct webdb_features *f, int *status, char *err,
                               size_t errlen);

/* queries_task likewise: the row, or NULL with *status 503 or 404 (no such
 * task) and err set. f (NULL: not wanted): the features. */
PGresult *queries_task_pooled(const char *id, struct webdb_features *f, int *status, char *err,
                              size_t errlen);

#endif
