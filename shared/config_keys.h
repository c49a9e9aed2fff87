/*
 * config_keys.h — every key of the config file, one table line each.
 *
 * The table (config_keys.c) is the only place a key is spelled: its
 * section and name, its type, where it lands in the typed struct, its
 * default as an operator writes it, its bounds, and what a SIGHUP does with
 * a change. config.c derives the libconfuse options, config_copy.c the typed copy, and
 * the reload comparison from it; a unit test checks the README's
 * configuration reference against it, both ways. A new key is one line
 * there plus the code that uses its field. Rules between keys (min <= max,
 * a handler's required keys) stay code in config.c.
 */
#ifndef PGWORK_CONFIG_KEYS_H
#define PGWORK_CONFIG_KEYS_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "config_value.h"

enum config_type {
    CONFIG_BOOL,     /* true | false -> bool */
    CONFIG_COUNT,    /* integer in lo..hi, or one of `words` if any -> int */
    CONFIG_DURATION, /* "500ms", "15s", "5m", "1h", bare seconds; lo..hi ms -> int64_t */
    CONFIG_ENUM,     /* one of `words` -> int (an enum) */
    CONFIG_STRING,   /* text, `check`ed if set -> char * (NULL while unset) */
    CONFIG_LIST,     /* {"a", "b"}, each `check`ed -> NULL-terminated char **, count at count_at */
};

/* What a SIGHUP does with a changed value. */
enum config_apply {
    CONFIG_RELOAD,  /* applied by the supervisor; workers keep running */
    CONFIG_ROLL,    /* applied, and the workers are replaced one at a time (what they read) */
    CONFIG_RESTART, /* the running value stays until a restart (the log names the key) */
};

struct config_key {
    const char *section; /* "database", ...; "queue" / "schedule" for every titled section */
    const char *name;
    size_t at;   /* offset of the field: in struct pgwork_config, queue_config or schedule_config */
    size_t size; /* sizeof the field, checked against the type by the unit test */
    enum config_type type;
    long lo, hi;                     /* COUNT, DURATION (ms): the bounds */
    const struct config_word *words; /* ENUM: the choices; COUNT: words besides numbers */
    config_check_fn *check;          /* STRING, LIST (each item): NULL = any text */
    size_t count_at;                 /* LIST: offset of its int count, beside `at` */
    unsigned handlers; /* queue keys: 1 << handler_kind of the handlers using it; 0 = all */
    const char *def;   /* default as written in the file, unquoted; NULL = unset */
    enum config_apply apply;
};

extern const struct config_key config_keys[];
extern const size_t config_key_count;

/* The key `name` of section `section`, or NULL. */
const struct config_key *config_key_find(const char *section, const char *name);

/* Whether the key belongs to each queue "NAME" section (struct
 * queue_config), to each schedule "NAME" section (struct schedule_config),
 * or to neither (struct pgwork_config). */
bool config_key_is_queue(const struct config_key *key);
bool config_key_is_schedule(const struct config_key *key);
bool config_key_is_global(const struct config_key *key);

/* "workers.count", `queue "NAME".batch`: how the README spells it. */
const char *config_key_reference_name(const struct config_key *key, char *buf, size_t len);

/* The default as the README shows it: `""`, `"exec"`, `60s`, `{}`, or — if
 * unset. */
const char *config_key_reference_default(const struct config_key *key, char *buf, size_t len);

/* The key's field in a struct pgwork_config (or struct queue_config). */
void *config_key_field(const struct config_key *key, void *base);

/* Whether the key's field holds the same value in a and b ("" = NULL). */
bool config_key_same(const struct config_key *key, const void *a, const void *b);

/* Give `fresh` the value `running` has; pointers are swapped, so both
 * structs keep owning what they free. */
void config_key_keep(const struct config_key *key, void *running, void *fresh);

/* Free what the key's field owns (strings and lists). */
void config_key_free(const struct config_key *key, void *base);

#endif
