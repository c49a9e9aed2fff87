/*
 * fuzz_schedule.c — libFuzzer target over cron expressions and next/last
 * tick computation (shared/schedule.h): expressions come from operators'
 * files, and a supervisor that hangs or crashes computing a tick stops
 * every schedule.
 *
 * Input: byte 0 picks the zone (UTC, Europe/Berlin, America/New_York,
 * Australia/Lord_Howe with its 30-minute DST, Asia/Kathmandu at +05:45);
 * bytes 1-5 the time t (0..2^40 ms, about 1970-2004, plus 2026 and
 * 2100 offsets so DST nights and non-leap centuries are near); the rest
 * the expression. Properties, for every expression that parses:
 *  - next(t) > t, and no tick lies between them: last(next - 1) <= t;
 *  - last(next) == next;
 *  - the tick's local time matches the expression, or the expression is
 *    fixed-time and the tick is the end of a DST gap (the offset rose at
 *    that instant);
 *  - in UTC, the tick is the first matching minute of a minute-by-minute
 *    scan over the next 3 days (or lies beyond them);
 *  - and every call returns (libFuzzer's -timeout catches a hang).
 * Parse errors must be a non-empty single line beginning "cron".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shared/schedule.h"

static const char *const zones[] = {"", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe",
                                    "Asia/Kathmandu"};

static void fail(const char *what, const char *expr, const char *zone, int64_t t, int64_t v)
{
    fprintf(stderr, "fuzz_schedule: %s\n  expr: \"%s\" zone: \"%s\" t: %lld value: %lld\n", what,
            expr, zone, (long long)t, (long long)v);
    abort();
}

/* Local time of instant t (seconds) in the process's TZ (set to the zone). */
static struct tm local_of(int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    localtime_r(&tt, &tm);
    return tm;
}

/* The oracle: the fields and Vixie's day rule, written out again here
 * rather than asking schedule_cron_matches(), so a bug there shows. */
static bool matches_at(const struct schedule_cron *c, int64_t secs)
{
    struct tm tm = local_of(secs);
    bool dom = (c->days & (1u << tm.tm_mday)) != 0;
    bool dow = (c->weekdays & (1u << tm.tm_wday)) != 0;
    bool day = c->day_star || c->weekday_star ? dom && dow : dom || dow;
    return day && (c->minutes & (1ULL << tm.tm_min)) && (c->hours & (1u << tm.tm_hour)) &&
           (c->months & (1u << (tm.tm_mon + 1)));
}

static void check_utc_scan(const struct schedule *s, const char *expr, int64_t t, int64_t next)
{
    int64_t m = (t / 60000 + 1) * 60000, bound = t + 3LL * 86400 * 1000;
    for (; m < bound; m += 60000)
        if (matches_at(&s->cron, m / 1000))
            break;
    if (m < bound ? next != m : next < bound)
        fail("next tick is not the first matching minute", expr, "", t, next);
}

static void check_ticks(const struct schedule *s, const char *expr, const char *zone, int64_t t)
{
    int64_t next, last;
    if (schedule_next(s, t, &next) != 0)
        fail("no next tick", expr, zone, t, 0);
    if (next <= t)
        fail("next tick not after t", expr, zone, t, next);
    if (schedule_prev(s, next, &last) != 0 || last != next)
        fail("last tick at next is not next", expr, zone, t, last);
    if (schedule_prev(s, next - 1, &last) == 0 && last > t)
        fail("a tick between t and next", expr, zone, t, last);
    if (s->kind != SCHEDULE_CRON)
        return;
    if (next % 1000 != 0)
        fail("cron tick not on a second", expr, zone, t, next);
    int64_t secs = next / 1000;
    if (!matches_at(&s->cron, secs)) {
        bool gap_end = local_of(secs - 1).tm_gmtoff < local_of(secs).tm_gmtoff;
        if (s->cron.wildcard || !gap_end)
            fail("tick does not match the expression", expr, zone, t, next);
    }
    if (zone[0] == '\0')
        check_utc_scan(s, expr, t, next);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 6 || size > 6 + SCHEDULE_CRON_MAX + 10)
        return 0;
    const char *zone = zones[data[0] % (sizeof(zones) / sizeof(zones[0]))];
    uint64_t raw = 0;
    for (int i = 1; i <= 5; i++)
        raw = raw << 8 | data[i];
    static const int64_t bases[] = {0, 1774738800000LL /* 2026-03-29 */,
                                    1792882800000LL /* 2026-10-25 */,
                                    4107542400000LL /* 2100-03-01 */};
    int64_t t = bases[data[0] / 5 % 4] + (int64_t)(raw % (1ULL << 40)) - (1LL << 39);
    if (t < 0)
        t = -t;
    char expr[SCHEDULE_CRON_MAX + 11];
    memcpy(expr, data + 6, size - 6);
    expr[size - 6] = '\0';

    struct schedule s;
    char why[256] = "";
    if (schedule_parse_cron(expr, &s, why, sizeof(why)) != 0) {
        if (strncmp(why, "cron", 4) != 0 || strchr(why, '\n') != NULL)
            fail("bad parse error message", expr, zone, 0, 0);
        return 0;
    }
    if (schedule_set_zone(&s, zone, why, sizeof(why)) != 0)
        fail("zone refused", expr, zone, 0, 0);
    if (zone[0] != '\0')
        setenv("TZ", zone, 1);
    else
        setenv("TZ", "UTC", 1);
    tzset(); /* for local_of(); schedule_next restores it after each call */
    check_ticks(&s, expr, zone, t);

    /* The same time through a fixed interval taken from the input. */
    if (schedule_parse_every(1000 + (int64_t)(raw % (366ULL * 86400 * 1000)), &s, why,
                             sizeof(why)) == 0)
        check_ticks(&s, "every", "", t);
    return 0;
}
