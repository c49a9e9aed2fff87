/*
 * chaos.c — the long failure runs (issue 4), `make chaos`.
 *
 *   chaos [SCENARIO...]     storm | restart-fast | restart-immediate |
 *                           outage | valgrind       (default: all, in order)
 *
 * Runs against the cluster named by PGHOST/PGPORT/PGUSER (tests/chaos/run.sh
 * starts a throwaway one), with the binary $PGWORK_BIN, in the directory
 * $CHAOS_DIR. Each scenario gets its own database and supervisor, provokes
 * its failure for real, and judges the outcome by what the database holds
 * (task states, attempts, rows the handlers wrote). At the end it prints one
 * table row per scenario: what it did, what it found, PASS or FAIL. Exit
 * status 0 when every scenario passed.
 *
 * Scenarios:
 *  storm              CHAOS_TASKS (10,000) tasks, sql handler writing to a
 *                     result table; a random worker SIGKILLed every 50-200 ms
 *                     for the whole run. Every task done, none running or
 *                     pending, every id in the result table exactly once
 *                     (an effect twice fails the run: a sql effect commits
 *                     with its done); how many ran (started) more than once.
 *  storm-exec         the same with CHAOS_TASKS/5 exec tasks whose runs are
 *                     counted outside the database: how many ran twice.
 *  restart-fast,      pg_ctl restart -m fast / -m immediate at 20 % of a
 *  restart-immediate  CHAOS_TASKS/2 run: time until the listener and every
 *                     worker are connected again, until every task is done;
 *                     nothing lost or left running, no effect twice.
 *  outage             PostgreSQL stopped for CHAOS_OUTAGE_S (10) seconds: the
 *                     supervisor answers every SIGUSR1 meanwhile, uses little
 *                     CPU, and finishes the work once the server is back.
 *  valgrind           the supervisor and one worker under valgrind (memcheck,
 *                     --trace-children=yes) for a short load with a listener
 *                     kill in the middle: no error, nothing definitely lost.
 *
 * Waits are polls on a condition with a deadline; the only deliberate
 * sleeps are the storm's random gaps between kills and the outage itself.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "tests/chaos/chaoslib.h"

#define ROW_TEXT 512

struct row {
    char name[32];
    char did[ROW_TEXT];
    char found[ROW_TEXT];
    bool pass;
};

static struct row rows[8];
static int row_count;

static int tasks_total; /* CHAOS_TASKS */
static uint64_t rng_state = 88172645463325252UL;
static char exit_buf[64]; /* chaos_exit_text's output */

static struct row *row_new(const char *name)
{
    struct row *r = &rows[row_count++];
    snprintf(r->name, sizeof(r->name), "%s", name);
    return r;
}

/* --- scenarios ------------------------------------------------------------ */

