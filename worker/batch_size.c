/*
 * batch_size.c — the size of a worker's next claim when the queue's batch
 * is "auto" (the default; issue 12 item 2): a batch takes about a bounded
 * time (BATCH_SIZE_TARGET_US), not a fixed count.
 *
 * Invariants:
 *  - a claim never asks for more than the tasks this worker's measured
 *    time per task says fit in the target: slow tasks are claimed one at
 *    a time, so one worker does not hold a row of them while others idle
 *    — each full claim wakes one more worker instead (DESIGN §1.3);
 *  - until this worker has timed a task of the queue, it asks for one;
 *  - claims double while they come back full (they left due tasks
 *    behind: task.c's claim looks one past its size), and fall to what a
 *    claim that took all there was got, at least one: on a shallow queue
 *    a single task is claimed alone, and a second one waiting goes to the
 *    next idle worker (the full claim asked for help), not behind it;
 *  - the average follows a change of the tasks' time within a few
 *    batches (weight 1/4 on the newest).
 */
#include "batch_size.h"

int batch_size_limit(const struct batch_size *b)
{
    if (b->task_us <= 0)
        return 1;
    double fits = BATCH_SIZE_TARGET_US / b->task_us;
    int cap = fits >= BATCH_SIZE_MAX ? BATCH_SIZE_MAX : fits < 1 ? 1 : (int)fits;
    int want = b->grown > 1 ? b->grown : 1;
    return want < cap ? want : cap;
}

void batch_size_claimed(struct batch_size *b, int asked, int got, bool more)
{
    if (more)
        b->grown = asked >= BATCH_SIZE_MAX / 2 ? BATCH_SIZE_MAX : asked * 2;
    else
        b->grown = got;
}

void batch_size_ran(struct batch_size *b, int tasks, int64_t elapsed_us)
{
    if (tasks <= 0)
        return;
    double per = (double)(elapsed_us > 0 ? elapsed_us : 1) / tasks;
    b->task_us = b->task_us <= 0 ? per : b->task_us * 0.75 + per * 0.25;
}
