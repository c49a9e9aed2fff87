/*
 * test_child.c — worker/child.c against real processes: the one
 * exit-status text (task errors and the supervisor's worker lines), the
 * timeout and abort texts, stopping and reaping a child's group, and
 * the SIGPIPE rule. Each test runs in its own process (Check's fork mode),
 * so it may change signal dispositions and masks.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "suites.h"
#include "../../shared/timeutil.h"
#include "../../worker/child.h"

/* The wait status of a real child that runs fn. */
static int status_of(void (*fn)(void))
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        fn();
        _exit(99);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    return status;
}

static void exit_three(void)
{
    _exit(3);
}

static void exit_zero(void)
{
    _exit(0);
}

static void die_by_kill(void)
{
    raise(SIGKILL);
}

static const char *described(int status)
{
    static char text[96];
    child_describe_exit(status, text, sizeof(text));
    return text;
}

/* The texts tests and README quote for tasks ("exit status 1", "killed by
 * signal 9"), now also the supervisor's for its workers. */
START_TEST(test_describe_exit)
{
    ck_assert_str_eq(described(status_of(exit_zero)), "exit status 0");
    ck_assert_str_eq(described(status_of(exit_three)), "exit status 3");
    ck_assert_str_eq(described(status_of(die_by_kill)), "killed by signal 9");
    /* A core dump depends on the machine's limits: build that status. */
    ck_assert_str_eq(described(W_EXITCODE(0, SIGSEGV) | WCOREFLAG),
                     "killed by signal 11 (core dumped)");
    ck_assert_str_eq(described(W_STOPCODE(SIGSTOP)), "wait status 0x137f");
    ck_assert_str_eq(described(-1), "exit status unknown");
}
END_TEST

/* A queue's timeout as it is written. */
START_TEST(test_describe_timeout)
{
    char text[64];
    child_describe_timeout(30000, text, sizeof(text));
    ck_assert_str_eq(text, "timed out after 30s");
    child_describe_timeout(1500, text, sizeof(text));
    ck_assert_str_eq(text, "timed out after 1500ms");
}
END_TEST

/* Fast shutdown and the supervisor's death decide alone: ABORTED. */
START_TEST(test_stop_aborts)
{
    struct child_process p = {.reason = CHILD_STOP_NONE};
    char error[64] = "untouched";
    ck_assert(!child_stop_aborts(&p, error, sizeof(error)));
    p.reason = CHILD_STOP_TIMEOUT;
    ck_assert(!child_stop_aborts(&p, error, sizeof(error)));
    ck_assert_str_eq(error, "untouched");
    p.reason = CHILD_STOP_ABORT;
    ck_assert(child_stop_aborts(&p, error, sizeof(error)));
    ck_assert_str_eq(error, "aborted: fast shutdown");
    p.reason = CHILD_STOP_DEATH;
    ck_assert(child_stop_aborts(&p, error, sizeof(error)));
    ck_assert_str_eq(error, "aborted: supervisor died");
}
END_TEST

/* Start `sh -c script` as a child with its log context set. */
static void spawn_sh(struct child_process *p, const char *script)
{
    char *argv[] = {"/bin/sh", "-c", (char *)script, NULL};
    char *add[] = {"PGWORK_QUEUE=q"};
    char **envp = child_environ(NULL, 0, add, 1);
    ck_assert_ptr_nonnull(envp);
    *p = (struct child_process){.queue = "q", .what = "handler", .task_id = 1};
    char error[256];
    ck_assert_msg(child_spawn(argv, envp, false, p, error, sizeof(error)) == 0, "%s", error);
    free(envp);
    ck_assert_int_gt(p->pid, 0);
}

/* What a child wrote to its stdout, read so far. */
struct output {
    char text[4096];
    size_t len;
};

/* Read from p->out_fd into out until text has arrived, or EOF. */
static void read_until(struct child_process *p, struct output *out, const char *text)
{
    while (strstr(out->text, text) == NULL && out->len < sizeof(out->text) - 1) {
        struct pollfd pfd = {.fd = p->out_fd, .events = POLLIN};
        ck_assert_int_eq(poll(&pfd, 1, 10000), 1);
        ssize_t n = read(p->out_fd, out->text + out->len, sizeof(out->text) - 1 - out->len);
        if (n < 0 && errno == EAGAIN)
            continue;
        ck_assert_int_ge(n, 0);
        if (n == 0)
            return;
        out->len += (size_t)n;
        out->text[out->len] = '\0';
    }
}

/* A second reason to stop only makes the kill sooner: one SIGTERM, then
 * SIGKILL when the shorter grace runs out; the reap kills the group and
 * keeps the status of the first reason's kill. */
