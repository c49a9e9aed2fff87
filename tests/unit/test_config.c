/* test_config.c — config_load(): defaults, every key, every validation rule
 * (each error names the file, the line and the key), durations, conninfo. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/config.h"
#include "suites.h"

static char conf_path[4096];

/* Write `text` to a fresh temporary file; its path is in conf_path. */
static void write_conf(const char *text)
{
    const char *dir = getenv("TMPDIR");
    snprintf(conf_path, sizeof conf_path, "%s/pgwork-test-XXXXXX.conf",
             dir && dir[0] ? dir : "/tmp");
    int fd = mkstemps(conf_path, 5);
    ck_assert_msg(fd >= 0, "mkstemps: %s", strerror(errno));
    size_t len = strlen(text);
    ck_assert_int_eq(write(fd, text, len), (ssize_t)len);
    close(fd);
}

static struct pgwork_config *load_ok(const char *text)
{
    char err[1024] = "";
    struct pgwork_config *c = NULL;
    write_conf(text);
    int rc = config_load(conf_path, &c, err, sizeof err);
    unlink(conf_path);
    ck_assert_msg(rc == 0, "config_load failed: %s", err);
    ck_assert_ptr_nonnull(c);
    return c;
}

/* The load fails with "PATH:LINE: " followed by a message containing each
 * of the NULL-terminated needles. */
static void expect_error_v(const char *text, int line, const char *const *needles)
{
    char err[1024] = "";
    struct pgwork_config *c = (struct pgwork_config *)0x1;
    write_conf(text);
    int rc = config_load(conf_path, &c, err, sizeof err);
    unlink(conf_path);
    ck_assert_msg(rc == -1, "expected an error for:\n%s", text);
    ck_assert_msg(c == (struct pgwork_config *)0x1, "*out touched on error");

    char prefix[4200];
    snprintf(prefix, sizeof prefix, "%s:%d: ", conf_path, line);
    ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0, "want prefix \"%s\", got \"%s\"",
                  prefix, err);
    for (const char *const *n = needles; *n != NULL; n++)
        ck_assert_msg(strstr(err, *n) != NULL, "want \"%s\" in \"%s\"", *n, err);
    ck_assert_msg(strchr(err, '\n') == NULL, "error must be one line: %s", err);
}

#define expect_error(text, line, ...)                                                              \
    do {                                                                                           \
        const char *const needles_[] = {__VA_ARGS__, NULL};                                        \
        expect_error_v(text, line, needles_);                                                      \
    } while (0)

/* ---- defaults and the happy path --------------------------------------- */

static void check_defaults(const struct pgwork_config *c)
{
    ck_assert_str_eq(c->database.conninfo, "");
    ck_assert_str_eq(c->database.listen_conninfo, "");
    ck_assert(!c->database.synchronous_commit);
    ck_assert(c->listener.enabled);
    ck_assert_str_eq(c->listener.channel, "pgwork_tasks");
    ck_assert_int_eq(c->listener.reconnect_min_ms, 500);
    ck_assert_int_eq(c->listener.reconnect_max_ms, 60000);
    ck_assert_int_eq(c->listener.keepalive_interval_ms, 30000);
    ck_assert_int_eq(c->listener.keepalive_timeout_ms, 5000);
    ck_assert_int_eq(c->workers.count, 4);
    ck_assert_int_eq(c->workers.min, 1);
    ck_assert_int_eq(c->workers.max, 64);
    ck_assert_int_eq(c->workers.poll_interval_ms, 1000);
    ck_assert_int_eq(c->workers.safety_poll_interval_ms, 60000);
    ck_assert_int_eq(c->workers.restart_delay_min_ms, 100);
    ck_assert_int_eq(c->workers.restart_delay_max_ms, 30000);
    ck_assert_int_eq(c->workers.shutdown_timeout_ms, 25000);
    ck_assert_int_eq(c->workers.lease_ms, 300000);
    ck_assert_str_eq(c->http.listen, "0.0.0.0:9187");
    ck_assert_int_eq(c->log.level, LOG_LEVEL_INFO);
    ck_assert_int_eq(c->log.format, LOG_FORMAT_JSON);
}

START_TEST(test_defaults_without_file)
{
    const char *paths[] = {NULL, ""};
    for (int i = 0; i < 2; i++) {
        struct pgwork_config *c = NULL;
        char err[256] = "x";
        ck_assert_int_eq(config_load(paths[i], &c, err, sizeof err), 0);
        ck_assert_str_eq(c->path, "");
        ck_assert_int_eq(c->queue_count, 0);
        ck_assert_ptr_null(c->queues);
        check_defaults(c);
        config_free(c);
    }
}
END_TEST

START_TEST(test_empty_file_is_defaults)
{
    struct pgwork_config *c = load_ok("# nothing but a comment\n");
    ck_assert_str_eq(c->path, conf_path);
    ck_assert_int_eq(c->queue_count, 0);
    check_defaults(c);
    config_free(c);
}
END_TEST

START_TEST(test_crlf_and_bom)
{
    struct pgwork_config *c =
        load_ok("\xef\xbb\xbfworkers {\r\n  count = 2\r\n  lease = 30s\r\n}\r\n");
    ck_assert_int_eq(c->workers.count, 2);
    ck_assert_int_eq(c->workers.lease_ms, 30000);
    config_free(c);
    expect_error("\xef\xbb\xbf# x\r\nworkers {\r\n  count = 0\r\n}\r\n", 3, "workers.count");
}
END_TEST

START_TEST(test_queue_defaults)
{
    struct pgwork_config *c = load_ok("queue \"default\" { command = {\"/app/handle\"} }\n");
    ck_assert_int_eq(c->queue_count, 1);
    const struct queue_config *q = &c->queues[0];
    ck_assert_str_eq(q->name, "default");
    ck_assert_int_eq(q->handler, HANDLER_EXEC);
    ck_assert_int_eq(q->command_argc, 1);
    ck_assert_str_eq(q->command[0], "/app/handle");
    ck_assert_ptr_null(q->command[1]);
    ck_assert_ptr_null(q->statement);
    ck_assert_int_eq(q->batch, QUEUE_BATCH_AUTO); /* the default: "auto" */
    ck_assert_int_eq(q->timeout_ms, 60000);
    ck_assert_int_eq(q->max_attempts, 25);
    ck_assert_int_eq(q->backoff_base_ms, 1000);
    ck_assert_int_eq(q->backoff_max_ms, 3600000);
    ck_assert(q->keep_done);
    ck_assert_int_eq(q->workers, 0);
    config_free(c);
}
END_TEST

