/*
 * log.c — one line per event on stderr, JSON or text.
 *
 * A line is built whole in a stack buffer and written with one write(2):
 * lines of the supervisor and its workers share stderr and must not
 * interleave (writes to a pipe up to PIPE_BUF bytes are atomic; longer
 * lines are rare and cut to LINE_MAX). Messages longer than MSG_MAX are
 * cut and end with "...". JSON strings are escaped per RFC 8259, and bytes
 * that are not valid UTF-8 become U+FFFD, so every line parses whatever a
 * handler or a queue name contains. Logging never changes errno.
 *
 * State is per process (role, worker slot, level, format): set by
 * log_init() after fork, changed by log_configure() on reload.
 */
#include "log.h"
#include "text.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MSG_MAX 8192       /* formatted message, before escaping */
#define LINE_MAX 32768     /* a whole line */
#define MSG_OUT_MAX 16384  /* escaped message within the line */
#define QUEUE_OUT_MAX 4096 /* escaped queue name within the line */
#define ROLE_MAX 32

static struct {
    char role[ROLE_MAX];
    int worker;
    enum log_level level;
    enum log_format format;
} state = {"pgwork", -1, LOG_LEVEL_INFO, LOG_FORMAT_JSON};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* A bounded output buffer: appends stop at the end, never overflow. */
struct out {
    char *buf;
    size_t len;
    size_t cap; /* usable bytes, the NUL not included */
};

static void put_bytes(struct out *o, const char *s, size_t n)
{
    if (n > o->cap - o->len)
        n = o->cap - o->len;
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void put(struct out *o, const char *s)
{
    put_bytes(o, s, strlen(s));
}

static void putf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void putf(struct out *o, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        put_bytes(o, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/*
 * Append s escaped, using at most `limit` bytes of output (then "...").
 * json: a JSON string body. text: control bytes as \n, \t or \xNN, the rest
 * as is, so a text line stays one line.
 */
static void put_escaped(struct out *o, const char *s, size_t limit, bool json)
{
    size_t end = o->len + limit < o->cap ? o->len + limit : o->cap;
    const unsigned char *p = (const unsigned char *)s;
    while (*p != '\0') {
        char esc[8];
        const char *piece = esc;
        size_t n = text_utf8_len(p, SIZE_MAX, NULL);
        size_t used = n ? n : 1;

        if (n == 0) {
            /* Not UTF-8: JSON gets U+FFFD, text the byte's value. */
            if (json)
                piece = "\\ufffd";
            else
                snprintf(esc, sizeof esc, "\\x%02x", *p);
        } else if (*p == '"' && json) {
            piece = "\\\"";
        } else if (*p == '\\' && json) {
            piece = "\\\\";
        } else if (*p == '\n') {
            piece = "\\n";
        } else if (*p == '\t') {
            piece = "\\t";
        } else if (*p == '\r') {
            piece = "\\r";
        } else if (*p < 0x20 || *p == 0x7f) {
            snprintf(esc, sizeof esc, json ? "\\u%04x" : "\\x%02x", *p);
        } else {
            piece = NULL; /* copied as is */
        }

        size_t len = piece ? strlen(piece) : n;
        if (o->len + len + 3 > end) {
            put(o, "...");
            return;
        }
        if (piece)
            put_bytes(o, piece, len);
        else
            put_bytes(o, (const char *)p, n);
        p += used;
    }
}

static void put_timestamp(struct out *o)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char buf[40];
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof buf - n, ".%03ldZ", ts.tv_nsec / 1000000);
    put(o, buf);
}

/* Write all of it; one write(2) unless the kernel takes only part. */
static void write_line(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* nowhere to report it */
        buf += n;
        len -= (size_t)n;
    }
}

