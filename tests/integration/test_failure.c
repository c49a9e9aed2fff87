/*
 * test_failure.c — the failure model (DESIGN §6, issue 4), short versions:
 * every row of the table is provoked for real (kill -9, pg_terminate_backend,
 * a proxy that goes silent, pg_ctl restart, a PID namespace, hostile input)
 * and judged by what the database holds afterwards — task states, attempts,
 * rows written by handlers — never by log lines. Log output is used only to
 * synchronise (the supervisor is listening) and to read the supervisor's
 * shared-memory counters (its SIGUSR1 status lines). Every wait is a poll
 * on a condition with a deadline. The long versions are in tests/chaos/.
 *
 * Timing bounds: where the issue states one (restart_delay_min, reconnect_min
 * + 1 s, keepalive_interval + keepalive_timeout, 1 s for parent death) it is
 * asserted as stated; elsewhere deadlines are generous, for a loaded 2-core
 * machine and sanitizer builds.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

#define SQL_RESULTS "handler = \"sql\" statement = \"INSERT INTO results(task) VALUES ($2)\""

/* --- helpers -------------------------------------------------------------- */

/* The results table the sql handler writes into. */
#define RESULTS_TABLE "CREATE TABLE results (task bigint, at timestamptz DEFAULT clock_timestamp())"

/* A test's set-up (harness_scenario) on a database with RESULTS_TABLE. */
static struct harness_run *failure_run(struct harness_scenario s)
{
    s.schema = RESULTS_TABLE;
    return harness_scenario(&s);
}

/* A conninfo for the run's database through proxy (TCP to 127.0.0.1). */
static const char *failure_proxied(const struct harness_proxy *proxy, const struct harness_run *run)
{
    return harness_printf("host=127.0.0.1 port=%d user=%s dbname=%s", proxy->port,
                          getenv("PGUSER") ? getenv("PGUSER") : "postgres", run->dbname);
}

/* The backend pid of this database's listener other than `not_pid`, 0 if
 * none. */
static int64_t failure_listener_pid(PGconn *conn, int64_t not_pid)
{
    char param[32];
    snprintf(param, sizeof(param), "%" PRId64, not_pid);
    const char *params[] = {param};
    return harness_query_int64p(conn,
                                "SELECT coalesce(max(pid), 0) FROM pg_stat_activity "
                                "WHERE datname = current_database() "
                                "AND application_name = 'pgwork listener' AND pid <> $1",
                                1, params);
}

/* Poll until failure_listener_pid(conn, not_pid) != 0; that pid, or 0 after
 * timeout_ms. */
static int64_t failure_wait_listener(PGconn *conn, int64_t not_pid, int timeout_ms)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    for (;;) {
        int64_t pid = failure_listener_pid(conn, not_pid);
        if (pid != 0 || harness_now_ms() > deadline)
            return pid;
        usleep(10000);
    }
}

static int64_t failure_count(PGconn *conn, const char *state)
{
    const char *params[] = {state};
    return harness_query_int64p(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = $1", 1,
                                params);
}

/* Wait until n tasks are in state; on timeout dump the supervisor's output
 * and fail with what the table holds. */
static void failure_expect_state(PGconn *conn, struct harness_supervisor *sup, const char *state,
                                 int64_t n, int timeout_ms)
{
    /* state is one of the four literals of the contract */
    const char *sql = harness_printf("SELECT count(*) FROM pgwork.tasks WHERE state = '%s'", state);
    if (harness_wait_until(conn, sql, n, timeout_ms))
        return;
    const char *summary = harness_query_text(
        conn, "SELECT coalesce(string_agg(state || '=' || n, ' '), 'no tasks') FROM "
              "(SELECT state, count(*) n FROM pgwork.tasks GROUP BY state ORDER BY state) s");
    if (sup != NULL)
        harness_stderr_dump(sup);
    ck_abort_msg("expected %" PRId64 " task(s) %s within %d ms; the table holds: %s", n, state,
                 timeout_ms, summary);
}

/* The worker pid in a locked_by tag "<pod>/<slot>/<pid>". */
static pid_t failure_owner_pid(PGconn *conn, int64_t task)
{
    char id[32];
    snprintf(id, sizeof(id), "%" PRId64, task);
    const char *params[] = {id};
    return (pid_t)harness_query_int64p(
        conn, "SELECT split_part(locked_by, '/', 3)::int FROM pgwork.tasks WHERE id = $1", 1,
        params);
}

/* CPU time (user + system, ms) a process has used so far. */
static int64_t failure_cpu_ms(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    ck_assert(n > 0);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    ck_assert_ptr_nonnull(p);
    unsigned long utime = 0, stime = 0;
    /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime stime */
    ck_assert_int_eq(
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime), 2);
    long hz = sysconf(_SC_CLK_TCK);
    return (int64_t)(utime + stime) * 1000 / (hz > 0 ? hz : 100);
}

/* --- restarts ------------------------------------------------------------- */

/* Kill -9 slot's worker; the time from the kill until the slot has a new
 * process (ms), and that process. */
static int64_t failure_kill_and_time_restart(struct harness_supervisor *sup, int slot,
                                             pid_t *new_pid)
{
    struct harness_worker w[HARNESS_MAX_WORKERS];
    harness_status(sup, w);
    pid_t old = w[slot].pid;
    ck_assert_int_gt(old, 0);
    int64_t killed = harness_now_ms();
    ck_assert_int_eq(kill(old, SIGKILL), 0);
    int64_t deadline = killed + 15000;
    for (;;) {
        harness_status(sup, w);
        if (w[slot].pid != 0 && w[slot].pid != old) {
            *new_pid = w[slot].pid;
            return harness_now_ms() - killed;
        }
        if (harness_now_ms() > deadline) {
            harness_stderr_dump(sup);
            ck_abort_msg("worker %d was not restarted within 15 s", slot);
        }
        usleep(10000);
    }
}

START_TEST(worker_restart_backoff)
{
    struct harness_run *run =
        failure_run((struct harness_scenario){.workers = "count = 2 restart_delay_min = 500ms "
                                                         "restart_delay_max = 30s",
                                              .queue = SQL_RESULTS,
                                              .idle = 2});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    struct harness_worker *w = run->w;
    pid_t other = w[1].pid;

    /* First crash: restarted after restart_delay_min (the delay runs from
     * the reap, which comes after our kill: a lower bound that holds
     * exactly). */
    pid_t pid;
    int64_t first = failure_kill_and_time_restart(sup, 0, &pid);
    ck_assert_msg(first >= 500, "restarted %" PRId64 " ms after the kill (< 500 ms)", first);
    ck_assert_msg(first < 500 + 3000, "restarted only after %" PRId64 " ms", first);

    /* Second crash of the same slot soon after: the delay doubled. */
    harness_wait_idle(sup, 2, w);
    int64_t second = failure_kill_and_time_restart(sup, 0, &pid);
    ck_assert_msg(second >= 1000, "second restart after %" PRId64 " ms (< 2 x 500 ms)", second);
    ck_assert_msg(second < 1000 + 3000, "second restart only after %" PRId64 " ms", second);

    harness_wait_idle(sup, 2, w);
    ck_assert_int_eq(w[0].restarts, 2);
    ck_assert_int_eq(w[1].restarts, 0);
    ck_assert_int_eq(w[1].pid, other); /* the other worker was left alone */

    /* Nothing lost, everybody working. */
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) SELECT 'q' FROM generate_series(1, 50)");
    failure_expect_state(conn, sup, "done", 50, 15000);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(DISTINCT task) FROM results"), 50);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

