/*
 * task_claim.c — the claim: its statements (built per queue, a literal
 * LIMIT), sending it, and reading what it took into a batch (DESIGN §2);
 * also a capped queue's handoff, the one claim that records outcomes too
 * (the finished tasks whose slots it takes over).
 *
 * Invariants:
 *  - sent with its parameters: queue names and owners never become SQL
 *    text; unnamed, as every statement of task.c, unless claim_cache.c
 *    holds it prepared on a connection of our own (then with its
 *    settings, task_claim_ready);
 *  - a batch comes back in the queue's order (priority, run_at, id), and a
 *    drain's cursor only moves forward, past what was claimed;
 *  - a failed claim is logged here once, with libpq's message, and
 *    reported to the caller as -1.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "task_claim.h"
#include "claim_cache.h"
#include "task.h"
#include "../shared/dbconn.h"
#include "../shared/log.h"

#define OID_INT4 23
#define OID_INT8 20
#define OID_TEXT 25
#define OID_INT8_ARRAY 1016

static const Oid text_types[] = {OID_TEXT};

/*
 * The claim statements, one set per queue (task_claim_sql): the queue's
 * batch size is a literal LIMIT, so even a generic plan (a client that
 * prepares the text, the bench's ceiling) is the walk of tasks_claim_idx
 * it should be — with LIMIT as a parameter it would assume a tenth of the
 * table and sort.
 * Two variants: from the start of the queue's order, and from a drain's
 * cursor (the last key claimed), where the row comparison bounds the index
 * scan and skips the entries of every task finished since the last vacuum
 * (measured: 4 buffers instead of ~100 per claim halfway through a
 * 50,000-task burst).
 *
 * The claim marks the rows running: one round trip. The CTE locks up to
 * the batch of due rows and one more, skipping rows other workers hold;
 * the batch of them is taken (the CTE's rows come in its order; were they
 * not, the one left is still pending and the next claim takes it) and the
 * last column says whether one was left: more is waiting (the drain goes
 * on, help is asked for) — a claim that took all there was ends the drain
 * without another claim or wake-up. attempts counts starts. A paused queue
 * (migration 0011) gives nothing: the probe of pgwork.paused_queues does
 * not depend on the rows, so it runs once, as a gate in front of the index
 * scan, and a claim whose statement starts after pgwork.pause() committed
 * takes no task of the queue on any pod, whatever the pod has heard. The
 * picked ids reach the UPDATE as one array (an InitPlan), so it finds them
 * by primary key whatever the statistics say: joined with the CTE, a batch
 * of 100 on a backlog was planned as a hash join over a sequential scan of
 * the whole table, every claim (measured: 23 ms a claim instead of 0.5,
 * test migrate/plans).
 * $1 queue, $2 locked_by, $3 lease ms, $4 default max_attempts,
 * then the cursor's key ($5 priority, $6 run_at, $7 id). The last three
 * columns returned are the row's key.
 */
/* clang-format off */
/* The due rows a claim locks (literals: the cursor's bound, the LIMIT),
 * the columns a claimed row is marked running with, and the columns it
 * returns (task_batch_fill reads them by position): the plain claim's and
 * the handoff's. */
#define CLAIM_PICKED \
    "  SELECT id FROM pgwork.tasks" \
    "  WHERE queue = $1 AND state = 'pending' AND run_at <= now()%s" \
    "    AND NOT EXISTS (SELECT FROM pgwork.paused_queues p WHERE p.queue = $1)" \
    "  ORDER BY priority, run_at, id" \
    "  LIMIT %d" \
    "  FOR UPDATE SKIP LOCKED"
#define CLAIM_SET_RUNNING \
    " SET state = 'running'," \
    "     attempts = t.attempts + 1," \
    "     locked_by = $2," \
    "     locked_until = now() + $3 * interval '1 millisecond'," \
    "     started_at = now()," \
    "     finished_at = NULL"
