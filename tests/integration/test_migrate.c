/*
 * test_migrate.c — the database side of pgwork without a supervisor:
 * `pgwork migrate` (applies, is idempotent, survives two pods at once,
 * fails cleanly), `pgwork enqueue` (ids, payload validation, stdin, hostile
 * queue names) and the statement-level notification trigger of
 * 0001_tasks.sql (one notification per queue per statement, delays for
 * future rows, "*" for names too long to carry).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "suites.h"
#include "shared/config.h"
#include "supervisor/migrate.h"
#include "worker/claim_cache.h"
#include "worker/task.h"

#define CHANNEL "pgwork_tasks"
#define WAIT_MS 10000

static int64_t task_count(PGconn *conn)
{
    return harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks");
}

/* `pgwork enqueue QUEUE PAYLOAD` (payload NULL: input on stdin). */
static int enqueue(const char *conninfo, const char *queue, const char *payload, const char *input,
                   const char **out, const char **err)
{
    const char *const with_payload[] = {"enqueue", queue, payload, NULL};
    const char *const without[] = {"enqueue", queue, NULL};
    return harness_pgwork(conninfo, input, out, err, payload ? with_payload : without);
}

/* The task id printed by enqueue: digits and a newline. */
static const char *printed_id(const char *out)
{
    size_t digits = strspn(out, "0123456789");
    ck_assert_msg(digits > 0 && strcmp(out + digits, "\n") == 0,
                  "enqueue printed \"%s\", wanted an id and a newline", out);
    return harness_printf("%.*s", (int)digits, out);
}

/* --- migrate -------------------------------------------------------------- */

START_TEST(test_migrate_applies)
{
    PGconn *conn;
    harness_db_migrated(&conn, NULL, NULL);

    ck_assert_int_eq(harness_query_int64(conn, "SELECT (to_regclass('pgwork.tasks') IS NOT NULL)"
                                               "::int"),
                     1);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.schema_migrations"),
                     migration_count);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT max(version) FROM pgwork.schema_migrations"),
                     migrate_latest_version());
    ck_assert_str_eq(harness_query_text(conn, "SELECT name FROM pgwork.schema_migrations "
                                              "WHERE version = 1"),
                     "0001_tasks");
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pg_trigger "
                                               "WHERE tgname = 'tasks_notify'"),
                     1);
    /* The contract's defaults: a bare INSERT of a queue is a valid task. */
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('q')");
    ck_assert_str_eq(harness_query_text(conn, "SELECT state || ' ' || payload::text || ' ' || "
                                              "attempts FROM pgwork.tasks"),
                     "pending {} 0");
}
END_TEST

START_TEST(test_migrate_rerun_is_noop)
{
    PGconn *conn;
    const char *conninfo = harness_db_migrated(&conn, NULL, NULL);
    const char *applied_at =
        harness_query_text(conn, "SELECT max(applied_at)::text FROM pgwork.schema_migrations");
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('kept')");

    const char *err;
    ck_assert_int_eq(
        harness_pgwork(conninfo, NULL, NULL, &err, (const char *const[]){"migrate", NULL}), 0);
    ck_assert_int_eq(harness_migrate(conninfo), 0);

    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.schema_migrations"),
                     migration_count);
    ck_assert_str_eq(
        harness_query_text(conn, "SELECT max(applied_at)::text FROM pgwork.schema_migrations"),
        applied_at);
    ck_assert_int_eq(task_count(conn), 1);
    /* Routine NOTICEs ("already exists, skipping") stay off the terminal. */
    ck_assert_msg(strstr(err, "NOTICE") == NULL, "migrate printed a notice: %s", err);
}
END_TEST

/* Two pods starting at the same moment on an empty database. */
START_TEST(test_migrate_concurrent)
{
    const char *conninfo = harness_db_create(NULL);
    const char *const args[] = {"migrate", NULL};
    pid_t a = harness_pgwork_start(conninfo, args);
    pid_t b = harness_pgwork_start(conninfo, args);
    ck_assert_int_eq(harness_pgwork_wait(a, 30000), 0);
    ck_assert_int_eq(harness_pgwork_wait(b, 30000), 0);

    PGconn *conn = harness_connect(conninfo);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.schema_migrations"),
                     migration_count);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pg_trigger "
                                               "WHERE tgname = 'tasks_notify'"),
                     1);
}
END_TEST

/* A migration that fails is rolled back, named, and leaves no record. */
START_TEST(test_migrate_failure_rolls_back)
{
    const char *conninfo = harness_db_create(NULL);
    PGconn *conn = harness_connect(conninfo);
    harness_exec(conn, "CREATE SCHEMA pgwork; CREATE TABLE pgwork.tasks (squatter int)");

    const char *err;
    const char *const args[] = {"migrate", NULL};
    ck_assert_int_eq(harness_pgwork(conninfo, NULL, NULL, &err, args), 1);
    ck_assert_msg(strstr(err, "migration 0001_tasks failed: relation \"tasks\" already exists"),
                  "stderr: %s", err);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.schema_migrations"), 0);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pg_proc p "
                                               "JOIN pg_namespace n ON n.oid = p.pronamespace "
                                               "WHERE nspname = 'pgwork'"),
                     0);
    /* The lock was released: a second run fails the same way, promptly. */
    ck_assert_int_eq(harness_pgwork(conninfo, NULL, NULL, &err, args), 1);
    ck_assert_msg(strstr(err, "migration 0001_tasks failed"), "stderr: %s", err);
}
END_TEST

