/* test_shm.c — segment layout (sizes, cache-line alignment), zeroed memory,
 * visibility across fork. */
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shared/shm.h"
#include "suites.h"

#define LINE 64

static int all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return 0;
    return 1;
}

START_TEST(test_header)
{
    struct shm shm;
    ck_assert_int_eq(shm_create(&shm, 5, 17), 0);
    ck_assert_uint_eq(shm.header->magic, SHM_MAGIC);
    ck_assert_uint_eq(shm.header->version, SHM_VERSION);
    ck_assert_uint_eq(shm.header->queue_capacity, 5);
    ck_assert_uint_eq(shm.header->worker_capacity, 17);
    shm_destroy(&shm);
    ck_assert_ptr_null(shm.header);
    ck_assert_ptr_null(shm.workers);
    ck_assert_uint_eq(shm.size, 0);
}
END_TEST

START_TEST(test_layout)
{
    struct shm shm;
    const unsigned nq = 3, nw = 9;
    ck_assert_int_eq(shm_create(&shm, nq, nw), 0);
    uintptr_t base = (uintptr_t)shm.header;
    uintptr_t q = (uintptr_t)shm.queues;
    uintptr_t w = (uintptr_t)shm.workers;

    ck_assert_uint_eq(base % LINE, 0);
    ck_assert_uint_eq(q % LINE, 0);
    ck_assert_uint_eq(w % LINE, 0);
    ck_assert_uint_ge(q, base + sizeof(struct shm_header));
    ck_assert_uint_ge(w, (uintptr_t)(shm.queues + nq));
    ck_assert_uint_le((uintptr_t)(shm.workers + nw), base + shm.size);

    /* No two worker slots share a cache line. */
    ck_assert_uint_eq(sizeof(struct shm_worker) % LINE, 0);
    for (unsigned i = 0; i < nw; i++) {
        uintptr_t start = (uintptr_t)&shm.workers[i];
        uintptr_t last = start + sizeof(struct shm_worker) - 1;
        ck_assert_uint_eq(start % LINE, 0);
        if (i + 1 < nw)
            ck_assert_uint_lt(last / LINE, (uintptr_t)&shm.workers[i + 1] / LINE);
    }
    shm_destroy(&shm);
}
END_TEST

START_TEST(test_zeroed)
{
    struct shm shm;
    ck_assert_int_eq(shm_create(&shm, 4, 8), 0);
    ck_assert(all_zero(shm.queues, 4 * sizeof(struct shm_queue)));
    ck_assert(all_zero(shm.workers, 8 * sizeof(struct shm_worker)));
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(atomic_load(&shm.workers[i].state), WORKER_EMPTY);
    for (int i = 0; i < 4; i++) {
        ck_assert_uint_eq(atomic_load(&shm.queues[i].hint), 0);
        ck_assert_int_eq(atomic_load(&shm.queues[i].retry_due_ms), 0);
    }
    /* Every byte of the mapping is writable. */
    memset(shm.workers, 0xab, 8 * sizeof(struct shm_worker));
    shm_destroy(&shm);
}
END_TEST

START_TEST(test_zero_capacities)
{
    struct shm shm;
    ck_assert_int_eq(shm_create(&shm, 0, 0), 0);
    ck_assert_uint_eq(shm.header->queue_capacity, 0);
    ck_assert_uint_ge(shm.size, sizeof(struct shm_header));
    shm_destroy(&shm);
}
END_TEST

