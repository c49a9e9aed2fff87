/*
 * config.c — read the libconfuse file into an immutable struct pgwork_config.
 *
 * Every key is a line of the table in config_keys.c; this file turns that
 * table into libconfuse's options, copies the parsed values into the typed
 * struct and compares two configs for a reload, key by key, without naming
 * a key except in the rules between keys.
 *
 * The file is read once into memory and handed to libconfuse. Every value
 * goes through one parse callback (the key's converter, config_value.c,
 * plus the line it is on) and every section through a validate callback
 * (rules between keys of the section) while libconfuse still knows where
 * it is; the rule spanning sections (queue.workers <= workers.max) runs
 * after the parse. The result is copied into the typed struct
 * (config_copy.c) and the cfg_t is freed: nothing of libconfuse outlives config_load(). Errors are
 * one line "file:line: key: what is wrong" in the caller's buffer; nothing is ever printed.
 * libconfuse's line numbers are corrected by config_lines.c.
 *
 * Not reentrant: libconfuse's lexer is global, and its callbacks carry no
 * user pointer, so one load at a time uses the static `ctx` below.
 */
#include "config.h"

#include <confuse.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_copy.h"
#include "config_keys.h"
#include "config_lines.h"
#include "config_value.h"
#include "text.h"

#define STR_(x) #x
#define STR(x) STR_(x)

#define FILE_MAX (1024 * 1024)             /* a config file, not a data file */
#define KEY_MAX (CONFIG_SHOW_MAX * 4 + 64) /* `queue "<escaped name>".key` */
#define WHY_MAX 512                        /* a converter's message */
#define OPTS_MAX 64                        /* libconfuse options: keys + one end per section */
/* libconfuse stores integers as long; durations in ms need 64 bits. */
_Static_assert(sizeof(long) >= sizeof(int64_t), "long must hold milliseconds");

/* Where a key was set: for error lines and to refuse a key given twice. */
struct key_line {
    const cfg_t *sec;
    const char *key;
    int line;
};

struct load_ctx {
    const char *path; /* as given, for messages */
    char *err;
    size_t errlen;
    bool failed; /* first error wins: later ones are consequences */

    struct config_lines lines; /* the file's comments, for file_line() */

    struct key_line *keys;
    size_t key_count;
    size_t key_cap;
};

static struct load_ctx *ctx;

/* ---- messages ---------------------------------------------------------- */

