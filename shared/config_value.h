/*
 * config_value.h — one value of the config file, as the operator wrote it,
 * turned into what the typed config holds, or a reason why not.
 *
 * Pure functions: no libconfuse state, no file, no line. Each converter
 * returns 0 and stores the value, or -1 and writes what is wrong into
 * `why` ("must be an integer (got \"x\")"); config.c prefixes the file, the
 * line and the key. Part of config_load(): the key table (config_keys.c)
 * names one converter per type, and its checks are declared here.
 */
#ifndef PGWORK_CONFIG_VALUE_H
#define PGWORK_CONFIG_VALUE_H

#include <stdbool.h>
#include <stddef.h>

/* Bytes of a value echoed in a message; a quoted value needs up to
 * CONFIG_SHOW_MAX * 4 + 8 bytes (control bytes become \xNN). */
#define CONFIG_SHOW_MAX 64

/* The environment variable holding the connection string when
 * database.conninfo is empty. */
#define CONFIG_CONNINFO_ENV "PGWORK_DATABASE_URL"

/* A year in milliseconds: keeps now + a duration far from overflow. */
#define CONFIG_DURATION_MAX_MS (8760LL * 3600 * 1000)

/* A word a key accepts and the number it stands for; lists of them end
 * with {NULL, 0}. */
struct config_word {
    const char *word;
    int value;
};

/* Quote a value from the file for a message: escapes quotes, backslashes
 * and control bytes, and cuts it at CONFIG_SHOW_MAX bytes — names can be
 * hostile. */
const char *config_value_show(const char *value, char *buf, size_t len);

/* A duration in the largest unit that divides it ("90s", "2h"). */
const char *config_value_show_duration(long ms, char *buf, size_t len);

/* An integer in lo..hi, or one of `words` (NULL = numbers only). */
int config_value_count(const char *text, long lo, long hi, const struct config_word *words,
                       long *out, char *why, size_t len);

/* A duration (config_parse_duration) of lo..hi milliseconds. */
int config_value_duration(const char *text, long lo, long hi, long *out, char *why, size_t len);

/* true/false (libconfuse's spellings: also yes/no, on/off). */
int config_value_bool(const char *text, bool *out, char *why, size_t len);

/* One of `words`. */
int config_value_word(const char *text, const struct config_word *words, long *out, char *why,
                      size_t len);

/* The checks a string or list key may name: 0, or -1 and why. */
typedef int config_check_fn(const char *value, char *why, size_t len);

/* A LISTEN channel: 1..63 bytes, no control characters. */
int config_check_channel(const char *value, char *why, size_t len);

/* "" or host:port, host non-empty ("[v6addr]" for IPv6), port 1..65535. */
int config_check_listen(const char *value, char *why, size_t len);

/* Schedules: a cron expression (schedule.h), an `every` duration of
 * 1s..366d, a zone of the tz database, a JSON payload, a queue name
 * (config_queue_name_problem). */
int config_check_cron(const char *value, char *why, size_t len);
int config_check_every(const char *value, char *why, size_t len);
int config_check_zone(const char *value, char *why, size_t len);
int config_check_json(const char *value, char *why, size_t len);
int config_check_queue_name(const char *value, char *why, size_t len);
/* "" or a rate: N/PERIOD, N in 1..1000000, PERIOD a duration of 1 ms to
 * a day ("100/1m", "5/1s"). */
int config_check_rate(const char *value, char *why, size_t len);

/* A shell variable name that is no credential (config_env_forbidden). */
int config_check_env_name(const char *value, char *why, size_t len);

/*
 * The one rule for queue names, for the config and the CLI's enqueue: NULL
 * if name is acceptable, else why not, as a predicate ("is empty", "is
 * longer than 1024 bytes", "is not valid UTF-8", "contains control
 * characters") for the caller's subject ("queue name ...", "it ...").
 * Refused: the empty name, more than CONFIG_QUEUE_NAME_MAX bytes, bytes
 * that are not UTF-8, C0 and C1 control characters and DEL. Anything else
 * is a name, quotes, backslashes, spaces, '*' and SQL included: the name
 * reaches logs, metrics labels and the NOTIFY payload, always escaped or
 * as a parameter, never spliced. The listener needs no check of its own:
 * a notification wakes only a queue whose name equals a configured one.
 */
const char *config_queue_name_problem(const char *name);

#endif
