/*
 * task.h — the task lifecycle in the database, seen from a worker after
 * the claim (task_claim.h): record the outcome, release what was claimed
 * but not run, finish in the background (or hold the finished tasks of a
 * capped queue for the handoff, task_claim_handoff, which records them).
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

#include "task_claim.h"

/* Prepare the fixed statements under names (pgwork_done, pgwork_done_many,
 * pgwork_finish_claimed, ...) on conn: for EXPLAIN in the tests and the
 * bench's ceiling. The worker never does (see above). 0 or -1 (logged). */
int task_prepare(PGconn *conn);

/* How task_send_finish_claimed sent the done: the answers that come
 * before its own (task_finish_claimed_preludes reads them). */
struct finish_sent {
    bool pinned;          /* its plan settings went first */
    const char *parse_of; /* its text, when its Parse went first */
};

/* In the transaction that ran their statements, in conn's pipeline: mark
 * the claimed ids done (or delete them). One row, the count, when every
 * one was still running under locked_by; otherwise the statement fails
 * (and the transaction with it). On a session of our own it is prepared
 * once per connection (claim_cache.h) and runs its cached generic plan,
 * the settings that pin it sent first: they come after every task's
 * statement, so only the done (and COMMIT) run under them. 0, or -1 when
 * it could not be sent. */
int task_send_finish_claimed(PGconn *conn, const int64_t *ids, int count, const char *locked_by,
                             bool keep_done, struct finish_sent *how);

/* The done's text (done, or deleted when keep_done is false): for the
 * tests of its plan. */
const char *task_finish_claimed_sql(bool keep_done);

/* Read the answers sent ahead of the done (how), before the done's own;
 * false if one failed (the done is then skipped). */
bool task_finish_claimed_preludes(PGconn *conn, const struct finish_sent *how);

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

/* What became of claimed tasks: still running under locked_by, cancelled
 * (pgwork.cancel), or neither (requeued after a lost lease, finished
 * elsewhere, deleted). */
enum task_now { TASK_NOW_OURS, TASK_NOW_CANCELLED, TASK_NOW_GONE };

/* Look up ids (count of them, claimed under locked_by) again: now[i] says
 * what became of ids[i]. A read, in no transaction of its own. Returns 0,
 * or -1 (logged). */
int task_lookup_claimed(PGconn *conn, const int64_t *ids, int count, const char *locked_by,
                        enum task_now *now);

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
    bool ring;              /* a capped queue: the statement rings it (limit_ring) */
    bool nudge;             /* ... without the lock (limit_nudge): served_queue.reclaim */
    bool held;              /* not sent: for the worker's next claim (TASK_RING_HANDOFF) */
    int64_t held_since_ms;  /* CLOCK_MONOTONIC ms the first of them was held */
    bool unheld;            /* held ids were written another way since the last claim */
    const char *queue_name; /* for messages */
    const char *locked_by;
};

/* A bigint[] literal of ids (owned by the caller): digits and commas
 * only, built from integers; NULL if out of memory. */
char *task_id_array(const int64_t *ids, int count);

/* Record task id of queue as finished; a capped queue's statement rings it
 * as `ring` says. 0, or -1 (logged; the connection is then likely
 * broken). */
int task_completions_add(PGconn *conn, struct task_completions *tc,
                         const struct queue_config *queue, const char *locked_by, int64_t id,
                         enum task_ring ring);

/* The tasks of queue held for a handoff (TASK_RING_HANDOFF), once the
 * statement in flight is answered: their ids (tc's) and count, 0 when none
 * are held (the next claim is an ordinary one). Returns 0, or -1 (logged).
 * task_completions_handed_off forgets them once the handoff was sent. */
int task_completions_held(PGconn *conn, struct task_completions *tc,
                          const struct queue_config *queue, const int64_t **ids, int *count);
void task_completions_handed_off(struct task_completions *tc);

/* A claim came back: the tasks it took may be held again (after held ones
 * were written another way, the rest of that batch was not). */
void task_completions_claimed(struct task_completions *tc);

/* Tasks are held for a handoff; how long the oldest has waited (ms),
 * -1 when none is held (the clock is read only then). */
bool task_completions_holding(const struct task_completions *tc);
int64_t task_completions_held_ms(const struct task_completions *tc);

/* Wait until every recorded task is written (held ones too, as plain
 * completions). 0, or -1 (logged). */
int task_completions_flush(PGconn *conn, struct task_completions *tc);

void task_completions_free(struct task_completions *tc);

#endif
