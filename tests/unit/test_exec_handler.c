/*
 * test_exec_handler.c — the exec handler (worker/handler_exec.c) against
 * real child processes: exit statuses, payload on stdin, environment,
 * large payloads and output, timeouts that kill a whole process group,
 * the signal mask a handler starts with, parent death and fast shutdown.
 *
 * Each test runs in its own process (Check's fork mode), so it may block
 * signals, become a child subreaper (to reap and check orphaned
 * grandchildren) or change its environment without affecting the others.
 * Handler scripts get a private directory as $1. Where a test must act
 * while the handler runs, the script says "ready" through a FIFO: the test
 * waits for the event instead of sleeping.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "suites.h"
#include "../../shared/log.h"
#include "../../shared/timeutil.h"
#include "../../worker/handler.h"
#include "handler_fixture.h"

#define PAYLOAD_10MB (10 * 1024 * 1024)

static char dir[256];
static int death_pipe[2];
static struct handler_env env;
static struct queue_config queue;

static void setup(void)
{
    handler_fixture_setup("pgwork-exec", dir, sizeof(dir), death_pipe, &queue, &env);
    queue.name = "test";
    queue.handler = HANDLER_EXEC;
}

static void teardown(void)
{
    handler_fixture_teardown(dir, death_pipe, &env);
}

static const char *path_of(const char *name)
{
    return handler_fixture_path(dir, name);
}

/* The whole file, NUL-terminated; *len gets its size. NULL if missing. */
static char *slurp(const char *name, size_t *len)
{
    return handler_fixture_slurp(dir, name, len);
}

/* Run argv (the queue's command) on one task. */
static enum handler_outcome run_argv(char **argv, const char *payload, char *error, size_t errlen)
{
    handler_fixture_command(&queue, argv);
    void *state = NULL;
    ck_assert_int_eq(handler_exec.init(&env, &state), 0);
    struct task task = {.id = 42, .payload = payload, .attempt = 3, .max_attempts = 5};
    enum handler_outcome outcome = handler_exec.run(state, &env, &task, error, errlen);
    handler_exec.fini(state);
    return outcome;
}

/* Run `script` with /bin/sh -c, $1 = the test directory. */
static enum handler_outcome run_script(const char *script, const char *payload, char *error,
                                       size_t errlen)
{
    handler_fixture_script(&queue, script, dir);
    return run_argv(queue.command, payload, error, errlen);
}

static pid_t read_pid(const char *name)
{
    return handler_fixture_read_pid(dir, name);
}

/* The grandchild must be gone, killed (not exited by itself). */
static void assert_gone(pid_t pid)
{
    handler_fixture_assert_gone(pid, true);
}

/* A thread that waits for the handler to say "ready" on a FIFO, then acts. */
static pthread_t start_on_ready(enum handler_fixture_ready action)
{
    return handler_fixture_on_ready(dir, death_pipe, action);
}

START_TEST(test_success)
{
    char error[HANDLER_ERROR_MAX] = "unchanged";
    ck_assert_int_eq(run_script("echo hello; echo world >&2; exit 0", "{}", error, sizeof(error)),
                     HANDLER_OK);
}
END_TEST

START_TEST(test_exit_status)
{
    char error[HANDLER_ERROR_MAX];
    ck_assert_int_eq(run_script("echo something broke >&2; exit 3", "{}", error, sizeof(error)),
                     HANDLER_FAILED);
    ck_assert_str_eq(error, "exit status 3: something broke");
}
END_TEST

START_TEST(test_killed_by_signal)
{
    char error[HANDLER_ERROR_MAX];
    ck_assert_int_eq(run_script("echo dying; kill -9 $$", "{}", error, sizeof(error)),
                     HANDLER_FAILED);
    ck_assert_str_eq(error, "killed by signal 9: dying");
}
END_TEST

START_TEST(test_path_search)
{
    char error[HANDLER_ERROR_MAX];
    char *ok[] = {"true", NULL};
    ck_assert_int_eq(run_argv(ok, "{}", error, sizeof(error)), HANDLER_OK);
    char *bad[] = {"false", NULL};
    ck_assert_int_eq(run_argv(bad, "{}", error, sizeof(error)), HANDLER_FAILED);
    ck_assert_str_eq(error, "exit status 1");
}
END_TEST

