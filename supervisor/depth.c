/*
 * depth.c — queue depth by state for /metrics: one statement for all the
 * configured queues (index probes on the partial indexes), read into a
 * depth_reading. upkeep.c decides when it is sent (only while something
 * scrapes, at most every UPKEEP_DEPTH_MAX_AGE_MS).
 */
#include <stdlib.h>
#include <string.h>

#include "depth.h"

/* clang-format off */

/* Queue depth by state: index probes on the partial indexes (poll,
 * running, dead), one statement for all queues. */
static const char depth_sql[] =
    "SELECT q.name,"
    " (SELECT count(*) FROM pgwork.tasks t"
    "   WHERE t.queue = q.name AND t.state = 'pending' AND t.priority IS NOT NULL"
    "     AND t.run_at <= now()),"
    " (SELECT count(*) FROM pgwork.tasks t"
    "   WHERE t.queue = q.name AND t.state = 'pending' AND t.priority IS NOT NULL"
    "     AND t.run_at > now()),"
    " (SELECT count(*) FROM pgwork.tasks t WHERE t.queue = q.name AND t.state = 'running'),"
    " (SELECT count(*) FROM pgwork.tasks t WHERE t.queue = q.name AND t.state = 'dead'),"
    " pg_notification_queue_usage()"
    " FROM unnest($1::text[]) AS q(name)";

/* clang-format on */

int depth_send(PGconn *conn, const char *queue_names)
{
    const char *params[] = {queue_names};
    return PQsendQueryParams(conn, depth_sql, 1, NULL, params, NULL, NULL, 0);
}

void depth_read(struct depth_reading *d, const PGresult *res, int64_t now)
{
    depth_free(d);
    int rows = PQntuples(res);
    d->names = calloc((size_t)rows + 1, sizeof(*d->names));
    d->pending_due = calloc((size_t)rows + 1, sizeof(int64_t));
    d->pending_later = calloc((size_t)rows + 1, sizeof(int64_t));
    d->running = calloc((size_t)rows + 1, sizeof(int64_t));
    d->dead = calloc((size_t)rows + 1, sizeof(int64_t));
    if (d->names == NULL || d->pending_due == NULL || d->pending_later == NULL ||
        d->running == NULL || d->dead == NULL) {
        depth_free(d);
        return;
    }
    for (int r = 0; r < rows; r++) {
        d->names[r] = strdup(PQgetvalue(res, r, 0));
        if (d->names[r] == NULL)
            break;
        d->pending_due[r] = atoll(PQgetvalue(res, r, 1));
        d->pending_later[r] = atoll(PQgetvalue(res, r, 2));
        d->running[r] = atoll(PQgetvalue(res, r, 3));
        d->dead[r] = atoll(PQgetvalue(res, r, 4));
        d->notify_queue_usage = atof(PQgetvalue(res, r, 5));
        d->count++;
    }
    d->fetched_ms = now;
}

void depth_free(struct depth_reading *d)
{
    for (int i = 0; i < d->count; i++)
        free(d->names[i]);
    free(d->names);
    free(d->pending_due);
    free(d->pending_later);
    free(d->running);
    free(d->dead);
    memset(d, 0, sizeof(*d));
}
