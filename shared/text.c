/*
 * text.c — the growable buffer, the UTF-8 decoder and array literals of
 * text.h. Every caller that checks, escapes or sanitizes UTF-8 (log lines,
 * queue names, handler output, CLI tables) decodes with text_utf8_len, so
 * "valid UTF-8" means one thing everywhere.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

/* Grow to hold `more` bytes after len and a NUL. 0, or -1 (unchanged). */
static int grow(struct text_buffer *buf, size_t more)
{
    if (buf->cap - buf->len > more)
        return 0;
    if (more >= SIZE_MAX / 2 - buf->len)
        return -1;
    size_t cap = buf->cap ? buf->cap : 256;
    while (cap - buf->len <= more)
        cap *= 2;
    char *data = realloc(buf->data, cap);
    if (data == NULL)
        return -1;
    buf->data = data;
    buf->cap = cap;
    return 0;
}

int text_reserve(struct text_buffer *buf, size_t more)
{
    return buf->failed ? -1 : grow(buf, more);
}

void text_append(struct text_buffer *buf, const char *s, size_t n)
{
    if (buf->failed)
        return;
    if (grow(buf, n) != 0) {
        buf->failed = 1;
        return;
    }
    memcpy(buf->data + buf->len, s, n);
    buf->len += n;
    buf->data[buf->len] = '\0';
}

void text_appendf(struct text_buffer *buf, const char *fmt, ...)
{
    if (buf->failed)
        return;
    for (;;) {
        size_t room = buf->cap - buf->len;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(buf->data != NULL ? buf->data + buf->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            buf->failed = 1;
            return;
        }
        if ((size_t)n < room) {
            buf->len += (size_t)n;
            return;
        }
        if (grow(buf, (size_t)n) != 0) {
            buf->failed = 1;
            return;
        }
    }
}

char *text_take(struct text_buffer *buf)
{
    char *data = buf->failed ? NULL : buf->data;
    if (buf->failed)
        free(buf->data);
    else if (data == NULL)
        data = calloc(1, 1); /* nothing appended: an empty string */
    memset(buf, 0, sizeof(*buf));
    return data;
}

void text_free(struct text_buffer *buf)
{
    free(buf->data);
    memset(buf, 0, sizeof(*buf));
}

size_t text_utf8_len(const unsigned char *s, size_t n, uint32_t *cp)
{
    uint32_t c = s[0];
    size_t len;
    uint32_t min;

    if (n == 0)
        return 0;
    if (c < 0x80) {
        if (cp != NULL)
            *cp = c;
        return 1;
    }
    /* 0xc0 and 0xc1 can only start overlong forms, 0xf5.. values past
     * U+10FFFF: refused here; the minimum below catches the rest. */
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2, min = 0x80, c &= 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3, min = 0x800, c &= 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4, min = 0x10000, c &= 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) /* also stops at a NUL terminator */
            return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    if (cp != NULL)
        *cp = c;
    return len;
}

/* "{" before the first element, "," before the others. */
static void array_separator(struct text_buffer *buf)
{
    text_append(buf, buf->len == 0 ? "{" : ",", 1);
}

void text_array_add_text(struct text_buffer *buf, const char *item)
{
    array_separator(buf);
    text_append(buf, "\"", 1);
    for (const char *p = item; *p != '\0';) {
        size_t plain = strcspn(p, "\"\\");
        text_append(buf, p, plain);
        p += plain;
        if (*p != '\0') {
            char escaped[2] = {'\\', *p++};
            text_append(buf, escaped, 2);
        }
    }
    text_append(buf, "\"", 1);
}

void text_array_add_int64(struct text_buffer *buf, int64_t value)
{
    array_separator(buf);
    text_appendf(buf, "%" PRId64, value);
}

char *text_array_end(struct text_buffer *buf)
{
    if (buf->len == 0)
        text_append(buf, "{", 1);
    text_append(buf, "}", 1);
    return text_take(buf);
}

const char *text_label_problem(const char *s, size_t max_bytes, const char *too_long)
{
    if (s[0] == '\0')
        return "is empty";
    if (strlen(s) > max_bytes)
        return too_long;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0';) {
        uint32_t cp;
        size_t n = text_utf8_len(p, SIZE_MAX, &cp);
        if (n == 0)
            return "is not valid UTF-8";
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
            return "contains control characters";
        p += n;
    }
    return NULL;
}

int text_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}
