/*
 * test_sqlpath.c — the worker's `sql` path under attack (issue 10, items
 * 2, 3, 15 and 19): a statement that kills its own backend or the whole
 * cluster, a statement longer than every connection deadline on a queue
 * without a timeout, a transient error while a worker prepares its
 * statements, a worker killed between a task's effect and its `done`.
 *
 * Judged by what the database holds: task states, attempts, and the rows
 * the statements write (exactly once when `done`, never otherwise). Log
 * lines only synchronise (a failure has happened) or explain a failure.
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

/* --- helpers -------------------------------------------------------------- */

/* The results table the statements write into. */
#define RESULTS_TABLE "CREATE TABLE results (task bigint)"

/* A test's set-up (harness_scenario) on a database with RESULTS_TABLE. */
static struct harness_run *sqlpath_run(struct harness_scenario s)
{
    s.schema = RESULTS_TABLE;
    return harness_scenario(&s);
}

/* One int64 from sql on a connection of its own, or -1 when the database
 * cannot be reached (the cluster is restarting). */
static int64_t sqlpath_query_fresh(const char *conninfo, const char *sql)
{
    PGconn *conn = PQconnectdb(conninfo);
    int64_t value = -1;
    if (PQstatus(conn) == CONNECTION_OK) {
        PGresult *res = PQexec(conn, sql);
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
            !PQgetisnull(res, 0, 0))
            value = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
    }
    PQfinish(conn);
    return value;
}

/* Like harness_wait_until, through a cluster that restarts meanwhile:
 * every poll on a new connection. */
static bool sqlpath_wait_fresh(const char *conninfo, const char *sql, int64_t expected,
                               int timeout_ms)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    for (;;) {
        if (sqlpath_query_fresh(conninfo, sql) == expected)
            return true;
        if (harness_now_ms() > deadline)
            return false;
        usleep(100 * 1000);
    }
}

/* Wait for a connection to the cluster after it restarted. */
static PGconn *sqlpath_reconnect(const char *conninfo)
{
    ck_assert_msg(sqlpath_wait_fresh(conninfo, "SELECT 1", 1, 30000),
                  "the cluster did not come back within 30 s");
    return harness_connect(conninfo);
}

/* --- item 2: a statement that kills its backend ---------------------------- */

/* The five tasks of a batch have finished: the one whose payload has `key`
 * (the `who`) dead after `attempts`, its four batch-mates done, and every
 * effect there exactly once for a done task, never for another. */
static void sqlpath_expect_batch_outcome(PGconn *conn, const char *key, int attempts,
                                         const char *who)
{
    const char *states = harness_tasks_text(conn);
    const char *params[] = {key, harness_printf("%d", attempts)};
    ck_assert_msg(harness_query_int64p(conn,
                                       "SELECT count(*) FROM pgwork.tasks WHERE state = 'dead' "
                                       "AND payload ? $1 AND attempts = $2::int",
                                       2, params) == 1,
                  "the %s should be dead after %d attempts: %s", who, attempts, states);
    ck_assert_msg(harness_query_int64p(conn,
                                       "SELECT count(*) FROM pgwork.tasks WHERE state = 'done' "
                                       "AND NOT payload ? $1",
                                       1, params) == 4,
                  "its batch-mates should be done: %s", states);
    ck_assert_msg(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks t WHERE "
                                            "(SELECT count(*) FROM results r WHERE r.task = t.id) "
                                            "<> (t.state = 'done')::int") == 0,
                  "effects must exist exactly once for done tasks, never otherwise");
}

/* Five tasks in one batch (one claim takes them all, in id order); the
 * third's statement terminates its own backend. */
START_TEST(backend_killed_mid_batch)
{
    struct harness_run *run = sqlpath_run((struct harness_scenario){
        .workers = "count = 1 restart_delay_min = 50ms restart_delay_max = 400ms",
        .queues = "queue \"q\" { handler = \"sql\" batch = 5 max_attempts = 3 backoff_base = 100ms "
                  "backoff_max = 200ms statement = \"INSERT INTO results(task) SELECT $2 "
                  "WHERE NOT ($1 ? 'kill' AND pg_terminate_backend(pg_backend_pid()))\" }",
        .wait_for = "listening on channel"});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue, payload) VALUES "
                       "('q', '{}'), ('q', '{}'), ('q', '{\"kill\": true}'), ('q', '{}'), "
                       "('q', '{}')");
    if (!harness_wait_until(
            conn, "SELECT count(*) FROM pgwork.tasks WHERE state IN ('done', 'dead')", 5, 30000)) {
        harness_stderr_dump(sup);
        ck_abort_msg("a task killing its backend: not every task finished in 30 s: %s",
                     harness_tasks_text(conn));
    }
    sqlpath_expect_batch_outcome(conn, "kill", 3, "killer");
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

