/*
 * test_schedule.c — schedules (issue 13 item 1, migration 0010): one task
 * per tick however many pods run the schedule, each task's run_at its
 * tick; a tick missed while no pod ran made once, late, when a pod
 * starts; check-config names the file, the line and the reason.
 *
 * Judged by the rows in pgwork.tasks and pgwork.schedules. The schedules'
 * tasks go to a queue no pod serves, so they stay pending and countable.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "suites.h"

static const char *schedule_database(PGconn **conn)
{
    const char *conninfo = harness_db_create(NULL);
    ck_assert_int_eq(harness_migrate(conninfo), 0);
    *conn = harness_connect(conninfo);
    return conninfo;
}

/* A pod serving "work" (never used) with one schedule body. */
static const char *schedule_config(const char *schedule)
{
    return harness_write_config(harness_printf("workers { count = 1 }\n"
                                               "queue \"work\" { command = {\"/bin/true\"} }\n"
                                               "%s\n",
                                               schedule));
}

/* GET /metrics through http_get.py (prometheus_client's parser: a
 * malformed exposition fails); one sample per line. */
static const char *metrics_samples(int port)
{
    const char *script =
        harness_printf("%s/http_get.py", getenv("PGWORK_TESTS_DIR") ? getenv("PGWORK_TESTS_DIR")
                                                                    : "tests/integration");
    const char *path = harness_printf("%s/metrics.txt", harness_tmpdir());
    int rc = system(harness_printf(
        "/usr/bin/python3 %s 'http://127.0.0.1:%d/metrics' --metrics > %s", script, port, path));
    ck_assert_msg(rc == 0, "http_get.py failed (%d): %s", rc, harness_read_file(path));
    return harness_read_file(path);
}

/* The value of sample "name{labels}", or -1 if absent. */
static double sample(const char *samples, const char *name_and_labels)
{
    const char *needle = harness_printf("%s ", name_and_labels);
    for (const char *line = samples; (line = strstr(line, needle)) != NULL; line++)
        if (line == samples || line[-1] == '\n')
            return atof(line + strlen(needle));
    return -1;
}

/* Run jq's filter on text; true when it holds. */
static bool jq_holds(const char *text, const char *filter)
{
    const char *path = harness_printf("%s/status.json", harness_tmpdir());
    harness_write_file(path, text);
    return harness_jq_file(path, (const char *const[]){"-e", filter, NULL}, NULL) == 0;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Two pods with `every = 1s` for 12 s: 11 ± 1 tasks in the window, one
 * per tick (no two with one run_at), their run_at whole seconds, no tick
 * skipped. Both pods race for every tick: their timers fire at the same
 * moment of the database's clock. */
START_TEST(two_pods_one_task_per_tick)
{
    PGconn *conn;
    const char *conninfo = schedule_database(&conn);
    const char *config = schedule_config("schedule \"beat\" { every = 1s queue = \"ticks\" }");
    struct harness_supervisor *a = harness_spawn_supervisor(config, conninfo);
    struct harness_supervisor *b = harness_spawn_supervisor(config, conninfo);
    /* Both up: each has claimed a tick (made it, or found it made). */
    ck_assert_msg(harness_wait_until(conn, "SELECT count(*) FROM pgwork.schedules", 1, 15000),
                  "no schedule row after 15 s");
    ck_assert(harness_stderr_wait_for(a, "schedule beat: ", 15000));
    ck_assert(harness_stderr_wait_for(b, "schedule beat: ", 15000));

    const char *w0 = harness_printf("%s", harness_query_text(conn, "SELECT now()::text"));
    sleep_ms(12000); /* the window under test: twelve ticks' time */
    const char *w1 = harness_printf("%s", harness_query_text(conn, "SELECT now()::text"));
    ck_assert_int_eq(harness_stop_supervisor(a, SIGTERM, 15000), 0);
    ck_assert_int_eq(harness_stop_supervisor(b, SIGTERM, 15000), 0);

    int64_t in_window =
        harness_query_int64p(conn,
                             "SELECT count(*) FROM pgwork.tasks WHERE queue = 'ticks'"
                             " AND run_at > $1::timestamptz AND run_at <= $2::timestamptz",
                             2, (const char *const[]){w0, w1});
    int64_t total = harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks");
    int64_t ticks = harness_query_int64(conn, "SELECT count(DISTINCT run_at) FROM pgwork.tasks");
    int64_t span = harness_query_int64(
        conn, "SELECT extract(epoch FROM max(run_at) - min(run_at))::bigint + 1 FROM pgwork.tasks");
    int64_t fractions = harness_query_int64(
        conn, "SELECT count(*) FROM pgwork.tasks WHERE run_at <> date_trunc('second', run_at)");
    fprintf(stderr,
            "two pods, every 1s, 12 s: %" PRId64 " tasks in the window, %" PRId64
            " in all, %" PRId64 " distinct ticks over %" PRId64 " s\n",
            in_window, total, ticks, span);
    if (total != ticks || in_window < 10 || in_window > 13 || span != total) {
        harness_stderr_dump(a);
        harness_stderr_dump(b);
    }
    ck_assert_msg(total == ticks, "%" PRId64 " tasks for %" PRId64 " ticks: a tick made twice",
                  total, ticks);
    ck_assert_msg(in_window >= 10 && in_window <= 13,
                  "%" PRId64 " tasks in a 12 s window of every = 1s (want 11 ± 1, one more for "
                  "the window's edges)",
                  in_window);
    ck_assert_msg(span == total, "%" PRId64 " ticks over %" PRId64 " s: a tick was skipped", total,
                  span);
    ck_assert_int_eq(fractions, 0); /* run_at is the tick: a whole second */
    /* The row says the last tick made and its task is there. */
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.schedules s"
                                               " JOIN pgwork.tasks t ON t.run_at = s.last_tick"
                                               " WHERE s.name = 'beat'"),
                     1);
}
END_TEST

