/*
 * test_edges.c — hostile edges of a running pod (issue 10): what a
 * handler's environment holds (never the database credentials, only what
 * the queue's `env` names besides PGWORK_*, PATH and HOME); a config
 * without queues gets one verdict from `run` and `check-config`.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "suites.h"

#define WAIT_MS 20000

/* Every secret below contains this: one search finds any of them. */
#define SECRET "hunter2"

/*
 * Run one task of a queue whose exec handler writes `env` into a file and
 * prints it (exit 1, so it ends in last_error), with a supervisor whose
 * environment holds every credential pgwork knows of (the server trusts
 * the test user: the password is never checked, only carried). queue_extra
 * goes into the queue section. Returns the handler's environment; its
 * last_error and the supervisor's output go into *last_error and *log.
 */
static const char *handler_environment(const char *queue_extra, const char *const *extra_env,
                                       const char **last_error, const char **log)
{
    PGconn *conn;
    const char *conninfo = harness_db_migrated(&conn, NULL, NULL);
    const char *env_file = harness_printf("%s/handler.env", harness_tmpdir());
    const char *config = harness_write_config(
        harness_printf("workers { count = 1 }\n"
                       "queue \"leak\" {\n"
                       "  command = {\"/bin/sh\", \"-c\", \"env > \\\"$0\\\"; env; exit 1\", "
                       "\"%s\"}\n"
                       "  max_attempts = 1\n"
                       "  %s\n"
                       "}\n",
                       env_file, queue_extra));
    const char *env[16];
    int n = 0;
    env[n++] = "PGPASSWORD=" SECRET "-pgpassword";
    env[n++] = "PGPASSFILE=/nonexistent/" SECRET "-passfile";
    env[n++] = "PGWORK_WEB_TOKEN=" SECRET "-web-token";
    for (int i = 0; extra_env != NULL && extra_env[i] != NULL; i++)
        env[n++] = extra_env[i];
    env[n] = NULL;
    struct harness_spawn_opts opts = {.env = env};
    struct harness_supervisor *sup = harness_spawn_supervisor_opts(
        config, harness_printf("%s password=" SECRET "-url", conninfo), &opts);

    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('leak')");
    if (!harness_wait_until(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = 'dead'", 1,
                            WAIT_MS)) {
        harness_stderr_dump(sup);
        ck_abort_msg("the task did not end dead");
    }
    *last_error = harness_query_text(conn, "SELECT last_error FROM pgwork.tasks");
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, WAIT_MS), 0);
    *log = harness_stderr_text(sup);
    const char *text = harness_read_file(env_file);
    ck_assert_msg(strstr(*last_error, "PGWORK_QUEUE=leak") != NULL,
                  "last_error lacks the handler's env output: %s", *last_error);
    return text;
}

/* "\nNAME=" or "NAME=" at the start: env's output sets NAME. */
static bool sets(const char *env_text, const char *name)
{
    if (strncmp(env_text, name, strlen(name)) == 0 && env_text[strlen(name)] == '=')
        return true;
    return strstr(env_text, harness_printf("\n%s=", name)) != NULL;
}

static void assert_no_secret(const char *what, const char *text)
{
    static const char *const names[] = {"PGWORK_DATABASE_URL", "PGPASSWORD", "PGPASSFILE",
                                        "PGWORK_WEB_TOKEN"};
    ck_assert_msg(strstr(text, SECRET) == NULL, "%s holds a secret:\n%s", what, text);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        ck_assert_msg(!sets(text, names[i]), "%s sets %s:\n%s", what, names[i], text);
}

/* An exec handler that prints its environment: the task's PGWORK_*, PATH
 * and HOME, and no credential in what it saw, in last_error or in the
 * logs. */
START_TEST(handler_env_has_no_secrets)
{
    const char *extra[] = {"HOME=/home/edges-test", "PGWORK_TEST_UNLISTED=other", NULL};
    const char *last_error, *log;
    const char *env = handler_environment("", extra, &last_error, &log);
    assert_no_secret("the handler's environment", env);
    assert_no_secret("last_error", last_error);
    ck_assert_msg(strstr(log, SECRET) == NULL, "the supervisor's output holds a secret:\n%s", log);
    ck_assert_msg(sets(env, "PGWORK_TASK_ID") && sets(env, "PGWORK_ATTEMPT"), "%s", env);
    ck_assert_msg(strstr(env, "PGWORK_QUEUE=leak\n") != NULL, "%s", env);
    ck_assert_msg(strstr(env, "HOME=/home/edges-test\n") != NULL, "%s", env);
    ck_assert_msg(sets(env, "PATH"), "no PATH:\n%s", env);
    ck_assert_msg(!sets(env, "PGWORK_TEST_UNLISTED"), "an unlisted variable got through:\n%s", env);
}
END_TEST

