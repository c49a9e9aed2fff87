/*
 * shm.h — the shared-memory layout: the one place where the supervisor and
 * the workers meet.
 *
 * One anonymous MAP_SHARED mapping is created by the supervisor before the
 * first fork and inherited by every worker (no /dev/shm name). Layout:
 *
 *     struct shm_header
 *     struct shm_queue  [queue_capacity]   indexed like config->queues
 *     struct shm_worker [worker_capacity]  indexed by worker slot number
 *     _Atomic uint64_t  [(worker_capacity + 63) / 64]  idle mask, a bit a slot
 *
 * Every field that more than one process touches is a C11 atomic; there are
 * no locks shared across processes. Each field's comment says who writes it
 * (W:) and who reads it (R:). "sup" = supervisor, "wrk" = the worker owning
 * the slot, "any wrk" = any worker.
 *
 * Memory order: the wake-up handshake (queue.hint vs worker.state) uses
 * sequentially consistent operations on both sides — see shm_worker.state.
 * Counters are relaxed: they are statistics, read for metrics and tests.
 */
#ifndef PGWORK_SHM_H
#define PGWORK_SHM_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#define SHM_MAGIC 0x7067776bu /* "pgwk" */
#define SHM_VERSION 1u

/* Histogram bucket upper bounds (microseconds) for task duration and
 * pickup latency; one more bucket (+Inf) follows. Buckets are stored
 * per-bucket (not cumulative); /metrics adds them up. */
#define SHM_HISTOGRAM_BOUNDS                                                                       \
    {                                                                                              \
        1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000,  \
            10000000, 30000000, 60000000                                                           \
    }
#define SHM_HISTOGRAM_BUCKETS 16 /* 15 bounds + Inf */

/* Cancelled task ids a worker slot remembers (shm_worker.cancel_ids). */
#define SHM_CANCEL_IDS 32

struct shm_histogram {
    _Atomic uint64_t buckets[SHM_HISTOGRAM_BUCKETS];
    _Atomic uint64_t sum_us;
};

/* Count one observation (relaxed: statistics). */
void shm_histogram_observe(struct shm_histogram *h, int64_t value_us);

enum worker_state {
    WORKER_EMPTY = 0, /* slot unused: no process (sup writes) */
    WORKER_STARTING,  /* forked, connecting to the database (sup writes before fork) */
    WORKER_IDLE,      /* asleep on its eventfd, may be woken (wrk writes) */
    WORKER_WOKEN,     /* sup wrote its eventfd; not yet running (sup CAS IDLE->WOKEN) */
    WORKER_BUSY,      /* claiming or running tasks (wrk writes) */
    WORKER_STOPPING,  /* finishing its task before exiting (wrk writes) */
};

struct shm_header {
    uint32_t magic;           /* W: sup at creation. R: tests, debuggers */
    uint32_t version;         /* W: sup at creation */
    uint32_t queue_capacity;  /* W: sup at creation */
    uint32_t worker_capacity; /* W: sup at creation */

    /* TSTP: 1 = quiet, workers claim nothing new (they finish the task they
     * run and release what they claimed but did not start); CONT: 0.
     * W: sup. R: any wrk before each claim and each task. */
    _Atomic uint32_t quiet;
};

struct shm_queue {
    /*
     * Pending-work hint, bumped by the supervisor for every notification,
     * sweep, poll or timer that concerns this queue. A worker remembers the
     * last value it drained for; a different value means "claim again".
     * W: sup (fetch_add, seq_cst); also any wrk asking for help. R: any wrk.
     */
    _Atomic uint64_t hint;

    /*
     * Bumped (before hint) for everything that may mean new tasks — a
     * notification, sweep, poll, timer — but not for help requests. A
     * draining worker claims onward from the last task it claimed; when
     * this moves, tasks may sort before that point (a higher priority, a
     * retry that came due), so its next claim starts from the beginning.
     * W: sup. R: any wrk.
     */
    _Atomic uint64_t arrivals;

