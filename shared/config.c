/*
 * config.c — read the libconfuse file into an immutable struct pgwork_config.
 *
 * The file is read once into memory and handed to libconfuse. Every value
 * goes through a parse callback (convert, range-check, remember its line)
 * and every section through a validate callback (rules between keys of the
 * section) while libconfuse still knows where it is; the rule spanning
 * sections (queue.workers <= workers.max) runs after the parse. The result
 * is copied into the typed struct and the cfg_t is freed: nothing of
 * libconfuse outlives config_load(). Errors are one line "file:line: key:
 * what is wrong" in the caller's buffer; nothing is ever printed.
 *
 * Not reentrant: libconfuse's lexer is global, and its callbacks carry no
 * user pointer, so one load at a time uses the static `ctx` below.
 *
 * Every key (R = applied on SIGHUP, S = takes a restart):
 *
 *   database.conninfo           S  ""              "" = $PGWORK_DATABASE_URL, then libpq's PG*
 *   database.listen_conninfo    S  ""              "" = conninfo (set it to bypass PgBouncer)
 *   database.synchronous_commit S  false           false: worker transactions run with it off
 *   listener.enabled            R  true            false: poll at workers.poll_interval only
 *   listener.channel            R  "pgwork_tasks"  1..63 bytes, no control characters
 *   listener.reconnect_min      R  500ms           first reconnect delay, <= reconnect_max
 *   listener.reconnect_max      R  60s             reconnect delay cap
 *   listener.keepalive_interval R  30s             idle time before a self-notification
 *   listener.keepalive_timeout  R  5s              wait for it before reconnecting
 *   workers.count               R  4               1..1024, min <= count <= max
 *   workers.min                 R  1               lower bound for TTOU, >= 1
 *   workers.max                 S  64              upper bound for TTIN; sizes shared memory
 *   workers.poll_interval       R  1s              polling while the listener is down
 *   workers.safety_poll_interval R 60s             polling while the listener is up
 *   workers.restart_delay_min   R  100ms           first restart delay of a crashed worker
 *   workers.restart_delay_max   R  30s             restart delay cap
 *   workers.shutdown_timeout    R  25s             graceful stop before SIGKILL
 *   workers.lease               R  5m              locked_until of a claimed task
 *   queue "NAME".handler        R  "exec"          exec | sql | coprocess (changes roll the
 * workers) queue "NAME".command        R  {}              argv, no shell; required for exec and
 * coprocess queue "NAME".statement      R  (unset)         sql: $1 payload, $2 id; required for sql
 *   queue "NAME".batch          R  10              tasks per claim, 1..1000
 *   queue "NAME".timeout        R  60s             per task; 0 = none
 *   queue "NAME".max_attempts   R  25              >= 1
 *   queue "NAME".backoff_base   R  1s              first retry delay, <= backoff_max
 *   queue "NAME".backoff_max    R  1h              retry delay cap
 *   queue "NAME".keep_done      R  true            false: delete finished tasks
 *   queue "NAME".workers        R  0               0 = every worker; <= workers.max
 *   queue "NAME".env            R  {}              exec, coprocess: variable names handlers get;
 *                                                  never a credential (config_env_forbidden)
 *   http.listen                 S  "0.0.0.0:9187"  "" = no endpoint; else host:port
 *   log.level                   R  "info"          debug | info | warn | error
 *   log.format                  R  "json"          json | text
 *
 * Durations accept ms, s, m, h, quoted or not; a bare number is seconds.
 * All are > 0 (queue.timeout may be 0) and at most 8760h.
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

#include "config_lines.h"
#include "log.h"

#define WORKERS_LIMIT 1024
#define BATCH_LIMIT 1000
#define CHANNEL_MAX 63                         /* PostgreSQL's NAMEDATALEN - 1 */
#define DURATION_MAX_MS (8760LL * 3600 * 1000) /* a year: keeps now + d far from overflow */
#define FILE_MAX (1024 * 1024)                 /* a config file, not a data file */
#define SHOW_MAX 64                            /* bytes of a value echoed in an error */
#define KEY_MAX (SHOW_MAX * 4 + 64)            /* `queue "<escaped name>".key` */
#define DEFAULT_CONNINFO_ENV "PGWORK_DATABASE_URL"
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

/* Quote a value from the file for a message: escapes quotes, backslashes
 * and control bytes, and cuts it at SHOW_MAX bytes — names can be hostile. */
