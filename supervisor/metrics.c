/*
 * metrics.c — /metrics in Prometheus text format (version 0.0.4).
 *
 * Invariants: reads only memory — shared-memory counters written by the
 * workers (relaxed atomics: a scrape may see one counter a task ahead of
 * another, never a torn value), the pool's and the listener's state, and
 * upkeep's cached queue depth (at most UPKEEP_DEPTH_MAX_AGE_MS old,
 * refreshed only while something scrapes).
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "doorbell.h"
#include "listener.h"
#include "pool.h"
#include "ticks.h"
#include "upkeep.h"
#include "../shared/timeutil.h"

void metrics_label_value(struct text_buffer *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            text_appendf(out, "\\\\");
        else if (*s == '"')
            text_appendf(out, "\\\"");
        else if (*s == '\n')
            text_appendf(out, "\\n");
        else
            text_appendf(out, "%c", *s);
    }
}

static void metrics_header(struct text_buffer *out, const char *name, const char *type,
                           const char *help)
{
    text_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{queue="q"[,extra]} value */
static void metrics_queue_sample(struct text_buffer *out, const char *name, const char *queue,
                                 const char *extra, uint64_t value)
{
    text_appendf(out, "%s{queue=\"", name);
    metrics_label_value(out, queue);
    text_appendf(out, "\"%s%s} %" PRIu64 "\n", extra ? "," : "", extra ? extra : "", value);
}

static void metrics_histogram(struct text_buffer *out, const char *name, const char *queue,
                              const struct shm_histogram *h)
{
    static const int64_t bounds[] = SHM_HISTOGRAM_BOUNDS;
    uint64_t cumulative = 0;
    char le[48];
    for (int i = 0; i < SHM_HISTOGRAM_BUCKETS; i++) {
        cumulative += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        if (i < SHM_HISTOGRAM_BUCKETS - 1)
            snprintf(le, sizeof(le), "le=\"%g\"", (double)bounds[i] / 1e6);
        else
            snprintf(le, sizeof(le), "le=\"+Inf\"");
        char bucket[96];
        snprintf(bucket, sizeof(bucket), "%s_bucket", name);
        metrics_queue_sample(out, bucket, queue, le, cumulative);
    }
    text_appendf(out, "%s_sum{queue=\"", name);
    metrics_label_value(out, queue);
    text_appendf(out, "\"} %.6f\n", (double)atomic_load(&h->sum_us) / 1e6);
    char count[96];
    snprintf(count, sizeof(count), "%s_count", name);
    metrics_queue_sample(out, count, queue, NULL, cumulative);
}

static void metrics_queues(const struct metrics_source *src, struct text_buffer *out)
{
    const struct pgwork_config *config = src->config;
    metrics_header(out, "pgwork_tasks_total", "counter",
                   "Tasks finished by this pod, by queue and outcome (done, retried, dead, "
                   "cancelled: stopped or skipped here after pgwork.cancel).");
    for (int q = 0; q < config->queue_count; q++) {
        const struct shm_queue *sq = &src->shm->queues[src->queue_slots[q]];
        const char *name = config->queues[q].name;
        metrics_queue_sample(out, "pgwork_tasks_total", name, "outcome=\"done\"",
                             atomic_load(&sq->tasks_done));
        metrics_queue_sample(out, "pgwork_tasks_total", name, "outcome=\"retried\"",
                             atomic_load(&sq->tasks_retried));
        metrics_queue_sample(out, "pgwork_tasks_total", name, "outcome=\"dead\"",
                             atomic_load(&sq->tasks_dead));
        metrics_queue_sample(out, "pgwork_tasks_total", name, "outcome=\"cancelled\"",
                             atomic_load(&sq->tasks_cancelled));
    }
    metrics_header(out, "pgwork_queue_paused", "gauge",
                   "1 while the queue is paused (pgwork.pause), as this pod last heard.");
    for (int q = 0; q < config->queue_count; q++)
        metrics_queue_sample(out, "pgwork_queue_paused", config->queues[q].name, NULL,
                             atomic_load(&src->shm->queues[src->queue_slots[q]].paused));
    metrics_header(out, "pgwork_claims_total", "counter",
                   "Claim statements run by this pod's workers, by queue.");
    for (int q = 0; q < config->queue_count; q++)
        metrics_queue_sample(out, "pgwork_claims_total", config->queues[q].name, NULL,
                             atomic_load(&src->shm->queues[src->queue_slots[q]].claims));
    metrics_header(out, "pgwork_tasks_claimed_total", "counter",
                   "Tasks those claims returned, by queue.");
    for (int q = 0; q < config->queue_count; q++)
        metrics_queue_sample(out, "pgwork_tasks_claimed_total", config->queues[q].name, NULL,
                             atomic_load(&src->shm->queues[src->queue_slots[q]].tasks_claimed));
    metrics_header(out, "pgwork_notifications_total", "counter",
                   "Task notifications received by the listener, by queue.");
    for (int q = 0; q < config->queue_count; q++)
        metrics_queue_sample(out, "pgwork_notifications_total", config->queues[q].name, NULL,
                             atomic_load(&src->shm->queues[src->queue_slots[q]].notifications));
    metrics_header(out, "pgwork_task_duration_seconds", "histogram",
                   "Handler run time per task, by queue.");
    for (int q = 0; q < config->queue_count; q++)
        metrics_histogram(out, "pgwork_task_duration_seconds", config->queues[q].name,
                          &src->shm->queues[src->queue_slots[q]].duration);
    metrics_header(out, "pgwork_pickup_latency_seconds", "histogram",
                   "Claim time minus run_at (the database's clock), by queue.");
    for (int q = 0; q < config->queue_count; q++)
        metrics_histogram(out, "pgwork_pickup_latency_seconds", config->queues[q].name,
                          &src->shm->queues[src->queue_slots[q]].pickup);
}

