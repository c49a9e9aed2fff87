/*
 * sql_batch.c — the worker's one-transaction path for the sql handler
 * (handlers with send_in_transaction; DESIGN §2, §3): a batch in two
 * pipelined rounds — (1) claim it, (2) BEGIN, every task's statement,
 * their done, COMMIT. On a session of our own (not through a pooler) and
 * for a queue without limits, round 2's BEGIN and settings go behind round
 * 1's sync, so the server has run them by the time the statements arrive;
 * that transaction is then open between the rounds, and rolled back when
 * the claim takes nothing or fails.
 * While batches come back full, the next batch's claim rides behind
 * round 2's COMMIT, in the same round trip, in an implicit transaction of
 * its own that commits at the round's sync: a drain costs one round trip
 * a batch, not two.
 *
 * Invariants:
 *  - the claim commits before any statement runs (also the one sent
 *    behind a COMMIT: it runs after that COMMIT and commits at the sync,
 *    before its batch's round 2 is sent; a round that fails skips it, as
 *    a pipeline skips everything after an error up to the sync): a task's
 *    attempt is on
 *    record while it runs, so a worker that dies mid statement leaves its
 *    tasks running under its tag, where only the supervisor's requeue
 *    (which charges the one it was running) or the lease takes them back
 *    — never another claim in between (issue 10);
 *  - a task's effect commits with its done, or not at all: the done fails
 *    unless every task of the batch is still ours;
 *  - after a round that did not commit, the batch is finished a task at a
 *    time by the worker's own path (worker_run_batch), the task whose
 *    statement failed charged first; after a lost connection it goes back
 *    with the reconnect and is claimed again a task at a time;
 *  - the shm slot's task_id names the task whose statement may be running
 *    (the one the supervisor charges if this worker dies): each answer
 *    comes as its statement ends, and the slot moves on with it.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql_batch.h"
#include "claim_cache.h"
#include "worker_internal.h"
#include "../shared/dbconn.h"
#include "../shared/log.h"
#include "../shared/timeutil.h"

static bool exec_simple(struct worker *w, const char *sql)
{
    PGresult *res = dbconn_exec(w->conn, sql);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        log_error("%s failed: %s", sql, PQerrorMessage(w->conn));
    PQclear(res);
    return ok;
}

/* Leave pipeline mode after a round that went wrong: read what is left,
 * roll back the open transaction. */
static void sql_batch_abandon(struct worker *w, bool round_open)
{
    if (round_open && !dbconn_pipeline_finish_round(w->conn))
        worker_check_connection(w);
    if (!PQexitPipelineMode(w->conn)) {
        log_error("cannot leave pipeline mode: %s", PQerrorMessage(w->conn));
        exit(WORKER_EXIT_ERROR);
    }
    if (PQtransactionStatus(w->conn) != PQTRANS_IDLE)
        exec_simple(w, "ROLLBACK");
    worker_check_connection(w);
}

/* How many preludes round 2 has: their answers come before the
 * statements'. */
static int sql_batch_prelude_count(const struct queue_config *queue)
{
    return 1 + (queue->timeout_ms > 0) + (dbconn_local() != NULL);
}

/* Round 2's preludes: BEGIN, the queue's timeout for each statement, the
 * worker's settings. */
static bool sql_batch_send_preludes(struct worker *w, const struct queue_config *queue)
{
    PGconn *conn = w->conn;
    char set_timeout[64];
    snprintf(set_timeout, sizeof(set_timeout), "SET LOCAL statement_timeout = %lld",
             (long long)queue->timeout_ms);
    const char *settings = dbconn_local();
    bool sent =
        PQsendQueryParams(conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) &&
        (queue->timeout_ms == 0 ||
         PQsendQueryParams(conn, set_timeout, 0, NULL, NULL, NULL, NULL, 0)) &&
        (settings == NULL || PQsendQueryParams(conn, settings, 0, NULL, NULL, NULL, NULL, 0));
    return sent;
}

/* Preludes sent ahead of a batch that will not come (the claim took
 * nothing, or failed): their transaction rolled back, the round read to
 * its sync. */
