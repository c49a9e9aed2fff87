/*
 * supervisor.c — `pgwork run`: the supervisor's main loop (DESIGN §1).
 *
 * Invariants:
 *  - single-threaded; everything happens in supervisor_loop(): wait in
 *    epoll, dispatch each ready fd to one function, act on signal requests
 *    in order of urgency, run the chores that are due, arm the one timer
 *    for the next deadline;
 *  - never blocks on the database (listener.c is non-blocking; upkeep.c's
 *    statements go through it) and never runs a task;
 *  - touches shared memory only with atomics: it bumps queue hints, CASes
 *    idle workers to WOKEN, and collects workers' requests;
 *  - one notification wakes at most one worker (DESIGN §1.2).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "supervisor.h"
#include "control.h"
#include "doorbell.h"
#include "http.h"
#include "listener.h"
#include "metrics.h"
#include "pool.h"
#include "signals.h"
#include "upkeep.h"
#include "../shared/exitcodes.h"
#include "../shared/log.h"
#include "../shared/shm.h"
#include "../shared/timeutil.h"

/* Grace between QUIT and KILL when workers do not stop. */
#define SUPERVISOR_KILL_GRACE_MS 2000
/* How long shutdown waits for the database to confirm requeues. */
#define SUPERVISOR_REQUEUE_GRACE_MS 5000
/* Spare queue records in shared memory for queues added by a reload. */
#define SUPERVISOR_SPARE_QUEUES 32

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
    struct upkeep upkeep;     /* its statements go on the listener's connection */
    struct ticks ticks;       /* the schedules; their claims go through upkeep */
    struct doorbell doorbell; /* this pod's arms; its statements are upkeep's */
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

static const char *supervisor_phase_name(enum supervisor_phase phase)
{
    switch (phase) {
    case PHASE_RUNNING:
        return "running";
    case PHASE_STOPPING:
        return "stopping";
    case PHASE_STOPPING_FAST:
        return "stopping fast";
    case PHASE_KILLING:
        return "killing workers";
    case PHASE_DONE:
        return "done";
    }
    return "?";
}

/* Every phase change goes through here and is logged (STYLE §8). */
static void supervisor_set_phase(struct supervisor *s, enum supervisor_phase phase,
                                 int64_t deadline_ms)
{
    log_info("supervisor %s -> %s", supervisor_phase_name(s->phase), supervisor_phase_name(phase));
    s->phase = phase;
    s->phase_deadline_ms = deadline_ms;
}

/* More of the same work in queue q (a worker's claim came back full):
 * bump its hint, then wake one idle worker that serves it. The order
 * matters (shm.h): hint first. */
static void supervisor_help_queue(struct supervisor *s, int q)
{
    if (s->quiet || s->phase != PHASE_RUNNING ||
        atomic_load(&s->shm.queues[s->queue_slots[q]].paused) != 0)
        return;
    atomic_fetch_add(&s->shm.queues[s->queue_slots[q]].hint, 1);
    pool_wake_one(&s->pool, q);
}

/* Tasks may have arrived in queue q (a notification, a poll, a sweep, a
 * timer): as above, and tell draining workers that the new tasks may sort
 * before where they are (shm_queue.arrivals). */
static void supervisor_hint_queue(struct supervisor *s, int q)
{
    if (s->quiet || s->phase != PHASE_RUNNING)
        return;
    atomic_fetch_add(&s->shm.queues[s->queue_slots[q]].arrivals, 1);
    supervisor_help_queue(s, q);
}

static void supervisor_hint_all(struct supervisor *s)
{
    for (int q = 0; q < s->config->queue_count; q++)
        supervisor_hint_queue(s, q);
}

static void supervisor_schedule(struct supervisor *s, int q, int64_t due_ms)
{
    int64_t *due = &s->scheduled_due_ms[s->queue_slots[q]];
    if (*due == 0 || due_ms < *due)
        *due = due_ms;
}

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
    doorbell_rung(&s->doorbell, q, time_now_ms());
    on_task_due(s, q, delay_ms);
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