START_TEST(test_every_key)
{
    struct pgwork_config *c =
        load_ok("database {\n"
                "  conninfo = \"host=db dbname=app\"\n"
                "  listen_conninfo = 'host=db-direct dbname=app'\n"
                "  synchronous_commit = true\n"
                "}\n"
                "listener {\n"
                "  enabled = false\n"
                "  channel = jobs\n"
                "  reconnect_min = 250ms\n"
                "  reconnect_max = 2m\n"
                "  keepalive_interval = 20s\n"
                "  keepalive_timeout = 3s\n"
                "}\n"
                "workers {\n"
                "  count = 8 min = 2 max = 16\n"
                "  poll_interval = 2s safety_poll_interval = 90s\n"
                "  restart_delay_min = 50ms restart_delay_max = 1m\n"
                "  shutdown_timeout = 10s lease = 1h\n"
                "}\n"
                "queue \"emails\" {\n"
                "  handler = \"exec\"\n"
                "  command = {\"/bin/sh\", \"-c\", \"cat >/dev/null\"}\n"
                "  batch = 50 timeout = 0 max_attempts = 3\n"
                "  backoff_base = 2s backoff_max = 10m\n"
                "  keep_done = false workers = 2\n"
                "}\n"
                "queue \"audit\" {\n"
                "  handler = sql\n"
                "  statement = \"INSERT INTO audit(body, task) VALUES ($1, $2)\"\n"
                "}\n"
                "http { listen = \"127.0.0.1:8080\" }\n"
                "log { level = debug format = text }\n");

    ck_assert_str_eq(c->database.conninfo, "host=db dbname=app");
    ck_assert_str_eq(c->database.listen_conninfo, "host=db-direct dbname=app");
    ck_assert(c->database.synchronous_commit);
    ck_assert(!c->listener.enabled);
    ck_assert_str_eq(c->listener.channel, "jobs");
    ck_assert_int_eq(c->listener.reconnect_min_ms, 250);
    ck_assert_int_eq(c->listener.reconnect_max_ms, 120000);
    ck_assert_int_eq(c->listener.keepalive_interval_ms, 20000);
    ck_assert_int_eq(c->listener.keepalive_timeout_ms, 3000);
    ck_assert_int_eq(c->workers.count, 8);
    ck_assert_int_eq(c->workers.min, 2);
    ck_assert_int_eq(c->workers.max, 16);
    ck_assert_int_eq(c->workers.poll_interval_ms, 2000);
    ck_assert_int_eq(c->workers.safety_poll_interval_ms, 90000);
    ck_assert_int_eq(c->workers.restart_delay_min_ms, 50);
    ck_assert_int_eq(c->workers.restart_delay_max_ms, 60000);
    ck_assert_int_eq(c->workers.shutdown_timeout_ms, 10000);
    ck_assert_int_eq(c->workers.lease_ms, 3600000);

    ck_assert_int_eq(c->queue_count, 2);
    const struct queue_config *q = &c->queues[0];
    ck_assert_str_eq(q->name, "emails");
    ck_assert_int_eq(q->handler, HANDLER_EXEC);
    ck_assert_int_eq(q->command_argc, 3);
    ck_assert_str_eq(q->command[0], "/bin/sh");
    ck_assert_str_eq(q->command[1], "-c");
    ck_assert_str_eq(q->command[2], "cat >/dev/null");
    ck_assert_ptr_null(q->command[3]);
    ck_assert_int_eq(q->batch, 50);
    ck_assert_int_eq(q->timeout_ms, 0);
    ck_assert_int_eq(q->max_attempts, 3);
    ck_assert_int_eq(q->backoff_base_ms, 2000);
    ck_assert_int_eq(q->backoff_max_ms, 600000);
    ck_assert(!q->keep_done);
    ck_assert_int_eq(q->workers, 2);

    q = &c->queues[1];
    ck_assert_str_eq(q->name, "audit");
    ck_assert_int_eq(q->handler, HANDLER_SQL);
    ck_assert_ptr_null(q->command);
    ck_assert_int_eq(q->command_argc, 0);
    ck_assert_str_eq(q->statement, "INSERT INTO audit(body, task) VALUES ($1, $2)");

    ck_assert_str_eq(c->http.listen, "127.0.0.1:8080");
    ck_assert_int_eq(c->log.level, LOG_LEVEL_DEBUG);
    ck_assert_int_eq(c->log.format, LOG_FORMAT_TEXT);
    config_free(c);
}
END_TEST

/* 200 queues: every name found at its index by the hash lookup; near
 * misses (a prefix, an extra byte, another case) are not. */
START_TEST(test_find_queue)
{
    char *text = malloc(200 * 64);
    ck_assert_ptr_nonnull(text);
    text[0] = '\0';
    for (int i = 0; i < 200; i++)
        sprintf(text + strlen(text), "queue \"q%d\" { command = {\"/bin/true\"} }\n", i);
    struct pgwork_config *c = load_ok(text);
    free(text);
    ck_assert_int_eq(c->queue_count, 200);
    for (int i = 0; i < 200; i++) {
        char name[16];
        snprintf(name, sizeof(name), "q%d", i);
        ck_assert_int_eq(config_find_queue(c, name), i);
    }
    ck_assert_int_eq(config_find_queue(c, "q"), -1);
    ck_assert_int_eq(config_find_queue(c, "q1999"), -1);
    ck_assert_int_eq(config_find_queue(c, "Q1"), -1);
    ck_assert_int_eq(config_find_queue(c, ""), -1);
    config_free(c);
}
END_TEST

START_TEST(test_example_config_loads)
{
    /* The shipped example must stay valid (tests run from the repo root). */
    struct pgwork_config *c = NULL;
    char err[1024] = "";
    int rc = config_load("deploy/pgwork.example.conf", &c, err, sizeof err);
    ck_assert_msg(rc == 0, "%s", err);
    ck_assert_int_eq(c->queue_count, 2);
    ck_assert_str_eq(c->queues[0].name, "default");
    ck_assert_int_eq(c->queues[0].handler, HANDLER_EXEC);
    ck_assert_int_eq(c->queues[0].command_argc, 3);
    ck_assert_str_eq(c->queues[0].command[2], "echo \"task $PGWORK_TASK_ID: $(cat)\"");
    ck_assert_str_eq(c->queues[1].name, "audit");
    ck_assert_int_eq(c->queues[1].handler, HANDLER_SQL);
    ck_assert(strstr(c->queues[1].statement, "pgwork_demo.audit") != NULL);
    ck_assert_str_eq(c->http.listen, "");
    config_free(c);
}
END_TEST

