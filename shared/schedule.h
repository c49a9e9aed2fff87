/*
 * schedule.h — when a periodic task is due: cron expressions and fixed
 * intervals, and the next (or last) tick of one.
 *
 * Pure computation: no config, no database, no clock read (the caller says
 * what time it is). Parse errors are short reasons naming the field
 * ("cron minute 61 out of range 0-59"); the config layer adds file:line.
 *
 * Cron, as Vixie cron / cronie read it (crontab(5), cronie src/entry.c):
 *  - 5 fields: minute 0-59, hour 0-23, day-of-month 1-31, month 1-12 or
 *    jan-dec, day-of-week 0-7 or sun-sat (0 and 7 are Sunday); names are
 *    3 letters, any case. Each field is a list of `*`, `N`, `A-B`, each but
 *    `N` with an optional `/STEP`. `@hourly`, `@daily` (`@midnight`),
 *    `@weekly`, `@monthly`, `@yearly` (`@annually`) stand for
 *    `0 * * * *`, `0 0 * * *`, `0 0 * * 0`, `0 0 1 * *`, `0 0 1 1 *`.
 *  - Day rule: a field "is a star" when its text begins with `*`, stepped
 *    or not (`*` and `*`/2 both are). When day-of-month or day-of-week is a star, a
 *    day must match both; when neither is, either one suffices
 *    (`0 0 1,15 * mon`: the 1st, the 15th and every Monday).
 *  - An expression no date can satisfy (`0 0 30 2 *`, `0 0 31 4,6 *`) is a
 *    parse error ("never fires"), not a schedule that silently never runs.
 *
 * Time zones and DST, as cronie's main loop does it (src/cron.c): a job is
 * "wildcard" when its minute or hour field is a star, else "fixed-time".
 *  - A local time skipped by a spring-forward gap: a fixed-time job due in
 *    the gap fires once, at the end of the gap (02:30 in Europe/Berlin on
 *    2026-03-29 fires at 03:00 CEST); a wildcard job does not fire for the
 *    skipped minutes (every-15-minutes goes 01:45 CET -> 03:00 CEST; hourly
 *    fires at 03:00 once, not twice).
 *  - A local time repeated by a fall-back overlap: a fixed-time job fires
 *    once, at the first occurrence (02:30 CEST, not again at 02:30 CET); a
 *    wildcard job fires at each real occurrence (hourly at 02:00 CEST and
 *    at 02:00 CET: an hour of real time passed between them).
 *  - Ticks are instants: two local times that land on the same instant
 *    (a fixed-time 02:00 pushed to 03:00 by the gap, and 03:00 itself) are
 *    one tick. cronie would start such a job twice in that minute; a
 *    schedule makes one task per tick.
 *
 * Every: a fixed interval aligned to the Unix epoch (ticks are the
 * multiples of the interval), so every pod computes the same ticks.
 */
#ifndef PGWORK_SCHEDULE_H
#define PGWORK_SCHEDULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/zone.h"

/* Longest cron expression accepted. */
#define SCHEDULE_CRON_MAX 255
/* every = 1s .. 366d. */
#define SCHEDULE_EVERY_MIN_MS 1000LL
#define SCHEDULE_EVERY_MAX_MS (366LL * 86400 * 1000)
/* Times given to schedule_next/prev: 1970 .. about year 6300. */
#define SCHEDULE_TIME_MAX_MS ((1LL << 37) * 1000)

enum schedule_kind {
    SCHEDULE_CRON,  /* a cron expression (struct schedule_cron) */
    SCHEDULE_EVERY, /* a fixed interval (every_ms) */
};

/* A parsed cron expression: bit n set = value n matches. */
struct schedule_cron {
    uint64_t minutes;  /* bits 0..59 */
    uint32_t hours;    /* bits 0..23 */
    uint32_t days;     /* bits 1..31 (day of month) */
    uint16_t months;   /* bits 1..12 */
    uint8_t weekdays;  /* bits 0..6, 0 = Sunday */
    bool day_star;     /* day-of-month field begins with '*' */
    bool weekday_star; /* day-of-week field begins with '*' */
    bool wildcard;     /* minute or hour field begins with '*' (DST rule) */
};

struct schedule {
    enum schedule_kind kind;
    struct schedule_cron cron;    /* SCHEDULE_CRON */
    int64_t every_ms;             /* SCHEDULE_EVERY */
    char zone[ZONE_NAME_MAX + 1]; /* "" = UTC; cron only */
};

/* Parse a cron expression into *out (kind CRON, zone UTC): 0, or -1 and
 * why. */
int schedule_parse_cron(const char *expr, struct schedule *out, char *why, size_t len);

/* A fixed interval of every_ms (SCHEDULE_EVERY_MIN_MS..MAX_MS): 0, or -1
 * and why. */
int schedule_parse_every(int64_t every_ms, struct schedule *out, char *why, size_t len);

/* The zone local times are read in: "" or "UTC", or an Area/City of the
 * system tz database. 0, or -1 and why. */
int schedule_set_zone(struct schedule *s, const char *zone, char *why, size_t len);

/* The first tick strictly after after_ms (epoch ms, 0..SCHEDULE_TIME_MAX_MS):
 * 0 and *next_ms, or -1 when after_ms is out of range or none comes within
 * 400 years (a parsed expression always has one). */
int schedule_next(const struct schedule *s, int64_t after_ms, int64_t *next_ms);

/* The last tick at or before at_ms: 0 and *prev_ms, or -1 (none since
 * 1970, or within 400 years). For "a tick missed while no pod ran is made
 * once, late". */
int schedule_prev(const struct schedule *s, int64_t at_ms, int64_t *prev_ms);

/* Does a local date and time match the expression's fields and day rule?
 * month 1..12, mday 1..31, wday 0..6 (Sunday = 0), hour, minute. */
bool schedule_cron_matches(const struct schedule_cron *c, int month, int mday, int wday, int hour,
                           int minute);

#endif
