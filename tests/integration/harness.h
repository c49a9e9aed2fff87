/*
 * harness.h — helpers for the integration tests: a real PostgreSQL (the
 * cluster tests/run.sh starts; PGHOST etc. in the environment), the real
 * pgwork binary ($PGWORK_BIN), Check for assertions.
 *
 * Every test gets its own database (harness_db_create) and its own temp
 * directory; harness_teardown() — installed by harness_tcase() as a checked
 * fixture — stops supervisors still running, closes connections, drops the
 * test's databases and removes its files. A test that fails stops at the
 * failed assertion (Check _exit()s the forked test process) and skips the
 * teardown: supervisors then die with the test process (PR_SET_PDEATHSIG)
 * and harness_drop_all_databases(), called by main after the run, drops the
 * databases left behind.
 *
 * Memory handed out by the harness (strings, structs) is owned by it and
 * freed at teardown: tests free nothing but the PGresults they make
 * themselves. Synchronisation waits for an event (a query result, a log
 * line, a notification, a process exit) with a deadline; never a bare sleep.
 */
#ifndef PGWORK_TEST_HARNESS_H
#define PGWORK_TEST_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <check.h>
#include <libpq-fe.h>

/* Buffer size for a database name from harness_db_create(). */
#define HARNESS_NAME_MAX 64

/* Per-test timeout (seconds) set by harness_tcase(); scaled by Check's
 * CK_TIMEOUT_MULTIPLIER (tests/run.sh raises it for sanitizer builds). */
#define HARNESS_TCASE_TIMEOUT 60

/* A test case with the harness fixture and the timeout above. */
TCase *harness_tcase(const char *name);

/* The fixture itself, for suites that build their TCase by hand. */
void harness_setup(void);
void harness_teardown(void);

/* Called by main after every suite ran: drop every t_* database. */
void harness_drop_all_databases(void);

/* --- databases ------------------------------------------------------------ */

/* Create a fresh, empty database t_<pid>_<n>; its name goes into name_out
 * (HARNESS_NAME_MAX bytes, may be NULL). Returns a self-contained conninfo
 * for it (host/port/user from the environment, dbname). Dropped (WITH
 * (FORCE)) at teardown. */
const char *harness_db_create(char *name_out);

/* Connect or ck_abort with libpq's message. Closed at teardown (or earlier
 * with harness_disconnect). */
PGconn *harness_connect(const char *conninfo);
void harness_disconnect(PGconn *conn);

/* Run SQL that returns no rows (or rows nobody reads); ck_abort on error. */
void harness_exec(PGconn *conn, const char *sql);

/* The same with $1..$n text parameters (values may be NULL). */
void harness_execp(PGconn *conn, const char *sql, int nparams, const char *const *params);

/* One row, one column, not NULL, an integer; ck_abort otherwise. */
int64_t harness_query_int64(PGconn *conn, const char *sql);
int64_t harness_query_int64p(PGconn *conn, const char *sql, int nparams, const char *const *params);

/* One row, one column; the text (NULL for SQL NULL); ck_abort otherwise. */
const char *harness_query_text(PGconn *conn, const char *sql);
const char *harness_query_textp(PGconn *conn, const char *sql, int nparams,
                                const char *const *params);

/* Poll sql (one int64) every ~10 ms until it returns expected; false if
 * timeout_ms passes first. A failing query aborts the test. */
bool harness_wait_until(PGconn *conn, const char *sql, int64_t expected, int timeout_ms);

/* --- notifications -------------------------------------------------------- */

/* LISTEN on channel (quoted as an identifier). */
void harness_listen(PGconn *conn, const char *channel);

/* Wait for the next notification on conn; its payload, or NULL if
 * timeout_ms passed. channel_out (may be NULL) gets its channel. */
const char *harness_notify_wait(PGconn *conn, int timeout_ms, const char **channel_out);

/* --- the pgwork binary ---------------------------------------------------- */

