/*
 * test_coprocess.c — the coprocess handler (worker/handler_coprocess.c):
 * the result-line parser and the task-line format on their own, then the
 * handler against real long-lived children (/bin/sh loops): one child for
 * many tasks, failures, deaths mid-task and between tasks, malformed and
 * extra output, timeouts that kill the whole group, the child's signal
 * setup and fds, stderr into the log, fast shutdown, parent death, fini.
 *
 * Each test runs in its own process (Check's fork mode), as in
 * test_exec_handler.c, whose fixture this mirrors. Child scripts get the
 * test's private directory as $1; where a test must act while a task runs,
 * the child says "ready" through a FIFO and the test waits for it.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "suites.h"
#include "../../shared/log.h"
#include "../../shared/timeutil.h"
#include "../../worker/coprocess_protocol.h"
#include "../../worker/handler.h"
#include "handler_fixture.h"

static char dir[256];
static int death_pipe[2];
static struct handler_env env;
static struct queue_config queue;
static void *state;

/* The start of every child script: read task lines, $id = the task's id. */
#define LOOP "while IFS= read -r l; do id=${l#*\\\"id\\\":}; id=${id%%,*}; "
#define OK "printf '{\"id\":%s,\"ok\":true}\\n' \"$id\"; "
#define DONE "done"

static void setup(void)
{
    handler_fixture_setup("pgwork-coproc", dir, sizeof(dir), death_pipe, &queue, &env);
    queue.name = "co";
    queue.handler = HANDLER_COPROCESS;
    state = NULL;
}

static void teardown(void)
{
    if (state != NULL)
        handler_coprocess.fini(state);
    handler_fixture_teardown(dir, death_pipe, &env);
}

static const char *path_of(const char *name)
{
    return handler_fixture_path(dir, name);
}

/* The whole file, NUL-terminated, or NULL if missing. */
static char *slurp(const char *name)
{
    return handler_fixture_slurp(dir, name, NULL);
}

static void start_argv(char **argv)
{
    handler_fixture_command(&queue, argv);
    ck_assert_int_eq(handler_coprocess.init(&env, &state), 0);
}

/* Start `script` as the queue's co-process: /bin/sh -c script sh DIR. */
static void start(const char *script)
{
    handler_fixture_script(&queue, script, dir);
    start_argv(queue.command);
}

static enum handler_outcome run(int64_t id, const char *payload, char *error)
{
    struct task task = {.id = id, .payload = payload, .attempt = 1, .max_attempts = 5};
    return handler_coprocess.run(state, &env, &task, error, HANDLER_ERROR_MAX);
}

static void stop(void)
{
    handler_coprocess.fini(state);
    state = NULL;
}

/* The pids the child wrote, one per line ("pids" file), as a string. */
static pid_t nth_pid(int n)
{
    /* The child writes its line when it starts, which may be after we get
     * here (the file can even exist still empty): wait for the line, up to
     * 5 s, rather than read once. */
    int64_t deadline = time_now_ms() + 5000;
    for (;;) {
        char *text = slurp("pids");
        char *line = text;
        for (int i = 0; i < n && line != NULL; i++) {
            line = strchr(line, '\n');
            if (line != NULL)
                line++;
        }
        if (line != NULL && strchr(line, '\n') != NULL) {
            pid_t pid = (pid_t)atoi(line);
            free(text);
            return pid;
        }
        ck_assert_msg(time_now_ms() < deadline, "fewer than %d pids after 5 s: %s", n + 1,
                      text != NULL ? text : "(no pids file)");
        free(text);
        usleep(2000);
    }
}

/* Is pid a zombie (exited, not yet reaped)? */
static bool is_zombie(pid_t pid)
{
    char path[64], buf[256];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return true; /* gone altogether */
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')');
    return paren != NULL && paren[1] == ' ' && paren[2] == 'Z';
}

/* The grandchild must be gone (reaped if it came to us). */
static void assert_gone(pid_t pid)
{
    handler_fixture_assert_gone(pid, false);
}

/* A thread that waits for the child to say "ready" on a FIFO, then acts. */
static pthread_t start_on_ready(enum handler_fixture_ready action)
{
    return handler_fixture_on_ready(dir, death_pipe, action);
}

/* --- the protocol ------------------------------------------------------- */

