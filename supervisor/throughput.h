/*
 * throughput.h — this pod's tasks finished per queue and minute, added to
 * pgwork.throughput (migration 0013) for the dashboard's chart.
 *
 * The workers already count done and failed attempts (retried or dead) per
 * queue in shared memory, for /metrics. At each minute boundary of the
 * database's clock (as the listener estimates it; the pod's own clock
 * until it knows), the supervisor takes the difference since the minute
 * before, per queue, as that minute's row; throughput_flush does the same
 * for the minute in progress at shutdown. Rows wait here until the upsert
 * (an upkeep job, upkeep.c's table) has them: one statement carries every
 * waiting row, and there is none — no statement at all — for a minute in
 * which nothing finished. The same statement deletes up to
 * THROUGHPUT_PRUNE_BATCH rows older than a day.
 *
 * A result lost with its connection keeps the rows, sent again: a minute
 * may then be counted twice (rare, and only in the chart). Never blocks;
 * never touches the socket.
 */
#ifndef PGWORK_THROUGHPUT_H
#define PGWORK_THROUGHPUT_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "../shared/shm.h"

struct listener;

/* Rows kept while the database does not take them (the oldest go first),
 * rows of a day deleted per statement, and the wait after a failure. */
#define THROUGHPUT_PENDING_MAX 4096
#define THROUGHPUT_PRUNE_BATCH 100
#define THROUGHPUT_RETRY_MS 60000

struct throughput_row {
    unsigned record; /* shm queue record (its name: slot_names[record]) */
    int64_t minute;  /* unix seconds of the minute's start, database clock */
    uint64_t done;
    uint64_t failed;
};

struct throughput {
    const struct shm *shm;
    char *const *slot_names; /* shm queue record -> name; NULL = free */
    const struct listener *listener;
    uint64_t *seen_done; /* per record: the counters at the last boundary */
    uint64_t *seen_failed;
    int64_t next_minute_ms;      /* the next boundary, database clock (unix ms) */
    struct throughput_row *rows; /* waiting for the upsert, oldest first */
    int row_count;
    /* Rows the statement in flight carries; 0 = none; -1 = a SELECT 1
     * sent for want of memory. */
    int in_flight;
    int64_t not_before_ms; /* after a failure: no statement before this */
    uint64_t dropped;      /* rows dropped when the buffer was full */
};

/* slot_names (capacity records) is the supervisor's: read, never freed. 0,
 * or -1 out of memory. */
int throughput_init(struct throughput *t, const struct shm *shm, char *const *slot_names,
                    const struct listener *listener, int64_t now);

/* When throughput_run next has work (monotonic ms): the next boundary. */
int64_t throughput_next_deadline(const struct throughput *t);

/* Past a boundary: the minute that ended becomes rows. */
void throughput_run(struct throughput *t, int64_t now);

/* Shutdown: the minute in progress becomes rows now. */
void throughput_flush(struct throughput *t, int64_t now);

/* Rows not yet in the database that go as soon as the connection is
 * free (0 after a failure: shutdown does not wait for the retry). */
int throughput_pending(const struct throughput *t);

/* The upkeep job (upkeep.c's table): due (<= now: send; INT64_MAX:
 * nothing waiting), send (0: libpq refused), its result, and the end of
 * the statement (complete or not). */
int64_t throughput_due(const struct throughput *t, int64_t now);
int throughput_send(struct throughput *t, PGconn *conn, int64_t now);
void throughput_on_result(struct throughput *t, const PGresult *res, bool ok, int64_t now);
void throughput_on_end(struct throughput *t);

void throughput_free(struct throughput *t);

#endif