/* $PGWORK_BIN; ck_abort if unset. */
const char *harness_pgwork_bin(void);

/* The source tree's examples/ (the example co-processes): found upwards
 * from $PGWORK_BIN, or $PGWORK_EXAMPLES; ck_abort if not found. */
const char *harness_examples_dir(void);

/*
 * Run `$PGWORK_BIN args...` (args NULL-terminated) to completion with
 * PGWORK_DATABASE_URL=conninfo (conninfo NULL: leave the environment) and
 * PGWORK_CONFIG unset. input (may be NULL = empty) is its stdin;
 * stdout/stderr are captured into *out / *err when not NULL. Returns the
 * exit code, or 128 + signal number.
 */
int harness_pgwork(const char *conninfo, const char *input, const char **out, const char **err,
                   const char *const *args);

/* Start `$PGWORK_BIN args...` without waiting (stdin /dev/null, output
 * inherited); harness_pgwork_wait() reaps it. */
pid_t harness_pgwork_start(const char *conninfo, const char *const *args);
int harness_pgwork_wait(pid_t pid, int timeout_ms);

/* `pgwork migrate` on conninfo; returns its exit code. */
int harness_migrate(const char *conninfo);

/* --- the supervisor ------------------------------------------------------- */

/* Write text into a new config file in the test's temp dir; its path.
 * Without an `http {` section, `http { listen = "" }` is added: the tests
 * run supervisors side by side, and the default port would collide. */
const char *harness_write_config(const char *text);

struct harness_supervisor {
    pid_t pid;               /* 0 once reaped */
    int status;              /* wait status once reaped */
    const char *stderr_path; /* its stderr and stdout, appended */
    /* harness-private: the last harness_stderr_text(), reused while the
     * file has not grown (polling loops do not pile up copies) */
    const char *last_text;
    size_t last_len;
};

/* Start `$PGWORK_BIN -c config_path run` with PGWORK_DATABASE_URL=conninfo,
 * stdin /dev/null, stdout+stderr into a file in the test's temp dir. It dies
 * with the test process (PR_SET_PDEATHSIG). */
struct harness_supervisor *harness_spawn_supervisor(const char *config_path, const char *conninfo);

/* Send sig (0: none) and wait up to timeout_ms for it to exit. Returns its
 * wait status (0 = exit 0), or -1 if it did not exit in time (it is then
 * SIGKILLed and reaped). */
int harness_stop_supervisor(struct harness_supervisor *sup, int sig, int timeout_ms);

/* Wait until its output contains substring; false after timeout_ms. */
bool harness_stderr_wait_for(struct harness_supervisor *sup, const char *substring, int timeout_ms);

/* Its output so far (harness-owned). */
const char *harness_stderr_text(struct harness_supervisor *sup);

/* Copy its output to our stderr, each line prefixed: call before failing. */
void harness_stderr_dump(struct harness_supervisor *sup);

/* --- misc ----------------------------------------------------------------- */

/* The test's temp directory (created by the fixture). */
const char *harness_tmpdir(void);

/* A whole file's text (harness-owned); aborts the test if unreadable. */
const char *harness_read_file(const char *path);

/* Run `jq args...` (no shell: names go through argv untouched) with the
 * file at in_path on stdin; its stdout into *out (unless NULL). Returns
 * jq's exit code (-e: 0 when the last output is neither false nor null). */
int harness_jq_file(const char *in_path, const char *const *args, const char **out);

/* size zeroed bytes (harness-owned). */
void *harness_alloc(size_t size);

/* A harness-owned copy of a printf-formatted string. */
const char *harness_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Milliseconds on CLOCK_MONOTONIC. */
int64_t harness_now_ms(void);

/* A test that cannot run here (not root, no PID namespaces): says so on
 * stderr, one line "SKIP: <test>: <why>". Check has no skipped state, so
 * the test still counts as passed there; tests/run.sh counts these lines,
 * reports them as skipped instead, and fails under CI=true, where every
 * test must run. The caller returns right after. */