static int parse(const char *line, struct coprocess_result *r)
{
    char why[64];
    return coprocess_parse_result(line, strlen(line), r, why, sizeof(why));
}

START_TEST(test_parse_ok)
{
    struct coprocess_result r;
    ck_assert_int_eq(parse("{\"id\":5,\"ok\":true}", &r), 0);
    ck_assert_int_eq(r.id, 5);
    ck_assert(r.ok);
    ck_assert_str_eq(r.error, "");
    /* Whitespace anywhere JSON allows it, a trailing \r, null error. */
    ck_assert_int_eq(parse("  { \"ok\" : false ,\t\"id\" : 9223372036854775807 , "
                           "\"error\" : null }\r",
                           &r),
                     0);
    ck_assert_int_eq(r.id, INT64_MAX);
    ck_assert(!r.ok);
    ck_assert_str_eq(r.error, "");
}
END_TEST

START_TEST(test_parse_error_text)
{
    struct coprocess_result r;
    /* Escapes, a surrogate pair, a lone surrogate, NUL; unknown fields of
     * every shape skipped. */
    ck_assert_int_eq(parse("{\"ok\":false,\"error\":\"b\\u00e9\\n\\\"x\\\"\\/\\ud83d\\ude00 "
                           "\\ud800 \\u0000 \\t\",\"id\":7,\"extra\":{\"a\":[1,-2.5e3,null,true,"
                           "\"s\",{}],\"b\":[]}}",
                           &r),
                     0);
    ck_assert_int_eq(r.id, 7);
    ck_assert(!r.ok);
    ck_assert_str_eq(r.error, "b\xc3\xa9\n\"x\"/\xf0\x9f\x98\x80 \xef\xbf\xbd ? \t");
    /* Raw UTF-8 passes; invalid bytes become '?'. */
    ck_assert_int_eq(parse("{\"id\":1,\"ok\":false,\"error\":\"caf\xc3\xa9 \xff!\"}", &r), 0);
    ck_assert_str_eq(r.error, "caf\xc3\xa9 ?!");
}
END_TEST

START_TEST(test_parse_long_error_cut_on_a_character)
{
    size_t n = 3000; /* 3000 two-byte characters: more than the 4 KiB kept */
    char *line = malloc(n * 2 + 64);
    ck_assert_ptr_nonnull(line);
    size_t o = (size_t)sprintf(line, "{\"id\":1,\"ok\":false,\"error\":\"");
    for (size_t i = 0; i < n; i++) {
        line[o++] = '\xc3';
        line[o++] = '\xa9';
    }
    strcpy(line + o, "\"}");
    struct coprocess_result r;
    ck_assert_int_eq(parse(line, &r), 0);
    size_t len = strlen(r.error);
    ck_assert_uint_lt(len, HANDLER_ERROR_MAX);
    ck_assert_uint_gt(len, HANDLER_ERROR_MAX - 4);
    ck_assert_uint_eq(len % 2, 0); /* whole characters only */
    free(line);
}
END_TEST

START_TEST(test_parse_rejects)
{
    static const char *const bad[] = {
        "",
        "[]",
        "{",
        "null",
        "{\"id\":1}",
        "{\"ok\":true}",
        "{\"id\":1.5,\"ok\":true}",
        "{\"id\":1e2,\"ok\":true}",
        "{\"id\":\"1\",\"ok\":true}",
        "{\"id\":01,\"ok\":true}",
        "{\"id\":99999999999999999999,\"ok\":true}",
        "{\"id\":1,\"ok\":1}",
        "{\"id\":1,\"ok\":\"true\"}",
        "{\"id\":1,\"ok\":true} x",
        "{\"id\":1,\"ok\":true}{}",
        "{\"id\":1,\"ok\":true,}",
        "{\"id\":1 \"ok\":true}",
        "{id:1,ok:true}",
        "{'id':1,'ok':true}",
        "{\"id\":1,\"ok\":true,\"error\":\"a\tb\"}",
        "{\"id\":1,\"ok\":true,\"error\":\"\\x\"}",
        "{\"id\":1,\"ok\":true,\"error\":\"\\u12\"}",
        "{\"id\":1,\"ok\":true,\"error\":\"open",
        "{\"id\":1,\"ok\":true,\"error\":5}",
        "{\"id\":1,\"ok\":true,\"x\":[1,]}",
        "{\"id\":1,\"ok\":true,\"x\":tru}",
        "{\"id\":1,\"ok\":true,\"x\":-}",
        "{\"id\":1,\"ok\":true,\"x\":1.}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct coprocess_result r;
        char why[64] = "";
        ck_assert_msg(coprocess_parse_result(bad[i], strlen(bad[i]), &r, why, sizeof(why)) == -1,
                      "accepted: %s", bad[i]);
        ck_assert_msg(why[0] != '\0', "no reason for: %s", bad[i]);
    }
    /* Nesting is bounded: no stack overflow from a hostile child. */
    char deep[4096];
    size_t o = (size_t)sprintf(deep, "{\"id\":1,\"ok\":true,\"x\":");
    for (int i = 0; i < 1000; i++)
        deep[o++] = '[';
    deep[o] = '\0';
    struct coprocess_result r;
    ck_assert_int_eq(parse(deep, &r), -1);
}
END_TEST

