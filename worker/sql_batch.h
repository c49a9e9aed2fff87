/*
 * sql_batch.h — the worker's one-transaction path for handlers with
 * send_in_transaction (the sql handler): a batch's statements and their
 * done in one transaction, its claim committed before them (sql_batch.c).
 */
#ifndef PGWORK_SQL_BATCH_H
#define PGWORK_SQL_BATCH_H

struct worker;
struct served_queue;

/* One claim round of queue sq in one transaction, falling back to a task
 * at a time when a statement fails or the connection breaks. Returns the
 * number claimed, or -1 after a database error (nothing claimed). */
int sql_batch_claim_and_run(struct worker *w, struct served_queue *sq);

#endif
