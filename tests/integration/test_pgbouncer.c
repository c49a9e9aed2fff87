/*
 * test_pgbouncer.c — pgwork behind a real PgBouncer (DESIGN §2 "Works
 * behind PgBouncer in transaction pooling"): workers and `pgwork migrate`
 * through the pooler, in transaction and in session mode, with the
 * listener direct (listen_conninfo). Debian's PgBouncer 1.18 has no
 * max_prepared_statements: nothing pgwork relies on may live in a server
 * session — no named prepared statements, no session SETs, no session
 * advisory locks. A RECONNECT mid-run replaces every server connection, as
 * server_lifetime does daily.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

#define SQL_TASKS 2000
#define EXEC_TASKS 5
#define WORKERS 4

/* Poll sql (one int64) until it is at least min; false after timeout_ms. */
static bool bouncer_wait_at_least(PGconn *conn, const char *sql, int64_t min, int timeout_ms)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    while (harness_query_int64(conn, sql) < min) {
        if (harness_now_ms() > deadline)
            return false;
        usleep(10000);
    }
    return true;
}

/*
 * What another client of the pool sees: pool_size connections through the
 * bouncer each open a transaction at once, so each holds a different
 * server connection — every one the pool has — and reads the settings
 * pgwork's workers would have changed, and the statements they would have
 * prepared.
 */
static void bouncer_assert_clean_sessions(const struct harness_pgbouncer *bouncer,
                                          const char *dbname, int pool_size)
{
    PGconn *conns[8];
    ck_assert_int_le(pool_size, 8);
    ck_assert_int_gt(pool_size, 0);
    for (int i = 0; i < pool_size; i++) {
        conns[i] = harness_connect(harness_pgbouncer_conninfo(bouncer, dbname));
        harness_exec(conns[i], "BEGIN");
    }
    for (int i = 0; i < pool_size; i++) {
        /* A worker prepares its claims only on a session of its own
         * (worker/claim_cache.c): none through the pooler. */
        ck_assert_msg(
            harness_query_int64(conns[i], "SELECT count(*) FROM pg_prepared_statements") == 0,
            "server connection %d of the pool holds prepared statements: %s", i,
            harness_query_text(conns[i],
                               "SELECT string_agg(name, ', ') FROM pg_prepared_statements"));
        const char *sync = harness_query_text(conns[i], "SHOW synchronous_commit");
        const char *plan = harness_query_text(conns[i], "SHOW plan_cache_mode");
        ck_assert_msg(strcmp(sync, "on") == 0 && strcmp(plan, "auto") == 0,
                      "server connection %d of the pool (backend %s) has pgwork's settings: "
                      "synchronous_commit = %s, plan_cache_mode = %s",
                      i, harness_query_text(conns[i], "SELECT pg_backend_pid()::text"), sync, plan);
    }
    for (int i = 0; i < pool_size; i++)
        harness_disconnect(conns[i]);
}

/*
 * 2,000 sql tasks and 5 exec tasks through PgBouncer with 4 workers, a
 * RECONNECT of every server connection mid-run: every task done once,
 * each sql effect exactly once, no worker retired or restarted, and the
 * pool's other clients see none of pgwork's settings. _i: 0 transaction
 * mode with a pool smaller than the workers (connections shared between
 * them), 1 session mode (a pool of one server connection per worker and
 * one for the test's client, as the README's rule says).
 */
