/*
 * test_retention.c — finished tasks do not pile up (DESIGN §2, issue 12
 * item 3): done tasks are deleted once older than their queue's
 * `retention`, dead ones once older than `dead_retention`, by any pod, in
 * batches; younger ones, other queues' and unfinished ones stay.
 *
 * Judged by the rows left in pgwork.tasks (finished_at set by the test
 * where age matters) and by the pods' own counters on /metrics.
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

/* A sql queue whose tasks succeed. */
#define RETENTION_QUEUE(name, settings)                                                            \
    "queue \"" name "\" { handler = \"sql\" statement = \"SELECT $2::bigint\" " settings " }\n"

/* n finished tasks of queue q in state, finished `age` ago (an interval). */
static void finished_tasks(PGconn *conn, const char *q, const char *state, int n, const char *age)
{
    const char *count = harness_printf("%d", n);
    harness_execp(conn,
                  "INSERT INTO pgwork.tasks (queue, state, attempts, created_at, started_at, "
                  "                          finished_at)"
                  " SELECT $1, $2, 1, now() - $4::interval, now() - $4::interval,"
                  "        now() - $4::interval FROM generate_series(1, $3::int)",
                  4, (const char *const[]){q, state, count, age});
}

static int64_t count_tasks(PGconn *conn, const char *where)
{
    return harness_query_int64(conn,
                               harness_printf("SELECT count(*) FROM pgwork.tasks WHERE %s", where));
}

/* GET /metrics from 127.0.0.1:port; the value of the unlabelled sample
 * `name`, or -1 when absent. */
static int64_t metrics_value(int port, const char *name)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_msg(connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0, "connect to :%d", port);
    static const char request[] = "GET /metrics HTTP/1.0\r\n\r\n";
    ck_assert_int_eq(write(fd, request, sizeof(request) - 1), (ssize_t)sizeof(request) - 1);
    size_t cap = 1 << 16, len = 0;
    char *body = harness_alloc(cap);
    ssize_t n;
    while (len + 1 < cap && (n = read(fd, body + len, cap - len - 1)) > 0)
        len += (size_t)n;
    close(fd);
    const char *needle = harness_printf("\n%s ", name);
    const char *at = strstr(body, needle);
    return at != NULL ? strtoll(at + strlen(needle), NULL, 10) : -1;
}

/* Old done tasks go, in several batches (more than one batch's worth);
 * young ones stay, as do dead ones younger than dead_retention, tasks of a
 * queue this pod does not serve, and the tasks it finishes meanwhile. */
START_TEST(old_done_deleted_young_kept)
{
    struct harness_run *run = harness_run_database(NULL);
    PGconn *conn = run->conn;
    finished_tasks(conn, "r", "done", 1200, "2 hours");
    finished_tasks(conn, "r", "done", 50, "30 minutes");
    finished_tasks(conn, "r", "dead", 20, "2 days");
    finished_tasks(conn, "r", "dead", 30, "2 hours");
    finished_tasks(conn, "other", "done", 40, "2 days");
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue, created_at)"
                       " SELECT 'r', now() - interval '2 days' FROM generate_series(1, 10)");
    struct harness_supervisor *sup = harness_run_start(
        run, &(struct harness_scenario){
                 .workers = "count = 2",
                 .queues = RETENTION_QUEUE("r", "retention = 1h dead_retention = 1d")});
    harness_expect(conn, sup,
                   "SELECT count(*) FROM pgwork.tasks WHERE queue = 'r' AND "
                   "finished_at < now() - interval '1 hour' AND state = 'done'",
                   0, 20000, "done tasks older than retention deleted");
    harness_expect(conn, sup,
                   "SELECT count(*) FROM pgwork.tasks WHERE queue = 'r' AND "
                   "finished_at < now() - interval '1 day'",
                   0, 20000, "dead tasks older than dead_retention deleted");
    harness_expect(conn, sup,
                   "SELECT count(*) FROM pgwork.tasks WHERE state IN ('pending', 'running')", 0,
                   15000, "the pending tasks ran");
    ck_assert_int_eq(count_tasks(conn, "queue = 'r' AND state = 'done'"), 50 + 10);
    ck_assert_int_eq(count_tasks(conn, "queue = 'r' AND state = 'dead'"), 30);
    ck_assert_int_eq(count_tasks(conn, "queue = 'other'"), 40);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
    ck_assert_ptr_null(strstr(harness_stderr_text(sup), "retention failed"));
}
END_TEST

/* The pod deletes what its own workers finished, once it is older than
 * retention: a short one, so the test sees it happen. */
START_TEST(finished_tasks_deleted_after_retention)
{
    struct harness_run *run =
        harness_run_database("CREATE TABLE ran (task bigint, at timestamptz)");
    struct harness_supervisor *sup = harness_run_start(
        run, &(struct harness_scenario){
                 .workers = "count = 2",
                 .queues = "queue \"r\" { handler = \"sql\" statement = \"INSERT INTO ran "
                           "VALUES ($2, now())\" retention = 2s }\n",
                 .idle = 2});
    PGconn *conn = run->conn;
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) SELECT 'r' FROM generate_series(1, 20)");
    harness_expect(conn, sup, "SELECT count(*) FROM ran", 20, 15000, "the tasks ran");
    /* Deleted within the queue's first look (at most 10 s for a queue that
     * had nothing finished) plus a safety margin. */
    harness_expect(conn, sup, "SELECT count(*) FROM pgwork.tasks", 0, 30000,
                   "finished tasks deleted after retention");
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