/* A tick missed while no pod ran is made once, late, when a pod starts —
 * the newest one, not one per missed tick — and a restart right after
 * does not make it again. every = 1h: the pod's first sighting makes no
 * task; the row is then rewound five hours, as if no pod had run since.
 * /metrics and `pgwork status` show the ticks made and missed, the last
 * tick and the next. */
START_TEST(missed_tick_made_once_late_on_start)
{
    PGconn *conn;
    const char *conninfo = schedule_database(&conn);
    int port = harness_free_port();
    const char *config =
        schedule_config(harness_printf("http { listen = \"127.0.0.1:%d\" }\n"
                                       "schedule \"hourly\" { every = 1h queue = \"ticks\" "
                                       "payload = \"{\\\"report\\\": 1}\" priority = 7 }",
                                       port));
    struct harness_supervisor *a = harness_spawn_supervisor(config, conninfo);
    ck_assert(harness_wait_until(conn, "SELECT count(*) FROM pgwork.schedules", 1, 15000));
    ck_assert(harness_stderr_wait_for(a, "first seen at tick", 15000));
    ck_assert_int_eq(harness_stop_supervisor(a, SIGTERM, 15000), 0);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks"), 0);

    harness_exec(conn, "UPDATE pgwork.schedules SET last_tick = last_tick - interval '5 hours'");
    const char *rewound = harness_printf(
        "%s", harness_query_text(conn, "SELECT last_tick::text FROM pgwork.schedules"));
    struct harness_supervisor *b = harness_spawn_supervisor(config, conninfo);
    ck_assert_msg(harness_wait_until(conn, "SELECT count(*) FROM pgwork.tasks", 1, 15000),
                  "no late task after 15 s");
    ck_assert(harness_stderr_wait_for(b, "made tick", 15000));
    /* Four ticks missed between the rewound one and the hour b started in
     * (five if an hour began since the first pod ran). */
    int64_t missed = harness_query_int64p(
        conn,
        "SELECT extract(epoch FROM last_tick - $1::timestamptz)::bigint / 3600 - 1"
        " FROM pgwork.schedules",
        1, (const char *const[]){rewound});
    ck_assert_msg(missed == 4 || missed == 5, "%" PRId64 " ticks missed", missed);
    ck_assert_msg(strstr(harness_stderr_text(b),
                         harness_printf("%" PRId64 " tick(s) before it were never made", missed)) !=
                      NULL,
                  "the log does not count the %" PRId64 " missed ticks", missed);

    const char *m = metrics_samples(port);
    double last = (double)harness_query_int64(
        conn, "SELECT extract(epoch FROM last_tick)::bigint FROM pgwork.schedules");
    ck_assert_msg(sample(m, "pgwork_schedule_ticks_made_total{schedule=\"hourly\"}") == 1, "%s", m);
    ck_assert_msg(sample(m, "pgwork_schedule_ticks_missed_total{schedule=\"hourly\"}") == missed,
                  "%s", m);
    ck_assert_msg(sample(m, "pgwork_schedule_last_tick_timestamp_seconds{schedule=\"hourly\"}") ==
                      last,
                  "%s", m);
    ck_assert_msg(sample(m, "pgwork_schedule_next_tick_timestamp_seconds{schedule=\"hourly\"}") ==
                      last + 3600,
                  "%s", m);

    const char *out, *err;
    int rc = harness_pgwork(conninfo, NULL, &out, &err,
                            (const char *const[]){"status", "--json", "-c", config, NULL});
    ck_assert_msg(rc == 0, "status --json: exit %d: %s", rc, err);
    const char *want = harness_query_text(
        conn, "SELECT format('.schedules == [{\"schedule\": \"hourly\", \"spec\": \"every 1h\","
              " \"queue\": \"ticks\", \"last_tick\": %s, \"next_tick\": %s,"
              " \"last_tick_age_seconds\": .schedules[0].last_tick_age_seconds,"
              " \"next_tick_in_seconds\": .schedules[0].next_tick_in_seconds,"
              " \"made_by\": .schedules[0].made_by, \"configured\": true}]',"
              " to_json(to_char(last_tick AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')),"
              " to_json(to_char(next_tick AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')))"
              " FROM pgwork.schedules");
    ck_assert_msg(jq_holds(out, want), "status --json: %s (want %s)", out, want);
    ck_assert_msg(jq_holds(out, ".schedules[0].next_tick_in_seconds > 0 and "
                                ".schedules[0].next_tick_in_seconds <= 3600"),
                  "%s", out);
    rc = harness_pgwork(conninfo, NULL, &out, &err,
                        (const char *const[]){"status", "-c", config, NULL});
    ck_assert_msg(rc == 0 && strstr(out, "SCHEDULE\n") != NULL && strstr(out, "hourly\n") != NULL,
                  "status: exit %d: %s%s", rc, out, err);
    ck_assert_int_eq(harness_stop_supervisor(b, SIGTERM, 15000), 0);
    /* Restarted: the tick is made already. */
    struct harness_supervisor *c = harness_spawn_supervisor(config, conninfo);
    ck_assert_msg(harness_stderr_wait_for(c, "schedule hourly: tick", 15000),
                  "the restarted pod did not claim the tick");
    ck_assert_msg(strstr(harness_stderr_text(c), "already made") != NULL,
                  "the restarted pod made the tick again");
    ck_assert_int_eq(harness_stop_supervisor(c, SIGTERM, 15000), 0);

    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks"), 1);
    /* Its run_at is the newest tick, the hour it started in (or the next,
     * if an hour began meanwhile); the row's last_tick is it. */
    ck_assert_int_eq(harness_query_int64p(conn,
                                          "SELECT count(*) FROM pgwork.tasks t, pgwork.schedules s"
                                          " WHERE t.run_at = s.last_tick"
                                          "   AND t.run_at = date_trunc('hour', t.created_at)"
                                          "   AND t.queue = 'ticks' AND t.priority = 7"
                                          "   AND t.payload = '{\"report\": 1}'"
                                          "   AND s.previous_tick = $1::timestamptz",
                                          1, (const char *const[]){rewound}),
                     1);
}
END_TEST