START_TEST(test_format_task)
{
    struct text_buffer line = {0};
    struct task task = {.id = 42, .payload = "{\"a\": \"x\"}", .attempt = 3, .max_attempts = 5};
    int len = coprocess_format_task(&line, "\"q\\\"1\"", &task);
    const char *want =
        "{\"id\":42,\"attempt\":3,\"queue\":\"q\\\"1\",\"payload\":{\"a\": \"x\"}}\n";
    ck_assert_int_eq(len, (int)strlen(want));
    ck_assert_str_eq(line.data, want);

    /* No payload: null. A raw line break (never in jsonb's text) cannot
     * break the framing. */
    task.payload = NULL;
    coprocess_format_task(&line, "\"q\"", &task);
    ck_assert_str_eq(line.data, "{\"id\":42,\"attempt\":3,\"queue\":\"q\",\"payload\":null}\n");
    struct task big = {.id = INT64_MAX, .payload = "1", .attempt = 2147483647};
    coprocess_format_task(&line, "\"q\"", &big);
    ck_assert_str_eq(line.data,
                     "{\"id\":9223372036854775807,\"attempt\":2147483647,\"queue\":\"q\","
                     "\"payload\":1}\n");
    struct task zero = {.id = 0, .payload = "{}", .attempt = 0};
    coprocess_format_task(&line, "\"q\"", &zero);
    ck_assert_str_eq(line.data, "{\"id\":0,\"attempt\":0,\"queue\":\"q\",\"payload\":{}}\n");
    task.payload = "{\"a\":\n1}\r";
    coprocess_format_task(&line, "\"q\"", &task);
    ck_assert_str_eq(line.data,
                     "{\"id\":42,\"attempt\":3,\"queue\":\"q\",\"payload\":{\"a\": 1} }\n");
    text_free(&line);
}
END_TEST

/* --- the handler with real children -------------------------------------- */

/* One child serves many tasks; the line reaches it intact; the queue name
 * is escaped; PGWORK_QUEUE is in its environment. */
START_TEST(test_one_child_many_tasks)
{
    queue.name = "we\"ird\\q";
    start(LOOP "printf '%s\\n' \"$l\" >> \"$1/lines\"; echo $$ >> \"$1/pids\"; "
               "printf '%s\\n' \"$PGWORK_QUEUE\" > \"$1/env\"; " OK DONE);
    char error[HANDLER_ERROR_MAX];
    ck_assert_int_eq(run(1, "{\"n\": 1}", error), HANDLER_OK);
    ck_assert_int_eq(run(2, "[1, \"two\"]", error), HANDLER_OK);
    ck_assert_int_eq(run(3, "\"caf\xc3\xa9\"", error), HANDLER_OK);
    char *lines = slurp("lines");
    ck_assert_ptr_nonnull(lines);
    ck_assert_str_eq(
        lines, "{\"id\":1,\"attempt\":1,\"queue\":\"we\\\"ird\\\\q\",\"payload\":{\"n\": 1}}\n"
               "{\"id\":2,\"attempt\":1,\"queue\":\"we\\\"ird\\\\q\",\"payload\":[1, "
               "\"two\"]}\n"
               "{\"id\":3,\"attempt\":1,\"queue\":\"we\\\"ird\\\\q\",\"payload\":"
               "\"caf\xc3\xa9\"}\n");
    free(lines);
    ck_assert_int_eq(nth_pid(0), nth_pid(1));
    ck_assert_int_eq(nth_pid(1), nth_pid(2));
    char *queue_env = slurp("env");
    ck_assert_str_eq(queue_env, "we\"ird\\q\n");
    free(queue_env);
}
END_TEST