void harness_skip(const char *test, const char *why);

/* --- failure tests: process groups, wrappers, the cluster itself ---------- */

/* Options for harness_spawn_supervisor_opts(); zero = harness_spawn_supervisor. */
struct harness_spawn_opts {
    /* argv run in front of `$PGWORK_BIN -c config run` (e.g. unshare ...),
     * NULL-terminated; NULL = none. */
    const char *const *wrapper;
    /* setpgid(0, 0) in the child: kill(-sup->pid, ...) reaches the
     * supervisor and its workers at once (handlers have their own groups). */
    bool own_process_group;
    /* Extra NAME=VALUE environment entries, NULL-terminated; may be NULL. */
    const char *const *env;
};

struct harness_supervisor *harness_spawn_supervisor_opts(const char *config_path,
                                                         const char *conninfo,
                                                         const struct harness_spawn_opts *opts);

/* Whether pid is a live process (exists and is not a zombie). */
bool harness_pid_alive(pid_t pid);

/* Wait until pid is gone (no such process, or a zombie); false after
 * timeout_ms. */
bool harness_wait_pid_gone(pid_t pid, int timeout_ms);

/* The data directory of the test cluster: $PGWORK_TEST_PGDATA, else
 * dirname($PGHOST)/data (tests/pg.sh's layout: DIR/socket, DIR/data). */
const char *harness_pg_datadir(void);

/* The server's log file (tests/pg.sh's DIR/log/postgresql.log, beside the
 * data directory); its lines start with tests/pg.sh's log_line_prefix,
 * "%m [%p] %q%u@%d [%a] ". */
const char *harness_pg_logfile(void);

/* `pg_ctl restart -m mode -w` on the test cluster, as the owner of its data
 * directory; ck_abort if it fails. Returns how long it took (ms). Every
 * connection to the cluster, the harness's included, is gone afterwards. */
int64_t harness_pg_restart(const char *mode);

/* The unix socket path of the test cluster ($PGHOST/.s.PGSQL.$PGPORT). */
const char *harness_pg_socket_path(void);

/* A directory with the test helper programs (tests/tools): $PGWORK_TEST_TOOLS,
 * else <dir of $PGWORK_BIN>/tests/tools. */
const char *harness_tools_dir(void);

/* A running tests/tools/tcpproxy in front of target (HOST:PORT or a unix
 * socket path). Killed at teardown. */
struct harness_proxy {
    pid_t pid;
    int port;   /* its 127.0.0.1 port */
    int ack_fd; /* its stdout: one line per signal it has acted on */
};
struct harness_proxy *harness_proxy_start(const char *target);

/* Silently drop every connection open through the proxy now (no FIN, no
 * RST); new connections are forwarded. Returns once the proxy has
 * confirmed the black hole is in place, with the number of connections it
 * swallowed (fails the test if it does not confirm within 5 s). */
int harness_proxy_blackhole(struct harness_proxy *proxy);

/* --- files and processes (harness_proc.c) --------------------------------- */

/* Write text into path (created or truncated); aborts the test on error. */
void harness_write_file(const char *path, const char *text);

/* An executable shell script (#!/bin/sh, then body) named name in the
 * test's directory; its path. */
const char *harness_write_script(const char *name, const char *body);

/* Poll (5 ms) until path exists; false after timeout_ms. */
bool harness_wait_file(const char *path, int timeout_ms);

/* A small file's first line without its newline (harness-owned), or NULL. */
const char *harness_read_line(const char *path);

/* A pid a handler writes into path: waits up to 15 s for the file and 2 s
 * more for a pid in it; aborts the test otherwise. */
pid_t harness_read_pid(const char *path);

/* A process's parent from /proc (0 if gone); its state letter into *state
 * (may be NULL). */
pid_t harness_parent_of(pid_t pid, char *state);

