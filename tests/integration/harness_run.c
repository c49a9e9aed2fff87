/*
 * harness_run.c — see harness.h, "scenarios" and "status": a supervisor
 * test's set-up as one table row (struct harness_scenario), the SIGUSR1
 * status lines read back into structs, and the waits the suites share.
 * Every wait polls a condition with a deadline and, when it gives up,
 * dumps the supervisor's output before failing the test.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

/* --- output --------------------------------------------------------------- */

bool harness_stderr_wait_after(struct harness_supervisor *sup, size_t from, const char *needle,
                               int timeout_ms)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    while (strstr(harness_stderr_text(sup) + from, needle) == NULL) {
        if (harness_now_ms() > deadline)
            return false;
        usleep(5000);
    }
    return true;
}

void harness_signal_and_wait(struct harness_supervisor *sup, pid_t pid, int sig, const char *line)
{
    size_t before = strlen(harness_stderr_text(sup));
    ck_assert_int_eq(kill(pid, sig), 0);
    if (!harness_stderr_wait_after(sup, before, line, 10000)) {
        harness_stderr_dump(sup);
        ck_abort_msg("no \"%s\" after signal %d", line, sig);
    }
}

void harness_wait_output(struct harness_supervisor *sup, const char *line)
{
    if (!harness_stderr_wait_for(sup, line, 15000)) {
        harness_stderr_dump(sup);
        ck_abort_msg("the supervisor did not print \"%s\" within 15 s", line);
    }
}

/* --- status --------------------------------------------------------------- */

const char *harness_status_text(struct harness_supervisor *sup)
{
    /* Until its signalfd exists, SIGUSR1 would kill it: "starting" is
     * logged once signals are set up. */
    if (!harness_stderr_wait_for(sup, "starting: ", 15000)) {
        harness_stderr_dump(sup);
        ck_abort_msg("the supervisor did not start within 15 s");
    }
    size_t before = strlen(harness_stderr_text(sup));
    ck_assert_int_eq(kill(sup->pid, SIGUSR1), 0);
    /* Queue lines close a status batch; each line is one write. */
    if (!harness_stderr_wait_after(sup, before, "status queue ", 5000)) {
        harness_stderr_dump(sup);
        ck_abort_msg("no status output within 5 s of SIGUSR1");
    }
    return harness_stderr_text(sup) + before;
}

/* The value after `key` in the line [line, end); every key is in every
 * worker line (supervisor/pool.c pool_log_status), so a missing one fails
 * the test. */
static const char *field(const char *line, const char *end, const char *key)
{
    const char *p = strstr(line, key);
    int len = end != NULL ? (int)(end - line) : (int)strlen(line);
    ck_assert_msg(p != NULL && (end == NULL || p < end), "no \"%s\" in status line: %.*s", key, len,
                  line);
    return p + strlen(key);
}

int harness_status(struct harness_supervisor *sup, struct harness_worker *out)
{
    const char *text = harness_status_text(sup);
    memset(out, 0, sizeof(*out) * HARNESS_MAX_WORKERS);
    int count = 0;
    for (const char *line = text; (line = strstr(line, "status worker ")) != NULL; line++) {
        int slot = atoi(line + strlen("status worker "));
        const char *end = strchr(line, '\n');
        ck_assert(slot >= 0 && slot < HARNESS_MAX_WORKERS);
        struct harness_worker *w = &out[slot];
        w->listed = true;
        w->pid = (pid_t)atoi(field(line, end, "pid="));
        sscanf(field(line, end, "state="), "%15[a-z]", w->state);
        w->task = atoll(field(line, end, " task="));
        w->wakeups = atoll(field(line, end, "wakeups="));
        w->claims = atoll(field(line, end, " claims="));
        w->restarts = atoll(field(line, end, "restarts="));
        w->failures_in_a_row = atoi(field(line, end, "failures_in_a_row="));
        count++;
    }
    return count;
}

pid_t harness_worker_running(struct harness_supervisor *sup, int64_t task)
{
    struct harness_worker w[HARNESS_MAX_WORKERS];
    harness_status(sup, w);
    for (int i = 0; i < HARNESS_MAX_WORKERS; i++)
        if (w[i].listed && w[i].task == task && w[i].pid > 0)
            return w[i].pid;
    return 0;
}

