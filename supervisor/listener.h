/*
 * listener.h — the supervisor's one database connection: LISTEN for task
 * notifications, keepalive pings, the poll query, requeues of a dead
 * worker's tasks. Driven entirely by the supervisor's epoll loop with
 * libpq's non-blocking calls; never blocks.
 */
#ifndef PGWORK_LISTENER_H
#define PGWORK_LISTENER_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "resolver.h"
#include "../shared/config.h"

enum listener_state {
    LISTENER_DOWN,       /* no connection; reconnect at reconnect_due_ms */
    LISTENER_RESOLVING,  /* a resolver child looks the host name up */
    LISTENER_CONNECTING, /* PQconnectPoll in progress */
    LISTENER_UP,         /* connected; LISTEN sent or active */
};

/* The supervisor's reactions to what the database said. */
struct listener_callbacks {
    /* Queue queue_index has a pending task due in delay_ms (0 = now);
     * notified: it came from a notification (else from the poll). */
    void (*on_task_hint)(void *ctx, int queue_index, int64_t delay_ms, bool notified);
    /* Something may be due in any queue ("*" notifications, requeues). */
    void (*on_sweep)(void *ctx);
    /* The connection came up (listening, or polling when LISTEN is off)
     * or went down. */
    void (*on_connection)(void *ctx, bool up);
};

/* Queue depth by state, per configured queue (config order), for
 * /metrics: read at most every LISTENER_DEPTH_MAX_AGE_MS and only when
 * asked (something scrapes). */
struct listener_depth {
    int count;              /* queues in the arrays below; 0 = never read */
    char **names;           /* owned copies */
    int64_t *pending_due;   /* pending, run_at <= now() */
    int64_t *pending_later; /* pending, run_at > now() */
    int64_t *running;
    int64_t *dead;
    double notify_queue_usage; /* pg_notification_queue_usage(), 0..1 */
    int64_t fetched_ms;        /* when it was read, 0 = never */
};

#define LISTENER_DEPTH_MAX_AGE_MS 15000

/* One queued write the supervisor asked for: requeue a dead worker's
 * running tasks. Tried again, later and behind the others, while some of
 * its rows stay locked or the statement fails. */
struct listener_requeue {
    char *locked_by;     /* owned */
    int64_t task_id;     /* the task it was running when it died, 0 = none */
    int slot;            /* its worker slot (its backend's application_name) */
    int32_t backend_pid; /* its backend, to stop first; 0 = none or stopped */
    int64_t due_ms;      /* not before (CLOCK_MONOTONIC ms) */
    int tries;           /* attempts so far */
    int stop_tries;      /* backend_pid signalled this often, still exiting */
};

struct listener {
    const struct pgwork_config *config;
    struct listener_callbacks callbacks;
    void *ctx;
    int epoll_fd;

    enum listener_state state;
    PGconn *conn;
    int registered_fd;          /* fd in epoll, -1 = none */
    uint32_t registered_events; /* its event mask */

    struct resolver resolver;    /* LISTENER_RESOLVING: the lookup */
    int failures;                /* connection attempts failed in a row */
    int64_t reconnect_due_ms;    /* LISTENER_DOWN: when to try again */
    int64_t connect_deadline_ms; /* LISTENER_CONNECTING: give up after */
    bool listening;              /* LISTEN confirmed on this connection */
    bool setup_failed;           /* a statement of the session setup failed */

    int in_flight;         /* the query awaiting results (enum in .c), 0 = none */
    int in_flight_requeue; /* QUERY_REQUEUE / QUERY_STOP_BACKEND: index in requeues */
    int64_t query_sent_ms; /* when in_flight was sent */
    int64_t poll_due_ms;   /* next poll query */
    bool sweep_requested;  /* poll as soon as the connection is free */
    int64_t lease_due_ms;  /* a running task's lease runs out: poll then; 0 = none */

    /* The database's clock (ms since the epoch) minus CLOCK_MONOTONIC ms,
     * measured by the setup query and every poll (at the round trip's
     * midpoint): notifications carry absolute due times on that clock. */
    int64_t db_clock_offset_ms;
    bool db_clock_known;

