/*
 * bench.h — `make bench` (issue 6): pgwork measured side by side with the
 * limit it chases, on the same throwaway PostgreSQL, in the same run.
 *
 * tests/bench/bench.sh starts the cluster (fsync on), installs the peer
 * (graphile-worker, tests/bench/peer) and runs the `bench` binary built
 * from these files:
 *
 *   bench.c     the order of the measurements, the sections of the table,
 *               build/bench.json and build/bench.md
 *   util.c      databases, statistics, clocks, child processes, supervisors
 *   limits.c    the limits: NOTIFY floor, SQL ceiling, enqueue cost (pgbench)
 *   pgwork.c    pgwork itself: pickup, throughput, idle load, lateness
 *   peer.c      graphile-worker through tests/bench/peer/peer.js
 *   scaling.c   worker and queue counts; memory
 *   producers.c producers into a served queue, notifications on and off
 *   claims.c    claim statements per task with 1 and 3 pods
 *   web.c       pgwork web's pages on 1,000,000 tasks (BENCH_ONLY=web)
 *   defaults.c  a new user's throughput (no batch set) beside the
 *               one-statement ceiling (pgbench) and the peer; the exec
 *               makespan
 *
 * Fairness rules every comparison keeps: the same tasks (count, no-op
 * handler), the same durability (synchronous_commit off, as pgwork's
 * workers run by default: database.synchronous_commit = false), the same
 * window (first task started to last task finished, from the tasks' own
 * timestamps where the system keeps them), and every throughput figure the
 * median of BENCH_REPEAT (>= 3) runs, its limit measured in the same run.
 *
 * Other files add rows in a file of their own: result_section() names the
 * section of the table they go in (bench.c's display order; a new name is
 * shown after the known ones), a call in bench.c's main and a BENCH_ONLY
 * name beside it.
 *
 * Clocks: latencies compare the client's CLOCK_REALTIME with PostgreSQL's
 * clock_timestamp() — the same kernel clock on this one machine. Durations
 * inside one process use CLOCK_MONOTONIC.
 *
 * Everything is single-threaded except where a measurement needs a second
 * party at the same time (the LISTENing connection of the NOTIFY floor,
 * the connections of the SQL ceiling, the wait-event sampler): those are
 * threads, each with its own libpq connection.
 */
#ifndef PGWORK_BENCH_H
#define PGWORK_BENCH_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <libpq-fe.h>

/* --- settings (environment, read once by bench.c) ------------------------ */

struct bench_settings {
    const char *pgwork_bin; /* BENCH_PGWORK: the binary under test */
    const char *tmpdir;     /* BENCH_TMP: configs, logs */
    const char *source_dir; /* BENCH_SRC: the source tree (examples/, peer/) */
    const char *noop_bin;   /* BENCH_NOOP: the C no-op co-process */
    const char *node;       /* BENCH_NODE: node binary, "" = skip the peer */
    const char *json_path;  /* BENCH_JSON: where the table goes as JSON */
    int repeat;             /* BENCH_REPEAT: repeated runs for medians (3, at least 3) */
    int tasks;              /* BENCH_TASKS: throughput tasks per run (50000) */
    int exec_tasks;         /* BENCH_EXEC_TASKS: for exec /bin/true (5000: fork+exec bound) */
    int floor_samples;      /* BENCH_FLOOR_SAMPLES: per NOTIFY floor run (1000) */
    int pickup_samples;     /* BENCH_PICKUP_SAMPLES: per pickup run (300) */
    int idle_seconds;       /* BENCH_IDLE_SECONDS: idle-load window (120) */
    int enqueue_seconds;    /* BENCH_ENQUEUE_SECONDS: per pgbench run (5) */
    int peer_jobs;          /* BENCH_PEER_JOBS: graphile-worker jobs (= tasks) */
    int pooler_port;        /* BENCH_PGBOUNCER_PORT: PgBouncer on 127.0.0.1, 0 = none */
    int soak_seconds;       /* BENCH_SOAK_SECONDS: the retention soak's length (240) */
};

extern struct bench_settings bench;

/* --- results: one row of the table each ---------------------------------- */

/* Whether a row meets its goal; GOAL_NONE when it states none. */
enum goal_verdict { GOAL_NONE, GOAL_MET, GOAL_MISSED };

struct row {
    char section[48];    /* stamped by result_add: the current result_section() */
    char figure[96];     /* what is measured */
    double value;        /* pgwork's figure (NAN = not measured) */
    char unit[16];       /* "ms", "tasks/s", "xact/min", ... */
    char limit_name[64]; /* the limit it is compared with ("" = none) */
    double limit;        /* that limit, measured in this run (NAN = none) */
    double ratio;        /* value / limit, or as the row's note says */
    char goal[64];       /* the goal, in words */
    enum goal_verdict verdict;
    char note[512]; /* how it was measured, runs, samples */
};