START_TEST(test_migrate_cannot_connect)
{
    const char *err;
    const char *conninfo = "host=/nonexistent/pgwork-test port=5432 dbname=nowhere user=someone "
                           "password=hunter2-secret connect_timeout=5";
    ck_assert_int_eq(
        harness_pgwork(conninfo, NULL, NULL, &err, (const char *const[]){"migrate", NULL}), 1);
    ck_assert_msg(strstr(err, "pgwork: cannot connect to database: "), "stderr: %s", err);
    ck_assert_msg(strstr(err, "hunter2") == NULL, "password printed: %s", err);

    const char *url = "postgresql://someone:hunter2-secret@/nowhere?host=/nonexistent/pgwork-test";
    ck_assert_int_eq(enqueue(url, "q", "{}", NULL, NULL, &err), 1);
    ck_assert_msg(strstr(err, "pgwork: cannot connect to database: "), "stderr: %s", err);
    ck_assert_msg(strstr(err, "hunter2") == NULL, "password printed: %s", err);
}
END_TEST

/* --- enqueue -------------------------------------------------------------- */

START_TEST(test_enqueue_prints_id)
{
    PGconn *conn;
    const char *conninfo = harness_db_migrated(&conn, NULL, NULL);
    const char *out, *err;
    ck_assert_int_eq(enqueue(conninfo, "default", "{\"n\": 1}", NULL, &out, &err), 0);
    const char *id = printed_id(out);

    const char *params[] = {id};
    ck_assert_str_eq(harness_query_textp(conn,
                                         "SELECT queue || ' ' || state || ' ' || payload::text "
                                         "FROM pgwork.tasks WHERE id = $1",
                                         1, params),
                     "default pending {\"n\": 1}");

    /* A second task gets another id. */
    ck_assert_int_eq(enqueue(conninfo, "default", "[1, 2]", NULL, &out, &err), 0);
    ck_assert_str_ne(printed_id(out), id);
    ck_assert_int_eq(task_count(conn), 2);
}
END_TEST

static const char *const bad_payloads[] = {
    "{bad", "", "{\"a\": 1", "'single'", "{\"a\": 1} trailing", "\"\\u0000\"",
};

START_TEST(test_enqueue_invalid_json)
{
    PGconn *conn;
    const char *conninfo = harness_db_migrated(&conn, NULL, NULL);
    const char *out, *err;
    ck_assert_int_eq(enqueue(conninfo, "default", bad_payloads[_i], NULL, &out, &err), 4);
    ck_assert_msg(strstr(err, "pgwork: payload is not valid JSON: "), "stderr: %s", err);
    ck_assert_str_eq(out, "");
    ck_assert_int_eq(task_count(conn), 0);
}
END_TEST

START_TEST(test_enqueue_payload_from_stdin)
{
    PGconn *conn;
    const char *conninfo = harness_db_migrated(&conn, NULL, NULL);

    /* About 1.2 MB: more than any pipe buffer, so both sides must stream. */
    size_t cap = 2 * 1024 * 1024, len = 0;
    char *json = malloc(cap);
    ck_assert_ptr_nonnull(json);
    len += (size_t)snprintf(json + len, cap - len, "{\"name\": \"big\", \"items\": [");
    for (int i = 0; i < 150000; i++)
        len += (size_t)snprintf(json + len, cap - len, "%s%d", i ? ", " : "", i);
    snprintf(json + len, cap - len, "]}\n");

    const char *out, *err;
    int rc = enqueue(conninfo, "big", NULL, json, &out, &err);
    if (rc != 0)
        free(json);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    const char *params[] = {printed_id(out), json};
    int64_t same = harness_query_int64p(conn,
                                        "SELECT (payload = $2::jsonb)::int FROM pgwork.tasks "
                                        "WHERE id = $1",
                                        2, params);
    free(json);
    ck_assert_int_eq(same, 1);

    /* Empty stdin is not JSON; invalid stdin is refused like argv. */
    ck_assert_int_eq(enqueue(conninfo, "big", NULL, "", &out, &err), 4);
    ck_assert_int_eq(enqueue(conninfo, "big", NULL, "{nope}", &out, &err), 4);
    ck_assert_msg(strstr(err, "pgwork: payload is not valid JSON: "), "stderr: %s", err);
    ck_assert_int_eq(task_count(conn), 1);
}
END_TEST

