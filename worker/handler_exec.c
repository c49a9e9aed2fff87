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
 *  - the child runs in its own process group, signalled only while it is
 *    unreaped, and what is left of the group is SIGKILLed when it exits,
 *    so leftover grandchildren never keep a task (or the output pipe) open
 *    (child.c: it starts, stops and reaps every handler's child);
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

/* After the child exited, how long we keep reading output still in the
 * pipe. The group has been SIGKILLed by then, so EOF normally comes at once;
 * the bound only matters if something outside the group holds the pipe. */
#define DRAIN_MS 250
/* Output ring size: what can end up in last_error anyway. */
#define TAIL_MAX HANDLER_ERROR_MAX

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
    /* pid 0 once reaped; in_fd -1 once the payload is sent, out_fd -1 at
     * EOF (stdout and stderr share it) */
    struct child_process proc;
    const char *payload;
    size_t payload_len;
    size_t payload_off;
    int64_t started_ms;
    int64_t drain_until_ms; /* stop reading output after this, once reaped */
    struct tail out;
};

static int exec_init(struct handler_env *env, void **state)
{
    *state = NULL;
    return child_check_command(env->queue, "exec");
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

/* The child exited (or was just SIGKILLed): reap it, then drain what is
 * left in the output pipe for at most DRAIN_MS. */
static void on_child_exit(struct child *c)
{
    child_reap(&c->proc);
    c->drain_until_ms = time_now_ms() + DRAIN_MS;
}

static void write_payload(struct child *c)
{
    while (c->payload_off < c->payload_len) {
        ssize_t n =
            write(c->proc.in_fd, c->payload + c->payload_off, c->payload_len - c->payload_off);
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
    child_close_fd(&c->proc.in_fd); /* EOF tells the handler the payload is complete */
}

/* One read per wake-up: a handler printing without pause must not starve
 * the timers and signals of this loop. */
static void read_output(struct child *c)
{
    char chunk[65536];
    ssize_t n;
    do
        n = read(c->proc.out_fd, chunk, sizeof(chunk));
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        tail_append(&c->out, chunk, (size_t)n);
    } else if (n == 0 || errno != EAGAIN) {
        child_close_fd(&c->proc.out_fd);
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
    struct child_process *p = &c->proc;
    bool watch_death = env->death_fd >= 0;
    for (;;) {
        int64_t now = time_now_ms();
        if (p->pid == 0 && (p->out_fd < 0 || now >= c->drain_until_ms))
            return 0;
        child_check_timers(p, c->queue->timeout_ms, now);

        struct poll_set ps = {.count = 0};
        int i_death = -1, i_sig = -1, i_pid = -1;
        if (p->pid != 0) {
            i_death = poll_set_add(&ps, watch_death ? env->death_fd : -1, POLLIN);
            i_sig = poll_set_add(&ps, env->signal_fd, POLLIN);
            i_pid = poll_set_add(&ps, p->pidfd, POLLIN);
        }
        int i_out = poll_set_add(&ps, p->out_fd, POLLIN);
        int i_in = poll_set_add(&ps, p->in_fd, POLLOUT);

        int64_t drain_at = p->pid == 0 ? c->drain_until_ms : 0;
        int rc = poll(ps.fds, (nfds_t)ps.count, child_poll_timeout(p, drain_at, now));
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            log_task(LOG_LEVEL_ERROR, c->queue->name, c->task->id, "poll failed: %s",
                     strerror(errno));
            if (p->pid != 0) {
                child_signal(p, SIGKILL);
                on_child_exit(c);
            }
            return -1;
        }
        if (rc == 0) {
            if (p->pid != 0 && p->pidfd < 0 && child_exited(p))
                on_child_exit(c);
            continue;
        }
        now = time_now_ms();
        child_on_interrupt(p, env, poll_set_revents(&ps, i_death), poll_set_revents(&ps, i_sig),
                           &watch_death, now);
        if (p->pid != 0 && (p->pidfd >= 0 ? poll_set_revents(&ps, i_pid) != 0 : child_exited(p)))
            on_child_exit(c);
        if (poll_set_revents(&ps, i_out) != 0 && p->out_fd >= 0)
            read_output(c);
        if (poll_set_revents(&ps, i_in) != 0 && p->in_fd >= 0)
            write_payload(c);
    }
}

/* Fork and exec the handler into c->proc. Returns 0, or -1 with error
 * filled (nothing left running). */
static int spawn(struct child *c, char *error, size_t errlen)
{
    char *owned[3];
    char **envp = build_env(c->queue, c->task, owned);
    if (envp == NULL) {
        snprintf(error, errlen, "cannot build handler environment: out of memory");
        return -1;
    }
    int ret = child_spawn(c->queue->command, envp, false, &c->proc, error, errlen);
    free(owned[0]);
    free(owned[1]);
    free(owned[2]);
    free(envp);
    return ret;
}

static enum handler_outcome outcome_of(const struct child *c, char *error, size_t errlen)
{
    if (child_stop_aborts(&c->proc, error, errlen))
        return HANDLER_ABORTED;
    if (c->proc.reason == CHILD_STOP_CANCEL) {
        snprintf(error, errlen, "cancelled while running (process group killed)");
        return HANDLER_CANCELLED;
    }
    char what[96];
    if (c->proc.reason == CHILD_STOP_TIMEOUT) {
        child_describe_timeout(c->queue->timeout_ms, what, sizeof(what));
    } else {
        /* The only other reason is none: the child exited by itself. */
        int status = c->proc.status;
        if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
            return HANDLER_OK;
        child_describe_exit(status, what, sizeof(what));
    }
    format_error(error, errlen, what, &c->out);
    return HANDLER_FAILED;
}

static enum handler_outcome exec_run(void *state, struct handler_env *env, const struct task *task,
                                     char *error, size_t errlen)
{
    (void)state;
    if (handler_env_clear_error_and_check_abort(env, error, errlen))
        return HANDLER_ABORTED;

    struct child child;
    struct child *c = &child;
    memset(c, 0, sizeof(*c));
    c->queue = env->queue;
    c->task = task;
    c->proc = (struct child_process){.queue = c->queue->name,
                                     .what = "handler",
                                     .task_id = task->id,
                                     .pidfd = -1,
                                     .in_fd = -1,
                                     .out_fd = -1,
                                     .err_fd = -1};
    c->payload = task->payload != NULL ? task->payload : "";
    c->payload_len = strlen(c->payload);

    struct child_sigpipe sigpipe;
    child_sigpipe_hold(&sigpipe); /* the payload may meet a closed stdin */
    enum handler_outcome outcome = HANDLER_FAILED;
    c->started_ms = time_now_ms();
    if (c->queue->timeout_ms > 0)
        c->proc.deadline_ms = c->started_ms + c->queue->timeout_ms;
    if (spawn(c, error, errlen) == 0) {
        log_task(LOG_LEVEL_DEBUG, c->queue->name, task->id, "started handler pid %d",
                 (int)c->proc.pid);
        if (c->payload_len == 0)
            child_close_fd(&c->proc.in_fd);
        if (supervise(c, env) == 0) {
            outcome = outcome_of(c, error, errlen);
            if (outcome == HANDLER_OK)
                log_task(LOG_LEVEL_DEBUG, c->queue->name, task->id,
                         "handler exited 0 after %" PRId64 " ms", time_now_ms() - c->started_ms);
        } else {
            snprintf(error, errlen, "poll failed while running the handler");
        }
        child_close_fd(&c->proc.in_fd);
        child_close_fd(&c->proc.out_fd);
        child_close_fd(&c->proc.pidfd);
    }
    child_sigpipe_release(&sigpipe);
    return outcome;
}

const struct handler handler_exec = {
    .name = "exec",
    .init = exec_init,
    .run = exec_run,
    .fini = exec_fini,
};