static bool sql_batch_unbegin(struct worker *w)
{
    return PQsendQueryParams(w->conn, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0) &&
           PQpipelineSync(w->conn) && dbconn_pipeline_finish_round(w->conn);
}

/*
 * Round 1 of the one-transaction path, one round trip: claim the batch —
 * marked running under this worker, attempts + 1 — in an implicit
 * transaction of its own (the worker's settings first) that commits at
 * the round's sync, before any of the tasks' statements runs. From then on
 * the attempt is on record: if this worker dies in round 2, its tasks stay
 * running under its tag, and only the supervisor's requeue (which charges
 * the one it was running) or the lease gives them back — no other claim
 * can take a task in between and run it as the same attempt (issue 10: the
 * batch's own row locks vanished with its stopped backend, before the
 * requeue came). Round 2's preludes go behind the claim's sync
 * (sql_batch_send_preludes): the server runs them, after the claim
 * committed, while the claim's answer travels back and the batch's
 * statements are built, so the first statement starts as it arrives (an
 * isolated task's pickup is this path's two round trips). A claim that
 * takes nothing pays a ROLLBACK for them (sql_batch_unbegin) before its
 * worker sleeps — so not for a queue with limits, whose claims often
 * find the cap full; nor through a pooler (claim_cache_own_session:
 * PgBouncer in transaction mode lets the claim's server connection go at
 * its sync, and a BEGIN queued behind it stalled the round). Leaves the
 * connection in pipeline mode, with the preludes' transaction open
 * (*begun: tasks claimed and the preludes sent) or none. Returns the
 * tasks claimed, or -1 (pipeline abandoned).
 */
static int sql_batch_claim(struct worker *w, struct served_queue *sq, bool *begun)
{
    const struct queue_config *queue = sq->queue;
    PGconn *conn = w->conn;
    const char *settings = task_claim_ready(conn, queue, &sq->claim, false, NULL);
    if (!PQenterPipelineMode(conn)) {
        log_error("cannot enter pipeline mode: %s", PQerrorMessage(conn));
        return -1;
    }
    bool sent =
        (settings == NULL || PQsendQueryParams(conn, settings, 0, NULL, NULL, NULL, NULL, 0)) &&
        task_send_claim(conn, queue, w->locked_by, w->config->workers.lease_ms, &sq->claim) == 0 &&
        PQpipelineSync(conn);
    bool ahead = !config_queue_limited(queue) && claim_cache_own_session();
    sent = sent && (!ahead || sql_batch_send_preludes(w, queue));
    *begun = false;
    if (!sent) {
        log_error("cannot send the claim of queue \"%s\": %s", queue->name, PQerrorMessage(conn));
        sql_batch_abandon(w, false);
        return -1;
    }
    bool ok = settings == NULL || dbconn_pipeline_ok(conn);
    PGresult *res = dbconn_pipeline_take(conn);
    int claimed = -1;
    if (ok && PQresultStatus(res) == PGRES_TUPLES_OK)
        claimed = task_batch_take(&w->batch, res, &sq->claim);
    else
        log_error("claim failed on queue \"%s\": %s", queue->name,
                  res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(conn));
    if (claimed < 0)
        claim_cache_failed(res);
    PQclear(res);
    bool read =
        dbconn_pipeline_finish_round(conn) && (claimed > 0 || !ahead || sql_batch_unbegin(w));
    if (!read)
        worker_check_connection(w); /* exits if it broke */
    if (!read || claimed < 0) {
        sql_batch_abandon(w, false);
        return -1;
    }
    *begun = ahead && claimed > 0;
    return claimed;
}

/*
 * A statement of the one-transaction path failed (its error, its timeout):
 * the batch rolled back; the task is still running under this worker, its
 * attempt written by the claim. Record the failure (retry with backoff, or
 * dead), as a failed run task-at-a-time would.
 */
