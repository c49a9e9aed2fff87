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

/* Doorbell probes (doorbell.c's probe statement) this database has run,
 * from pg_stat_statements (the scenario's schema creates it). */
#define PROBES                                                                                     \
    "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements s"                             \
    " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database()"                   \
    " AND s.query LIKE 'SELECT q.name,%'"

/*
 * A pod whose only worker ran task A and waits for its arm, held back by
 * the test's advisory lock (gate_schema's trigger on pgwork.doorbell);
 * the safety poll an hour. A runs until the pod has written its disarm
 * (its only worker was woken): a task that ended first would leave the
 * row armed and nothing to hold back. The gate connection into *gate.
 */
static struct harness_run *arm_held_back_by(PGconn **gate, const char *gate_schema)
{
    const char *a_may_end = harness_printf("%s/a-may-end", harness_tmpdir());
    struct harness_run *run = harness_scenario(&(struct harness_scenario){
        .schema =
            harness_printf("CREATE EXTENSION IF NOT EXISTS pg_stat_statements; %s", gate_schema),
        .workers = "count = 1 max = 1 safety_poll_interval = 1h",
        .script =
            harness_printf("cat >/dev/null; while [ ! -e %s ]; do sleep 0.01; done", a_may_end),
        .wait_for = "listening on channel",
        .idle = 1});
    PGconn *conn = run->conn;
    harness_expect(conn, run->sup, ARMED("q"), 1, 10000, "the idle pod arms q");
    *gate = harness_connect(run->conninfo);
    harness_exec(*gate, "SELECT pg_advisory_lock(" ARM_LOCK ")");
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue, payload) VALUES ('q', '{\"t\": \"A\"}')");
    harness_expect(conn, run->sup, ARMED("q"), 0, 10000, "A running, the pod disarms q");
    harness_write_file(a_may_end, "");
    harness_expect(conn, run->sup, DONE, 1, 10000, "task A runs");
    harness_expect(conn, run->sup, ARM_WAITING, 1, 10000, "the arm after A waits for the gate");
    ck_assert_int_eq(harness_query_int64(conn, ARMED("q")), 0);
    return run;
}

static struct harness_run *arm_held_back(PGconn **gate)
{
    return arm_held_back_by(gate, ARM_GATE_SCHEMA);
}

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
    PGconn *gate;
    struct harness_run *run = arm_held_back(&gate);
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;

    /* B commits between the worker's last claim and the arm: no ring. */
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue, payload) VALUES ('q', '{\"t\": \"B\"}')");
    ck_assert_int_eq(harness_query_int64(conn, DONE), 1);

    harness_exec(gate, "SELECT pg_advisory_unlock(" ARM_LOCK ")");
    harness_expect(conn, sup, ARMED("q"), 1, 5000, "the arm commits");
    harness_expect(conn, sup, DONE, 2, 5000, "task B, found by the probe after the arm");
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

/* The gate opens: the arm commits and the pod probes q (once at least). */
static void arm_and_probe(struct harness_run *run, PGconn *gate)
{
    int64_t probes = harness_query_int64(run->conn, PROBES);
    harness_exec(gate, "SELECT pg_advisory_unlock(" ARM_LOCK ")");
    harness_expect(run->conn, run->sup, ARMED("q"), 1, 5000, "the arm commits");
    harness_expect(run->conn, run->sup,
                   harness_printf("SELECT ((%s) > %" PRId64 ")::int", PROBES, probes), 1, 5000,
                   "the pod probes q after the arm");
}

/* The producer commits; task B must start within 2 s (the safety poll is
 * an hour). */
static void commit_and_expect_b(struct harness_run *run, PGconn *producer, const char *test)
{
    harness_exec(producer, "COMMIT");
    int64_t committed = harness_now_ms();
    harness_expect(run->conn, run->sup, DONE, 2, 2000,
                   "task B, committed after the arm's probe, starts");
    fprintf(stderr, "%s: task B done %" PRId64 " ms after its commit\n", test,
            harness_now_ms() - committed);
    ck_assert_int_eq(harness_stop_supervisor(run->sup, SIGTERM, 20000), 0);
}

