/*
 * test_control.c — pause/resume and cancel (issue 13 items 3 and 4,
 * migration 0011): pgwork.pause / pgwork.resume / pgwork.cancel and the
 * commands around them, with real supervisors — two where a second pod
 * matters — and a real PostgreSQL.
 *
 * Judged by rows (states, attempts, last_error), by what the handlers
 * recorded of their own runs (a file line per run, the processes in
 * /proc, the statements in pg_stat_activity) and by the claims each pod
 * counted (its USR1 status lines). Time bounds have generous margins; the
 * times measured are printed.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"
#include "shared/config.h"
#include "worker/task.h"

/* "within 1 s" (DESIGN §5), with room for a loaded test machine. */
#define CONTROL_BOUND_MS 2500

/* The claims pod sup counted for queue (its USR1 status line). */
static long long queue_claims(struct harness_supervisor *sup, const char *queue)
{
    const char *text = harness_status_text(sup);
    const char *line = strstr(text, harness_printf("status queue \\\"%s\\\":", queue));
    if (line == NULL)
        line = strstr(text, harness_printf("status queue \"%s\":", queue));
    ck_assert_msg(line != NULL, "no status line for queue %s in:\n%s", queue, text);
    const char *claims = strstr(line, " claims=");
    ck_assert_ptr_nonnull(claims);
    return atoll(claims + 8);
}

/* How many lines of the file at path are exactly id (a handler's runs). */
static int runs_of(const char *path, int64_t id)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    char line[64];
    int n = 0;
    while (fgets(line, sizeof(line), f) != NULL)
        n += strtoll(line, NULL, 10) == id;
    fclose(f);
    return n;
}

/* Wait (poll, 10 ms) until the file at path records a run of id; false
 * after timeout_ms. */
static bool wait_run(const char *path, int64_t id, int timeout_ms)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    while (runs_of(path, id) == 0) {
        if (harness_now_ms() >= deadline)
            return false;
        usleep(10000);
    }
    return true;
}

static const char *state_of(PGconn *conn, int64_t id)
{
    return harness_query_text(
        conn, harness_printf("SELECT state FROM pgwork.tasks WHERE id = %" PRId64, id));
}

/* --- pause ----------------------------------------------------------------- */

/*
 * The claim itself refuses a paused queue, whatever a pod has heard: the
 * workers' own claim statement, run by hand, takes nothing while the queue
 * is paused and the task once it is resumed.
 */
START_TEST(claim_refuses_paused_queue)
{
    PGconn *conn;
    harness_db_migrated(&conn, NULL, NULL);
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('q'), ('other')");
    harness_exec(conn, "SELECT pgwork.pause('q')");
    struct queue_config queue = {.name = "q", .batch = 10, .max_attempts = 25};
    struct claim_state claim = {0};
    const char *sql = task_claim_sql(&claim, &queue, false);
    const char *params[] = {"q", "test/0/1", "60000", "25"};
    PGresult *res = PQexecParams(conn, sql, 4, NULL, params, NULL, NULL, 0);
    ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQerrorMessage(conn));
    ck_assert_int_eq(PQntuples(res), 0);
    PQclear(res);
    /* Another queue is not held back. */
    params[0] = "other";
    res = PQexecParams(conn, sql, 4, NULL, params, NULL, NULL, 0);
    ck_assert_int_eq(PQntuples(res), 1);
    PQclear(res);
    harness_exec(conn, "SELECT pgwork.resume('q')");
    params[0] = "q";
    res = PQexecParams(conn, sql, 4, NULL, params, NULL, NULL, 0);
    ck_assert_int_eq(PQntuples(res), 1);
    PQclear(res);
    task_claim_state_free(&claim);
}
END_TEST

#define RAN_TABLE "CREATE TABLE ran (task bigint, queue text)"