#define CLAIM_RETURNING \
    " RETURNING t.id, t.payload::text, t.attempts, coalesce(t.max_attempts, $4)," \
    "           greatest(0, (extract(epoch FROM now() - t.run_at) * 1000000)::bigint)," \
    "           t.priority, t.run_at::text, (extract(epoch FROM t.run_at) * 1000000)::bigint"

static const char claim_sql_format[] =
    "WITH picked AS (" CLAIM_PICKED "),"
    " taken AS (SELECT id FROM picked LIMIT %d)"
    " UPDATE pgwork.tasks t"
    CLAIM_SET_RUNNING
    " WHERE t.id = ANY (ARRAY (SELECT id FROM taken))"
    CLAIM_RETURNING ","
    "           (SELECT count(*) FROM picked) > %d";

static const char claim_from_cursor[] =
    " AND (priority, run_at, id) >= ($5, $6::timestamptz, $7::bigint)";

/*
 * The claim of a queue with a concurrency cap or a rate (migration 0012):
 * a statement of its own, so queues without limits keep the one above.
 * pgwork.limit_budget takes the queue's advisory transaction lock and
 * counts (fresh, after the lock) what the limits still allow: `take`
 * (migration 0014: with batch = "auto", `whole`, all the free slots up to
 * the batch; otherwise one once fewer are free than the batch).
 * `picked` locks a batch as the plain claim does (same literal LIMIT, same
 * plan, the same gate for a paused queue), but never more than the cap
 * and one: an auto batch grows past the cap (its claims come back full),
 * and each row locked and left costs the claim, under the queue's lock
 * (measured: a claim of cap 50 locked 1,000 rows to take one); `chosen`
 * is the first `take` of them. Starts are recorded for the
 * rate, and `waiting` says whether the cap left due tasks behind (what
 * pgwork.limit_ring reads) — the statement's one UPDATE of the queue's
 * limits row, which also records this pod's values when limit_budget
 * found others (`other`; two UPDATEs of one row in one statement fail).
 * The LEFT JOIN returns one row even when nothing was claimed (id NULL):
 * the budget's take, wait_ms, other and cap_bound come back either way.
 * Literals: cap, rate count, rate period ms, batch, whole, [cursor],
 * picked's limit, rate count, cap, rate count, rate period ms.
 */
static const char limited_claim_format[] =
    "WITH budget AS MATERIALIZED ("
    "  SELECT * FROM pgwork.limit_budget($1, %d, %d, %lld, %d, $2, %s)),"
    " picked AS ("
    "  SELECT id, priority, run_at FROM pgwork.tasks"
    "  WHERE queue = $1 AND state = 'pending' AND run_at <= now()%s"
    "    AND NOT EXISTS (SELECT FROM pgwork.paused_queues p WHERE p.queue = $1)"
    "  ORDER BY priority, run_at, id"
    "  LIMIT %d"
    "  FOR UPDATE SKIP LOCKED),"
    " chosen AS ("
    "  SELECT id FROM picked ORDER BY priority, run_at, id"
    "  LIMIT (SELECT take FROM budget)),"
    " claimed AS ("
    "  UPDATE pgwork.tasks t"
    "  SET state = 'running',"
    "      attempts = t.attempts + 1,"
    "      locked_by = $2,"
    "      locked_until = now() + $3 * interval '1 millisecond',"
    "      started_at = (SELECT at FROM budget),"
    "      finished_at = NULL"
    "  FROM chosen"
    "  WHERE t.id = chosen.id"
    "  RETURNING t.id, t.payload::text, t.attempts, coalesce(t.max_attempts, $4),"
    "            greatest(0, (extract(epoch FROM now() - t.run_at) * 1000000)::bigint),"
    "            t.priority, t.run_at::text, (extract(epoch FROM t.run_at) * 1000000)::bigint),"
    " started AS ("
    "  INSERT INTO pgwork.limit_starts (queue, started_at)"
    "  SELECT $1, (SELECT at FROM budget) FROM claimed WHERE %d > 0),"
    " flagged AS ("
    "  UPDATE pgwork.queue_limits l"
    "  SET waiting = w.waiting,"
    "      concurrency = %d, rate_count = %d, rate_period_ms = %lld,"
    "      set_by = CASE WHEN (SELECT other FROM budget) IS NULL THEN l.set_by ELSE $2 END"
    "  FROM (SELECT (SELECT cap_bound FROM budget)"
    "               AND (SELECT count(*) FROM picked) > (SELECT count(*) FROM chosen) AS waiting) w"
    "  WHERE l.queue = $1"
    "    AND (l.waiting <> w.waiting OR (SELECT other FROM budget) IS NOT NULL))"
    " SELECT c.*, b.take, coalesce(b.wait_ms, 0), b.other, b.cap_bound"
    " FROM budget b LEFT JOIN claimed c ON true";

