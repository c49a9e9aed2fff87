/*
 * upkeep.h — the supervisor's own statements on the listener's connection:
 * lease renewals, the doorbell's arms (doorbell.h), requeues of a dead
 * worker's tasks (its backend stopped first), the poll (expired leases
 * taken back, the next due time of every queue), queue depth for /metrics,
 * deleting finished tasks past their retention (retention.h). The listener
 * sends one of them whenever its connection is free (listener_set_client);
 * this module decides which, from a table of {due, send, on_result,
 * on_end} entries, and handles what comes back. Never blocks; never
 * touches the socket.
 */
#ifndef PGWORK_UPKEEP_H
#define PGWORK_UPKEEP_H

#include <stdbool.h>
#include <stdint.h>

#include "depth.h"
#include "limits.h"
#include "listener.h"
#include "requeues.h"
#include "ticks.h"
#include "retention.h"
#include "../shared/text.h"
#include "../shared/config.h"

/* What the database said that concerns the supervisor. */
struct upkeep_callbacks {
    /* Queue queue_index has a pending task due in delay_ms (0 = now); from
     * the poll, never from a notification. */
    void (*on_task_hint)(void *ctx, int queue_index, int64_t delay_ms);
    /* Something may be due in any queue (tasks were requeued). */
    void (*on_sweep)(void *ctx);
    /* The poll read whether queue queue_index is paused (migration 0011). */
    void (*on_paused)(void *ctx, int queue_index, bool paused);
};

/* Queue depth is read at most this often (something scrapes /metrics). */
#define UPKEEP_DEPTH_MAX_AGE_MS 15000

/* The most jobs upkeep.c's table holds (waiting_since below). */
#define UPKEEP_JOB_SLOTS 16

/* A due job passed over this long for more urgent ones goes first. */
#define UPKEEP_STARVE_MS 100

struct doorbell;
struct throughput;

/* The fields are this module's own: callers use the functions below. */
struct upkeep {
    const struct pgwork_config *config;
    struct listener *listener; /* whose connection carries the statements */
    struct upkeep_callbacks callbacks;
    void *ctx;

    int in_flight;   /* the job sent, index in the table + 1; 0 = none */
    int64_t sent_ms; /* when it was sent */

    char *queue_names;          /* text[] literal of the configured queues (owned) */
    char *queue_max_attempts;   /* int[] literal of their max_attempts (owned) */
    char *queue_retention;      /* bigint[] literal of their retention in ms (owned) */
    char *queue_dead_retention; /* bigint[] literal of their dead_retention in ms (owned) */
    int64_t queues_retry_ms;    /* out of memory building them: try again then; 0 = built */

    int64_t poll_due_ms;  /* next poll at the interval */
    bool sweep_requested; /* poll as soon as the connection is free */
    int64_t lease_due_ms; /* a running task's lease runs out: poll then; 0 = none */
    bool schema_ok;       /* the last poll succeeded (schema migrated) */

    char *renew_owners;         /* text[] literal of workers whose leases to renew, owned */
    struct text_buffer pass_on; /* text[] of queues rung here to pass on (upkeep_pass_on);
                                   empty: none */

    struct depth_reading depth;   /* last queue-depth reading */
    bool depth_requested;         /* read depth when the connection is free */
    struct limits_reading limits; /* last reading of the limited queues (with depth) */
    bool limits_requested;

    struct ticks *ticks;           /* the schedules' claims (ticks.h), NULL = none */
    struct retention retention;    /* deleting finished tasks (retention.h) */
    struct doorbell *doorbell;     /* this pod's arms (doorbell.c), NULL = none */
    struct throughput *throughput; /* finished per minute (throughput.c), NULL = none */

    struct requeues requeues; /* dead workers' tasks to requeue (requeues.h) */

    /* When each job of the table was found due and passed over for a more
     * urgent one (CLOCK_MONOTONIC ms; INT64_MAX: it was not): upkeep_turn. */
    int64_t waiting_since[UPKEEP_JOB_SLOTS];
};