static void sql_batch_charge_failed(struct worker *w, struct served_queue *sq,
                                    const struct claimed_task *c, const char *error)
{
    bool dead;
    int64_t delay = worker_failure_delay(sq->queue, c->attempt, c->max_attempts, &dead);
    const char *why = error[0] != '\0' ? error : "failed";
    /* A task no longer ours (its lease ran out and it was taken back)
     * changes nothing here, and says nothing (one line, one count per
     * attempt). */
    if (task_mark_lost(w->conn, c->id, w->locked_by, c->attempt, why, delay, dead) != 1)
        return;
    worker_count_failure(w, sq, c->id, c->attempt, c->max_attempts, delay, why);
    if (!dead)
        worker_schedule_retry(w, sq->index, delay);
}

/* What the answers to round 2 said. */
struct round_result {
    bool failed;       /* some statement (or a prelude) failed: the rest were skipped */
    int failed_at;     /* the task whose statement failed, -1 = none known */
    char failure[512]; /* its error, first line */
    bool committed;    /* COMMIT succeeded */
    bool synced;       /* the round was read to its end */
    PGresult *next;    /* the answer to the next batch's claim sent behind
                          COMMIT (rows, or its error), NULL = none */
};

/* How the next batch's claim went out behind COMMIT (sql_batch_send). */
struct next_claim {
    bool sent;            /* it did */
    const char *parse_of; /* its text, when its Parse went ahead of it */
    bool settings;        /* its settings went ahead of it */
};

/*
 * Round 2, sent as one pipeline: BEGIN, the transaction's settings (the
 * queue's timeout for each statement, the worker's) unless they went
 * ahead behind the claim (begun), every task's statement, their done
 * (task_send_finish_claimed), COMMIT — and, when next->sent is true, the
 * next batch's claim behind it: its Parse (the first time its text goes
 * out on this connection: prepared there, so a drain's claims are planned
 * once, not at every batch), its settings, the claim (sq->next_round says
 * how it went out; *next how it was sent). ids gets the batch's ids.
 * Returns how many settings answers come before the statements', or -1
 * when something could not be sent.
 */
static int sql_batch_send(struct worker *w, struct served_queue *sq, int64_t *ids, bool begun,
                          struct finish_sent *done, struct next_claim *next)
{
    const struct queue_config *queue = sq->queue;
    PGconn *conn = w->conn;
    int preludes = sql_batch_prelude_count(queue);
    bool sent = begun || sql_batch_send_preludes(w, queue);
    w->env.queue = queue;
    w->env.keep_done = queue->keep_done;
    int claimed = w->batch.count;
    for (int i = 0; i < claimed && sent; i++) {
        const struct claimed_task *c = &w->batch.tasks[i];
        struct task task = {.id = c->id,
                            .payload = c->payload,
                            .attempt = c->attempt,
                            .max_attempts = c->max_attempts};
        ids[i] = task.id;
        w->env.batch_index = i;
        /* Each answer is sent as soon as its statement ends (the server
         * would hold them all until the sync): the worker then knows
         * which statement is running, and its slot names that task. */
        sent = sq->handler->send_in_transaction(sq->handler_state, &w->env, &task) == 0 &&
               PQsendFlushRequest(conn);
    }
    sent =
        sent &&
        task_send_finish_claimed(conn, ids, claimed, w->locked_by, queue->keep_done, done) == 0 &&
        PQsendQueryParams(conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0);
    if (sent && next->sent) {
        worker_claim_begin(w, sq, &sq->next_round);
        const char *claim_settings =
            task_claim_ready(conn, queue, &sq->claim, true, &next->parse_of);
        next->settings = claim_settings != NULL;
        sent = (claim_settings == NULL ||
                PQsendQueryParams(conn, claim_settings, 0, NULL, NULL, NULL, NULL, 0)) &&
               task_send_claim(conn, queue, w->locked_by, w->config->workers.lease_ms,
                               &sq->claim) == 0;
    }
    sent = sent && PQpipelineSync(conn);
    if (!sent) {
        log_error("cannot send the tasks of queue \"%s\": %s", queue->name, PQerrorMessage(conn));
        return -1;
    }
    return preludes;
}

