/*
 * upkeep.c — the supervisor's statements on the listener's connection
 * (DESIGN §1.5, §2): lease renewals, requeues of a dead worker's tasks
 * (requeues.c), the poll, queue depth (depth.c), retention (retention.c
 * decides its pace), schedule ticks (ticks.c), the doorbell (doorbell.c),
 * limit readings (limits.c). Its own: the renewals, the poll and the
 * scheduler, a table of {due, send, on_result, on_end} entries (and a
 * refresh before due, for a job whose due time depends on state it reads).
 *
 * Invariants:
 *  - sends only when the listener asks (its connection is free, one
 *    statement at a time); the table upkeep_jobs decides which, in order of
 *    urgency: the first entry that is due goes, unless another due entry
 *    has waited UPKEEP_STARVE_MS for its turn (upkeep_turn) — a job due
 *    all the time never starves the rest;
 *  - lease renewals come first: a running task must never lose its lease
 *    because the connection was busy with anything else;
 *  - a requeue never holds up the others, the poll or the renewals (its
 *    FIFO and retry delays: requeues.c);
 *  - nothing sent waits on a row lock a task holds (SKIP LOCKED; the
 *    listener's session bounds everything else with lock_timeout and
 *    statement_timeout);
 *  - queue names and owners are parameters, never spliced into SQL.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upkeep.h"
#include "depth.h"
#include "doorbell.h"
#include "throughput.h"
#include "../shared/log.h"
#include "../shared/text.h"
#include "../shared/timeutil.h"

/* clang-format off */

/*
 * The poll. First requeue tasks whose lease expired (their pod is gone —
 * any pod does this, DESIGN §2; which of them was running is unknown, so
 * each keeps its attempts: pending, or dead when out of them; locked rows
 * are skipped — someone is changing them). Then one row per configured
 * queue:
 *   2  ms until its earliest pending task is due (<= 0: due now; NULL: none)
 *   3  how many of its tasks were just requeued (due now, but not visible
 *      to this statement's snapshot)
 *   4  how many tasks were requeued in all
 *   5  ms until its earliest task due later (NULL: none)
 *   6  ms until the earliest lease of any running task runs out (NULL:
 *      none): a dead pod's tasks are taken back then, not at the next
 *      safety poll
 *   7  the database's clock (ms since the epoch), for absolute due times
 *      in notifications
 *   8  whether the queue is paused (pgwork.paused_queues, migration 0011):
 *      what a lost pause or resume notification would have said
 *   9  ms until its earliest finished task passes its retention ($3, $4:
 *      retention and dead_retention in ms, 0 = kept; <= 0: one already
 *      has; a queue with none, one retention from now and at least 10 s;
 *      NULL: it keeps them) — the retention job's cue (retention.c), so an
 *      idle pod spends no statement of its own on it: first-entry probes of
 *      tasks_finished_idx (migration 0009)
 * One index probe per queue (tasks_poll_idx: `priority IS NOT NULL` is
 * always true and names that index, which the workers' claims cannot use —
 * migration 0004), one statement for all queues (DESIGN §1.5).
 */
