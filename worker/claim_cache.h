/*
 * claim_cache.h — the claim statements (and the sql path's done, task.c)
 * a worker keeps prepared, planned once, on a connection that is a
 * session of its own (claim_cache.c). What a claim sends is
 * task_claim.h's; this module only says whether a text has a name on the
 * current connection, and which settings go with it.
 */
#ifndef PGWORK_CLAIM_CACHE_H
#define PGWORK_CLAIM_CACHE_H

#include <stdbool.h>

#include <libpq-fe.h>

/* The settings statement for a transaction that runs a prepared claim:
 * its cached generic plan, the planner told to walk the indexes (see
 * claim_cache.c), and synchronous_commit off unless the config wants it
 * on. Built once per process, before the first connection. */
void claim_cache_init(bool synchronous_commit);
const char *claim_cache_settings(void);

/* A new connection (also after a reconnect): nothing is prepared on it.
 * Asks the server once whether the session is ours (pg_backend_pid() is
 * the backend libpq connected to); behind a pooler it is not, and nothing
 * is ever prepared there. conn must be idle, outside pipeline mode. */
void claim_cache_connected(PGconn *conn);

/* The current connection is a session of our own (no pooler between):
 * what claim_cache_connected found, until a pooler's failure said
 * otherwise. */
bool claim_cache_own_session(void);

/* The name sql is prepared under on the current connection, or NULL (send
 * it unnamed). */
const char *claim_cache_name(const char *sql);

/* Prepare sql (nparams of types) on conn now, one round trip, if the
 * connection is ours and there is room; conn must be idle, outside
 * pipeline mode. The name, or NULL (send it unnamed). */
const char *claim_cache_prepare(PGconn *conn, const char *sql, int nparams, const Oid *types);

/* The same inside a pipeline: the Parse is queued (not waited for;
 * *parse_sent) and the name counts as prepared at once, so a claim queued
 * behind it uses it. The Parse's answer is the caller's to read and to
 * hand to
 * claim_cache_sent(): a Parse that did not succeed (skipped after an
 * error earlier in the pipeline, a cancel) takes the name back — and the
 * claim behind it was skipped with it, never run on a missing name. */
const char *claim_cache_send_prepare(PGconn *conn, const char *sql, int nparams, const Oid *types,
                                     bool *parse_sent);
void claim_cache_sent(const char *sql, const PGresult *res);

/* A claim failed with res: if its prepared statement was missing (only a
 * pooler we did not recognise can do that), nothing is prepared again in
 * this process. */
void claim_cache_failed(const PGresult *res);

#endif
