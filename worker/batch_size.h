/*
 * batch_size.h — how many tasks a worker's next claim of a queue asks for
 * when the queue's batch is "auto" (batch_size.c). One per worker and
 * queue: the measurements are this worker's own.
 */
#ifndef PGWORK_BATCH_SIZE_H
#define PGWORK_BATCH_SIZE_H

#include <stdbool.h>
#include <stdint.h>

/* The time one batch should take: what a task may wait behind its
 * batch-mates, and what one worker holds while others may idle. */
#define BATCH_SIZE_TARGET_US 20000
/* The most one claim asks for (the config's limit for a fixed batch). */
#define BATCH_SIZE_MAX 1000

/* Task times kept for their median (batch_size_median_us). */
#define BATCH_SIZE_RECENT 16

struct batch_size {
    int grown;      /* the size claims grew to (doubled while full, what a short one got) */
    double task_us; /* moving average of a task's time on this worker; 0 = none timed yet */
    /* The last BATCH_SIZE_RECENT tasks' times (µs, a ring): the average
     * swings with one task the scheduler set aside, their median does not. */
    int64_t recent_us[BATCH_SIZE_RECENT];
    int recent_count; /* times kept, up to BATCH_SIZE_RECENT */
    int recent_next;  /* where the next one goes */
};

/* The next claim's size: one of a few steps in 1..BATCH_SIZE_MAX. */
int batch_size_limit(const struct batch_size *b);

/* A claim that asked for `asked` got `got`; more: it left due tasks
 * behind (it was full). */
void batch_size_claimed(struct batch_size *b, int asked, int got, bool more);

/* `tasks` tasks took elapsed_us together (one task, or a batch run in one
 * transaction), from start to recorded outcome. */
void batch_size_ran(struct batch_size *b, int tasks, int64_t elapsed_us);

/* The median of the last BATCH_SIZE_RECENT tasks' times in µs, or -1
 * while fewer than half of them have been timed. */
int64_t batch_size_median_us(const struct batch_size *b);

#endif
