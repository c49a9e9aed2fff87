/*
 * doorbell.c — this pod's arms in pgwork.doorbell (DESIGN §1.8).
 *
 * Invariants:
 *  - a queue is armed in the database only while this pod serves it, is
 *    LISTENing on the connection the row names, and has an idle worker
 *    for it that nobody woke yet (pool_idle_for), and it is not held off
 *    by a storm (rung twice within DOORBELL_STORM_GAP_MS: disarmed, its
 *    idle workers fed by probes every hold, armed again once tasks slow
 *    down, DOORBELL_HOLD_*); producers never write the table, the pod
 *    disarms itself;
 *  - one write every DOORBELL_WRITE_INTERVAL_MS at most on average (two
 *    at once: a storm's disarm right after an arm), naming only the
 *    queues whose row differs from what is wanted (every queue after a
 *    reconnect or reload): a worker that goes idle and is woken again
 *    before the write goes costs nothing;
 *  - after a write that armed a queue has committed, that queue is probed
 *    once: a task committed while it was disarmed rang nobody;
 *  - and probed again, with backoff, until every transaction older than
 *    that probe's own xid has ended: one that inserted before the arm
 *    committed rang nobody either, and was invisible to the probe (the
 *    watch below; nothing when none was running, the idle case);
 *  - a worker going idle while its queue is unarmed tells the supervisor
 *    (shm_queue.arm_wanted), so the arm follows at once; the handshake is
 *    the wake-up one (seq_cst on both sides, shm.h);
 *  - queue names and the pod tag are parameters, never spliced into SQL.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "doorbell.h"
#include "listener.h"
#include "pool.h"
#include "../shared/log.h"
#include "../shared/text.h"
#include "../shared/timeutil.h"

enum doorbell_statement {
    STATEMENT_NONE = 0,
    STATEMENT_WRITE,   /* arms and disarms */
    STATEMENT_PROBE,   /* queues just armed: anything due? */
    STATEMENT_CLEANUP, /* dead pods' rows */
    STATEMENT_OOM,     /* out of memory building one: a SELECT 1 instead */
};

/* clang-format off */

/*
 * This pod's rows: $1 = pod tag, $2/$3 = queues and whether each is armed,
 * $4 = a full write (a new connection or a reload): then this pod's rows
 * of queues it no longer serves go, and so do every dead pod's rows. The
 * channel and backend are this connection's, where the listener LISTENs
 * on 'pgwork_ring_<pid>' (listener.c).
 */
static const char write_sql[] =
    "WITH gone AS ("
    "  DELETE FROM pgwork.doorbell d"
    "  WHERE $4 AND ((d.pod = $1 AND d.queue <> ALL ($2::text[]))"
    "                OR (d.pod <> $1 AND NOT pgwork.doorbell_alive(d.backend_pid, d.backend_start))))"
    " INSERT INTO pgwork.doorbell AS d"
    "   (queue, pod, channel, backend_pid, backend_start, armed, changed_at)"
    " SELECT w.queue, $1, 'pgwork_ring_' || pg_backend_pid(), pg_backend_pid(),"
    "        (SELECT a.backend_start FROM pg_stat_get_activity(pg_backend_pid()) a),"
    "        w.armed, now()"
    " FROM unnest($2::text[], $3::boolean[]) AS w(queue, armed)"
    " ON CONFLICT (queue, pod) DO UPDATE"
    "   SET channel = excluded.channel, backend_pid = excluded.backend_pid,"
    "       backend_start = excluded.backend_start, armed = excluded.armed,"
    "       changed_at = excluded.changed_at";

/* The queues just armed ($1): one due now (2), the next one due later, in
 * ms (3). One probe of tasks_poll_idx each, as the poll (upkeep.c). And
 * the probe's own snapshot's xmin (4, the same statement, so what it
 * saw): every transaction below it has ended, and it sees their commits.
 * After an arm ($2), an xid of its own (5), assigned after the arm
 * committed: newer than any producer's that missed the arm (the watch,
 * doorbell_watch). Only then: it costs a commit record (not flushed:
 * the transaction wrote nothing else) and an xid, one an arm at most. */
