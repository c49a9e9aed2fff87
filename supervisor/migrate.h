/*
 * migrate.h — `pgwork migrate`: apply the embedded migrations/NNNN_*.sql in
 * order, each in its own transaction, under a session advisory lock, and
 * record them in pgwork.schema_migrations. Re-running is a no-op; two pods
 * migrating at once serialise on the lock and both succeed.
 */
#ifndef PGWORK_MIGRATE_H
#define PGWORK_MIGRATE_H

#include <libpq-fe.h>

struct migration {
    int version;
    const char *name;
    const char *sql;
};

/* Generated from migrations/ by scripts/embed-migrations.sh. */
extern const struct migration migrations[];
extern const int migration_count;

/* The newest version this binary knows. */
int migrate_latest_version(void);

/* Apply every migration newer than the database's. Returns the number
 * applied (0 = already current), or -1 after logging why. */
int migrate_run(PGconn *conn);

#endif
