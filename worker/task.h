/*
 * task.h — the task lifecycle in the database, seen from a worker: claim a
 * batch, record the outcome, release what was claimed but not run.
 *
 * Every statement is sent unnamed with its parameters (nothing lives in
 * the server session: PgBouncer's transaction pooling, DESIGN §2): queue
 * names and payloads are never spliced into SQL.
 */
#ifndef PGWORK_TASK_H
#define PGWORK_TASK_H

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
    /* The next claim's size; 0 = the queue's batch (the worker sets it
     * before each claim when the queue's batch is "auto"). */
    int limit;
    bool cursor_set;
    int priority;
    int64_t run_at_us; /* for comparing keys */
    char run_at[48];   /* run_at as the database printed it: sent back exactly */
    int64_t id;
    /* A limited queue's last claim (config_queue_limited; task.c): how
     * many tasks its limits let it take (0: a limit is reached), and when
     * the rate allows the next start (ms from now; 0 = not rate-bound).
     * limits_warned: another pod's differing limits were logged once. */
    int limit_take;
    int64_t limit_wait_ms;
    bool limits_warned;
    const char *queue_name; /* for messages (the config's) */
};

/* Whether a claim that took `claimed` tasks got all it asked for (a full
 * batch; for a limited queue all its limits allowed): more may be waiting,
 * so the drain goes on and asks for help. */
bool task_claim_full(const struct claim_state *claim, const struct queue_config *queue,
                     int claimed);

/* A slot of capped queue may have freed (a failure, a release, a batch
 * done outside task_completions): announce it to waiting pods
 * (pgwork.limit_ring). Logged on failure; never fatal. */
void task_limit_ring(PGconn *conn, const struct queue_config *queue);

/* The text of queue's claim (from_cursor: bounded by the cursor's key)
 * for claim's size (task_claim_limit), built into claim on first use.
 * Parameters: see task.c. */
const char *task_claim_sql(struct claim_state *claim, const struct queue_config *queue,
                           bool from_cursor);
void task_claim_state_free(struct claim_state *claim);

/* The size of claim's next claim: claim->limit, or the queue's batch. */
int task_claim_limit(const struct claim_state *claim, const struct queue_config *queue);

/* Move claim's cursor back to where saved (a copy taken earlier) had it;
 * the statements' texts stay claim's own. */
void task_claim_rewind(struct claim_state *claim, const struct claim_state *saved);

/* Prepare the fixed statements under names (pgwork_done, pgwork_done_many,
 * pgwork_finish_claimed, ...) on conn: for EXPLAIN in the tests and the
 * bench's ceiling. The worker never does (see above). 0 or -1 (logged). */
int task_prepare(PGconn *conn);

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

/* task_claim's statement, sent without waiting (the one-transaction path
 * sends it in a pipeline, in an implicit transaction of its own that
 * commits at its sync). 0, or -1 when it could not be sent. */
int task_send_claim(PGconn *conn, const struct queue_config *queue, const char *locked_by,
                    int64_t lease_ms, struct claim_state *claim);

/* Copy a claim's rows into batch (cleared first) and move claim's cursor
 * past them; the count. */
int task_batch_take(struct task_batch *batch, const PGresult *res, struct claim_state *claim);

/* In the transaction that ran their statements: mark the claimed ids done
 * (or delete them). One row, the count, when every one was still running
 * under locked_by; otherwise the statement fails (and the transaction
 * with it). 0, or -1 when it could not be sent. */
int task_send_finish_claimed(PGconn *conn, const int64_t *ids, int count, const char *locked_by,
                             bool keep_done);

/* Success: state done (or the row deleted when keep_done is false).
 * Called inside or outside a transaction. Returns 1, 0 when the task is no
 * longer ours (lease lost and requeued), or -1 (logged). */
int task_mark_done(PGconn *conn, int64_t id, const char *locked_by, bool keep_done);

/*
 * Failure: back to pending with run_at = now() + retry_delay_ms, or dead
 * when make_dead; last_error = error. Returns 1, 0 (no longer ours) or -1.
 */
int task_mark_failed(PGconn *conn, int64_t id, const char *locked_by, const char *error,
                     int64_t retry_delay_ms, bool make_dead);

/*
 * The attempt that ran was lost with its transaction — the connection
 * broke while the task ran (conn is a new one), or its statement failed
 * and rolled its batch back: charge it — attempts = attempt, pending again at now() +
 * retry_delay_ms, or dead when make_dead — whether the row is still ours
 * and running or pending with that attempt never written (it ran in a
 * batch's transaction, or a crash lost the claim). Committed
 * synchronously. Returns 1, 0 (done after all, or no longer ours) or -1.
 */
int task_mark_lost(PGconn *conn, int64_t id, const char *locked_by, int attempt, const char *error,
                   int64_t retry_delay_ms, bool make_dead);

/* After a lost connection (conn is a new one): every task still running
 * under locked_by but keep_id (0 = none) back to pending, attempt undone —
 * claimed and not started, or done on a commit a crash took back.
 * Committed synchronously. Rows changed, or -1. */
int task_release_mine(PGconn *conn, const char *locked_by, int64_t keep_id);

/* Put claimed-but-unstarted tasks back to pending, undoing their attempt
 * count. Returns 0 or -1. */
int task_release(PGconn *conn, const int64_t *ids, int count, const char *locked_by);

/*
 * Finished tasks whose `done` is recorded in the background: the worker
 * sends one UPDATE for the finished tasks and runs the next task while the
 * database applies it; the answer is read when the connection is needed
 * next. Finishing tasks that arrive while an UPDATE is in flight go
 * together in the next one. Until its UPDATE commits a finished task is
 * still `running` (a worker that dies then has it requeued: at-least-once,
 * as ever). Any other statement on the connection must be preceded by
 * task_completions_flush.
 */
struct task_completions {
    int64_t *ids; /* finished, not yet sent (owned) */
    int count;
    int capacity;
    int in_flight;          /* tasks in the statement sent and not yet answered */
    bool keep_done;         /* of the queue the ids belong to */
    bool ring;              /* the queue is capped: the statement rings it (limit_ring) */
    const char *queue_name; /* for messages */
    const char *locked_by;
};

/* Record task id of queue as finished. 0, or -1 (logged; the connection
 * is then likely broken). */
int task_completions_add(PGconn *conn, struct task_completions *tc,
                         const struct queue_config *queue, const char *locked_by, int64_t id);

/* Wait until every recorded task is written. 0, or -1 (logged). */
int task_completions_flush(PGconn *conn, struct task_completions *tc);

void task_completions_free(struct task_completions *tc);

void task_batch_clear(struct task_batch *batch);
void task_batch_free(struct task_batch *batch);

#endif
