/*
 * test_evidence.c — tests that must be able to fail (issue 10 item 19):
 * each one pins a property another test only seemed to prove, in a way a
 * mutation of the feature's core line makes it fail.
 *
 * The sql handler's exactly-once contract (DESIGN §3): a task's effect and
 * its `done` commit together. sql_failure_rolls_back_and_retries only
 * shows a failing statement rolled back; here the worker is SIGKILLed with
 * the effect written and `done` not yet committed — once inside the
 * statement, once inside the `done` update itself (a trigger sleeps there)
 * — and the effects are counted: none while the task is not done, exactly
 * one once it is. Committing the effect on its own (a COMMIT between the
 * statement and the finish) leaves an effect behind and a second one after
 * the retry.
 */
#include <dirent.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

/* The pid of the only child of pid (the sql queue's one worker: a sql
 * handler forks nothing), 0 if it has none or several. The supervisor's
 * short-lived helpers (a resolver, a cancel request) may stand beside it
 * for a moment: ask again until one child is left, up to 5 s. */
static pid_t evidence_only_child(pid_t pid)
{
    int64_t deadline = harness_now_ms() + 5000;
    for (;;) {
        pid_t child = 0;
        int n = harness_children(pid, &child);
        if (n < 0)
            return 0;
        if (n == 1 || harness_now_ms() > deadline)
            return n == 1 ? child : 0;
        usleep(5000);
    }
}

/* Effects minus done tasks, in one snapshot: 0 whenever the contract holds. */
static int64_t evidence_unmatched_effects(PGconn *conn)
{
    return harness_query_int64(conn, "SELECT (SELECT count(*) FROM effects)"
                                     " - (SELECT count(*) FROM pgwork.tasks WHERE state = 'done')");
}

/*
 * One sql task whose worker is killed while its backend sleeps, armed by
 * the `armed` table: in the statement (after its INSERT) when in_done is
 * false, in a trigger on the `done` update when it is true. The sleep
 * decides before it starts, so the test disarms it as soon as the backend
 * sleeps and the retry runs straight through.
 */
static void evidence_kill_between_effect_and_done(bool in_done)
{
    PGconn *conn;
    const char *conninfo = harness_db_migrated(&conn, NULL, NULL);
    harness_exec(conn, "CREATE TABLE effects (task bigint)");
    harness_exec(conn, "CREATE TABLE armed ()");
    harness_exec(conn, "INSERT INTO armed DEFAULT VALUES");
    const char *statement = "INSERT INTO effects VALUES ($2)";
    if (in_done) {
        harness_exec(conn, "CREATE FUNCTION slow_done() RETURNS trigger LANGUAGE plpgsql AS $$"
                           " BEGIN"
                           "   IF EXISTS (SELECT FROM armed) THEN PERFORM pg_sleep(30); END IF;"
                           "   RETURN NEW;"
                           " END $$");
        harness_exec(conn, "CREATE TRIGGER slow_done BEFORE UPDATE ON pgwork.tasks FOR EACH ROW"
                           " WHEN (NEW.state = 'done') EXECUTE FUNCTION slow_done()");
    } else {
        statement = "WITH e AS (INSERT INTO effects VALUES ($2) RETURNING task)"
                    " SELECT pg_sleep(CASE WHEN EXISTS (SELECT FROM armed) THEN 30 ELSE 0 END)"
                    " FROM e";
    }
    const char *config = harness_write_config(
        harness_printf("workers { count = 1 restart_delay_min = 100ms }\n"
                       "log { level = \"info\" format = \"text\" }\n"
                       "http { listen = \"\" }\n"
                       "queue \"q\" { handler = \"sql\" keep_done = true statement = \"%s\" }\n",
                       statement));
    struct harness_supervisor *sup = harness_spawn_supervisor(config, conninfo);
    ck_assert(harness_stderr_wait_for(sup, "listening on channel", 15000));

    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('q')");
    const char *sleeping = "SELECT coalesce(max(pid), 0) FROM pg_stat_activity"
                           " WHERE datname = current_database() AND wait_event = 'PgSleep'";
    int64_t backend = 0;
    int64_t deadline = harness_now_ms() + 15000;
    while ((backend = harness_query_int64(conn, sleeping)) == 0) {
        if (harness_now_ms() > deadline) {
            harness_stderr_dump(sup);
            ck_abort_msg("the task's backend never reached its pg_sleep");
        }
        usleep(5000);
    }
    /* It sleeps, its effect written: disarm the retry, kill the worker. */
    harness_exec(conn, "DELETE FROM armed");
    pid_t worker = evidence_only_child(sup->pid);
    ck_assert_msg(worker > 0, "cannot tell the worker of supervisor %d", (int)sup->pid);
    ck_assert_int_eq(kill(worker, SIGKILL), 0);

    /* The supervisor stops the dead worker's backend: its transaction,
     * effect included, is gone with it. */
    const char *gone =
        harness_printf("SELECT count(*) FROM pg_stat_activity WHERE pid = %" PRId64, backend);
    if (!harness_wait_until(conn, gone, 0, 15000)) {
        harness_stderr_dump(sup);
        ck_abort_msg("the dead worker's backend %" PRId64 " still runs 15 s later", backend);
    }
    int64_t unmatched = evidence_unmatched_effects(conn);
    ck_assert_msg(unmatched == 0,
                  "%" PRId64 " effect(s) committed without their task's done (worker killed %s)",
                  unmatched, in_done ? "in the done update" : "in the statement");

    /* The task runs again and ends done, its effect there exactly once. */
    if (!harness_wait_until(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = 'done'", 1,
                            15000)) {
        harness_stderr_dump(sup);
        ck_abort_msg("the task is not done 15 s after its worker was killed");
    }
    int64_t effects = harness_query_int64(conn, "SELECT count(*) FROM effects");
    ck_assert_msg(effects == 1, "%" PRId64 " effects for one done task (worker killed %s)", effects,
                  in_done ? "in the done update" : "in the statement");
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}

START_TEST(sql_worker_killed_in_statement_no_effect)
{
    evidence_kill_between_effect_and_done(false);
}
END_TEST

START_TEST(sql_worker_killed_before_done_no_effect)
{
    evidence_kill_between_effect_and_done(true);
}
END_TEST

Suite *evidence_suite(void)
{
    Suite *s = suite_create("evidence");
    TCase *tc = harness_tcase("sql_exactly_once");
    tcase_add_test(tc, sql_worker_killed_in_statement_no_effect);
    tcase_add_test(tc, sql_worker_killed_before_done_no_effect);
    suite_add_tcase(s, tc);
    return s;
}
