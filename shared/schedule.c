/*
 * schedule.c — the next and the last tick of a schedule (rules in
 * schedule.h).
 *
 * Cron is searched on the local calendar: the next local minute whose
 * fields match (days are stepped with integer calendar arithmetic, no
 * mktime), then that local time is mapped to the instants that show it —
 * none in a DST gap, two in an overlap — and the DST rule picks among
 * them. Every search is bounded (400 years of days, a fixed number of
 * candidates), so a hostile expression costs time, never a hang.
 */
#include "schedule.h"

#define MINUTES_PER_DAY 1440
#define SEARCH_DAYS 146097 /* 400 Gregorian years: every date pattern recurs */
#define SEARCH_CANDIDATES 4096
#define NONE INT64_MIN

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* The date of day z (days since 1970-01-01; Gregorian, any year). */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int days_in_month(int64_t y, int m)
{
    static const int days[13] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m];
}

/* The lowest set bit of mask at or above `from`, or -1. */
static int next_bit(uint64_t mask, int from)
{
    if (from > 63)
        return -1;
    mask &= ~0ULL << from;
    return mask == 0 ? -1 : __builtin_ctzll(mask);
}

static bool day_matches(const struct schedule_cron *c, int mday, int wday)
{
    bool dom = c->days >> mday & 1, dow = c->weekdays >> wday & 1;
    return (c->day_star || c->weekday_star) ? (dom && dow) : (dom || dow);
}

bool schedule_cron_matches(const struct schedule_cron *c, int month, int mday, int wday, int hour,
                           int minute)
{
    return (c->minutes >> minute & 1) && (c->hours >> hour & 1) && (c->months >> month & 1) &&
           day_matches(c, mday, wday);
}

/* First matching time at or after minute `mod` of a day, as a minute of
 * the day, or -1. */
static int time_in_day(const struct schedule_cron *c, int mod)
{
    for (int h = next_bit(c->hours, mod / 60); h >= 0; h = next_bit(c->hours, h + 1)) {
        int m = next_bit(c->minutes, h == mod / 60 ? mod % 60 : 0);
        if (m >= 0)
            return h * 60 + m;
    }
    return -1;
}

/* The first local minute (minutes since 1970-01-01 00:00 local) at or
 * after `from` whose fields match, or NONE within SEARCH_DAYS. */
static int64_t next_local(const struct schedule_cron *c, int64_t from)
{
    int64_t day = floor_div(from, MINUTES_PER_DAY);
    int mod = (int)(from - day * MINUTES_PER_DAY);
    for (int64_t last = day + SEARCH_DAYS; day <= last; mod = 0) {
        int64_t y;
        int m, d;
        civil_from_days(day, &y, &m, &d);
        if (!(c->months >> m & 1)) {
            day += days_in_month(y, m) - d + 1; /* the 1st of next month */
            continue;
        }
        int wday = (int)(((day + 4) % 7 + 7) % 7); /* 1970-01-01 was a Thursday */
        int t = day_matches(c, d, wday) ? time_in_day(c, mod) : -1;
        if (t >= 0)
            return day * MINUTES_PER_DAY + t;
        day++;
    }
    return NONE;
}

/* The instants whose local time is L (local seconds): in *first (and
 * *second in an overlap); in a gap none, and *first = the end of the gap
 * (the first instant after it). Returns how many instants show L: 0, 1, 2.
 * Assumes at most one offset change within the day around L. */
static int resolve_local(const struct zone_scope *z, int64_t L, int64_t *first, int64_t *second)
{
    long before = zone_offset(z, L - 15 * 3600), after = zone_offset(z, L + 13 * 3600);
    int64_t a = L - before, b = L - after;
    bool a_ok = zone_offset(z, a) == before, b_ok = zone_offset(z, b) == after;
    if (a == b || (a_ok && !b_ok) || (!a_ok && b_ok)) {
        *first = a_ok || a == b ? a : b;
        return 1;
    }
    if (a_ok && b_ok) {
        *first = a < b ? a : b;
        *second = a < b ? b : a;
        return 2;
    }
    /* A gap: b < a; the offset changes from `before` at b to `after` at a.
     * Find the first instant with the new offset. */
    int64_t lo = b, hi = a;
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (zone_offset(z, mid) == before)
            lo = mid;
        else
            hi = mid;
    }
    *first = hi;
    return 0;
}