/* The sections, in the order the table shows them (bench.c): in each,
 * default settings (what a new user gets) first, tuned ones after. */
#define SECTION_PICKUP "Pickup latency"
#define SECTION_PRODUCERS "Producers"
#define SECTION_CLAIMS "Claims per task"
#define SECTION_DEFAULTS "Throughput, default settings"
#define SECTION_HANDLERS "Handlers, default settings"
#define SECTION_TUNED "Throughput, tuned (a fixed batch)"
#define SECTION_POOLER "Through PgBouncer"
#define SECTION_IDLE "Idle load"
#define SECTION_LATENESS "Scheduled lateness"
#define SECTION_SCALING "Scaling and memory"
#define SECTION_RETENTION "Retention"

/* The section the next rows go in ("pickup", "producers", ...: bench.c
 * orders the sections, default settings before tuned ones). */
void result_section(const char *name);

/* Append a row (copied) to the current section. */
void result_add(const struct row *row);

/* A free-form detail (breakdown, raw runs) for the JSON file and the
 * report below the table. */
void result_detail(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* --- util.c ---------------------------------------------------------------- */

void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

int64_t wall_us(void); /* CLOCK_REALTIME, microseconds: compare with clock_timestamp() */
int64_t mono_ms(void); /* CLOCK_MONOTONIC, milliseconds */
int64_t mono_us(void); /* CLOCK_MONOTONIC, microseconds */
void sleep_ms(int64_t ms);

/* Connect to dbname (the rest from PG* variables) or die. */
PGconn *db_connect(const char *dbname);
void db_exec(PGconn *conn, const char *sql);
int64_t db_int(PGconn *conn, const char *sql);
double db_double(PGconn *conn, const char *sql);
/* A fresh database (dropped first if it exists), migrated by pgwork. */
void db_create(const char *dbname);

/* Statistics over n values (v is sorted in place). p in [0, 100]. */
double stat_percentile(double *v, int n, double p);
double stat_median(double *v, int n);

/* A child process: argv[0] searched in PATH, env entries (NAME=VALUE,
 * NULL-terminated, may be NULL) added, stdout+stderr into log_path (NULL =
 * inherited), stdout alone into out_path when given. It dies with us. */
pid_t spawn(char *const argv[], const char *const *env, const char *log_path, const char *out_path);
/* Wait for pid; its exit status, or -1 after timeout_ms (then killed). */
int reap(pid_t pid, int timeout_ms);

/* A supervisor under test: `pgwork -c <config> run` on dbname. */
struct sup {
    pid_t pid;
    char log_path[512];
    char config_path[512];
};
void sup_start(struct sup *sup, const char *dbname, const char *name, const char *config_text);
/* Wait until its log holds `needle` at least `count` times; false on timeout. */
bool sup_wait_log(struct sup *sup, const char *needle, int count, int timeout_ms);
/* Wait until `count` worker connections of dbname are idle in PostgreSQL. */
void sup_wait_workers(struct sup *sup, PGconn *conn, int count);
/* SIGTERM, wait (then SIGKILL); dies if it exited non-zero. */
void sup_stop(struct sup *sup);

/* The direct children of parent (up to max) into out; their number. */
int children_of(pid_t parent, pid_t *out, int max);
/* CPU time (user + system) pid has used so far, in seconds; 0 if gone. */
double cpu_seconds(pid_t pid);

/* One burst of new tasks and its windows, from the tasks' own timestamps. */
struct burst {
    int64_t before_id;    /* the greatest task id before the burst */
    double window_s;      /* first started_at to last finished_at (the rate's window) */
    double from_commit_s; /* the INSERT's commit returned to the last finished_at */
};

/* Run insert_sql (a burst of new tasks) on conn and wait until no task is
 * pending or running (10 minutes at most, else die). */
void burst_run(PGconn *conn, const char *insert_sql, const struct sup *sup, struct burst *out);

/* The same, for tasks/s: tasks / window_s (the fair window: the peer's is
 * its first handler start to its jobs table empty). */
double burst_rate(int tasks, const struct burst *b);

/* pgbench on dbname: `clients` clients (-j 2), script (a file), limit_flag
 * "-T" (seconds) or "-t" (transactions per client) with limit; PGOPTIONS
 * for its sessions (NULL = none); output in BENCH_TMP/pgbench-NAME.*. Its
 * tps (without connection time). */
double pgbench_tps(const char *dbname, const char *script, int clients, const char *limit_flag,
                   int limit, const char *pgoptions, const char *name);

/* Write text into BENCH_TMP/name; the path (static buffer per call site). */
const char *write_file(const char *name, const char *text);

/* --- measurements ---------------------------------------------------------- */

/* limits.c */
void measure_notify_floor(double *p50_ms, double *p99_ms);
/* Tasks/s of pgwork's own claim + complete statements (worker/task.c's
 * exec/coprocess path, or the sql path when sql is true), from
 * `connections` libpq connections with batch `batch`, pipelined (what the
 * database allows for those statements), no processes in between. */
double measure_sql_ceiling(int connections, int batch, bool sql);
/* Tasks/s of the same statements as the worker sends them today (a round
 * trip each), and of a batched completion: details for the findings. */
void measure_ceiling_variants(int connections, int batch);
void measure_enqueue(void);

/* limits_caps.c: what queue.concurrency and queue.rate cost (issue 14). */
void measure_queue_limits(void);

/* pgwork.c */
void idle_start(void);       /* start the idle pod */
void idle_window_open(void); /* start counting (after notification-heavy steps) */
void idle_finish(void);      /* wait for the window's end, stop the pod, add the row */
void measure_pickup(double floor_p50_ms);
/* One pickup run on conn's database (a pickup table, an idle pod): samples
 * single tasks 20 ms apart into queue 'pickup' (queues = 0) or 's<i %
 * queues>'; percentiles of handler start - COMMIT returned, in ms. */
void pickup_run(PGconn *conn, int samples, int queues, double *p50, double *p99, double *max);
/* The latencies (ms) of samples tasks ids, whose INSERTs returned at
 * committed (wall clock, µs), from the pickup table of conn's database
 * once all have started (the handler records each start); dies after
 * 20 s. */
void pickup_collect(PGconn *conn, int samples, const int64_t *ids, const int64_t *committed,
                    double *lat);
/* ceilings at 2/4/8 connections: exec and sql path at batch 10, sql path
 * at batch 100 (for the batch = 100 rows). */
void measure_throughput(double ceiling_exec[3], double ceiling_sql[3], double ceiling_sql_100[3],
                        double peer_jobs_per_s);
void measure_lateness(void);
/* sql throughput and pickup with the workers through PgBouncer (transaction
 * mode), beside the same runs direct; skipped without a PgBouncer. */
void measure_pooler(void);

/* scaling.c: pickup and throughput with 1/4/16/64 workers and 1/200
 * queues; supervisor and per-worker memory. */
void measure_scaling(double floor_p50_ms);

/* soak.c: retention under 2,000 tasks/s (`make soak`): the table's size at
 * one minute and at the end, the oldest done task. */
void measure_soak(void);

/* peer.c: graphile-worker jobs/s (median of BENCH_REPEAT runs of
 * BENCH_PEER_JOBS jobs, synchronous_commit off for its database) and pickup
 * p50/p99 (ms); false if skipped. */
bool measure_peer(double *jobs_per_s, double *pickup_p50_ms, double *pickup_p99_ms);
/* Its throughput as a row of the current section (nothing if NAN). */
void peer_throughput_row(double jobs_per_s);

/* producers.c: 8 producers of single-row INSERTs into a queue a pod of 4
 * workers serves (defaults), with notifications and with
 * `SET pgwork.notify = off` plus a manual ring every 100 ms; the ratio,
 * what the storm sent, and the pickup of isolated tasks right after a
 * storm (against floor_p50_ms + 0.5 ms; NAN: the floor was not measured,
 * taken as 0). */
void measure_producers(double floor_p50_ms);

/* claims.c: claim statements per task, 50 isolated single tasks, 1 and 3
 * pods with default settings (pg_stat_statements of their database). */
void measure_claims(void);

/* defaults.c: sql throughput with default settings (no batch set) beside
 * the one-statement ceiling (pgbench, UPDATE ... IN (SELECT ... SKIP LOCKED
 * LIMIT n), n = 10 and 100) and the peer's batched best; then 80 exec tasks
 * of 100 ms on 8 workers against the ideal 1.0 s makespan. */
void measure_defaults(double peer_jobs_per_s);

/* The sql no-op queue's throughput for one pod run (pgwork.c) with
 * default settings (no batch set): tasks/s over the burst's window. */
double throughput_sql_defaults(const char *dbname, int workers, int tasks);
/* A fresh database for throughput runs, its planner statistics pinned
 * (those of the middle of a burst; autovacuum off for the table). */
void throughput_db_prepare(const char *dbname);

/* web.c: pgwork web, every page on 1,000,000 tasks. */
void measure_web(void);

#endif