START_TEST(test_failure_result)
{
    start(LOOP "echo $$ >> \"$1/pids\"; "
               "printf '{\"id\":%s,\"ok\":false,\"error\":\"smtp said \\\\\"no\\\\\"\"}\\n' "
               "\"$id\"; " DONE);
    char error[HANDLER_ERROR_MAX];
    ck_assert_int_eq(run(1, "{}", error), HANDLER_FAILED);
    ck_assert_str_eq(error, "smtp said \"no\"");
    /* A reported failure is an ordinary outcome: the child stays. */
    ck_assert_int_eq(run(2, "{}", error), HANDLER_FAILED);
    ck_assert_int_eq(nth_pid(0), nth_pid(1));

    stop();
    start(LOOP "printf '{\"id\":%s,\"ok\":false}\\n' \"$id\"; " DONE);
    ck_assert_int_eq(run(3, "{}", error), HANDLER_FAILED);
    ck_assert_str_eq(error, "coprocess reported failure");
}
END_TEST

START_TEST(test_death_mid_task_fails_it_and_restarts)
{
    start(LOOP "echo $$ >> \"$1/pids\"; "
               "if [ \"$id\" = 2 ]; then echo \"dying on $id\" >&2; exit 3; fi; " OK DONE);
    char error[HANDLER_ERROR_MAX];
    ck_assert_int_eq(run(1, "{}", error), HANDLER_OK);
    ck_assert_int_eq(run(2, "{}", error), HANDLER_FAILED);
    ck_assert_msg(strstr(error, "exited before answering (exit status 3)") != NULL, "%s", error);
    ck_assert_msg(strstr(error, "dying on 2") != NULL, "stderr tail missing: %s", error);
    ck_assert_int_eq(run(3, "{}", error), HANDLER_OK);
    ck_assert_int_ne(nth_pid(0), nth_pid(2));
}
END_TEST

/* Killed between tasks: restarted before the next task, which succeeds. */
START_TEST(test_death_while_idle_fails_nothing)
{
    start(LOOP "echo $$ >> \"$1/pids\"; " OK DONE);
    char error[HANDLER_ERROR_MAX];
    ck_assert_int_eq(run(1, "{}", error), HANDLER_OK);
    pid_t first = nth_pid(0);
    ck_assert_int_eq(kill(first, SIGKILL), 0);
    int64_t deadline = time_now_ms() + 5000;
    while (!is_zombie(first) && time_now_ms() < deadline)
        usleep(2000);
    ck_assert_int_eq(run(2, "{}", error), HANDLER_OK);
    ck_assert_int_ne(nth_pid(1), first);
}
END_TEST

START_TEST(test_malformed_result_restarts)
{
    start(LOOP "echo $$ >> \"$1/pids\"; "
               "if [ \"$id\" = 1 ]; then echo 'Traceback (most recent call last):'; else " OK
               "fi; " DONE);
    char error[HANDLER_ERROR_MAX];
    ck_assert_int_eq(run(1, "{}", error), HANDLER_FAILED);
    ck_assert_msg(strstr(error, "malformed result line") != NULL, "%s", error);
    ck_assert_msg(strstr(error, "Traceback (most") != NULL, "%s", error);
    ck_assert_int_eq(run(2, "{}", error), HANDLER_OK);
    ck_assert_int_ne(nth_pid(0), nth_pid(1));
}
END_TEST

START_TEST(test_wrong_id_is_malformed)
{
    start(LOOP "printf '{\"id\":%s,\"ok\":true}\\n' $((id + 1)); " DONE);
    char error[HANDLER_ERROR_MAX];
    ck_assert_int_eq(run(1, "{}", error), HANDLER_FAILED);
    ck_assert_msg(strstr(error, "\"id\" 2 is not the task's") != NULL, "%s", error);
}
END_TEST

