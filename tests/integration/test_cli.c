/*
 * test_cli.c — the operator commands against a real PostgreSQL: `pgwork
 * status` (counts by state from rows made directly with SQL, ages, the
 * table and --json, which jq must parse whatever the queue names hold),
 * `pgwork requeue-dead` (moves exactly the dead tasks asked for, notifies
 * their queues) and the command line itself (bad arguments are exit 2 with
 * a message, before any config or database is touched; --help is accurate).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

#define WAIT_MS 10000

/* harness_jq_file with input (a string) on stdin. */
static int jq(const char *input, const char *const *args, const char **out)
{
    static int calls;
    const char *in_path = harness_printf("%s/jq.%d.in", harness_tmpdir(), ++calls);
    harness_write_file(in_path, input);
    return harness_jq_file(in_path, args, out);
}

/* Assert that `jq -e --arg q QUEUE FILTER` holds on json. */
static void assert_jq(const char *json, const char *queue, const char *filter)
{
    const char *out;
    const char *const args[] = {"-e", "--arg", "q", queue ? queue : "", filter, NULL};
    int rc = jq(json, args, &out);
    ck_assert_msg(rc == 0, "jq -e '%s' is not true (exit %d, printed %s) on:\n%s", filter, rc, out,
                  json);
}

/* `pgwork args...` expecting exit code want; its stdout. */
static const char *pgwork_ok(const char *conninfo, int want, const char *const *args)
{
    const char *out, *err;
    int rc = harness_pgwork(conninfo, NULL, &out, &err, args);
    ck_assert_msg(rc == want, "pgwork %s %s: exit %d, wanted %d; stderr: %s", args[0],
                  args[1] ? args[1] : "", rc, want, err);
    return out;
}

/* Tasks in every state for queue q, made with SQL as an application or a
 * worker would have left them: n_due pending due now (the oldest due 100 s
 * ago), n_later pending in an hour, n_running running (the oldest started
 * 50 s ago), n_done done, n_dead dead. */
static void make_tasks(PGconn *conn, const char *q, int n_due, int n_later, int n_running,
                       int n_done, int n_dead)
{
    const char *counts =
        harness_printf("%d,%d,%d,%d,%d", n_due, n_later, n_running, n_done, n_dead);
    const char *params[] = {q, counts};
    harness_execp(conn,
                  "WITH n AS (SELECT string_to_array($2, ',')::int[] AS a) "
                  "INSERT INTO pgwork.tasks (queue, state, run_at, started_at, attempts, "
                  "                          last_error, finished_at) "
                  "SELECT $1, 'pending', now() - interval '1 second' * (100 - i), "
                  "       NULL::timestamptz, 0, NULL::text, NULL::timestamptz FROM n, "
                  "generate_series(0, a[1] - 1) i "
                  "UNION ALL SELECT $1, 'pending', now() + interval '1 hour', NULL, 0, NULL, NULL "
                  "       FROM n, generate_series(1, a[2]) "
                  "UNION ALL SELECT $1, 'running', now(), now() - interval '1 second' * (50 - i),"
                  "       1, NULL, NULL FROM n, generate_series(0, a[3] - 1) i "
                  "UNION ALL SELECT $1, 'done', now(), now(), 1, NULL, now() "
                  "       FROM n, generate_series(1, a[4]) "
                  "UNION ALL SELECT $1, 'dead', now(), now(), 25, 'exit status 1', now() "
                  "       FROM n, generate_series(1, a[5])",
                  2, params);
}

/* --- status --------------------------------------------------------------- */

