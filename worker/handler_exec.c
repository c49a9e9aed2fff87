/*
 * handler_exec.c — the `exec` handler (DESIGN §3): one process per task.
 *
 * For each task: fork, exec the queue's argv (no shell; PATH is searched
 * only when argv[0] has no slash), write the payload to the child's stdin,
 * keep the last HANDLER_ERROR_MAX bytes of its stdout+stderr, and wait for
 * its pidfd in a single poll() loop that also watches the worker's
 * signalfd, the parent-death pipe and the queue's timeout.
 *
 * Invariants:
 *  - the child runs in its own process group (pgid == its pid), and every
 *    kill is aimed at the whole group, so a handler's own children die with
 *    it; the group is killed with SIGKILL when the child exits, so leftover
 *    grandchildren never keep a task (or the output pipe) open;
 *  - we only signal the group while the child is not yet reaped: an
 *    unreaped child (even a zombie) pins its pid, so the group id cannot
 *    have been recycled for some unrelated process group;
 *  - the child starts with an empty signal mask and default dispositions:
 *    the worker blocks TERM/INT/QUIT for its signalfd and ignores SIGPIPE
 *    and friends, and both would survive exec (DESIGN §8);
 *  - memory is bounded whatever the handler prints: output goes through a
 *    fixed ring buffer; the pipes are non-blocking so a child that writes
 *    while we still feed it stdin can never deadlock with us;
 *  - every fd is O_CLOEXEC, so nothing of the worker leaks into a handler
 *    (the child gets exactly stdin, stdout and stderr);
 *  - nothing is allocated between fork and exec (async-signal-safe only).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../shared/log.h"
#include "../shared/timeutil.h"
#include "child.h"
#include "handler.h"

/* After SIGTERM on timeout, how long the group gets before SIGKILL. */
#define KILL_GRACE_MS 2000
/* After SIGTERM on fast shutdown (QUIT): shorter, the pod is going away. */
#define ABORT_GRACE_MS 500
/* After the child exited, how long we keep reading output still in the
 * pipe. The group has been SIGKILLed by then, so EOF normally comes at once;
 * the bound only matters if something outside the group holds the pipe. */
#define DRAIN_MS 250
/* Without a pidfd (see spawn), how often we look for the child's exit. */
#define EXIT_POLL_MS 20
/* Output ring size: what can end up in last_error anyway. */
#define TAIL_MAX HANDLER_ERROR_MAX

/* Why we started killing the child; the first reason decides the outcome,
 * later ones only make the kill more urgent. */
enum stop_reason {
    STOP_NONE,    /* not killing: the child exits by itself */
    STOP_TIMEOUT, /* queue timeout expired: FAILED */
    STOP_ABORT,   /* QUIT seen (fast shutdown): ABORTED */
    STOP_DEATH,   /* supervisor died: ABORTED */
};

/* The last TAIL_MAX bytes written to the output pipe. */
struct tail {
    char buf[TAIL_MAX];
    size_t start;   /* index of the oldest byte kept */
    size_t len;     /* bytes kept, <= TAIL_MAX */
    uint64_t total; /* bytes ever written: > len means the head was dropped */
};

/* One task's child process and the state of its pipes. */
struct child {
    const struct queue_config *queue;
    const struct task *task;
    pid_t pid;  /* also the process group id */
    int pidfd;  /* -1 once reaped, or if pidfd_open is unavailable */
    int in_fd;  /* write end of stdin; -1 once the payload is sent */
    int out_fd; /* read end of stdout+stderr; -1 at EOF */
    const char *payload;
    size_t payload_len;
    size_t payload_off;
    bool exited;
    int status; /* waitpid status, valid once exited */
    enum stop_reason reason;
    int64_t started_ms;
    int64_t deadline_ms;    /* timeout; 0 = none */
    int64_t kill_at_ms;     /* SIGKILL the group at this time; 0 = not pending */
    int64_t drain_until_ms; /* stop reading output after this, once exited */
    struct tail out;
};

static int exec_init(struct handler_env *env, void **state)
{
    *state = NULL;
    const struct queue_config *queue = env->queue;
    if (queue == NULL || queue->command == NULL || queue->command[0] == NULL ||
        queue->command[0][0] == '\0') {
        log_error("queue \"%s\": exec handler needs a command",
                  queue != NULL && queue->name != NULL ? queue->name : "");
        return -1;
    }
    return 0;
}

