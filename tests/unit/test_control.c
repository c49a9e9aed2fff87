/* test_control.c — the control messages of the task channel
 * (supervisor/control.c, migration 0011): what pgwork.pause, resume and
 * cancel send parses, and nothing else does. */
#include <string.h>

#include "supervisor/control.h"
#include "suites.h"

START_TEST(test_control_pause_resume)
{
    struct control_message m;
    ck_assert_int_eq(control_parse("pause emails", &m), CONTROL_PAUSE);
    ck_assert_str_eq(m.queue, "emails");
    /* A queue name is everything after the word, spaces included. */
    ck_assert_int_eq(control_parse("resume a b  c", &m), CONTROL_RESUME);
    ck_assert_str_eq(m.queue, "a b  c");
    ck_assert_int_eq(control_parse("paused", &m), CONTROL_REREAD);
}
END_TEST

START_TEST(test_control_cancel)
{
    struct control_message m;
    ck_assert_int_eq(control_parse("cancel 42 web-1:00ff/3/1234", &m), CONTROL_CANCEL);
    ck_assert_int_eq(m.task_id, 42);
    ck_assert_str_eq(m.locked_by, "web-1:00ff/3/1234");
    ck_assert_int_eq(control_parse("cancel 9223372036854775807 x", &m), CONTROL_CANCEL);
}
END_TEST

START_TEST(test_control_malformed)
{
    static const char *const bad[] = {
        "",
        "pause",
        "pause ",
        "resume",
        "pausex q",
        "PAUSE q",
        "cancel",
        "cancel 42",
        "cancel 42 ",
        "cancel x y",
        "cancel 0 x",
        "cancel -1 x",
        "cancel 4x y",
        "cancel 99999999999999999999 x",
        "cancel  42 x",
        "paused ",
        "0 q",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct control_message m;
        ck_assert_msg(control_parse(bad[i], &m) == CONTROL_MALFORMED, "\"%s\" parsed", bad[i]);
    }
}
END_TEST

Suite *control_suite(void)
{
    Suite *s = suite_create("control");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, test_control_pause_resume);
    tcase_add_test(tc, test_control_cancel);
    tcase_add_test(tc, test_control_malformed);
    suite_add_tcase(s, tc);
    return s;
}