static void scenario_storm(void)
{
    struct row *r = row_new("kill storm");
    PGconn *c;
    char *conninfo = chaos_make_database("storm", &c);
    /* A low restart cap: a worker killed every few hundred ms never counts
     * as "proven", and a cap longer than the gap between kills would kill
     * workers before they start (the storm would test the backoff, not
     * the requeue). */
    char *config = chaos_write_file(
        "storm.conf", "workers { count = 4 restart_delay_min = 20ms restart_delay_max = 100ms }\n"
                      "log { level = \"info\" format = \"text\" }\n"
                      "http { listen = \"\" }\n"
                      "queue \"storm\" { handler = \"sql\" statement = \"INSERT INTO "
                      "results(task) SELECT $2 FROM pg_sleep(0.005)\" batch = 5 "
                      "max_attempts = 1000 }\n");
    /* 5 ms per task: the storm lasts long enough to hit workers mid-batch
     * many times. max_attempts is high: a task caught in many killed
     * batches must not end dead here (that is tested elsewhere). */
    struct chaos_sup s = chaos_sup_start("storm", config, conninfo, NULL);
    if (!chaos_wait_log(s.log, 0, "listening on channel", 20000))
        chaos_say("storm: the supervisor is not listening after 20 s");
    char *sql = chaos_xasprintf("INSERT INTO pgwork.tasks (queue, payload) SELECT 'storm', "
                                "jsonb_build_object('n', g) FROM generate_series(1, %d) g",
                                tasks_total);
    chaos_exec_sql(c, sql);
    free(sql);
    int64_t start = chaos_now_ms(), last_report = start;
    int kills = 0;
    int64_t timeout_ms = 600000, done = 0;
    while (chaos_now_ms() - start < timeout_ms) {
        done = chaos_count_state(c, "done");
        if (done == tasks_total)
            break;
        chaos_sleep_ms(50 + (int64_t)(chaos_rng(&rng_state) % 151));
        pid_t pids[64];
        int n = chaos_children_of(s.pid, pids, 64);
        if (n > 0 && kill(pids[chaos_rng(&rng_state) % (unsigned long)n], SIGKILL) == 0)
            kills++;
        if (chaos_now_ms() - last_report >= 10000) {
            chaos_say("storm: %" PRId64 "/%d done, %d kills, %" PRId64 " s", done, tasks_total,
                      kills, (chaos_now_ms() - start) / 1000);
            last_report = chaos_now_ms();
        }
    }
    int64_t took = chaos_now_ms() - start;
    kill(s.pid, SIGTERM);
    int status = chaos_sup_wait(&s, 60000);

    int64_t running = chaos_count_state(c, "running"), pending = chaos_count_state(c, "pending");
    int64_t dead = chaos_count_state(c, "dead");
    done = chaos_count_state(c, "done");
    int64_t distinct = chaos_query_int(c, "SELECT count(DISTINCT task) FROM results");
    int64_t rows_total = chaos_query_int(c, "SELECT count(*) FROM results");
    int64_t missing = chaos_query_int(c, "SELECT count(*) FROM pgwork.tasks t WHERE NOT EXISTS "
                                         "(SELECT 1 FROM results r WHERE r.task = t.id)");
    int64_t restarted = chaos_query_int(c, "SELECT count(*) FROM pgwork.tasks WHERE attempts > 1");
    int64_t max_attempts = chaos_query_int(c, "SELECT max(attempts) FROM pgwork.tasks");
    int restarts_logged = chaos_count_in_file(s.log, "exited unexpectedly");

    snprintf(r->did, sizeof(r->did),
             "%d tasks (sql handler, 5 ms each, 4 workers); %d worker SIGKILLs, one every 50-200 "
             "ms; %.1f s, %.0f tasks/s",
             tasks_total, kills, (double)took / 1000, (double)done * 1000 / (double)(took + 1));
    snprintf(r->found, sizeof(r->found),
             "done %" PRId64 ", running %" PRId64 ", pending %" PRId64 ", dead %" PRId64
             "; ids missing from results %" PRId64 "; effects twice %" PRId64
             "; started more than once %" PRId64 " (max attempts %" PRId64
             "); %d worker restarts; supervisor %s",
             done, running, pending, dead, missing, rows_total - distinct, restarted, max_attempts,
             restarts_logged, chaos_exit_text(status, exit_buf, sizeof(exit_buf)));
    /* A sql task's effect commits with its done: twice is a broken contract
     * (DESIGN §3), not the price of at-least-once. */
    r->pass = done == tasks_total && running == 0 && pending == 0 && missing == 0 &&
              distinct == tasks_total && rows_total == distinct && status == 0;
    PQfinish(c);
    free(conninfo);
    free(config);
    free(s.log);
}

/* The same storm with the exec handler, whose effects happen outside the
 * database: every run appends its task id to a file, so reruns — the price
 * of at-least-once — are visible. */
