/*
 * task.c — complete, fail and release claimed tasks (DESIGN §2); the
 * claim itself is task_claim.c's.
 *
 * Invariants:
 *  - every statement is sent unnamed with its parameters (PgBouncer's
 *    transaction pooling: a named prepared statement may be missing on the
 *    next transaction's server connection, or already there from another
 *    client, DESIGN §2) — but the one-transaction path's done on a session
 *    of our own, prepared there as the claims are (claim_cache.c) and
 *    planned with their settings; queue names, owners and payloads never
 *    become SQL text. An unnamed statement is planned for its parameters
 *    each time, the custom plans the workers want anyway (a generic plan
 *    chosen from a moment's statistics stays bad: see migration 0004);
 *  - every update of a claimed row is guarded by `locked_by = <this worker>
 *    AND state = 'running'`: a worker whose lease expired and whose task was
 *    requeued and claimed elsewhere cannot overwrite the new owner's state;
 *  - a failed statement is logged here once, with libpq's message, and
 *    reported to the caller as -1.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "task.h"
#include "claim_cache.h"
#include "../shared/dbconn.h"
#include "../shared/log.h"
#include "../shared/text.h"
#include "../shared/timeutil.h"

#define OID_INT4 23
#define OID_INT8 20
#define OID_TEXT 25
#define OID_BOOL 16

/*
 * The one-transaction path's done (task_send_finish_claimed), in the
 * transaction that ran the batch's statements: the batch's tasks, claimed
 * (marked running) by this worker, done — or deleted — at once. $3 is how
 * many: should any be no longer ours (its lease ran out and another pod
 * took it back), the statement fails, so the transaction rolls back with
 * every effect of the batch and the worker redoes the batch a task at a
 * time, where each task's done is checked on its own. The ELSE holds a
 * subquery, so it is evaluated only when reached, never while planning.
 * `(state || '') = 'running'`: see done_many_sql.
 */
/* clang-format off */
static const char finish_claimed_sql[] =
    "WITH finished AS ("
    "  UPDATE pgwork.tasks"
    "  SET state = 'done', finished_at = now(), locked_until = NULL"
    "  WHERE id = ANY($1::bigint[])"
    "    AND locked_by = $2"
    "    AND (state || '') = 'running'"
    "  RETURNING 1)"
    " SELECT CASE WHEN (SELECT count(*) FROM finished) = $3 THEN $3"
    "        ELSE ('tasks of the batch no longer ours: '"
    "              || $3 - (SELECT count(*) FROM finished))::int END";

static const char delete_claimed_sql[] =
    "WITH finished AS ("
    "  DELETE FROM pgwork.tasks"
    "  WHERE id = ANY($1::bigint[])"
    "    AND locked_by = $2"
    "    AND (state || '') = 'running'"
    "  RETURNING 1)"
    " SELECT CASE WHEN (SELECT count(*) FROM finished) = $3 THEN $3"
    "        ELSE ('tasks of the batch no longer ours: '"
    "              || $3 - (SELECT count(*) FROM finished))::int END";

static const char done_sql[] =
    "UPDATE pgwork.tasks"
    " SET state = 'done', finished_at = now(), locked_until = NULL"
    " WHERE id = $1"
    "   AND locked_by = $2"
    "   AND state = 'running'";

/* The background completions (task_completions): a group of finished
 * tasks at once. `id = ANY` walks the primary key; `state = 'running'` is
 * written so that tasks_running_idx cannot serve it (an expression the
 * partial index's predicate is not proved by): that index holds an entry for
 * every task that ran since the last vacuum, and walking it for ten rows
 * costs more than the update (measured by `make bench`). */
static const char done_many_sql[] =
    "UPDATE pgwork.tasks"
    " SET state = 'done', finished_at = now(), locked_until = NULL"
    " WHERE id = ANY($1::bigint[])"
    "   AND locked_by = $2"
    "   AND (state || '') = 'running'";

static const char delete_many_sql[] =
    "DELETE FROM pgwork.tasks"
    " WHERE id = ANY($1::bigint[])"
    "   AND locked_by = $2"
    "   AND (state || '') = 'running'";

