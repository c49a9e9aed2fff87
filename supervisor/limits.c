/*
 * limits.c — one reading of the limited queues' state (limits.h).
 *
 * Invariants: only queues the config limits are read (an install without
 * limits sends nothing); queue names are parameters; the counts are the
 * database's (every pod's tasks), the limits this pod's config.
 */
#include "limits.h"

#include <stdlib.h>
#include <string.h>

#include "../shared/text.h"

/* clang-format off */
/*
 * Per limited queue: its running tasks (tasks_running_idx), its starts in
 * the last period (limit_starts_idx; 0 without a rate), and its due
 * pending tasks when a limit is reached (held back by it), else 0.
 */
const char limits_sql[] =
    "SELECT q.name, q.cap, q.n, q.ms, c.running, c.starts,"
    "  CASE WHEN (q.cap > 0 AND c.running >= q.cap) OR (q.n > 0 AND c.starts >= q.n)"
    "       THEN (SELECT count(*) FROM pgwork.tasks t"
    "             WHERE t.queue = q.name AND t.state = 'pending' AND t.priority IS NOT NULL"
    "               AND t.run_at <= now())"
    "       ELSE 0 END"
    " FROM unnest($1::text[], $2::int[], $3::int[], $4::bigint[]) AS q(name, cap, n, ms),"
    " LATERAL (SELECT"
    "   (SELECT count(*) FROM pgwork.tasks t"
    "    WHERE t.queue = q.name AND t.state = 'running') AS running,"
    "   (SELECT count(*) FROM pgwork.limit_starts s"
    "    WHERE q.n > 0 AND s.queue = q.name"
    "      AND s.started_at >= clock_timestamp() - q.ms * interval '1 millisecond') AS starts) c";
/* clang-format on */

void limits_params_free(char *params[4])
{
    for (int i = 0; i < 4; i++) {
        free(params[i]);
        params[i] = NULL;
    }
}

int limits_params(const struct pgwork_config *config, char *params[4])
{
    struct text_buffer lists[4] = {{0}};
    int limited = 0;
    for (int i = 0; i < config->queue_count; i++) {
        const struct queue_config *q = &config->queues[i];
        int n;
        int64_t ms;
        if (!config_queue_limited(q) || config_rate_parse(q->rate, &n, &ms) != 0)
            continue;
        text_array_add_text(&lists[0], q->name);
        text_array_add_int64(&lists[1], q->concurrency);
        text_array_add_int64(&lists[2], n);
        text_array_add_int64(&lists[3], ms);
        limited++;
    }
    for (int i = 0; i < 4; i++)
        params[i] = limited > 0 ? text_array_end(&lists[i]) : NULL;
    if (limited > 0 && (!params[0] || !params[1] || !params[2] || !params[3])) {
        limits_params_free(params);
        return -1;
    }
    for (int i = 0; limited == 0 && i < 4; i++)
        free(lists[i].data);
    return limited;
}

void limits_free(struct limits_reading *r)
{
    for (int i = 0; r->names != NULL && i < r->count; i++)
        free(r->names[i]);
    free(r->names);
    free(r->concurrency);
    free(r->rate_count);
    free(r->rate_period_ms);
    free(r->running);
    free(r->starts);
    free(r->waiting);
    *r = (struct limits_reading){0};
}

int limits_read(struct limits_reading *r, const PGresult *res, int64_t now_ms)
{
    limits_free(r);
    int rows = PQntuples(res);
    if (PQnfields(res) != 7)
        return -1;
    size_t n = (size_t)(rows > 0 ? rows : 1);
    r->names = calloc(n, sizeof(*r->names));
    r->concurrency = calloc(n, sizeof(int));
    r->rate_count = calloc(n, sizeof(int));
    r->rate_period_ms = calloc(n, sizeof(int64_t));
    r->running = calloc(n, sizeof(int64_t));
    r->starts = calloc(n, sizeof(int64_t));
    r->waiting = calloc(n, sizeof(int64_t));
    if (!r->names || !r->concurrency || !r->rate_count || !r->rate_period_ms || !r->running ||
        !r->starts || !r->waiting) {
        limits_free(r);
        return -1;
    }
    for (int i = 0; i < rows; i++) {
        r->names[i] = strdup(PQgetvalue(res, i, 0));
        if (r->names[i] == NULL) {
            r->count = i;
            limits_free(r);
            return -1;
        }
        r->concurrency[i] = atoi(PQgetvalue(res, i, 1));
        r->rate_count[i] = atoi(PQgetvalue(res, i, 2));
        r->rate_period_ms[i] = strtoll(PQgetvalue(res, i, 3), NULL, 10);
        r->running[i] = strtoll(PQgetvalue(res, i, 4), NULL, 10);
        r->starts[i] = strtoll(PQgetvalue(res, i, 5), NULL, 10);
        r->waiting[i] = strtoll(PQgetvalue(res, i, 6), NULL, 10);
    }
    r->count = rows;
    r->fetched_ms = now_ms;
    return 0;
}