/* What the queue's env names reaches the handler, and nothing else. */
START_TEST(handler_env_passes_listed_names)
{
    const char *extra[] = {"PGWORK_TEST_LISTED=listed value", "PGWORK_TEST_UNLISTED=other", NULL};
    const char *last_error, *log;
    const char *env = handler_environment("env = {\"PGWORK_TEST_LISTED\", \"PGWORK_TEST_UNSET\"}",
                                          extra, &last_error, &log);
    assert_no_secret("the handler's environment", env);
    ck_assert_msg(strstr(env, "PGWORK_TEST_LISTED=listed value\n") != NULL, "%s", env);
    ck_assert_msg(!sets(env, "PGWORK_TEST_UNSET"), "%s", env);
    ck_assert_msg(!sets(env, "PGWORK_TEST_UNLISTED"), "an unlisted variable got through:\n%s", env);
}
END_TEST

/* A credential listed in env is refused by check-config, with the reason. */
START_TEST(env_refuses_credentials)
{
    static const char *const refused[] = {"PGWORK_DATABASE_URL", "PGPASSWORD", "PGPASSFILE",
                                          "PGWORK_WEB_TOKEN"};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        const char *config = harness_write_config(harness_printf(
            "queue \"q\" {\n  command = {\"/bin/true\"}\n  env = {\"LANG\", \"%s\"}\n}\n",
            refused[i]));
        const char *out, *err;
        int rc = harness_pgwork(NULL, NULL, &out, &err,
                                (const char *const[]){"check-config", "-c", config, NULL});
        ck_assert_msg(rc == 3, "env = {%s}: check-config exit %d: %s%s", refused[i], rc, out, err);
        const char *want = harness_printf("%s:3: queue \"q\".env: %s is never passed to handlers",
                                          config, refused[i]);
        ck_assert_msg(strstr(err, want) != NULL, "stderr lacks \"%s\": %s", want, err);
    }
}
END_TEST

/* --- a config without queues ------------------------------------------ */

/* The image's own pgwork.conf (comments only) and an empty file: `run`
 * refuses both (a pod serving no queue would look healthy and do
 * nothing), and check-config, which CI runs before a rollout, must say
 * the same — not "ok (0 queues)". */
START_TEST(no_queue_same_verdict)
{
    static const char *const texts[] = {
        "",
        "# pgwork.conf: every key at its default (HTTP on 0.0.0.0:9187,\n"
        "# JSON logs) and no queue. Mount your own file over this one.\n",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        const char *path = harness_printf("%s/noqueue%zu.conf", harness_tmpdir(), i);
        harness_write_file(path, texts[i]);
        const char *want = harness_printf("%s: no queue configured", path);

        const char *out, *err;
        int rc = harness_pgwork("host=/nonexistent/pgwork-test dbname=nowhere", NULL, &out, &err,
                                (const char *const[]){"check-config", "-c", path, NULL});
        ck_assert_msg(rc == 3 && strstr(err, want) != NULL,
                      "check-config on a file without queues: exit %d, stdout %s, stderr %s", rc,
                      out, err);
        rc = harness_pgwork("host=/nonexistent/pgwork-test dbname=nowhere", NULL, &out, &err,
                            (const char *const[]){"run", "-c", path, NULL});
        ck_assert_msg(rc == 3 && strstr(err, want) != NULL,
                      "run on a file without queues: exit %d, stderr %s", rc, err);
    }
}
END_TEST

Suite *edges_suite(void)
{
    Suite *s = suite_create("edges");
    TCase *tc = harness_tcase("env");
    tcase_add_test(tc, handler_env_has_no_secrets);
    tcase_add_test(tc, handler_env_passes_listed_names);
    tcase_add_test(tc, env_refuses_credentials);
    suite_add_tcase(s, tc);
    tc = harness_tcase("config");
    tcase_add_test(tc, no_queue_same_verdict);
    suite_add_tcase(s, tc);
    return s;
}