/* Two answers for one task: the second is noticed before the next task,
 * and the out-of-step child replaced. Blank lines are harmless. */
START_TEST(test_extra_output_restarts)
{
    start(LOOP "echo $$ >> \"$1/pids\"; echo; " OK "if [ \"$id\" = 1 ]; then " OK
               "echo > \"$1/extra\"; fi; " DONE);
    char error[HANDLER_ERROR_MAX];
    ck_assert_int_eq(run(1, "{}", error), HANDLER_OK);
    /* The second answer is in the pipe once the child says so. */
    int64_t deadline = time_now_ms() + 5000;
    while (access(path_of("extra"), F_OK) != 0) {
        ck_assert_msg(time_now_ms() < deadline, "the child never wrote its second answer");
        usleep(2000);
    }
    ck_assert_int_eq(run(2, "{}", error), HANDLER_OK);
    ck_assert_int_ne(nth_pid(0), nth_pid(1));
    ck_assert_int_eq(run(3, "{}", error), HANDLER_OK);
    ck_assert_int_eq(nth_pid(1), nth_pid(2));
}
END_TEST

START_TEST(test_closed_stdout_fails_fast)
{
    start(LOOP "exec >&-; sleep 30; " DONE);
    char error[HANDLER_ERROR_MAX];
    int64_t t0 = time_now_ms();
    ck_assert_int_eq(run(1, "{}", error), HANDLER_FAILED);
    /* At EOF, not after the child's 30 s sleep. */
    ck_assert_int_lt(time_now_ms() - t0, 10000);
    ck_assert_msg(strstr(error, "closed its stdout") != NULL, "%s", error);
}
END_TEST

START_TEST(test_timeout_kills_group_and_restarts)
{
    handler_fixture_subreaper();
    queue.timeout_ms = 300;
    start(LOOP "echo $$ >> \"$1/pids\"; if [ \"$id\" = 1 ]; then sleep 30 & echo $! > "
               "\"$1/grandchild\"; wait; fi; " OK DONE);
    char error[HANDLER_ERROR_MAX];
    int64_t t0 = time_now_ms();
    ck_assert_int_eq(run(1, "{}", error), HANDLER_FAILED);
    int64_t took = time_now_ms() - t0;
    ck_assert_int_ge(took, 300);
    ck_assert_int_lt(took, 300 + 2000 - 50); /* TERM was enough: KILL comes 2 s after it */
    ck_assert_msg(strstr(error, "timed out after 300ms") != NULL, "%s", error);
    char *grandchild = slurp("grandchild");
    ck_assert_ptr_nonnull(grandchild);
    assert_gone((pid_t)atoi(grandchild));
    free(grandchild);
    ck_assert_int_eq(run(2, "{}", error), HANDLER_OK);
    ck_assert_int_ne(nth_pid(0), nth_pid(1));
}
END_TEST

START_TEST(test_timeout_term_ignored)
{
    queue.timeout_ms = 1000;
    start("trap '' TERM; " LOOP "while :; do sleep 0.05; done; " DONE);
    char error[HANDLER_ERROR_MAX];
    int64_t t0 = time_now_ms();
    ck_assert_int_eq(run(1, "{}", error), HANDLER_FAILED);
    int64_t took = time_now_ms() - t0;
    ck_assert_int_ge(took, 2900); /* 1 s timeout + 2 s grace, then SIGKILL */
    ck_assert_int_lt(took, 6000);
    ck_assert_msg(strstr(error, "timed out after 1s") != NULL, "%s", error);
}
END_TEST

/* The worker blocks TERM/INT/QUIT and ignores SIGPIPE & co.: none of it
 * may reach the child (DESIGN §8). */