static const char *const hostile_names[] = {
    "it's \"quoted\"",
    "with space",
    "x'); DROP TABLE pgwork.tasks; --",
    "ünïcødé ✓ 日本語 🚀",
    "$1",
    "back\\slash\\",
    "%s%n%x",
    "  padded  ",
    "'",
    "\"",
    "*",
};

/*
 * Arm queue as a pod would (migration 0008): a doorbell row ringing
 * CHANNEL, on which listener's backend listens. Without an armed pod the
 * trigger rings nobody.
 */
static void arm_queue(PGconn *conn, PGconn *listener, const char *queue)
{
    char pid[16];
    snprintf(pid, sizeof(pid), "%d", PQbackendPID(listener));
    const char *params[] = {queue, pid};
    harness_execp(conn,
                  "INSERT INTO pgwork.doorbell (queue, pod, channel, backend_pid, backend_start, "
                  "armed) SELECT $1, 'test', '" CHANNEL "', a.pid, a.backend_start, true "
                  "FROM pg_stat_activity a WHERE a.pid = $2::int",
                  2, params);
}

/* A hostile name is stored and announced byte for byte (to the pod that
 * armed it). */
START_TEST(test_enqueue_hostile_queue_name)
{
    PGconn *conn;
    const char *conninfo = harness_db_migrated(&conn, NULL, NULL);
    PGconn *listener = harness_connect(conninfo);
    harness_listen(listener, CHANNEL);
    const char *name = hostile_names[_i];
    arm_queue(conn, listener, name);

    const char *out, *err;
    int rc = enqueue(conninfo, name, "{\"hostile\": true}", NULL, &out, &err);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, err);
    const char *params[] = {printed_id(out), name};
    ck_assert_int_eq(harness_query_int64p(conn,
                                          "SELECT count(*) FROM pgwork.tasks "
                                          "WHERE id = $1 AND queue = $2",
                                          2, params),
                     1);
    ck_assert_int_eq(task_count(conn), 1);

    const char *payload = harness_notify_wait(listener, WAIT_MS, NULL);
    ck_assert_ptr_nonnull(payload);
    ck_assert_str_eq(payload, harness_printf("0 %s", name));
}
END_TEST

static const char *const bad_names[] = {
    "",
    "tab\there",
    "new\nline",
    "del\x7f",
    "bad \xff utf8",
    "overlong \xc0\xaf",
    "surrogate \xed\xa0\x80",
    "truncated \xe2\x82",
    "c1 \xc2\x85 control",
};

START_TEST(test_enqueue_bad_queue_name)
{
    PGconn *conn;
    const char *conninfo = harness_db_migrated(&conn, NULL, NULL);
    const char *out, *err;
    ck_assert_int_eq(enqueue(conninfo, bad_names[_i], "{}", NULL, &out, &err), 4);
    ck_assert_msg(strstr(err, "pgwork: bad queue name: "), "stderr: %s", err);
    ck_assert_int_eq(task_count(conn), 0);
}
END_TEST

START_TEST(test_enqueue_queue_name_length)
{
    PGconn *conn;
    const char *conninfo = harness_db_migrated(&conn, NULL, NULL);
    char name[CONFIG_QUEUE_NAME_MAX + 2];
    const char *out, *err;

    memset(name, 'q', sizeof(name) - 1);
    name[CONFIG_QUEUE_NAME_MAX] = '\0';
    ck_assert_int_eq(enqueue(conninfo, name, "{}", NULL, &out, &err), 0);

    name[CONFIG_QUEUE_NAME_MAX] = 'q';
    name[CONFIG_QUEUE_NAME_MAX + 1] = '\0';
    ck_assert_int_eq(enqueue(conninfo, name, "{}", NULL, &out, &err), 4);
    ck_assert_msg(strstr(err, "pgwork: bad queue name: "), "stderr: %s", err);
    ck_assert_int_eq(task_count(conn), 1);
}
END_TEST

/* run_at 'infinity' / '-infinity' would poison every claim of the queue
 * and the poll of all queues (no arithmetic on them): refused at INSERT,
 * naming the constraint (migration 0004); a far-future time is fine. */
START_TEST(test_infinite_run_at_refused)
{
    PGconn *conn;
    harness_db_migrated(&conn, NULL, NULL);
    const char *values[] = {"infinity", "-infinity"};
    for (int i = 0; i < 2; i++) {
        const char *params[] = {values[i]};
        PGresult *res = PQexecParams(
            conn, "INSERT INTO pgwork.tasks (queue, run_at) VALUES ('q', $1::timestamptz)", 1, NULL,
            params, NULL, NULL, 0);
        ck_assert_int_eq(PQresultStatus(res), PGRES_FATAL_ERROR);
        ck_assert_msg(strstr(PQresultErrorMessage(res), "tasks_run_at_finite") != NULL, "%s",
                      PQresultErrorMessage(res));
        PQclear(res);
    }
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue, run_at) VALUES ('q', '9999-12-31')");
    ck_assert_int_eq(task_count(conn), 1);
}
END_TEST