static void exec_fini(void *state)
{
    (void)state;
}

/* --- output tail ------------------------------------------------------- */

static void tail_append(struct tail *t, const char *data, size_t n)
{
    t->total += n;
    if (n >= TAIL_MAX) {
        memcpy(t->buf, data + n - TAIL_MAX, TAIL_MAX);
        t->start = 0;
        t->len = TAIL_MAX;
        return;
    }
    size_t end = (t->start + t->len) % TAIL_MAX;
    size_t first = n < TAIL_MAX - end ? n : TAIL_MAX - end;
    memcpy(t->buf + end, data, first);
    memcpy(t->buf, data + first, n - first);
    if (t->len + n > TAIL_MAX) {
        /* Full: the oldest byte now sits right after the newest one. */
        t->start = (end + n) % TAIL_MAX;
        t->len = TAIL_MAX;
    } else {
        t->len += n;
    }
}

static bool is_space(char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

/* error = what, plus ": " and the tail of the output if there is any;
 * when output was cut, "..." marks the cut. */
static void format_error(char *error, size_t errlen, const char *what, const struct tail *t)
{
    if (errlen == 0)
        return;
    char text[TAIL_MAX + 1];
    size_t first = t->len < TAIL_MAX - t->start ? t->len : TAIL_MAX - t->start;
    memcpy(text, t->buf + t->start, first);
    memcpy(text + first, t->buf, t->len - first);
    size_t len = t->len;
    size_t begin = 0;
    bool cut = t->total > t->len;
    /* The ring may have cut a character in half: drop its continuation
     * bytes rather than turning them into '?'. */
    if (cut)
        while (begin < len && begin < 3 && ((unsigned char)text[begin] & 0xc0) == 0x80)
            begin++;
    child_sanitize_text(text + begin, len - begin);
    while (len > begin && is_space(text[len - 1]))
        len--;
    while (begin < len && is_space(text[begin]))
        begin++;

    size_t what_len = strlen(what);
    if (begin == len || errlen < what_len + 2 + 3 + 8) {
        snprintf(error, errlen, "%s", what);
        return;
    }
    size_t room = errlen - what_len - 2 - 1; /* ": " and the NUL */
    if (cut || len - begin > room) {
        cut = true;
        room -= 3; /* "..." */
    }
    if (len - begin > room) {
        begin = len - room;
        while (begin < len && ((unsigned char)text[begin] & 0xc0) == 0x80)
            begin++;
    }
    text[len] = '\0';
    snprintf(error, errlen, "%s: %s%s", what, cut ? "..." : "", text + begin);
}

/* --- the child (its setup is child.c's) ------------------------------- */

/* The handler's environment (child_environ): this task's PGWORK_TASK_ID,
 * _QUEUE and _ATTEMPT, PATH, HOME and the queue's `env`. owned[3] receives
 * the strings to free. */
static char **build_env(const struct queue_config *queue, const struct task *task, char *owned[3])
{
    owned[0] = owned[1] = owned[2] = NULL;
    if (asprintf(&owned[0], "PGWORK_TASK_ID=%" PRId64, task->id) < 0)
        owned[0] = NULL;
    if (asprintf(&owned[1], "PGWORK_QUEUE=%s", queue->name != NULL ? queue->name : "") < 0)
        owned[1] = NULL;
    if (asprintf(&owned[2], "PGWORK_ATTEMPT=%d", task->attempt) < 0)
        owned[2] = NULL;
    char **envp = NULL;
    if (owned[0] != NULL && owned[1] != NULL && owned[2] != NULL)
        envp = child_environ(queue->env, (size_t)queue->env_count, owned, 3);
    if (envp == NULL) {
        free(owned[0]), free(owned[1]), free(owned[2]);
        owned[0] = owned[1] = owned[2] = NULL;
    }
    return envp;
}

/* --- the parent -------------------------------------------------------- */

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* Only called while the child is unreaped (see the invariants above). */
static void signal_group(struct child *c, int sig)
{
    if (kill(-c->pid, sig) != 0 && errno != ESRCH)
        log_task(LOG_LEVEL_WARN, c->queue->name, c->task->id, "cannot signal process group %d: %s",
                 (int)c->pid, strerror(errno));
}

/* Start killing the group for `why`: TERM now and KILL after grace_ms, or
 * KILL at once when grace_ms is 0. A second reason only shortens the wait. */
static void begin_stop(struct child *c, enum stop_reason why, int64_t grace_ms, int64_t now)
{
    if (c->exited)
        return;
    if (c->reason == STOP_NONE)
        c->reason = why;
    if (grace_ms == 0) {
        signal_group(c, SIGKILL);
        c->kill_at_ms = 0;
        return;
    }
    signal_group(c, SIGTERM);
    if (c->kill_at_ms == 0 || now + grace_ms < c->kill_at_ms)
        c->kill_at_ms = now + grace_ms;
}

static void format_duration(int64_t ms, char *buf, size_t len)
{
    if (ms % 1000 == 0)
        snprintf(buf, len, "%" PRId64 "s", ms / 1000);
    else
        snprintf(buf, len, "%" PRId64 "ms", ms);
}

static void check_timers(struct child *c, int64_t now)
{
    if (c->exited)
        return;
    if (c->reason == STOP_NONE && c->deadline_ms > 0 && now >= c->deadline_ms) {
        char limit[32];
        format_duration(c->queue->timeout_ms, limit, sizeof(limit));
        log_task(LOG_LEVEL_WARN, c->queue->name, c->task->id,
                 "handler timed out after %s, terminating process group %d", limit, (int)c->pid);
        begin_stop(c, STOP_TIMEOUT, KILL_GRACE_MS, now);
    }
    if (c->kill_at_ms > 0 && now >= c->kill_at_ms) {
        log_task(LOG_LEVEL_WARN, c->queue->name, c->task->id,
                 "process group %d still running after SIGTERM, sending SIGKILL", (int)c->pid);
        signal_group(c, SIGKILL);
        c->kill_at_ms = 0;
    }
}

/* Milliseconds until the next timer, for poll(); -1 = none. */
static int next_wakeup(const struct child *c, int64_t now)
{
    int64_t at = 0;
    if (c->exited) {
        at = c->drain_until_ms;
    } else {
        if (c->reason == STOP_NONE && c->deadline_ms > 0)
            at = c->deadline_ms;
        if (c->kill_at_ms > 0 && (at == 0 || c->kill_at_ms < at))
            at = c->kill_at_ms;
        if (c->pidfd < 0 && (at == 0 || now + EXIT_POLL_MS < at))
            at = now + EXIT_POLL_MS;
    }
    if (at == 0)
        return -1;
    int64_t wait = at - now;
    if (wait < 0)
        wait = 0;
    if (wait > 60000)
        wait = 60000; /* re-evaluated each round anyway */
    return (int)wait;
}

/* Is the child an unreaped zombie? WNOWAIT looks without reaping: the
 * zombie must stay to pin the group id until we have killed the group. */
static bool child_is_zombie(const struct child *c)
{
    siginfo_t info;
    memset(&info, 0, sizeof(info));
    return waitid(P_PID, (id_t)c->pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
           info.si_pid == c->pid;
}

/* Without a pidfd: has the child exited? ECHILD (reaped behind our back)
 * counts as exited; on_child_exit() reports it. */
static bool child_has_exited(const struct child *c)
{
    siginfo_t info;
    memset(&info, 0, sizeof(info));
    if (waitid(P_PID, (id_t)c->pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0)
        return errno == ECHILD;
    return info.si_pid == c->pid;
}

static void on_child_exit(struct child *c)
{
    /* Kill what is left of the group *before* reaping: the child, even as
     * a zombie, still pins the group id. A grandchild still holding the
     * output pipe must not keep the task open. If something else reaped
     * the child (SIGCHLD ignored), the id may already be recycled: leave
     * the group alone then. */
    if (child_is_zombie(c))
        signal_group(c, SIGKILL);
    pid_t rc;
    do
        rc = waitpid(c->pid, &c->status, 0);
    while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        /* Someone else reaped it (SIGCHLD set to SIG_IGN?): status lost. */
        log_task(LOG_LEVEL_WARN, c->queue->name, c->task->id, "waitpid %d failed: %s", (int)c->pid,
                 strerror(errno));
        c->status = -1;
    }
    c->exited = true;
    close_fd(&c->pidfd);
    close_fd(&c->in_fd); /* nobody is left to read it */
    c->drain_until_ms = time_now_ms() + DRAIN_MS;
}

static void write_payload(struct child *c)
{
    while (c->payload_off < c->payload_len) {
        ssize_t n = write(c->in_fd, c->payload + c->payload_off, c->payload_len - c->payload_off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return;
            /* EPIPE: the handler closed stdin without reading it all, which
             * is its right (many handlers ignore the payload). */
            if (errno != EPIPE)
                log_task(LOG_LEVEL_WARN, c->queue->name, c->task->id,
                         "write to handler stdin failed: %s", strerror(errno));
            break;
        }
        c->payload_off += (size_t)n;
    }
    close_fd(&c->in_fd); /* EOF tells the handler the payload is complete */
}

/* One read per wake-up: a handler printing without pause must not starve
 * the timers and signals of this loop. */
static void read_output(struct child *c)
{
    char chunk[65536];
    ssize_t n;
    do
        n = read(c->out_fd, chunk, sizeof(chunk));
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        tail_append(&c->out, chunk, (size_t)n);
    } else if (n == 0 || errno != EAGAIN) {
        close_fd(&c->out_fd);
    }
}

/*
 * The loop: wait for the child to exit while feeding stdin, draining
 * output, and watching (in order of urgency) the supervisor's death, the
 * worker's signals and the timers. Returns 0, or -1 if poll() itself broke
 * (the child is then killed and reaped).
 */
static int supervise(struct child *c, struct handler_env *env)
{
    bool watch_death = env->death_fd >= 0;
    for (;;) {
        int64_t now = time_now_ms();
        if (c->exited && (c->out_fd < 0 || now >= c->drain_until_ms))
            return 0;
        check_timers(c, now);

        struct poll_set ps = {.count = 0};
        int i_death = -1, i_sig = -1, i_pid = -1;
        if (!c->exited) {
            i_death = poll_set_add(&ps, watch_death ? env->death_fd : -1, POLLIN);
            i_sig = poll_set_add(&ps, env->signal_fd, POLLIN);
            i_pid = poll_set_add(&ps, c->pidfd, POLLIN);
        }
        int i_out = poll_set_add(&ps, c->out_fd, POLLIN);
        int i_in = poll_set_add(&ps, c->in_fd, POLLOUT);

        int rc = poll(ps.fds, (nfds_t)ps.count, next_wakeup(c, now));
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            log_task(LOG_LEVEL_ERROR, c->queue->name, c->task->id, "poll failed: %s",
                     strerror(errno));
            if (!c->exited) {
                signal_group(c, SIGKILL);
                on_child_exit(c);
            }
            return -1;
        }
        if (rc == 0) {
            if (!c->exited && c->pidfd < 0 && child_has_exited(c))
                on_child_exit(c);
            continue;
        }
        now = time_now_ms();

        switch (handler_env_interrupt(env, poll_set_revents(&ps, i_death),
                                      poll_set_revents(&ps, i_sig), &watch_death)) {
        case HANDLER_STOP_DEATH:
            log_task(LOG_LEVEL_WARN, c->queue->name, c->task->id,
                     "supervisor died, killing process group %d", (int)c->pid);
            begin_stop(c, STOP_DEATH, 0, now);
            break;
        case HANDLER_STOP_ABORT:
            log_task(LOG_LEVEL_INFO, c->queue->name, c->task->id,
                     "fast shutdown, terminating process group %d", (int)c->pid);
            begin_stop(c, STOP_ABORT, ABORT_GRACE_MS, now);
            break;
        case HANDLER_RUN_ON:
            break;
        }
        if (!c->exited && (c->pidfd >= 0 ? poll_set_revents(&ps, i_pid) != 0 : child_has_exited(c)))
            on_child_exit(c);
        if (poll_set_revents(&ps, i_out) != 0 && c->out_fd >= 0)
            read_output(c);
        if (poll_set_revents(&ps, i_in) != 0 && c->in_fd >= 0)
            write_payload(c);
    }
}

