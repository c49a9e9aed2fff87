/*
 * pool.h — the worker pool: a fixed table of slots (STYLE §7). The
 * supervisor's private half of each slot lives here; the half the worker
 * writes lives in shared memory (shm.h).
 */
#ifndef PGWORK_POOL_H
#define PGWORK_POOL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "../shared/config.h"
#include "../shared/shm.h"

struct pool_slot {
    pid_t pid;   /* running process, 0 = none */
    int wake_fd; /* eventfd the supervisor writes to wake it; lives as long as the pool */
    int consecutive_failures; /* exits in a row that were not asked for */
    int64_t started_ms;       /* when the current process was forked */
    int64_t restart_due_ms;   /* earliest time to fork again (backoff) */
    bool wanted;              /* the pool wants a worker in this slot */
    bool fatal;               /* exited "do not respawn" (bad config) */
    bool retiring;            /* sent TERM on purpose (scale-down, roll): not a crash */
    bool roll_pending;        /* runs an old config: replace it when its turn comes */
};

/* What a reaped worker left behind, so the supervisor can requeue its
 * tasks at once (DESIGN §2). */
struct pool_exit {
    int slot;
    const char *locked_by; /* the owner tag its claims carry */
    int64_t running_task;  /* the task it was running, 0 = none */
    int32_t backend_pid;   /* its database backend, 0 = none or unknown */
    bool clean;            /* it stopped when asked, having released its tasks */
};

typedef void (*pool_worker_exited_fn)(void *ctx, const struct pool_exit *exit);

/* What the pool is given once, at pool_init. */
struct pool_setup {
    const struct pgwork_config *config;
    struct shm *shm;
    const int *queue_slots; /* config queue index -> shm queue record (the caller's) */
    int request_fd;         /* the supervisor's eventfd, inherited by workers */
    int death_fd;           /* read end of the parent-death pipe */
    const char *pod_name;   /* the pod part of locked_by: "<hostname>:<incarnation>" */
    pool_worker_exited_fn worker_exited;
    void *ctx; /* passed to worker_exited */
};

struct pool {
    const struct pgwork_config *config;
    struct shm *shm;
    struct pool_slot *slots; /* capacity entries */
    int capacity;            /* workers.max: slots in shm */
    int target;              /* number of wanted slots */
    const int *queue_slots;  /* config queue index -> shm queue record (supervisor-owned) */
    int request_fd;          /* the supervisor's eventfd, inherited by workers */
    int death_fd;            /* read end of the parent-death pipe */
    pid_t supervisor_pid;
    const char *pod_name; /* the pod part of locked_by: "<hostname>:<incarnation>" */
    bool stopping;        /* shutting down: no restarts */
    pool_worker_exited_fn worker_exited;
    void *ctx;
};

/*
 * The fields of struct pool are pool.c's own: callers use the functions
 * below.
 */

/* Allocate slots and their eventfds. 0 or -1 (logged). */
int pool_init(struct pool *pool, const struct pool_setup *setup);

/* Fork a worker into every wanted slot that has none and whose backoff
 * has passed. */
void pool_start_missing(struct pool *pool, int64_t now);

/* waitpid() until it returns 0; map pids to slots; log each exit; schedule
 * restarts with backoff. Unknown pids (orphans, as PID 1) are reaped too. */
void pool_reap(struct pool *pool, int64_t now);

/* Wake one idle worker serving queue_index (the lowest idle slot, found
 * through the shm idle mask). Returns whether one was woken. */
bool pool_wake_one(struct pool *pool, int queue_index);

/* Whether an idle worker that pool_wake_one could wake for queue_index
 * is there (the doorbell arms the queue while one is). */
bool pool_idle_for(const struct pool *pool, int queue_index);

/* Add or retire workers, one per unit of delta, within
 * workers.min..workers.max. TTIN fills the lowest free slot; TTOU retires
 * the highest wanted slot, gracefully if it is busy (SIGTERM lets it
 * finish its task), never a lower idle one: a queue served by slots
 * 0..N-1 keeps them. */
void pool_scale(struct pool *pool, int delta);

/* Switch to a new config and its queue map (after a reload): target =
 * workers.count within bounds (lowered as pool_scale does, from the top),
 * and every running worker is marked to be rolled when roll_workers. */
void pool_set_config(struct pool *pool, const struct pgwork_config *config, const int *queue_slots,
                     bool roll_workers);

/* Roll one worker at a time: when no replacement is starting and none is
 * retiring, SIGTERM one worker still running an old config (idle first). */
void pool_roll_next(struct pool *pool);

void pool_signal_all(const struct pool *pool, int sig);

/* Shutting down: no restarts from now on; sig to every worker. */
void pool_stop(struct pool *pool, int sig);

/* Processes alive in the pool. */
int pool_alive(const struct pool *pool);

/* Workers the pool wants (workers.count, moved by TTIN/TTOU). */
int pool_target(const struct pool *pool);

/* Slots (workers.max), and whether slot has a process right now. */
int pool_capacity(const struct pool *pool);
bool pool_slot_running(const struct pool *pool, int slot);

/* Every slot the pool wants has failed with a configuration error. */
bool pool_all_fatal(const struct pool *pool);

/* Earliest restart_due_ms among slots waiting to restart, or INT64_MAX. */
int64_t pool_next_deadline(const struct pool *pool);

/* Log one line per slot (USR1). */
void pool_log_status(const struct pool *pool);

/* The owner tag a worker's claims carry: "<pod>/<slot>/<pid>", where
 * <pod> is pod_name, "<hostname>:<incarnation>". */
void pool_locked_by(const struct pool *pool, int slot, pid_t pid, char *out, size_t outlen);

/* Task task_id, running under locked_by, was cancelled (pgwork.cancel):
 * if locked_by is one of this pod's live workers, post the id in its shm
 * slot and send it SIGUSR2, so it stops the task. Its slot, or -1 (not
 * ours, that worker is gone, or the signal failed: logged). */
int pool_cancel_task(struct pool *pool, const char *locked_by, int64_t task_id);

/* A text[] literal of the locked_by tags of the busy (or stopping) workers
 * (malloc'd): those that may hold claimed tasks; NULL when none is. */
char *pool_busy_owners(const struct pool *pool);

/* Close the slots' eventfds and free them (the supervisor at exit). */
void pool_free(struct pool *pool);

#endif