START_TEST(test_handler_names)
{
    ck_assert_str_eq(config_handler_name(HANDLER_EXEC), "exec");
    ck_assert_str_eq(config_handler_name(HANDLER_SQL), "sql");
    ck_assert_str_eq(config_handler_name(HANDLER_COPROCESS), "coprocess");
}
END_TEST

/* ---- durations ----------------------------------------------------------- */

/* Issue 14: queue.rate is "N/PERIOD" or ""; queue.concurrency a count. */
START_TEST(test_limits)
{
    struct pgwork_config *c = load_ok("queue \"a\" { command = {\"/x\"} concurrency = 5"
                                      " rate = \"100/1m\" }\n"
                                      "queue \"b\" { command = {\"/x\"} }\n");
    ck_assert_int_eq(c->queues[0].concurrency, 5);
    ck_assert_str_eq(c->queues[0].rate, "100/1m");
    ck_assert(config_queue_limited(&c->queues[0]));
    ck_assert_int_eq(c->queues[1].concurrency, 0);
    ck_assert_str_eq(c->queues[1].rate, "");
    ck_assert(!config_queue_limited(&c->queues[1]));
    config_free(c);

    int n;
    int64_t ms;
    ck_assert_int_eq(config_rate_parse("5/1s", &n, &ms), 0);
    ck_assert_int_eq(n, 5);
    ck_assert_int_eq(ms, 1000);
    ck_assert_int_eq(config_rate_parse("100/1m", &n, &ms), 0);
    ck_assert_int_eq(ms, 60000);
    ck_assert_int_eq(config_rate_parse("", &n, &ms), 0);
    ck_assert_int_eq(n, 0);
    const char *bad[] = {"0/1s",  "5",     "5/",    "5/0s",      "x/1s",
                         "5/25h", "-1/1s", "5 /1s", "1000001/1s"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(config_rate_parse(bad[i], &n, &ms) == -1, "accepted %s", bad[i]);
    expect_error("queue \"a\" { command = {\"/x\"}\n  rate = \"5 per second\" }\n", 2,
                 "queue \"a\".rate", "N/PERIOD", "5 per second");
    expect_error("queue \"a\" { command = {\"/x\"}\n  concurrency = -1 }\n", 2,
                 "queue \"a\".concurrency");
}
END_TEST

START_TEST(test_parse_duration_accepts)
{
    static const struct {
        const char *text;
        int64_t ms;
    } cases[] = {
        {"500ms", 500},        {"15s", 15000},        {"5m", 300000},   {"1h", 3600000},
        {"30", 30000},         {"1.5", 1500},         {"0", 0},         {"0ms", 0},
        {"1.5s", 1500},        {"0.5h", 1800000},     {"0.25m", 15000}, {" 5s ", 5000},
        {"5 s", 5000},         {"0.001", 1},          {"100.0ms", 100}, {"8760h", 31536000000},
        {"007s", 7000},        {"2.000000000", 2000}, {"1d", 86400000}, {"1.5d", 129600000},
        {"365d", 31536000000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t ms = -7;
        ck_assert_msg(config_parse_duration(cases[i].text, &ms) == 0, "rejected \"%s\"",
                      cases[i].text);
        ck_assert_msg(ms == cases[i].ms, "\"%s\": got %lld, want %lld", cases[i].text,
                      (long long)ms, (long long)cases[i].ms);
    }
}
END_TEST

START_TEST(test_parse_duration_rejects)
{
    static const char *const bad[] = {
        "",
        " ",
        "-1",
        "-1s",
        "+1s",
        "abc",
        "5x",
        "5sec",
        "5S",
        "5 ms x",
        "5ms5",
        "1.",
        ".5",
        "1..5",
        "1.5ms",
        "0.0001",
        "1e3",
        "s",
        "ms",
        "1D",
        "1dd",
        "1h30m",
        "99999999999999999999",
        "9223372036854775807h",
        "2562047788015216h",
        "0.1234567891s",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ms = -7;
        ck_assert_msg(config_parse_duration(bad[i], &ms) == -1, "accepted \"%s\"", bad[i]);
        ck_assert_msg(ms == -7, "\"%s\" wrote *ms", bad[i]);
    }
    int64_t ms;
    ck_assert_int_eq(config_parse_duration(NULL, &ms), -1);
}
END_TEST

START_TEST(test_duration_units_quoted_and_unquoted)
{
    static const struct {
        const char *text;
        int64_t ms;
    } cases[] = {
        {"250ms", 250}, {"7s", 7000},  {"3m", 180000}, {"2h", 7200000},
        {"30", 30000},  {"1.5", 1500}, {"0.5s", 500},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int quoted = 0; quoted < 2; quoted++) {
            char text[256];
            const char *q = quoted ? "\"" : "";
            snprintf(text, sizeof text,
                     "workers {\n  poll_interval = %s%s%s\n}\nqueue \"q\" {\n"
                     "  command = {\"x\"}\n  timeout = %s%s%s\n}\n",
                     q, cases[i].text, q, q, cases[i].text, q);
            struct pgwork_config *c = load_ok(text);
            ck_assert_msg(c->workers.poll_interval_ms == cases[i].ms, "%s: got %lld", text,
                          (long long)c->workers.poll_interval_ms);
            ck_assert_int_eq(c->queues[0].timeout_ms, cases[i].ms);
            config_free(c);
        }
    }
}
END_TEST

START_TEST(test_duration_garbage)
{
    expect_error("workers {\n  lease = 5x\n}\n", 2, "workers.lease", "invalid duration", "5x");
    expect_error("workers {\n  lease = \"-5s\"\n}\n", 2, "workers.lease", "-5s");
    expect_error("workers {\n  lease = \"\"\n}\n", 2, "workers.lease", "invalid duration");
    expect_error("workers {\n\n  lease = 9000h\n}\n", 3, "workers.lease", "at most 8760h");
}
END_TEST

/* ---- validation rules ------------------------------------------------- */

START_TEST(test_workers_count_range)
{
    char err[1024];
    struct pgwork_config *c;
    write_conf("# pgwork\n\nworkers {\n  count = 0\n}\n");
    ck_assert_int_eq(config_load(conf_path, &c, err, sizeof err), -1);
    unlink(conf_path);
    char want[4200];
    snprintf(want, sizeof want, "%s:4: workers.count: must be between 1 and 1024 (got 0)",
             conf_path);
    ck_assert_str_eq(err, want);

    expect_error("workers {\n  count = 1025\n}\n", 2, "workers.count", "1024", "1025");
    expect_error("workers {\n  count = abc\n}\n", 2, "workers.count", "integer", "abc");
    expect_error("workers {\n  count = 99999999999999999999999\n}\n", 2, "workers.count");
}
END_TEST

START_TEST(test_workers_min_at_least_one)
{
    expect_error("workers {\n  min = 0\n}\n", 2, "workers.min", "between 1 and 1024");
    expect_error("workers {\n  max = 0\n}\n", 2, "workers.max", "between 1 and 1024");
}
END_TEST

START_TEST(test_workers_count_below_min)
{
    expect_error("workers {\n  count = 2\n  min = 3\n}\n", 3, "workers.min",
                 "must not exceed workers.count", "3 > 2");
    /* Only min set: the message is about min, on its line. */
    expect_error("workers {\n\n  min = 5\n}\n", 3, "workers.min", "workers.count", "5 > 4");
}
END_TEST

START_TEST(test_workers_count_above_max)
{
    expect_error("workers {\n  count = 9\n  max = 8\n}\n", 2, "workers.count",
                 "must not exceed workers.max", "9 > 8");
    /* Only max set: "max must not be less than count". */
    expect_error("workers {\n\n\n  max = 2\n}\n", 4, "workers.max",
                 "must not be less than workers.count", "2 < 4");
}
END_TEST

START_TEST(test_workers_min_above_max)
{
    expect_error("workers {\n  count = 4\n  min = 10\n  max = 8\n}\n", 3, "workers.min",
                 "must not exceed workers.max", "10 > 8");
}
END_TEST

START_TEST(test_durations_positive)
{
    static const char *const keys[][2] = {
        {"listener", "reconnect_min"},      {"listener", "reconnect_max"},
        {"listener", "keepalive_interval"}, {"listener", "keepalive_timeout"},
        {"workers", "poll_interval"},       {"workers", "safety_poll_interval"},
        {"workers", "restart_delay_min"},   {"workers", "restart_delay_max"},
        {"workers", "shutdown_timeout"},    {"workers", "lease"},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char text[256], key[64];
        snprintf(text, sizeof text, "%s {\n\n  %s = 0s\n}\n", keys[i][0], keys[i][1]);
        snprintf(key, sizeof key, "%s.%s", keys[i][0], keys[i][1]);
        expect_error(text, 3, key, "must be greater than 0");
    }
    expect_error("queue \"q\" {\n  command = {\"x\"}\n  backoff_base = 0\n}\n", 3,
                 "queue \"q\".backoff_base", "greater than 0");
    expect_error("queue \"q\" {\n  command = {\"x\"}\n  backoff_max = 0ms\n}\n", 3,
                 "queue \"q\".backoff_max", "greater than 0");
}
END_TEST

START_TEST(test_queue_timeout_zero_means_none)
{
    struct pgwork_config *c = load_ok("queue \"q\" { command = {\"x\"} timeout = 0 }\n");
    ck_assert_int_eq(c->queues[0].timeout_ms, 0);
    config_free(c);
    expect_error("queue \"q\" {\n  command = {\"x\"}\n  timeout = -1\n}\n", 3,
                 "queue \"q\".timeout", "invalid duration");
}
END_TEST

START_TEST(test_reconnect_order)
{
    expect_error("listener {\n  reconnect_min = 2m\n  reconnect_max = 1m\n}\n", 2,
                 "listener.reconnect_min", "listener.reconnect_max", "2m > 1m");
    expect_error("listener {\n  reconnect_max = 100ms\n}\n", 2, "listener.reconnect_max",
                 "must not be less than listener.reconnect_min", "100ms < 500ms");
}
END_TEST

START_TEST(test_restart_delay_order)
{
    expect_error("workers {\n  restart_delay_min = 1m\n  restart_delay_max = 30s\n}\n", 2,
                 "workers.restart_delay_min", "workers.restart_delay_max", "1m > 30s");
}
END_TEST

START_TEST(test_backoff_order)
{
    expect_error("queue \"q\" {\n  command = {\"x\"}\n  backoff_max = 1s\n  backoff_base = 2s\n}\n",
                 4, "queue \"q\".backoff_base", "queue \"q\".backoff_max", "2s > 1s");
}
END_TEST

START_TEST(test_batch_range)
{
    expect_error("queue \"q\" {\n  command = {\"x\"}\n  batch = 0\n}\n", 3, "queue \"q\".batch",
                 "between 1 and 1000", "got 0");
    expect_error("queue \"q\" {\n  command = {\"x\"}\n  batch = 1001\n}\n", 3, "queue \"q\".batch",
                 "between 1 and 1000", "got 1001");
    struct pgwork_config *c = load_ok("queue \"q\" { command = {\"x\"} batch = 1000 }\n");
    ck_assert_int_eq(c->queues[0].batch, 1000);
    config_free(c);
    /* "auto", quoted or not; no other word. */
    c = load_ok("queue \"q\" { command = {\"x\"} batch = \"auto\" }\n"
                "queue \"r\" { command = {\"x\"} batch = auto }\n");
    ck_assert_int_eq(c->queues[0].batch, QUEUE_BATCH_AUTO);
    ck_assert_int_eq(c->queues[1].batch, QUEUE_BATCH_AUTO);
    config_free(c);
    expect_error("queue \"q\" {\n  command = {\"x\"}\n  batch = \"fast\"\n}\n", 3,
                 "queue \"q\".batch", "an integer or auto", "got \"fast\"");
}
END_TEST

START_TEST(test_max_attempts_positive)
{
    expect_error("queue \"q\" {\n  command = {\"x\"}\n  max_attempts = 0\n}\n", 3,
                 "queue \"q\".max_attempts", "at least 1", "got 0");
}
END_TEST

START_TEST(test_queue_workers_range)
{
    expect_error("queue \"q\" {\n  command = {\"x\"}\n  workers = -1\n}\n", 3,
                 "queue \"q\".workers", "between 0 and 1024");
    /* workers.max comes after the queue: checked once the file is read,
     * still reported at the queue's key. */
    expect_error("queue \"q\" {\n  command = {\"x\"}\n  workers = 9\n}\n"
                 "workers {\n  count = 2\n  max = 8\n}\n",
                 3, "queue \"q\".workers", "workers.max", "9 > 8");
    struct pgwork_config *c =
        load_ok("workers { max = 8 }\nqueue \"q\" { command = {\"x\"} workers = 8 }\n");
    ck_assert_int_eq(c->queues[0].workers, 8);
    config_free(c);
}
END_TEST

START_TEST(test_handler_choice)
{
    expect_error("queue \"q\" {\n  handler = python\n}\n", 2, "queue \"q\".handler",
                 "exec, sql or coprocess", "python");
}
END_TEST

START_TEST(test_exec_needs_command)
{
    expect_error("queue \"q\" {\n  handler = exec\n  batch = 5\n}\n", 2, "queue \"q\"",
                 "needs a command");
    expect_error("queue \"q\" {\n  batch = 5\n}\n", 2, "queue \"q\"", "needs a command");
    /* An empty list sets no key: the section's closing line is all we know. */
    expect_error("queue \"q\" {\n  command = {}\n}\n", 3, "queue \"q\"", "needs a command");
    expect_error("queue \"q\" {\n\n  command = {\"\", \"x\"}\n}\n", 3, "queue \"q\".command",
                 "must not be empty");
}
END_TEST

START_TEST(test_exec_rejects_statement)
{
    expect_error("queue \"q\" {\n  command = {\"x\"}\n  statement = \"SELECT 1\"\n}\n", 3,
                 "queue \"q\".statement", "only for handler sql");
}
END_TEST

START_TEST(test_sql_needs_statement)
{
    expect_error("queue \"q\" {\n  handler = sql\n}\n", 2, "queue \"q\"", "needs a statement");
    expect_error("queue \"q\" {\n  handler = sql\n  statement = \"  \"\n}\n", 3, "queue \"q\"",
                 "needs a statement");
}
END_TEST

START_TEST(test_sql_rejects_command)
{
    expect_error("queue \"q\" {\n  handler = sql\n  statement = \"SELECT $1\"\n"
                 "  command = {\"x\"}\n}\n",
                 4, "queue \"q\".command", "only for handler exec");
}
END_TEST

/* env: names of variables handlers get; checked as names; a credential
 * is refused with the reason; not for sql; a change rolls the workers. */
START_TEST(test_queue_env)
{
    struct pgwork_config *c = load_ok("queue \"q\" {\n  command = {\"x\"}\n"
                                      "  env = {\"LANG\", \"TZ\", \"_X1\"}\n}\n"
                                      "queue \"p\" { command = {\"x\"} }\n");
    ck_assert_int_eq(c->queues[0].env_count, 3);
    ck_assert_str_eq(c->queues[0].env[0], "LANG");
    ck_assert_str_eq(c->queues[0].env[2], "_X1");
    ck_assert_ptr_null(c->queues[0].env[3]);
    ck_assert_int_eq(c->queues[1].env_count, 0);
    struct pgwork_config *d = load_ok("queue \"q\" {\n  command = {\"x\"}\n"
                                      "  env = {\"LANG\", \"TZ\"}\n}\n"
                                      "queue \"p\" { command = {\"x\"} }\n");
    ck_assert(!config_worker_view_equal(c, d));
    config_free(c);
    config_free(d);

    expect_error("queue \"q\" {\n  command = {\"x\"}\n  env = {\"LANG\", \"A=B\"}\n}\n", 3,
                 "queue \"q\".env", "\"A=B\" is not a variable name");
    expect_error("queue \"q\" {\n  command = {\"x\"}\n  env = {\"1X\"}\n}\n", 3, "queue \"q\".env",
                 "is not a variable name");
    expect_error("queue \"q\" {\n  command = {\"x\"}\n  env = {\"\"}\n}\n", 3, "queue \"q\".env",
                 "is not a variable name");
    expect_error("queue \"q\" {\n  command = {\"x\"}\n  env = {\"PGPASSWORD\"}\n}\n", 3,
                 "queue \"q\".env: PGPASSWORD is never passed to handlers (the database password)");
    expect_error("queue \"q\" {\n  command = {\"x\"}\n\n  env = {\"PGWORK_DATABASE_URL\"}\n}\n", 4,
                 "PGWORK_DATABASE_URL is never passed to handlers");
    expect_error("queue \"q\" {\n  command = {\"x\"}\n  env = {\"PGPASSFILE\"}\n}\n", 3,
                 "PGPASSFILE is never passed");
    expect_error("queue \"q\" {\n  command = {\"x\"}\n  env = {\"PGWORK_WEB_TOKEN\"}\n}\n", 3,
                 "PGWORK_WEB_TOKEN is never passed");
    expect_error("queue \"q\" {\n  handler = sql\n  statement = \"SELECT $1\"\n"
                 "  env = {\"LANG\"}\n}\n",
                 4, "queue \"q\".env", "only for handler exec or coprocess");
}
END_TEST

/* coprocess takes a command like exec (argv, no shell), never a statement. */
START_TEST(test_coprocess_handler)
{
    struct pgwork_config *c = load_ok("queue \"co\" {\n  handler = coprocess\n"
                                      "  command = {\"python3\", \"-u\", \"handle.py\"}\n"
                                      "  timeout = 5s\n}\n");
    const struct queue_config *q = &c->queues[0];
    ck_assert_int_eq(q->handler, HANDLER_COPROCESS);
    ck_assert_int_eq(q->command_argc, 3);
    ck_assert_str_eq(q->command[0], "python3");
    ck_assert_str_eq(q->command[2], "handle.py");
    ck_assert_ptr_null(q->command[3]);
    ck_assert_ptr_null(q->statement);
    ck_assert_int_eq(q->timeout_ms, 5000);
    config_free(c);

    expect_error("queue \"q\" {\n  handler = coprocess\n  batch = 5\n}\n", 2, "queue \"q\"",
                 "handler coprocess needs a command");
    expect_error("queue \"q\" {\n  handler = coprocess\n  command = {\"\"}\n}\n", 3,
                 "queue \"q\".command", "must not be empty");
    expect_error("queue \"q\" {\n  handler = coprocess\n  command = {\"x\"}\n"
                 "  statement = \"SELECT 1\"\n}\n",
                 4, "queue \"q\".statement", "only for handler sql");

    /* Switching a queue between exec and coprocess rolls the workers. */
    struct pgwork_config *a = load_ok("queue \"q\" { command = {\"x\"} }\n");
    struct pgwork_config *b = load_ok("queue \"q\" { handler = coprocess command = {\"x\"} }\n");
    ck_assert(!config_worker_view_equal(a, b));
    config_free(a);
    config_free(b);
}
END_TEST

START_TEST(test_queue_name_rules)
{
    expect_error("\nqueue \"\" {\n  command = {\"x\"}\n}\n", 3, "queue \"\"", "empty");
    expect_error("queue \"a\tb\" {\n  command = {\"x\"}\n}\n", 2, "queue \"a\\x09b\"",
                 "control characters");
    expect_error("queue \"bad\xff\" {\n  command = {\"x\"}\n}\n", 2, "queue \"bad",
                 "not valid UTF-8");
    expect_error("queue \"\xc0\xaf\" {\n  command = {\"x\"}\n}\n", 2, "not valid UTF-8");
    expect_error("queue \"\xc2\x85\" {\n  command = {\"x\"}\n}\n", 2, "control characters");

    /* 1024 bytes is the limit; 1025 is too long. */
    char text[1200], name[1100];
    memset(name, 'n', 1025);
    name[1025] = '\0';
    snprintf(text, sizeof text, "queue \"%s\" {\n  command = {\"x\"}\n}\n", name);
    expect_error(text, 2, "queue \"nnnn", "longer than 1024 bytes");
    name[1024] = '\0';
    snprintf(text, sizeof text, "queue \"%s\" {\n  command = {\"x\"}\n}\n", name);
    struct pgwork_config *c = load_ok(text);
    ck_assert_int_eq(strlen(c->queues[0].name), 1024);
    config_free(c);

    c = load_ok("queue \"émails, 日本\" { command = {\"x\"} }\n");
    ck_assert_str_eq(c->queues[0].name, "émails, 日本");
    config_free(c);
}
END_TEST

START_TEST(test_duplicate_queue)
{
    expect_error("queue \"a\" {\n  command = {\"x\"}\n}\n\nqueue \"a\" {\n  command = {\"y\"}\n}\n",
                 5, "queue \"a\"", "duplicate queue name");
}
END_TEST

START_TEST(test_channel_rules)
{
    expect_error("listener {\n  channel = \"\"\n}\n", 2, "listener.channel", "empty");
    char text[200], name[70];
    memset(name, 'c', 64);
    name[64] = '\0';
    snprintf(text, sizeof text, "listener {\n  channel = %s\n}\n", name);
    expect_error(text, 2, "listener.channel", "at most 63 bytes", "got 64");
    name[63] = '\0';
    snprintf(text, sizeof text, "listener {\n  channel = %s\n}\n", name);
    struct pgwork_config *c = load_ok(text);
    ck_assert_str_eq(c->listener.channel, name);
    config_free(c);
}
END_TEST

START_TEST(test_log_level_and_format)
{
    expect_error("log {\n  level = verbose\n}\n", 2, "log.level", "debug, info, warn or error",
                 "verbose");
    expect_error("log {\n  format = xml\n}\n", 2, "log.format", "json or text", "xml");
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        char text[64];
        snprintf(text, sizeof text, "log { level = %s }\n", levels[i]);
        struct pgwork_config *c = load_ok(text);
        ck_assert_int_eq(c->log.level, LOG_LEVEL_DEBUG + i);
        config_free(c);
    }
}
END_TEST

