/*
 * chaoslib.h — what the long failure drivers share (`make chaos`,
 * `make torture`): clocks, messages, the database, the cluster (pg_ctl), the
 * supervisor process, its log, /proc, the TCP proxy.
 *
 * Every function that can fail for a reason the run cannot recover from
 * calls chaos_die (exit 2, the driver is broken, not pgwork); the others say
 * in their return value. chaos_spawn is safe from a threaded program: it
 * builds everything before fork and the child only calls async-signal-safe
 * functions before exec.
 */
#ifndef PGWORK_CHAOSLIB_H
#define PGWORK_CHAOSLIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <libpq-fe.h>

/* Where logs and configs go, and the binary under test. */
void chaos_init(const char *prefix, const char *dir, const char *bin);
/* The prefix of every message (e.g. "torture (seed 42)"), thread-safe. */
void chaos_set_prefix(const char *prefix);
const char *chaos_dir(void);
const char *chaos_bin(void);

int64_t chaos_now_ms(void);
void chaos_sleep_ms(int64_t ms);
/* xorshift64: the next value of *state (never 0 once seeded non-zero). */
uint64_t chaos_rng(uint64_t *state);

void chaos_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void chaos_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
char *chaos_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* --- the database --------------------------------------------------------- */

/* Conninfo for dbname on PGHOST/PGPORT/PGUSER. */
char *chaos_conninfo_for(const char *dbname);
PGconn *chaos_connect_db(const char *conninfo);
/* Connect, retrying while the server restarts; NULL after timeout_ms. */
PGconn *chaos_connect_retry(const char *conninfo, int timeout_ms);
void chaos_exec_sql(PGconn *c, const char *sql);
/* One integer, or -1 on error (a restarting server). */
int64_t chaos_query_int(PGconn *c, const char *sql);
int64_t chaos_count_state(PGconn *c, const char *state);
/* A fresh database c_<name>, migrated, with a results table; its conninfo. */
char *chaos_make_database(const char *name, PGconn **conn);

/* --- the cluster ---------------------------------------------------------- */

/* pg_ctl ACTION [-m MODE] as the owner of the data directory; 0 on success. */
int chaos_pg_ctl(const char *action, const char *mode);
/* The unix socket of the cluster (PGHOST/.s.PGSQL.PGPORT). */
char *chaos_pg_socket(void);

/* --- processes ------------------------------------------------------------ */

struct chaos_spawn_opts {
    const char *log;          /* stdout and stderr appended here; NULL: stdout to /dev/null */
    bool truncate_log;        /* start the log empty */
    bool new_session;         /* setsid(): the process and its children are one session */
    bool pdeathsig;           /* SIGKILL when the driver dies */
    const char *database_url; /* PGWORK_DATABASE_URL; PGWORK_CONFIG is always removed */
};

/* fork + exec argv[0] (PATH search), stdin /dev/null. The pid, or -1. */
pid_t chaos_spawn(const char *const *argv, const struct chaos_spawn_opts *opts);

struct chaos_sup {
    pid_t pid;
    char *log;
    int status;
};

/* Start `[wrapper...] pgwork -c config run`, output into dir/<name>.log. */
struct chaos_sup chaos_sup_start(const char *name, const char *config, const char *conninfo,
                                 const char *const *wrapper);
/* Wait for exit; its status, or -1 (then SIGKILLed) after timeout_ms. */
int chaos_sup_wait(struct chaos_sup *s, int timeout_ms);
/* "exit 0", "killed by signal 9", ... into buf. */
const char *chaos_exit_text(int status, char *buf, size_t len);

/* dir/<name> holding text; its path. */
char *chaos_write_file(const char *name, const char *text);
size_t chaos_file_size(const char *path);
/* Whether the file contains needle at or after offset from. */
bool chaos_file_contains(const char *path, size_t from, const char *needle);
int chaos_count_in_file(const char *path, const char *needle);
bool chaos_wait_log(const char *path, size_t from, const char *needle, int timeout_ms);

/* Live (not zombie) children of ppid, from /proc. */
int chaos_children_of(pid_t ppid, pid_t *out, int max);
/* Live processes of session sid, from /proc. */
int chaos_session_members(pid_t sid, pid_t *out, int max);
/* CPU time (user + system) of pid in ms, or -1. */
int64_t chaos_cpu_ms(pid_t pid);

/* --- the TCP proxy (tests/tools/tcpproxy) --------------------------------- */

struct chaos_proxy {
    pid_t pid;
    int port;
    int out; /* its stdout: one acknowledgement line per signal */
};

/* Start tcpproxy (path) in front of target, its stderr appended to log
 * (NULL: ours); dies when it cannot. */
struct chaos_proxy chaos_proxy_start(const char *tcpproxy, const char *target, const char *log);

/* Send sig (USR1, USR2, HUP) and wait up to timeout_ms for the proxy to
 * say it took effect: the number it reports ("usr1 N": connections now
 * black-holed), or -1 without an answer. */
int chaos_proxy_signal(struct chaos_proxy *proxy, int sig, int timeout_ms);

/* A TCP port on 127.0.0.1 free right now. */
int chaos_free_port(void);

#endif