START_TEST(immediate_requeue)
{
    const char *dir = harness_tmpdir();
    /* Attempt 1 hangs (its pid in a file); attempt 2 succeeds at once. */
    struct harness_run *run = failure_run(
        (struct harness_scenario){.workers = "count = 2 lease = 5m restart_delay_min = 100ms",
                                  .script = harness_printf("if [ \"$PGWORK_ATTEMPT\" = 1 ]; then\n"
                                                           "  echo $$ > %s/handler.pid\n"
                                                           "  exec sleep 30\n"
                                                           "fi\n"
                                                           "exit 0",
                                                           dir)});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    int64_t id = harness_query_int64(conn, "SELECT pgwork.enqueue('q', '{}')");
    pid_t handler = harness_read_pid(harness_printf("%s/handler.pid", dir));
    pid_t worker = failure_owner_pid(conn, id);
    const char *first_owner =
        harness_query_text(conn, "SELECT locked_by FROM pgwork.tasks WHERE state = 'running'");

    int64_t killed = harness_now_ms();
    ck_assert_int_eq(kill(worker, SIGKILL), 0);
    /* Requeued at once and run by another worker: seconds, not the 5 min
     * lease. */
    failure_expect_state(conn, sup, "done", 1, 10000);
    int64_t took = harness_now_ms() - killed;
    ck_assert_msg(took < 10000, "done %" PRId64 " ms after the kill", took);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT attempts FROM pgwork.tasks"), 2);
    const char *owner = harness_query_text(conn, "SELECT locked_by FROM pgwork.tasks");
    ck_assert_str_ne(owner, first_owner);
    /* The dead worker's handler did not survive it. */
    ck_assert_msg(harness_wait_pid_gone(handler, 1000), "handler %d outlived its worker",
                  (int)handler);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

/* Issue 4 item 2: "keeping the attempt count so a task that kills its
 * worker every time ends dead". */
START_TEST(task_killing_its_worker_ends_dead)
{
    struct harness_run *run = failure_run((struct harness_scenario){
        .workers = "count = 2 restart_delay_min = 50ms restart_delay_max = 400ms",
        .script = "kill -9 $PPID\nsleep 5", /* the handler's parent is its worker */
        .queue = "max_attempts = 3",
        .tasks = "INSERT INTO pgwork.tasks (queue) VALUES ('q')"});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    if (!harness_wait_until(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = 'dead'", 1,
                            20000)) {
        const char *row =
            harness_query_text(conn, "SELECT state || ' attempts=' || attempts FROM pgwork.tasks");
        harness_stderr_dump(sup);
        ck_abort_msg("a task that kills its worker every time is not dead after 20 s (max_attempts "
                     "= 3): %s",
                     row);
    }
    ck_assert_int_eq(harness_query_int64(conn, "SELECT attempts FROM pgwork.tasks"), 3);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

/* The other side of the same rule: a task that kills its worker must not
 * take the tasks claimed with it (same batch, never started) to `dead`.
 * They were never run: their attempts must not be spent.
 *
 * KNOWN FAILURE when written: the supervisor's requeue by locked_by
 * (listener.c REQUEUE_SQL) keeps `attempts` and applies the max_attempts
 * check to every running row of the dead worker, and the requeued rows are
 * claimed together again (same run_at): all five end dead at attempt 3. */
START_TEST(poison_task_spares_its_batch)
{
    struct harness_run *run = failure_run((struct harness_scenario){
        .workers = "count = 1 restart_delay_min = 50ms restart_delay_max = 200ms",
        .script = "if grep -q poison; then kill -9 $PPID; sleep 5; fi\nexit 0",
        .queue = "batch = 5 max_attempts = 3",
        /* One claim takes all five; the poison runs first (lowest id). */
        .tasks = "INSERT INTO pgwork.tasks (queue, payload) VALUES "
                 "('q', '{\"poison\": true}'), ('q', '{}'), ('q', '{}'), ('q', '{}'), "
                 "('q', '{}')"});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    if (!harness_wait_until(
            conn, "SELECT count(*) FROM pgwork.tasks WHERE state IN ('dead', 'done')", 5, 20000)) {
        harness_stderr_dump(sup);
        ck_abort_msg("not every task finished");
    }
    const char *states = harness_query_text(
        conn, "SELECT string_agg(id || ':' || state || '/' || attempts, ' ' ORDER BY id) "
              "FROM pgwork.tasks");
    ck_assert_msg(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = "
                                            "'dead' AND payload ? 'poison' AND attempts = 3") == 1,
                  "the poison task should be dead after 3 attempts: %s", states);
    ck_assert_msg(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = "
                                            "'done' AND NOT payload ? 'poison'") == 4,
                  "the poison's batch-mates were never run, yet: %s", states);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

START_TEST(crash_loop_backs_off)
{
    struct harness_run *run = harness_run_database(RESULTS_TABLE);
    /* The listener reaches the database, the workers never do. */
    struct harness_supervisor *sup = harness_run_start(
        run, &(struct harness_scenario){
                 .workers = "count = 2 restart_delay_min = 100ms restart_delay_max = 30s",
                 .queue = SQL_RESULTS,
                 .extra = harness_printf("database { listen_conninfo = \"%s\" conninfo = "
                                         "\"host=127.0.0.1 port=1 connect_timeout=2\" }",
                                         run->conninfo),
                 .wait_for = "listening on channel"});
    int64_t cpu_before = failure_cpu_ms(sup->pid);
    int64_t start = harness_now_ms();

    /* Watch it for 3 s: every status request is answered at once. */
    struct harness_worker w[HARNESS_MAX_WORKERS] = {0};
    int64_t slowest = 0;
    while (harness_now_ms() - start < 3000) {
        int64_t asked = harness_now_ms();
        harness_status(sup, w);
        int64_t answered = harness_now_ms() - asked;
        if (answered > slowest)
            slowest = answered;
        usleep(100000);
    }
    int64_t elapsed = harness_now_ms() - start;
    int64_t cpu = failure_cpu_ms(sup->pid) - cpu_before;
    ck_assert_msg(slowest < 1000, "a status request took %" PRId64 " ms", slowest);
    /* Doubling from 100 ms: about 5 restarts per slot in 3 s; a fixed
     * 100 ms delay would give 30. */
    for (int i = 0; i < 2; i++) {
        ck_assert_msg(w[i].restarts >= 2 && w[i].restarts <= 8,
                      "worker %d restarted %lld times in %" PRId64 " ms", i, w[i].restarts,
                      elapsed);
        ck_assert_msg(w[i].failures_in_a_row >= 3, "worker %d: %d failures in a row", i,
                      w[i].failures_in_a_row);
    }
    ck_assert_msg(cpu < elapsed / 3, "the supervisor used %" PRId64 " ms of CPU in %" PRId64 " ms",
                  cpu, elapsed);
    /* Stopping is prompt although slots wait for their restart. */
    int64_t stop = harness_now_ms();
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 10000), 0);
    ck_assert_int_lt(harness_now_ms() - stop, 5000);
}
END_TEST