/* HUP: an added schedule starts making ticks, a removed one stops. */
START_TEST(hup_adds_and_removes_a_schedule)
{
    PGconn *conn;
    const char *conninfo = schedule_database(&conn);
    const char *plain = "workers { count = 1 }\nqueue \"work\" { command = {\"/bin/true\"} }\n";
    const char *config = harness_write_config(plain);
    struct harness_supervisor *sup = harness_spawn_supervisor(config, conninfo);
    harness_wait_output(sup, "listening on channel");

    harness_write_file(config,
                       harness_printf("%shttp { listen = \"\" }\n"
                                      "schedule \"beat\" { every = 1s queue = \"ticks\" }\n",
                                      plain));
    harness_signal_and_wait(sup, sup->pid, SIGHUP, "reloaded");
    ck_assert_msg(harness_wait_until(conn, "SELECT least(count(*), 2) FROM pgwork.tasks", 2, 10000),
                  "the schedule added by HUP made no two tasks in 10 s");

    harness_write_file(config, harness_printf("%shttp { listen = \"\" }\n", plain));
    harness_signal_and_wait(sup, sup->pid, SIGHUP, "reloaded");
    /* A claim sent just before the reload may still land. */
    int64_t after = harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks") + 1;
    sleep_ms(3000); /* three ticks' time: none may come */
    int64_t later = harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks");
    ck_assert_msg(later <= after,
                  "%" PRId64 " tasks 3 s after the schedule was removed (%" PRId64 " at most)",
                  later, after);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 15000), 0);
}
END_TEST