/*
 * The handoff (a capped queue without a rate, its drain going on): the
 * worker's finished tasks are recorded and as many due tasks claimed in
 * one statement, without the queue's lock. The running count never rises
 * when this commits (no more taken than the UPDATE or DELETE in
 * `finished` found running and ours), so every count under the lock —
 * before this commits or after — is still an upper bound: the cap holds.
 * By the rows' times, the old tasks' finished_at and the new ones'
 * started_at are both this transaction's now(). Slots it leaves free
 * (fewer due than finished) are rung under the lock's shared mode
 * (pgwork.limit_ring), as completions ring. `result` gives one row even
 * when nothing was taken (id NULL).
 * $1 queue, $2 locked_by, $3 lease ms, $4 default max_attempts, [$5..$7
 * the cursor's key], then the finished ids (an array). Literals: the
 * finished statement, the ids' parameter number, [cursor], picked's limit,
 * the claim's size. Columns: the plain claim's eight, then more, the
 * finished tasks recorded, whether the freed slots were rung.
 */
static const char handoff_claim_format[] =
    "WITH finished AS ("
    "  %s"
    "  WHERE id = ANY ($%d::bigint[])"
    "    AND locked_by = $2"
    "    AND (state || '') = 'running'"
    "  RETURNING 1),"
    " picked AS (" CLAIM_PICKED "),"
    " taken AS (SELECT id FROM picked LIMIT least(%d, (SELECT count(*) FROM finished))),"
    " claimed AS ("
    "  UPDATE pgwork.tasks t"
    CLAIM_SET_RUNNING
    "  WHERE t.id = ANY (ARRAY (SELECT id FROM taken))"
    CLAIM_RETURNING "),"
    " result AS ("
    "  SELECT (SELECT count(*) FROM picked) > (SELECT count(*) FROM taken) AS more,"
    "         (SELECT count(*) FROM finished) AS recorded,"
    "         CASE WHEN (SELECT count(*) FROM finished) > (SELECT count(*) FROM taken)"
    "              THEN pgwork.limit_ring($1) END AS rung)"
    " SELECT c.*, r.more, r.recorded, r.rung"
    " FROM result r LEFT JOIN claimed c ON true";

static const char handoff_done[] =
    "UPDATE pgwork.tasks SET state = 'done', finished_at = now(), locked_until = NULL";
static const char handoff_deleted[] = "DELETE FROM pgwork.tasks";
/* clang-format on */

/* A claim text built for *built_limit is still the one for limit; if not
 * it is freed, to be built again for limit. */
static bool claim_text_current(char **text, int *built_limit, int limit)
{
    if (*text != NULL && *built_limit == limit)
        return true;
    free(*text);
    *text = NULL;
    *built_limit = limit;
    return false;
}

