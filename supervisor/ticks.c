/*
 * ticks.c — the supervisor's schedules (ticks.h): one claim statement per
 * tick and schedule, sent on the listener's connection when the tick is
 * due on the database's clock.
 *
 * Invariants:
 *  - the database decides: a tick is made only if it is due by the
 *    database's now() and newer than the schedule's last_tick (a
 *    compare-and-set in the same statement that inserts the task,
 *    migration 0010), so pods may race, come late or run fast clocks;
 *  - this pod's clock only decides when to ask: the tick's time on the
 *    database's clock minus the offset the listener measured, so the
 *    timer fires at the tick; a claim sent early is refused and sent
 *    again when the database says it is due (never busy-loops);
 *  - at start (and for a schedule new in a reload) the first claim is the
 *    newest tick due now: a tick missed while no pod ran is made once,
 *    late; after it, every tick in turn;
 *  - a failed claim is tried again with a doubling delay; the tick it was
 *    for is not lost (the next claim is the newest due tick then);
 *  - names and payloads are parameters, never spliced into SQL.
 */
#include "ticks.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../shared/log.h"

/* A failed claim is tried again after this, doubling per failure. */
#define TICKS_RETRY_MIN_MS 500
#define TICKS_RETRY_MAX_MS 30000
/* Counting the ticks nobody made stops here (a minutely cron down for a
 * year has half a million): the metric then says "at least". */
#define TICKS_MISSED_COUNT_MAX 100000

/* A tick made this long after its time is logged as late. */
#define TICKS_LATE_MS 5000

/* clang-format off */

/*
 * Claim tick $2 (epoch ms) of schedule $1 and make its task, or nothing.
 * $3 queue, $4 payload, $5 priority, $6 spec (for readers of the row),
 * $7 this pod, $8 the tick after $2 (epoch ms).
 *  - not due yet by the database's clock: nothing (column 6 says so);
 *  - the schedule's first sighting: its row, no task (previous_tick NULL);
 *  - the row's last_tick is older: the row moves on and the task is made,
 *    run_at = the tick; a concurrent claim of the same tick waits for the
 *    row lock, re-reads last_tick = $2 and makes nothing;
 *  - else (another pod made it, or a newer one): nothing.
 * Columns: 1 the database's clock (ms), 2 the task made (NULL: none), 3 the
 * tick before ($2's previous_tick, NULL: none or not claimed), 4 claimed,
 * 5 the row's last_tick before this statement, 6 $2 is in the database's
 * future.
 */
static const char claim_sql[] =
    "WITH t AS ("
    "  SELECT timestamptz 'epoch' + $2::bigint * interval '1 millisecond' AS tick,"
    "         timestamptz 'epoch' + $8::bigint * interval '1 millisecond' AS next),"
    " claim AS ("
    "  INSERT INTO pgwork.schedules AS s"
    "         (name, last_tick, previous_tick, next_tick, queue, spec, made_by, made_at)"
    "  SELECT $1, t.tick, NULL, t.next, $3, $6, $7, now() FROM t WHERE t.tick <= now()"
    "  ON CONFLICT (name) DO UPDATE"
    "    SET previous_tick = s.last_tick, last_tick = excluded.last_tick,"
    "        next_tick = excluded.next_tick, queue = excluded.queue, spec = excluded.spec,"
    "        made_by = excluded.made_by, made_at = now()"
    "    WHERE s.last_tick < excluded.last_tick"
    "  RETURNING s.previous_tick, s.last_tick),"
    " task AS ("
    "  INSERT INTO pgwork.tasks (queue, payload, priority, run_at)"
    "  SELECT $3, $4::jsonb, $5::int, c.last_tick FROM claim c WHERE c.previous_tick IS NOT NULL"
    "  RETURNING id)"
    " SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint,"
    "        (SELECT id FROM task),"
    "        (SELECT floor(extract(epoch FROM c.previous_tick) * 1000)::bigint FROM claim c),"
    "        EXISTS (SELECT FROM claim),"
    "        (SELECT floor(extract(epoch FROM s.last_tick) * 1000)::bigint"
    "         FROM pgwork.schedules s WHERE s.name = $1),"
    "        (SELECT t.tick > now() FROM t)";

/* clang-format on */

/* "2026-12-01T14:00:00.000Z" */
static const char *show_ms(int64_t ms, char *buf, size_t len)
{
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    char date[24];
    gmtime_r(&sec, &tm);
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%03dZ", date, (int)(ms % 1000));
    return buf;
}

/* "cron 0 3 * * * Europe/Berlin", "every 30s": what the row shows. */
static void spec_text(const struct schedule_config *c, char *buf, size_t len)
{
    if (c->cron != NULL)
        snprintf(buf, len, "cron %s %s", c->cron, c->timezone);
    else
        snprintf(buf, len, "every %s", c->every);
}