START_TEST(test_enqueue_before_migrate)
{
    const char *conninfo = harness_db_create(NULL);
    const char *out, *err;
    ck_assert_int_eq(enqueue(conninfo, "default", "{}", NULL, &out, &err), 1);
    ck_assert_msg(strstr(err, "pgwork migrate"), "stderr: %s", err);
}
END_TEST

/* --- the notification trigger --------------------------------------------- */

/*
 * Run sql on conn, then collect every notification it caused: a marker
 * NOTIFY sent afterwards arrives after them (notifications are delivered in
 * commit order), so "all of them" needs no quiet-period guess. Returns the
 * number collected into payloads (at most max).
 */
static int notifications_of(PGconn *conn, PGconn *listener, const char *sql, const char **payloads,
                            int max)
{
    harness_exec(conn, sql);
    harness_exec(conn, "NOTIFY " CHANNEL ", 'test-marker'");
    int n = 0;
    for (;;) {
        const char *payload = harness_notify_wait(listener, WAIT_MS, NULL);
        ck_assert_msg(payload != NULL, "no marker notification within %d ms", WAIT_MS);
        if (strcmp(payload, "test-marker") == 0)
            return n;
        ck_assert_msg(n < max, "more than %d notifications", max);
        payloads[n++] = payload;
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

START_TEST(test_notify_one_per_queue_per_statement)
{
    PGconn *conn;
    const char *conninfo = harness_db_migrated(&conn, NULL, NULL);
    PGconn *listener = harness_connect(conninfo);
    harness_listen(listener, CHANNEL);
    const char *queues[] = {"qa", "qb", "qc", "qd"};
    for (int i = 0; i < 4; i++)
        arm_queue(conn, listener, queues[i]);

    const char *payloads[16];
    int n = notifications_of(conn, listener,
                             "INSERT INTO pgwork.tasks (queue, payload) "
                             "SELECT CASE WHEN i % 2 = 0 THEN 'qa' ELSE 'qb' END, "
                             "jsonb_build_object('i', i) FROM generate_series(1, 10000) i",
                             payloads, 16);
    ck_assert_int_eq(task_count(conn), 10000);
    ck_assert_int_eq(n, 2);
    qsort(payloads, (size_t)n, sizeof(payloads[0]), cmp_str);
    ck_assert_str_eq(payloads[0], "0 qa");
    ck_assert_str_eq(payloads[1], "0 qb");

    /* pgwork.enqueue() notifies too; rows not pending do not. */
    n = notifications_of(conn, listener, "SELECT pgwork.enqueue('qc', '{}')", payloads, 16);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(payloads[0], "0 qc");
    n = notifications_of(conn, listener,
                         "INSERT INTO pgwork.tasks (queue, state) VALUES ('qd', 'done')", payloads,
                         16);
    ck_assert_int_eq(n, 0);
}
END_TEST

START_TEST(test_notify_future_rows_carry_due_time)
{
    PGconn *conn;
    const char *conninfo = harness_db_migrated(&conn, NULL, NULL);
    PGconn *listener = harness_connect(conninfo);
    harness_listen(listener, CHANNEL);
    arm_queue(conn, listener, "later");
    arm_queue(conn, listener, "mixed");

    const char *payloads[4];
    int n = notifications_of(conn, listener,
                             "INSERT INTO pgwork.tasks (queue, run_at) VALUES "
                             "('later', now() + interval '5 seconds'), "
                             "('later', now() + interval '7 seconds')",
                             payloads, 4);
    ck_assert_int_eq(n, 1);
    /* "@<earliest run_at, ms since the epoch> <queue>": a due time, not a
     * delay measured at insert (migration 0005). */
    long long due = -1;
    char queue[32] = "";
    ck_assert_int_eq(sscanf(payloads[0], "@%lld %31s", &due, queue), 2);
    ck_assert_str_eq(queue, "later");
    ck_assert_int_eq(due, harness_query_int64(conn, "SELECT ceil(extract(epoch FROM min(run_at)) "
                                                    "* 1000)::bigint FROM pgwork.tasks"));

    /* One row due now wins: the queue has work at once. */
    n = notifications_of(conn, listener,
                         "INSERT INTO pgwork.tasks (queue, run_at) VALUES "
                         "('mixed', now() + interval '1 hour'), ('mixed', now())",
                         payloads, 4);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(payloads[0], "0 mixed");
}
END_TEST

/*
 * The rule the trigger and `pgwork requeue-dead` share (migration 0006),
 * asked directly: the channel setting with its default, and the three
 * payload forms listener_parse_notification reads.
 */
START_TEST(test_notify_message_is_the_rule)
{
    PGconn *conn;
    harness_db_migrated(&conn, NULL, NULL);
    ck_assert_str_eq(harness_query_text(conn, "SELECT pgwork.notify_channel()"), "pgwork_tasks");
    harness_exec(conn, "SET pgwork.notify_channel = 'elsewhere'");
    ck_assert_str_eq(harness_query_text(conn, "SELECT pgwork.notify_channel()"), "elsewhere");

    ck_assert_str_eq(harness_query_text(conn, "SELECT pgwork.notify_message('q', now())"), "0 q");
    ck_assert_str_eq(
        harness_query_text(conn, "SELECT pgwork.notify_message('q', now() - interval '1 hour')"),
        "0 q");
    ck_assert_int_eq(harness_query_int64(conn,
                                         "SELECT count(*) FROM (SELECT now() + interval "
                                         "'5 seconds' AS t) x WHERE "
                                         "pgwork.notify_message('q', x.t) = '@' || "
                                         "ceil(extract(epoch FROM x.t) * 1000)::bigint || ' q'"),
                     1);
    /* "0 " + 7997 bytes is the longest payload; one byte more: "*". */
    ck_assert_int_eq(
        harness_query_int64(conn, "SELECT octet_length(pgwork.notify_message(repeat('x', 7997), "
                                  "now()))"),
        7999);
    ck_assert_str_eq(
        harness_query_text(conn, "SELECT pgwork.notify_message(repeat('x', 7998), now())"), "*");
}
END_TEST

/*
 * PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; the trigger
 * sends "*" (sweep every queue) instead of failing the INSERT. "0 " + 7997
 * bytes is the longest payload carried; a multi-byte name counts in bytes.
 * (No pod can arm such names — a queue name has at most 1024 bytes — so
 * the producer forces the notification: pgwork.notify = on.)
 */
START_TEST(test_notify_long_queue_name_degrades)
{
    PGconn *conn;
    const char *conninfo = harness_db_migrated(&conn, NULL, NULL);
    PGconn *listener = harness_connect(conninfo);
    harness_listen(listener, CHANNEL);
    harness_exec(conn, "SET pgwork.notify = on");

    static char name[8200];
    const char *params[1] = {name};
    const char *payload;

    memset(name, 'x', 7990);
    name[7990] = '\0';
    harness_execp(conn, "INSERT INTO pgwork.tasks (queue) VALUES ($1)", 1, params);
    payload = harness_notify_wait(listener, WAIT_MS, NULL);
    ck_assert_ptr_nonnull(payload);
    ck_assert_str_eq(payload, harness_printf("0 %s", name));

    memset(name, 'x', 7997);
    name[7997] = '\0';
    harness_execp(conn, "INSERT INTO pgwork.tasks (queue) VALUES ($1)", 1, params);
    payload = harness_notify_wait(listener, WAIT_MS, NULL);
    ck_assert_ptr_nonnull(payload);
    ck_assert_uint_eq(strlen(payload), 7999);

    name[7997] = 'x';
    name[7998] = '\0';
    harness_execp(conn, "INSERT INTO pgwork.tasks (queue) VALUES ($1)", 1, params);
    payload = harness_notify_wait(listener, WAIT_MS, NULL);
    ck_assert_ptr_nonnull(payload);
    ck_assert_str_eq(payload, "*");

    /* A future row's delay makes the payload longer: 7995 bytes no longer
     * fit after "NNNN ". */
    name[7995] = '\0';
    harness_execp(conn,
                  "INSERT INTO pgwork.tasks (queue, run_at) "
                  "VALUES ($1, now() + interval '10 seconds')",
                  1, params);
    payload = harness_notify_wait(listener, WAIT_MS, NULL);
    ck_assert_ptr_nonnull(payload);
    ck_assert_str_eq(payload, "*");

    /* 2666 × "€" = 7998 bytes in 2666 characters. */
    name[0] = '\0';
    for (int i = 0; i < 2666; i++)
        strcat(name, "\xe2\x82\xac");
    harness_execp(conn, "INSERT INTO pgwork.tasks (queue) VALUES ($1)", 1, params);
    payload = harness_notify_wait(listener, WAIT_MS, NULL);
    ck_assert_ptr_nonnull(payload);
    ck_assert_str_eq(payload, "*");

    ck_assert_int_eq(task_count(conn), 5);
}
END_TEST

/* --- plans ------------------------------------------------------------------ */

/* The plan of a prepared worker statement, as text. */
static const char *plan_of(PGconn *conn, const char *execute)
{
    PGresult *res = PQexec(conn, harness_printf("EXPLAIN %s", execute));
    ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "EXPLAIN %s: %s", execute,
                  PQerrorMessage(conn));
    const char *plan = "";
    for (int i = 0; i < PQntuples(res); i++)
        plan = harness_printf("%s%s\n", plan, PQgetvalue(res, i, 0));
    PQclear(res);
    return plan;
}

/*
 * Statistics that say "nothing pending" (taken while the queue was empty,
 * its usual state) and then a backlog: the claim must still walk
 * tasks_claim_idx in order, never read the backlog into a Sort (migration
 * 0004). From a cursor, the cursor bounds the index scan. The
 * finished-task UPDATE goes by primary key, not through the index of
 * running tasks. Custom plans, as the workers use.
 */
START_TEST(test_claim_plans_survive_stale_statistics)
{
    PGconn *conn;
    harness_db_migrated(&conn, NULL, NULL);
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue, state, finished_at)"
                       " SELECT 'q', 'done', now() FROM generate_series(1, 200)");
    harness_exec(conn, "ANALYZE pgwork.tasks");
    harness_exec(conn,
                 "INSERT INTO pgwork.tasks (queue) SELECT 'q' FROM generate_series(1, 50000)");
    ck_assert_int_eq(task_prepare(conn), 0);
    struct queue_config queue = {.name = "q", .batch = 10, .max_attempts = 25};
    struct claim_state claim = {0};
    /* The worker's claim texts, prepared here to be explained (the worker
     * sends them unnamed: custom plans, as force_custom_plan gives). */
    static const char *const types[] = {"text, text, int8, int4",
                                        "text, text, int8, int4, int4, text, int8"};
    for (int i = 0; i < 2; i++) {
        const char *sql = task_claim_sql(&claim, &queue, i == 1);
        harness_exec(conn, harness_printf("PREPARE claim_%d (%s) AS %s", i, types[i], sql));
    }
    task_claim_state_free(&claim);

    harness_exec(conn, "SET plan_cache_mode = force_custom_plan"); /* as unnamed statements */
    const char *executes[] = {
        "EXECUTE claim_0('q', 'w', 1000, 25)",
        "EXECUTE claim_1('q', 'w', 1000, 25, 0, now() - interval '1 min', 7)"};
    for (size_t i = 0; i < sizeof(executes) / sizeof(executes[0]); i++) {
        const char *plan = plan_of(conn, executes[i]);
        ck_assert_msg(strstr(plan, "tasks_claim_idx") != NULL && strstr(plan, "Sort") == NULL,
                      "%s planned as:\n%s", executes[i], plan);
        if (i == 1)
            ck_assert_msg(strstr(plan, "Index Cond: ((queue = ") != NULL &&
                              strstr(plan, "AND (ROW(priority, run_at, id) >= ROW(") != NULL,
                          "%s: the cursor is not an index bound:\n%s", executes[i], plan);
    }
    const char *plan = plan_of(conn, "EXECUTE pgwork_done_many('{1,2,3}', 'w')");
    ck_assert_msg(strstr(plan, "tasks_pkey") != NULL, "done_many planned as:\n%s", plan);
    plan = plan_of(conn, "EXECUTE pgwork_finish_claimed('{1,2,3}', 'w', 3)");
    ck_assert_msg(strstr(plan, "tasks_pkey") != NULL, "finish_claimed planned as:\n%s", plan);
}
END_TEST

