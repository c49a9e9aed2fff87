/*
 * test_batching.c — batch = "auto", the default (worker/batch_size.c,
 * issue 12 item 2): a lone task is claimed alone, claims grow under a
 * backlog of short tasks, and slow tasks are not hoarded by one worker
 * while others idle. Each test fails with a fixed batch of 10 (checked
 * by setting `batch = 10` in its queue).
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "suites.h"

/* The claims every worker made, from the status lines (SIGUSR1). */
static long long batching_claims(struct harness_supervisor *sup)
{
    struct harness_worker w[HARNESS_MAX_WORKERS];
    harness_status(sup, w);
    long long claims = 0;
    for (int i = 0; i < HARNESS_MAX_WORKERS; i++)
        if (w[i].listed)
            claims += w[i].claims;
    return claims;
}

/*
 * Two long tasks in one INSERT, two idle workers: the first worker's claim
 * takes one (a claim of one, full: it asks for help) and the second worker
 * starts the other at once — it does not wait behind the first.
 */
START_TEST(lone_task_is_claimed_alone)
{
    const char *dir = harness_tmpdir();
    struct harness_run *run = harness_scenario(&(struct harness_scenario){
        .workers = "count = 2 max = 4",
        .script = harness_printf("touch %s/started-$PGWORK_TASK_ID\n"
                                 "n=0\n"
                                 "while [ ! -e %s/release ] && [ $n -lt 600 ]; do\n"
                                 "  sleep 0.05; n=$((n + 1))\n"
                                 "done\n",
                                 dir, dir),
        .wait_for = "listening on channel",
        .idle = 2,
        .tasks = "INSERT INTO pgwork.tasks (queue) VALUES ('q'), ('q')"});
    PGconn *conn = run->conn;
    int64_t first = harness_query_int64(conn, "SELECT min(id) FROM pgwork.tasks");
    bool both =
        harness_wait_file(harness_printf("%s/started-%lld", dir, (long long)first), 10000) &&
        harness_wait_file(harness_printf("%s/started-%lld", dir, (long long)first + 1), 10000);
    harness_write_file(harness_printf("%s/release", dir), "");
    if (!both) {
        harness_stderr_dump(run->sup);
        ck_abort_msg("the second task did not start while the first ran: one worker holds both "
                     "(%s)",
                     harness_tasks_text(conn));
    }
    harness_expect(conn, run->sup, "SELECT count(*) FROM pgwork.tasks WHERE state = 'done'", 2,
                   20000, "both tasks done");
    ck_assert_int_eq(
        harness_query_int64(conn, "SELECT count(DISTINCT locked_by) FROM pgwork.tasks"), 2);
    ck_assert_int_eq(harness_stop_supervisor(run->sup, SIGTERM, 20000), 0);
}
END_TEST

/*
 * A backlog of 5,000 short sql tasks on one worker: the claims grow while
 * they come back full, so the backlog takes far fewer claims than a batch
 * of 10 would (500).
 */
START_TEST(claims_grow_under_a_backlog)
{
    struct harness_run *run = harness_scenario(
        &(struct harness_scenario){.workers = "count = 1 max = 4",
                                   .queue = "handler = \"sql\" statement = \"SELECT $2::bigint\"",
                                   .wait_for = "listening on channel",
                                   .idle = 1});
    PGconn *conn = run->conn;
    long long before = batching_claims(run->sup);
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) SELECT 'q' FROM generate_series(1, 5000)");
    harness_expect(conn, run->sup, "SELECT count(*) FROM pgwork.tasks WHERE state = 'done'", 5000,
                   60000, "the backlog done");
    harness_wait_idle(run->sup, 1, run->w);
    long long claims = batching_claims(run->sup) - before;
    ck_assert_msg(claims >= 1 && claims <= 400,
                  "5000 short tasks took %lld claims (a fixed batch of 10 takes 500)", claims);
    ck_assert_int_eq(harness_stop_supervisor(run->sup, SIGTERM, 20000), 0);
}
END_TEST

/*
 * 40 tasks of 200 ms in one INSERT on 8 workers (ideal makespan 1.0 s): no
 * worker hoards a batch of them while others idle — a batch of 10 gives 4
 * workers 10 each (2.0 s) and leaves 4 idle.
 */
START_TEST(slow_tasks_are_not_hoarded)
{
    struct harness_run *run = harness_scenario(&(struct harness_scenario){
        .workers = "count = 8 max = 16",
        .queue = "command = {\"/bin/sleep\", \"0.2\"}",
        .wait_for = "listening on channel",
        .idle = 8,
        .tasks = "INSERT INTO pgwork.tasks (queue) SELECT 'q' FROM generate_series(1, 40)"});
    PGconn *conn = run->conn;
    harness_expect(conn, run->sup, "SELECT count(*) FROM pgwork.tasks WHERE state = 'done'", 40,
                   30000, "the 40 tasks done");
    const char *spread = harness_query_text(
        conn, "SELECT string_agg(n::text, ' ' ORDER BY n DESC) FROM"
              " (SELECT count(*) AS n FROM pgwork.tasks GROUP BY locked_by) AS per_worker");
    int64_t most = harness_query_int64(
        conn, "SELECT max(n) FROM (SELECT count(*) AS n FROM pgwork.tasks GROUP BY locked_by) s");
    int64_t makespan_ms = harness_query_int64(
        conn, "SELECT (extract(epoch FROM max(finished_at) - min(created_at)) * 1000)::bigint"
              " FROM pgwork.tasks");
    ck_assert_msg(most <= 7 && makespan_ms < 1800,
                  "40 tasks of 200 ms on 8 workers: %lld ms (ideal 1000), tasks per worker: %s",
                  (long long)makespan_ms, spread);
    ck_assert_int_eq(harness_stop_supervisor(run->sup, SIGTERM, 20000), 0);
}
END_TEST

Suite *batching_suite(void)
{
    Suite *s = suite_create("batching");
    TCase *tc = harness_tcase("auto");
    tcase_add_test(tc, lone_task_is_claimed_alone);
    tcase_add_test(tc, claims_grow_under_a_backlog);
    tcase_add_test(tc, slow_tasks_are_not_hoarded);
    suite_add_tcase(s, tc);
    return s;
}