static const char probe_sql[] =
    "SELECT q.name,"
    "   EXISTS (SELECT 1 FROM pgwork.tasks t"
    "           WHERE t.queue = q.name AND t.state = 'pending' AND t.priority IS NOT NULL"
    "             AND t.run_at <= now()),"
    "   ceil(extract(epoch FROM ("
    "     SELECT min(t.run_at) FROM pgwork.tasks t"
    "     WHERE t.queue = q.name AND t.state = 'pending' AND t.priority IS NOT NULL"
    "       AND t.run_at > now()) - now()) * 1000)::bigint,"
    "   pg_snapshot_xmin(pg_current_snapshot())::text,"
    "   CASE WHEN $2::boolean THEN pg_current_xact_id()::text END"
    " FROM unnest($1::text[]) AS q(name)";

/* Rows whose listener backend is gone: a pod that died. */
static const char cleanup_sql[] =
    "DELETE FROM pgwork.doorbell d"
    " WHERE NOT pgwork.doorbell_alive(d.backend_pid, d.backend_start)";

/* clang-format on */

/* The per-queue arrays, freed and forgotten (count 0). */
static void doorbell_free_arrays(struct doorbell *d)
{
    free(d->want);
    free(d->rows);
    free(d->sent);
    free(d->probe);
    free(d->probing);
    free(d->hold);
    free(d->last_ring_ms);
    d->want = d->rows = d->sent = NULL;
    d->probe = d->probing = NULL;
    d->hold = NULL;
    d->last_ring_ms = NULL;
    d->count = 0;
}

static void doorbell_alloc(struct doorbell *d, int count)
{
    doorbell_free_arrays(d);
    size_t n = count > 0 ? (size_t)count : 1;
    d->want = calloc(n, 1);
    d->rows = malloc(n);
    d->sent = malloc(n);
    d->probe = calloc(n, sizeof(bool));
    d->probing = calloc(n, sizeof(bool));
    d->hold = calloc(n, sizeof(*d->hold));
    d->last_ring_ms = calloc(n, sizeof(int64_t));
    if (d->want == NULL || d->rows == NULL || d->sent == NULL || d->probe == NULL ||
        d->probing == NULL || d->hold == NULL || d->last_ring_ms == NULL) {
        /* PID 1 keeps going: without arms, producers notify nobody and the
         * safety poll finds their tasks. */
        log_error("out of memory for the doorbell; tasks wait for the safety poll");
        doorbell_free_arrays(d);
        return;
    }
    memset(d->rows, DOORBELL_UNKNOWN, n);
    memset(d->sent, DOORBELL_UNKNOWN, n);
    d->count = count;
    d->full = true;
}

void doorbell_init(struct doorbell *d, const struct doorbell_setup *setup)
{
    memset(d, 0, sizeof(*d));
    d->setup = *setup;
    d->serving = true;
    d->cleanup_due_ms =
        time_now_ms() + DOORBELL_CLEANUP_POLLS * setup->config->workers.safety_poll_interval_ms;
    doorbell_alloc(d, setup->config->queue_count);
}

void doorbell_set_config(struct doorbell *d, const struct pgwork_config *config,
                         const int *queue_slots)
{
    d->setup.config = config;
    d->setup.queue_slots = queue_slots;
    /* A result still in flight concerns the old queue order: drop it. */
    d->in_flight = STATEMENT_NONE;
    doorbell_alloc(d, config->queue_count);
    /* Every queue is armed and probed afresh (full): a new watch. */
    d->watch_xid = 0;
    d->probe_watch = false;
}

void doorbell_set_serving(struct doorbell *d, bool serving)
{
    d->serving = serving;
}

/* Queues may be armed (and held ones probed): this pod LISTENs and takes
 * work. A quiet or stopping pod neither arms nor probes. */
static bool doorbell_can_arm(const struct doorbell *d)
{
    return d->pid != 0 && d->serving;
}