/* The same with a statement that SIGKILLs its backend: PostgreSQL then
 * restarts the whole cluster (as after an extension crash or an OOM kill),
 * and every connection, the supervisor's included, is gone each time. */
START_TEST(backend_crash_restarts_cluster)
{
    struct harness_run *run = harness_run_database(RESULTS_TABLE);
    const char *conninfo = run->conninfo;
    PGconn *conn = run->conn;
    /* $PPID of the shell COPY ... TO PROGRAM starts is the backend. */
    harness_exec(conn, "CREATE FUNCTION crash_backend() RETURNS boolean LANGUAGE plpgsql AS $$ "
                       "BEGIN EXECUTE 'COPY (SELECT 1) TO PROGRAM ''kill -9 $PPID'''; "
                       "RETURN true; END $$");
    struct harness_supervisor *sup = harness_run_start(
        run,
        &(struct harness_scenario){
            .workers = "count = 1 restart_delay_min = 50ms restart_delay_max = 1s",
            .queues =
                "queue \"q\" { handler = \"sql\" batch = 5 max_attempts = 2 backoff_base = 100ms "
                "backoff_max = 200ms statement = \"INSERT INTO results(task) SELECT $2 "
                "WHERE NOT ($1 ? 'crash' AND crash_backend())\" }",
            .extra = "listener { reconnect_min = 100ms reconnect_max = 1s }",
            .wait_for = "listening on channel"});
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue, payload) VALUES "
                       "('q', '{}'), ('q', '{}'), ('q', '{\"crash\": true}'), ('q', '{}'), "
                       "('q', '{}')");
    bool finished = sqlpath_wait_fresh(
        conninfo, "SELECT count(*) FROM pgwork.tasks WHERE state IN ('done', 'dead')", 5, 90000);
    conn = sqlpath_reconnect(conninfo);
    const char *states = harness_tasks_text(conn);
    if (!finished) {
        harness_stderr_dump(sup);
        ck_abort_msg("a task crashing the cluster: not every task finished in 90 s: %s", states);
    }
    sqlpath_expect_batch_outcome(conn, "crash", 2, "crasher");
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

/* --- item 3: no timeout means no timeout ----------------------------------- */

/* Connection deadlines of 1 s + 1 s, a queue without a timeout, a valid
 * 4 s statement in one batch with a failing one: the valid one runs to the
 * end — in the batch's transaction, and again a task at a time after its
 * batch-mate's failure rolled that back — and ends done, its effect
 * present once; the failing one ends dead. */
START_TEST(no_timeout_runs_long_statement)
{
    struct harness_run *run = sqlpath_run((struct harness_scenario){
        .workers = "count = 1 restart_delay_min = 50ms restart_delay_max = 400ms",
        .queues =
            "queue \"q\" { handler = \"sql\" timeout = 0 batch = 2 max_attempts = 2 "
            "backoff_base = 100ms backoff_max = 200ms statement = \"INSERT INTO results(task) "
            "SELECT $2 FROM pg_sleep(($1->>'sleep')::float8)\" }",
        .extra = "listener { keepalive_interval = 1s keepalive_timeout = 1s }",
        .wait_for = "listening on channel"});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue, payload) VALUES "
                       "('q', '{\"sleep\": 4}'), ('q', '{\"sleep\": \"not a number\"}')");
    if (!harness_wait_until(
            conn, "SELECT count(*) FROM pgwork.tasks WHERE state IN ('done', 'dead')", 2, 45000)) {
        harness_stderr_dump(sup);
        ck_abort_msg("not both tasks finished within 45 s: %s", harness_tasks_text(conn));
    }
    const char *states = harness_tasks_text(conn);
    ck_assert_msg(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = "
                                            "'done' AND payload->>'sleep' = '4'") == 1,
                  "the 4 s statement should be done: %s", states);
    ck_assert_msg(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = "
                                            "'dead' AND attempts = 2") == 1,
                  "the failing one should be dead after 2 attempts: %s", states);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM results r JOIN pgwork.tasks "
                                               "t ON t.id = r.task AND t.state = 'done'"),
                     1);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM results"), 1);
    /* It ran to the end once: no worker gave up on it and restarted. */
    ck_assert_msg(strstr(harness_stderr_text(sup), "exited unexpectedly") == NULL,
                  "a worker exited while the statement ran");
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