static void metrics_workers(const struct metrics_source *src, struct text_buffer *out)
{
    static const int states[] = {WORKER_STARTING, WORKER_IDLE, WORKER_WOKEN, WORKER_BUSY,
                                 WORKER_STOPPING};
    int count[WORKER_STOPPING + 1] = {0};
    uint64_t restarts = 0, wakeups = 0;
    for (int i = 0; i < pool_capacity(src->pool); i++) {
        const struct shm_worker *w = &src->shm->workers[i];
        int state = atomic_load(&w->state);
        if (pool_slot_running(src->pool, i) && state >= 0 && state <= WORKER_STOPPING)
            count[state]++;
        restarts += atomic_load(&w->restarts);
        wakeups += atomic_load(&w->wakeups);
    }
    metrics_header(out, "pgwork_workers", "gauge", "Worker processes by state.");
    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
        text_appendf(out, "pgwork_workers{state=\"%s\"} %d\n", shm_worker_state_name(states[i]),
                     count[states[i]]);
    metrics_header(out, "pgwork_workers_wanted", "gauge",
                   "Workers the pool wants (workers.count, moved by TTIN/TTOU).");
    text_appendf(out, "pgwork_workers_wanted %d\n", pool_target(src->pool));
    metrics_header(out, "pgwork_worker_restarts_total", "counter",
                   "Worker processes started again after an exit.");
    text_appendf(out, "pgwork_worker_restarts_total %" PRIu64 "\n", restarts);
    metrics_header(out, "pgwork_worker_wakeups_total", "counter",
                   "Wake-ups the workers received through their eventfd.");
    text_appendf(out, "pgwork_worker_wakeups_total %" PRIu64 "\n", wakeups);
}

static void metrics_listener(const struct metrics_source *src, struct text_buffer *out)
{
    const struct listener *l = src->listener;
    struct listener_stats stats = listener_stats(l);
    metrics_header(out, "pgwork_listener_connected", "gauge",
                   "1 while the listener connection is up and LISTENing.");
    text_appendf(out, "pgwork_listener_connected %d\n", listener_is_listening(l) ? 1 : 0);
    metrics_header(out, "pgwork_listener_reconnects_total", "counter",
                   "Listener connections made after the first.");
    text_appendf(out, "pgwork_listener_reconnects_total %" PRIu64 "\n", stats.reconnects);
    metrics_header(out, "pgwork_listener_notifications_total", "counter",
                   "Task notifications received, all queues.");
    text_appendf(out, "pgwork_listener_notifications_total %" PRIu64 "\n", stats.notifications);
    metrics_header(out, "pgwork_keepalive_rtt_seconds", "gauge",
                   "Round trip of the last keepalive notification (0 = none yet).");
    text_appendf(out, "pgwork_keepalive_rtt_seconds %.3f\n", (double)stats.last_ping_rtt_ms / 1e3);
    metrics_header(out, "pgwork_quiet", "gauge", "1 while quiet (SIGTSTP): no new claims.");
    text_appendf(out, "pgwork_quiet %d\n", src->quiet ? 1 : 0);
    const struct retention *r = upkeep_retention(src->upkeep);
    metrics_header(out, "pgwork_retention_deleted_total", "counter",
                   "Finished tasks this pod deleted past their retention, all queues.");
    text_appendf(out, "pgwork_retention_deleted_total %" PRIu64 "\n", r->deleted);
    metrics_header(out, "pgwork_retention_batches_total", "counter",
                   "Retention statements this pod ran (each deletes a batch at most).");
    text_appendf(out, "pgwork_retention_batches_total %" PRIu64 "\n", r->batches);

    const struct depth_reading *d = upkeep_depth(src->upkeep);
    if (d->fetched_ms == 0)
        return; /* nothing read yet: absent beats a made-up zero */
    metrics_header(out, "pgwork_notification_queue_usage", "gauge",
                   "PostgreSQL's notification queue in use, 0..1 (full = notifying commits fail).");
    text_appendf(out, "pgwork_notification_queue_usage %g\n", d->notify_queue_usage);
    metrics_header(out, "pgwork_queue_depth", "gauge",
                   "Tasks in the database by queue and state (pending_due, pending_later, "
                   "running, dead).");
    for (int i = 0; i < d->count; i++) {
        metrics_queue_sample(out, "pgwork_queue_depth", d->names[i], "state=\"pending_due\"",
                             (uint64_t)d->pending_due[i]);
        metrics_queue_sample(out, "pgwork_queue_depth", d->names[i], "state=\"pending_later\"",
                             (uint64_t)d->pending_later[i]);
        metrics_queue_sample(out, "pgwork_queue_depth", d->names[i], "state=\"running\"",
                             (uint64_t)d->running[i]);
        metrics_queue_sample(out, "pgwork_queue_depth", d->names[i], "state=\"dead\"",
                             (uint64_t)d->dead[i]);
    }
    metrics_header(out, "pgwork_queue_depth_age_seconds", "gauge",
                   "Age of the queue depth and notification-queue readings.");
    text_appendf(out, "pgwork_queue_depth_age_seconds %.3f\n",
                 (double)(time_now_ms() - d->fetched_ms) / 1e3);
}

