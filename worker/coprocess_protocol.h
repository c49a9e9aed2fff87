/*
 * coprocess_protocol.h — the coprocess line protocol (specified in
 * examples/README.md): one task line out, one result line back.
 *
 *     {"id":N,"attempt":N,"queue":"<name>","payload":<jsonb text>}\n
 *     {"id":N,"ok":true}   or   {"id":N,"ok":false,"error":"why"}
 *
 * Text in, text out: no I/O, no process, no state (handler_coprocess.c
 * owns the child and the pipes).
 */
#ifndef PGWORK_COPROCESS_PROTOCOL_H
#define PGWORK_COPROCESS_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "handler.h"
#include "../shared/text.h"

struct coprocess_result {
    int64_t id;
    bool ok;
    char error[HANDLER_ERROR_MAX]; /* decoded "error" (valid UTF-8, no NUL); "" if absent */
};

/* text as a JSON string, quotes included: ", \ and control characters
 * escaped, invalid UTF-8 replaced by U+FFFD. malloc'd; NULL when out of
 * memory. */
char *coprocess_quote(const char *text);

/* Write the task line {"id":..,"attempt":..,"queue":..,"payload":..}\n into
 * line (replacing what it held; grown as needed). queue_json is the queue name
 * already quoted (coprocess_quote). Returns the line's length (newline
 * included, NUL-terminated after it), or -1 when out of memory. */
int coprocess_format_task(struct text_buffer *line, const char *queue_json,
                          const struct task *task);

/* Parse one result line (len bytes, without its newline). 0, or -1 with a
 * short reason in why. Unknown fields are skipped; "id" and "ok" are
 * required. */
int coprocess_parse_result(const char *line, size_t len, struct coprocess_result *result, char *why,
                           size_t whylen);

#endif