/* The answers to the next batch's claim sent behind COMMIT (next): its
 * Parse's, its settings', its own — the claim's answer (rows, or its
 * error), or NULL when it did not run (skipped, PGRES_PIPELINE_ABORTED,
 * unless COMMIT succeeded). */
static PGresult *sql_batch_collect_next(PGconn *conn, const struct next_claim *next, bool committed)
{
    bool ok = committed;
    if (next->parse_of != NULL) {
        PGresult *parse = dbconn_pipeline_take(conn);
        ok = ok && PQresultStatus(parse) == PGRES_COMMAND_OK;
        claim_cache_sent(next->parse_of, parse);
        PQclear(parse);
    }
    ok = (!next->settings || dbconn_pipeline_ok(conn)) && ok;
    PGresult *claim = dbconn_pipeline_take(conn);
    ExecStatusType status = PQresultStatus(claim);
    if (ok && (status == PGRES_TUPLES_OK || status == PGRES_FATAL_ERROR))
        return claim;
    PQclear(claim);
    return NULL;
}

/*
 * Read round 2's answers into r. Each statement may run for the queue's
 * timeout. A task's duration (elapsed_us) is the time between its answer
 * and the previous one's (the statements run one after another on the
 * server).
 */
static void sql_batch_collect(struct worker *w, struct served_queue *sq, const int64_t *ids,
                              int preludes, const struct finish_sent *done,
                              const struct next_claim *next, int64_t *elapsed_us,
                              struct round_result *r)
{
    PGconn *conn = w->conn;
    int claimed = w->batch.count;
    *r = (struct round_result){.failed_at = -1};
    worker_guard_tasks(sq->queue, claimed);
    /* A task of the batch cancelled meanwhile: the statement running is
     * cancelled (worker_on_db_interrupt) — the batch cannot commit. */
    w->batch_in_transaction = true;
    w->statement_cancelled = false;
    /* The first statement runs right after the preludes, whose answers
     * come only with its own (the first flush request follows it): it is
     * the one charged if we die while waiting for them. */
    atomic_store_explicit(&w->self->task_id, ids[0], memory_order_relaxed);
    for (int i = 0; i < preludes; i++)
        if (!dbconn_pipeline_ok(conn))
            r->failed = true;
    int64_t previous_us = time_now_us();
    for (int i = 0; i < claimed; i++) {
        /* The task whose answer we wait for is the one running on the
         * server (they run in order): the one charged if we die now. */
        if (!r->failed)
            atomic_store_explicit(&w->self->task_id, ids[i], memory_order_relaxed);
        PGresult *answer = dbconn_pipeline_take(conn);
        ExecStatusType status = PQresultStatus(answer);
        if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
            if (!r->failed && status == PGRES_FATAL_ERROR) {
                r->failed_at = i;
                snprintf(r->failure, sizeof(r->failure), "%s", PQresultErrorMessage(answer));
                dbconn_one_line(r->failure);
            }
            r->failed = true;
        }
        PQclear(answer);
        int64_t now_us = time_now_us();
        elapsed_us[i] = now_us - previous_us;
        previous_us = now_us;
    }
    if (!task_finish_claimed_preludes(conn, done) && !r->failed) {
        log_warn("queue \"%s\": a batch of %d rolled back, redone a task at a time: "
                 "preparing its done failed",
                 sq->queue->name, claimed);
        r->failed = true;
    }
    PGresult *res = dbconn_pipeline_take(conn);
    if (!r->failed && PQresultStatus(res) == PGRES_FATAL_ERROR)
        log_warn("queue \"%s\": a batch of %d rolled back, redone a task at a time: %s",
                 sq->queue->name, claimed, PQresultErrorMessage(res));
    PQclear(res);
    r->committed = dbconn_pipeline_ok(conn);
    dbconn_set_guard_extra(0);
    if (next->sent)
        r->next = sql_batch_collect_next(conn, next, r->committed);
    r->synced = dbconn_pipeline_finish_round(conn);
    w->batch_in_transaction = false;
    /* Our own cancel made a statement fail, whichever task's it was: no
     * task is charged for it; the batch is redone a task at a time, where
     * the cancelled ones are skipped and a statement that fails on its own
     * fails again. */
    if (w->statement_cancelled)
        r->failed_at = -1;
    /* A claim behind COMMIT that our own cancel stopped claimed nothing. */
    if (r->next != NULL && w->statement_cancelled && PQresultStatus(r->next) != PGRES_TUPLES_OK) {
        PQclear(r->next);
        r->next = NULL;
    }
    if (!r->synced || r->failed || !r->committed) {
        PQclear(r->next);
        r->next = NULL;
    }
}

