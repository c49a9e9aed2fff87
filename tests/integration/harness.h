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
