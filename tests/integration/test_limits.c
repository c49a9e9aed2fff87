/*
 * test_limits.c — a queue's concurrency cap and rate limit (issue 14,
 * migration 0012) hold for two pods together, and cost no polling: the
 * capped queue's waiting workers are woken by completions on either pod,
 * the rate-limited queue's by the supervisors' timers (the safety poll is
 * 60 s, far beyond every bound here).
 *
 * What is checked comes from the database: the running count sampled
 * while the tasks run, and each task's started_at / finished_at (a
 * limited claim records the time it took under the queue's lock).
 */
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

/* Two pods with the same config (workers 4 each); each listening. */
static void limits_two_pods(struct harness_run *run, const char *queue,
                            struct harness_supervisor **pods)
{
    run->config = harness_scenario_config(&(struct harness_scenario){
        .workers = "count = 4 safety_poll_interval = 60s", .queues = queue});
    for (int i = 0; i < 2; i++) {
        pods[i] = harness_spawn_supervisor(run->config, run->conninfo);
        harness_wait_output(pods[i], "listening on channel");
    }
    struct harness_worker w[HARNESS_MAX_WORKERS];
    for (int i = 0; i < 2; i++)
        harness_wait_idle(pods[i], 4, w);
}

/* One pod of 4 workers with the given queue sections, listening, its
 * workers idle. */
static struct harness_supervisor *limits_one_pod(struct harness_run *run, const char *queues)
{
    run->config = harness_scenario_config(&(struct harness_scenario){
        .workers = "count = 4 safety_poll_interval = 60s", .queues = queues});
    struct harness_supervisor *pod = harness_spawn_supervisor(run->config, run->conninfo);
    harness_wait_output(pod, "listening on channel");
    struct harness_worker w[HARNESS_MAX_WORKERS];
    harness_wait_idle(pod, 4, w);
    return pod;
}

static void limits_stop(struct harness_supervisor **pods)
{
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(harness_stop_supervisor(pods[i], SIGTERM, 20000), 0);
}

/*
 * Cap 3 over two pods of 4 workers: 24 tasks of 0.5 s. The running count,
 * sampled from the database every few ms, never passes 3, and neither does
 * the overlap the rows' own times show; the 24 finish within 1.2 x the
 * 4 s that 3 at a time take (a freed slot is claimed within ms, on
 * whichever pod).
 */
START_TEST(cap_holds_across_two_pods)
{
    struct harness_run *run = harness_run_database(NULL);
    struct harness_supervisor *pods[2];
    limits_two_pods(run, "queue \"capped\" { command = {\"/bin/sleep\", \"0.5\"} concurrency = 3 }",
                    pods);
    PGconn *conn = run->conn;
    int64_t start = harness_now_ms();
    harness_exec(conn,
                 "INSERT INTO pgwork.tasks (queue) SELECT 'capped' FROM generate_series(1, 24)");
    int64_t most = 0, samples = 0, done = 0;
    while (done < 24 && harness_now_ms() - start < 20000) {
        int64_t running = harness_query_int64(
            conn, "SELECT count(*) FROM pgwork.tasks WHERE queue = 'capped' AND state = 'running'");
        most = running > most ? running : most;
        samples++;
        done = harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = 'done'");
        usleep(2000);
    }
    int64_t took = harness_now_ms() - start;
    /* Each start's time, and how many rows were running then by their own
     * times (a done's finished_at precedes its commit, so a claim that saw
     * a task running never sees it finished earlier). */
    int64_t overlap = harness_query_int64(
        conn, "SELECT max((SELECT count(*) FROM pgwork.tasks b WHERE b.started_at <= a.started_at"
              "  AND (b.finished_at IS NULL OR b.finished_at > a.started_at)))"
              " FROM pgwork.tasks a");
    fprintf(stderr,
            "limits: cap 3: at most %" PRId64 " running (%" PRId64 " samples), %" PRId64
            " by the rows' times; 24 done in %" PRId64 " ms\n",
            most, samples, overlap, took);
    if (done < 24 || most > 3 || overlap > 3 || took > 4800) {
        harness_stderr_dump(pods[0]);
        harness_stderr_dump(pods[1]);
    }
    ck_assert_msg(done == 24, "%" PRId64 " of 24 tasks done after %" PRId64 " ms: %s", done, took,
                  harness_tasks_text(conn));
    ck_assert_msg(most <= 3, "%" PRId64 " tasks running at once (cap 3; %" PRId64 " samples)", most,
                  samples);
    ck_assert_msg(overlap <= 3, "the rows' times show %" PRId64 " running at once (cap 3)",
                  overlap);
    ck_assert_msg(most == 3, "never 3 running at once (at most %" PRId64 "): the cap was not used",
                  most);
    ck_assert_msg(took <= 4800, "24 tasks of 0.5 s, 3 at a time, took %" PRId64 " ms (> 4.8 s)",
                  took);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT max(attempts) FROM pgwork.tasks"), 1);
    /* Both pods took part (a freed slot goes to whichever claims first):
     * were it one, the cap would not have been tested across pods. */
    const char *per_pod = harness_query_textp(
        conn,
        "SELECT string_agg(n::text, ' + ' ORDER BY n DESC) FROM (SELECT count(*) AS n"
        " FROM pgwork.tasks GROUP BY split_part(locked_by, '/', 1)) p",
        0, NULL);
    fprintf(stderr, "limits: cap 3: tasks per pod %s\n", per_pod);
    ck_assert_msg(harness_query_int64(conn, "SELECT count(DISTINCT split_part(locked_by, '/', 1))"
                                            " FROM pgwork.tasks") == 2,
                  "one pod ran every task (%s): the cap was not shared across pods", per_pod);
    limits_stop(pods);
}
END_TEST

