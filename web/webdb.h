/*
 * webdb.h — the dashboard's small pool of database connections, and what
 * the database it talks to can do.
 *
 * WEBDB_POOL_SIZE blocking libpq connections ("pgwork web" in
 * pg_stat_activity), opened when first needed and shared by the server's
 * connection threads: a request takes one for its queries and gives it
 * back; one that broke is closed and reopened by the next request. A
 * request that finds none free within WEBDB_WAIT_MS is answered 503, so a
 * flood of page loads costs the database at most WEBDB_POOL_SIZE sessions.
 *
 * Features the migrations of other turns add (pause, cancel, schedules)
 * are looked up on every new connection (to_regproc / to_regclass): the
 * pages show an action only where the database has it.
 */
#ifndef PGWORK_WEB_WEBDB_H
#define PGWORK_WEB_WEBDB_H

#include <stdbool.h>

#include <libpq-fe.h>

#include "../shared/config.h"

#define WEBDB_POOL_SIZE 4
#define WEBDB_WAIT_MS 5000

struct webdb_features {
    bool cancel;       /* pgwork.cancel(bigint) */
    bool pause;        /* pgwork.pause(text) and pgwork.resume(text) */
    bool paused_table; /* pgwork.paused_queues (queue) */
    bool schedules;    /* pgwork.schedules (migration 0010) */
    bool throughput;   /* pgwork.throughput (migration 0013) */
};

/* Remember the config (not copied: it outlives the pool). */
void webdb_init(const struct pgwork_config *config);

/* A connection, or NULL (none free in time, or the database unreachable:
 * logged once per failure streak). */
PGconn *webdb_acquire(void);

/* Give it back; a broken one is closed. */
void webdb_release(PGconn *conn);

/* What the database had when a connection was last opened. */
struct webdb_features webdb_features(void);

/* Close every connection (at exit, no request running). */
void webdb_fini(void);

#endif
