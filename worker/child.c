/*
 * child.c — the one place that starts, signals, stops, reaps and describes
 * a program a handler runs (exec, coprocess): starting it on pipes, the
 * child's setup between fork and exec, its environment (rebuilt, never
 * inherited: the worker's holds the database credentials), killing its
 * group on a timer, reaping it, the exit-status text (the supervisor's for
 * its workers too: nginx's ngx_process_get_status and the postmaster's
 * LogChildExit are one place each), the SIGPIPE rule, making its output
 * fit for a log line or last_error, and the poll set of the wait loops.
 *
 * Invariants:
 *  - child_exec() makes only async-signal-safe calls (it runs in a forked
 *    copy of the worker); it never returns;
 *  - the child runs in its own process group (pgid == its pid), and every
 *    signal is aimed at the whole group, so a handler's own children die
 *    with it; the group is signalled only while the child is unreaped
 *    (pid != 0): a zombie still pins the pid, so the group id cannot have
 *    been recycled; when the child has exited, what is left of the group
 *    is SIGKILLed before the reap, so no grandchild keeps a task (or a
 *    pipe) open;
 *  - every fd is O_CLOEXEC (the child gets exactly stdin, stdout and
 *    stderr).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"
#include "handler.h"
#include "../shared/config.h"
#include "../shared/log.h"
#include "../shared/text.h"
#include "../shared/timeutil.h"

/* Runs between fork and exec: async-signal-safe calls only, no allocation
 * (the environment and argv were built before the fork). */
void child_exec(char *const argv[], char *const envp[], const int fds_in[3], int report_fd,
                pid_t worker_pid)
{
    /* Own process group: a timeout can then kill the handler together with
     * whatever it started (kill(-pgid)), and a signal aimed at the worker's
     * group (a terminal's ^C) does not hit a task that a graceful shutdown
     * means to let finish. The parent makes the same call, so the group
     * exists whichever of the two runs first. */
    setpgid(0, 0);

    /* If the worker is SIGKILLed, its task is requeued at once (DESIGN §6):
     * the handler must not keep running it (its own children are out of
     * reach here; the worker kills the group whenever it can). PDEATHSIG races with a parent
     * that is already gone, hence the getppid() check (DESIGN §8). */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != worker_pid)
        _exit(127);

    /* Dispositions first, then the mask: the worker ignores SIGPIPE, SIGHUP
     * and the job-control signals, and SIG_IGN survives exec; it blocks
     * TERM/INT/QUIT for its signalfd, and the mask survives exec too
     * (DESIGN §8). Left alone, our TERM on timeout would never reach the
     * handler. Errors for KILL/STOP and libc's reserved signals are
     * expected and harmless. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        if (sigaction(sig, &dfl, NULL) != 0) {
            /* libc refuses its reserved real-time signals (32, 33), which
             * make(1) for one starts us with ignored. Ask the kernel
             * directly: an all-zero kernel sigaction is SIG_DFL with no
             * flags and an empty mask on every architecture's layout. */
            unsigned long kernel_dfl[4] = {0, 0, 0, 0};
            syscall(SYS_rt_sigaction, sig, kernel_dfl, NULL, (size_t)(NSIG / 8));
        }
    }
    sigset_t empty;
    sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &empty, NULL);

    /* Move the pipe ends above 2 first, so that the dup2()s below cannot
     * overwrite one another when the worker runs with 0/1/2 closed. dup2()
     * clears close-on-exec on 0/1/2; every other fd is O_CLOEXEC and goes
     * away at exec. */
    int fds[3] = {fds_in[0], fds_in[1], fds_in[2]};
    for (int i = 0; i < 3; i++) {
        if (fds[i] <= 2)
            fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
        if (fds[i] < 0)
            goto fail;
    }
    for (int i = 0; i < 3; i++)
        if (dup2(fds[i], i) < 0)
            goto fail;

    /* execvp semantics with our own environment: PATH is looked up only
     * when argv[0] has no slash, from the worker's PATH. glibc's execvpe
     * does not allocate. */
    execvpe(argv[0], argv, envp);
