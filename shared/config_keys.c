/*
 * config_keys.c — the table of every config key, and what a key's type
 * means for its field in the typed struct (compare, keep, free).
 *
 * One line per key. The reload functions of config.h (which keys roll the
 * workers, which keep their running value) read the table's last column.
 * Defaults are written as an operator writes them and
 * go through the key's own converter when the libconfuse options are built
 * (config.c), so a default can never be a value the file could not say.
 * Durations are > 0 and at most a year unless the line says otherwise.
 */
#include "config_keys.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORKERS_LIMIT 1024
#define BATCH_LIMIT 1000

/* Enum fields are stored through an int. */
_Static_assert(sizeof(enum handler_kind) == sizeof(int), "handler_kind is an int");
_Static_assert(sizeof(enum log_level) == sizeof(int), "log_level is an int");
_Static_assert(sizeof(enum log_format) == sizeof(int), "log_format is an int");

static const struct config_word handler_words[] = {
    {"exec", HANDLER_EXEC},
    {"sql", HANDLER_SQL},
    {"coprocess", HANDLER_COPROCESS},
    {NULL, 0},
};
static const struct config_word log_levels[] = {
    {"debug", LOG_LEVEL_DEBUG},
    {"info", LOG_LEVEL_INFO},
    {"warn", LOG_LEVEL_WARN},
    {"error", LOG_LEVEL_ERROR},
    {NULL, 0},
};
static const struct config_word log_formats[] = {
    {"json", LOG_FORMAT_JSON},
    {"text", LOG_FORMAT_TEXT},
    {NULL, 0},
};

static const struct config_word batch_words[] = {
    {"auto", QUEUE_BATCH_AUTO},
    {NULL, 0},
};

/* Where a key lands: a section of struct pgwork_config, or struct queue_config. */
#define IN(sec, key, field)                                                                        \
    .section = #sec, .name = #key, .at = offsetof(struct pgwork_config, sec.field),                \
    .size = sizeof(((struct pgwork_config *)0)->sec.field)
#define QUEUE(key, field)                                                                          \
    .section = "queue", .name = #key, .at = offsetof(struct queue_config, field),                  \
    .size = sizeof(((struct queue_config *)0)->field)
#define SCHEDULE(key, field)                                                                       \
    .section = "schedule", .name = #key, .at = offsetof(struct schedule_config, field),            \
    .size = sizeof(((struct schedule_config *)0)->field)
/* Its type. */
#define BOOL .type = CONFIG_BOOL
#define COUNT(lo_, hi_) .type = CONFIG_COUNT, .lo = (lo_), .hi = (hi_)
#define COUNT_OR(lo_, hi_, words_) COUNT(lo_, hi_), .words = (words_)
#define DURATION(lo_) .type = CONFIG_DURATION, .lo = (lo_), .hi = CONFIG_DURATION_MAX_MS
#define ENUM(words_) .type = CONFIG_ENUM, .words = (words_)
#define STRING(check_) .type = CONFIG_STRING, .check = (check_)
#define QUEUE_LIST(check_, count)                                                                  \
    .type = CONFIG_LIST, .check = (check_), .count_at = offsetof(struct queue_config, count)
/* A queue key only some handlers use (the others' field stays NULL). */
#define ONLY(mask) .handlers = (mask)
#define EXEC_COPROCESS ((1u << HANDLER_EXEC) | (1u << HANDLER_COPROCESS))
#define SQL_ONLY (1u << HANDLER_SQL)
/* Its default, and what SIGHUP does with a change. */
#define DEFAULT(text) .def = (text)
#define RELOAD .apply = CONFIG_RELOAD
#define ROLL .apply = CONFIG_ROLL
#define RESTART .apply = CONFIG_RESTART