/*
 * Rate 10/1s over two pods: 50 tasks. No closed window of 1 s holds more
 * than 10 starts; every start is the first attempt (tasks over budget
 * wait pending, uncharged); the 50 are done in 5 +- 1 s — the fifth ten
 * starts 4 s after the first, woken by the timers at that moment.
 */
START_TEST(rate_holds_across_two_pods)
{
    struct harness_run *run = harness_run_database(NULL);
    struct harness_supervisor *pods[2];
    limits_two_pods(run, "queue \"rated\" { command = {\"/bin/true\"} rate = \"10/1s\" }", pods);
    PGconn *conn = run->conn;
    int64_t start = harness_now_ms();
    harness_exec(conn,
                 "INSERT INTO pgwork.tasks (queue) SELECT 'rated' FROM generate_series(1, 50)");
    bool done = harness_wait_until(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = 'done'",
                                   50, 15000);
    int64_t took = harness_now_ms() - start;
    int64_t busiest = harness_query_int64(
        conn, "SELECT max((SELECT count(*) FROM pgwork.tasks b WHERE b.started_at >= a.started_at"
              "  AND b.started_at <= a.started_at + interval '1 second'))"
              " FROM pgwork.tasks a");
    fprintf(stderr,
            "limits: rate 10/1s: at most %" PRId64 " starts in 1 s; 50 done in %" PRId64 " ms\n",
            busiest, took);
    if (!done || busiest > 10 || took < 4000 || took > 6000) {
        harness_stderr_dump(pods[0]);
        harness_stderr_dump(pods[1]);
    }
    ck_assert_msg(done, "not all 50 done after %" PRId64 " ms: %s", took, harness_tasks_text(conn));
    ck_assert_msg(busiest <= 10, "%" PRId64 " starts within one second (rate 10/1s)", busiest);
    ck_assert_msg(took >= 4000 && took <= 6000,
                  "50 tasks at 10/1s took %" PRId64 " ms (not 5 +- 1 s)", took);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT max(attempts) FROM pgwork.tasks"), 1);
    limits_stop(pods);
}
END_TEST

/*
 * Behind a transaction-mode PgBouncer (pool of 3 for 8 workers, so
 * server connections change hands between transactions): a capped sql
 * queue (the one-transaction path) and a rate-limited exec queue, two
 * pods. The advisory lock lives in each claim's transaction, so the
 * limits hold as they do direct: sampled running <= 2, no second with
 * more than 5 starts, and all done without waiting for a poll.
 */
START_TEST(limits_hold_behind_pgbouncer)
{
    struct harness_pgbouncer *bouncer = harness_pgbouncer_start("transaction", 3);
    char dbname[HARNESS_NAME_MAX];
    PGconn *conn;
    const char *direct = harness_db_migrated(&conn, dbname, NULL);
    const char *config = harness_write_config(harness_printf(
        "database { listen_conninfo = \"%s\" }\n"
        "workers { count = 4 safety_poll_interval = 60s }\n"
        "log { format = \"text\" }\n"
        "queue \"s\" { handler = \"sql\" statement = \"SELECT pg_sleep(0.2)\" concurrency = 2 }\n"
        "queue \"r\" { command = {\"/bin/true\"} rate = \"5/1s\" }\n",
        direct));
    struct harness_supervisor *pods[2];
    for (int i = 0; i < 2; i++) {
        pods[i] = harness_spawn_supervisor(config, harness_pgbouncer_conninfo(bouncer, dbname));
        harness_wait_output(pods[i], "listening on channel");
    }
    int64_t start = harness_now_ms();
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) SELECT q FROM generate_series(1, 12),"
                       " (VALUES ('s'), ('r')) v(q)");
    int64_t most = 0, done = 0;
    while (done < 24 && harness_now_ms() - start < 20000) {
        int64_t running = harness_query_int64(
            conn, "SELECT count(*) FROM pgwork.tasks WHERE queue = 's' AND state = 'running'");
        most = running > most ? running : most;
        done = harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = 'done'");
        usleep(2000);
    }
    int64_t took = harness_now_ms() - start;
    int64_t busiest = harness_query_int64(
        conn, "SELECT max((SELECT count(*) FROM pgwork.tasks b WHERE b.queue = 'r'"
              "  AND b.started_at >= a.started_at"
              "  AND b.started_at <= a.started_at + interval '1 second'))"
              " FROM pgwork.tasks a WHERE a.queue = 'r'");
    fprintf(stderr,
            "limits: behind PgBouncer: at most %" PRId64 " running (cap 2), %" PRId64
            " starts in 1 s (rate 5/1s); 24 done in %" PRId64 " ms\n",
            most, busiest, took);
    if (done < 24 || most > 2 || busiest > 5) {
        harness_stderr_dump(pods[0]);
        harness_stderr_dump(pods[1]);
    }
    ck_assert_msg(done == 24, "%" PRId64 " of 24 done after %" PRId64 " ms: %s", done, took,
                  harness_tasks_text(conn));
    ck_assert_msg(most <= 2, "%" PRId64 " sql tasks running at once (cap 2)", most);
    ck_assert_msg(busiest <= 5, "%" PRId64 " starts within one second (rate 5/1s)", busiest);
    /* 12 x 0.2 s two at a time, and 12 starts at 5/1s: seconds, not a poll. */
    ck_assert_msg(took < 10000, "took %" PRId64 " ms", took);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT max(attempts) FROM pgwork.tasks"), 1);
    limits_stop(pods);
}
END_TEST

