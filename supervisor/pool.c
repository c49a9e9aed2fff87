/*
 * pool.c — fork, reap, restart and wake workers.
 *
 * Invariants:
 *  - slots are wanted from 0 up: TTIN takes the lowest free slot, and
 *    scaling down (TTOU, HUP) gives up the highest wanted one, even when it
 *    is busy and a lower one idles, so a queue limited to N workers
 *    (worker_serves_queue) is served by the running workers among slots
 *    0..N-1 and never loses them to a scale-down;
 *  - a worker sent SIGTERM (retiring) is never woken: the hint would be
 *    lost with it until the safety poll;
 *  - a slot's eventfd is created once and kept across restarts, so a wake
 *    written while a worker restarts is not lost;
 *  - a worker that exits without being asked is restarted after a delay
 *    that doubles per consecutive failure, from restart_delay_min to
 *    restart_delay_max, reset once a worker has stayed up for
 *    POOL_PROVEN_MS; exit code WORKER_EXIT_FATAL is never restarted;
 *  - the reaper reaps every child, not only workers (PID 1 inherits
 *    orphans), until waitpid() returns 0.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pool.h"
#include "../shared/log.h"
#include "../shared/text.h"
#include "../shared/timeutil.h"
#include "../worker/child.h"
#include "../worker/worker.h"

/* A worker that ran this long before exiting was not crash-looping. */
#define POOL_PROVEN_MS 10000

int pool_init(struct pool *pool, const struct pool_setup *setup)
{
    pool->config = setup->config;
    pool->shm = setup->shm;
    pool->capacity = (int)setup->shm->header->worker_capacity;
    pool->target = setup->config->workers.count;
    pool->queue_slots = setup->queue_slots;
    pool->request_fd = setup->request_fd;
    pool->death_fd = setup->death_fd;
    pool->supervisor_pid = getpid();
    pool->pod_name = setup->pod_name;
    pool->worker_exited = setup->worker_exited;
    pool->ctx = setup->ctx;
    pool->slots = calloc((size_t)pool->capacity, sizeof(*pool->slots));
    if (pool->slots == NULL) {
        log_error("out of memory allocating %d worker slots", pool->capacity);
        return -1;
    }
    for (int i = 0; i < pool->capacity; i++) {
        pool->slots[i].wake_fd = -1;
        pool->slots[i].wanted = i < pool->target;
    }
    for (int i = 0; i < pool->capacity; i++) {
        pool->slots[i].wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (pool->slots[i].wake_fd < 0) {
            log_error("eventfd() failed for worker slot %d: %s", i, strerror(errno));
            return -1;
        }
    }
    return 0;
}

void pool_locked_by(const struct pool *pool, int slot, pid_t pid, char *out, size_t outlen)
{
    /* Must match the tag worker_main() builds. */
    snprintf(out, outlen, "%s/%d/%d", pool->pod_name, slot, (int)pid);
}

int pool_cancel_task(struct pool *pool, const char *locked_by, int64_t task_id)
{
    for (int slot = 0; slot < pool->capacity; slot++) {
        pid_t pid = pool->slots[slot].pid;
        if (pid == 0)
            continue;
        char tag[400];
        pool_locked_by(pool, slot, pid, tag, sizeof(tag));
        if (strcmp(tag, locked_by) != 0)
            continue;
        /* The id first, then the signal (shm.h): the worker that reads
         * the signal finds the id. */
        struct shm_worker *shared = &pool->shm->workers[slot];
        uint32_t n = atomic_load(&shared->cancel_count);
        atomic_store(&shared->cancel_ids[n % SHM_CANCEL_IDS], task_id);
        atomic_store(&shared->cancel_count, n + 1);
        if (kill(pid, SIGUSR2) != 0) {
            log_warn("cannot tell worker %d (pid %d) to stop cancelled task %" PRId64 ": %s", slot,
                     (int)pid, task_id, strerror(errno));
            return -1;
        }
        return slot;
    }
    return -1;
}

