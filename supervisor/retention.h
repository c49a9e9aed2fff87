/*
 * retention.h — finished tasks do not pile up (DESIGN §2): the upkeep job
 * that deletes done tasks older than their queue's `retention`, and dead
 * and cancelled ones older than `dead_retention`, in small batches, and
 * decides when to look again.
 *
 * Any pod does it (no leader): the batches lock their rows with SKIP
 * LOCKED, so pods running it at once share the rows and never wait on
 * each other or on a worker. It goes on the listener's connection through
 * upkeep.c's job table, last in urgency. Its pace:
 *  - a batch that came back full goes again at once (behind the other
 *    upkeep statements);
 *  - otherwise the next batch waits for the earliest finished task to
 *    pass its retention (the batch's own answer, or the poll's, which
 *    asks the same of the table every safety poll, so an idle pod spends
 *    no statement of its own on retention), and at least long enough for
 *    about a batch's worth of tasks to have come of age at the rate the
 *    last round found them: between RETENTION_GAP_MIN_MS and
 *    RETENTION_GAP_MAX_MS.
 * So a busy queue's finished tasks outlive their retention by about a
 * second, a trickle's by at most a few minutes, and an idle pod sends
 * nothing. This module only decides and parses; upkeep.c sends.
 */
#ifndef PGWORK_RETENTION_H
#define PGWORK_RETENTION_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

/* Rows one statement deletes at most, per kind (done; dead and cancelled). */
#define RETENTION_BATCH 500
/* Shortest and longest wait after a round (a run of batches up to one that
 * was not full), and after a failed statement. */
#define RETENTION_GAP_MIN_MS 1000
#define RETENTION_GAP_MAX_MS 300000
#define RETENTION_RETRY_MS 60000

struct retention {
    int64_t hint_ms;       /* a finished task passes its retention then; INT64_MAX: none known */
    int64_t not_before_ms; /* pacing: no batch before this */
    int64_t round_deleted; /* rows the batches of this round deleted so far */
    int64_t round_end_ms;  /* when the last round ended (start: when the pod started) */
    uint64_t deleted;      /* rows deleted since start (metrics) */
    uint64_t batches;      /* statements that succeeded (metrics) */
};

/* A fresh state: nothing known until the first poll answers. */
void retention_init(struct retention *r, int64_t now);

/* When the next batch is due (<= now: send it); INT64_MAX: not before the
 * poll says something. */
int64_t retention_due(const struct retention *r);

/* Send a batch on conn: $1 the queues' names, $2 their retention, $3
 * their dead_retention (text[] and bigint[] literals in ms, 0 = kept).
 * 0 when libpq refused. */
int retention_send(PGconn *conn, const char *names, const char *retention,
                   const char *dead_retention);

/* Its result (ok: the statement succeeded). */
void retention_on_result(struct retention *r, const PGresult *res, bool ok, int64_t now);

/* The poll's answer: ms until the earliest finished task passes its
 * retention (<= 0: some already has), or known = false when every queue
 * keeps its tasks. Replaces what was known: the poll has just looked. */
void retention_on_poll(struct retention *r, bool known, int64_t ms, int64_t now);

#endif