START_TEST(test_signal_setup_and_fds)
{
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    char fds[3][16];
    snprintf(fds[0], sizeof(fds[0]), "%d", env.signal_fd);
    snprintf(fds[1], sizeof(fds[1]), "%d", death_pipe[0]);
    snprintf(fds[2], sizeof(fds[2]), "%d", death_pipe[1]);
    char *argv[] = {
        "/bin/sh",
        "-c",
        "d=$1; shift; for fd; do [ -e /proc/$$/fd/$fd ] && echo $fd; done > "
        "\"$d/leaked\"; while read k v; do case $k in SigBlk:|SigIgn:) echo \"$k "
        "$v\";; esac; done < /proc/$$/status > \"$d/mask\"; "
        "set -- $(cat /proc/$$/stat); [ \"$5\" = $$ ] && echo own > \"$d/pgid\"; " LOOP OK DONE,
        "sh",
        dir,
        fds[0],
        fds[1],
        fds[2],
        NULL};
    start_argv(argv);
    char error[HANDLER_ERROR_MAX];
    ck_assert_int_eq(run(1, "{}", error), HANDLER_OK);
    char *got = slurp("mask");
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got, "SigBlk: 0000000000000000\nSigIgn: 0000000000000000\n");
    free(got);
    got = slurp("leaked");
    ck_assert_str_eq(got, "");
    free(got);
    got = slurp("pgid");
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got, "own\n");
    free(got);
}
END_TEST

