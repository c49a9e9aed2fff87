/*
 * test_protocol.c — the wake-up protocol and the task lifecycle end to end
 * (DESIGN §1, §2): a real supervisor, real workers, a real PostgreSQL.
 * Outcomes are read from the database (rows, states, attempts); wake-up and
 * claim counts from the supervisor's shared-memory counters, which its
 * SIGUSR1 status lines print.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

/* Queue settings of several tests: the sql handler records each task it
 * runs in results. */
#define RECORDING_QUEUE "handler = \"sql\" statement = \"INSERT INTO results(task) VALUES ($2)\""

/* A test's set-up (harness_scenario): a results table for the sql
 * handler, debug logs. */
static struct harness_run *protocol_run(struct harness_scenario s)
{
    s.schema = "CREATE TABLE results (task bigint, started timestamptz "
               "DEFAULT clock_timestamp(), body jsonb)";
    s.log = "level = \"debug\" format = \"text\"";
    return harness_scenario(&s);
}

struct worker_status {
    int count;
    int idle;
    long long wakeups;
    long long claims;
};

/* Ask the supervisor for its status lines (SIGUSR1) and sum the worker
 * counters of the newest batch. */
static struct worker_status protocol_status(struct harness_supervisor *sup, int workers)
{
    struct harness_worker w[HARNESS_MAX_WORKERS];
    struct worker_status st = {.count = harness_status(sup, w)};
    for (int i = 0; i < HARNESS_MAX_WORKERS; i++) {
        if (!w[i].listed)
            continue;
        st.idle += strcmp(w[i].state, "idle") == 0;
        st.wakeups += w[i].wakeups;
        st.claims += w[i].claims;
    }
    ck_assert_int_eq(st.count, workers);
    return st;
}

/* Wait until every worker sleeps in IDLE (asked through status lines). */
static struct worker_status protocol_wait_idle(struct harness_supervisor *sup, int workers)
{
    int64_t deadline = harness_now_ms() + 20000;
    for (;;) {
        struct worker_status st = protocol_status(sup, workers);
        if (st.idle == workers)
            return st;
        if (harness_now_ms() > deadline) {
            harness_stderr_dump(sup);
            ck_abort_msg("workers not idle: %d of %d", st.idle, workers);
        }
    }
}

START_TEST(one_insert_wakes_one_worker)
{
    struct harness_run *run =
        protocol_run((struct harness_scenario){.workers = "count = 8 max = 16",
                                               .queue = RECORDING_QUEUE,
                                               .wait_for = "listening on channel"});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    struct worker_status before = protocol_wait_idle(sup, 8);
    /* Armed (the doorbell) before the insert: an insert committed while
     * the arm is written can be found by the arm's probe and rung as well,
     * two wake-ups for one task by design (the probe closes that race). */
    ck_assert(harness_wait_until(
        conn, "SELECT count(*) FROM pgwork.doorbell WHERE queue = 'q' AND armed", 1, 10000));

    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('q')");
    ck_assert(harness_wait_until(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = 'done'", 1,
                                 10000));
    struct worker_status after = protocol_wait_idle(sup, 8);

    /* One notification: one worker woken, one claim (it returned a short
     * batch, so the worker went back to sleep). A thundering herd would
     * show 8 wake-ups. */
    ck_assert_int_eq(after.wakeups - before.wakeups, 1);
    ck_assert_int_eq(after.claims - before.claims, 1);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM results"), 1);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

START_TEST(ten_thousand_in_one_statement)
{
    struct harness_run *run = protocol_run((struct harness_scenario){
        .workers = "count = 4 max = 16",
        .queue =
            "handler = \"sql\" statement = \"INSERT INTO results(task) VALUES ($2)\" batch = 10",
        .wait_for = "listening on channel"});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    protocol_wait_idle(sup, 4);

    harness_exec(conn, "INSERT INTO pgwork.tasks (queue, payload) "
                       "SELECT 'q', jsonb_build_object('n', g) FROM generate_series(1, 10000) g");
    if (!harness_wait_until(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = 'done'", 10000,
                            120000)) {
        harness_stderr_dump(sup);
        ck_abort_msg("not every task finished");
    }
    /* Every task ran exactly once, and every worker took part. */
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM results"), 10000);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(DISTINCT task) FROM results"), 10000);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT max(attempts) FROM pgwork.tasks"), 1);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(DISTINCT split_part(locked_by, '/', "
                                               "2)) FROM pgwork.tasks"),
                     4);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

