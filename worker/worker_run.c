/*
 * worker_run.c — a worker runs what it claimed, a task at a time (the
 * paths that claim one batch and run it task by task): the handler's run
 * under the statement guard, then the outcome recorded — done in the
 * background (task_completions), failed with its backoff or dead, released
 * untried, cancelled — counted in shared memory and logged. The sql
 * handler's one-transaction batches are sql_batch.c's.
 *
 * Invariants: as worker.c's — every task claimed ends finished, failed,
 * released or cancelled; a slot of a capped queue freed by an outcome is
 * rung (task_limit_ring); a connection that broke under a task is replaced
 * before its outcome is recorded (worker_recover).
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "handler.h"
#include "task.h"
#include "worker_internal.h"
#include "../shared/dbconn.h"
#include "../shared/log.h"
#include "../shared/timeutil.h"

/*
 * How the tasks of a batch of `tasks` announce their freed slots when the
 * queue is capped (worker_claim_taken sets sq->reclaim). A worker that
 * claims again after its batch takes those slots itself: a batch of one
 * (slow tasks: batch = "auto" claims them one at a time) nudges the
 * waiting pods without the queue's lock, so a freed slot goes to
 * whichever pod claims first; a batch of several (short tasks) does not
 * ring at all — the worker's next claim comes within the batch's few ms,
 * and waking a waiter for each freed slot cost a claim of it, under the
 * lock, that mostly found the cap full again (measured at cap 50).
 * A task that ran WORKER_HANDOFF_MS or longer is not held for a handoff
 * either (it nudges, or not, as above): the lock costs nothing beside it,
 * and a slot handed on within the worker is one the other pods never see
 * (a cap of 3 with 0.5 s tasks over two pods once ran all 24 on one).
 */
enum task_ring worker_ring_kind(const struct served_queue *sq, int tasks, int64_t ran_ms)
{
    if (!sq->reclaim)
        return TASK_RING;
    if (sq->handoff && ran_ms < WORKER_HANDOFF_MS)
        return TASK_RING_HANDOFF;
    return tasks > 1 ? TASK_RING_NONE : TASK_RING_NUDGE;
}

/* A cancelled task this worker holds: counted and logged; the database
 * says `cancelled` already (pgwork.cancel wrote it, with who and when). */
static void worker_record_cancelled(struct worker *w, struct served_queue *sq, int64_t id,
                                    const char *how)
{
    atomic_fetch_add_explicit(&w->args->shm->queues[sq->index].tasks_cancelled, 1,
                              memory_order_relaxed);
    log_task(LOG_LEVEL_INFO, sq->queue->name, id, "cancelled: %s", how);
}

/* Let the statements of `tasks` tasks of queue run for their timeout on
 * top of the connection's deadline — or for as long as they take when the
 * queue has none: that deadline finds a dead server, it must not cut off a
 * slow statement (issue 10 item 3). dbconn_set_guard_extra(0) ends it. */
void worker_guard_tasks(const struct queue_config *queue, int tasks)
{
    dbconn_set_guard_extra(queue->timeout_ms > 0 ? queue->timeout_ms * tasks : DBCONN_NO_DEADLINE);
}

int64_t worker_failure_delay(const struct queue_config *queue, int attempt, int max_attempts,
                             bool *dead)
{
    *dead = attempt >= max_attempts;
    return *dead ? 0
                 : backoff_delay_ms(queue->backoff_base_ms, queue->backoff_max_ms, attempt,
                                    random_unit());
}

void worker_count_failure(struct worker *w, struct served_queue *sq, int64_t id, int attempt,
                          int max_attempts, int64_t delay, const char *why)
{
    struct shm_queue *shared_queue = &w->args->shm->queues[sq->index];
    bool dead = attempt >= max_attempts;
    atomic_fetch_add_explicit(dead ? &shared_queue->tasks_dead : &shared_queue->tasks_retried, 1,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&w->self->tasks_failed, 1, memory_order_relaxed);
    if (dead)
        log_task(LOG_LEVEL_WARN, sq->queue->name, id, "failed on attempt %d of %d, dead: %s",
                 attempt, max_attempts, why);
    else
        log_task(LOG_LEVEL_WARN, sq->queue->name, id,
                 "failed on attempt %d of %d, retry in %" PRId64 " ms: %s", attempt, max_attempts,
                 delay, why);
}