/* clang-format off */
const struct config_key config_keys[] = {
    {IN(database, conninfo, conninfo),                         STRING(NULL),     DEFAULT(""),       RESTART},
    {IN(database, listen_conninfo, listen_conninfo),           STRING(NULL),     DEFAULT(""),       RESTART},
    {IN(database, synchronous_commit, synchronous_commit),     BOOL,             DEFAULT("false"),  RESTART},
    {IN(listener, enabled, enabled),                           BOOL,             DEFAULT("true"),   RELOAD},
    {IN(listener, channel, channel),                 STRING(config_check_channel), DEFAULT("pgwork_tasks"), RELOAD},
    {IN(listener, reconnect_min, reconnect_min_ms),            DURATION(1),      DEFAULT("500ms"),  RELOAD},
    {IN(listener, reconnect_max, reconnect_max_ms),            DURATION(1),      DEFAULT("60s"),    RELOAD},
    {IN(listener, keepalive_interval, keepalive_interval_ms),  DURATION(1),      DEFAULT("30s"),    ROLL},
    {IN(listener, keepalive_timeout, keepalive_timeout_ms),    DURATION(1),      DEFAULT("5s"),     ROLL},
    {IN(workers, count, count),                      COUNT(1, WORKERS_LIMIT),    DEFAULT("4"),      RELOAD},
    {IN(workers, min, min),                          COUNT(1, WORKERS_LIMIT),    DEFAULT("1"),      RELOAD},
    {IN(workers, max, max),                          COUNT(1, WORKERS_LIMIT),    DEFAULT("64"),     RESTART},
    {IN(workers, poll_interval, poll_interval_ms),             DURATION(1),      DEFAULT("1s"),     RELOAD},
    {IN(workers, safety_poll_interval, safety_poll_interval_ms), DURATION(1),    DEFAULT("60s"),    RELOAD},
    {IN(workers, restart_delay_min, restart_delay_min_ms),     DURATION(1),      DEFAULT("100ms"),  RELOAD},
    {IN(workers, restart_delay_max, restart_delay_max_ms),     DURATION(1),      DEFAULT("30s"),    RELOAD},
    {IN(workers, shutdown_timeout, shutdown_timeout_ms),       DURATION(1),      DEFAULT("25s"),    RELOAD},
    {IN(workers, lease, lease_ms),                             DURATION(1),      DEFAULT("5m"),     ROLL},
    {QUEUE(handler, handler),                                  ENUM(handler_words),   DEFAULT("exec"),   ROLL},
    {QUEUE(command, command),  QUEUE_LIST(NULL, command_argc), ONLY(EXEC_COPROCESS), DEFAULT(NULL), ROLL},
    {QUEUE(statement, statement),              STRING(NULL),   ONLY(SQL_ONLY),       DEFAULT(NULL), ROLL},
    {QUEUE(batch, batch),               COUNT_OR(1, BATCH_LIMIT, batch_words),  DEFAULT("auto"),   ROLL},
    {QUEUE(timeout, timeout_ms),                               DURATION(0),      DEFAULT("60s"),    ROLL},
    {QUEUE(max_attempts, max_attempts),              COUNT(1, INT_MAX),          DEFAULT("25"),     ROLL},
    {QUEUE(backoff_base, backoff_base_ms),                     DURATION(1),      DEFAULT("1s"),     ROLL},
    {QUEUE(backoff_max, backoff_max_ms),                       DURATION(1),      DEFAULT("1h"),     ROLL},
    {QUEUE(keep_done, keep_done),                              BOOL,             DEFAULT("true"),   ROLL},
    {QUEUE(retention, retention_ms),                           DURATION(0),      DEFAULT("1d"),     RELOAD},
    {QUEUE(dead_retention, dead_retention_ms),                 DURATION(0),      DEFAULT("30d"),    RELOAD},
    {QUEUE(workers, workers),                        COUNT(0, WORKERS_LIMIT),    DEFAULT("0"),      ROLL},
    {QUEUE(env, env), QUEUE_LIST(config_check_env_name, env_count), ONLY(EXEC_COPROCESS), DEFAULT("{}"), ROLL},
    {QUEUE(concurrency, concurrency),                COUNT(0, INT_MAX),          DEFAULT("0"),      ROLL},
    {QUEUE(rate, rate),                        STRING(config_check_rate),        DEFAULT(""),       ROLL},
    {SCHEDULE(cron, cron),                         STRING(config_check_cron),    DEFAULT(NULL),     RELOAD},
    {SCHEDULE(every, every),                       STRING(config_check_every),   DEFAULT(NULL),     RELOAD},
    {SCHEDULE(queue, queue),                       STRING(config_check_queue_name), DEFAULT(NULL),  RELOAD},
    {SCHEDULE(payload, payload),                   STRING(config_check_json),    DEFAULT("{}"),     RELOAD},
    {SCHEDULE(priority, priority),                 COUNT(INT_MIN, INT_MAX),      DEFAULT("0"),      RELOAD},
    {SCHEDULE(timezone, timezone),                 STRING(config_check_zone),    DEFAULT("UTC"),    RELOAD},
    {IN(http, listen, listen),                       STRING(config_check_listen), DEFAULT("0.0.0.0:9187"), RESTART},
    {IN(web, listen, listen),                        STRING(config_check_listen), DEFAULT("127.0.0.1:9188"), RESTART},
    {IN(web, token_file, token_file),                          STRING(NULL),     DEFAULT(""),       RESTART},
    {IN(web, public_read, public_read),                        BOOL,             DEFAULT("false"),  RESTART},
    {IN(log, level, level),                                    ENUM(log_levels), DEFAULT("info"),   ROLL},
    {IN(log, format, format),                                  ENUM(log_formats), DEFAULT("json"),  ROLL},
};
/* clang-format on */

