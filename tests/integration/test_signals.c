/*
 * test_signals.c — the signal contract of DESIGN §5, end to end: scaling
 * (TTIN/TTOU), reload (HUP), quiet (TSTP/CONT), and the same signals with
 * the supervisor as PID 1 of a new PID namespace. The pool's size is read
 * from the database (the workers' connections in pg_stat_activity), task
 * outcomes from pgwork.tasks.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

/* The results table the sql queues write into. */
#define RESULTS_TABLE "CREATE TABLE results (task bigint, q text)"

static const char *signals_config_text(int count, const char *extra_queue)
{
    return harness_printf("workers { count = %d min = 1 max = 3 }\n"
                          "log { format = \"text\" }\n"
                          "queue \"a\" { handler = \"sql\" "
                          "statement = \"INSERT INTO results VALUES ($2, 'a')\" }\n"
                          "%s",
                          count, extra_queue);
}

/* A supervisor on a new database (RESULTS_TABLE) with config_text,
 * spawned with opts (may be NULL), once `workers` workers are connected. */
static struct harness_run *signals_run(const char *config_text,
                                       const struct harness_spawn_opts *opts, int workers)
{
    struct harness_run *run = harness_run_database(RESULTS_TABLE);
    run->config = harness_write_config(config_text);
    run->sup = harness_spawn_supervisor_opts(run->config, run->conninfo, opts);
    harness_wait_workers(run->conn, run->sup, workers);
    return run;
}

static void signals_rewrite(const char *path, const char *text)
{
    /* As harness_write_config() does: no HTTP endpoint in the tests. */
    harness_write_file(path, harness_printf("%shttp { listen = \"\" }\n", text));
}

START_TEST(ttin_ttou_within_bounds)
{
    struct harness_run *run = signals_run(signals_config_text(2, ""), NULL, 2);
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;

    harness_signal_and_wait(sup, sup->pid, SIGTTIN, "pool scaled to 3 workers");
    harness_wait_workers(conn, sup, 3);
    harness_signal_and_wait(sup, sup->pid, SIGTTIN, "pool stays at 3 workers");
    harness_signal_and_wait(sup, sup->pid, SIGTTOU, "pool scaled to 2 workers");
    harness_signal_and_wait(sup, sup->pid, SIGTTOU, "pool scaled to 1 worker");
    harness_wait_workers(conn, sup, 1);
    harness_signal_and_wait(sup, sup->pid, SIGTTOU, "pool stays at 1 worker");

    /* The one left still works. */
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) SELECT 'a' FROM generate_series(1, 20)");
    ck_assert(harness_wait_until(conn, "SELECT count(*) FROM results", 20, 15000));
    ck_assert_int_eq(harness_query_int64(conn, HARNESS_WORKERS_SQL), 1);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

/* TTOU gives up the highest slot (test_pool.c: never a lower idle one, so
 * queues served by low slots keep their workers); whichever worker that is,
 * the running task is not cut short: a busy worker finishes it first. */
START_TEST(ttou_never_cuts_a_running_task)
{
    const char *gate = harness_printf("%s/gate", harness_tmpdir());
    const char *started = harness_printf("%s/started", harness_tmpdir());
    /* The task runs until the test opens the gate (a file), so it is
     * surely running while TTOU arrives. */
    struct harness_run *run = signals_run(
        harness_printf("workers { count = 2 min = 1 max = 3 }\n"
                       "queue \"slow\" { handler = \"exec\" command = {\"/bin/sh\", \"-c\", "
                       "\"touch %s; while [ ! -e %s ]; do sleep 0.02; done\"} }\n",
                       started, gate),
        NULL, 2);
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('slow')");
    ck_assert(harness_wait_file(started, 10000));
    harness_signal_and_wait(sup, sup->pid, SIGTTOU, "pool scaled to 1 worker");
    /* The running task was not touched: still running on its first
     * attempt, and it finishes. */
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks "
                                               "WHERE state = 'running' AND attempts = 1"),
                     1);
    signals_rewrite(gate, "");
    ck_assert(harness_wait_until(conn,
                                 "SELECT count(*) FROM pgwork.tasks WHERE state = 'done' "
                                 "AND attempts = 1",
                                 1, 15000));
    harness_wait_workers(conn, sup, 1);
    /* The one that went is slot 1, the top, and it went cleanly. */
    ck_assert(harness_stderr_wait_for(sup, ") retired: exit status 0", 10000));
    const char *text = harness_stderr_text(sup);
    const char *retired = strstr(text, ") retired: exit status 0");
    const char *line = retired;
    while (line > text && line[-1] != '\n')
        line--;
    ck_assert_msg(strstr(line, "worker 1 (pid") != NULL && strstr(line, "worker 1 (pid") < retired,
                  "not slot 1 retired: %.*s", (int)(retired - line), line);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