START_TEST(test_http_listen)
{
    static const char *const good[] = {"", "0.0.0.0:9187", "localhost:1", "[::]:65535",
                                       "[::1]:8080"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char text[128];
        snprintf(text, sizeof text, "http { listen = \"%s\" }\n", good[i]);
        struct pgwork_config *c = load_ok(text);
        ck_assert_str_eq(c->http.listen, good[i]);
        config_free(c);
    }
    static const char *const bad[] = {"9187",  "host:",  "host:0", "host:65536", "host:http",
                                      ":9187", "::1:80", "[::1]",  "a b:80",     "host:123456"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[128];
        snprintf(text, sizeof text, "http {\n  listen = \"%s\"\n}\n", bad[i]);
        expect_error(text, 2, "http.listen", "host:port", bad[i]);
    }
}
END_TEST

START_TEST(test_unknown_key_and_section)
{
    expect_error("workers {\n  count = 2\n  colour = blue\n}\n", 3,
                 "workers: unknown key \"colour\"");
    expect_error("queue \"q\" {\n  command = {\"x\"}\n  retries = 3\n}\n", 3,
                 "queue \"q\": unknown key \"retries\"");
    expect_error("\nmetrics {\n  port = 1\n}\n", 2, "unknown section \"metrics\"");
}
END_TEST

