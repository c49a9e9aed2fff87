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

static const char *race_tasks(PGconn *conn)
{
    return harness_query_text(
        conn, "SELECT coalesce(string_agg(id || ':' || state || '/' || attempts, ' ' ORDER BY id), "
              "'no tasks') FROM pgwork.tasks");
}

/* Wait until sql returns expected; else dump the supervisor's output and
 * fail naming what did not happen. */
static void race_expect(PGconn *conn, struct harness_supervisor *sup, const char *sql,
                        int64_t expected, int timeout_ms, const char *what)
{
    if (harness_wait_until(conn, sql, expected, timeout_ms))
        return;
    harness_stderr_dump(sup);
    ck_abort_msg("%s: not within %d ms; tasks: %s", what, timeout_ms, race_tasks(conn));
}

/* The pid of the worker whose shm slot shows task `id` (SIGUSR1 status
 * lines "status worker N: pid=P state=S task=T ..."), 0 if none. */
static pid_t race_worker_running(struct harness_supervisor *sup, int64_t id)
{
    size_t before = strlen(harness_stderr_text(sup));
    ck_assert_int_eq(kill(sup->pid, SIGUSR1), 0);
    int64_t deadline = harness_now_ms() + 5000;
    while (strstr(harness_stderr_text(sup) + before, "status queue ") == NULL) {
        ck_assert_msg(harness_now_ms() < deadline, "no status output within 5 s of SIGUSR1");
        usleep(5000);
    }
    const char *text = harness_stderr_text(sup) + before;
    const char *want = harness_printf(" task=%" PRId64 " ", id);
    for (const char *line = text; (line = strstr(line, "status worker ")) != NULL; line++) {
        const char *end = strchr(line, '\n');
        const char *task = strstr(line, want);
        const char *pid = strstr(line, "pid=");
        if (task != NULL && pid != NULL && (end == NULL || (task < end && pid < end)))
            return (pid_t)atoi(pid + 4);
    }
    return 0;
}

/*
 * One task whose first run kills its worker mid statement (the test
 * SIGKILLs the worker while the statement sleeps), then the interleaving
 * of the race: the dead worker's backend is stopped, and another worker
 * (one more, started by TTIN; the dead slot's replacement may join) claims
 * before the requeue has charged the attempt. Returns the task's id once
 * it is done or dead; conn is the test's connection.
 */
static int64_t race_dead_worker_then_claim(PGconn *conn, const char *conninfo, int max_attempts,
                                           struct harness_supervisor **sup_out)
{
    harness_exec(conn, "CREATE TABLE results (task bigint)");
    harness_exec(conn, "CREATE SEQUENCE runs");
    const char *config = harness_write_config(harness_printf(
        "workers { count = 1 max = 4 restart_delay_min = 100ms }\n"
        "log { level = \"info\" format = \"text\" }\n"
        "http { listen = \"\" }\n"
        "queue \"poison\" { handler = \"sql\" timeout = 0 max_attempts = %d backoff_base = 100ms "
        "backoff_max = 200ms statement = \"" RACE_STATEMENT "\" }\n",
        max_attempts));
    struct harness_supervisor *sup = harness_spawn_supervisor(config, conninfo);
    *sup_out = sup;
    if (!harness_stderr_wait_for(sup, "listening on channel", 15000)) {
        harness_stderr_dump(sup);
        ck_abort_msg("the supervisor did not listen within 15 s");
    }

    int64_t id = harness_query_int64(conn, "SELECT pgwork.enqueue('poison', '{}')");
    race_expect(conn, sup, RACE_SLEEPING, 1, 15000, "the first run sleeps in its statement");
    pid_t worker = race_worker_running(sup, id);
    ck_assert_msg(worker > 0, "no worker shows task %" PRId64 " running", id);

    /* From here no UPDATE of pgwork.tasks gets through. */
    PGconn *holder = harness_connect(conninfo);
    harness_exec(holder, "BEGIN");
    harness_exec(holder, "LOCK TABLE pgwork.tasks IN SHARE MODE");
    ck_assert_int_eq(kill(worker, SIGKILL), 0);

