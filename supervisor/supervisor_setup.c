/*
 * supervisor_setup.c — the supervisor's modules set up and torn down
 * (supervisor_open, supervisor_close), and the callbacks through which
 * they tell the supervisor what happened: the listener's notifications,
 * the poll's hints, control messages, a worker's exit, /readyz and
 * /metrics.
 *
 * Invariants: as supervisor.c's — callbacks run inside its loop, never
 * block, and touch shared memory only with atomics; every fd is created
 * CLOEXEC.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "supervisor_internal.h"
#include "control.h"
#include "metrics.h"
#include "../shared/log.h"
#include "../shared/timeutil.h"

/* Spare queue records in shared memory for queues added by a reload. */
#define SUPERVISOR_SPARE_QUEUES 32

/* --- listener and upkeep callbacks -------------------------------------- */

/* Queue q has a task due in delay_ms (0 = now): from the poll. */
static void on_task_due(void *ctx, int q, int64_t delay_ms)
{
    struct supervisor *s = ctx;
    if (delay_ms <= 0)
        supervisor_hint_queue(s, q);
    else
        /* +1: the delay was measured before the notification left the
         * database and is rounded to ms; firing early would find nothing
         * and leave the task to the safety poll. */
        supervisor_schedule(s, q, time_now_ms() + delay_ms + 1);
}

/* The same, announced by a notification. */
static void on_task_notified(void *ctx, int q, int64_t delay_ms)
{
    struct supervisor *s = ctx;
    atomic_fetch_add_explicit(&s->shm.queues[s->queue_slots[q]].notifications, 1,
                              memory_order_relaxed);
    on_task_due(s, q, delay_ms);
}

/* The trigger rang this pod's arm of q: what the storm hold-off counts
 * (not manual rings, pgwork.notify = on, nudges of capped queues). */
static void on_rung(void *ctx, int q)
{
    struct supervisor *s = ctx;
    doorbell_rung(&s->doorbell, q, time_now_ms());
    /* Rung, but nobody here can take it: this pod's disarm was not written
     * yet when the task committed (or the pod is quiet). Another pod may
     * have an idle worker; the trigger rang only us. */
    if (s->quiet || !pool_idle_for(&s->pool, q)) {
        log_debug("queue %s rung with no idle worker here: passed on", s->config->queues[q].name);
        upkeep_pass_on(&s->upkeep, q);
    }
}

static void on_sweep(void *ctx)
{
    supervisor_hint_all(ctx);
}

static void on_due_unknown(void *ctx)
{
    struct supervisor *s = ctx;
    upkeep_request_sweep(&s->upkeep);
}

static void on_connection(void *ctx, bool up)
{
    struct supervisor *s = ctx;
    if (up)
        /* What was announced while we were away is gone (DESIGN §1.5). */
        upkeep_request_sweep(&s->upkeep);
    else
        /* Nobody announces tasks any more; poll blindly, starting now. */
        s->blind_poll_due_ms = time_now_ms();
}

/* Queue q is paused or not, as a notification or the poll says. A resume
 * wakes a worker for it: the flag is cleared before the hint is bumped
 * (shm.h). */
static void supervisor_set_paused(struct supervisor *s, int q, bool paused, const char *source)
{
    struct shm_queue *queue = &s->shm.queues[s->queue_slots[q]];
    if (atomic_exchange(&queue->paused, paused ? 1u : 0u) == (paused ? 1u : 0u))
        return;
    log_info("queue \"%s\" %s (%s)", s->config->queues[q].name,
             paused ? "paused: no new claims, running tasks finish" : "resumed", source);
    if (!paused)
        supervisor_hint_queue(s, q);
}

static void on_paused(void *ctx, int q, bool paused)
{
    supervisor_set_paused(ctx, q, paused, "poll");
}

/* A control message (migration 0011) from the task channel. */
static void on_control(void *ctx, const char *message)
{
    struct supervisor *s = ctx;
    struct control_message m;
    switch (control_parse(message, &m)) {
    case CONTROL_PAUSE:
    case CONTROL_RESUME: {
        int q = config_find_queue(s->config, m.queue);
        if (q >= 0) /* else not a queue of this pod */
            supervisor_set_paused(s, q, m.kind == CONTROL_PAUSE, "notification");
        break;
    }
    case CONTROL_REREAD:
        upkeep_request_sweep(&s->upkeep);
        break;
    case CONTROL_CANCEL: {
        /* Only the pod whose worker runs it finds the tag among its own. */
        int slot = pool_cancel_task(&s->pool, m.locked_by, m.task_id);
        if (slot >= 0)
            log_info("task %" PRId64 " cancelled while running: told worker %d to stop it",
                     m.task_id, slot);
        break;
    }
    case CONTROL_MALFORMED:
        log_warn("ignoring a malformed control message (%zu bytes)", strlen(message));
        break;
    }
}

/* --- pool callbacks ---------------------------------------------------- */

