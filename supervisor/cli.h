/*
 * cli.h — the one-shot commands of the pgwork binary that talk to the
 * database with ordinary blocking libpq: migrate and enqueue. (`run` is the
 * supervisor, supervisor.h; check-config needs no database.)
 *
 * Each returns the process exit code (see main.c's usage text).
 */
#ifndef PGWORK_CLI_H
#define PGWORK_CLI_H

#include "../shared/config.h"

/* Exit codes: a protocol shared by every command (printed by --help). */
enum exit_code {
    EXIT_OK = 0,
    EXIT_FAILURE_GENERIC = 1, /* runtime failure (database unreachable, ...) */
    EXIT_USAGE = 2,           /* bad command line */
    EXIT_CONFIG = 3,          /* bad configuration: do not restart */
    EXIT_BAD_INPUT = 4,       /* bad payload or queue name */
};

/* `pgwork migrate`: connect with config_conninfo(), run migrate_run(). */
int cli_migrate(const struct pgwork_config *config);

/* `pgwork enqueue QUEUE [PAYLOAD]`: payload NULL = read stdin. The payload
 * must be valid JSON (checked by the database's jsonb input); prints the new
 * task id on stdout. */
int cli_enqueue(const struct pgwork_config *config, const char *queue, const char *payload);

#endif