/* name{schedule="s"} value */
static void metrics_schedule_sample(struct text_buffer *out, const char *name,
                                    const struct tick_state *s, const char *value)
{
    text_appendf(out, "%s{schedule=\"", name);
    metrics_label_value(out, s->name);
    text_appendf(out, "\"} %s\n", value);
}

/* Per schedule: ticks this pod made and found missed (counters), the
 * last tick made and the next one (timestamps; absent until known). */
static void metrics_schedules(const struct metrics_source *src, struct text_buffer *out)
{
    int n = src->ticks != NULL ? ticks_count(src->ticks) : 0;
    if (n == 0)
        return;
    char value[32];
    metrics_header(out, "pgwork_schedule_ticks_made_total", "counter",
                   "Ticks of each schedule this pod made a task for (all pods: sum them).");
    for (int i = 0; i < n; i++) {
        const struct tick_state *s = ticks_at(src->ticks, i);
        snprintf(value, sizeof(value), "%" PRIu64, s->made);
        metrics_schedule_sample(out, "pgwork_schedule_ticks_made_total", s, value);
    }
    metrics_header(out, "pgwork_schedule_ticks_missed_total", "counter",
                   "Ticks nobody made (no pod ran the schedule), found by this pod when it made "
                   "the tick after them late.");
    for (int i = 0; i < n; i++) {
        const struct tick_state *s = ticks_at(src->ticks, i);
        snprintf(value, sizeof(value), "%" PRIu64, s->missed);
        metrics_schedule_sample(out, "pgwork_schedule_ticks_missed_total", s, value);
    }
    metrics_header(out, "pgwork_schedule_last_tick_timestamp_seconds", "gauge",
                   "The newest tick made of each schedule, by any pod (Unix time).");
    for (int i = 0; i < n; i++) {
        const struct tick_state *s = ticks_at(src->ticks, i);
        if (s->last_tick_ms == 0)
            continue;
        snprintf(value, sizeof(value), "%.3f", (double)s->last_tick_ms / 1e3);
        metrics_schedule_sample(out, "pgwork_schedule_last_tick_timestamp_seconds", s, value);
    }
    metrics_header(out, "pgwork_schedule_next_tick_timestamp_seconds", "gauge",
                   "The next tick of each schedule (Unix time, the database's clock).");
    for (int i = 0; i < n; i++) {
        const struct tick_state *s = ticks_at(src->ticks, i);
        int64_t next = ticks_next_tick(s);
        if (next == 0)
            continue;
        snprintf(value, sizeof(value), "%.3f", (double)next / 1e3);
        metrics_schedule_sample(out, "pgwork_schedule_next_tick_timestamp_seconds", s, value);
    }
}

/* Limited queues (queue.concurrency, queue.rate): this pod's limits, and
 * what the database counted for all pods with the last depth reading. */