START_TEST(hup_applies_valid_and_keeps_on_invalid)
{
    struct harness_run *run = signals_run(signals_config_text(1, ""), NULL, 1);
    PGconn *conn = run->conn;
    const char *config = run->config;
    struct harness_supervisor *sup = run->sup;

    /* A broken file: nothing changes, the log names file and line. */
    signals_rewrite(config, "workers { count = 3 }\nqueue \"b\" { handler = \"exec\" }\n");
    harness_signal_and_wait(sup, sup->pid, SIGHUP, "reload failed");
    ck_assert_ptr_nonnull(strstr(harness_stderr_text(sup), harness_printf("%s:2:", config)));
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('a')");
    ck_assert(harness_wait_until(conn, "SELECT count(*) FROM results WHERE q = 'a'", 1, 10000));
    ck_assert_int_eq(harness_query_int64(conn, HARNESS_WORKERS_SQL), 1);

    /* A valid one: three workers, and a new queue served. */
    signals_rewrite(config, signals_config_text(3, "queue \"b\" { handler = \"sql\" statement = "
                                                   "\"INSERT INTO results VALUES ($2, 'b')\" }\n"));
    size_t before_reload = strlen(harness_stderr_text(sup));
    harness_signal_and_wait(sup, sup->pid, SIGHUP, "reloaded");
    harness_wait_workers(conn, sup, 3);
    /* The one worker that ran the old config was replaced, gracefully
     * (exit 0 after SIGTERM), and only after the reload. */
    const char *after = harness_stderr_text(sup) + before_reload;
    int64_t roll_deadline = harness_now_ms() + 10000;
    while (strstr(after, "onto the new configuration") == NULL ||
           strstr(strstr(after, "onto the new configuration"), "stopped: exit status 0") == NULL) {
        if (harness_now_ms() > roll_deadline) {
            harness_stderr_dump(sup);
            ck_abort_msg("worker 0 was not rolled");
        }
        usleep(5000);
        after = harness_stderr_text(sup) + before_reload;
    }
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) SELECT q FROM (VALUES ('a'), ('b')) v(q), "
                       "generate_series(1, 10)");
    if (!harness_wait_until(conn, "SELECT count(*) FROM results", 21, 15000)) {
        harness_stderr_dump(sup);
        ck_abort_msg("tasks not done after reload");
    }
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM results WHERE q = 'b'"), 10);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

START_TEST(tstp_quiet_then_cont_resumes)
{
    struct harness_run *run = signals_run(signals_config_text(2, ""), NULL, 2);
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;

    harness_signal_and_wait(sup, sup->pid, SIGTSTP, "quiet:");
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('a')");
    /* Quiet is the absence of an event: give it a window in which a
     * working pod would have finished the task many times over. */
    ck_assert(!harness_wait_until(conn, "SELECT count(*) FROM results", 1, 1000));
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks "
                                               "WHERE state = 'pending'"),
                     1);
    harness_signal_and_wait(sup, sup->pid, SIGCONT, "resumed");
    ck_assert(harness_wait_until(conn, "SELECT count(*) FROM results", 1, 10000));
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