const char *task_claim_sql(struct claim_state *claim, const struct queue_config *queue,
                           bool from_cursor)
{
    char **text = &claim->sql[from_cursor];
    int limit = task_claim_limit(claim, queue);
    if (claim_text_current(text, &claim->sql_limit[from_cursor], limit))
        return *text;
    claim->queue_name = queue->name;
    const char *cursor = from_cursor ? claim_from_cursor : "";
    int rate_count;
    int64_t rate_period_ms;
    int built = -1;
    if (!config_queue_limited(queue))
        built = asprintf(text, claim_sql_format, cursor, limit + 1, limit, limit);
    else if (config_rate_parse(queue->rate, &rate_count, &rate_period_ms) == 0) {
        int cap = queue->concurrency;
        int picked = cap > 0 && cap < limit ? cap + 1 : cap > 0 ? limit + 1 : limit;
        built = asprintf(text, limited_claim_format, cap, rate_count, (long long)rate_period_ms,
                         limit, queue->batch == QUEUE_BATCH_AUTO ? "true" : "false", cursor, picked,
                         rate_count, cap, rate_count, (long long)rate_period_ms);
    }
    if (built < 0) {
        log_error("out of memory building the claim of queue \"%s\"", queue->name);
        abort();
    }
    return *text;
}

int task_claim_limit(const struct claim_state *claim, const struct queue_config *queue)
{
    return claim->limit > 0 ? claim->limit : queue->batch;
}

void task_claim_rewind(struct claim_state *claim, const struct claim_state *saved)
{
    claim->cursor_set = saved->cursor_set;
    claim->priority = saved->priority;
    claim->run_at_us = saved->run_at_us;
    memcpy(claim->run_at, saved->run_at, sizeof(claim->run_at));
    claim->id = saved->id;
}

void task_claim_state_free(struct claim_state *claim)
{
    for (int from = 0; from < 2; from++) {
        free(claim->sql[from]);
        claim->sql[from] = NULL;
        free(claim->handoff_sql[from]);
        claim->handoff_sql[from] = NULL;
    }
}

static void batch_reserve(struct task_batch *batch, int n)
{
    if (batch->capacity >= n)
        return;
    struct claimed_task *tasks = realloc(batch->tasks, (size_t)n * sizeof(*tasks));
    if (tasks == NULL) {
        log_error("out of memory claiming %d tasks", n);
        abort();
    }
    batch->tasks = tasks;
    batch->capacity = n;
}

void task_batch_clear(struct task_batch *batch)
{
    for (int i = 0; i < batch->count; i++)
        free(batch->tasks[i].payload);
    batch->count = 0;
}

void task_batch_free(struct task_batch *batch)
{
    task_batch_clear(batch);
    free(batch->tasks);
    batch->tasks = NULL;
    batch->capacity = 0;
}

/* Is (priority, run_at_us, id) past the cursor's key? */
static bool cursor_before(const struct claim_state *cursor, int priority, int64_t run_at_us,
                          int64_t id)
{
    if (!cursor->cursor_set || priority != cursor->priority)
        return !cursor->cursor_set || priority > cursor->priority;
    if (run_at_us != cursor->run_at_us)
        return run_at_us > cursor->run_at_us;
    return id > cursor->id;
}

/* qsort: the queue's order (priority, run_at, id). */
static int claimed_order(const void *a, const void *b)
{
    const struct claimed_task *x = a, *y = b;
    if (x->priority != y->priority)
        return x->priority < y->priority ? -1 : 1;
    if (x->run_at_us != y->run_at_us)
        return x->run_at_us < y->run_at_us ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* A limited claim's budget (its last four columns, the same in every
 * row; limited_claim_format): what the limits let it take, when the rate
 * allows the next start, another pod's differing limits (warned of once),
 * whether the cap decided the take.
 * The rows it claimed: none when the one row has no id. */
