/*
 * ticks.h — the supervisor's schedules: when each one's next tick is, and
 * the statement that claims a tick and makes its task in the database
 * (migration 0010 says why a compare-and-set on one row per schedule).
 *
 * Driven by upkeep.c's job table on the listener's connection: ticks_due()
 * tells when the next claim is due on CLOCK_MONOTONIC (the tick's time on
 * the database's clock, through the offset the listener measures), so the
 * supervisor's one timerfd fires at the tick — no polling; ticks_send()
 * and ticks_on_result() are the job's statement and its answer. Never
 * blocks; one statement in flight at a time (the connection's).
 *
 * Exactly one task per tick across pods is the database's doing, not
 * this module's: any number of pods may send the same claim.
 */
#ifndef PGWORK_TICKS_H
#define PGWORK_TICKS_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "../shared/config.h"

/* One schedule's state in this pod; survives a reload by name. */
struct tick_state {
    char *name;                           /* owned */
    const struct schedule_config *config; /* in the running config */
    int64_t settled_ms;   /* newest tick (epoch ms, database clock) known made or claimed;
                             0 = none yet: claim the newest due tick first */
    int64_t last_tick_ms; /* newest tick made, as the database said; 0 = unknown */
    int64_t retry_ms;     /* not before this (CLOCK_MONOTONIC ms): backoff or early; 0 = none */
    int failures;         /* claims failed in a row */
    uint64_t made;        /* ticks this pod made a task for */
    uint64_t missed;      /* ticks nobody made (no pod ran), found when this pod made a later one */
};

/* The fields are this module's own: callers use the functions below. */
struct ticks {
    struct tick_state *items; /* one per configured schedule, config order */
    int count;
    const char *pod;   /* this pod's tag (hostname:incarnation), for made_by */
    int in_flight;     /* the schedule whose claim is in flight, index + 1; 0 = none */
    int64_t sent_tick; /* the tick it claims (epoch ms) */
};

/* Set up for config's schedules; pod: the supervisor's tag (kept). */
void ticks_init(struct ticks *t, const struct pgwork_config *config, const char *pod);

/* A reloaded config: schedules kept by name keep their state (a changed
 * cron applies from the next tick); new ones start as at boot. */
void ticks_set_config(struct ticks *t, const struct pgwork_config *config);

/* When a claim is next due (CLOCK_MONOTONIC ms; <= now: now; INT64_MAX:
 * nothing, or the database's clock is not measured yet). db_offset: the
 * database's clock minus CLOCK_MONOTONIC, if known. */
int64_t ticks_due(const struct ticks *t, int64_t now, bool clock_known, int64_t db_offset);

/* Send the claim due first on conn (PQsendQueryParams): 1 sent, 0 libpq
 * refused, TICKS_NOTHING_SENT when nothing was due after all or the
 * schedule due has no tick left to claim (it stops) — upkeep's contract,
 * where 0 drops the connection as broken. */
#define TICKS_NOTHING_SENT (-1)
int ticks_send(struct ticks *t, PGconn *conn, int64_t now, int64_t db_offset);

/* Its result (ok: it succeeded); *db_ms gets the database's clock at the
 * statement (0 if none), for the listener's clock sample. */
void ticks_on_result(struct ticks *t, const PGresult *res, bool ok, int64_t now, int64_t *db_ms);

/* The statement is over (answered or the connection went). */
void ticks_on_end(struct ticks *t);

/* The schedules, config order, for status lines and /metrics. */
int ticks_count(const struct ticks *t);
const struct tick_state *ticks_at(const struct ticks *t, int i);

/* The tick after the last one known (epoch ms), or 0 if none is known. */
int64_t ticks_next_tick(const struct tick_state *s);

/* Free what it holds (supervisor at exit). */
void ticks_free(struct ticks *t);

#endif