fail:;
    int err = errno;
    ssize_t ignored = write(report_fd, &err, sizeof(err));
    (void)ignored;
    _exit(127);
}

/* The worker's "NAME=value" entry for name, or NULL. */
static char *environ_entry(const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; environ != NULL && environ[i] != NULL; i++)
        if (strncmp(environ[i], name, len) == 0 && environ[i][len] == '=')
            return environ[i];
    return NULL;
}

/* Whether envp[0..n) already sets name. */
static bool environ_sets(char *const *envp, size_t n, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < n; i++)
        if (strncmp(envp[i], name, len) == 0 && envp[i][len] == '=')
            return true;
    return false;
}

char **child_environ(char *const *names, size_t nnames, char *const *add, size_t nadd)
{
    /* A handler without PATH cannot run `sh -c 'date'`; the worker's own
     * PATH is what execvpe searched to find the handler itself. */
    static char default_path[] =
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    char **envp = calloc(nadd + 2 + nnames + 1, sizeof(*envp));
    if (envp == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < nadd; i++)
        envp[k++] = add[i];
    char *path = environ_entry("PATH");
    envp[k++] = path != NULL ? path : default_path;
    char *home = environ_entry("HOME");
    if (home != NULL)
        envp[k++] = home;
    for (size_t i = 0; i < nnames; i++) {
        /* The config refuses these names already; this is the line that
         * makes "never" hold whatever the caller passes. */
        if (config_env_forbidden(names[i]) != NULL || environ_sets(envp, k, names[i]))
            continue;
        char *entry = environ_entry(names[i]);
        if (entry != NULL)
            envp[k++] = entry;
    }
    envp[k] = NULL;
    return envp;
}

void child_sanitize_text(char *s, size_t n)
{
    unsigned char *u = (unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t len = u[i] == 0 ? 0 : text_utf8_len(u + i, n - i, NULL);
        if (len == 0) {
            u[i] = '?';
            len = 1;
        }
        i += len;
    }
}

int poll_set_add(struct poll_set *set, int fd, short events)
{
    if (fd < 0 || set->count == (int)(sizeof(set->fds) / sizeof(set->fds[0])))
        return -1;
    set->fds[set->count] = (struct pollfd){.fd = fd, .events = events};
    return set->count++;
}

short poll_set_revents(const struct poll_set *set, int index)
{
    return index >= 0 ? set->fds[index].revents : 0;
}

void child_close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void reap_now(pid_t pid)
{
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

/* exec closes the report pipe (O_CLOEXEC): EOF = exec succeeded, 0; an
 * int = the errno of the failure: the child is reaped, -1 with error
 * filled. The child never blocks before exec, so this returns promptly. */
static int await_exec(int report_fd, pid_t pid, const char *program, char *error, size_t errlen)
{
    int child_errno = 0;
    ssize_t n;
    do
        n = read(report_fd, &child_errno, sizeof(child_errno));
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof(child_errno))
        return 0;
    snprintf(error, errlen, "exec %s failed: %s", program, strerror(child_errno));
    reap_now(pid);
    return -1;
}

