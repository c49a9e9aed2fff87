/*
 * test_idle.c — an idle pod costs its database next to nothing (issue 12
 * item 4): with default settings and nothing arriving, the statements the
 * pod sends, counted from PostgreSQL's statement log by the pod's
 * application names, stay at or under 3 a minute once start-up settled —
 * the keepalive, the safety poll, the doorbell and retention included.
 *
 * The test's database logs every statement of its new sessions
 * (ALTER DATABASE … SET log_statement = 'all'); the test's own connection
 * predates that setting and logs nothing. The window is one minute: the
 * rate is a count over time, measured, not awaited.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

#define IDLE_WINDOW_MS 60000
#define IDLE_GOAL_PER_MINUTE 3

/* The size of the server's log now: where a window starts or ends. */
static off_t log_size(void)
{
    struct stat st;
    ck_assert_msg(stat(harness_pg_logfile(), &st) == 0, "stat %s", harness_pg_logfile());
    return st.st_size;
}

/* The source of one logged statement, by its text. */
static const char *statement_source(const char *text)
{
    if (strstr(text, "pg_notify(") != NULL)
        return "keepalive";
    if (strstr(text, "WITH moved AS") != NULL)
        return "safety poll";
    if (strstr(text, "pgwork.doorbell") != NULL)
        return "doorbell";
    if (strstr(text, "EXISTS (SELECT 1 FROM pgwork.tasks") != NULL)
        return "doorbell probe";
    if (strstr(text, "finished_at <") != NULL)
        return "retention";
    return "other";
}

struct idle_count {
    int total;
    char breakdown[2048]; /* "HH:MM:SS.mmm [app] source: text" lines */
};

/* The statements database dbname's sessions of an application named
 * "pgwork…" logged between log offsets from and to. */
static struct idle_count count_statements(const char *dbname, off_t from, off_t to)
{
    struct idle_count c = {0};
    FILE *f = fopen(harness_pg_logfile(), "r");
    ck_assert_msg(f != NULL, "open %s", harness_pg_logfile());
    ck_assert_int_eq(fseeko(f, from, SEEK_SET), 0);
    const char *who = harness_printf("@%s [pgwork", dbname);
    char line[4096];
    while (ftello(f) < to && fgets(line, sizeof(line), f) != NULL) {
        const char *at = strstr(line, who);
        if (at == NULL)
            continue;
        const char *text = strstr(at, "LOG:  statement: ");
        if (text == NULL)
            text = strstr(at, "LOG:  execute ");
        if (text == NULL)
            continue;
        line[strcspn(line, "\n")] = '\0';
        c.total++;
        size_t len = strlen(c.breakdown);
        snprintf(c.breakdown + len, sizeof(c.breakdown) - len, "  %.12s %.*s %s: %.70s\n",
                 line + 11, (int)(strchr(at, ']') != NULL ? strchr(at, ']') - at : 0) + 1, at,
                 statement_source(text), text);
    }
    fclose(f);
    return c;
}

START_TEST(idle_pod_sends_at_most_3_statements_a_minute)
{
    struct harness_run *run = harness_run_database(NULL);
    harness_exec(run->conn,
                 harness_printf("ALTER DATABASE \"%s\" SET log_statement = 'all'", run->dbname));
    off_t started = log_size();
    /* Defaults: no workers, listener or queue settings but the handler. */
    struct harness_supervisor *sup = harness_run_start(
        run, &(struct harness_scenario){
                 .queues = "queue \"default\" { handler = \"exec\" command = {\"/bin/true\"} }\n",
                 .idle = 4});
    /* Settled: the start-up sweep (the first safety poll), the first arm
     * (once the workers idle) and its probe are in the log. */
    static const char *const start_up[] = {"safety poll", "doorbell:", "doorbell probe"};
    int64_t deadline = harness_now_ms() + 15000;
    for (size_t i = 0; i < sizeof(start_up) / sizeof(start_up[0]); i++) {
        while (strstr(count_statements(run->dbname, started, log_size()).breakdown, start_up[i]) ==
               NULL) {
            ck_assert_msg(harness_now_ms() < deadline,
                          "no %s at start-up in the statement log:\n%s", start_up[i],
                          count_statements(run->dbname, started, log_size()).breakdown);
            usleep(20000);
        }
    }
    off_t from = log_size();
    int64_t opened = harness_now_ms();
    usleep(IDLE_WINDOW_MS * 1000);
    struct idle_count c = count_statements(run->dbname, from, log_size());
    double minutes = (double)(harness_now_ms() - opened) / 60000.0;
    ck_assert_msg(c.total <= IDLE_GOAL_PER_MINUTE * minutes,
                  "an idle pod sent %d statements in %.2f min (goal <= %d/min):\n%s", c.total,
                  minutes, IDLE_GOAL_PER_MINUTE, c.breakdown);
    /* The count can fail the other way too: the keepalive runs while idle. */
    ck_assert_msg(c.total >= 1, "no statement at all in a minute: is the log read?");
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

Suite *idle_suite(void)
{
    Suite *s = suite_create("idle");
    TCase *tc = harness_tcase("idle");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, idle_pod_sends_at_most_3_statements_a_minute);
    suite_add_tcase(s, tc);
    return s;
}