static void scenario_storm_exec(void)
{
    struct row *r = row_new("kill storm (exec)");
    PGconn *c;
    char *conninfo = chaos_make_database("storm_exec", &c);
    int tasks = tasks_total / 5;
    char *runs = chaos_xasprintf("%s/storm-exec.runs", chaos_dir());
    unlink(runs);
    char *config_text = chaos_xasprintf(
        "workers { count = 4 restart_delay_min = 20ms restart_delay_max = 100ms }\n"
        "log { level = \"info\" format = \"text\" }\n"
        "http { listen = \"\" }\n"
        "queue \"x\" { command = {\"/bin/sh\", \"-c\", \"sleep 0.01; echo $PGWORK_TASK_ID >> "
        "%s\"} batch = 5 max_attempts = 1000 }\n",
        runs);
    char *config = chaos_write_file("storm-exec.conf", config_text);
    free(config_text);
    struct chaos_sup s = chaos_sup_start("storm-exec", config, conninfo, NULL);
    if (!chaos_wait_log(s.log, 0, "listening on channel", 20000))
        chaos_say("storm (exec): the supervisor is not listening after 20 s");
    char *sql = chaos_xasprintf("INSERT INTO pgwork.tasks (queue) SELECT 'x' FROM "
                                "generate_series(1, %d)",
                                tasks);
    chaos_exec_sql(c, sql);
    free(sql);
    int64_t start = chaos_now_ms();
    int kills = 0;
    int64_t done = 0;
    while (chaos_now_ms() - start < 600000) {
        done = chaos_count_state(c, "done");
        if (done == tasks)
            break;
        chaos_sleep_ms(50 + (int64_t)(chaos_rng(&rng_state) % 151));
        pid_t pids[64];
        int n = chaos_children_of(s.pid, pids, 64);
        if (n > 0 && kill(pids[chaos_rng(&rng_state) % (unsigned long)n], SIGKILL) == 0)
            kills++;
    }
    int64_t took = chaos_now_ms() - start;
    kill(s.pid, SIGTERM);
    int status = chaos_sup_wait(&s, 60000);

    /* The runs file into a table: one row per handler run. */
    chaos_exec_sql(c, "CREATE TABLE runs (task bigint)");
    FILE *f = fopen(runs, "r");
    int64_t lines = 0;
    if (f != NULL) {
        char line[64];
        PGresult *res = PQexec(c, "COPY runs FROM STDIN");
        PQclear(res);
        while (fgets(line, sizeof(line), f) != NULL) {
            PQputCopyData(c, line, (int)strlen(line));
            lines++;
        }
        PQputCopyEnd(c, NULL);
        PQclear(PQgetResult(c));
        fclose(f);
    }
    int64_t running = chaos_count_state(c, "running"), pending = chaos_count_state(c, "pending");
    done = chaos_count_state(c, "done");
    int64_t missing = chaos_query_int(c, "SELECT count(*) FROM pgwork.tasks t WHERE NOT EXISTS "
                                         "(SELECT 1 FROM runs r WHERE r.task = t.id)");
    int64_t twice = chaos_query_int(c, "SELECT count(*) FROM (SELECT task FROM runs GROUP BY task "
                                       "HAVING count(*) > 1) d");
    int64_t restarted = chaos_query_int(c, "SELECT count(*) FROM pgwork.tasks WHERE attempts > 1");
    snprintf(r->did, sizeof(r->did),
             "%d tasks (exec, sh appending its id to a file, 4 workers); %d worker SIGKILLs, "
             "one every 50-200 ms; %.1f s",
             tasks, kills, (double)took / 1000);
    snprintf(r->found, sizeof(r->found),
             "done %" PRId64 ", running %" PRId64 ", pending %" PRId64 "; %" PRId64
             " handler runs; ids never run %" PRId64 "; ran twice or more %" PRId64
             " (the cost of at-least-once); started more than once %" PRId64 "; supervisor %s",
             done, running, pending, lines, missing, twice, restarted,
             chaos_exit_text(status, exit_buf, sizeof(exit_buf)));
    r->pass = done == tasks && running == 0 && pending == 0 && missing == 0 && status == 0;
    PQfinish(c);
    free(conninfo);
    free(config);
    free(runs);
    free(s.log);
}