/* Two pods serving q (and other, never paused) with the sql handler. */
static const char *two_pod_sql_config(void)
{
    return harness_write_config(
        "workers { count = 2 }\n"
        "log { level = \"info\" format = \"text\" }\n"
        "queue \"q\" { handler = \"sql\" statement = \"INSERT INTO ran SELECT $2, 'q'"
        " FROM (SELECT pg_advisory_xact_lock_shared(7501)) l\" }\n"
        "queue \"other\" { handler = \"sql\" statement = \"INSERT INTO ran VALUES ($2, 'other')\" "
        "}\n");
}

/*
 * Two pods. A pause made before they start holds (the poll reads it); a
 * pause and a resume made while they run reach both within a second, by
 * notification; while paused neither pod sends a claim for the queue
 * (counted by each pod) though both keep serving the other queue; a task
 * running when the pause comes finishes; after the resume every task of
 * the queue runs.
 */
START_TEST(pause_and_resume_on_two_pods)
{
    struct harness_run *run = harness_run_database(RAN_TABLE);
    PGconn *conn = run->conn;
    const char *out;
    ck_assert_int_eq(
        harness_pgwork(run->conninfo, NULL, &out, NULL, (const char *const[]){"pause", "q", NULL}),
        0);
    ck_assert_msg(strstr(out, "queue q: paused") != NULL, "%s", out);
    const char *config = two_pod_sql_config();
    struct harness_supervisor *pods[2];
    for (int i = 0; i < 2; i++) {
        pods[i] = harness_spawn_supervisor(config, run->conninfo);
        harness_wait_output(pods[i],
                            "queue \"q\" paused: no new claims, running tasks finish (poll)");
    }
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) SELECT 'q' FROM generate_series(1, 10)");
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('other')");
    harness_expect(conn, pods[0], "SELECT count(*) FROM ran WHERE queue = 'other'", 1, 15000,
                   "the other queue is served");
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks"
                                               " WHERE queue = 'q' AND state = 'pending'"),
                     10);

    /* Resumed: both pods hear it within a second; the tasks run. */
    size_t from[2];
    for (int i = 0; i < 2; i++)
        from[i] = strlen(harness_stderr_text(pods[i]));
    int64_t t0 = harness_now_ms();
    ck_assert_str_eq(harness_query_text(conn, "SELECT pgwork.resume('q')::text"), "true");
    for (int i = 0; i < 2; i++) {
        bool heard =
            harness_stderr_wait_after(pods[i], from[i], "queue \"q\" resumed (notification)", 5000);
        fprintf(stderr, "control: pod %d heard the resume after %" PRId64 " ms\n", i,
                harness_now_ms() - t0);
        ck_assert_msg(heard && harness_now_ms() - t0 < CONTROL_BOUND_MS, "pod %d: resume not heard",
                      i);
    }
    harness_expect(conn, pods[0], "SELECT count(*) FROM ran WHERE queue = 'q'", 10, 15000,
                   "every task of q ran after the resume");

    /* A task runs (it waits on a lock we hold) when the pause comes. */
    PGconn *holder = harness_connect(run->conninfo);
    harness_exec(holder, "SELECT pg_advisory_lock(7501)");
    int64_t running = harness_query_int64(conn, "SELECT pgwork.enqueue('q')");
    harness_expect(conn, pods[0],
                   "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 7501"
                   " AND NOT granted",
                   1, 15000, "the task waits on the lock");
    for (int i = 0; i < 2; i++)
        from[i] = strlen(harness_stderr_text(pods[i]));
    t0 = harness_now_ms();
    harness_exec(conn, "SELECT pgwork.pause('q')");
    for (int i = 0; i < 2; i++) {
        bool heard = harness_stderr_wait_after(
            pods[i], from[i],
            "queue \"q\" paused: no new claims, running tasks finish (notification)", 5000);
        fprintf(stderr, "control: pod %d heard the pause after %" PRId64 " ms\n", i,
                harness_now_ms() - t0);
        ck_assert_msg(heard && harness_now_ms() - t0 < CONTROL_BOUND_MS, "pod %d: pause not heard",
                      i);
    }
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) SELECT 'q' FROM generate_series(1, 5)");
    /* The running task finishes (its claim is counted as it ends). */
    harness_exec(holder, "SELECT pg_advisory_unlock(7501)");
    harness_expect(conn, pods[0],
                   harness_printf("SELECT count(*) FROM pgwork.tasks WHERE id = %" PRId64
                                  " AND state = 'done'",
                                  running),
                   1, 15000, "the task running at the pause finishes");
    long long claims[2];
    for (int i = 0; i < 2; i++)
        claims[i] = queue_claims(pods[i], "q");
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) SELECT 'q' FROM generate_series(1, 3)");
    harness_exec(conn,
                 "INSERT INTO pgwork.tasks (queue) SELECT 'other' FROM generate_series(1, 4)");
    harness_expect(conn, pods[0], "SELECT count(*) FROM ran WHERE queue = 'other'", 5, 15000,
                   "the other queue is served while q is paused");
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks"
                                               " WHERE queue = 'q' AND state = 'pending'"),
                     8);
    for (int i = 0; i < 2; i++)
        ck_assert_msg(queue_claims(pods[i], "q") == claims[i],
                      "pod %d claimed from the paused queue (%lld claims, %lld before)", i,
                      queue_claims(pods[i], "q"), claims[i]);

    /* The CLI resumes too; the eight run. */
    ck_assert_int_eq(
        harness_pgwork(run->conninfo, NULL, &out, NULL, (const char *const[]){"resume", "q", NULL}),
        0);
    ck_assert_str_eq(out, "queue q: resumed\n");
    harness_expect(conn, pods[0], "SELECT count(*) FROM ran WHERE queue = 'q'", 19, 15000,
                   "the tasks added while paused run after the resume");
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(harness_stop_supervisor(pods[i], SIGTERM, 20000), 0);
}
END_TEST