/* --- event handlers ---------------------------------------------------- */

/* Workers post requests in shm (help wanted, retry due) and then write the
 * request eventfd. */
static void supervisor_on_worker_request(struct supervisor *s)
{
    uint64_t count;
    if (read(s->request_fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
        log_error("reading worker requests failed: %s", strerror(errno));
    int64_t now = time_now_ms();
    for (int q = 0; q < s->config->queue_count; q++) {
        struct shm_queue *queue = &s->shm.queues[s->queue_slots[q]];
        if (atomic_exchange(&queue->help_wanted, 0))
            supervisor_help_queue(s, q);
        int64_t retry_due = atomic_exchange(&queue->retry_due_ms, 0);
        if (retry_due != 0)
            supervisor_schedule(s, q, retry_due > now ? retry_due : now);
    }
}

static void supervisor_on_timer(struct supervisor *s)
{
    uint64_t expirations;
    if (read(s->timer_fd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
        log_error("reading the timer failed: %s", strerror(errno));
}

static void supervisor_log_status(struct supervisor *s)
{
    struct listener_stats stats = listener_stats(&s->listener);
    log_info("status supervisor: phase=%s quiet=%s workers=%d/%d listener=%s reconnects=%" PRIu64
             " notifications=%" PRIu64 " keepalive_rtt_ms=%" PRId64,
             supervisor_phase_name(s->phase), s->quiet ? "yes" : "no", pool_alive(&s->pool),
             pool_target(&s->pool),
             listener_is_listening(&s->listener) ? "listening"
             : listener_is_up(&s->listener)      ? "polling"
                                                 : "down",
             stats.reconnects, stats.notifications, stats.last_ping_rtt_ms);
    pool_log_status(&s->pool);
    for (int q = 0; q < s->config->queue_count; q++) {
        const struct shm_queue *queue = &s->shm.queues[s->queue_slots[q]];
        log_info("status queue \"%s\": hint=%" PRIu64 " notifications=%" PRIu64 " claims=%" PRIu64
                 " claimed=%" PRIu64 " done=%" PRIu64 " retried=%" PRIu64 " dead=%" PRIu64
                 " cancelled=%" PRIu64 " paused=%s",
                 s->config->queues[q].name, atomic_load(&queue->hint),
                 atomic_load(&queue->notifications), atomic_load(&queue->claims),
                 atomic_load(&queue->tasks_claimed), atomic_load(&queue->tasks_done),
                 atomic_load(&queue->tasks_retried), atomic_load(&queue->tasks_dead),
                 atomic_load(&queue->tasks_cancelled),
                 atomic_load(&queue->paused) != 0 ? "yes" : "no");
    }
}

/*
 * Give every queue of config a shared-memory record, keyed by name for the
 * supervisor's lifetime: a known name keeps its record (and counters), a
 * new name takes a free one. Fills slots (config->queue_count entries).
 * Returns -1 when shared memory has no room left (restart to grow it).
 */
static int supervisor_map_queues(struct supervisor *s, const struct pgwork_config *config,
                                 int *slots)
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

/* SIGHUP: re-read the file; a bad file changes nothing (STYLE §12). */
static void supervisor_reload(struct supervisor *s)
{
    const char *path = s->config->path;
    if (path[0] == '\0') {
        log_warn("reload ignored: started without a config file");
        return;
    }
    struct pgwork_config *fresh = NULL;
    char err[1024];
    if (config_load(path, &fresh, err, sizeof(err)) != 0) {
        log_error("reload failed, keeping the running configuration: %s", err);
        return;
    }
    if (fresh->queue_count == 0) {
        log_error("reload failed, keeping the running configuration: %s: no queue configured",
                  path);
        config_free(fresh);
        return;
    }
    int *slots = calloc((size_t)fresh->queue_count, sizeof(*slots));
    if (slots == NULL || supervisor_map_queues(s, fresh, slots) != 0) {
        log_error("reload failed, keeping the running configuration: more new queues than "
                  "shared memory has room for (%u records); restart to apply",
                  s->shm.header->queue_capacity);
        free(slots);
        config_free(fresh);
        return;
    }
    char changed[256];
    config_keep_restart_only(s->config, fresh, changed, sizeof(changed));
    if (changed[0] != '\0')
        log_warn("reload: %s changed; these take a restart and keep their running values", changed);
    bool roll = !config_worker_view_equal(s->config, fresh);

    struct pgwork_config *old = s->config;
    s->config = fresh;
    free(s->queue_slots);
    s->queue_slots = slots;
    log_configure(fresh->log.level, fresh->log.format);
    pool_set_config(&s->pool, fresh, slots, roll);
    listener_set_config(&s->listener, fresh);
    upkeep_set_config(&s->upkeep, fresh);
    ticks_set_config(&s->ticks, fresh);
    doorbell_set_config(&s->doorbell, fresh, slots);
    config_free(old);
    log_info("reloaded %s: %d queue%s, %d worker%s%s", fresh->path, fresh->queue_count,
             fresh->queue_count == 1 ? "" : "s", pool_target(&s->pool),
             pool_target(&s->pool) == 1 ? "" : "s",
             roll ? "; rolling workers onto it one at a time" : "");
    supervisor_hint_all(s);
}

/* Signals become actions, most urgent first (STYLE §4). */
static void supervisor_handle_requests(struct supervisor *s, int64_t now)
{
    struct signal_requests req = s->requests;
    memset(&s->requests, 0, sizeof(s->requests));

    if (req.stop_fast && s->phase < PHASE_STOPPING_FAST) {
        pool_stop(&s->pool, SIGQUIT);
        supervisor_set_phase(s, PHASE_STOPPING_FAST, now + SUPERVISOR_KILL_GRACE_MS);
    } else if (req.stop_graceful && s->phase == PHASE_RUNNING) {
        pool_stop(&s->pool, SIGTERM);
        supervisor_set_phase(s, PHASE_STOPPING, now + s->config->workers.shutdown_timeout_ms);
    }
    if (req.reload && s->phase == PHASE_RUNNING)
        supervisor_reload(s);
    if (req.children)
        pool_reap(&s->pool, now);
    if (req.scale != 0 && s->phase == PHASE_RUNNING)
        pool_scale(&s->pool, req.scale);
    if (req.quiet && !s->quiet) {
        s->quiet = true;
        atomic_store(&s->shm.header->quiet, 1);
        log_info("quiet: no new claims until SIGCONT; running tasks finish");
    }
    if (req.resume && s->quiet) {
        s->quiet = false;
        atomic_store(&s->shm.header->quiet, 0);
        log_info("resumed");
        supervisor_hint_all(s);
    }
    if (req.status)
        supervisor_log_status(s);
}

/* Deadlines reached: scheduled tasks, blind polls, restarts, shutdown
 * escalation, the listener's own timers. */
static void supervisor_run_chores(struct supervisor *s, int64_t now)
{
    listener_run_chores(&s->listener, now);
    if (now >= http_next_deadline(&s->http, now))
        http_run(&s->http); /* connection timeouts */

    for (int q = 0; q < s->config->queue_count; q++) {
        int64_t *due = &s->scheduled_due_ms[s->queue_slots[q]];
        if (*due != 0 && now >= *due) {
            *due = 0;
            supervisor_hint_queue(s, q);
            /* The timer keeps one due time per queue; the poll finds the
             * next one (several retries may be waiting). */
            upkeep_request_sweep(&s->upkeep);
        }
    }
    if (now >= s->lease_renew_due_ms) {
        /* A third of the lease: a running task's lease never runs out
         * while its worker lives, however long the task. Only busy pods
         * send it. */
        s->lease_renew_due_ms = now + s->config->workers.lease_ms / 3;
        char *owners = pool_busy_owners(&s->pool);
        if (owners != NULL)
            upkeep_renew_leases(&s->upkeep, owners);
    }
    if (!listener_is_up(&s->listener) && now >= s->blind_poll_due_ms) {
        /* No database connection to ask: let the workers' claims poll. */
        supervisor_hint_all(s);
        s->blind_poll_due_ms = now + s->config->workers.poll_interval_ms;
    }

    switch (s->phase) {
    case PHASE_RUNNING:
        pool_start_missing(&s->pool, now);
        pool_roll_next(&s->pool);
        if (pool_all_fatal(&s->pool)) {
            log_error("every worker failed with a configuration error; exiting");
            s->exit_code = EXIT_CONFIG;
            supervisor_set_phase(s, PHASE_DONE, 0);
        }
        break;
    case PHASE_STOPPING:
    case PHASE_STOPPING_FAST:
    case PHASE_KILLING:
        if (pool_alive(&s->pool) == 0) {
            /* Wait (a little, and only while the database answers) for it
             * to take back what dead workers held; the lease covers the
             * rest. */
            if (s->requeue_deadline_ms == 0)
                s->requeue_deadline_ms = now + SUPERVISOR_REQUEUE_GRACE_MS;
            if (upkeep_pending_requeues(&s->upkeep) == 0 || !listener_is_up(&s->listener) ||
                now >= s->requeue_deadline_ms)
                supervisor_set_phase(s, PHASE_DONE, 0);
        } else if (now >= s->phase_deadline_ms && s->phase == PHASE_STOPPING) {
            log_warn("workers still running after shutdown_timeout; aborting their tasks");
            pool_signal_all(&s->pool, SIGQUIT);
            supervisor_set_phase(s, PHASE_STOPPING_FAST, now + SUPERVISOR_KILL_GRACE_MS);
        } else if (now >= s->phase_deadline_ms && s->phase == PHASE_STOPPING_FAST) {
            log_warn("workers ignored SIGQUIT; killing them");
            pool_signal_all(&s->pool, SIGKILL);
            supervisor_set_phase(s, PHASE_KILLING, now + SUPERVISOR_KILL_GRACE_MS);
        }
        break;
    case PHASE_DONE:
        break;
    }
}

static int64_t supervisor_next_deadline(const struct supervisor *s)
{
    int64_t next = listener_next_deadline(&s->listener);
    int64_t pool_next = pool_next_deadline(&s->pool);
    if (pool_next < next)
        next = pool_next;
    for (int q = 0; q < s->config->queue_count; q++) {
        int64_t due = s->scheduled_due_ms[s->queue_slots[q]];
        if (due != 0 && due < next)
            next = due;
    }
    if (!listener_is_up(&s->listener) && s->blind_poll_due_ms < next)
        next = s->blind_poll_due_ms;
    if (s->lease_renew_due_ms < next)
        next = s->lease_renew_due_ms;
    if (s->phase != PHASE_RUNNING && s->phase_deadline_ms < next)
        next = s->phase_deadline_ms;
    if (s->requeue_deadline_ms != 0 && s->requeue_deadline_ms < next)
        next = s->requeue_deadline_ms;
    int64_t http_next = http_next_deadline(&s->http, time_now_ms());
    if (http_next < next)
        next = http_next;
    return next;
}

/* One timerfd, armed at the earliest deadline (absolute, monotonic). */
static void supervisor_arm_timer(struct supervisor *s)
{
    int64_t next = supervisor_next_deadline(s);
    struct itimerspec spec = {0};
    if (next != INT64_MAX) {
        if (next < 1)
            next = 1; /* an all-zero it_value would disarm the timer */
        spec.it_value.tv_sec = next / 1000;
        spec.it_value.tv_nsec = (next % 1000) * 1000000;
    }
    if (timerfd_settime(s->timer_fd, TFD_TIMER_ABSTIME, &spec, NULL) != 0)
        log_error("timerfd_settime failed: %s", strerror(errno));
}

static int supervisor_watch(struct supervisor *s, int fd)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    return epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, fd, &ev);
}

static void supervisor_loop(struct supervisor *s)
{
    struct epoll_event events[16];
    while (s->phase != PHASE_DONE) {
        supervisor_arm_timer(s);
        int n = epoll_wait(s->epoll_fd, events, 16, -1);
        if (n < 0 && errno != EINTR) {
            log_error("epoll_wait failed: %s", strerror(errno));
            s->exit_code = EXIT_FAILURE_GENERIC;
            return;
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == s->signal_fd)
                signals_read(s->signal_fd, &s->requests);
            else if (fd == s->request_fd)
                supervisor_on_worker_request(s);
            else if (fd == s->timer_fd)
                supervisor_on_timer(s);
            else if (fd == http_fd(&s->http))
                http_run(&s->http);
            else
                listener_on_io(&s->listener, fd, events[i].events);
        }
        int64_t now = time_now_ms();
        supervisor_handle_requests(s, now);
        /* Arms only while taking work (a quiet or stopping pod disarms). */
        doorbell_set_serving(&s->doorbell, s->phase == PHASE_RUNNING && !s->quiet);
        supervisor_run_chores(s, now);
    }
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

static int supervisor_open(struct supervisor *s)
{
    const struct pgwork_config *config = s->config;
    supervisor_make_pod_tag(s);

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

    const struct http_handlers handlers = {.ready = http_ready, .metrics = http_metrics, .ctx = s};
    if (http_start(&s->http, config->http.listen, &handlers) != 0)
        return -1;
    if (http_fd(&s->http) >= 0 && supervisor_watch(s, http_fd(&s->http)) != 0) {
        log_error("epoll_ctl failed for the http endpoint: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static void supervisor_close(struct supervisor *s)
{
    http_stop(&s->http);
    listener_close(&s->listener);
    upkeep_free(&s->upkeep);
    ticks_free(&s->ticks);
    doorbell_free(&s->doorbell);
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

/* A pod without queues would look healthy (/readyz 200) and never run a
 * task: most likely a config that was not mounted (the image's own file
 * has no queue). Refused at start, and by check-config alike. */
int supervisor_check_config(const struct pgwork_config *config, char *err, size_t errlen)
{
    if (config->queue_count > 0)
        return 0;
    snprintf(err, errlen, "%s: no queue configured; add a queue \"name\" { ... } section",
             config->path[0] ? config->path : "configuration");
    return -1;
}

int supervisor_run(struct pgwork_config *config)
{
    char why[1024];
    if (supervisor_check_config(config, why, sizeof(why)) != 0) {
        log_error("%s", why);
        config_free(config);
        return EXIT_CONFIG;
    }
    struct supervisor s = {
        .config = config,
        .phase = PHASE_RUNNING,
        .exit_code = EXIT_OK,
        .epoll_fd = -1,
        .signal_fd = -1,
        .timer_fd = -1,
        .request_fd = -1,
        .death_pipe = {-1, -1},
    };
    if (supervisor_open(&s) != 0) {
        supervisor_close(&s);
        return EXIT_FAILURE_GENERIC;
    }
    char safe_conninfo[512];
    log_redact_conninfo(config_listen_conninfo(config), safe_conninfo, sizeof(safe_conninfo));
    log_info("starting: %d worker%s, %d queue%s, database \"%s\", tasks locked by %s/<slot>/<pid>",
             config->workers.count, config->workers.count == 1 ? "" : "s", config->queue_count,
             config->queue_count == 1 ? "" : "s", safe_conninfo, s.pod_tag);

    /* Before the first fork nothing has a due time; the listener connects
     * at the first chores pass and sweeps once it listens. */
    s.blind_poll_due_ms = time_now_ms() + config->workers.poll_interval_ms;
    s.lease_renew_due_ms = time_now_ms() + config->workers.lease_ms / 3;
    supervisor_run_chores(&s, time_now_ms());
    supervisor_loop(&s);

    int exit_code = s.exit_code;
    log_info("exiting with status %d", exit_code);
    supervisor_close(&s);
    return exit_code;
}
