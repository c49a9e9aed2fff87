/* test_text.c — the small shared helpers: shared/text.c (buffer, UTF-8,
 * hex digits, array literals), libpq messages as one line (shared/dbconn.c) and the
 * exit code protocol of shared/exitcodes.h. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/config.h"
#include "shared/config_value.h"
#include "shared/dbconn.h"
#include "shared/exitcodes.h"
#include "shared/text.h"
#include "supervisor/listener.h"
#include "suites.h"

static size_t utf8(const char *s, uint32_t *cp)
{
    return text_utf8_len((const unsigned char *)s, strlen(s) + 1, cp);
}

START_TEST(test_utf8_valid)
{
    uint32_t cp = 0;
    ck_assert_uint_eq(utf8("a", &cp), 1);
    ck_assert_uint_eq(cp, 'a');
    ck_assert_uint_eq(utf8("", &cp), 1); /* the NUL itself */
    ck_assert_uint_eq(cp, 0);
    ck_assert_uint_eq(utf8("\xc2\x80", &cp), 2);
    ck_assert_uint_eq(cp, 0x80);
    ck_assert_uint_eq(utf8("\xe2\x82\xac", &cp), 3); /* € */
    ck_assert_uint_eq(cp, 0x20ac);
    ck_assert_uint_eq(utf8("\xef\xbf\xbf", &cp), 3);
    ck_assert_uint_eq(cp, 0xffff);
    ck_assert_uint_eq(utf8("\xf0\x9f\x98\x80", &cp), 4);
    ck_assert_uint_eq(cp, 0x1f600);
    ck_assert_uint_eq(utf8("\xf4\x8f\xbf\xbf", &cp), 4);
    ck_assert_uint_eq(cp, 0x10ffff);
    ck_assert_uint_eq(utf8("\xe2\x82\xac", NULL), 3); /* cp is optional */
}
END_TEST

START_TEST(test_utf8_invalid)
{
    uint32_t cp = 7;
    const char *bad[] = {
        "\x80",             /* stray continuation */
        "\xbf",             /* stray continuation */
        "\xc0\xaf",         /* overlong '/' */
        "\xc1\xbf",         /* overlong */
        "\xe0\x80\xaf",     /* overlong, 3 bytes */
        "\xf0\x80\x80\xaf", /* overlong, 4 bytes */
        "\xed\xa0\x80",     /* surrogate U+D800 */
        "\xed\xbf\xbf",     /* surrogate U+DFFF */
        "\xf4\x90\x80\x80", /* U+110000 */
        "\xf5\x80\x80\x80", /* past the range */
        "\xf8\x88\x80\x80", /* 5-byte form */
        "\xff",
        "\xc2",         /* truncated at the NUL */
        "\xe2\x82",     /* truncated at the NUL */
        "\xf0\x9f\x98", /* truncated at the NUL */
        "\xc2x",        /* not a continuation */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(utf8(bad[i], &cp) == 0, "accepted case %zu", i);
        ck_assert_uint_eq(cp, 7); /* untouched */
    }
    /* Bounded by n, whatever follows in memory. */
    ck_assert_uint_eq(text_utf8_len((const unsigned char *)"\xe2\x82\xac", 2, NULL), 0);
    ck_assert_uint_eq(text_utf8_len((const unsigned char *)"a", 0, NULL), 0);
    /* A NUL-terminated string may pass SIZE_MAX: the NUL ends any sequence. */
    ck_assert_uint_eq(text_utf8_len((const unsigned char *)"\xe2\x82", SIZE_MAX, NULL), 0);
}
END_TEST

START_TEST(test_hex_digit)
{
    const char *digits = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        ck_assert_int_eq(text_hex_digit(digits[i]), i);
        ck_assert_int_eq(text_hex_digit((char)toupper((unsigned char)digits[i])), i);
    }
    const char *not_digits = "gG/:@`xX \n";
    for (const char *p = not_digits; *p != '\0'; p++)
        ck_assert_int_eq(text_hex_digit(*p), -1);
    ck_assert_int_eq(text_hex_digit('\0'), -1);
    ck_assert_int_eq(text_hex_digit((char)0xc3), -1);
}
END_TEST

