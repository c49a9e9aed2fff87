/*
 * requeues.c — a dead worker's tasks back to pending (DESIGN §2): a FIFO
 * of requeues the supervisor asked for, each one statement or two on the
 * listener's connection (upkeep.c's table sends them: stop the worker's
 * backend, then requeue its rows).
 *
 * Invariants:
 *  - a requeue never holds up the others, the poll or the renewals: one
 *    that finds locked rows or fails goes to the back of the FIFO and is
 *    tried again after a doubling delay;
 *  - a dead worker's backend is stopped (and seen gone) before its tasks
 *    are requeued, so the rows it frees are never claimable uncharged;
 *  - nothing sent waits on a row lock (SKIP LOCKED); owners are
 *    parameters, never spliced into SQL;
 *  - the FIFO changes only on results, so the entry in flight stays put.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "requeues.h"
#include "../shared/dbconn.h"
#include "../shared/log.h"

/* A requeue that found locked rows or failed is tried again after this,
 * doubling per try up to the maximum. */
#define REQUEUES_RETRY_MIN_MS 250
#define REQUEUES_RETRY_MAX_MS 10000

/* A dead worker's backend still exiting after pg_terminate_backend's own
 * 1 s wait is asked again this often, this many times, before its tasks
 * are requeued. */
#define REQUEUES_STOP_RETRY_MS 200
#define REQUEUES_STOP_TRIES 10

/* clang-format off */

/*
 * A worker of this pod died; $1/$2 = configured queue names and their
 * max_attempts, $3 = its locked_by, $4 = the task it was running (its shm
 * slot's task_id; 0 = none).
 *  - its other running rows were claimed but never started: pending again,
 *    attempt undone, as if never claimed;
 *  - the task it was running keeps the attempt: pending, or dead when out
 *    of attempts, so a task that kills its worker every time ends (and
 *    does not take its batch-mates with it);
 *  - the task it was running may be pending with its attempt never
 *    written (a crash took back the claim's asynchronous commit): it is
 *    charged here. (The sql handler's batches commit their claim before
 *    any statement runs, so their tasks are still running here.)
 * Rows still locked are skipped, never waited for: the dead worker's
 * backend may still be running its statement and holding them (it is
 * stopped first, but may not be stoppable — a pooler hides it). The last
 * column counts the rows skipped; the supervisor tries again later.
 * A queue this pod does not configure never ends dead here.
 */
static const char requeue_sql[] =
    "WITH mine AS ("
    "  SELECT r.id, r.state, r.id = $4 AS was_running,"
    "         CASE WHEN r.state = 'pending' THEN r.attempts + 1"
    "              WHEN r.id = $4 THEN r.attempts"
    "              ELSE greatest(r.attempts - 1, 0) END AS attempts,"
    "         coalesce(r.max_attempts,"
    "                  (SELECT q.m FROM unnest($1::text[], $2::int[]) AS q(name, m)"
    "                   WHERE q.name = r.queue),"
    "                  2147483647) AS max_attempts"
    "  FROM pgwork.tasks r"
    "  WHERE (r.state = 'running' AND r.locked_by = $3) OR (r.id = $4 AND r.state = 'pending')"
    "  FOR UPDATE SKIP LOCKED),"
    " moved AS ("
    "  UPDATE pgwork.tasks t"
    "  SET attempts = c.attempts,"
    "      state = CASE WHEN c.was_running AND c.attempts >= c.max_attempts"
    "                   THEN 'dead' ELSE 'pending' END,"
    "      finished_at = CASE WHEN c.was_running AND c.attempts >= c.max_attempts"
    "                         THEN now() END,"
    "      run_at = CASE WHEN c.state = 'running'"
    "                         AND NOT (c.was_running AND c.attempts >= c.max_attempts)"
    "                    THEN now() ELSE t.run_at END,"
    "      last_error = CASE WHEN c.was_running"
    "                        THEN 'worker ' || $3 || ' died while running the task (attempt '"
    "                             || c.attempts || ')'"
    "                        ELSE t.last_error END,"
    "      locked_until = NULL"
    "  FROM mine c"
    "  WHERE t.id = c.id"
    "  RETURNING t.state = 'dead' AS dead)"
    " SELECT (SELECT count(*) FROM moved WHERE NOT dead),"
    "        (SELECT count(*) FROM moved WHERE dead),"
    "        (SELECT count(*) FROM pgwork.tasks r"
    "         WHERE (r.state = 'running' AND r.locked_by = $3)"
    "            OR (r.id = $4 AND r.state = 'pending'))"
    "        - (SELECT count(*) FROM mine)";