/*
 * A capped queue runs at its cap: 2,000 short tasks (the sql handler's
 * SELECT 1) under concurrency = 50 are claimed a batch at a time, up to
 * every free slot (migration 0014), not one task a claim once the batch
 * grew past the free slots. Each limited claim stamps its tasks with one
 * start time, so the distinct started_at are the claims. The cap still
 * holds by the rows' own times.
 */
START_TEST(capped_claims_take_the_free_slots)
{
    struct harness_run *run = harness_run_database(NULL);
    struct harness_supervisor *pod = limits_one_pod(
        run, "queue \"c\" { handler = \"sql\" statement = \"SELECT 1\" concurrency = 50 }");
    PGconn *conn = run->conn;
    int64_t start = harness_now_ms();
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) SELECT 'c' FROM generate_series(1, 2000)");
    int64_t done = 0;
    while (done < 2000 && harness_now_ms() - start < 60000) {
        usleep(20000);
        done = harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = 'done'");
    }
    int64_t took = harness_now_ms() - start;
    int64_t claims =
        harness_query_int64(conn, "SELECT count(DISTINCT started_at) FROM pgwork.tasks");
    int64_t overlap = harness_query_int64(
        conn, "SELECT max((SELECT count(*) FROM pgwork.tasks b WHERE b.started_at <= a.started_at"
              "  AND (b.finished_at IS NULL OR b.finished_at > a.started_at)))"
              " FROM (SELECT DISTINCT started_at FROM pgwork.tasks) a");
    fprintf(stderr,
            "limits: cap 50: 2000 short tasks in %" PRId64 " claims, at most %" PRId64
            " running by the rows' times; done in %" PRId64 " ms\n",
            claims, overlap, took);
    if (done < 2000 || claims > 200 || overlap > 50)
        harness_stderr_dump(pod);
    ck_assert_msg(done == 2000, "%" PRId64 " of 2000 done after %" PRId64 " ms", done, took);
    ck_assert_msg(overlap <= 50, "the rows' times show %" PRId64 " running at once (cap 50)",
                  overlap);
    ck_assert_msg(claims <= 200,
                  "2000 short tasks took %" PRId64 " claims (cap 50: at most 200 expected)",
                  claims);
    ck_assert_int_eq(harness_stop_supervisor(pod, SIGTERM, 20000), 0);
}
END_TEST

/*
 * The handoff (task_claim_handoff): a capped queue's drain records its
 * finished tasks and claims as many in one statement, without the queue's
 * lock. Two pods of 4 workers, two queues capped at 10 — one keeps done
 * tasks, one deletes them — with 600 short exec tasks each and 20 that
 * fail (max_attempts 1). The running count sampled from the database never
 * passes 10 in either queue, nor does the overlap by the rows' times;
 * every good task ran exactly once (its id written to a file per queue by
 * the task itself) and the failing ones are dead; and the path ran: both
 * handoff statements (done and deleted) appear in pg_stat_statements, and
 * kept tasks were taken over (started in the statement that finished
 * another of their worker's). On code without the handoff the last two
 * checks fail.
 */