static void on_worker_exited(void *ctx, const struct pool_exit *exit)
{
    struct supervisor *s = ctx;
    /* A worker that stopped cleanly released its tasks itself. One that
     * died may have left tasks running: requeue them now rather than
     * after the lease (DESIGN §2), once its backend is stopped (it may
     * still run the statement it was sent, holding their rows). */
    if (!exit->clean)
        upkeep_requeue_owner(&s->upkeep, exit->locked_by, exit->running_task, exit->slot,
                             exit->backend_pid);
    else
        /* Retired or rolled: what it released (claimed, not started) sends
         * no notification, and a wake-up it took just before its SIGTERM
         * went with it. The workers that stay look again. */
        supervisor_hint_all(s);
}

/* --- http handlers ----------------------------------------------------- */

/* Claims failed in a row in one worker that make the pod unready. */
#define READY_CLAIM_FAILURES 3

/* /readyz: this pod can take work right now. */
static bool http_ready(void *ctx, char *why, size_t len)
{
    struct supervisor *s = ctx;
    if (s->phase != PHASE_RUNNING) {
        snprintf(why, len, "shutting down");
        return false;
    }
    if (s->quiet) {
        snprintf(why, len, "quiet (SIGTSTP): not claiming");
        return false;
    }
    if (!listener_is_up(&s->listener)) {
        snprintf(why, len, "database unreachable");
        return false;
    }
    if (!upkeep_schema_ok(&s->upkeep)) {
        snprintf(why, len, "schema not migrated or not readable: run pgwork migrate");
        return false;
    }
    bool up = false;
    for (int i = 0; i < pool_capacity(&s->pool); i++) {
        int state = atomic_load(&s->shm.workers[i].state);
        if (!pool_slot_running(&s->pool, i) ||
            (state != WORKER_IDLE && state != WORKER_BUSY && state != WORKER_WOKEN))
            continue;
        /* Up but failing every claim (a pooler or database problem the
         * listener's connection does not have): not taking work. */
        uint64_t failures =
            atomic_load_explicit(&s->shm.workers[i].claim_failures, memory_order_relaxed);
        if (failures >= READY_CLAIM_FAILURES) {
            snprintf(why, len, "worker %d: %" PRIu64 " claims failed in a row", i, failures);
            return false;
        }
        up = true;
    }
    if (!up)
        snprintf(why, len, "no worker is up");
    return up;
}

static void http_metrics(void *ctx, struct text_buffer *out)
{
    struct supervisor *s = ctx;
    /* Depth is read only while something scrapes, at most every 15 s. */
    upkeep_want_depth(&s->upkeep, time_now_ms());
    struct metrics_source src = {
        .config = s->config,
        .shm = &s->shm,
        .queue_slots = s->queue_slots,
        .pool = &s->pool,
        .listener = &s->listener,
        .upkeep = &s->upkeep,
        .ticks = &s->ticks,
        .doorbell = &s->doorbell,
        .quiet = s->quiet,
    };
    metrics_render(&src, out);
}

/*
 * Give every queue of config a shared-memory record, keyed by name for the
 * supervisor's lifetime: a known name keeps its record (and counters), a
 * new name takes a free one. Fills slots (config->queue_count entries).
 * Returns -1 when shared memory has no room left (restart to grow it).
 */
int supervisor_map_queues(struct supervisor *s, const struct pgwork_config *config, int *slots)
{
    unsigned capacity = s->shm.header->queue_capacity;
    for (int q = 0; q < config->queue_count; q++) {
        const char *name = config->queues[q].name;
        int slot = -1;
        for (unsigned i = 0; i < capacity && s->slot_names[i] != NULL; i++)
            if (strcmp(s->slot_names[i], name) == 0)
                slot = (int)i;
        if (slot < 0) {
            unsigned used = 0;
            while (used < capacity && s->slot_names[used] != NULL)
                used++;
            if (used == capacity)
                return -1;
            s->slot_names[used] = strdup(name);
            if (s->slot_names[used] == NULL)
                return -1;
            slot = (int)used;
        }
        slots[q] = slot;
    }
    return 0;
}

static int supervisor_watch(struct supervisor *s, int fd)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    return epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, fd, &ev);
}

/*
 * The pod part of the lock tags: the hostname (the pod's name in
 * Kubernetes) and a random incarnation id chosen at each start. A container
 * restarted in the same pod has the same hostname, is PID 1 again, and its
 * workers very likely get the same pids: without the incarnation its
 * workers would carry the dead ones' tags, and the lease renewal (by tag)
 * would keep the dead run's tasks alive (DESIGN §2).
 */
