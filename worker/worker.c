/*
 * worker.c — the worker process (DESIGN §1): one database connection, one
 * eventfd to sleep on, the queues it serves, the drain. Its state and the
 * steps the other files build on are in worker_internal.h; running a batch
 * a task at a time and recording outcomes is worker_run.c's, the sql
 * handler's batches in one transaction sql_batch.c's.
 *
 * Invariants:
 *  - it never runs a query because it was woken: only a queue hint that
 *    differs from the last one it drained leads to a claim (so a spurious
 *    wake-up costs nothing, and one notification costs one claim);
 *  - it drains a queue until a claim returns a short batch (DESIGN §1.3),
 *    and asks the supervisor for help when a claim returns a full one;
 *  - before sleeping it announces IDLE and then re-reads the hints
 *    (DESIGN §1.4; the handshake is explained in shm.h);
 *  - a task it claimed is always either finished, failed, or released back
 *    to pending before the worker exits on its own; when it dies instead,
 *    the supervisor requeues by locked_by, and the lease is the last resort;
 *  - it writes only its own shm slot, and queue counters/requests with
 *    atomics.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "worker.h"
#include "claim_cache.h"
#include "handler.h"
#include "sql_batch.h"
#include "task.h"
#include "worker_internal.h"
#include "../shared/dbconn.h"
#include "../shared/log.h"
#include "../shared/timeutil.h"

/* A drain claims from its cursor at most this long before it claims from
 * the start again (worker_drain_queue). */
#define WORKER_CURSOR_RESTART_MS 100

bool worker_serves_queue(int slot, const struct queue_config *queue)
{
    return queue->workers == 0 || slot < queue->workers;
}

static void worker_set_state(struct worker *w, enum worker_state state)
{
    /* seq_cst: see the handshake in shm.h (IDLE must be visible before the
     * hints are re-read). The idle-mask bit is set before IDLE and cleared
     * after any other state, so an IDLE worker is always findable. */
    unsigned slot = (unsigned)w->args->slot;
    if (state == WORKER_IDLE) {
        shm_idle_mark(w->args->shm, slot, 1);
        atomic_store(&w->self->state, (int)state);
    } else {
        atomic_store(&w->self->state, (int)state);
        shm_idle_mark(w->args->shm, slot, 0);
    }
}

void worker_heartbeat(struct worker *w)
{
    atomic_store_explicit(&w->self->heartbeat_ms, time_now_ms(), memory_order_relaxed);
}