/* Keep the smaller of *best and t if t is after `after`. */
static void consider(int64_t *best, int64_t t, int64_t after)
{
    if (t > after && (*best == NONE || t < *best))
        *best = t;
}

/* The first cron tick strictly after `after` (epoch seconds), in zone z. */
static int64_t cron_next(const struct schedule_cron *c, const struct zone_scope *z, int64_t after)
{
    long now_off = zone_offset(z, after);
    /* An offset about to drop (an overlap ahead) shows local times below
     * the current one again: start the search that much earlier. */
    long drop = now_off - zone_offset(z, after + 26 * 3600);
    int64_t from = floor_div(after + now_off - (drop > 0 ? drop : 0), 60);
    int64_t best = NONE;
    for (int i = 0; i < SEARCH_CANDIDATES; i++) {
        int64_t m = next_local(c, from);
        if (m == NONE)
            break;
        int64_t first, second;
        int n = resolve_local(z, m * 60, &first, &second);
        if (n >= 1 || !c->wildcard) /* gap: only fixed-time jobs, at its end */
            consider(&best, first, after);
        if (n == 2 && c->wildcard) /* overlap: wildcard jobs fire again */
            consider(&best, second, after);
        /* `first` never decreases as local time grows: nothing later can
         * come before best. */
        if (best != NONE && first >= best)
            break;
        from = m + 1;
    }
    return best;
}

/* The last cron tick at or before `at` (seconds). Ticks after s,
 * cron_next(s), never decrease as s grows: widen a window back from `at`
 * until it holds a tick, then bisect for the largest s whose next tick is
 * still <= at — that tick is the answer (about 40 cron_next calls). */
static int64_t cron_prev(const struct schedule_cron *c, const struct zone_scope *z, int64_t at)
{
    int64_t lo = at;
    for (int64_t window = 3600; lo >= 0; window *= 4) {
        lo = at - window > 0 ? at - window : -1;
        int64_t t = cron_next(c, z, lo);
        if (t != NONE && t <= at)
            break;
        if (lo < 0 || window > 401LL * 366 * 86400)
            return NONE;
    }
    int64_t hi = at; /* cron_next(c, z, at) > at by definition */
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        int64_t t = cron_next(c, z, mid);
        if (t != NONE && t <= at)
            lo = mid;
        else
            hi = mid;
    }
    return cron_next(c, z, lo);
}

/* schedule_next (next: the first tick after t_ms) and schedule_prev (the
 * last tick at or before t_ms) share their checks and the zone's scope. */
static int schedule_tick(const struct schedule *s, int64_t t_ms, bool next, int64_t *tick_ms)
{
    if (t_ms < 0 || t_ms > SCHEDULE_TIME_MAX_MS)
        return -1;
    if (s->kind == SCHEDULE_EVERY) {
        if (s->every_ms <= 0)
            return -1;
        *tick_ms = (t_ms / s->every_ms + (next ? 1 : 0)) * s->every_ms;
        return 0;
    }
    struct zone_scope z;
    if (zone_enter(&z, s->zone) != 0)
        return -1;
    int64_t t = next ? cron_next(&s->cron, &z, floor_div(t_ms, 1000))
                     : cron_prev(&s->cron, &z, floor_div(t_ms, 1000));
    zone_leave(&z);
    if (t == NONE)
        return -1;
    *tick_ms = t * 1000;
    return 0;
}

int schedule_next(const struct schedule *s, int64_t after_ms, int64_t *next_ms)
{
    return schedule_tick(s, after_ms, true, next_ms);
}

int schedule_prev(const struct schedule *s, int64_t at_ms, int64_t *prev_ms)
{
    return schedule_tick(s, at_ms, false, prev_ms);
}