static const char poll_sql[] =
    "WITH moved AS ("
    "  UPDATE pgwork.tasks t"
    "  SET state = CASE WHEN x.spent THEN 'dead' ELSE 'pending' END,"
    "      finished_at = CASE WHEN x.spent THEN now() END,"
    "      run_at = CASE WHEN x.spent THEN t.run_at ELSE now() END,"
    "      last_error = 'lease of ' || t.locked_by || ' expired (attempt ' || t.attempts || ')',"
    "      locked_until = NULL"
    "  FROM (SELECT r.id,"
    "               r.attempts >= coalesce(r.max_attempts,"
    "                                      (SELECT q.m FROM unnest($1::text[], $2::int[]) AS q(name, m)"
    "                                       WHERE q.name = r.queue),"
    "                                      2147483647) AS spent"
    "        FROM pgwork.tasks r WHERE r.state = 'running' AND r.locked_until < now()"
    "        FOR UPDATE SKIP LOCKED) x"
    "  WHERE t.id = x.id"
    "  RETURNING t.queue, x.spent AS dead)"
    " SELECT q.i,"
    "   ceil(extract(epoch FROM ("
    "     SELECT min(t.run_at) FROM pgwork.tasks t"
    "     WHERE t.queue = q.name AND t.state = 'pending' AND t.priority IS NOT NULL)"
    "     - now()) * 1000)::bigint,"
    "   (SELECT count(*) FROM moved m WHERE m.queue = q.name AND NOT m.dead),"
    "   (SELECT count(*) FROM moved),"
    "   ceil(extract(epoch FROM ("
    "     SELECT min(t.run_at) FROM pgwork.tasks t"
    "     WHERE t.queue = q.name AND t.state = 'pending' AND t.priority IS NOT NULL"
    "       AND t.run_at > now()) - now()) * 1000)::bigint,"
    "   ceil(extract(epoch FROM ("
    "     SELECT min(t.locked_until) FROM pgwork.tasks t WHERE t.state = 'running')"
    "     - now()) * 1000)::bigint,"
    "   floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint,"
    "   EXISTS (SELECT FROM pgwork.paused_queues p WHERE p.queue = q.name),"
    "   ceil(extract(epoch FROM least("
    "     CASE WHEN q.keep_ms > 0 THEN coalesce("
    "       (SELECT min(t.finished_at) FROM pgwork.tasks t"
    "        WHERE t.queue = q.name AND t.state = 'done') + q.keep_ms * interval '1 millisecond',"
    "       now() + greatest(q.keep_ms * interval '1 millisecond', interval '10 seconds')) END,"
    "     CASE WHEN q.dead_ms > 0 THEN coalesce("
    "       least((SELECT min(t.finished_at) FROM pgwork.tasks t"
    "              WHERE t.queue = q.name AND t.state = 'dead'),"
    "             (SELECT min(t.finished_at) FROM pgwork.tasks t"
    "              WHERE t.queue = q.name AND t.state = 'cancelled'))"
    "         + q.dead_ms * interval '1 millisecond',"
    "       now() + greatest(q.dead_ms * interval '1 millisecond', interval '10 seconds')) END)"
    "     - now()) * 1000)::bigint"
    " FROM unnest($1::text[], $3::bigint[], $4::bigint[]) WITH ORDINALITY"
    "   AS q(name, keep_ms, dead_ms, i)";

/* Leases of tasks our live workers are running: pushed forward, so a
 * long task keeps its lease while its worker lives. $1 = their locked_by
 * tags (text[]), $2 = lease in ms. A locked row is being finished by its
 * worker right now: skipped, not waited for. */
static const char renew_sql[] =
    "UPDATE pgwork.tasks SET locked_until = now() + $2 * interval '1 millisecond'"
    " WHERE id IN (SELECT id FROM pgwork.tasks"
    "              WHERE state = 'running' AND locked_by = ANY($1::text[])"
    "              FOR UPDATE SKIP LOCKED)";

/* clang-format on */

/* --- the queue lists every statement takes as parameters ---------------- */

/* Out of memory building the queue lists: try again this much later. */
#define UPKEEP_QUEUES_RETRY_MS 1000

/* The queue lists the statements take as parameters: a text[] literal of
 * the configured names, an int[] one of their max_attempts, in the same
 * order. Out of memory (PID 1 must not abort for it): the lists built
 * before stay (a HUP's new queues wait), or, at start, the statements that
 * need them are not sent; upkeep_send builds them again every
 * UPKEEP_QUEUES_RETRY_MS until it succeeds. */