static int fail_at(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Record the first error as "path:line: message"; returns -1 for callers'
 * convenience. */
static int fail_at(int line, const char *fmt, ...)
{
    if (ctx == NULL || ctx->failed)
        return -1;
    ctx->failed = true;
    if (ctx->err == NULL || ctx->errlen == 0)
        return -1;

    int n;
    if (line > 0)
        n = snprintf(ctx->err, ctx->errlen, "%s:%d: ", ctx->path, line);
    else
        n = snprintf(ctx->err, ctx->errlen, "%s: ", ctx->path);
    if (n < 0 || (size_t)n >= ctx->errlen)
        return -1;

    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err + n, ctx->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* "workers", `queue "default"`, or "" for the root. Needs len >= 16. */
static const char *section_name(cfg_t *sec, char *buf, size_t len)
{
    buf[0] = '\0';
    if (sec == NULL || sec->name == NULL || strcmp(sec->name, "root") == 0)
        return buf;
    snprintf(buf, len - 8, "%s", sec->name);
    if (cfg_title(sec) != NULL) {
        size_t n = strlen(buf);
        buf[n++] = ' ';
        config_value_show(cfg_title(sec), buf + n, len - n);
    }
    return buf;
}

/* "workers.count", `queue "default".batch`. */
static const char *key_name(cfg_t *sec, const char *key, char *buf, size_t len)
{
    section_name(sec, buf, len);
    size_t n = strlen(buf);
    if (n > 0 && n + 1 < len)
        buf[n++] = '.';
    snprintf(buf + n, len - n, "%s", key);
    return buf;
}

/* ---- line numbers -------------------------------------------------------- */

/* libconfuse's line number -> the file's (config_lines.c). */
static int file_line(int reported)
{
    return config_lines_file_line(ctx != NULL ? &ctx->lines : NULL, reported);
}

static const struct key_line *find_key(const cfg_t *sec, const char *key)
{
    for (size_t i = 0; ctx != NULL && i < ctx->key_count; i++)
        if (ctx->keys[i].sec == sec && strcmp(ctx->keys[i].key, key) == 0)
            return &ctx->keys[i];
    return NULL;
}

/* Line where sec.key was set, or 0 if it kept its default. */
static int key_line(const cfg_t *sec, const char *key)
{
    const struct key_line *k = find_key(sec, key);
    return k ? k->line : 0;
}

/* First line of a section we know of (its first key), else `fallback`. */
static int section_line(const cfg_t *sec, int fallback)
{
    int first = 0;
    for (size_t i = 0; ctx != NULL && i < ctx->key_count; i++)
        if (ctx->keys[i].sec == sec && (first == 0 || ctx->keys[i].line < first))
            first = ctx->keys[i].line;
    return first ? first : fallback;
}

/*
 * Remember that `key` of `sec` is set on libconfuse's current line and
 * return that line, or -1 if a scalar key (or a section) is given a second
 * time: libconfuse would silently keep the last value.
 */
static int note_key(cfg_t *sec, const char *key, int is_list)
{
    int line = file_line(sec->line);
    if (ctx == NULL)
        return line;
    const struct key_line *prev = find_key(sec, key);
    if (prev != NULL) {
        if (is_list)
            return line;
        char name[KEY_MAX];
        return fail_at(line, "%s: given twice (first on line %d)",
                       key_name(sec, key, name, sizeof name), prev->line);
    }
    if (ctx->key_count == ctx->key_cap) {
        size_t cap = ctx->key_cap ? ctx->key_cap * 2 : 64;
        struct key_line *grown = realloc(ctx->keys, cap * sizeof *grown);
        if (grown == NULL)
            return fail_at(line, "out of memory");
        ctx->keys = grown;
        ctx->key_cap = cap;
    }
    ctx->keys[ctx->key_count++] = (struct key_line){sec, key, line};
    return line;
}

/* ---- libconfuse's own errors ------------------------------------------ */

/* Route libconfuse's messages (syntax, unknown keys) into ctx->err with
 * the real line number; the two common ones get our wording. */
static void report_confuse_error(cfg_t *cfg, const char *fmt, va_list ap)
{
    int line = cfg ? file_line(cfg->line) : 0;
    char where[KEY_MAX], quoted[KEY_MAX];
    section_name(cfg, where, sizeof where);

    if (strcmp(fmt, "no such option '%s'") == 0) {
        const char *name = va_arg(ap, const char *);
        if (where[0] == '\0')
            fail_at(line, "unknown section %s", config_value_show(name, quoted, sizeof quoted));
        else
            fail_at(line, "%s: unknown key %s", where,
                    config_value_show(name, quoted, sizeof quoted));
        return;
    }
    if (strcmp(fmt, "found duplicate title '%s'") == 0) {
        const char *name = va_arg(ap, const char *);
        /* libconfuse does not say which kind of section: a schedule if
         * only a schedule has that name so far (queue otherwise). */
        const char *kind = "queue";
        if (cfg != NULL && cfg_getopt(cfg, "schedule") != NULL &&
            cfg_gettsec(cfg, "schedule", name) != NULL && cfg_gettsec(cfg, "queue", name) == NULL)
            kind = "schedule";
        fail_at(line, "%s %s: duplicate %s name", kind,
                config_value_show(name, quoted, sizeof quoted), kind);
        return;
    }
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    /* libconfuse quotes the offending token raw: keep the error one line
     * of printable text. */
    for (char *c = msg; *c != '\0'; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
    fail_at(line, "%s%s%s", where, where[0] ? ": " : "", msg);
}

/* ---- values --------------------------------------------------------------- */

/*
 * Convert `text` by the key's type into what libconfuse keeps for it: a
 * long (counts, durations, enums), a cfg_bool_t, or the text itself.
 */
static int convert(const struct config_key *k, const char *text, void *result, char *why,
                   size_t len)
{
    switch (k->type) {
    case CONFIG_BOOL: {
        bool b;
        if (config_value_bool(text, &b, why, len) != 0)
            return -1;
        *(cfg_bool_t *)result = b ? cfg_true : cfg_false;
        return 0;
    }
    case CONFIG_COUNT:
        return config_value_count(text, k->lo, k->hi, k->words, result, why, len);
    case CONFIG_DURATION:
        return config_value_duration(text, k->lo, k->hi, result, why, len);
    case CONFIG_ENUM:
        return config_value_word(text, k->words, result, why, len);
    case CONFIG_STRING:
    case CONFIG_LIST:
        if (k->check != NULL && k->check(text, why, len) != 0)
            return -1;
        *(const char **)result = text;
        return 0;
    }
    snprintf(why, len, "has no type");
    return -1;
}

/* libconfuse's one value callback, for every key: note the line, then
 * convert by the key's table line. */
static int parse_value(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
    const struct config_key *k = config_key_find(cfg->name, opt->name);
    int line = note_key(cfg, opt->name, k != NULL && k->type == CONFIG_LIST);
    if (line < 0)
        return -1;
    char why[WHY_MAX] = "is not in the key table";
    if (k != NULL && convert(k, value, result, why, sizeof why) == 0)
        return 0;
    char key[KEY_MAX];
    return fail_at(line, "%s: %s", key_name(cfg, opt->name, key, sizeof key), why);
}

/* ---- section rules ------------------------------------------------------- */

/*
 * lo_key <= hi_key within one section. The message names the key the file
 * set (lo_key when both are), at its line; `fallback` is the line libconfuse
 * is on when neither has one.
 */
static int check_order(cfg_t *sec, const char *lo_key, const char *hi_key, int fallback)
{
    long lo = cfg_getint(sec, lo_key);
    long hi = cfg_getint(sec, hi_key);
    if (lo <= hi)
        return 0;

    char lo_text[32], hi_text[32], key[KEY_MAX], other[KEY_MAX];
    const struct config_key *k = config_key_find(sec->name, lo_key);
    if (k != NULL && k->type == CONFIG_DURATION) {
        config_value_show_duration(lo, lo_text, sizeof lo_text);
        config_value_show_duration(hi, hi_text, sizeof hi_text);
    } else {
        snprintf(lo_text, sizeof lo_text, "%ld", lo);
        snprintf(hi_text, sizeof hi_text, "%ld", hi);
    }
    int lo_line = key_line(sec, lo_key);
    int hi_line = key_line(sec, hi_key);
    if (lo_line != 0 || hi_line == 0)
        return fail_at(lo_line ? lo_line : fallback, "%s: must not exceed %s (got %s > %s)",
                       key_name(sec, lo_key, key, sizeof key),
                       key_name(sec, hi_key, other, sizeof other), lo_text, hi_text);
    return fail_at(hi_line, "%s: must not be less than %s (got %s < %s)",
                   key_name(sec, hi_key, key, sizeof key),
                   key_name(sec, lo_key, other, sizeof other), hi_text, lo_text);
}

/* A plain section given twice would be merged by libconfuse; refuse it. */
static int section_once(cfg_t *root, cfg_opt_t *opt)
{
    return note_key(root, opt->name, 0) < 0 ? -1 : 0;
}

static int validate_plain_section(cfg_t *root, cfg_opt_t *opt)
{
    return section_once(root, opt);
}

static int validate_listener(cfg_t *root, cfg_opt_t *opt)
{
    if (section_once(root, opt) != 0)
        return -1;
    cfg_t *sec = cfg_opt_getnsec(opt, 0);
    int line = file_line(root->line);
    return check_order(sec, "reconnect_min", "reconnect_max", line);
}

static int validate_workers(cfg_t *root, cfg_opt_t *opt)
{
    if (section_once(root, opt) != 0)
        return -1;
    cfg_t *sec = cfg_opt_getnsec(opt, 0);
    int line = file_line(root->line);
    if (check_order(sec, "min", "max", line) != 0 || check_order(sec, "min", "count", line) != 0 ||
        check_order(sec, "count", "max", line) != 0 ||
        check_order(sec, "restart_delay_min", "restart_delay_max", line) != 0)
        return -1;
    return 0;
}

static int blank(const char *s)
{
    for (; *s != '\0'; s++)
        if (!isspace((unsigned char)*s))
            return 0;
    return 1;
}

/* Called when a queue section closes: the newest one is the last value. */
static int validate_queue(cfg_t *root, cfg_opt_t *opt)
{
    cfg_t *sec = cfg_opt_getnsec(opt, cfg_opt_size(opt) - 1);
    int close_line = file_line(root->line);
    int line = section_line(sec, close_line);
    char name[KEY_MAX], key[KEY_MAX];
    section_name(sec, name, sizeof name);

    const char *title = cfg_title(sec) ? cfg_title(sec) : "";
    const char *problem = config_queue_name_problem(title);
    if (problem != NULL)
        return fail_at(line, "%s: queue name %s", name, problem);

    int kind = (int)cfg_getint(sec, "handler");
    const char *handler = config_handler_name((enum handler_kind)kind);
    const char *statement = cfg_getstr(sec, "statement");
    unsigned argc = cfg_size(sec, "command");
    int handler_line = key_line(sec, "handler") ? key_line(sec, "handler") : line;

    if (kind != HANDLER_SQL) {
        if (argc == 0)
            return fail_at(handler_line, "%s: handler %s needs a command", name, handler);
        if (cfg_getnstr(sec, "command", 0)[0] == '\0')
            return fail_at(key_line(sec, "command"), "%s: program must not be empty",
                           key_name(sec, "command", key, sizeof key));
        if (statement != NULL)
            return fail_at(key_line(sec, "statement"), "%s: only for handler sql",
                           key_name(sec, "statement", key, sizeof key));
    } else {
        if (cfg_size(sec, "env") > 0)
            return fail_at(key_line(sec, "env"), "%s: only for handler exec or coprocess",
                           key_name(sec, "env", key, sizeof key));
        if (statement == NULL || blank(statement))
            return fail_at(statement ? key_line(sec, "statement") : handler_line,
                           "%s: handler sql needs a statement", name);
        if (argc > 0)
            return fail_at(key_line(sec, "command"), "%s: only for handler exec or coprocess",
                           key_name(sec, "command", key, sizeof key));
    }
    return check_order(sec, "backoff_base", "backoff_max", close_line);
}

/* Called when a schedule section closes (the newest one is the last
 * value): its name, exactly one of cron and every, a queue; each value was
 * checked on its own line already (config_keys.c). */
static int validate_schedule(cfg_t *root, cfg_opt_t *opt)
{
    cfg_t *sec = cfg_opt_getnsec(opt, cfg_opt_size(opt) - 1);
    int line = section_line(sec, file_line(root->line));
    char name[KEY_MAX], key[KEY_MAX];
    section_name(sec, name, sizeof name);

    const char *title = cfg_title(sec) ? cfg_title(sec) : "";
    const char *problem = text_label_problem(
        title, CONFIG_SCHEDULE_NAME_MAX, "is longer than " STR(CONFIG_SCHEDULE_NAME_MAX) " bytes");
    if (problem != NULL)
        return fail_at(line, "%s: schedule name %s", name, problem);

    bool cron = cfg_getstr(sec, "cron") != NULL, every = cfg_getstr(sec, "every") != NULL;
    if (cron && every)
        return fail_at(key_line(sec, "every") > key_line(sec, "cron") ? key_line(sec, "every")
                                                                      : key_line(sec, "cron"),
                       "%s: give either cron or every, not both", name);
    if (!cron && !every)
        return fail_at(line, "%s: needs cron = \"...\" or every = DURATION", name);
    if (every && key_line(sec, "timezone") != 0)
        return fail_at(key_line(sec, "timezone"),
                       "%s: only for cron (every is aligned to the epoch, the same in every zone)",
                       key_name(sec, "timezone", key, sizeof key));
    if (cfg_getstr(sec, "queue") == NULL)
        return fail_at(line, "%s: needs queue = \"...\" (where its tasks go)", name);
    return 0;
}

/* Rules between sections, once the whole file is read. */
static int validate_file(cfg_t *root)
{
    long max = cfg_getint(cfg_getsec(root, "workers"), "max");
    for (unsigned i = 0; i < cfg_size(root, "queue"); i++) {
        cfg_t *sec = cfg_getnsec(root, "queue", i);
        long workers = cfg_getint(sec, "workers");
        if (workers > max) {
            char key[KEY_MAX];
            return fail_at(key_line(sec, "workers"),
                           "%s: must not exceed workers.max (got %ld > %ld)",
                           key_name(sec, "workers", key, sizeof key), workers, max);
        }
    }
    return 0;
}

/* ---- libconfuse's options, from the table -------------------------------- */

/* The sections, in the order libconfuse is given them, and their rules. */
static const struct section {
    const char *name;
    cfg_flag_t flags;
    cfg_validate_callback_t validate;
} sections[] = {
    {"database", CFGF_NONE, validate_plain_section},
    {"listener", CFGF_NONE, validate_listener},
    {"workers", CFGF_NONE, validate_workers},
    {"queue", CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES, validate_queue},
    {"schedule", CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES, validate_schedule},
    {"http", CFGF_NONE, validate_plain_section},
    {"web", CFGF_NONE, validate_plain_section},
    {"log", CFGF_NONE, validate_plain_section},
};
#define SECTION_COUNT (sizeof sections / sizeof sections[0])

struct options {
    cfg_opt_t keys[OPTS_MAX];
    cfg_opt_t root[SECTION_COUNT + 1];
};

/* The libconfuse option of one key; its default goes through the key's own
 * converter, as if the file said it. */
static int key_option(const struct config_key *k, cfg_opt_t *opt)
{
    char why[WHY_MAX] = "is unset";
    long number = 0;
    cfg_bool_t boolean = cfg_false;
    bool ok = true;
    switch (k->type) {
    case CONFIG_BOOL:
        ok = k->def != NULL && convert(k, k->def, &boolean, why, sizeof why) == 0;
        *opt = (cfg_opt_t)CFG_BOOL_CB(k->name, boolean, CFGF_NONE, parse_value);
        break;
    case CONFIG_COUNT:
    case CONFIG_DURATION:
    case CONFIG_ENUM:
        ok = k->def != NULL && convert(k, k->def, &number, why, sizeof why) == 0;
        *opt = (cfg_opt_t)CFG_INT_CB(k->name, number, CFGF_NONE, parse_value);
        break;
    case CONFIG_STRING: {
        const char *text = NULL;
        ok = k->def == NULL || convert(k, k->def, &text, why, sizeof why) == 0;
        *opt = (cfg_opt_t)CFG_STR_CB(k->name, k->def, CFGF_NONE, parse_value);
        break;
    }
    case CONFIG_LIST: /* lists start empty */
        ok = k->def == NULL || strcmp(k->def, "{}") == 0;
        snprintf(why, sizeof why, "a list's default must be {}");
        *opt = (cfg_opt_t)CFG_STR_LIST_CB(k->name, NULL, CFGF_NONE, parse_value);
        break;
    }
    if (!ok)
        return fail_at(0, "internal error: default of %s.%s %s", k->section, k->name, why);
    return 0;
}

/* Each section's keys, in table order, then the sections. */
static int build_options(struct options *o)
{
    if (config_key_count + SECTION_COUNT > OPTS_MAX)
        return fail_at(0, "internal error: more keys than OPTS_MAX");
    size_t n = 0, placed = 0;
    for (size_t s = 0; s < SECTION_COUNT; s++) {
        cfg_opt_t *first = &o->keys[n];
        for (size_t i = 0; i < config_key_count; i++) {
            if (strcmp(config_keys[i].section, sections[s].name) != 0)
                continue;
            if (key_option(&config_keys[i], &o->keys[n++]) != 0)
                return -1;
            placed++;
        }
        o->keys[n++] = (cfg_opt_t)CFG_END();
        o->root[s] = (cfg_opt_t)CFG_SEC(sections[s].name, first, sections[s].flags);
    }
    o->root[SECTION_COUNT] = (cfg_opt_t)CFG_END();
    if (placed != config_key_count)
        return fail_at(0, "internal error: a key's section is not in the section list");
    return 0;
}

/* A libconfuse parser for the table's options, our callbacks set. cfg_init()
 * copies the option tables, so they can live on the caller's stack. */
static cfg_t *init_parser(struct options *o)
{
    if (build_options(o) != 0)
        return NULL;
    cfg_t *root = cfg_init(o->root, CFGF_NONE);
    if (root == NULL) {
        fail_at(0, "out of memory");
        return NULL;
    }
    cfg_set_error_function(root, report_confuse_error);
    for (size_t s = 0; s < SECTION_COUNT; s++)
        cfg_set_validate_func(root, sections[s].name, sections[s].validate);
    return root;
}

/* ---- loading ------------------------------------------------------------- */

/* The whole file as a string; libconfuse parses from memory so the lines
 * we scan for comments are exactly the ones it reads. */
static char *read_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fail_at(0, "cannot open: %s", strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        fail_at(0, "cannot read: %s", strerror(errno));
        close(fd);
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        fail_at(0, "cannot read: %s", strerror(EISDIR));
        close(fd);
        return NULL;
    }

    size_t cap = FILE_MAX + 2, len = 0; /* +1 detects a file too large, +1 the NUL */
    char *buf = malloc(cap);
    if (buf == NULL) {
        fail_at(0, "out of memory");
        close(fd);
        return NULL;
    }
    for (;;) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fail_at(0, "cannot read: %s", strerror(errno));
            break;
        }
        len += (size_t)n;
        if (len > FILE_MAX) {
            fail_at(0, "file is larger than %d bytes", FILE_MAX);
            break;
        }
        if (n == 0) {
            close(fd);
            buf[len] = '\0';
            if (strlen(buf) == len)
                return buf;
            fail_at(0, "file contains a NUL byte");
            free(buf);
            return NULL;
        }
    }
    close(fd);
    free(buf);
    return NULL;
}