/* Ticks t with after < t < before: the ones nobody made. */
static uint64_t ticks_between(const struct schedule *s, int64_t after, int64_t before)
{
    if (before <= after)
        return 0;
    if (s->kind == SCHEDULE_EVERY) {
        int64_t e = s->every_ms;
        int64_t n = (before - 1) / e - after / e;
        return n > 0 ? (uint64_t)n : 0;
    }
    uint64_t n = 0;
    int64_t t = after;
    while (n < TICKS_MISSED_COUNT_MAX && schedule_next(s, t, &t) == 0 && t < before)
        n++;
    return n;
}

/* The tick this pod asks for next, after settled (0: none settled). */
static int64_t next_after(const struct tick_state *s)
{
    int64_t next;
    if (s->settled_ms == 0 || schedule_next(&s->config->when, s->settled_ms, &next) != 0)
        return 0;
    return next;
}

static int64_t state_due(const struct tick_state *s, int64_t now, int64_t db_offset)
{
    (void)now;
    if (s->retry_ms != 0)
        return s->retry_ms;
    if (s->settled_ms == 0)
        return 0; /* at start: the newest due tick, now */
    int64_t next = next_after(s);
    return next == 0 ? INT64_MAX : next - db_offset;
}

static void state_reset(struct tick_state *s, const struct schedule_config *config)
{
    s->config = config;
    s->settled_ms = 0;
    s->last_tick_ms = 0;
    s->retry_ms = 0;
    s->failures = 0;
}

void ticks_init(struct ticks *t, const struct pgwork_config *config, const char *pod)
{
    memset(t, 0, sizeof(*t));
    t->pod = pod;
    ticks_set_config(t, config);
}

void ticks_set_config(struct ticks *t, const struct pgwork_config *config)
{
    int n = config->schedule_count;
    struct tick_state *items = n > 0 ? calloc((size_t)n, sizeof(*items)) : NULL;
    if (n > 0 && items == NULL) {
        log_error("out of memory reloading schedules; keeping the old ones");
        return;
    }
    for (int i = 0; i < n; i++) {
        items[i].name = strdup(config->schedules[i].name);
        if (items[i].name == NULL) {
            for (int k = 0; k < i; k++)
                free(items[k].name);
            free(items);
            log_error("out of memory reloading schedules; keeping the old ones");
            return;
        }
    }
    /* A claim in flight keeps its schedule's place; if the schedule is
     * gone, its answer is dropped. */
    int in_flight = 0;
    for (int i = 0; i < n; i++) {
        const struct schedule_config *c = &config->schedules[i];
        int old = -1;
        for (int j = 0; j < t->count && old < 0; j++)
            if (strcmp(t->items[j].name, c->name) == 0)
                old = j;
        if (old >= 0) {
            char *name = items[i].name;
            items[i] = t->items[old];
            items[i].name = name;
            items[i].config = c;
            if (t->in_flight == old + 1)
                in_flight = i + 1;
        } else {
            state_reset(&items[i], c);
        }
    }
    for (int j = 0; j < t->count; j++)
        free(t->items[j].name);
    free(t->items);
    t->items = items;
    t->count = n;
    t->in_flight = in_flight;
}

int64_t ticks_due(const struct ticks *t, int64_t now, bool clock_known, int64_t db_offset)
{
    if (!clock_known || t->in_flight != 0)
        return INT64_MAX;
    int64_t next = INT64_MAX;
    for (int i = 0; i < t->count; i++) {
        int64_t due = state_due(&t->items[i], now, db_offset);
        if (due < next)
            next = due;
    }
    return next;
}

int ticks_send(struct ticks *t, PGconn *conn, int64_t now, int64_t db_offset)
{
    int pick = -1;
    int64_t best = INT64_MAX;
    for (int i = 0; i < t->count; i++) {
        int64_t due = state_due(&t->items[i], now, db_offset);
        if (due <= now && due < best) {
            best = due;
            pick = i;
        }
    }
    if (pick < 0)
        return TICKS_NOTHING_SENT;
    struct tick_state *s = &t->items[pick];
    const struct schedule *when = &s->config->when;

    /* The newest tick due by the database's clock as measured; if that
     * one is settled (the measurement is a little early), the next: the
     * database judges whether it is due. */
    int64_t tick = 0, next = 0;
    if (schedule_prev(when, now + db_offset, &tick) != 0 || tick <= s->settled_ms)
        tick = next_after(s);
    if (tick == 0 && schedule_next(when, now + db_offset, &tick) != 0)
        tick = 0;
    if (tick == 0 || schedule_next(when, tick, &next) != 0) {
        log_error("schedule %s: no tick to claim after %" PRId64 " ms; stopped", s->name,
                  s->settled_ms);
        s->retry_ms = INT64_MAX;
        return TICKS_NOTHING_SENT;
    }

    char tick_text[24], next_text[24], priority[16], spec[SCHEDULE_CRON_MAX + ZONE_NAME_MAX + 16];
    snprintf(tick_text, sizeof(tick_text), "%" PRId64, tick);
    snprintf(next_text, sizeof(next_text), "%" PRId64, next);
    snprintf(priority, sizeof(priority), "%d", s->config->priority);
    spec_text(s->config, spec, sizeof(spec));
    const char *params[] = {s->name,  tick_text, s->config->queue, s->config->payload,
                            priority, spec,      t->pod,           next_text};
    t->in_flight = pick + 1;
    t->sent_tick = tick;
    s->retry_ms = 0;
    return PQsendQueryParams(conn, claim_sql, 8, NULL, params, NULL, NULL, 0);
}

