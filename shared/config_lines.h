/*
 * config_lines.h — the file's line numbers where libconfuse 3.3 reports
 * wrong ones, and the unclosed section its lexer lets through.
 *
 * libconfuse's line counter runs ahead after each comment (see
 * config_lines.c). Before a file is handed to libconfuse, config_lines_scan()
 * finds its comments the way libconfuse's lexer does; while libconfuse
 * parses, config_lines_file_line() turns its line numbers back into the
 * file's. Part of config_load(): only config.c uses it.
 */
#ifndef PGWORK_CONFIG_LINES_H
#define PGWORK_CONFIG_LINES_H

#include <stddef.h>

struct config_comment;

/* The comments of one file, in file order. Zero-initialise; free with
 * config_lines_free(). */
struct config_lines {
    struct config_comment *comments;
    size_t count;
    size_t cap;
};

/*
 * Find the comments of `buf` (the whole file) and whether a section is
 * left open: *unclosed_line is the line of the last '{' never closed, or 0.
 * Returns 0, or -1 when out of memory. Measures libconfuse's drift on its
 * first call, so it must not run while a libconfuse parse is under way.
 */
int config_lines_scan(struct config_lines *lines, const char *buf, int *unclosed_line);

/* libconfuse's line number `reported` -> the file's line. */
int config_lines_file_line(const struct config_lines *lines, int reported);

void config_lines_free(struct config_lines *lines);

#endif
