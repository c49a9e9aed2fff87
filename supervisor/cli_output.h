/*
 * cli_output.h — printing values the database returned, whatever they
 * hold (cli_output.c).
 */
#ifndef PGWORK_CLI_OUTPUT_H
#define PGWORK_CLI_OUTPUT_H

#include <stddef.h>
#include <stdio.h>

#include <libpq-fe.h>

/* A number as PostgreSQL printed it (bigint or numeric), checked to be a
 * valid JSON number; NULL and anything else (NaN, Infinity) print null. */
void cli_json_number(FILE *out, const PGresult *res, int row, int col);

/* s as a JSON string: RFC 8259 escapes, every control character as \uXXXX
 * (U+2028/9 too, for JavaScript), bytes that are not UTF-8 as U+FFFD. */
void cli_json_string(FILE *out, const char *s);

/* s for a terminal: printable text as is; \n \t \r, other C0 controls and
 * DEL as \xNN, C1 controls and bidirectional overrides (which reorder what
 * follows on screen) as \uXXXX, bytes that are not UTF-8 as \xNN. */
void cli_text_name(FILE *out, const char *s);

/* Seconds (as PostgreSQL printed them) for people: "-", "42s", "3m05s",
 * "2h07m", "4d03h", "?" for what no age can be. */
void cli_format_age(char *buf, size_t len, const PGresult *res, int row, int col);

#endif