void ticks_on_result(struct ticks *t, const PGresult *res, bool ok, int64_t now, int64_t *db_ms)
{
    *db_ms = 0;
    if (t->in_flight <= 0 || t->in_flight > t->count)
        return;
    struct tick_state *s = &t->items[t->in_flight - 1];
    int64_t tick = t->sent_tick;
    char shown[32], shown2[32];
    if (!ok || PQntuples(res) != 1) {
        s->failures++;
        int64_t delay = TICKS_RETRY_MIN_MS;
        for (int i = 1; i < s->failures && delay < TICKS_RETRY_MAX_MS; i++)
            delay *= 2;
        if (delay > TICKS_RETRY_MAX_MS)
            delay = TICKS_RETRY_MAX_MS;
        s->retry_ms = now + delay;
        log_error("schedule %s: claiming tick %s failed (try %d; again in %" PRId64
                  " ms; is the schema migrated? run `pgwork migrate`): %s",
                  s->name, show_ms(tick, shown, sizeof(shown)), s->failures, delay,
                  PQresultErrorMessage(res));
        return;
    }
    s->failures = 0;
    int64_t db_now = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    *db_ms = db_now;
    bool claimed = strcmp(PQgetvalue(res, 0, 3), "t") == 0;
    bool early = strcmp(PQgetvalue(res, 0, 5), "t") == 0;
    int64_t row_last = PQgetisnull(res, 0, 4) ? 0 : strtoll(PQgetvalue(res, 0, 4), NULL, 10);

    if (early) {
        /* Our measurement of the database's clock ran ahead: ask again
         * when the database will say it is due (+1: `tick <= now()`). */
        int64_t wait = tick - db_now;
        s->retry_ms = now + (wait > 0 ? wait : 0) + 1;
        if (row_last > s->last_tick_ms)
            s->last_tick_ms = row_last;
        return;
    }
    if (!claimed) {
        /* Made by another pod (or a newer tick was). */
        bool first = s->settled_ms == 0;
        s->settled_ms = row_last > tick ? row_last : tick;
        if (row_last > s->last_tick_ms)
            s->last_tick_ms = row_last;
        if (first)
            log_info("schedule %s: tick %s already made; the next is at %s", s->name,
                     show_ms(s->settled_ms, shown, sizeof(shown)),
                     show_ms(next_after(s), shown2, sizeof(shown2)));
        return;
    }
    bool first = s->settled_ms == 0;
    s->settled_ms = tick;
    s->last_tick_ms = tick;
    if (PQgetisnull(res, 0, 2)) {
        log_info("schedule %s: first seen at tick %s (no task for it); the next is at %s", s->name,
                 show_ms(tick, shown, sizeof(shown)),
                 show_ms(next_after(s), shown2, sizeof(shown2)));
        return;
    }
    s->made++;
    int64_t previous = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    uint64_t missed = ticks_between(&s->config->when, previous, tick);
    s->missed += missed;
    if (missed > 0)
        log_warn("schedule %s: made tick %s late, as task %s; %" PRIu64
                 "%s tick(s) before it were never made (no pod ran the schedule since %s)",
                 s->name, show_ms(tick, shown, sizeof(shown)), PQgetvalue(res, 0, 1), missed,
                 missed >= TICKS_MISSED_COUNT_MAX ? " or more" : "",
                 show_ms(previous, shown2, sizeof(shown2)));
    else if (db_now - tick > TICKS_LATE_MS)
        log_info("schedule %s: made tick %s late, as task %s (no pod ran the schedule then)",
                 s->name, show_ms(tick, shown, sizeof(shown)), PQgetvalue(res, 0, 1));
    else
        log_msg(first ? LOG_LEVEL_INFO : LOG_LEVEL_DEBUG, "schedule %s: made tick %s as task %s",
                s->name, show_ms(tick, shown, sizeof(shown)), PQgetvalue(res, 0, 1));
}

void ticks_on_end(struct ticks *t)
{
    t->in_flight = 0;
}

int ticks_count(const struct ticks *t)
{
    return t->count;
}

const struct tick_state *ticks_at(const struct ticks *t, int i)
{
    return &t->items[i];
}

int64_t ticks_next_tick(const struct tick_state *s)
{
    return next_after(s);
}

void ticks_free(struct ticks *t)
{
    for (int i = 0; i < t->count; i++)
        free(t->items[i].name);
    free(t->items);
    memset(t, 0, sizeof(*t));
}
