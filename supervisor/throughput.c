/*
 * throughput.c — this pod's finished tasks per queue and minute into
 * pgwork.throughput (throughput.h, migration 0013).
 *
 * Invariants:
 *  - a minute's row holds what the workers counted between two boundaries
 *    of the database's clock (the shm counters only grow: the difference
 *    is never negative); a queue that finished nothing has no row, and
 *    with no row waiting nothing is sent;
 *  - one statement carries every waiting row; rows are written in
 *    (minute, queue) order, so two pods adding into the same rows take
 *    their row locks in the same order and never deadlock;
 *  - the deletion of rows older than a day skips rows another pod holds
 *    (SKIP LOCKED) and never touches a row this statement writes (those
 *    are younger than a day: older ones are dropped before they are
 *    written);
 *  - queue names are parameters, never spliced into SQL.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "throughput.h"
#include "listener.h"
#include "../shared/log.h"
#include "../shared/text.h"
#include "../shared/timeutil.h"

/* clang-format off */

/*
 * $1..$4: the waiting rows (queue names, minutes in unix seconds, done and
 * failed counts), $5 = how many day-old rows to delete at most. Returns
 * the rows written and the rows deleted.
 */
static const char upsert_sql[] =
    "WITH fresh AS ("
    "  SELECT u.queue, 'epoch'::timestamptz + u.minute * interval '1 second' AS minute,"
    "         u.done, u.failed"
    "  FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[])"
    "    AS u(queue, minute, done, failed)),"
    " old AS ("
    "  DELETE FROM pgwork.throughput o"
    "  WHERE (o.minute, o.queue) IN ("
    "    SELECT x.minute, x.queue FROM pgwork.throughput x"
    "    WHERE x.minute < now() - interval '1 day'"
    "    ORDER BY x.minute LIMIT $5 FOR UPDATE SKIP LOCKED)"
    "  RETURNING 1),"
    " added AS ("
    "  INSERT INTO pgwork.throughput AS t (minute, queue, done, failed)"
    "  SELECT f.minute, f.queue, sum(f.done), sum(f.failed) FROM fresh f"
    "  WHERE f.minute >= now() - interval '1 day'"
    "  GROUP BY f.minute, f.queue ORDER BY f.minute, f.queue COLLATE \"C\""
    "  ON CONFLICT (minute, queue) DO UPDATE"
    "  SET done = t.done + excluded.done, failed = t.failed + excluded.failed"
    "  RETURNING 1)"
    " SELECT (SELECT count(*) FROM added), (SELECT count(*) FROM old)";

/* clang-format on */

/* in_flight while the SELECT 1 sent for want of memory is out: no rows. */
#define THROUGHPUT_OOM (-1)