    int64_t last_traffic_ms; /* last byte read from the server */
    int64_t ping_sent_ms;    /* keepalive ping in flight since, 0 = none */
    int64_t last_ping_rtt_ms;
    char ping_channel[64]; /* this connection's private channel */

    char *queue_names;        /* text[] literal of the configured queues (owned) */
    char *queue_max_attempts; /* int[] literal of their max_attempts (owned) */

    char *renew_owners;          /* text[] literal of workers whose leases to renew, owned */
    struct listener_depth depth; /* last queue-depth reading */
    bool depth_requested;        /* read depth when the connection is free */

    struct listener_requeue *requeues; /* FIFO of pending requeues */
    int requeue_count;
    int requeue_capacity;

    /* Statistics (for status lines and metrics). */
    bool ever_up;        /* a connection succeeded before */
    bool schema_ok;      /* the last poll query succeeded (schema migrated) */
    uint64_t reconnects; /* connections made after the first */
    uint64_t notifications;
};

/* What a task notification payload means (DESIGN §2): "@<due> <queue>"
 * (the trigger: due at <due> ms since the epoch, the database's clock),
 * "<delay_ms> <queue>" (due that long after delivery; "0 <queue>": now) or
 * "*". */
enum listener_notification {
    LISTENER_NOTIFY_QUEUE,       /* a configured queue: *queue_index, *delay_ms set */
    LISTENER_NOTIFY_QUEUE_AT,    /* the same, with *delay_ms the absolute due time */
    LISTENER_NOTIFY_OTHER_QUEUE, /* well formed, for a queue this pod does not serve */
    LISTENER_NOTIFY_SWEEP,       /* "*": something may be due in any queue */
    LISTENER_NOTIFY_MALFORMED,   /* not a pgwork payload: ignored with a warning */
};

/* Parse a payload from the task channel. Pure: no side effects; any
 * NUL-terminated input is safe (a fuzz target drives it). */
int listener_parse_notification(const struct pgwork_config *config, const char *payload,
                                int *queue_index, int64_t *delay_ms);

void listener_init(struct listener *l, const struct pgwork_config *config, int epoll_fd,
                   const struct listener_callbacks *callbacks, void *ctx);

/* Handle epoll readiness of fd: the connection's socket, or the pipe of
 * the resolver child (every fd the listener registered). */
void listener_on_io(struct listener *l, int fd, uint32_t events);

/* Timers: reconnect, resolve and connect timeouts, poll, keepalive. */
void listener_run_chores(struct listener *l, int64_t now);

/* Earliest time listener_run_chores has something to do. */
int64_t listener_next_deadline(const struct listener *l);

/* Whether tasks are being announced to us right now (connected and
 * LISTENing). When false, the supervisor polls blindly. */
bool listener_is_listening(const struct listener *l);

/* Whether the connection is up (it may be polling without LISTEN). */
bool listener_is_up(const struct listener *l);

/* Queue an UPDATE putting a dead worker's tasks back to pending:
 * locked_by's running rows, and running_task (the one it was running, from
 * shared memory; 0 = none) charged one attempt. backend_pid (0 = unknown)
 * is the dead worker's backend in slot: stopped first, so it releases the
 * rows it may still hold. */
void listener_requeue_owner(struct listener *l, const char *locked_by, int64_t running_task,
                            int slot, int32_t backend_pid);

/* Switch to a reloaded config (the old one may be freed afterwards); a
 * changed channel or enabled flag reconnects at once. */
void listener_set_config(struct listener *l, const struct pgwork_config *config);

/* Renew the leases of the running tasks of these owners (a text[] literal
 * of locked_by tags; ownership passes to the listener) as soon as the
 * connection is free. */
void listener_renew_leases(struct listener *l, char *owners);

/* Number of requeues not yet confirmed by the database. */
int listener_pending_requeues(const struct listener *l);

/* Something wants queue depth: read it if the last reading is older than
 * LISTENER_DEPTH_MAX_AGE_MS (no query otherwise). */
void listener_want_depth(struct listener *l, int64_t now);

/* Run a poll query as soon as possible (sweep every queue). */
void listener_request_sweep(struct listener *l);

/* Close the connection (supervisor at exit). */
void listener_close(struct listener *l);

#endif