START_TEST(handoffs_keep_the_cap)
{
    struct harness_run *run = harness_run_database(NULL);
    const char *dir = harness_tmpdir();
    const char *task =
        "case $(cat) in *fail*) exit 1;; esac; echo $PGWORK_TASK_ID >> %s/runs-$PGWORK_QUEUE";
    const char *queues = harness_printf(
        "queue \"kept\" { command = {\"/bin/sh\", \"-c\", \"%s\"} concurrency = 10 "
        "max_attempts = 1 }\n"
        "queue \"deleted\" { command = {\"/bin/sh\", \"-c\", \"%s\"} concurrency = 10 "
        "max_attempts = 1 keep_done = false }\n",
        harness_printf(task, dir), harness_printf(task, dir));
    struct harness_supervisor *pods[2];
    limits_two_pods(run, queues, pods);
    PGconn *conn = run->conn;
    harness_exec(conn, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    harness_exec(conn, "SELECT pg_stat_statements_reset()");
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue, payload)"
                       " SELECT q, CASE WHEN i % 30 = 0 THEN '{\"fail\": 1}' ELSE '{}' END::jsonb"
                       " FROM generate_series(1, 620) i, (VALUES ('kept'), ('deleted')) v(q)");
    int64_t start = harness_now_ms(), most = 0, left = 1;
    while (left > 0 && harness_now_ms() - start < 60000) {
        int64_t running = harness_query_int64(
            conn, "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM pgwork.tasks"
                  " WHERE state = 'running' GROUP BY queue) r");
        most = running > most ? running : most;
        left = harness_query_int64(
            conn, "SELECT count(*) FROM pgwork.tasks WHERE state IN ('pending', 'running')");
        usleep(2000);
    }
    int64_t overlap = harness_query_int64(
        conn, "SELECT max((SELECT count(*) FROM pgwork.tasks b WHERE b.queue = 'kept'"
              "  AND b.started_at <= a.started_at"
              "  AND (b.finished_at IS NULL OR b.finished_at > a.started_at)))"
              " FROM pgwork.tasks a WHERE a.queue = 'kept'");
    /* A handoff that took rows leaves its mark in them: a task of the
     * kept queue started by the worker that finished another at that very
     * instant (one statement's now()); ordinary claims and completions are
     * transactions of their own. */
    int64_t taken_over = harness_query_int64(
        conn, "SELECT count(*) FROM pgwork.tasks a WHERE a.queue = 'kept' AND EXISTS ("
              "  SELECT FROM pgwork.tasks b WHERE b.queue = 'kept' AND b.id <> a.id"
              "    AND b.finished_at = a.started_at AND b.locked_by = a.locked_by)");
    int64_t handoffs[2];
    for (int deleted = 0; deleted < 2; deleted++)
        handoffs[deleted] = harness_query_int64(
            conn,
            harness_printf("SELECT coalesce(sum(s.calls), 0)::bigint FROM pg_stat_statements s"
                           " JOIN pg_database d ON d.oid = s.dbid"
                           " WHERE d.datname = current_database()"
                           " AND s.query LIKE 'WITH finished AS (  %s%%picked AS%%'"
                           " AND s.rows >= s.calls",
                           deleted ? "DELETE" : "UPDATE"));
    fprintf(stderr,
            "limits: handoffs: at most %" PRId64 " running in a queue (cap 10), %" PRId64
            " by the rows' times; %" PRId64 " + %" PRId64 " handoffs, %" PRId64
            " kept tasks taken over; done in %" PRId64 " ms\n",
            most, overlap, handoffs[0], handoffs[1], taken_over, harness_now_ms() - start);
    if (left > 0 || most > 10 || overlap > 10) {
        harness_stderr_dump(pods[0]);
        harness_stderr_dump(pods[1]);
    }
    ck_assert_msg(left == 0, "%" PRId64 " tasks not finished after 60 s: %s", left,
                  harness_tasks_text(conn));
    ck_assert_msg(most <= 10, "%" PRId64 " tasks of a queue running at once (cap 10)", most);
    ck_assert_msg(overlap <= 10, "the rows' times show %" PRId64 " running at once (cap 10)",
                  overlap);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks WHERE queue ="
                                               " 'kept' AND state = 'done' AND attempts = 1"),
                     600);
    ck_assert_int_eq(
        harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = 'dead'"), 40);
    ck_assert_int_eq(harness_query_int64(conn,
                                         "SELECT count(*) FROM pgwork.tasks WHERE queue = 'deleted'"
                                         " AND state <> 'dead'"),
                     0);
    /* Each good task ran once: 600 lines, 600 ids, in each queue's file. */
    const char *queue_names[] = {"kept", "deleted"};
    for (int q = 0; q < 2; q++) {
        const char *runs = harness_read_file(harness_printf("%s/runs-%s", dir, queue_names[q]));
        ck_assert_ptr_nonnull(runs);
        const char *counts =
            harness_query_textp(conn,
                                "SELECT count(*) || ' ' || count(DISTINCT id) FROM"
                                " unnest(string_to_array(rtrim($1, E'\\n'), E'\\n')) id",
                                1, (const char *[]){runs});
        ck_assert_msg(
            strcmp(counts, "600 600") == 0,
            "queue %s: runs and distinct tasks run: %s (600 each, once); run, not done: %s",
            queue_names[q], counts,
            harness_query_textp(conn,
                                "SELECT string_agg(r.id || ' ' || coalesce(t.state, 'gone'), ', ')"
                                " FROM unnest(string_to_array(rtrim($1, E'\\n'), E'\\n')) r(id)"
                                " LEFT JOIN pgwork.tasks t ON t.id::text = r.id"
                                " WHERE t.state IS DISTINCT FROM 'done'",
                                1, (const char *[]){runs}));
    }
    ck_assert_msg(handoffs[0] > 0 && handoffs[1] > 0,
                  "the drains handed no slots on (%" PRId64 " done, %" PRId64
                  " deleted handoffs): every claim took the queue's lock",
                  handoffs[0], handoffs[1]);
    ck_assert_msg(taken_over > 0,
                  "no kept task started at its worker's finish of another: no handoff took a row");
    limits_stop(pods);
}
END_TEST