/* Parse `text` (the file's contents) and build the config. */
static struct pgwork_config *parse(const char *text, const char *path)
{
    struct options options;
    cfg_t *root = init_parser(&options);
    if (root == NULL)
        return NULL;

    struct pgwork_config *config = NULL;
    char why[WHY_MAX] = "";
    /* An empty buffer is skipped: fmemopen may refuse a size of 0. */
    int rc = text[0] != '\0' ? cfg_parse_buf(root, text) : CFG_SUCCESS;
    if (rc == CFG_FILE_ERROR)
        fail_at(0, "cannot parse: %s", strerror(errno));
    else if (rc != CFG_SUCCESS)
        fail_at(0, "syntax error"); /* only if no callback said more */
    else if (validate_file(root) == 0 &&
             (config = config_copy(root, path, why, sizeof why)) == NULL)
        fail_at(0, "%s", why[0] != '\0' ? why : "out of memory");
    cfg_free(root);
    return config;
}

int config_load(const char *path, struct pgwork_config **out, char *err, size_t errlen)
{
    int from_file = path != NULL && path[0] != '\0';
    struct load_ctx load = {
        .path = from_file ? path : "(defaults)",
        .err = err,
        .errlen = errlen,
    };
    if (err != NULL && errlen > 0)
        err[0] = '\0';

    ctx = &load;
    char *text = from_file ? read_file(path) : strdup("");
    struct pgwork_config *config = NULL;
    if (text == NULL) {
        if (!from_file)
            fail_at(0, "out of memory"); /* read_file() said why otherwise */
    } else {
        /* A byte-order mark some editors add is not part of the syntax. */
        const char *body = strncmp(text, "\xef\xbb\xbf", 3) == 0 ? text + 3 : text;
        int unclosed_line;
        if (config_lines_scan(&load.lines, body, &unclosed_line) != 0)
            fail_at(0, "out of memory");
        else if (unclosed_line > 0)
            fail_at(unclosed_line, "section opened here is never closed (missing '}')");
        else
            config = parse(body, from_file ? path : "");
    }
    ctx = NULL;

    free(text);
    config_lines_free(&load.lines);
    free(load.keys);
    if (config == NULL)
        return -1;
    *out = config;
    return 0;
}