static bool pool_fd_kept(int fd, const int keep[3])
{
    return fd <= 2 || fd == keep[0] || fd == keep[1] || fd == keep[2];
}

/* close_range() refused: list /proc/self/fd and close what is not kept,
 * rereading until a pass finds nothing (closing while the directory is
 * read is allowed, but a second look costs little). -1 without /proc. */
static int pool_close_listed_fds(const int keep[3])
{
    DIR *dir = opendir("/proc/self/fd");
    if (dir == NULL)
        return -1;
    int closed;
    do {
        closed = 0;
        rewinddir(dir);
        const struct dirent *e;
        while ((e = readdir(dir)) != NULL) {
            char *end;
            long fd = strtol(e->d_name, &end, 10);
            if (end == e->d_name || *end != '\0' || fd == dirfd(dir) || pool_fd_kept((int)fd, keep))
                continue;
            close((int)fd);
            closed++;
        }
    } while (closed > 0);
    closedir(dir);
    return 0;
}

/*
 * Close every fd above 2 except the three given (in the child, before the
 * worker runs). close_range() does it in a few calls; it is missing before
 * Linux 5.9 (ENOSYS) and a seccomp profile may refuse it (EPERM, ENOSYS),
 * and then a worker would keep the death pipe's write end (it would never
 * see the supervisor die), the signalfd, the epoll fd, the HTTP socket: so
 * its result is checked, and the fds are closed one by one instead — those
 * /proc/self/fd lists, or without /proc every number below the fd limit.
 */
static void pool_close_inherited_fds(int keep_a, int keep_b, int keep_c)
{
    int keep[] = {keep_a, keep_b, keep_c};
    /* Sort the three, then close the gaps between them. */
    for (int i = 0; i < 3; i++)
        for (int j = i + 1; j < 3; j++)
            if (keep[j] < keep[i]) {
                int t = keep[i];
                keep[i] = keep[j];
                keep[j] = t;
            }
    bool refused = false;
    unsigned from = 3;
    for (int i = 0; i < 3 && !refused; i++) {
        if (keep[i] < 3)
            continue;
        if ((unsigned)keep[i] > from)
            refused = close_range(from, (unsigned)keep[i] - 1, 0) != 0;
        from = (unsigned)keep[i] + 1;
    }
    if (!refused && close_range(from, ~0u, 0) == 0)
        return;
    if (pool_close_listed_fds(keep) == 0)
        return;
    long limit = sysconf(_SC_OPEN_MAX);
    if (limit < 0 || limit > INT_MAX)
        limit = 1 << 20; /* no limit known: Linux's default ceiling (nr_open) */
    for (int fd = 3; fd < limit; fd++)
        if (!pool_fd_kept(fd, keep))
            close(fd);
}

