/*
 * test_pool.c — what supervisor/pool.c does around fork(), with the real
 * pool code and a stand-in worker. The unit-test binary is linked with
 * --wrap for fork, close_range and worker_main (Makefile, UNIT_WRAPS):
 *
 *  - __wrap_worker_main is what a spawned child runs instead of the worker
 *    (it does one thing and _exit()s);
 *  - __wrap_fork can hold the parent after fork() until the child has got
 *    somewhere — the ordering a loaded machine produces now and then, made
 *    certain;
 *  - __wrap_close_range can refuse, as an old kernel (ENOSYS) or a seccomp
 *    profile does, and __wrap_opendir can fail as without /proc.
 *
 * Outside these tests the wrappers pass straight through.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <dirent.h>
#include <unistd.h>

#include "shared/config.h"
#include "shared/shm.h"
#include "supervisor/pool.h"
#include "worker/worker.h"
#include "suites.h"

/* --- the wrappers ---------------------------------------------------------- */

enum child_mode {
    CHILD_GO_IDLE,      /* announce IDLE as a worker does (idle bit, then state) */
    CHILD_REPORT_STATE, /* exit with the state its slot has when it starts */
    CHILD_COUNT_FDS,    /* exit with the number of fds it holds beyond its own */
};

enum hold_mode {
    HOLD_NONE,
    HOLD_UNTIL_STATE, /* until slot 0's state is hold_state (the child wrote it) */
    HOLD_UNTIL_EXIT,  /* until the child has exited (not reaped: WNOWAIT) */
};

static enum child_mode child_mode;
/* fork, in the parent: what to wait for before returning. */
static enum hold_mode hold_mode;
static int hold_state;
static struct shm *hold_shm;
static bool refuse_close_range;
static bool refuse_opendir;

pid_t __real_fork(void);
pid_t __wrap_fork(void);
int __real_close_range(unsigned first, unsigned last, int flags);
int __wrap_close_range(unsigned first, unsigned last, int flags);
void __wrap_worker_main(const struct worker_args *args) __attribute__((noreturn));
DIR *__real_opendir(const char *name);
DIR *__wrap_opendir(const char *name);

DIR *__wrap_opendir(const char *name)
{
    if (refuse_opendir) {
        errno = ENOENT;
        return NULL;
    }
    return __real_opendir(name);
}

pid_t __wrap_fork(void)
{
    pid_t pid = __real_fork();
    if (pid > 0 && hold_mode == HOLD_UNTIL_STATE) {
        /* Bounded: a child that never gets there fails the test. */
        for (int i = 0; i < 10000; i++) {
            if (atomic_load(&hold_shm->workers[0].state) == hold_state)
                break;
            usleep(1000);
        }
    } else if (pid > 0 && hold_mode == HOLD_UNTIL_EXIT) {
        siginfo_t info;
        while (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT) != 0 && errno == EINTR)
            ;
    }
    return pid;
}

int __wrap_close_range(unsigned first, unsigned last, int flags)
{
    if (refuse_close_range) {
        errno = ENOSYS;
        return -1;
    }
    return __real_close_range(first, last, flags);
}

/* The fds the child holds besides stdio, the three the worker is given and
 * the directory being read. */
static int child_count_foreign_fds(const struct worker_args *args)
{
    DIR *dir = opendir("/proc/self/fd");
    if (dir == NULL)
        return 255;
    int foreign = 0;
    const struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        int fd = atoi(e->d_name);
        if (fd > 2 && fd != dirfd(dir) && fd != args->wake_fd && fd != args->request_fd &&
            fd != args->death_fd) {
            char path[64], target[256] = "";
            snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
            if (readlink(path, target, sizeof(target) - 1) < 0)
                strcpy(target, "?");
            fprintf(stderr, "child kept fd %d (%s)\n", fd, target);
            foreign++;
        }
    }
    closedir(dir);
    return foreign;
}

void __wrap_worker_main(const struct worker_args *args)
{
    struct shm_worker *self = &args->shm->workers[args->slot];
    switch (child_mode) {
    case CHILD_GO_IDLE:
        /* As worker_set_state(): the bit first, then the state. */
        shm_idle_mark(args->shm, (unsigned)args->slot, 1);
        atomic_store(&self->state, WORKER_IDLE);
        _exit(0);
    case CHILD_REPORT_STATE:
        _exit(atomic_load(&self->state));
    case CHILD_COUNT_FDS:
        refuse_opendir = false; /* the child's copy: it reads /proc itself */
        _exit(child_count_foreign_fds(args));
    }
    _exit(99);
}