int child_spawn(char *const argv[], char *const envp[], bool separate_stderr,
                struct child_process *p, char *error, size_t errlen)
{
    int in[2] = {-1, -1}, output[2] = {-1, -1}, err[2] = {-1, -1}, report[2] = {-1, -1};
    int ret = -1;
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(output, O_CLOEXEC) != 0 ||
        (separate_stderr && pipe2(err, O_CLOEXEC) != 0) || pipe2(report, O_CLOEXEC) != 0) {
        snprintf(error, errlen, "cannot create pipes: %s", strerror(errno));
        goto done;
    }
    pid_t worker_pid = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(error, errlen, "fork failed: %s", strerror(errno));
        goto done;
    }
    if (pid == 0) {
        const int fds[3] = {in[0], output[1], separate_stderr ? err[1] : output[1]};
        child_exec(argv, envp, fds, report[1], worker_pid);
    }

    /* Same call as in the child (see there): whichever runs first creates
     * the group, so kill(-pid) works as soon as fork() has returned. EACCES
     * means the child has already exec'd, hence already did it. */
    if (setpgid(pid, pid) != 0 && errno != EACCES && errno != ESRCH)
        log_warn("setpgid %d (%s) failed: %s", (int)pid, argv[0], strerror(errno));
    child_close_fd(&in[0]);
    child_close_fd(&output[1]);
    child_close_fd(&err[1]);
    child_close_fd(&report[1]);

    if (await_exec(report[0], pid, argv[0], error, errlen) != 0)
        goto done;

    /* Non-blocking on our ends: the input may exceed the pipe buffer while
     * the program is itself blocked writing output we must read. */
    if (fcntl(in[1], F_SETFL, O_NONBLOCK) != 0 || fcntl(output[0], F_SETFL, O_NONBLOCK) != 0 ||
        (separate_stderr && fcntl(err[0], F_SETFL, O_NONBLOCK) != 0)) {
        snprintf(error, errlen, "cannot make pipes non-blocking: %s", strerror(errno));
        kill(-pid, SIGKILL);
        reap_now(pid);
        goto done;
    }
    /* A pidfd makes the child's exit one more fd in the poll() set. Where
     * it is missing (old kernels, seccomp'd sandboxes, valgrind) the
     * callers fall back to looking now and then: slower to notice, still
     * correct. (pidfd_open is always O_CLOEXEC.) */
    p->pid = pid;
    p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    p->in_fd = in[1];
    p->out_fd = output[0];
    p->err_fd = err[0];
    p->reason = CHILD_STOP_NONE;
    p->kill_at_ms = 0;
    p->status = 0;
    in[1] = output[0] = err[0] = -1;
    if (p->pidfd < 0)
        log_task(LOG_LEVEL_DEBUG, p->queue, p->task_id,
                 "pidfd_open failed, polling for the %s's exit", p->what);
    ret = 0;
done:
    child_close_fd(&in[0]);
    child_close_fd(&in[1]);
    child_close_fd(&output[0]);
    child_close_fd(&output[1]);
    child_close_fd(&err[0]);
    child_close_fd(&err[1]);
    child_close_fd(&report[0]);
    child_close_fd(&report[1]);
    return ret;
}

int child_check_command(const struct queue_config *queue, const char *handler)
{
    if (queue == NULL || queue->command == NULL || queue->command[0] == NULL ||
        queue->command[0][0] == '\0') {
        log_error("queue \"%s\": %s handler needs a command",
                  queue != NULL && queue->name != NULL ? queue->name : "", handler);
        return -1;
    }
    return 0;
}

/* --- signalling, stopping, reaping --------------------------------------- */

void child_signal(const struct child_process *p, int sig)
{
    if (p->pid <= 0)
        return;
    if (kill(-p->pid, sig) != 0 && errno != ESRCH)
        log_task(LOG_LEVEL_WARN, p->queue, p->task_id, "cannot signal process group %d: %s",
                 (int)p->pid, strerror(errno));
}

void child_stop(struct child_process *p, enum child_stop_reason why, int64_t grace_ms, int64_t now)
{
    if (p->pid <= 0)
        return;
    if (p->reason == CHILD_STOP_NONE)
        p->reason = why;
    if (grace_ms == 0) {
        child_signal(p, SIGKILL);
        p->kill_at_ms = 0;
        return;
    }
    /* One SIGTERM: a second one tells the program nothing new (and some
     * read it as "give up cleaning up"); the timer escalates instead. */
    if (p->kill_at_ms == 0)
        child_signal(p, SIGTERM);
    if (p->kill_at_ms == 0 || now + grace_ms < p->kill_at_ms)
        p->kill_at_ms = now + grace_ms;
}

