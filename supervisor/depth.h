/*
 * depth.h — queue depth by state (depth.c): the statement, and its reading
 * for /metrics.
 */
#ifndef PGWORK_DEPTH_H
#define PGWORK_DEPTH_H

#include <stdint.h>

#include <libpq-fe.h>

/* Queue depth by state, per configured queue (config order), for
 * /metrics: read when upkeep.c asks. */
struct depth_reading {
    int count;              /* queues in the arrays below; 0 = never read */
    char **names;           /* owned copies */
    int64_t *pending_due;   /* pending, run_at <= now() */
    int64_t *pending_later; /* pending, run_at > now() */
    int64_t *running;
    int64_t *dead;
    double notify_queue_usage; /* pg_notification_queue_usage(), 0..1 */
    int64_t fetched_ms;        /* when it was read, 0 = never */
};

/* Send the depth statement for the configured queues (a text[] literal);
 * PQsendQueryParams' result. */
int depth_send(PGconn *conn, const char *queue_names);

/* Replace d with the statement's successful result (now: when). Out of
 * memory: d is left empty (count 0) or short, never wrong. */
void depth_read(struct depth_reading *d, const PGresult *res, int64_t now);

void depth_free(struct depth_reading *d);

#endif