/* --- listener ------------------------------------------------------------- */

START_TEST(listener_terminated_reconnects)
{
    /* Polling is a minute away: only the reconnect's sweep finds the task. */
    struct harness_run *run =
        failure_run((struct harness_scenario){.workers = "count = 2 poll_interval = 60s "
                                                         "safety_poll_interval = 60s",
                                              .queue = SQL_RESULTS,
                                              .extra = "listener { reconnect_min = 500ms }",
                                              .wait_for = "listening on channel",
                                              .idle = 2});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;

    int64_t old = failure_wait_listener(conn, 0, 5000);
    ck_assert_int_ne(old, 0);
    const char *pid = harness_printf("%" PRId64, old);
    harness_execp(conn, "SELECT pg_terminate_backend($1::int)", 1, (const char *const[]){pid});
    const char *gone_sql =
        harness_printf("SELECT count(*) FROM pg_stat_activity WHERE pid = %" PRId64, old);
    ck_assert(harness_wait_until(conn, gone_sql, 0, 5000));
    /* Synchronise on the supervisor noticing (its blind poll at that
     * moment must not be what finds the task). */
    ck_assert(harness_stderr_wait_for(sup, "listener connection lost", 5000));

    /* Inserted while the listener is away: its notification is lost. */
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('q')");
    failure_expect_state(conn, sup, "done", 1, 10000);
    /* Picked up within reconnect_min + 1 s, on the database's clock. */
    int64_t pickup = harness_query_int64(
        conn, "SELECT (extract(epoch FROM started_at - created_at) * 1000)::bigint "
              "FROM pgwork.tasks");
    ck_assert_msg(pickup <= 1500, "picked up %" PRId64 " ms after the insert (> 500 ms + 1 s)",
                  pickup);
    ck_assert_int_ne(failure_wait_listener(conn, old, 5000), 0);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

START_TEST(keepalive_detects_silent_drop)
{
    struct harness_run *run = harness_run_database(RESULTS_TABLE);
    PGconn *conn = run->conn;
    struct harness_proxy *proxy = harness_proxy_start(harness_pg_socket_path());
    /* The listener goes through the proxy; workers connect directly. */
    struct harness_supervisor *sup = harness_run_start(
        run, &(struct harness_scenario){
                 .workers = "count = 2 poll_interval = 60s safety_poll_interval = 60s",
                 .queue = SQL_RESULTS,
                 .extra = harness_printf("database { listen_conninfo = \"%s\" }\n"
                                         "listener { keepalive_interval = 1s keepalive_timeout = "
                                         "1s reconnect_min = 100ms }",
                                         failure_proxied(proxy, run)),
                 .wait_for = "listening on channel",
                 .idle = 2});
    int64_t old = failure_wait_listener(conn, 0, 5000);
    ck_assert_int_ne(old, 0);

    /* Drop the flow right after a ping came back, so the listener's last
     * traffic is "now": its next ping leaves keepalive_interval later and
     * its check gives up keepalive_timeout after that. Without the check
     * only the generic query deadline (interval + timeout after the ping
     * was sent) would notice, a whole keepalive_timeout later — the bound
     * below tells the two apart. */
    const char *old_param = harness_printf("%" PRId64, old);
    const char *ping_sql = "SELECT coalesce((SELECT query_start::text FROM pg_stat_activity"
                           " WHERE pid = $1::int AND state = 'idle'"
                           " AND query LIKE '%pg_notify(%ping%'), '')";
    const char *first = harness_query_textp(conn, ping_sql, 1, (const char *const[]){old_param});
    int64_t wait_ping = harness_now_ms() + 10000;
    const char *seen;
    do {
        usleep(2000);
        seen = harness_query_textp(conn, ping_sql, 1, (const char *const[]){old_param});
        ck_assert_msg(harness_now_ms() < wait_ping, "no keepalive ping seen within 10 s");
    } while (seen[0] == '\0' || strcmp(seen, first) == 0);

    /* The flow goes silent: no FIN, no RST; the kernel still ACKs. Only
     * the listener's own ping can tell. */
    ck_assert_int_ge(harness_proxy_blackhole(proxy), 1);
    int64_t dropped = harness_now_ms();
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('q')");

    /* Detected keepalive_interval + keepalive_timeout (2 s) after the last
     * ping, then a reconnect after reconnect_min (+25 % jitter); 500 ms
     * for the connect and a loaded machine. Without the ping check it
     * takes 3 s + the reconnect. */
    int64_t fresh = failure_wait_listener(conn, old, 10000);
    int64_t took = harness_now_ms() - dropped;
    if (fresh == 0) {
        harness_stderr_dump(sup);
        ck_abort_msg("no new listener connection 10 s after the drop");
    }
    fprintf(stderr, "keepalive_detects_silent_drop: new listener %" PRId64 " ms after the drop\n",
            took);
    if (took > 2000 + 125 + 500) {
        harness_stderr_dump(sup);
        ck_abort_msg("new listener backend %" PRId64
                     " ms after the drop (> 1 s interval + 1 s timeout + 125 ms + 500 ms)",
                     took);
    }
    /* The reconnect swept the queue: the task announced into the black
     * hole runs. */
    failure_expect_state(conn, sup, "done", 1, 5000);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

/* Issue 4 item 5: "a worker behind a black-holed connection recovers"
 * (libpq keepalives / tcp_user_timeout / a statement deadline). Through a
 * loopback proxy the kernel keeps ACKing, so only a client-side deadline
 * on the worker's queries can notice — as with a PgBouncer or HAProxy whose
 * upstream vanished, or a hung backend.
 *
 * KNOWN FAILURE when written: the worker blocks for ever in poll(-1) inside
 * libpq (PQexec "BEGIN" from worker_claim_in_transaction); TCP keepalives
 * and tcp_user_timeout never fire because every byte is ACKed. */
START_TEST(worker_blackholed_connection_recovers)
{
    struct harness_run *run = harness_run_database(RESULTS_TABLE);
    PGconn *conn = run->conn;
    struct harness_proxy *proxy = harness_proxy_start(harness_pg_socket_path());
    struct harness_supervisor *sup = harness_run_start(
        run, &(struct harness_scenario){
                 .workers = "count = 1 restart_delay_min = 100ms",
                 .queue = SQL_RESULTS,
                 .extra = harness_printf("database { conninfo = \"%s\" listen_conninfo = \"%s\" }\n"
                                         "listener { keepalive_interval = 1s "
                                         "keepalive_timeout = 1s }",
                                         failure_proxied(proxy, run), run->conninfo),
                 .wait_for = "listening on channel",
                 .idle = 1});

    /* The worker's connection is the one going through the proxy. */
    ck_assert_int_ge(harness_proxy_blackhole(proxy), 1);
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('q')");
    /* The worker's claim disappears into the black hole; it must give up
     * on that connection and reconnect (new flows pass). */
    failure_expect_state(conn, sup, "done", 1, 30000);
    /* Its process may be stuck: no assertion on how shutdown goes. */
    harness_stop_supervisor(sup, SIGKILL, 5000);
}
END_TEST

/* --- the database goes away ----------------------------------------------- */

START_TEST(postgres_restart_under_load)
{
    /* About 3 ms per task: the restart lands in the middle of the run. */
    struct harness_run *run = failure_run((struct harness_scenario){
        .workers = "count = 3 restart_delay_min = 100ms restart_delay_max = 2s",
        .queue = "handler = \"sql\" statement = \"INSERT INTO results(task) SELECT $2 FROM "
                 "pg_sleep(0.003)\" batch = 10",
        .extra = "listener { reconnect_min = 200ms reconnect_max = 2s }",
        .wait_for = "listening on channel",
        .tasks = "INSERT INTO pgwork.tasks (queue, payload) "
                 "SELECT 'q', jsonb_build_object('n', g) FROM generate_series(1, 3000) g"});
    const char *conninfo = run->conninfo;
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    ck_assert(harness_wait_until(
        conn, "SELECT (count(*) >= 200)::int FROM pgwork.tasks WHERE state = 'done'", 1, 30000));

    int64_t done_before = failure_count(conn, "done");
    int64_t restart_ms = harness_pg_restart("fast");
    int64_t back = harness_now_ms();
    conn = harness_connect(conninfo); /* the old one died with the server */
    failure_expect_state(conn, sup, "done", 3000, 45000);
    int64_t recovery = harness_now_ms() - back;
    fprintf(stderr,
            "postgres_restart_under_load: %" PRId64 " of 3000 done before; pg_ctl restart "
            "took %" PRId64 " ms; all done %" PRId64 " ms later\n",
            done_before, restart_ms, recovery);

    ck_assert_int_eq(failure_count(conn, "running"), 0);
    ck_assert_int_eq(failure_count(conn, "pending"), 0);
    /* The sql handler's effect commits with `done`: exactly once. */
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(DISTINCT task) FROM results"), 3000);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM results"), 3000);
    /* The listener is back too: a new task is announced, not polled. */
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('q')");
    failure_expect_state(conn, sup, "done", 3001, 5000);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

/* --- whole pods die ------------------------------------------------------- */

START_TEST(lease_expiry_requeues_dead_pod)
{
    const char *dir = harness_tmpdir();
    struct harness_run *run = failure_run((struct harness_scenario){
        .workers = "count = 2 lease = 2s poll_interval = 1s safety_poll_interval = 1s "
                   "restart_delay_min = 100ms",
        .script = harness_printf("if [ \"$PGWORK_ATTEMPT\" = 1 ]; then\n"
                                 "  touch %s/started.$PGWORK_TASK_ID\n"
                                 "  exec sleep 60\n"
                                 "fi\n"
                                 "exit 0",
                                 dir),
        /* timeout 3s: if the lease is sized from the queue's timeout, it
         * stays short enough for a test. */
        .queue = "timeout = 3s batch = 1",
        .spawn = &(struct harness_spawn_opts){.own_process_group = true},
        .tasks = "INSERT INTO pgwork.tasks (queue) VALUES ('q'), ('q')"});
    PGconn *conn = run->conn;
    struct harness_supervisor *pod_a = run->sup;
    failure_expect_state(conn, pod_a, "running", 2, 15000);
    ck_assert(harness_wait_file(harness_printf("%s/started.1", dir), 15000));
    ck_assert(harness_wait_file(harness_printf("%s/started.2", dir), 15000));

    /* The whole pod at once: supervisor and workers share a process group,
     * so no worker gets to release its task. */
    /* Each task's own lease end: the second pod takes each back when its
     * lease runs out (a timer at the earliest one), not all at the last. */
    harness_exec(conn, "CREATE TABLE lease_end AS SELECT id, locked_until FROM pgwork.tasks "
                       "WHERE state = 'running'");
    ck_assert_int_eq(kill(-pod_a->pid, SIGKILL), 0);
    harness_stop_supervisor(pod_a, 0, 5000);
    ck_assert_int_eq(failure_count(conn, "running"), 2);

    /* Another pod on the same database takes over once the leases end. */
    struct harness_supervisor *pod_b = harness_spawn_supervisor(run->config, run->conninfo);
    failure_expect_state(conn, pod_b, "done", 2, 30000);
    ck_assert_int_eq(
        harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks WHERE attempts = 2"), 2);
    /* Not before its lease ended. */
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks t JOIN lease_end "
                                               "l USING (id) WHERE t.started_at < l.locked_until"),
                     0);
    ck_assert_int_eq(harness_stop_supervisor(pod_b, SIGTERM, 20000), 0);
}
END_TEST