/* The same for a capped queue ($3): the statement also rings the queue
 * (pgwork.limit_ring, an InitPlan run once), so a pod whose workers wait
 * for the cap claims the freed slots; the ring's shared lock is held
 * until this commits (migration 0012 says why that closes the race). */
static const char done_many_ring_sql[] =
    "UPDATE pgwork.tasks"
    " SET state = 'done', finished_at = now(), locked_until = NULL"
    " WHERE id = ANY($1::bigint[])"
    "   AND locked_by = $2"
    "   AND (state || '') = 'running'"
    "   AND (SELECT pgwork.limit_ring($3))";

static const char delete_many_ring_sql[] =
    "DELETE FROM pgwork.tasks"
    " WHERE id = ANY($1::bigint[])"
    "   AND locked_by = $2"
    "   AND (state || '') = 'running'"
    "   AND (SELECT pgwork.limit_ring($3))";

/* And for a worker that claims the capped queue again after its batch
 * (served_queue.reclaim): the ring without the lock (pgwork.limit_nudge,
 * migration 0014), so these completions and the queue's claims do not
 * queue behind each other. */
static const char done_many_nudge_sql[] =
    "UPDATE pgwork.tasks"
    " SET state = 'done', finished_at = now(), locked_until = NULL"
    " WHERE id = ANY($1::bigint[])"
    "   AND locked_by = $2"
    "   AND (state || '') = 'running'"
    "   AND (SELECT pgwork.limit_nudge($3))";

static const char delete_many_nudge_sql[] =
    "DELETE FROM pgwork.tasks"
    " WHERE id = ANY($1::bigint[])"
    "   AND locked_by = $2"
    "   AND (state || '') = 'running'"
    "   AND (SELECT pgwork.limit_nudge($3))";

static const char delete_sql[] =
    "DELETE FROM pgwork.tasks"
    " WHERE id = $1"
    "   AND locked_by = $2"
    "   AND state = 'running'";

/* $5 true: dead. Otherwise pending again at now() + $4 ms (the database's
 * clock decides when it is due). */
static const char failed_sql[] =
    "UPDATE pgwork.tasks"
    " SET state = CASE WHEN $5 THEN 'dead' ELSE 'pending' END,"
    "     run_at = CASE WHEN $5 THEN run_at ELSE now() + $4 * interval '1 millisecond' END,"
    "     finished_at = CASE WHEN $5 THEN now() END,"
    "     last_error = $3,"
    "     locked_until = NULL"
    " WHERE id = $1"
    "   AND locked_by = $2"
    "   AND state = 'running'";

/* The attempt that ran was lost with its transaction (task_mark_lost):
 * attempts = $3, the attempt that ran; $6 true: dead, else pending at
 * now() + $5 ms. The row is ours and running, or pending with that attempt
 * never written (a crash took the claim's asynchronous commit with it). A
 * row done meanwhile (the COMMIT got through) or taken by another worker
 * is left alone. */
static const char lost_sql[] =
    "UPDATE pgwork.tasks"
    " SET attempts = $3,"
    "     state = CASE WHEN $6 THEN 'dead' ELSE 'pending' END,"
    "     run_at = CASE WHEN $6 THEN run_at ELSE now() + $5 * interval '1 millisecond' END,"
    "     finished_at = CASE WHEN $6 THEN now() END,"
    "     last_error = $4,"
    "     locked_until = NULL"
    " WHERE id = $1"
    "   AND ((state = 'running' AND locked_by = $2)"
    "        OR (state = 'pending' AND attempts = $3 - 1))";

/* After a lost connection: every running row of this worker ($1) but the
 * task being charged ($2, 0 = none) — not started yet, or finished with a
 * done a crash took back (its effect with it) — pending again, as if never
 * claimed. Nobody else would: the supervisor renews a live worker's leases. */
static const char release_mine_sql[] =
    "UPDATE pgwork.tasks"
    " SET state = 'pending',"
    "     attempts = greatest(attempts - 1, 0),"
    "     locked_until = NULL,"
    "     started_at = NULL"
    " WHERE locked_by = $1"
    "   AND state = 'running'"
    "   AND id <> $2";

