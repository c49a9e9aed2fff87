/*
 * child.c — what every handler that runs a program shares (exec,
 * coprocess): starting it on pipes, the child's setup between fork and
 * exec, its environment (rebuilt, never inherited: the worker's holds the
 * database credentials), making its output fit for a log line or
 * last_error, and the poll set of the wait loops.
 *
 * Invariant: child_exec() makes only async-signal-safe calls (it runs in a
 * forked copy of the worker); it never returns.
 */
#include <errno.h>
#include <fcntl.h>
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
#include "../shared/config.h"
#include "../shared/log.h"

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

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
size_t child_utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t min;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2, min = 0x80, cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3, min = 0x800, cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4, min = 0x10000, cp = c & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

void child_sanitize_text(char *s, size_t n)
{
    unsigned char *u = (unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t len = u[i] == 0 ? 0 : child_utf8_len(u + i, n - i);
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

static void close_pipe_end(int *fd)
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

int child_spawn(char *const argv[], char *const envp[], bool separate_stderr,
                struct child_process *out, char *error, size_t errlen)
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
    close_pipe_end(&in[0]);
    close_pipe_end(&output[1]);
    close_pipe_end(&err[1]);
    close_pipe_end(&report[1]);

    /* exec closes the report pipe (O_CLOEXEC): EOF = exec succeeded; an
     * int = the errno of the failure. The child never blocks before exec,
     * so this read returns promptly. */
    int child_errno = 0;
    ssize_t n;
    do
        n = read(report[0], &child_errno, sizeof(child_errno));
    while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof(child_errno)) {
        snprintf(error, errlen, "exec %s failed: %s", argv[0], strerror(child_errno));
        reap_now(pid);
        goto done;
    }

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
    *out = (struct child_process){.pid = pid,
                                  .pidfd = (int)syscall(SYS_pidfd_open, pid, 0),
                                  .in_fd = in[1],
                                  .out_fd = output[0],
                                  .err_fd = err[0]};
    in[1] = output[0] = err[0] = -1;
    ret = 0;
done:
    close_pipe_end(&in[0]);
    close_pipe_end(&in[1]);
    close_pipe_end(&output[0]);
    close_pipe_end(&output[1]);
    close_pipe_end(&err[0]);
    close_pipe_end(&err[1]);
    close_pipe_end(&report[0]);
    close_pipe_end(&report[1]);
    return ret;
}