    /* The supervisor stops the dead worker's backend (its row locks go
     * with it), then its requeue waits for the table lock. */
    race_expect(conn, sup, RACE_REQUEUE_WAITING, 1, 20000,
                "the dead worker's requeue reaches the table lock");
    ck_assert_int_eq(harness_query_int64(conn, RACE_SLEEPING), 0);

    /* A worker that drains the queue now, before the requeue: with the
     * task's row free, it takes it, runs it, and waits to record it. */
    ck_assert_int_eq(kill(sup->pid, SIGTTIN), 0);
    race_expect(conn, sup, RACE_WORKER_WAITING, 1, 20000, "another worker reaches the table lock");

    harness_exec(holder, "COMMIT");
    race_expect(conn, sup,
                harness_printf("SELECT count(*) FROM pgwork.tasks WHERE id = %" PRId64
                               " AND state IN ('done', 'dead')",
                               id),
                1, 30000, "the task ends done or dead");
    return id;
}

/* A task whose worker dies on its only attempt is dead, and never runs
 * again: on the old code the other worker ran it a second time, as the
 * same attempt 1, and it ended done. */
START_TEST(dead_worker_sql_attempt_is_charged_before_another_claim)
{
    const char *conninfo = harness_db_create(NULL);
    ck_assert_int_eq(harness_migrate(conninfo), 0);
    PGconn *conn = harness_connect(conninfo);
    struct harness_supervisor *sup;
    int64_t id = race_dead_worker_then_claim(conn, conninfo, 1, &sup);

    const char *task = harness_query_text(
        conn, harness_printf(
                  "SELECT state || '/' || attempts FROM pgwork.tasks WHERE id = %" PRId64, id));
    int64_t runs = harness_query_int64(conn, RACE_RUNS);
    int64_t effects = harness_query_int64(conn, "SELECT count(*) FROM results");
    if (strcmp(task, "dead/1") != 0 || runs != 1 || effects != 0)
        harness_stderr_dump(sup);
    ck_assert_msg(strcmp(task, "dead/1") == 0 && runs == 1 && effects == 0,
                  "max_attempts = 1 and its worker died on attempt 1: expected dead/1 after 1 "
                  "run, no effect; got %s after %" PRId64 " run(s), %" PRId64 " effect(s)",
                  task, runs, effects);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

/* With attempts to spare, the dead attempt still counts: done at attempt
 * 2 after 2 runs, its effect once (the old code: done at "attempt 1"). */
START_TEST(dead_worker_sql_attempt_counts_when_the_retry_succeeds)
{
    const char *conninfo = harness_db_create(NULL);
    ck_assert_int_eq(harness_migrate(conninfo), 0);
    PGconn *conn = harness_connect(conninfo);
    struct harness_supervisor *sup;
    int64_t id = race_dead_worker_then_claim(conn, conninfo, 3, &sup);

    const char *task = harness_query_text(
        conn, harness_printf(
                  "SELECT state || '/' || attempts FROM pgwork.tasks WHERE id = %" PRId64, id));
    int64_t runs = harness_query_int64(conn, RACE_RUNS);
    int64_t effects = harness_query_int64(conn, "SELECT count(*) FROM results");
    if (strcmp(task, "done/2") != 0 || runs != 2 || effects != 1)
        harness_stderr_dump(sup);
    ck_assert_msg(strcmp(task, "done/2") == 0 && runs == 2 && effects == 1,
                  "its worker died on attempt 1, the retry succeeded: expected done/2 after 2 "
                  "runs, one effect; got %s after %" PRId64 " run(s), %" PRId64 " effect(s)",
                  task, runs, effects);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

Suite *race_suite(void)
{
    Suite *s = suite_create("race");
    TCase *tc = harness_tcase("requeue");
    tcase_add_test(tc, dead_worker_sql_attempt_is_charged_before_another_claim);
    tcase_add_test(tc, dead_worker_sql_attempt_counts_when_the_retry_succeeds);
    suite_add_tcase(s, tc);
    return s;
}