START_TEST(test_status_counts_json)
{
    PGconn *conn;
    const char *conninfo = harness_db_migrated(&conn, NULL, NULL);
    make_tasks(conn, "alpha", 3, 2, 1, 4, 2);
    make_tasks(conn, "beta", 0, 0, 0, 0, 1);

    const char *json = pgwork_ok(conninfo, 0, (const char *const[]){"status", "--json", NULL});
    assert_jq(json, NULL, ".queues | length == 2");
    assert_jq(json, NULL, "[.queues[].queue] == [\"alpha\", \"beta\"]");
    assert_jq(json, NULL,
              ".queues[0] | .pending_due == 3 and .pending_scheduled == 2 and .running == 1 "
              "and .done == 4 and .dead == 2");
    /* Ages from the database's clock: the oldest due task is 100 s late,
     * the oldest running one started 50 s ago, the next is due in an hour. */
    assert_jq(json, NULL,
              ".queues[0] | .oldest_pending_age_seconds >= 100 and "
              ".oldest_pending_age_seconds < 160 and .oldest_running_age_seconds >= 50 and "
              ".oldest_running_age_seconds < 110 and .next_scheduled_in_seconds > 3500 and "
              ".next_scheduled_in_seconds <= 3600");
    assert_jq(json, NULL,
              ".queues[1] | .queue == \"beta\" and .dead == 1 and .pending_due == 0 and "
              ".oldest_pending_age_seconds == null and .oldest_running_age_seconds == null and "
              ".next_scheduled_in_seconds == null");
    /* Every key, in every object, every time: scripts index them blindly. */
    assert_jq(json, NULL,
              "[.queues[] | keys] | unique == [[\"cancelled\", \"dead\", \"done\", "
              "\"next_scheduled_in_seconds\", \"oldest_pending_age_seconds\", "
              "\"oldest_running_age_seconds\", \"paused\", \"pending_due\", "
              "\"pending_scheduled\", \"queue\", \"running\"]]");

    /* Named queues: in the order given, once each, unknown ones as zeros. */
    json = pgwork_ok(conninfo, 0,
                     (const char *const[]){"status", "--json", "nosuch", "beta", "nosuch", NULL});
    assert_jq(json, NULL, "[.queues[].queue] == [\"nosuch\", \"beta\"]");
    assert_jq(json, NULL,
              ".queues[0] | .pending_due + .pending_scheduled + .running + .done + .dead == 0");
    assert_jq(json, NULL, ".queues[1].dead == 1");
    /* Options may follow the names. */
    json = pgwork_ok(conninfo, 0, (const char *const[]){"status", "alpha", "--json", NULL});
    assert_jq(json, NULL, ".queues | length == 1 and .[0].done == 4");
}
END_TEST

START_TEST(test_status_table)
{
    PGconn *conn;
    const char *conninfo = harness_db_migrated(&conn, NULL, NULL);
    make_tasks(conn, "alpha", 3, 2, 1, 4, 2);
    make_tasks(conn, "beta", 0, 0, 0, 7, 0);

    const char *out = pgwork_ok(conninfo, 0, (const char *const[]){"status", NULL});
    const char *nl = strchr(out, '\n');
    ck_assert_ptr_nonnull(nl);
    ck_assert_msg(strncmp(out,
                          "PENDING  SCHEDULED  RUNNING  DONE  DEAD  CANCELLED  PAUSED  "
                          "OLDEST_PENDING  OLDEST_RUNNING  QUEUE\n",
                          (size_t)(nl - out + 1)) == 0,
                  "header: %s", out);

    long long due, later, running, done, dead, cancelled;
    char paused[8], oldest[32], oldest_running[32], queue[64];
    ck_assert_int_eq(sscanf(nl + 1, "%lld %lld %lld %lld %lld %lld %7s %31s %31s %63s", &due,
                            &later, &running, &done, &dead, &cancelled, paused, oldest,
                            oldest_running, queue),
                     10);
    ck_assert_int_eq(cancelled, 0);
    ck_assert_str_eq(paused, "no");
    ck_assert_str_eq(queue, "alpha");
    ck_assert_int_eq(due, 3);
    ck_assert_int_eq(later, 2);
    ck_assert_int_eq(running, 1);
    ck_assert_int_eq(done, 4);
    ck_assert_int_eq(dead, 2);
    /* 100 s and 50 s ago, give or take a slow machine. */
    ck_assert_msg(strncmp(oldest, "1m4", 3) == 0 || strncmp(oldest, "1m5", 3) == 0, "%s", oldest);
    ck_assert_msg(strncmp(oldest_running, "5", 1) == 0 && strlen(oldest_running) == 3, "%s",
                  oldest_running);

    const char *row2 = strchr(nl + 1, '\n');
    ck_assert_ptr_nonnull(row2);
    ck_assert_int_eq(sscanf(row2 + 1, "%lld %lld %lld %lld %lld %lld %7s %31s %31s %63s", &due,
                            &later, &running, &done, &dead, &cancelled, paused, oldest,
                            oldest_running, queue),
                     10);
    ck_assert_str_eq(queue, "beta");
    ck_assert_int_eq(done, 7);
    ck_assert_str_eq(oldest, "-");
    ck_assert_str_eq(oldest_running, "-");
    ck_assert_str_eq(strchr(row2 + 1, '\n'), "\n"); /* two queues, two rows */
}
END_TEST

