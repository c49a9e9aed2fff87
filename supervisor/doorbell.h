/*
 * doorbell.h — this pod's arms in pgwork.doorbell (DESIGN §1.8, migration
 * 0008): a queue is armed while the pod has an idle worker waiting on it,
 * so the insert trigger rings this pod (on its own channel) only when a
 * notification can wake somebody. Disarmed when its last idle worker has
 * been woken; armed again when one goes idle, and then probed once (a task
 * committed before the arm was announced to nobody).
 *
 * Its statements are upkeep jobs on the listener's connection (upkeep.c
 * calls doorbell_refresh, doorbell_due / doorbell_send / doorbell_on_result
 * and doorbell_on_end); it never blocks and never touches the socket.
 */
#ifndef PGWORK_DOORBELL_H
#define PGWORK_DOORBELL_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "../shared/config.h"
#include "../shared/shm.h"

struct listener;
struct pool;

/* Arm writes at most this often on average, two in a row at once (a
 * disarm right after an arm: a storm's first rings): <= 50 writes/s per
 * pod under any load, however often workers go idle (one write carries
 * every queue). */
#define DOORBELL_WRITE_INTERVAL_MS 20
/* A ring less than this after the one before it means a storm: the queue
 * is held disarmed (below) even though idle workers remain. Isolated
 * tasks, further apart, keep the arm up and their pickup at the NOTIFY
 * floor. */
#define DOORBELL_STORM_GAP_MS 10
/* The hold-off of a storm: the queue stays disarmed, and while an idle
 * worker waits the pod probes it every hold (the probe wakes one when it
 * finds a task), starting at MIN and doubling with each QUIET window the
 * storm goes on, up to MAX (at most 1000 / MAX probes a second per queue:
 * the write budget). The storm goes on while STORM_TASKS or more tasks come
 * in each QUIET window (claimed by the pod's workers or found due); fewer
 * end it: the queue is armed again, so an isolated task after it is rung
 * (fewer than 100 tasks a second cost at most that many notifications).
 * A storm that starts again within MEMORY of the last one's end starts at
 * the hold that one reached: a storm that only paused re-arms rarely. */
#define DOORBELL_HOLD_STORM_TASKS 5
#define DOORBELL_HOLD_MIN_MS 5
#define DOORBELL_HOLD_MAX_MS 20
#define DOORBELL_HOLD_QUIET_MS 50
#define DOORBELL_HOLD_MEMORY_MS 1000
/* The first wait of the watch (doorbell.c: re-probes while transactions
 * that were running at an arm's probe have not ended), doubling. */
#define DOORBELL_REPROBE_MIN_MS 10
/* After a failed statement (schema not migrated, say), try again then. */
#define DOORBELL_RETRY_MS 5000
/* Rows of dead pods are deleted every this many safety poll intervals
 * (5 min by default), and by every pod when it (re)connects. */
#define DOORBELL_CLEANUP_POLLS 5

/* What a probe found. */
typedef void (*doorbell_due_fn)(void *ctx, int queue_index, int64_t delay_ms);

struct doorbell_setup {
    const struct pgwork_config *config;
    struct shm *shm;
    const int *queue_slots; /* config queue index -> shm queue record */
    const struct pool *pool;
    const struct listener *listener;
    const char *pod_tag;         /* the pod part of locked_by */
    doorbell_due_fn on_task_due; /* a probe found a task due now (0) or later */
    void *ctx;
};

/* Per configured queue, what the database holds for this pod. */
enum doorbell_row {
    DOORBELL_UNKNOWN = -1, /* not written on this connection */
    DOORBELL_DISARMED = 0,
    DOORBELL_ARMED = 1,
};

struct doorbell_stats {
    uint64_t writes;      /* arm/disarm statements that committed */
    uint64_t arms;        /* queues armed by them */
    uint64_t disarms;     /* queues disarmed by them */
    uint64_t probes;      /* probe statements */
    uint64_t probe_finds; /* queues a probe found due (tasks no ring announced) */
    uint64_t reprobes;    /* probes scheduled by the watch (transactions open at an arm) */
    uint64_t cleaned;     /* rows of dead pods deleted */
    uint64_t storms;      /* hold-offs begun (rings within DOORBELL_STORM_GAP_MS) */
    uint64_t hold_probes; /* probes sent while a queue was held */
    uint64_t failures;    /* statements that failed */
};