/*
 * A large claim (batch = 100, and the most auto batching asks) on a
 * backlog whose statistics came from a full table (as a busy queue's
 * autoanalyze sees it) and then a truncate: the UPDATE must find the
 * picked rows by primary key, never read the whole table into a hash
 * join — measured, that plan made each claim of 100 scan the 20,000-task
 * backlog (23 ms a claim instead of 0.5).
 */
START_TEST(test_large_claim_updates_by_primary_key)
{
    PGconn *conn;
    harness_db_migrated(&conn, NULL, NULL);
    harness_exec(conn,
                 "INSERT INTO pgwork.tasks (queue) SELECT 'q' FROM generate_series(1, 49000)");
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue, state, finished_at)"
                       " SELECT 'q', 'done', now() FROM generate_series(1, 1000)");
    harness_exec(conn, "ANALYZE pgwork.tasks");
    harness_exec(conn, "TRUNCATE pgwork.tasks"); /* keeps pg_statistic */
    harness_exec(conn,
                 "INSERT INTO pgwork.tasks (queue) SELECT 'q' FROM generate_series(1, 20000)");
    harness_exec(conn, "SET plan_cache_mode = force_custom_plan"); /* as unnamed statements */
    static const int sizes[] = {100, 1000};
    for (int i = 0; i < 2; i++) {
        struct queue_config queue = {.name = "q", .batch = sizes[i], .max_attempts = 25};
        struct claim_state claim = {0};
        harness_exec(conn, harness_printf("PREPARE big_claim_%d (text, text, int8, int4) AS %s", i,
                                          task_claim_sql(&claim, &queue, false)));
        task_claim_state_free(&claim);
        const char *plan =
            plan_of(conn, harness_printf("EXECUTE big_claim_%d('q', 'w', 1000, 25)", i));
        ck_assert_msg(strstr(plan, "Index Scan using tasks_pkey on tasks t") != NULL &&
                          strstr(plan, "Seq Scan") == NULL,
                      "a claim of %d planned as:\n%s", sizes[i], plan);
    }
}
END_TEST