START_TEST(test_status_empty_and_unmigrated)
{
    PGconn *conn;
    const char *conninfo = harness_db_migrated(&conn, NULL, NULL);
    ck_assert_str_eq(pgwork_ok(conninfo, 0, (const char *const[]){"status", NULL}), "no tasks\n");
    const char *json = pgwork_ok(conninfo, 0, (const char *const[]){"status", "--json", NULL});
    assert_jq(json, NULL, ". == {\"queues\": [], \"schedules\": []}");

    const char *bare = harness_db_create(NULL);
    const char *err;
    ck_assert_int_eq(harness_pgwork(bare, NULL, NULL, &err, (const char *const[]){"status", NULL}),
                     1);
    ck_assert_msg(strstr(err, "pgwork: cannot read the queues: ") && strstr(err, "pgwork migrate"),
                  "stderr: %s", err);
}
END_TEST

/* A 1000-byte name, built once. */
static const char *long_name(void)
{
    static char name[1001];
    if (name[0] == '\0')
        for (int i = 0; i < 1000; i++)
            name[i] = (char)('a' + i % 26);
    return name;
}

static const char *const hostile_names[] = {
    "it's \"quoted\"",
    "back\\slash\\",
    "\\\"",
    "new\nline",
    "tab\there\r",
    "esc \x1b[31mred\x1b[0m",
    "del\x7f",
    "c1 \xc2\x9b control",
    "bidi \xe2\x80\xae reversed",
    "ünïcødé ✓ 日本語 🚀",
    "x'); DROP TABLE pgwork.tasks; --",
    "{\"a\",\"b\"}",
    "%s%n",
    NULL, /* long_name() */
};

/* Bytes that must never reach a terminal raw. */
static bool has_raw_control(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p < 0x20 && *p != '\n') || *p == 0x7f)
            return true;
    return strstr(s, "\xc2\x9b") || strstr(s, "\xe2\x80\xae");
}

START_TEST(test_status_hostile_names)
{
    PGconn *conn;
    const char *conninfo = harness_db_migrated(&conn, NULL, NULL);
    const char *name = hostile_names[_i] ? hostile_names[_i] : long_name();
    make_tasks(conn, name, 1, 0, 0, 0, 2);
    make_tasks(conn, "plain", 0, 0, 0, 1, 0);

    /* --json: every queue, then only this one named on the command line. */
    const char *json = pgwork_ok(conninfo, 0, (const char *const[]){"status", "--json", NULL});
    assert_jq(json, name, ".queues | length == 2");
    assert_jq(json, name,
              ".queues | map(select(.queue == $q)) | length == 1 and .[0].dead == 2 and "
              ".[0].pending_due == 1");
    json = pgwork_ok(conninfo, 0, (const char *const[]){"status", "--json", "--", name, NULL});
    assert_jq(json, name, ".queues | length == 1 and .[0].queue == $q and .[0].dead == 2");

    /* The table: one line per queue whatever the name, nothing a terminal
     * would interpret, and a printable name shown as it is. */
    const char *table = pgwork_ok(conninfo, 0, (const char *const[]){"status", NULL});
    int lines = 0;
    for (const char *p = table; (p = strchr(p, '\n')) != NULL; p++)
        lines++;
    ck_assert_msg(lines == 3, "%d lines:\n%s", lines, table);
    ck_assert_msg(!has_raw_control(table), "raw control characters in:\n%s", table);
    if (!has_raw_control(name) && strchr(name, '\n') == NULL)
        ck_assert_msg(strstr(table, harness_printf("  %s\n", name)), "name not shown:\n%s", table);

    /* requeue-dead by that name moves its two dead tasks, nothing else. */
    const char *out =
        pgwork_ok(conninfo, 0, (const char *const[]){"requeue-dead", "--", name, NULL});
    ck_assert_str_eq(out, "requeued 2 dead tasks\n");
    const char *params[] = {name};
    ck_assert_int_eq(harness_query_int64p(conn,
                                          "SELECT count(*) FROM pgwork.tasks "
                                          "WHERE queue = $1 AND state = 'pending'",
                                          1, params),
                     3);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks "
                                               "WHERE queue = 'plain' AND state = 'done'"),
                     1);
}
END_TEST