START_TEST(test_exec_failure)
{
    char error[HANDLER_ERROR_MAX];
    char *argv[] = {"/nonexistent/pgwork-handler", NULL};
    ck_assert_int_eq(run_argv(argv, "{}", error, sizeof(error)), HANDLER_FAILED);
    ck_assert_str_eq(error, "exec /nonexistent/pgwork-handler failed: No such file or directory");
}
END_TEST

START_TEST(test_init_needs_command)
{
    handler_fixture_assert_init_needs_command(&handler_exec, &queue, &env);
}
END_TEST

START_TEST(test_payload_on_stdin)
{
    char error[HANDLER_ERROR_MAX];
    const char *payload = "{\"to\": \"ann@example.com\", \"body\": \"h\\u00e9llo\\n\"}";
    ck_assert_int_eq(run_script("cat > \"$1/in\"", payload, error, sizeof(error)), HANDLER_OK);
    size_t len;
    char *got = slurp("in", &len);
    ck_assert_ptr_nonnull(got);
    ck_assert_uint_eq(len, strlen(payload));
    ck_assert_str_eq(got, payload);
    free(got);
}
END_TEST

START_TEST(test_environment)
{
    /* Stale values in the worker's environment must not win; what the
     * queue's env names passes, nothing else does. */
    ck_assert_int_eq(setenv("PGWORK_TASK_ID", "stale", 1), 0);
    ck_assert_int_eq(setenv("PGWORK_TEST_INHERITED", "yes", 1), 0);
    ck_assert_int_eq(setenv("PGWORK_TEST_LISTED", "listed", 1), 0);
    ck_assert_int_eq(setenv("HOME", "/home/test-home", 1), 0);
    char *names[] = {"PGWORK_TEST_LISTED", NULL};
    queue.env = names;
    queue.env_count = 1;
    char error[HANDLER_ERROR_MAX];
    ck_assert_int_eq(run_script("printf '%s\\n' \"$PGWORK_TASK_ID\" \"$PGWORK_QUEUE\" "
                                "\"$PGWORK_ATTEMPT\" \"${PGWORK_TEST_INHERITED-unset}\" "
                                "\"$PGWORK_TEST_LISTED\" \"$HOME\" > \"$1/env\"",
                                "{}", error, sizeof(error)),
                     HANDLER_OK);
    char *got = slurp("env", NULL);
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got, "42\ntest\n3\nunset\nlisted\n/home/test-home\n");
    free(got);
}
END_TEST

/* The worker's credentials never reach a handler: `env` prints none of
 * them, even when the queue's env names them (the config refuses that;
 * the handler side holds without it). */
START_TEST(test_environment_has_no_credentials)
{
    ck_assert_int_eq(setenv("PGWORK_DATABASE_URL", "postgresql://u:hunter2@db/app", 1), 0);
    ck_assert_int_eq(setenv("PGPASSWORD", "hunter2", 1), 0);
    ck_assert_int_eq(setenv("PGPASSFILE", "/hunter2/pgpass", 1), 0);
    ck_assert_int_eq(setenv("PGWORK_WEB_TOKEN", "hunter2", 1), 0);
    char *names[] = {"PGPASSWORD", "PGWORK_DATABASE_URL", "PGPASSFILE", "PGWORK_WEB_TOKEN", NULL};
    queue.env = names;
    queue.env_count = 4;
    char error[HANDLER_ERROR_MAX];
    ck_assert_int_eq(run_script("env > \"$1/env\"; env; exit 1", "{}", error, sizeof(error)),
                     HANDLER_FAILED);
    char *got = slurp("env", NULL);
    ck_assert_ptr_nonnull(got);
    ck_assert_msg(strstr(got, "hunter2") == NULL, "a credential reached the handler:\n%s", got);
    ck_assert_msg(strstr(got, "PGWORK_QUEUE=test\n") != NULL, "%s", got);
    ck_assert_msg(strstr(error, "hunter2") == NULL, "a credential in last_error: %s", error);
    free(got);
}
END_TEST

static char *make_payload(size_t len)
{
    char *p = malloc(len + 1);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < len; i++)
        p[i] = (char)('a' + (i * 7 + i / 4093) % 26);
    p[len] = '\0';
    return p;
}