/*
 * Round 2 did not commit. A lost connection: nothing of the round
 * happened (or, when it broke after COMMIT reached the server, all of it
 * did: those tasks are not claimed again). Which statement broke it is
 * not certain here (a backend told to die may go only when it reads the
 * next one): the batch goes back with the reconnect and is claimed again
 * from round_start a task at a time; that run charges it. Nor is it the
 * first task's: should this worker die while it reconnects (the cluster
 * restarting again), the supervisor must not charge an innocent task.
 * Otherwise the statement that failed is known: its failure is recorded
 * now, and the rest of the batch, still ours, runs a task at a time.
 * Returns the number claimed (as the drain counts it; round: how the
 * claim that the number is of went out).
 */
static int sql_batch_redo(struct worker *w, struct served_queue *sq, const struct round_result *r,
                          const struct claim_state *round_start, struct claim_round *round)
{
    int claimed = w->batch.count;
    if (PQstatus(w->conn) != CONNECTION_OK) {
        log_warn("queue \"%s\": the database connection broke during a batch of %d: %s",
                 sq->queue->name, claimed, PQerrorMessage(w->conn));
        task_claim_rewind(&sq->claim, round_start);
        atomic_store_explicit(&w->self->task_id, 0, memory_order_relaxed);
        worker_recover(w, 0);
        return worker_claim_and_run(w, sq, round);
    }
    sql_batch_abandon(w, false);
    if (r->failed_at >= 0)
        sql_batch_charge_failed(w, sq, &w->batch.tasks[r->failed_at], r->failure);
    atomic_store_explicit(&w->self->task_id, 0, memory_order_relaxed);
    worker_run_batch(w, sq, r->failed_at);
    return claimed;
}

/* Round 2 committed: every task of the batch is done. */
static void sql_batch_record(struct worker *w, struct served_queue *sq, const int64_t *elapsed_us)
{
    const struct queue_config *queue = sq->queue;
    struct shm_queue *shared_queue = &w->args->shm->queues[sq->index];
    int claimed = w->batch.count;
    atomic_store_explicit(&w->self->task_id, 0, memory_order_relaxed);
    if (!PQexitPipelineMode(w->conn)) {
        log_error("cannot leave pipeline mode: %s", PQerrorMessage(w->conn));
        exit(WORKER_EXIT_ERROR);
    }
    int64_t batch_us = 0;
    for (int i = 0; i < claimed; i++) {
        const struct claimed_task *c = &w->batch.tasks[i];
        batch_us += elapsed_us[i];
        shm_histogram_observe(&shared_queue->pickup, c->pickup_us);
        shm_histogram_observe(&shared_queue->duration, elapsed_us[i]);
        log_task(LOG_LEVEL_INFO, queue->name, c->id, "done in %" PRId64 " ms (attempt %d)",
                 elapsed_us[i] / 1000, c->attempt);
    }
    batch_size_ran(&sq->sizing, claimed, batch_us);
    atomic_fetch_add_explicit(&shared_queue->tasks_done, (uint64_t)claimed, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->self->tasks_done, (uint64_t)claimed, memory_order_relaxed);
    worker_heartbeat(w);
}

/* The next batch, claimed behind the last COMMIT (sq->next): into
 * w->batch, the connection in pipeline mode for its round 2. Returns the
 * tasks claimed, or -1 (the claim failed: logged; nothing claimed). */