static void upkeep_set_queues(struct upkeep *u, int64_t now)
{
    const struct pgwork_config *config = u->config;
    struct text_buffer names = {0}, max_attempts = {0}, keep = {0}, dead_keep = {0};
    for (int i = 0; i < config->queue_count; i++) {
        text_array_add_text(&names, config->queues[i].name);
        text_array_add_int64(&max_attempts, config->queues[i].max_attempts);
        text_array_add_int64(&keep, config->queues[i].retention_ms);
        text_array_add_int64(&dead_keep, config->queues[i].dead_retention_ms);
    }
    char *names_literal = text_array_end(&names);
    char *max_attempts_literal = text_array_end(&max_attempts);
    char *keep_literal = text_array_end(&keep);
    char *dead_keep_literal = text_array_end(&dead_keep);
    if (names_literal == NULL || max_attempts_literal == NULL || keep_literal == NULL ||
        dead_keep_literal == NULL) {
        free(names_literal);
        free(max_attempts_literal);
        free(keep_literal);
        free(dead_keep_literal);
        if (u->queues_retry_ms == 0)
            log_error("out of memory building the queue list; %s, trying again every %d ms",
                      u->queue_names != NULL ? "the previous list stays"
                                             : "no poll, requeue or depth query until then",
                      UPKEEP_QUEUES_RETRY_MS);
        u->queues_retry_ms = now + UPKEEP_QUEUES_RETRY_MS;
        return;
    }
    if (u->queues_retry_ms != 0)
        log_info("queue list built");
    u->queues_retry_ms = 0;
    free(u->queue_names);
    free(u->queue_max_attempts);
    free(u->queue_retention);
    free(u->queue_dead_retention);
    u->queue_names = names_literal;
    u->queue_max_attempts = max_attempts_literal;
    u->queue_retention = keep_literal;
    u->queue_dead_retention = dead_keep_literal;
}

/* --- lease renewals ----------------------------------------------------- */

static int64_t renew_due(const struct upkeep *u, int64_t now)
{
    (void)now;
    return u->renew_owners != NULL ? 0 : INT64_MAX;
}

static int renew_send(struct upkeep *u, PGconn *conn, int64_t now)
{
    (void)now;
    char lease[24];
    snprintf(lease, sizeof(lease), "%" PRId64, u->config->workers.lease_ms);
    const char *params[] = {u->renew_owners, lease};
    int sent = PQsendQueryParams(conn, renew_sql, 2, NULL, params, NULL, NULL, 0);
    free(u->renew_owners);
    u->renew_owners = NULL;
    return sent;
}

static void renew_on_result(struct upkeep *u, const PGresult *res, bool ok, int64_t now)
{
    (void)u;
    (void)now;
    if (!ok)
        log_error("lease renewal failed: %s", PQresultErrorMessage(res));
}

/* --- rings passed on ---------------------------------------------------- */

/* The queues' usual notification on the task channel, which every pod
 * hears (not a ring: nobody passes it on again). */
static const char pass_on_sql[] =
    "SELECT pg_notify(pgwork.notify_channel(), pgwork.notify_message(q, now()))"
    " FROM unnest($1::text[]) q";

static int64_t pass_on_due(const struct upkeep *u, int64_t now)
{
    (void)now;
    return u->pass_on.len > 0 || u->pass_on.failed ? 0 : INT64_MAX;
}

static int pass_on_send(struct upkeep *u, PGconn *conn, int64_t now)
{
    (void)now;
    char *names = text_array_end(&u->pass_on); /* takes the buffer's text, empties it */
    if (names == NULL) {
        log_error("out of memory passing a ring on (the tasks wait for a pod's poll)");
        return -1;
    }
    const char *params[] = {names};
    int sent = PQsendQueryParams(conn, pass_on_sql, 1, NULL, params, NULL, NULL, 0);
    free(names);
    return sent;
}

static void pass_on_on_result(struct upkeep *u, const PGresult *res, bool ok, int64_t now)
{
    (void)u;
    (void)now;
    if (!ok)
        log_warn("passing a ring on failed (the tasks wait for a pod's poll): %s",
                 PQresultErrorMessage(res));
}

void upkeep_pass_on(struct upkeep *u, int q)
{
    text_array_add_text(&u->pass_on, u->config->queues[q].name);
}

/* --- requeues of a dead worker's tasks (requeues.c) --------------------- */

static int64_t stop_backend_due(const struct upkeep *u, int64_t now)
{
    return requeues_stop_due(&u->requeues, now);
}