/* pgwork status shows paused queues, with or without tasks; pause and
 * resume say when nothing changed. */
START_TEST(status_shows_paused_queues)
{
    PGconn *conn;
    const char *conninfo = harness_db_migrated(&conn, NULL, NULL);
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('a')");
    const char *out;
    ck_assert_int_eq(harness_pgwork(conninfo, NULL, &out, NULL,
                                    (const char *const[]){"pause", "empty", "a", NULL}),
                     0);
    ck_assert_int_eq(
        harness_pgwork(conninfo, NULL, &out, NULL, (const char *const[]){"pause", "a", NULL}), 0);
    ck_assert_str_eq(out, "queue a: was paused already\n");
    ck_assert_int_eq(
        harness_pgwork(conninfo, NULL, &out, NULL, (const char *const[]){"status", "--json", NULL}),
        0);
    const char *path = harness_printf("%s/status.json", harness_tmpdir());
    harness_write_file(path, out);
    ck_assert_int_eq(harness_jq_file(path,
                                     (const char *const[]){"-e",
                                                           "[.queues[] | [.queue, .paused]] == "
                                                           "[[\"a\", true], [\"empty\", true]]",
                                                           NULL},
                                     NULL),
                     0);
    ck_assert_int_eq(harness_pgwork(conninfo, NULL, &out, NULL,
                                    (const char *const[]){"resume", "empty", "nosuch", NULL}),
                     0);
    ck_assert_str_eq(out, "queue empty: resumed\nqueue nosuch: was not paused\n");
    ck_assert_int_eq(
        harness_pgwork(conninfo, NULL, &out, NULL, (const char *const[]){"status", NULL}), 0);
    ck_assert_msg(strstr(out, "  yes  ") != NULL && strstr(out, "empty") == NULL, "%s", out);
}
END_TEST

/* --- cancel ---------------------------------------------------------------- */

/*
 * A pending task: cancelled at once, finished_at and last_error set, and
 * never claimed. The SQL function and the CLI say what they did; a task
 * already finished is a no-op that says so (exit 5), an unknown id exit 4.
 */
