/*
 * signals.c — the supervisor's signal contract (DESIGN §5), read through a
 * signalfd; this file only turns signals into requests. What each request
 * does is in supervisor.c, handled in this order of urgency:
 *
 * QUIT   fast shutdown: workers abort their tasks (released to pending) and
 *        exit at once; the supervisor exits 0 when they are gone.
 * TERM, INT
 *        graceful shutdown: workers stop claiming and finish the task they
 *        run, up to workers.shutdown_timeout; then QUIT, then KILL. Exit 0.
 * HUP    re-read the config file (reload).
 * CHLD   reap every child, including orphans inherited as PID 1; restart
 *        workers that died, with backoff.
 * TTIN, TTOU
 *        one worker more / fewer, within workers.min..workers.max.
 * TSTP   quiet: stop claiming, stay up; CONT resumes.
 * USR1   log one status line per worker and per queue.
 *
 * The mask set here survives fork: workers replace it (worker.c) and
 * handlers reset it before exec (handler_exec.c).
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "signals.h"
#include "../shared/log.h"

static void signals_handled(sigset_t *set)
{
    static const int handled[] = {SIGQUIT, SIGTERM, SIGINT,  SIGHUP,  SIGCHLD,
                                  SIGTTIN, SIGTTOU, SIGTSTP, SIGCONT, SIGUSR1};
    sigemptyset(set);
    for (size_t i = 0; i < sizeof(handled) / sizeof(handled[0]); i++)
        sigaddset(set, handled[i]);
}

int signals_open(void)
{
    sigset_t set;
    signals_handled(&set);
    /* A peer closing a socket must be an error return, not a death. */
    signal(SIGPIPE, SIG_IGN);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
        return -1;
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

void signals_read(int fd, struct signal_requests *req)
{
    struct signalfd_siginfo info;
    ssize_t n;
    while ((n = read(fd, &info, sizeof(info))) == sizeof(info)) {
        switch (info.ssi_signo) {
        case SIGQUIT:
            req->stop_fast = true;
            break;
        case SIGTERM:
        case SIGINT:
            req->stop_graceful = true;
            break;
        case SIGHUP:
            req->reload = true;
            break;
        case SIGCHLD:
            req->children = true;
            break;
        case SIGTTIN:
            req->scale++;
            break;
        case SIGTTOU:
            req->scale--;
            break;
        case SIGTSTP:
            req->quiet = true;
            break;
        case SIGCONT:
            req->resume = true;
            break;
        case SIGUSR1:
            req->status = true;
            break;
        default:
            break;
        }
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR)
        log_error("reading signals failed: %s", strerror(errno));
}