/*
 * Found by make torture (seed 61): a statement that fails inside a batch
 * (here: its timeout) rolled the batch back uncharged, and the redo a task
 * at a time ran it again — two runs per charged attempt, and in between
 * another worker could take it, uncharged again. The pipeline says which
 * statement failed: that task is charged at once and never run again
 * for that attempt; its batch-mates are redone.
 */
START_TEST(failing_statement_in_batch_runs_once_per_attempt)
{
    struct harness_run *run = harness_run_database(RESULTS_TABLE);
    PGconn *conn = run->conn;
    harness_exec(conn, "CREATE SEQUENCE hang_runs");
    struct harness_supervisor *sup = harness_run_start(
        run,
        &(struct harness_scenario){
            .workers = "count = 2",
            .queues =
                "queue \"q\" { handler = \"sql\" batch = 5 timeout = 1s max_attempts = 2 "
                "backoff_base = 100ms backoff_max = 200ms statement = \"INSERT INTO results(task) "
                "SELECT $2 FROM (SELECT CASE WHEN ($1->>'hang')::bool THEN nextval('hang_runs') "
                "END, "
                "pg_sleep(CASE WHEN ($1->>'hang')::bool THEN 3600 ELSE 0.01 END)) s\" }",
            .wait_for = "listening on channel"});
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue, payload) SELECT 'q', "
                       "jsonb_build_object('hang', i = 1) FROM generate_series(1, 5) i");
    if (!harness_wait_until(
            conn, "SELECT count(*) FROM pgwork.tasks WHERE state IN ('done', 'dead')", 5, 30000)) {
        harness_stderr_dump(sup);
        ck_abort_msg("not every task finished within 30 s: %s", harness_tasks_text(conn));
    }
    const char *states = harness_tasks_text(conn);
    ck_assert_msg(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = "
                                            "'dead' AND attempts = 2") == 1,
                  "the hanging task should be dead after its 2 attempts: %s", states);
    ck_assert_msg(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = "
                                            "'done'") == 4,
                  "its batch-mates should be done: %s", states);
    int64_t runs = harness_query_int64(conn, "SELECT last_value FROM hang_runs");
    ck_assert_msg(runs == 2, "2 attempts ran the hanging statement %" PRId64 " times", runs);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM results"), 4);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

/* --- item 15: transient errors while preparing ----------------------------- */

/* A connection holding an exclusive lock on results in an open
 * transaction (as a migration would). */
static PGconn *sqlpath_lock_results(const char *conninfo)
{
    PGconn *locker = harness_connect(conninfo);
    harness_exec(locker, "BEGIN");
    harness_exec(locker, "LOCK TABLE results IN ACCESS EXCLUSIVE MODE");
    return locker;
}

/* The one worker of the prepare tests, its statement on results. */
static struct harness_supervisor *sqlpath_start_prepare(struct harness_run *run)
{
    return harness_run_start(
        run, &(struct harness_scenario){
                 .workers = "count = 1 restart_delay_min = 100ms restart_delay_max = 1s",
                 .queues = "queue \"q\" { handler = \"sql\" statement = \"INSERT INTO "
                           "results(task) VALUES ($2)\" }"});
}

/* Once locker lets go, the slot whose preparation failed (after `what`)
 * comes back by itself and runs a task. */
static void sqlpath_expect_recovers(struct harness_run *run, PGconn *locker, const char *what)
{
    harness_exec(locker, "COMMIT");
    harness_exec(run->conn, "INSERT INTO pgwork.tasks (queue) VALUES ('q')");
    if (!harness_wait_until(run->conn, "SELECT count(*) FROM pgwork.tasks WHERE state = 'done'", 1,
                            15000)) {
        harness_stderr_dump(run->sup);
        ck_abort_msg("after %s while preparing, the slot never ran a task: %s", what,
                     harness_tasks_text(run->conn));
    }
    ck_assert_int_eq(harness_query_int64(run->conn, "SELECT count(*) FROM results"), 1);
    ck_assert_int_eq(harness_stop_supervisor(run->sup, SIGTERM, 20000), 0);
}

/* A migration holds an exclusive lock on the statement's table while the
 * worker starts: with a lock_timeout its preparation fails (SQLSTATE
 * 55P03), which is no configuration error. Once the lock is gone the slot
 * comes back by itself and runs tasks. */