START_TEST(test_bad_bool)
{
    expect_error("listener {\n  enabled = maybe\n}\n", 2, "listener.enabled", "true or false",
                 "maybe");
    struct pgwork_config *c = load_ok("listener { enabled = off }\n");
    ck_assert(!c->listener.enabled);
    config_free(c);
}
END_TEST

START_TEST(test_key_or_section_given_twice)
{
    expect_error("workers {\n  count = 2\n  count = 3\n}\n", 3, "workers.count", "given twice",
                 "line 2");
    expect_error("workers {\n  count = 2\n}\nworkers {\n  max = 9\n}\n", 6, "workers",
                 "given twice", "line 3");
}
END_TEST

START_TEST(test_syntax_errors_name_line)
{
    expect_error("workers {\n  count = 2\n}\n}\n", 4, "unexpected closing brace");
    expect_error("workers {\n  count = 2\n  max\n}\n", 4, "workers");
    expect_error("workers {\n  count += 2\n}\n", 2, "count");
}
END_TEST

START_TEST(test_line_numbers_after_comments)
{
    /* libconfuse 3.3 miscounts lines after # and // comments; the error
     * must still point at the right line of the file. */
    expect_error("# one\n"
                 "// two\n"
                 "/* three\n"
                 "   four */\n"
                 "workers { # five\n"
                 "  count = 2 // six\n"
                 "  url = \"a#b//c\" # seven\n"
                 "}\n",
                 7, "workers: unknown key \"url\"");
    expect_error("#\n#\n#\n#\n#\n#\n#\n#\n#\n#\n"
                 "log {\n"
                 "  level = loud\n"
                 "}\n",
                 12, "log.level");
    expect_error("database {\n"
                 "  conninfo = postgres://h/db # comment\n"
                 "  listen_conninfo = 'it\\'s' // x\n"
                 "  synchronous_commit = nope\n"
                 "}\n",
                 4, "database.synchronous_commit");
    /* Block comments shift libconfuse's count too, from where they end. */
    expect_error("workers {\n  /* x */ count = 0\n}\n", 2, "workers.count");
    expect_error("/* a\n\n\n */ workers {\n  count = 0\n}\n", 5, "workers.count");
    expect_error("workers { count = 1 /* c */ min = 0 }\n", 1, "workers.min");
    expect_error("workers { /* a */ /* b */ # c\n # d\n /* e\n */ // f\n\n  count = 0 }\n", 6,
                 "workers.count");

    /* Every mix of comment styles before the bad line. */
    static const char *const snippets[] = {"# a\n",
                                           "// b\n",
                                           "/* c */\n",
                                           "/* d\n */\n",
                                           "enabled = true # e\n",
                                           "\n",
                                           "/**/ reconnect_min = 1s /**/\n"};
    for (int mask = 0; mask < 1 << 7; mask++) {
        char text[512] = "listener {\n";
        int line = 2;
        for (int i = 0; i < 7; i++) {
            if (!(mask & 1 << i))
                continue;
            strcat(text, snippets[i]);
            for (const char *p = snippets[i]; *p; p++)
                line += *p == '\n';
        }
        strcat(text, "  channel = \"\"\n}\n");
        expect_error(text, line, "listener.channel", "empty");
    }
}
END_TEST

