/*
 * test_child_env.c — child_environ() (worker/child.c), the environment
 * every handler process starts with: rebuilt from PGWORK_*, PATH, HOME and
 * the names asked for, never the worker's credentials. Each test runs in
 * its own process (Check's fork mode), so it may change the environment.
 */
#include <stdlib.h>
#include <string.h>

#include "suites.h"
#include "../../worker/child.h"

/* Entries of envp, NULL-terminated. */
static size_t count(char **envp)
{
    size_t n = 0;
    while (envp[n] != NULL)
        n++;
    return n;
}

/* Whether envp holds exactly the entry "NAME=value". */
static bool holds(char **envp, const char *entry)
{
    for (size_t i = 0; envp[i] != NULL; i++)
        if (strcmp(envp[i], entry) == 0)
            return true;
    return false;
}

/* Whether any entry of envp sets name. */
static bool sets(char **envp, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; envp[i] != NULL; i++)
        if (strncmp(envp[i], name, len) == 0 && envp[i][len] == '=')
            return true;
    return false;
}

START_TEST(test_rebuilt_not_inherited)
{
    ck_assert_int_eq(clearenv(), 0);
    ck_assert_int_eq(setenv("PATH", "/opt/bin:/usr/bin", 1), 0);
    ck_assert_int_eq(setenv("HOME", "/home/app", 1), 0);
    ck_assert_int_eq(setenv("LANG", "C.UTF-8", 1), 0);
    ck_assert_int_eq(setenv("UNLISTED", "x", 1), 0);
    ck_assert_int_eq(setenv("PGWORK_TASK_ID", "stale", 1), 0);
    ck_assert_int_eq(setenv("PGWORK_DATABASE_URL", "postgresql://u:pw@db/app", 1), 0);
    ck_assert_int_eq(setenv("PGPASSWORD", "pw", 1), 0);
    ck_assert_int_eq(setenv("PGPASSFILE", "/secrets/pgpass", 1), 0);
    ck_assert_int_eq(setenv("PGWORK_WEB_TOKEN", "tok", 1), 0);

    char *add[] = {"PGWORK_TASK_ID=7", "PGWORK_QUEUE=q", "PGWORK_ATTEMPT=2"};
    /* A name twice, one unset, one set by pgwork itself, and every
     * credential: the builder drops them whatever the caller asks. */
    char *names[] = {"LANG",       "LANG",
                     "NOT_SET",    "PGWORK_TASK_ID",
                     "PGPASSWORD", "PGWORK_DATABASE_URL",
                     "PGPASSFILE", "PGWORK_WEB_TOKEN"};
    char **envp = child_environ(names, sizeof(names) / sizeof(names[0]), add, 3);
    ck_assert_ptr_nonnull(envp);
    ck_assert(holds(envp, "PGWORK_TASK_ID=7"));
    ck_assert(holds(envp, "PGWORK_QUEUE=q"));
    ck_assert(holds(envp, "PGWORK_ATTEMPT=2"));
    ck_assert(holds(envp, "PATH=/opt/bin:/usr/bin"));
    ck_assert(holds(envp, "HOME=/home/app"));
    ck_assert(holds(envp, "LANG=C.UTF-8"));
    ck_assert_uint_eq(count(envp), 6); /* nothing else: no duplicate, no stale id */
    ck_assert(!sets(envp, "UNLISTED"));
    ck_assert(!sets(envp, "NOT_SET"));
    ck_assert(!sets(envp, "PGPASSWORD"));
    ck_assert(!sets(envp, "PGWORK_DATABASE_URL"));
    ck_assert(!sets(envp, "PGPASSFILE"));
    ck_assert(!sets(envp, "PGWORK_WEB_TOKEN"));
    free(envp);
}
END_TEST

/* A worker without PATH or HOME: a default PATH (a handler must be able to
 * run `sh -c date`), no HOME. */
START_TEST(test_defaults_without_path)
{
    ck_assert_int_eq(clearenv(), 0);
    char *add[] = {"PGWORK_QUEUE=q"};
    char **envp = child_environ(NULL, 0, add, 1);
    ck_assert_ptr_nonnull(envp);
    ck_assert_uint_eq(count(envp), 2);
    ck_assert(holds(envp, "PGWORK_QUEUE=q"));
    ck_assert(sets(envp, "PATH"));
    ck_assert(!sets(envp, "HOME"));
    free(envp);
}
END_TEST

Suite *child_env_suite(void)
{
    Suite *s = suite_create("child_env");
    TCase *tc = tcase_create("environ");
    tcase_add_test(tc, test_rebuilt_not_inherited);
    tcase_add_test(tc, test_defaults_without_path);
    suite_add_tcase(s, tc);
    return s;
}
