/*
 * supervisor.c — `pgwork run`: the supervisor's main loop (DESIGN §1); its
 * modules are opened, and call back, in supervisor_setup.c.
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
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "supervisor.h"
#include "supervisor_internal.h"
#include "../shared/exitcodes.h"
#include "../shared/log.h"
#include "../shared/shm.h"
#include "../shared/timeutil.h"

/* Grace between QUIT and KILL when workers do not stop. */
#define SUPERVISOR_KILL_GRACE_MS 2000
/* How long shutdown waits for the database to confirm requeues. */
#define SUPERVISOR_REQUEUE_GRACE_MS 5000

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
void supervisor_hint_queue(struct supervisor *s, int q)
{
    if (s->quiet || s->phase != PHASE_RUNNING)
        return;
    atomic_fetch_add(&s->shm.queues[s->queue_slots[q]].arrivals, 1);
    supervisor_help_queue(s, q);
}

void supervisor_hint_all(struct supervisor *s)
{
    for (int q = 0; q < s->config->queue_count; q++)
        supervisor_hint_queue(s, q);
}

void supervisor_schedule(struct supervisor *s, int q, int64_t due_ms)
{
    int64_t *due = &s->scheduled_due_ms[s->queue_slots[q]];
    if (*due == 0 || due_ms < *due)
        *due = due_ms;
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
    if (now >= throughput_next_deadline(&s->throughput))
        throughput_run(&s->throughput, now);
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
            /* The minute in progress too: a rolling restart loses no
             * counts from the dashboard's chart. */
            if (!s->throughput_flushed)
                throughput_flush(&s->throughput, now);
            s->throughput_flushed = true;
            if ((upkeep_pending_requeues(&s->upkeep) == 0 &&
                 throughput_pending(&s->throughput) == 0) ||
                !listener_is_up(&s->listener) || now >= s->requeue_deadline_ms)
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
    int64_t minute_next = throughput_next_deadline(&s->throughput);
    if (minute_next < next)
        next = minute_next;
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

static void supervisor_loop(struct supervisor *s)
{
    struct epoll_event events[16];
    while (s->phase != PHASE_DONE) {
        /* What the upkeep jobs' due times depend on (the doorbell reads
         * the workers' states), read before the timer asks for them. */
        upkeep_refresh(&s->upkeep, time_now_ms());
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