const size_t config_key_count = sizeof config_keys / sizeof config_keys[0];

const struct config_key *config_key_find(const char *section, const char *name)
{
    for (size_t i = 0; i < config_key_count; i++)
        if (strcmp(config_keys[i].section, section) == 0 && strcmp(config_keys[i].name, name) == 0)
            return &config_keys[i];
    return NULL;
}

bool config_key_is_queue(const struct config_key *key)
{
    return strcmp(key->section, "queue") == 0;
}

bool config_key_is_schedule(const struct config_key *key)
{
    return strcmp(key->section, "schedule") == 0;
}

bool config_key_is_global(const struct config_key *key)
{
    return !config_key_is_queue(key) && !config_key_is_schedule(key);
}

/* The handler's word in the file (handler_words above). */
const char *config_handler_name(enum handler_kind kind)
{
    for (const struct config_word *w = handler_words; w->word != NULL; w++)
        if (w->value == (int)kind)
            return w->word;
    return "unknown";
}

const char *config_key_reference_name(const struct config_key *key, char *buf, size_t len)
{
    snprintf(buf, len, "%s%s.%s", key->section, config_key_is_global(key) ? "" : " \"NAME\"",
             key->name);
    return buf;
}

const char *config_key_reference_default(const struct config_key *key, char *buf, size_t len)
{
    if (key->def == NULL)
        snprintf(buf, len, "—");
    else if (key->type == CONFIG_STRING || key->type == CONFIG_ENUM ||
             (key->type == CONFIG_COUNT && (key->def[0] < '0' || key->def[0] > '9')))
        snprintf(buf, len, "\"%s\"", key->def);
    else
        snprintf(buf, len, "%s", key->def);
    return buf;
}

void *config_key_field(const struct config_key *key, void *base)
{
    return (char *)base + key->at;
}

static const void *field_of(const struct config_key *key, const void *base)
{
    return (const char *)base + key->at;
}

static int *list_count(const struct config_key *key, void *base)
{
    return (int *)((char *)base + key->count_at);
}