static void scenario_restart(const char *mode)
{
    char name[32];
    snprintf(name, sizeof(name), "pg restart -m %s", mode);
    struct row *r = row_new(name);
    PGconn *c;
    char dbname[32];
    snprintf(dbname, sizeof(dbname), "restart_%s", mode);
    char *conninfo = chaos_make_database(dbname, &c);
    int tasks = tasks_total / 2;
    int workers = 4;
    char *config = chaos_write_file(
        "restart.conf",
        "workers { count = 4 restart_delay_min = 100ms restart_delay_max = 2s }\n"
        "listener { reconnect_min = 200ms reconnect_max = 2s }\n"
        "log { level = \"info\" format = \"text\" }\n"
        "http { listen = \"\" }\n"
        "queue \"r\" { handler = \"sql\" statement = \"INSERT INTO results(task) SELECT $2 "
        "FROM pg_sleep(0.002)\" batch = 10 }\n");
    char *log_name = chaos_xasprintf("restart-%s", mode);
    struct chaos_sup s = chaos_sup_start(log_name, config, conninfo, NULL);
    free(log_name);
    if (!chaos_wait_log(s.log, 0, "listening on channel", 20000))
        chaos_say("restart: the supervisor is not listening after 20 s");
    char *sql = chaos_xasprintf("INSERT INTO pgwork.tasks (queue) SELECT 'r' FROM "
                                "generate_series(1, %d)",
                                tasks);
    chaos_exec_sql(c, sql);
    free(sql);
    int64_t deadline = chaos_now_ms() + 120000;
    int64_t done_before;
    while ((done_before = chaos_count_state(c, "done")) < tasks / 5 && chaos_now_ms() < deadline)
        chaos_sleep_ms(20);

    /* pg_ctl runs in the background: recovery is timed from the moment
     * the restart began, polling as soon as the server answers. */
    char old_start[64] = "";
    PGresult *res = PQexec(c, "SELECT pg_postmaster_start_time()::text");
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
        snprintf(old_start, sizeof(old_start), "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    char *new_server_sql =
        chaos_xasprintf("SELECT (pg_postmaster_start_time() > '%s'::timestamptz)::int", old_start);
    int64_t t0 = chaos_now_ms();
    pid_t ctl = fork();
    if (ctl == 0)
        _exit(chaos_pg_ctl("restart", mode) == 0 ? 0 : 1);
    PQfinish(c);
    c = NULL;
    int64_t restart_ms = -1, listener_back = -1, workers_back = -1, all_done = -1;
    int rc = -1;
    deadline = chaos_now_ms() + 120000;
    while (chaos_now_ms() < deadline &&
           (restart_ms < 0 || listener_back < 0 || workers_back < 0 || all_done < 0)) {
        int status;
        if (restart_ms < 0 && waitpid(ctl, &status, WNOHANG) == ctl) {
            restart_ms = chaos_now_ms() - t0;
            rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        if (c != NULL && PQstatus(c) != CONNECTION_OK) {
            PQfinish(c);
            c = NULL;
        }
        if (c == NULL) {
            /* The new server only: the old one may still answer for a
             * moment while pg_ctl stops it. */
            c = PQconnectdb(conninfo);
            if (PQstatus(c) != CONNECTION_OK || chaos_query_int(c, new_server_sql) != 1) {
                PQfinish(c);
                c = NULL;
            }
            if (c == NULL) {
                chaos_sleep_ms(20);
                continue;
            }
        }
        int64_t t = chaos_now_ms() - t0;
        if (listener_back < 0 &&
            chaos_query_int(c, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                               "current_database() AND application_name = 'pgwork listener'") >= 1)
            listener_back = t;
        if (workers_back < 0 &&
            chaos_query_int(c, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                               "current_database() AND application_name LIKE 'pgwork worker%'") >=
                workers)
            workers_back = t;
        if (all_done < 0 && chaos_count_state(c, "done") == tasks)
            all_done = t;
        chaos_sleep_ms(20);
    }
    free(new_server_sql);
    if (c == NULL)
        c = chaos_connect_retry(conninfo, 60000);
    if (c == NULL)
        chaos_die("the server did not come back after pg_ctl restart -m %s", mode);
    kill(s.pid, SIGTERM);
    int status = chaos_sup_wait(&s, 60000);
    int64_t done = chaos_count_state(c, "done"), running = chaos_count_state(c, "running");
    int64_t pending = chaos_count_state(c, "pending");
    int64_t distinct = chaos_query_int(c, "SELECT count(DISTINCT task) FROM results");
    int64_t rows_total = chaos_query_int(c, "SELECT count(*) FROM results");
    int64_t restarted = chaos_query_int(c, "SELECT count(*) FROM pgwork.tasks WHERE attempts > 1");
    int64_t recovery = listener_back > workers_back ? listener_back : workers_back;

    snprintf(r->did, sizeof(r->did),
             "%d tasks (sql, 4 workers); pg_ctl restart -m %s at %" PRId64 " done, took %" PRId64
             " ms",
             tasks, mode, done_before, restart_ms);
    snprintf(r->found, sizeof(r->found),
             "from the restart command: listener back %.2f s, all workers %.2f s (full recovery "
             "%.2f s), all done %.2f s; done %" PRId64 ", running %" PRId64 ", pending %" PRId64
             "; effects twice %" PRId64 "; started more than once %" PRId64 "; supervisor %s",
             (double)listener_back / 1000, (double)workers_back / 1000, (double)recovery / 1000,
             (double)all_done / 1000, done, running, pending, rows_total - distinct, restarted,
             chaos_exit_text(status, exit_buf, sizeof(exit_buf)));
    r->pass = rc == 0 && listener_back >= 0 && workers_back >= 0 && done == tasks && running == 0 &&
              distinct == tasks && rows_total == distinct && status == 0;
    PQfinish(c);
    free(conninfo);
    free(config);
    free(s.log);
}

static void scenario_outage(void)
{
    struct row *r = row_new("database outage");
    PGconn *c;
    char *conninfo = chaos_make_database("outage", &c);
    int outage_s = getenv("CHAOS_OUTAGE_S") ? atoi(getenv("CHAOS_OUTAGE_S")) : 10;
    char *config = chaos_write_file(
        "outage.conf", "workers { count = 2 restart_delay_min = 100ms restart_delay_max = 5s }\n"
                       "listener { reconnect_min = 200ms reconnect_max = 4s }\n"
                       "log { level = \"info\" format = \"text\" }\n"
                       "http { listen = \"\" }\n"
                       "queue \"o\" { handler = \"sql\" statement = \"INSERT INTO "
                       "results(task) VALUES ($2)\" }\n");
    struct chaos_sup s = chaos_sup_start("outage", config, conninfo, NULL);
    if (!chaos_wait_log(s.log, 0, "listening on channel", 20000))
        chaos_say("outage: the supervisor is not listening after 20 s");
    chaos_exec_sql(c, "INSERT INTO pgwork.tasks (queue) SELECT 'o' FROM generate_series(1, 100)");
    int64_t deadline = chaos_now_ms() + 20000;
    while (chaos_count_state(c, "done") < 100 && chaos_now_ms() < deadline)
        chaos_sleep_ms(20);
    PQfinish(c);

    int rc = chaos_pg_ctl("stop", "fast");
    int64_t stopped = chaos_now_ms();
    int64_t cpu0 = chaos_cpu_ms(s.pid);
    int asked = 0, answered = 0;
    int64_t slowest = 0;
    while (chaos_now_ms() - stopped < outage_s * 1000) {
        size_t before = chaos_file_size(s.log);
        int64_t t = chaos_now_ms();
        kill(s.pid, SIGUSR1);
        asked++;
        if (chaos_wait_log(s.log, before, "status queue ", 1000)) {
            answered++;
            if (chaos_now_ms() - t > slowest)
                slowest = chaos_now_ms() - t;
        }
        chaos_sleep_ms(500);
    }
    int64_t down_ms = chaos_now_ms() - stopped;
    int64_t cpu = chaos_cpu_ms(s.pid) - cpu0;
    int lost_lines = chaos_count_in_file(s.log, "listener connection lost");
    rc |= chaos_pg_ctl("start", NULL);
    int64_t started = chaos_now_ms();
    c = chaos_connect_retry(conninfo, 60000);
    if (c == NULL)
        chaos_die("the server did not come back");
    /* Work enqueued once it is back is picked up without help. */
    chaos_exec_sql(c, "INSERT INTO pgwork.tasks (queue) SELECT 'o' FROM generate_series(1, 100)");
    int64_t all_done = -1;
    deadline = chaos_now_ms() + 60000;
    while (chaos_now_ms() < deadline) {
        if (chaos_count_state(c, "done") == 200) {
            all_done = chaos_now_ms() - started;
            break;
        }
        chaos_sleep_ms(20);
    }
    kill(s.pid, SIGTERM);
    int status = chaos_sup_wait(&s, 60000);
    int64_t running = chaos_count_state(c, "running");
    snprintf(r->did, sizeof(r->did),
             "pg_ctl stop -m fast for %.1f s with 2 workers, SIGUSR1 every 0.5 s; then start, "
             "100 new tasks",
             (double)down_ms / 1000);
    snprintf(r->found, sizeof(r->found),
             "status answered %d/%d (slowest %" PRId64 " ms); supervisor CPU %" PRId64
             " ms while down; %d listener reconnect attempts logged (backoff); all 200 done %.2f s "
             "after start; running %" PRId64 "; supervisor %s",
             answered, asked, slowest, cpu, lost_lines, (double)all_done / 1000, running,
             chaos_exit_text(status, exit_buf, sizeof(exit_buf)));
    r->pass = rc == 0 && answered == asked && cpu < down_ms / 5 && all_done >= 0 && running == 0 &&
              status == 0 && lost_lines < outage_s * 3;
    PQfinish(c);
    free(conninfo);
    free(config);
    free(s.log);
}

/* Sum "ERROR SUMMARY: N errors" and "definitely lost: N bytes" over the
 * valgrind logs in vgdir. */
static void valgrind_totals(const char *vgdir, int *files, long *errors, long *lost,
                            char *first_error, size_t len)
{
    *files = 0;
    *errors = 0;
    *lost = 0;
    first_error[0] = '\0';
    DIR *d = opendir(vgdir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "vg.", 3) != 0)
            continue;
        char *path = chaos_xasprintf("%s/%s", vgdir, e->d_name);
        FILE *f = fopen(path, "r");
        free(path);
        if (f == NULL)
            continue;
        (*files)++;
        char line[4096];
        while (fgets(line, sizeof(line), f) != NULL) {
            const char *p;
            if ((p = strstr(line, "ERROR SUMMARY: ")) != NULL)
                *errors += strtol(p + 15, NULL, 10);
            if ((p = strstr(line, "definitely lost: ")) != NULL) {
                char digits[64] = {0};
                int k = 0;
                for (p += 17; *p && *p != ' ' && k < 63; p++)
                    if (*p != ',')
                        digits[k++] = *p;
                *lost += strtol(digits, NULL, 10);
            }
            if (first_error[0] == '\0' &&
                (strstr(line, "Invalid ") || strstr(line, "uninitialised") ||
                 strstr(line, "definitely lost in")))
                snprintf(first_error, len, "%.40s: %.400s", e->d_name, line);
        }
        fclose(f);
    }
    closedir(d);
    first_error[strcspn(first_error, "\n")] = '\0';
}