/* A failed task: pending again after its backoff, or dead after its last
 * attempt; counted and logged. lost: the connection broke while it ran
 * (task_mark_lost charges the attempt that never got written). */
static void worker_record_failure(struct worker *w, struct served_queue *sq,
                                  const struct task *task, char *error, size_t errlen, bool lost)
{
    const struct queue_config *queue = sq->queue;
    bool dead;
    int64_t delay = worker_failure_delay(queue, task->attempt, task->max_attempts, &dead);
    if (error[0] == '\0')
        snprintf(error, errlen, "failed");
    worker_count_failure(w, sq, task->id, task->attempt, task->max_attempts, delay, error);
    worker_flush_completions(w);
    int marked =
        lost ? task_mark_lost(w->conn, task->id, w->locked_by, task->attempt, error, delay, dead)
             : task_mark_failed(w->conn, task->id, w->locked_by, error, delay, dead);
    if (marked == 1 && !dead)
        worker_schedule_retry(w, sq->index, delay);
    if (marked == 1)
        task_limit_ring(w->conn, queue, TASK_RING); /* its slot is free */
}

/* Record how task ended (elapsed: ms it ran; lost: its connection broke,
 * a new one is in place), count it and log it. */
static void worker_record_outcome(struct worker *w, struct served_queue *sq,
                                  const struct task *task, enum handler_outcome outcome,
                                  char *error, size_t errlen, int64_t elapsed, bool lost)
{
    const struct queue_config *queue = sq->queue;
    struct shm_queue *shared_queue = &w->args->shm->queues[sq->index];
    switch (outcome) {
    case HANDLER_OK:
        /* Recorded in the background while the next task runs. */
        if (task_completions_add(w->conn, &w->completions, queue, w->locked_by, task->id,
                                 worker_ring_kind(sq, w->batch.count, elapsed)) != 0)
            worker_check_connection(w);
        /* fall through */
    case HANDLER_DONE:
        atomic_fetch_add_explicit(&shared_queue->tasks_done, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&w->self->tasks_done, 1, memory_order_relaxed);
        log_task(LOG_LEVEL_INFO, queue->name, task->id, "done in %" PRId64 " ms (attempt %d)",
                 elapsed, task->attempt);
        break;
    case HANDLER_FAILED:
        worker_record_failure(w, sq, task, error, errlen, lost);
        break;
    case HANDLER_ABORTED:
        worker_flush_completions(w);
        if (task_release(w->conn, &task->id, 1, w->locked_by) == 0)
            task_limit_ring(w->conn, queue, TASK_RING);
        log_task(LOG_LEVEL_INFO, queue->name, task->id, "interrupted, released to pending");
        break;
    case HANDLER_CANCELLED: {
        char how[64];
        snprintf(how, sizeof(how), "stopped after %" PRId64 " ms (attempt %d)", elapsed,
                 task->attempt);
        worker_record_cancelled(w, sq, task->id, how);
        break;
    }
    }
}

/*
 * A pod hears of a cancel within about a second (the task channel, then
 * SIGUSR2 and the worker's shm cancel_ids), and a claimed task cancelled
 * must not start later than that. One of a batch claimed a while ago may
 * have been cancelled — or requeued after its lease ran out — while the
 * pod could not hear (its listener cut off, a partition that took every
 * connection), and would start anyway: once the batch has waited
 * WORKER_BATCH_RECHECK_MS, half that second, the rest of it is looked up
 * again before the next task starts, and again each WORKER_BATCH_RECHECK_MS
 * (a task then starts at most that long after a cancel its pod missed).
 * Torture seed 20261201: a task cancelled while its pod's connections
 * were black-holed started 3.5 s after the cancel. Batches of slow tasks
 * pay one small read each half second; short ones, nothing.
 */