/*
 * A handoff statement that fails (here a BEFORE DELETE trigger that raises
 * once: a statement_timeout, a cancel or a pooler's missing statement do
 * the same) rolls back, and the finished tasks it was to record are still
 * running under the worker: they must be written after the reconnect, not
 * forgotten (before: they stayed running, their leases renewed, holding
 * the cap's slots for the worker's life). One worker, cap 2, 10 tasks:
 * all are finished, none left running.
 */
START_TEST(failed_handoff_keeps_its_finished_tasks)
{
    struct harness_run *run = harness_run_database(NULL);
    run->config = harness_scenario_config(&(struct harness_scenario){
        .workers = "count = 1 safety_poll_interval = 60s",
        .queues = "queue \"x\" { command = {\"/bin/true\"} concurrency = 2 keep_done = false }"});
    PGconn *conn = run->conn;
    harness_exec(conn, "CREATE SEQUENCE fail_once");
    harness_exec(conn, "CREATE FUNCTION fail_once() RETURNS trigger LANGUAGE plpgsql AS $$"
                       " BEGIN IF nextval('fail_once') = 1 THEN"
                       " RAISE EXCEPTION 'the first delete fails'; END IF; RETURN OLD; END $$");
    harness_exec(conn, "CREATE TRIGGER fail_once BEFORE DELETE ON pgwork.tasks"
                       " FOR EACH ROW EXECUTE FUNCTION fail_once()");
    struct harness_supervisor *pod = harness_spawn_supervisor(run->config, run->conninfo);
    harness_wait_output(pod, "listening on channel");
    struct harness_worker w[HARNESS_MAX_WORKERS];
    harness_wait_idle(pod, 1, w);
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) SELECT 'x' FROM generate_series(1, 10)");
    bool finished = harness_wait_until(conn, "SELECT count(*) FROM pgwork.tasks", 0, 15000);
    ck_assert_msg(finished, "tasks left 15 s after a failed delete: %s", harness_tasks_text(conn));
    ck_assert_msg(strstr(harness_stderr_text(pod), "the first delete fails") != NULL,
                  "the trigger never failed a statement: %s", harness_stderr_text(pod));
    ck_assert_int_eq(harness_stop_supervisor(pod, SIGTERM, 20000), 0);
}
END_TEST

/*
 * A fixed batch of slow tasks is not held for a handoff: a task that has
 * finished is done at once, its unique key free again (before: it stayed
 * running until its batch-mates had run too, and an enqueue of its key
 * was dropped as a duplicate). Cap 3, batch = 3, one worker, 6 tasks of
 * 1 s: once the second has started, the first is done within 500 ms.
 */
START_TEST(finished_tasks_are_not_held_behind_slow_ones)
{
    struct harness_run *run = harness_run_database(NULL);
    const char *dir = harness_tmpdir();
    run->config = harness_scenario_config(&(struct harness_scenario){
        .workers = "count = 1 safety_poll_interval = 60s",
        .queues = harness_printf("queue \"s\" { command = {\"/bin/sh\", \"-c\", \"echo "
                                 "$PGWORK_TASK_ID > %s/started-$PGWORK_TASK_ID; sleep 1\"} "
                                 "concurrency = 3 batch = 3 }",
                                 dir)});
    PGconn *conn = run->conn;
    struct harness_supervisor *pod = harness_spawn_supervisor(run->config, run->conninfo);
    harness_wait_output(pod, "listening on channel");
    struct harness_worker w[HARNESS_MAX_WORKERS];
    harness_wait_idle(pod, 1, w);
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue, unique_key)"
                       " SELECT 's', 'k' || i FROM generate_series(1, 6) i");
    /* The second task started: the first has finished. */
    int64_t first = harness_query_int64(conn, "SELECT min(id) FROM pgwork.tasks");
    const char *started = harness_printf("%s/started-%" PRId64, dir, first + 1);
    int64_t deadline = harness_now_ms() + 10000;
    while (access(started, F_OK) != 0 && harness_now_ms() < deadline)
        usleep(5000);
    ck_assert_msg(access(started, F_OK) == 0, "the second task never started");
    bool done = harness_wait_until(
        conn,
        harness_printf(
            "SELECT count(*) FROM pgwork.tasks WHERE id = %" PRId64 " AND state = 'done'", first),
        1, 500);
    ck_assert_msg(done, "the first task still not done 500 ms into the second: %s",
                  harness_tasks_text(conn));
    ck_assert_int_eq(harness_stop_supervisor(pod, SIGTERM, 20000), 0);
}
END_TEST

/*
 * A capped queue of short tasks is held by fewer of the pod's workers
 * (worker.c, the holders: a share of the cap run in less time than its
 * claim takes costs a statement for too few tasks), one of slow tasks by
 * every worker. One pod of 4 workers; queue "short": cap 8, 3,000 tasks
 * of examples/coprocess.sh (a loop of shell builtins, well under the
 * 500 µs a task that would call for more than 2 holders of 8 slots);
 * queue "slow": cap 4, 16 tasks of 0.05 s. Once the holders have timed
 * their tasks (after the first 500), two workers ran at least 90% of the
 * short ones — with every worker holding a share of 2 (the code before),
 * each ran about a quarter; all 4 workers ran slow ones. The cap holds by
 * the rows' times, and every task is done once.
 */