/* check-config: a bad schedule is an error naming the file, the line and
 * why, exit 3, before anything starts. */
START_TEST(check_config_names_line_and_reason)
{
    static const struct {
        const char *body; /* the schedule section, from line 3 on */
        int line;
        const char *why;
    } cases[] = {
        {"schedule \"s\" {\n  cron = \"61 * * * *\"\n  queue = \"q\"\n}\n", 4,
         "schedule \"s\".cron: cron minute 61 out of range 0-59"},
        {"schedule \"s\" {\n  queue = \"q\"\n  cron = \"@daily\"\n  every = 1h\n}\n", 6,
         "schedule \"s\": give either cron or every, not both"},
        {"schedule \"s\" {\n  every = 1m\n  queue = \"q\"\n  payload = \"{oops}\"\n}\n", 6,
         "schedule \"s\".payload: invalid JSON"},
        {"schedule \"s\" {\n  cron = \"0 3 * * *\"\n  queue = \"q\"\n  timezone = "
         "\"Europe/Atlantis\"\n}\n",
         6, "schedule \"s\".timezone: timezone \"Europe/Atlantis\": unknown zone"},
        {"schedule \"s\" {\n  every = 1m\n  queue = \"\"\n}\n", 5,
         "schedule \"s\".queue: queue name is empty"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *path = harness_write_config(harness_printf(
            "# a pod\nqueue \"work\" { command = {\"/bin/true\"} }\n%s", cases[i].body));
        const char *out, *err;
        int rc = harness_pgwork(NULL, NULL, &out, &err,
                                (const char *const[]){"check-config", "-c", path, NULL});
        const char *want = harness_printf("%s:%d: %s", path, cases[i].line, cases[i].why);
        ck_assert_msg(rc == 3 && strstr(err, want) != NULL,
                      "case %zu: exit %d, stderr %s (want \"%s\")", i, rc, err, want);
    }
    const char *good = harness_write_config("queue \"work\" { command = {\"/bin/true\"} }\n"
                                            "schedule \"nightly\" { cron = \"0 3 * * *\" timezone "
                                            "= \"Europe/Berlin\" queue = \"work\" }\n");
    const char *out, *err;
    int rc = harness_pgwork(NULL, NULL, &out, &err,
                            (const char *const[]){"check-config", "-c", good, NULL});
    ck_assert_msg(rc == 0, "a good schedule: exit %d, %s%s", rc, out, err);
}
END_TEST

Suite *schedule_suite(void)
{
    Suite *s = suite_create("schedules");
    TCase *tc = harness_tcase("schedules");
    tcase_add_test(tc, two_pods_one_task_per_tick);
    tcase_add_test(tc, missed_tick_made_once_late_on_start);
    tcase_add_test(tc, hup_adds_and_removes_a_schedule);
    tcase_add_test(tc, check_config_names_line_and_reason);
    suite_add_tcase(s, tc);
    return s;
}