static void pool_spawn(struct pool *pool, int slot, int64_t now)
{
    struct pool_slot *s = &pool->slots[slot];
    struct shm_worker *shared = &pool->shm->workers[slot];

    /* The slot is labelled before the fork: the child may get far (its
     * connection made, IDLE announced, a task claimed) before the parent
     * runs again, and a STARTING or task id 0 written after that would
     * hide it — never woken, and a roll waiting on it for ever. The pid,
     * which only the supervisor writes, follows the fork. */
    atomic_store(&shared->task_id, 0);
    atomic_store(&shared->heartbeat_ms, 0);  /* none yet: not the last worker's */
    for (int i = 0; i < SHM_CANCEL_IDS; i++) /* the last worker's cancels are not its */
        atomic_store(&shared->cancel_ids[i], 0);
    atomic_store(&shared->cancel_count, 0);
    atomic_store(&shared->cap_holding, 0);
    atomic_store(&shared->state, WORKER_STARTING);
    /* Unflushed stdio would be written twice, once by each process. */
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        log_error("fork() failed while spawning worker %d: %s", slot, strerror(errno));
        atomic_store(&shared->state, WORKER_EMPTY);
        s->restart_due_ms = now + pool->config->workers.restart_delay_min_ms;
        return;
    }
    if (pid == 0) {
        /* The child keeps stdio, its own eventfd, the request eventfd and
         * the death pipe's read end; everything else is the supervisor's:
         * epoll, signalfd, timerfd, the HTTP sockets, other workers'
         * eventfds, and the listener's socket — closed, not PQfinish()ed,
         * which would end the supervisor's session (DESIGN §8). */
        pool_close_inherited_fds(s->wake_fd, pool->request_fd, pool->death_fd);
        struct worker_args args = {
            .slot = slot,
            .config = pool->config,
            .shm = pool->shm,
            .wake_fd = s->wake_fd,
            .request_fd = pool->request_fd,
            .death_fd = pool->death_fd,
            .supervisor_pid = pool->supervisor_pid,
            .pod_name = pool->pod_name,
            .queue_slots = pool->queue_slots,
        };
        worker_main(&args);
    }
    if (s->started_ms != 0)
        atomic_fetch_add_explicit(&shared->restarts, 1, memory_order_relaxed);
    s->pid = pid;
    s->started_ms = now;
    s->retiring = false;
    s->roll_pending = false;
    atomic_store(&shared->pid, pid);
    log_debug("started worker %d (pid %d)", slot, (int)pid);
}

void pool_start_missing(struct pool *pool, int64_t now)
{
    if (pool->stopping)
        return;
    for (int i = 0; i < pool->capacity; i++) {
        struct pool_slot *s = &pool->slots[i];
        if (s->wanted && s->pid == 0 && !s->fatal && now >= s->restart_due_ms)
            pool_spawn(pool, i, now);
    }
}

static int pool_slot_of(const struct pool *pool, pid_t pid)
{
    for (int i = 0; i < pool->capacity; i++)
        if (pool->slots[i].pid == pid)
            return i;
    return -1;
}

static void pool_worker_exited(struct pool *pool, int slot, int status, int64_t now)
{
    struct pool_slot *s = &pool->slots[slot];
    struct shm_worker *shared = &pool->shm->workers[slot];
    pid_t pid = s->pid;
    char how[96];
    child_describe_exit(status, how, sizeof(how));

    bool asked = pool->stopping || s->retiring;
    s->retiring = false;
    if (asked)
        s->restart_due_ms = now; /* a rolled worker comes back at once */
    bool clean = WIFEXITED(status) && WEXITSTATUS(status) == WORKER_EXIT_OK;
    /* What it was running when it died (0 = nothing): read before the
     * slot is cleared for its successor. */
    int64_t running_task = atomic_exchange(&shared->task_id, 0);
    int32_t backend_pid = atomic_exchange(&shared->backend_pid, 0);
    atomic_store(&shared->cap_holding, 0); /* its tasks: requeued by worker_exited */
    s->pid = 0;
    atomic_store(&shared->pid, 0);
    atomic_store(&shared->state, WORKER_EMPTY);
    shm_idle_mark(pool->shm, (unsigned)slot, 0);

    char locked_by[320];
    pool_locked_by(pool, slot, pid, locked_by, sizeof(locked_by));
    const struct pool_exit exit = {.slot = slot,
                                   .locked_by = locked_by,
                                   .running_task = running_task,
                                   .backend_pid = backend_pid,
                                   .clean = clean && asked};
    if (pool->worker_exited != NULL)
        pool->worker_exited(pool->ctx, &exit);
    if (!s->wanted) {
        log_info("worker %d (pid %d) retired: %s", slot, (int)pid, how);
        return;
    }

    if (asked) {
        log_info("worker %d (pid %d) stopped: %s", slot, (int)pid, how);
        return;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == WORKER_EXIT_FATAL) {
        s->fatal = true;
        log_error("worker %d (pid %d) failed with a configuration error; not restarting it", slot,
                  (int)pid);
        return;
    }
    if (now - s->started_ms >= POOL_PROVEN_MS)
        s->consecutive_failures = 0;
    s->consecutive_failures++;
    int64_t delay = pool->config->workers.restart_delay_min_ms;
    for (int i = 1;
         i < s->consecutive_failures && delay < pool->config->workers.restart_delay_max_ms; i++)
        delay *= 2;
    if (delay > pool->config->workers.restart_delay_max_ms)
        delay = pool->config->workers.restart_delay_max_ms;
    s->restart_due_ms = now + delay;
    log_warn("worker %d (pid %d) exited unexpectedly: %s; restarting in %" PRId64
             " ms (failure %d in a row)",
             slot, (int)pid, how, delay, s->consecutive_failures);
}