/*
 * The long-transaction gap: a producer inserts B while q is not armed (its
 * trigger rings nobody), stays open while the pod arms and probes (the
 * probe cannot see B, uncommitted), then commits. Nobody announced B: the
 * pod must find it once the transactions open at the arm have ended.
 */
START_TEST(transaction_open_across_the_arm_is_found)
{
    PGconn *gate;
    struct harness_run *run = arm_held_back(&gate);
    PGconn *producer = harness_connect(run->conninfo);
    harness_exec(producer, "BEGIN");
    harness_exec(producer,
                 "INSERT INTO pgwork.tasks (queue, payload) VALUES ('q', '{\"t\": \"B\"}')");
    arm_and_probe(run, gate);
    /* The scenario: the transaction stays open a while after the probe. */
    sleep(1);
    ck_assert_int_eq(harness_query_int64(run->conn, DONE), 1);
    commit_and_expect_b(run, producer, "transaction_open_across_the_arm_is_found");
}
END_TEST

/* The gate, but the arm's transaction takes its xid before it waits. */
#define ARM_GATE_XID_SCHEMA                                                                        \
    "CREATE FUNCTION arm_gate() RETURNS trigger LANGUAGE plpgsql AS $$"                            \
    " BEGIN IF NEW.armed THEN PERFORM pg_current_xact_id();"                                       \
    " PERFORM pg_advisory_xact_lock_shared(" ARM_LOCK "); END IF;"                                 \
    " RETURN NEW; END $$;"                                                                         \
    " CREATE TRIGGER arm_gate BEFORE INSERT OR UPDATE ON pgwork.doorbell"                          \
    " FOR EACH ROW EXECUTE FUNCTION arm_gate()"

/*
 * The same gap with a producer whose xid is newer than the arm's: the arm
 * has its xid and waits, the producer inserts B (a newer xid, its lookup
 * misses the arm), the arm commits. The probe's snapshot ends at the arm
 * (its xmax is the newest ended xid + 1), so the producer, running, is in
 * neither its xmin nor its list of running xids.
 */
START_TEST(transaction_newer_than_the_arm_is_found)
{
    PGconn *gate;
    struct harness_run *run = arm_held_back_by(&gate, ARM_GATE_XID_SCHEMA);
    PGconn *producer = harness_connect(run->conninfo);
    harness_exec(producer, "BEGIN");
    harness_exec(producer,
                 "INSERT INTO pgwork.tasks (queue, payload) VALUES ('q', '{\"t\": \"B\"}')");
    ck_assert_int_eq(harness_query_int64(
                         producer, "SELECT (pg_current_xact_id()::text::bigint > "
                                   " (SELECT max(backend_xid::text::bigint) FROM pg_stat_activity"
                                   "  WHERE application_name = 'pgwork listener'))::int"),
                     1);
    arm_and_probe(run, gate);
    sleep(1);
    ck_assert_int_eq(harness_query_int64(run->conn, DONE), 1);
    commit_and_expect_b(run, producer, "transaction_newer_than_the_arm_is_found");
}
END_TEST

/*
 * The same with a REPEATABLE READ producer whose snapshot was taken before
 * the arm, and whose insert (its xid) comes after the probe: its trigger
 * reads the doorbell in that old snapshot, so it sees no arm.
 */