START_TEST(parent_death_takes_workers_and_handlers)
{
    const char *dir = harness_tmpdir();
    struct harness_run *run = failure_run((struct harness_scenario){
        .workers = "count = 2",
        .script = harness_printf("echo $$ > %s/handler.$PGWORK_TASK_ID\nexec sleep 60", dir),
        .queue = "batch = 1",
        .tasks = "INSERT INTO pgwork.tasks (queue) VALUES ('q'), ('q')"});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    pid_t pids[4];
    pids[0] = harness_read_pid(harness_printf("%s/handler.1", dir));
    pids[1] = harness_read_pid(harness_printf("%s/handler.2", dir));
    pids[2] = failure_owner_pid(conn, 1);
    pids[3] = failure_owner_pid(conn, 2);
    ck_assert_int_ne(pids[2], pids[3]);

    int64_t killed = harness_now_ms();
    ck_assert_int_eq(kill(sup->pid, SIGKILL), 0);
    for (int i = 0; i < 4; i++) {
        int64_t left = killed + 1000 - harness_now_ms();
        ck_assert_msg(harness_wait_pid_gone(pids[i], left > 0 ? (int)left : 0),
                      "%s %d still alive 1 s after the supervisor was killed",
                      i < 2 ? "handler" : "worker", (int)pids[i]);
    }
    harness_stop_supervisor(sup, 0, 5000);
    /* The workers released their tasks on the way out: no lease to wait
     * for. */
    failure_expect_state(conn, NULL, "running", 0, 5000);
}
END_TEST

