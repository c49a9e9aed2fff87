/*
 * test_batching.c — batch = "auto", the default (worker/batch_size.c,
 * issue 12 item 2): a lone task is claimed alone, claims grow under a
 * backlog of short tasks, and slow tasks are not hoarded by one worker
 * while others idle. Each test fails with a fixed batch of 10 (checked
 * by setting `batch = 10` in its queue).
 */
#include <inttypes.h>
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

/* The claim statements (worker/task_claim.c's claim begins "WITH picked
 * AS") this database ran and planned, from pg_stat_statements (tests/pg.sh
 * loads it; planning is tracked for this database, batching_claims_db). */
#define STATEMENT_STATS(column, start)                                                             \
    "SELECT coalesce(sum(" column "), 0)::bigint FROM pg_stat_statements s"                        \
    " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database()"                   \
    " AND s.query LIKE '" start "%'"
#define CLAIM_STATS(column) STATEMENT_STATS(column, "WITH picked AS")
/* The one-transaction path's done (worker/task.c's finish_claimed_sql). */
#define DONE_STATS(column) STATEMENT_STATS(column, "WITH finished AS")

/* pg_stat_statements, counting plans too, for the pod's sessions. */
#define CLAIMS_DB                                                                                  \
    "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;"                                           \
    " DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET pg_stat_statements.track_planning = on',"  \
    " current_database()); END $$"

/*
 * Lone tasks, one at a time, on a sql queue and an exec queue (the
 * worker's two claim paths), one worker connected directly: its claims
 * are prepared once on its connection and planned once (a generic plan),
 * not parsed and planned at every claim — half of a lone task's claim,
 * measured (worker/claim_cache.c).
 */
START_TEST(lone_claims_are_planned_once)
{
    struct harness_run *run = harness_scenario(&(struct harness_scenario){
        .schema = CLAIMS_DB,
        .workers = "count = 1 max = 4",
        .queue = "handler = \"sql\" statement = \"SELECT $2::bigint\"",
        .queues = "queue \"e\" { handler = \"exec\" command = {\"/bin/true\"} }",
        .wait_for = "listening on channel",
        .idle = 1});
    PGconn *conn = run->conn;
    int64_t calls = harness_query_int64(conn, CLAIM_STATS("calls"));
    int64_t plans = harness_query_int64(conn, CLAIM_STATS("plans"));
    for (int i = 0; i < 40; i++) {
        harness_exec(conn, i % 2 == 0 ? "INSERT INTO pgwork.tasks (queue) VALUES ('q')"
                                      : "INSERT INTO pgwork.tasks (queue) VALUES ('e')");
        harness_expect(conn, run->sup, "SELECT count(*) FROM pgwork.tasks WHERE state = 'done'",
                       i + 1, 10000, "the lone task done");
    }
    calls = harness_query_int64(conn, CLAIM_STATS("calls")) - calls;
    plans = harness_query_int64(conn, CLAIM_STATS("plans")) - plans;
    fprintf(stderr, "lone_claims_are_planned_once: 40 lone tasks, %lld claims, %lld plans\n",
            (long long)calls, (long long)plans);
    /* A few plans more: an ANALYZE by autovacuum makes the next claim plan
     * again. */
    ck_assert_msg(calls >= 40 && plans <= 8,
                  "40 lone tasks: %lld claims planned %lld times (planned at every claim: "
                  "not prepared)",
                  (long long)calls, (long long)plans);
    ck_assert_int_eq(harness_stop_supervisor(run->sup, SIGTERM, 20000), 0);
}
END_TEST

/*
 * Backlogs of short sql tasks, one worker connected directly: the drain's
 * claims — the first one and those sent behind each batch's COMMIT, their
 * sizes growing and following the tasks' time — and each batch's done are
 * prepared on the connection and planned once per text, so after a first
 * backlog the same backlogs again plan (almost) nothing. Before: the
 * claims behind COMMIT and the done went unnamed, and the auto size took
 * any value, so nearly every claim and every done was parsed and planned
 * again. Autovacuum is off for the table: an ANALYZE would make every
 * prepared statement plan once more.
 */
START_TEST(backlog_claims_are_planned_once)
{
    struct harness_run *run = harness_scenario(&(struct harness_scenario){
        .schema = CLAIMS_DB "; ALTER TABLE pgwork.tasks SET (autovacuum_enabled = false)",
        .workers = "count = 1 max = 4",
        .queue = "handler = \"sql\" statement = \"SELECT $2::bigint\"",
        .wait_for = "listening on channel",
        .idle = 1});
    PGconn *conn = run->conn;
    int64_t calls = 0, plans = 0, done_calls = 0, done_plans = 0;
    for (int backlog = 0; backlog < 4; backlog++) {
        if (backlog == 1) { /* the first one prepared what the rest use */
            calls = harness_query_int64(conn, CLAIM_STATS("calls"));
            plans = harness_query_int64(conn, CLAIM_STATS("plans"));
            done_calls = harness_query_int64(conn, DONE_STATS("calls"));
            done_plans = harness_query_int64(conn, DONE_STATS("plans"));
        }
        harness_exec(conn,
                     "INSERT INTO pgwork.tasks (queue) SELECT 'q' FROM generate_series(1, 3000)");
        harness_expect(conn, run->sup, "SELECT count(*) FROM pgwork.tasks WHERE state = 'done'",
                       3000 * (backlog + 1), 60000, "the backlog done");
        harness_wait_idle(run->sup, 1, run->w);
    }
    calls = harness_query_int64(conn, CLAIM_STATS("calls")) - calls;
    plans = harness_query_int64(conn, CLAIM_STATS("plans")) - plans;
    done_calls = harness_query_int64(conn, DONE_STATS("calls")) - done_calls;
    done_plans = harness_query_int64(conn, DONE_STATS("plans")) - done_plans;
    fprintf(stderr,
            "backlog_claims_are_planned_once: 3 backlogs of 3000, %lld claims, %lld plans; "
            "%lld dones, %lld plans\n",
            (long long)calls, (long long)plans, (long long)done_calls, (long long)done_plans);
    ck_assert_msg(calls >= 9 && plans * 4 <= calls && done_calls >= 9 &&
                      done_plans * 4 <= done_calls,
                  "3 backlogs of 3000 after a first one: %lld claims planned %lld times, %lld "
                  "dones planned %lld times (planned at most runs: not prepared)",
                  (long long)calls, (long long)plans, (long long)done_calls, (long long)done_plans);
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
    tc = harness_tcase("plans");
    tcase_add_test(tc, lone_claims_are_planned_once);
    tcase_add_test(tc, backlog_claims_are_planned_once);
    suite_add_tcase(s, tc);
    return s;
}
