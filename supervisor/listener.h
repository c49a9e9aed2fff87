/*
 * listener.h — the supervisor's one database connection: connect (host
 * names looked up by a resolver child), LISTEN for task notifications and
 * parse them, keepalive pings; it also carries the statements of one
 * client (upkeep.h), one at a time. Driven entirely by the supervisor's
 * epoll loop with libpq's non-blocking calls; never blocks.
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
    /* A notification: queue queue_index has a pending task due in
     * delay_ms (0 = now). */
    void (*on_task_hint)(void *ctx, int queue_index, int64_t delay_ms);
    /* The same notification came on this pod's own ring channel: the
     * insert trigger rang the pod's arm for queue_index (the doorbell).
     * Called just before the notification's own callback (on_task_hint,
     * or on_due_unknown while the database's clock is not measured). */
    void (*on_rung)(void *ctx, int queue_index);
    /* A notification: something may be due in any queue ("*"). */
    void (*on_sweep)(void *ctx);
    /* A notification for a task whose due time cannot be told yet (the
     * database's clock is not measured yet): the poll knows it. */
    void (*on_due_unknown)(void *ctx);
    /* A control message on the task channel: the payload after its '!'
     * (migration 0011: "pause <queue>", "cancel <id> <locked_by>", ...). */
    void (*on_control)(void *ctx, const char *message);
    /* The connection came up (listening, or polling when LISTEN is off;
     * notifications sent meanwhile are lost, DESIGN §1.5) or went down. */
    void (*on_connection)(void *ctx, bool up);
};

/* The one client whose statements the connection carries (upkeep.c). It
 * is asked for a statement whenever the connection is free, before the
 * keepalive ping; everything is called from within listener_* calls. */
struct listener_client {
    /* Send the most urgent statement due by now on conn (PQsendQuery*, not
     * flushed): 1 sent, 0 nothing due, -1 libpq refused it. */
    int (*send)(void *ctx, PGconn *conn, int64_t now);
    /* One result of the statement sent. */
    void (*on_result)(void *ctx, const PGresult *res, int64_t now);
    /* The statement sent is over: all its results are in, or the
     * connection went first. */
    void (*on_end)(void *ctx);
    /* When send has something to send next (<= now: now; INT64_MAX:
     * nothing). */
    int64_t (*next_due)(const void *ctx, int64_t now);
};

/* Counters for status lines and /metrics. */
struct listener_stats {
    uint64_t reconnects;      /* connections made after the first */
    uint64_t notifications;   /* task notifications received */
    uint64_t rings;           /* of them, on this pod's own ring channel (the doorbell) */
    int64_t last_ping_rtt_ms; /* the last keepalive's round trip, 0 = none yet */
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

    struct listener_client client; /* whose statements it carries */
    void *client_ctx;
    int in_flight;         /* the query awaiting results (enum in .c), 0 = none */
    int64_t query_sent_ms; /* when in_flight was sent */

    /* The database's clock (ms since the epoch) minus CLOCK_MONOTONIC ms,
     * measured by the setup query and every poll (listener_clock_sample): notifications carry
     * absolute due times on that clock. */
    int64_t db_clock_offset_ms;
    bool db_clock_known;

    int64_t last_traffic_ms; /* last byte read from the server */
    int64_t ping_sent_ms;    /* keepalive ping in flight since, 0 = none */
    int64_t last_ping_rtt_ms;
    char ping_channel[64]; /* this connection's private channel */
    char ring_channel[64]; /* where the insert trigger rings this pod (doorbell.c) */

    /* Statistics (for status lines and metrics). */
    bool ever_up;        /* a connection succeeded before */
    uint64_t reconnects; /* connections made after the first */
    uint64_t notifications;
    uint64_t rings;
};

/* What a task notification payload means (DESIGN §2): "@<due> <queue>"
 * (due at <due> ms since the epoch, the database's clock), "0 <queue>"
 * (due now) or "*" — what pgwork.notify_message() builds for the trigger
 * and requeue-dead (migration 0006) — or "<delay_ms> <queue>" (due that
 * long after delivery: older triggers, a producer's own pg_notify). */
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

/* The fields of struct listener are this module's own: callers use the
 * functions below. */
void listener_init(struct listener *l, const struct pgwork_config *config, int epoll_fd,
                   const struct listener_callbacks *callbacks, void *ctx);

/* The client whose statements the connection carries (copied). */
void listener_set_client(struct listener *l, const struct listener_client *client, void *ctx);

/* A reading of the database's clock: db_ms (ms since the epoch) taken by a
 * statement sent at sent_ms whose result came at now (CLOCK_MONOTONIC ms);
 * the reading is placed at the round trip's midpoint. Notifications carry
 * due times on that clock. */
void listener_clock_sample(struct listener *l, int64_t db_ms, int64_t sent_ms, int64_t now);

/* The database's clock minus CLOCK_MONOTONIC (ms) as last measured: true
 * and *offset_ms, or false while not measured yet. */
bool listener_db_clock_offset(const struct listener *l, int64_t *offset_ms);

/* Handle epoll readiness of fd: the connection's socket, or the pipe of
 * the resolver child (every fd the listener registered). */
void listener_on_io(struct listener *l, int fd, uint32_t events);

/* Timers: reconnect, resolve and connect timeouts, keepalive, the
 * client's statements. */
void listener_run_chores(struct listener *l, int64_t now);

/* Earliest time listener_run_chores has something to do. */
int64_t listener_next_deadline(const struct listener *l);

/* Whether tasks are being announced to us right now (connected and
 * LISTENing). When false, the supervisor polls blindly. */
bool listener_is_listening(const struct listener *l);

/* Whether the connection is up (it may be polling without LISTEN). */
bool listener_is_up(const struct listener *l);

/* Whether the connection is up with nothing in flight: the client's
 * next_due is asked only then. */
bool listener_is_free(const struct listener *l);

/* The connection's backend pid (its ring channel is "pgwork_ring_<pid>"),
 * 0 while it is not up. */
int32_t listener_backend_pid(const struct listener *l);

/* Switch to a reloaded config (the old one may be freed afterwards); a
 * changed channel or enabled flag reconnects at once. */
void listener_set_config(struct listener *l, const struct pgwork_config *config);

struct listener_stats listener_stats(const struct listener *l);

/* Close the connection (supervisor at exit). */
void listener_close(struct listener *l);

#endif