START_TEST(signals_as_pid1_in_namespace)
{
    if (geteuid() != 0) {
        harness_skip("signals_as_pid1_in_namespace", "needs root (unshare --pid)");
        return;
    }
    static const char *const wrapper[] = {"unshare", "--pid", "--fork", "--mount-proc", NULL};
    struct harness_run *run = signals_run(signals_config_text(1, ""),
                                          &(struct harness_spawn_opts){.wrapper = wrapper}, 1);
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    pid_t pid1 = harness_child_of(sup->pid, 10000);
    /* It is PID 1 where it runs. */
    ck_assert_ptr_nonnull(strstr(harness_stderr_text(sup), "supervisor[1]"));

    harness_signal_and_wait(sup, pid1, SIGTTIN, "pool scaled to 2 workers");
    harness_wait_workers(conn, sup, 2);
    harness_signal_and_wait(sup, pid1, SIGTTOU, "pool scaled to 1 worker");
    harness_wait_workers(conn, sup, 1);
    harness_signal_and_wait(sup, pid1, SIGTTIN, "pool scaled to 2 workers");
    harness_wait_workers(conn, sup, 2);
    harness_signal_and_wait(sup, pid1, SIGUSR1, "status worker 1:");
    harness_signal_and_wait(sup, pid1, SIGTSTP, "quiet:");
    harness_signal_and_wait(sup, pid1, SIGCONT, "resumed");
    harness_signal_and_wait(sup, pid1, SIGHUP, "reloaded");
    harness_wait_workers(conn, sup, 1); /* the file says count = 1 */
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) SELECT 'a' FROM generate_series(1, 5)");
    ck_assert(harness_wait_until(conn, "SELECT count(*) FROM results", 5, 15000));

    ck_assert_int_eq(kill(pid1, SIGTERM), 0);
    /* unshare exits with its child's status. */
    ck_assert_int_eq(harness_stop_supervisor(sup, 0, 20000), 0);
    ck_assert_ptr_nonnull(strstr(harness_stderr_text(sup), "exiting with status 0"));
}
END_TEST

START_TEST(sigquit_as_pid1_requeues_and_exits_0)
{
    if (geteuid() != 0) {
        harness_skip("sigquit_as_pid1_requeues_and_exits_0", "needs root (unshare --pid)");
        return;
    }
    const char *started = harness_printf("%s/started", harness_tmpdir());
    static const char *const wrapper[] = {"unshare", "--pid", "--fork", "--mount-proc", NULL};
    struct harness_run *run = signals_run(
        harness_printf("workers { count = 1 }\n"
                       "queue \"slow\" { handler = \"exec\" command = {\"/bin/sh\", \"-c\", "
                       "\"touch %s; sleep 60\"} }\n",
                       started),
        &(struct harness_spawn_opts){.wrapper = wrapper}, 1);
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    pid_t pid1 = harness_child_of(sup->pid, 10000);
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('slow')");
    ck_assert(harness_wait_file(started, 10000));
    ck_assert_int_eq(kill(pid1, SIGQUIT), 0);
    /* Fast: the 60 s handler is killed, its task released untried. */
    ck_assert_int_eq(harness_stop_supervisor(sup, 0, 10000), 0);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks "
                                               "WHERE state = 'pending' AND attempts = 0"),
                     1);
}
END_TEST

Suite *signals_suite(void)
{
    Suite *s = suite_create("signals");
    TCase *tc = harness_tcase("signals");
    tcase_add_test(tc, ttin_ttou_within_bounds);
    tcase_add_test(tc, ttou_never_cuts_a_running_task);
    tcase_add_test(tc, hup_applies_valid_and_keeps_on_invalid);
    tcase_add_test(tc, tstp_quiet_then_cont_resumes);
    tcase_add_test(tc, signals_as_pid1_in_namespace);
    tcase_add_test(tc, sigquit_as_pid1_requeues_and_exits_0);
    suite_add_tcase(s, tc);
    return s;
}
