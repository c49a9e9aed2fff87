/*
 * timeutil.h — monotonic time and retry delays.
 *
 * Timers and deadlines use CLOCK_MONOTONIC milliseconds; wall-clock time is
 * used only to print timestamps. Task due times are the database's business
 * (DESIGN §8: ask it for the delay, never compare with the pod's clock).
 */
#ifndef PGWORK_TIMEUTIL_H
#define PGWORK_TIMEUTIL_H

#include <stdint.h>

/* CLOCK_MONOTONIC in milliseconds. */
int64_t time_now_ms(void);

/* CLOCK_MONOTONIC in microseconds (durations). */
int64_t time_now_us(void);

/*
 * Exponential backoff with jitter: base * 2^(attempt-1), capped at max, then
 * a uniformly random value in [d/2, d] ("equal jitter": never zero, never
 * above the cap). attempt starts at 1. random_unit is a value in [0, 1),
 * passed in so tests are deterministic.
 */
int64_t backoff_delay_ms(int64_t base_ms, int64_t max_ms, int attempt, double random_unit);

/* A random value in [0, 1) from a per-process generator seeded by pid and
 * time (not for cryptography). */
double random_unit(void);

#endif