/*
 * The tables the prepared statements below are planned on: which 0, a
 * truncated table, never analyzed, 300 tasks finished since and one
 * pending (the pickup bench's table); 1, statistics taken with nothing
 * else there, then 50,000 tasks in `state` (owned by 'w' when running).
 * Connected, migrated, the claim cache's settings built.
 */
static PGconn *plans_table(int which, const char *state)
{
    PGconn *conn;
    harness_db_migrated(&conn, NULL, NULL);
    if (which == 0) {
        harness_exec(conn,
                     "INSERT INTO pgwork.tasks (queue) SELECT 'q' FROM generate_series(1, 300)");
        harness_exec(conn, "UPDATE pgwork.tasks SET state = 'done', finished_at = now()");
        harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('q')");
    } else {
        harness_exec(conn, "INSERT INTO pgwork.tasks (queue, state, finished_at)"
                           " SELECT 'q', 'done', now() FROM generate_series(1, 200)");
        harness_exec(conn, "ANALYZE pgwork.tasks");
        harness_execp(conn,
                      "INSERT INTO pgwork.tasks (queue, state, locked_by)"
                      " SELECT 'q', $1, CASE WHEN $1 = 'running' THEN 'w' END"
                      " FROM generate_series(1, 50000)",
                      1, (const char *[]){state});
    }
    claim_cache_init(false);
    return conn;
}