/* How many children pid has (/proc/PID/task/PID/children; -1 if it is
 * gone); the first of them into *first (may be NULL). */
int harness_children(pid_t pid, pid_t *first);

/* Poll until pid has a child (e.g. the PID 1 under `unshare --fork`); that
 * child; aborts the test after timeout_ms. */
pid_t harness_child_of(pid_t pid, int timeout_ms);

/* A loopback TCP port nobody listens on right now (bound, read, released). */
int harness_free_port(void);

/* --- supervisor output and status (harness_run.c) -------------------------- */

/* Poll (5 ms) until needle appears in sup's output after offset from
 * (e.g. strlen(harness_stderr_text(sup)) before a signal); false after
 * timeout_ms. */
bool harness_stderr_wait_after(struct harness_supervisor *sup, size_t from, const char *needle,
                               int timeout_ms);

/* Wait up to 15 s for line in sup's output; else dump it and fail. */
void harness_wait_output(struct harness_supervisor *sup, const char *line);

/* Send sig to pid (the supervisor, or the PID 1 it runs under) and wait up
 * to 10 s for line to appear in sup's output after that; else dump, fail. */
void harness_signal_and_wait(struct harness_supervisor *sup, pid_t pid, int sig, const char *line);

/* Slots in the status lines (pgwork's workers.max can be at most this). */
#define HARNESS_MAX_WORKERS 16

/* One worker slot as a SIGUSR1 status line shows it ("status worker N:
 * pid=... state=... task=... wakeups=... claims=... restarts=...
 * failures_in_a_row=..."), i.e. the supervisor's shared memory. */
struct harness_worker {
    bool listed; /* the slot had a line */
    pid_t pid;
    char state[16];
    long long task;
    long long wakeups;
    long long claims;
    long long restarts;
    int failures_in_a_row;
};

/* Wait (15 s) until the supervisor has set up its signals, send SIGUSR1,
 * wait (5 s) for the batch of status lines (a queue line closes it); where
 * the batch starts in its output. Fails the test on a timeout. */
const char *harness_status_text(struct harness_supervisor *sup);

/* harness_status_text() parsed into out[slot] (HARNESS_MAX_WORKERS
 * entries, zeroed first); a worker line without one of the fields fails
 * the test. Returns the number of worker lines. */
int harness_status(struct harness_supervisor *sup, struct harness_worker *out);

/* One status request: the pid of the worker whose slot shows `task`, or 0. */
pid_t harness_worker_running(struct harness_supervisor *sup, int64_t task);

/* Ask for status until slots 0..workers-1 have a process and sleep idle
 * (20 s, else dump and fail); out holds the last status. */
void harness_wait_idle(struct harness_supervisor *sup, int workers, struct harness_worker *out);

/* --- scenarios (harness_run.c) --------------------------------------------- */

/* A fresh migrated database (harness_db_create, `pgwork migrate`), a
 * connection to it in *conn, then schema run (may be NULL); its conninfo. */
const char *harness_db_migrated(PGconn **conn, char *name_out, const char *schema);

/* Every task as "id:state/attempts" by id (harness-owned), for messages. */
const char *harness_tasks_text(PGconn *conn);

/* Wait until sql (one int64) returns expected; else dump sup's output (sup
 * may be NULL) and fail with what, the timeout and the tasks. */
void harness_expect(PGconn *conn, struct harness_supervisor *sup, const char *sql, int64_t expected,
                    int timeout_ms, const char *what);

/* How many worker connections conn's database has. */
#define HARNESS_WORKERS_SQL                                                                        \
    "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pgwork worker%' "          \
    "AND datname = current_database()"

/* Wait (15 s) until conn's database has `expected` worker connections (the
 * pool's size as PostgreSQL sees it); else dump sup's output and fail. */
void harness_wait_workers(PGconn *conn, struct harness_supervisor *sup, int expected);