/* The handler echoes 10 MB back while we are still writing it: both pipes
 * fill up at once, which deadlocks unless both sides are non-blocking. */
START_TEST(test_large_payload)
{
    char *payload = make_payload(PAYLOAD_10MB);
    char error[HANDLER_ERROR_MAX];
    ck_assert_int_eq(run_script("tee \"$1/in\"", payload, error, sizeof(error)), HANDLER_OK);
    size_t len;
    char *got = slurp("in", &len);
    ck_assert_ptr_nonnull(got);
    ck_assert_uint_eq(len, PAYLOAD_10MB);
    ck_assert_int_eq(memcmp(got, payload, PAYLOAD_10MB), 0);
    free(got);
    free(payload);
}
END_TEST

/* A handler that ignores its payload closes stdin early: our write gets
 * EPIPE, and the default SIGPIPE of this process must not kill us. */
START_TEST(test_payload_ignored)
{
    ck_assert_ptr_ne(signal(SIGPIPE, SIG_DFL), SIG_ERR);
    char *payload = make_payload(PAYLOAD_10MB);
    char error[HANDLER_ERROR_MAX];
    ck_assert_int_eq(run_script("exec 0</dev/null; echo done", payload, error, sizeof(error)),
                     HANDLER_OK);
    free(payload);
}
END_TEST

/* 100 MB of output is drained (the handler would block otherwise) and only
 * its tail is kept. */
START_TEST(test_huge_output)
{
    char error[HANDLER_ERROR_MAX];
    ck_assert_int_eq(run_script("yes 0123456789abcdef | head -c 104857600; echo; "
                                "echo last words >&2; exit 1",
                                "{}", error, sizeof(error)),
                     HANDLER_FAILED);
    ck_assert_uint_lt(strlen(error), HANDLER_ERROR_MAX);
    ck_assert_uint_gt(strlen(error), HANDLER_ERROR_MAX / 2);
    ck_assert_msg(strncmp(error, "exit status 1: ...", 18) == 0, "error: %.40s", error);
    ck_assert_ptr_nonnull(strstr(error, "0123456789abcdef\n0123456789abcdef\n"));
    const char *end = error + strlen(error) - strlen("\nlast words");
    ck_assert_str_eq(end, "\nlast words");
}
END_TEST

/* A small errlen still yields a terminated, truncated error. */
START_TEST(test_small_error_buffer)
{
    char error[40];
    ck_assert_int_eq(run_script("echo 'a long explanation of what went wrong'; exit 2", "{}", error,
                                sizeof(error)),
                     HANDLER_FAILED);
    ck_assert_str_eq(error, "exit status 2: ...on of what went wrong");
}
END_TEST

/* last_error is a text column: NUL bytes and invalid UTF-8 would make the
 * UPDATE recording the failure itself fail. */
START_TEST(test_output_sanitized)
{
    char error[HANDLER_ERROR_MAX];
    ck_assert_int_eq(
        run_script("printf 'bad\\377\\000x caf\\303\\251'; exit 1", "{}", error, sizeof(error)),
        HANDLER_FAILED);
    ck_assert_str_eq(error, "exit status 1: bad??x caf\xc3\xa9");
}
END_TEST

/* Timeout: TERM reaches the handler (its mask was reset) and its whole
 * process group, including a grandchild in the background. */
START_TEST(test_timeout_kills_group)
{
    handler_fixture_subreaper();
    queue.timeout_ms = 300;
    char error[HANDLER_ERROR_MAX];
    int64_t start = time_now_ms();
    ck_assert_int_eq(
        run_script("sleep 1000 & echo $! > \"$1/gc\"; sleep 1000", "{}", error, sizeof(error)),
        HANDLER_FAILED);
    int64_t elapsed = time_now_ms() - start;
    ck_assert_str_eq(error, "timed out after 300ms");
    ck_assert_int_ge(elapsed, 300);
    /* KILL would come 2 s after TERM. */
    ck_assert_msg(elapsed < 300 + 2000 - 50, "took %lld ms: SIGTERM did not work",
                  (long long)elapsed);
    assert_gone(read_pid("gc"));
}
END_TEST