    /* Set by a worker whose claim returned a full batch: the supervisor
     * wakes one more idle worker for the queue. W: any wrk (store 1) then
     * writes the request eventfd. R/W: sup (exchange 0). */
    _Atomic uint32_t help_wanted;

    /*
     * The doorbell (DESIGN §1.8): 1 while the supervisor would arm this
     * queue as soon as a worker serving it goes idle (it has none idle and
     * its arm is down). A worker that stores IDLE and then sees 1 writes the
     * request eventfd. seq_cst on both sides, as the wake-up handshake: the
     * supervisor stores 1 and then looks for an idle worker again.
     * W: sup. R: any wrk.
     */
    _Atomic uint32_t arm_wanted;

    /*
     * Earliest CLOCK_MONOTONIC millisecond at which a retry scheduled by a
     * worker for this queue becomes due; 0 = none. W: any wrk (atomic min via
     * CAS) before writing the supervisor's request eventfd. R/W: sup, which
     * exchanges it back to 0 and arms its timer (DESIGN §1.6).
     */
    _Atomic int64_t retry_due_ms;

    /*
     * 1 while the queue is paused (pgwork.pause, migration 0011) as this
     * pod last heard it — a notification, or the poll that reads
     * pgwork.paused_queues; 0 otherwise. Its workers send no claim for it
     * and start no more of a batch already claimed. The claim statement
     * itself refuses a paused queue, so this only saves statements. On a
     * resume the supervisor stores 0 *before* it bumps the hint: a worker
     * that read the hint and then saw 1 is woken again.
     * W: sup. R: any wrk before each claim and each task; sup (metrics).
     */
    _Atomic uint32_t paused;

    /*
     * A capped queue whose tasks are short (worker.c, "holders"): how many
     * of this pod's workers hold its slots at once, 0 = every worker that
     * serves it. Each worker draining it stores what its own task times
     * say. W: any wrk (relaxed). R: any wrk before each claim of it.
     */
    _Atomic uint32_t cap_holders;
    /*
     * 1 after a worker passed the queue by because cap_holders workers
     * held it: the next holder whose drain ends asks for help for it.
     * seq_cst: the passer stores 1 and then counts the holders again, a
     * holder clears its shm_worker.cap_holding and then exchanges this
     * back to 0, so either the passer sees a holder gone or that holder
     * sees the 1. W: any wrk.
     */
    _Atomic uint32_t cap_passed;

    /* Statistics. W: any wrk (relaxed add). R: sup (metrics), tests. */
    _Atomic uint64_t tasks_cancelled; /* stopped or skipped here, cancelled by pgwork.cancel */
    _Atomic uint64_t claims;          /* claim statements executed */
    _Atomic uint64_t tasks_claimed;   /* rows those claims returned */
    _Atomic uint64_t tasks_done;
    _Atomic uint64_t tasks_retried;
    _Atomic uint64_t tasks_dead;
    _Atomic uint64_t notifications; /* W: sup. notifications received */

    /* W: any wrk (relaxed). R: sup (metrics). */
    struct shm_histogram duration; /* handler run time */
    struct shm_histogram pickup;   /* claim time - run_at, database clock */
};

struct shm_worker {
    /*
     * The wake-up handshake. The worker stores IDLE, then re-reads the hints
     * of its queues, then sleeps on its eventfd. The supervisor bumps a hint,
     * then looks for an IDLE worker and CASes it to WOKEN before writing its
     * eventfd. With seq_cst on both sides, either the worker sees the new
     * hint or the supervisor sees IDLE — a notification can't fall between.
     * W: wrk (store), sup (CAS IDLE->WOKEN; store EMPTY/STARTING around the
     * process's life). R: both.
     * Aligned: every slot fills whole cache lines, whatever fields follow.
     */
    _Alignas(64) _Atomic int state; /* enum worker_state */

