/*
 * limits.h — the state of the limited queues (queue.concurrency,
 * queue.rate; migration 0012) as the database has it, for /metrics (read
 * by upkeep with the queue depth, only while something scrapes) and
 * `pgwork status`: one statement for every limited queue of a config.
 */
#ifndef PGWORK_LIMITS_H
#define PGWORK_LIMITS_H

#include <stdint.h>

#include <libpq-fe.h>

#include "../shared/config.h"

/* One row per limited queue of the config, in config order. */
struct limits_reading {
    int count;        /* 0 = none read (or no limited queue) */
    char **names;     /* owned copies */
    int *concurrency; /* this pod's cap, 0 = none */
    int *rate_count;  /* this pod's rate: starts per period, 0 = none */
    int64_t *rate_period_ms;
    int64_t *running;   /* tasks running now, all pods */
    int64_t *starts;    /* starts in the last period (rate-limited queues) */
    int64_t *waiting;   /* due pending tasks while a limit is reached, else 0 */
    int64_t fetched_ms; /* CLOCK_MONOTONIC ms of the reading, 0 = never */
};

/* The statement; its four parameters come from limits_params. */
extern const char limits_sql[];

/* The parameters of limits_sql for config's limited queues (owned text[]
 * / int[] literals in params[0..3], freed with limits_params_free). The
 * number of limited queues (0: nothing to read, params NULL), or -1 out
 * of memory. */
int limits_params(const struct pgwork_config *config, char *params[4]);
void limits_params_free(char *params[4]);

/* limits_sql's rows into r (freed first). 0, or -1 (bad shape, out of
 * memory: r is left empty). */
int limits_read(struct limits_reading *r, const PGresult *res, int64_t now_ms);
void limits_free(struct limits_reading *r);

#endif