START_TEST(test_missing_file)
{
    char err[1024];
    struct pgwork_config *c = NULL;
    ck_assert_int_eq(config_load("/nonexistent/pgwork.conf", &c, err, sizeof err), -1);
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err, "/nonexistent/pgwork.conf") != NULL, "%s", err);
    ck_assert_msg(strstr(err, strerror(ENOENT)) != NULL, "%s", err);

    ck_assert_int_eq(config_load("/tmp", &c, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "/tmp") && strstr(err, strerror(EISDIR)), "%s", err);
}
END_TEST

START_TEST(test_small_error_buffer)
{
    char err[8];
    struct pgwork_config *c = NULL;
    write_conf("workers { count = 0 }\n");
    ck_assert_int_eq(config_load(conf_path, &c, err, sizeof err), -1);
    ck_assert_int_lt(strlen(err), sizeof err);
    ck_assert_int_eq(config_load(conf_path, &c, NULL, 0), -1);
    unlink(conf_path);
}
END_TEST

START_TEST(test_reload_twice)
{
    /* config_load is called again on SIGHUP: nothing may leak between loads. */
    for (int i = 0; i < 3; i++) {
        struct pgwork_config *c = load_ok("workers { count = 3 }\nqueue \"q\" { command = x }\n");
        ck_assert_int_eq(c->workers.count, 3);
        config_free(c);
        expect_error("workers {\n  count = 0\n}\n", 2, "workers.count");
    }
    config_free(NULL);
}
END_TEST