/* Held queue q waits for its next hold probe: this pod takes work, an
 * idle worker waits on q, and no probe of q is pending. The one test for
 * both doorbell_read_workers (which marks the probe) and doorbell_hold_due
 * (when it is due): were they to differ, a hold probe due and never
 * marked would make every call due, with nothing to send. */
static bool doorbell_hold_waiting(const struct doorbell *d, int q)
{
    return d->hold[q].ms > 0 && !d->probe[q] && !d->probing[q] && doorbell_can_arm(d) &&
           pool_idle_for(d->setup.pool, q);
}

/*
 * What is wanted now, from the workers' states. A queue with no idle
 * worker asks its workers to say when one goes idle (arm_wanted = 1), then
 * looks again: a worker that went IDLE before the flag was set is seen by
 * the second look, one that goes IDLE after it sees the flag (seq_cst on
 * both sides, as the wake-up handshake in shm.h).
 */
static void doorbell_read_workers(struct doorbell *d, int64_t now)
{
    const struct listener *l = d->setup.listener;
    int32_t pid = listener_is_listening(l) ? listener_backend_pid(l) : 0;
    if (pid != d->pid) {
        /* A new connection (or none): what the rows say is this one's to
         * write; the old backend's rows are skipped by the trigger. */
        d->pid = pid;
        memset(d->rows, DOORBELL_UNKNOWN, (size_t)d->count);
        memset(d->probe, 0, (size_t)d->count * sizeof(bool));
        d->full = true;
        /* Its arms' fresh probes watch anew, with newer xids. */
        d->watch_xid = 0;
        d->probe_watch = false;
    }
    bool can_arm = doorbell_can_arm(d);
    for (int q = 0; q < d->count; q++) {
        struct shm_queue *queue = &d->setup.shm->queues[d->setup.queue_slots[q]];
        bool idle = can_arm && pool_idle_for(d->setup.pool, q);
        if (can_arm && !idle) {
            atomic_store(&queue->arm_wanted, 1);
            idle = pool_idle_for(d->setup.pool, q);
        }
        if (idle || !can_arm)
            atomic_store(&queue->arm_wanted, 0);
        struct doorbell_hold *hold = &d->hold[q];
        /* Held off by a storm: a probe instead of the arm, once a hold. */
        if (doorbell_hold_waiting(d, q) && now >= hold->next_ms) {
            d->probe[q] = true;
            /* Now, not at the watch's next wait (doorbell_watch). */
            if (d->probe_due_ms > now)
                d->probe_due_ms = now;
            d->stats.hold_probes++;
        }
        d->want[q] = idle && hold->ms == 0 ? DOORBELL_ARMED : DOORBELL_DISARMED;
    }
}

static bool doorbell_write_wanted(const struct doorbell *d)
{
    if (d->pid == 0)
        return false;
    if (d->full)
        return true;
    for (int q = 0; q < d->count; q++)
        if (d->want[q] != d->rows[q])
            return true;
    return false;
}

static bool doorbell_probe_wanted(const struct doorbell *d)
{
    for (int q = 0; q < d->count; q++)
        if (d->probe[q])
            return true;
    return false;
}

/* The watch's wait is over: its probe of every armed queue joins probe[]
 * (with what a hold or an arm put there), sent once probe_due_ms allows. */
static void doorbell_watch_fire(struct doorbell *d, int64_t now)
{
    if (d->watch_xid == 0 || d->watch_due_ms > now)
        return;
    bool any = false;
    for (int q = 0; q < d->count; q++)
        if (d->rows[q] == DOORBELL_ARMED)
            d->probe[q] = any = true;
    if (!any) {
        /* Nothing armed to miss: a queue armed later is probed afresh,
         * with a newer xid, which starts a watch of its own. */
        d->watch_xid = 0;
        return;
    }
    d->probe_watch = true;
    d->watch_due_ms = INT64_MAX;
    d->stats.reprobes++;
}

/* The next hold probe of a held queue an idle worker waits on. */
static int64_t doorbell_hold_due(const struct doorbell *d)
{
    int64_t next = INT64_MAX;
    for (int q = 0; q < d->count; q++)
        if (d->hold[q].next_ms < next && doorbell_hold_waiting(d, q))
            next = d->hold[q].next_ms;
    return next;
}