    _Atomic pid_t pid; /* W: sup at fork/reap. R: tests, status */
    /* CLOCK_MONOTONIC ms of the worker's last progress (a loop turn, a
     * task finished, a claim round ended); 0 = none yet. W: wrk (relaxed);
     * sup zeroes it before the fork. R: sup (USR1 status: heartbeat_age_ms,
     * which grows on a busy worker that hangs). */
    _Atomic int64_t heartbeat_ms;
    _Atomic int64_t task_id; /* task running now, 0 = none. W: wrk */
    /* Claims that failed in a row (0 after one succeeds; the worker zeroes
     * it at start): claims that keep failing make the pod unready.
     * W: wrk (relaxed). R: sup (/readyz). */
    _Atomic uint64_t claim_failures;

    /*
     * PQbackendPID of the worker's database connection, 0 = none yet. A
     * worker that dies mid statement leaves its backend running (and
     * holding row locks): the supervisor stops that backend before it
     * requeues the worker's tasks. W: wrk after connecting. R/W: sup
     * (exchange 0 when it reaps the worker).
     */
    _Atomic int32_t backend_pid;

    /* 1 + the index of the capped queue whose slots this worker holds in
     * a drain (shm_queue.cap_holders), 0 = none. W: wrk (seq_cst); sup
     * zeroes it before the fork and when it reaps the worker. R: any wrk. */
    _Atomic int32_t cap_holding;

    /*
     * Tasks cancelled (pgwork.cancel) while this worker held them: the
     * supervisor stores an id at cancel_ids[cancel_count %
     * SHM_CANCEL_IDS], then bumps cancel_count, then sends the worker
     * SIGUSR2 (seq_cst: the id is there before the signal). The worker
     * looks a task up in every entry: ids are never reused and a
     * cancelled task is never claimed again, so an old entry never
     * misleads; only more than SHM_CANCEL_IDS cancels of one worker's
     * batch before it gets to them could hide one (the task's outcome is
     * refused by the database all the same).
     * W: sup (zeroed before the fork). R: wrk.
     */
    _Atomic int64_t cancel_ids[SHM_CANCEL_IDS];
    _Atomic uint32_t cancel_count;

    /* Statistics. W: wrk (relaxed). R: sup. */
    _Atomic uint64_t wakeups; /* eventfd reads that returned a count */
    _Atomic uint64_t claims;  /* claim statements executed */
    _Atomic uint64_t tasks_done;
    _Atomic uint64_t tasks_failed; /* retried or dead */
    _Atomic uint64_t restarts;     /* W: sup. processes started in this slot - 1 */
};

/* The whole segment as seen by either side. */
struct shm {
    struct shm_header *header;
    struct shm_queue *queues;   /* header->queue_capacity entries */
    struct shm_worker *workers; /* header->worker_capacity entries */
    /*
     * Bit `slot` set: that worker may be IDLE — the index the supervisor
     * searches for a worker to wake, a word (64 slots) at a time, instead of
     * reading every slot's state. The state stays the truth (the CAS
     * IDLE->WOKEN decides); a set bit over a busy worker only costs a failed
     * CAS. Each worker sets its own bit *before* it stores IDLE and clears
     * it after it stores BUSY, so a worker that is IDLE always has its bit
     * set when the supervisor looks (seq_cst, as the handshake above).
     * W: wrk (its own bit), sup (clears a reaped slot's bit). R: sup.
     */
    _Atomic uint64_t *idle_mask;
    size_t size; /* bytes mapped */
};

/* Map a zeroed segment for the given capacities. Returns 0, or -1 with
 * errno set (mmap failed). Called once by the supervisor before forking. */
int shm_create(struct shm *shm, unsigned queue_capacity, unsigned worker_capacity);

/* Unmap (supervisor at exit). */
void shm_destroy(struct shm *shm);

const char *shm_worker_state_name(int state);

/* Set or clear slot's bit in the idle mask (see struct shm). */
void shm_idle_mark(const struct shm *shm, unsigned slot, int idle);

/* The first slot in [from, limit) then [0, from) whose idle bit is set,
 * or -1: one word read per 64 slots. */
int shm_idle_find(const struct shm *shm, unsigned from, unsigned limit);

#endif