/* The same while the worker is inside a database call (a long sql handler
 * statement): it must not wait for the statement to end.
 *
 * KNOWN FAILURE when written: the worker's PR_SET_PDEATHSIG is SIGQUIT,
 * which it keeps blocked for its signalfd; inside a blocking libpq call
 * nobody reads the signalfd or the death pipe, so it lives (holding its
 * row locks) until the statement returns. */
START_TEST(parent_death_during_sql_statement)
{
    struct harness_run *run = failure_run(
        (struct harness_scenario){.workers = "count = 1",
                                  .queue = "handler = \"sql\" statement = \"SELECT pg_sleep(30)\"",
                                  .idle = 1});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    pid_t worker = run->w[0].pid;
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('q')");
    ck_assert(harness_wait_until(conn,
                                 "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                 "current_database() AND state = 'active' "
                                 "AND query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()",
                                 1, 10000));

    int64_t killed = harness_now_ms();
    ck_assert_int_eq(kill(sup->pid, SIGKILL), 0);
    bool gone = harness_wait_pid_gone(worker, 1000);
    int64_t took = harness_now_ms() - killed;
    if (!gone)
        kill(worker, SIGKILL); /* do not leave it behind */
    ck_assert_msg(gone, "worker %d still alive %" PRId64 " ms after the supervisor was killed",
                  (int)worker, took);
    harness_stop_supervisor(sup, 0, 5000);
}
END_TEST

/* --- shutdown ------------------------------------------------------------- */

START_TEST(sigterm_under_load)
{
    const char *dir = harness_tmpdir();
    struct harness_run *run = harness_run_database(RESULTS_TABLE);
    PGconn *conn = run->conn;
    harness_exec(conn, "CREATE TABLE started (task bigint)");
    /* Each run records that it started (in its own files) and takes 0.5 s. */
    struct harness_supervisor *sup = harness_run_start(
        run,
        &(struct harness_scenario){
            .workers = "count = 3 shutdown_timeout = 10s",
            .script = harness_printf("touch %s/started.$PGWORK_TASK_ID\n"
                                     "sleep 0.5\n"
                                     "touch %s/finished.$PGWORK_TASK_ID",
                                     dir, dir),
            .queue = "batch = 4",
            .tasks = "INSERT INTO pgwork.tasks (queue) SELECT 'q' FROM generate_series(1, 60)"});
    ck_assert(harness_wait_until(
        conn, "SELECT (count(*) >= 4)::int FROM pgwork.tasks WHERE state = 'done'", 1, 20000));

    int64_t asked = harness_now_ms();
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 15000), 0);
    int64_t took = harness_now_ms() - asked;
    ck_assert_msg(took < 10000, "exit took %" PRId64 " ms (shutdown_timeout 10 s)", took);

    ck_assert_int_eq(failure_count(conn, "running"), 0);
    ck_assert_int_eq(failure_count(conn, "dead"), 0);
    ck_assert_int_eq(failure_count(conn, "done") + failure_count(conn, "pending"), 60);
    /* Claimed but never started: released untried. */
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks "
                                               "WHERE state = 'pending' AND attempts <> 0"),
                     0);
    /* Every task whose handler started ran to completion and is done. */
    PGresult *res = PQexec(conn, "SELECT id, state FROM pgwork.tasks ORDER BY id");
    ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
    for (int i = 0; i < PQntuples(res); i++) {
        const char *id = PQgetvalue(res, i, 0), *state = PQgetvalue(res, i, 1);
        bool started = access(harness_printf("%s/started.%s", dir, id), F_OK) == 0;
        bool finished = access(harness_printf("%s/finished.%s", dir, id), F_OK) == 0;
        ck_assert_msg(started == finished, "task %s: handler started but did not finish", id);
        ck_assert_msg(started == (strcmp(state, "done") == 0), "task %s ran=%d but is %s", id,
                      started, state);
    }
    PQclear(res);
}
END_TEST

START_TEST(sigterm_kills_stubborn_handler)
{
    const char *dir = harness_tmpdir();
    /* Ignores SIGTERM, and so does its sleep (an ignored disposition
     * survives exec). */
    struct harness_run *run = failure_run((struct harness_scenario){
        .workers = "count = 1 shutdown_timeout = 1s",
        .script = harness_printf("trap '' TERM\necho $$ > %s/handler.pid\nsleep 30", dir),
        .tasks = "INSERT INTO pgwork.tasks (queue) VALUES ('q')"});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    pid_t handler = harness_read_pid(harness_printf("%s/handler.pid", dir));

    int64_t asked = harness_now_ms();
    int status = harness_stop_supervisor(sup, SIGTERM, 15000);
    int64_t took = harness_now_ms() - asked;
    if (status != 0)
        harness_stderr_dump(sup);
    ck_assert_msg(status == 0, "exit status 0x%x after %" PRId64 " ms", (unsigned)status, took);
    /* shutdown_timeout, then the abort's TERM -> KILL grace: seconds. */
    ck_assert_msg(took < 8000, "exit took %" PRId64 " ms", took);
    ck_assert_msg(!harness_pid_alive(handler), "the stubborn handler %d survived", (int)handler);
    ck_assert_int_eq(failure_count(conn, "pending"), 1);
}
END_TEST

START_TEST(sigquit_requeues)
{
    const char *dir = harness_tmpdir();
    struct harness_run *run = failure_run((struct harness_scenario){
        .workers = "count = 2 shutdown_timeout = 30s",
        .script = harness_printf("echo $$ > %s/handler.$PGWORK_TASK_ID\nexec sleep 30", dir),
        .queue = "batch = 1",
        .tasks = "INSERT INTO pgwork.tasks (queue) VALUES ('q'), ('q')"});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    pid_t h1 = harness_read_pid(harness_printf("%s/handler.1", dir));
    pid_t h2 = harness_read_pid(harness_printf("%s/handler.2", dir));

    int64_t asked = harness_now_ms();
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGQUIT, 10000), 0);
    int64_t took = harness_now_ms() - asked;
    ck_assert_msg(took < 5000, "fast shutdown took %" PRId64 " ms", took);
    ck_assert_int_eq(failure_count(conn, "pending"), 2);
    ck_assert(!harness_pid_alive(h1) && !harness_pid_alive(h2));
}
END_TEST

/* --- PID 1 ---------------------------------------------------------------- */

struct failure_tree {
    int processes; /* descendants of the root, the root included */
    int zombies;   /* of which in state Z */
};