void doorbell_refresh(struct doorbell *d, int64_t now)
{
    /* Not while a statement is out: its result may change what is held. */
    if (d->count == 0 || d->in_flight != STATEMENT_NONE)
        return;
    doorbell_read_workers(d, now);
    if (d->pid != 0)
        doorbell_watch_fire(d, now);
}

int64_t doorbell_due(const struct doorbell *d, int64_t now)
{
    (void)now; /* the due times were read and marked by doorbell_refresh */
    if (d->count == 0 || d->in_flight != STATEMENT_NONE || d->pid == 0)
        return INT64_MAX;
    int64_t next = INT64_MAX;
    if (doorbell_write_wanted(d))
        next = d->write_due_ms;
    if (d->watch_xid != 0 && d->watch_due_ms < next)
        next = d->watch_due_ms;
    /* Probes only on what the database holds: after the write lands. */
    if (doorbell_probe_wanted(d) && d->probe_due_ms < next)
        next = d->probe_due_ms;
    int64_t hold = doorbell_hold_due(d);
    if (hold < next)
        next = hold;
    if (d->cleanup_due_ms < next)
        next = d->cleanup_due_ms;
    return next;
}

static int doorbell_send_write(struct doorbell *d, PGconn *conn, int64_t now)
{
    struct text_buffer names = {0}, armed = {0};
    for (int q = 0; q < d->count; q++) {
        d->sent[q] = DOORBELL_UNKNOWN;
        if (!d->full && d->want[q] == d->rows[q])
            continue;
        d->sent[q] = d->want[q];
        text_array_add_text(&names, d->setup.config->queues[q].name);
        text_append(&armed, armed.len == 0 ? "{" : ",", 1);
        text_append(&armed, d->want[q] == DOORBELL_ARMED ? "t" : "f", 1);
    }
    text_append(&armed, armed.len == 0 ? "{}" : "}", armed.len == 0 ? 2 : 1);
    char *names_literal = text_array_end(&names);
    char *armed_literal = text_take(&armed);
    int sent;
    if (names_literal != NULL && armed_literal != NULL) {
        const char *params[] = {d->setup.pod_tag, names_literal, armed_literal,
                                d->full ? "t" : "f"};
        sent = PQsendQueryParams(conn, write_sql, 4, NULL, params, NULL, NULL, 0);
        d->in_flight = STATEMENT_WRITE;
    } else {
        /* Something must go: nothing sent would read as a broken
         * connection. */
        log_error("out of memory building the doorbell's write; trying again");
        sent = PQsendQuery(conn, "SELECT 1");
        d->in_flight = STATEMENT_OOM;
    }
    free(names_literal);
    free(armed_literal);
    /* The rate limit, with room for one write more at once (GCRA): a
     * storm's disarm need not wait out the interval after its arm, while
     * writes stay one an interval over any stretch of time. */
    d->write_tat_ms = (d->write_tat_ms > now ? d->write_tat_ms : now) + DOORBELL_WRITE_INTERVAL_MS;
    d->write_due_ms = d->write_tat_ms - DOORBELL_WRITE_INTERVAL_MS;
    return sent;
}

static int doorbell_send_probe(struct doorbell *d, PGconn *conn, int64_t now)
{
    struct text_buffer names = {0};
    for (int q = 0; q < d->count; q++) {
        d->probing[q] = d->probe[q];
        if (d->probe[q])
            text_array_add_text(&names, d->setup.config->queues[q].name);
        d->probe[q] = false;
    }
    char *names_literal = text_array_end(&names);
    if (names_literal == NULL) {
        log_error("out of memory building the doorbell's probe; trying again");
        for (int q = 0; q < d->count; q++)
            d->probe[q] = d->probe[q] || d->probing[q];
        d->probe_due_ms = now + DOORBELL_RETRY_MS;
        d->in_flight = STATEMENT_OOM;
        return PQsendQuery(conn, "SELECT 1");
    }
    const char *params[] = {names_literal, d->probe_fresh ? "t" : "f"};
    int sent = PQsendQueryParams(conn, probe_sql, 2, NULL, params, NULL, NULL, 0);
    free(names_literal);
    d->in_flight = STATEMENT_PROBE;
    d->probing_fresh = d->probe_fresh;
    d->probe_fresh = false;
    d->probing_watch = d->probe_watch;
    d->probe_watch = false;
    return sent;
}

