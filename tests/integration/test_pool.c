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

/* The results table the handlers write into. */
#define RESULTS_TABLE "CREATE TABLE results (task bigint, q text)"

/* Ask for USR1 status lines until slot's shows state (the shm state the
 * supervisor reads); fails after 10 s. */
static void pool_wait_slot_state(struct harness_supervisor *sup, int slot, const char *state)
{
    int64_t deadline = harness_now_ms() + 10000;
    for (;;) {
        struct harness_worker w[HARNESS_MAX_WORKERS];
        harness_status(sup, w);
        if (w[slot].listed && strcmp(w[slot].state, state) == 0)
            return;
        if (harness_now_ms() > deadline) {
            harness_stderr_dump(sup);
            ck_abort_msg("worker %d never reported state %s", slot, state);
        }
        usleep(20000);
    }
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
    const char *conninfo = harness_db_migrated(&st->conn, NULL, RESULTS_TABLE);
    st->config = harness_write_config(strand_config_text(2));
    st->sup = harness_spawn_supervisor(st->config, conninfo);
    ck_assert(harness_stderr_wait_for(st->sup, "listening on channel", 15000));
    harness_wait_workers(st->conn, st->sup, 2);

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
    ck_assert(harness_wait_file(harness_printf("%s/started_%lld", harness_tmpdir(), on_0), 10000));
    harness_write_file(harness_printf("%s/gate_%lld", harness_tmpdir(), on_0), "");
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
                     (long long)harness_query_int64(st->conn, HARNESS_WORKERS_SQL));
    }
    /* The busy top slot was retired gracefully: its task still runs. */
    ck_assert_int_eq(harness_query_int64(st->conn, "SELECT count(*) FROM pgwork.tasks "
                                                   "WHERE state = 'running' AND attempts = 1"),
                     1);
    harness_write_file(harness_printf("%s/gate_%lld", harness_tmpdir(), st->task_on_1), "");
    ck_assert(harness_wait_until(st->conn,
                                 "SELECT count(*) FROM pgwork.tasks WHERE state = 'done' "
                                 "AND attempts = 1",
                                 3, 15000));
    harness_wait_workers(st->conn, st->sup, 1);
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
    harness_signal_and_wait(st.sup, st.sup->pid, SIGTTOU, "pool scaled to 1 worker");
    strand_check(&st);
}
END_TEST

START_TEST(hup_lowering_count_keeps_low_slot_queue_served)
{
    struct strand st;
    strand_setup(&st);
    harness_write_file(st.config, strand_config_text(1));
    harness_signal_and_wait(st.sup, st.sup->pid, SIGHUP, "reloaded");
    strand_check(&st);
}
END_TEST

/* --- incarnations ---------------------------------------------------------- */

/* A supervisor as a container runs it: PID 1 of a new PID namespace, with a
 * hostname of its own (the same for every start, as a pod's). */
static struct harness_supervisor *pool_spawn_pod(const char *config, const char *conninfo,
                                                 pid_t *pid1)
{
    static const char *const wrapper[] = {"unshare",
                                          "--uts",
                                          "--pid",
                                          "--fork",
                                          "--mount-proc",
                                          "sh",
                                          "-c",
                                          "hostname pgwork-pod && exec \"$0\" \"$@\"",
                                          NULL};
    struct harness_spawn_opts opts = {.wrapper = wrapper};
    struct harness_supervisor *sup = harness_spawn_supervisor_opts(config, conninfo, &opts);
    *pid1 = harness_child_of(sup->pid, 10000);
    ck_assert(harness_stderr_wait_for(sup, "listening on channel", 15000));
    return sup;
}

/* Every task as "id state attempts locked_by", for failure messages. */
static const char *pool_tasks_text(PGconn *conn)
{
    return harness_query_text(conn, "SELECT string_agg(id || ' ' || state || ' ' || attempts "
                                    "|| ' ' || coalesce(locked_by, '-'), '; ' ORDER BY id) "
                                    "FROM pgwork.tasks");
}

/* Wait for the gated handler of task to have started. */
static void pool_wait_started(struct harness_supervisor *sup, PGconn *conn, long long task)
{
    if (harness_wait_file(harness_printf("%s/started_%lld", harness_tmpdir(), task), 20000))
        return;
    harness_stderr_dump(sup);
    ck_abort_msg("task %lld did not start within 20 s: %s", task, pool_tasks_text(conn));
}

static const char *pool_owner_of(PGconn *conn, long long task)
{
    const char *id = harness_printf("%lld", task);
    const char *params[] = {id};
    return harness_query_textp(conn, "SELECT locked_by FROM pgwork.tasks WHERE id = $1", 1, params);
}

