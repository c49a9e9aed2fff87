/*
 * task.h — the task lifecycle in the database, seen from a worker: claim a
 * batch, record the outcome, release what was claimed but not run.
 *
 * Every statement is prepared once per connection (task_prepare) and run
 * with parameters: queue names and payloads are never spliced into SQL.
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
};

struct task_batch {
    struct claimed_task *tasks;
    int count;
    int capacity;
};

/* Prepare the claim/complete statements on conn. 0 or -1 (logged). */
int task_prepare(PGconn *conn);

/*
 * Claim up to `limit` due pending tasks of `queue` in one round trip
 * (FOR UPDATE SKIP LOCKED), marking them running, attempts+1, locked_by,
 * locked_until = now() + lease. Fills batch (cleared first). Returns the
 * number claimed, or -1 on a database error (logged).
 */
int task_claim(PGconn *conn, const struct queue_config *queue, const char *locked_by,
               int64_t lease_ms, struct task_batch *batch);

/*
 * The one-transaction path (handlers with run_in_transaction): inside an
 * open transaction, lock up to queue->batch due pending tasks (FOR UPDATE
 * SKIP LOCKED) without changing them: nobody else can see them running,
 * and if this worker dies the locks simply go away. Fills batch (attempt =
 * attempts + 1). Returns the count, or -1 (logged).
 */
int task_lock_batch(PGconn *conn, const struct queue_config *queue, struct task_batch *batch);

/* Same transaction: mark ids done (or delete them), attempts + 1, owner
 * locked_by. Returns rows changed, or -1 (logged). */
int task_finish_locked(PGconn *conn, const int64_t *ids, int count, const char *locked_by,
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

/* Put claimed-but-unstarted tasks back to pending, undoing their attempt
 * count. Returns 0 or -1. */
int task_release(PGconn *conn, const int64_t *ids, int count, const char *locked_by);

void task_batch_clear(struct task_batch *batch);
void task_batch_free(struct task_batch *batch);

#endif