void child_check_timers(struct child_process *p, int64_t timeout_ms, int64_t now)
{
    if (p->pid <= 0)
        return;
    if (p->reason == CHILD_STOP_NONE && p->deadline_ms > 0 && now >= p->deadline_ms) {
        char timed_out[64];
        child_describe_timeout(timeout_ms, timed_out, sizeof(timed_out));
        log_task(LOG_LEVEL_WARN, p->queue, p->task_id, "%s %s, terminating process group %d",
                 p->what, timed_out, (int)p->pid);
        child_stop(p, CHILD_STOP_TIMEOUT, CHILD_KILL_GRACE_MS, now);
    }
    if (p->kill_at_ms > 0 && now >= p->kill_at_ms) {
        log_task(LOG_LEVEL_WARN, p->queue, p->task_id,
                 "process group %d still running after SIGTERM, sending SIGKILL", (int)p->pid);
        child_signal(p, SIGKILL);
        p->kill_at_ms = 0;
    }
}

void child_on_interrupt(struct child_process *p, struct handler_env *env, short death_revents,
                        short signal_revents, bool *watch_death, int64_t now)
{
    switch (handler_env_interrupt(env, death_revents, signal_revents, watch_death)) {
    case HANDLER_STOP_DEATH:
        log_task(LOG_LEVEL_WARN, p->queue, p->task_id, "supervisor died, killing process group %d",
                 (int)p->pid);
        child_stop(p, CHILD_STOP_DEATH, 0, now);
        break;
    case HANDLER_STOP_ABORT:
        log_task(LOG_LEVEL_INFO, p->queue, p->task_id,
                 "fast shutdown, terminating process group %d", (int)p->pid);
        child_stop(p, CHILD_STOP_ABORT, CHILD_ABORT_GRACE_MS, now);
        break;
    case HANDLER_STOP_CANCEL:
        log_task(LOG_LEVEL_INFO, p->queue, p->task_id,
                 "task cancelled, terminating process group %d", (int)p->pid);
        child_stop(p, CHILD_STOP_CANCEL, CHILD_KILL_GRACE_MS, now);
        break;
    case HANDLER_RUN_ON:
        break;
    }
}

int child_poll_timeout(const struct child_process *p, int64_t at, int64_t now)
{
    if (p->pid > 0) {
        if (p->reason == CHILD_STOP_NONE && p->deadline_ms > 0 && (at == 0 || p->deadline_ms < at))
            at = p->deadline_ms;
        if (p->kill_at_ms > 0 && (at == 0 || p->kill_at_ms < at))
            at = p->kill_at_ms;
        if (p->pidfd < 0 && (at == 0 || now + CHILD_EXIT_POLL_MS < at))
            at = now + CHILD_EXIT_POLL_MS;
    }
    if (at == 0)
        return -1;
    int64_t wait = at - now;
    return wait < 0 ? 0 : wait > 60000 ? 60000 : (int)wait;
}

/* 1: the child is an exited zombie, 0: it runs, -1: it is not ours to
 * wait for (ECHILD: reaped behind our back). WNOWAIT looks without
 * reaping: the zombie must stay to pin the group id. */
static int peek_exit(pid_t pid)
{
    siginfo_t info;
    memset(&info, 0, sizeof(info));
    if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0)
        return -1;
    return info.si_pid == pid ? 1 : 0;
}

bool child_exited(const struct child_process *p)
{
    return p->pid <= 0 || peek_exit(p->pid) != 0;
}

void child_reap(struct child_process *p)
{
    if (p->pid <= 0)
        return;
    /* Kill the group *before* reaping, while the zombie pins its id. If
     * something else reaped the child (SIGCHLD ignored), the id may already
     * be recycled: leave the group alone then. */
    if (peek_exit(p->pid) == 1)
        child_signal(p, SIGKILL);
    pid_t rc;
    do
        rc = waitpid(p->pid, &p->status, 0);
    while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        log_task(LOG_LEVEL_WARN, p->queue, p->task_id, "waitpid %d failed: %s", (int)p->pid,
                 strerror(errno));
        p->status = -1;
    }
    p->pid = 0;
    child_close_fd(&p->pidfd);
    child_close_fd(&p->in_fd);
}