static void worker_notify_supervisor(struct worker *w)
{
    uint64_t one = 1;
    /* The eventfd counter cannot overflow in practice; EAGAIN would mean the
     * supervisor already has a wake-up pending, which is all we need. */
    if (write(w->args->request_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_warn("cannot wake the supervisor: %s", strerror(errno));
}

/* The current claim returned a full batch: more work is likely waiting. */
void worker_request_help(struct worker *w, int queue_index)
{
    atomic_store(&w->args->shm->queues[queue_index].help_wanted, 1);
    worker_notify_supervisor(w);
}

/* Tell the supervisor's timer about a retry due in delay_ms (DESIGN §1.6). */
void worker_schedule_retry(struct worker *w, int queue_index, int64_t delay_ms)
{
    _Atomic int64_t *due = &w->args->shm->queues[queue_index].retry_due_ms;
    /* The database set run_at = now() + delay, with now() taken before
     * this moment; +1 ms absorbs our clock's truncation to milliseconds, so
     * the supervisor's timer never fires before the task is due. */
    int64_t at = time_now_ms() + delay_ms + 1;
    int64_t current = atomic_load(due);
    while (current == 0 || at < current) {
        if (atomic_compare_exchange_weak(due, &current, at))
            break;
    }
    worker_notify_supervisor(w);
}

/* Exit when the database is gone; the supervisor restarts us with backoff. */
void worker_check_connection(struct worker *w)
{
    if (PQstatus(w->conn) != CONNECTION_OK) {
        log_error("lost the database connection: %s", PQerrorMessage(w->conn));
        exit(WORKER_EXIT_ERROR);
    }
}

/* Wait until the finished tasks are written: before any other statement. */
void worker_flush_completions(struct worker *w)
{
    if (task_completions_flush(w->conn, &w->completions) != 0)
        worker_check_connection(w);
}

/* Non-blocking look at the signal and death fds between tasks. */
void worker_poll_control(struct worker *w)
{
    handler_env_poll_signals(&w->env);
    handler_env_check_parent(&w->env);
}

static bool worker_stopping(const struct worker *w)
{
    return w->env.stop_requested || w->env.abort_requested;
}

/* Stopping, or the pod was made quiet (TSTP): claim and start nothing. */
bool worker_holding_back(const struct worker *w)
{
    return worker_stopping(w) || atomic_load(&w->args->shm->header->quiet) != 0;
}

/* The queue is paused (shm.h): claim nothing, start nothing more. */
bool worker_queue_paused(const struct worker *w, const struct served_queue *sq)
{
    return atomic_load(&w->args->shm->queues[sq->index].paused) != 0;
}

/* Was task id cancelled while this worker held it (shm.h: cancel_ids)? */
bool worker_task_cancelled(const struct worker *w, int64_t id)
{
    for (int i = 0; i < SHM_CANCEL_IDS; i++)
        if (atomic_load(&w->self->cancel_ids[i]) == id)
            return true;
    return false;
}

static bool worker_env_is_cancelled(void *arg, int64_t id)
{
    return worker_task_cancelled(arg, id);
}

/*
 * A guarded statement waits and the signalfd is readable (dbconn's
 * interrupt): read the signals; if a task whose statement may be running
 * now was cancelled — the task run() runs, or any task of a batch in its
 * one transaction (which can no longer commit) — ask the server to cancel
 * the statement, once. PQcancel blocks for a moment (it connects to the
 * server); the statement then fails, and its task ends as cancelled.
 */
static void worker_on_db_interrupt(PGconn *conn, void *arg)
{
    struct worker *w = arg;
    handler_env_poll_signals(&w->env);
    if (w->statement_cancelled)
        return;
    bool hit = w->env.cancel_requested;
    for (int i = 0; !hit && w->batch_in_transaction && i < w->batch.count; i++)
        hit = worker_task_cancelled(w, w->batch.tasks[i].id);
    if (!hit)
        return;
    w->statement_cancelled = true;
    char err[256];
    PGcancel *cancel = PQgetCancel(conn);
    if (cancel == NULL || !PQcancel(cancel, err, sizeof(err)))
        log_warn("cannot cancel the statement of a cancelled task: %s",
                 cancel == NULL ? "no cancel handle" : err);
    PQfreeCancel(cancel);
}

static PGconn *worker_connect(const struct worker *w);

/* Make w->conn the connection everything uses, and publish its backend
 * pid: if this worker dies mid statement, the supervisor stops that
 * backend before it requeues. */
static void worker_adopt_connection(struct worker *w)
{
    atomic_store(&w->self->backend_pid, (int32_t)PQbackendPID(w->conn));
    w->env.conn = w->conn;
    claim_cache_connected(w->conn); /* nothing is prepared on it yet */
}

/* A fresh connection, in place of one whose server session may be in any
 * state. Nothing may be claimed or in flight on the old one. */
static void worker_reconnect(struct worker *w)
{
    PQfinish(w->conn);
    w->conn = worker_connect(w);
    if (w->conn == NULL)
        exit(WORKER_EXIT_ERROR); /* the supervisor restarts us with backoff */
    worker_adopt_connection(w);
}

/*
 * A claim failed (logged where it failed) and nothing was claimed. A lost
 * connection ends the worker as ever. Otherwise the failure is counted
 * (/readyz fails while claims keep failing), the worker reconnects —
 * whatever its server session held is gone (behind PgBouncer: a recycled
 * server connection, a statement it lacks) — and asks to be woken for the
 * queue again after a growing delay: its tasks do not wait for the next
 * notification or safety poll, and a claim that keeps failing is not
 * retried in a hot loop. Never a reason to retire the worker.
 */
static void worker_claim_failed(struct worker *w, struct served_queue *sq)
{
    worker_check_connection(w);
    uint64_t failures =
        atomic_fetch_add_explicit(&w->self->claim_failures, 1, memory_order_relaxed) + 1;
    worker_reconnect(w);
    int64_t delay = backoff_delay_ms(w->config->workers.restart_delay_min_ms,
                                     w->config->workers.restart_delay_max_ms,
                                     failures > 30 ? 30 : (int)failures, random_unit());
    log_warn("queue \"%s\": %" PRIu64 " claim%s failed in a row; reconnected, trying again in "
             "%" PRId64 " ms",
             sq->queue->name, failures, failures == 1 ? "" : "s", delay);
    worker_schedule_retry(w, sq->index, delay);
}

/*
 * The holders of a capped queue's slots (issue 14 item 3). Every claim,
 * handoff or not, costs the database about as much whatever it carries
 * (measured: 0.2 ms, plus 22 µs a task), and a worker's claims of a
 * capped queue carry at most its share of the cap. When the tasks are
 * short, a share runs in less time than its statement takes, and four
 * workers holding 13 slots each of a cap of 50 ran at half the uncapped
 * rate; two holding 25 each, 0.7 to 0.9 of it. So a capped queue that
 * hands its slots on (worker_hands_off) is held by no more of the pod's
 * workers than it needs for a share to take about WORKER_HOLDER_SHARE_US:
 * the cap times the median task time over that, at least 2 (one holder's
 * statement runs while the other's tasks do), and every serving worker
 * for slow tasks. Each holder stores the count its own task times say
 * (shm_queue.cap_holders) before each claim; 0 until one has timed
 * enough tasks, and 0 at once when a task runs WORKER_HANDOFF_MS or more
 * (a batch of short tasks turned slow must not run on two workers while
 * the others could take the slots it frees).
 * A worker marks the queue it holds in its shm slot for the length of a
 * drain (shm_worker.cap_holding; a holder without progress for
 * WORKER_HANDOFF_MS is not counted): one that finds the holders full passes
 * the queue by (its hint taken as seen) and flags it, and the next holder
 * whose drain ends asks for help for it; a holder that finds more holders
 * than wanted and ranks after them (slots are the order) ends its drain:
 * its freed slots are rung, and the remaining holders' next claim —
 * under the lock, at once, as their share grew (worker_claim_taken) —
 * takes them.
 */
#define WORKER_HOLDER_SHARE_US 2000

/* The queue's drain hands its slots on from batch to batch (what
 * worker_claim_taken allows a handoff for): a cap, no rate, batch =
 * "auto", tasks run one at a time. */
static bool worker_hands_off(const struct served_queue *sq)
{
    const struct queue_config *queue = sq->queue;
    return queue->concurrency > 0 && queue->rate[0] == '\0' && queue->batch == QUEUE_BATCH_AUTO &&
           sq->handler->send_in_transaction == NULL;
}

/* The pod's workers that serve the queue. */
static int worker_serving(const struct worker *w, const struct served_queue *sq)
{
    return config_queue_serving(sq->queue, w->config->workers.count);
}

/* How many workers share the cap's slots: the holders wanted, or every
 * worker that serves the queue. */
static int worker_cap_sharers(const struct worker *w, const struct served_queue *sq)
{
    int serving = worker_serving(w, sq);
    if (!worker_hands_off(sq))
        return serving;
    int holders = (int)atomic_load_explicit(&w->args->shm->queues[sq->index].cap_holders,
                                            memory_order_relaxed);
    return holders > 0 && holders < serving ? holders : serving;
}

/* The holders a task time calls for (see above), at most `serving`. */
static int64_t worker_holders_for(int64_t cap, int64_t task_us, int64_t serving)
{
    int64_t wanted = (cap * task_us + WORKER_HOLDER_SHARE_US - 1) / WORKER_HOLDER_SHARE_US;
    return wanted < 2 ? 2 : wanted > serving ? serving : wanted;
}

/* Store the holders this worker's median task time calls for (0: every
 * serving worker): more at once, fewer only once the median is a third
 * below what the current count needs — a median near a step (measured:
 * no-op tasks of 10 to 60 µs) must not move the shares at every claim,
 * each move a claim under the lock. */
static void worker_publish_holders(struct worker *w, const struct served_queue *sq)
{
    int64_t median_us = batch_size_median_us(&sq->sizing);
    if (median_us < 0)
        return;
    int64_t serving = worker_serving(w, sq);
    int64_t cap = sq->queue->concurrency;
    _Atomic uint32_t *shared = &w->args->shm->queues[sq->index].cap_holders;
    uint32_t published = atomic_load_explicit(shared, memory_order_relaxed);
    int64_t holding = published == 0 || published > serving ? serving : published;
    int64_t more = worker_holders_for(cap, median_us, serving);
    int64_t fewer = worker_holders_for(cap, median_us * 3 / 2, serving);
    int64_t holders = more > holding ? more : fewer < holding ? fewer : holding;
    uint32_t value = holders >= serving ? 0 : (uint32_t)holders;
    if (value != published)
        atomic_store_explicit(shared, value, memory_order_relaxed);
}

void worker_cap_task_ran(struct worker *w, const struct served_queue *sq, int64_t elapsed_us)
{
    if (elapsed_us >= WORKER_HANDOFF_MS * 1000 && worker_hands_off(sq))
        atomic_store_explicit(&w->args->shm->queues[sq->index].cap_holders, 0,
                              memory_order_relaxed);
}

/* The other workers holding queue index's slots: all of them, or those
 * in slots before this one. */
static int worker_cap_holding(const struct worker *w, int index, bool before_only)
{
    const struct shm *shm = w->args->shm;
    int slots = before_only ? w->args->slot : (int)shm->header->worker_capacity;
    int64_t now = time_now_ms();
    int count = 0;
    for (int i = 0; i < slots; i++) {
        const struct shm_worker *other = &shm->workers[i];
        /* One that made no progress for WORKER_HANDOFF_MS (a task that
         * hangs, a statement that waits) holds its slots but hands none
         * on: it does not count, so another worker takes its place. */
        if (i != w->args->slot && atomic_load(&other->cap_holding) == index + 1 &&
            now - atomic_load_explicit(&other->heartbeat_ms, memory_order_relaxed) <
                WORKER_HANDOFF_MS)
            count++;
    }
    return count;
}

/* Before a drain of sq: may this worker hold its slots? (It may, but for
 * a queue whose holders are full.) */
static bool worker_cap_enter(struct worker *w, const struct served_queue *sq)
{
    if (!worker_hands_off(sq))
        return true;
    struct shm_queue *shared_queue = &w->args->shm->queues[sq->index];
    int holders = worker_cap_sharers(w, sq);
    if (worker_cap_holding(w, sq->index, false) >= holders) {
        atomic_store(&shared_queue->cap_passed, 1);
        /* Counted again after the flag: a holder that left before it saw
         * the flag is seen gone here (shm_queue.cap_passed). */
        if (worker_cap_holding(w, sq->index, false) >= holders)
            return false;
    }
    atomic_store(&w->self->cap_holding, sq->index + 1);
    return true;
}

/* Within a drain, before a claim: more hold the queue than wanted, and
 * this worker ranks after as many as are wanted. */
static bool worker_cap_yield(const struct worker *w, const struct served_queue *sq)
{
    return worker_hands_off(sq) &&
           worker_cap_holding(w, sq->index, true) >= worker_cap_sharers(w, sq);
}

/* The drain of sq ended: its slots are no longer held here; a worker
 * that passed the queue by is helped in. */
static void worker_cap_leave(struct worker *w, const struct served_queue *sq)
{
    if (atomic_load(&w->self->cap_holding) == 0)
        return;
    atomic_store(&w->self->cap_holding, 0);
    if (atomic_exchange(&w->args->shm->queues[sq->index].cap_passed, 0) != 0)
        worker_request_help(w, sq->index);
}

/*
 * The size of an auto batch's next claim. A capped queue's that runs a
 * task at a time is at most the worker's share of the cap (the cap over
 * the pod's workers that serve the queue, rounded up): with the whole free
 * cap in one claim, one worker would hand all the slots from batch to
 * batch (task_claim_handoff) and the pod's other workers would find the
 * cap full. The sql path's batch is one transaction, and one of the whole
 * cap costs least (measured, test limits/capped_claims_take_the_free_slots:
 * in shares, 2,000 tasks capped at 50 took 168 claims instead of 59 and
 * twice the time).
 */
static int worker_auto_limit(const struct worker *w, const struct served_queue *sq)
{
    int limit = batch_size_limit(&sq->sizing);
    int cap = sq->queue->concurrency;
    if (cap <= 0 || sq->handler->send_in_transaction != NULL)
        return limit;
    int holders = worker_cap_sharers(w, sq);
    int share = holders > 1 ? (cap + holders - 1) / holders : cap;
    return limit < share ? limit : share;
}

void worker_claim_begin(struct worker *w, struct served_queue *sq, struct claim_round *round)
{
    struct shm_queue *shared_queue = &w->args->shm->queues[sq->index];
    /* Read the hint before claiming: a notification that arrives during
     * the claim changes it again and brings us back here. Moved arrivals
     * mean tasks that may sort before the cursor (new, retried, requeued):
     * claim from the start. (Help requests move only the hint: a backlog
     * being drained by several workers keeps their cursors.) */
    uint64_t arrivals = atomic_load(&shared_queue->arrivals);
    if (arrivals != sq->seen_arrivals) {
        sq->seen_arrivals = arrivals;
        sq->claim.cursor_set = false;
    }
    /* A busy pod is disarmed (the doorbell, DESIGN §1.8): a task that
     * sorts before the cursor may arrive without a notification. The
     * drain starts from the beginning again every so often, so such a
     * task waits at most that long, not for the whole backlog. */
    int64_t now = time_now_ms();
    if (sq->claim.cursor_set && now - sq->from_start_ms >= WORKER_CURSOR_RESTART_MS)
        sq->claim.cursor_set = false;
    if (!sq->claim.cursor_set)
        sq->from_start_ms = now;
    sq->seen_hint = atomic_load(&shared_queue->hint);
    if (worker_hands_off(sq))
        worker_publish_holders(w, sq);
    round->from_cursor = sq->claim.cursor_set;
    round->handoff = false;
    sq->claim.limit = sq->queue->batch == QUEUE_BATCH_AUTO ? worker_auto_limit(w, sq) : 0;
    round->asked = task_claim_limit(&sq->claim, sq->queue);
}

void worker_claim_taken(struct worker *w, struct served_queue *sq, struct claim_round *round,
                        int claimed)
{
    /* A limited queue's claim says how many its limits let it take. */
    round->more = config_queue_limited(sq->queue) && !round->handoff
                      ? task_claim_full(&sq->claim, sq->queue, claimed)
                      : claimed > 0 && w->batch.more;
    /* The cap decided a limited claim's take (batch = "auto" took every
     * free slot, or none was free): the backlog is as deep as ever, and the
     * batch must not fall to what the cap left this once — from 0 or 1, it
     * would take a row of small claims, each under the queue's lock, to
     * grow back (measured: a third of the claims of a queue capped at 50
     * took 1 to 8 tasks). */
    bool cap_decided =
        round->handoff || (config_queue_limited(sq->queue) && sq->claim.limit_cap_bound);
    batch_size_claimed(&sq->sizing, round->asked, claimed, round->more || cap_decided);
    /*
     * A capped queue's claim that took all its budget: this worker claims
     * again after the batch (the drain goes on), and that claim counts,
     * under the queue's lock, after the batch's completions committed
     * (worker_run_batch flushes them): it takes the slots they free. So
     * their ring need not take the queue's lock (shared; rung completions
     * and claims queued behind each other on it — measured: claims and
     * completions each waited ~10 ms for it, cap 50, 4 workers), nor
     * always ring (worker_ring_kind): a ring that misses a waiter loses no
     * slot. Slots freed while the drain is not going on ring with the
     * lock: a batch that took what was left, a failure, a release, and a
     * drain that ends before its next claim (worker_drain_queue).
     * Better still, the handoff (task_claim_handoff): the batch's finished
     * tasks wait for that claim, which records them and takes as many
     * slots without the lock — when this claim filled the worker's share
     * or the cap, within WORKER_HANDOFF_MS of the last claim that took the
     * lock, and the queue has no rate (whose starts are counted under the
     * lock) and runs a task at a time (the sql path's batch is one
     * transaction of its own). Fewer holders than at that claim (the
     * holders below): a larger share, which the next claim under the lock
     * takes at once, not WORKER_HANDOFF_MS later.
     */
    sq->reclaim = sq->queue->concurrency > 0 && round->more;
    int64_t now = time_now_ms();
    int sharers = worker_cap_sharers(w, sq);
    if (!round->handoff) {
        sq->locked_claim_ms = now;
        sq->took_every_slot = cap_decided;
        sq->sharers_at_lock = sharers;
        sq->hint_at_lock = sq->seen_hint;
    }
    task_completions_claimed(&w->completions);
    /* Past WORKER_HANDOFF_MS the chain goes on, up to
     * WORKER_HANDOFF_QUIET_MS, only while each handoff takes the whole
     * ask and the queue's hint has not moved since that claim: no slot was
     * rung free elsewhere for a claim under the lock to take up, and the
     * share has not worn down (measured: each such claim counted the
     * queue's running rows in 2-7 ms, a tenth of the database's work at
     * cap 50). */
    bool full = claimed >= round->asked;
    bool quiet = full && atomic_load(&w->args->shm->queues[sq->index].hint) == sq->hint_at_lock;
    int64_t chained = now - sq->locked_claim_ms;
    sq->handoff = sq->reclaim && worker_hands_off(sq) && sharers >= sq->sharers_at_lock &&
                  (chained < WORKER_HANDOFF_MS ? full || sq->took_every_slot
                                               : quiet && chained < WORKER_HANDOFF_QUIET_MS);
    /* A full batch — the claim left due tasks behind — asks for help
     * before running anything: the next worker starts while this one works
     * through its batch. Not when it filled the cap (batch = "auto" takes
     * every free slot, migration 0014): the helper would claim nothing. */
    bool filled_cap = round->handoff || (cap_decided && sq->queue->batch == QUEUE_BATCH_AUTO);
    if (round->more && !filled_cap)
        worker_request_help(w, sq->index);
}

/* Claim and run until a claim comes back short (DESIGN §1.3). */
static void worker_drain_claims(struct worker *w, struct served_queue *sq)
{
    struct shm_queue *shared_queue = &w->args->shm->queues[sq->index];
    sq->claim.cursor_set = false;

    while (!worker_holding_back(w)) {
        /* Paused: nothing to claim (a batch claimed ahead, before the
         * pause, still runs). Read after the hint: a resume clears the
         * flag before it bumps the hint, which brings us back. */
        if (sq->next == NULL) {
            sq->seen_hint = atomic_load(&shared_queue->hint);
            if (worker_queue_paused(w, sq))
                return;
        }
        /* More workers hold the cap's slots than its short tasks want,
         * and this one comes after them: it gives its slots up. The
         * hint is taken as seen: the holders go on with the queue. */
        if (worker_cap_yield(w, sq))
            return;
        bool sql_path = sq->handler->send_in_transaction != NULL;
        struct claim_round round;
        int claimed =
            sql_path ? sql_batch_claim_and_run(w, sq, &round) : worker_claim_and_run(w, sq, &round);
        /* The sql path's batch is done: its slots of a capped queue free
         * at once (the other paths ring with each outcome; this one has no
         * handoff, so its tasks' run time does not matter). */
        if (sql_path && claimed > 0)
            task_limit_ring(w->conn, sq->queue, worker_ring_kind(sq, claimed, 0));
        atomic_fetch_add_explicit(&shared_queue->claims, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&w->self->claims, 1, memory_order_relaxed);
        if (claimed < 0) {
            worker_claim_failed(w, sq);
            return;
        }
        atomic_store_explicit(&w->self->claim_failures, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&shared_queue->tasks_claimed, (uint64_t)claimed,
                                  memory_order_relaxed);
        if (config_queue_limited(sq->queue) && !round.handoff && sq->claim.limit_take == 0) {
            /* A limit is reached. The cap: sleep; a completion anywhere
             * rings the queue (pgwork.limit_ring). The rate: the
             * supervisor's timer wakes the queue when budget returns. */
            if (sq->claim.limit_wait_ms > 0)
                worker_schedule_retry(w, sq->index, sq->claim.limit_wait_ms);
            return;
        }
        if (!round.more) {
            /* It took all there was. From the cursor, tasks may remain
             * before it (released, or skipped while another worker held
             * them): one more claim from the start decides. */
            if (!round.from_cursor)
                return;
            sq->claim.cursor_set = false;
        }
    }
}

static void worker_drain_queue(struct worker *w, struct served_queue *sq)
{
    if (!worker_cap_enter(w, sq)) {
        sq->seen_hint = atomic_load(&w->args->shm->queues[sq->index].hint);
        return;
    }
    worker_drain_claims(w, sq);
    /* Finished tasks held for a handoff that will not come (held back,
     * paused, the handoff failed): written now, their slots announced. */
    bool held = task_completions_holding(&w->completions);
    if (held)
        worker_flush_completions(w);
    /* The drain ended (holding back, paused, a failed claim) before the
     * claim that was to take the last batch's freed slots: announce them. */
    if (sq->reclaim || held) {
        sq->reclaim = false;
        task_limit_ring(w->conn, sq->queue, TASK_RING);
    }
    /* Told to hold back with the next batch claimed already: it goes back
     * untried. */
    sql_batch_release_next(w, sq);
    worker_cap_leave(w, sq);
}

static bool worker_hints_changed(const struct worker *w)
{
    for (int i = 0; i < w->served_count; i++) {
        const struct served_queue *sq = &w->served[i];
        if (atomic_load(&w->args->shm->queues[sq->index].hint) != sq->seen_hint)
            return true;
    }
    return false;
}

/* Just stored IDLE: if a queue this worker serves waits for an idle
 * worker to be armed (shm_queue.arm_wanted, the doorbell), tell the
 * supervisor — once, however many queues. */
static void worker_announce_idle(struct worker *w)
{
    for (int i = 0; i < w->served_count; i++)
        if (atomic_load(&w->args->shm->queues[w->served[i].index].arm_wanted) != 0) {
            worker_notify_supervisor(w);
            return;
        }
}

/* Drain every queue whose hint moved, until none has. */
static void worker_drain(struct worker *w)
{
    bool again = true;
    while (again && !worker_holding_back(w)) {
        again = false;
        for (int i = 0; i < w->served_count && !worker_holding_back(w); i++) {
            struct served_queue *sq = &w->served[i];
            if (atomic_load(&w->args->shm->queues[sq->index].hint) != sq->seen_hint) {
                worker_drain_queue(w, sq);
                again = true;
            }
        }
    }
}

/* Sleep until woken, signalled, or orphaned. */
static void worker_sleep(struct worker *w)
{
    struct pollfd fds[] = {
        {.fd = w->args->wake_fd, .events = POLLIN},
        {.fd = w->env.signal_fd, .events = POLLIN},
        {.fd = w->env.death_fd, .events = POLLIN},
    };
    if (poll(fds, 3, -1) < 0) {
        if (errno != EINTR)
            log_error("poll failed: %s", strerror(errno));
        return;
    }
    if (fds[0].revents & POLLIN) {
        uint64_t count;
        if (read(w->args->wake_fd, &count, sizeof(count)) == sizeof(count))
            atomic_fetch_add_explicit(&w->self->wakeups, 1, memory_order_relaxed);
    }
    if (fds[1].revents & POLLIN)
        handler_env_poll_signals(&w->env);
    if (fds[2].revents & (POLLIN | POLLHUP))
        w->env.abort_requested = true;
}

/*
 * Signals: the supervisor blocked everything it reads through its signalfd,
 * and the mask survives fork (DESIGN §8). The worker reads TERM/INT (finish
 * the task, stop), QUIT (abort now) and USR2 (a task it holds was
 * cancelled: shm.h) through its own signalfd; it ignores
 * the job-control and reload signals meant for the supervisor, so a Ctrl-Z
 * or HUP sent to the whole process group cannot stop or kill a worker.
 * Handlers restore every default before exec.
 */
static int worker_setup_signals(void)
{
    static const int ignored[] = {SIGHUP, SIGTSTP, SIGTTIN, SIGTTOU, SIGUSR1, SIGPIPE};
    for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++)
        signal(ignored[i], SIG_IGN);
    signal(SIGCHLD, SIG_DFL);

    sigset_t handled;
    sigemptyset(&handled);
    sigaddset(&handled, SIGTERM);
    sigaddset(&handled, SIGINT);
    sigaddset(&handled, SIGQUIT);
    sigaddset(&handled, SIGUSR2); /* a task of ours was cancelled (pool_cancel_task) */
    if (sigprocmask(SIG_SETMASK, &handled, NULL) != 0)
        return -1;
    return signalfd(-1, &handled, SFD_NONBLOCK | SFD_CLOEXEC);
}

/* A database call that cannot finish (no answer in time, or the
 * supervisor died while we waited): the connection is in an unknown
 * state, so the process ends; the supervisor requeues and restarts. */
static void worker_give_up(const char *why)
{
    log_error("giving up on the database: %s", why);
    exit(WORKER_EXIT_ERROR);
}

static PGconn *worker_connect(const struct worker *w)
{
    char application_name[64];
    dbconn_worker_application_name(w->args->slot, application_name, sizeof(application_name));
    struct dbconn_params params = {0};
    dbconn_params(&params, w->config, config_conninfo(w->config), application_name);
    PGconn *conn = PQconnectdbParams(params.keywords, params.values, 1);
    if (PQstatus(conn) != CONNECTION_OK) {
        log_error("cannot connect to the database: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }
    /* Non-blocking: a long pipeline (sql_batch.c) is sent
     * while the answers are read (dbconn_next_result), never deadlocking. */
    if (PQsetnonblocking(conn, 1) != 0)
        log_warn("cannot make the connection non-blocking: %s", PQerrorMessage(conn));
    /* No session settings (DESIGN §2): behind PgBouncer's transaction
     * pooling they would reach other clients of the pool. What a worker
     * wants is set per transaction (dbconn_set_local). Plans need no
     * setting: unnamed statements are planned for their parameters, and
     * the claims prepared on a session of our own (claim_cache.c) carry
     * theirs. */
    return conn;
}

static void worker_init_queues(struct worker *w)
{
    const struct pgwork_config *config = w->config;
    w->served = calloc((size_t)config->queue_count, sizeof(*w->served));
    if (w->served == NULL && config->queue_count > 0)
        exit(WORKER_EXIT_ERROR);
    for (int i = 0; i < config->queue_count; i++) {
        const struct queue_config *queue = &config->queues[i];
        if (!worker_serves_queue(w->args->slot, queue))
            continue;
        struct served_queue *sq = &w->served[w->served_count];
        sq->index = w->args->queue_slots[i];
        sq->queue = queue;
        sq->handler = handler_for_kind(queue->handler);
        sq->seen_hint = 0; /* differs from any bumped hint: drain once at start */
        w->env.queue = queue;
        int started = sq->handler->init(&w->env, &sq->handler_state);
        if (started != HANDLER_INIT_OK) {
            bool fatal = started == HANDLER_INIT_CONFIG;
            log_error("queue \"%s\": handler %s failed to start%s", queue->name, sq->handler->name,
                      fatal ? "" : "; trying again");
            exit(fatal ? WORKER_EXIT_FATAL : WORKER_EXIT_ERROR);
        }
        w->served_count++;
    }
}

/*
 * The connection broke under a task: open a new one, so the worker can
 * record what happened and go on with its batch (statements are sent
 * unnamed; the claims claim_cache.c keeps are prepared again on the new
 * connection as they are used). Tries with the restart backoff for
 * as long as a statement may wait for the database (keepalive_interval +
 * keepalive_timeout: long enough for a crashed cluster's recovery); after
 * that, or when told to stop, the process exits and the supervisor
 * requeues by locked_by and charges the task in the shm slot, as for any
 * worker that dies.
 */
void worker_recover(struct worker *w, int64_t charged_id)
{
    /* Outcomes sent on the old connection are unknown: only a restart
     * (requeue by locked_by) settles them. The sql paths flush first. */
    if (w->completions.count > 0 || w->completions.in_flight > 0)
        exit(WORKER_EXIT_ERROR);
    PQfinish(w->conn);
    w->conn = NULL;
    const struct pgwork_config *config = w->config;
    int64_t give_up_ms = time_now_ms() + config->listener.keepalive_interval_ms +
                         config->listener.keepalive_timeout_ms;
    int64_t delay_ms = config->workers.restart_delay_min_ms;
    while ((w->conn = worker_connect(w)) == NULL) {
        if (time_now_ms() + delay_ms > give_up_ms)
            exit(WORKER_EXIT_ERROR);
        struct pollfd fds[] = {{.fd = w->env.signal_fd, .events = POLLIN},
                               {.fd = w->env.death_fd, .events = POLLIN}};
        if (poll(fds, 2, (int)delay_ms) < 0 && errno != EINTR)
            exit(WORKER_EXIT_ERROR);
        worker_poll_control(w);
        if (worker_stopping(w))
            exit(WORKER_EXIT_ERROR);
        delay_ms = delay_ms * 2 < config->workers.restart_delay_max_ms
                       ? delay_ms * 2
                       : config->workers.restart_delay_max_ms;
    }
    /* Until now the old backend's pid stayed there: one that still runs
     * (the network broke, not the backend) is stopped by the supervisor if
     * this process dies before it is done here. */
    worker_adopt_connection(w);
    /* What this worker had claimed, but the task about to be charged
     * (charged_id, 0 = none), goes back: tasks not started yet, and tasks
     * it finished whose asynchronous commit a crash took back — still
     * `running` under a tag whose lease the supervisor keeps renewing. */
    if (task_release_mine(w->conn, w->locked_by, charged_id) < 0)
        exit(WORKER_EXIT_ERROR);
    w->reconnected = true;
    for (int i = 0; i < w->served_count; i++) {
        struct served_queue *sq = &w->served[i];
        /* Claims start from the beginning (released tasks sort before the
         * cursor), and every queue is drained once more. */
        sq->claim.cursor_set = false;
        sq->seen_hint = atomic_load(&w->args->shm->queues[sq->index].hint) - 1;
    }
    log_info("reconnected to the database");
}

/* Everything before the first connection: die with the supervisor,
 * signals, the owner tag, the statement guard and per-transaction settings. */
static void worker_prepare(struct worker *w, const struct worker_args *args)
{
    /* Die with the supervisor: PDEATHSIG delivers QUIT (abort the task,
     * kill its handler) — and the supervisor may already be gone, in which
     * case the prctl came too late (DESIGN §8). The death pipe covers the
     * same event inside poll. */
    if (prctl(PR_SET_PDEATHSIG, SIGQUIT) != 0 || getppid() != args->supervisor_pid)
        _exit(WORKER_EXIT_ERROR);

    w->env.signal_fd = worker_setup_signals();
    w->env.death_fd = args->death_fd;
    w->env.is_cancelled = worker_env_is_cancelled;
    w->env.cancel_arg = w;
    if (w->env.signal_fd < 0) {
        log_error("cannot set up signals: %s", strerror(errno));
        exit(WORKER_EXIT_ERROR);
    }
    snprintf(w->locked_by, sizeof(w->locked_by), "%s/%d/%d", args->pod_name, args->slot,
             (int)getpid());
    w->env.locked_by = w->locked_by;

    /* Every statement is guarded: keepalive_interval + keepalive_timeout,
     * plus the queue's timeout while its tasks run — or no deadline for a
     * queue without one (worker_guard_tasks). */
    dbconn_set_guard(args->death_fd,
                     args->config->listener.keepalive_interval_ms +
                         args->config->listener.keepalive_timeout_ms,
                     worker_give_up);
    dbconn_set_interrupt(w->env.signal_fd, worker_on_db_interrupt, w);
    /* A claim or completion lost in a crash only makes a task run again
     * (at-least-once); it saves a WAL flush per hop (DESIGN §2). For each
     * transaction: set_config(..., true) is SET LOCAL without its warning
     * in the implicit transaction of a wrapped statement. */
    /* Custom plans, planned for each execution's parameters, also for a
     * statement a batch runs many times (handler_sql.c): a plan cached for
     * any parameters (generic) is chosen from the statistics of one moment
     * — on a new or just-emptied table a sequential scan — and kept:
     * measured, a batch's done UPDATE then took 0.75 ms instead of 0.14 ms
     * and a burst ran up to 30x slower until autovacuum's ANALYZE. */
    claim_cache_init(args->config->database.synchronous_commit);
    dbconn_set_local(args->config->database.synchronous_commit
                         ? "SELECT set_config('plan_cache_mode', 'force_custom_plan', true)"
                         : "SELECT set_config('plan_cache_mode', 'force_custom_plan', true),"
                           " set_config('synchronous_commit', 'off', true)");
}

/* After the loop: handlers, buffers, the connection. */
static void worker_finish(struct worker *w)
{
    worker_set_state(w, WORKER_STOPPING);
    for (int i = 0; i < w->served_count; i++) {
        w->served[i].handler->fini(w->served[i].handler_state);
        task_claim_state_free(&w->served[i].claim);
    }
    free(w->served);
    task_batch_free(&w->batch);
    task_completions_free(&w->completions);
    PQfinish(w->conn);
    log_debug("stopped");
}

void worker_main(const struct worker_args *args)
{
    struct worker w = {.args = args, .config = args->config};
    w.self = &args->shm->workers[args->slot];
    log_init("worker", args->slot, args->config->log.level, args->config->log.format);
    worker_prepare(&w, args);

    /* The slot's failure count is the previous process's until now. */
    atomic_store_explicit(&w.self->claim_failures, 0, memory_order_relaxed);
    w.conn = worker_connect(&w);
    if (w.conn == NULL)
        exit(WORKER_EXIT_ERROR);
    worker_adopt_connection(&w);
    worker_init_queues(&w);
    /* Tell the supervisor we are past STARTING: a roll onto a new config
     * waits for that before replacing the next worker. */
    worker_set_state(&w, WORKER_BUSY);
    worker_notify_supervisor(&w);
    log_debug("ready, serving %d queue%s as %s", w.served_count, w.served_count == 1 ? "" : "s",
              w.locked_by);

    while (!worker_stopping(&w)) {
        worker_set_state(&w, WORKER_BUSY);
        worker_heartbeat(&w);
        worker_drain(&w);
        if (worker_stopping(&w))
            break;
        worker_set_state(&w, WORKER_IDLE);
        worker_announce_idle(&w);
        /* The re-check after announcing IDLE: a hint bumped while we were
         * busy (and the supervisor saw us BUSY, so woke nobody) is seen
         * here. */
        if (worker_hints_changed(&w) && !worker_holding_back(&w))
            continue;
        worker_sleep(&w);
    }
    worker_finish(&w);
    exit(WORKER_EXIT_OK);
}