/* Which of `count` jobs in order of urgency, job j due at due[j] (<= now:
 * due), goes next: the first due, job 0 (the lease renewals) before any —
 * unless a job has waited UPKEEP_STARVE_MS or longer since waiting_since[]
 * says it was first passed over: then the one that waited longest, so a
 * job due all the time cannot keep the others from their turn. Updates
 * waiting_since. -1: none is due. */
int upkeep_turn(const int64_t *due, int64_t *waiting_since, int count, int64_t now);

/* Set up and register with listener l as its client (what it sends when
 * free, before its own keepalive). */
void upkeep_init(struct upkeep *u, const struct pgwork_config *config, struct listener *l,
                 const struct upkeep_callbacks *callbacks, void *ctx);

/* Before the listener's next deadline is asked (the supervisor, before
 * arming its timer): the jobs read what their due times depend on — the
 * doorbell, the workers' states. Nothing while the connection is busy;
 * sending does it itself. */
void upkeep_refresh(struct upkeep *u, int64_t now);

/* Switch to a reloaded config (the old one may be freed afterwards); polls
 * at once. */
void upkeep_set_config(struct upkeep *u, const struct pgwork_config *config);

/* The schedules whose tick claims the connection carries (the caller's;
 * NULL = none). */
void upkeep_set_ticks(struct upkeep *u, struct ticks *ticks);

/* Queue an UPDATE putting a dead worker's tasks back to pending:
 * locked_by's running rows, and running_task (the one it was running, from
 * shared memory; 0 = none) charged one attempt. backend_pid (0 = unknown)
 * is the dead worker's backend in slot: stopped first, so it releases the
 * rows it may still hold. */
void upkeep_requeue_owner(struct upkeep *u, const char *locked_by, int64_t running_task, int slot,
                          int32_t backend_pid);

/* The doorbell whose statements (arms, probes, cleanup) go next after the
 * lease renewals. */
void upkeep_set_doorbell(struct upkeep *u, struct doorbell *doorbell);

/* The per-minute counts whose upsert goes when rows wait (NULL = none). */
void upkeep_set_throughput(struct upkeep *u, struct throughput *throughput);

/* Number of requeues not yet confirmed by the database. */
int upkeep_pending_requeues(const struct upkeep *u);

/* Renew the leases of the running tasks of these owners (a text[] literal
 * of locked_by tags; ownership passes here) as soon as the connection is
 * free. */
void upkeep_renew_leases(struct upkeep *u, char *owners);

/* The trigger rang this pod for queue q but no worker here can take it
 * (all busy, or the pod is quiet): announce q on the task channel as soon
 * as the connection is free, so that a pod with an idle worker claims it
 * (a ring goes to one armed pod; this pod's disarm may not have been
 * written yet). */
void upkeep_pass_on(struct upkeep *u, int q);

/* Run the poll as soon as possible (sweep every queue). */
void upkeep_request_sweep(struct upkeep *u);

/* Something wants queue depth: read it if the last reading is older than
 * UPKEEP_DEPTH_MAX_AGE_MS (no query otherwise). */
void upkeep_want_depth(struct upkeep *u, int64_t now);

/* The last queue-depth reading (fetched_ms 0: none yet). */
const struct depth_reading *upkeep_depth(const struct upkeep *u);

/* Finished tasks deleted and batches run since start (metrics). */
const struct retention *upkeep_retention(const struct upkeep *u);

/* The last reading of the limited queues, taken with the depth (count 0:
 * none yet, or no limited queue). */
const struct limits_reading *upkeep_limits(const struct upkeep *u);

/* Whether the last poll succeeded: the schema is migrated and readable. */
bool upkeep_schema_ok(const struct upkeep *u);

/* Free what it holds (supervisor at exit). */
void upkeep_free(struct upkeep *u);

#endif
