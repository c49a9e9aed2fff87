/*
 * requeues.h — the requeues of dead workers' tasks the supervisor asked
 * for, in a FIFO: each first stops the worker's backend (if it had one),
 * then puts its rows back to pending. upkeep.c's table sends the
 * statements (requeues_stop_* and requeues_*, two entries) when the
 * listener's connection is free; never blocks.
 */
#ifndef PGWORK_REQUEUES_H
#define PGWORK_REQUEUES_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

/* One requeue the supervisor asked for: a dead worker's running tasks
 * back to pending. Tried again, later and behind the others, while some
 * of its rows stay locked or the statement fails. */
struct requeue {
    char *locked_by;     /* owned */
    int64_t task_id;     /* the task it was running when it died, 0 = none */
    int slot;            /* its worker slot (its backend's application_name) */
    int32_t backend_pid; /* its backend, to stop first; 0 = none or stopped */
    int64_t due_ms;      /* not before (CLOCK_MONOTONIC ms) */
    int tries;           /* attempts so far */
    int stop_tries;      /* backend_pid signalled this often, still exiting */
};

/* The fields are this module's own: callers use the functions below. */
struct requeues {
    struct requeue *items; /* FIFO of pending requeues */
    int count;
    int capacity;
    int in_flight; /* the entry a statement in flight concerns, -1 = none */
};

void requeues_init(struct requeues *q);

/* Queue a requeue of locked_by's running rows, running_task (the one it
 * was running, from shared memory; 0 = none) charged one attempt.
 * backend_pid (0 = unknown) is the dead worker's backend in slot: stopped
 * first, so it releases the rows it may still hold. Out of memory: logged,
 * dropped (the lease expiry takes the rows back). */
void requeues_add(struct requeues *q, const char *locked_by, int64_t running_task, int slot,
                  int32_t backend_pid);

/* Requeues not yet confirmed by the database. */
int requeues_count(const struct requeues *q);

/* Both sends: PQsendQueryParams' result (0: libpq refused), or this when
 * no requeue is due after all (upkeep's contract: the next job's turn). */
#define REQUEUES_NOTHING_SENT (-1)

/* Stopping the first due requeue's backend: when it is due (INT64_MAX:
 * none has a backend left), send it, and its result (ok: the statement
 * succeeded). */
int64_t requeues_stop_due(const struct requeues *q, int64_t now);
int requeues_stop_send(struct requeues *q, PGconn *conn, int64_t now);
void requeues_stop_on_result(struct requeues *q, const PGresult *res, bool ok, int64_t now);

/* Requeuing the first due requeue whose backend is gone: when (the
 * earliest any will be, for the deadline), send it (queue_names,
 * queue_max_attempts: text[] and int[] literals of the configured queues),
 * and its result: true when tasks moved (requeued or dead), so tasks may be
 * due, and a capped queue's freed slot may let held-back ones go. */
int64_t requeues_due(const struct requeues *q, int64_t now);
int requeues_send(struct requeues *q, PGconn *conn, int64_t now, const char *queue_names,
                  const char *queue_max_attempts);
bool requeues_on_result(struct requeues *q, const PGresult *res, bool ok, int64_t now);

/* The statement in flight ended (complete or not): nothing in flight;
 * what was not done stays due (a requeue keeps its place). */
void requeues_on_end(struct requeues *q);

void requeues_free(struct requeues *q);

#endif
