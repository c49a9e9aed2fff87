/*
 * shm.c — create and map the shared-memory segment (layout in shm.h).
 *
 * One anonymous MAP_SHARED mapping, made by the supervisor before the
 * first fork: no name in /dev/shm (tiny in containers), nothing to clean up
 * after a crash, and every worker inherits it. The header, the queue array
 * and the worker array each start on a cache line, and every worker slot
 * fills whole cache lines: a worker's heartbeat and counters, written
 * constantly, never share a line with another worker's.
 */
#include "shm.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#define CACHE_LINE 64

/* Slots fill whole cache lines. If a field is added, pad the struct (or
 * give it _Alignas(CACHE_LINE)) rather than removing this. */
_Static_assert(sizeof(struct shm_worker) % CACHE_LINE == 0,
               "struct shm_worker must be a multiple of a cache line");

static size_t align_line(size_t n)
{
    return (n + CACHE_LINE - 1) & ~(size_t)(CACHE_LINE - 1);
}

int shm_create(struct shm *shm, unsigned queue_capacity, unsigned worker_capacity)
{
    size_t header = align_line(sizeof(struct shm_header));
    size_t queues = align_line((size_t)queue_capacity * sizeof(struct shm_queue));
    size_t workers = (size_t)worker_capacity * sizeof(struct shm_worker);
    size_t mask = align_line(((size_t)worker_capacity + 63) / 64 * sizeof(uint64_t));
    if (queues / sizeof(struct shm_queue) < queue_capacity ||
        workers / sizeof(struct shm_worker) != worker_capacity ||
        queues > SIZE_MAX - header - workers - mask) {
        errno = ENOMEM;
        return -1;
    }
    size_t size = header + queues + workers + mask;

    /* Anonymous memory is zero-filled: every counter and retry_due_ms
     * starts at 0 and every slot at WORKER_EMPTY without further writes. */
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return -1;

    memset(shm, 0, sizeof *shm);
    shm->header = base;
    shm->queues = (struct shm_queue *)((char *)base + header);
    shm->workers = (struct shm_worker *)((char *)base + header + queues);
    shm->idle_mask = (_Atomic uint64_t *)((char *)base + header + queues + workers);
    shm->size = size;

    shm->header->magic = SHM_MAGIC;
    shm->header->version = SHM_VERSION;
    shm->header->queue_capacity = queue_capacity;
    shm->header->worker_capacity = worker_capacity;
    return 0;
}

void shm_destroy(struct shm *shm)
{
    if (shm->header != NULL)
        munmap(shm->header, shm->size);
    memset(shm, 0, sizeof *shm);
}

const char *shm_worker_state_name(int state)
{
    switch (state) {
    case WORKER_EMPTY:
        return "empty";
    case WORKER_STARTING:
        return "starting";
    case WORKER_IDLE:
        return "idle";
    case WORKER_WOKEN:
        return "woken";
    case WORKER_BUSY:
        return "busy";
    case WORKER_STOPPING:
        return "stopping";
    }
    return "unknown";
}

void shm_histogram_observe(struct shm_histogram *h, int64_t value_us)
{
    static const int64_t bounds[] = SHM_HISTOGRAM_BOUNDS;
    int i = 0;
    while (i < SHM_HISTOGRAM_BUCKETS - 1 && value_us > bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, (uint64_t)(value_us > 0 ? value_us : 0),
                              memory_order_relaxed);
}

void shm_idle_mark(const struct shm *shm, unsigned slot, int idle)
{
    uint64_t bit = UINT64_C(1) << (slot % 64);
    if (idle)
        atomic_fetch_or(&shm->idle_mask[slot / 64], bit);
    else
        atomic_fetch_and(&shm->idle_mask[slot / 64], ~bit);
}

/* The lowest set bit at or above `from` and below `limit`, or -1. */
static int idle_find_range(const struct shm *shm, unsigned from, unsigned limit)
{
    for (unsigned word = from / 64; word * 64 < limit; word++) {
        uint64_t bits = atomic_load(&shm->idle_mask[word]);
        if (word == from / 64)
            bits &= ~UINT64_C(0) << (from % 64);
        if (bits == 0)
            continue;
        unsigned slot = word * 64 + (unsigned)__builtin_ctzll(bits);
        return slot < limit ? (int)slot : -1;
    }
    return -1;
}

int shm_idle_find(const struct shm *shm, unsigned from, unsigned limit)
{
    if (limit > shm->header->worker_capacity)
        limit = shm->header->worker_capacity;
    if (from >= limit)
        from = 0;
    int slot = idle_find_range(shm, from, limit);
    return slot >= 0 || from == 0 ? slot : idle_find_range(shm, 0, from);
}
