/*
 * json.h — whether a text is one JSON value (RFC 8259) that PostgreSQL's
 * jsonb accepts, and why not: a schedule's payload is checked when the
 * config is read, not first when its tick's INSERT fails in the database.
 *
 * Pure: no allocation, no recursion (nesting is counted, up to
 * JSON_DEPTH_MAX), never reads past the string's NUL.
 */
#ifndef PGWORK_JSON_H
#define PGWORK_JSON_H

#include <stddef.h>

/* Deeper nesting is refused (jsonb's own limit is the stack's). */
#define JSON_DEPTH_MAX 512

/* 0 if text is exactly one JSON value with optional white space around
 * it, else -1 and why ("invalid JSON at byte 7: expected ':'"). Like
 * jsonb, a string may not contain \u0000. */
int json_check(const char *text, char *why, size_t len);

#endif