/* --- fixture --------------------------------------------------------------- */

static struct pgwork_config *config;
static struct shm shm;
static struct pool pool;
static int request_fd = -1, death_pipe[2] = {-1, -1};

static void pool_setup(void)
{
    char path[] = "/tmp/pgwork-unit-pool.XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    static const char text[] = "workers { count = 1 min = 1 max = 2 }\n"
                               "queue \"q\" { handler = \"exec\" command = {\"/bin/true\"} }\n";
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    char err[512];
    int loaded = config_load(path, &config, err, sizeof(err));
    unlink(path);
    ck_assert_msg(loaded == 0, "config: %s", err);
    ck_assert_int_eq(shm_create(&shm, 1, 2), 0);
    request_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    ck_assert_int_ge(request_fd, 0);
    ck_assert_int_eq(pipe2(death_pipe, O_CLOEXEC), 0);
    static const int queue_slots[] = {0};
    const struct pool_setup setup = {.config = config,
                                     .shm = &shm,
                                     .queue_slots = queue_slots,
                                     .request_fd = request_fd,
                                     .death_fd = death_pipe[0],
                                     .pod_name = "unit"};
    ck_assert_int_eq(pool_init(&pool, &setup), 0);
}

static void pool_teardown(void)
{
    pool_free(&pool);
    shm_destroy(&shm);
    close(request_fd);
    close(death_pipe[0]);
    close(death_pipe[1]);
    config_free(config);
    hold_mode = HOLD_NONE;
    refuse_close_range = false;
    refuse_opendir = false;
}

/* Reap slot 0's child; its wait status. */
static int reap_slot0(void)
{
    int status;
    ck_assert_int_eq(waitpid(pool.slots[0].pid, &status, 0), pool.slots[0].pid);
    return status;
}

/* --- tests ----------------------------------------------------------------- */

/*
 * A child that is IDLE before the parent runs again after fork() (a loaded
 * machine; here made certain by holding the parent in fork) must stay
 * IDLE: labelled STARTING after the fact, it would never be woken, and a
 * roll (which waits while a worker is STARTING) would wait forever.
 */
START_TEST(spawn_labels_slot_before_fork)
{
    child_mode = CHILD_GO_IDLE;
    hold_shm = &shm;
    hold_mode = HOLD_UNTIL_STATE;
    hold_state = WORKER_IDLE;
    pool_start_missing(&pool, 1);
    ck_assert_int_gt(pool.slots[0].pid, 0);
    int state = atomic_load(&shm.workers[0].state);
    ck_assert_msg(state == WORKER_IDLE,
                  "slot 0 says %s after its worker announced idle (the parent relabelled it)",
                  shm_worker_state_name(state));
    ck_assert_int_eq(atomic_load(&shm.workers[0].pid), pool.slots[0].pid);
    /* So the next notification reaches it. */
    ck_assert_msg(pool_wake_one(&pool, 0), "the idle worker in slot 0 could not be woken");
    ck_assert_int_eq(atomic_load(&shm.workers[0].state), WORKER_WOKEN);
    ck_assert_int_eq(reap_slot0(), 0);
}
END_TEST

/* The child finds its slot already labelled STARTING, whatever the parent
 * does after fork() (held here until the child has exited). */
START_TEST(child_starts_in_a_starting_slot)
{
    child_mode = CHILD_REPORT_STATE;
    hold_mode = HOLD_UNTIL_EXIT;
    pool_start_missing(&pool, 1);
    ck_assert_int_gt(pool.slots[0].pid, 0);
    int status = reap_slot0();
    ck_assert(WIFEXITED(status));
    ck_assert_msg(WEXITSTATUS(status) == WORKER_STARTING,
                  "the child started in a slot that said %s, not starting",
                  shm_worker_state_name(WEXITSTATUS(status)));
    ck_assert_int_eq(atomic_load(&shm.workers[0].state), WORKER_STARTING);
}
END_TEST

/* Fds the supervisor holds (epoll, a socket, both ends of a pipe, one far
 * up the table, and whatever Check has open) must not reach a worker. */
