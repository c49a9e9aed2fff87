/*
 * test_race.c — interleavings that only load used to produce, forced here
 * step by step (issue 10): a dead worker's `sql` task taken by another
 * worker between the moment its backend is stopped and the moment the
 * supervisor's requeue charges the attempt.
 *
 * The interleaving is forced with a lock, not with timing: the test holds
 * pgwork.tasks in SHARE mode, which lets a claim lock rows (FOR UPDATE)
 * but stops every UPDATE of the table — the supervisor's requeue, and the
 * `done` (or the claim) of the worker that takes the task next — until the
 * test lets go. Runs are counted with a sequence, which a rollback does
 * not undo: a run cut off by the stopped backend still counts.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

/* Every start of the statement takes a number from the sequence `runs`;
 * the first run sleeps (until its backend is stopped), later ones do not.
 * The effect is a row in results. */
#define RACE_STATEMENT                                                                             \
    "WITH run AS (SELECT nextval('runs') AS n),"                                                   \
    " slept AS (SELECT pg_sleep(CASE WHEN n = 1 THEN 60 ELSE 0 END) FROM run)"                     \
    " INSERT INTO results(task) SELECT $2 FROM run, slept"

#define RACE_RUNS "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM runs"

/* The first run's statement, sleeping in its backend. */
#define RACE_SLEEPING                                                                              \
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"                     \
    " AND state = 'active' AND wait_event = 'PgSleep' AND query LIKE '%nextval(''runs'')%'"

/* The supervisor's requeue (requeue_sql begins "WITH mine AS"), waiting
 * for the test's table lock. */
#define RACE_REQUEUE_WAITING                                                                       \
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"                     \
    " AND application_name = 'pgwork listener' AND wait_event_type = 'Lock'"                       \
    " AND query LIKE 'WITH mine AS%'"

/* Some worker's statement waiting for the test's table lock. */
#define RACE_WORKER_WAITING                                                                        \
    "SELECT least(count(*), 1) FROM pg_stat_activity WHERE datname = current_database()"           \
    " AND application_name LIKE 'pgwork worker %' AND wait_event_type = 'Lock'"

/*
 * One task whose first run kills its worker mid statement (the test
 * SIGKILLs the worker while the statement sleeps), then the interleaving
 * of the race: the dead worker's backend is stopped, and another worker
 * (one more, started by TTIN; the dead slot's replacement may join) claims
 * before the requeue has charged the attempt. Returns the run (its
 * database, connection and supervisor) once the task is done or dead, the
 * task's id in *id_out.
 */
static struct harness_run *race_dead_worker_then_claim(int max_attempts, int64_t *id_out)
{
    struct harness_run *run = harness_scenario(&(struct harness_scenario){
        .schema = "CREATE TABLE results (task bigint); CREATE SEQUENCE runs",
        .workers = "count = 1 max = 4 restart_delay_min = 100ms",
        .queues = harness_printf(
            "queue \"poison\" { handler = \"sql\" timeout = 0 max_attempts = "
            "%d backoff_base = 100ms backoff_max = 200ms statement = \"" RACE_STATEMENT "\" }\n",
            max_attempts),
        .wait_for = "listening on channel"});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;

    int64_t id = harness_query_int64(conn, "SELECT pgwork.enqueue('poison', '{}')");
    harness_expect(conn, sup, RACE_SLEEPING, 1, 15000, "the first run sleeps in its statement");
    pid_t worker = harness_worker_running(sup, id);
    ck_assert_msg(worker > 0, "no worker shows task %" PRId64 " running", id);

    /* From here no UPDATE of pgwork.tasks gets through. */
    PGconn *holder = harness_connect(run->conninfo);
    harness_exec(holder, "BEGIN");
    harness_exec(holder, "LOCK TABLE pgwork.tasks IN SHARE MODE");
    ck_assert_int_eq(kill(worker, SIGKILL), 0);

    /* The supervisor stops the dead worker's backend (its row locks go
     * with it), then its requeue waits for the table lock. */
    harness_expect(conn, sup, RACE_REQUEUE_WAITING, 1, 20000,
                   "the dead worker's requeue reaches the table lock");
    ck_assert_int_eq(harness_query_int64(conn, RACE_SLEEPING), 0);

    /* A worker that drains the queue now, before the requeue: with the
     * task's row free, it takes it, runs it, and waits to record it. */
    ck_assert_int_eq(kill(sup->pid, SIGTTIN), 0);
    harness_expect(conn, sup, RACE_WORKER_WAITING, 1, 20000,
                   "another worker reaches the table lock");

    harness_exec(holder, "COMMIT");
    harness_expect(conn, sup,
                   harness_printf("SELECT count(*) FROM pgwork.tasks WHERE id = %" PRId64
                                  " AND state IN ('done', 'dead')",
                                  id),
                   1, 30000, "the task ends done or dead");
    *id_out = id;
    return run;
}

/* How the race must end, for a queue's max_attempts: the task's
 * "state/attempts", the statement's runs and its effects. */
struct race_outcome {
    int max_attempts;
    const char *task;
    int64_t runs;
    int64_t effects;
    const char *why; /* the case, for the failure message */
};

static void race_expect_outcome(const struct race_outcome *want)
{
    int64_t id;
    struct harness_run *run = race_dead_worker_then_claim(want->max_attempts, &id);
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;

    const char *task = harness_query_text(
        conn, harness_printf(
                  "SELECT state || '/' || attempts FROM pgwork.tasks WHERE id = %" PRId64, id));
    int64_t runs = harness_query_int64(conn, RACE_RUNS);
    int64_t effects = harness_query_int64(conn, "SELECT count(*) FROM results");
    bool ok = strcmp(task, want->task) == 0 && runs == want->runs && effects == want->effects;
    if (!ok)
        harness_stderr_dump(sup);
    ck_assert_msg(ok,
                  "%s: expected %s after %" PRId64 " run(s), %" PRId64 " effect(s); got %s after "
                  "%" PRId64 " run(s), %" PRId64 " effect(s)",
                  want->why, want->task, want->runs, want->effects, task, runs, effects);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}