START_TEST(prepare_lock_timeout_restarts)
{
    struct harness_run *run = harness_run_database(RESULTS_TABLE);
    const char *conninfo = run->conninfo;
    const char *dbname = run->dbname;
    PGconn *conn = run->conn;
    PGconn *locker = sqlpath_lock_results(conninfo);
    /* For sessions started from now on: the worker's. */
    harness_exec(conn, harness_printf("ALTER DATABASE \"%s\" SET lock_timeout = '300ms'", dbname));
    struct harness_supervisor *sup = sqlpath_start_prepare(run);
    if (!harness_stderr_wait_for(sup, "cannot prepare its statement", 15000)) {
        harness_stderr_dump(sup);
        ck_abort_msg("the worker's preparation did not fail on the lock");
    }
    sqlpath_expect_recovers(run, locker, "a lock timeout");
}
END_TEST

/* The worker's connection is dropped while it prepares (its backend
 * terminated while the preparation waits on a lock). */
START_TEST(prepare_connection_dropped_restarts)
{
    struct harness_run *run = harness_run_database(RESULTS_TABLE);
    const char *conninfo = run->conninfo;
    PGconn *conn = run->conn;
    PGconn *locker = sqlpath_lock_results(conninfo);
    struct harness_supervisor *sup = sqlpath_start_prepare(run);
    const char *waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                          "current_database() AND application_name = 'pgwork worker 0' "
                          "AND wait_event_type = 'Lock'";
    if (!harness_wait_until(conn, waiting, 1, 15000)) {
        harness_stderr_dump(sup);
        ck_abort_msg("the worker's preparation never waited on the lock");
    }
    ck_assert_int_eq(
        harness_query_int64(conn, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                  "WHERE datname = current_database() AND application_name = "
                                  "'pgwork worker 0' AND wait_event_type = 'Lock'"),
        1);
    if (!harness_stderr_wait_for(sup, "cannot prepare its statement", 15000)) {
        harness_stderr_dump(sup);
        ck_abort_msg("the worker's preparation did not fail");
    }
    sqlpath_expect_recovers(run, locker, "a dropped connection");
}
END_TEST

/* The other side: a statement that can never be prepared (its table does
 * not exist) is a configuration error and still retires the slot instead
 * of restarting it for ever; with no other slot left, the supervisor
 * exits 3 (configuration). */
START_TEST(prepare_config_error_retires_slot)
{
    struct harness_run *run = sqlpath_run((struct harness_scenario){
        .workers = "count = 1 restart_delay_min = 50ms restart_delay_max = 100ms",
        .queues = "queue \"q\" { handler = \"sql\" statement = \"INSERT INTO "
                  "no_such_table(task) VALUES ($2)\" }"});
    struct harness_supervisor *sup = run->sup;
    if (!harness_stderr_wait_for(sup, "configuration error; not restarting it", 15000)) {
        harness_stderr_dump(sup);
        ck_abort_msg("a statement on a missing table did not retire its slot");
    }
    int status = harness_stop_supervisor(sup, 0, 15000);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 3,
                  "the supervisor should exit 3 with its only slot retired, wait status %d",
                  status);
}
END_TEST

/* --- item 19: effect and done commit together ------------------------------ */

/* The one child of a supervisor with one worker (a sql queue starts no
 * handler process): its worker. */
static pid_t sqlpath_worker_pid(struct harness_supervisor *sup)
{
    int64_t deadline = harness_now_ms() + 10000;
    for (;;) {
        pid_t pid = 0;
        int count = harness_children(sup->pid, &pid);
        if (count == 1)
            return pid;
        ck_assert_msg(harness_now_ms() < deadline, "the supervisor has %d children, not 1", count);
        usleep(10 * 1000);
    }
}

/* Until task `id` is done: at every poll, in one snapshot, each task has
 * its effect exactly once when done and never otherwise. */