START_TEST(cancel_pending_never_runs)
{
    struct harness_run *run = harness_run_database(RAN_TABLE);
    PGconn *conn = run->conn;
    /* Due in an hour: pending while we cancel it, whatever runs. */
    int64_t later = harness_query_int64(conn, "SELECT pgwork.enqueue('q', '{}', now() + '1 hour')");
    int64_t soon = harness_query_int64(conn, "SELECT pgwork.enqueue('q', '{}', now() + '1 hour')");
    ck_assert_str_eq(
        harness_query_text(conn, harness_printf("SELECT pgwork.cancel(%" PRId64 ")", later)),
        "pending");
    const char *out, *err;
    ck_assert_int_eq(
        harness_pgwork(run->conninfo, NULL, &out, &err,
                       (const char *const[]){"cancel", harness_printf("%" PRId64, soon), NULL}),
        0);
    ck_assert_str_eq(out, harness_printf("task %" PRId64 ": cancelled (it was pending)\n", soon));
    ck_assert_int_eq(harness_query_int64(
                         conn,
                         "SELECT count(*) FROM pgwork.tasks WHERE state = 'cancelled'"
                         " AND finished_at IS NOT NULL AND last_error LIKE 'cancelled by % at %'"),
                     2);
    /* Due now, with a pod running: they never run; a task after them does. */
    harness_exec(conn, "UPDATE pgwork.tasks SET run_at = now()");
    struct harness_scenario s = {
        .workers = "count = 1",
        .queue = "handler = \"sql\" statement = \"INSERT INTO ran VALUES ($2, 'q')\"",
        .wait_for = "listening on channel",
    };
    harness_run_start(run, &s);
    int64_t marker = harness_query_int64(conn, "SELECT pgwork.enqueue('q')");
    harness_expect(conn, run->sup,
                   harness_printf("SELECT count(*) FROM pgwork.tasks WHERE id = %" PRId64
                                  " AND state = 'done'",
                                  marker),
                   1, 15000, "the marker task ran");
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM ran"), 1);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks"
                                               " WHERE state = 'cancelled' AND attempts = 0"),
                     2);

    /* Finished already: nothing changes, and the exit code says so. */
    const char *marker_id = harness_printf("%" PRId64, marker);
    ck_assert_int_eq(harness_pgwork(run->conninfo, NULL, &out, &err,
                                    (const char *const[]){"cancel", marker_id, NULL}),
                     5);
    ck_assert_msg(
        strstr(err, harness_printf("task %s: already done, nothing to cancel", marker_id)), "%s",
        err);
    ck_assert_str_eq(state_of(conn, marker), "done");
    ck_assert_int_eq(
        harness_pgwork(run->conninfo, NULL, &out, &err,
                       (const char *const[]){"cancel", harness_printf("%" PRId64, later), NULL}),
        5);
    ck_assert_msg(strstr(err, "already cancelled"), "%s", err);
    ck_assert_int_eq(harness_pgwork(run->conninfo, NULL, &out, &err,
                                    (const char *const[]){"cancel", "987654", NULL}),
                     4);
    ck_assert_msg(strstr(err, "task 987654: no such task"), "%s", err);
    ck_assert_ptr_null(harness_query_text(conn, "SELECT pgwork.cancel(987654)"));
    ck_assert_str_eq(
        harness_query_text(conn, harness_printf("SELECT pgwork.cancel(%" PRId64 ")", marker)),
        "done");
    ck_assert_int_eq(harness_stop_supervisor(run->sup, SIGTERM, 20000), 0);
}
END_TEST

/* An exec handler that records each run and, for a payload with "block",
 * leaves a child in its group and waits; its pid and the child's in
 * files named after the task. */
static const char *blocking_exec_script(void)
{
    const char *dir = harness_tmpdir();
    return harness_write_script("block.sh", harness_printf("echo \"$PGWORK_TASK_ID\" >> %s/runs\n"
                                                           "case \"$(cat)\" in *block*)\n"
                                                           "  sleep 60 &\n"
                                                           "  echo $! > %s/child.$PGWORK_TASK_ID\n"
                                                           "  echo $$ > %s/pid.$PGWORK_TASK_ID\n"
                                                           "  wait ;;\n"
                                                           "esac\n",
                                                           dir, dir, dir));
}