/* ---- conninfo ------------------------------------------------------------ */

START_TEST(test_conninfo_env_fallback)
{
    struct pgwork_config *c = NULL;
    char err[256];
    ck_assert_int_eq(config_load(NULL, &c, err, sizeof err), 0);

    unsetenv("PGWORK_DATABASE_URL");
    ck_assert_str_eq(config_conninfo(c), "");
    ck_assert_str_eq(config_listen_conninfo(c), "");

    setenv("PGWORK_DATABASE_URL", "", 1);
    ck_assert_str_eq(config_conninfo(c), "");

    setenv("PGWORK_DATABASE_URL", "postgresql://env/db", 1);
    ck_assert_str_eq(config_conninfo(c), "postgresql://env/db");
    ck_assert_str_eq(config_listen_conninfo(c), "postgresql://env/db");
    config_free(c);

    c = load_ok("database { conninfo = \"host=file\" }\n");
    ck_assert_str_eq(config_conninfo(c), "host=file");
    ck_assert_str_eq(config_listen_conninfo(c), "host=file");
    config_free(c);

    c = load_ok("database { listen_conninfo = \"host=direct\" }\n");
    ck_assert_str_eq(config_conninfo(c), "postgresql://env/db");
    ck_assert_str_eq(config_listen_conninfo(c), "host=direct");
    config_free(c);
    unsetenv("PGWORK_DATABASE_URL");
}
END_TEST

/* libconfuse itself accepts a file that ends inside a section: a truncated
 * file must not pass for a valid one. */
START_TEST(test_unclosed_section)
{
    expect_error("workers { count = 2\n", 1, "never closed");
    expect_error("workers { count = 2 }\n"
                 "queue \"a\" {\n"
                 "  handler = \"sql\" statement = \"SELECT '}'\" # } not this one\n",
                 2, "never closed");
}
END_TEST

/* What decides whether a reload rolls the workers, and which keys keep
 * their running values. */
START_TEST(test_reload_views)
{
    struct pgwork_config *a =
        load_ok("workers { count = 2 }\n"
                "database { conninfo = \"host=a\" }\n"
                "queue \"q\" { handler = \"sql\" statement = \"SELECT 1\" }\n");
    struct pgwork_config *b =
        load_ok("workers { count = 5 poll_interval = 3s }\n"
                "database { conninfo = \"host=b\" }\n"
                "queue \"q\" { handler = \"sql\" statement = \"SELECT 1\" }\n");
    struct pgwork_config *c =
        load_ok("queue \"q\" { handler = \"sql\" statement = \"SELECT 2\" }\n");
    char changed[256];
    config_keep_restart_only(a, b, changed, sizeof(changed));
    ck_assert_str_eq(changed, "database.conninfo");
    ck_assert_str_eq(b->database.conninfo, "host=a");
    ck_assert_str_eq(a->database.conninfo, "host=b"); /* swapped: both still freeable */
    ck_assert_int_eq(b->workers.count, 5);
    ck_assert(config_worker_view_equal(a, b));  /* count and intervals do not roll */
    ck_assert(!config_worker_view_equal(a, c)); /* a statement does */
    config_free(a);
    config_free(b);
    config_free(c);
}
END_TEST

/* ---- schedules ----------------------------------------------------------- */

START_TEST(test_schedule_keys)
{
    struct pgwork_config *c =
        load_ok("schedule \"nightly\" {\n  cron = \"0 3 * * *\"\n  timezone = \"Europe/Berlin\"\n"
                "  queue = \"reports\"\n  payload = \"{\\\"k\\\": [1, -2.5e3, true, null, "
                "\\\"\\\\u00e9\\\"]}\"\n"
                "  priority = -3\n}\nschedule \"ping\" { every = 30s queue = \"pings\" }\n");
    ck_assert_int_eq(c->schedule_count, 2);
    const struct schedule_config *n = &c->schedules[0], *p = &c->schedules[1];
    ck_assert_str_eq(n->name, "nightly");
    ck_assert_str_eq(n->cron, "0 3 * * *");
    ck_assert_ptr_null(n->every);
    ck_assert_str_eq(n->queue, "reports");
    ck_assert_int_eq(n->priority, -3);
    ck_assert_int_eq(n->when.kind, SCHEDULE_CRON);
    ck_assert_str_eq(n->when.zone, "Europe/Berlin");
    ck_assert_str_eq(p->name, "ping");
    ck_assert_ptr_null(p->cron);
    ck_assert_str_eq(p->payload, "{}");
    ck_assert_int_eq(p->priority, 0);
    ck_assert_str_eq(p->timezone, "UTC");
    ck_assert_int_eq(p->when.kind, SCHEDULE_EVERY);
    ck_assert_int_eq(p->when.every_ms, 30000);
    config_free(c);
}
END_TEST