START_TEST(test_bouncer_tasks)
{
    const char *mode = _i == 0 ? "transaction" : "session";
    int pool_size = _i == 0 ? 2 : WORKERS + 2;
    struct harness_pgbouncer *bouncer = harness_pgbouncer_start(mode, pool_size);
    char dbname[HARNESS_NAME_MAX];
    PGconn *conn;
    const char *direct = harness_db_migrated(&conn, dbname, NULL);
    harness_exec(conn, "CREATE TABLE effects (task bigint NOT NULL)");
    harness_exec(conn, harness_printf("INSERT INTO pgwork.tasks (queue, payload)"
                                      " SELECT 's', jsonb_build_object('n', n)"
                                      " FROM generate_series(1, %d) n",
                                      SQL_TASKS));
    harness_exec(conn, harness_printf("INSERT INTO pgwork.tasks (queue)"
                                      " SELECT 'e' FROM generate_series(1, %d)",
                                      EXEC_TASKS));

    const char *config = harness_write_config(harness_printf(
        "database { listen_conninfo = \"%s\" synchronous_commit = false }\n"
        "workers { count = %d max = %d }\n"
        "log { format = \"text\" }\n"
        /* A millisecond each: the run lasts past the RECONNECT. */
        "queue \"s\" { handler = \"sql\""
        " statement = \"INSERT INTO effects(task) SELECT $2 FROM pg_sleep(0.001)\" batch = 10 }\n"
        "queue \"e\" { handler = \"exec\" command = {\"/bin/true\"} }\n",
        direct, WORKERS, WORKERS));
    struct harness_supervisor *sup =
        harness_spawn_supervisor(config, harness_pgbouncer_conninfo(bouncer, dbname));

    /* Mid-run: what pgwork left in the pool's sessions, then every server
     * connection replaced. Not while the bouncer is logging in a server
     * connection: PgBouncer 1.18 then counts the login as failed and
     * refuses the pool's clients for server_login_retry (15 s) — a worker
     * that loses its connection that way is restarted, which this test
     * would report. */
    bool midway = bouncer_wait_at_least(conn, "SELECT count(*) FROM effects", SQL_TASKS / 4, 30000);
    if (!midway)
        harness_stderr_dump(sup);
    ck_assert_msg(midway, "a quarter of the sql tasks did not run within 30 s: %lld effects",
                  (long long)harness_query_int64(conn, "SELECT count(*) FROM effects"));
    /* Session mode: the workers hold WORKERS of the server connections. */
    int free_servers = _i == 0 ? pool_size : pool_size - WORKERS;
    bouncer_assert_clean_sessions(bouncer, dbname, free_servers);
    int64_t deadline = harness_now_ms() + 10000;
    while (harness_pgbouncer_pool(bouncer, dbname, "sv_login") != 0) {
        ck_assert_msg(harness_now_ms() < deadline, "PgBouncer still logging in after 10 s");
        usleep(1000);
    }
    harness_pgbouncer_admin(bouncer, "RECONNECT");
    int64_t at_reconnect = harness_query_int64(conn, "SELECT count(*) FROM effects");
    ck_assert_msg(at_reconnect < SQL_TASKS, "every task ran before the RECONNECT");

    bool finished =
        harness_wait_until(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = 'done'",
                           SQL_TASKS + EXEC_TASKS, 60000);
    if (!finished)
        harness_stderr_dump(sup);
    ck_assert_msg(finished, "not every task done after RECONNECT: %s",
                  harness_query_text(conn, "SELECT string_agg(state || ' ' || n, ', ')"
                                           " FROM (SELECT state, count(*) n FROM pgwork.tasks"
                                           " GROUP BY state) s"));
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks"),
                     SQL_TASKS + EXEC_TASKS);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM effects"), SQL_TASKS);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(DISTINCT task) FROM effects"),
                     SQL_TASKS);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM effects e"
                                               " JOIN pgwork.tasks t ON t.id = e.task"
                                               " WHERE t.queue = 's'"),
                     SQL_TASKS);
    bouncer_assert_clean_sessions(bouncer, dbname, free_servers);

    /* No worker retired, restarted or failing: every one still the
     * process it started as, and no statement failed. */
    const char *log = harness_stderr_text(sup);
    static const char *const never[] = {"not restarting", "exited unexpectedly", "does not exist",
                                        "already exists", "failed on queue",     "giving up"};
    for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++) {
        if (strstr(log, never[i]) != NULL) {
            harness_stderr_dump(sup);
            ck_abort_msg("supervisor log says \"%s\"", never[i]);
        }
    }
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 30000), 0);
}
END_TEST

/*
 * Several `pgwork migrate` at once on a fresh database, all through
 * PgBouncer in transaction mode (a pool of 2: their transactions share
 * server connections): all succeed, each migration is applied once, and no
 * advisory lock is left behind on any server connection.
 */
START_TEST(test_bouncer_concurrent_migrate)
{
    enum { RUNS = 6 };
    struct harness_pgbouncer *bouncer = harness_pgbouncer_start("transaction", 2);
    char dbname[HARNESS_NAME_MAX];
    const char *direct = harness_db_create(dbname);
    const char *pooled = harness_pgbouncer_conninfo(bouncer, dbname);
    const char *const args[] = {"migrate", NULL};
    pid_t pids[RUNS];
    for (int i = 0; i < RUNS; i++)
        pids[i] = harness_pgwork_start(pooled, args);
    for (int i = 0; i < RUNS; i++) {
        int rc = harness_pgwork_wait(pids[i], 30000);
        ck_assert_msg(rc == 0, "pgwork migrate %d of %d through PgBouncer exited %d", i + 1, RUNS,
                      rc);
    }
    PGconn *conn = harness_connect(direct);
    int64_t versions = harness_query_int64(conn, "SELECT count(*) FROM pgwork.schema_migrations");
    ck_assert_int_gt(versions, 0);
    ck_assert_int_eq(
        harness_query_int64(conn, "SELECT count(DISTINCT version) FROM pgwork.schema_migrations"),
        versions);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pg_locks"
                                               " WHERE locktype = 'advisory'"),
                     0);
    /* And the schema works: a task goes in. */
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('q')");
    /* Once more, now that everything is applied: still fine, nothing held. */
    const char *out = NULL;
    ck_assert_int_eq(harness_pgwork(pooled, NULL, NULL, &out, args), 0);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pg_locks"
                                               " WHERE locktype = 'advisory'"),
                     0);
}
END_TEST