/* Claimed but never started: as if never claimed. */
static const char release_sql[] =
    "UPDATE pgwork.tasks"
    " SET state = 'pending',"
    "     attempts = greatest(attempts - 1, 0),"
    "     locked_until = NULL,"
    "     started_at = NULL"
    " WHERE id = ANY($1::bigint[])"
    "   AND locked_by = $2"
    "   AND state = 'running'";
/* clang-format on */

/* The claimed tasks looked up again (task_lookup_claimed): each id's
 * place in the array, and whether it is still ours or was cancelled (the
 * row may be gone: neither). */
static const char lookup_claimed_sql[] =
    "SELECT i.n, coalesce(t.state = 'running' AND t.locked_by = $2, false),"
    "       coalesce(t.state = 'cancelled', false)"
    " FROM unnest($1::bigint[]) WITH ORDINALITY i(id, n)"
    " LEFT JOIN pgwork.tasks t ON t.id = i.id";

static const Oid id_owner_types[] = {OID_INT8, OID_TEXT};
static const Oid failed_types[] = {OID_INT8, OID_TEXT, OID_TEXT, OID_INT8, OID_BOOL};
static const Oid ids_owner_types[] = {OID_TEXT, OID_TEXT};
static const Oid ids_owner_count_types[] = {OID_TEXT, OID_TEXT, OID_INT4};
static const Oid lost_types[] = {OID_INT8, OID_TEXT, OID_INT4, OID_TEXT, OID_INT8, OID_BOOL};
static const Oid mine_types[] = {OID_TEXT, OID_INT8};
static const Oid ids_owner_queue_types[] = {OID_TEXT, OID_TEXT, OID_TEXT};

static int prepare_one(PGconn *conn, const char *name, const char *sql, int nparams,
                       const Oid *types)
{
    PGresult *res = dbconn_prepare(conn, name, sql, nparams, types);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        log_error("cannot prepare statement %s: %s", name, PQerrorMessage(conn));
    PQclear(res);
    return ok ? 0 : -1;
}

int task_prepare(PGconn *conn)
{
    if (prepare_one(conn, "pgwork_done", done_sql, 2, id_owner_types) != 0 ||
        prepare_one(conn, "pgwork_delete", delete_sql, 2, id_owner_types) != 0 ||
        prepare_one(conn, "pgwork_failed", failed_sql, 5, failed_types) != 0 ||
        prepare_one(conn, "pgwork_release", release_sql, 2, ids_owner_types) != 0 ||
        prepare_one(conn, "pgwork_finish_claimed", finish_claimed_sql, 3, ids_owner_count_types) !=
            0 ||
        prepare_one(conn, "pgwork_delete_claimed", delete_claimed_sql, 3, ids_owner_count_types) !=
            0 ||
        prepare_one(conn, "pgwork_done_many", done_many_sql, 2, ids_owner_types) != 0 ||
        prepare_one(conn, "pgwork_delete_many", delete_many_sql, 2, ids_owner_types) != 0)
        return -1;
    return 0;
}

/* Room for the longest ids up front: one allocation. */
char *task_id_array(const int64_t *ids, int count)
{
    struct text_buffer array = {0};
    if (text_reserve(&array, (size_t)count * 21 + 2) != 0)
        return NULL;
    for (int i = 0; i < count; i++)
        text_array_add_int64(&array, ids[i]);
    return text_array_end(&array);
}

const char *task_finish_claimed_sql(bool keep_done)
{
    return keep_done ? finish_claimed_sql : delete_claimed_sql;
}