START_TEST(short_capped_tasks_are_held_by_fewer_workers)
{
    struct harness_run *run = harness_run_database(NULL);
    const char *co = harness_printf("\"/bin/sh\", \"%s/coprocess.sh\"", harness_examples_dir());
    struct harness_supervisor *pod = limits_one_pod(
        run, harness_printf(
                 "queue \"short\" { handler = \"coprocess\" command = {%s} concurrency = 8 }\n"
                 "queue \"slow\" { handler = \"coprocess\" command = {%s} concurrency = 4 }\n",
                 co, co));
    PGconn *conn = run->conn;
    int64_t start = harness_now_ms();
    harness_exec(conn,
                 "INSERT INTO pgwork.tasks (queue) SELECT 'short' FROM generate_series(1, 3000)");
    bool done = harness_wait_until(
        conn, "SELECT count(*) FROM pgwork.tasks WHERE queue = 'short' AND state = 'done'", 3000,
        120000);
    int64_t took = harness_now_ms() - start;
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue, payload)"
                       " SELECT 'slow', '{\"sleep\": 0.05}' FROM generate_series(1, 16)");
    bool slow_done = harness_wait_until(
        conn, "SELECT count(*) FROM pgwork.tasks WHERE queue = 'slow' AND state = 'done'", 16,
        60000);
    /* Who ran the short tasks after the first 500: the two busiest
     * workers' part, in percent. */
    const char *split = harness_query_textp(
        conn,
        "SELECT string_agg(n::text, ' ' ORDER BY n DESC) FROM (SELECT count(*) AS n"
        "  FROM (SELECT locked_by FROM pgwork.tasks WHERE queue = 'short'"
        "        ORDER BY started_at, id OFFSET 500) t GROUP BY locked_by) c",
        0, NULL);
    int64_t top_two =
        harness_query_int64(conn, "SELECT coalesce(sum(n), 0)::bigint FROM (SELECT count(*) AS n"
                                  "  FROM (SELECT locked_by FROM pgwork.tasks WHERE queue = 'short'"
                                  "        ORDER BY started_at, id OFFSET 500) t"
                                  "  GROUP BY locked_by ORDER BY n DESC LIMIT 2) c");
    int64_t slow_workers = harness_query_int64(
        conn, "SELECT count(DISTINCT locked_by) FROM pgwork.tasks WHERE queue = 'slow'");
    int64_t most[2];
    const char *queues[] = {"short", "slow"};
    for (int q = 0; q < 2; q++)
        most[q] = harness_query_int64(
            conn, harness_printf("SELECT coalesce(max(running), 0) FROM ("
                                 "  SELECT sum(d) OVER (ORDER BY at, d ROWS UNBOUNDED PRECEDING)"
                                 "    AS running"
                                 "  FROM (SELECT started_at AS at, 1 AS d FROM pgwork.tasks"
                                 "        WHERE queue = '%s'"
                                 "        UNION ALL SELECT finished_at, -1 FROM pgwork.tasks"
                                 "        WHERE queue = '%s' AND finished_at IS NOT NULL) e) s",
                                 queues[q], queues[q]));
    fprintf(stderr,
            "limits: holders: 3000 short tasks capped at 8 in %" PRId64
            " ms, after the first 500 by worker: %s (two busiest %" PRId64
            "); slow ones by %" PRId64 " workers; at most %" PRId64 " and %" PRId64
            " running by the rows' times\n",
            took, split, top_two, slow_workers, most[0], most[1]);
    if (!done || !slow_done || top_two < 2250 || slow_workers < 4)
        harness_stderr_dump(pod);
    ck_assert_msg(done && slow_done, "tasks not done: %s", harness_tasks_text(conn));
    ck_assert_msg(most[0] <= 8 && most[1] <= 4,
                  "the rows' times show %" PRId64 " and %" PRId64 " running (caps 8 and 4)",
                  most[0], most[1]);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks"
                                               " WHERE state = 'done' AND attempts = 1"),
                     3016);
    ck_assert_msg(top_two >= 2250,
                  "the two busiest workers ran %" PRId64 " of the last 2500 short tasks (by "
                  "worker: %s): every worker held a share of the cap",
                  top_two, split);
    ck_assert_msg(slow_workers == 4, "slow tasks ran on %" PRId64 " workers (4 serve them)",
                  slow_workers);
    ck_assert_int_eq(harness_stop_supervisor(pod, SIGTERM, 20000), 0);
}
END_TEST

/*
 * Cap 1, two workers: task A runs (a 30 s sleep), task B waits for the cap
 * on the other worker. Cancelling A frees its slot, and B starts within
 * seconds, not at the 60 s safety poll: the worker that ran A announces
 * the freed slot (before: nobody did, and B waited for the poll). Killing
 * B's worker (-9) requeues B, which runs again; cancelled too, nothing is
 * left running.
 */