/*
 * Two pods, a running exec task on each: cancelled (one by the CLI, one by
 * SQL), each is stopped by the pod running it — its whole process group —
 * within a second; each ends cancelled, with who and when in last_error,
 * and never runs again.
 */
START_TEST(cancel_running_exec_on_either_pod)
{
    struct harness_run *run = harness_run_database(NULL);
    PGconn *conn = run->conn;
    const char *dir = harness_tmpdir();
    const char *config = harness_write_config(
        harness_printf("workers { count = 1 }\n"
                       "log { level = \"info\" format = \"text\" }\n"
                       "queue \"q\" { command = {\"%s\"} batch = 1 max_attempts = 5 }\n",
                       blocking_exec_script()));
    struct harness_supervisor *pods[2];
    for (int i = 0; i < 2; i++) {
        pods[i] = harness_spawn_supervisor(config, run->conninfo);
        harness_wait_output(pods[i], "listening on channel");
    }
    int64_t ids[2];
    pid_t pids[2], children[2];
    for (int i = 0; i < 2; i++) {
        ids[i] = harness_query_int64(conn, "SELECT pgwork.enqueue('q', '{\"block\": true}')");
        pids[i] = harness_read_pid(harness_printf("%s/pid.%" PRId64, dir, ids[i]));
        children[i] = harness_read_pid(harness_printf("%s/child.%" PRId64, dir, ids[i]));
    }
    /* One on each pod: the pod parts of their lock tags differ. */
    ck_assert_int_eq(harness_query_int64(conn,
                                         "SELECT count(DISTINCT split_part(locked_by, '/', 1))"
                                         " FROM pgwork.tasks WHERE state = 'running'"),
                     2);

    int64_t t0 = harness_now_ms();
    const char *out;
    ck_assert_int_eq(
        harness_pgwork(run->conninfo, NULL, &out, NULL,
                       (const char *const[]){"cancel", harness_printf("%" PRId64, ids[0]), NULL}),
        0);
    ck_assert_str_eq(out, harness_printf("task %" PRId64
                                         ": cancelled while running; the pod running it stops it\n",
                                         ids[0]));
    ck_assert_str_eq(
        harness_query_text(conn, harness_printf("SELECT pgwork.cancel(%" PRId64 ")", ids[1])),
        "running");
    for (int i = 0; i < 2; i++) {
        bool gone =
            harness_wait_pid_gone(pids[i], 10000) && harness_wait_pid_gone(children[i], 10000);
        fprintf(stderr, "control: exec task %d stopped %" PRId64 " ms after the cancels began\n", i,
                harness_now_ms() - t0);
        ck_assert_msg(gone && harness_now_ms() - t0 < CONTROL_BOUND_MS,
                      "task %" PRId64 ": its process group still runs", ids[i]);
    }
    /* Each pod stopped its own, and only its own. */
    for (int i = 0; i < 2; i++) {
        const char *locked = harness_query_text(
            conn, harness_printf(
                      "SELECT split_part(locked_by, '/', 1) FROM pgwork.tasks WHERE id = %" PRId64,
                      ids[i]));
        for (int p = 0; p < 2; p++) {
            bool said =
                strstr(harness_stderr_text(pods[p]),
                       harness_printf("task %" PRId64 " cancelled while running: told worker 0",
                                      ids[i])) != NULL;
            bool its = strstr(harness_stderr_text(pods[p]), locked) != NULL;
            ck_assert_msg(said == its, "task %" PRId64 ": pod %d %s", ids[i], p,
                          said ? "stopped a task of the other pod" : "did not stop its task");
        }
    }
    ck_assert_int_eq(
        harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = 'cancelled'"
                                  " AND attempts = 1 AND finished_at IS NOT NULL"
                                  " AND last_error LIKE 'cancelled by % at % while running on %'"),
        2);
    /* Never again: the workers take new tasks, the cancelled ones ran once. */
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) SELECT 'q' FROM generate_series(1, 4)");
    harness_expect(conn, pods[0], "SELECT count(*) FROM pgwork.tasks WHERE state = 'done'", 4,
                   15000, "the pods run tasks after the cancels");
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(runs_of(harness_printf("%s/runs", dir), ids[i]), 1);
        ck_assert_str_eq(state_of(conn, ids[i]), "cancelled");
    }
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(harness_stop_supervisor(pods[i], SIGTERM, 20000), 0);
}
END_TEST