/*
 * A pod killed outright and started again: same hostname, PID 1 again, and
 * (the same processes started in the same order) the same worker pid. The
 * new worker must not carry the dead one's tag: the lease renewal, which
 * goes by tag, would keep the dead pod's running task alive for as long as
 * the namesake is busy, and nobody would ever take it back.
 */
START_TEST(restarted_pod_tags_workers_apart)
{
    if (geteuid() != 0) {
        harness_skip("restarted_pod_tags_workers_apart", "needs root (unshare)");
        return;
    }
    PGconn *conn;
    const char *conninfo = harness_db_migrated(&conn, NULL, RESULTS_TABLE);
    const char *dir = harness_tmpdir();
    const char *config = harness_write_config(
        harness_printf("workers { count = 1 lease = 15s safety_poll_interval = 1s }\n"
                       "log { format = \"text\" }\n"
                       "queue \"gated\" { handler = \"exec\" command = {\"/bin/sh\", \"-c\", "
                       "\"touch %s/started_$PGWORK_TASK_ID; "
                       "while [ ! -e %s/gate_$PGWORK_TASK_ID ]; do sleep 0.02; done\"} }\n",
                       dir, dir));

    /* The first incarnation starts a task and dies with it running. */
    pid_t pid1;
    struct harness_supervisor *first = pool_spawn_pod(config, conninfo, &pid1);
    long long dead_task =
        harness_query_int64(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('gated') RETURNING id");
    pool_wait_started(first, conn, dead_task);
    const char *dead_owner = pool_owner_of(conn, dead_task);
    /* The whole pod at once, as when its node goes: the worker frozen
     * first, or it may see its supervisor die and give the task back
     * (released to pending) before the namespace's SIGKILL reaches it. */
    ck_assert_int_eq(kill(harness_child_of(pid1, 10000), SIGSTOP), 0);
    ck_assert_int_eq(kill(pid1, SIGKILL), 0);
    ck_assert_int_ne(harness_stop_supervisor(first, 0, 10000), -1);
    /* Dead with its task: still running under the dead worker's tag. */
    const char *still = pool_tasks_text(conn);
    ck_assert_msg(strcmp(still, harness_printf("%lld running 1 %s", dead_task, dead_owner)) == 0,
                  "after the kill the table holds: %s", still);

    /* The second one, busy with a task of its own. */
    struct harness_supervisor *second = pool_spawn_pod(config, conninfo, &pid1);
    long long live_task =
        harness_query_int64(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('gated') RETURNING id");
    pool_wait_started(second, conn, live_task);
    const char *live_owner = pool_owner_of(conn, live_task);

    /* The setting is the one that matters: what the old tag held (pod,
     * slot, pid) is the same in both... */
    const char *same_sql = "SELECT count(DISTINCT (split_part(locked_by, '/', 2), "
                           "split_part(locked_by, '/', 3))) FROM pgwork.tasks "
                           "WHERE state = 'running'";
    ck_assert_msg(harness_query_int64(conn, same_sql) == 1,
                  "the two incarnations' workers differ in slot or pid (%s, %s): the test "
                  "does not reproduce a restarted pod",
                  dead_owner, live_owner);
    ck_assert_ptr_nonnull(strstr(dead_owner, "pgwork-pod"));
    /* ...and yet the tags differ. */
    ck_assert_msg(strcmp(dead_owner, live_owner) != 0,
                  "two incarnations of the pod tagged their worker alike: %s", dead_owner);
    /* So the dead one's task is taken back when its lease runs out, while
     * the namesake still runs and renews its own. */
    if (!harness_wait_until(conn,
                            harness_printf("SELECT count(*) FROM pgwork.tasks WHERE id = %lld "
                                           "AND state = 'pending'",
                                           dead_task),
                            1, 40000)) {
        harness_stderr_dump(second);
        ck_abort_msg("the dead incarnation's task is still %s 40 s later (lease 15 s)",
                     harness_query_text(conn, harness_printf("SELECT state || ' until ' || "
                                                             "locked_until FROM pgwork.tasks "
                                                             "WHERE id = %lld",
                                                             dead_task)));
    }
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks "
                                               "WHERE state = 'running'"),
                     1);
    harness_write_file(harness_printf("%s/gate_%lld", dir, live_task), "");
    harness_write_file(harness_printf("%s/gate_%lld", dir, dead_task), "");
    ck_assert(harness_wait_until(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = 'done'", 2,
                                 15000));
    ck_assert_int_eq(kill(pid1, SIGTERM), 0);
    ck_assert_int_eq(harness_stop_supervisor(second, 0, 20000), 0);
}
END_TEST

Suite *pool_suite(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = harness_tcase("pool");
    tcase_add_test(tc, ttou_keeps_low_slot_queue_served);
    tcase_add_test(tc, hup_lowering_count_keeps_low_slot_queue_served);
    tcase_add_test(tc, restarted_pod_tags_workers_apart);
    suite_add_tcase(s, tc);
    return s;
}
