/*
 * cli_output.c — printing what the database returned, safely whatever it
 * holds (cli_output.h): a queue name is JSON-escaped in --json output and
 * has its control and invisible characters escaped in a table, so a name
 * can neither break a script's parser nor send escape sequences to a
 * terminal.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_output.h"
#include "../shared/text.h"

/* A number as PostgreSQL printed it (bigint or numeric), checked to be a
 * valid JSON number; NULL and anything else (NaN, Infinity) print null. */
void cli_json_number(FILE *out, const PGresult *res, int row, int col)
{
    const char *v = PQgetisnull(res, row, col) ? "" : PQgetvalue(res, row, col);
    const char *p = v + (*v == '-');
    size_t digits = strspn(p, "0123456789");
    bool ok = digits > 0 && (p[0] != '0' || digits == 1);
    p += digits;
    if (ok && *p == '.') {
        digits = strspn(p + 1, "0123456789");
        ok = digits > 0;
        p += 1 + digits;
    }
    fputs(ok && *p == '\0' ? v : "null", out);
}

/* s as a JSON string: RFC 8259 escapes, every control character as \uXXXX
 * (U+2028/9 too, for JavaScript), bytes that are not UTF-8 as U+FFFD. */
void cli_json_string(FILE *out, const char *s)
{
    putc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        uint32_t cp;
        size_t n = text_utf8_len(p, SIZE_MAX, &cp);
        if (n == 0) {
            fputs("\\ufffd", out);
            p++;
            continue;
        }
        if (cp == '"' || cp == '\\')
            fprintf(out, "\\%c", (char)cp);
        else if (cp == '\n')
            fputs("\\n", out);
        else if (cp == '\t')
            fputs("\\t", out);
        else if (cp == '\r')
            fputs("\\r", out);
        else if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029)
            fprintf(out, "\\u%04x", (unsigned)cp);
        else
            fwrite(p, 1, (size_t)n, out);
        p += n;
    }
    putc('"', out);
}

/* s for a terminal: printable text as is; \n \t \r, other C0 controls and
 * DEL as \xNN, C1 controls and bidirectional overrides (which reorder what
 * follows on screen) as \uXXXX, bytes that are not UTF-8 as \xNN. */
void cli_text_name(FILE *out, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        uint32_t cp;
        size_t n = text_utf8_len(p, SIZE_MAX, &cp);
        if (n == 0) {
            fprintf(out, "\\x%02x", *p);
            p++;
            continue;
        }
        if (cp == '\n')
            fputs("\\n", out);
        else if (cp == '\t')
            fputs("\\t", out);
        else if (cp == '\r')
            fputs("\\r", out);
        else if (cp < 0x20 || cp == 0x7f)
            fprintf(out, "\\x%02x", (unsigned)cp);
        else if ((cp >= 0x80 && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) ||
                 (cp >= 0x2066 && cp <= 0x2069))
            fprintf(out, "\\u%04x", (unsigned)cp);
        else
            fwrite(p, 1, (size_t)n, out);
        p += n;
    }
}

/* Seconds (as PostgreSQL printed them) for people: "-", "42s", "3m05s",
 * "2h07m", "4d03h". */
void cli_format_age(char *buf, size_t len, const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col)) {
        snprintf(buf, len, "-");
        return;
    }
    double secs = strtod(PQgetvalue(res, row, col), NULL);
    if (!(secs >= 0) || secs > 1e15) { /* NaN, or beyond any real age */
        snprintf(buf, len, "?");
        return;
    }
    long long s = (long long)secs;
    if (s < 60)
        snprintf(buf, len, "%llds", s);
    else if (s < 3600)
        snprintf(buf, len, "%lldm%02llds", s / 60, s % 60);
    else if (s < 86400)
        snprintf(buf, len, "%lldh%02lldm", s / 3600, s % 3600 / 60);
    else
        snprintf(buf, len, "%lldd%02lldh", s / 86400, s % 86400 / 3600);
}

void cli_table(FILE *out, const PGresult *res, const struct cli_table *t, const char *before)
{
    int rows = PQntuples(res), n = t->ncols;
    char(*cells)[CLI_TABLE_CELL_MAX] = calloc((size_t)rows * (size_t)n + 1, sizeof(*cells));
    int *width = calloc((size_t)n, sizeof(*width));
    if (cells == NULL || width == NULL) {
        fputs("pgwork: out of memory\n", stderr);
        free(cells);
        free(width);
        return;
    }
    for (int c = 0; c < n; c++)
        width[c] = (int)strlen(t->headers[c]);
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < n; c++) {
            char *cell = cells[r * n + c];
            t->cell(cell, CLI_TABLE_CELL_MAX, res, r, c);
            int w = (int)strlen(cell);
            width[c] = w > width[c] ? w : width[c];
        }
    }
    int sign = t->right_align ? 1 : -1;
    fputs(before, out);
    for (int c = 0; c < n; c++)
        fprintf(out, "%*s  ", sign * width[c], t->headers[c]);
    fprintf(out, "%s\n", t->name_header);
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < n; c++)
            fprintf(out, "%*s  ", sign * width[c], cells[r * n + c]);
        cli_text_name(out, PQgetvalue(res, r, t->name_col));
        putc('\n', out);
    }
    free(width);
    free(cells);
}