START_TEST(repeatable_read_snapshot_before_the_arm_is_announced)
{
    PGconn *gate;
    struct harness_run *run = arm_held_back(&gate);
    PGconn *producer = harness_connect(run->conninfo);
    harness_exec(producer, "BEGIN ISOLATION LEVEL REPEATABLE READ");
    ck_assert_int_eq(harness_query_int64(producer, ARMED("q")), 0);
    arm_and_probe(run, gate);
    harness_exec(producer,
                 "INSERT INTO pgwork.tasks (queue, payload) VALUES ('q', '{\"t\": \"B\"}')");
    ck_assert_int_eq(harness_query_int64(producer, ARMED("q")), 0); /* its snapshot */
    commit_and_expect_b(run, producer, "repeatable_read_snapshot_before_the_arm_is_announced");
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

/* A producer storm: n single-row inserts into q, each its own
 * transaction, sent in a pipeline (a sync after each, up to STORM_WINDOW
 * in flight): they commit as fast as the server commits, whatever the
 * test's round trips cost on a loaded machine. */
#define STORM_WINDOW 50
static void producer_storm_signal(PGconn *conn, int n, struct harness_supervisor *sup, int sig);
static void producer_storm(PGconn *conn, int n)
{
    producer_storm_signal(conn, n, NULL, 0);
}

/* The same storm; once sup's log shows the storm holding a queue off
 * (looked at every STORM_WINDOW inserts), sup gets sig while the storm
 * goes on (no signal when sup is NULL). */
#define STORM_HELD "rung in a storm: held disarmed"
static void producer_storm_signal(PGconn *conn, int n, struct harness_supervisor *sup, int sig)
{
    bool signalled = sup == NULL;
    ck_assert_int_eq(PQenterPipelineMode(conn), 1);
    for (int sent = 0, done = 0; done < n;) {
        for (; sent < n && sent - done < STORM_WINDOW; sent++)
            ck_assert_msg(PQsendQueryParams(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('q')",
                                            0, NULL, NULL, NULL, NULL, 0) == 1 &&
                              PQpipelineSync(conn) == 1,
                          "storm: %s", PQerrorMessage(conn));
        ck_assert_int_eq(PQflush(conn), 0);
        /* One insert's results: its command, the end of it, its sync. */
        PGresult *res = PQgetResult(conn);
        ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "storm insert: %s",
                      PQresultErrorMessage(res));
        PQclear(res);
        ck_assert_ptr_null(PQgetResult(conn));
        res = PQgetResult(conn);
        ck_assert_int_eq(PQresultStatus(res), PGRES_PIPELINE_SYNC);
        PQclear(res);
        done++;
        if (!signalled && done % STORM_WINDOW == 0 &&
            strstr(harness_stderr_text(sup), STORM_HELD) != NULL) {
            ck_assert_int_eq(kill(sup->pid, sig), 0);
            signalled = true;
        }
    }
    ck_assert_int_eq(PQexitPipelineMode(conn), 1);
    ck_assert_msg(signalled, "%d inserts and no storm held the queue off", n);
}

/* harness_expect without the list of every task (a storm's thousands
 * would not fit in Check's message). */
static void storm_expect(PGconn *conn, const char *sql, int64_t expected, int timeout_ms,
                         const char *what)
{
    if (!harness_wait_until(conn, sql, expected, timeout_ms))
        ck_abort_msg("%s: not within %d ms (%s = %lld, not %lld)", what, timeout_ms, sql,
                     (long long)harness_query_int64(conn, sql), (long long)expected);
}

/* A pod of idle workers that drain fast (the sql handler's no-op), armed:
 * the storm's scenario. */
#define STORM_SCENARIO(log_body)                                                                   \
    (&(struct harness_scenario){.workers = "count = 2 max = 2 safety_poll_interval = 1h",          \
                                .log = log_body,                                                   \
                                .queue = "handler = \"sql\" statement = \"SELECT $2::bigint\"",    \
                                .wait_for = "listening on channel",                                \
                                .idle = 2})

/* A storm's pod, armed, and the test's connections to it. */
struct storm_pod {
    struct harness_run *run;
    PGconn *conn;
    struct harness_supervisor *sup;
    const char *channel; /* the pod's ring channel (listen), else NULL */
    PGconn *listener;    /* LISTENing on channel (listen), else NULL */
    PGconn *producer;    /* where the storm's inserts come from */
};

/* Start a STORM_SCENARIO(log_body) pod and wait for its arm of q; listen:
 * also LISTEN on its ring channel, to count the notifications it gets. */
