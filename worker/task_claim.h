/*
 * task_claim.h — a worker's claim: up to a batch of a queue's due tasks
 * marked running in one round trip, read into a batch in the queue's
 * order, with the drain's cursor (task_claim.c). Recording outcomes is
 * task.h's.
 */
#ifndef PGWORK_TASK_CLAIM_H
#define PGWORK_TASK_CLAIM_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "handler.h"

struct claimed_task {
    int64_t id;
    char *payload; /* owned; freed by task_batch_clear */
    int attempt;
    int max_attempts;
    int64_t pickup_us; /* claim time - run_at, by the database's clock (>= 0) */
    int priority;      /* the queue's order: priority, run_at, id */
    int64_t run_at_us;
};

struct task_batch {
    struct claimed_task *tasks;
    int count;
    int capacity;
    bool more; /* the claim left due tasks behind (it looked one past its size) */
};

/*
 * Per worker and queue: the queue's claim statements (their text, built on
 * first use, task_claim_sql) and where the drain's next claim starts — the
 * greatest (priority, run_at, id) this worker claimed so far, so a claim's
 * index scan skips what earlier claims took (and the index entries of tasks
 * finished since the last vacuum). cursor_set false: from the start. The
 * worker clears it whenever tasks may have arrived that sort before it
 * (shm_queue.arrivals) and before it ends a drain.
 */
struct claim_state {
    /* The claim's text (owned, NULL until used): [0] from the start, [1]
     * from the cursor; each for the LIMIT in sql_limit (rebuilt when the
     * claim's size changes). */
    char *sql[2];
    int sql_limit[2];
    /* The same for the handoff of a capped queue (task_claim_handoff). */
    char *handoff_sql[2];
    int handoff_limit[2];
    /* The next claim's size; 0 = the queue's batch (the worker sets it
     * before each claim when the queue's batch is "auto"). */
    int limit;
    bool cursor_set;
    int priority;
    int64_t run_at_us; /* for comparing keys */
    char run_at[48];   /* run_at as the database printed it: sent back exactly */
    int64_t id;
    /* A limited queue's last claim (config_queue_limited; task_claim.c): how
     * many tasks its limits let it take (0: a limit is reached), and when
     * the rate allows the next start (ms from now; 0 = not rate-bound).
     * limit_cap_bound: the cap decided limit_take (with batch = "auto",
     * migration 0014: the claim took every free slot, the cap is full).
     * limits_warned: another pod's differing limits were logged once. */
    int limit_take;
    int64_t limit_wait_ms;
    bool limit_cap_bound;
    bool limits_warned;
    const char *queue_name; /* for messages (the config's) */
};

/* Whether a claim that took `claimed` tasks got all it asked for (a full
 * batch; for a limited queue all its limits allowed): more may be waiting,
 * so the drain goes on and asks for help. */
bool task_claim_full(const struct claim_state *claim, const struct queue_config *queue,
                     int claimed);

/* A capped queue's drain goes on (a queue without a rate): record the
 * `count` tasks in `finished` (this worker's, run to success) as done (or
 * deleted, keep_done = false) and claim at most as many due tasks of queue
 * into batch, in one statement and without the queue's lock: the slots
 * pass from the finished tasks to the claimed ones (task_claim.c says why
 * the cap holds). Slots left free are rung. Returns the tasks claimed
 * (batch->more: due tasks were left), or -1 (logged; the finished tasks
 * are still running under this worker). */
int task_claim_handoff(PGconn *conn, const struct queue_config *queue, const char *locked_by,
                       int64_t lease_ms, struct claim_state *claim, const int64_t *finished,
                       int count, struct task_batch *batch);

/* How a finished task of a capped queue announces its freed slot. */
enum task_ring {
    TASK_RING,         /* pgwork.limit_ring: under the queue's lock, a waiter never missed */
    TASK_RING_NUDGE,   /* pgwork.limit_nudge: without the lock (the worker claims again) */
    TASK_RING_NONE,    /* not at all: the worker claims again within its short batch */
    TASK_RING_HANDOFF, /* not yet: held for the worker's next claim (task_claim_handoff) */
};

/* A slot of capped queue may have freed (a failure, a release, a batch
 * done outside task_completions): announce it to waiting pods as `how`
 * says. Logged on failure; never fatal. */
void task_limit_ring(PGconn *conn, const struct queue_config *queue, enum task_ring how);

/* The text of queue's claim (from_cursor: bounded by the cursor's key)
 * for claim's size (task_claim_limit), built into claim on first use.
 * Parameters: see task_claim.c. */
const char *task_claim_sql(struct claim_state *claim, const struct queue_config *queue,
                           bool from_cursor);
/* The same for the handoff (task_claim_handoff), from claim's cursor if
 * it has one; its parameters: the claim's, then the finished ids. */
const char *task_handoff_sql(struct claim_state *claim, const struct queue_config *queue);
void task_claim_state_free(struct claim_state *claim);

/* The size of claim's next claim: claim->limit, or the queue's batch. */
int task_claim_limit(const struct claim_state *claim, const struct queue_config *queue);

/* Move claim's cursor back to where saved (a copy taken earlier) had it;
 * the statements' texts stay claim's own. */
void task_claim_rewind(struct claim_state *claim, const struct claim_state *saved);

/*
 * Claim up to task_claim_limit due pending tasks of `queue` in one round trip
 * (FOR UPDATE SKIP LOCKED), marking them running, attempts+1, locked_by,
 * locked_until = now() + lease, starting at claim's cursor (moved past
 * what was claimed). Fills batch (cleared first; batch->more: due tasks
 * were left). Returns the number claimed, or -1 on a database error
 * (logged).
 */
int task_claim(PGconn *conn, const struct queue_config *queue, const char *locked_by,
               int64_t lease_ms, struct claim_state *claim, struct task_batch *batch);

/*
 * The settings statement to send before the next claim of queue, in its
 * transaction (claim_cache.h: a prepared claim's, else dbconn_local()).
 * The claim's statement is prepared if it is not yet (once per text and
 * connection, claim_cache.h): with in_pipeline false, now (conn idle,
 * outside pipeline mode; one round trip); with in_pipeline true, by a
 * Parse queued in conn's pipeline: *parse_sent is then the statement's
 * text (else NULL), and the Parse's answer, which comes before the
 * settings', goes to claim_cache_sent with it. task_send_claim then sends
 * the claim the same way.
 */
const char *task_claim_ready(PGconn *conn, const struct queue_config *queue,
                             struct claim_state *claim, bool in_pipeline, const char **parse_sent);

/* task_claim's statement, sent without waiting (the one-transaction path
 * sends it in a pipeline, in an implicit transaction of its own that
 * commits at its sync, task_claim_ready's settings first). 0, or -1 when
 * it could not be sent. */
int task_send_claim(PGconn *conn, const struct queue_config *queue, const char *locked_by,
                    int64_t lease_ms, struct claim_state *claim);

/* Copy a claim's rows into batch (cleared first) and move claim's cursor
 * past them; the count. */
int task_batch_take(struct task_batch *batch, const PGresult *res, struct claim_state *claim);

void task_batch_clear(struct task_batch *batch);
void task_batch_free(struct task_batch *batch);

#endif