bool child_wait_exit(struct child_process *p, int64_t ms, void (*on_stderr)(void *), void *arg)
{
    int64_t deadline = time_now_ms() + ms;
    for (;;) {
        if (p->pidfd < 0 ? child_exited(p) : false)
            return true;
        int64_t left = deadline - time_now_ms();
        if (left <= 0)
            return p->pidfd < 0 ? child_exited(p) : false;
        struct poll_set ps = {.count = 0};
        int i_pid = poll_set_add(&ps, p->pidfd, POLLIN);
        int i_err = poll_set_add(&ps, on_stderr != NULL ? p->err_fd : -1, POLLIN);
        int wait = p->pidfd >= 0 ? (int)left
                                 : (left < CHILD_EXIT_POLL_MS ? (int)left : CHILD_EXIT_POLL_MS);
        int rc = poll(ps.fds, (nfds_t)ps.count, wait);
        if (rc < 0 && errno != EINTR)
            return false;
        if (rc <= 0)
            continue;
        if (poll_set_revents(&ps, i_err) != 0)
            on_stderr(arg);
        if (poll_set_revents(&ps, i_pid) != 0)
            return true;
    }
}

void child_terminate(struct child_process *p, int64_t grace_ms, void (*on_stderr)(void *),
                     void *arg)
{
    if (p->pid <= 0)
        return;
    if (grace_ms > 0 && !child_exited(p)) {
        child_signal(p, SIGTERM);
        child_wait_exit(p, grace_ms, on_stderr, arg);
    }
    if (!child_exited(p))
        child_signal(p, SIGKILL);
}

/* --- describing --------------------------------------------------------- */

void child_describe_exit(int status, char *out, size_t len)
{
    if (status == -1)
        snprintf(out, len, "exit status unknown");
    else if (WIFEXITED(status))
        snprintf(out, len, "exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, len, "killed by signal %d%s", WTERMSIG(status),
                 WCOREDUMP(status) ? " (core dumped)" : "");
    else
        snprintf(out, len, "wait status %#x", (unsigned)status);
}

void child_describe_timeout(int64_t timeout_ms, char *out, size_t len)
{
    if (timeout_ms % 1000 == 0)
        snprintf(out, len, "timed out after %" PRId64 "s", timeout_ms / 1000);
    else
        snprintf(out, len, "timed out after %" PRId64 "ms", timeout_ms);
}

bool child_stop_aborts(const struct child_process *p, char *error, size_t errlen)
{
    if (p->reason == CHILD_STOP_DEATH)
        snprintf(error, errlen, "aborted: supervisor died");
    else if (p->reason == CHILD_STOP_ABORT)
        snprintf(error, errlen, "aborted: fast shutdown");
    else
        return false;
    return true;
}

/* --- SIGPIPE (the rule is in child.h) ------------------------------------ */

void child_sigpipe_hold(struct child_sigpipe *guard)
{
    guard->held = false;
    struct sigaction action;
    if (sigaction(SIGPIPE, NULL, &action) == 0 && action.sa_handler == SIG_IGN)
        return;
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    guard->held = pthread_sigmask(SIG_BLOCK, &pipe_set, &guard->old_mask) == 0;
}

void child_sigpipe_release(struct child_sigpipe *guard)
{
    if (!guard->held)
        return;
    if (!sigismember(&guard->old_mask, SIGPIPE)) {
        sigset_t pipe_set;
        sigemptyset(&pipe_set);
        sigaddset(&pipe_set, SIGPIPE);
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) > 0)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &guard->old_mask, NULL);
    guard->held = false;
}