static struct storm_pod storm_pod_start(const char *log_body, bool listen)
{
    struct storm_pod pod = {.run = harness_scenario(STORM_SCENARIO(log_body))};
    pod.conn = pod.run->conn;
    pod.sup = pod.run->sup;
    harness_expect(pod.conn, pod.sup, ARMED("q"), 1, 10000, "the idle pod arms q");
    if (listen) {
        pod.channel =
            harness_query_text(pod.conn, "SELECT channel FROM pgwork.doorbell WHERE queue = 'q'");
        pod.listener = harness_connect(pod.run->conninfo);
        harness_listen(pod.listener, pod.channel);
    }
    pod.producer = harness_connect(pod.run->conninfo);
    return pod;
}

/*
 * A storm's notifications, counted in the database: every notifying
 * commit takes PostgreSQL's notify lock, so under a storm the pod holds
 * the queue disarmed and feeds its idle workers by probes — a few rings
 * when the storm begins, not one per drain cycle. (The storm mode before
 * the hold-off re-armed after every disarm, 20 ms later, and rang a
 * handful of times in each of those windows.)
 */
START_TEST(storm_sends_few_notifications)
{
    struct storm_pod pod = storm_pod_start(NULL, true);
    PGconn *conn = pod.conn, *listener = pod.listener, *producer = pod.producer;
    struct harness_supervisor *sup = pod.sup;
    const char *channel = pod.channel;

    int64_t start = harness_now_ms();
    producer_storm(producer, 2000);
    int64_t spent = harness_now_ms() - start;
    int rings = count_notifications(conn, listener, channel);
    fprintf(stderr,
            "storm_sends_few_notifications: 2000 inserts in %" PRId64 " ms, %d notifications\n",
            spent, rings);
    storm_expect(conn, DONE, 2000, 20000, "the storm's tasks all run");
    ck_assert_msg(rings >= 1, "the storm's first insert rings the armed pod");
    ck_assert_msg(rings <= 100, "%d notifications for 2000 inserts (at most 5%%)", rings);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

/*
 * The hold-off ends: once the storm is over, the probe that finds nothing
 * arms the queue again, and isolated tasks after it are rung, each its
 * own notification, each started at once (the safety poll is an hour: a
 * pod that stayed disarmed would leave them waiting).
 */
START_TEST(storm_hold_off_ends_isolated_tasks_rung)
{
    struct storm_pod pod = storm_pod_start("level = \"debug\"", true);
    PGconn *conn = pod.conn, *listener = pod.listener, *producer = pod.producer;
    struct harness_supervisor *sup = pod.sup;
    const char *channel = pod.channel;

    producer_storm(producer, 1000);
    storm_expect(conn, DONE, 1000, 20000, "the storm's tasks all run");
    ck_assert_msg(strstr(harness_stderr_text(sup), STORM_HELD) != NULL, "the storm held q off");
    storm_expect(conn, ARMED("q"), 1, 5000, "the storm over, the pod arms q again");
    harness_wait_output(sup, "quiet after its storm: armed again");
    (void)count_notifications(conn, listener, channel); /* the storm's */
    harness_exec(conn, "DELETE FROM pgwork.tasks");

    for (int i = 0; i < 5; i++) {
        usleep(200 * 1000); /* isolated: well apart from each other */
        int64_t start = harness_now_ms();
        harness_exec(producer, "INSERT INTO pgwork.tasks (queue) VALUES ('q')");
        harness_expect(conn, sup, DONE, i + 1, 2000, "an isolated task after the storm");
        fprintf(stderr, "storm_hold_off_ends_isolated_tasks_rung: task %d done in %" PRId64 " ms\n",
                i + 1, harness_now_ms() - start);
        ck_assert_int_eq(count_notifications(conn, listener, channel), 1);
    }
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

/*
 * Only the trigger's rings on the pod's own channel count toward a storm:
 * a producer that forces notifications (pgwork.notify = on, the shared
 * channel) pays the notify lock whatever the pod does, and holding its
 * queue disarmed would only swap rings for probes. The same pod then
 * meets a real storm (the positive control: the hold-off is there).
 */
START_TEST(forced_notifications_are_not_a_storm)
{
    struct harness_run *run = harness_scenario(STORM_SCENARIO("level = \"debug\""));
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    harness_expect(conn, sup, ARMED("q"), 1, 10000, "the idle pod arms q");
    PGconn *producer = harness_connect(run->conninfo);

    harness_exec(producer, "SET pgwork.notify = on");
    producer_storm(producer, 1000);
    storm_expect(conn, DONE, 1000, 20000, "the forced storm's tasks all run");
    /* Every notification read by then: the pod arms again only once its
     * workers idle, after the storm's last hint was handled. */
    storm_expect(conn, ARMED("q"), 1, 5000, "the forced storm over, q armed");
    ck_assert_msg(strstr(harness_stderr_text(sup), "rung in a storm") == NULL,
                  "1000 inserts with pgwork.notify = on held q off as a storm");

    harness_exec(producer, "RESET pgwork.notify");
    producer_storm(producer, 1000);
    storm_expect(conn, DONE, 2000, 20000, "the rung storm's tasks all run");
    ck_assert_msg(harness_stderr_wait_for(sup, STORM_HELD, 5000),
                  "the trigger's own rings hold q off");
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

/* The doorbell's cleanup statements this database ran (cleanup_sql in
 * supervisor/doorbell.c), from pg_stat_statements. */
#define CLEANUPS                                                                                   \
    "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements s"                             \
    " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database()"                   \
    " AND s.query LIKE 'DELETE FROM pgwork.doorbell d WHERE NOT%'"

/*
 * A pod told to go quiet (SIGTSTP, the Deployment's preStop) while a
 * storm holds a queue off stays quiet on the database too: no hold probes
 * (it takes no work), and nothing else in their place. (The hold's next
 * probe, due and never sent, once made the pod send its dead-pod cleanup
 * after every result, round trip after round trip.)
 */
START_TEST(quiet_pod_in_a_storm_stays_quiet)
{
    struct storm_pod pod = storm_pod_start("level = \"debug\"", false);
    PGconn *conn = pod.conn, *producer = pod.producer;
    struct harness_supervisor *sup = pod.sup;
    harness_exec(conn, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements");

    producer_storm_signal(producer, 1000, sup, SIGTSTP); /* told while q is held off */
    ck_assert(harness_stderr_wait_for(sup, "quiet: no new claims", 5000));
    int64_t before = harness_query_int64(conn, CLEANUPS);
    usleep(2000 * 1000); /* a stretch of quiet: what the pod sends meanwhile */
    int64_t cleanups = harness_query_int64(conn, CLEANUPS) - before;
    fprintf(stderr, "quiet_pod_in_a_storm_stays_quiet: %" PRId64 " cleanups in 2 s\n", cleanups);
    ck_assert_msg(cleanups <= 5, "%" PRId64 " doorbell cleanups in 2 s of quiet", cleanups);
    ck_assert_int_eq(kill(sup->pid, SIGCONT), 0);
    storm_expect(conn, DONE, 1000, 20000, "resumed, the storm's tasks all run");
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

/* A READ UNCOMMITTED producer is a READ COMMITTED one (PostgreSQL runs it
 * so): its lookup takes a fresh snapshot, and an unarmed queue rings
 * nobody; REPEATABLE READ, whose snapshot may predate an arm, rings the
 * shared channel. */
START_TEST(read_uncommitted_rings_like_read_committed)
{
    PGconn *conn;
    const char *conninfo = harness_db_migrated(&conn, NULL, NULL);
    PGconn *listener = harness_connect(conninfo);
    harness_listen(listener, "pgwork_tasks");

    harness_exec(conn, "BEGIN ISOLATION LEVEL READ UNCOMMITTED; "
                       "INSERT INTO pgwork.tasks (queue) VALUES ('q'); COMMIT");
    ck_assert_int_eq(count_notifications(conn, listener, "pgwork_tasks"), 0);
    harness_exec(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ; "
                       "INSERT INTO pgwork.tasks (queue) VALUES ('q'); COMMIT");
    ck_assert_int_eq(count_notifications(conn, listener, "pgwork_tasks"), 1);
}
END_TEST

/* Claim statements (worker/task.c's claim begins "WITH picked AS") this
 * database ran, from pg_stat_statements (tests/pg.sh loads it). */
#define CLAIMS                                                                                     \
    "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements s"                             \
    " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database()"                   \
    " AND s.query LIKE 'WITH picked AS%'"

/* n single tasks, one at a time, each done before the next; the claims
 * PostgreSQL counted meanwhile. */
static int64_t claims_for_single_tasks(PGconn *conn, PGconn *producer, int n)
{
    int64_t before = harness_query_int64(conn, CLAIMS);
    int64_t done = harness_query_int64(conn, DONE);
    for (int i = 0; i < n; i++) {
        harness_exec(producer, "INSERT INTO pgwork.tasks (queue) VALUES ('q')");
        harness_expect(conn, NULL, DONE, done + i + 1, 10000, "the single task runs");
    }
    /* The claims of the last task's worker ended before its done. */
    return harness_query_int64(conn, CLAIMS) - before;
}

/* The pod tag ("<hostname>:<incarnation>") a supervisor's start line names. */
static const char *pod_tag_of(struct harness_supervisor *sup)
{
    harness_wait_output(sup, "tasks locked by ");
    const char *at = strstr(harness_stderr_text(sup), "tasks locked by ") + 16;
    const char *end = strstr(at, "/<slot>");
    ck_assert_ptr_nonnull(end);
    return harness_printf("%.*s", (int)(end - at), at);
}

/*
 * Three pods serve q, each with two idle workers: every pod arms q, and
 * the trigger rings one of them per insert, so a single task costs about
 * one claim in the whole deployment (each pod hearing every notification
 * costs three: shown by the same tasks with pgwork.notify = on, which
 * rings every pod on the shared channel).
 */
START_TEST(three_pods_one_claim_per_task)
{
    struct harness_run *run = harness_scenario(
        &(struct harness_scenario){.schema = "CREATE EXTENSION IF NOT EXISTS pg_stat_statements",
                                   .workers = "count = 2 max = 2 safety_poll_interval = 1h",
                                   .script = "cat >/dev/null",
                                   .wait_for = "listening on channel",
                                   .idle = 2});
    PGconn *conn = run->conn;
    struct harness_supervisor *pods[3] = {run->sup,
                                          harness_spawn_supervisor(run->config, run->conninfo),
                                          harness_spawn_supervisor(run->config, run->conninfo)};
    harness_expect(conn, run->sup, ARMED("q"), 3, 15000, "three pods arm q");
    for (int i = 1; i < 3; i++)
        harness_wait_idle(pods[i], 2, run->w);
    PGconn *producer = harness_connect(run->conninfo);

    int64_t claims = claims_for_single_tasks(conn, producer, 50);
    fprintf(stderr,
            "three_pods_one_claim_per_task: 50 single tasks, 3 pods: %" PRId64
            " claims (%.2f per task)\n",
            claims, (double)claims / 50);
    ck_assert_msg(claims >= 50 && claims <= 60, "%" PRId64 " claims for 50 single tasks", claims);
    /* Rung at random among the armed pods: all three took part. */
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(DISTINCT split_part(locked_by, '/', "
                                               "1)) FROM pgwork.tasks"),
                     3);

    harness_exec(producer, "SET pgwork.notify = on");
    int64_t every_pod = claims_for_single_tasks(conn, producer, 20);
    fprintf(stderr,
            "three_pods_one_claim_per_task: with pgwork.notify = on: %" PRId64
            " claims for 20 (%.2f per task)\n",
            every_pod, (double)every_pod / 20);
    ck_assert_msg(every_pod >= 50, "%" PRId64 " claims for 20 tasks rung on every pod", every_pod);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(harness_stop_supervisor(pods[i], SIGTERM, 20000), 0);
}
END_TEST

/*
 * A pod SIGKILLed while armed leaves its rows armed; the trigger skips
 * them once its listener backend is gone, so the next tasks ring the pod
 * that lives (each within 2 s: the safety poll is an hour). Then the
 * survivor's listener is killed: it reconnects, arms on its new backend,
 * and deletes the dead pod's rows on the way.
 */
START_TEST(dead_pod_skipped_survivor_rearms)
{
    struct harness_run *run = harness_scenario(
        &(struct harness_scenario){.workers = "count = 1 max = 1 safety_poll_interval = 1h",
                                   .extra = "listener { reconnect_min = 100ms }",
                                   .script = "cat >/dev/null",
                                   .wait_for = "listening on channel",
                                   .idle = 1});
    PGconn *conn = run->conn;
    struct harness_supervisor *a = run->sup;
    struct harness_supervisor *b = harness_spawn_supervisor(run->config, run->conninfo);
    harness_expect(conn, b, ARMED("q"), 2, 15000, "both pods arm q");
    const char *tag_a = pod_tag_of(a);
    const char *tag_b = pod_tag_of(b);
    const char *params_a[] = {tag_a};
    int64_t listener_a = harness_query_int64p(
        conn, "SELECT backend_pid FROM pgwork.doorbell WHERE pod = $1", 1, params_a);

    ck_assert_int_ne(harness_stop_supervisor(a, SIGKILL, 10000), -1);
    /* Its backend leaves when the socket closes (the kernel closes it as
     * the process dies): the trigger sees it gone from then on. */
    harness_expect(
        conn, b,
        harness_printf("SELECT count(*) FROM pg_stat_activity WHERE pid = %" PRId64, listener_a), 0,
        10000, "the dead pod's listener backend exits");
    ck_assert_int_eq(harness_query_int64p(conn,
                                          "SELECT count(*) FROM pgwork.doorbell "
                                          "WHERE pod = $1 AND armed",
                                          1, params_a),
                     1);
    for (int i = 0; i < 6; i++) {
        int64_t start = harness_now_ms();
        harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('q')");
        harness_expect(conn, b, DONE, i + 1, 2000, "a task after the armed pod died starts");
        fprintf(stderr, "dead_pod_skipped_survivor_rearms: task %d done in %" PRId64 " ms\n", i + 1,
                harness_now_ms() - start);
    }

    const char *params_b[] = {tag_b};
    int64_t old_pid = harness_query_int64p(
        conn, "SELECT backend_pid FROM pgwork.doorbell WHERE pod = $1", 1, params_b);
    harness_exec(conn, harness_printf("SELECT pg_terminate_backend(%" PRId64 ")", old_pid));
    harness_expect(conn, b,
                   harness_printf("SELECT count(*) FROM pgwork.doorbell WHERE pod = '%s' AND "
                                  "armed AND backend_pid <> %" PRId64,
                                  tag_b, old_pid),
                   1, 15000, "the survivor arms again on its new connection");
    harness_expect(conn, b, "SELECT count(*) FROM pgwork.doorbell", 1, 5000,
                   "the dead pod's rows are gone");
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('q')");
    harness_expect(conn, b, DONE, 7, 2000, "the next task rings the new connection");
    ck_assert_int_eq(harness_stop_supervisor(b, SIGTERM, 20000), 0);
}
END_TEST

/*
 * The trigger rings one armed pod; a pod whose only worker has just taken
 * a task may still be armed for a moment (its disarm is written at most
 * every DOORBELL_WRITE_INTERVAL_MS). Rung then, it has nobody to wake:
 * it passes the ring on, as the queue's notification on the task channel,
 * and the other pod's idle worker takes the task (before: the task waited
 * for a poll — the safety poll here is an hour). The moment is made to
 * last: once the busy pod has disarmed itself, its row is armed again and
 * the idle pod's disarmed, by hand.
 */
START_TEST(ring_to_a_busy_pod_is_passed_on)
{
    struct harness_run *run = harness_scenario(
        &(struct harness_scenario){.workers = "count = 1 max = 1 safety_poll_interval = 1h",
                                   .script = "case $(cat) in *block*) exec sleep 30;; esac",
                                   .wait_for = "listening on channel",
                                   .idle = 1});
    PGconn *conn = run->conn;
    struct harness_supervisor *a = run->sup;
    struct harness_supervisor *b = harness_spawn_supervisor(run->config, run->conninfo);
    harness_expect(conn, b, ARMED("q"), 2, 15000, "both pods arm q");
    const char *tags[] = {pod_tag_of(a), pod_tag_of(b)};
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue, payload) VALUES ('q', '{\"block\": 1}')");
    harness_expect(conn, b, "SELECT count(*) FROM pgwork.tasks WHERE state = 'running'", 1, 5000,
                   "the blocking task runs");
    const char *owner = harness_query_text(conn, "SELECT locked_by FROM pgwork.tasks");
    int busy = strncmp(owner, tags[0], strlen(tags[0])) == 0 ? 0 : 1;
    ck_assert_msg(strncmp(owner, tags[busy], strlen(tags[busy])) == 0,
                  "the task's owner %s is neither pod (%s, %s)", owner, tags[0], tags[1]);
    const char *busy_armed = harness_printf(
        "SELECT count(*) FROM pgwork.doorbell WHERE pod = '%s' AND armed", tags[busy]);
    harness_expect(conn, b, busy_armed, 0, 5000, "the busy pod disarms q");
    harness_exec(conn, "UPDATE pgwork.doorbell SET armed = NOT armed");
    ck_assert_int_eq(harness_query_int64(conn, busy_armed), 1);
    ck_assert_int_eq(harness_query_int64(conn, ARMED("q")), 1);
    int64_t start = harness_now_ms();
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('q')");
    harness_expect(conn, b, DONE, 1, 2000, "a task rung at the busy pod starts on the other");
    fprintf(stderr, "ring_to_a_busy_pod_is_passed_on: done in %" PRId64 " ms\n",
            harness_now_ms() - start);
    harness_exec(conn, "SELECT pgwork.cancel(min(id)) FROM pgwork.tasks");
    ck_assert_int_eq(harness_stop_supervisor(a, SIGTERM, 20000), 0);
    ck_assert_int_eq(harness_stop_supervisor(b, SIGTERM, 20000), 0);
}
END_TEST

/*
 * A crash restart (as a failover to a standby) empties the unlogged
 * doorbell: the pod reconnects, arms again, and the next task rings it.
 */
START_TEST(crash_restart_rearms)
{
    struct harness_run *run = harness_scenario(&(struct harness_scenario){
        .workers = "count = 1 max = 1 safety_poll_interval = 1h",
        .extra = "listener { reconnect_min = 100ms reconnect_max = 500ms }",
        .script = "cat >/dev/null",
        .wait_for = "listening on channel",
        .idle = 1});
    harness_expect(run->conn, run->sup, ARMED("q"), 1, 10000, "the pod arms q");
    harness_pg_restart("immediate");
    PGconn *conn = harness_connect(run->conninfo);
    harness_expect(conn, run->sup, ARMED("q"), 1, 20000, "armed again after the crash");
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('q')");
    harness_expect(conn, run->sup, DONE, 1, 2000, "the next task rings the pod");
    ck_assert_int_eq(harness_stop_supervisor(run->sup, SIGTERM, 20000), 0);
}
END_TEST

Suite *doorbell_suite(void)
{
    Suite *s = suite_create("doorbell");
    TCase *tc = harness_tcase("doorbell");
    tcase_add_test(tc, probe_after_arm_finds_the_task_no_ring_announced);
    tcase_add_test(tc, transaction_open_across_the_arm_is_found);
    tcase_add_test(tc, transaction_newer_than_the_arm_is_found);
    tcase_add_test(tc, repeatable_read_snapshot_before_the_arm_is_announced);
    tcase_add_test(tc, busy_pod_is_disarmed_and_inserts_are_silent);
    tcase_add_test(tc, notify_on_forces_off_silences);
    tcase_add_test(tc, read_uncommitted_rings_like_read_committed);
    tcase_add_test(tc, three_pods_one_claim_per_task);
    tcase_add_test(tc, dead_pod_skipped_survivor_rearms);
    tcase_add_test(tc, crash_restart_rearms);
    tcase_add_test(tc, ring_to_a_busy_pod_is_passed_on);
    tcase_add_test(tc, storm_sends_few_notifications);
    tcase_add_test(tc, storm_hold_off_ends_isolated_tasks_rung);
    tcase_add_test(tc, forced_notifications_are_not_a_storm);
    tcase_add_test(tc, quiet_pod_in_a_storm_stays_quiet);
    suite_add_tcase(s, tc);
    return s;
}
