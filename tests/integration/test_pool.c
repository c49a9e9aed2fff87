/*
 * test_pool.c — the worker pool (issue 10): scaling down never strands a
 * queue that only the low slots serve, and workers' lock tags tell two
 * incarnations of a pod apart. Outcomes are read from the database (tasks,
 * rows the handlers wrote, the workers' connections); the supervisor's log
 * only synchronises (a signal was handled, USR1's status of a slot).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

static const char workers_sql[] = "SELECT count(*) FROM pg_stat_activity "
                                  "WHERE application_name LIKE 'pgwork worker%' "
                                  "AND datname = current_database()";

static const char *pool_database(PGconn **conn)
{
    const char *conninfo = harness_db_create(NULL);
    ck_assert_int_eq(harness_migrate(conninfo), 0);
    *conn = harness_connect(conninfo);
    harness_exec(*conn, "CREATE TABLE results (task bigint, q text)");
    return conninfo;
}

static void pool_wait_workers(PGconn *conn, struct harness_supervisor *sup, int expected)
{
    if (!harness_wait_until(conn, workers_sql, expected, 15000)) {
        harness_stderr_dump(sup);
        ck_abort_msg("expected %d worker connections, have %lld", expected,
                     (long long)harness_query_int64(conn, workers_sql));
    }
}

/* Send sig and wait for line to appear in the supervisor's output after it. */
static void pool_signal_and_wait(struct harness_supervisor *sup, int sig, const char *line)
{
    size_t before = strlen(harness_stderr_text(sup));
    ck_assert_int_eq(kill(sup->pid, sig), 0);
    int64_t deadline = harness_now_ms() + 10000;
    while (strstr(harness_stderr_text(sup) + before, line) == NULL) {
        if (harness_now_ms() > deadline) {
            harness_stderr_dump(sup);
            ck_abort_msg("no \"%s\" after signal %d", line, sig);
        }
        usleep(5000);
    }
}

/* Ask for USR1 status lines until `status worker <slot>: ... state=<state>`
 * shows up (the shm state the supervisor reads). */
static void pool_wait_slot_state(struct harness_supervisor *sup, int slot, const char *state)
{
    const char *prefix = harness_printf("status worker %d:", slot);
    const char *want = harness_printf("state=%s ", state);
    int64_t deadline = harness_now_ms() + 10000;
    for (;;) {
        size_t before = strlen(harness_stderr_text(sup));
        ck_assert_int_eq(kill(sup->pid, SIGUSR1), 0);
        ck_assert(harness_stderr_wait_for(sup, "status queue", 10000));
        const char *line = strstr(harness_stderr_text(sup) + before, prefix);
        if (line != NULL) {
            const char *end = strchr(line, '\n');
            const char *found = strstr(line, want);
            if (found != NULL && (end == NULL || found < end))
                return;
        }
        if (harness_now_ms() > deadline) {
            harness_stderr_dump(sup);
            ck_abort_msg("worker %d never reported state %s", slot, state);
        }
        usleep(20000);
    }
}

static void pool_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_ge(fputs(text, f), 0);
    ck_assert_int_eq(fclose(f), 0);
}

/* Poll (5 ms) until path exists; false after timeout_ms. */
static bool pool_wait_file(const char *path, int timeout_ms)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    while (access(path, F_OK) != 0) {
        if (harness_now_ms() > deadline)
            return false;
        usleep(5000);
    }
    return true;
}

/*
 * Two workers; queue "only0" is served by slot 0 alone (workers = 1), queue
 * "slow" by both: each slow task runs until the test opens its gate (a file
 * named after its id). The safety poll is far away, so only a worker that
 * is there and is woken can pick a task up in time.
 */
static const char *strand_config_text(int count)
{
    const char *dir = harness_tmpdir();
    return harness_printf(
        "workers { count = %d min = 1 max = 3 safety_poll_interval = 10m }\n"
        "log { format = \"text\" }\n"
        "http { listen = \"\" }\n"
        "queue \"slow\" { handler = \"exec\" batch = 1 command = {\"/bin/sh\", \"-c\", "
        "\"touch %s/started_$PGWORK_TASK_ID; "
        "while [ ! -e %s/gate_$PGWORK_TASK_ID ]; do sleep 0.02; done\"} }\n"
        "queue \"only0\" { handler = \"sql\" workers = 1 "
        "statement = \"INSERT INTO results VALUES ($2, 'only0')\" }\n",
        count, dir, dir);
}