/* --- requeue-dead --------------------------------------------------------- */

START_TEST(test_requeue_dead_queue)
{
    PGconn *conn;
    const char *conninfo = harness_db_migrated(&conn, NULL, NULL);
    PGconn *listener = harness_connect(conninfo);
    harness_listen(listener, "pgwork_tasks");
    make_tasks(conn, "q1", 1, 1, 1, 1, 3);
    make_tasks(conn, "q2", 0, 0, 0, 0, 2);
    harness_exec(conn, "UPDATE pgwork.tasks SET max_attempts = 7 WHERE state = 'dead'");
    while (harness_notify_wait(listener, 200, NULL) != NULL) /* the inserts' own */
        ;
    const char *before = harness_query_text(
        conn, "SELECT string_agg(id || ' ' || state, ',' ORDER BY id) FROM pgwork.tasks "
              "WHERE queue = 'q1' AND state <> 'dead'");

    const char *out = pgwork_ok(conninfo, 0, (const char *const[]){"requeue-dead", "q1", NULL});
    ck_assert_str_eq(out, "requeued 3 dead tasks\n");

    /* Exactly the dead ones of q1: fresh budget, due now, error kept. */
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks WHERE "
                                               "queue = 'q1' AND state = 'pending' AND "
                                               "attempts = 0 AND run_at <= now() AND "
                                               "last_error = 'exit status 1' AND "
                                               "finished_at IS NULL AND locked_by IS NULL AND "
                                               "max_attempts = 7"),
                     3);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks "
                                               "WHERE queue = 'q1' AND state = 'dead'"),
                     0);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks "
                                               "WHERE queue = 'q2' AND state = 'dead'"),
                     2);
    ck_assert_str_eq(harness_query_text(conn, "SELECT string_agg(id || ' ' || state, ',' ORDER "
                                              "BY id) FROM pgwork.tasks WHERE queue = 'q1' AND "
                                              "(state <> 'pending' OR last_error IS NULL)"),
                     before);

    /* Idle workers hear about it at once, as after an INSERT. */
    const char *payload = harness_notify_wait(listener, WAIT_MS, NULL);
    ck_assert_ptr_nonnull(payload);
    ck_assert_str_eq(payload, "0 q1");
    ck_assert_ptr_null(harness_notify_wait(listener, 200, NULL));

    /* Again: nothing left to move, not an error. */
    out = pgwork_ok(conninfo, 0, (const char *const[]){"requeue-dead", "q1", NULL});
    ck_assert_str_eq(out, "requeued 0 dead tasks\n");
    ck_assert_ptr_null(harness_notify_wait(listener, 200, NULL));

    out = pgwork_ok(conninfo, 0, (const char *const[]){"requeue-dead", "--all-queues", NULL});
    ck_assert_str_eq(out, "requeued 2 dead tasks\n");
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks "
                                               "WHERE state = 'dead'"),
                     0);
    payload = harness_notify_wait(listener, WAIT_MS, NULL);
    ck_assert_ptr_nonnull(payload);
    ck_assert_str_eq(payload, "0 q2");
}
END_TEST