/* Fork and exec the handler; fills c->pid, c->pidfd, c->in_fd, c->out_fd.
 * Returns 0, or -1 with error filled (nothing left running). */
static int spawn(struct child *c, char *error, size_t errlen)
{
    char *owned[3];
    char **envp = build_env(c->queue, c->task, owned);
    if (envp == NULL) {
        snprintf(error, errlen, "cannot build handler environment: out of memory");
        return -1;
    }
    struct child_process p;
    int ret = child_spawn(c->queue->command, envp, false, &p, error, errlen);
    if (ret == 0) {
        c->pid = p.pid;
        c->pidfd = p.pidfd;
        c->in_fd = p.in_fd;
        c->out_fd = p.out_fd;
        if (c->pidfd < 0)
            log_task(LOG_LEVEL_DEBUG, c->queue->name, c->task->id,
                     "pidfd_open failed, polling for the handler's exit");
    }
    free(owned[0]);
    free(owned[1]);
    free(owned[2]);
    free(envp);
    return ret;
}

static enum handler_outcome outcome_of(const struct child *c, char *error, size_t errlen)
{
    char what[96];
    switch (c->reason) {
    case STOP_DEATH:
        snprintf(error, errlen, "aborted: supervisor died");
        return HANDLER_ABORTED;
    case STOP_ABORT:
        snprintf(error, errlen, "aborted: fast shutdown");
        return HANDLER_ABORTED;
    case STOP_TIMEOUT: {
        char limit[32];
        format_duration(c->queue->timeout_ms, limit, sizeof(limit));
        snprintf(what, sizeof(what), "timed out after %s", limit);
        format_error(error, errlen, what, &c->out);
        return HANDLER_FAILED;
    }
    case STOP_NONE:
        break;
    }
    if (c->status == -1) {
        snprintf(what, sizeof(what), "exit status unknown");
    } else if (WIFEXITED(c->status)) {
        if (WEXITSTATUS(c->status) == 0)
            return HANDLER_OK;
        snprintf(what, sizeof(what), "exit status %d", WEXITSTATUS(c->status));
    } else if (WIFSIGNALED(c->status)) {
        snprintf(what, sizeof(what), "killed by signal %d%s", WTERMSIG(c->status),
                 WCOREDUMP(c->status) ? " (core dumped)" : "");
    } else {
        snprintf(what, sizeof(what), "wait status %#x", (unsigned)c->status);
    }
    format_error(error, errlen, what, &c->out);
    return HANDLER_FAILED;
}