static int stop_backend_send(struct upkeep *u, PGconn *conn, int64_t now)
{
    return requeues_stop_send(&u->requeues, conn, now);
}

static void stop_backend_on_result(struct upkeep *u, const PGresult *res, bool ok, int64_t now)
{
    requeues_stop_on_result(&u->requeues, res, ok, now);
}

/* Both requeue jobs' statements: what was not done keeps its place. */
static void requeues_job_on_end(struct upkeep *u)
{
    requeues_on_end(&u->requeues);
}

static int64_t requeue_due(const struct upkeep *u, int64_t now)
{
    return requeues_due(&u->requeues, now);
}

static int requeue_send(struct upkeep *u, PGconn *conn, int64_t now)
{
    return requeues_send(&u->requeues, conn, now, u->queue_names, u->queue_max_attempts);
}

static void requeue_on_result(struct upkeep *u, const PGresult *res, bool ok, int64_t now)
{
    /* A task that ended dead also freed a slot of its queue, which may be
     * capped (queue.concurrency): tasks held back by the cap may go now. */
    if (requeues_on_result(&u->requeues, res, ok, now))
        u->callbacks.on_sweep(u->ctx);
}

/* --- the poll ----------------------------------------------------------- */

/* Sweeps, the earliest lease to run out, the interval (safety poll while
 * LISTENing, poll_interval otherwise). */
static int64_t poll_due(const struct upkeep *u, int64_t now)
{
    (void)now;
    if (u->config->queue_count == 0)
        return INT64_MAX;
    if (u->sweep_requested)
        return 0;
    if (u->lease_due_ms != 0 && u->lease_due_ms < u->poll_due_ms)
        return u->lease_due_ms;
    return u->poll_due_ms;
}

static int poll_send(struct upkeep *u, PGconn *conn, int64_t now)
{
    const char *params[] = {u->queue_names, u->queue_max_attempts, u->queue_retention,
                            u->queue_dead_retention};
    u->sweep_requested = false;
    u->lease_due_ms = 0;
    u->poll_due_ms =
        now + (listener_is_listening(u->listener) ? u->config->workers.safety_poll_interval_ms
                                                  : u->config->workers.poll_interval_ms);
    return PQsendQueryParams(conn, poll_sql, 4, NULL, params, NULL, NULL, 0);
}

static void poll_on_result(struct upkeep *u, const PGresult *res, bool ok, int64_t now)
{
    u->schema_ok = ok;
    if (!ok) {
        log_error("poll query failed (is the schema migrated? run `pgwork migrate`): %s",
                  PQresultErrorMessage(res));
        return;
    }
    int rows = PQntuples(res);
    if (rows > 0) {
        listener_clock_sample(u->listener, strtoll(PQgetvalue(res, 0, 6), NULL, 10), u->sent_ms,
                              now);
        /* The earliest lease to run out, ours included (renewed, it just
         * moves on): +1, `locked_until < now()` is strict. */
        u->lease_due_ms = 0;
        if (!PQgetisnull(res, 0, 5)) {
            long long ms = strtoll(PQgetvalue(res, 0, 5), NULL, 10);
            u->lease_due_ms = now + (ms > 0 ? ms : 0) + 1;
        }
    }
    bool aging = false;  /* some queue deletes its finished tasks */
    int64_t aged_ms = 0; /* the earliest of them passes its retention in this */
    for (int r = 0; r < rows; r++) {
        if (!PQgetisnull(res, r, 8)) {
            long long ms = strtoll(PQgetvalue(res, r, 8), NULL, 10);
            if (!aging || ms < aged_ms)
                aged_ms = ms;
            aging = true;
        }
    }
    retention_on_poll(&u->retention, aging, aged_ms, now);
    for (int r = 0; r < rows; r++) {
        int index = atoi(PQgetvalue(res, r, 0)) - 1; /* ORDINALITY starts at 1 */
        if (index < 0 || index >= u->config->queue_count)
            continue;
        if (r == 0 && atoll(PQgetvalue(res, r, 3)) > 0)
            log_warn("took back %s task(s) whose lease expired (requeued, or dead when out of "
                     "attempts): their worker or pod is gone",
                     PQgetvalue(res, r, 3));
        /* Before the hints: a paused queue's workers are not woken, a
         * resumed one's are. */
        u->callbacks.on_paused(u->ctx, index, strcmp(PQgetvalue(res, r, 7), "t") == 0);
        bool due = atoll(PQgetvalue(res, r, 2)) > 0 ||
                   (!PQgetisnull(res, r, 1) && strtoll(PQgetvalue(res, r, 1), NULL, 10) <= 0);
        if (due)
            u->callbacks.on_task_hint(u->ctx, index, 0);
        /* The next task due later, so the supervisor's timer always knows
         * it: a timer holds one due time per queue, and every firing runs
         * this poll again, which finds the next one. */
        if (!PQgetisnull(res, r, 4)) {
            long long later = strtoll(PQgetvalue(res, r, 4), NULL, 10);
            u->callbacks.on_task_hint(u->ctx, index, later > 0 ? later : 1);
        }
    }
}

