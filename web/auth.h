/*
 * auth.h — who may read and act on the dashboard.
 *
 * One shared token (web.token_file or PGWORK_WEB_TOKEN) is the only
 * credential. Scripts send it as "Authorization: Bearer TOKEN"; a browser
 * logs in once with it through a form and gets a session cookie instead
 * (HttpOnly, SameSite=Strict), plus a per-session CSRF token that every
 * form post must carry. The token is compared in constant time and never
 * logged, put in a URL or sent back. Sessions live in this process's
 * memory: a restart logs browsers out.
 *
 * Thread-safe: the server calls these from its connection threads.
 */
#ifndef PGWORK_WEB_AUTH_H
#define PGWORK_WEB_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "../shared/config.h"

/* Hex characters of a session id and of a CSRF token (and a NUL). */
#define AUTH_ID_LEN 64
#define AUTH_TOKEN_MIN 16

/* Read the token (the file if web.token_file is set, else the
 * environment). 0, or -1 with why in err: no token, unreadable file, or
 * shorter than AUTH_TOKEN_MIN bytes. */
int auth_init(const struct pgwork_config *config, char *err, size_t errlen);

/* Whether presented is the token (constant time in the token's length). */
bool auth_token_ok(const char *presented);

/* Whether a and b are equal strings, in time that depends on b's length
 * only (b: the secret). */
bool auth_equal(const char *a, const char *b);

/* A new session: its id and CSRF token (AUTH_ID_LEN + 1 bytes each). 0, or
 * -1 (no randomness). At most AUTH_SESSIONS live at once: the oldest is
 * dropped for a new one. */
#define AUTH_SESSIONS 256
int auth_session_new(char *sid, char *csrf);

/* The CSRF token of the live session sid into csrf; false if there is
 * none (unknown, expired). */
bool auth_session_find(const char *sid, char *csrf);

/* Forget the session (logout). */
void auth_session_end(const char *sid);

#endif