START_TEST(cancelled_and_requeued_tasks_free_their_slot)
{
    struct harness_run *run = harness_run_database(NULL);
    run->config = harness_scenario_config(&(struct harness_scenario){
        .workers = "count = 2 safety_poll_interval = 60s",
        .queues = "queue \"c\" { command = {\"/bin/sleep\", \"30\"} concurrency = 1 }"});
    struct harness_supervisor *pod = harness_spawn_supervisor(run->config, run->conninfo);
    harness_wait_output(pod, "listening on channel");
    struct harness_worker w[HARNESS_MAX_WORKERS];
    harness_wait_idle(pod, 2, w);
    PGconn *conn = run->conn;
    int64_t a = harness_query_int64(conn, "SELECT pgwork.enqueue('c')");
    harness_expect(conn, pod, "SELECT count(*) FROM pgwork.tasks WHERE state = 'running'", 1, 10000,
                   "task A running");
    int64_t b = harness_query_int64(conn, "SELECT pgwork.enqueue('c')");
    /* B's claim found the cap full and its worker went to sleep on it. */
    harness_expect(conn, pod, "SELECT count(*) FROM pgwork.queue_limits WHERE waiting", 1, 10000,
                   "a worker waiting for the cap");
    harness_expect(conn, pod,
                   harness_printf("SELECT count(*) FROM pgwork.tasks WHERE id = %" PRId64
                                  " AND state = 'pending'",
                                  b),
                   1, 1000, "task B held back by the cap");
    int64_t cancelled_at = harness_now_ms();
    harness_exec(conn, harness_printf("SELECT pgwork.cancel(%" PRId64 ")", a));
    harness_expect(conn, pod,
                   harness_printf("SELECT count(*) FROM pgwork.tasks WHERE id = %" PRId64
                                  " AND state = 'running'",
                                  b),
                   1, 10000, "task B running after A was cancelled");
    fprintf(stderr, "limits: B started %" PRId64 " ms after A was cancelled\n",
            harness_now_ms() - cancelled_at);

    pid_t runner = 0;
    for (int64_t until = harness_now_ms() + 10000; runner == 0 && harness_now_ms() < until;)
        runner = harness_worker_running(pod, b);
    ck_assert_msg(runner > 0, "no worker shows task B");
    kill(runner, SIGKILL);
    harness_expect(conn, pod,
                   harness_printf("SELECT count(*) FROM pgwork.tasks WHERE id = %" PRId64
                                  " AND state = 'running' AND attempts = 2",
                                  b),
                   1, 15000, "task B running again after its worker was killed");
    harness_exec(conn, harness_printf("SELECT pgwork.cancel(%" PRId64 ")", b));
    harness_expect(conn, pod, "SELECT count(*) FROM pgwork.tasks WHERE state = 'running'", 0, 5000,
                   "nothing running once B is cancelled");
    ck_assert_int_eq(harness_stop_supervisor(pod, SIGTERM, 20000), 0);
}
END_TEST

/* /metrics through tests/integration/http_get.py (a real exposition
 * parser): its sample lines (harness-owned). */
static const char *limits_metrics(int port)
{
    const char *dir = getenv("PGWORK_TESTS_DIR") ? getenv("PGWORK_TESTS_DIR") : "tests/integration";
    FILE *p = popen(harness_printf("/usr/bin/python3 %s/http_get.py "
                                   "'http://127.0.0.1:%d/metrics' --metrics",
                                   dir, port),
                    "r");
    ck_assert_ptr_nonnull(p);
    static char text[1 << 17];
    size_t len = fread(text, 1, sizeof(text) - 1, p);
    text[len] = '\0';
    ck_assert_int_eq(pclose(p), 0);
    return harness_printf("%s", text);
}

/* A sample's value ("name{labels} value" at a line start), -1 if absent. */
static double limits_sample(const char *samples, const char *name_and_labels)
{
    const char *needle = harness_printf("%s ", name_and_labels);
    for (const char *line = samples; (line = strstr(line, needle)) != NULL; line++)
        if (line == samples || line[-1] == '\n')
            return atof(line + strlen(needle));
    return -1;
}

/*
 * What an operator sees and changes: /metrics shows each limited queue's
 * cap and rate beside the running count, the starts of the last period
 * and the tasks held back; `pgwork status --json` the same; a HUP that
 * raises the cap from 1 to 3 lets 3 run (rolled workers), never more.
 */