int doorbell_send(struct doorbell *d, PGconn *conn, int64_t now)
{
    /* The write first: a disarm saves producers their notify lock, an arm
     * is what a waiting worker needs; the probe only after it. */
    if (doorbell_write_wanted(d) && d->write_due_ms <= now)
        return doorbell_send_write(d, conn, now);
    if (doorbell_probe_wanted(d) && d->probe_due_ms <= now)
        return doorbell_send_probe(d, conn, now);
    /* Only when due: whatever else made the doorbell due is gone (a
     * worker woken since), and a cleanup in its place, each time, would
     * be a loop. */
    if (d->cleanup_due_ms > now)
        return DOORBELL_NOTHING_SENT;
    d->cleanup_due_ms =
        now + DOORBELL_CLEANUP_POLLS * d->setup.config->workers.safety_poll_interval_ms;
    d->in_flight = STATEMENT_CLEANUP;
    return PQsendQuery(conn, cleanup_sql);
}

/* A statement failed: logged once until one succeeds again. */
static void doorbell_failed(struct doorbell *d, const char *what, const PGresult *res)
{
    d->stats.failures++;
    if (!d->failing)
        log_error("doorbell %s failed (is the schema migrated? run `pgwork migrate`); idle "
                  "workers wait for the safety poll meanwhile; trying again every %d ms: %s",
                  what, DOORBELL_RETRY_MS, PQresultErrorMessage(res));
    d->failing = true;
}

static void doorbell_write_done(struct doorbell *d, const PGresult *res, bool ok, int64_t now)
{
    if (!ok) {
        doorbell_failed(d, "write", res);
        d->write_due_ms = now + DOORBELL_RETRY_MS;
        return;
    }
    if (d->failing)
        log_info("doorbell written again");
    d->failing = false;
    d->full = false;
    d->stats.writes++;
    for (int q = 0; q < d->count; q++) {
        if (d->sent[q] == DOORBELL_UNKNOWN)
            continue;
        if (d->sent[q] == DOORBELL_ARMED && d->rows[q] != DOORBELL_ARMED) {
            /* Committed: every insert from now on sees the arm. One that
             * committed before it rang nobody — probe. */
            d->probe[q] = true;
            d->probe_fresh = true;
            d->probe_due_ms = now;
            d->stats.arms++;
        } else if (d->sent[q] == DOORBELL_DISARMED && d->rows[q] == DOORBELL_ARMED) {
            d->stats.disarms++;
        }
        d->rows[q] = d->sent[q];
        d->sent[q] = DOORBELL_UNKNOWN;
    }
}

/* The tasks this pod's workers claimed from queue q so far. */
static uint64_t doorbell_claimed(const struct doorbell *d, int q)
{
    return atomic_load_explicit(&d->setup.shm->queues[d->setup.queue_slots[q]].tasks_claimed,
                                memory_order_relaxed);
}

/* A probe of held queue q came back (found: a task is due). The storm goes
 * on while tasks keep coming, DOORBELL_HOLD_STORM_TASKS or more in each
 * DOORBELL_HOLD_QUIET_MS (claimed by the workers, busy ones included, or
 * found due): the hold grows. Fewer — a pause, or tasks far enough apart
 * that a ring each is cheap — end it, and the queue is armed again. */