START_TEST(polling_without_listener)
{
    struct harness_run *run = protocol_run((struct harness_scenario){
        .workers = "count = 2 max = 16 poll_interval = 200ms",
        .queue = "handler = \"sql\" statement = \"INSERT INTO results(task) VALUES ($2)\"",
        .extra = "listener { enabled = false }",
        .wait_for = "notifications disabled"});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) SELECT 'q' FROM generate_series(1, 25)");
    ck_assert(harness_wait_until(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = 'done'", 25,
                                 15000));
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM results"), 25);
    ck_assert_msg(strstr(harness_stderr_text(sup), "listening on channel") == NULL,
                  "LISTEN was issued although listener.enabled = false");
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

START_TEST(safety_poll_finds_unannounced_task)
{
    struct harness_run *run = protocol_run((struct harness_scenario){
        .workers = "count = 2 max = 16 safety_poll_interval = 1s poll_interval = 60s",
        .queue = "handler = \"sql\" statement = \"INSERT INTO results(task) VALUES ($2)\"",
        .wait_for = "listening on channel"});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    protocol_wait_idle(sup, 2);

    harness_exec(conn, "ALTER TABLE pgwork.tasks DISABLE TRIGGER tasks_notify");
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('q')");
    ck_assert(harness_wait_until(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = 'done'", 1,
                                 10000));
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

START_TEST(scheduled_task_starts_on_time)
{
    struct harness_run *run = protocol_run((struct harness_scenario){
        .workers = "count = 2 max = 16 safety_poll_interval = 60s poll_interval = 60s",
        .queue = "handler = \"sql\" statement = \"INSERT INTO results(task) VALUES ($2)\"",
        .wait_for = "listening on channel"});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    protocol_wait_idle(sup, 2);

    harness_exec(conn, "INSERT INTO pgwork.tasks (queue, run_at) "
                       "VALUES ('q', now() + interval '2 seconds')");
    ck_assert(harness_wait_until(conn, "SELECT count(*) FROM results", 1, 10000));
    /* Lateness = handler start - run_at, both on the database's clock. */
    int64_t late_ms = harness_query_int64(
        conn, "SELECT (extract(epoch FROM r.started - t.run_at) * 1000)::bigint "
              "FROM results r JOIN pgwork.tasks t ON t.id = r.task");
    ck_assert_int_ge(late_ms, 0);
    /* Started by the supervisor's timer, not by a poll (60 s here). How
     * close to run_at is a speed figure: make bench's scheduled lateness. */
    ck_assert_msg(late_ms < 1000, "started %" PRId64 " ms after its run_at: not by the timer",
                  late_ms);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

START_TEST(exec_handler_runs_program)
{
    const char *out = harness_tmpdir();
    struct harness_run *run = protocol_run((struct harness_scenario){
        .workers = "count = 2 max = 16",
        .queue =
            harness_printf("handler = \"exec\" command = {\"/bin/sh\", \"-c\", "
                           "\"cat > %s/$PGWORK_TASK_ID.json && "
                           "echo \\\"$PGWORK_QUEUE $PGWORK_ATTEMPT\\\" > %s/$PGWORK_TASK_ID.env\"}",
                           out, out)});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    int64_t id = harness_query_int64(
        conn, "SELECT pgwork.enqueue('q', '{\"hello\": \"wörld\", \"n\": [1, 2]}')");
    if (!harness_wait_until(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = 'done'", 1,
                            15000)) {
        harness_stderr_dump(sup);
        ck_abort_msg("task not done");
    }
    char path[512], buf[256] = {0};
    snprintf(path, sizeof(path), "%s/%lld.json", out, (long long)id);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(buf, sizeof(buf), f));
    fclose(f);
    ck_assert_str_eq(buf, "{\"n\": [1, 2], \"hello\": \"wörld\"}");
    snprintf(path, sizeof(path), "%s/%lld.env", out, (long long)id);
    f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(buf, sizeof(buf), f));
    fclose(f);
    ck_assert_str_eq(buf, "q 1\n");
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

START_TEST(exec_failure_retries_then_dead)
{
    struct harness_run *run = protocol_run((struct harness_scenario){
        .workers = "count = 2 max = 16 safety_poll_interval = 60s",
        .queue = "handler = \"exec\" command = {\"/bin/sh\", \"-c\", "
                 "\"echo broken >&2; exit 3\"}\n"
                 "max_attempts = 3 backoff_base = 50ms backoff_max = 200ms"});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('q')");
    /* Retries are woken by the supervisor's timer, not by polling (the
     * safety poll is a minute away). */
    if (!harness_wait_until(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = 'dead'", 1,
                            15000)) {
        harness_stderr_dump(sup);
        ck_abort_msg("task did not end dead");
    }
    ck_assert_int_eq(harness_query_int64(conn, "SELECT attempts FROM pgwork.tasks"), 3);
    const char *error = harness_query_text(conn, "SELECT last_error FROM pgwork.tasks");
    ck_assert_ptr_nonnull(strstr(error, "exit status 3"));
    ck_assert_ptr_nonnull(strstr(error, "broken"));
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

/* Many retries in flight on one queue, due at different times: each must
 * be woken by the timer (one due time per queue is kept; every firing
 * polls for the next), none left to the safety poll a minute away. */
START_TEST(many_retries_all_woken)
{
    struct harness_run *run = protocol_run((struct harness_scenario){
        .workers = "count = 2 max = 16 safety_poll_interval = 60s",
        .queue = "handler = \"sql\" statement = \"SELECT 1 / 0\"\n"
                 "max_attempts = 4 backoff_base = 100ms backoff_max = 400ms",
        .wait_for = "listening on channel"});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) SELECT 'q' FROM generate_series(1, 12)");
    if (!harness_wait_until(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = 'dead'", 12,
                            15000)) {
        harness_stderr_dump(sup);
        ck_abort_msg("retries were left waiting for the safety poll");
    }
    ck_assert_int_eq(harness_query_int64(conn, "SELECT min(attempts) FROM pgwork.tasks"), 4);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

START_TEST(sql_failure_rolls_back_and_retries)
{
    /* The effect is written, then the statement fails: the effect must
     * not survive any attempt. */
    struct harness_run *run = protocol_run((struct harness_scenario){
        .workers = "count = 2 max = 16",
        .queue = "handler = \"sql\" statement = \"WITH w AS (INSERT INTO results(task) VALUES "
                 "($2)) SELECT 1 / ($1->>'d')::int\"\n"
                 "max_attempts = 2 backoff_base = 50ms backoff_max = 50ms"});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue, payload) VALUES "
                       "('q', '{\"d\": 0}'), ('q', '{\"d\": 1}')");
    ck_assert(harness_wait_until(
        conn, "SELECT count(*) FROM pgwork.tasks WHERE state IN ('dead', 'done')", 2, 15000));
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks "
                                               "WHERE state = 'dead' AND attempts = 2 "
                                               "AND last_error LIKE '%division by zero%'"),
                     1);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks "
                                               "WHERE state = 'done' AND payload->>'d' = '1'"),
                     1);
    /* Only the successful task's effect exists. */
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM results r JOIN pgwork.tasks "
                                               "t ON t.id = r.task WHERE t.state = 'done'"),
                     1);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM results"), 1);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

