/*
 * metrics.h — the Prometheus text exposition of /metrics, rendered from
 * shared-memory counters and the supervisor's own state; never a query
 * per scrape (queue depth comes from upkeep's cached reading).
 */
#ifndef PGWORK_METRICS_H
#define PGWORK_METRICS_H

#include <stddef.h>

#include "../shared/config.h"
#include "../shared/shm.h"
#include "../shared/text.h"

struct pool;
struct listener;
struct upkeep;
struct ticks;
struct doorbell;

struct metrics_source {
    const struct pgwork_config *config;
    const struct shm *shm;
    const int *queue_slots; /* config index -> shm queue record */
    const struct pool *pool;
    const struct listener *listener;
    const struct upkeep *upkeep;
    const struct ticks *ticks;       /* the schedules; NULL = none */
    const struct doorbell *doorbell; /* NULL: no doorbell rows */
    int quiet;
};

void metrics_render(const struct metrics_source *src, struct text_buffer *out);

/* Append s as a Prometheus label value (backslash, quote, newline
 * escaped). */
void metrics_label_value(struct text_buffer *out, const char *s);

#endif
