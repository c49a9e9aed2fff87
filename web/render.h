/*
 * render.h — text the dashboard sends: HTML and JSON escaping, URL
 * encoding, and PostgreSQL rows as JSON.
 *
 * Every value that comes from the database or the request goes through
 * one of these before it reaches a page: payloads, queue names and
 * last_error are user data (a "<script>" in an error prints as text).
 * Pure functions of their arguments; they append to a text_buffer, whose
 * failed flag the caller checks once.
 */
#ifndef PGWORK_WEB_RENDER_H
#define PGWORK_WEB_RENDER_H

#include <stddef.h>

#include <libpq-fe.h>

#include "../shared/text.h"

/* s with & < > " ' as entities: safe in element text and quoted attributes. */
void render_html(struct text_buffer *b, const char *s);

/* s as a JSON string, quotes included; '<', '>' and '&' as \u escapes too,
 * so the text is also safe inside a <script type="application/json">. */
void render_json_string(struct text_buffer *b, const char *s);

/* s percent-encoded for a path segment or a query value (unreserved bytes
 * stay). */
void render_url(struct text_buffer *b, const char *s);

/* Decode %XX (and '+' as a space when plus_is_space) in place; returns -1
 * on a malformed escape or an escaped NUL byte. */
int render_unescape(char *s, int plus_is_space);

/* Row `row` of res as one JSON object: column names as keys; numbers and
 * booleans as JSON numbers and booleans, json/jsonb as JSON, NULL as null,
 * anything else as a string. */
void render_row_json(struct text_buffer *b, const PGresult *res, int row);

/* Every row of res as a JSON array of such objects. */
void render_rows_json(struct text_buffer *b, const PGresult *res);

#endif