START_TEST(limits_shown_and_reloaded)
{
    struct harness_run *run = harness_run_database(NULL);
    int port = harness_free_port();
    const char *sections =
        harness_printf("workers { count = 4 safety_poll_interval = 60s }\n"
                       "log { format = \"text\" }\n"
                       "http { listen = \"127.0.0.1:%d\" }\n"
                       "queue \"r\" { command = {\"/bin/true\"} rate = \"2/1m\" }\n",
                       port);
    const char *config = harness_write_config(harness_printf(
        "%squeue \"c\" { command = {\"/bin/sleep\", \"0.3\"} concurrency = 1 }\n", sections));
    struct harness_supervisor *sup = harness_spawn_supervisor(config, run->conninfo);
    harness_wait_output(sup, "listening on channel");
    PGconn *conn = run->conn;
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) SELECT q FROM generate_series(1, 5),"
                       " (VALUES ('r'), ('c')) v(q)");
    /* The rate's two starts of the minute, and c running one at a time. */
    harness_expect(conn, sup,
                   "SELECT count(*) FROM pgwork.tasks WHERE queue = 'r' AND state = 'done'", 2,
                   10000, "two starts of r");
    harness_expect(conn, sup,
                   "SELECT count(*) FROM pgwork.tasks WHERE queue = 'c' AND state = 'running'", 1,
                   10000, "one c running");
    /* The first scrape asks for a reading, a later one shows it. */
    const char *m = limits_metrics(port);
    int64_t deadline = harness_now_ms() + 10000;
    while (limits_sample(m, "pgwork_limit_starts{queue=\"r\"}") < 0 &&
           harness_now_ms() < deadline) {
        usleep(50000);
        m = limits_metrics(port);
    }
    ck_assert_msg(limits_sample(m, "pgwork_limit_concurrency{queue=\"c\"}") == 1, "metrics:\n%s",
                  m);
    ck_assert_double_le(limits_sample(m, "pgwork_limit_running{queue=\"c\"}"), 1);
    ck_assert_double_eq(limits_sample(m, "pgwork_limit_concurrency{queue=\"r\"}"), 0);
    ck_assert_double_eq(limits_sample(m, "pgwork_limit_rate{queue=\"r\"}"), 2);
    ck_assert_double_eq(limits_sample(m, "pgwork_limit_rate_period_seconds{queue=\"r\"}"), 60);
    ck_assert_double_eq(limits_sample(m, "pgwork_limit_starts{queue=\"r\"}"), 2);
    ck_assert_double_eq(limits_sample(m, "pgwork_limit_waiting{queue=\"r\"}"), 3);

    const char *status_path = harness_printf("%s/status.json", harness_tmpdir());
    const char *out = NULL;
    ck_assert_int_eq(harness_pgwork(run->conninfo, NULL, &out, NULL,
                                    (const char *const[]){"-c", config, "status", "--json", NULL}),
                     0);
    harness_write_file(status_path, out);
    ck_assert_msg(
        harness_jq_file(
            status_path,
            (const char *const[]){"-e",
                                  "[.limits[] | [.queue, .concurrency, .rate, .starts_in_period,"
                                  " .waiting_on_limit]] == [[\"r\", 0, \"2/1m\", 2, 3], "
                                  "[\"c\", 1, \"\", .limits[1].starts_in_period,"
                                  " .limits[1].waiting_on_limit]]",
                                  NULL},
            NULL) == 0,
        "status --json: %s", out);
    ck_assert_int_eq(harness_pgwork(run->conninfo, NULL, &out, NULL,
                                    (const char *const[]){"-c", config, "status", NULL}),
                     0);
    ck_assert_msg(strstr(out, "LIMITED QUEUE") != NULL && strstr(out, "2/1m") != NULL, "status: %s",
                  out);

    /* HUP: cap 3. The workers roll onto it; then 3 run at once, not more. */
    harness_write_file(config, harness_printf("%squeue \"c\" { command = {\"/bin/sleep\", \"0.3\"} "
                                              "concurrency = 3 }\n",
                                              sections));
    harness_signal_and_wait(sup, sup->pid, SIGHUP, "reloaded");
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) SELECT 'c' FROM generate_series(1, 12)");
    int64_t most = 0;
    deadline = harness_now_ms() + 20000;
    while (harness_now_ms() < deadline &&
           harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks WHERE queue = 'c'"
                                     " AND state <> 'done'") > 0) {
        int64_t running = harness_query_int64(
            conn, "SELECT count(*) FROM pgwork.tasks WHERE queue = 'c' AND state = 'running'");
        most = running > most ? running : most;
        usleep(2000);
    }
    ck_assert_msg(most == 3, "after the HUP to cap 3, at most %" PRId64 " c running at once", most);
    /* The new values are recorded by the claims themselves: no claim may
     * fail on the way (two UPDATEs of the queue's limits row in one claim
     * statement did, every claim, while the waiting flag changed). */
    ck_assert_msg(strstr(harness_stderr_text(sup), "claim failed") == NULL, "a claim failed:\n%s",
                  harness_stderr_text(sup));
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

Suite *limits_suite(void)
{
    Suite *s = suite_create("limits");
    TCase *tc = harness_tcase("across_pods");
    tcase_add_test(tc, cap_holds_across_two_pods);
    tcase_add_test(tc, rate_holds_across_two_pods);
    tcase_add_test(tc, limits_hold_behind_pgbouncer);
    tcase_add_test(tc, limits_shown_and_reloaded);
    suite_add_tcase(s, tc);
    TCase *slots = harness_tcase("free_slots");
    tcase_add_test(slots, capped_claims_take_the_free_slots);
    tcase_add_test(slots, handoffs_keep_the_cap);
    tcase_add_test(slots, failed_handoff_keeps_its_finished_tasks);
    tcase_add_test(slots, finished_tasks_are_not_held_behind_slow_ones);
    tcase_add_test(slots, cancelled_and_requeued_tasks_free_their_slot);
    tcase_add_test(slots, short_capped_tasks_are_held_by_fewer_workers);
    suite_add_tcase(s, slots);
    return s;
}