static void scenario_valgrind(void)
{
    struct row *r = row_new("valgrind");
    if (access("/usr/bin/valgrind", X_OK) != 0) {
        snprintf(r->did, sizeof(r->did), "skipped");
        snprintf(r->found, sizeof(r->found), "valgrind is not installed");
        r->pass = false;
        return;
    }
    PGconn *c;
    char *conninfo = chaos_make_database("valgrind", &c);
    char *vgdir = chaos_xasprintf("%s/valgrind", chaos_dir());
    mkdir(vgdir, 0755);
    char *logs = chaos_xasprintf("--log-file=%s/vg.%%p.log", vgdir);
    char *config = chaos_write_file(
        "valgrind.conf", "workers { count = 1 }\n"
                         "listener { reconnect_min = 200ms }\n"
                         "log { level = \"info\" format = \"text\" }\n"
                         "http { listen = \"\" }\n"
                         "queue \"s\" { handler = \"sql\" statement = \"INSERT INTO "
                         "results(task) VALUES ($2)\" }\n"
                         "queue \"e\" { command = {\"/bin/sh\", \"-c\", \"cat >/dev/null; "
                         "test $PGWORK_ATTEMPT -gt 1\"} backoff_base = 100ms max_attempts = 2 }\n"
                         "queue \"t\" { command = {\"/bin/sleep\", \"5\"} timeout = 300ms "
                         "max_attempts = 1 }\n");
    /* Handler programs (/bin/sh) are skipped: pgwork's own processes are
     * under test; workers are forks, always followed. */
    const char *const wrapper[] = {"valgrind",
                                   "--trace-children=yes",
                                   "--trace-children-skip=/bin/*,/usr/bin/*",
                                   "--leak-check=full",
                                   "--show-leak-kinds=definite",
                                   "--errors-for-leak-kinds=definite",
                                   "--track-origins=yes",
                                   "--error-exitcode=99",
                                   "--child-silent-after-fork=no",
                                   logs,
                                   NULL};
    struct chaos_sup s = chaos_sup_start("valgrind", config, conninfo, wrapper);
    bool listening = chaos_wait_log(s.log, 0, "listening on channel", 60000);
    chaos_exec_sql(c,
                   "INSERT INTO pgwork.tasks (queue, payload) SELECT 's', jsonb_build_object('n', "
                   "g) FROM generate_series(1, 300) g");
    chaos_exec_sql(c, "INSERT INTO pgwork.tasks (queue) SELECT 'e' FROM generate_series(1, 10)");
    chaos_exec_sql(c, "INSERT INTO pgwork.tasks (queue) VALUES ('t'), ('t')");
    int64_t deadline = chaos_now_ms() + 120000;
    while (chaos_count_state(c, "done") < 150 && chaos_now_ms() < deadline)
        chaos_sleep_ms(50);
    /* A worker crash (restart, requeue) in the middle. */
    pid_t worker[4];
    int kills = 0;
    if (chaos_children_of(s.pid, worker, 4) >= 1 && kill(worker[0], SIGKILL) == 0)
        kills++;
    /* A reconnect in the middle, and a status request. */
    chaos_exec_sql(c, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                      "current_database() AND application_name = 'pgwork listener'");
    kill(s.pid, SIGUSR1);
    chaos_exec_sql(c, "INSERT INTO pgwork.tasks (queue) SELECT 's' FROM generate_series(1, 50)");
    while ((chaos_count_state(c, "done") < 360 || chaos_count_state(c, "dead") < 2) &&
           chaos_now_ms() < deadline)
        chaos_sleep_ms(50);
    int64_t done = chaos_count_state(c, "done"), dead = chaos_count_state(c, "dead");
    kill(s.pid, SIGTERM);
    int status = chaos_sup_wait(&s, 120000);
    int files;
    long errors, lost;
    char first[512];
    valgrind_totals(vgdir, &files, &errors, &lost, first, sizeof(first));
    snprintf(r->did, sizeof(r->did),
             "supervisor + 1 worker under memcheck (--trace-children=yes, --track-origins): "
             "360 tasks (sql + exec with a retry) + 2 exec timeouts, %d worker SIGKILL, a "
             "listener kill, SIGUSR1, SIGTERM",
             kills);
    snprintf(r->found, sizeof(r->found),
             "%s; done %" PRId64 "/360, dead %" PRId64 "/2; %d process log(s): %ld error(s), %ld "
             "byte(s) definitely lost%s%s; supervisor %s (logs: %s)",
             listening ? "listening" : "NOT listening", done, dead, files, errors, lost,
             first[0] ? "; first: " : "", first,
             chaos_exit_text(status, exit_buf, sizeof(exit_buf)), vgdir);
    r->pass = listening && done == 360 && dead == 2 && files >= 2 && errors == 0 && lost == 0 &&
              status == 0;
    PQfinish(c);
    free(conninfo);
    free(config);
    free(vgdir);
    free(logs);
    free(s.log);
}