static const char *show(const char *value, char *buf, size_t len)
{
    size_t o = 0;
    buf[o++] = '"';
    for (size_t i = 0; value != NULL && value[i] != '\0'; i++) {
        unsigned char c = (unsigned char)value[i];
        if (i >= SHOW_MAX || o + 8 >= len) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(buf + o, len - o, "\\x%02x", c);
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
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
        show(cfg_title(sec), buf + n, len - n);
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

/* A duration in the largest unit that divides it, for messages. */
static const char *show_duration(long ms, char *buf, size_t len)
{
    if (ms != 0 && ms % 3600000 == 0)
        snprintf(buf, len, "%ldh", ms / 3600000);
    else if (ms != 0 && ms % 60000 == 0)
        snprintf(buf, len, "%ldm", ms / 60000);
    else if (ms != 0 && ms % 1000 == 0)
        snprintf(buf, len, "%lds", ms / 1000);
    else
        snprintf(buf, len, "%ldms", ms);
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
            fail_at(line, "unknown section %s", show(name, quoted, sizeof quoted));
        else
            fail_at(line, "%s: unknown key %s", where, show(name, quoted, sizeof quoted));
        return;
    }
    if (strcmp(fmt, "found duplicate title '%s'") == 0) {
        const char *name = va_arg(ap, const char *);
        fail_at(line, "queue %s: duplicate queue name", show(name, quoted, sizeof quoted));
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

/* ---- value parsers ------------------------------------------------------ */

static int parse_int(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result, long lo, long hi)
{
    int line = note_key(cfg, opt->name, 0);
    if (line < 0)
        return -1;
    char key[KEY_MAX], quoted[KEY_MAX];
    key_name(cfg, opt->name, key, sizeof key);

    const char *p = value;
    if (*p == '-' || *p == '+')
        p++;
    if (!isdigit((unsigned char)*p))
        return fail_at(line, "%s: must be an integer (got %s)", key,
                       show(value, quoted, sizeof quoted));
    while (isdigit((unsigned char)*p))
        p++;
    if (*p != '\0')
        return fail_at(line, "%s: must be an integer (got %s)", key,
                       show(value, quoted, sizeof quoted));

    errno = 0;
    long n = strtol(value, NULL, 10);
    if (errno == ERANGE || n < lo || n > hi) {
        if (hi == INT_MAX)
            return fail_at(line, "%s: must be at least %ld (got %s)", key, lo, value);
        return fail_at(line, "%s: must be between %ld and %ld (got %s)", key, lo, hi, value);
    }
    *(long *)result = n;
    return 0;
}

static int parse_worker_count(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
    return parse_int(cfg, opt, value, result, 1, WORKERS_LIMIT);
}

static int parse_queue_workers(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
    return parse_int(cfg, opt, value, result, 0, WORKERS_LIMIT);
}

static int parse_batch(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
    return parse_int(cfg, opt, value, result, 1, BATCH_LIMIT);
}

static int parse_attempts(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
    return parse_int(cfg, opt, value, result, 1, INT_MAX);
}

static int parse_duration(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result, int zero_ok)
{
    int line = note_key(cfg, opt->name, 0);
    if (line < 0)
        return -1;
    char key[KEY_MAX], quoted[KEY_MAX];
    key_name(cfg, opt->name, key, sizeof key);
    show(value, quoted, sizeof quoted);

    int64_t ms;
    if (config_parse_duration(value, &ms) != 0)
        return fail_at(line, "%s: invalid duration %s (want a number with ms, s, m or h)", key,
                       quoted);
    if (ms == 0 && !zero_ok)
        return fail_at(line, "%s: must be greater than 0 (got %s)", key, quoted);
    if (ms > DURATION_MAX_MS) {
        char max[32];
        return fail_at(line, "%s: must be at most %s (got %s)", key,
                       show_duration(DURATION_MAX_MS, max, sizeof max), quoted);
    }
    *(long *)result = (long)ms;
    return 0;
}

static int parse_positive_duration(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
    return parse_duration(cfg, opt, value, result, 0);
}

static int parse_timeout(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
    return parse_duration(cfg, opt, value, result, 1);
}

static int parse_bool(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
    int line = note_key(cfg, opt->name, 0);
    if (line < 0)
        return -1;
    int b = cfg_parse_boolean(value);
    if (b < 0) {
        char key[KEY_MAX], quoted[KEY_MAX];
        return fail_at(line, "%s: must be true or false (got %s)",
                       key_name(cfg, opt->name, key, sizeof key),
                       show(value, quoted, sizeof quoted));
    }
    *(cfg_bool_t *)result = b ? cfg_true : cfg_false;
    return 0;
}

static int parse_text(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
    if (note_key(cfg, opt->name, (opt->flags & CFGF_LIST) != 0) < 0)
        return -1;
    *(const char **)result = value;
    return 0;
}

/* One name of a queue's `env` list: a variable name as the shell writes
 * it, and never one holding a credential. Refused rather than silently
 * dropped: an operator who lists PGPASSWORD expects the handler to get it,
 * and must learn at check-config time that it never will. */
static int parse_env_name(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
    int line = note_key(cfg, opt->name, 1);
    if (line < 0)
        return -1;
    char key[KEY_MAX], quoted[KEY_MAX];
    bool ok = (isalpha((unsigned char)value[0]) || value[0] == '_') && strlen(value) <= 255;
    for (const char *c = value; ok && *c != '\0'; c++)
        ok = isalnum((unsigned char)*c) || *c == '_';
    if (!ok)
        return fail_at(
            line, "%s: %s is not a variable name (letters, digits, _; not a digit first)",
            key_name(cfg, opt->name, key, sizeof key), show(value, quoted, sizeof quoted));
    const char *why = config_env_forbidden(value);
    if (why != NULL)
        return fail_at(line, "%s: %s is never passed to handlers (%s)",
                       key_name(cfg, opt->name, key, sizeof key), value, why);
    *(const char **)result = value;
    return 0;
}

/* Accept `value` if it is one of the NULL-terminated `choices`. */
static int parse_choice(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result,
                        const char *const *choices, const char *wanted)
{
    int line = note_key(cfg, opt->name, 0);
    if (line < 0)
        return -1;
    for (const char *const *c = choices; *c != NULL; c++) {
        if (strcmp(value, *c) == 0) {
            *(const char **)result = value;
            return 0;
        }
    }
    char key[KEY_MAX], quoted[KEY_MAX];
    return fail_at(line, "%s: must be %s (got %s)", key_name(cfg, opt->name, key, sizeof key),
                   wanted, show(value, quoted, sizeof quoted));
}

static int parse_handler(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
    static const char *const choices[] = {"exec", "sql", "coprocess", NULL};
    return parse_choice(cfg, opt, value, result, choices, "exec, sql or coprocess");
}

static int parse_log_level(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
    static const char *const choices[] = {"debug", "info", "warn", "error", NULL};
    return parse_choice(cfg, opt, value, result, choices, "debug, info, warn or error");
}

static int parse_log_format(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
    static const char *const choices[] = {"json", "text", NULL};
    return parse_choice(cfg, opt, value, result, choices, "json or text");
}

static int has_control_char(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

static int parse_channel(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
    int line = note_key(cfg, opt->name, 0);
    if (line < 0)
        return -1;
    char key[KEY_MAX];
    key_name(cfg, opt->name, key, sizeof key);
    size_t len = strlen(value);
    if (len == 0)
        return fail_at(line, "%s: must not be empty", key);
    if (len > CHANNEL_MAX)
        return fail_at(line, "%s: must be at most %d bytes (got %zu)", key, CHANNEL_MAX, len);
    if (has_control_char(value))
        return fail_at(line, "%s: must not contain control characters", key);
    *(const char **)result = value;
    return 0;
}

/* "" or host:port, host non-empty ("[v6addr]" for IPv6), port 1..65535. */
static int listen_address_ok(const char *value)
{
    if (value[0] == '\0')
        return 1;
    const char *colon = strrchr(value, ':');
    if (colon == NULL || colon == value)
        return 0;
    size_t host_len = (size_t)(colon - value);
    if (value[0] == '[') {
        if (value[host_len - 1] != ']' || host_len < 3)
            return 0;
    } else if (memchr(value, ':', host_len) != NULL) {
        return 0; /* a bare IPv6 address: the port would be ambiguous */
    }
    for (size_t i = 0; i < host_len; i++)
        if (isspace((unsigned char)value[i]) || (unsigned char)value[i] < 0x20)
            return 0;
    const char *port = colon + 1;
    if (*port == '\0' || strlen(port) > 5)
        return 0;
    long n = 0;
    for (const char *p = port; *p != '\0'; p++) {
        if (!isdigit((unsigned char)*p))
            return 0;
        n = n * 10 + (*p - '0');
    }
    return n >= 1 && n <= 65535;
}

static int parse_listen(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
    int line = note_key(cfg, opt->name, 0);
    if (line < 0)
        return -1;
    if (!listen_address_ok(value)) {
        char key[KEY_MAX], quoted[KEY_MAX];
        return fail_at(
            line, "%s: must be \"\" or host:port with a port between 1 and 65535 (got %s)",
            key_name(cfg, opt->name, key, sizeof key), show(value, quoted, sizeof quoted));
    }
    *(const char **)result = value;
    return 0;
}

/* ---- section rules ------------------------------------------------------- */

/*
 * lo_key <= hi_key within one section. The message names the key the file
 * set (lo_key when both are), at its line; `fallback` is the line libconfuse
 * is on when neither has one.
 */
static int check_order(cfg_t *sec, const char *lo_key, const char *hi_key, int is_duration,
                       int fallback)
{
    long lo = cfg_getint(sec, lo_key);
    long hi = cfg_getint(sec, hi_key);
    if (lo <= hi)
        return 0;

    char lo_text[32], hi_text[32], key[KEY_MAX], other[KEY_MAX];
    if (is_duration) {
        show_duration(lo, lo_text, sizeof lo_text);
        show_duration(hi, hi_text, sizeof hi_text);
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
    return check_order(sec, "reconnect_min", "reconnect_max", 1, line);
}

static int validate_workers(cfg_t *root, cfg_opt_t *opt)
{
    if (section_once(root, opt) != 0)
        return -1;
    cfg_t *sec = cfg_opt_getnsec(opt, 0);
    int line = file_line(root->line);
    if (check_order(sec, "min", "max", 0, line) != 0 ||
        check_order(sec, "min", "count", 0, line) != 0 ||
        check_order(sec, "count", "max", 0, line) != 0 ||
        check_order(sec, "restart_delay_min", "restart_delay_max", 1, line) != 0)
        return -1;
    return 0;
}

/* Non-empty, valid UTF-8, no control characters (C0, DEL, C1): the name
 * reaches logs, metrics labels and the NOTIFY payload. Returns NULL or what
 * is wrong. */
static const char *queue_name_problem(const char *name)
{
    if (name[0] == '\0')
        return "queue name must not be empty";

    const unsigned char *s = (const unsigned char *)name;
    while (*s != '\0') {
        unsigned c = *s;
        unsigned cp;
        int more;
        if (c < 0x80) {
            cp = c;
            more = 0;
        } else if (c >= 0xc2 && c <= 0xdf) {
            cp = c & 0x1f;
            more = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            cp = c & 0x0f;
            more = 2;
        } else if (c >= 0xf0 && c <= 0xf4) {
            cp = c & 0x07;
            more = 3;
        } else {
            return "queue name is not valid UTF-8";
        }
        s++;
        for (int i = 0; i < more; i++, s++) {
            if ((*s & 0xc0) != 0x80)
                return "queue name is not valid UTF-8";
            cp = (cp << 6) | (*s & 0x3f);
        }
        /* Overlong forms, surrogates and values past U+10FFFF. */
        if ((more == 2 && cp < 0x800) || (more == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return "queue name is not valid UTF-8";
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
            return "queue name must not contain control characters";
    }
    return NULL;
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
    if (strlen(title) > CONFIG_QUEUE_NAME_MAX)
        return fail_at(line, "%s: queue name is longer than %d bytes", name, CONFIG_QUEUE_NAME_MAX);
    const char *problem = queue_name_problem(title);
    if (problem != NULL)
        return fail_at(line, "%s: %s", name, problem);

    const char *handler = cfg_getstr(sec, "handler");
    const char *statement = cfg_getstr(sec, "statement");
    unsigned argc = cfg_size(sec, "command");
    int handler_line = key_line(sec, "handler") ? key_line(sec, "handler") : line;

    if (strcmp(handler, "exec") == 0 || strcmp(handler, "coprocess") == 0) {
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
    return check_order(sec, "backoff_base", "backoff_max", 1, close_line);
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

/* ---- the typed copy ---------------------------------------------------- */

static int copy_string(char **dst, const char *src)
{
    *dst = strdup(src ? src : "");
    return *dst ? 0 : -1;
}

static int copy_queue(struct queue_config *q, cfg_t *sec)
{
    if (copy_string(&q->name, cfg_title(sec)) != 0)
        return -1;
    const char *handler = cfg_getstr(sec, "handler");
    q->handler = strcmp(handler, "sql") == 0         ? HANDLER_SQL
                 : strcmp(handler, "coprocess") == 0 ? HANDLER_COPROCESS
                                                     : HANDLER_EXEC;
    if (q->handler != HANDLER_SQL) {
        unsigned argc = cfg_size(sec, "command");
        q->command = calloc(argc + 1, sizeof *q->command);
        if (q->command == NULL)
            return -1;
        for (unsigned i = 0; i < argc; i++) {
            if (copy_string(&q->command[i], cfg_getnstr(sec, "command", i)) != 0)
                return -1;
            q->command_argc++;
        }
        unsigned envc = cfg_size(sec, "env");
        q->env = calloc(envc + 1, sizeof *q->env);
        if (q->env == NULL)
            return -1;
        for (unsigned i = 0; i < envc; i++) {
            if (copy_string(&q->env[i], cfg_getnstr(sec, "env", i)) != 0)
                return -1;
            q->env_count++;
        }
    } else if (copy_string(&q->statement, cfg_getstr(sec, "statement")) != 0) {
        return -1;
    }
    q->batch = (int)cfg_getint(sec, "batch");
    q->timeout_ms = cfg_getint(sec, "timeout");
    q->max_attempts = (int)cfg_getint(sec, "max_attempts");
    q->backoff_base_ms = cfg_getint(sec, "backoff_base");
    q->backoff_max_ms = cfg_getint(sec, "backoff_max");
    q->keep_done = cfg_getbool(sec, "keep_done") == cfg_true;
    q->workers = (int)cfg_getint(sec, "workers");
    return 0;
}

/* FNV-1a: queue names to lookup slots. */
static uint32_t queue_name_hash(const char *name)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

/* The open-addressing table behind config_find_queue: at least twice as
 * many slots as queues (a power of two), -1 = empty. 0, or -1. */
static int build_queue_lookup(struct pgwork_config *c)
{
    size_t size = 4;
    while (size < 2 * (size_t)c->queue_count)
        size *= 2;
    c->queue_lookup = malloc(size * sizeof(*c->queue_lookup));
    if (c->queue_lookup == NULL)
        return -1;
    c->queue_lookup_mask = (unsigned)size - 1;
    for (size_t i = 0; i < size; i++)
        c->queue_lookup[i] = -1;
    for (int q = 0; q < c->queue_count; q++) {
        unsigned slot = queue_name_hash(c->queues[q].name) & c->queue_lookup_mask;
        while (c->queue_lookup[slot] >= 0)
            slot = (slot + 1) & c->queue_lookup_mask;
        c->queue_lookup[slot] = q;
    }
    return 0;
}

int config_find_queue(const struct pgwork_config *config, const char *name)
{
    if (config->queue_lookup == NULL) {
        /* A config built by hand (tests): no table. */
        for (int q = 0; q < config->queue_count; q++)
            if (strcmp(config->queues[q].name, name) == 0)
                return q;
        return -1;
    }
    unsigned slot = queue_name_hash(name) & config->queue_lookup_mask;
    for (int q; (q = config->queue_lookup[slot]) >= 0;
         slot = (slot + 1) & config->queue_lookup_mask)
        if (strcmp(config->queues[q].name, name) == 0)
            return q;
    return -1;
}

static struct pgwork_config *copy_config(cfg_t *root, const char *path)
{
    struct pgwork_config *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;

    cfg_t *db = cfg_getsec(root, "database");
    cfg_t *ls = cfg_getsec(root, "listener");
    cfg_t *wk = cfg_getsec(root, "workers");
    cfg_t *http = cfg_getsec(root, "http");
    cfg_t *log = cfg_getsec(root, "log");

    if (copy_string(&c->path, path) != 0 ||
        copy_string(&c->database.conninfo, cfg_getstr(db, "conninfo")) != 0 ||
        copy_string(&c->database.listen_conninfo, cfg_getstr(db, "listen_conninfo")) != 0 ||
        copy_string(&c->listener.channel, cfg_getstr(ls, "channel")) != 0 ||
        copy_string(&c->http.listen, cfg_getstr(http, "listen")) != 0)
        goto fail;
    c->database.synchronous_commit = cfg_getbool(db, "synchronous_commit") == cfg_true;

    c->listener.enabled = cfg_getbool(ls, "enabled") == cfg_true;
    c->listener.reconnect_min_ms = cfg_getint(ls, "reconnect_min");
    c->listener.reconnect_max_ms = cfg_getint(ls, "reconnect_max");
    c->listener.keepalive_interval_ms = cfg_getint(ls, "keepalive_interval");
    c->listener.keepalive_timeout_ms = cfg_getint(ls, "keepalive_timeout");

    c->workers.count = (int)cfg_getint(wk, "count");
    c->workers.min = (int)cfg_getint(wk, "min");
    c->workers.max = (int)cfg_getint(wk, "max");
    c->workers.poll_interval_ms = cfg_getint(wk, "poll_interval");
    c->workers.safety_poll_interval_ms = cfg_getint(wk, "safety_poll_interval");
    c->workers.restart_delay_min_ms = cfg_getint(wk, "restart_delay_min");
    c->workers.restart_delay_max_ms = cfg_getint(wk, "restart_delay_max");
    c->workers.shutdown_timeout_ms = cfg_getint(wk, "shutdown_timeout");
    c->workers.lease_ms = cfg_getint(wk, "lease");

    unsigned nqueues = cfg_size(root, "queue");
    if (nqueues > 0) {
        c->queues = calloc(nqueues, sizeof *c->queues);
        if (c->queues == NULL)
            goto fail;
        for (unsigned i = 0; i < nqueues; i++) {
            c->queue_count++; /* counted first so config_free sees a partial queue */
            if (copy_queue(&c->queues[i], cfg_getnsec(root, "queue", i)) != 0)
                goto fail;
        }
    }

    if (build_queue_lookup(c) != 0)
        goto fail;

    c->log.level = (enum log_level)log_level_parse(cfg_getstr(log, "level"));
    c->log.format =
        strcmp(cfg_getstr(log, "format"), "text") == 0 ? LOG_FORMAT_TEXT : LOG_FORMAT_JSON;
    return c;

fail:
    config_free(c);
    return NULL;
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

/* Parse `text` (the file's contents) and build the config. cfg_init()
 * copies the option tables, so they can live on the stack. */
static struct pgwork_config *parse(const char *text, const char *path)
{
    cfg_opt_t database_opts[] = {
        CFG_STR_CB("conninfo", "", CFGF_NONE, parse_text),
        CFG_STR_CB("listen_conninfo", "", CFGF_NONE, parse_text),
        CFG_BOOL_CB("synchronous_commit", cfg_false, CFGF_NONE, parse_bool),
        CFG_END(),
    };
    cfg_opt_t listener_opts[] = {
        CFG_BOOL_CB("enabled", cfg_true, CFGF_NONE, parse_bool),
        CFG_STR_CB("channel", "pgwork_tasks", CFGF_NONE, parse_channel),
        CFG_INT_CB("reconnect_min", 500, CFGF_NONE, parse_positive_duration),
        CFG_INT_CB("reconnect_max", 60000, CFGF_NONE, parse_positive_duration),
        CFG_INT_CB("keepalive_interval", 30000, CFGF_NONE, parse_positive_duration),
        CFG_INT_CB("keepalive_timeout", 5000, CFGF_NONE, parse_positive_duration),
        CFG_END(),
    };
    cfg_opt_t workers_opts[] = {
        CFG_INT_CB("count", 4, CFGF_NONE, parse_worker_count),
        CFG_INT_CB("min", 1, CFGF_NONE, parse_worker_count),
        CFG_INT_CB("max", 64, CFGF_NONE, parse_worker_count),
        CFG_INT_CB("poll_interval", 1000, CFGF_NONE, parse_positive_duration),
        CFG_INT_CB("safety_poll_interval", 60000, CFGF_NONE, parse_positive_duration),
        CFG_INT_CB("restart_delay_min", 100, CFGF_NONE, parse_positive_duration),
        CFG_INT_CB("restart_delay_max", 30000, CFGF_NONE, parse_positive_duration),
        CFG_INT_CB("shutdown_timeout", 25000, CFGF_NONE, parse_positive_duration),
        CFG_INT_CB("lease", 300000, CFGF_NONE, parse_positive_duration),
        CFG_END(),
    };
    cfg_opt_t queue_opts[] = {
        CFG_STR_CB("handler", "exec", CFGF_NONE, parse_handler),
        CFG_STR_LIST_CB("command", NULL, CFGF_NONE, parse_text),
        CFG_STR_CB("statement", NULL, CFGF_NONE, parse_text),
        CFG_INT_CB("batch", 10, CFGF_NONE, parse_batch),
        CFG_INT_CB("timeout", 60000, CFGF_NONE, parse_timeout),
        CFG_INT_CB("max_attempts", 25, CFGF_NONE, parse_attempts),
        CFG_INT_CB("backoff_base", 1000, CFGF_NONE, parse_positive_duration),
        CFG_INT_CB("backoff_max", 3600000, CFGF_NONE, parse_positive_duration),
        CFG_BOOL_CB("keep_done", cfg_true, CFGF_NONE, parse_bool),
        CFG_INT_CB("workers", 0, CFGF_NONE, parse_queue_workers),
        CFG_STR_LIST_CB("env", NULL, CFGF_NONE, parse_env_name),
        CFG_END(),
    };
    cfg_opt_t http_opts[] = {
        CFG_STR_CB("listen", "0.0.0.0:9187", CFGF_NONE, parse_listen),
        CFG_END(),
    };
    cfg_opt_t log_opts[] = {
        CFG_STR_CB("level", "info", CFGF_NONE, parse_log_level),
        CFG_STR_CB("format", "json", CFGF_NONE, parse_log_format),
        CFG_END(),
    };
    cfg_opt_t opts[] = {
        CFG_SEC("database", database_opts, CFGF_NONE),
        CFG_SEC("listener", listener_opts, CFGF_NONE),
        CFG_SEC("workers", workers_opts, CFGF_NONE),
        CFG_SEC("queue", queue_opts, CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
        CFG_SEC("http", http_opts, CFGF_NONE),
        CFG_SEC("log", log_opts, CFGF_NONE),
        CFG_END(),
    };

    cfg_t *root = cfg_init(opts, CFGF_NONE);
    if (root == NULL) {
        fail_at(0, "out of memory");
        return NULL;
    }
    cfg_set_error_function(root, report_confuse_error);
    cfg_set_validate_func(root, "database", validate_plain_section);
    cfg_set_validate_func(root, "listener", validate_listener);
    cfg_set_validate_func(root, "workers", validate_workers);
    cfg_set_validate_func(root, "queue", validate_queue);
    cfg_set_validate_func(root, "http", validate_plain_section);
    cfg_set_validate_func(root, "log", validate_plain_section);

    struct pgwork_config *config = NULL;
    /* An empty buffer is skipped: fmemopen may refuse a size of 0. */
    int rc = text[0] != '\0' ? cfg_parse_buf(root, text) : CFG_SUCCESS;
    if (rc == CFG_FILE_ERROR)
        fail_at(0, "cannot parse: %s", strerror(errno));
    else if (rc != CFG_SUCCESS)
        fail_at(0, "syntax error"); /* only if no callback said more */
    else if (validate_file(root) == 0 && (config = copy_config(root, path)) == NULL)
        fail_at(0, "out of memory");
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

void config_free(struct pgwork_config *config)
{
    if (config == NULL)
        return;
    for (int i = 0; i < config->queue_count; i++) {
        struct queue_config *q = &config->queues[i];
        free(q->name);
        for (int j = 0; q->command != NULL && j < q->command_argc; j++)
            free(q->command[j]);
        free(q->command);
        for (int j = 0; q->env != NULL && j < q->env_count; j++)
            free(q->env[j]);
        free(q->env);
        free(q->statement);
    }
    free(config->queues);
    free(config->queue_lookup);
    free(config->path);
    free(config->database.conninfo);
    free(config->database.listen_conninfo);
    free(config->listener.channel);
    free(config->http.listen);
    free(config);
}

int config_parse_duration(const char *text, int64_t *ms)
{
    if (text == NULL)
        return -1;
    const char *p = text;
    while (isspace((unsigned char)*p))
        p++;
    if (!isdigit((unsigned char)*p))
        return -1; /* empty, a sign, or garbage */

    int64_t whole = 0;
    for (; isdigit((unsigned char)*p); p++) {
        int d = *p - '0';
        if (whole > (INT64_MAX - d) / 10)
            return -1;
        whole = whole * 10 + d;
    }
    int64_t frac = 0, scale = 1;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return -1;
        for (; isdigit((unsigned char)*p); p++) {
            if (scale == 1000000000)
                return -1; /* finer than a nanosecond of an hour is noise */
            frac = frac * 10 + (*p - '0');
            scale *= 10;
        }
    }
    while (isspace((unsigned char)*p))
        p++;

    const char *unit = p;
    while (isalpha((unsigned char)*p))
        p++;
    size_t unit_len = (size_t)(p - unit);
    while (isspace((unsigned char)*p))
        p++;
    if (*p != '\0')
        return -1;

    int64_t factor;
    if (unit_len == 0)
        factor = 1000;
    else if (unit_len == 2 && strncmp(unit, "ms", 2) == 0)
        factor = 1;
    else if (unit_len == 1 && *unit == 's')
        factor = 1000;
    else if (unit_len == 1 && *unit == 'm')
        factor = 60 * 1000;
    else if (unit_len == 1 && *unit == 'h')
        factor = 3600 * 1000;
    else
        return -1;

    if (whole > INT64_MAX / factor)
        return -1;
    /* frac < 1e9 and factor <= 3.6e6: the product fits in 63 bits. */
    int64_t part = frac * factor;
    if (part % scale != 0)
        return -1; /* not a whole number of milliseconds */
    part /= scale;
    if (whole * factor > INT64_MAX - part)
        return -1;
    *ms = whole * factor + part;
    return 0;
}

const char *config_conninfo(const struct pgwork_config *config)
{
    if (config != NULL && config->database.conninfo != NULL && config->database.conninfo[0])
        return config->database.conninfo;
    const char *env = getenv(DEFAULT_CONNINFO_ENV);
    return env != NULL && env[0] != '\0' ? env : "";
}

const char *config_listen_conninfo(const struct pgwork_config *config)
{
    if (config != NULL && config->database.listen_conninfo != NULL &&
        config->database.listen_conninfo[0])
        return config->database.listen_conninfo;
    return config_conninfo(config);
}

const char *config_env_forbidden(const char *name)
{
    static const struct {
        const char *name, *why;
    } forbidden[] = {
        {DEFAULT_CONNINFO_ENV, "the database connection string"},
        {"PGPASSWORD", "the database password"},
        {"PGPASSFILE", "the database password file"},
        {"PGWORK_WEB_TOKEN", "the dashboard's token"},
    };
    for (size_t i = 0; i < sizeof forbidden / sizeof forbidden[0]; i++)
        if (strcmp(name, forbidden[i].name) == 0)
            return forbidden[i].why;
    return NULL;
}

const char *config_handler_name(enum handler_kind kind)
{
    switch (kind) {
    case HANDLER_EXEC:
        return "exec";
    case HANDLER_SQL:
        return "sql";
    case HANDLER_COPROCESS:
        return "coprocess";
    }
    return "unknown";
}

static bool same_text(const char *a, const char *b)
{
    return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

static bool same_queue(const struct queue_config *a, const struct queue_config *b)
{
    if (!same_text(a->name, b->name) || a->handler != b->handler ||
        !same_text(a->statement, b->statement) || a->command_argc != b->command_argc ||
        a->batch != b->batch || a->timeout_ms != b->timeout_ms ||
        a->max_attempts != b->max_attempts || a->backoff_base_ms != b->backoff_base_ms ||
        a->backoff_max_ms != b->backoff_max_ms || a->keep_done != b->keep_done ||
        a->workers != b->workers || a->env_count != b->env_count)
        return false;
    for (int i = 0; i < a->command_argc; i++)
        if (!same_text(a->command[i], b->command[i]))
            return false;
    for (int i = 0; i < a->env_count; i++)
        if (!same_text(a->env[i], b->env[i]))
            return false;
    return true;
}

bool config_worker_view_equal(const struct pgwork_config *a, const struct pgwork_config *b)
{
    if (a->queue_count != b->queue_count || a->workers.lease_ms != b->workers.lease_ms ||
        a->database.synchronous_commit != b->database.synchronous_commit ||
        a->listener.keepalive_interval_ms != b->listener.keepalive_interval_ms ||
        a->listener.keepalive_timeout_ms != b->listener.keepalive_timeout_ms ||
        a->log.level != b->log.level || a->log.format != b->log.format)
        return false;
    for (int i = 0; i < a->queue_count; i++)
        if (!same_queue(&a->queues[i], &b->queues[i]))
            return false;
    return true;
}

static void keep_text(char **running, char **fresh, const char *name, char *changed, size_t len)
{
    if (same_text(*running, *fresh))
        return;
    char *swap = *running;
    *running = *fresh;
    *fresh = swap;
    size_t used = strlen(changed);
    snprintf(changed + used, len - used, "%s%s", used ? ", " : "", name);
}

void config_keep_restart_only(struct pgwork_config *running, struct pgwork_config *fresh,
                              char *changed, size_t len)
{
    changed[0] = '\0';
    /* Swapping the strings keeps both structs owning what they free. */
    keep_text(&running->database.conninfo, &fresh->database.conninfo, "database.conninfo", changed,
              len);
    keep_text(&running->database.listen_conninfo, &fresh->database.listen_conninfo,
              "database.listen_conninfo", changed, len);
    keep_text(&running->http.listen, &fresh->http.listen, "http.listen", changed, len);
    if (running->database.synchronous_commit != fresh->database.synchronous_commit) {
        fresh->database.synchronous_commit = running->database.synchronous_commit;
        size_t used = strlen(changed);
        snprintf(changed + used, len - used, "%sdatabase.synchronous_commit", used ? ", " : "");
    }
    if (running->workers.max != fresh->workers.max) {
        fresh->workers.max = running->workers.max;
        if (fresh->workers.count > fresh->workers.max)
            fresh->workers.count = fresh->workers.max;
        size_t used = strlen(changed);
        snprintf(changed + used, len - used, "%sworkers.max", used ? ", " : "");
    }
}
