/*
 * test_doorbell.c — the doorbell (DESIGN §1.8, migration 0008): a pod arms
 * a queue in pgwork.doorbell while an idle worker waits on it, the insert
 * trigger rings one armed pod, the pod disarms when its last idle worker
 * is woken, arms again when one goes idle, and probes after each arm.
 *
 * Interleavings are forced with locks, not timing: a trigger on
 * pgwork.doorbell makes the pod's arm wait for an advisory lock the test
 * holds.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

/* The advisory lock an arm waits for while the test holds it. */
#define ARM_LOCK "4242"

/* An arm (a row written armed) waits for the test's advisory lock; a
 * disarm goes through. */
#define ARM_GATE_SCHEMA                                                                            \
    "CREATE FUNCTION arm_gate() RETURNS trigger LANGUAGE plpgsql AS $$"                            \
    " BEGIN IF NEW.armed THEN PERFORM pg_advisory_xact_lock_shared(" ARM_LOCK "); END IF;"         \
    " RETURN NEW; END $$;"                                                                         \
    " CREATE TRIGGER arm_gate BEFORE INSERT OR UPDATE ON pgwork.doorbell"                          \
    " FOR EACH ROW EXECUTE FUNCTION arm_gate()"

/* The pod's arm, waiting for the test's advisory lock. */
#define ARM_WAITING                                                                                \
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"                     \
    " AND application_name = 'pgwork listener' AND wait_event_type = 'Lock'"                       \
    " AND wait_event = 'advisory'"

#define ARMED(queue) "SELECT count(*) FROM pgwork.doorbell WHERE queue = '" queue "' AND armed"

#define DONE "SELECT count(*) FROM pgwork.tasks WHERE state = 'done'"

/*
 * The race the probe closes: a task committed after the worker's last
 * claim and before its arm committed rings nobody (the queue was
 * disarmed: its only worker had been woken). The arm is held back by the
 * test's lock while the task commits; once the arm commits, the pod's
 * probe finds the task. Without the probe it waits for the safety poll
 * (an hour here).
 */
START_TEST(probe_after_arm_finds_the_task_no_ring_announced)
{
    struct harness_run *run = harness_scenario(
        &(struct harness_scenario){.schema = ARM_GATE_SCHEMA,
                                   .workers = "count = 1 max = 1 safety_poll_interval = 1h",
                                   .script = "cat >/dev/null",
                                   .wait_for = "listening on channel",
                                   .idle = 1});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    harness_expect(conn, sup, ARMED("q"), 1, 10000, "the idle pod arms q");

    PGconn *gate = harness_connect(run->conninfo);
    harness_exec(gate, "SELECT pg_advisory_lock(" ARM_LOCK ")");

    /* A rings the pod; its only worker is woken, so q is disarmed; the
     * worker runs A, finds nothing more, goes idle, and the pod's arm
     * waits for the gate. */
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue, payload) VALUES ('q', '{\"t\": \"A\"}')");
    harness_expect(conn, sup, DONE, 1, 10000, "task A runs");
    harness_expect(conn, sup, ARM_WAITING, 1, 10000, "the arm after A waits for the gate");
    ck_assert_int_eq(harness_query_int64(conn, ARMED("q")), 0);

    /* B commits between the worker's last claim and the arm: no ring. */
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue, payload) VALUES ('q', '{\"t\": \"B\"}')");
    ck_assert_int_eq(harness_query_int64(conn, DONE), 1);

    harness_exec(gate, "SELECT pg_advisory_unlock(" ARM_LOCK ")");
    harness_expect(conn, sup, ARMED("q"), 1, 5000, "the arm commits");
    harness_expect(conn, sup, DONE, 2, 5000, "task B, found by the probe after the arm");
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

/* The notifications on channel seen by listener up to a marker sent after
 * them (delivery is in commit order): how many. */
static int count_notifications(PGconn *conn, PGconn *listener, const char *channel)
{
    harness_exec(conn, harness_printf("SELECT pg_notify('%s', 'test-marker')", channel));
    int n = 0;
    for (;;) {
        const char *payload = harness_notify_wait(listener, 10000, NULL);
        ck_assert_msg(payload != NULL, "no marker notification");
        if (strcmp(payload, "test-marker") == 0)
            return n;
        n++;
    }
}

/*
 * While every worker is busy the queue is disarmed and inserts send
 * nothing (no notify lock taken); when the worker goes idle again the pod
 * arms again, and the next insert rings it.
 */