/*
 * A pod that cannot hear a cancel still does not start the task: its
 * listener's connection goes through a proxy that black-holes it (the
 * worker's own connection is direct and works), and a task of the batch
 * the worker claimed is cancelled while the batch's first task runs. The
 * batch waited longer than a pod takes to hear a cancel, so its rest is
 * looked up again before the next task starts: the cancelled task is
 * skipped, the one after it runs. (Torture seed 20261201: a task cancelled
 * while its pod's connections were black-holed started 3.5 s after the
 * cancel.)
 */
START_TEST(cancel_unheard_claimed_task_never_starts)
{
    struct harness_run *run = harness_run_database(NULL);
    PGconn *conn = run->conn;
    const char *dir = harness_tmpdir();
    struct harness_proxy *proxy = harness_proxy_start(harness_pg_socket_path());
    struct harness_scenario s = {
        .workers = "count = 1",
        .extra =
            harness_printf("database { listen_conninfo = \"host=127.0.0.1 port=%d dbname=%s\" }\n",
                           proxy->port, run->dbname),
        .script = harness_printf("echo \"$PGWORK_TASK_ID\" >> %s/runs\n"
                                 "case \"$(cat)\" in *hold*)\n"
                                 "  while [ ! -e %s/release ]; do sleep 0.02; done ;;\n"
                                 "esac\n",
                                 dir, dir),
        .queue = "batch = 3",
        .wait_for = "listening on channel",
    };
    harness_run_start(run, &s);
    /* One claim of three, in this order: the first holds its worker. */
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue, payload)"
                       " VALUES ('q', '{\"hold\": true}'), ('q', '{}'), ('q', '{}')");
    int64_t first = harness_query_int64(conn, "SELECT min(id) FROM pgwork.tasks");
    int64_t cancelled = first + 1, last = first + 2;
    const char *runs = harness_printf("%s/runs", dir);
    ck_assert_msg(wait_run(runs, first, 15000), "the first task did not start");
    ck_assert_int_eq(
        harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = 'running'"), 3);

    ck_assert_int_ge(harness_proxy_blackhole(proxy), 1);
    ck_assert_str_eq(
        harness_query_text(conn, harness_printf("SELECT pgwork.cancel(%" PRId64 ")", cancelled)),
        "running");
    /* Not a wait for an event: the condition under test is time itself —
     * the batch held past the second a pod has to hear a cancel (the
     * worker looks it up again after half of it). */
    usleep(1200 * 1000);
    harness_write_file(harness_printf("%s/release", dir), "");
    harness_expect(conn, run->sup,
                   harness_printf("SELECT count(*) FROM pgwork.tasks WHERE id = %" PRId64
                                  " AND state = 'done'",
                                  last),
                   1, 15000, "the task after the cancelled one ran");
    ck_assert_int_eq(runs_of(runs, cancelled), 0);
    ck_assert_str_eq(state_of(conn, cancelled), "cancelled");
    ck_assert_str_eq(state_of(conn, first), "done");
    ck_assert_msg(
        strstr(harness_stderr_text(run->sup),
               harness_printf("cancelled: before it started; not run (queue=q task=%" PRId64,
                              cancelled)) != NULL,
        "the worker did not say it skipped the cancelled task:\n%s", harness_stderr_text(run->sup));
    ck_assert_int_eq(harness_stop_supervisor(run->sup, SIGTERM, 20000), 0);
}
END_TEST