static void sqlpath_expect_exactly_once(PGconn *conn, struct harness_supervisor *sup, int64_t id)
{
    const char *done = harness_printf(
        "SELECT count(*) FROM pgwork.tasks WHERE id = %" PRId64 " AND state = 'done'", id);
    int64_t deadline = harness_now_ms() + 30000;
    while (harness_query_int64(conn, done) != 1) {
        int64_t wrong = harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks t WHERE "
                                                  "(SELECT count(*) FROM results r WHERE r.task = "
                                                  "t.id) <> (t.state = 'done')::int");
        ck_assert_msg(wrong == 0, "a task's effect without its done (or twice): %s",
                      harness_tasks_text(conn));
        if (harness_now_ms() > deadline) {
            harness_stderr_dump(sup);
            ck_abort_msg("task %" PRId64 " not done 30 s after its worker was killed: %s", id,
                         harness_tasks_text(conn));
        }
        usleep(20 * 1000);
    }
    const char *effects = harness_printf("SELECT count(*) FROM results WHERE task = %" PRId64, id);
    ck_assert_msg(harness_query_int64(conn, effects) == 1,
                  "task %" PRId64 " is done with %" PRId64 " effects, not 1", id,
                  harness_query_int64(conn, effects));
}

/* Kill the worker while the task's done commits (a deferred trigger on
 * tasks becoming done sleeps at COMMIT while `sleepy` has a row), then let
 * later runs commit at once. Were the effect committed in a transaction of
 * its own before the done, it would survive the kill (and the supervisor
 * stopping the dead worker's backend) without its done, and the rerun
 * would add a second one. */
static void sqlpath_kill_while_committing(PGconn *conn, struct harness_supervisor *sup)
{
    pid_t worker = sqlpath_worker_pid(sup);
    if (!harness_wait_until(conn,
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                            "current_database() AND application_name LIKE 'pgwork worker%' "
                            "AND wait_event = 'PgSleep'",
                            1, 15000)) {
        harness_stderr_dump(sup);
        ck_abort_msg("the commit never slept: %s", harness_tasks_text(conn));
    }
    ck_assert_int_eq(kill(worker, SIGKILL), 0);
    harness_exec(conn, "DELETE FROM sleepy");
}

/* A worker killed between a sql task's effect and its done: in a batch's
 * transaction, then a task at a time (after a batch-mate's failure). The
 * effect exists exactly once when the task is done, never before. */
START_TEST(kill_between_effect_and_done)
{
    struct harness_run *run = harness_run_database(RESULTS_TABLE);
    PGconn *conn = run->conn;
    harness_exec(conn, "CREATE TABLE sleepy (x int)");
    harness_exec(conn, "CREATE FUNCTION sleep_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$ "
                       "BEGIN PERFORM pg_sleep(2) FROM sleepy; RETURN NULL; END $$");
    harness_exec(conn, "CREATE CONSTRAINT TRIGGER sleep_at_commit AFTER UPDATE ON pgwork.tasks "
                       "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.state = 'done') "
                       "EXECUTE FUNCTION sleep_at_commit()");
    struct harness_supervisor *sup = harness_run_start(
        run,
        &(struct harness_scenario){
            .workers = "count = 1 restart_delay_min = 50ms restart_delay_max = 400ms",
            .queues =
                "queue \"q\" { handler = \"sql\" batch = 5 max_attempts = 5 backoff_base = 100ms "
                "backoff_max = 200ms statement = \"INSERT INTO results(task) SELECT $2 "
                "WHERE ($1->>'n')::int >= 0\" }",
            .wait_for = "listening on channel"});

    /* In the batch's transaction. */
    harness_exec(conn, "INSERT INTO sleepy VALUES (1)");
    int64_t first = harness_query_int64(
        conn, "INSERT INTO pgwork.tasks (queue, payload) VALUES ('q', '{\"n\": 1}') RETURNING id");
    sqlpath_kill_while_committing(conn, sup);
    sqlpath_expect_exactly_once(conn, sup, first);

    /* A task at a time: the batch's first task fails (and is dead at
     * once), the round is redone one task per transaction. */
    harness_exec(conn, "INSERT INTO sleepy VALUES (1)");
    int64_t second = harness_query_int64(
        conn, "WITH t AS (INSERT INTO pgwork.tasks (queue, payload, max_attempts) VALUES "
              "('q', '{\"n\": \"not a number\"}', 1), ('q', '{\"n\": 1}', NULL) RETURNING id) "
              "SELECT max(id) FROM t");
    sqlpath_kill_while_committing(conn, sup);
    sqlpath_expect_exactly_once(conn, sup, second);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = "
                                               "'dead'"),
                     1);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM results"), 2);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

/* --- pickup: round 2's preludes ride behind the claim ---------------------- */

/*
 * The one-transaction path sends the batch's BEGIN and settings behind the
 * claim, before it knows whether the claim took anything (sql_batch.c). A
 * claim that took nothing must roll that transaction back: the worker
 * must not sleep "idle in transaction" (holding back vacuum, counted
 * against idle_in_transaction_session_timeout) nor trip over the
 * answers left in its pipeline (it would exit and be restarted). Ten
 * rings with nothing to claim, then a real task.
 */