START_TEST(test_visible_across_fork)
{
    struct shm shm;
    ck_assert_int_eq(shm_create(&shm, 2, 4), 0);
    atomic_store(&shm.workers[1].state, WORKER_STARTING);

    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* The child sees what the parent wrote before fork... */
        int ok = atomic_load(&shm.workers[1].state) == WORKER_STARTING;
        /* ...and writes what the parent must see after. */
        atomic_store(&shm.workers[1].pid, getpid());
        atomic_store(&shm.workers[1].state, WORKER_IDLE);
        atomic_store(&shm.workers[1].heartbeat_ms, 12345);
        atomic_fetch_add(&shm.queues[1].hint, 7);
        atomic_fetch_add(&shm.queues[1].tasks_done, 3);
        /* Wait for the parent's reply through the segment (bounded). */
        for (int i = 0; i < 5000 && atomic_load(&shm.queues[0].help_wanted) == 0; i++)
            usleep(1000);
        ok = ok && atomic_load(&shm.queues[0].help_wanted) == 1;
        _exit(ok ? 0 : 1);
    }
    for (int i = 0; i < 5000 && atomic_load(&shm.workers[1].state) != WORKER_IDLE; i++)
        usleep(1000);
    ck_assert_int_eq(atomic_load(&shm.workers[1].state), WORKER_IDLE);
    atomic_store(&shm.queues[0].help_wanted, 1);

    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_int_eq(atomic_load(&shm.workers[1].pid), pid);
    ck_assert_int_eq(atomic_load(&shm.workers[1].heartbeat_ms), 12345);
    ck_assert_uint_eq(atomic_load(&shm.queues[1].hint), 7);
    ck_assert_uint_eq(atomic_load(&shm.queues[1].tasks_done), 3);
    shm_destroy(&shm);
}
END_TEST

/* The idle mask: round robin from `from`, wrapping, bounded by `limit`,
 * across word boundaries (130 slots = 3 words). */
START_TEST(test_idle_mask)
{
    struct shm shm;
    ck_assert_int_eq(shm_create(&shm, 1, 130), 0);
    ck_assert_int_eq(shm_idle_find(&shm, 0, 130), -1);
    shm_idle_mark(&shm, 3, 1);
    shm_idle_mark(&shm, 70, 1);
    shm_idle_mark(&shm, 129, 1);
    ck_assert_int_eq(shm_idle_find(&shm, 0, 130), 3);
    ck_assert_int_eq(shm_idle_find(&shm, 4, 130), 70);
    ck_assert_int_eq(shm_idle_find(&shm, 71, 130), 129);
    ck_assert_int_eq(shm_idle_find(&shm, 130, 130), 3); /* past the end: from 0 */
    ck_assert_int_eq(shm_idle_find(&shm, 71, 100), 3);  /* 129 is beyond the limit: wraps */
    ck_assert_int_eq(shm_idle_find(&shm, 4, 64), 3);
    ck_assert_int_eq(shm_idle_find(&shm, 0, 3), -1);
    ck_assert_int_eq(shm_idle_find(&shm, 0, 1000), 3); /* limit clamped to the capacity */
    shm_idle_mark(&shm, 3, 0);
    shm_idle_mark(&shm, 70, 0);
    ck_assert_int_eq(shm_idle_find(&shm, 0, 129), -1);
    ck_assert_int_eq(shm_idle_find(&shm, 0, 130), 129);
    shm_destroy(&shm);
}
END_TEST

START_TEST(test_state_names)
{
    ck_assert_str_eq(shm_worker_state_name(WORKER_EMPTY), "empty");
    ck_assert_str_eq(shm_worker_state_name(WORKER_STARTING), "starting");
    ck_assert_str_eq(shm_worker_state_name(WORKER_IDLE), "idle");
    ck_assert_str_eq(shm_worker_state_name(WORKER_WOKEN), "woken");
    ck_assert_str_eq(shm_worker_state_name(WORKER_BUSY), "busy");
    ck_assert_str_eq(shm_worker_state_name(WORKER_STOPPING), "stopping");
    ck_assert_str_eq(shm_worker_state_name(-1), "unknown");
    ck_assert_str_eq(shm_worker_state_name(99), "unknown");
}
END_TEST

Suite *shm_suite(void)
{
    Suite *s = suite_create("shm");
    TCase *tc = tcase_create("shm");
    tcase_add_test(tc, test_header);
    tcase_add_test(tc, test_layout);
    tcase_add_test(tc, test_zeroed);
    tcase_add_test(tc, test_zero_capacities);
    tcase_add_test(tc, test_idle_mask);
    tcase_add_test(tc, test_visible_across_fork);
    tcase_add_test(tc, test_state_names);
    suite_add_tcase(s, tc);
    return s;
}