static void doorbell_hold_probed(struct doorbell *d, int q, bool found, int64_t now)
{
    struct doorbell_hold *hold = &d->hold[q];
    if (hold->ms == 0)
        return;
    uint64_t claimed = doorbell_claimed(d, q);
    uint64_t tasks = claimed - hold->mark_claimed + (found ? 1 : 0);
    if (now - hold->mark_ms < DOORBELL_HOLD_QUIET_MS || tasks >= DOORBELL_HOLD_STORM_TASKS) {
        if (now - hold->mark_ms >= DOORBELL_HOLD_QUIET_MS) {
            /* A window full of tasks: still a storm, the next window. */
            hold->mark_ms = now;
            hold->mark_claimed = claimed;
            hold->ms = hold->ms * 2 < DOORBELL_HOLD_MAX_MS ? hold->ms * 2 : DOORBELL_HOLD_MAX_MS;
        }
        hold->next_ms = now + hold->ms;
        return;
    }
    hold->last_ms = hold->ms;
    hold->ended_ms = now;
    hold->ms = 0;
    log_debug("doorbell: queue %s quiet after its storm: armed again",
              d->setup.config->queues[q].name);
}

/*
 * The watch: the long-transaction race. A producer's trigger reads the
 * doorbell with a snapshot of its own, taken at the INSERT (read
 * committed: the lookup is VOLATILE, migration 0008), after its
 * transaction got its xid (the rows were written first). If that lookup
 * missed the arm, the xid X was assigned before the arm committed, hence
 * before the fresh probe after it assigned its own xid P: X < P (xids are
 * handed out in order). The probe's snapshot does not tell X is running:
 * its xmax is the newest ended xid + 1 (GetSnapshotData), and a running
 * X at or above it is in neither its list nor its xmin — X newer than
 * the arm's own xid, say. P bounds it: once a later probe's xmin has
 * reached P, X has ended and that probe (same snapshot) saw its task.
 * So while a fresh probe's xmin is below its P the armed queues are
 * probed again: DOORBELL_REPROBE_MIN_MS, doubling; when the next wait
 * would reach the safety poll's interval the watch ends, that poll
 * covering what is left just as well. A fresh probe while a watch runs
 * raises its P but not its wait back to the minimum: with writers always
 * running (xmin < P almost always) a watch costs some log2(safety poll /
 * 10 ms) probes (13 for 60 s), not one every 10 ms. Only the watch's own
 * probes (every armed queue, doorbell_watch_fire) advance or end it; a
 * hold's probe, of held queues only, does neither. REPEATABLE READ
 * producers, whose snapshot may predate their xid, are handled by the
 * trigger (migration 0015). Producers that began after the arm saw it
 * and rang.
 */
static void doorbell_watch(struct doorbell *d, uint64_t xmin, uint64_t xid, int64_t now)
{
    bool fresh = d->probing_fresh && xid != 0 && xmin < xid;
    bool watched = d->probing_watch && d->watch_xid != 0;
    d->probing_fresh = false;
    d->probing_watch = false;
    if (fresh && d->watch_xid == 0) {
        d->watch_xid = xid;
        d->watch_delay_ms = DOORBELL_REPROBE_MIN_MS;
        d->watch_due_ms = now + d->watch_delay_ms;
        return;
    }
    if (fresh && xid > d->watch_xid)
        d->watch_xid = xid;
    if (!watched)
        return;
    d->watch_delay_ms *= 2;
    if (xmin >= d->watch_xid ||
        d->watch_delay_ms >= d->setup.config->workers.safety_poll_interval_ms) {
        d->watch_xid = 0;
        return;
    }
    d->watch_due_ms = now + d->watch_delay_ms;
}

static void doorbell_probe_done(struct doorbell *d, const PGresult *res, bool ok, int64_t now)
{
    if (!ok) {
        /* Again later (doorbell_on_end puts back what was probing). */
        doorbell_failed(d, "probe", res);
        d->probe_due_ms = now + DOORBELL_RETRY_MS;
        return;
    }
    d->failing = false;
    d->stats.probes++;
    if (PQntuples(res) > 0 && PQnfields(res) >= 5)
        doorbell_watch(d, strtoull(PQgetvalue(res, 0, 3), NULL, 10),
                       PQgetisnull(res, 0, 4) ? 0 : strtoull(PQgetvalue(res, 0, 4), NULL, 10), now);
    else
        doorbell_watch(d, 0, 0, now);
    for (int r = 0; r < PQntuples(res); r++) {
        int q = config_find_queue(d->setup.config, PQgetvalue(res, r, 0));
        if (q < 0)
            continue;
        bool found = strcmp(PQgetvalue(res, r, 1), "t") == 0;
        if (d->probing[q])
            doorbell_hold_probed(d, q, found, now);
        if (found) {
            d->stats.probe_finds++;
            d->setup.on_task_due(d->setup.ctx, q, 0);
        }
        if (!PQgetisnull(res, r, 2)) {
            long long later = strtoll(PQgetvalue(res, r, 2), NULL, 10);
            d->setup.on_task_due(d->setup.ctx, q, later > 0 ? later : 1);
        }
    }
    memset(d->probing, 0, (size_t)d->count * sizeof(bool));
}