#define WORKER_BATCH_RECHECK_MS 500

/* Look up again the batch's tasks from first on (all but skip): those no
 * longer this worker's are marked in gone (a flag for each task of the
 * batch) and recorded here, a cancelled one as cancelled, the others
 * logged. A lookup that fails leaves them all to run, as before it. */
static void worker_batch_recheck(struct worker *w, struct served_queue *sq, int first, int skip,
                                 bool *gone)
{
    int left = w->batch.count - first;
    int64_t *ids = malloc((size_t)left * sizeof(*ids));
    enum task_now *now = malloc((size_t)left * sizeof(*now));
    if (ids == NULL || now == NULL) {
        log_error("out of memory looking up %d claimed tasks again", left);
        abort();
    }
    for (int j = 0; j < left; j++)
        ids[j] = w->batch.tasks[first + j].id;
    worker_flush_completions(w);
    if (task_lookup_claimed(w->conn, ids, left, w->locked_by, now) != 0)
        worker_check_connection(w);
    else
        for (int j = 0; j < left; j++) {
            if (first + j == skip || now[j] == TASK_NOW_OURS)
                continue;
            gone[first + j] = true;
            if (now[j] == TASK_NOW_CANCELLED)
                worker_record_cancelled(w, sq, ids[j], "before it started; not run");
            else
                log_task(LOG_LEVEL_WARN, sq->queue->name, ids[j],
                         "no longer ours before it started (its lease ran out and it was "
                         "requeued, or it ended elsewhere): not run here");
        }
    free(ids);
    free(now);
}

static void worker_run_task(struct worker *w, struct served_queue *sq,
                            const struct claimed_task *claimed)
{
    const struct queue_config *queue = sq->queue;
    struct shm_queue *shared_queue = &w->args->shm->queues[sq->index];
    struct task task = {
        .id = claimed->id,
        .payload = claimed->payload,
        .attempt = claimed->attempt,
        .max_attempts = claimed->max_attempts,
    };
    char error[HANDLER_ERROR_MAX];
    error[0] = '\0';

    /* Cancelled after the claim, before it started: it never runs. */
    if (worker_task_cancelled(w, task.id)) {
        worker_record_cancelled(w, sq, task.id, "before it started; not run");
        return;
    }
    atomic_store_explicit(&w->self->task_id, task.id, memory_order_relaxed);
    w->env.queue = queue;
    w->env.keep_done = queue->keep_done;
    w->env.task_id = task.id;
    w->env.cancel_requested = false;
    w->statement_cancelled = false;
    if (sq->handler->uses_connection)
        worker_flush_completions(w);
    int64_t started_us = time_now_us();
    /* A handler's statements may run for the queue's timeout; the guard
     * allows it while (and only while) the handler runs. */
    worker_guard_tasks(queue, 1);
    enum handler_outcome outcome =
        sq->handler->run(sq->handler_state, &w->env, &task, error, sizeof(error));
    dbconn_set_guard_extra(0);
    w->env.task_id = 0;
    /* Cancelled while it ran (the handler stopped it, or it ended on its
     * own first): the database refuses any other outcome now, and a
     * failure must not look like one to retry. */
    if (outcome != HANDLER_DONE && worker_task_cancelled(w, task.id))
        outcome = HANDLER_CANCELLED;
    int64_t elapsed_us = time_now_us() - started_us;
    batch_size_ran(&sq->sizing, 1, elapsed_us);
    worker_cap_task_ran(w, sq, elapsed_us);
    int64_t elapsed = elapsed_us / 1000;
    shm_histogram_observe(&shared_queue->pickup, claimed->pickup_us);
    shm_histogram_observe(&shared_queue->duration, elapsed_us);
    /* The connection broke under the task: its statement killed its
     * backend (or crashed the cluster), or the server went away. What the
     * task did rolled back with it, unless its COMMIT got through (then it
     * is done). Record it on a new connection, charging the attempt (issue
     * 10 item 2): exiting instead would leave the task to run the same way
     * again, for ever. */
    bool lost = sq->handler->uses_connection && PQstatus(w->conn) != CONNECTION_OK;
    if (lost) {
        log_task(LOG_LEVEL_WARN, queue->name, task.id,
                 "the database connection broke while the task ran: %s",
                 error[0] != '\0' ? error : PQerrorMessage(w->conn));
        worker_recover(w, task.id);
    }

    worker_record_outcome(w, sq, &task, outcome, error, sizeof(error), elapsed, lost);
    atomic_store_explicit(&w->self->task_id, 0, memory_order_relaxed);
    worker_heartbeat(w);
    worker_check_connection(w);
}