/*
 * Stop a dead worker's backend, which may still run the statement it was
 * sent and hold its tasks' row locks: $1 = the pid the worker's connection
 * reported, $2 = its application_name. Both must match, so a pid the
 * worker never owned (a pooler's fake one) stops nothing. Waits up to 1 s
 * for the backend to exit.
 */
static const char stop_backend_sql[] =
    "SELECT pg_terminate_backend(a.pid, 1000)"
    " FROM pg_stat_activity a"
    " WHERE a.pid = $1 AND a.application_name = $2 AND a.datname = current_database()";

/* clang-format on */

/* --- the FIFO ----------------------------------------------------------- */

static int64_t requeue_retry_ms(int tries)
{
    int64_t delay = REQUEUES_RETRY_MIN_MS;
    for (int i = 1; i < tries && delay < REQUEUES_RETRY_MAX_MS; i++)
        delay *= 2;
    return delay < REQUEUES_RETRY_MAX_MS ? delay : REQUEUES_RETRY_MAX_MS;
}

static void requeue_remove(struct requeues *q, int i)
{
    free(q->items[i].locked_by);
    q->count--;
    memmove(q->items + i, q->items + i + 1, (size_t)(q->count - i) * sizeof(*q->items));
}

/* Requeue i is not done: to the back of the queue, tried again after
 * delay_ms, so it never holds up the poll, renewals or the other
 * requeues. */
static void requeue_defer(struct requeues *q, int i, int64_t now, int64_t delay_ms)
{
    struct requeue r = q->items[i];
    memmove(q->items + i, q->items + i + 1, (size_t)(q->count - i - 1) * sizeof(*q->items));
    r.due_ms = now + delay_ms;
    q->items[q->count - 1] = r;
}

/* The first requeue whose time has come (FIFO among them), or -1. */
static int requeue_first_due(const struct requeues *q, int64_t now)
{
    for (int i = 0; i < q->count; i++)
        if (q->items[i].due_ms <= now)
            return i;
    return -1;
}

/* The requeue in flight, or NULL (the FIFO cannot change meanwhile: only
 * results move its entries). */
static struct requeue *requeue_in_flight(struct requeues *q)
{
    int i = q->in_flight;
    return i >= 0 && i < q->count ? &q->items[i] : NULL;
}

/* The first due requeue goes next: its backend stopped if it still has
 * one (stop_backend), else its tasks requeued (requeue). Not yet due: the
 * earliest time one will be (requeue's entry, for the deadline). */
int64_t requeues_stop_due(const struct requeues *q, int64_t now)
{
    int i = requeue_first_due(q, now);
    return i >= 0 && q->items[i].backend_pid != 0 ? q->items[i].due_ms : INT64_MAX;
}

int64_t requeues_due(const struct requeues *q, int64_t now)
{
    int i = requeue_first_due(q, now);
    if (i >= 0)
        return q->items[i].backend_pid == 0 ? q->items[i].due_ms : INT64_MAX;
    int64_t next = INT64_MAX;
    for (i = 0; i < q->count; i++)
        if (q->items[i].due_ms < next)
            next = q->items[i].due_ms;
    return next;
}

int requeues_stop_send(struct requeues *q, PGconn *conn, int64_t now)
{
    int i = requeue_first_due(q, now);
    if (i < 0)
        return REQUEUES_NOTHING_SENT;
    q->in_flight = i;
    const struct requeue *r = &q->items[q->in_flight];
    char pid[16], application_name[64];
    snprintf(pid, sizeof(pid), "%d", (int)r->backend_pid);
    dbconn_worker_application_name(r->slot, application_name, sizeof(application_name));
    const char *params[] = {pid, application_name};
    return PQsendQueryParams(conn, stop_backend_sql, 2, NULL, params, NULL, NULL, 0);
}