static enum handler_outcome exec_run(void *state, struct handler_env *env, const struct task *task,
                                     char *error, size_t errlen)
{
    (void)state;
    if (errlen > 0)
        error[0] = '\0';
    /* A QUIT or the supervisor's death seen before we start: do not start a
     * task we would kill at once. */
    if (env->abort_requested) {
        snprintf(error, errlen, "aborted before start");
        return HANDLER_ABORTED;
    }

    struct child child;
    struct child *c = &child;
    memset(c, 0, sizeof(*c));
    c->queue = env->queue;
    c->task = task;
    c->pidfd = c->in_fd = c->out_fd = -1;
    c->payload = task->payload != NULL ? task->payload : "";
    c->payload_len = strlen(c->payload);

    /* Writing to a pipe whose reader is gone raises SIGPIPE; the worker
     * ignores it, but run() must not depend on that. Block it for the call
     * and discard any we caused. (The child resets its mask anyway.) */
    sigset_t pipe_set, old_mask;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);

    enum handler_outcome outcome = HANDLER_FAILED;
    c->started_ms = time_now_ms();
    if (c->queue->timeout_ms > 0)
        c->deadline_ms = c->started_ms + c->queue->timeout_ms;
    if (spawn(c, error, errlen) == 0) {
        log_task(LOG_LEVEL_DEBUG, c->queue->name, task->id, "started handler pid %d", (int)c->pid);
        if (c->payload_len == 0)
            close_fd(&c->in_fd);
        if (supervise(c, env) == 0) {
            outcome = outcome_of(c, error, errlen);
            if (outcome == HANDLER_OK)
                log_task(LOG_LEVEL_DEBUG, c->queue->name, task->id,
                         "handler exited 0 after %" PRId64 " ms", time_now_ms() - c->started_ms);
        } else {
            snprintf(error, errlen, "poll failed while running the handler");
        }
        close_fd(&c->in_fd);
        close_fd(&c->out_fd);
        close_fd(&c->pidfd);
    }

    if (!sigismember(&old_mask, SIGPIPE)) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) > 0)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    return outcome;
}

const struct handler handler_exec = {
    .name = "exec",
    .init = exec_init,
    .run = exec_run,
    .fini = exec_fini,
};
