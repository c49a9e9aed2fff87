/*
 * test_unique.c — unique keys (issue 13 item 2, migration 0007): while a
 * task of a queue with a key is pending or running, no second one is made
 * — by pgwork.enqueue, by a plain INSERT ... ON CONFLICT DO NOTHING, or by
 * `pgwork enqueue --unique-key` — from however many connections at once;
 * once the task is done or dead the key is free again.
 *
 * Judged by the rows in pgwork.tasks and the ids the callers got back.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "suites.h"

#define RACERS 8

/* Send sql to RACERS connections of their own, all waiting on an advisory
 * lock this connection holds, then let them go at once; each racer's last
 * result (one text value, or NULL) into values[i]. A racer's error fails
 * the test. */
static void race(const char *conninfo, const char *sql, const char *values[RACERS])
{
    PGconn *gate = harness_connect(conninfo);
    harness_exec(gate, "SELECT pg_advisory_lock(7301)");
    PGconn *racers[RACERS];
    const char *script = harness_printf("SELECT pg_advisory_lock_shared(7301); %s", sql);
    for (int i = 0; i < RACERS; i++) {
        racers[i] = harness_connect(conninfo);
        ck_assert_msg(PQsendQuery(racers[i], script) == 1, "racer %d: %s", i,
                      PQerrorMessage(racers[i]));
    }
    /* Every racer waits on the gate before it is opened. */
    ck_assert_msg(harness_wait_until(gate,
                                     "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                                     " AND objid = 7301 AND NOT granted",
                                     RACERS, 10000),
                  "the racers did not all reach the gate");
    harness_exec(gate, "SELECT pg_advisory_unlock(7301)");
    for (int i = 0; i < RACERS; i++) {
        values[i] = NULL;
        PGresult *res;
        while ((res = PQgetResult(racers[i])) != NULL) {
            ExecStatusType st = PQresultStatus(res);
            ck_assert_msg(st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK, "racer %d: %s", i,
                          PQresultErrorMessage(res));
            if (st == PGRES_TUPLES_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
                values[i] = harness_printf("%s", PQgetvalue(res, 0, 0));
            else if (st == PGRES_TUPLES_OK)
                values[i] = NULL;
            PQclear(res);
        }
        harness_disconnect(racers[i]);
    }
    harness_disconnect(gate);
}

static const char *unique_database(PGconn **conn)
{
    const char *conninfo = harness_db_create(NULL);
    ck_assert_int_eq(harness_migrate(conninfo), 0);
    *conn = harness_connect(conninfo);
    return conninfo;
}

static int64_t tasks_with_key(PGconn *conn, const char *key)
{
    return harness_query_int64p(conn, "SELECT count(*) FROM pgwork.tasks WHERE unique_key = $1", 1,
                                (const char *const[]){key});
}

/* pgwork.enqueue from 8 connections at once: one task, and all eight got
 * its id. */
START_TEST(concurrent_enqueue_makes_one_task)
{
    PGconn *conn;
    const char *conninfo = unique_database(&conn);
    const char *ids[RACERS];
    race(conninfo, "SELECT pgwork.enqueue('q', '{}', unique_key => 'report-7')", ids);
    ck_assert_int_eq(tasks_with_key(conn, "report-7"), 1);
    const char *id = harness_query_text(conn, "SELECT id::text FROM pgwork.tasks");
    for (int i = 0; i < RACERS; i++)
        ck_assert_msg(ids[i] != NULL && strcmp(ids[i], id) == 0,
                      "racer %d got task %s, the task is %s", i, ids[i] ? ids[i] : "none", id);
    /* Another queue, or no key: not the same task. */
    harness_exec(conn, "SELECT pgwork.enqueue('other', '{}', unique_key => 'report-7')");
    harness_exec(conn, "SELECT pgwork.enqueue('q', '{}')");
    harness_exec(conn, "SELECT pgwork.enqueue('q', '{}')");
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks"), 4);
}
END_TEST

/* A plain INSERT ... ON CONFLICT DO NOTHING from 8 connections: one row;
 * the statement that lost inserts nothing and announces nothing. */
START_TEST(concurrent_insert_on_conflict_makes_one_task)
{
    PGconn *conn;
    const char *conninfo = unique_database(&conn);
    const char *ids[RACERS];
    race(conninfo,
         "INSERT INTO pgwork.tasks (queue, unique_key) VALUES ('q', 'sync-3')"
         " ON CONFLICT DO NOTHING RETURNING id",
         ids);
    ck_assert_int_eq(tasks_with_key(conn, "sync-3"), 1);
    int inserted = 0;
    for (int i = 0; i < RACERS; i++)
        inserted += ids[i] != NULL;
    ck_assert_int_eq(inserted, 1);

    /* The conflict target of the README's other form works too. */
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue, unique_key) VALUES ('q', 'sync-3')"
                       " ON CONFLICT (queue, unique_key)"
                       " WHERE unique_key IS NOT NULL AND state IN ('pending', 'running')"
                       " DO NOTHING");
    ck_assert_int_eq(tasks_with_key(conn, "sync-3"), 1);

    /* No notification for a row never inserted: the first one to arrive
     * is the marker sent after it. */
    PGconn *listener = harness_connect(conninfo);
    harness_listen(listener, "pgwork_tasks");
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue, unique_key) VALUES ('q', 'sync-3')"
                       " ON CONFLICT DO NOTHING");
    harness_exec(conn, "NOTIFY pgwork_tasks, 'marker'");
    const char *payload = harness_notify_wait(listener, 5000, NULL);
    ck_assert_msg(payload != NULL && strcmp(payload, "marker") == 0,
                  "a refused insert was announced: %s", payload ? payload : "(nothing)");
}
END_TEST