/* A task whose worker dies on its only attempt is dead, and never runs
 * again: on the old code the other worker ran it a second time, as the
 * same attempt 1, and it ended done. */
START_TEST(dead_worker_sql_attempt_is_charged_before_another_claim)
{
    race_expect_outcome(
        &(struct race_outcome){.max_attempts = 1,
                               .task = "dead/1",
                               .runs = 1,
                               .effects = 0,
                               .why = "max_attempts = 1 and its worker died on attempt 1"});
}
END_TEST

/* With attempts to spare, the dead attempt still counts: done at attempt
 * 2 after 2 runs, its effect once (the old code: done at "attempt 1"). */
START_TEST(dead_worker_sql_attempt_counts_when_the_retry_succeeds)
{
    race_expect_outcome(
        &(struct race_outcome){.max_attempts = 3,
                               .task = "done/2",
                               .runs = 2,
                               .effects = 1,
                               .why = "its worker died on attempt 1, the retry succeeded"});
}
END_TEST

/* Every start of the statement of the task whose payload says "sleep"
 * takes a number from `runs`; its first run sleeps. The effect is a row in
 * results. */
#define RACE_BATCH_STATEMENT                                                                       \
    "WITH run AS (SELECT CASE WHEN $1 ? 'sleep' THEN nextval('runs') ELSE 0 END AS n),"            \
    " slept AS (SELECT pg_sleep(CASE WHEN n = 1 THEN 60 ELSE 0 END) FROM run)"                     \
    " INSERT INTO results(task) SELECT $2 FROM run, slept"

/* The pid of the worker whose shm slot shows task `id`, waiting up to 10 s
 * for it to show; 0 if none does. */
static pid_t race_wait_worker_running(struct harness_supervisor *sup, int64_t id)
{
    int64_t deadline = harness_now_ms() + 10000;
    pid_t pid;
    while ((pid = harness_worker_running(sup, id)) == 0 && harness_now_ms() < deadline)
        usleep(20000);
    return pid;
}

/*
 * Three tasks in one batch; the second's statement is running (asleep)
 * when its worker is killed. That task is the one charged: with
 * max_attempts = 1 it ends dead, never run again, and its batch-mates are
 * done, each effect once. A batch's answers used to arrive only with its
 * end, so the worker's slot named the batch's first task the whole time:
 * the supervisor charged that one (dead, innocent, on its first attempt)
 * and the sleeper ran again as the same attempt.
 */
START_TEST(dead_worker_sql_charges_the_statement_that_ran)
{
    struct harness_run *run = harness_scenario(&(struct harness_scenario){
        .schema = "CREATE TABLE results (task bigint); CREATE SEQUENCE runs",
        .workers = "count = 1 restart_delay_min = 100ms",
        .queues = "queue \"batch\" { handler = \"sql\" batch = 3 timeout = 0 max_attempts = 1 "
                  "statement = \"" RACE_BATCH_STATEMENT "\" }\n",
        .wait_for = "listening on channel"});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    int64_t first = harness_query_int64(
        conn,
        "WITH t AS (INSERT INTO pgwork.tasks (queue, payload) VALUES ('batch', '{}'), "
        "('batch', '{\"sleep\": true}'), ('batch', '{}') RETURNING id) SELECT min(id) FROM t");
    int64_t sleeper = first + 1;
    harness_expect(conn, sup, RACE_SLEEPING, 1, 15000, "the second task's statement sleeps");
    /* The slot should name the sleeper; if it never does (the bug), the
     * worker is killed all the same and the outcome below tells. */
    pid_t worker = race_wait_worker_running(sup, sleeper);
    if (worker == 0)
        worker = harness_worker_running(sup, first);
    ck_assert_msg(worker > 0, "no worker shows a task of the batch running");
    ck_assert_int_eq(kill(worker, SIGKILL), 0);

    harness_expect(conn, sup, "SELECT count(*) FROM pgwork.tasks WHERE state IN ('done', 'dead')",
                   3, 30000, "every task ends done or dead");
    const char *tasks = harness_tasks_text(conn);
    const char *want = harness_printf("%" PRId64 ":done/1 %" PRId64 ":dead/1 %" PRId64 ":done/1",
                                      first, sleeper, first + 2);
    int64_t runs = harness_query_int64(conn, RACE_RUNS);
    int64_t wrong = harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks t WHERE "
                                              "(SELECT count(*) FROM results r WHERE r.task = "
                                              "t.id) <> (t.state = 'done')::int");
    if (strcmp(tasks, want) != 0 || runs != 1 || wrong != 0)
        harness_stderr_dump(sup);
    ck_assert_msg(strcmp(tasks, want) == 0 && runs == 1 && wrong == 0,
                  "expected %s, the sleeper run once, effects once for done tasks; got %s, %" PRId64
                  " run(s) of the sleeper, %" PRId64 " task(s) with wrong effects",
                  want, tasks, runs, wrong);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

Suite *race_suite(void)
{
    Suite *s = suite_create("race");
    TCase *tc = harness_tcase("requeue");
    tcase_add_test(tc, dead_worker_sql_attempt_is_charged_before_another_claim);
    tcase_add_test(tc, dead_worker_sql_attempt_counts_when_the_retry_succeeds);
    tcase_add_test(tc, dead_worker_sql_charges_the_statement_that_ran);
    suite_add_tcase(s, tc);
    return s;
}