/* Walk /proc: every process descending from root (by PPid). */
static struct failure_tree failure_descendants(pid_t root)
{
    enum { MAX = 32768 };
    static pid_t pids[MAX], parents[MAX];
    static char states[MAX];
    int n = 0;
    DIR *d = opendir("/proc");
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < MAX) {
        pid_t pid = (pid_t)atoi(e->d_name);
        if (pid <= 0)
            continue;
        char state = '?';
        pid_t ppid = harness_parent_of(pid, &state);
        if (ppid == 0 && pid != root)
            continue;
        pids[n] = pid;
        parents[n] = ppid;
        states[n] = state;
        n++;
    }
    closedir(d);
    struct failure_tree tree = {0};
    for (int i = 0; i < n; i++) {
        /* Climb to the root (or to the top). */
        pid_t p = pids[i];
        for (int depth = 0; depth < 64 && p != root && p > 1; depth++) {
            pid_t up = 0;
            for (int j = 0; j < n; j++) {
                if (pids[j] == p) {
                    up = parents[j];
                    break;
                }
            }
            p = up;
        }
        if (p == root) {
            tree.processes++;
            tree.zombies += states[i] == 'Z';
        }
    }
    return tree;
}

START_TEST(pid1_reaps_orphans)
{
    if (geteuid() != 0) {
        harness_skip("pid1_reaps_orphans", "needs root (unshare --pid)");
        return;
    }
    const char *const probe[] = {"unshare", "--pid", "--fork", "--mount-proc", "true", NULL};
    pid_t pp = fork();
    ck_assert_int_ge(pp, 0);
    if (pp == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, STDERR_FILENO);
        execvp(probe[0], (char *const *)probe);
        _exit(127);
    }
    int probe_status;
    ck_assert_int_eq(waitpid(pp, &probe_status, 0), pp);
    if (!WIFEXITED(probe_status) || WEXITSTATUS(probe_status) != 0) {
        harness_skip("pid1_reaps_orphans", "unshare --pid --fork --mount-proc does not work here");
        return;
    }

    const char *const wrapper[] = {"unshare",      "--pid",        "--fork",
                                   "--mount-proc", "--kill-child", NULL};
    /* Two kinds of orphans: a grandchild in its own session that exits 1 s
     * after the handler (outside the handler's process group, so nobody
     * kills it), and one left in the group (killed with the group when
     * the handler exits). Both end up children of PID 1. */
    struct harness_run *run = failure_run(
        (struct harness_scenario){.workers = "count = 2",
                                  .script = "setsid sh -c 'sleep 1' </dev/null >/dev/null 2>&1 &\n"
                                            "( sleep 30 </dev/null >/dev/null 2>&1 & )\n"
                                            "exit 0",
                                  .spawn = &(struct harness_spawn_opts){.wrapper = wrapper}});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    pid_t init = harness_child_of(sup->pid, 5000); /* the PID 1 under unshare */

    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) SELECT 'q' FROM generate_series(1, 5)");
    failure_expect_state(conn, sup, "done", 5, 20000);

    /* Eventually: PID 1 and its two workers, nothing else, no zombie. */
    struct failure_tree tree;
    int64_t deadline = harness_now_ms() + 10000;
    for (;;) {
        tree = failure_descendants(init);
        if ((tree.zombies == 0 && tree.processes == 3) || harness_now_ms() > deadline)
            break;
        usleep(20000);
    }
    if (tree.zombies != 0 || tree.processes != 3)
        harness_stderr_dump(sup);
    ck_assert_msg(tree.zombies == 0, "%d zombie(s) in the PID namespace", tree.zombies);
    ck_assert_msg(tree.processes == 3, "%d processes in the PID namespace (want 3)",
                  tree.processes);

    /* SIGTERM reaches PID 1 (it has no handler, but reads the signal
     * through a signalfd: a blocked signal is not discarded). */
    ck_assert_int_eq(kill(init, SIGTERM), 0);
    ck_assert_int_eq(harness_stop_supervisor(sup, 0, 20000), 0);
}
END_TEST

/* --- hostile input -------------------------------------------------------- */

