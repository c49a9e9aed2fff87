/* test_timeutil.c — monotonic clock, backoff with equal jitter, random_unit. */
#include <math.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shared/timeutil.h"
#include "suites.h"

/* Largest double below 1.0: the top of random_unit()'s range. */
#define ALMOST_ONE 0x1.fffffffffffffp-1

START_TEST(test_now_is_monotonic)
{
    int64_t a = time_now_ms();
    ck_assert_int_gt(a, 0);
    struct timespec pause = {0, 20 * 1000 * 1000};
    nanosleep(&pause, NULL);
    int64_t b = time_now_ms();
    ck_assert_int_ge(b - a, 20);
    ck_assert_int_lt(b - a, 5000);
}
END_TEST

START_TEST(test_backoff_doubles_with_equal_jitter)
{
    /* attempt n: d = 1s * 2^(n-1); result in [d/2, d]. */
    int64_t d = 1000;
    for (int attempt = 1; attempt <= 6; attempt++, d *= 2) {
        ck_assert_int_eq(backoff_delay_ms(1000, 3600000, attempt, 0.0), d / 2);
        ck_assert_int_eq(backoff_delay_ms(1000, 3600000, attempt, ALMOST_ONE), d);
        int64_t mid = backoff_delay_ms(1000, 3600000, attempt, 0.5);
        ck_assert_int_ge(mid, d / 2);
        ck_assert_int_le(mid, d);
    }
}
END_TEST

START_TEST(test_backoff_capped)
{
    /* 1s * 2^6 = 64s > 60s: capped, jitter within [30s, 60s]. */
    ck_assert_int_eq(backoff_delay_ms(1000, 60000, 7, 0.0), 30000);
    ck_assert_int_eq(backoff_delay_ms(1000, 60000, 7, ALMOST_ONE), 60000);
    /* base above max: max wins. */
    ck_assert_int_eq(backoff_delay_ms(5000, 2000, 1, ALMOST_ONE), 2000);
    ck_assert_int_eq(backoff_delay_ms(5000, 2000, 1, 0.0), 1000);
}
END_TEST

START_TEST(test_backoff_large_attempts_do_not_overflow)
{
    const int attempts[] = {62, 63, 64, 65, 100, 1000, 1 << 30, INT32_MAX};
    for (size_t i = 0; i < sizeof attempts / sizeof attempts[0]; i++) {
        int64_t r = backoff_delay_ms(1000, 3600000, attempts[i], ALMOST_ONE);
        ck_assert_int_eq(r, 3600000);
        r = backoff_delay_ms(1000, 3600000, attempts[i], 0.0);
        ck_assert_int_eq(r, 1800000);
        r = backoff_delay_ms(INT64_MAX / 3, INT64_MAX, attempts[i], ALMOST_ONE);
        ck_assert_int_le(r, INT64_MAX);
        ck_assert_int_ge(r, INT64_MAX / 2);
    }
}
END_TEST

START_TEST(test_backoff_never_zero_never_above_cap)
{
    ck_assert_int_eq(backoff_delay_ms(1, 1, 1, 0.0), 1);
    ck_assert_int_eq(backoff_delay_ms(1, 100, 1, 0.0), 1);
    for (int attempt = 1; attempt < 80; attempt++) {
        for (double r = 0.0; r < 1.0; r += 0.0625) {
            int64_t v = backoff_delay_ms(100, 30000, attempt, r);
            ck_assert_int_ge(v, 50);
            ck_assert_int_le(v, 30000);
        }
    }
}
END_TEST

START_TEST(test_backoff_monotonic_in_attempt)
{
    int64_t prev = 0;
    for (int attempt = 1; attempt < 40; attempt++) {
        int64_t v = backoff_delay_ms(250, 600000, attempt, 0.3);
        ck_assert_int_ge(v, prev);
        prev = v;
    }
}
END_TEST

START_TEST(test_backoff_odd_inputs)
{
    ck_assert_int_eq(backoff_delay_ms(0, 1000, 5, 0.5), 0);
    ck_assert_int_eq(backoff_delay_ms(-5, 1000, 5, 0.5), 0);
    ck_assert_int_eq(backoff_delay_ms(1000, 0, 5, 0.5), 0);
    /* attempt < 1 counts as the first attempt. */
    ck_assert_int_eq(backoff_delay_ms(1000, 60000, 0, 0.0), 500);
    ck_assert_int_eq(backoff_delay_ms(1000, 60000, -3, ALMOST_ONE), 1000);
    /* random_unit outside [0, 1) is clamped into it. */
    ck_assert_int_eq(backoff_delay_ms(1000, 60000, 1, -0.5), 500);
    ck_assert_int_eq(backoff_delay_ms(1000, 60000, 1, NAN), 500);
    ck_assert_int_eq(backoff_delay_ms(1000, 60000, 1, 1.0), 1000);
    ck_assert_int_eq(backoff_delay_ms(1000, 60000, 1, 1e300), 1000);
    ck_assert_int_eq(backoff_delay_ms(INT64_MAX, INT64_MAX, 9, 1.0), INT64_MAX);
}
END_TEST

START_TEST(test_random_unit_range)
{
    double min = 1.0, max = 0.0, sum = 0.0;
    const int n = 100000;
    for (int i = 0; i < n; i++) {
        double r = random_unit();
        ck_assert(r >= 0.0 && r < 1.0);
        min = r < min ? r : min;
        max = r > max ? r : max;
        sum += r;
    }
    ck_assert(min < 0.01);
    ck_assert(max > 0.99);
    ck_assert(fabs(sum / n - 0.5) < 0.01);
}
END_TEST

START_TEST(test_random_unit_differs_after_fork)
{
    /* Workers are forked from one supervisor: they must not share a sequence. */
    (void)random_unit();
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        double r = random_unit();
        _exit(write(fds[1], &r, sizeof r) == sizeof r ? 0 : 1);
    }
    double mine = random_unit(), child = -1;
    ck_assert_int_eq(read(fds[0], &child, sizeof child), sizeof child);
    int status;
    waitpid(pid, &status, 0);
    close(fds[0]);
    close(fds[1]);
    ck_assert(child >= 0.0 && child < 1.0);
    ck_assert(child != mine);
}
END_TEST

Suite *timeutil_suite(void)
{
    Suite *s = suite_create("timeutil");
    TCase *tc = tcase_create("timeutil");
    tcase_add_test(tc, test_now_is_monotonic);
    tcase_add_test(tc, test_backoff_doubles_with_equal_jitter);
    tcase_add_test(tc, test_backoff_capped);
    tcase_add_test(tc, test_backoff_large_attempts_do_not_overflow);
    tcase_add_test(tc, test_backoff_never_zero_never_above_cap);
    tcase_add_test(tc, test_backoff_monotonic_in_attempt);
    tcase_add_test(tc, test_backoff_odd_inputs);
    tcase_add_test(tc, test_random_unit_range);
    tcase_add_test(tc, test_random_unit_differs_after_fork);
    suite_add_tcase(s, tc);
    return s;
}