static void supervisor_make_pod_tag(struct supervisor *s)
{
    char host[256] = "";
    if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0')
        snprintf(host, sizeof(host), "pgwork");
    uint64_t incarnation;
    if (getrandom(&incarnation, sizeof(incarnation), GRND_NONBLOCK) != sizeof(incarnation)) {
        /* No entropy yet (early boot) or no getrandom: the wall clock in
         * ns differs between two starts anyway, and so may the pid. */
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        incarnation = ((uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec) ^
                      ((uint64_t)getpid() << 48);
    }
    snprintf(s->pod_tag, sizeof(s->pod_tag), "%s:%016" PRIx64, host, incarnation);
}

/* The loop's own fds (signals, epoll, the timer, workers' requests, the
 * death pipe), watched by the epoll set. 0, or -1 (logged). */
static int supervisor_open_fds(struct supervisor *s)
{
    s->signal_fd = signals_open();
    s->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    s->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    s->request_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->signal_fd < 0 || s->epoll_fd < 0 || s->timer_fd < 0 || s->request_fd < 0 ||
        pipe2(s->death_pipe, O_CLOEXEC) != 0) {
        log_error("cannot create the supervisor's file descriptors: %s", strerror(errno));
        return -1;
    }
    if (supervisor_watch(s, s->signal_fd) != 0 || supervisor_watch(s, s->timer_fd) != 0 ||
        supervisor_watch(s, s->request_fd) != 0) {
        log_error("epoll_ctl failed: %s", strerror(errno));
        return -1;
    }
    return 0;
}

int supervisor_open(struct supervisor *s)
{
    const struct pgwork_config *config = s->config;
    supervisor_make_pod_tag(s);
    if (supervisor_open_fds(s) != 0)
        return -1;
    unsigned queue_capacity = (unsigned)config->queue_count + SUPERVISOR_SPARE_QUEUES;
    if (shm_create(&s->shm, queue_capacity, (unsigned)config->workers.max) != 0) {
        log_error("cannot map shared memory: %s", strerror(errno));
        return -1;
    }
    s->scheduled_due_ms = calloc(queue_capacity, sizeof(*s->scheduled_due_ms));
    s->slot_names = calloc(queue_capacity, sizeof(*s->slot_names));
    s->queue_slots = calloc((size_t)config->queue_count, sizeof(*s->queue_slots));
    if (s->scheduled_due_ms == NULL || s->slot_names == NULL || s->queue_slots == NULL ||
        supervisor_map_queues(s, config, s->queue_slots) != 0) {
        log_error("out of memory mapping queues");
        return -1;
    }
    const struct pool_setup pool_setup = {
        .config = config,
        .shm = &s->shm,
        .queue_slots = s->queue_slots,
        .request_fd = s->request_fd,
        .death_fd = s->death_pipe[0],
        .pod_name = s->pod_tag,
        .worker_exited = on_worker_exited,
        .ctx = s,
    };
    if (pool_init(&s->pool, &pool_setup) != 0)
        return -1;

    static const struct listener_callbacks callbacks = {
        .on_task_hint = on_task_notified,
        .on_rung = on_rung,
        .on_sweep = on_sweep,
        .on_due_unknown = on_due_unknown,
        .on_control = on_control,
        .on_connection = on_connection,
    };
    listener_init(&s->listener, config, s->epoll_fd, &callbacks, s);
    static const struct upkeep_callbacks upkeep_callbacks = {
        .on_task_hint = on_task_due,
        .on_sweep = on_sweep,
        .on_paused = on_paused,
    };
    upkeep_init(&s->upkeep, config, &s->listener, &upkeep_callbacks, s);
    ticks_init(&s->ticks, config, s->pod_tag);
    upkeep_set_ticks(&s->upkeep, &s->ticks);
    const struct doorbell_setup doorbell_setup = {
        .config = config,
        .shm = &s->shm,
        .queue_slots = s->queue_slots,
        .pool = &s->pool,
        .listener = &s->listener,
        .pod_tag = s->pod_tag,
        .on_task_due = on_task_due,
        .ctx = s,
    };
    doorbell_init(&s->doorbell, &doorbell_setup);
    upkeep_set_doorbell(&s->upkeep, &s->doorbell);
    if (throughput_init(&s->throughput, &s->shm, s->slot_names, &s->listener, time_now_ms()) != 0) {
        log_error("out of memory setting up the throughput counts");
        return -1;
    }
    upkeep_set_throughput(&s->upkeep, &s->throughput);

    const struct http_handlers handlers = {.ready = http_ready, .metrics = http_metrics, .ctx = s};
    if (http_start(&s->http, config->http.listen, &handlers) != 0)
        return -1;
    if (http_fd(&s->http) >= 0 && supervisor_watch(s, http_fd(&s->http)) != 0) {
        log_error("epoll_ctl failed for the http endpoint: %s", strerror(errno));
        return -1;
    }
    return 0;
}

void supervisor_close(struct supervisor *s)
{
    http_stop(&s->http);
    listener_close(&s->listener);
    upkeep_free(&s->upkeep);
    ticks_free(&s->ticks);
    doorbell_free(&s->doorbell);
    throughput_free(&s->throughput);
    pool_free(&s->pool);
    free(s->scheduled_due_ms);
    if (s->slot_names != NULL)
        for (unsigned i = 0; i < s->shm.header->queue_capacity; i++)
            free(s->slot_names[i]);
    free(s->slot_names);
    free(s->queue_slots);
    shm_destroy(&s->shm);
    close(s->epoll_fd);
    close(s->signal_fd);
    close(s->timer_fd);
    close(s->request_fd);
    close(s->death_pipe[0]);
    close(s->death_pipe[1]);
    config_free(s->config);
}
