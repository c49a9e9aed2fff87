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
    /* 1 ms tasks: 20 fit in 20 ms. */
    int n = settle(&b, 1000);
    ck_assert_int_ge(n, BATCH_SIZE_TARGET_US / 1000 - 1);
    ck_assert_int_le(n, BATCH_SIZE_TARGET_US / 1000);
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
    /* A claim that took all there was: what it got. */
    batch_size_claimed(&b, BATCH_SIZE_MAX, 37, false);
    ck_assert_int_eq(batch_size_limit(&b), 37);
    /* All of it, exactly: no growth. */
    batch_size_claimed(&b, 37, 37, false);
    ck_assert_int_eq(batch_size_limit(&b), 37);
    /* A lone task, or none: one. */
    batch_size_claimed(&b, 37, 1, false);
    ck_assert_int_eq(batch_size_limit(&b), 1);
    batch_size_claimed(&b, 1, 0, false);
    ck_assert_int_eq(batch_size_limit(&b), 1);
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
    suite_add_tcase(s, tc);
    return s;
}