START_TEST(test_requeue_dead_ids)
{
    PGconn *conn;
    const char *conninfo = harness_db_migrated(&conn, NULL, NULL);
    make_tasks(conn, "q", 1, 0, 0, 0, 3);
    const char *dead1 =
        harness_query_text(conn, "SELECT min(id)::text FROM pgwork.tasks WHERE state = 'dead'");
    const char *dead2 =
        harness_query_text(conn, "SELECT max(id)::text FROM pgwork.tasks WHERE state = 'dead'");
    const char *pending =
        harness_query_text(conn, "SELECT id::text FROM pgwork.tasks WHERE state = 'pending'");

    const char *out = pgwork_ok(
        conninfo, 0, (const char *const[]){"requeue-dead", "--id", dead1, "--id", dead2, NULL});
    ck_assert_str_eq(out, "requeued 2 dead tasks\n");
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks "
                                               "WHERE state = 'dead'"),
                     1);

    /* Not dead, or no such task: named, exit 4; the dead one still moves. */
    const char *last =
        harness_query_text(conn, "SELECT id::text FROM pgwork.tasks WHERE state = 'dead'");
    const char *err;
    int rc = harness_pgwork(
        conninfo, NULL, &out, &err,
        (const char *const[]){"requeue-dead", "--id", pending, "--id=999999", "--id", last, NULL});
    ck_assert_int_eq(rc, 4);
    ck_assert_str_eq(out, "requeued 1 dead task\n");
    ck_assert_msg(strstr(err, harness_printf("pgwork: task %s: not dead (state pending)", pending)),
                  "stderr: %s", err);
    ck_assert_msg(strstr(err, "pgwork: task 999999: no such task"), "stderr: %s", err);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks "
                                               "WHERE state = 'dead'"),
                     0);
}
END_TEST

/* --- the command line ------------------------------------------------------ */

struct bad_args {
    const char *args[6];
    int exit_code;
    const char *message;
};

static const struct bad_args bad_args[] = {
    {{"status", "--bogus"}, 2, "pgwork: status: unknown option --bogus"},
    {{"status", "-x"}, 2, "pgwork: status: unknown option -x"},
    {{"requeue-dead"}, 2, "pgwork: requeue-dead: name a QUEUE, or give --all-queues or --id"},
    {{"requeue-dead", "q", "--all-queues"}, 2, "give one of QUEUE, --all-queues or --id"},
    {{"requeue-dead", "q", "--id", "5"}, 2, "give one of QUEUE, --all-queues or --id"},
    {{"requeue-dead", "--all-queues", "--id", "5"}, 2, "give one of QUEUE, --all-queues or --id"},
    {{"requeue-dead", "a", "b"}, 2, "pgwork: requeue-dead: one queue at a time"},
    {{"requeue-dead", "--id"}, 2, "pgwork: requeue-dead: --id needs a task id"},
    {{"requeue-dead", "--id", "abc"}, 2, "bad task id \"abc\": not a positive integer"},
    {{"requeue-dead", "--id", "0"}, 2, "bad task id \"0\""},
    {{"requeue-dead", "--id", "-3"}, 2, "bad task id \"-3\""},
    {{"requeue-dead", "--id", "12x"}, 2, "bad task id \"12x\""},
    {{"requeue-dead", "--id", "99999999999999999999"}, 2, "bad task id"},
    {{"requeue-dead", "--bogus"}, 2, "pgwork: requeue-dead: unknown option --bogus"},
    {{"status-of-things"}, 2, "pgwork: unknown command or wrong arguments: status-of-things"},
    {{"status", ""}, 4, "pgwork: bad queue name: it is empty"},
    {{"status", "bad \xff utf8"}, 4, "pgwork: bad queue name: it is not valid UTF-8"},
    {{"requeue-dead", ""}, 4, "pgwork: bad queue name: it is empty"},
};

