/*
 * handler_fixture.c — see handler_fixture.h.
 */
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
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
