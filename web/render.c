/*
 * render.c — escaping for HTML, JSON and URLs, and rows as JSON
 * (render.h). Never logs, never allocates beyond the buffer it is given.
 */
#include "render.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Type OIDs of pg_type (stable since PostgreSQL 7): how a column is written
 * in JSON. */
#define OID_BOOL 16
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23
#define OID_JSON 114
#define OID_FLOAT4 700
#define OID_FLOAT8 701
#define OID_NUMERIC 1700
#define OID_JSONB 3802

void render_html(struct text_buffer *b, const char *s)
{
    if (s == NULL)
        return;
    const char *run = s;
    for (; *s != '\0'; s++) {
        const char *entity = NULL;
        switch (*s) {
        case '&':
            entity = "&amp;";
            break;
        case '<':
            entity = "&lt;";
            break;
        case '>':
            entity = "&gt;";
            break;
        case '"':
            entity = "&quot;";
            break;
        case '\'':
            entity = "&#39;";
            break;
        default:
            continue;
        }
        text_append(b, run, (size_t)(s - run));
        text_append(b, entity, strlen(entity));
        run = s + 1;
    }
    text_append(b, run, (size_t)(s - run));
}

void render_json_string(struct text_buffer *b, const char *s)
{
    text_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)(s != NULL ? s : ""); *p != '\0'; p++) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            text_append(b, esc, 2);
        } else if (c == '\n') {
            text_append(b, "\\n", 2);
        } else if (c < 0x20 || c == '<' || c == '>' || c == '&' || c == 0x7f) {
            text_appendf(b, "\\u%04x", c);
        } else {
            text_append(b, (const char *)p, 1);
        }
    }
    text_append(b, "\"", 1);
}

void render_url(struct text_buffer *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        unsigned char c = *p;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            text_append(b, (const char *)p, 1);
        } else {
            char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
            text_append(b, esc, 3);
        }
    }
}

int render_unescape(char *s, int plus_is_space)
{
    char *out = s;
    for (; *s != '\0'; s++) {
        if (*s == '%') {
            int hi = text_hex_digit(s[1]), lo = hi < 0 ? -1 : text_hex_digit(s[2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -1;
            *out++ = (char)(hi * 16 + lo);
            s += 2;
        } else if (*s == '+' && plus_is_space) {
            *out++ = ' ';
        } else {
            *out++ = *s;
        }
    }
    *out = '\0';
    return 0;
}

/* JSON the server wrote, with < > & as \u escapes: outside strings they
 * cannot occur, inside one the escape means the same character. */
static void render_json_raw(struct text_buffer *b, const char *v)
{
    const char *run = v;
    for (; *v != '\0'; v++) {
        if (*v != '<' && *v != '>' && *v != '&')
            continue;
        text_append(b, run, (size_t)(v - run));
        text_appendf(b, "\\u%04x", (unsigned char)*v);
        run = v + 1;
    }
    text_append(b, run, (size_t)(v - run));
}

/* A numeric value PostgreSQL prints that JSON has no word for. */
static bool json_number_ok(const char *v)
{
    return strcmp(v, "NaN") != 0 && strcmp(v, "Infinity") != 0 && strcmp(v, "-Infinity") != 0;
}

void render_row_json(struct text_buffer *b, const PGresult *res, int row)
{
    text_append(b, "{", 1);
    for (int col = 0; col < PQnfields(res); col++) {
        if (col > 0)
            text_append(b, ",", 1);
        render_json_string(b, PQfname(res, col));
        text_append(b, ":", 1);
        if (PQgetisnull(res, row, col)) {
            text_append(b, "null", 4);
            continue;
        }
        const char *v = PQgetvalue(res, row, col);
        switch (PQftype(res, col)) {
        case OID_BOOL:
            text_appendf(b, "%s", v[0] == 't' ? "true" : "false");
            break;
        case OID_INT2:
        case OID_INT4:
        case OID_INT8:
        case OID_FLOAT4:
        case OID_FLOAT8:
        case OID_NUMERIC:
            if (json_number_ok(v))
                text_append(b, v, strlen(v));
            else
                text_append(b, "null", 4);
            break;
        case OID_JSON:
        case OID_JSONB:
            render_json_raw(b, v);
            break;
        default:
            render_json_string(b, v);
        }
    }
    text_append(b, "}", 1);
}

void render_rows_json(struct text_buffer *b, const PGresult *res)
{
    text_append(b, "[", 1);
    for (int row = 0; row < PQntuples(res); row++) {
        if (row > 0)
            text_append(b, ",", 1);
        render_row_json(b, res, row);
    }
    text_append(b, "]", 1);
}