void requeues_stop_on_result(struct requeues *q, const PGresult *res, bool ok, int64_t now)
{
    struct requeue *r = requeue_in_flight(q);
    if (r == NULL)
        return;
    bool exiting = ok && PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") != 0;
    if (!ok)
        log_warn("cannot stop the backend (pid %d) of dead worker %s: %s", (int)r->backend_pid,
                 r->locked_by, PQresultErrorMessage(res));
    else if (PQntuples(res) == 1 && !exiting)
        log_info("stopped the backend (pid %d) of dead worker %s", (int)r->backend_pid,
                 r->locked_by);
    if (exiting && r->stop_tries < REQUEUES_STOP_TRIES) {
        /* Signalled, not gone yet: requeue once it is, not before —
         * the rows it frees would otherwise be claimable uncharged. */
        r->stop_tries++;
        requeue_defer(q, q->in_flight, now, REQUEUES_STOP_RETRY_MS);
        return;
    }
    /* Gone (or not stoppable): a requeue that still finds locked rows
     * waits for them. */
    r->backend_pid = 0;
}

int requeues_send(struct requeues *q, PGconn *conn, int64_t now, const char *queue_names,
                  const char *queue_max_attempts)
{
    int i = requeue_first_due(q, now);
    if (i < 0)
        return REQUEUES_NOTHING_SENT;
    q->in_flight = i;
    const struct requeue *r = &q->items[q->in_flight];
    char task_id[24];
    snprintf(task_id, sizeof(task_id), "%" PRId64, r->task_id);
    const char *params[] = {queue_names, queue_max_attempts, r->locked_by, task_id};
    return PQsendQueryParams(conn, requeue_sql, 4, NULL, params, NULL, NULL, 0);
}

bool requeues_on_result(struct requeues *q, const PGresult *res, bool ok, int64_t now)
{
    struct requeue *r = requeue_in_flight(q);
    if (r == NULL)
        return false;
    int i = q->in_flight;
    if (!ok || PQntuples(res) != 1) {
        log_error("requeue of %s failed (try %d; again in %" PRId64 " ms): %s", r->locked_by,
                  r->tries + 1, requeue_retry_ms(r->tries + 1), PQresultErrorMessage(res));
        r->tries++;
        requeue_defer(q, i, now, requeue_retry_ms(r->tries));
        return false;
    }
    long long requeued = atoll(PQgetvalue(res, 0, 0));
    long long dead = atoll(PQgetvalue(res, 0, 1));
    long long locked = atoll(PQgetvalue(res, 0, 2));
    if (requeued > 0 || dead > 0)
        log_warn("tasks of %s: %lld requeued, %lld dead (out of attempts)", r->locked_by, requeued,
                 dead);
    bool moved = requeued > 0 || dead > 0;
    if (locked > 0) {
        /* Its backend could not be stopped (a pooler hides it, or it lacks
         * the privilege): it still holds them, and will commit or roll
         * back on its own. */
        log_warn("%lld task(s) of %s still locked (its backend is still running); trying again "
                 "in %" PRId64 " ms",
                 locked, r->locked_by, requeue_retry_ms(r->tries + 1));
        r->tries++;
        requeue_defer(q, i, now, requeue_retry_ms(r->tries));
        return moved;
    }
    requeue_remove(q, i);
    return moved;
}

/* --- API ---------------------------------------------------------------- */

void requeues_init(struct requeues *q)
{
    memset(q, 0, sizeof(*q));
    q->in_flight = -1;
}

void requeues_add(struct requeues *q, const char *locked_by, int64_t running_task, int slot,
                  int32_t backend_pid)
{
    if (q->count == q->capacity) {
        int cap = q->capacity ? 2 * q->capacity : 8;
        struct requeue *r = realloc(q->items, (size_t)cap * sizeof(*r));
        if (r == NULL) {
            log_error("out of memory queueing a requeue for %s", locked_by);
            return;
        }
        q->items = r;
        q->capacity = cap;
    }
    q->items[q->count] = (struct requeue){
        .task_id = running_task,
        .slot = slot,
        .backend_pid = backend_pid,
        .due_ms = 0,
        .tries = 0,
        .locked_by = strdup(locked_by),
    };
    if (q->items[q->count].locked_by != NULL)
        q->count++;
}

int requeues_count(const struct requeues *q)
{
    return q->count;
}

void requeues_on_end(struct requeues *q)
{
    q->in_flight = -1;
}

void requeues_free(struct requeues *q)
{
    for (int i = 0; i < q->count; i++)
        free(q->items[i].locked_by);
    free(q->items);
    requeues_init(q);
}
