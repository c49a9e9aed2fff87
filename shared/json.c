/*
 * json.c — a JSON syntax check (json.h): one pass over the text with a
 * stack of open containers as bits, so a hostile payload can neither
 * recurse nor allocate.
 */
#include "json.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "text.h"

struct reader {
    const char *start;
    const char *p;
    const char *error; /* first problem, NULL = none */
};

static void skip_space(struct reader *r)
{
    while (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')
        r->p++;
}

static int fail(struct reader *r, const char *what)
{
    if (r->error == NULL)
        r->error = what;
    return -1;
}

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int digit = text_hex_digit(s[i]);
        if (digit < 0)
            return -1;
        v = v << 4 | (unsigned)digit;
    }
    *out = v;
    return 0;
}

/* A string at r->p (on its opening quote). */
static int read_string(struct reader *r)
{
    r->p++;
    for (;;) {
        unsigned char c = (unsigned char)*r->p;
        if (c == '"') {
            r->p++;
            return 0;
        }
        if (c == '\0')
            return fail(r, "unterminated string");
        if (c < 0x20)
            return fail(r, "control character in a string");
        if (c == '\\') {
            char e = r->p[1];
            if (e == 'u') {
                unsigned cp;
                if (hex4(r->p + 2, &cp) != 0)
                    return fail(r, "bad \\u escape");
                if (cp == 0)
                    return fail(r, "\\u0000 is not accepted by jsonb");
                r->p += 6;
                continue;
            }
            if (e == '\0' || strchr("\"\\/bfnrt", e) == NULL)
                return fail(r, "bad escape");
            r->p += 2;
            continue;
        }
        size_t n = text_utf8_len((const unsigned char *)r->p, SIZE_MAX, NULL);
        if (n == 0)
            return fail(r, "not valid UTF-8");
        r->p += n;
    }
}

static int digits(struct reader *r)
{
    if (*r->p < '0' || *r->p > '9')
        return fail(r, "expected a digit");
    while (*r->p >= '0' && *r->p <= '9')
        r->p++;
    return 0;
}

static int read_number(struct reader *r)
{
    if (*r->p == '-')
        r->p++;
    if (*r->p == '0')
        r->p++;
    else if (digits(r) != 0)
        return -1;
    if (*r->p == '.') {
        r->p++;
        if (digits(r) != 0)
            return -1;
    }
    if (*r->p == 'e' || *r->p == 'E') {
        r->p++;
        if (*r->p == '+' || *r->p == '-')
            r->p++;
        if (digits(r) != 0)
            return -1;
    }
    return 0;
}

/* A scalar at r->p, or -1 (containers are the caller's). */
static int read_scalar(struct reader *r)
{
    static const char *const words[] = {"true", "false", "null"};
    if (*r->p == '"')
        return read_string(r);
    if (*r->p == '-' || (*r->p >= '0' && *r->p <= '9'))
        return read_number(r);
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strncmp(r->p, words[i], strlen(words[i])) == 0) {
            r->p += strlen(words[i]);
            return 0;
        }
    return fail(r, *r->p == '\0' ? "unexpected end" : "expected a value");
}

/* A member's key and its ':' (at a '"', or it fails), and the space
 * before its value. */
static int read_key(struct reader *r)
{
    if (*r->p != '"' || read_string(r) != 0)
        return fail(r, "expected a string key"); /* read_string's reason wins */
    skip_space(r);
    if (*r->p != ':')
        return fail(r, "expected ':'");
    r->p++;
    skip_space(r);
    return 0;
}

int json_check(const char *text, char *why, size_t len)
{
    struct reader r = {text, text, NULL};
    uint64_t open[JSON_DEPTH_MAX / 64] = {0}; /* bit set: an object, clear: an array */
    int depth = 0;

    skip_space(&r);
    for (;;) {
        /* A value. */
        if (*r.p == '{' || *r.p == '[') {
            if (depth == JSON_DEPTH_MAX) {
                fail(&r, "nested too deeply");
                break;
            }
            bool object = *r.p == '{';
            if (object)
                open[depth / 64] |= UINT64_C(1) << (depth % 64);
            else
                open[depth / 64] &= ~(UINT64_C(1) << (depth % 64));
            depth++;
            r.p++;
            skip_space(&r);
            if (*r.p == (object ? '}' : ']')) {
                r.p++;
                depth--;
            } else {
                if (object && read_key(&r) != 0)
                    break;
                continue; /* the first member's value */
            }
        } else if (read_scalar(&r) != 0) {
            break;
        }
        /* After a value: close containers, or the next member. */
        skip_space(&r);
        bool next = false;
        while (depth > 0 && !next) {
            bool object = (open[(depth - 1) / 64] >> ((depth - 1) % 64)) & 1;
            if (*r.p == ',') {
                r.p++;
                skip_space(&r);
                if (object && read_key(&r) != 0)
                    break;
                next = true;
            } else if (*r.p == (object ? '}' : ']')) {
                r.p++;
                depth--;
                skip_space(&r);
            } else {
                fail(&r, object ? "expected ',' or '}'" : "expected ',' or ']'");
                break;
            }
        }
        if (r.error != NULL)
            break;
        if (next)
            continue;
        if (*r.p != '\0')
            fail(&r, "text after the value");
        break;
    }
    if (r.error == NULL)
        return 0;
    snprintf(why, len, "invalid JSON at byte %zu: %s", (size_t)(r.p - r.start) + 1, r.error);
    return -1;
}
