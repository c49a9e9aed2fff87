/*
 * cli_internal.h — what the cli_*.c command files share (cli.c). Not for
 * anyone else: the commands' API is cli.h.
 */
#ifndef PGWORK_CLI_INTERNAL_H
#define PGWORK_CLI_INTERNAL_H

#include <stdbool.h>
#include <stdio.h>

#include <libpq-fe.h>

#include "../shared/config.h"

/* SQLSTATEs (PostgreSQL's errcodes.h) the commands tell apart. */
#define SQLSTATE_CLASS_DATA_EXCEPTION "22"   /* bad jsonb input and friends */
#define SQLSTATE_INVALID_SCHEMA_NAME "3F000" /* pgwork schema missing */
#define SQLSTATE_UNDEFINED_FUNCTION "42883"  /* a pgwork function missing */
#define SQLSTATE_UNDEFINED_TABLE "42P01"     /* pgwork.tasks missing */

/*
 * Connect with config_conninfo(): "" means libpq's PG* variables. JSON is
 * UTF-8 and queue names are validated as UTF-8, so the client encoding is
 * UTF8 whatever PGCLIENTENCODING says: bytes reach the database as given.
 * NULL after saying why on stderr (secrets hidden).
 */
PGconn *cli_connect(const struct pgwork_config *config);

/* Explain a failed query on stderr ("pgwork: <what>: why", with a hint to
 * migrate when the schema is missing); returns the exit code. */
int cli_query_failed(const char *what, const PGresult *res, const PGconn *conn);

/* A queue name given on the command line to look up: it is compared with
 * what is stored, so anything the table can hold is accepted (names
 * inserted with SQL may be longer than enqueue allows, or hold control
 * characters); only what the database could never match is refused, with
 * a line on stderr. */
bool cli_lookup_name_ok(const char *name);

/* After a command printed its answer: flush stdout and check nothing was
 * lost (a closed pipe, a full disk). EXIT_OK, or EXIT_FAILURE_GENERIC
 * after "pgwork: cannot write <what>: why" on stderr. */
int cli_stdout_written(const char *what);

/* `pgwork status`'s schedules (cli_schedules.c): a table after the
 * queues', or the JSON member "schedules":[...] (no braces around it).
 * queues: a text[] literal of the queues asked for, NULL = all. 0, or -1
 * after saying why on stderr. */
int cli_status_schedules(PGconn *conn, const struct pgwork_config *config, const char *queues,
                         bool json, FILE *out);
/* `pgwork status`'s limited queues (cli_limits.c): the reading of
 * config's limited queues, or NULL — none (*failed 0), or the query
 * failed (*failed its exit code, said on stderr). */
PGresult *cli_limits_query(PGconn *conn, const struct pgwork_config *config, int *failed);
/* ,"limits":[...] inside status's JSON object; a table after its own. */
void cli_limits_json(FILE *out, const PGresult *res);
void cli_limits_table(FILE *out, const PGresult *res);

#endif
