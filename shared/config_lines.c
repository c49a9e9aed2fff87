/*
 * config_lines.c — correct libconfuse 3.3's line numbers.
 *
 * libconfuse miscounts lines around comments: after a `#` or `//` comment
 * its line number is 2 ahead, after a block comment 1 ahead (from the
 * comment's end, even on the same line), and the error accumulates. An
 * error must name the line the operator wrote, so the comments are found
 * first, following libconfuse's lexer, and each reported line is moved back
 * by the drift of the comments before it. The drift is measured once on
 * tiny probes rather than hard-coded: a fixed libconfuse then simply
 * measures 0. Only line numbers depend on this file; what libconfuse parses
 * does not.
 */
#include "config_lines.h"

#include <confuse.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* A comment after which libconfuse's line numbers drift. */
struct config_comment {
    int line; /* first line whose tokens it shifts */
    int is_block;
};

static int probe_line;

static int probe_parse(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
    (void)opt;
    (void)value;
    probe_line = cfg->line;
    *(long *)result = 0;
    return 0;
}

static void probe_error(cfg_t *cfg, const char *fmt, va_list ap)
{
    (void)cfg;
    (void)fmt;
    (void)ap;
}

/* How far libconfuse's line number is ahead after parsing `text`, whose
 * "x = 1" is on line `line`. */
static int probe_drift(const char *text, int line)
{
    cfg_opt_t opts[] = {
        CFG_INT_CB("x", 0, CFGF_NONE, probe_parse),
        CFG_END(),
    };
    cfg_t *cfg = cfg_init(opts, CFGF_NONE);
    if (cfg == NULL)
        return 0;
    cfg_set_error_function(cfg, probe_error);
    probe_line = 0;
    int drift = 0;
    if (cfg_parse_buf(cfg, text) == CFG_SUCCESS && probe_line > line)
        drift = probe_line - line;
    cfg_free(cfg);
    return drift;
}

/* The drift after a line comment [0] and a block comment [1], measured once. */
static int comment_drift(int is_block)
{
    static int drift[2] = {-1, -1};
    if (drift[0] < 0) {
        drift[0] = probe_drift("#\nx = 1\n", 2);
        drift[1] = probe_drift("/**/ x = 1\n", 1);
    }
    return drift[is_block != 0];
}

static int add_comment(struct config_lines *lines, int line, int is_block)
{
    if (lines->count == lines->cap) {
        size_t cap = lines->cap ? lines->cap * 2 : 16;
        struct config_comment *grown = realloc(lines->comments, cap * sizeof *grown);
        if (grown == NULL)
            return -1;
        lines->comments = grown;
        lines->cap = cap;
    }
    lines->comments[lines->count++] = (struct config_comment){line, is_block};
    return 0;
}

/*
 * Find the comments, following libconfuse's lexer: `#` starts one anywhere
 * outside quotes, `//` and block comments only where a token starts
 * (`http://x` is a value).
 */
int config_lines_scan(struct config_lines *lines, const char *buf, int *unclosed_line)
{
    comment_drift(0); /* its probe parses must not run inside the caller's */
    enum { CODE, DQUOTE, SQUOTE, BLOCK } state = CODE;
    int line = 1;
    int token_start = 1;
    /* libconfuse accepts a file that ends inside a section (a truncated
     * file would pass as valid): track the braces to refuse it. */
    int depth = 0;
    int open_lines[32] = {0};
    *unclosed_line = 0;

    for (const char *p = buf; *p != '\0'; p++) {
        char c = *p;
        if (c == '\n')
            line++;
        switch (state) {
        case DQUOTE:
        case SQUOTE:
            if (c == '\\' && p[1] != '\0') {
                p++;
                if (*p == '\n')
                    line++;
            } else if (c == (state == DQUOTE ? '"' : '\'')) {
                state = CODE;
                token_start = 1;
            }
            break;
        case BLOCK:
            if (c == '*' && p[1] == '/') {
                p++;
                state = CODE;
                token_start = 1;
                if (add_comment(lines, line, 1) != 0)
                    return -1;
            }
            break;
        case CODE:
            if (c == '"' || c == '\'') {
                state = c == '"' ? DQUOTE : SQUOTE;
            } else if (c == '#' || (c == '/' && p[1] == '/' && token_start)) {
                /* Its drift counts from the next line on. */
                if (add_comment(lines, line + 1, 0) != 0)
                    return -1;
                while (p[1] != '\0' && p[1] != '\n')
                    p++;
            } else if (c == '/' && p[1] == '*' && token_start) {
                p++;
                state = BLOCK;
            } else {
                if (c == '{') {
                    if (depth < 32)
                        open_lines[depth] = line;
                    depth++;
                } else if (c == '}' && depth > 0) {
                    depth--;
                }
                token_start = strchr(" \t\r\n={}(),", c) != NULL;
            }
            break;
        }
    }
    if (depth > 0)
        *unclosed_line = open_lines[depth - 1 < 32 ? depth - 1 : 31];
    return 0;
}

/*
 * A token after comments 0..i-1 is reported at its line plus their drift;
 * comment i is behind the token if counting it would put the token before
 * the line where it starts to count.
 */
int config_lines_file_line(const struct config_lines *lines, int reported)
{
    int drift = 0;
    for (size_t i = 0; lines != NULL && i < lines->count; i++) {
        int more = comment_drift(lines->comments[i].is_block);
        if (reported - (drift + more) < lines->comments[i].line)
            break;
        drift += more;
    }
    return reported - drift;
}

void config_lines_free(struct config_lines *lines)
{
    free(lines->comments);
    *lines = (struct config_lines){0};
}