/* GET url (tests/integration/http_get.py): the status; *body the rest. */
static int bouncer_http_get(const char *url, const char **body)
{
    const char *dir = getenv("PGWORK_TESTS_DIR") ? getenv("PGWORK_TESTS_DIR") : "tests/integration";
    FILE *p = popen(harness_printf("/usr/bin/python3 %s/http_get.py '%s'", dir, url), "r");
    ck_assert_ptr_nonnull(p);
    char text[4096];
    size_t len = fread(text, 1, sizeof(text) - 1, p);
    text[len] = '\0';
    ck_assert_msg(pclose(p) == 0, "http_get.py failed for %s: %s", url, text);
    const char *nl = strchr(text, '\n');
    *body = harness_printf("%s", nl ? nl + 1 : "");
    return atoi(text);
}

/* Poll /readyz (every 50 ms) until it answers want; false after timeout. */
static bool bouncer_wait_ready(const char *base, int want, int timeout_ms, const char **body)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    while (bouncer_http_get(harness_printf("%s/readyz", base), body) != want) {
        if (harness_now_ms() > deadline)
            return false;
        usleep(50000);
    }
    return true;
}

/*
 * Claims that keep failing while everything else works (here: the
 * workers' role may not UPDATE pgwork.tasks; behind a pooler: a server
 * connection that lacks what the worker's session had) make /readyz fail,
 * the worker is neither retired nor restarted, it tries again by itself
 * (no new notification needed), and once claims work the task runs and
 * the pod is ready again.
 */
START_TEST(test_readyz_fails_while_claims_fail)
{
    char dbname[HARNESS_NAME_MAX];
    PGconn *conn;
    const char *direct = harness_db_migrated(&conn, dbname, NULL);
    const char *role = harness_printf("%s_w", dbname);
    harness_exec(conn, harness_printf("CREATE ROLE %s LOGIN", role));
    harness_exec(conn, harness_printf("GRANT USAGE ON SCHEMA pgwork TO %s;"
                                      " GRANT ALL ON ALL TABLES IN SCHEMA pgwork TO %s;"
                                      " GRANT ALL ON ALL SEQUENCES IN SCHEMA pgwork TO %s;"
                                      " REVOKE UPDATE ON pgwork.tasks FROM %s",
                                      role, role, role, role));
    int port = harness_free_port();
    const char *base = harness_printf("http://127.0.0.1:%d", port);
    const char *config = harness_write_config(
        harness_printf("database { listen_conninfo = \"%s\" }\n"
                       "workers { count = 1 }\n"
                       "http { listen = \"127.0.0.1:%d\" }\n"
                       "log { format = \"text\" }\n"
                       "queue \"e\" { handler = \"exec\" command = {\"/bin/true\"} }\n",
                       direct, port));
    struct harness_supervisor *sup =
        harness_spawn_supervisor(config, harness_printf("%s user=%s", direct, role));
    ck_assert(harness_stderr_wait_for(sup, "http endpoint on", 15000));
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('e')");

    const char *body = "";
    bool unready = bouncer_wait_ready(base, 503, 20000, &body);
    if (!unready)
        harness_stderr_dump(sup);
    ck_assert_msg(unready, "/readyz still ready while every claim fails: %s", body);
    ck_assert_msg(strstr(body, "claims failed in a row") != NULL, "/readyz says: %s", body);

    harness_exec(conn, harness_printf("GRANT UPDATE ON pgwork.tasks TO %s", role));
    bool done = harness_wait_until(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = 'done'",
                                   1, 30000);
    if (!done)
        harness_stderr_dump(sup);
    ck_assert_msg(done, "the task did not run once claims worked again");
    ck_assert_msg(bouncer_wait_ready(base, 200, 10000, &body), "/readyz after recovery: %s", body);
    const char *log = harness_stderr_text(sup);
    ck_assert_msg(strstr(log, "exited unexpectedly") == NULL &&
                      strstr(log, "not restarting") == NULL,
                  "the worker was restarted or retired");
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 30000), 0);
    harness_exec(conn, harness_printf("DROP OWNED BY %s; DROP ROLE %s", role, role));
}
END_TEST

Suite *pgbouncer_suite(void)
{
    Suite *s = suite_create("pgbouncer");
    TCase *tc = harness_tcase("pgbouncer");
    /* 2,005 tasks twice over, through a pooler, on a shared 2-core box. */
    tcase_set_timeout(tc, 150);
    tcase_add_loop_test(tc, test_bouncer_tasks, 0, 2);
    tcase_add_test(tc, test_bouncer_concurrent_migrate);
    suite_add_tcase(s, tc);
    tc = harness_tcase("claim_failures");
    tcase_add_test(tc, test_readyz_fails_while_claims_fail);
    suite_add_tcase(s, tc);
    return s;
}