/*
 * A drain claims onward from a cursor (the last key it claimed, worker/
 * task.c). A task that sorts before the cursor — a higher priority, added
 * while a backlog drains — must not wait for the backlog: its notification
 * sends the next claim back to the start.
 */
START_TEST(priority_task_overtakes_backlog)
{
    struct harness_run *run = protocol_run(
        (struct harness_scenario){.workers = "count = 1 max = 16", .queue = RECORDING_QUEUE});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    harness_exec(conn,
                 "INSERT INTO pgwork.tasks (queue) SELECT 'q' FROM generate_series(1, 10000)");
    ck_assert(harness_wait_until(conn, "SELECT (count(*) >= 500)::int FROM results", 1, 30000));
    int64_t urgent = harness_query_int64(
        conn, "INSERT INTO pgwork.tasks (queue, priority) VALUES ('q', -1) RETURNING id");
    const char *done_sql = harness_printf(
        "SELECT count(*) FROM pgwork.tasks WHERE id = %lld AND state = 'done'", (long long)urgent);
    ck_assert(harness_wait_until(conn, done_sql, 1, 60000));
    /* Backlog tasks still pending when the urgent one was done. */
    int64_t left = harness_query_int64(conn, harness_printf("SELECT count(*) FROM pgwork.tasks t, "
                                                            "results r WHERE r.task = t.id AND "
                                                            "r.started > (SELECT started FROM "
                                                            "results WHERE task = %lld)",
                                                            (long long)urgent));
    ck_assert_msg(left > 0, "the priority task ran only after the whole backlog");
    ck_assert(harness_wait_until(conn, "SELECT count(*) FROM results", 10001, 60000));
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(DISTINCT task) FROM results"), 10001);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

START_TEST(keep_done_false_deletes)
{
    struct harness_run *run = protocol_run(
        (struct harness_scenario){.workers = "count = 2 max = 16",
                                  .queue = "handler = \"sql\" statement = \"INSERT INTO "
                                           "results(task) VALUES ($2)\" keep_done = false"});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) SELECT 'q' FROM generate_series(1, 50)");
    ck_assert(harness_wait_until(conn, "SELECT count(*) FROM results", 50, 15000));
    ck_assert(harness_wait_until(conn, "SELECT count(*) FROM pgwork.tasks", 0, 15000));
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

START_TEST(sigterm_finishes_running_task)
{
    const char *marker = harness_printf("%s/started", harness_tmpdir());
    struct harness_run *run = protocol_run((struct harness_scenario){
        .workers = "count = 1 max = 16",
        .queue = harness_printf("handler = \"exec\" command = {\"/bin/sh\", \"-c\", "
                                "\"touch %s; sleep 1\"}",
                                marker)});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('q')");
    ck_assert(harness_wait_until(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = 'running'",
                                 1, 15000));
    /* Running in the database is not yet running on the machine: wait for
     * the handler itself. */
    ck_assert(harness_wait_file(marker, 10000));
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks "
                                               "WHERE state = 'done'"),
                     1);
}
END_TEST

Suite *protocol_suite(void)
{
    Suite *s = suite_create("protocol");
    TCase *tc = harness_tcase("wake-up");
    tcase_add_test(tc, one_insert_wakes_one_worker);
    tcase_add_test(tc, ten_thousand_in_one_statement);
    tcase_add_test(tc, polling_without_listener);
    tcase_add_test(tc, safety_poll_finds_unannounced_task);
    tcase_add_test(tc, scheduled_task_starts_on_time);
    suite_add_tcase(s, tc);

    tc = harness_tcase("lifecycle");
    tcase_add_test(tc, exec_handler_runs_program);
    tcase_add_test(tc, exec_failure_retries_then_dead);
    tcase_add_test(tc, many_retries_all_woken);
    tcase_add_test(tc, sql_failure_rolls_back_and_retries);
    tcase_add_test(tc, priority_task_overtakes_backlog);
    tcase_add_test(tc, keep_done_false_deletes);
    tcase_add_test(tc, sigterm_finishes_running_task);
    suite_add_tcase(s, tc);
    return s;
}