struct strand {
    PGconn *conn;
    struct harness_supervisor *sup;
    const char *config;
    long long task_on_1; /* the slow task slot 1 runs */
};

/* Bring the pod to: slot 1 busy with a slow task, slot 0 idle. */
static void strand_setup(struct strand *st)
{
    const char *conninfo = pool_database(&st->conn);
    st->config = harness_write_config(strand_config_text(2));
    st->sup = harness_spawn_supervisor(st->config, conninfo);
    ck_assert(harness_stderr_wait_for(st->sup, "listening on channel", 15000));
    pool_wait_workers(st->conn, st->sup, 2);

    /* Batch 1: slot 0 claims one and, its batch full, has slot 1 woken
     * for the other. Both run. */
    harness_exec(st->conn, "INSERT INTO pgwork.tasks (queue) VALUES ('slow'), ('slow')");
    if (!harness_wait_until(st->conn,
                            "SELECT count(DISTINCT split_part(locked_by, '/', 2)) "
                            "FROM pgwork.tasks WHERE state = 'running'",
                            2, 15000)) {
        harness_stderr_dump(st->sup);
        ck_abort_msg("the two slow tasks are not running on two workers");
    }
    long long on_0 = harness_query_int64(st->conn, "SELECT id FROM pgwork.tasks WHERE state = "
                                                   "'running' AND split_part(locked_by, '/', 2) "
                                                   "= '0'");
    st->task_on_1 = harness_query_int64(st->conn, "SELECT id FROM pgwork.tasks WHERE state = "
                                                  "'running' AND split_part(locked_by, '/', 2) "
                                                  "= '1'");
    ck_assert(pool_wait_file(harness_printf("%s/started_%lld", harness_tmpdir(), on_0), 10000));
    pool_write_file(harness_printf("%s/gate_%lld", harness_tmpdir(), on_0), "");
    ck_assert(harness_wait_until(st->conn, "SELECT count(*) FROM pgwork.tasks WHERE state = 'done'",
                                 1, 15000));
    pool_wait_slot_state(st->sup, 0, "idle");
}

/* After the scale-down: a task for "only0" is picked up promptly, the slow
 * task finishes on its first attempt, and one worker is left. */
static void strand_check(struct strand *st)
{
    harness_exec(st->conn, "INSERT INTO pgwork.tasks (queue) VALUES ('only0')");
    if (!harness_wait_until(st->conn, "SELECT count(*) FROM results WHERE q = 'only0'", 1, 10000)) {
        harness_stderr_dump(st->sup);
        ck_abort_msg("the only0 task was not picked up within 10 s of the scale-down (%lld "
                     "worker connections)",
                     (long long)harness_query_int64(st->conn, workers_sql));
    }
    /* The busy top slot was retired gracefully: its task still runs. */
    ck_assert_int_eq(harness_query_int64(st->conn, "SELECT count(*) FROM pgwork.tasks "
                                                   "WHERE state = 'running' AND attempts = 1"),
                     1);
    pool_write_file(harness_printf("%s/gate_%lld", harness_tmpdir(), st->task_on_1), "");
    ck_assert(harness_wait_until(st->conn,
                                 "SELECT count(*) FROM pgwork.tasks WHERE state = 'done' "
                                 "AND attempts = 1",
                                 3, 15000));
    pool_wait_workers(st->conn, st->sup, 1);
    /* The worker left is slot 0, and it still serves "only0". */
    harness_exec(st->conn, "INSERT INTO pgwork.tasks (queue) VALUES ('only0')");
    ck_assert(
        harness_wait_until(st->conn, "SELECT count(*) FROM results WHERE q = 'only0'", 2, 10000));
    ck_assert_int_eq(harness_stop_supervisor(st->sup, SIGTERM, 20000), 0);
}

START_TEST(ttou_keeps_low_slot_queue_served)
{
    struct strand st;
    strand_setup(&st);
    pool_signal_and_wait(st.sup, SIGTTOU, "pool scaled to 1 worker");
    strand_check(&st);
}
END_TEST

START_TEST(hup_lowering_count_keeps_low_slot_queue_served)
{
    struct strand st;
    strand_setup(&st);
    pool_write_file(st.config, strand_config_text(1));
    pool_signal_and_wait(st.sup, SIGHUP, "reloaded");
    strand_check(&st);
}
END_TEST

Suite *pool_suite(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = harness_tcase("pool");
    tcase_add_test(tc, ttou_keeps_low_slot_queue_served);
    tcase_add_test(tc, hup_lowering_count_keeps_low_slot_queue_served);
    suite_add_tcase(s, tc);
    return s;
}
