/*
 * coprocess_protocol.c — the coprocess line protocol (DESIGN §3, specified
 * in examples/README.md): the task line we write and the result line we
 * parse.
 *
 * The result parser is a small strict JSON parser of its own: a result is
 * one flat object, and a library would buy nothing. Unknown fields of any
 * shape are checked and skipped (a later protocol version may add them).
 *
 * Invariants: no I/O and no state; the only allocations are the quoted
 * queue name and the growth of the caller's task-line buffer; whatever a
 * result line holds, the decoded error text is valid UTF-8 without NUL,
 * cut at a character boundary, and nesting is bounded (JSON_DEPTH_MAX).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "child.h"
#include "coprocess_protocol.h"
#include "../shared/text.h"

/* Nesting accepted in result values we skip. */
#define JSON_DEPTH_MAX 64

/* --- the task line ------------------------------------------------------ */

char *coprocess_quote(const char *text)
{
    size_t n = strlen(text);
    char *out = malloc(n * 6 + 3);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    out[o++] = '"';
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)sprintf(out + o, "\\u%04x", c);
            i++;
        } else {
            size_t len = text_utf8_len(s + i, n - i, NULL);
            if (len == 0) {
                memcpy(out + o, "\\ufffd", 6);
                o += 6;
                i++;
            } else {
                memcpy(out + o, s + i, len);
                o += len;
                i += len;
            }
        }
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}

/* Decimal digits of v into out (no NUL); their count. */
static size_t format_int(char *out, int64_t v)
{
    char digits[24];
    size_t n = 0;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do
        digits[n++] = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    size_t len = 0;
    if (v < 0)
        out[len++] = '-';
    while (n > 0)
        out[len++] = digits[--n];
    return len;
}

