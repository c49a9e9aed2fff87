/*
 * config.h — pgwork's configuration: one libconfuse file parsed into an
 * immutable, typed struct.
 *
 * The section and key names are a contract (DESIGN §4); each key is one
 * line of the table in config_keys.c, which says which field below it
 * fills. Every key is optional; durations are stored in milliseconds. A struct pgwork_config is
 * built once by config_load() and never modified afterwards: a reload builds
 * a new one and swaps pointers, so a process never sees half a config.
 */
#ifndef PGWORK_CONFIG_H
#define PGWORK_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/schedule.h"

/* Longest queue name accepted in the config (bytes). Longer names are a
 * config error; the database itself accepts any text. */
#define CONFIG_QUEUE_NAME_MAX 1024

/* Longest schedule name (bytes): it is the key of its row in
 * pgwork.schedules and a label in /metrics. */
#define CONFIG_SCHEDULE_NAME_MAX 200

enum handler_kind {
    HANDLER_EXEC,      /* run queue.command per task, payload on stdin */
    HANDLER_SQL,       /* run queue.statement in the transaction that marks done */
    HANDLER_COPROCESS, /* one long-lived queue.command per worker, a JSON line per task */
};

enum log_format {
    LOG_FORMAT_JSON, /* one JSON object per line (default) */
    LOG_FORMAT_TEXT, /* human-readable line */
};

enum log_level {
    LOG_LEVEL_DEBUG,
    LOG_LEVEL_INFO,
    LOG_LEVEL_WARN,
    LOG_LEVEL_ERROR,
};

/* queue.batch = "auto": each worker sizes its claims (worker/batch_size.c). */
#define QUEUE_BATCH_AUTO 0

struct queue_config {
    char *name;                /* the queue's title in `queue "name" {}` */
    enum handler_kind handler; /* handler = "exec" | "sql" | "coprocess" */
    char **command;            /* exec, coprocess: argv, NULL-terminated; NULL for sql */
    int command_argc;          /* number of entries in command */
    char *statement;           /* sql: statement with $1 payload, $2 id; else NULL */
    int batch;                 /* tasks claimed per round trip, 1..1000, or QUEUE_BATCH_AUTO */
    int64_t timeout_ms;        /* per task; 0 = no timeout */
    int max_attempts;          /* attempts before dead, >= 1 */
    int64_t backoff_base_ms;   /* first retry delay */
    int64_t backoff_max_ms;    /* retry delay cap, >= backoff_base_ms */
    bool keep_done;            /* false: delete finished tasks */
    int64_t retention_ms;      /* done tasks deleted this long after finished_at; 0 = kept */
    int64_t dead_retention_ms; /* the same for dead and cancelled tasks */
    int workers;               /* workers serving the queue; 0 = every worker */
    char **env;                /* exec, coprocess: names of the worker's environment
                                  variables handlers get besides PGWORK_*, PATH, HOME
                                  (never a credential: config_env_forbidden) */
    int env_count;             /* number of entries in env */
    int concurrency;           /* most tasks running at once, all pods together; 0 = no cap */
    char *rate;                /* most starts per period, all pods: "N/PERIOD"; "" = none
                                  (config_rate_parse) */
};

/* A periodic task (README "Schedules"): one task per tick, all pods
 * together; the supervisor makes it (supervisor/ticks.c). */
struct schedule_config {
    char *name;           /* the schedule's title in `schedule "name" {}`: its row in
                             pgwork.schedules */
    char *cron;           /* cron expression, or NULL (then every is set) */
    char *every;          /* fixed interval as written, or NULL (then cron is set) */
    char *queue;          /* queue its tasks go to (need not be served by this pod) */
    char *payload;        /* JSON text of each task's payload */
    int priority;         /* each task's priority */
    char *timezone;       /* cron's local times: "UTC" or Area/City */
    struct schedule when; /* cron or every parsed, with its zone */
};

struct pgwork_config {
    char *path; /* file it came from, "" for built-in defaults */

    struct {
        char *conninfo;          /* "" = PGWORK_DATABASE_URL, then libpq's PG* */
        char *listen_conninfo;   /* "" = same as conninfo */
        bool synchronous_commit; /* false: off in every worker transaction */
    } database;