int task_send_finish_claimed(PGconn *conn, const int64_t *ids, int count, const char *locked_by,
                             bool keep_done, struct finish_sent *how)
{
    *how = (struct finish_sent){0};
    char *array = task_id_array(ids, count);
    if (array == NULL)
        return -1;
    char count_text[16];
    snprintf(count_text, sizeof(count_text), "%d", count);
    const char *params[] = {array, locked_by, count_text};
    const char *sql = task_finish_claimed_sql(keep_done);
    const char *name = NULL;
    bool sent = true;
    if (claim_cache_own_session()) {
        /* Its generic plan, made (once per connection, and again after an
         * ANALYZE) with the claim's settings: the primary key walked
         * whatever the statistics say. A custom plan of the done was
         * planned at every batch (measured: as much planning as the
         * drain's claims together). */
        sent = PQsendQueryParams(conn, claim_cache_settings(), 0, NULL, NULL, NULL, NULL, 0);
        how->pinned = sent;
        bool parse = false;
        name = claim_cache_name(sql);
        if (sent && name == NULL)
            name = claim_cache_send_prepare(conn, sql, 3, ids_owner_count_types, &parse);
        how->parse_of = parse ? sql : NULL;
    }
    sent = sent && (name != NULL ? PQsendQueryPrepared(conn, name, 3, params, NULL, NULL, 0)
                                 : PQsendQueryParams(conn, sql, 3, ids_owner_count_types, params,
                                                     NULL, NULL, 0));
    free(array);
    return sent ? 0 : -1;
}

bool task_finish_claimed_preludes(PGconn *conn, const struct finish_sent *how)
{
    bool ok = !how->pinned || dbconn_pipeline_ok(conn);
    if (how->parse_of != NULL) {
        PGresult *parse = dbconn_pipeline_take(conn);
        ok = ok && PQresultStatus(parse) == PGRES_COMMAND_OK;
        claim_cache_sent(how->parse_of, parse);
        PQclear(parse);
    }
    return ok;
}

/* Run a command (name: for messages); returns rows affected or -1
 * (logged). */
static int run_command(PGconn *conn, const char *name, const char *sql, int nparams,
                       const Oid *types, const char *const *params, int64_t id)
{
    PGresult *res = dbconn_exec_params(conn, sql, nparams, types, params);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        log_error("statement %s for task %" PRId64 " failed: %s", name, id,
                  res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(conn));
        PQclear(res);
        return -1;
    }
    int rows = atoi(PQcmdTuples(res));
    PQclear(res);
    return rows;
}

int task_mark_done(PGconn *conn, int64_t id, const char *locked_by, bool keep_done)
{
    char idtext[24];
    snprintf(idtext, sizeof(idtext), "%" PRId64, id);
    const char *params[] = {idtext, locked_by};
    return keep_done ? run_command(conn, "done", done_sql, 2, id_owner_types, params, id)
                     : run_command(conn, "delete", delete_sql, 2, id_owner_types, params, id);
}

int task_mark_failed(PGconn *conn, int64_t id, const char *locked_by, const char *error,
                     int64_t retry_delay_ms, bool make_dead)
{
    char idtext[24], delay[24];
    snprintf(idtext, sizeof(idtext), "%" PRId64, id);
    snprintf(delay, sizeof(delay), "%" PRId64, retry_delay_ms);
    const char *params[] = {idtext, locked_by, error, delay, make_dead ? "t" : "f"};
    return run_command(conn, "failed", failed_sql, 5, failed_types, params, id);
}

/* A transaction control statement; false (logged) when it failed. */
static bool run_simple(PGconn *conn, const char *sql)
{
    PGresult *res = dbconn_exec(conn, sql);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        log_error("%s failed: %s", sql, PQerrorMessage(conn));
    PQclear(res);
    return ok;
}

/* run_command in a transaction of its own that is flushed before COMMIT
 * returns, whatever synchronous_commit says for the session: what a
 * worker records after a lost connection must survive the next crash, or
 * a task that crashes the cluster (and its claim with it) runs for ever. */
static int run_durably(PGconn *conn, const char *name, const char *sql, int nparams,
                       const Oid *types, const char *const *params, int64_t id)
{
    if (!run_simple(conn, "BEGIN"))
        return -1;
    int rows = -1;
    if (run_simple(conn, "SET LOCAL synchronous_commit = on"))
        rows = run_command(conn, name, sql, nparams, types, params, id);
    if (rows < 0 || !run_simple(conn, "COMMIT")) {
        run_simple(conn, "ROLLBACK");
        return -1;
    }
    return rows;
}