START_TEST(test_stop_terms_once_then_kills)
{
    struct child_process p;
    struct output out = {.len = 0};
    /* stderr away: sh may report the sleep the TERM killed. */
    spawn_sh(&p, "exec 2>/dev/null; trap 'echo term' TERM; echo ready; "
                 "while :; do sleep 0.05; done");
    read_until(&p, &out, "ready");
    ck_assert_ptr_nonnull(strstr(out.text, "ready"));

    int64_t now = time_now_ms();
    child_stop(&p, CHILD_STOP_TIMEOUT, CHILD_KILL_GRACE_MS, now);
    read_until(&p, &out, "term");
    ck_assert_ptr_nonnull(strstr(out.text, "term"));
    child_stop(&p, CHILD_STOP_ABORT, CHILD_ABORT_GRACE_MS, now);
    ck_assert_int_eq(p.reason, CHILD_STOP_TIMEOUT);
    ck_assert_int_eq(p.kill_at_ms, now + CHILD_ABORT_GRACE_MS);

    /* Wait out the grace (the loop a handler runs), then the SIGKILL. */
    while (!child_exited(&p)) {
        int wait = child_poll_timeout(&p, 0, time_now_ms());
        ck_assert_int_le(wait, CHILD_ABORT_GRACE_MS);
        struct pollfd pfd = {.fd = p.pidfd, .events = POLLIN};
        poll(&pfd, p.pidfd >= 0 ? 1 : 0, wait);
        child_check_timers(&p, 1000, time_now_ms());
    }
    child_reap(&p);
    ck_assert_int_eq(p.pid, 0);
    ck_assert_int_eq(p.pidfd, -1);
    ck_assert_int_eq(p.in_fd, -1);
    ck_assert_str_eq(described(p.status), "killed by signal 9");
    /* Everything it wrote: the trap ran once, for the one SIGTERM. */
    read_until(&p, &out, "no such text: read to EOF");
    ck_assert_str_eq(out.text, "ready\nterm\n");
    child_close_fd(&p.out_fd);
    ck_assert_int_eq(p.out_fd, -1);
    /* Reaped: nothing left to signal or stop. */
    child_signal(&p, SIGKILL);
    child_stop(&p, CHILD_STOP_DEATH, 0, now);
    ck_assert_int_eq(p.reason, CHILD_STOP_TIMEOUT);
}
END_TEST

/* Outside a wait loop: a child that exits on SIGTERM is given the
 * chance (its own status is kept), one that ignores it gets SIGKILL when
 * the grace runs out. */
START_TEST(test_terminate)
{
    struct child_process p;
    struct output out = {.len = 0};
    spawn_sh(&p, "trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done");
    read_until(&p, &out, "ready");
    ck_assert(!child_wait_exit(&p, 100, NULL, NULL));
    child_terminate(&p, 10000, NULL, NULL);
    child_reap(&p);
    ck_assert_str_eq(described(p.status), "exit status 7");
    child_close_fd(&p.out_fd);

    spawn_sh(&p, "trap '' TERM; echo ready; while :; do sleep 0.05; done");
    out.len = 0;
    out.text[0] = '\0';
    read_until(&p, &out, "ready");
    int64_t start = time_now_ms();
    child_terminate(&p, 300, NULL, NULL);
    ck_assert_int_ge(time_now_ms() - start, 300);
    child_reap(&p);
    ck_assert_str_eq(described(p.status), "killed by signal 9");
    child_close_fd(&p.out_fd);
}
END_TEST

/* A write into a pipe nobody reads, between hold and release. */
static void write_to_closed_pipe(void)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    close(fds[0]);
    ck_assert_int_eq(write(fds[1], "x", 1), -1);
    ck_assert_int_eq(errno, EPIPE);
    close(fds[1]);
}

static bool sigpipe_blocked(void)
{
    sigset_t mask;
    ck_assert_int_eq(pthread_sigmask(SIG_SETMASK, NULL, &mask), 0);
    return sigismember(&mask, SIGPIPE);
}

static bool sigpipe_pending(void)
{
    sigset_t pending;
    ck_assert_int_eq(sigpending(&pending), 0);
    return sigismember(&pending, SIGPIPE);
}

/* SIGPIPE at its default: blocked for the task, the one our write raised
 * discarded, the mask restored — and this process still alive. */
START_TEST(test_sigpipe_default_blocked_and_discarded)
{
    ck_assert_ptr_ne(signal(SIGPIPE, SIG_DFL), SIG_ERR);
    struct child_sigpipe guard;
    child_sigpipe_hold(&guard);
    ck_assert(sigpipe_blocked());
    write_to_closed_pipe();
    ck_assert(sigpipe_pending());
    child_sigpipe_release(&guard);
    ck_assert(!sigpipe_blocked());
    ck_assert(!sigpipe_pending());
}
END_TEST

/* Ignored, as in the worker: nothing to do, the mask is left alone. */
START_TEST(test_sigpipe_ignored_left_alone)
{
    ck_assert_ptr_ne(signal(SIGPIPE, SIG_IGN), SIG_ERR);
    struct child_sigpipe guard;
    child_sigpipe_hold(&guard);
    ck_assert(!sigpipe_blocked());
    write_to_closed_pipe();
    child_sigpipe_release(&guard);
    ck_assert(!sigpipe_blocked());
    ck_assert(!sigpipe_pending());
}
END_TEST

/* Blocked by the caller already: a pending one is the caller's. */
START_TEST(test_sigpipe_caller_blocked_keeps_its_own)
{
    ck_assert_ptr_ne(signal(SIGPIPE, SIG_DFL), SIG_ERR);
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &pipe_set, NULL), 0);
    struct child_sigpipe guard;
    child_sigpipe_hold(&guard);
    write_to_closed_pipe();
    child_sigpipe_release(&guard);
    ck_assert(sigpipe_blocked());
    ck_assert(sigpipe_pending());
    struct timespec zero = {0, 0};
    ck_assert_int_eq(sigtimedwait(&pipe_set, NULL, &zero), SIGPIPE);
}
END_TEST

Suite *child_suite(void)
{
    Suite *s = suite_create("child");
    TCase *tc = tcase_create("child");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_describe_exit);
    tcase_add_test(tc, test_describe_timeout);
    tcase_add_test(tc, test_stop_aborts);
    tcase_add_test(tc, test_stop_terms_once_then_kills);
    tcase_add_test(tc, test_terminate);
    tcase_add_test(tc, test_sigpipe_default_blocked_and_discarded);
    tcase_add_test(tc, test_sigpipe_ignored_left_alone);
    tcase_add_test(tc, test_sigpipe_caller_blocked_keeps_its_own);
    suite_add_tcase(s, tc);
    return s;
}