START_TEST(test_buffer_grows)
{
    struct text_buffer b = {0};
    for (int i = 0; i < 1000; i++)
        text_appendf(&b, "%d,", i);
    text_append(&b, "end", 3);
    ck_assert_int_eq(b.failed, 0);
    ck_assert_uint_eq(b.len, strlen(b.data));
    ck_assert(strncmp(b.data, "0,1,2,", 6) == 0);
    ck_assert_str_eq(b.data + b.len - 8, "998,999,end" + 3);
    ck_assert_int_eq(text_reserve(&b, 100000), 0);
    ck_assert_uint_gt(b.cap - b.len, 100000);
    char *s = text_take(&b);
    ck_assert_ptr_null(b.data);
    ck_assert_uint_eq(b.len, 0);
    ck_assert(strncmp(s, "0,1,", 4) == 0);
    free(s);

    /* Nothing appended: an empty string, not NULL. */
    struct text_buffer empty = {0};
    char *e = text_take(&empty);
    ck_assert_ptr_nonnull(e);
    ck_assert_str_eq(e, "");
    free(e);
}
END_TEST

START_TEST(test_buffer_failure_is_sticky)
{
    struct text_buffer b = {0};
    text_append(&b, "abc", 3);
    /* More than can ever be allocated: refused, buffer intact. */
    ck_assert_int_eq(text_reserve(&b, SIZE_MAX - 8), -1);
    ck_assert_int_eq(b.failed, 0);
    ck_assert_str_eq(b.data, "abc");
    text_append(&b, "x", SIZE_MAX - 8);
    ck_assert_int_eq(b.failed, 1);
    text_append(&b, "def", 3); /* ignored once failed */
    ck_assert_uint_eq(b.len, 3);
    ck_assert_ptr_null(text_take(&b)); /* and freed */
    ck_assert_ptr_null(b.data);
}
END_TEST

START_TEST(test_array_text)
{
    struct text_buffer b = {0};
    const char *items[] = {"a", "b\"c", "d\\e", "", "{x,y}", "NULL", "é \xff"};
    for (size_t i = 0; i < sizeof(items) / sizeof(items[0]); i++)
        text_array_add_text(&b, items[i]);
    char *s = text_array_end(&b);
    ck_assert_str_eq(s, "{\"a\",\"b\\\"c\",\"d\\\\e\",\"\",\"{x,y}\",\"NULL\",\"é \xff\"}");
    free(s);

    struct text_buffer none = {0};
    s = text_array_end(&none);
    ck_assert_str_eq(s, "{}");
    free(s);
}
END_TEST

START_TEST(test_array_int64)
{
    struct text_buffer b = {0};
    int64_t ids[] = {1, -2, INT64_MAX, INT64_MIN, 0};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
        text_array_add_int64(&b, ids[i]);
    char *s = text_array_end(&b);
    ck_assert_str_eq(s, "{1,-2,9223372036854775807,-9223372036854775808,0}");
    free(s);
}
END_TEST

START_TEST(test_exit_codes_are_one_protocol)
{
    /* The supervisor never restarts a worker that exits with the
     * configuration code; a supervisor exiting with it means the same. */
    ck_assert_int_eq(WORKER_EXIT_FATAL, EXIT_CONFIG);
    ck_assert_int_eq(WORKER_EXIT_OK, EXIT_OK);
    ck_assert_int_eq(WORKER_EXIT_ERROR, EXIT_FAILURE_GENERIC);
    /* The numbers --help prints and scripts test for. */
    ck_assert_int_eq(EXIT_OK, 0);
    ck_assert_int_eq(EXIT_FAILURE_GENERIC, 1);
    ck_assert_int_eq(EXIT_USAGE, 2);
    ck_assert_int_eq(EXIT_CONFIG, 3);
    ck_assert_int_eq(EXIT_BAD_INPUT, 4);
}
END_TEST

static void expect_one_line(const char *in, const char *want)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", in);
    ck_assert_str_eq(dbconn_one_line(buf), want);
}

START_TEST(test_libpq_message_one_line)
{
    expect_one_line("ERROR:  division by zero\n", "ERROR:  division by zero");
    expect_one_line("ERROR:  x\nDETAIL:  y\nCONTEXT:  z\n", "ERROR:  x DETAIL:  y CONTEXT:  z");
    expect_one_line("connection to server failed: refused\n\tIs the server running?\n",
                    "connection to server failed: refused Is the server running?");
    expect_one_line("  \n lead and trail \r\n ", "lead and trail");
    expect_one_line("a\t b", "a\t b"); /* spacing within a line stays */
    expect_one_line("", "");
    expect_one_line("\n\n", "");

    /* No result: the connection's message. */
    PGconn *conn = PQconnectdb("host=/nonexistent-pgwork-dir port=1 connect_timeout=1");
    char buf[512];
    const char *line = dbconn_primary_line(NULL, conn, buf, sizeof buf);
    ck_assert_ptr_eq(line, buf);
    ck_assert_msg(strlen(line) > 0 && strchr(line, '\n') == NULL, "line: %s", line);
    ck_assert_msg(strstr(line, "nonexistent-pgwork-dir") != NULL, "line: %s", line);
    PQfinish(conn);
}
END_TEST