void pool_reap(struct pool *pool, int64_t now)
{
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid == 0)
            return;
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            if (errno != ECHILD)
                log_error("waitpid() failed: %s", strerror(errno));
            return;
        }
        int slot = pool_slot_of(pool, pid);
        if (slot >= 0) {
            pool_worker_exited(pool, slot, status, now);
        } else {
            char how[96];
            child_describe_exit(status, how, sizeof(how));
            log_debug("reaped orphan pid %d: %s", (int)pid, how);
        }
    }
}

bool pool_wake_one(struct pool *pool, int queue_index)
{
    const struct queue_config *queue = &pool->config->queues[queue_index];
    /* The slots that serve the queue: all, or the first queue->workers. */
    unsigned limit = (unsigned)config_queue_serving(queue, pool->capacity);
    /* The lowest idle slot, found through the idle mask (one word per 64
     * slots), not by reading every slot. Lowest, not round robin: a quiet
     * pod keeps waking the same, warm worker (its process and its backend
     * in the CPU caches — measured in `make bench`: with round robin over
     * 64 workers the pickup p50 was 2.6 x that of one worker). A set bit
     * whose worker is not IDLE (just woken, or about to be) fails the CAS
     * and the search moves on; at most one try per slot. */
    unsigned from = 0;
    for (unsigned tries = 0; tries < limit; tries++) {
        int slot = shm_idle_find(pool->shm, from, limit);
        if (slot < 0)
            return false;
        from = (unsigned)slot + 1;
        /* A retiring worker is on its way out and may never look at the
         * hint: wake one that stays. */
        if (pool->slots[slot].pid == 0 || pool->slots[slot].retiring)
            continue;
        /* CAS, not store: a worker that turned BUSY meanwhile keeps its
         * state, and the next notification goes to somebody else. */
        int expected = WORKER_IDLE;
        if (atomic_compare_exchange_strong(&pool->shm->workers[slot].state, &expected,
                                           WORKER_WOKEN)) {
            uint64_t one = 1;
            if (write(pool->slots[slot].wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
                log_error("waking worker %d failed: %s", slot, strerror(errno));
            return true;
        }
    }
    return false;
}

bool pool_idle_for(const struct pool *pool, int queue_index)
{
    const struct queue_config *queue = &pool->config->queues[queue_index];
    unsigned limit = (unsigned)config_queue_serving(queue, pool->capacity);
    /* The workers pool_wake_one would wake (seq_cst loads: the doorbell's
     * handshake with workers going idle, doorbell.c). */
    for (unsigned slot = 0; slot < limit; slot++)
        if (pool->slots[slot].pid != 0 && !pool->slots[slot].retiring &&
            atomic_load(&pool->shm->workers[slot].state) == WORKER_IDLE)
            return true;
    return false;
}

/* The worker to roll onto a new config: an idle one if any (highest slot
 * first), else the highest running one. -1 if none is pending. A roll
 * restarts the slot at once, so taking a low idle slot strands nothing. */
static int pool_pick_roll(const struct pool *pool)
{
    int busy = -1;
    for (int i = pool->capacity - 1; i >= 0; i--) {
        const struct pool_slot *s = &pool->slots[i];
        if (s->pid == 0 || s->retiring || !s->roll_pending)
            continue;
        if (atomic_load(&pool->shm->workers[i].state) == WORKER_IDLE)
            return i;
        if (busy < 0)
            busy = i;
    }
    return busy;
}

/* SIGTERM is graceful: a busy worker finishes its task first. */
static void pool_retire(struct pool *pool, int slot)
{
    struct pool_slot *s = &pool->slots[slot];
    s->retiring = true;
    if (kill(s->pid, SIGTERM) != 0)
        log_error("cannot signal worker %d (pid %d): %s", slot, (int)s->pid, strerror(errno));
}

static void pool_add_one(struct pool *pool)
{
    for (int i = 0; i < pool->capacity; i++) {
        struct pool_slot *s = &pool->slots[i];
        if (!s->wanted) {
            s->wanted = true;
            s->restart_due_ms = 0;
            s->consecutive_failures = 0;
            s->fatal = false;
            pool->target++;
            return;
        }
    }
}

/* Give up the highest wanted slot (see the invariants at the top). A busy
 * worker there finishes its task first (SIGTERM is graceful) while the
 * lower slots keep serving; one already retiring (a roll) has had its
 * SIGTERM and now just is not restarted. */
static void pool_remove_one(struct pool *pool)
{
    int slot = pool->capacity - 1;
    while (slot >= 0 && !pool->slots[slot].wanted)
        slot--;
    if (slot < 0)
        return;
    struct pool_slot *s = &pool->slots[slot];
    s->wanted = false;
    pool->target--;
    if (s->pid != 0 && !s->retiring)
        pool_retire(pool, slot);
}

void pool_scale(struct pool *pool, int delta)
{
    int wanted = pool->target + delta;
    int min = pool->config->workers.min, max = pool->config->workers.max;
    if (wanted < min || wanted > max || wanted > pool->capacity) {
        log_warn("pool stays at %d worker%s: %d is outside workers.min..max (%d..%d)", pool->target,
                 pool->target == 1 ? "" : "s", wanted, min, max);
        return;
    }
    while (pool->target < wanted)
        pool_add_one(pool);
    while (pool->target > wanted)
        pool_remove_one(pool);
    log_info("pool scaled to %d worker%s", pool->target, pool->target == 1 ? "" : "s");
}

void pool_set_config(struct pool *pool, const struct pgwork_config *config, const int *queue_slots,
                     bool roll_workers)
{
    pool->config = config;
    pool->queue_slots = queue_slots;
    int wanted = config->workers.count;
    if (wanted > pool->capacity)
        wanted = pool->capacity;
    while (pool->target < wanted)
        pool_add_one(pool);
    while (pool->target > wanted)
        pool_remove_one(pool);
    for (int i = 0; i < pool->capacity; i++) {
        struct pool_slot *s = &pool->slots[i];
        /* A bad config may have been fixed: try failed slots again. */
        s->fatal = false;
        if (roll_workers && s->pid != 0 && !s->retiring)
            s->roll_pending = true;
    }
}

void pool_roll_next(struct pool *pool)
{
    for (int i = 0; i < pool->capacity; i++) {
        const struct pool_slot *s = &pool->slots[i];
        if (s->pid != 0 &&
            (s->retiring || atomic_load(&pool->shm->workers[i].state) == WORKER_STARTING))
            return; /* one at a time */
    }
    int slot = pool_pick_roll(pool);
    if (slot < 0)
        return;
    log_info("rolling worker %d (pid %d) onto the new configuration", slot,
             (int)pool->slots[slot].pid);
    pool_retire(pool, slot);
}

void pool_signal_all(const struct pool *pool, int sig)
{
    for (int i = 0; i < pool->capacity; i++)
        if (pool->slots[i].pid != 0)
            kill(pool->slots[i].pid, sig);
}

void pool_stop(struct pool *pool, int sig)
{
    pool->stopping = true;
    pool_signal_all(pool, sig);
}

int pool_alive(const struct pool *pool)
{
    int alive = 0;
    for (int i = 0; i < pool->capacity; i++)
        alive += pool->slots[i].pid != 0;
    return alive;
}

int pool_target(const struct pool *pool)
{
    return pool->target;
}

int pool_capacity(const struct pool *pool)
{
    return pool->capacity;
}

bool pool_slot_running(const struct pool *pool, int slot)
{
    return slot >= 0 && slot < pool->capacity && pool->slots[slot].pid != 0;
}

int64_t pool_next_deadline(const struct pool *pool)
{
    int64_t next = INT64_MAX;
    if (pool->stopping)
        return next;
    for (int i = 0; i < pool->capacity; i++) {
        const struct pool_slot *s = &pool->slots[i];
        if (s->wanted && s->pid == 0 && !s->fatal && s->restart_due_ms < next)
            next = s->restart_due_ms;
    }
    return next;
}

bool pool_all_fatal(const struct pool *pool)
{
    for (int i = 0; i < pool->capacity; i++)
        if (pool->slots[i].wanted && !pool->slots[i].fatal)
            return false;
    return pool->target > 0;
}

void pool_log_status(const struct pool *pool)
{
    int64_t now = time_now_ms();
    for (int i = 0; i < pool->capacity; i++) {
        const struct pool_slot *s = &pool->slots[i];
        const struct shm_worker *w = &pool->shm->workers[i];
        if (s->pid == 0 && !s->wanted)
            continue;
        /* A busy worker's heartbeat age is how long it has made no
         * progress (no task finished, no claim round ended): a hung one
         * shows here, growing. An idle one's is the time it has slept. */
        int64_t beat = atomic_load_explicit(&w->heartbeat_ms, memory_order_relaxed);
        char age[32] = "none";
        if (beat > 0)
            snprintf(age, sizeof(age), "%" PRId64, now - beat);
        log_info("status worker %d: pid=%d state=%s task=%" PRId64 " wakeups=%" PRIu64
                 " claims=%" PRIu64 " done=%" PRIu64 " failed=%" PRIu64 " restarts=%" PRIu64
                 " failures_in_a_row=%d heartbeat_age_ms=%s",
                 i, (int)s->pid, shm_worker_state_name(atomic_load(&w->state)),
                 atomic_load(&w->task_id), atomic_load(&w->wakeups), atomic_load(&w->claims),
                 atomic_load(&w->tasks_done), atomic_load(&w->tasks_failed),
                 atomic_load(&w->restarts), s->consecutive_failures, age);
    }
}

char *pool_busy_owners(const struct pool *pool)
{
    struct text_buffer owners = {0};
    for (int i = 0; i < pool->capacity; i++) {
        /* Busy, not "running a task now": between two tasks of its batch a
         * worker runs none, yet holds the rest of the batch. */
        int state = atomic_load(&pool->shm->workers[i].state);
        if (pool->slots[i].pid == 0 || (state != WORKER_BUSY && state != WORKER_STOPPING))
            continue;
        char tag[320];
        pool_locked_by(pool, i, pool->slots[i].pid, tag, sizeof(tag));
        text_array_add_text(&owners, tag);
    }
    if (owners.len == 0) {
        text_free(&owners); /* none busy (or out of memory at the first) */
        return NULL;
    }
    return text_array_end(&owners);
}

void pool_free(struct pool *pool)
{
    for (int i = 0; pool->slots != NULL && i < pool->capacity; i++) {
        if (pool->slots[i].wake_fd >= 0)
            close(pool->slots[i].wake_fd);
        pool->slots[i].wake_fd = -1;
    }
    free(pool->slots);
    pool->slots = NULL;
}