/* stderr goes into our log, line by line; the child's pid is named. */
START_TEST(test_stderr_into_log)
{
    int fd = open(path_of("log"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(dup2(fd, 2), 2);
    close(fd);
    log_init("test", 0, LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
    start("echo booting >&2; " LOOP "printf 'working on %s\\npartial' \"$id\" >&2; "
          "echo ' line' >&2; " OK DONE);
    char error[HANDLER_ERROR_MAX];
    ck_assert_int_eq(run(7, "{}", error), HANDLER_OK);
    stop();
    char *log = slurp("log");
    ck_assert_ptr_nonnull(log);
    ck_assert_msg(strstr(log, "coprocess started") != NULL, "%s", log);
    ck_assert_msg(strstr(log, ": booting") != NULL, "%s", log);
    ck_assert_msg(strstr(log, ": working on 7") != NULL, "%s", log);
    ck_assert_msg(strstr(log, ": partial line") != NULL, "%s", log);
    free(log);
}
END_TEST

/* `action` while the child works on a task: the task is aborted at once. */
static void assert_aborted_mid_task(enum handler_fixture_ready action)
{
    pthread_t thread = start_on_ready(action);
    start(LOOP "echo ready > \"$1/fifo\"; sleep 30; " OK DONE);
    char error[HANDLER_ERROR_MAX];
    int64_t t0 = time_now_ms();
    ck_assert_int_eq(run(1, "{}", error), HANDLER_ABORTED);
    ck_assert_int_lt(time_now_ms() - t0, 10000); /* not the child's 30 s sleep */
    pthread_join(thread, NULL);
}

START_TEST(test_abort_on_sigquit)
{
    assert_aborted_mid_task(READY_SEND_SIGQUIT);
    ck_assert(env.abort_requested);
}
END_TEST

START_TEST(test_sigterm_lets_task_finish)
{
    pthread_t thread = start_on_ready(READY_SEND_SIGTERM);
    start(LOOP "echo ready > \"$1/fifo\"; sleep 0.3; " OK DONE);
    char error[HANDLER_ERROR_MAX];
    ck_assert_int_eq(run(1, "{}", error), HANDLER_OK);
    ck_assert(env.stop_requested);
    ck_assert(!env.abort_requested);
    pthread_join(thread, NULL);
}
END_TEST

START_TEST(test_parent_death)
{
    assert_aborted_mid_task(READY_CLOSE_DEATH_PIPE);
}
END_TEST

START_TEST(test_exec_failure)
{
    char *argv[] = {"/nonexistent/pgwork-coprocess", NULL};
    start_argv(argv); /* not fatal: the program may appear later */
    char error[HANDLER_ERROR_MAX];
    ck_assert_int_eq(run(1, "{}", error), HANDLER_FAILED);
    ck_assert_str_eq(error, "exec /nonexistent/pgwork-coprocess failed: No such file or directory");
}
END_TEST

START_TEST(test_init_needs_command)
{
    handler_fixture_assert_init_needs_command(&handler_coprocess, &queue, &env);
    ck_assert_ptr_eq(handler_for_kind(HANDLER_COPROCESS), &handler_coprocess);
}
END_TEST

/* fini: EOF on stdin ends a well-behaved child at once; one that ignores
 * EOF and SIGTERM is killed. Nothing is left running either way. */
START_TEST(test_fini_stops_child)
{
    /* How it ended, in its own words: EOF ends the loop; a TERM (fini's
     * next step) would run the trap. */
    start("trap 'echo term > \"$1/ended\"; exit 1' TERM; " LOOP "echo $$ >> \"$1/pids\"; " OK DONE
          "; echo eof > \"$1/ended\"");
    char error[HANDLER_ERROR_MAX];
    ck_assert_int_eq(run(1, "{}", error), HANDLER_OK);
    pid_t pid = nth_pid(0);
    stop();
    ck_assert_int_eq(kill(pid, 0), -1);
    char *ended = slurp("ended");
    ck_assert_msg(ended != NULL && strcmp(ended, "eof\n") == 0, "the child ended by %s",
                  ended != NULL ? ended : "(nothing written)");
    free(ended);

    unlink(path_of("pids"));
    start("trap '' TERM; echo $$ >> \"$1/pids\"; while :; do sleep 0.05; done");
    pid = nth_pid(0);
    int64_t t0 = time_now_ms();
    stop();
    ck_assert_int_ge(time_now_ms() - t0, 1900);
    ck_assert_int_eq(kill(pid, 0), -1);
}
END_TEST

/* A 1 MiB payload and a long result line: non-blocking both ways. */
START_TEST(test_large_payload)
{
    size_t n = 1024 * 1024;
    char *payload = malloc(n + 16);
    ck_assert_ptr_nonnull(payload);
    strcpy(payload, "{\"s\": \"");
    size_t o = strlen(payload);
    for (; o < n; o++)
        payload[o] = (char)('a' + o % 26);
    strcpy(payload + o, "\"}");
    char *argv[] = {"python3", "-c",
                    "import json, sys\n"
                    "for line in sys.stdin:\n"
                    "    t = json.loads(line)\n"
                    "    open(sys.argv[1] + '/len', 'w').write(str(len(t['payload']['s'])))\n"
                    "    sys.stdout.write(json.dumps({'id': t['id'], 'ok': False,"
                    " 'error': 'x' * 100000}) + '\\n')\n"
                    "    sys.stdout.flush()\n",
                    dir, NULL};
    start_argv(argv);
    char error[HANDLER_ERROR_MAX];
    ck_assert_int_eq(run(1, payload, error), HANDLER_FAILED);
    ck_assert_uint_eq(strlen(error), HANDLER_ERROR_MAX - 1);
    char *len = slurp("len");
    ck_assert_ptr_nonnull(len);
    ck_assert_int_eq(atol(len), (long)(n - strlen("{\"s\": \"")));
    free(len);
    free(payload);
}
END_TEST

Suite *coprocess_suite(void)
{
    Suite *s = suite_create("coprocess");
    TCase *tc = tcase_create("protocol");
    tcase_add_test(tc, test_parse_ok);
    tcase_add_test(tc, test_parse_error_text);
    tcase_add_test(tc, test_parse_long_error_cut_on_a_character);
    tcase_add_test(tc, test_parse_rejects);
    tcase_add_test(tc, test_format_task);
    suite_add_tcase(s, tc);

    tc = tcase_create("handler");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_one_child_many_tasks);
    tcase_add_test(tc, test_failure_result);
    tcase_add_test(tc, test_death_mid_task_fails_it_and_restarts);
    tcase_add_test(tc, test_death_while_idle_fails_nothing);
    tcase_add_test(tc, test_malformed_result_restarts);
    tcase_add_test(tc, test_wrong_id_is_malformed);
    tcase_add_test(tc, test_extra_output_restarts);
    tcase_add_test(tc, test_closed_stdout_fails_fast);
    tcase_add_test(tc, test_timeout_kills_group_and_restarts);
    tcase_add_test(tc, test_timeout_term_ignored);
    tcase_add_test(tc, test_signal_setup_and_fds);
    tcase_add_test(tc, test_stderr_into_log);
    tcase_add_test(tc, test_abort_on_sigquit);
    tcase_add_test(tc, test_sigterm_lets_task_finish);
    tcase_add_test(tc, test_parent_death);
    tcase_add_test(tc, test_exec_failure);
    tcase_add_test(tc, test_init_needs_command);
    tcase_add_test(tc, test_fini_stops_child);
    tcase_add_test(tc, test_large_payload);
    suite_add_tcase(s, tc);
    return s;
}
