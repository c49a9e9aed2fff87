/*
 * timeutil.c — monotonic milliseconds, retry backoff, a cheap random unit.
 *
 * Nothing here reads the wall clock: deadlines survive clock steps. The
 * random generator is per process and reseeds itself after fork, so
 * workers forked from one supervisor do not jitter in lockstep.
 */
#include "timeutil.h"

#include <stdbool.h>
#include <time.h>
#include <unistd.h>

int64_t time_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t time_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t backoff_delay_ms(int64_t base_ms, int64_t max_ms, int attempt, double random_unit)
{
    if (base_ms <= 0 || max_ms <= 0)
        return 0;
    int64_t d = base_ms < max_ms ? base_ms : max_ms;
    /* Double until the cap instead of computing 2^(attempt-1): no overflow
     * for any attempt, and at most 63 turns since d >= 1. */
    for (int i = 1; i < attempt && d < max_ms; i++)
        d = d > max_ms / 2 ? max_ms : d * 2;

    if (!(random_unit >= 0.0)) /* also catches NaN */
        random_unit = 0.0;
    else if (random_unit > 1.0)
        random_unit = 1.0;
    /* Equal jitter: [ceil(d/2), d], so a delay of 1ms stays 1ms, not 0. */
    int64_t low = d - d / 2;
    int64_t span = d - low;
    int64_t jitter = (int64_t)((double)(span + 1) * random_unit);
    if (jitter > span)
        jitter = span; /* random_unit == 1, or rounding above 2^53 */
    return low + jitter;
}

/* splitmix64: small, fast, good enough for jitter. */
static uint64_t next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

double random_unit(void)
{
    static uint64_t seed;
    static pid_t seeded_by;
    pid_t pid = getpid();
    if (seeded_by != pid) {
        /* A forked child inherits the parent's state: reseed on pid change. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        seed = ((uint64_t)pid << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20);
        seeded_by = pid;
    }
    return (double)(next(&seed) >> 11) * 0x1.0p-53;
}
