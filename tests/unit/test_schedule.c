/*
 * test_schedule.c — cron expressions and fixed intervals (shared/schedule.h):
 * fields, names, steps, shortcuts, the day-of-month/day-of-week rule, error
 * messages, next and last ticks at month ends and across Europe/Berlin's
 * DST changes in 2026, and zone names. Needs Debian's tzdata.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shared/schedule.h"
#include "suites.h"

/* Epoch milliseconds of a UTC date and time. */
static int64_t utc(int y, int mo, int d, int h, int mi)
{
    struct tm tm = {
        .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
    return (int64_t)timegm(&tm) * 1000;
}

static struct schedule cron(const char *expr, const char *zone)
{
    struct schedule s;
    char why[256] = "";
    int rc = schedule_parse_cron(expr, &s, why, sizeof(why));
    ck_assert_msg(rc == 0, "%s: %s", expr, why);
    ck_assert_int_eq(schedule_set_zone(&s, zone, why, sizeof(why)), 0);
    return s;
}

static int64_t next_of(const struct schedule *s, int64_t t)
{
    int64_t next = 0;
    ck_assert_int_eq(schedule_next(s, t, &next), 0);
    ck_assert_int_gt(next, t);
    return next;
}

static int64_t prev_of(const struct schedule *s, int64_t t)
{
    int64_t prev = 0;
    ck_assert_int_eq(schedule_prev(s, t, &prev), 0);
    ck_assert_int_le(prev, t);
    return prev;
}

static uint64_t bits(const int *values, int n)
{
    uint64_t b = 0;
    for (int i = 0; i < n; i++)
        b |= 1ULL << values[i];
    return b;
}

START_TEST(test_fields_lists_ranges_steps)
{
    struct schedule s = cron("*/15 1-20/5 1,15,31 */3 1-5", "");
    ck_assert_uint_eq(s.cron.minutes, bits((int[]){0, 15, 30, 45}, 4));
    ck_assert_uint_eq(s.cron.hours, bits((int[]){1, 6, 11, 16}, 4));
    ck_assert_uint_eq(s.cron.days, bits((int[]){1, 15, 31}, 3));
    ck_assert_uint_eq(s.cron.months, bits((int[]){1, 4, 7, 10}, 4));
    ck_assert_uint_eq(s.cron.weekdays, bits((int[]){1, 2, 3, 4, 5}, 5));
    ck_assert(s.cron.wildcard);
    ck_assert(!s.cron.day_star);
    ck_assert(!s.cron.weekday_star);

    s = cron(" 0,30\t9-17  * * * ", "");
    ck_assert_uint_eq(s.cron.minutes, bits((int[]){0, 30}, 2));
    ck_assert_uint_eq(s.cron.hours, 0x3fe00u);
    ck_assert_uint_eq(s.cron.days, 0xfffffffeu);
    ck_assert_uint_eq(s.cron.months, 0x1ffeu);
    ck_assert_uint_eq(s.cron.weekdays, 0x7fu);
    ck_assert(!s.cron.wildcard); /* neither minute nor hour begins with '*' */
    ck_assert(s.cron.day_star && s.cron.weekday_star);

    s = cron("* 3 * * *", "");
    ck_assert_uint_eq(s.cron.minutes, (1ULL << 60) - 1);
    ck_assert(s.cron.wildcard);
    s = cron("0-59/20,5 0 */10 * */2", "");
    ck_assert_uint_eq(s.cron.minutes, bits((int[]){0, 5, 20, 40}, 4));
    ck_assert_uint_eq(s.cron.days, bits((int[]){1, 11, 21, 31}, 4));
    ck_assert_uint_eq(s.cron.weekdays, bits((int[]){0, 2, 4, 6}, 4));
    ck_assert(s.cron.day_star && s.cron.weekday_star); /* a stepped '*' is a star */
}
END_TEST

START_TEST(test_names_any_case_and_sunday_seven)
{
    struct schedule s = cron("0 0 * JAN-mar,Dec Mon-FRI", "");
    ck_assert_uint_eq(s.cron.months, bits((int[]){1, 2, 3, 12}, 4));
    ck_assert_uint_eq(s.cron.weekdays, bits((int[]){1, 2, 3, 4, 5}, 5));
    ck_assert_uint_eq(cron("0 0 * * 7", "").cron.weekdays, 1u);
    ck_assert_uint_eq(cron("0 0 * * sun", "").cron.weekdays, 1u);
    ck_assert_uint_eq(cron("0 0 * * 5-7", "").cron.weekdays, bits((int[]){0, 5, 6}, 3));
    ck_assert_uint_eq(cron("0 0 * * 0-7", "").cron.weekdays, 0x7fu);
    ck_assert_uint_eq(cron("0 0 * aug,SEP * ", "").cron.months, bits((int[]){8, 9}, 2));
}
END_TEST

START_TEST(test_shortcuts_equal_their_expansions)
{
    const char *pairs[][2] = {
        {"@hourly", "0 * * * *"},   {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"},
        {"@weekly", "0 0 * * 0"},   {"@monthly", "0 0 1 * *"}, {"@yearly", "0 0 1 1 *"},
        {"@annually", "0 0 1 1 *"}, {" @Daily ", "0 0 * * *"},
    };
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        struct schedule a = cron(pairs[i][0], ""), b = cron(pairs[i][1], "");
        ck_assert_uint_eq(a.cron.minutes, b.cron.minutes);
        ck_assert_uint_eq(a.cron.hours, b.cron.hours);
        ck_assert_uint_eq(a.cron.days, b.cron.days);
        ck_assert_uint_eq(a.cron.months, b.cron.months);
        ck_assert_uint_eq(a.cron.weekdays, b.cron.weekdays);
        ck_assert_int_eq(a.cron.wildcard, b.cron.wildcard);
        ck_assert_int_eq(a.cron.day_star, b.cron.day_star);
        ck_assert_int_eq(a.cron.weekday_star, b.cron.weekday_star);
    }
    /* @weekly: Sundays at midnight, 2026-12-06 is a Sunday. */
    struct schedule w = cron("@weekly", "");
    ck_assert_int_eq(next_of(&w, utc(2026, 12, 1, 12, 0)), utc(2026, 12, 6, 0, 0));
}
END_TEST

START_TEST(test_errors_name_field_and_reason)
{
    const char *cases[][2] = {
        {"61 * * * *", "cron minute 61 out of range 0-59"},
        {"* 24 * * *", "cron hour 24 out of range 0-23"},
        {"* * 0 * *", "cron day-of-month 0 out of range 1-31"},
        {"* * * 13 *", "cron month 13 out of range 1-12"},
        {"* * * * 8", "cron day-of-week 8 out of range 0-7"},
        {"* * * * * *", "cron: 6 fields, expected 5"},
        {"* * * *", "cron: 4 fields, expected 5"},
        {"", "cron: 0 fields, expected 5"},
        {"* * * * fri-mon", "cron day-of-week \"fri-mon\": range end before start"},
        {"30-10 * * * *", "cron minute \"30-10\": range end before start"},
        {"*/0 * * * *", "cron minute \"*/0\": step must be 1-60"},
        {"*/61 * * * *", "cron minute \"*/61\": step must be 1-60"},
        {"5/10 * * * *", "cron minute \"5/10\": a step needs a range or *"},
        {"1,,2 * * * *", "cron minute \"1,,2\": empty list item"},
        {"1, * * * *", "cron minute \"1,\": empty list item"},
        {"x * * * *", "cron minute \"x\": not a number"},
        {"* * * foo *", "cron month \"foo\": not a number or month name"},
        {"* * * * monday", "cron day-of-week \"monday\": not a number or day name"},
        {"* * * jan- *", "cron month \"jan-\": range needs an end"},
        {"1-2x * * * *", "cron minute \"1-2x\": unexpected \"x\""},
        {"0 0 30 2 *", "cron \"0 0 30 2 *\": never fires (no month has such a day-of-month)"},
        {"0 0 31 4,6,9,11 *",
         "cron \"0 0 31 4,6,9,11 *\": never fires (no month has such a day-of-month)"},
        {"@reboot", "cron \"@reboot\": unknown shortcut (expected @hourly, @daily, @midnight, "
                    "@weekly, @monthly, @yearly or @annually)"},
        {"@daily 5", "cron \"@daily 5\": a shortcut stands alone"},
        {"99999999999 * * * *", "cron minute 100000 out of range 0-59"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct schedule s;
        char why[256] = "";
        ck_assert_msg(schedule_parse_cron(cases[i][0], &s, why, sizeof(why)) == -1, "%s parsed",
                      cases[i][0]);
        ck_assert_str_eq(why, cases[i][1]);
    }
    char longer[400];
    memset(longer, '1', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    struct schedule s;
    char why[256];
    ck_assert_int_eq(schedule_parse_cron(longer, &s, why, sizeof(why)), -1);
    ck_assert_str_eq(why, "cron: expression longer than 255 bytes");
}
END_TEST

START_TEST(test_day_of_month_or_day_of_week)
{
    /* Both restricted: either matches. June 2026: Mondays 1, 8, 15, 22, 29. */
    struct schedule s = cron("0 0 1,15 * mon", "");
    int64_t t = utc(2026, 5, 31, 12, 0);
    const int expect_or[] = {1, 8, 15, 22, 29};
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(t = next_of(&s, t), utc(2026, 6, expect_or[i], 0, 0));
    /* A Monday that is no listed day: 2026-07-13. */
    ck_assert_int_eq(next_of(&s, utc(2026, 7, 9, 0, 0)), utc(2026, 7, 13, 0, 0));
    ck_assert(schedule_cron_matches(&s.cron, 7, 13, 1, 0, 0));
    ck_assert(schedule_cron_matches(&s.cron, 7, 15, 3, 0, 0));
    ck_assert(!schedule_cron_matches(&s.cron, 7, 14, 2, 0, 0));
    /* Day-of-week '*': only the days of the month. */
    s = cron("0 0 1,15 * *", "");
    ck_assert_int_eq(next_of(&s, utc(2026, 6, 2, 0, 0)), utc(2026, 6, 15, 0, 0));
    /* Day-of-month '*': only the weekdays. */
    s = cron("0 0 * * mon", "");
    ck_assert_int_eq(next_of(&s, utc(2026, 6, 2, 0, 0)), utc(2026, 6, 8, 0, 0));
    /* A stepped '*' counts as '*' (Vixie): odd days that are Mondays. */
    s = cron("0 0 */2 * mon", "");
    t = utc(2026, 6, 1, 12, 0);
    const int expect_and[][2] = {{6, 15}, {6, 29}, {7, 13}, {7, 27}};
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(t = next_of(&s, t), utc(2026, expect_and[i][0], expect_and[i][1], 0, 0));
    /* 31st or Monday in April: OR, so it fires though April has no 31st. */
    s = cron("0 0 31 4 mon", "");
    ck_assert_int_eq(next_of(&s, utc(2026, 4, 1, 0, 0)), utc(2026, 4, 6, 0, 0));
}
END_TEST

START_TEST(test_next_is_strictly_after)
{
    struct schedule s = cron("*/15 * * * *", "");
    ck_assert_int_eq(next_of(&s, utc(2026, 1, 1, 12, 7)), utc(2026, 1, 1, 12, 15));
    ck_assert_int_eq(next_of(&s, utc(2026, 1, 1, 12, 15)), utc(2026, 1, 1, 12, 30));
    ck_assert_int_eq(next_of(&s, utc(2026, 1, 1, 12, 15) - 1), utc(2026, 1, 1, 12, 15));
    ck_assert_int_eq(next_of(&s, utc(2026, 1, 1, 12, 15) + 1), utc(2026, 1, 1, 12, 30));
    ck_assert_int_eq(next_of(&s, utc(2026, 12, 31, 23, 50)), utc(2027, 1, 1, 0, 0));
    s = cron("1-30/5 * * * *", "");
    ck_assert_int_eq(next_of(&s, utc(2026, 1, 1, 12, 26)), utc(2026, 1, 1, 13, 1));
    /* Out of range times are refused, not guessed. */
    int64_t out;
    ck_assert_int_eq(schedule_next(&s, -1, &out), -1);
    ck_assert_int_eq(schedule_next(&s, SCHEDULE_TIME_MAX_MS + 1, &out), -1);
}
END_TEST

START_TEST(test_month_ends_and_leap_years)
{
    struct schedule s = cron("0 0 31 * *", "");
    ck_assert_int_eq(next_of(&s, utc(2026, 4, 1, 0, 0)), utc(2026, 5, 31, 0, 0));
    ck_assert_int_eq(next_of(&s, utc(2026, 5, 31, 0, 0)), utc(2026, 7, 31, 0, 0));
    s = cron("0 0 30 * *", "");
    ck_assert_int_eq(next_of(&s, utc(2026, 1, 30, 0, 0)), utc(2026, 3, 30, 0, 0));
    s = cron("0 12 29 feb *", "");
    ck_assert_int_eq(next_of(&s, utc(2026, 1, 1, 0, 0)), utc(2028, 2, 29, 12, 0));
    ck_assert_int_eq(next_of(&s, utc(2028, 2, 29, 12, 0)), utc(2032, 2, 29, 12, 0));
    /* 2100 is not a leap year: eight years from 2096 to 2104. */
    ck_assert_int_eq(next_of(&s, utc(2096, 3, 1, 0, 0)), utc(2104, 2, 29, 12, 0));
    /* Feb 29 on a Sunday: day-of-week '*' stepped to {0, 7} is a star, so
     * AND. 2032, 2060, 2088, then 2128 (no Feb 29 in 2100). */
    s = cron("0 0 29 2 */7", "");
    ck_assert_int_eq(next_of(&s, utc(2026, 3, 1, 0, 0)), utc(2032, 2, 29, 0, 0));
    ck_assert_int_eq(next_of(&s, utc(2032, 2, 29, 0, 0)), utc(2060, 2, 29, 0, 0));
    ck_assert_int_eq(next_of(&s, utc(2088, 2, 29, 0, 0)), utc(2128, 2, 29, 0, 0));
    ck_assert_int_eq(prev_of(&s, utc(2128, 2, 28, 0, 0)), utc(2088, 2, 29, 0, 0));
}
END_TEST

/* Berlin 2026: CET (+1) -> CEST (+2) at 2026-03-29 01:00 UTC (02:00 local
 * jumps to 03:00); CEST -> CET at 2026-10-25 01:00 UTC (03:00 back to 02:00). */
START_TEST(test_dst_spring_forward_berlin)
{
    /* Fixed-time 02:30 does not exist that night: it fires at the gap's end. */
    struct schedule s = cron("30 2 * * *", "Europe/Berlin");
    int64_t t = next_of(&s, utc(2026, 3, 28, 1, 31));
    ck_assert_int_eq(t, utc(2026, 3, 29, 1, 0)); /* 03:00 CEST */
    ck_assert_int_eq(next_of(&s, t), utc(2026, 3, 30, 0, 30));
    ck_assert_int_eq(prev_of(&s, utc(2026, 3, 29, 12, 0)), utc(2026, 3, 29, 1, 0));
    /* Every 15 minutes: 01:45 CET, then 03:00 CEST; never 15 minutes apart less. */
    s = cron("*/15 * * * *", "Europe/Berlin");
    ck_assert_int_eq(next_of(&s, utc(2026, 3, 29, 0, 44)), utc(2026, 3, 29, 0, 45));
    ck_assert_int_eq(next_of(&s, utc(2026, 3, 29, 0, 45)), utc(2026, 3, 29, 1, 0));
    /* Hourly: 01:00 CET, 03:00 CEST once, 04:00 CEST; 23 ticks that day. */
    s = cron("0 * * * *", "Europe/Berlin");
    ck_assert_int_eq(next_of(&s, utc(2026, 3, 29, 0, 0)), utc(2026, 3, 29, 1, 0));
    ck_assert_int_eq(next_of(&s, utc(2026, 3, 29, 1, 0)), utc(2026, 3, 29, 2, 0));
    int n = 0;
    for (t = utc(2026, 3, 28, 23, 0) - 1; (t = next_of(&s, t)) < utc(2026, 3, 29, 22, 0);)
        n++;
    ck_assert_int_eq(n, 23);
    /* Fixed hours 1-3: 02:00 is pushed to 03:00 and is the same tick. */
    s = cron("0 1-3 * * *", "Europe/Berlin");
    ck_assert_int_eq(t = next_of(&s, utc(2026, 3, 28, 23, 0)), utc(2026, 3, 29, 0, 0));
    ck_assert_int_eq(t = next_of(&s, t), utc(2026, 3, 29, 1, 0));
    ck_assert_int_eq(next_of(&s, t), utc(2026, 3, 29, 23, 0)); /* 01:00 CEST */
}
END_TEST

START_TEST(test_dst_fall_back_berlin)
{
    /* Fixed-time 02:30 happens twice that night: it fires the first time only. */
    struct schedule s = cron("30 2 * * *", "Europe/Berlin");
    int64_t t = next_of(&s, utc(2026, 10, 24, 23, 0));
    ck_assert_int_eq(t, utc(2026, 10, 25, 0, 30));              /* 02:30 CEST */
    ck_assert_int_eq(next_of(&s, t), utc(2026, 10, 26, 1, 30)); /* not 02:30 CET */
    ck_assert_int_eq(prev_of(&s, utc(2026, 10, 25, 12, 0)), utc(2026, 10, 25, 0, 30));
    /* Hourly fires at each real hour: 02:00 CEST, 02:00 CET, 03:00 CET; 25 that day. */
    s = cron("0 * * * *", "Europe/Berlin");
    ck_assert_int_eq(t = next_of(&s, utc(2026, 10, 24, 23, 30)), utc(2026, 10, 25, 0, 0));
    ck_assert_int_eq(t = next_of(&s, t), utc(2026, 10, 25, 1, 0));
    ck_assert_int_eq(next_of(&s, t), utc(2026, 10, 25, 2, 0));
    ck_assert_int_eq(prev_of(&s, utc(2026, 10, 25, 1, 59)), utc(2026, 10, 25, 1, 0));
    int n = 0;
    for (t = utc(2026, 10, 24, 22, 0) - 1; (t = next_of(&s, t)) < utc(2026, 10, 25, 23, 0);)
        n++;
    ck_assert_int_eq(n, 25);
    /* Every 15 minutes, from inside the first pass: the repeat comes next. */
    s = cron("*/15 * * * *", "Europe/Berlin");
    ck_assert_int_eq(next_of(&s, utc(2026, 10, 25, 0, 50)), utc(2026, 10, 25, 1, 0));
    ck_assert_int_eq(prev_of(&s, utc(2026, 10, 25, 1, 10)), utc(2026, 10, 25, 1, 0));
}
END_TEST

START_TEST(test_dst_wildcard_ticks_stay_evenly_spaced)
{
    /* Every 15 minutes is every 900 real seconds through both changes. */
    struct schedule s = cron("*/15 * * * *", "Europe/Berlin");
    const int64_t nights[][2] = {{utc(2026, 3, 28, 22, 0), utc(2026, 3, 29, 4, 0)},
                                 {utc(2026, 10, 24, 22, 0), utc(2026, 10, 25, 4, 0)}};
    for (int i = 0; i < 2; i++) {
        int64_t t = nights[i][0], prev = next_of(&s, t);
        while ((t = next_of(&s, prev)) < nights[i][1]) {
            ck_assert_int_eq(t - prev, 900 * 1000);
            ck_assert_int_eq(prev_of(&s, t - 1), prev);
            prev = t;
        }
    }
}
END_TEST

START_TEST(test_zone_names)
{
    struct schedule s = cron("0 3 * * *", "");
    char why[256];
    ck_assert_int_eq(schedule_set_zone(&s, "UTC", why, sizeof(why)), 0);
    ck_assert_int_eq(schedule_set_zone(&s, "America/New_York", why, sizeof(why)), 0);
    ck_assert_int_eq(next_of(&s, utc(2026, 7, 1, 0, 0)), utc(2026, 7, 1, 7, 0)); /* EDT */
    ck_assert_int_eq(schedule_set_zone(&s, "Mars/Olympus", why, sizeof(why)), -1);
    ck_assert_str_eq(why, "timezone \"Mars/Olympus\": unknown zone (not in /usr/share/zoneinfo)");
    ck_assert_int_eq(schedule_set_zone(&s, "../../etc/passwd", why, sizeof(why)), -1);
    ck_assert_str_eq(why, "timezone \"../../etc/passwd\": not a zone name (expected Area/City, "
                          "e.g. Europe/Berlin)");
    ck_assert_int_eq(schedule_set_zone(&s, "Europe", why, sizeof(why)), -1); /* a directory */
    ck_assert_int_eq(schedule_set_zone(&s, "CET-1CEST,M3.5.0", why, sizeof(why)), -1);
    ck_assert_str_eq(s.zone, "America/New_York"); /* a failed set changes nothing */
}
END_TEST

START_TEST(test_zone_leaves_tz_as_it_was)
{
    struct schedule s = cron("0 3 * * *", "Europe/Berlin");
    char *saved = getenv("TZ") ? strdup(getenv("TZ")) : NULL;
    setenv("TZ", "Asia/Tokyo", 1);
    next_of(&s, utc(2026, 7, 1, 0, 0));
    ck_assert_str_eq(getenv("TZ"), "Asia/Tokyo");
    unsetenv("TZ");
    ck_assert_int_eq(next_of(&s, utc(2026, 7, 1, 0, 0)), utc(2026, 7, 1, 1, 0)); /* CEST */
    ck_assert_ptr_null(getenv("TZ"));
    if (saved != NULL)
        setenv("TZ", saved, 1);
    free(saved);
}
END_TEST

START_TEST(test_every_aligned_to_the_epoch)
{
    struct schedule s;
    char why[256];
    ck_assert_int_eq(schedule_parse_every(30000, &s, why, sizeof(why)), 0);
    ck_assert_int_eq(next_of(&s, 0), 30000);
    ck_assert_int_eq(next_of(&s, 29999), 30000);
    ck_assert_int_eq(next_of(&s, 30000), 60000);
    ck_assert_int_eq(prev_of(&s, 59999), 30000);
    ck_assert_int_eq(prev_of(&s, 60000), 60000);
    /* 7 s: the multiples of 7000 ms, whatever the pod or its start time. */
    ck_assert_int_eq(schedule_parse_every(7000, &s, why, sizeof(why)), 0);
    int64_t t = utc(2026, 3, 29, 1, 0) + 123;
    ck_assert_int_eq(next_of(&s, t) % 7000, 0);
    ck_assert_int_le(next_of(&s, t) - t, 7000);
    ck_assert_int_eq(schedule_parse_every(500, &s, why, sizeof(why)), -1);
    ck_assert_str_eq(why, "every 500ms out of range 1s-366d");
    ck_assert_int_eq(schedule_parse_every(SCHEDULE_EVERY_MAX_MS + 1, &s, why, sizeof(why)), -1);
}
END_TEST

/* A minute matches: the rule written out again, independent of
 * schedule_cron_matches(). */
static bool scan_matches(const struct schedule_cron *c, const struct tm *tm)
{
    bool dom = (c->days & (1u << tm->tm_mday)) != 0;
    bool dow = (c->weekdays & (1u << tm->tm_wday)) != 0;
    bool day = c->day_star || c->weekday_star ? dom && dow : dom || dow;
    return day && (c->minutes & (1ULL << tm->tm_min)) && (c->hours & (1u << tm->tm_hour)) &&
           (c->months & (1u << (tm->tm_mon + 1)));
}

/* The search against a minute-by-minute scan in UTC, for a spread of
 * expressions and times. */
START_TEST(test_next_agrees_with_a_minute_scan)
{
    const char *exprs[] = {"*/7 */5 * * *",     "0 0 1,15 * mon",    "5 4 * * sun",
                           "0 0 */2 * mon-fri", "15 10-12 13 * fri", "0 0 31 * *",
                           "* * * * *",         "59 23 * dec *"};
    unsigned seed = 1;
    for (size_t e = 0; e < sizeof(exprs) / sizeof(exprs[0]); e++) {
        struct schedule s = cron(exprs[e], "");
        for (int i = 0; i < 25; i++) {
            seed = seed * 1103515245u + 12345u;
            int64_t t = utc(2026, 1, 1, 0, 0) + (int64_t)(seed % (400u * 86400u)) * 1000;
            int64_t m = (t / 60000 + 1) * 60000, bound = t + 8LL * 86400 * 1000;
            for (; m < bound; m += 60000) {
                time_t secs = (time_t)(m / 1000);
                struct tm tm;
                gmtime_r(&secs, &tm);
                bool match = scan_matches(&s.cron, &tm);
                /* ck_assert_* per minute would cost a write each: test, then fail. */
                if (schedule_cron_matches(&s.cron, tm.tm_mon + 1, tm.tm_mday, tm.tm_wday,
                                          tm.tm_hour, tm.tm_min) != match)
                    ck_abort_msg("%s: schedule_cron_matches disagrees at %lld", exprs[e],
                                 (long long)m);
                if (match)
                    break;
            }
            if (m < bound)
                ck_assert_int_eq(next_of(&s, t), m);
            else
                ck_assert_int_ge(next_of(&s, t), bound);
        }
    }
}
END_TEST

Suite *schedule_suite(void)
{
    Suite *s = suite_create("schedule");
    TCase *tc = tcase_create("schedule");
    tcase_add_test(tc, test_fields_lists_ranges_steps);
    tcase_add_test(tc, test_names_any_case_and_sunday_seven);
    tcase_add_test(tc, test_shortcuts_equal_their_expansions);
    tcase_add_test(tc, test_errors_name_field_and_reason);
    tcase_add_test(tc, test_day_of_month_or_day_of_week);
    tcase_add_test(tc, test_next_is_strictly_after);
    tcase_add_test(tc, test_month_ends_and_leap_years);
    tcase_add_test(tc, test_dst_spring_forward_berlin);
    tcase_add_test(tc, test_dst_fall_back_berlin);
    tcase_add_test(tc, test_dst_wildcard_ticks_stay_evenly_spaced);
    tcase_add_test(tc, test_zone_names);
    tcase_add_test(tc, test_zone_leaves_tz_as_it_was);
    tcase_add_test(tc, test_every_aligned_to_the_epoch);
    tcase_add_test(tc, test_next_agrees_with_a_minute_scan);
    suite_add_tcase(s, tc);
    return s;
}