void doorbell_on_result(struct doorbell *d, const PGresult *res, bool ok, int64_t now)
{
    switch (d->in_flight) {
    case STATEMENT_WRITE:
        doorbell_write_done(d, res, ok, now);
        break;
    case STATEMENT_PROBE:
        doorbell_probe_done(d, res, ok, now);
        break;
    case STATEMENT_CLEANUP:
        if (!ok) {
            doorbell_failed(d, "cleanup", res);
        } else {
            long long n = atoll(PQcmdTuples((PGresult *)res));
            d->stats.cleaned += (uint64_t)n;
            if (n > 0)
                log_info("doorbell: deleted %lld row(s) of pods whose listener is gone", n);
        }
        break;
    default:
        break;
    }
}

void doorbell_on_end(struct doorbell *d)
{
    /* What is still marked as in flight had no (good) result: a write's
     * rows are unknown, a probe is due again. */
    if (d->in_flight == STATEMENT_WRITE)
        for (int q = 0; q < d->count; q++)
            if (d->sent[q] != DOORBELL_UNKNOWN) {
                d->rows[q] = DOORBELL_UNKNOWN;
                d->sent[q] = DOORBELL_UNKNOWN;
            }
    if (d->in_flight == STATEMENT_PROBE) {
        for (int q = 0; q < d->count; q++)
            if (d->probing[q])
                d->probe[q] = true;
        d->probe_fresh = d->probe_fresh || d->probing_fresh;
        d->probing_fresh = false;
        d->probe_watch = d->probe_watch || d->probing_watch;
        d->probing_watch = false;
    }
    memset(d->probing, 0, (size_t)d->count * sizeof(bool));
    d->in_flight = STATEMENT_NONE;
}

void doorbell_rung(struct doorbell *d, int q, int64_t now)
{
    if (q < 0 || q >= d->count)
        return;
    struct doorbell_hold *hold = &d->hold[q];
    if (hold->ms == 0 && d->last_ring_ms[q] != 0 &&
        now - d->last_ring_ms[q] < DOORBELL_STORM_GAP_MS) {
        /* A storm: held disarmed. One that only paused starts where it
         * left off, not at the shortest hold. */
        int64_t ms = DOORBELL_HOLD_MIN_MS;
        if (hold->ended_ms != 0 && now - hold->ended_ms < DOORBELL_HOLD_MEMORY_MS)
            ms = hold->last_ms;
        hold->ms = ms > DOORBELL_HOLD_MIN_MS ? ms : DOORBELL_HOLD_MIN_MS;
        hold->next_ms = now + hold->ms;
        hold->mark_ms = now;
        hold->mark_claimed = doorbell_claimed(d, q);
        d->stats.storms++;
        log_debug("doorbell: queue %s rung in a storm: held disarmed, probed every %" PRId64
                  " ms while a worker idles",
                  d->setup.config->queues[q].name, hold->ms);
    }
    d->last_ring_ms[q] = now;
}

bool doorbell_armed(const struct doorbell *d, int q)
{
    return q >= 0 && q < d->count && d->rows[q] == DOORBELL_ARMED;
}

struct doorbell_stats doorbell_stats(const struct doorbell *d)
{
    return d->stats;
}

void doorbell_free(struct doorbell *d)
{
    doorbell_free_arrays(d);
    memset(d, 0, sizeof(*d));
}