/* A command-line mistake is reported before the config is read or anything
 * connects: with a config file that does not exist (exit 3 if it were read)
 * and a database that cannot be reached (exit 1), it is still exit 2. Bad
 * input (exit 4) is judged once the config is loaded, before connecting. */
START_TEST(test_bad_arguments)
{
    const struct bad_args *b = &bad_args[_i];
    const char *args[10];
    int n = 0;
    if (b->exit_code == 2) {
        args[n++] = "-c";
        args[n++] = harness_printf("%s/missing.conf", harness_tmpdir());
    }
    for (int i = 0; b->args[i]; i++)
        args[n++] = b->args[i];
    args[n] = NULL;
    const char *conninfo = "host=/nonexistent/pgwork-test dbname=nowhere connect_timeout=2";

    const char *out, *err;
    int rc = harness_pgwork(conninfo, NULL, &out, &err, args);
    ck_assert_msg(rc == b->exit_code, "exit %d, wanted %d; stderr: %s", rc, b->exit_code, err);
    ck_assert_msg(strstr(err, b->message), "stderr lacks \"%s\": %s", b->message, err);
    ck_assert_str_eq(out, "");
}
END_TEST

/* Options stand before or after the command (a Kubernetes `args:` list
 * follows an ENTRYPOINT of `pgwork run`); `--` ends them. In the table, GOOD
 * and BAD stand for a valid config file and one with an unknown key; the
 * last -c given wins. */
struct placed_options {
    const char *args[7];
    int exit_code;
    const char *out; /* expected in stdout (GOOD replaced), or NULL */
    const char *err; /* expected in stderr (GOOD/BAD replaced), or NULL */
};

static const struct placed_options placed_options[] = {
    {{"check-config", "-c", "GOOD"}, 0, "GOOD: ok (1 queue)", NULL},
    {{"check-config", "--config", "GOOD"}, 0, "GOOD: ok (1 queue)", NULL},
    {{"check-config", "--config=GOOD"}, 0, "GOOD: ok (1 queue)", NULL},
    {{"check-config", "-cGOOD"}, 0, "GOOD: ok (1 queue)", NULL},
    {{"-c", "GOOD", "check-config"}, 0, "GOOD: ok (1 queue)", NULL},
    {{"-c", "BAD", "check-config", "-c", "GOOD"}, 0, "GOOD: ok (1 queue)", NULL},
    {{"run", "-c", "BAD"}, 3, NULL, "pgwork: BAD:2:"},
    {{"run", "--config", "BAD"}, 3, NULL, "pgwork: BAD:2:"},
    {{"migrate", "-c", "BAD"}, 3, NULL, "pgwork: BAD:2:"},
    {{"status", "--json", "-c", "BAD", "q"}, 3, NULL, "pgwork: BAD:2:"},
    {{"check-config", "--", "-c", "GOOD"}, 2, NULL, "unknown command or wrong arguments"},
    {{"-c", "GOOD", "--", "check-config"}, 0, "GOOD: ok (1 queue)", NULL},
    {{"check-config", "-c"}, 2, NULL, "pgwork: -c needs a config file"},
    {{"check-config", "--config"}, 2, NULL, "pgwork: --config needs a config file"},
    {{"check-config", "--version"}, 0, "pgwork ", NULL},
};

/* s with GOOD and BAD replaced by the two paths. */
static const char *placed_subst(const char *s, const char *good, const char *bad)
{
    const char *g = strstr(s, "GOOD"), *b = strstr(s, "BAD");
    if (g)
        return harness_printf("%.*s%s%s", (int)(g - s), s, good, g + 4);
    if (b)
        return harness_printf("%.*s%s%s", (int)(b - s), s, bad, b + 3);
    return s;
}