    struct {
        bool enabled;
        char *channel;
        int64_t reconnect_min_ms;
        int64_t reconnect_max_ms;
        int64_t keepalive_interval_ms;
        int64_t keepalive_timeout_ms;
    } listener;

    struct {
        int count;
        int min;
        int max;
        int64_t poll_interval_ms;
        int64_t safety_poll_interval_ms;
        int64_t restart_delay_min_ms;
        int64_t restart_delay_max_ms;
        int64_t shutdown_timeout_ms;
        int64_t lease_ms;
    } workers;

    struct queue_config *queues; /* queue_count entries, file order */
    int *queue_lookup;           /* hash table of queue indexes (config_find_queue) */
    unsigned queue_lookup_mask;  /* its size - 1 */
    int queue_count;

    struct schedule_config *schedules; /* schedule_count entries, file order */
    int schedule_count;

    struct {
        char *listen; /* "" = no HTTP endpoint */
    } http;

    /* pgwork web (the dashboard process); the supervisor never reads it. */
    struct {
        char *listen;     /* host:port of the dashboard */
        char *token_file; /* "" = the token comes from PGWORK_WEB_TOKEN */
        bool public_read; /* true: pages and GET /api/ need no token */
    } web;

    struct {
        enum log_level level;
        enum log_format format;
    } log;
};

/*
 * Parse `path` (NULL or "" = built-in defaults, no queues). On success
 * returns 0 and stores a new config in *out (caller frees with config_free).
 * On error returns -1 and writes one line naming the file, the line and what
 * is wrong into err (errlen bytes); *out is left untouched. Never prints.
 */
int config_load(const char *path, struct pgwork_config **out, char *err, size_t errlen);

void config_free(struct pgwork_config *config);

/* The index of the queue called name, or -1: one hash probe (a
 * notification's queue is looked up this way, whatever the queue count). */
int config_find_queue(const struct pgwork_config *config, const char *name);

/*
 * Parse a duration: "500ms", "15s", "5m", "1h", or a bare number of seconds
 * ("30", "1.5"). Returns 0 and stores milliseconds in *ms, or -1.
 */
int config_parse_duration(const char *text, int64_t *ms);

/* A queue's rate ("100/1m", "5/1s"): *count starts per *period_ms. 0 and
 * count 0 for "" (no limit); -1 when it is not such a value. */
int config_rate_parse(const char *text, int *count, int64_t *period_ms);

/* Whether the queue has a concurrency cap or a rate limit (its claims
 * take the limited path, worker/task_claim.c). */
bool config_queue_limited(const struct queue_config *queue);

/* How many of `workers` worker slots serve the queue: all of them, or its
 * first queue->workers. */
int config_queue_serving(const struct queue_config *queue, int workers);

/* The connection string workers use: database.conninfo, else
 * $PGWORK_DATABASE_URL, else "" (libpq's PG* variables apply). */
const char *config_conninfo(const struct pgwork_config *config);

/* The listener's connection string: listen_conninfo, else config_conninfo(). */
const char *config_listen_conninfo(const struct pgwork_config *config);

const char *config_handler_name(enum handler_kind kind);

/* Why an environment variable name may never reach a handler (the
 * connection string, libpq's password variables, the web token), or NULL.
 * The config refuses such a name in `env`, and the handler environment
 * drops it whatever it is asked for. */
const char *config_env_forbidden(const char *name);

/* Whether a worker started with a would behave like one started with b:
 * the same queues, and the same value for every key the table
 * (config_keys.c) marks as rolling the workers (every queue key, the
 * lease, the keepalive, log settings). A reload that changes this view
 * rolls the workers. Restart-only keys are not compared: a reload makes
 * them equal first (config_keep_restart_only). */
bool config_worker_view_equal(const struct pgwork_config *a, const struct pgwork_config *b);

/*
 * A reload: copy the restart-only keys of the table (database.*,
 * http.listen, workers.max) of `running` into `fresh`, so they keep their
 * running values, and list those that differed in `changed`
 * (comma-separated in table order, "" if none). Strings are swapped, so
 * both configs stay freeable with config_free().
 */
void config_keep_restart_only(struct pgwork_config *running, struct pgwork_config *fresh,
                              char *changed, size_t len);

#endif
