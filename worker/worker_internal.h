/*
 * worker_internal.h — the worker process's state and the steps of its
 * loop that running a batch (worker_run.c) and the sql handler's batches
 * (sql_batch.c) build on. Only worker/worker.c, worker_run.c and
 * sql_batch.c include it; the process's API is worker.h.
 */
#ifndef PGWORK_WORKER_INTERNAL_H
#define PGWORK_WORKER_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "batch_size.h"
#include "handler.h"
#include "task.h"
#include "worker.h"

/* One claim as it was sent: what the drain decides by (DESIGN §1.3). */
/* A finished task waits for its handoff at most this long (then it is
 * written, worker_run_batch): a batch = "auto" batch takes about 20 ms. */
#define WORKER_HOLD_MS 20

/* A capped queue's drain hands its slots from batch to batch (the
 * handoff, task_claim_handoff) for at most this long after an ordinary
 * claim: then one claim under the queue's lock again, so slots another
 * way freed (a failure, a release, another pod's drain ending) are taken
 * up, and this worker's share comes back if it had less. */
#define WORKER_HANDOFF_MS 100
/* ... and up to this long while nothing was announced (worker_claim_taken). */
#define WORKER_HANDOFF_QUIET_MS 1000

struct claim_round {
    int asked;        /* its LIMIT */
    bool from_cursor; /* it started at the drain's cursor */
    bool more;        /* its answer: due tasks were left (worker_claim_taken) */
    bool handoff;     /* it was a capped queue's handoff (task_claim_handoff) */
};

struct served_queue {
    int index; /* into shm->queues (args->queue_slots of its config index) */
    const struct queue_config *queue;
    const struct handler *handler;
    void *handler_state;
    uint64_t seen_hint;       /* the queue's hint when this worker last drained it */
    struct claim_state claim; /* its claim statements and the drain's cursor */
    struct batch_size sizing; /* batch = "auto": this worker's claim sizes and task times */
    uint64_t seen_arrivals;   /* the queue's arrivals when the cursor was last reset */
    /* The next batch's claim, sent behind the last batch's COMMIT
     * (sql_batch.c) and answered, committed, not yet taken: its rows are
     * running under this worker. NULL = none. */
    PGresult *next;
    struct claim_round next_round; /* how next was sent */
    int64_t from_start_ms;         /* CLOCK_MONOTONIC ms of the drain's last claim from the start */
    /* A capped queue's last claim left due tasks behind (round.more): this
     * worker claims again after the batch, and that claim's count sees the
     * slots the batch freed, so its completions do not ring the queue
     * (worker_claim_taken says why that is safe). Rung once when the drain
     * ends with it still set. */
    bool reclaim;
    /* While reclaim is set, the batch's finished tasks are held for the
     * next claim, a handoff (task_claim_handoff): a queue with a cap and
     * no rate, within WORKER_HANDOFF_MS of the drain's last ordinary claim
     * (locked_claim_ms, CLOCK_MONOTONIC ms). */
    bool handoff;
    int64_t locked_claim_ms;
    bool took_every_slot;  /* that claim took every slot the cap had free */
    int sharers_at_lock;   /* the workers sharing the cap at that claim (worker.c) */
    uint64_t hint_at_lock; /* the queue's hint read before that claim */
};

struct worker {
    const struct worker_args *args;
    const struct pgwork_config *config;
    struct shm_worker *self;
    PGconn *conn;
    char locked_by[300];
    struct handler_env env; /* signal/death fds and the stop/abort flags */
    struct served_queue *served;
    int served_count;
    struct task_batch batch;
    struct task_completions completions; /* finished tasks being recorded */
    bool reconnected;                    /* worker_recover ran (the claimed batch was released) */
    /* A batch's statements run in one transaction (sql_batch.c): a cancel
     * of any of its tasks cancels the statement running. */
    bool batch_in_transaction;
    bool statement_cancelled; /* PQcancel sent for the statement(s) now running */
};

/* Was task id cancelled while this worker held it (pgwork.cancel; shm.h)? */
bool worker_task_cancelled(const struct worker *w, int64_t id);

/* The queue is paused (shm.h): claim nothing, start nothing more. */
bool worker_queue_paused(const struct worker *w, const struct served_queue *sq);

/* Stopping, or the pod was made quiet (TSTP): claim and start nothing. */
bool worker_holding_back(const struct worker *w);

/* Just before a claim of sq is sent: read its hint (a notification that
 * comes later brings the worker back) and its arrivals (tasks that may
 * sort before the cursor: claim from the start), set the claim's size;
 * round says how the claim goes out. */
void worker_claim_begin(struct worker *w, struct served_queue *sq, struct claim_round *round);

/* A claim of sq sent as round says came back with `claimed` tasks (>= 0)
 * into w->batch: round->more says whether it left tasks behind; the next
 * size learns from it; one that did asks for help (DESIGN §1.3). */
void worker_claim_taken(struct worker *w, struct served_queue *sq, struct claim_round *round,
                        int claimed);

/* A task of sq ran for elapsed_us: one that ran WORKER_HANDOFF_MS or
 * longer lets every serving worker hold the queue's cap again at once
 * (worker.c, the holders), not after its median has moved. */
void worker_cap_task_ran(struct worker *w, const struct served_queue *sq, int64_t elapsed_us);

/* The heartbeat in the worker's shm slot: now. */
void worker_heartbeat(struct worker *w);

/* The current claim returned a full batch: more work is likely waiting. */
void worker_request_help(struct worker *w, int queue_index);

/* Tell the supervisor's timer about a retry due in delay_ms (DESIGN §1.6). */
void worker_schedule_retry(struct worker *w, int queue_index, int64_t delay_ms);

/* Exit when the database is gone; the supervisor restarts us with backoff. */
void worker_check_connection(struct worker *w);

/* Wait until the finished tasks are written: before any other statement
 * (exits when the connection is gone). */
void worker_flush_completions(struct worker *w);

/* Non-blocking look at the signal and death fds between tasks. */
void worker_poll_control(struct worker *w);

/* The connection broke: a new one, what was claimed but charged_id (0 =
 * none) released; exits when the database stays away. */
void worker_recover(struct worker *w, int64_t charged_id);

/* The statements of `tasks` tasks of queue may run for its timeout on top
 * of the connection's deadline (none when the queue has none);
 * dbconn_set_guard_extra(0) ends it. */
void worker_guard_tasks(const struct queue_config *queue, int tasks);

/* A failed attempt's retry delay (the queue's backoff), or 0 when it was
 * the last one (*dead) (worker_run.c). */
int64_t worker_failure_delay(const struct queue_config *queue, int attempt, int max_attempts,
                             bool *dead);

/* A failed attempt of task id counted in shared memory and logged: dead
 * (attempt >= max_attempts), or retried in delay_ms, because of why. */
void worker_count_failure(struct worker *w, struct served_queue *sq, int64_t id, int attempt,
                          int max_attempts, int64_t delay, const char *why);

/* How a task of a batch of `tasks` tasks of sq's (capped) queue, which ran
 * for ran_ms, announces the slot it frees (worker_run.c says why). */
enum task_ring worker_ring_kind(const struct served_queue *sq, int tasks, int64_t ran_ms);

/* Run the claimed batch (w->batch) a task at a time, recording each
 * outcome; skip: a task already recorded (-1 = none). */
void worker_run_batch(struct worker *w, struct served_queue *sq, int skip);

/* One claim round a task at a time (worker_claim_begin first, round says
 * how it went out); the number claimed, or -1. */
int worker_claim_and_run(struct worker *w, struct served_queue *sq, struct claim_round *round);

#endif