/* --- queue depth (depth.c) ------------------------------------------- */

static int64_t depth_job_due(const struct upkeep *u, int64_t now)
{
    (void)now;
    return u->depth_requested && u->config->queue_count > 0 ? 0 : INT64_MAX;
}

static int depth_job_send(struct upkeep *u, PGconn *conn, int64_t now)
{
    (void)now;
    u->depth_requested = false;
    return depth_send(conn, u->queue_names);
}

static void depth_job_on_result(struct upkeep *u, const PGresult *res, bool ok, int64_t now)
{
    if (!ok) {
        log_error("queue depth query failed: %s", PQresultErrorMessage(res));
        return;
    }
    depth_read(&u->depth, res, now);
}

/* --- schedules' ticks (ticks.c) ------------------------------------------- */

static int64_t ticks_job_due(const struct upkeep *u, int64_t now)
{
    int64_t offset;
    bool known = listener_db_clock_offset(u->listener, &offset);
    return u->ticks != NULL ? ticks_due(u->ticks, now, known, offset) : INT64_MAX;
}

static int ticks_job_send(struct upkeep *u, PGconn *conn, int64_t now)
{
    int64_t offset;
    listener_db_clock_offset(u->listener, &offset);
    return ticks_send(u->ticks, conn, now, offset);
}

static void ticks_job_on_result(struct upkeep *u, const PGresult *res, bool ok, int64_t now)
{
    int64_t db_ms;
    ticks_on_result(u->ticks, res, ok, now, &db_ms);
    if (db_ms != 0)
        listener_clock_sample(u->listener, db_ms, u->sent_ms, now);
}

static void ticks_job_on_end(struct upkeep *u)
{
    if (u->ticks != NULL)
        ticks_on_end(u->ticks);
}

/* --- retention (retention.c) ------------------------------------------- */

static int64_t retention_job_due(const struct upkeep *u, int64_t now)
{
    (void)now;
    return u->config->queue_count > 0 ? retention_due(&u->retention) : INT64_MAX;
}

static int retention_job_send(struct upkeep *u, PGconn *conn, int64_t now)
{
    (void)now;
    return retention_send(conn, u->queue_names, u->queue_retention, u->queue_dead_retention);
}

static void retention_job_on_result(struct upkeep *u, const PGresult *res, bool ok, int64_t now)
{
    retention_on_result(&u->retention, res, ok, now);
}

/* --- limited queues (limits.c): with the depth, while something scrapes -- */

static int64_t limits_due(const struct upkeep *u, int64_t now)
{
    (void)now;
    for (int i = 0; u->limits_requested && i < u->config->queue_count; i++)
        if (config_queue_limited(&u->config->queues[i]))
            return 0;
    return INT64_MAX;
}