START_TEST(test_timeout_message_seconds)
{
    queue.timeout_ms = 1000;
    char error[HANDLER_ERROR_MAX];
    ck_assert_int_eq(run_script("echo working; exec sleep 1000", "{}", error, sizeof(error)),
                     HANDLER_FAILED);
    ck_assert_str_eq(error, "timed out after 1s: working");
}
END_TEST

/* A handler that ignores TERM gets KILL after the grace period. */
START_TEST(test_timeout_term_ignored)
{
    queue.timeout_ms = 300;
    char error[HANDLER_ERROR_MAX];
    int64_t start = time_now_ms();
    ck_assert_int_eq(run_script("trap '' TERM; sleep 1000", "{}", error, sizeof(error)),
                     HANDLER_FAILED);
    int64_t elapsed = time_now_ms() - start;
    ck_assert_str_eq(error, "timed out after 300ms");
    ck_assert_int_ge(elapsed, 2300);
    ck_assert_int_lt(elapsed, 5000);
}
END_TEST

/* A handler that exits but leaves a background child behind: the task is
 * over when the handler exits, and the leftover is killed. */
START_TEST(test_leftover_grandchild_killed)
{
    handler_fixture_subreaper();
    char error[HANDLER_ERROR_MAX];
    int64_t start = time_now_ms();
    ck_assert_int_eq(
        run_script("sleep 1000 & echo $! > \"$1/gc\"; exit 0", "{}", error, sizeof(error)),
        HANDLER_OK);
    ck_assert_int_lt(time_now_ms() - start, 10000); /* not the grandchild's 1000 s */
    assert_gone(read_pid("gc"));
}
END_TEST

/* The worker blocks TERM/INT/QUIT (setup does the same here) and ignores
 * SIGPIPE, SIGHUP and more; none of that may reach the handler. */
START_TEST(test_signal_mask_reset)
{
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGUSR1, SIG_IGN);
    char error[HANDLER_ERROR_MAX];
    ck_assert_int_eq(run_script("while read k v; do case $k in SigBlk:|SigIgn:) echo \"$k $v\";; "
                                "esac; done < /proc/$$/status > \"$1/mask\"",
                                "{}", error, sizeof(error)),
                     HANDLER_OK);
    char *got = slurp("mask", NULL);
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got, "SigBlk: 0000000000000000\nSigIgn: 0000000000000000\n");
    free(got);
}
END_TEST

/* The worker's own fds are close-on-exec: the handler does not see them. */
START_TEST(test_no_fd_leak)
{
    char fds[3][16];
    snprintf(fds[0], sizeof(fds[0]), "%d", env.signal_fd);
    snprintf(fds[1], sizeof(fds[1]), "%d", death_pipe[0]);
    snprintf(fds[2], sizeof(fds[2]), "%d", death_pipe[1]);
    char *argv[] = {"/bin/sh",
                    "-c",
                    "d=$1; shift; for fd; do [ -e /proc/$$/fd/$fd ] && echo $fd; done > "
                    "\"$d/leaked\"; exit 0",
                    "sh",
                    dir,
                    fds[0],
                    fds[1],
                    fds[2],
                    NULL};
    char error[HANDLER_ERROR_MAX];
    ck_assert_int_eq(run_argv(argv, "{}", error, sizeof(error)), HANDLER_OK);
    char *got = slurp("leaked", NULL);
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got, "");
    free(got);
}
END_TEST

/* `action` once the handler (and a grandchild of its group) runs: the
 * task is aborted at once with error `why`, the group killed. */
static void assert_aborted_mid_task(enum handler_fixture_ready action, const char *why)
{
    handler_fixture_subreaper();
    pthread_t thread = start_on_ready(action);
    char error[HANDLER_ERROR_MAX];
    int64_t start = time_now_ms();
    ck_assert_int_eq(run_script("sleep 1000 & echo $! > \"$1/gc\"; echo ready > \"$1/fifo\"; "
                                "sleep 1000",
                                "{}", error, sizeof(error)),
                     HANDLER_ABORTED);
    ck_assert_int_lt(time_now_ms() - start, 10000); /* not the handler's 1000 s sleep */
    pthread_join(thread, NULL);
    ck_assert(env.abort_requested);
    ck_assert_str_eq(error, why);
    assert_gone(read_pid("gc"));
}