int task_mark_lost(PGconn *conn, int64_t id, const char *locked_by, int attempt, const char *error,
                   int64_t retry_delay_ms, bool make_dead)
{
    char idtext[24], attempt_text[16], delay[24];
    snprintf(idtext, sizeof(idtext), "%" PRId64, id);
    snprintf(attempt_text, sizeof(attempt_text), "%d", attempt);
    snprintf(delay, sizeof(delay), "%" PRId64, retry_delay_ms);
    const char *params[] = {idtext, locked_by, attempt_text, error, delay, make_dead ? "t" : "f"};
    return run_durably(conn, "lost", lost_sql, 6, lost_types, params, id);
}

int task_release_mine(PGconn *conn, const char *locked_by, int64_t keep_id)
{
    char keep[24];
    snprintf(keep, sizeof(keep), "%" PRId64, keep_id);
    const char *params[] = {locked_by, keep};
    return run_durably(conn, "release_mine", release_mine_sql, 2, mine_types, params, keep_id);
}

int task_release(PGconn *conn, const int64_t *ids, int count, const char *locked_by)
{
    if (count <= 0)
        return 0;
    char *array = task_id_array(ids, count);
    if (array == NULL)
        return -1;
    const char *params[] = {array, locked_by};
    int rows = run_command(conn, "release", release_sql, 2, ids_owner_types, params, ids[0]);
    free(array);
    return rows < 0 ? -1 : 0;
}

int task_lookup_claimed(PGconn *conn, const int64_t *ids, int count, const char *locked_by,
                        enum task_now *now)
{
    if (count <= 0)
        return 0;
    char *array = task_id_array(ids, count);
    if (array == NULL)
        return -1;
    for (int i = 0; i < count; i++)
        now[i] = TASK_NOW_OURS;
    const char *params[] = {array, locked_by};
    PGresult *res = dbconn_exec_params(conn, lookup_claimed_sql, 2, ids_owner_types, params);
    free(array);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != count) {
        log_error("looking up %d claimed task%s again failed: %s", count, count == 1 ? "" : "s",
                  res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(conn));
        PQclear(res);
        return -1;
    }
    for (int row = 0; row < count; row++) {
        int i = atoi(PQgetvalue(res, row, 0)) - 1;
        if (i < 0 || i >= count)
            continue;
        now[i] = PQgetvalue(res, row, 1)[0] == 't'   ? TASK_NOW_OURS
                 : PQgetvalue(res, row, 2)[0] == 't' ? TASK_NOW_CANCELLED
                                                     : TASK_NOW_GONE;
    }
    PQclear(res);
    return 0;
}

/* --- background completions ----------------------------------------------- */

/* Read the answer to the UPDATE in flight (it has arrived, or we wait for
 * it). Returns 0, or -1 (logged). */
static int completions_collect(PGconn *conn, struct task_completions *tc)
{
    int rc = 0;
    PGresult *res;
    while ((res = dbconn_next_result(conn)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            log_error("recording %d finished task%s of queue \"%s\" failed: %s", tc->in_flight,
                      tc->in_flight == 1 ? "" : "s", tc->queue_name, PQresultErrorMessage(res));
            rc = -1;
        } else {
            int rows = atoi(PQcmdTuples(res));
            if (rows < tc->in_flight)
                log_warn("queue \"%s\": %d of %d finished tasks were no longer ours (lease "
                         "expired and requeued): they may run again",
                         tc->queue_name, tc->in_flight - rows, tc->in_flight);
        }
        PQclear(res);
    }
    tc->in_flight = 0;
    return rc;
}

/* Send the pending ids as one UPDATE (or DELETE), without waiting. */
static int completions_send(PGconn *conn, struct task_completions *tc)
{
    char *array = task_id_array(tc->ids, tc->count);
    if (array == NULL) {
        log_error("out of memory recording finished tasks");
        return -1;
    }
    const char *params[] = {array, tc->locked_by, tc->queue_name};
    const char *sql = !tc->ring   ? (tc->keep_done ? done_many_sql : delete_many_sql)
                      : tc->nudge ? (tc->keep_done ? done_many_nudge_sql : delete_many_nudge_sql)
                                  : (tc->keep_done ? done_many_ring_sql : delete_many_ring_sql);
    int sent = dbconn_send_params(conn, sql, tc->ring ? 3 : 2,
                                  tc->ring ? ids_owner_queue_types : ids_owner_types, params);
    free(array);
    if (!sent) {
        log_error("cannot send finished tasks of queue \"%s\": %s", tc->queue_name,
                  PQerrorMessage(conn));
        return -1;
    }
    PQflush(conn); /* the rest, if any, goes with the next wait */
    tc->in_flight = tc->count;
    tc->count = 0;
    if (tc->held) {
        tc->held = false;
        tc->unheld = true;
    }
    return 0;
}