static int limits_send(struct upkeep *u, PGconn *conn, int64_t now)
{
    (void)now;
    u->limits_requested = false;
    /* Out of memory: NULL lists, no rows (the next scrape tries again). */
    char *params[4];
    limits_params(u->config, params);
    int sent =
        PQsendQueryParams(conn, limits_sql, 4, NULL, (const char *const *)params, NULL, NULL, 0);
    limits_params_free(params);
    return sent;
}

static void limits_on_result(struct upkeep *u, const PGresult *res, bool ok, int64_t now)
{
    if (!ok)
        log_error("limited queues query failed: %s", PQresultErrorMessage(res));
    else if (limits_read(&u->limits, res, now) != 0)
        log_error("limited queues query: unexpected result or out of memory");
}

/* --- the doorbell (doorbell.c: this pod's arms, their probes) ------------ */

static void doorbell_job_refresh(struct upkeep *u, int64_t now)
{
    if (u->doorbell != NULL)
        doorbell_refresh(u->doorbell, now);
}

static int64_t doorbell_job_due(const struct upkeep *u, int64_t now)
{
    return u->doorbell != NULL ? doorbell_due(u->doorbell, now) : INT64_MAX;
}

static int doorbell_job_send(struct upkeep *u, PGconn *conn, int64_t now)
{
    return doorbell_send(u->doorbell, conn, now);
}

static void doorbell_job_on_result(struct upkeep *u, const PGresult *res, bool ok, int64_t now)
{
    doorbell_on_result(u->doorbell, res, ok, now);
}

static void doorbell_job_on_end(struct upkeep *u)
{
    doorbell_on_end(u->doorbell);
}

/* --- finished per minute (throughput.c), only when something finished --- */

static int64_t throughput_job_due(const struct upkeep *u, int64_t now)
{
    return u->throughput != NULL ? throughput_due(u->throughput, now) : INT64_MAX;
}

static int throughput_job_send(struct upkeep *u, PGconn *conn, int64_t now)
{
    return throughput_send(u->throughput, conn, now);
}

static void throughput_job_on_result(struct upkeep *u, const PGresult *res, bool ok, int64_t now)
{
    throughput_on_result(u->throughput, res, ok, now);
}

static void throughput_job_on_end(struct upkeep *u)
{
    if (u->throughput != NULL)
        throughput_on_end(u->throughput);
}

/* --- the scheduler ------------------------------------------------------ */

struct upkeep_job {
    /* Before due is asked: read what the job's due time depends on from
     * elsewhere (the doorbell: the workers' states); NULL = nothing. */
    void (*refresh)(struct upkeep *u, int64_t now);
    /* When it is due, given the time now (<= now: send it; INT64_MAX:
     * nothing to do). Changes nothing. */
    int64_t (*due)(const struct upkeep *u, int64_t now);
    /* Send it on conn (PQsendQuery*); 0 when libpq refused, < 0 when
     * nothing was due after all (the next job's turn). */
    int (*send)(struct upkeep *u, PGconn *conn, int64_t now);
    /* One of its results; ok: the statement succeeded. */
    void (*on_result)(struct upkeep *u, const PGresult *res, bool ok, int64_t now);
    /* Its statement is over (all results in, or the connection went);
     * NULL = nothing to forget. */
    void (*on_end)(struct upkeep *u);
    /* It takes the queue lists: not sent while there are none. */
    bool needs_queues;
};

/* In order of urgency: the first one due is sent (upkeep_turn: unless
 * one has been kept waiting). */
