/*
 * handler.c — the handler registry and the helpers a running handler uses
 * to notice shutdown requests and the supervisor's death (DESIGN §3, §5).
 *
 * Invariants: never blocks (signal_fd is non-blocking, death_fd is polled
 * with a zero timeout); only ever sets stop_requested / abort_requested,
 * never clears them — a request, once seen, stays seen until the worker
 * acts on it. A fd of -1 means "none" and is skipped.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "../shared/log.h"
#include "handler.h"

const struct handler *handler_for_kind(enum handler_kind kind)
{
    switch (kind) {
    case HANDLER_EXEC:
        return &handler_exec;
    case HANDLER_SQL:
        return &handler_sql;
    case HANDLER_COPROCESS:
        return &handler_coprocess;
    }
    return NULL;
}

/* Map one signal to a request. TERM/INT: graceful (finish the task, then
 * stop); QUIT: fast (give up the task now). Anything else that reaches the
 * worker's signalfd is not the handler's business and is dropped. */
static void note_signal(struct handler_env *env, uint32_t signo)
{
    switch (signo) {
    case SIGTERM:
    case SIGINT:
        env->stop_requested = true;
        break;
    case SIGQUIT:
        env->abort_requested = true;
        break;
    case SIGUSR2:
        /* The supervisor posted a cancelled task id in our shm slot. */
        env->cancel_signalled = true;
        break;
    default:
        break;
    }
}

/* A SIGUSR2 came: is the task running now one of the cancelled? */
static void look_at_cancels(struct handler_env *env)
{
    if (!env->cancel_signalled)
        return;
    env->cancel_signalled = false;
    if (env->task_id != 0 && env->is_cancelled != NULL &&
        env->is_cancelled(env->cancel_arg, env->task_id))
        env->cancel_requested = true;
}

void handler_env_poll_signals(struct handler_env *env)
{
    if (env->signal_fd < 0)
        return;
    /* Signals coalesce and several may be queued: read until the fd is
     * empty, otherwise a level-triggered poll() would wake us again at once. */
    for (;;) {
        struct signalfd_siginfo info[8];
        ssize_t n = read(env->signal_fd, info, sizeof(info));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                log_warn("read signalfd failed: %s", strerror(errno));
            break;
        }
        size_t count = (size_t)n / sizeof(info[0]);
        for (size_t i = 0; i < count; i++)
            note_signal(env, info[i].ssi_signo);
        if (count < sizeof(info) / sizeof(info[0]))
            break; /* a short read means nothing more is pending */
    }
    look_at_cancels(env);
}

bool handler_env_clear_error_and_check_abort(const struct handler_env *env, char *error,
                                             size_t errlen)
{
    if (errlen > 0)
        error[0] = '\0';
    if (!env->abort_requested)
        return false;
    snprintf(error, errlen, "aborted before start");
    return true;
}

void handler_env_check_parent(struct handler_env *env)
{
    if (env->death_fd < 0)
        return;
    struct pollfd pfd = {.fd = env->death_fd, .events = POLLIN};
    int rc;
    do
        rc = poll(&pfd, 1, 0);
    while (rc < 0 && errno == EINTR);
    /* Nobody ever writes to the death pipe: readable means EOF, i.e. the
     * supervisor (the only holder of the write end) is gone. */
    if (rc > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR)))
        env->abort_requested = true;
}

enum handler_interrupt handler_env_interrupt(struct handler_env *env, short death_revents,
                                             short signal_revents, bool *watch_death)
{
    enum handler_interrupt what = HANDLER_RUN_ON;
    if (death_revents != 0) {
        /* EOF on the death pipe: the supervisor is gone and its successor
         * will requeue the task. */
        *watch_death = false;
        env->abort_requested = true;
        what = HANDLER_STOP_DEATH;
    }
    if (signal_revents != 0) {
        bool was_aborting = env->abort_requested;
        bool was_cancelled = env->cancel_requested;
        handler_env_poll_signals(env);
        /* stop_requested (TERM/INT) is graceful: the task runs on. */
        if (env->cancel_requested && !was_cancelled && what == HANDLER_RUN_ON)
            what = HANDLER_STOP_CANCEL;
        if (env->abort_requested && !was_aborting)
            what = HANDLER_STOP_ABORT;
    }
    return what;
}