static bool same_text(const char *a, const char *b)
{
    return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

bool config_key_same(const struct config_key *key, const void *a, const void *b)
{
    const void *fa = field_of(key, a), *fb = field_of(key, b);
    switch (key->type) {
    case CONFIG_BOOL:
        return *(const bool *)fa == *(const bool *)fb;
    case CONFIG_COUNT:
    case CONFIG_ENUM:
        return *(const int *)fa == *(const int *)fb;
    case CONFIG_DURATION:
        return *(const int64_t *)fa == *(const int64_t *)fb;
    case CONFIG_STRING:
        return same_text(*(char *const *)fa, *(char *const *)fb);
    case CONFIG_LIST: {
        int n = *(const int *)((const char *)a + key->count_at);
        if (n != *(const int *)((const char *)b + key->count_at))
            return false;
        char *const *la = *(char **const *)fa, *const *lb = *(char **const *)fb;
        for (int i = 0; i < n; i++)
            if (!same_text(la[i], lb[i]))
                return false;
        return true;
    }
    }
    return false;
}

void config_key_keep(const struct config_key *key, void *running, void *fresh)
{
    void *fr = config_key_field(key, running), *ff = config_key_field(key, fresh);
    switch (key->type) {
    case CONFIG_STRING: {
        char *swap = *(char **)fr;
        *(char **)fr = *(char **)ff;
        *(char **)ff = swap;
        return;
    }
    case CONFIG_LIST: {
        char **swap = *(char ***)fr;
        *(char ***)fr = *(char ***)ff;
        *(char ***)ff = swap;
        int count = *list_count(key, running);
        *list_count(key, running) = *list_count(key, fresh);
        *list_count(key, fresh) = count;
        return;
    }
    case CONFIG_BOOL:
    case CONFIG_COUNT:
    case CONFIG_ENUM:
    case CONFIG_DURATION:
        memcpy(ff, fr, key->size);
        return;
    }
}

void config_key_free(const struct config_key *key, void *base)
{
    void *field = config_key_field(key, base);
    if (key->type == CONFIG_STRING) {
        free(*(char **)field);
    } else if (key->type == CONFIG_LIST) {
        char **list = *(char ***)field;
        for (int i = 0; list != NULL && i < *list_count(key, base); i++)
            free(list[i]);
        free(list);
    }
}

/* ---- reloads --------------------------------------------------------------- */

/* Whether every key of `apply` is the same in a and b (`queue`: the queue
 * keys of two queue_config, else the others of two pgwork_config). */
static bool same_keys(enum config_apply apply, bool queue, const void *a, const void *b)
{
    for (size_t i = 0; i < config_key_count; i++) {
        const struct config_key *k = &config_keys[i];
        if (k->apply == apply && (queue ? config_key_is_queue(k) : config_key_is_global(k)) &&
            !config_key_same(k, a, b))
            return false;
    }
    return true;
}

bool config_worker_view_equal(const struct pgwork_config *a, const struct pgwork_config *b)
{
    if (a->queue_count != b->queue_count || !same_keys(CONFIG_ROLL, false, a, b))
        return false;
    for (int i = 0; i < a->queue_count; i++)
        if (strcmp(a->queues[i].name, b->queues[i].name) != 0 ||
            !same_keys(CONFIG_ROLL, true, &a->queues[i], &b->queues[i]))
            return false;
    return true;
}

void config_keep_restart_only(struct pgwork_config *running, struct pgwork_config *fresh,
                              char *changed, size_t len)
{
    changed[0] = '\0';
    for (size_t i = 0; i < config_key_count; i++) {
        const struct config_key *k = &config_keys[i];
        if (k->apply != CONFIG_RESTART || !config_key_is_global(k) ||
            config_key_same(k, running, fresh))
            continue;
        config_key_keep(k, running, fresh);
        size_t used = strlen(changed);
        snprintf(changed + used, len - used, "%s%s.%s", used ? ", " : "", k->section, k->name);
    }
    /* workers.max kept its running value: count <= max still holds. */
    if (fresh->workers.count > fresh->workers.max)
        fresh->workers.count = fresh->workers.max;
}
