/*
 * supervisor_internal.h — the supervisor's state, shared by its two files
 * only: supervisor.c (the main loop, signal requests, chores, reload) and
 * supervisor_setup.c (opening and closing its modules, and the callbacks
 * they call it back through). Nothing else includes this.
 */
#ifndef PGWORK_SUPERVISOR_INTERNAL_H
#define PGWORK_SUPERVISOR_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "doorbell.h"
#include "throughput.h"
#include "http.h"
#include "listener.h"
#include "pool.h"
#include "signals.h"
#include "ticks.h"
#include "upkeep.h"
#include "../shared/config.h"
#include "../shared/shm.h"

enum supervisor_phase {
    PHASE_RUNNING,       /* serving queues */
    PHASE_STOPPING,      /* TERM/INT: workers finish their task and exit */
    PHASE_STOPPING_FAST, /* QUIT (or graceful timed out): workers abort now */
    PHASE_KILLING,       /* workers ignored QUIT: SIGKILL sent */
    PHASE_DONE,          /* leave the loop */
};

struct supervisor {
    struct pgwork_config *config;
    struct shm shm;
    struct pool pool;
    struct listener listener;
    struct upkeep upkeep;         /* its statements go on the listener's connection */
    struct ticks ticks;           /* the schedules; their claims go through upkeep */
    struct doorbell doorbell;     /* this pod's arms; its statements are upkeep's */
    struct throughput throughput; /* finished per minute; its upsert is upkeep's */
    bool throughput_flushed;      /* the minute in progress taken at shutdown */
    struct http_server http;
    int epoll_fd;
    int signal_fd;
    int timer_fd;
    int request_fd;    /* workers write here after posting a request in shm */
    int death_pipe[2]; /* [0] inherited by workers; [1] held here: EOF = we died */
    /* "<hostname>:<incarnation>", the pod part of every locked_by tag of
     * this run (pool_locked_by). */
    char pod_tag[320];

    struct signal_requests requests;
    enum supervisor_phase phase;
    int64_t phase_deadline_ms;   /* when the current stopping phase escalates */
    int64_t requeue_deadline_ms; /* stopping, workers gone: stop waiting for requeues */
    bool quiet;                  /* TSTP: no new claims until CONT */
    int *queue_slots;            /* config queue index -> shm queue record */
    char **slot_names;           /* shm queue record -> queue name (owned); NULL = free */
    int64_t *scheduled_due_ms;   /* per shm queue record: a future task's due time, 0 = none */
    int64_t blind_poll_due_ms;   /* listener down: next blind wake of every queue */
    int64_t lease_renew_due_ms;  /* next renewal of running tasks' leases */
    int exit_code;
};

/* Tasks may have arrived in queue q: bump its hints, wake one idle worker
 * (supervisor.c). */
void supervisor_hint_queue(struct supervisor *s, int q);
void supervisor_hint_all(struct supervisor *s);

/* Queue q has a task due at due_ms (CLOCK_MONOTONIC ms): hint it then. */
void supervisor_schedule(struct supervisor *s, int q, int64_t due_ms);

/* Give every queue of config a shared-memory record (slots: config's
 * queue_count entries); -1 when shared memory has no room left
 * (supervisor_setup.c). */
int supervisor_map_queues(struct supervisor *s, const struct pgwork_config *config, int *slots);

/* Create the fds, shared memory, pool, listener, upkeep, ticks, doorbell
 * and the http endpoint; 0, or -1 (logged; supervisor_close cleans up). */
int supervisor_open(struct supervisor *s);
void supervisor_close(struct supervisor *s);

#endif