/* The supervisor dies mid-task: the handler's group is killed at once. */
START_TEST(test_parent_death)
{
    assert_aborted_mid_task(READY_CLOSE_DEATH_PIPE, "aborted: supervisor died");
}
END_TEST

/* QUIT (fast shutdown) mid-task: TERM to the group, ABORTED. */
START_TEST(test_abort_on_sigquit)
{
    assert_aborted_mid_task(READY_SEND_SIGQUIT, "aborted: fast shutdown");
    ck_assert(!env.stop_requested);
}
END_TEST

/* TERM mid-task is graceful: the task runs to completion. (The script's
 * 0.3 s of work is what a wrong TERM-kills-the-task would cut short.) */
START_TEST(test_sigterm_lets_task_finish)
{
    pthread_t thread = start_on_ready(READY_SEND_SIGTERM);
    char error[HANDLER_ERROR_MAX];
    ck_assert_int_eq(run_script("echo ready > \"$1/fifo\"; sleep 0.3; echo finished > \"$1/out\"",
                                "{}", error, sizeof(error)),
                     HANDLER_OK);
    pthread_join(thread, NULL);
    ck_assert(env.stop_requested);
    ck_assert(!env.abort_requested);
    char *got = slurp("out", NULL);
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got, "finished\n");
    free(got);
}
END_TEST

/* A fast shutdown already requested: the task is not started at all. */
START_TEST(test_abort_before_start)
{
    env.abort_requested = true;
    char error[HANDLER_ERROR_MAX];
    ck_assert_int_eq(run_script("touch \"$1/ran\"", "{}", error, sizeof(error)), HANDLER_ABORTED);
    ck_assert_int_eq(access(path_of("ran"), F_OK), -1);
}
END_TEST

/* The registry and the signal helpers (worker/handler.c). */
START_TEST(test_env_helpers)
{
    ck_assert_ptr_eq(handler_for_kind(HANDLER_EXEC), &handler_exec);
    handler_env_poll_signals(&env); /* nothing pending */
    handler_env_check_parent(&env);
    ck_assert(!env.stop_requested && !env.abort_requested);
    ck_assert_int_eq(kill(getpid(), SIGINT), 0);
    handler_env_poll_signals(&env);
    ck_assert(env.stop_requested && !env.abort_requested);
    close(death_pipe[1]);
    death_pipe[1] = -1;
    handler_env_check_parent(&env);
    ck_assert(env.abort_requested);

    struct handler_env none = {.death_fd = -1, .signal_fd = -1};
    handler_env_poll_signals(&none);
    handler_env_check_parent(&none);
    ck_assert(!none.stop_requested && !none.abort_requested);
}
END_TEST

Suite *exec_handler_suite(void)
{
    Suite *s = suite_create("exec_handler");
    TCase *tc = tcase_create("exec");
    tcase_add_checked_fixture(tc, setup, teardown);
    /* Generous for valgrind; the slowest test takes ~2.5 s natively. */
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_success);
    tcase_add_test(tc, test_exit_status);
    tcase_add_test(tc, test_killed_by_signal);
    tcase_add_test(tc, test_path_search);
    tcase_add_test(tc, test_exec_failure);
    tcase_add_test(tc, test_init_needs_command);
    tcase_add_test(tc, test_payload_on_stdin);
    tcase_add_test(tc, test_environment);
    tcase_add_test(tc, test_environment_has_no_credentials);
    tcase_add_test(tc, test_large_payload);
    tcase_add_test(tc, test_payload_ignored);
    tcase_add_test(tc, test_huge_output);
    tcase_add_test(tc, test_small_error_buffer);
    tcase_add_test(tc, test_output_sanitized);
    tcase_add_test(tc, test_timeout_kills_group);
    tcase_add_test(tc, test_timeout_message_seconds);
    tcase_add_test(tc, test_timeout_term_ignored);
    tcase_add_test(tc, test_leftover_grandchild_killed);
    tcase_add_test(tc, test_signal_mask_reset);
    tcase_add_test(tc, test_no_fd_leak);
    tcase_add_test(tc, test_parent_death);
    tcase_add_test(tc, test_abort_on_sigquit);
    tcase_add_test(tc, test_sigterm_lets_task_finish);
    tcase_add_test(tc, test_abort_before_start);
    tcase_add_test(tc, test_env_helpers);
    suite_add_tcase(s, tc);
    return s;
}
