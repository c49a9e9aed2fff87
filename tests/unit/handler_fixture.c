/*
 * handler_fixture.c — see handler_fixture.h.
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
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>

#include "handler_fixture.h"
#include "../../shared/log.h"

void handler_fixture_setup(const char *prefix, char *dir, size_t dirlen, int death_pipe[2],
                           struct queue_config *queue, struct handler_env *env)
{
    /* The handler's warnings (timeouts, kills) are expected here. */
    log_init("test", -1, LOG_LEVEL_ERROR, LOG_FORMAT_TEXT);
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, dirlen, "%s/%s-XXXXXX", tmp != NULL && *tmp ? tmp : "/tmp", prefix);
    ck_assert_ptr_nonnull(mkdtemp(dir));

    /* As in the worker: TERM/INT/QUIT blocked and read through a signalfd.
     * This is also what makes the mask tests meaningful (DESIGN §8). */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGQUIT);
    ck_assert_int_eq(sigprocmask(SIG_BLOCK, &set, NULL), 0);
    int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    ck_assert_int_ge(sfd, 0);
    ck_assert_int_eq(pipe2(death_pipe, O_CLOEXEC), 0);

    memset(queue, 0, sizeof(*queue));
    queue->batch = 1;
    queue->max_attempts = 5;
    memset(env, 0, sizeof(*env));
    env->queue = queue;
    env->locked_by = "test/0";
    env->death_fd = death_pipe[0];
    env->signal_fd = sfd;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

void handler_fixture_teardown(const char *dir, int death_pipe[2], const struct handler_env *env)
{
    close(env->signal_fd);
    close(death_pipe[0]);
    if (death_pipe[1] >= 0)
        close(death_pipe[1]);
    nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

const char *handler_fixture_path(const char *dir, const char *name)
{
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return path;
}

char *handler_fixture_slurp(const char *dir, const char *name, size_t *len)
{
    FILE *f = fopen(handler_fixture_path(dir, name), "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    ck_assert_ptr_nonnull(buf);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            cap *= 2;
            char *bigger = realloc(buf, cap + 1);
            ck_assert_ptr_nonnull(bigger);
            buf = bigger;
        }
    }
    fclose(f);
    buf[n] = '\0';
    if (len != NULL)
        *len = n;
    return buf;
}

void handler_fixture_command(struct queue_config *queue, char **argv)
{
    queue->command = argv;
    queue->command_argc = 0;
    while (argv[queue->command_argc] != NULL)
        queue->command_argc++;
}

void handler_fixture_script(struct queue_config *queue, const char *script, const char *dir)
{
    /* One command per test process (Check's fork mode): a static argv. */
    static char *argv[6];
    argv[0] = "/bin/sh";
    argv[1] = "-c";
    argv[2] = (char *)script;
    argv[3] = "sh";
    argv[4] = (char *)dir;
    argv[5] = NULL;
    handler_fixture_command(queue, argv);
}

void handler_fixture_assert_init_needs_command(const struct handler *handler,
                                               struct queue_config *queue, struct handler_env *env)
{
    void *state = NULL;
    queue->command = NULL;
    ck_assert_int_eq(handler->init(env, &state), -1);
}

static struct {
    const char *dir;
    int *death_pipe;
    enum handler_fixture_ready action;
} ready;

static void *on_ready(void *arg)
{
    (void)arg;
    /* Its own buffer: handler_fixture_path's is the test thread's. */
    char path[512];
    snprintf(path, sizeof(path), "%s/fifo", ready.dir);
    /* Blocks until the writer opens; returns at its close. */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        char buf[16];
        while (read(fd, buf, sizeof(buf)) > 0)
            ;
        close(fd);
    }
    switch (ready.action) {
    case READY_CLOSE_DEATH_PIPE:
        close(ready.death_pipe[1]);
        ready.death_pipe[1] = -1;
        break;
    case READY_SEND_SIGQUIT:
        kill(getpid(), SIGQUIT);
        break;
    case READY_SEND_SIGTERM:
        kill(getpid(), SIGTERM);
        break;
    }
    return NULL;
}

pthread_t handler_fixture_on_ready(const char *dir, int death_pipe[2],
                                   enum handler_fixture_ready action)
{
    ready.dir = dir;
    ready.death_pipe = death_pipe;
    ready.action = action;
    ck_assert_int_eq(mkfifo(handler_fixture_path(dir, "fifo"), 0600), 0);
    pthread_t thread;
    ck_assert_int_eq(pthread_create(&thread, NULL, on_ready, NULL), 0);
    return thread;
}

pid_t handler_fixture_read_pid(const char *dir, const char *name)
{
    char *text = handler_fixture_slurp(dir, name, NULL);
    ck_assert_msg(text != NULL, "%s not written by the handler", name);
    pid_t pid = (pid_t)atoi(text);
    free(text);
    ck_assert_int_gt(pid, 1);
    return pid;
}

void handler_fixture_subreaper(void)
{
    ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
}

void handler_fixture_assert_gone(pid_t pid, bool killed_only)
{
    int status;
    pid_t rc;
    do
        rc = waitpid(pid, &status, 0);
    while (rc < 0 && errno == EINTR);
    if (rc == pid) {
        if (killed_only)
            ck_assert_msg(WIFSIGNALED(status), "grandchild exited by itself");
    } else {
        ck_assert_int_eq(errno, ECHILD); /* its own parent reaped it */
    }
    ck_assert_int_eq(kill(pid, 0), -1);
    ck_assert_int_eq(errno, ESRCH);
}