/*
 * The coprocess handler: a cancelled task's co-process — which ignores
 * SIGTERM, as its child does — is killed after the grace period and
 * started again; the next task runs on the new one.
 */
START_TEST(cancel_running_coprocess)
{
    const char *dir = harness_tmpdir();
    struct harness_scenario s = {
        .workers = "count = 1",
        .script = harness_printf("trap '' TERM\n"
                                 "echo $$ >> %s/starts\n"
                                 "while IFS= read -r line; do\n"
                                 "  id=${line#*\\\"id\\\":}; id=${id%%%%,*}\n"
                                 "  echo \"$id\" >> %s/runs\n"
                                 "  case $line in *block*) sleep 60 ;; esac\n"
                                 "  printf '{\"id\":%%s,\"ok\":true}\\n' \"$id\"\n"
                                 "done\n",
                                 dir, dir),
        .queue = "handler = \"coprocess\"",
        .wait_for = "listening on channel",
    };
    struct harness_run *run = harness_scenario(&s);
    PGconn *conn = run->conn;
    pid_t first = harness_read_pid(harness_printf("%s/starts", dir));
    int64_t id = harness_query_int64(conn, "SELECT pgwork.enqueue('q', '{\"block\": 1}')");
    harness_expect(conn, run->sup,
                   harness_printf("SELECT count(*) FROM pgwork.tasks WHERE id = %" PRId64
                                  " AND state = 'running'",
                                  id),
                   1, 15000, "the task runs");
    ck_assert_msg(wait_run(harness_printf("%s/runs", dir), id, 15000),
                  "the co-process never got the task");
    int64_t t0 = harness_now_ms();
    ck_assert_str_eq(
        harness_query_text(conn, harness_printf("SELECT pgwork.cancel(%" PRId64 ")", id)),
        "running");
    harness_wait_output(run->sup, "task cancelled, terminating process group");
    ck_assert_msg(harness_wait_pid_gone(first, 10000), "the co-process still runs");
    int64_t took = harness_now_ms() - t0;
    fprintf(stderr, "control: coprocess killed %" PRId64 " ms after the cancel\n", took);
    /* It ignored TERM: KILL came after the grace period. */
    harness_wait_output(run->sup, "still running after SIGTERM, sending SIGKILL");
    ck_assert_msg(took >= 1500 && took < 2000 + CONTROL_BOUND_MS, "killed after %" PRId64 " ms",
                  took);

    int64_t next = harness_query_int64(conn, "SELECT pgwork.enqueue('q')");
    harness_expect(conn, run->sup,
                   harness_printf("SELECT count(*) FROM pgwork.tasks WHERE id = %" PRId64
                                  " AND state = 'done'",
                                  next),
                   1, 15000, "the next task runs on a new co-process");
    ck_assert_str_eq(state_of(conn, id), "cancelled");
    ck_assert_int_eq(runs_of(harness_printf("%s/runs", dir), id), 1);
    int starts = 0;
    FILE *f = fopen(harness_printf("%s/starts", dir), "r");
    ck_assert_ptr_nonnull(f);
    char line[32];
    while (fgets(line, sizeof(line), f) != NULL)
        starts++;
    fclose(f);
    ck_assert_int_eq(starts, 2);
    ck_assert_int_eq(harness_stop_supervisor(run->sup, SIGTERM, 20000), 0);
}
END_TEST

/* Workers' statements sleeping right now (pg_sleep), started after t (a
 * timestamptz literal, or "-infinity"). */
static const char *sleeping_since(const char *t)
{
    return harness_printf("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'"
                          " AND application_name LIKE 'pgwork worker%%'"
                          " AND datname = current_database() AND query_start > '%s'",
                          t);
}