START_TEST(empty_claims_leave_no_transaction_open)
{
    struct harness_run *run = sqlpath_run((struct harness_scenario){
        .workers = "count = 1",
        .queues = "queue \"q\" { handler = \"sql\" "
                  "statement = \"INSERT INTO results(task) VALUES ($2)\" }",
        .wait_for = "listening on channel",
        .idle = 1});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    pid_t worker = run->w[0].pid;
    long long claims = run->w[0].claims;
    harness_exec(conn, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    harness_exec(conn, "SELECT pg_stat_statements_reset()");
    for (int ring = 0; ring < 10; ring++) {
        harness_exec(conn, "SELECT pg_notify('pgwork_tasks', '0 q')");
        /* Its claim done, the worker asleep again. */
        struct harness_worker w[HARNESS_MAX_WORKERS];
        int64_t deadline = harness_now_ms() + 5000;
        do {
            harness_status(sup, w);
        } while ((w[0].claims <= claims || strcmp(w[0].state, "idle") != 0) &&
                 harness_now_ms() < deadline);
        ck_assert_msg(w[0].claims > claims && strcmp(w[0].state, "idle") == 0,
                      "ring %d: the worker should have claimed (nothing) and gone idle: "
                      "claims %lld -> %lld, state %s, pid %d (was %d)",
                      ring, claims, w[0].claims, w[0].state, (int)w[0].pid, (int)worker);
        claims = w[0].claims;
        ck_assert_msg(w[0].pid == worker, "ring %d: the worker was restarted (pid %d, was %d)",
                      ring, (int)w[0].pid, (int)worker);
    }
    ck_assert_msg(harness_wait_until(conn,
                                     "SELECT count(*) FROM pg_stat_activity WHERE "
                                     "application_name LIKE 'pgwork worker%' AND state = 'idle' "
                                     "AND datname = current_database()",
                                     1, 5000),
                  "the worker's backend should be idle, not in a transaction: %s",
                  harness_query_text(conn, "SELECT string_agg(state, ', ') FROM pg_stat_activity "
                                           "WHERE application_name LIKE 'pgwork worker%' "
                                           "AND datname = current_database()"));
    /* The path ran: each empty claim had its BEGIN sent ahead, and rolled
     * it back (pg_stat_statements is shared memory: no reporting delay). */
    int64_t rollbacks = harness_query_int64(
        conn, "SELECT coalesce(sum(s.calls), 0)::bigint FROM pg_stat_statements s"
              " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database()"
              " AND s.query = 'ROLLBACK'");
    ck_assert_msg(rollbacks >= 10, "10 empty claims, %" PRId64 " ROLLBACKs of a BEGIN sent ahead",
                  rollbacks);
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('q')");
    harness_expect(conn, sup, "SELECT count(*) FROM results", 1, 10000, "the task's effect");
    ck_assert_msg(strstr(harness_stderr_text(sup), "exited unexpectedly") == NULL,
                  "a worker exited: %s", harness_stderr_text(sup));
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

Suite *sqlpath_suite(void)
{
    Suite *s = suite_create("sqlpath");
    TCase *tc = harness_tcase("backend");
    tcase_add_test(tc, backend_killed_mid_batch);
    suite_add_tcase(s, tc);

    /* Several cluster restarts in one test. */
    tc = harness_tcase("crash");
    tcase_set_timeout(tc, 150);
    tcase_add_test(tc, backend_crash_restarts_cluster);
    suite_add_tcase(s, tc);

    tc = harness_tcase("timeout");
    tcase_add_test(tc, no_timeout_runs_long_statement);
    tcase_add_test(tc, failing_statement_in_batch_runs_once_per_attempt);
    suite_add_tcase(s, tc);

    tc = harness_tcase("effects");
    tcase_add_test(tc, kill_between_effect_and_done);
    suite_add_tcase(s, tc);

    tc = harness_tcase("pickup");
    tcase_add_test(tc, empty_claims_leave_no_transaction_open);
    suite_add_tcase(s, tc);

    tc = harness_tcase("prepare");
    tcase_add_test(tc, prepare_lock_timeout_restarts);
    tcase_add_test(tc, prepare_connection_dropped_restarts);
    tcase_add_test(tc, prepare_config_error_retires_slot);
    suite_add_tcase(s, tc);
    return s;
}