START_TEST(hostile_queue_names)
{
    struct harness_run *run = harness_run_database(RESULTS_TABLE);
    PGconn *conn = run->conn;
    const char *conninfo = run->conninfo;
    /* 990 ASCII + 10 two-byte characters: 1,000 characters, 1,010 bytes. */
    char long_name[1100];
    memset(long_name, 'n', 990);
    long_name[990] = '\0';
    for (int i = 0; i < 10; i++)
        strcat(long_name, "\xc3\xa9");
    const char *names[] = {
        "it's",
        "with space and \"double quotes\"",
        "back\\slash",
        "\xc3\x9cn\xc3\xaf"
        "c\xc3\xb6"
        "d\xc3\xa9 \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac "
        "\xf0\x9f\x9a\x80",
        "'; DROP TABLE results; --",
        "$1 %s %n {}",
        long_name,
    };
    int count = (int)(sizeof(names) / sizeof(names[0]));

    /* In the file: a libconfuse string, \" and \\ escaped. */
    char *queues = NULL;
    size_t queues_len = 0;
    FILE *f = open_memstream(&queues, &queues_len);
    for (int i = 0; i < count; i++) {
        fputs("queue \"", f);
        for (const char *c = names[i]; *c; c++) {
            if (*c == '"' || *c == '\\')
                fputc('\\', f);
            fputc(*c, f);
        }
        fputs("\" {" SQL_RESULTS "}\n", f);
    }
    fclose(f);
    const char *config = harness_scenario_config(
        &(struct harness_scenario){.workers = "count = 2", .queues = harness_printf("%s", queues)});
    free(queues);

    const char *out = NULL, *err = NULL;
    int rc = harness_pgwork(conninfo, NULL, &out, &err,
                            (const char *const[]){"-c", config, "check-config", NULL});
    ck_assert_msg(rc == 0, "check-config exited %d: %s", rc, err);

    struct harness_supervisor *sup = harness_spawn_supervisor(config, conninfo);
    ck_assert(harness_stderr_wait_for(sup, "listening on channel", 15000));
    for (int i = 0; i < count; i++) {
        /* From SQL, with the name as a parameter ... */
        harness_execp(conn, "SELECT pgwork.enqueue($1, '{}')", 1, (const char *const[]){names[i]});
        /* ... and from the command line. */
        rc = harness_pgwork(conninfo, NULL, &out, &err,
                            (const char *const[]){"enqueue", names[i], "{\"x\": 1}", NULL});
        ck_assert_msg(rc == 0, "pgwork enqueue '%.40s' exited %d: %s", names[i], rc, err);
    }
    failure_expect_state(conn, sup, "done", 2 * count, 20000);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT count(*) FROM results"), 2 * count);
    for (int i = 0; i < count; i++)
        ck_assert_int_eq(harness_query_int64p(conn,
                                              "SELECT count(*) FROM pgwork.tasks "
                                              "WHERE queue = $1 AND state = 'done'",
                                              1, (const char *const[]){names[i]}),
                         2);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

START_TEST(big_payload_intact)
{
    const char *dir = harness_tmpdir();
    struct harness_run *run = failure_run((struct harness_scenario){
        .workers = "count = 1",
        .script = harness_printf("sha256sum | cut -c1-64 > %s/sum.$PGWORK_TASK_ID", dir)});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    /* About 10.5 MB of varied text. */
    int64_t id = harness_query_int64(
        conn, "INSERT INTO pgwork.tasks (queue, payload) SELECT 'q', jsonb_build_object('blob', "
              "(SELECT string_agg(md5(g::text), '') FROM generate_series(1, 330000) g)) "
              "RETURNING id");
    failure_expect_state(conn, sup, "done", 1, 30000);
    ck_assert_int_ge(harness_query_int64(conn, "SELECT octet_length(payload::text) FROM "
                                               "pgwork.tasks"),
                     10 * 1000 * 1000);
    const char *want = harness_query_text(
        conn, "SELECT encode(sha256(convert_to(payload::text, 'UTF8')), 'hex') FROM pgwork.tasks");
    const char *got = harness_read_line(harness_printf("%s/sum.%" PRId64, dir, id));
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got, want);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

START_TEST(huge_handler_output)
{
    /* 100 MB of text, success; 100 MB of random bytes (NULs, invalid
     * UTF-8), failure. */
    const char *loud =
        harness_write_script("loud.sh", "head -c 100000000 /dev/zero | tr '\\000' x");
    const char *noise = harness_write_script("noise.sh", "head -c 100000000 /dev/urandom\nexit 1");
    struct harness_run *run = failure_run((struct harness_scenario){
        .workers = "count = 2",
        .queues = harness_printf("queue \"loud\" { command = {\"%s\"} }\n"
                                 "queue \"noise\" { command = {\"%s\"} max_attempts = 1 }",
                                 loud, noise),
        .tasks = "INSERT INTO pgwork.tasks (queue) VALUES ('loud'), ('noise')"});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    if (!harness_wait_until(conn,
                            "SELECT count(*) FROM pgwork.tasks WHERE (queue, state) IN "
                            "(('loud', 'done'), ('noise', 'dead'))",
                            2, 40000)) {
        harness_stderr_dump(sup);
        ck_abort_msg("loud not done / noise not dead: %s",
                     harness_query_text(conn, "SELECT string_agg(queue || '=' || state, ' ') "
                                              "FROM pgwork.tasks"));
    }
    /* The tail of the output is kept, bounded. */
    ck_assert_int_le(harness_query_int64(conn, "SELECT octet_length(last_error) FROM "
                                               "pgwork.tasks WHERE queue = 'noise'"),
                     16384);
    ck_assert_int_gt(harness_query_int64(conn, "SELECT octet_length(last_error) FROM "
                                               "pgwork.tasks WHERE queue = 'noise'"),
                     0);
    /* Nobody crashed. */
    struct harness_worker w[HARNESS_MAX_WORKERS];
    harness_wait_idle(sup, 2, w);
    ck_assert_int_eq(w[0].restarts + w[1].restarts, 0);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

/* DESIGN §6 "handler hangs": the queue's timeout kills the whole process
 * group (a grandchild too), the task is retried, then dead. */
START_TEST(handler_hang_times_out)
{
    const char *dir = harness_tmpdir();
    struct harness_run *run = failure_run((struct harness_scenario){
        .workers = "count = 1",
        .script = harness_printf("sleep 30 &\necho $! > %s/child.$PGWORK_ATTEMPT\nsleep 30", dir),
        .queue = "timeout = 300ms max_attempts = 2 backoff_base = 50ms backoff_max = 50ms",
        .tasks = "INSERT INTO pgwork.tasks (queue) VALUES ('q')"});
    PGconn *conn = run->conn;
    struct harness_supervisor *sup = run->sup;
    failure_expect_state(conn, sup, "dead", 1, 15000);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT attempts FROM pgwork.tasks"), 2);
    for (int attempt = 1; attempt <= 2; attempt++) {
        pid_t child = harness_read_pid(harness_printf("%s/child.%d", dir, attempt));
        ck_assert_msg(harness_wait_pid_gone(child, 3000),
                      "attempt %d: the handler's background child %d survived the timeout", attempt,
                      (int)child);
    }
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
}
END_TEST

START_TEST(random_config_rejected)
{
    /* xorshift: the same "random" files every run. */
    uint64_t x = 0x9e3779b97f4a7c15ull;
    static const char *const tokens[] = {
        "queue",    "workers",
        "listener", "database",
        "{",        "}",
        "=",        "\"",
        "'",        ",",
        "(",        ")",
        "count",    "lease",
        "5s",       "-1",
        "#",        "/*",
        "*/",       "\n",
        " ",        "\\",
        "handler",  "\"sql\"",
        "command",  "{\"a\"}",
        "1e99",     "ms",
        "h",        "\xff",
        "\xc3",     "%s",
        "//",       "include(\"x\")",
    };
    for (int i = 0; i < 40; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t len = 1 + x % 4096;
        char *buf = malloc(len + 64);
        ck_assert_ptr_nonnull(buf);
        size_t used = 0;
        while (used < len) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            if (i % 2 == 0) { /* raw bytes */
                buf[used++] = (char)(x >> 24);
            } else { /* config-like token soup */
                const char *t = tokens[x % (sizeof(tokens) / sizeof(tokens[0]))];
                size_t tl = strlen(t);
                memcpy(buf + used, t, tl);
                used += tl;
            }
        }
        const char *path = harness_printf("%s/random-%d.conf", harness_tmpdir(), i);
        FILE *f = fopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fwrite(buf, 1, used, f), used);
        ck_assert_int_eq(fclose(f), 0);
        free(buf);

        const char *out = NULL, *err = NULL;
        int rc = harness_pgwork(NULL, NULL, &out, &err,
                                (const char *const[]){"-c", path, "check-config", NULL});
        ck_assert_msg(rc == 3, "%s: check-config exited %d (want 3): %s%s", path, rc, out, err);
        ck_assert_msg(strstr(err, path) != NULL, "%s: the message does not name the file: %s", path,
                      err);
        ck_assert_msg(strstr(err, "AddressSanitizer") == NULL &&
                          strstr(err, "runtime error") == NULL &&
                          strstr(err, "LeakSanitizer") == NULL,
                      "%s: sanitizer report: %s", path, err);
    }
}
END_TEST