static int task_limit_budget(const PGresult *res, struct claim_state *claim)
{
    int rows = PQntuples(res);
    if (rows == 0 || claim == NULL)
        return rows;
    claim->limit_take = atoi(PQgetvalue(res, 0, 8));
    claim->limit_wait_ms = strtoll(PQgetvalue(res, 0, 9), NULL, 10);
    claim->limit_cap_bound = PQgetvalue(res, 0, 11)[0] == 't';
    if (!PQgetisnull(res, 0, 10) && !claim->limits_warned) {
        claim->limits_warned = true;
        log_warn("queue \"%s\": another pod claims with other limits (%s); each pod enforces "
                 "its own against the shared count, so the largest holds for the total",
                 claim->queue_name != NULL ? claim->queue_name : "?", PQgetvalue(res, 0, 10));
    }
    return rows == 1 && PQgetisnull(res, 0, 0) ? 0 : rows;
}

enum claim_kind {
    CLAIM_PLAIN,   /* claim_sql_format */
    CLAIM_LIMITED, /* limited_claim_format */
    CLAIM_HANDOFF, /* handoff_claim_format */
};

/* A plain or limited claim's result, by its columns (the limited one
 * has its budget's four more). */
static enum claim_kind claim_kind_of(const PGresult *res)
{
    return PQnfields(res) > 11 ? CLAIM_LIMITED : CLAIM_PLAIN;
}

/* Copy claimed rows (id, payload, attempt, max_attempts, pickup_us, then
 * the key: priority, run_at as text and in microseconds; whether more were
 * waiting) into batch, and move the cursor (if any) to the greatest key:
 * the claim's RETURNING comes in no particular order. */
static int task_batch_fill(struct task_batch *batch, const PGresult *res,
                           struct claim_state *cursor, enum claim_kind kind)
{
    /* The plain claim's and the handoff's ninth column says whether it
     * left tasks behind; a limited claim has its budget there instead. The
     * handoff's one row has no id when it took nothing. */
    int rows = PQntuples(res);
    if (kind == CLAIM_LIMITED)
        rows = task_limit_budget(res, cursor);
    else if (kind == CLAIM_HANDOFF && rows == 1 && PQgetisnull(res, 0, 0))
        rows = 0;
    batch_reserve(batch, rows);
    batch->more = kind != CLAIM_LIMITED && PQntuples(res) > 0 && PQgetvalue(res, 0, 8)[0] == 't';
    for (int i = 0; i < rows; i++) {
        struct claimed_task *task = &batch->tasks[i];
        task->id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        task->payload = strdup(PQgetvalue(res, i, 1));
        task->attempt = atoi(PQgetvalue(res, i, 2));
        task->max_attempts = atoi(PQgetvalue(res, i, 3));
        task->pickup_us = strtoll(PQgetvalue(res, i, 4), NULL, 10);
        if (task->payload == NULL) {
            log_error("out of memory copying a payload");
            abort();
        }
        batch->count++;
        int priority = atoi(PQgetvalue(res, i, 5));
        int64_t run_at_us = strtoll(PQgetvalue(res, i, 7), NULL, 10);
        task->priority = priority;
        task->run_at_us = run_at_us;
        const char *run_at = PQgetvalue(res, i, 6);
        if (cursor != NULL && cursor_before(cursor, priority, run_at_us, task->id) &&
            strlen(run_at) < sizeof(cursor->run_at)) {
            cursor->cursor_set = true;
            cursor->priority = priority;
            cursor->run_at_us = run_at_us;
            cursor->id = task->id;
            memcpy(cursor->run_at, run_at, strlen(run_at) + 1);
        }
    }
    /* They run in the queue's order: the UPDATE returns them in the order
     * it found them (by id), and an urgent task must not wait behind its
     * batch-mates. */
    if (rows > 1) /* an empty claim may have no array at all: qsort wants one */
        qsort(batch->tasks, (size_t)rows, sizeof(*batch->tasks), claimed_order);
    return rows;
}

/* The statement for the claim's next round, and the cursor's key as its
 * last three parameters when it starts from the cursor. */
