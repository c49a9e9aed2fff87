/* test_batch_size.c — the claim sizes of batch = "auto" (worker/batch_size.c). */
#include "worker/batch_size.h"
#include "suites.h"

/* Claims that come back full, each batch's tasks taking task_us each:
 * the size the claims settle at. */
static int settle(struct batch_size *b, int64_t task_us)
{
    for (int i = 0; i < 40; i++) {
        int asked = batch_size_limit(b);
        batch_size_claimed(b, asked, asked, true);
        batch_size_ran(b, asked, task_us * asked);
    }
    return batch_size_limit(b);
}

START_TEST(test_one_until_timed)
{
    struct batch_size b = {0};
    ck_assert_int_eq(batch_size_limit(&b), 1);
    batch_size_claimed(&b, 1, 1, true); /* full, but nothing timed yet */
    ck_assert_int_eq(batch_size_limit(&b), 1);
    batch_size_ran(&b, 1, 50);
    ck_assert_int_gt(batch_size_limit(&b), 1);
}
END_TEST

START_TEST(test_grows_while_full_up_to_the_most)
{
    struct batch_size b = {0};
    batch_size_ran(&b, 1, 5);
    int last = batch_size_limit(&b);
    for (int i = 0; i < 6; i++) {
        batch_size_claimed(&b, last, last, true);
        int next = batch_size_limit(&b);
        ck_assert_int_eq(next, last * 2);
        last = next;
    }
    ck_assert_int_eq(settle(&b, 5), BATCH_SIZE_MAX);
}
END_TEST

START_TEST(test_a_batch_takes_about_the_target)
{
    struct batch_size b = {0};
    /* 1 ms tasks: 20 fit in 20 ms; the nearest step (23), within a
     * factor of 1.2 of that. */
    int n = settle(&b, 1000);
    ck_assert_int_ge(n, BATCH_SIZE_TARGET_US / 1000 * 5 / 6);
    ck_assert_int_le(n, BATCH_SIZE_TARGET_US / 1000 * 6 / 5);
    /* Slow tasks (100 ms): one a claim, however full the claims come back. */
    ck_assert_int_eq(settle(&b, 100000), 1);
    /* Fast again: it grows back. */
    ck_assert_int_gt(settle(&b, 100), 100);
}
END_TEST

START_TEST(test_shallow_queue_shrinks)
{
    struct batch_size b = {0};
    ck_assert_int_eq(settle(&b, 10), BATCH_SIZE_MAX);
    /* A claim that took all there was: what it got, at the step above
     * (45). */
    batch_size_claimed(&b, BATCH_SIZE_MAX, 37, false);
    ck_assert_int_eq(batch_size_limit(&b), 45);
    /* The same again: no growth. */
    batch_size_claimed(&b, 45, 37, false);
    ck_assert_int_eq(batch_size_limit(&b), 45);
    /* A lone task, or none: one. */
    batch_size_claimed(&b, 45, 1, false);
    ck_assert_int_eq(batch_size_limit(&b), 1);
    batch_size_claimed(&b, 1, 0, false);
    ck_assert_int_eq(batch_size_limit(&b), 1);
}
END_TEST

/* Whatever the tasks' time and what claims got, a claim asks for one of a
 * few sizes (each is a claim text of its own, prepared once). */
START_TEST(test_few_sizes)
{
    bool seen[BATCH_SIZE_MAX + 1] = {false};
    int sizes = 0;
    struct batch_size b = {0};
    for (int64_t task_us = 1; task_us <= 40000; task_us += task_us / 7 + 1)
        for (int got = 0; got <= BATCH_SIZE_MAX; got += got / 5 + 1) {
            batch_size_ran(&b, 1, task_us);
            batch_size_claimed(&b, batch_size_limit(&b), got, got % 3 == 0);
            int n = batch_size_limit(&b);
            ck_assert_int_ge(n, 1);
            ck_assert_int_le(n, BATCH_SIZE_MAX);
            if (!seen[n])
                sizes++;
            seen[n] = true;
        }
    ck_assert_int_le(sizes, 20);
}
END_TEST

/* The median of the recent task times: none until half the ring is
 * timed; one task the scheduler set aside (10 ms among 10 µs) moves it
 * not at all, where the average jumps; it follows a lasting change within
 * the ring; a batch timed together counts its time per task. */
START_TEST(test_median_ignores_an_outlier)
{
    struct batch_size b = {0};
    for (int i = 0; i < BATCH_SIZE_RECENT / 2 - 1; i++)
        batch_size_ran(&b, 1, 10);
    ck_assert_int_eq(batch_size_median_us(&b), -1);
    batch_size_ran(&b, 1, 10);
    ck_assert_int_eq(batch_size_median_us(&b), 10);
    batch_size_ran(&b, 1, 10000);
    ck_assert_int_eq(batch_size_median_us(&b), 10);
    ck_assert(b.task_us > 1000);
    for (int i = 0; i < BATCH_SIZE_RECENT; i++)
        batch_size_ran(&b, 4, 2000);
    ck_assert_int_eq(batch_size_median_us(&b), 500);
}
END_TEST

Suite *batch_size_suite(void)
{
    Suite *s = suite_create("batch_size");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_one_until_timed);
    tcase_add_test(tc, test_grows_while_full_up_to_the_most);
    tcase_add_test(tc, test_a_batch_takes_about_the_target);
    tcase_add_test(tc, test_shallow_queue_shrinks);
    tcase_add_test(tc, test_few_sizes);
    tcase_add_test(tc, test_median_ignores_an_outlier);
    suite_add_tcase(s, tc);
    return s;
}
