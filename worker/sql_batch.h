/*
 * sql_batch.h — the worker's one-transaction path for handlers with
 * send_in_transaction (the sql handler): a batch's statements and their
 * done in one transaction, its claim committed before them (sql_batch.c).
 */
#ifndef PGWORK_SQL_BATCH_H
#define PGWORK_SQL_BATCH_H

struct worker;
struct served_queue;

struct claim_round;

/* One claim round of queue sq in one transaction, falling back to a task
 * at a time when a statement fails or the connection breaks; round says
 * how its claim went out. When the batch came back full, the next batch's
 * claim rides behind its COMMIT (sq->next): the next call runs it.
 * Returns the number claimed, or -1 after a database error (nothing
 * claimed). */
int sql_batch_claim_and_run(struct worker *w, struct served_queue *sq, struct claim_round *round);

/* A next batch claimed and not run (sq->next): back to pending, untried. */
void sql_batch_release_next(struct worker *w, struct served_queue *sq);

#endif