static void child_holds_only_its_fds(bool refuse, bool no_proc)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int sock = socket(AF_INET, SOCK_STREAM, 0); /* no CLOEXEC: like an inherited one */
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    int high = dup2(p[1], 900);
    ck_assert_int_ge(ep, 0);
    ck_assert_int_ge(sock, 0);
    ck_assert_int_eq(high, 900);

    refuse_close_range = refuse;
    refuse_opendir = no_proc;
    child_mode = CHILD_COUNT_FDS;
    pool_start_missing(&pool, 1);
    ck_assert_int_gt(pool.slots[0].pid, 0);
    int status = reap_slot0();
    ck_assert(WIFEXITED(status));
    ck_assert_msg(WEXITSTATUS(status) == 0, "the worker kept %d of the supervisor's fds%s%s",
                  WEXITSTATUS(status), refuse ? " (close_range refused)" : "",
                  no_proc ? " (no /proc)" : "");
    close(ep);
    close(sock);
    close(p[0]);
    close(p[1]);
    close(high);
}

START_TEST(child_closes_inherited_fds)
{
    child_holds_only_its_fds(false, false);
}
END_TEST

START_TEST(child_closes_inherited_fds_without_close_range)
{
    child_holds_only_its_fds(true, false);
}
END_TEST

START_TEST(child_closes_inherited_fds_without_close_range_or_proc)
{
    child_holds_only_its_fds(true, true);
}
END_TEST

/* --- scaling down ----------------------------------------------------------- */

/* Two workers spawned (each fork returns once its stand-in has exited, so
 * the test alone writes the slots' states afterwards), then slot 0 and 1
 * put in the given states, as the workers would. */
static void two_workers(int state0, int state1)
{
    child_mode = CHILD_GO_IDLE;
    hold_mode = HOLD_UNTIL_EXIT;
    pool_scale(&pool, 1);
    pool_start_missing(&pool, 1);
    ck_assert_int_gt(pool.slots[0].pid, 0);
    ck_assert_int_gt(pool.slots[1].pid, 0);
    int states[] = {state0, state1};
    for (unsigned i = 0; i < 2; i++) {
        shm_idle_mark(&shm, i, states[i] == WORKER_IDLE);
        atomic_store(&shm.workers[i].state, states[i]);
    }
}

static void reap_all(void)
{
    for (int i = 0; i < pool.capacity; i++)
        if (pool.slots[i].pid > 0)
            waitpid(pool.slots[i].pid, NULL, 0);
}

/* Slot 1 busy, slot 0 idle: TTOU gives up slot 1 (gracefully: SIGTERM, it
 * finishes its task), never slot 0, which a queue with workers = 1 needs. */
START_TEST(scale_down_retires_the_top_slot_even_busy)
{
    two_workers(WORKER_IDLE, WORKER_BUSY);
    pool_scale(&pool, -1);
    ck_assert_msg(pool.slots[0].wanted && !pool.slots[0].retiring,
                  "slot 0 was retired while slot 1 runs on");
    ck_assert(!pool.slots[1].wanted && pool.slots[1].retiring);
    ck_assert_int_eq(pool.target, 1);
    reap_all();
}
END_TEST

/* A worker sent SIGTERM is not woken: it may exit without looking at the
 * hint, which would then wait for the safety poll. */
START_TEST(wake_skips_a_retiring_worker)
{
    two_workers(WORKER_BUSY, WORKER_IDLE);
    pool_scale(&pool, -1);
    ck_assert(pool.slots[1].retiring);
    ck_assert_msg(!pool_wake_one(&pool, 0), "the retiring worker in slot 1 was woken");
    ck_assert_int_eq(atomic_load(&shm.workers[1].state), WORKER_IDLE);
    reap_all();
}
END_TEST

Suite *pool_suite(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("pool");
    tcase_add_checked_fixture(tc, pool_setup, pool_teardown);
    tcase_add_test(tc, spawn_labels_slot_before_fork);
    tcase_add_test(tc, child_starts_in_a_starting_slot);
    tcase_add_test(tc, child_closes_inherited_fds);
    tcase_add_test(tc, child_closes_inherited_fds_without_close_range);
    tcase_add_test(tc, child_closes_inherited_fds_without_close_range_or_proc);
    tcase_add_test(tc, scale_down_retires_the_top_slot_even_busy);
    tcase_add_test(tc, wake_skips_a_retiring_worker);
    suite_add_tcase(s, tc);
    return s;
}