/* Run the claimed batch (w->batch) a task at a time, recording each
 * outcome; skip: the index of a task already recorded (-1 = none). Stops
 * early (releasing the rest) when told to hold back. */
void worker_run_batch(struct worker *w, struct served_queue *sq, int skip)
{
    bool *gone = NULL; /* looked up again and no longer ours (worker_batch_recheck) */
    int64_t known_ms = time_now_ms();
    for (int i = 0; i < w->batch.count; i++) {
        if (i == skip)
            continue;
        if (time_now_ms() - known_ms >= WORKER_BATCH_RECHECK_MS) {
            if (gone == NULL && (gone = calloc((size_t)w->batch.count, sizeof(*gone))) == NULL) {
                log_error("out of memory looking up a batch again");
                abort();
            }
            worker_batch_recheck(w, sq, i, skip, gone);
            known_ms = time_now_ms();
        }
        if (gone != NULL && gone[i])
            continue;
        worker_poll_control(w);
        if (worker_holding_back(w) || worker_queue_paused(w, sq)) {
            worker_flush_completions(w);
            /* Claimed but not started: give them back untried. */
            int64_t *ids = malloc((size_t)(w->batch.count - i) * sizeof(*ids));
            if (ids != NULL) {
                int left = 0;
                for (int j = i; j < w->batch.count; j++)
                    if (j != skip)
                        ids[left++] = w->batch.tasks[j].id;
                if (task_release(w->conn, ids, left, w->locked_by) == 0 && left > 0)
                    task_limit_ring(w->conn, sq->queue, TASK_RING);
                free(ids);
            }
            break;
        }
        /* Finished tasks wait for the handoff at most WORKER_HOLD_MS
         * (and the task now starting): past that they are written, and
         * the rest of the batch is not held. */
        if (task_completions_held_ms(&w->completions) > WORKER_HOLD_MS)
            worker_flush_completions(w);
        w->reconnected = false;
        worker_run_task(w, sq, &w->batch.tasks[i]);
        /* The rest of the batch went back to pending with the reconnect. */
        if (w->reconnected)
            break;
    }
    free(gone);
    /* Held for the next claim, a handoff; else written now. */
    if (!task_completions_holding(&w->completions))
        worker_flush_completions(w);
}

/* One claim round, a task at a time: claim (marking running), run each,
 * record each outcome. Returns the number claimed, or -1 after a database
 * error. */
int worker_claim_and_run(struct worker *w, struct served_queue *sq, struct claim_round *round)
{
    worker_claim_begin(w, sq, round);
    const int64_t *finished;
    int held;
    if (task_completions_held(w->conn, &w->completions, sq->queue, &finished, &held) != 0)
        worker_check_connection(w);
    int claimed;
    round->handoff = held > 0;
    if (round->handoff) {
        claimed = task_claim_handoff(w->conn, sq->queue, w->locked_by, w->config->workers.lease_ms,
                                     &sq->claim, finished, held, &w->batch);
        /* A failed handoff rolled back: they are still held, written on
         * the new connection when the drain ends (worker_drain_queue). */
        if (claimed >= 0)
            task_completions_handed_off(&w->completions);
    } else {
        worker_flush_completions(w);
        claimed = task_claim(w->conn, sq->queue, w->locked_by, w->config->workers.lease_ms,
                             &sq->claim, &w->batch);
    }
    if (claimed < 0)
        return claimed;
    worker_claim_taken(w, sq, round, claimed);
    worker_run_batch(w, sq, -1);
    return claimed;
}