static void metrics_limits(const struct metrics_source *src, struct text_buffer *out)
{
    const struct limits_reading *r = upkeep_limits(src->upkeep);
    if (r->count == 0)
        return;
    metrics_header(out, "pgwork_limit_concurrency", "gauge",
                   "queue.concurrency in this pod's config (0 = no cap), by limited queue.");
    for (int i = 0; i < r->count; i++)
        metrics_queue_sample(out, "pgwork_limit_concurrency", r->names[i], NULL,
                             (uint64_t)r->concurrency[i]);
    metrics_header(out, "pgwork_limit_running", "gauge",
                   "Tasks running now, all pods, by limited queue (compare with the cap).");
    for (int i = 0; i < r->count; i++)
        metrics_queue_sample(out, "pgwork_limit_running", r->names[i], NULL,
                             (uint64_t)r->running[i]);
    metrics_header(out, "pgwork_limit_rate", "gauge",
                   "queue.rate's starts per period in this pod's config (0 = none).");
    for (int i = 0; i < r->count; i++)
        metrics_queue_sample(out, "pgwork_limit_rate", r->names[i], NULL,
                             (uint64_t)r->rate_count[i]);
    metrics_header(out, "pgwork_limit_rate_period_seconds", "gauge",
                   "queue.rate's period (0 = none).");
    for (int i = 0; i < r->count; i++) {
        text_appendf(out, "pgwork_limit_rate_period_seconds{queue=\"");
        metrics_label_value(out, r->names[i]);
        text_appendf(out, "\"} %.3f\n", (double)r->rate_period_ms[i] / 1e3);
    }
    metrics_header(out, "pgwork_limit_starts", "gauge",
                   "Task starts in the last rate period, all pods (compare with the rate).");
    for (int i = 0; i < r->count; i++)
        metrics_queue_sample(out, "pgwork_limit_starts", r->names[i], NULL, (uint64_t)r->starts[i]);
    metrics_header(out, "pgwork_limit_waiting", "gauge",
                   "Due tasks held back because the queue's cap or rate is reached.");
    for (int i = 0; i < r->count; i++)
        metrics_queue_sample(out, "pgwork_limit_waiting", r->names[i], NULL,
                             (uint64_t)r->waiting[i]);
}

/* The doorbell (DESIGN §1.8): this pod's arms, and the rings it heard. */
static void metrics_doorbell(const struct metrics_source *src, struct text_buffer *out)
{
    if (src->doorbell == NULL)
        return;
    const struct pgwork_config *config = src->config;
    struct doorbell_stats stats = doorbell_stats(src->doorbell);
    metrics_header(out, "pgwork_doorbell_armed", "gauge",
                   "1 while this pod's arm for the queue is in pgwork.doorbell (an idle worker "
                   "waits; inserts ring this pod).");
    for (int q = 0; q < config->queue_count; q++)
        metrics_queue_sample(out, "pgwork_doorbell_armed", config->queues[q].name, NULL,
                             doorbell_armed(src->doorbell, q) ? 1 : 0);
    metrics_header(out, "pgwork_doorbell_writes_total", "counter",
                   "Arm/disarm statements this pod committed (one per 20 ms at most, on average).");
    text_appendf(out, "pgwork_doorbell_writes_total %" PRIu64 "\n", stats.writes);
    metrics_header(out, "pgwork_doorbell_arms_total", "counter", "Queues those writes armed.");
    text_appendf(out, "pgwork_doorbell_arms_total %" PRIu64 "\n", stats.arms);
    metrics_header(out, "pgwork_doorbell_disarms_total", "counter",
                   "Queues those writes disarmed.");
    text_appendf(out, "pgwork_doorbell_disarms_total %" PRIu64 "\n", stats.disarms);
    metrics_header(out, "pgwork_doorbell_rings_total", "counter",
                   "Notifications heard on this pod's own ring channel.");
    text_appendf(out, "pgwork_doorbell_rings_total %" PRIu64 "\n",
                 listener_stats(src->listener).rings);
    metrics_header(out, "pgwork_doorbell_probe_finds_total", "counter",
                   "Queues whose probe after an arm found a task due (committed while unarmed).");
    text_appendf(out, "pgwork_doorbell_probe_finds_total %" PRIu64 "\n", stats.probe_finds);
    metrics_header(out, "pgwork_doorbell_storms_total", "counter",
                   "Storms (rings within 10 ms): queues held disarmed, their idle workers fed "
                   "by probes until tasks slow down.");
    text_appendf(out, "pgwork_doorbell_storms_total %" PRIu64 "\n", stats.storms);
    metrics_header(out, "pgwork_doorbell_reprobes_total", "counter",
                   "Probes again because transactions were running at an arm's probe.");
    text_appendf(out, "pgwork_doorbell_reprobes_total %" PRIu64 "\n", stats.reprobes);
}

void metrics_render(const struct metrics_source *src, struct text_buffer *out)
{
    metrics_queues(src, out);
    metrics_workers(src, out);
    metrics_listener(src, out);
    metrics_schedules(src, out);
    metrics_limits(src, out);
    metrics_doorbell(src, out);
}