void harness_wait_idle(struct harness_supervisor *sup, int workers, struct harness_worker *out)
{
    int64_t deadline = harness_now_ms() + 20000;
    for (;;) {
        harness_status(sup, out);
        int idle = 0;
        for (int i = 0; i < workers; i++)
            idle += out[i].pid > 0 && strcmp(out[i].state, "idle") == 0;
        if (idle == workers)
            return;
        if (harness_now_ms() > deadline) {
            harness_stderr_dump(sup);
            ck_abort_msg("workers not idle: %d of %d", idle, workers);
        }
        usleep(20000);
    }
}

/* --- the database's side -------------------------------------------------- */

const char *harness_tasks_text(PGconn *conn)
{
    return harness_query_text(
        conn, "SELECT coalesce(string_agg(id || ':' || state || '/' || attempts, ' ' ORDER BY id), "
              "'no tasks') FROM pgwork.tasks");
}

void harness_expect(PGconn *conn, struct harness_supervisor *sup, const char *sql, int64_t expected,
                    int timeout_ms, const char *what)
{
    if (harness_wait_until(conn, sql, expected, timeout_ms))
        return;
    if (sup != NULL)
        harness_stderr_dump(sup);
    ck_abort_msg("%s: not within %d ms (%s = %lld, not %lld); tasks: %s", what, timeout_ms, sql,
                 (long long)harness_query_int64(conn, sql), (long long)expected,
                 harness_tasks_text(conn));
}

void harness_wait_workers(PGconn *conn, struct harness_supervisor *sup, int expected)
{
    if (!harness_wait_until(conn, HARNESS_WORKERS_SQL, expected, 15000)) {
        harness_stderr_dump(sup);
        ck_abort_msg("expected %d worker connections, have %lld", expected,
                     (long long)harness_query_int64(conn, HARNESS_WORKERS_SQL));
    }
}

const char *harness_db_migrated(PGconn **conn, char *name_out, const char *schema)
{
    const char *conninfo = harness_db_create(name_out);
    ck_assert_int_eq(harness_migrate(conninfo), 0);
    *conn = harness_connect(conninfo);
    if (schema != NULL)
        harness_exec(*conn, schema);
    return conninfo;
}

/* --- scenarios ------------------------------------------------------------ */

struct harness_run *harness_run_database(const char *schema)
{
    struct harness_run *run = harness_alloc(sizeof(*run));
    run->conninfo = harness_db_migrated(&run->conn, run->dbname, schema);
    return run;
}

const char *harness_scenario_config(const struct harness_scenario *s)
{
    const char *queue = "";
    if (s->script != NULL || s->queue != NULL) {
        const char *command = "";
        if (s->script != NULL)
            command = harness_printf("command = {\"%s\"} ",
                                     harness_write_script("handler.sh", s->script));
        queue = harness_printf("queue \"q\" { %s%s }\n", command, s->queue ? s->queue : "");
    }
    return harness_write_config(
        harness_printf("workers { %s }\nlog { %s }\n%s\n%s%s\n", s->workers ? s->workers : "",
                       s->log ? s->log : "level = \"info\" format = \"text\"",
                       s->extra ? s->extra : "", queue, s->queues ? s->queues : ""));
}

struct harness_supervisor *harness_run_start(struct harness_run *run,
                                             const struct harness_scenario *s)
{
    run->config = harness_scenario_config(s);
    run->sup = harness_spawn_supervisor_opts(run->config, run->conninfo, s->spawn);
    if (s->wait_for != NULL)
        harness_wait_output(run->sup, s->wait_for);
    if (s->idle > 0)
        harness_wait_idle(run->sup, s->idle, run->w);
    if (s->tasks != NULL)
        harness_exec(run->conn, s->tasks);
    return run->sup;
}

struct harness_run *harness_scenario(const struct harness_scenario *s)
{
    struct harness_run *run = harness_run_database(s->schema);
    harness_run_start(run, s);
    return run;
}
