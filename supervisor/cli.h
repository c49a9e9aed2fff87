/*
 * cli.h — the one-shot commands of the pgwork binary that talk to the
 * database with ordinary blocking libpq: migrate, enqueue, status and
 * requeue-dead. (`run` is the supervisor, supervisor.h; check-config needs
 * no database.) main.c parses the command line into the option structs
 * below; these functions never see argv.
 *
 * Each command returns the process exit code (see main.c's usage text).
 */
#ifndef PGWORK_CLI_H
#define PGWORK_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../shared/config.h"
#include "../shared/exitcodes.h" /* the commands return these */

/*
 * Check that the connection strings the config names (database.conninfo or
 * $PGWORK_DATABASE_URL, and the listener's) parse, without connecting.
 * Returns EXIT_OK, or EXIT_CONFIG with one line in err saying why — with
 * any password hidden: libpq's own parse errors quote a bad URL whole.
 */
int cli_check_conninfo(const struct pgwork_config *config, char *err, size_t errlen);

/* `pgwork migrate`: connect with config_conninfo(), run migrate_run(). */
int cli_migrate(const struct pgwork_config *config);

/* Longest unique key, in bytes (migration 0007's CHECK). */
#define UNIQUE_KEY_MAX 1000

/* `pgwork enqueue [--unique-key KEY] QUEUE [PAYLOAD]`: payload NULL = read
 * stdin, unique_key NULL = none. The payload must be valid JSON (checked by
 * the database's jsonb input); prints the task id on stdout: the new
 * task's, or, with a key, that of the pending or running task holding it. */
int cli_enqueue(const struct pgwork_config *config, const char *queue, const char *payload,
                const char *unique_key);

/* `pgwork status [--json] [QUEUE...]`. */
struct cli_status_options {
    bool json;                 /* one JSON object instead of a table */
    const char *const *queues; /* these queues, in this order; NULL = all */
    int queue_count;           /* entries in queues */
};

/* Per queue: tasks by state (pending due now / scheduled for later,
 * running, done, dead), the age of the oldest due pending task and of the
 * oldest running one, when the next scheduled one is due. One query; all
 * times come from the database's clock. Named queues without tasks are
 * shown with zeros. */
int cli_status(const struct pgwork_config *config, const struct cli_status_options *options);

/* `pgwork requeue-dead QUEUE | --all-queues | --id N...`: exactly one
 * selector. */
enum cli_requeue_scope {
    CLI_REQUEUE_QUEUE, /* the dead tasks of one queue */
    CLI_REQUEUE_ALL,   /* the dead tasks of every queue */
    CLI_REQUEUE_IDS,   /* these tasks, each of which must be dead */
};

struct cli_requeue_options {
    enum cli_requeue_scope scope;
    const char *queue;  /* CLI_REQUEUE_QUEUE */
    const int64_t *ids; /* CLI_REQUEUE_IDS: id_count task ids */
    int id_count;
};

/* Dead tasks go back to pending: attempts 0, run_at now(), lease and
 * finished_at cleared, last_error kept (the next failure overwrites it).
 * One statement, which also notifies the queues touched so idle workers
 * pick the tasks up at once. Prints "requeued N dead task(s)". With ids,
 * a task that does not exist or is not dead is named on stderr and the
 * exit code is EXIT_BAD_INPUT (the dead ones among them are requeued). */
int cli_requeue_dead(const struct pgwork_config *config, const struct cli_requeue_options *options);

/*
 * `pgwork cancel ID...` (cli_control.c): pgwork.cancel(id) for each, in one
 * transaction (migration 0011). A pending task is cancelled at once; a
 * running one too, and the pod running it stops it. One line per task on
 * stdout for those cancelled; a task that had finished already (done,
 * dead, cancelled) or does not exist is named on stderr. EXIT_OK when every
 * task given is cancelled now; else EXIT_BAD_INPUT when one does not exist,
 * else EXIT_NOTHING_TO_DO.
 */
int cli_cancel(const struct pgwork_config *config, const int64_t *ids, int count);

/* `pgwork pause QUEUE...` / `pgwork resume QUEUE...` (cli_control.c):
 * pgwork.pause / pgwork.resume for each, in one transaction; one line per
 * queue says what changed (or that nothing did: both are idempotent,
 * EXIT_OK). */
int cli_pause(const struct pgwork_config *config, const char *const *queues, int count,
              bool resume);

#endif