int coprocess_format_task(struct text_buffer *line_buf, const char *queue_json,
                          const struct task *task)
{
    const char *payload =
        task->payload != NULL && task->payload[0] != '\0' ? task->payload : "null";
    size_t payload_len = strlen(payload);
    /* By hand: this runs once per task, and snprintf costs more than the
     * rest of the line together. */
    char head[96];
    size_t head_len = 0;
    memcpy(head, "{\"id\":", 6);
    head_len = 6 + format_int(head + 6, task->id);
    memcpy(head + head_len, ",\"attempt\":", 11);
    head_len += 11;
    head_len += format_int(head + head_len, task->attempt);
    memcpy(head + head_len, ",\"queue\":", 9);
    head_len += 9;
    size_t queue_len = strlen(queue_json);
    static const char payload_key[] = ",\"payload\":";
    size_t key_len = sizeof(payload_key) - 1;
    line_buf->len = 0;
    if (text_reserve(line_buf, head_len + queue_len + key_len + payload_len + 2) != 0)
        return -1;
    char *line = line_buf->data;
    size_t len = 0;
    memcpy(line, head, head_len);
    len += head_len;
    memcpy(line + len, queue_json, queue_len);
    len += queue_len;
    memcpy(line + len, payload_key, key_len);
    len += key_len;
    memcpy(line + len, payload, payload_len);
    /* jsonb's text form never holds a raw line break (JSON strings cannot),
     * but the line is the frame: make sure. Outside strings a line break
     * is whitespace, so a space means the same. */
    for (size_t i = len; i < len + payload_len; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    len += payload_len;
    memcpy(line + len, "}\n", 3); /* the NUL too */
    line_buf->len = len + 2;
    return (int)line_buf->len;
}

/* --- the result line ---------------------------------------------------- */

/* A cursor over one result line. */
struct json {
    const char *p;
    const char *end;
    const char *error; /* first problem found; NULL = none */
};

static void json_fail(struct json *j, const char *why)
{
    if (j->error == NULL)
        j->error = why;
    j->p = j->end;
}

static void json_ws(struct json *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static bool json_eat(struct json *j, char c)
{
    json_ws(j);
    if (j->p < j->end && *j->p == c) {
        j->p++;
        return true;
    }
    return false;
}

static long json_hex4(struct json *j)
{
    if (j->end - j->p < 4) {
        json_fail(j, "truncated \\u escape");
        return -1;
    }
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int d = text_hex_digit(j->p[i]);
        if (d < 0) {
            json_fail(j, "bad \\u escape");
            return -1;
        }
        v = v * 16 + d;
    }
    j->p += 4;
    return v;
}

/* Append code point cp as UTF-8 to out (cap bytes, NUL kept free). */
static void put_utf8(char *out, size_t cap, size_t *o, uint32_t cp)
{
    char tmp[4];
    size_t n;
    if (cp == 0) {
        tmp[0] = '?'; /* a text column cannot hold NUL */
        n = 1;
    } else if (cp < 0x80) {
        tmp[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        tmp[0] = (char)(0xc0 | (cp >> 6));
        tmp[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        tmp[0] = (char)(0xe0 | (cp >> 12));
        tmp[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        tmp[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        tmp[0] = (char)(0xf0 | (cp >> 18));
        tmp[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        tmp[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        tmp[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    if (out == NULL || *o + n + 1 > cap)
        return; /* truncated: whole characters only */
    memcpy(out + *o, tmp, n);
    *o += n;
}

/* Copy the raw UTF-8 sequence at the cursor into out whole (or one stray
 * byte, which child_sanitize_text turns into '?' at the end). When it does
 * not fit, *cap shrinks to what is filled: nothing more goes in, so the
 * text is cut at a character boundary. */
static void json_string_raw(struct json *j, char *out, size_t *cap, size_t *o)
{
    size_t len = text_utf8_len((const unsigned char *)j->p, (size_t)(j->end - j->p), NULL);
    if (len == 0)
        len = 1;
    if (out != NULL && *o + len + 1 <= *cap) {
        memcpy(out + *o, j->p, len);
        *o += len;
    } else if (out != NULL) {
        *cap = *o + 1;
    }
    j->p += len;
}

/* The code point of a \u escape, "\u" already read: a surrogate pair is
 * one code point, a lone surrogate U+FFFD. -1 with the parse failed. */
static long json_unicode_escape(struct json *j)
{
    long hi = json_hex4(j);
    if (hi < 0)
        return -1;
    if (hi >= 0xd800 && hi <= 0xdbff && j->end - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u') {
        const char *save = j->p;
        j->p += 2;
        long lo = json_hex4(j);
        if (lo < 0)
            return -1;
        if (lo >= 0xdc00 && lo <= 0xdfff)
            return 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
        j->p = save; /* not a pair: the low half is its own escape */
        return 0xfffd;
    }
    if (hi >= 0xd800 && hi <= 0xdfff)
        return 0xfffd;
    return hi;
}

/* The code point of the escape at the cursor, its backslash already read;
 * -1 with the parse failed. */
static long json_escape(struct json *j)
{
    if (j->p >= j->end) {
        json_fail(j, "truncated escape");
        return -1;
    }
    char e = *j->p++;
    switch (e) {
    case '"':
    case '\\':
    case '/':
        return e;
    case 'b':
        return '\b';
    case 'f':
        return '\f';
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    case 'u':
        return json_unicode_escape(j);
    default:
        json_fail(j, "bad escape in a string");
        return -1;
    }
}

/*
 * A JSON string at the cursor (opening quote included). Its decoded text
 * goes into out (cap bytes, NUL-terminated, cut at a character boundary
 * when too long); out may be NULL to skip it. Raw control characters and
 * bad escapes are errors; lone surrogates become U+FFFD.
 */
static void json_string(struct json *j, char *out, size_t cap)
{
    size_t o = 0;
    if (out != NULL && cap > 0)
        out[0] = '\0';
    if (!json_eat(j, '"')) {
        json_fail(j, "expected a string");
        return;
    }
    while (j->p < j->end) {
        unsigned char c = (unsigned char)*j->p;
        if (c == '"') {
            j->p++;
            if (out != NULL && cap > 0) {
                out[o] = '\0';
                child_sanitize_text(out, o);
            }
            return;
        }
        if (c < 0x20) {
            json_fail(j, "control character in a string");
            return;
        }
        if (c != '\\') {
            json_string_raw(j, out, &cap, &o);
            continue;
        }
        j->p++;
        long cp = json_escape(j);
        if (cp < 0)
            return;
        put_utf8(out, cap, &o, (uint32_t)cp);
    }
    json_fail(j, "unterminated string");
}

/* One or more digits (a fraction's or an exponent's); false, with the
 * parse failed, when there is none. */
static bool json_digits(struct json *j)
{
    if (j->p >= j->end || *j->p < '0' || *j->p > '9') {
        json_fail(j, "bad number");
        return false;
    }
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
        j->p++;
    return true;
}

/* A JSON number; *integer set when it is a plain integer that fits int64. */
static void json_number(struct json *j, int64_t *value, bool *integer)
{
    json_ws(j);
    const char *start = j->p;
    bool plain = true;
    if (j->p < j->end && *j->p == '-')
        j->p++;
    if (j->p >= j->end || *j->p < '0' || *j->p > '9') {
        json_fail(j, "expected a value");
        return;
    }
    if (*j->p == '0')
        j->p++;
    else
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    if (j->p < j->end && *j->p == '.') {
        plain = false;
        j->p++;
        if (!json_digits(j))
            return;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        plain = false;
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (!json_digits(j))
            return;
    }
    if (integer == NULL)
        return;
    *integer = false;
    if (!plain || j->p - start > 20)
        return;
    char digits[24];
    memcpy(digits, start, (size_t)(j->p - start));
    digits[j->p - start] = '\0';
    errno = 0;
    long long v = strtoll(digits, NULL, 10);
    if (errno == 0) {
        *value = v;
        *integer = true;
    }
}

static bool json_literal(struct json *j, const char *word)
{
    size_t n = strlen(word);
    json_ws(j);
    if ((size_t)(j->end - j->p) >= n && memcmp(j->p, word, n) == 0) {
        j->p += n;
        return true;
    }
    return false;
}

/* Skip any JSON value (checking its syntax). */
static void json_skip(struct json *j, int depth)
{
    if (depth > JSON_DEPTH_MAX) {
        json_fail(j, "nested too deeply");
        return;
    }
    json_ws(j);
    if (j->p >= j->end) {
        json_fail(j, "expected a value");
        return;
    }
    char c = *j->p;
    if (c == '"') {
        json_string(j, NULL, 0);
    } else if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        j->p++;
        if (json_eat(j, close))
            return;
        do {
            if (c == '{') {
                json_string(j, NULL, 0);
                if (!json_eat(j, ':')) {
                    json_fail(j, "expected ':'");
                    return;
                }
            }
            json_skip(j, depth + 1);
        } while (j->error == NULL && json_eat(j, ','));
        if (!json_eat(j, close))
            json_fail(j, c == '{' ? "expected ',' or '}'" : "expected ',' or ']'");
    } else if (!json_literal(j, "true") && !json_literal(j, "false") && !json_literal(j, "null")) {
        json_number(j, NULL, NULL);
    }
}

int coprocess_parse_result(const char *line, size_t len, struct coprocess_result *result, char *why,
                           size_t whylen)
{
    struct json j = {.p = line, .end = line + len, .error = NULL};
    bool have_id = false, have_ok = false;
    memset(result, 0, sizeof(*result));

    if (!json_eat(&j, '{')) {
        json_fail(&j, "not a JSON object");
    } else if (!json_eat(&j, '}')) {
        do {
            char key[16];
            json_string(&j, key, sizeof(key));
            if (j.error != NULL)
                break;
            if (!json_eat(&j, ':')) {
                json_fail(&j, "expected ':'");
                break;
            }
            if (strcmp(key, "id") == 0) {
                bool integer = false;
                json_number(&j, &result->id, &integer);
                if (j.error == NULL && !integer)
                    json_fail(&j, "\"id\" is not an integer");
                have_id = true;
            } else if (strcmp(key, "ok") == 0) {
                if (json_literal(&j, "true"))
                    result->ok = true;
                else if (json_literal(&j, "false"))
                    result->ok = false;
                else
                    json_fail(&j, "\"ok\" is not true or false");
                have_ok = true;
            } else if (strcmp(key, "error") == 0) {
                if (!json_literal(&j, "null"))
                    json_string(&j, result->error, sizeof(result->error));
            } else {
                json_skip(&j, 1); /* a field of a later protocol version */
            }
        } while (j.error == NULL && json_eat(&j, ','));
        if (j.error == NULL && !json_eat(&j, '}'))
            json_fail(&j, "expected ',' or '}'");
    }
    if (j.error == NULL) {
        json_ws(&j);
        if (j.p != j.end)
            json_fail(&j, "text after the object");
        else if (!have_id)
            json_fail(&j, "no \"id\"");
        else if (!have_ok)
            json_fail(&j, "no \"ok\"");
    }
    if (j.error != NULL) {
        snprintf(why, whylen, "%s", j.error);
        return -1;
    }
    return 0;
}