START_TEST(test_queue_name_rule)
{
    char longest[1026];
    memset(longest, 'q', 1024);
    longest[1024] = '\0';
    const char *accepted[] = {
        "q",
        "default",
        "a b",
        "q\"1",
        "back\\slash",
        "*",
        "0 q",
        "@1 q",
        "'; DROP TABLE pgwork.tasks; --",
        "{\"a\",\"b\"}",
        "caf\xc3\xa9",
        "\xf0\x9f\x98\x80",
        "\xe2\x80\xae", /* U+202E is text (the CLI's table escapes it on screen) */
        longest,
    };
    for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++)
        ck_assert_msg(config_queue_name_problem(accepted[i]) == NULL, "refused case %zu: %s", i,
                      config_queue_name_problem(accepted[i]));
    longest[1024] = 'q';
    longest[1025] = '\0';
    const struct {
        const char *name, *why;
    } refused[] = {
        {"", "is empty"},
        {longest, "is longer than 1024 bytes"},
        {"bad\xff", "is not valid UTF-8"},
        {"\xc0\xaf", "is not valid UTF-8"},
        {"\xed\xa0\x80", "is not valid UTF-8"},
        {"a\tb", "contains control characters"},
        {"a\nb", "contains control characters"},
        {"del\x7f", "contains control characters"},
        {"\xc2\x85", "contains control characters"}, /* U+0085, C1 */
        {"\xc2\x9f", "contains control characters"},
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        const char *why = config_queue_name_problem(refused[i].name);
        ck_assert_msg(why != NULL, "accepted case %zu", i);
        ck_assert_str_eq(why, refused[i].why);
    }
}
END_TEST

/* The listener wakes only a configured queue, by its exact name: a hostile
 * payload names another queue (ignored) or is malformed (ignored). */
START_TEST(test_listener_names_only_configured_queues)
{
    char path[] = "/tmp/pgwork-text-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    const char *text = "queue \"q\\\"1\" { command = {\"x\"} }\n"
                       "queue \"caf\xc3\xa9 2\" { command = {\"x\"} }\n";
    ck_assert_int_eq(write(fd, text, strlen(text)), (int)strlen(text));
    close(fd);
    struct pgwork_config *config = NULL;
    char err[512] = "";
    int rc = config_load(path, &config, err, sizeof err);
    unlink(path);
    ck_assert_msg(rc == 0, "config_load: %s", err);

    int q = -1;
    int64_t delay = -1;
    ck_assert_int_eq(listener_parse_notification(config, "0 q\"1", &q, &delay),
                     LISTENER_NOTIFY_QUEUE);
    ck_assert_int_eq(q, 0);
    ck_assert_int_eq(listener_parse_notification(config, "5 caf\xc3\xa9 2", &q, &delay),
                     LISTENER_NOTIFY_QUEUE);
    ck_assert_int_eq(q, 1);
    ck_assert_int_eq(delay, 5);
    const char *others[] = {"0 q",       "0 q\"1 ", "0 Q\"1", "0 q\"1\n", "0 caf\xc3\xa9",
                            "0 bad\xff", "0 a\tb",  "0 ",     "0 *"};
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
        ck_assert_msg(listener_parse_notification(config, others[i], &q, &delay) ==
                          LISTENER_NOTIFY_OTHER_QUEUE,
                      "case %zu", i);
    const char *malformed[] = {"q\"1", " 0 q\"1", "-1 q\"1", "0q\"1", "x q\"1", ""};
    for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++)
        ck_assert_msg(listener_parse_notification(config, malformed[i], &q, &delay) ==
                          LISTENER_NOTIFY_MALFORMED,
                      "case %zu", i);
    config_free(config);
}
END_TEST

Suite *text_suite(void)
{
    Suite *s = suite_create("text");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_utf8_valid);
    tcase_add_test(tc, test_utf8_invalid);
    tcase_add_test(tc, test_hex_digit);
    tcase_add_test(tc, test_buffer_grows);
    tcase_add_test(tc, test_buffer_failure_is_sticky);
    tcase_add_test(tc, test_array_text);
    tcase_add_test(tc, test_array_int64);
    tcase_add_test(tc, test_exit_codes_are_one_protocol);
    tcase_add_test(tc, test_libpq_message_one_line);
    tcase_add_test(tc, test_queue_name_rule);
    tcase_add_test(tc, test_listener_names_only_configured_queues);
    suite_add_tcase(s, tc);
    return s;
}