/*
 * The claims a worker keeps prepared on its own connection
 * (worker/claim_cache.c) run with a generic plan, planned once and kept:
 * whatever the statistics said then, it must be the ordered walk of
 * tasks_claim_idx and a primary-key lookup per task — never a bitmap scan
 * of every index entry finished tasks left, a sort, or a sequential scan
 * for the UPDATE (the plan a small or freshly truncated table got with
 * the worker's settings alone). _i: 0 a truncated table, never analyzed,
 * 300 tasks finished since and one pending (the pickup bench's table);
 * 1 statistics taken with nothing pending, then a backlog of 50,000.
 * Sizes 1 and 100, from the start and from a cursor.
 */
START_TEST(test_prepared_claim_plans_walk_the_index)
{
    PGconn *conn = plans_table(_i, "pending");
    static const int sizes[] = {1, 100};
    static const char *const types[] = {"text, text, int8, int4",
                                        "text, text, int8, int4, int4, text, int8"};
    static const char *const args[] = {"'q', 'w', 1000, 25",
                                       "'q', 'w', 1000, 25, 0, now() - interval '1 min', 7"};
    for (int size = 0; size < 2; size++)
        for (int from = 0; from < 2; from++) {
            struct queue_config queue = {.name = "q", .batch = sizes[size], .max_attempts = 25};
            struct claim_state claim = {0};
            const char *name = harness_printf("claim_%d_%d", size, from);
            harness_exec(conn, harness_printf("PREPARE %s (%s) AS %s", name, types[from],
                                              task_claim_sql(&claim, &queue, from == 1)));
            task_claim_state_free(&claim);
            harness_exec(conn, "BEGIN");
            harness_exec(conn, claim_cache_settings());
            const char *plan = plan_of(conn, harness_printf("EXECUTE %s(%s)", name, args[from]));
            harness_exec(conn, "ROLLBACK");
            ck_assert_msg(strstr(plan, "Index Scan using tasks_claim_idx") != NULL &&
                              strstr(plan, "Index Scan using tasks_pkey on tasks t") != NULL &&
                              strstr(plan, "Sort") == NULL && strstr(plan, "Bitmap") == NULL &&
                              strstr(plan, "Seq Scan") == NULL && strstr(plan, "$1") != NULL,
                          "a prepared claim of %d%s planned as:\n%s", sizes[size],
                          from ? " from a cursor" : "", plan);
        }
}
END_TEST

/*
 * The one-transaction path's done, prepared on a worker's own connection
 * (worker/task.c) and run with the claim's settings: its generic plan,
 * kept for the session, must find the batch by primary key whatever the
 * statistics said — on a new or truncated table the planner would
 * otherwise pick a sequential scan and keep it (migration 0004's trap).
 * _i as above; done and deleted.
 */
START_TEST(test_prepared_done_plans_walk_the_primary_key)
{
    PGconn *conn = plans_table(_i, "running");
    for (int keep = 0; keep < 2; keep++) {
        const char *name = harness_printf("done_%d", keep);
        harness_exec(conn, harness_printf("PREPARE %s (text, text, int4) AS %s", name,
                                          task_finish_claimed_sql(keep == 1)));
        harness_exec(conn, "BEGIN");
        harness_exec(conn, claim_cache_settings());
        const char *plan = plan_of(conn, harness_printf("EXECUTE %s('{1,2,3,250}', 'w', 4)", name));
        harness_exec(conn, "ROLLBACK");
        ck_assert_msg(strstr(plan, "Index Scan using tasks_pkey on tasks") != NULL &&
                          strstr(plan, "Seq Scan") == NULL && strstr(plan, "Bitmap") == NULL &&
                          strstr(plan, "$1") != NULL,
                      "a prepared %s planned as:\n%s", keep ? "done" : "delete", plan);
    }
}
END_TEST