static void emit(enum log_level level, const char *queue, int64_t task_id, const char *fmt,
                 va_list ap)
{
    if (level < LOG_LEVEL_DEBUG || level > LOG_LEVEL_ERROR)
        level = LOG_LEVEL_ERROR;
    if (level < state.level)
        return;
    int saved_errno = errno;

    char msg[MSG_MAX];
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    if (n >= (int)sizeof msg) {
        /* Cut at a character boundary before the "...": stepping back over
         * continuation bytes keeps a multi-byte character whole or gone. */
        size_t cut = sizeof msg - 4;
        while (cut > 0 && ((unsigned char)msg[cut] & 0xc0) == 0x80)
            cut--;
        memcpy(msg + cut, "...", 4);
    } else if (n < 0) {
        snprintf(msg, sizeof msg, "(unprintable message)");
    }
    /* libpq's messages end in a newline; a log line carries its own. */
    size_t len = strlen(msg);
    while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
        msg[--len] = '\0';

    char line[LINE_MAX];
    struct out o = {line, 0, sizeof line - 1}; /* room for the final newline */
    const char *level_name = level_names[level];
    pid_t pid = getpid();

    if (state.format == LOG_FORMAT_JSON) {
        put(&o, "{\"ts\":\"");
        put_timestamp(&o);
        putf(&o, "\",\"level\":\"%s\",\"msg\":\"", level_name);
        put_escaped(&o, msg, MSG_OUT_MAX, true);
        putf(&o, "\",\"pid\":%ld,\"role\":\"", (long)pid);
        put_escaped(&o, state.role, ROLE_MAX * 6, true);
        put(&o, "\"");
        if (state.worker >= 0)
            putf(&o, ",\"worker\":%d", state.worker);
        if (queue != NULL) {
            put(&o, ",\"queue\":\"");
            put_escaped(&o, queue, QUEUE_OUT_MAX, true);
            put(&o, "\"");
        }
        if (task_id != 0)
            putf(&o, ",\"task\":%lld", (long long)task_id);
        put(&o, "}");
    } else {
        put_timestamp(&o);
        putf(&o, " %s ", level_name);
        put_escaped(&o, state.role, ROLE_MAX * 4, false);
        putf(&o, "[%ld]", (long)pid);
        if (state.worker >= 0)
            putf(&o, " w%d", state.worker);
        put(&o, ": ");
        put_escaped(&o, msg, MSG_OUT_MAX, false);
        if (queue != NULL || task_id != 0) {
            put(&o, " (");
            if (queue != NULL) {
                put(&o, "queue=");
                put_escaped(&o, queue, QUEUE_OUT_MAX, false);
            }
            if (task_id != 0)
                putf(&o, "%stask=%lld", queue != NULL ? " " : "", (long long)task_id);
            put(&o, ")");
        }
    }
    line[o.len++] = '\n';
    write_line(line, o.len);
    errno = saved_errno;
}

void log_init(const char *role, int worker, enum log_level level, enum log_format format)
{
    snprintf(state.role, sizeof state.role, "%s", role ? role : "pgwork");
    state.worker = worker;
    log_configure(level, format);
}

void log_configure(enum log_level level, enum log_format format)
{
    if (level >= LOG_LEVEL_DEBUG && level <= LOG_LEVEL_ERROR)
        state.level = level;
    state.format = format == LOG_FORMAT_TEXT ? LOG_FORMAT_TEXT : LOG_FORMAT_JSON;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit(level, NULL, 0, fmt, ap);
    va_end(ap);
}

void log_task(enum log_level level, const char *queue, int64_t task_id, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit(level, queue ? queue : "", task_id, fmt, ap);
    va_end(ap);
}

int log_level_parse(const char *text)
{
    for (int i = LOG_LEVEL_DEBUG; text != NULL && i <= LOG_LEVEL_ERROR; i++)
        if (strcmp(text, level_names[i]) == 0)
            return i;
    return -1;
}

/* ---- conninfo redaction ------------------------------------------------ */

/* Keys whose values are secrets: the password, and the passphrase of the
 * client certificate's key. */
static bool secret_key(const char *key, size_t len)
{
    return (len == 8 && strncmp(key, "password", 8) == 0) ||
           (len == 11 && strncmp(key, "sslpassword", 11) == 0);
}

static const char *skip_space(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == '\v')
        p++;
    return p;
}