START_TEST(busy_pod_is_disarmed_and_inserts_are_silent)
{
    struct harness_run *run = harness_scenario(&(struct harness_scenario){
        .workers = "count = 1 max = 1 safety_poll_interval = 1h",
        .script = harness_printf("cat >/dev/null; while [ ! -e %s/go ]; do sleep 0.02; done",
                                 harness_tmpdir()),
        .queue = "batch = 1",
        .wait_for = "listening on channel",
        .idle = 1});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    harness_expect(conn, sup, ARMED("q"), 1, 10000, "the idle pod arms q");
    const char *channel =
        harness_query_text(conn, "SELECT channel FROM pgwork.doorbell WHERE queue = 'q'");
    ck_assert_msg(strncmp(channel, "pgwork_ring_", 12) == 0, "channel %s", channel);
    PGconn *listener = harness_connect(run->conninfo);
    harness_listen(listener, channel);
    PGconn *shared = harness_connect(run->conninfo);
    harness_listen(shared, "pgwork_tasks");

    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('q')");
    harness_expect(conn, sup, "SELECT count(*) FROM pgwork.tasks WHERE state = 'running'", 1, 10000,
                   "the first task runs");
    harness_expect(conn, sup, ARMED("q"), 0, 5000, "its worker busy, the pod disarms q");
    ck_assert_int_eq(count_notifications(conn, listener, channel), 1);

    for (int i = 0; i < 20; i++)
        harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('q')");
    ck_assert_int_eq(count_notifications(conn, listener, channel), 0);
    ck_assert_int_eq(count_notifications(conn, shared, "pgwork_tasks"), 0);

    harness_write_file(harness_printf("%s/go", harness_tmpdir()), "");
    harness_expect(conn, sup, DONE, 21, 20000, "the busy worker finds all 20 by itself");
    harness_expect(conn, sup, ARMED("q"), 1, 5000, "idle again, the pod arms q again");
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('q')");
    harness_expect(conn, sup, DONE, 22, 5000, "the next insert rings it");
    ck_assert_int_eq(count_notifications(conn, listener, channel), 1);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

/* pgwork.notify = on forces a notification on the shared channel, armed
 * or not; off silences even an armed queue; unset, an unarmed queue rings
 * nobody. */
START_TEST(notify_on_forces_off_silences)
{
    PGconn *conn;
    const char *conninfo = harness_db_migrated(&conn, NULL, NULL);
    PGconn *listener = harness_connect(conninfo);
    harness_listen(listener, "pgwork_tasks");

    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('q')");
    ck_assert_int_eq(count_notifications(conn, listener, "pgwork_tasks"), 0);
    harness_exec(conn, "BEGIN; SET LOCAL pgwork.notify = on; "
                       "INSERT INTO pgwork.tasks (queue) SELECT 'q' FROM generate_series(1, 3); "
                       "COMMIT");
    const char *payload = harness_notify_wait(listener, 5000, NULL);
    ck_assert_msg(payload != NULL && strcmp(payload, "0 q") == 0, "got %s",
                  payload ? payload : "nothing");
    ck_assert_int_eq(count_notifications(conn, listener, "pgwork_tasks"), 0);

    harness_exec(conn, harness_printf("INSERT INTO pgwork.doorbell (queue, pod, channel, "
                                      "backend_pid, backend_start, armed) SELECT 'q', 'test', "
                                      "'pgwork_tasks', pid, backend_start, true "
                                      "FROM pg_stat_activity WHERE pid = %d",
                                      PQbackendPID(listener)));
    harness_exec(conn, "SET pgwork.notify = off");
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('q')");
    ck_assert_int_eq(count_notifications(conn, listener, "pgwork_tasks"), 0);
    harness_exec(conn, "RESET pgwork.notify");
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('q')");
    ck_assert_int_eq(count_notifications(conn, listener, "pgwork_tasks"), 1);
}
END_TEST

Suite *doorbell_suite(void)
{
    Suite *s = suite_create("doorbell");
    TCase *tc = harness_tcase("doorbell");
    tcase_add_test(tc, probe_after_arm_finds_the_task_no_ring_announced);
    tcase_add_test(tc, busy_pod_is_disarmed_and_inserts_are_silent);
    tcase_add_test(tc, notify_on_forces_off_silences);
    suite_add_tcase(s, tc);
    return s;
}