static const char *claim_statement(struct claim_state *claim, const struct queue_config *queue,
                                   char priority[16], char id[24], const char **key)
{
    if (!claim->cursor_set)
        return task_claim_sql(claim, queue, false);
    snprintf(priority, 16, "%d", claim->priority);
    snprintf(id, 24, "%" PRId64, claim->id);
    key[0] = priority;
    key[1] = claim->run_at;
    key[2] = id;
    return task_claim_sql(claim, queue, true);
}

/* $1 queue, $2 locked_by, $3 lease ms, $4 default max_attempts, then the
 * cursor's key. */
static const Oid claim_types[] = {OID_TEXT, OID_TEXT, OID_INT8, OID_INT4,
                                  OID_INT4, OID_TEXT, OID_INT8};

/* The claim's parameters as text, kept together while they are sent. */
struct claim_params {
    char lease[32], max_attempts[16], key_priority[16], key_id[24];
    const char *values[8]; /* and the handoff's finished ids */
    int count;
};

static const char *claim_prepare(struct claim_params *p, const struct queue_config *queue,
                                 const char *locked_by, int64_t lease_ms, struct claim_state *claim)
{
    snprintf(p->lease, sizeof(p->lease), "%" PRId64, lease_ms);
    snprintf(p->max_attempts, sizeof(p->max_attempts), "%d", queue->max_attempts);
    p->values[0] = queue->name;
    p->values[1] = locked_by;
    p->values[2] = p->lease;
    p->values[3] = p->max_attempts;
    p->count = claim->cursor_set ? 7 : 4;
    return claim_statement(claim, queue, p->key_priority, p->key_id, &p->values[4]);
}

/* The prepared name of the claim sql of queue, or NULL: limited queues'
 * claims (their budget's lock and count) are always sent unnamed; a
 * capped queue's handoff is prepared (task_send_handoff). */
static const char *claim_name(const struct queue_config *queue, const char *sql)
{
    return config_queue_limited(queue) ? NULL : claim_cache_name(sql);
}

const char *task_claim_ready(PGconn *conn, const struct queue_config *queue,
                             struct claim_state *claim, bool in_pipeline, const char **parse_sent)
{
    char priority[16], id[24];
    const char *key[3];
    const char *sql = claim_statement(claim, queue, priority, id, key);
    const char *name = claim_name(queue, sql);
    bool sent = false;
    int nparams = claim->cursor_set ? 7 : 4;
    if (name == NULL && !config_queue_limited(queue))
        name = in_pipeline ? claim_cache_send_prepare(conn, sql, nparams, claim_types, &sent)
                           : claim_cache_prepare(conn, sql, nparams, claim_types);
    if (parse_sent != NULL)
        *parse_sent = sent ? sql : NULL;
    return name != NULL ? claim_cache_settings() : dbconn_local();
}

int task_claim(PGconn *conn, const struct queue_config *queue, const char *locked_by,
               int64_t lease_ms, struct claim_state *claim, struct task_batch *batch)
{
    task_batch_clear(batch);
    const char *settings = task_claim_ready(conn, queue, claim, false, NULL);
    struct claim_params p = {0};
    const char *sql = claim_prepare(&p, queue, locked_by, lease_ms, claim);
    const char *name = claim_name(queue, sql);
    PGresult *res = name != NULL ? dbconn_exec_prepared(conn, settings, name, p.count, p.values)
                                 : dbconn_exec_params(conn, sql, p.count, claim_types, p.values);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        log_error("claim failed on queue \"%s\": %s", queue->name,
                  res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(conn));
        claim_cache_failed(res);
        PQclear(res);
        return -1;
    }
    int rows = task_batch_fill(batch, res, claim, claim_kind_of(res));
    PQclear(res);
    return rows;
}

int task_send_claim(PGconn *conn, const struct queue_config *queue, const char *locked_by,
                    int64_t lease_ms, struct claim_state *claim)
{
    struct claim_params p = {0};
    const char *sql = claim_prepare(&p, queue, locked_by, lease_ms, claim);
    const char *name = claim_name(queue, sql);
    int sent = name != NULL
                   ? PQsendQueryPrepared(conn, name, p.count, p.values, NULL, NULL, 0)
                   : PQsendQueryParams(conn, sql, p.count, claim_types, p.values, NULL, NULL, 0);
    return sent ? 0 : -1;
}