START_TEST(test_schedule_errors)
{
    expect_error("schedule \"s\" {\n  cron = \"61 * * * *\"\n  queue = \"q\"\n}\n", 2,
                 "schedule \"s\".cron", "cron minute 61 out of range 0-59");
    expect_error("schedule \"s\" {\n  cron = \"0 0 30 2 *\"\n  queue = \"q\"\n}\n", 2,
                 "schedule \"s\".cron", "never");
    expect_error("schedule \"s\" {\n  queue = \"q\"\n  every = 1s\n  cron = \"* * * * *\"\n}\n", 4,
                 "schedule \"s\"", "either cron or every, not both");
    expect_error("schedule \"s\" {\n  queue = \"q\"\n}\n", 2, "schedule \"s\"", "needs cron");
    expect_error("schedule \"s\" {\n  every = 1s\n}\n", 2, "schedule \"s\"", "needs queue");
    expect_error("schedule \"s\" {\n  every = 500ms\n  queue = \"q\"\n}\n", 2,
                 "schedule \"s\".every", "out of range 1s-366d");
    expect_error("schedule \"s\" {\n  every = soon\n  queue = \"q\"\n}\n", 2,
                 "schedule \"s\".every", "must be a duration");
    expect_error("schedule \"s\" {\n  every = 1m\n  queue = \"\"\n}\n", 3, "schedule \"s\".queue",
                 "queue name is empty");
    expect_error("schedule \"s\" {\n  cron = \"@daily\"\n  queue = \"q\"\n"
                 "  timezone = \"Mars/Olympus\"\n}\n",
                 4, "schedule \"s\".timezone", "unknown zone");
    expect_error(
        "schedule \"s\" {\n  every = 1h\n  queue = \"q\"\n  timezone = \"Europe/Berlin\"\n}\n", 4,
        "schedule \"s\".timezone", "only for cron");
    expect_error("schedule \"s\" {\n  every = 1h\n  queue = \"q\"\n  priority = x\n}\n", 4,
                 "schedule \"s\".priority", "integer");
    expect_error("schedule \"\" {\n  every = 1h\n  queue = \"q\"\n}\n", 2,
                 "schedule name is empty");
    expect_error("schedule \"a\" {\n  every = 1h\n  queue = \"q\"\n}\n"
                 "schedule \"a\" {\n  every = 1h\n  queue = \"q\"\n}\n",
                 5, "schedule \"a\"", "duplicate schedule name");
    expect_error("schedule \"s\" {\n  every = 1h\n  queue = \"q\"\n  color = 1\n}\n", 4,
                 "unknown key");
}
END_TEST

/* The payload is checked as jsonb would read it. */
START_TEST(test_schedule_payload_json)
{
    static const char *const good[] = {
        "{}",
        "[]",
        "0",
        "-0.5e-3",
        "\\\"x\\\"",
        " { \\\"a\\\" : [ 1 , { } , [ ] ] } ",
        "null",
        "[true,false,null]",
        "{\\\"\\\\\\\"\\\\n\\\\u00e9\\\":\\\"é\\\"}",
    };
    static const char *const bad[] = {
        "",
        "{",
        "}",
        "[1,]",
        "{\\\"a\\\"}",
        "{\\\"a\\\":1,}",
        "01",
        "1.",
        ".5",
        "+1",
        "tru",
        "[1] [2]",
        "{a:1}",
        "\\\"\\\\u0000\\\"",
        "\\\"\\\\x\\\"",
        "[\\\"\\\\u12\\\"]",
        "nul",
    };
    char text[256];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        snprintf(text, sizeof text,
                 "schedule \"s\" {\n  every = 1h\n  queue = \"q\"\n  payload = \"%s\"\n}\n",
                 good[i]);
        config_free(load_ok(text));
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(text, sizeof text,
                 "schedule \"s\" {\n  every = 1h\n  queue = \"q\"\n  payload = \"%s\"\n}\n",
                 bad[i]);
        expect_error(text, 4, "schedule \"s\".payload", "invalid JSON");
    }
}
END_TEST

Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, test_defaults_without_file);
    tcase_add_test(tc, test_empty_file_is_defaults);
    tcase_add_test(tc, test_crlf_and_bom);
    tcase_add_test(tc, test_queue_defaults);
    tcase_add_test(tc, test_every_key);
    tcase_add_test(tc, test_example_config_loads);
    tcase_add_test(tc, test_handler_names);
    tcase_add_test(tc, test_parse_duration_accepts);
    tcase_add_test(tc, test_parse_duration_rejects);
    tcase_add_test(tc, test_limits);
    tcase_add_test(tc, test_duration_units_quoted_and_unquoted);
    tcase_add_test(tc, test_duration_garbage);
    tcase_add_test(tc, test_workers_count_range);
    tcase_add_test(tc, test_workers_min_at_least_one);
    tcase_add_test(tc, test_workers_count_below_min);
    tcase_add_test(tc, test_workers_count_above_max);
    tcase_add_test(tc, test_workers_min_above_max);
    tcase_add_test(tc, test_durations_positive);
    tcase_add_test(tc, test_queue_timeout_zero_means_none);
    tcase_add_test(tc, test_reconnect_order);
    tcase_add_test(tc, test_restart_delay_order);
    tcase_add_test(tc, test_backoff_order);
    tcase_add_test(tc, test_batch_range);
    tcase_add_test(tc, test_max_attempts_positive);
    tcase_add_test(tc, test_queue_workers_range);
    tcase_add_test(tc, test_handler_choice);
    tcase_add_test(tc, test_exec_needs_command);
    tcase_add_test(tc, test_exec_rejects_statement);
    tcase_add_test(tc, test_sql_needs_statement);
    tcase_add_test(tc, test_sql_rejects_command);
    tcase_add_test(tc, test_coprocess_handler);
    tcase_add_test(tc, test_queue_env);
    tcase_add_test(tc, test_queue_name_rules);
    tcase_add_test(tc, test_duplicate_queue);
    tcase_add_test(tc, test_channel_rules);
    tcase_add_test(tc, test_log_level_and_format);
    tcase_add_test(tc, test_http_listen);
    tcase_add_test(tc, test_unknown_key_and_section);
    tcase_add_test(tc, test_bad_bool);
    tcase_add_test(tc, test_key_or_section_given_twice);
    tcase_add_test(tc, test_syntax_errors_name_line);
    tcase_add_test(tc, test_line_numbers_after_comments);
    tcase_add_test(tc, test_missing_file);
    tcase_add_test(tc, test_small_error_buffer);
    tcase_add_test(tc, test_reload_twice);
    tcase_add_test(tc, test_conninfo_env_fallback);
    tcase_add_test(tc, test_unclosed_section);
    tcase_add_test(tc, test_reload_views);
    tcase_add_test(tc, test_find_queue);
    tcase_add_test(tc, test_schedule_keys);
    tcase_add_test(tc, test_schedule_errors);
    tcase_add_test(tc, test_schedule_payload_json);
    suite_add_tcase(s, tc);
    return s;
}