START_TEST(test_options_after_command)
{
    const struct placed_options *p = &placed_options[_i];
    const char *good =
        harness_write_config("queue \"q\" { handler = \"exec\" command = {\"/bin/true\"} }\n");
    const char *bad =
        harness_write_config("# a typo on line 2\nqueue \"q\" { handlr = \"exec\" }\n");
    const char *args[8];
    int n = 0;
    for (int i = 0; p->args[i]; i++)
        args[n++] = placed_subst(p->args[i], good, bad);
    args[n] = NULL;
    /* Exit 1 for anything that gets as far as connecting. */
    const char *conninfo = "host=/nonexistent/pgwork-test dbname=nowhere connect_timeout=2";

    const char *out, *err;
    int rc = harness_pgwork(conninfo, NULL, &out, &err, args);
    ck_assert_msg(rc == p->exit_code, "pgwork %s %s %s ...: exit %d, wanted %d; stderr: %s",
                  args[0], args[1] ? args[1] : "", args[1] && args[2] ? args[2] : "", rc,
                  p->exit_code, err);
    if (p->out) {
        const char *want = placed_subst(p->out, good, bad);
        ck_assert_msg(strstr(out, want), "stdout lacks \"%s\": %s", want, out);
    }
    if (p->err) {
        const char *want = placed_subst(p->err, good, bad);
        ck_assert_msg(strstr(err, want), "stderr lacks \"%s\": %s", want, err);
    }
}
END_TEST

/* The same against a real database: a task enqueued with the options last. */
START_TEST(test_enqueue_options_after_command)
{
    PGconn *conn;
    const char *conninfo = harness_db_migrated(&conn, NULL, NULL);
    const char *config = harness_write_config("log { level = \"warn\" }\n");
    const char *out = pgwork_ok(
        conninfo, 0, (const char *const[]){"enqueue", "q", "{\"a\": 1}", "-c", config, NULL});
    ck_assert_msg(atoll(out) > 0, "enqueue printed %s", out);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks "
                                               "WHERE queue = 'q' AND payload = '{\"a\": 1}'"),
                     1);
}
END_TEST

START_TEST(test_help)
{
    const char *out = pgwork_ok(NULL, 0, (const char *const[]){"--help", NULL});
    static const char *const mentions[] = {
        "status [--json] [QUEUE...]",
        "requeue-dead QUEUE | --all-queues | --id ID",
        "last_error kept",
        "pending_due",
        "2  bad command line",
        "4  bad input",
        "enqueue [--unique-key KEY] QUEUE [PAYLOAD]",
        "check-config",
    };
    for (size_t i = 0; i < sizeof(mentions) / sizeof(mentions[0]); i++)
        ck_assert_msg(strstr(out, mentions[i]), "--help lacks \"%s\"", mentions[i]);
    ck_assert_str_eq(pgwork_ok(NULL, 0, (const char *const[]){"status", "--help", NULL}), out);
    ck_assert_str_eq(pgwork_ok(NULL, 0, (const char *const[]){"requeue-dead", "--help", NULL}),
                     out);
}
END_TEST

Suite *cli_suite(void)
{
    Suite *s = suite_create("cli");

    TCase *tc = harness_tcase("status");
    tcase_add_test(tc, test_status_counts_json);
    tcase_add_test(tc, test_status_table);
    tcase_add_test(tc, test_status_empty_and_unmigrated);
    tcase_add_loop_test(tc, test_status_hostile_names, 0,
                        (int)(sizeof(hostile_names) / sizeof(hostile_names[0])));
    suite_add_tcase(s, tc);

    tc = harness_tcase("requeue");
    tcase_add_test(tc, test_requeue_dead_queue);
    tcase_add_test(tc, test_requeue_dead_ids);
    suite_add_tcase(s, tc);

    tc = harness_tcase("args");
    tcase_add_loop_test(tc, test_bad_arguments, 0, (int)(sizeof(bad_args) / sizeof(bad_args[0])));
    tcase_add_test(tc, test_help);
    tcase_add_loop_test(tc, test_options_after_command, 0,
                        (int)(sizeof(placed_options) / sizeof(placed_options[0])));
    tcase_add_test(tc, test_enqueue_options_after_command);
    suite_add_tcase(s, tc);

    return s;
}