/*
 * The sql handler. A batch of three in one transaction, one of them
 * sleeping: cancelling a batch-mate cancels the statement running (the
 * batch can no longer commit) and the batch is redone a task at a time —
 * the cancelled task skipped, nobody charged — where the sleeper runs on
 * its own; cancelling it then cancels that statement. The third task runs;
 * neither cancelled one leaves an effect or runs again.
 */
START_TEST(cancel_running_sql)
{
    struct harness_scenario s = {
        .schema = RAN_TABLE,
        .workers = "count = 1",
        .queue = "handler = \"sql\" batch = 3 statement = \"INSERT INTO ran SELECT $2, 'q'"
                 " FROM (SELECT CASE WHEN $1 ? 'sleep' THEN pg_sleep(60) END) l\"",
        .wait_for = "listening on channel",
    };
    struct harness_run *run = harness_scenario(&s);
    PGconn *conn = run->conn;
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue, payload)"
                       " VALUES ('q', '{\"sleep\": 1}'), ('q', '{}'), ('q', '{}')");
    int64_t sleeper = harness_query_int64(conn, "SELECT min(id) FROM pgwork.tasks");
    int64_t mate = sleeper + 1, third = sleeper + 2;
    harness_expect(conn, run->sup, sleeping_since("-infinity"), 1, 15000, "the batch sleeps");
    ck_assert_int_eq(
        harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = 'running'"), 3);

    const char *t = harness_query_text(conn, "SELECT clock_timestamp()::text");
    int64_t t0 = harness_now_ms();
    ck_assert_str_eq(
        harness_query_text(conn, harness_printf("SELECT pgwork.cancel(%" PRId64 ")", mate)),
        "running");
    /* The batch's statement is cancelled; the sleeper runs again alone. */
    harness_expect(conn, run->sup, sleeping_since(t), 1, CONTROL_BOUND_MS,
                   "the batch was cancelled and the sleeper started again on its own");
    fprintf(stderr, "control: sql batch redone %" PRId64 " ms after the cancel\n",
            harness_now_ms() - t0);

    t0 = harness_now_ms();
    ck_assert_str_eq(
        harness_query_text(conn, harness_printf("SELECT pgwork.cancel(%" PRId64 ")", sleeper)),
        "running");
    harness_expect(conn, run->sup,
                   harness_printf("SELECT count(*) FROM pgwork.tasks WHERE id = %" PRId64
                                  " AND state = 'done'",
                                  third),
                   1, CONTROL_BOUND_MS, "the sleeper's statement was cancelled; the third ran");
    fprintf(stderr, "control: sql statement cancelled, next task done %" PRId64 " ms after\n",
            harness_now_ms() - t0);
    ck_assert_int_eq(harness_query_int64(conn, sleeping_since("-infinity")), 0);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM ran"), 1);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT task FROM ran"), third);
    /* Attempts are honest: one each, nobody charged for the cancel. */
    ck_assert_int_eq(
        harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks WHERE attempts = 1"), 3);
    ck_assert_str_eq(state_of(conn, sleeper), "cancelled");
    ck_assert_str_eq(state_of(conn, mate), "cancelled");
    ck_assert_int_eq(harness_stop_supervisor(run->sup, SIGTERM, 20000), 0);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM ran"), 1);
}
END_TEST

Suite *control_suite(void)
{
    Suite *s = suite_create("control");
    TCase *tc = harness_tcase("pause");
    tcase_add_test(tc, claim_refuses_paused_queue);
    tcase_add_test(tc, pause_and_resume_on_two_pods);
    tcase_add_test(tc, status_shows_paused_queues);
    suite_add_tcase(s, tc);
    tc = harness_tcase("cancel");
    tcase_add_test(tc, cancel_pending_never_runs);
    tcase_add_test(tc, cancel_running_exec_on_either_pod);
    tcase_add_test(tc, cancel_running_coprocess);
    tcase_add_test(tc, cancel_running_sql);
    tcase_add_test(tc, cancel_unheard_claimed_task_never_starts);
    suite_add_tcase(s, tc);
    return s;
}