/* --- main ----------------------------------------------------------------- */

static void print_table(void)
{
    printf("\n%-22s %-6s %s\n", "scenario", "result", "what it did / what it found");
    printf("%-22s %-6s %s\n", "--------", "------", "---------------------------");
    for (int i = 0; i < row_count; i++) {
        printf("%-22s %-6s did:   %s\n", rows[i].name, rows[i].pass ? "PASS" : "FAIL", rows[i].did);
        printf("%-22s %-6s found: %s\n", "", "", rows[i].found);
    }
}

int main(int argc, char **argv)
{
    const char *dir = getenv("CHAOS_DIR"), *bin = getenv("PGWORK_BIN");
    if (dir == NULL || bin == NULL || getenv("PGHOST") == NULL)
        chaos_die("run through tests/chaos/run.sh (needs CHAOS_DIR, PGWORK_BIN, PGHOST...)");
    tasks_total = getenv("CHAOS_TASKS") ? atoi(getenv("CHAOS_TASKS")) : 10000;
    if (tasks_total < 100)
        tasks_total = 100;
    chaos_init("chaos", dir, bin);
    rng_state ^= (uint64_t)time(NULL) * 2654435761UL;
    signal(SIGPIPE, SIG_IGN);

    static const char *const all[] = {"storm",  "storm-exec", "restart-fast", "restart-immediate",
                                      "outage", "valgrind"};
    const char *const *list = argc > 1 ? (const char *const *)argv + 1 : all;
    int n = argc > 1 ? argc - 1 : (int)(sizeof(all) / sizeof(all[0]));
    for (int i = 0; i < n; i++) {
        int64_t t = chaos_now_ms();
        chaos_say("scenario %s ...", list[i]);
        if (strcmp(list[i], "storm") == 0)
            scenario_storm();
        else if (strcmp(list[i], "storm-exec") == 0)
            scenario_storm_exec();
        else if (strcmp(list[i], "restart-fast") == 0)
            scenario_restart("fast");
        else if (strcmp(list[i], "restart-immediate") == 0)
            scenario_restart("immediate");
        else if (strcmp(list[i], "outage") == 0)
            scenario_outage();
        else if (strcmp(list[i], "valgrind") == 0)
            scenario_valgrind();
        else
            chaos_die("unknown scenario %s", list[i]);
        chaos_say("scenario %s: %s in %.1f s", list[i], rows[row_count - 1].pass ? "PASS" : "FAIL",
                  (double)(chaos_now_ms() - t) / 1000);
    }
    print_table();
    for (int i = 0; i < row_count; i++)
        if (!rows[i].pass)
            return 1;
    return 0;
}