static int sql_batch_take_next(struct worker *w, struct served_queue *sq)
{
    PGresult *res = sq->next;
    sq->next = NULL;
    int claimed = -1;
    if (PQresultStatus(res) == PGRES_TUPLES_OK)
        claimed = task_batch_take(&w->batch, res, &sq->claim);
    else
        log_error("claim failed on queue \"%s\": %s", sq->queue->name, PQresultErrorMessage(res));
    if (claimed < 0)
        claim_cache_failed(res);
    PQclear(res);
    if (claimed > 0 && !PQenterPipelineMode(w->conn)) {
        log_error("cannot enter pipeline mode: %s", PQerrorMessage(w->conn));
        exit(WORKER_EXIT_ERROR); /* the supervisor requeues what was claimed */
    }
    return claimed;
}

void sql_batch_release_next(struct worker *w, struct served_queue *sq)
{
    if (sq->next == NULL)
        return;
    int claimed = sql_batch_take_next(w, sq);
    if (claimed > 0) {
        if (!PQexitPipelineMode(w->conn)) {
            log_error("cannot leave pipeline mode: %s", PQerrorMessage(w->conn));
            exit(WORKER_EXIT_ERROR);
        }
        /* Told to hold back: every task goes back untried. */
        worker_run_batch(w, sq, -1);
    }
}

int sql_batch_claim_and_run(struct worker *w, struct served_queue *sq, struct claim_round *round)
{
    /* After a lost connection the round is redone from where it started
     * (the cursor only: statement texts built meanwhile are kept, not
     * leaked). */
    const struct claim_state round_start = sq->claim;
    int claimed;
    bool begun = false; /* round 2's preludes went behind the claim */
    if (sq->next != NULL) {
        *round = sq->next_round;
        claimed = sql_batch_take_next(w, sq);
        if (claimed >= 0)
            worker_claim_taken(w, sq, round, claimed);
        if (claimed <= 0)
            return claimed;
    } else {
        worker_claim_begin(w, sq, round);
        claimed = sql_batch_claim(w, sq, &begun);
        if (claimed >= 0)
            worker_claim_taken(w, sq, round, claimed);
        if (claimed <= 0) {
            if (claimed == 0 && !PQexitPipelineMode(w->conn)) {
                log_error("cannot leave pipeline mode: %s", PQerrorMessage(w->conn));
                exit(WORKER_EXIT_ERROR);
            }
            return claimed;
        }
    }
    /* A full batch (it left tasks behind; help was asked for): the next
     * claim goes behind this one's COMMIT, unless the worker is to hold
     * back. */
    struct next_claim next = {
        .sent = round->more && !worker_holding_back(w) && !worker_queue_paused(w, sq) &&
                !config_queue_limited(sq->queue)}; /* its claim counts its budget: never ahead */
    int64_t *ids = malloc((size_t)claimed * sizeof(*ids));
    int64_t *elapsed_us = malloc((size_t)claimed * sizeof(*elapsed_us));
    bool allocated = ids != NULL && elapsed_us != NULL;
    struct finish_sent done = {0};
    int preludes = allocated ? sql_batch_send(w, sq, ids, begun, &done, &next) : -1;
    if (preludes < 0) {
        /* Nothing ran: the batch, ours, runs a task at a time; a Parse
         * queued for the next claim is not counted on. */
        if (done.parse_of != NULL)
            claim_cache_sent(done.parse_of, NULL);
        if (next.parse_of != NULL)
            claim_cache_sent(next.parse_of, NULL);
        free(ids);
        free(elapsed_us);
        if (!allocated && begun && !sql_batch_unbegin(w))
            worker_check_connection(w);
        sql_batch_abandon(w, allocated);
        worker_run_batch(w, sq, -1);
        return claimed;
    }
    struct round_result r;
    sql_batch_collect(w, sq, ids, preludes, &done, &next, elapsed_us, &r);
    free(ids);
    if (r.failed || !r.committed || !r.synced) {
        claimed = sql_batch_redo(w, sq, &r, &round_start, round);
    } else {
        sql_batch_record(w, sq, elapsed_us);
        sq->next = r.next;
    }
    free(elapsed_us);
    return claimed;
}