/*
 * A capped queue's handoff (worker/task_claim.c), prepared on a worker's
 * own connection and run with the claim's settings: its generic plan must
 * find the finished tasks and the claimed ones by primary key and walk
 * tasks_claim_idx for the due ones, on either table above — never a
 * sequential scan, a bitmap scan or a sort. Sizes 1 and 13, from the start
 * and from a cursor, done kept and deleted.
 */
START_TEST(test_prepared_handoff_plans_walk_the_indexes)
{
    PGconn *conn = plans_table(_i, "running");
    static const int sizes[] = {1, 13};
    static const char *const types[] = {"text, text, int8, int4, int8[]",
                                        "text, text, int8, int4, int4, text, int8, int8[]"};
    static const char *const args[] = {
        "'q', 'w', 1000, 25, '{1,2,3,250}'",
        "'q', 'w', 1000, 25, 0, now() - interval '1 min', 7, '{1,2,3,250}'"};
    for (int size = 0; size < 2; size++)
        for (int from = 0; from < 2; from++)
            for (int keep = 0; keep < 2; keep++) {
                struct queue_config queue = {
                    .name = "q", .batch = sizes[size], .max_attempts = 25, .keep_done = keep};
                struct claim_state claim = {.cursor_set = from == 1};
                const char *name = harness_printf("handoff_%d_%d_%d", size, from, keep);
                harness_exec(conn, harness_printf("PREPARE %s (%s) AS %s", name, types[from],
                                                  task_handoff_sql(&claim, &queue)));
                task_claim_state_free(&claim);
                harness_exec(conn, "BEGIN");
                harness_exec(conn, claim_cache_settings());
                const char *plan =
                    plan_of(conn, harness_printf("EXECUTE %s(%s)", name, args[from]));
                harness_exec(conn, "ROLLBACK");
                ck_assert_msg(strstr(plan, "Index Scan using tasks_claim_idx") != NULL &&
                                  strstr(plan, "Index Scan using tasks_pkey on tasks t") != NULL &&
                                  strstr(plan, "Index Scan using tasks_pkey on tasks") != NULL &&
                                  strstr(plan, "Sort") == NULL && strstr(plan, "Bitmap") == NULL &&
                                  strstr(plan, "Seq Scan") == NULL && strstr(plan, "$1") != NULL,
                              "a prepared handoff of %d%s (%s) planned as:\n%s", sizes[size],
                              from ? " from a cursor" : "", keep ? "done" : "deleted", plan);
            }
}
END_TEST

Suite *migrate_suite(void)
{
    Suite *s = suite_create("migrate");

    TCase *tc = harness_tcase("migrate");
    tcase_add_test(tc, test_migrate_applies);
    tcase_add_test(tc, test_migrate_rerun_is_noop);
    tcase_add_loop_test(tc, test_migrate_concurrent, 0, 3);
    tcase_add_test(tc, test_migrate_failure_rolls_back);
    tcase_add_test(tc, test_migrate_cannot_connect);
    suite_add_tcase(s, tc);

    tc = harness_tcase("enqueue");
    tcase_add_test(tc, test_enqueue_prints_id);
    tcase_add_loop_test(tc, test_enqueue_invalid_json, 0,
                        (int)(sizeof(bad_payloads) / sizeof(bad_payloads[0])));
    tcase_add_test(tc, test_enqueue_payload_from_stdin);
    tcase_add_loop_test(tc, test_enqueue_hostile_queue_name, 0,
                        (int)(sizeof(hostile_names) / sizeof(hostile_names[0])));
    tcase_add_loop_test(tc, test_enqueue_bad_queue_name, 0,
                        (int)(sizeof(bad_names) / sizeof(bad_names[0])));
    tcase_add_test(tc, test_enqueue_queue_name_length);
    tcase_add_test(tc, test_enqueue_before_migrate);
    tcase_add_test(tc, test_infinite_run_at_refused);
    suite_add_tcase(s, tc);

    tc = harness_tcase("notify");
    tcase_add_test(tc, test_notify_one_per_queue_per_statement);
    tcase_add_test(tc, test_notify_future_rows_carry_due_time);
    tcase_add_test(tc, test_notify_long_queue_name_degrades);
    tcase_add_test(tc, test_notify_message_is_the_rule);
    suite_add_tcase(s, tc);

    tc = harness_tcase("plans");
    tcase_add_test(tc, test_claim_plans_survive_stale_statistics);
    tcase_add_test(tc, test_large_claim_updates_by_primary_key);
    tcase_add_loop_test(tc, test_prepared_claim_plans_walk_the_index, 0, 2);
    tcase_add_loop_test(tc, test_prepared_done_plans_walk_the_primary_key, 0, 2);
    tcase_add_loop_test(tc, test_prepared_handoff_plans_walk_the_indexes, 0, 2);
    suite_add_tcase(s, tc);

    return s;
}