static const struct upkeep_job upkeep_jobs[] = {
    {.due = renew_due, .send = renew_send, .on_result = renew_on_result},
    {.due = pass_on_due, .send = pass_on_send, .on_result = pass_on_on_result},
    {.due = ticks_job_due,
     .send = ticks_job_send,
     .on_result = ticks_job_on_result,
     .on_end = ticks_job_on_end},
    {.refresh = doorbell_job_refresh,
     .due = doorbell_job_due,
     .send = doorbell_job_send,
     .on_result = doorbell_job_on_result,
     .on_end = doorbell_job_on_end},
    {.due = stop_backend_due,
     .send = stop_backend_send,
     .on_result = stop_backend_on_result,
     .on_end = requeues_job_on_end},
    {.due = requeue_due,
     .send = requeue_send,
     .on_result = requeue_on_result,
     .on_end = requeues_job_on_end,
     .needs_queues = true},
    {.due = poll_due, .send = poll_send, .on_result = poll_on_result, .needs_queues = true},
    {.due = depth_job_due,
     .send = depth_job_send,
     .on_result = depth_job_on_result,
     .needs_queues = true},
    {.due = throughput_job_due,
     .send = throughput_job_send,
     .on_result = throughput_job_on_result,
     .on_end = throughput_job_on_end},
    {.due = retention_job_due,
     .send = retention_job_send,
     .on_result = retention_job_on_result,
     .needs_queues = true},
    {.due = limits_due, .send = limits_send, .on_result = limits_on_result},
};

#define UPKEEP_JOBS ((int)(sizeof(upkeep_jobs) / sizeof(upkeep_jobs[0])))
_Static_assert(UPKEEP_JOBS <= UPKEEP_JOB_SLOTS, "UPKEEP_JOB_SLOTS too small");

int upkeep_turn(const int64_t *due, int64_t *waiting_since, int count, int64_t now)
{
    int first = -1, longest = -1;
    for (int j = 0; j < count; j++) {
        if (due[j] > now) {
            waiting_since[j] = INT64_MAX;
            continue;
        }
        if (first < 0)
            first = j;
        if (waiting_since[j] != INT64_MAX && now - waiting_since[j] >= UPKEEP_STARVE_MS &&
            (longest < 0 || waiting_since[j] < waiting_since[longest]))
            longest = j;
    }
    int turn = first == 0 || longest < 0 ? first : longest;
    /* The others due were passed over now, if not before. */
    for (int j = 0; j < count; j++)
        if (j == turn)
            waiting_since[j] = INT64_MAX;
        else if (due[j] <= now && waiting_since[j] == INT64_MAX)
            waiting_since[j] = now;
    return turn;
}

/* Job j can be sent at all (its parameters exist). */
static bool upkeep_job_ready(const struct upkeep *u, int j)
{
    return !upkeep_jobs[j].needs_queues || u->queue_names != NULL;
}

static int upkeep_send(void *ctx, PGconn *conn, int64_t now)
{
    struct upkeep *u = ctx;
    if (u->queues_retry_ms != 0 && now >= u->queues_retry_ms)
        upkeep_set_queues(u, now);
    int64_t due[UPKEEP_JOBS];
    for (int j = 0; j < UPKEEP_JOBS; j++) {
        due[j] = INT64_MAX;
        if (!upkeep_job_ready(u, j))
            continue;
        if (upkeep_jobs[j].refresh != NULL)
            upkeep_jobs[j].refresh(u, now);
        due[j] = upkeep_jobs[j].due(u, now);
    }
    for (;;) {
        int j = upkeep_turn(due, u->waiting_since, UPKEEP_JOBS, now);
        if (j < 0)
            return 0;
        u->in_flight = j + 1;
        u->sent_ms = now;
        int sent = upkeep_jobs[j].send(u, conn, now);
        if (sent >= 0)
            return sent ? 1 : -1;
        /* Nothing was due after all: the next one's turn. */
        u->in_flight = 0;
        due[j] = INT64_MAX;
    }
}

static void upkeep_on_result(void *ctx, const PGresult *res, int64_t now)
{
    struct upkeep *u = ctx;
    ExecStatusType status = PQresultStatus(res);
    bool ok = status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK;
    if (u->in_flight > 0)
        upkeep_jobs[u->in_flight - 1].on_result(u, res, ok, now);
}

/* Complete or not (the connection went), nothing is in flight any more;
 * what was not done stays due (a requeue keeps its place). */
static void upkeep_on_end(void *ctx)
{
    struct upkeep *u = ctx;
    int j = u->in_flight - 1;
    u->in_flight = 0;
    if (j >= 0 && upkeep_jobs[j].on_end != NULL)
        upkeep_jobs[j].on_end(u);
}

