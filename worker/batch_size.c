/*
 * batch_size.c — the size of a worker's next claim when the queue's batch
 * is "auto" (the default; issue 12 item 2): a batch takes about a bounded
 * time (BATCH_SIZE_TARGET_US), not a fixed count.
 *
 * Invariants:
 *  - a claim never asks for more than the tasks this worker's measured
 *    time per task says fit in the target (rounded to the nearest size,
 *    below: at most 1.19 times as many): slow tasks are claimed one at
 *    a time, so one worker does not hold a row of them while others idle
 *    — each full claim wakes one more worker instead (DESIGN §1.3);
 *  - until this worker has timed a task of the queue, it asks for one;
 *  - claims double while they come back full (they left due tasks
 *    behind: task.c's claim looks one past its size), and fall to what a
 *    claim that took all there was got, at least one: on a shallow queue
 *    a single task is claimed alone, and a second one waiting goes to the
 *    next idle worker (the full claim asked for help), not behind it;
 *  - the average follows a change of the tasks' time within a few
 *    batches (weight 1/4 on the newest);
 *  - a size is one of batch_size_steps (the fit rounded to the nearest,
 *    what a short claim got rounded up): each size is a claim text of its
 *    own (a literal LIMIT, task_claim.c), prepared once per connection
 *    (claim_cache.c) — sizes of any value made nearly every batch a text
 *    never seen, parsed and planned again (measured: 121 plans for 127
 *    claims of a 50,000-task drain, with about 100 sizes).
 */
#include <string.h>

#include "batch_size.h"

/* The sizes a claim asks for: steps of about sqrt(2), so few texts exist
 * and the nearest is within 1.19 times of any size between. */
static const int batch_size_steps[] = {1,  2,  3,  4,   6,   8,   11,  16,  23,  32,
                                       45, 64, 91, 128, 181, 256, 362, 512, 724, BATCH_SIZE_MAX};
#define BATCH_SIZE_STEPS ((int)(sizeof(batch_size_steps) / sizeof(batch_size_steps[0])))

/* The step nearest to n by ratio (n > 0): a batch takes between 0.84
 * and 1.19 times the target, on average the target itself. */
static int batch_size_step_near(double n)
{
    int i = BATCH_SIZE_STEPS - 1;
    while (i > 0 && batch_size_steps[i] > n)
        i--;
    if (i + 1 < BATCH_SIZE_STEPS && n * n > (double)batch_size_steps[i] * batch_size_steps[i + 1])
        i++;
    return batch_size_steps[i];
}

/* The least step >= n (n <= BATCH_SIZE_MAX). */
static int batch_size_step_up(int n)
{
    int i = 0;
    while (i < BATCH_SIZE_STEPS - 1 && batch_size_steps[i] < n)
        i++;
    return batch_size_steps[i];
}

int batch_size_limit(const struct batch_size *b)
{
    if (b->task_us <= 0)
        return 1;
    int cap = batch_size_step_near(BATCH_SIZE_TARGET_US / b->task_us);
    int want = batch_size_step_up(b->grown > 1 ? b->grown : 1);
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
    b->recent_us[b->recent_next] = (int64_t)per;
    b->recent_next = (b->recent_next + 1) % BATCH_SIZE_RECENT;
    if (b->recent_count < BATCH_SIZE_RECENT)
        b->recent_count++;
}

int64_t batch_size_median_us(const struct batch_size *b)
{
    if (b->recent_count < BATCH_SIZE_RECENT / 2)
        return -1;
    int64_t sorted[BATCH_SIZE_RECENT];
    int n = b->recent_count;
    memcpy(sorted, b->recent_us, sizeof(sorted));
    for (int i = 1; i < n; i++) { /* insertion sort: at most 16 */
        int64_t v = sorted[i];
        int j = i;
        for (; j > 0 && sorted[j - 1] > v; j--)
            sorted[j] = sorted[j - 1];
        sorted[j] = v;
    }
    return sorted[n / 2];
}