/*
 * key = value pairs as libpq reads them: the value is 'single quoted' with
 * backslash escapes, or runs to the next space (backslash escapes too).
 * Text is copied verbatim except secret values. On anything libpq would
 * reject, the rest is replaced: a malformed string may hide a password.
 */
static void redact_keyvalue(struct out *o, const char *s)
{
    const char *copied = s;
    const char *p = skip_space(s);
    while (*p != '\0') {
        const char *key = p;
        /* libpq separates with any isspace() byte (\v and \f too). */
        while (*p != '\0' && *p != '=' && !isspace((unsigned char)*p))
            p++;
        size_t key_len = (size_t)(p - key);
        p = skip_space(p);
        if (*p != '=' || key_len == 0) {
            put_bytes(o, copied, (size_t)(key - copied));
            put(o, "***");
            return;
        }
        p = skip_space(p + 1);

        const char *value = p;
        bool closed = true;
        if (*p == '\'') {
            closed = false;
            for (p++; *p != '\0'; p++) {
                if (*p == '\\' && p[1] != '\0') {
                    p++;
                } else if (*p == '\'') {
                    p++;
                    closed = true;
                    break;
                }
            }
        } else {
            while (*p != '\0' && !isspace((unsigned char)*p)) {
                if (*p == '\\' && p[1] != '\0')
                    p++;
                p++;
            }
        }
        if (!closed) {
            put_bytes(o, copied, (size_t)(value - copied));
            put(o, "***");
            return;
        }
        if (secret_key(key, key_len)) {
            put_bytes(o, copied, (size_t)(value - copied));
            put(o, "***");
            copied = p;
        }
        p = skip_space(p);
    }
    put(o, copied);
}

/*
 * postgresql://user:secret@host:5432,host2/db?password=secret&sslmode=require
 * The user info ends where libpq ends it: at the first '@' before any '/'
 * (an '@' in a query value is not one); secret query values are hidden too.
 */
static void redact_url(struct out *o, const char *s, size_t scheme_len)
{
    const char *auth = s + scheme_len;
    /* libpq's user info runs to the first '@' met before any '/' (a '?'
     * before it is part of the password). Hide at least that much, and up
     * to the last '@' before the query: a password with an unescaped '@'
     * or '/' that libpq misreads must not show either. An '@' inside the
     * query (a value) is not one. */
    const char *first = auth + strcspn(auth, "@/");
    const char *query_start = strchr(*first == '@' ? first : auth, '?');
    const char *limit = query_start ? query_start : auth + strlen(auth);
    const char *at = NULL;
    for (const char *c = auth; c < limit; c++)
        if (*c == '@')
            at = c;
    const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    const char *query = strchr(at ? at : auth, '?');
    const char *end = query ? query : auth + strlen(auth);

    if (colon != NULL) {
        put_bytes(o, s, (size_t)(colon + 1 - s));
        put(o, "***");
        put_bytes(o, at, (size_t)(end - at));
    } else {
        put_bytes(o, s, (size_t)(end - s));
    }
    if (query == NULL)
        return;

    const char *p = query;
    while (*p != '\0') {
        /* p is at '?' or '&': copy it and the key, hide a secret value. */
        const char *param = p + 1;
        const char *param_end = param + strcspn(param, "&");
        const char *eq = memchr(param, '=', (size_t)(param_end - param));
        if (eq != NULL && secret_key(param, (size_t)(eq - param))) {
            put_bytes(o, p, (size_t)(eq + 1 - p));
            put(o, "***");
        } else {
            put_bytes(o, p, (size_t)(param_end - p));
        }
        p = param_end;
    }
}

void log_redact_conninfo(const char *conninfo, char *out, size_t outlen)
{
    if (out == NULL || outlen == 0)
        return;
    struct out o = {out, 0, outlen - 1};
    if (conninfo == NULL)
        conninfo = "";
    if (strncmp(conninfo, "postgresql://", 13) == 0)
        redact_url(&o, conninfo, 13);
    else if (strncmp(conninfo, "postgres://", 11) == 0)
        redact_url(&o, conninfo, 11);
    else
        redact_keyvalue(&o, conninfo);
    out[o.len] = '\0';
}
