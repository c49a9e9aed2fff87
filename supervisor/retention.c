/*
 * retention.c — deleting finished tasks after their queue's retention
 * (DESIGN §2), in small batches, at a pace that follows what it finds.
 *
 * Invariants:
 *  - one statement per batch, at most RETENTION_BATCH rows of each kind
 *    (done; dead and cancelled), its rows locked FOR UPDATE SKIP LOCKED: it
 *    never waits on a row anyone else holds, and two pods running it at
 *    once delete different rows (a row another pod is deleting is locked,
 *    one it has deleted is gone: neither is counted twice);
 *  - a row is deleted only while still in its state and past its retention
 *    by finished_at when the statement started (the row lock rechecks
 *    both: a dead task requeued meanwhile stays);
 *  - never sends anything itself: upkeep.c sends what retention_due says is
 *    due; an idle pod learns what it needs from the poll it runs anyway.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "retention.h"
#include "../shared/log.h"

/* clang-format off */

/*
 * One batch. $1/$2/$3 = the configured queues, their retention and
 * dead_retention in ms (0 = kept forever), $4 = the batch size. Each kind
 * is a range scan of tasks_finished_idx from its oldest entry (migration
 * 0009): done tasks oldest first; dead and cancelled ones in any order.
 * Returns the rows deleted, how many of each kind were chosen (either at
 * $4: the batch was full, more are waiting), and ms until the earliest
 * finished task that stays passes its retention — for a queue with none
 * yet, one retention from now (at least 10 s, so a tiny retention does not
 * turn an idle pod into a poller): NULL when every queue keeps its tasks.
 */
static const char prune_sql[] =
    "WITH q AS ("
    "  SELECT u.name, u.keep_ms * interval '1 millisecond' AS keep,"
    "         u.dead_ms * interval '1 millisecond' AS dead_keep"
    "  FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS u(name, keep_ms, dead_ms)),"
    " done AS ("
    "  SELECT f.id FROM q CROSS JOIN LATERAL ("
    "    SELECT t.id FROM pgwork.tasks t"
    "    WHERE t.queue = q.name AND t.state = 'done' AND q.keep > interval '0'"
    "      AND t.finished_at < now() - q.keep"
    "    ORDER BY t.finished_at LIMIT $4 FOR UPDATE SKIP LOCKED) f"
    "  LIMIT $4),"
    " dead AS ("
    "  SELECT f.id FROM q CROSS JOIN LATERAL ("
    "    SELECT t.id FROM pgwork.tasks t"
    "    WHERE t.queue = q.name AND t.state IN ('dead', 'cancelled') AND q.dead_keep > interval '0'"
    "      AND t.finished_at < now() - q.dead_keep"
    "    LIMIT $4 FOR UPDATE SKIP LOCKED) f"
    "  LIMIT $4),"
    " gone AS ("
    "  DELETE FROM pgwork.tasks t"
    "  WHERE t.id IN (SELECT id FROM done UNION ALL SELECT id FROM dead)"
    "  RETURNING 1)"
    " SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM done), (SELECT count(*) FROM dead),"
    "  ceil(extract(epoch FROM (SELECT min(least("
    "    CASE WHEN q.keep > interval '0' THEN coalesce("
    "      (SELECT min(t.finished_at) FROM pgwork.tasks t"
    "       WHERE t.queue = q.name AND t.state = 'done' AND t.finished_at >= now() - q.keep)"
    "        + q.keep,"
    "      now() + greatest(q.keep, interval '10 seconds')) END,"
    "    CASE WHEN q.dead_keep > interval '0' THEN coalesce("
    "      least((SELECT min(t.finished_at) FROM pgwork.tasks t"
    "             WHERE t.queue = q.name AND t.state = 'dead'"
    "               AND t.finished_at >= now() - q.dead_keep),"
    "            (SELECT min(t.finished_at) FROM pgwork.tasks t"
    "             WHERE t.queue = q.name AND t.state = 'cancelled'"
    "               AND t.finished_at >= now() - q.dead_keep))"
    "        + q.dead_keep,"
    "      now() + greatest(q.dead_keep, interval '10 seconds')) END)) FROM q)"
    "  - now()) * 1000)::bigint";

/* clang-format on */

void retention_init(struct retention *r, int64_t now)
{
    *r = (struct retention){.hint_ms = INT64_MAX, .round_end_ms = now};
}

int64_t retention_due(const struct retention *r)
{
    if (r->hint_ms == INT64_MAX)
        return INT64_MAX;
    return r->hint_ms > r->not_before_ms ? r->hint_ms : r->not_before_ms;
}

int retention_send(PGconn *conn, const char *names, const char *retention,
                   const char *dead_retention)
{
    char batch[16];
    snprintf(batch, sizeof(batch), "%d", RETENTION_BATCH);
    const char *params[] = {names, retention, dead_retention, batch};
    return PQsendQueryParams(conn, prune_sql, 4, NULL, params, NULL, NULL, 0);
}

/* The wait after a round that deleted `deleted` rows in the `elapsed` ms
 * since the round before: about the time a batch's worth takes to come of
 * age at that rate. A round that found nothing waits the least: what it
 * looked for was taken by another pod, or the hint it followed was the
 * first look at a queue with nothing finished yet; either way the next
 * hint is exact. */
static int64_t retention_gap(int64_t deleted, int64_t elapsed)
{
    if (deleted <= 0)
        return RETENTION_GAP_MIN_MS;
    int64_t gap = elapsed * RETENTION_BATCH / deleted;
    if (gap < RETENTION_GAP_MIN_MS)
        return RETENTION_GAP_MIN_MS;
    return gap < RETENTION_GAP_MAX_MS ? gap : RETENTION_GAP_MAX_MS;
}

void retention_on_result(struct retention *r, const PGresult *res, bool ok, int64_t now)
{
    if (!ok || PQntuples(res) != 1) {
        log_error("deleting finished tasks past their retention failed (again in %d s): %s",
                  RETENTION_RETRY_MS / 1000, PQresultErrorMessage(res));
        r->not_before_ms = now + RETENTION_RETRY_MS;
        return;
    }
    int64_t deleted = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    bool full = strtoll(PQgetvalue(res, 0, 1), NULL, 10) >= RETENTION_BATCH ||
                strtoll(PQgetvalue(res, 0, 2), NULL, 10) >= RETENTION_BATCH;
    r->deleted += (uint64_t)deleted;
    r->batches++;
    r->round_deleted += deleted;
    if (full) {
        /* More are waiting: the next batch at once (upkeep's other
         * statements still go first). */
        r->hint_ms = now;
        r->not_before_ms = 0;
        return;
    }
    int64_t gap = retention_gap(r->round_deleted, now - r->round_end_ms);
    if (r->round_deleted > 0)
        log_debug("retention: deleted %" PRId64 " finished task(s); next batch in %" PRId64
                  " ms at the earliest",
                  r->round_deleted, gap);
    r->round_deleted = 0;
    r->round_end_ms = now;
    r->not_before_ms = now + gap;
    if (PQgetisnull(res, 0, 3)) {
        r->hint_ms = INT64_MAX;
    } else {
        int64_t ms = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
        r->hint_ms = now + (ms > 0 ? ms : 0);
    }
}

void retention_on_poll(struct retention *r, bool known, int64_t ms, int64_t now)
{
    r->hint_ms = known ? now + (ms > 0 ? ms : 0) : INT64_MAX;
}