int task_batch_take(struct task_batch *batch, const PGresult *res, struct claim_state *claim)
{
    task_batch_clear(batch);
    return task_batch_fill(batch, res, claim, claim_kind_of(res));
}

const char *task_handoff_sql(struct claim_state *claim, const struct queue_config *queue)
{
    bool from_cursor = claim->cursor_set;
    char **text = &claim->handoff_sql[from_cursor];
    int limit = task_claim_limit(claim, queue);
    if (claim_text_current(text, &claim->handoff_limit[from_cursor], limit))
        return *text;
    if (asprintf(text, handoff_claim_format, queue->keep_done ? handoff_done : handoff_deleted,
                 from_cursor ? 8 : 5, from_cursor ? claim_from_cursor : "", limit + 1, limit) < 0) {
        log_error("out of memory building the claim of queue \"%s\"", queue->name);
        abort();
    }
    return *text;
}

int task_claim_handoff(PGconn *conn, const struct queue_config *queue, const char *locked_by,
                       int64_t lease_ms, struct claim_state *claim, const int64_t *finished,
                       int count, struct task_batch *batch)
{
    task_batch_clear(batch);
    char *ids = task_id_array(finished, count);
    if (ids == NULL) {
        log_error("out of memory recording finished tasks");
        return -1;
    }
    struct claim_params p = {0};
    claim_prepare(&p, queue, locked_by, lease_ms, claim);
    p.values[p.count] = ids;
    Oid types[8];
    memcpy(types, claim_types, (size_t)p.count * sizeof(Oid));
    types[p.count] = OID_INT8_ARRAY;
    const char *sql = task_handoff_sql(claim, queue);
    const char *name = claim_cache_name(sql);
    if (name == NULL)
        name = claim_cache_prepare(conn, sql, p.count + 1, types);
    PGresult *res = name != NULL ? dbconn_exec_prepared(conn, claim_cache_settings(), name,
                                                        p.count + 1, p.values)
                                 : dbconn_exec_params(conn, sql, p.count + 1, types, p.values);
    free(ids);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) == 0) {
        log_error("recording %d finished task%s and claiming on queue \"%s\" failed: %s", count,
                  count == 1 ? "" : "s", queue->name,
                  res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(conn));
        claim_cache_failed(res);
        PQclear(res);
        return -1;
    }
    int recorded = atoi(PQgetvalue(res, 0, 9));
    if (recorded < count)
        log_warn("queue \"%s\": %d of %d finished tasks were no longer ours (cancelled, or "
                 "their lease expired and they were requeued: they may run again)",
                 queue->name, count - recorded, count);
    int rows = task_batch_fill(batch, res, claim, CLAIM_HANDOFF);
    PQclear(res);
    return rows;
}

bool task_claim_full(const struct claim_state *claim, const struct queue_config *queue, int claimed)
{
    if (!config_queue_limited(queue))
        return claimed == task_claim_limit(claim, queue);
    return claimed > 0 && claimed == claim->limit_take;
}

void task_limit_ring(PGconn *conn, const struct queue_config *queue, enum task_ring how)
{
    if (queue->concurrency <= 0 || how == TASK_RING_NONE)
        return;
    const char *params[] = {queue->name};
    PGresult *res = dbconn_exec_params(conn,
                                       how == TASK_RING_NUDGE ? "SELECT pgwork.limit_nudge($1)"
                                                              : "SELECT pgwork.limit_ring($1)",
                                       1, text_types, params);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        log_warn("queue \"%s\": announcing a freed slot failed (other pods' waiting workers "
                 "wait for the next poll): %s",
                 queue->name, res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(conn));
    PQclear(res);
}