/*
 * A supervisor test's set-up as one table row: what its database holds,
 * its config, how it is started and what to wait for before the test
 * proper. Zero fields are left out. The config is
 *   workers { <workers> }  log { <log> }  <extra>
 *   queue "q" { command = {"<script>"} <queue> }  <queues>
 * (queue "q" only when script or queue is set; harness_write_config adds
 * `http { listen = "" }` unless extra has an http section).
 */
struct harness_scenario {
    const char *schema;  /* SQL run on the migrated database */
    const char *workers; /* the workers section's body */
    const char *log;     /* the log section's body; NULL: level "info", format "text" */
    const char *extra;   /* other top-level sections (listener, database, http) */
    const char *script;  /* a handler script's body (harness_write_script
                          * "handler.sh"): queue "q" runs it */
    const char *queue;   /* queue "q"'s settings (after its command) */
    const char *queues;  /* further queue sections */
    const struct harness_spawn_opts *spawn; /* NULL: harness_spawn_supervisor */
    const char *wait_for;                   /* wait (15 s) for this line in its output */
    int idle;                               /* then wait until this many workers are idle */
    const char *tasks;                      /* then run this SQL (the tasks of the test) */
};

/* What a scenario made (harness-owned). */
struct harness_run {
    const char *conninfo;
    char dbname[HARNESS_NAME_MAX];
    PGconn *conn;
    const char *config; /* path of the config file */
    struct harness_supervisor *sup;
    struct harness_worker w[HARNESS_MAX_WORKERS]; /* the status seen by `idle` */
};

/* The database alone (harness_db_migrated with schema): for a test that
 * needs its name or conninfo in the config; then harness_run_start. */
struct harness_run *harness_run_database(const char *schema);

/* Write s's script (as "handler.sh") and config without starting
 * anything; the config's path. For a test that checks the file first, or
 * starts a second supervisor with a config of its own. */
const char *harness_scenario_config(const struct harness_scenario *s);

/* harness_scenario_config (into run->config), then start the supervisor
 * (into run->sup), wait as s says and run s->tasks (s->schema is not used
 * here); returns run->sup. */
struct harness_supervisor *harness_run_start(struct harness_run *run,
                                             const struct harness_scenario *s);

/* Both: harness_run_database(s->schema), then harness_run_start(run, s). */
struct harness_run *harness_scenario(const struct harness_scenario *s);

/* --- PgBouncer ------------------------------------------------------------ */

/*
 * A running PgBouncer (Debian's package: /usr/sbin/pgbouncer) on 127.0.0.1
 * on a free port, in front of the test cluster's unix socket, serving every
 * database (`*`) with the given pool_mode ("transaction", "session") and
 * default_pool_size. auth_type trust for $PGUSER, who is also an admin
 * (database "pgbouncer": SHOW, RECONNECT). As root it runs as the owner of
 * the cluster's data directory (like the server). Its own process, killed by
 * pid at teardown (or with the test process, PR_SET_PDEATHSIG).
 */
struct harness_pgbouncer {
    pid_t pid;
    int port;
    const char *dir;      /* its config, auth file and log (removed at teardown) */
    const char *log_path; /* its stderr */
};
struct harness_pgbouncer *harness_pgbouncer_start(const char *pool_mode, int pool_size);

/* A conninfo for database dbname through the bouncer. */
const char *harness_pgbouncer_conninfo(const struct harness_pgbouncer *bouncer, const char *dbname);

/* Run one command on its admin console (e.g. "RECONNECT"); ck_abort on error. */
void harness_pgbouncer_admin(const struct harness_pgbouncer *bouncer, const char *command);

/* One column of SHOW POOLS (e.g. "sv_login", "sv_idle") for database
 * dbname, as an integer; 0 while it has no pool yet. */
int64_t harness_pgbouncer_pool(const struct harness_pgbouncer *bouncer, const char *dbname,
                               const char *column);

#endif
