/*
 * cli_output.h — printing values the database returned, whatever they
 * hold (cli_output.c).
 */
#ifndef PGWORK_CLI_OUTPUT_H
#define PGWORK_CLI_OUTPUT_H

#include <stdbool.h>
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

/* The longest cell cli_table prints (longer text is cut). */
#define CLI_TABLE_CELL_MAX 32

/* Format the cell of res's row `row` for table column c into buf (len:
 * CLI_TABLE_CELL_MAX). */
typedef void (*cli_table_cell)(char *buf, size_t len, const PGresult *res, int row, int c);

/* What cli_table prints: ncols columns under headers, each as wide as its
 * widest cell, right-aligned (numbers) or not; then the name column last
 * (like ps's COMMAND: any length, any script, printed by cli_text_name). */
struct cli_table {
    const char *const *headers;
    int ncols;
    bool right_align;
    cli_table_cell cell;
    const char *name_header;
    int name_col; /* res's column of the name */
};

/* res's rows as table t says, `before` printed first (after the cells are
 * built: nothing but a line on stderr when out of memory). */
void cli_table(FILE *out, const PGresult *res, const struct cli_table *t, const char *before);

#endif