/* The database's clock now (unix ms), as well as the listener knows it. */
static int64_t db_now_ms(const struct throughput *t, int64_t now)
{
    int64_t offset;
    if (listener_db_clock_offset(t->listener, &offset))
        return now + offset;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t minute_start_ms(int64_t ms)
{
    return ms - ((ms % 60000) + 60000) % 60000;
}

int throughput_init(struct throughput *t, const struct shm *shm, char *const *slot_names,
                    const struct listener *listener, int64_t now)
{
    memset(t, 0, sizeof(*t));
    t->shm = shm;
    t->slot_names = slot_names;
    t->listener = listener;
    unsigned capacity = shm->header->queue_capacity;
    t->seen_done = calloc(capacity, sizeof(*t->seen_done));
    t->seen_failed = calloc(capacity, sizeof(*t->seen_failed));
    t->rows = calloc(THROUGHPUT_PENDING_MAX, sizeof(*t->rows));
    if (t->seen_done == NULL || t->seen_failed == NULL || t->rows == NULL) {
        throughput_free(t);
        return -1;
    }
    t->next_minute_ms = minute_start_ms(db_now_ms(t, now)) + 60000;
    return 0;
}

int64_t throughput_next_deadline(const struct throughput *t)
{
    int64_t offset;
    if (listener_db_clock_offset(t->listener, &offset))
        return t->next_minute_ms - offset;
    /* The pod's own clock: the boundary is this far from now. */
    int64_t now = time_now_ms();
    return now + (t->next_minute_ms - db_now_ms(t, now));
}

static void add_row(struct throughput *t, unsigned record, int64_t minute_ms, uint64_t done,
                    uint64_t failed)
{
    if (t->row_count == THROUGHPUT_PENDING_MAX) {
        /* The database has not taken rows for a long while: the oldest
         * go (never one the statement in flight carries). */
        int keep = t->in_flight > 0 ? t->in_flight : 0;
        if (keep >= t->row_count)
            return;
        if (t->dropped++ == 0)
            log_warn("throughput: more than %d rows wait for the database; dropping the oldest",
                     THROUGHPUT_PENDING_MAX);
        memmove(t->rows + keep, t->rows + keep + 1,
                (size_t)(t->row_count - keep - 1) * sizeof(*t->rows));
        t->row_count--;
    }
    t->rows[t->row_count++] = (struct throughput_row){
        .record = record, .minute = minute_ms / 1000, .done = done, .failed = failed};
}

/* What every queue finished since the last sample, as rows of minute. */
static void sample(struct throughput *t, int64_t minute_ms)
{
    unsigned capacity = t->shm->header->queue_capacity;
    for (unsigned i = 0; i < capacity && t->slot_names[i] != NULL; i++) {
        const struct shm_queue *q = &t->shm->queues[i];
        uint64_t done = atomic_load_explicit(&q->tasks_done, memory_order_relaxed);
        uint64_t failed = atomic_load_explicit(&q->tasks_retried, memory_order_relaxed) +
                          atomic_load_explicit(&q->tasks_dead, memory_order_relaxed);
        if (done != t->seen_done[i] || failed != t->seen_failed[i])
            add_row(t, i, minute_ms, done - t->seen_done[i], failed - t->seen_failed[i]);
        t->seen_done[i] = done;
        t->seen_failed[i] = failed;
    }
}

void throughput_run(struct throughput *t, int64_t now)
{
    int64_t db_now = db_now_ms(t, now);
    if (db_now < t->next_minute_ms)
        return; /* the clock estimate moved: not there yet */
    /* Late by more than a minute (the loop was busy, the clock estimate
     * jumped): what finished meanwhile goes to the minute that just ended. */
    int64_t current = minute_start_ms(db_now);
    sample(t, current - 60000);
    t->next_minute_ms = current + 60000;
}

void throughput_flush(struct throughput *t, int64_t now)
{
    sample(t, minute_start_ms(db_now_ms(t, now)));
}

int throughput_pending(const struct throughput *t)
{
    return t->not_before_ms == 0 ? t->row_count : 0;
}

int64_t throughput_due(const struct throughput *t, int64_t now)
{
    (void)now;
    return t->row_count > 0 ? t->not_before_ms : INT64_MAX;
}

int throughput_send(struct throughput *t, PGconn *conn, int64_t now)
{
    struct text_buffer names = {0}, minutes = {0}, done = {0}, failed = {0};
    for (int i = 0; i < t->row_count; i++) {
        const struct throughput_row *r = &t->rows[i];
        text_array_add_text(&names, t->slot_names[r->record]);
        text_array_add_int64(&minutes, r->minute);
        text_array_add_int64(&done, (int64_t)r->done);
        text_array_add_int64(&failed, (int64_t)r->failed);
    }
    char *p[4] = {text_array_end(&names), text_array_end(&minutes), text_array_end(&done),
                  text_array_end(&failed)};
    char batch[16];
    snprintf(batch, sizeof(batch), "%d", THROUGHPUT_PRUNE_BATCH);
    int sent;
    if (p[0] != NULL && p[1] != NULL && p[2] != NULL && p[3] != NULL) {
        const char *params[] = {p[0], p[1], p[2], p[3], batch};
        sent = PQsendQueryParams(conn, upsert_sql, 5, NULL, params, NULL, NULL, 0);
        if (sent)
            t->in_flight = t->row_count;
    } else {
        /* Something must go: nothing sent reads as a broken connection
         * (upkeep's contract), which would drop the listener. The rows
         * wait for the retry. */
        log_error("out of memory building the throughput rows; again in %d s",
                  THROUGHPUT_RETRY_MS / 1000);
        t->not_before_ms = now + THROUGHPUT_RETRY_MS;
        t->in_flight = THROUGHPUT_OOM;
        sent = PQsendQuery(conn, "SELECT 1");
    }
    for (int i = 0; i < 4; i++)
        free(p[i]);
    return sent;
}

void throughput_on_result(struct throughput *t, const PGresult *res, bool ok, int64_t now)
{
    if (t->in_flight == THROUGHPUT_OOM) {
        t->in_flight = 0; /* the SELECT 1 of an out of memory: the retry stays */
        return;
    }
    if (!ok || PQntuples(res) != 1) {
        if (ok)
            log_error("recording throughput failed: %d rows came back instead of 1; again in %d s",
                      PQntuples(res), THROUGHPUT_RETRY_MS / 1000);
        else
            log_error("recording throughput failed (is migration 0013 applied? run `pgwork "
                      "migrate`; again in %d s): %s",
                      THROUGHPUT_RETRY_MS / 1000, PQresultErrorMessage(res));
        t->not_before_ms = now + THROUGHPUT_RETRY_MS;
        t->in_flight = 0;
        return;
    }
    int done = t->in_flight;
    memmove(t->rows, t->rows + done, (size_t)(t->row_count - done) * sizeof(*t->rows));
    t->row_count -= done;
    t->in_flight = 0;
    t->not_before_ms = 0;
    long long deleted = atoll(PQgetvalue(res, 0, 1));
    if (deleted > 0)
        log_debug("throughput: deleted %lld row(s) older than a day", deleted);
}

void throughput_on_end(struct throughput *t)
{
    t->in_flight = 0;
}

void throughput_free(struct throughput *t)
{
    free(t->seen_done);
    free(t->seen_failed);
    free(t->rows);
    memset(t, 0, sizeof(*t));
}
