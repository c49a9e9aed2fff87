/* test_retention.c — the retention job's pace (supervisor/retention.c),
 * fed results built with libpq's own PGresult constructors. */
#include <stdint.h>
#include <stdio.h>

#include <libpq-fe.h>

#include "supervisor/retention.h"
#include "suites.h"

/* A batch's result row: deleted, done chosen, dead chosen, ms to the next
 * (NULL when next_ms < 0). */
static PGresult *batch_result(int64_t deleted, int64_t done, int64_t dead, int64_t next_ms)
{
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    ck_assert_ptr_nonnull(res);
    PGresAttDesc attrs[4] = {{.name = "deleted", .format = 0, .typid = 20, .typlen = 8},
                             {.name = "done", .format = 0, .typid = 20, .typlen = 8},
                             {.name = "dead", .format = 0, .typid = 20, .typlen = 8},
                             {.name = "next", .format = 0, .typid = 20, .typlen = 8}};
    ck_assert(PQsetResultAttrs(res, 4, attrs));
    int64_t values[4] = {deleted, done, dead, next_ms};
    for (int i = 0; i < 4; i++) {
        char text[24];
        int len = snprintf(text, sizeof(text), "%lld", (long long)values[i]);
        if (i == 3 && next_ms < 0)
            ck_assert(PQsetvalue(res, 0, i, NULL, -1));
        else
            ck_assert(PQsetvalue(res, 0, i, text, len));
    }
    return res;
}

static void feed(struct retention *r, PGresult *res, int64_t now)
{
    retention_on_result(r, res, true, now);
    PQclear(res);
}

START_TEST(test_nothing_known_nothing_due)
{
    struct retention r;
    retention_init(&r, 1000);
    ck_assert_int_eq(retention_due(&r), INT64_MAX);
    /* The poll says every queue keeps its tasks. */
    retention_on_poll(&r, false, 0, 2000);
    ck_assert_int_eq(retention_due(&r), INT64_MAX);
    /* ... or that the earliest comes of age in a day: due then, not before. */
    retention_on_poll(&r, true, 86400000, 3000);
    ck_assert_int_eq(retention_due(&r), 3000 + 86400000);
}
END_TEST

START_TEST(test_full_batch_goes_again_at_once)
{
    struct retention r;
    retention_init(&r, 0);
    retention_on_poll(&r, true, -5000, 10000); /* some already old: due now */
    ck_assert_int_eq(retention_due(&r), 10000);
    feed(&r, batch_result(RETENTION_BATCH, RETENTION_BATCH, 0, 0), 10010);
    ck_assert_int_eq(retention_due(&r), 10010);
    feed(&r, batch_result(RETENTION_BATCH + 3, 3, RETENTION_BATCH, 0), 10020);
    ck_assert_int_eq(retention_due(&r), 10020);
    ck_assert_uint_eq(r.deleted, 2 * RETENTION_BATCH + 3);
    ck_assert_uint_eq(r.batches, 2);
}
END_TEST

/* A busy queue: a round of 2000 rows a second apart waits the least; the
 * next batch follows the hint when that is later. */
START_TEST(test_busy_round_waits_the_least)
{
    struct retention r;
    retention_init(&r, 0);
    feed(&r, batch_result(RETENTION_BATCH, RETENTION_BATCH, 0, 0), 1000);
    feed(&r, batch_result(RETENTION_BATCH, RETENTION_BATCH, 0, 0), 1010);
    feed(&r, batch_result(RETENTION_BATCH, RETENTION_BATCH, 0, 0), 1020);
    feed(&r, batch_result(RETENTION_BATCH, RETENTION_BATCH - 1, 1, 2), 1030);
    ck_assert_int_eq(retention_due(&r), 1030 + RETENTION_GAP_MIN_MS);
    feed(&r, batch_result(10, 10, 0, 4000), 2030);
    /* 10 rows in 1 s: a batch's worth takes 50 s to come of age. */
    ck_assert_int_eq(retention_due(&r), 2030 + 50 * 1000);
}
END_TEST

/* A trickle waits at most RETENTION_GAP_MAX_MS; a hint later than the
 * pace wins. */
START_TEST(test_trickle_waits_at_most_the_maximum)
{
    struct retention r;
    retention_init(&r, 0);
    feed(&r, batch_result(1, 1, 0, 100), 600000);
    ck_assert_int_eq(retention_due(&r), 600000 + RETENTION_GAP_MAX_MS);
    feed(&r, batch_result(0, 0, 0, 86400000), 900000);
    ck_assert_int_eq(retention_due(&r), 900000 + 86400000);
    /* Every queue keeps its tasks now (a reload): nothing due. */
    feed(&r, batch_result(0, 0, 0, -1), 1000000);
    ck_assert_int_eq(retention_due(&r), INT64_MAX);
}
END_TEST

/* A failed statement is tried again a minute later, whatever the hint. */
START_TEST(test_failure_waits_a_minute)
{
    struct retention r;
    retention_init(&r, 0);
    retention_on_poll(&r, true, 0, 5000);
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_FATAL_ERROR);
    retention_on_result(&r, res, false, 5000);
    PQclear(res);
    ck_assert_int_eq(retention_due(&r), 5000 + RETENTION_RETRY_MS);
}
END_TEST

Suite *retention_suite(void)
{
    Suite *s = suite_create("retention");
    TCase *tc = tcase_create("pace");
    tcase_add_test(tc, test_nothing_known_nothing_due);
    tcase_add_test(tc, test_full_batch_goes_again_at_once);
    tcase_add_test(tc, test_busy_round_waits_the_least);
    tcase_add_test(tc, test_trickle_waits_at_most_the_maximum);
    tcase_add_test(tc, test_failure_waits_a_minute);
    suite_add_tcase(s, tc);
    return s;
}