int task_completions_add(PGconn *conn, struct task_completions *tc,
                         const struct queue_config *queue, const char *locked_by, int64_t id,
                         enum task_ring how)
{
    /* One statement holds the ids of one kind: done or deleted, rung (with
     * the lock or without) or not (and a ring names one queue). */
    /* Held ids once written another way (a flush): the rest of the batch
     * is not held either (its freed slots go to the next ordinary claim). */
    if (how == TASK_RING_HANDOFF && tc->unheld)
        how = TASK_RING_NONE;
    bool held = queue->concurrency > 0 && how == TASK_RING_HANDOFF;
    bool ring = queue->concurrency > 0 && how != TASK_RING_NONE && !held;
    bool nudge = ring && how == TASK_RING_NUDGE;
    bool other_kind = tc->keep_done != queue->keep_done || tc->ring != ring || tc->nudge != nudge ||
                      tc->held != held || ((ring || held) && tc->queue_name != queue->name);
    if (tc->count > 0 && other_kind && task_completions_flush(conn, tc) != 0)
        return -1;
    if (tc->count == tc->capacity) {
        int capacity = tc->capacity ? tc->capacity * 2 : 16;
        int64_t *ids = realloc(tc->ids, (size_t)capacity * sizeof(*ids));
        if (ids == NULL) {
            log_error("out of memory recording a finished task");
            return -1;
        }
        tc->ids = ids;
        tc->capacity = capacity;
    }
    if (held && (tc->count == 0 || !tc->held))
        tc->held_since_ms = time_now_ms();
    tc->ids[tc->count++] = id;
    tc->keep_done = queue->keep_done;
    tc->ring = ring;
    tc->nudge = nudge;
    tc->held = held;
    tc->queue_name = queue->name;
    tc->locked_by = locked_by;
    if (held)
        return 0;
    /* Send now unless the previous group is still on its way: then these
     * wait for its answer and go together (a slow database gets fewer,
     * larger updates; a fast one sees each task at once). */
    if (tc->in_flight > 0) {
        if (!dbconn_result_ready(conn))
            return 0;
        if (completions_collect(conn, tc) != 0)
            return -1;
    }
    return completions_send(conn, tc);
}

int task_completions_flush(PGconn *conn, struct task_completions *tc)
{
    int rc = 0;
    if (tc->in_flight > 0 && completions_collect(conn, tc) != 0)
        rc = -1;
    if (tc->count > 0) {
        if (completions_send(conn, tc) != 0)
            return -1;
        if (completions_collect(conn, tc) != 0)
            rc = -1;
    }
    return rc;
}

int task_completions_held(PGconn *conn, struct task_completions *tc,
                          const struct queue_config *queue, const int64_t **ids, int *count)
{
    *ids = tc->ids;
    *count = 0;
    if (tc->in_flight > 0 && completions_collect(conn, tc) != 0)
        return -1;
    if (tc->held && tc->queue_name == queue->name)
        *count = tc->count;
    return 0;
}

void task_completions_handed_off(struct task_completions *tc)
{
    tc->count = 0;
    tc->held = false;
}

void task_completions_claimed(struct task_completions *tc)
{
    tc->unheld = false;
}

bool task_completions_holding(const struct task_completions *tc)
{
    return tc->held && tc->count > 0;
}

int64_t task_completions_held_ms(const struct task_completions *tc)
{
    return task_completions_holding(tc) ? time_now_ms() - tc->held_since_ms : -1;
}

void task_completions_free(struct task_completions *tc)
{
    free(tc->ids);
    *tc = (struct task_completions){0};
}