START_TEST(password_never_logged)
{
    PGconn *conn;
    const char *conninfo = harness_db_migrated(&conn, NULL, RESULTS_TABLE);
    /* Trust authentication ignores the password: the connection works and
     * every path that could echo the conninfo runs. */
    const char *secret_conninfo = harness_printf("%s password=SECRETXYZ", conninfo);
    const char *config = harness_write_config("workers { count = 1 }\n"
                                              "log { level = \"debug\" format = \"text\" }\n"
                                              "http { listen = \"\" }\n"
                                              "queue \"q\" {" SQL_RESULTS "}\n");
    struct harness_supervisor *sup = harness_spawn_supervisor(config, secret_conninfo);
    ck_assert(harness_stderr_wait_for(sup, "listening on channel", 15000));
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('q')");
    failure_expect_state(conn, sup, "done", 1, 10000);
    harness_status_text(sup);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
    ck_assert_msg(strstr(harness_stderr_text(sup), "SECRETXYZ") == NULL,
                  "the password appears in the supervisor's output");

    /* The failure paths: nothing listens on port 1. Key/value and URL. */
    const char *bad_kv = "host=127.0.0.1 port=1 user=pgwork password=SECRETXYZ connect_timeout=2";
    const char *bad_url = "postgresql://pgwork:SECRETXYZ@127.0.0.1:1/postgres?connect_timeout=2";
    const char *bad_config =
        harness_write_config(harness_printf("workers { count = 1 restart_delay_min = 100ms }\n"
                                            "log { level = \"debug\" format = \"text\" }\n"
                                            "http { listen = \"\" }\n"
                                            "database { conninfo = \"%s\" }\n"
                                            "queue \"q\" {" SQL_RESULTS "}\n",
                                            bad_kv));
    struct harness_supervisor *bad = harness_spawn_supervisor(bad_config, NULL);
    struct harness_worker w[HARNESS_MAX_WORKERS];
    int64_t deadline = harness_now_ms() + 15000;
    do {
        harness_status(bad, w);
        ck_assert(harness_now_ms() < deadline);
        usleep(50000);
    } while (w[0].restarts < 2);
    ck_assert_int_eq(harness_stop_supervisor(bad, SIGTERM, 20000), 0);
    const char *text = harness_stderr_text(bad);
    ck_assert_msg(strstr(text, "SECRETXYZ") == NULL, "the password appears in: %s", text);

    const char *targets[] = {bad_kv, bad_url};
    for (int i = 0; i < 2; i++) {
        const char *out = NULL, *err = NULL;
        int rc = harness_pgwork(targets[i], NULL, &out, &err,
                                (const char *const[]){"enqueue", "q", "{}", NULL});
        ck_assert_int_eq(rc, 1);
        ck_assert_msg(err[0] != '\0', "enqueue failed silently");
        ck_assert_msg(strstr(out, "SECRETXYZ") == NULL && strstr(err, "SECRETXYZ") == NULL,
                      "enqueue printed the password: %s", err);
        rc = harness_pgwork(targets[i], NULL, &out, &err, (const char *const[]){"migrate", NULL});
        ck_assert_int_eq(rc, 1);
        ck_assert_msg(strstr(out, "SECRETXYZ") == NULL && strstr(err, "SECRETXYZ") == NULL,
                      "migrate printed the password: %s", err);
    }
}
END_TEST

/* A task that runs longer than the lease keeps it while its worker lives:
 * another pod polling every 500 ms never takes it back. */
START_TEST(long_task_keeps_its_lease)
{
    const char *runs = harness_printf("%s/runs", harness_tmpdir());
    struct harness_run *run = failure_run((struct harness_scenario){
        .workers = "count = 1 lease = 1500ms safety_poll_interval = 500ms",
        .queue = harness_printf("handler = \"exec\" command = {\"/bin/sh\", \"-c\", "
                                "\"echo run >> %s; sleep 4\"} timeout = 30s",
                                runs),
        .wait_for = "listening on channel",
        .tasks = "INSERT INTO pgwork.tasks (queue) VALUES ('q')"});
    PGconn *conn = run->conn;
    struct harness_supervisor *a = run->sup;
    ck_assert(harness_wait_until(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = 'running'",
                                 1, 10000));
    /* The other pod: the same config. */
    struct harness_supervisor *b = harness_spawn_supervisor(run->config, run->conninfo);
    ck_assert(harness_stderr_wait_for(b, "listening on channel", 15000));
    failure_expect_state(conn, a, "done", 1, 20000);
    ck_assert_int_eq(harness_query_int64(conn, "SELECT attempts FROM pgwork.tasks"), 1);
    FILE *f = fopen(runs, "r");
    ck_assert_ptr_nonnull(f);
    int lines = 0, c;
    while ((c = fgetc(f)) != EOF)
        lines += c == '\n';
    fclose(f);
    ck_assert_int_eq(lines, 1);
    ck_assert_ptr_null(strstr(harness_stderr_text(b), "lease expired"));
    ck_assert_int_eq(harness_stop_supervisor(b, SIGTERM, 20000), 0);
    ck_assert_int_eq(harness_stop_supervisor(a, SIGTERM, 20000), 0);
}
END_TEST

Suite *failure_suite(void)
{
    Suite *s = suite_create("failure");
    TCase *tc = harness_tcase("restarts");
    tcase_add_test(tc, worker_restart_backoff);
    tcase_add_test(tc, immediate_requeue);
    tcase_add_test(tc, task_killing_its_worker_ends_dead);
    tcase_add_test(tc, poison_task_spares_its_batch);
    tcase_add_test(tc, crash_loop_backs_off);
    suite_add_tcase(s, tc);

    tc = harness_tcase("connections");
    tcase_add_test(tc, listener_terminated_reconnects);
    tcase_add_test(tc, keepalive_detects_silent_drop);
    tcase_add_test(tc, worker_blackholed_connection_recovers);
    tcase_add_test(tc, postgres_restart_under_load);
    suite_add_tcase(s, tc);

    tc = harness_tcase("pods");
    tcase_add_test(tc, lease_expiry_requeues_dead_pod);
    tcase_add_test(tc, long_task_keeps_its_lease);
    tcase_add_test(tc, parent_death_takes_workers_and_handlers);
    tcase_add_test(tc, parent_death_during_sql_statement);
    tcase_add_test(tc, pid1_reaps_orphans);
    suite_add_tcase(s, tc);

    tc = harness_tcase("shutdown");
    tcase_add_test(tc, sigterm_under_load);
    tcase_add_test(tc, sigterm_kills_stubborn_handler);
    tcase_add_test(tc, sigquit_requeues);
    suite_add_tcase(s, tc);

    tc = harness_tcase("hostile");
    tcase_add_test(tc, hostile_queue_names);
    tcase_add_test(tc, big_payload_intact);
    tcase_add_test(tc, huge_handler_output);
    tcase_add_test(tc, handler_hang_times_out);
    tcase_add_test(tc, random_config_rejected);
    tcase_add_test(tc, password_never_logged);
    suite_add_tcase(s, tc);
    return s;
}
