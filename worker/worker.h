/*
 * worker.h — the worker process: forked (no exec) by the supervisor, it
 * connects to the database, sleeps on its eventfd and drains the queues
 * whose hints changed (DESIGN §1).
 */
#ifndef PGWORK_WORKER_H
#define PGWORK_WORKER_H

#include <stdbool.h>
#include <sys/types.h>

#include "../shared/config.h"
#include "../shared/exitcodes.h" /* worker_main exits with WORKER_EXIT_* */
#include "../shared/shm.h"

/* Everything a worker inherits from the supervisor. The supervisor has
 * already closed, in the child, every fd that is not listed here. */
struct worker_args {
    int slot; /* index into shm->workers */
    const struct pgwork_config *config;
    struct shm *shm;
    int wake_fd;    /* this worker's eventfd: the supervisor writes 1 to wake it */
    int request_fd; /* the supervisor's eventfd: write 1 after setting a request in shm */
    int death_fd;   /* read end of the parent-death pipe: EOF when the supervisor dies */
    pid_t supervisor_pid;
    const char *pod_name; /* "<hostname>:<incarnation>", for locked_by (pool_locked_by) */
    /* config->queues[i] lives in shm->queues[queue_slots[i]]: records are
     * keyed by queue name for the supervisor's lifetime, so a reload that
     * reorders or adds queues never makes a worker read another queue's
     * hint. */
    const int *queue_slots;
};

/* The worker's main; never returns. */
void worker_main(const struct worker_args *args) __attribute__((noreturn));

/* Whether worker `slot` serves `queue`: queue->workers == 0 means every
 * worker; N > 0 means the workers in slots 0..N-1 (stable across scaling,
 * since slots are filled from 0). Both sides use it: the supervisor to
 * choose whom to wake, the worker to know what to drain. */
bool worker_serves_queue(int slot, const struct queue_config *queue);

#endif
