/*
 * auth.h — who may read and act on the dashboard.
 *
 * One shared token (web.token_file or PGWORK_WEB_TOKEN) is the only
 * credential. Scripts send it as "Authorization: Bearer TOKEN"; a browser
 * logs in once with it through a form and gets a session cookie instead
 * (HttpOnly, SameSite=Strict), plus a per-session CSRF token that every
 * form post must carry. The cookie is stateless and signed (auth.c: an
 * expiry, a nonce and an HMAC-SHA256 with a key derived from the token),
 * so every process with the same token accepts it: sessions survive
 * restarts and work across replicas. There is no server-side logout: a
 * cookie stays valid until it expires (AUTH_SESSION_TTL_S) or the token
 * changes; logging out deletes it from the browser.
 *
 * Thread-safe: the server calls these from its connection threads.
 */
#ifndef PGWORK_WEB_AUTH_H
#define PGWORK_WEB_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "../shared/config.h"

/* Hex characters of a CSRF token (and a NUL); room for a session cookie's
 * value; how long a session lasts. */
#define AUTH_ID_LEN 64
#define AUTH_COOKIE_MAX 160
#define AUTH_SESSION_TTL_S (12 * 3600)
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

/* A new session: its cookie value (AUTH_COOKIE_MAX bytes) and CSRF token
 * (AUTH_ID_LEN + 1 bytes). 0, or -1 (no token, no randomness). */
int auth_session_new(char *cookie, char *csrf);

/* Whether cookie is a session this token signed that has not expired;
 * its CSRF token into csrf then. */
bool auth_session_find(const char *cookie, char *csrf);

#endif