/* keep_done = false still deletes at once; dead tasks of such a queue
 * follow dead_retention (the default, 30 days). */
START_TEST(keep_done_false_unchanged)
{
    struct harness_run *run = harness_run_database(NULL);
    PGconn *conn = run->conn;
    finished_tasks(conn, "r", "dead", 5, "31 days");
    finished_tasks(conn, "r", "dead", 7, "29 days");
    struct harness_supervisor *sup = harness_run_start(
        run, &(struct harness_scenario){
                 .workers = "count = 2",
                 .queues = "queue \"r\" { handler = \"sql\" max_attempts = 1 keep_done = false "
                           "statement = \"SELECT 1 / ($1::jsonb->>'n')::int, $2::bigint\" }\n"});
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue, payload)"
                       " SELECT 'r', jsonb_build_object('n', i % 5) FROM generate_series(1, 50) i");
    harness_expect(conn, sup,
                   "SELECT count(*) FROM pgwork.tasks WHERE state IN ('pending', 'running')", 0,
                   15000, "the tasks ran");
    harness_expect(conn, sup,
                   "SELECT count(*) FROM pgwork.tasks WHERE finished_at < now() - interval '30 "
                   "days'",
                   0, 20000, "dead tasks older than dead_retention deleted");
    ck_assert_int_eq(count_tasks(conn, "state = 'done'"), 0);
    ck_assert_int_eq(count_tasks(conn, "state = 'dead'"), 10 + 7);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

/* Two pods at once: every old row deleted, each counted by exactly one pod
 * (SKIP LOCKED shares them out), no statement failed. */
START_TEST(two_pods_share_the_deletes)
{
    struct harness_run *run = harness_run_database(NULL);
    PGconn *conn = run->conn;
    finished_tasks(conn, "r", "done", 6000, "2 hours");
    finished_tasks(conn, "r", "done", 25, "10 minutes");
    int ports[2] = {harness_free_port(), 0};
    do
        ports[1] = harness_free_port();
    while (ports[1] == ports[0]);
    struct harness_supervisor *sups[2];
    for (int i = 0; i < 2; i++) {
        const char *config = harness_write_config(
            harness_printf("workers { count = 1 }\nhttp { listen = \"127.0.0.1:%d\" }\n"
                           "log { format = \"text\" }\n" RETENTION_QUEUE("r", "retention = 1h"),
                           ports[i]));
        sups[i] = harness_spawn_supervisor(config, run->conninfo);
    }
    harness_expect(conn, sups[0], "SELECT count(*) FROM pgwork.tasks WHERE state = 'done'", 25,
                   30000, "old done tasks deleted by the two pods");
    for (int i = 0; i < 2; i++)
        ck_assert(harness_stderr_wait_for(sups[i], "http endpoint on", 15000));
    int64_t deleted[2];
    for (int i = 0; i < 2; i++)
        deleted[i] = metrics_value(ports[i], "pgwork_retention_deleted_total");
    ck_assert_msg(deleted[0] >= 0 && deleted[1] >= 0 && deleted[0] + deleted[1] == 6000,
                  "the pods say they deleted %" PRId64 " + %" PRId64 " rows, not 6000", deleted[0],
                  deleted[1]);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(harness_stop_supervisor(sups[i], SIGTERM, 20000), 0);
        const char *text = harness_stderr_text(sups[i]);
        if (strstr(text, "retention failed") != NULL || strstr(text, " error ") != NULL) {
            harness_stderr_dump(sups[i]);
            ck_abort_msg("pod %d logged an error", i);
        }
    }
}
END_TEST

/* retention is applied on HUP: kept under the old value, deleted under
 * the new one, without a restart. */
START_TEST(retention_reloads_on_hup)
{
    struct harness_run *run = harness_run_database(NULL);
    PGconn *conn = run->conn;
    finished_tasks(conn, "r", "done", 30, "2 hours");
    finished_tasks(conn, "r", "done", 10, "3 days");
    struct harness_supervisor *sup = harness_run_start(
        run, &(struct harness_scenario){.workers = "count = 1",
                                        .queues = RETENTION_QUEUE("r", "retention = 1d")});
    /* The 3-day-old ones go in the first batch, which would have taken the
     * 2-hour-old ones too if retention were wrong. */
    harness_expect(conn, sup, "SELECT count(*) FROM pgwork.tasks", 30, 20000,
                   "tasks older than 1d deleted");
    ck_assert_int_eq(count_tasks(conn, "finished_at < now() - interval '1 hour'"), 30);
    harness_write_file(run->config, harness_printf("workers { count = 1 }\nhttp { listen = \"\" }\n"
                                                   "log { format = \"text\" }\n" RETENTION_QUEUE(
                                                       "r", "retention = 1h")));
    harness_signal_and_wait(sup, sup->pid, SIGHUP, "reloaded ");
    harness_expect(conn, sup, "SELECT count(*) FROM pgwork.tasks", 0, 20000,
                   "tasks older than the reloaded retention deleted");
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

Suite *retention_suite(void)
{
    Suite *s = suite_create("retention");
    TCase *tc = harness_tcase("retention");
    tcase_add_test(tc, old_done_deleted_young_kept);
    tcase_add_test(tc, finished_tasks_deleted_after_retention);
    tcase_add_test(tc, keep_done_false_unchanged);
    tcase_add_test(tc, two_pods_share_the_deletes);
    tcase_add_test(tc, retention_reloads_on_hup);
    suite_add_tcase(s, tc);
    return s;
}