/* The key holds while the task is pending or running, and is free once it
 * is done or dead: with a real supervisor running the tasks. */
START_TEST(key_free_again_once_done_or_dead)
{
    PGconn *conn;
    const char *conninfo = unique_database(&conn);
    harness_exec(conn, "CREATE TABLE ran (task bigint)");
    /* A task runs once it gets advisory lock 7302 (shared), which holder
     * keeps it from for as long as the test wants it running; one whose
     * payload says fail divides by zero. */
    const char *config = harness_write_config(
        "workers { count = 1 }\n"
        "log { level = \"info\" format = \"text\" }\n"
        "queue \"q\" { handler = \"sql\" max_attempts = 1 "
        "statement = \"INSERT INTO ran SELECT $2 FROM (SELECT pg_advisory_xact_lock_shared(7302)) l"
        " WHERE 1 / (CASE WHEN $1 ? 'fail' THEN 0 ELSE 1 END) = 1\" }\n");
    PGconn *holder = harness_connect(conninfo);
    harness_exec(holder, "SELECT pg_advisory_lock(7302)");
    struct harness_supervisor *sup = harness_spawn_supervisor(config, conninfo);
    ck_assert(harness_stderr_wait_for(sup, "listening on channel", 15000));

    int64_t first =
        harness_query_int64(conn, "SELECT pgwork.enqueue('q', '{}', unique_key => 'k')");
    /* Running (its statement waits on the lock): the same task. */
    ck_assert_msg(harness_wait_until(conn,
                                     "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                                     " AND objid = 7302 AND NOT granted",
                                     1, 15000),
                  "the task did not start");
    ck_assert_int_eq(
        harness_query_int64(conn, "SELECT pgwork.enqueue('q', '{}', unique_key => 'k')"), first);
    harness_exec(holder, "SELECT pg_advisory_unlock(7302)");
    ck_assert(harness_wait_until(
        conn,
        harness_printf(
            "SELECT count(*) FROM pgwork.tasks WHERE id = %" PRId64 " AND state = 'done'", first),
        1, 15000));

    /* Done: the key is free; a new task runs. */
    int64_t second = harness_query_int64(
        conn, "SELECT pgwork.enqueue('q', '{\"fail\": true}', unique_key => 'k')");
    ck_assert_int_ne(second, first);
    ck_assert(harness_wait_until(
        conn,
        harness_printf(
            "SELECT count(*) FROM pgwork.tasks WHERE id = %" PRId64 " AND state = 'dead'", second),
        1, 15000));
    /* Dead: free as well. */
    int64_t third =
        harness_query_int64(conn, "SELECT pgwork.enqueue('q', '{}', unique_key => 'k')");
    ck_assert_int_ne(third, second);
    ck_assert_int_ne(third, first);
    ck_assert(harness_wait_until(conn, "SELECT count(*) FROM ran", 2, 15000));
    ck_assert_int_eq(harness_query_int64(conn, harness_printf("SELECT count(*) FROM ran WHERE task "
                                                              "IN (%" PRId64 ", %" PRId64 ")",
                                                              first, third)),
                     2);
    ck_assert_int_eq(tasks_with_key(conn, "k"), 3);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

static int cli_enqueue(const char *conninfo, const char *const *args, const char **out,
                       const char **err)
{
    const char *argv[8] = {"enqueue"};
    int n = 1;
    for (int i = 0; args[i] != NULL && n < 7; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return harness_pgwork(conninfo, NULL, out, err, argv);
}

/* `pgwork enqueue --unique-key`: the id of the task holding the key; bad
 * keys refused before anything is written. */
START_TEST(cli_enqueue_unique_key)
{
    PGconn *conn;
    const char *conninfo = unique_database(&conn);
    const char *out1, *out2, *out3, *err;
    ck_assert_int_eq(cli_enqueue(conninfo,
                                 (const char *const[]){"--unique-key", "nightly", "q", "{}", NULL},
                                 &out1, &err),
                     0);
    /* A payload that starts with '-' (a JSON number) is still a payload. */
    ck_assert_int_eq(cli_enqueue(conninfo,
                                 (const char *const[]){"--unique-key", "nightly", "q", "-1", NULL},
                                 &out2, &err),
                     0);
    ck_assert_str_eq(out2, out1);
    ck_assert_int_eq(cli_enqueue(conninfo, (const char *const[]){"q", "-1", NULL}, &out3, &err), 0);
    ck_assert_str_ne(out3, out1);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks"), 2);
    ck_assert_str_eq(harness_query_text(conn, "SELECT payload::text FROM pgwork.tasks"
                                              " WHERE unique_key IS NULL"),
                     "-1");

    static const struct {
        const char *key;
        const char *message;
    } bad[] = {
        {"", "pgwork: bad unique key: it is empty"},
        {"tab\there", "pgwork: bad unique key: it contains control characters"},
        {"bad \xff utf8", "pgwork: bad unique key: it is not valid UTF-8"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *out;
        int rc = cli_enqueue(conninfo, (const char *const[]){"--unique-key", bad[i].key, "q", NULL},
                             &out, &err);
        ck_assert_msg(rc == 4 && strstr(err, bad[i].message) != NULL,
                      "key %zu: exit %d, stderr: %s", i, rc, err);
    }
    char *long_key = malloc(1002);
    ck_assert_ptr_nonnull(long_key);
    memset(long_key, 'k', 1001);
    long_key[1001] = '\0';
    int rc = cli_enqueue(conninfo, (const char *const[]){"--unique-key", long_key, "q", NULL},
                         &out1, &err);
    free(long_key);
    ck_assert_msg(rc == 4 && strstr(err, "longer than 1000 bytes") != NULL, "exit %d: %s", rc, err);
    rc = cli_enqueue(conninfo, (const char *const[]){"--unique-key", NULL}, &out1, &err);
    ck_assert_msg(rc == 2 && strstr(err, "--unique-key needs a key") != NULL, "exit %d: %s", rc,
                  err);
    /* The database refuses what the CLI refuses. */
    PGresult *res = PQexec(conn, "INSERT INTO pgwork.tasks (queue, unique_key) VALUES ('q', '')");
    ck_assert_int_eq(PQresultStatus(res), PGRES_FATAL_ERROR);
    PQclear(res);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks"), 2);
}
END_TEST

/* requeue-dead never makes a second live task for a key: a dead task
 * whose key a pending or running task holds stays dead (and says so); of
 * several dead tasks with one free key, one moves. The others move. */
START_TEST(requeue_dead_keeps_keys_unique)
{
    PGconn *conn;
    const char *conninfo = unique_database(&conn);
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue, unique_key, state) VALUES"
                       " ('q', 'held', 'dead'), ('q', 'held', 'pending'),"
                       " ('q', 'free', 'dead'), ('q', 'free', 'dead'),"
                       " ('q', NULL, 'dead'), ('q', NULL, 'dead'), ('other', 'held', 'dead')");
    const char *out, *err;
    int rc = harness_pgwork(conninfo, NULL, &out, &err,
                            (const char *const[]){"requeue-dead", "--all-queues", NULL});
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    ck_assert_str_eq(out, "requeued 4 dead tasks\n");
    ck_assert_msg(strstr(err, "kept 2 tasks dead: a pending or running task holds "
                              "their unique key") != NULL,
                  "stderr: %s", err);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks WHERE queue = "
                                               "'q' AND unique_key = 'held' AND state = 'dead'"),
                     1);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks WHERE queue = "
                                               "'q' AND unique_key = 'free' AND state = 'pending'"),
                     1);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks WHERE "
                                               "unique_key IS NULL AND state = 'pending'"),
                     2);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks WHERE queue = "
                                               "'other' AND state = 'pending'"),
                     1);

    /* By id: the one left dead is named. */
    const char *id = harness_query_text(conn, "SELECT id::text FROM pgwork.tasks WHERE queue = "
                                              "'q' AND unique_key = 'held' AND state = 'dead'");
    rc = harness_pgwork(conninfo, NULL, &out, &err,
                        (const char *const[]){"requeue-dead", "--id", id, NULL});
    ck_assert_msg(rc == 4, "exit %d: %s", rc, err);
    ck_assert_msg(strstr(err, harness_printf("pgwork: task %s: left dead: a pending or running "
                                             "task holds its unique key",
                                             id)) != NULL,
                  "stderr: %s", err);
    ck_assert_str_eq(out, "requeued 0 dead tasks\n");
}
END_TEST

Suite *unique_suite(void)
{
    Suite *s = suite_create("unique");
    TCase *tc = harness_tcase("race");
    tcase_add_test(tc, concurrent_enqueue_makes_one_task);
    tcase_add_test(tc, concurrent_insert_on_conflict_makes_one_task);
    suite_add_tcase(s, tc);

    tc = harness_tcase("lifecycle");
    tcase_add_test(tc, key_free_again_once_done_or_dead);
    suite_add_tcase(s, tc);

    tc = harness_tcase("cli");
    tcase_add_test(tc, cli_enqueue_unique_key);
    tcase_add_test(tc, requeue_dead_keeps_keys_unique);
    suite_add_tcase(s, tc);
    return s;
}