/* A queue's storm hold-off (DOORBELL_HOLD_*). */
struct doorbell_hold {
    int64_t ms;            /* the hold now; 0 = not held (armed while a worker idles) */
    int64_t next_ms;       /* held: the next probe, not before */
    int64_t mark_ms;       /* held: the current window began (the storm, or the last full window) */
    uint64_t mark_claimed; /* held: the queue's tasks_claimed then */
    int64_t last_ms;       /* the hold the last storm reached */
    int64_t ended_ms;      /* when that storm ended, 0 = never */
};

/* The fields are doorbell.c's own. */
struct doorbell {
    struct doorbell_setup setup;
    bool serving;           /* running and not quiet: arms are wanted */
    int32_t pid;            /* the listener's backend the rows name; 0 = none */
    int count;              /* queues in the arrays */
    signed char *want;      /* per queue: ARMED when an idle worker waits */
    signed char *rows;      /* per queue: enum doorbell_row, what the database holds */
    signed char *sent;      /* per queue: what the write in flight writes; UNKNOWN = not in it */
    bool *probe;            /* per queue: armed just now, probe it */
    bool *probing;          /* per queue: in the probe in flight */
    int64_t *last_ring_ms;  /* per queue: the last notification heard, 0 = none */
    bool full;              /* the next write names every queue (new connection, reload) */
    int in_flight;          /* the statement in flight (enum in .c), 0 = none */
    int64_t write_due_ms;   /* not before (rate limit, retry) */
    int64_t write_tat_ms;   /* the rate limit's clock (GCRA) */
    int64_t probe_due_ms;   /* not before (retry, the watch's wait) */
    bool probe_fresh;       /* a queue in probe[] was armed just now */
    bool probing_fresh;     /* the same, of the probe in flight */
    bool probe_watch;       /* probe[] holds the watch's probe (doorbell_watch_fire) */
    bool probing_watch;     /* the same, of the probe in flight */
    uint64_t watch_xid;     /* the watch: until a watch probe's xmin reaches it; 0 = none */
    int64_t watch_delay_ms; /* its next wait */
    int64_t watch_due_ms;   /* its next probe; INT64_MAX: in probe[] or in flight */
    int64_t cleanup_due_ms; /* next cleanup of dead pods' rows */
    bool failing;           /* the last statement failed (logged once) */
    struct doorbell_stats stats;

    /* per queue: its storm hold-off */
    struct doorbell_hold *hold;
};

void doorbell_init(struct doorbell *d, const struct doorbell_setup *setup);

/* A reloaded config and its queue map: every row is written again. */
void doorbell_set_config(struct doorbell *d, const struct pgwork_config *config,
                         const int *queue_slots);

/* Running and not quiet (false: every queue is disarmed). */
void doorbell_set_serving(struct doorbell *d, bool serving);

/* The upkeep job (upkeep.c's table). doorbell_refresh comes first: it
 * reads the workers' states and the listener's connection into what is
 * wanted (a queue with no idle worker asks its workers to say when one
 * goes idle), and marks the hold and watch probes that came due; nothing
 * while a statement is out.
 * Then, changing nothing: when something is due (<= now: now; INT64_MAX:
 * nothing); send it (0: libpq refused; DOORBELL_NOTHING_SENT: nothing was
 * due after all); its result. */
#define DOORBELL_NOTHING_SENT (-1)
void doorbell_refresh(struct doorbell *d, int64_t now);
int64_t doorbell_due(const struct doorbell *d, int64_t now);
int doorbell_send(struct doorbell *d, PGconn *conn, int64_t now);
void doorbell_on_result(struct doorbell *d, const PGresult *res, bool ok, int64_t now);
/* The statement in flight is over (all results in, or the connection went). */
void doorbell_on_end(struct doorbell *d);

/* A notification for configured queue q was heard at now (a ring). */
void doorbell_rung(struct doorbell *d, int q, int64_t now);

/* Whether this pod's arm for configured queue q is in the database now. */
bool doorbell_armed(const struct doorbell *d, int q);

struct doorbell_stats doorbell_stats(const struct doorbell *d);

void doorbell_free(struct doorbell *d);

#endif