static int64_t upkeep_next_due(const void *ctx, int64_t now)
{
    const struct upkeep *u = ctx;
    int64_t next = u->queues_retry_ms != 0 ? u->queues_retry_ms : INT64_MAX;
    for (int j = 0; j < UPKEEP_JOBS; j++) {
        if (!upkeep_job_ready(u, j))
            continue;
        int64_t due = upkeep_jobs[j].due(u, now);
        if (due < next)
            next = due;
    }
    return next;
}

/* --- API ---------------------------------------------------------------- */

void upkeep_refresh(struct upkeep *u, int64_t now)
{
    /* Only when upkeep_next_due is asked: the connection is free. */
    if (!listener_is_free(u->listener))
        return;
    for (int j = 0; j < UPKEEP_JOBS; j++)
        if (upkeep_job_ready(u, j) && upkeep_jobs[j].refresh != NULL)
            upkeep_jobs[j].refresh(u, now);
}

void upkeep_init(struct upkeep *u, const struct pgwork_config *config, struct listener *l,
                 const struct upkeep_callbacks *callbacks, void *ctx)
{
    memset(u, 0, sizeof(*u));
    u->config = config;
    u->listener = l;
    u->callbacks = *callbacks;
    u->ctx = ctx;
    requeues_init(&u->requeues);
    for (int j = 0; j < UPKEEP_JOB_SLOTS; j++)
        u->waiting_since[j] = INT64_MAX;
    upkeep_set_queues(u, time_now_ms());
    retention_init(&u->retention, time_now_ms());
    static const struct listener_client client = {
        .send = upkeep_send,
        .on_result = upkeep_on_result,
        .on_end = upkeep_on_end,
        .next_due = upkeep_next_due,
    };
    listener_set_client(l, &client, u);
}

void upkeep_set_config(struct upkeep *u, const struct pgwork_config *config)
{
    u->config = config;
    upkeep_set_queues(u, time_now_ms());
    u->sweep_requested = true;
}

void upkeep_set_ticks(struct upkeep *u, struct ticks *ticks)
{
    u->ticks = ticks;
}

void upkeep_requeue_owner(struct upkeep *u, const char *locked_by, int64_t running_task, int slot,
                          int32_t backend_pid)
{
    requeues_add(&u->requeues, locked_by, running_task, slot, backend_pid);
}

void upkeep_set_doorbell(struct upkeep *u, struct doorbell *doorbell)
{
    u->doorbell = doorbell;
}

void upkeep_set_throughput(struct upkeep *u, struct throughput *throughput)
{
    u->throughput = throughput;
}

int upkeep_pending_requeues(const struct upkeep *u)
{
    return requeues_count(&u->requeues);
}

void upkeep_renew_leases(struct upkeep *u, char *owners)
{
    free(u->renew_owners);
    u->renew_owners = owners;
}

void upkeep_request_sweep(struct upkeep *u)
{
    u->sweep_requested = true;
}

void upkeep_want_depth(struct upkeep *u, int64_t now)
{
    if (u->depth.fetched_ms == 0 || now - u->depth.fetched_ms >= UPKEEP_DEPTH_MAX_AGE_MS) {
        u->depth_requested = true;
        u->limits_requested = true;
    }
}

const struct limits_reading *upkeep_limits(const struct upkeep *u)
{
    return &u->limits;
}

const struct depth_reading *upkeep_depth(const struct upkeep *u)
{
    return &u->depth;
}

const struct retention *upkeep_retention(const struct upkeep *u)
{
    return &u->retention;
}

bool upkeep_schema_ok(const struct upkeep *u)
{
    return u->schema_ok;
}

void upkeep_free(struct upkeep *u)
{
    requeues_free(&u->requeues);
    free(u->queue_names);
    free(u->queue_max_attempts);
    free(u->queue_retention);
    free(u->queue_dead_retention);
    free(u->renew_owners);
    text_free(&u->pass_on);
    depth_free(&u->depth);
    limits_free(&u->limits);
    memset(u, 0, sizeof(*u));
    requeues_init(&u->requeues);
}
