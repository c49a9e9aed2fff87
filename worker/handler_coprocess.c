/*
 * handler_coprocess.c — the `coprocess` handler (DESIGN §3): one
 * long-lived child per worker and queue, one JSON line per task.
 *
 * The child is the queue's `command` (argv, no shell), started when the
 * worker starts and again whenever it is found dead. For each task we write
 *
 *     {"id":N,"attempt":N,"queue":"<name, JSON-escaped>","payload":<jsonb text>}\n
 *
 * to its stdin and read one line back from its stdout:
 *
 *     {"id":N,"ok":true}   or   {"id":N,"ok":false,"error":"why"}
 *
 * (the full specification is examples/README.md; both lines are
 * coprocess_protocol.c's). Its stderr is read line by line into our log.
 *
 * Invariants:
 *  - the child runs in its own process group (pgid == its pid), with default
 *    signal dispositions, an empty mask, PDEATHSIG = SIGKILL, and exactly
 *    stdin, stdout and stderr open — the same setup as the exec handler's
 *    children (DESIGN §8); every kill aims at the whole group, and only
 *    while the child is unreaped (its zombie pins the group id);
 *  - one task at a time: a task line is written only when the previous task
 *    has its answer, so a result line always belongs to the task in flight;
 *    a line that is not that task's valid result, a child that closes its
 *    stdout, and a timeout all kill the group: the next task gets a fresh
 *    child, never a conversation that is out of step;
 *  - a child found dead, or talking, between tasks is restarted before the
 *    next task is sent: only a death *during* a task fails that task;
 *  - memory is bounded whatever the child writes: result lines longer than
 *    COPROC_LINE_MAX kill it, stderr is cut into lines of at most
 *    COPROC_STDERR_LINE_MAX bytes; every buffer is reused from task to task
 *    (no allocation per task once the buffers have grown);
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
#include "coprocess_protocol.h"
#include "handler.h"

/* fini: after closing its stdin, how long the child may take to exit by
 * itself before it gets SIGTERM, and then SIGKILL. */
#define FINI_EXIT_MS 1000
/* Longest result line accepted (bytes, newline excluded). */
#define COPROC_LINE_MAX (1024 * 1024)
/* Longest stderr line logged as one; longer ones are split. */
#define COPROC_STDERR_LINE_MAX 2048
/* Bytes of the child's stderr kept for the error of a task it died in. */
#define COPROC_STDERR_TAIL 1024

/* A growable byte buffer, reused across tasks. */
/* One worker's child for one queue. */
struct coproc {
    const struct queue_config *queue; /* the queue it serves (name, command) */
    char *queue_json;                 /* the queue name as a JSON string, quotes included */
    /* pid 0 = none running; err_fd -1 at EOF; status: the last child
     * reaped's; task_id and deadline_ms: the task in flight's */
    struct child_process proc;
    pid_t log_pid;           /* the last child's pid, for log lines: its last stderr
                                lines are read after the reap */
    unsigned starts;         /* children started so far */
    struct text_buffer line; /* task line being written */
    size_t line_off;         /* bytes of `line` written so far */
    struct text_buffer out;  /* stdout bytes not yet consumed */
    char err_line[COPROC_STDERR_LINE_MAX + 1]; /* partial stderr line */
    size_t err_len;
    char err_tail[COPROC_STDERR_TAIL]; /* last stderr lines of the current task */
    size_t err_tail_len;
};

/* --- small helpers ----------------------------------------------------- */

/* --- the child process ------------------------------------------------- */

/* The co-process's environment (child_environ): PGWORK_QUEUE, PATH, HOME
 * and the queue's `env` (PGWORK_TASK_ID and PGWORK_ATTEMPT travel in the
 * task line). */
static char **build_env(const struct queue_config *queue, char **owned)
{
    if (asprintf(owned, "PGWORK_QUEUE=%s", queue->name) < 0) {
        *owned = NULL;
        return NULL;
    }
    char **envp = child_environ(queue->env, (size_t)queue->env_count, owned, 1);
    if (envp == NULL) {
        free(*owned);
        *owned = NULL;
    }
    return envp;
}

/* --- stderr into the log ----------------------------------------------- */

static void stderr_emit(struct coproc *c, const char *text, size_t n)
{
    char line[COPROC_STDERR_LINE_MAX + 1];
    memcpy(line, text, n);
    line[n] = '\0';
    child_sanitize_text(line, n);
    if (c->proc.task_id != 0)
        log_task(LOG_LEVEL_INFO, c->queue->name, c->proc.task_id, "coprocess %d: %s",
                 (int)c->log_pid, line);
    else
        log_info("queue \"%s\": coprocess %d: %s", c->queue->name, (int)c->log_pid, line);

    /* Keep the last lines for the error of a task the child dies in. */
    size_t add = n + 1 > COPROC_STDERR_TAIL ? COPROC_STDERR_TAIL - 1 : n;
    const char *from = line + (n - add);
    if (c->err_tail_len + add + 1 > COPROC_STDERR_TAIL) {
        size_t drop = c->err_tail_len + add + 1 - COPROC_STDERR_TAIL;
        memmove(c->err_tail, c->err_tail + drop, c->err_tail_len - drop);
        c->err_tail_len -= drop;
    }
    memcpy(c->err_tail + c->err_tail_len, from, add);
    c->err_tail_len += add;
    c->err_tail[c->err_tail_len++] = '\n';
}

/* Split what arrived on stderr into lines. flush: also emit a partial one
 * (the child is gone). */
static void stderr_feed(struct coproc *c, const char *data, size_t n, bool flush)
{
    for (size_t i = 0; i < n; i++) {
        if (data[i] == '\n') {
            if (c->err_len > 0 && c->err_line[c->err_len - 1] == '\r')
                c->err_len--;
            stderr_emit(c, c->err_line, c->err_len);
            c->err_len = 0;
        } else {
            c->err_line[c->err_len++] = data[i];
            if (c->err_len == COPROC_STDERR_LINE_MAX) {
                stderr_emit(c, c->err_line, c->err_len);
                c->err_len = 0;
            }
        }
    }
    if (flush && c->err_len > 0) {
        stderr_emit(c, c->err_line, c->err_len);
        c->err_len = 0;
    }
}

/* Read what stderr holds now (non-blocking); at EOF close it. */
static void stderr_drain(struct coproc *c)
{
    char chunk[8192];
    for (int rounds = 0; c->proc.err_fd >= 0 && rounds < 16; rounds++) {
        ssize_t n = read(c->proc.err_fd, chunk, sizeof(chunk));
        if (n > 0) {
            stderr_feed(c, chunk, (size_t)n, false);
            if ((size_t)n < sizeof(chunk))
                return;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 || errno != EAGAIN) {
            stderr_feed(c, NULL, 0, true);
            child_close_fd(&c->proc.err_fd);
        }
        return;
    }
}

/* --- lifecycle --------------------------------------------------------- */

/* The child has exited (or was just sent SIGKILL): reap it (child_reap
 * kills what is left of its group first), log its last stderr lines, and
 * close our ends. */
static void coproc_reap(struct coproc *c)
{
    if (c->proc.pid == 0)
        return;
    child_reap(&c->proc);
    /* After the reap: the group is dead, what is in the pipe is all. */
    stderr_drain(c);
    stderr_feed(c, NULL, 0, true);
    child_close_fd(&c->proc.out_fd);
    child_close_fd(&c->proc.err_fd);
    c->out.len = 0;
    c->line.len = c->line_off = 0;
}

static void stderr_drain_cb(void *arg)
{
    stderr_drain(arg);
}

/* Stop the child for good: TERM, up to grace_ms, KILL; then reap. Its
 * stderr is logged meanwhile. */
static void coproc_kill(struct coproc *c, int64_t grace_ms)
{
    child_terminate(&c->proc, grace_ms, stderr_drain_cb, c);
    coproc_reap(c);
}

/* Start the child. 0, or -1 with error filled (nothing left running). */
static int coproc_spawn(struct coproc *c, char *error, size_t errlen)
{
    char *owned;
    char **envp = build_env(c->queue, &owned);
    if (envp == NULL) {
        snprintf(error, errlen, "cannot build the coprocess environment: out of memory");
        return -1;
    }
    int ret = child_spawn(c->queue->command, envp, true, &c->proc, error, errlen);
    if (ret == 0) {
        c->log_pid = c->proc.pid;
        c->starts++;
        c->out.len = 0;
        c->err_len = 0;
        log_info("queue \"%s\": coprocess started, pid %d%s", c->queue->name, (int)c->proc.pid,
                 c->starts > 1 ? " (restarted)" : "");
    }
    free(owned);
    free(envp);
    return ret;
}

/*
 * Between tasks the child should be silent and alive. One poll() with a
 * zero timeout tells: stderr lines are logged; a death is reaped (and
 * logged); output on stdout, or stdout closed, means it is out of step, so
 * it is killed. Either way the caller then starts a fresh one.
 */
static void coproc_check_idle(struct coproc *c)
{
    if (c->proc.pid == 0)
        return;
    struct poll_set ps = {.count = 0};
    int i_out = poll_set_add(&ps, c->proc.out_fd, POLLIN);
    int i_err = poll_set_add(&ps, c->proc.err_fd, POLLIN);
    int i_pid = poll_set_add(&ps, c->proc.pidfd, POLLIN);
    int rc;
    do
        rc = poll(ps.fds, (nfds_t)ps.count, 0);
    while (rc < 0 && errno == EINTR);
    if (rc > 0 && poll_set_revents(&ps, i_err) != 0)
        stderr_drain(c);
    bool dead = i_pid >= 0 ? rc > 0 && poll_set_revents(&ps, i_pid) != 0 : child_exited(&c->proc);
    if (dead) {
        coproc_reap(c);
        char status[96];
        child_describe_exit(c->proc.status, status, sizeof(status));
        log_warn("queue \"%s\": coprocess exited between tasks (%s); restarting it", c->queue->name,
                 status);
        return;
    }
    if (rc > 0 && poll_set_revents(&ps, i_out) != 0) {
        log_warn("queue \"%s\": coprocess %d wrote to stdout between tasks (or closed it); "
                 "restarting it",
                 c->queue->name, (int)c->proc.pid);
        coproc_kill(c, CHILD_ABORT_GRACE_MS);
    }
}

/* --- one task ---------------------------------------------------------- */

struct run {
    struct coproc *c;
    struct handler_env *env;
    const struct task *task;
    int64_t gone_at_ms;    /* it closed stdin/stdout: KILL then unless it exits; 0 = no */
    const char *gone_what; /* "stdin" or "stdout" */
    bool answered;
    bool exited; /* the child exited (reaped) during the task */
    struct coprocess_result result;
    char why[160]; /* protocol error, for the task's error */
};

/* The child closed its stdin or stdout: it can never answer. It is most
 * likely exiting; give it a moment to do so (its exit status says more
 * than our kill would), then kill its group. */
static void run_gone(struct run *r, const char *what, int64_t now)
{
    if (r->gone_at_ms == 0) {
        r->gone_at_ms = now + CHILD_ABORT_GRACE_MS;
        r->gone_what = what;
    }
}

/* Write what the pipe takes of the task line; EPIPE = the child closed its
 * stdin (or died): it can never answer. */
static void run_write(struct run *r, int64_t now)
{
    struct coproc *c = r->c;
    while (c->line_off < c->line.len) {
        ssize_t n = write(c->proc.in_fd, c->line.data + c->line_off, c->line.len - c->line_off);
        if (n > 0) {
            c->line_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        c->line_off = c->line.len; /* give up writing */
        run_gone(r, "stdin", now);
        return;
    }
}

static bool only_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

/* Complete result lines in c->out: the first one decides. */
static void run_consume(struct run *r, int64_t now)
{
    struct coproc *c = r->c;
    for (;;) {
        char *nl = memchr(c->out.data, '\n', c->out.len);
        if (nl == NULL) {
            if (c->out.len > COPROC_LINE_MAX) {
                snprintf(r->why, sizeof(r->why), "result line longer than %d bytes",
                         COPROC_LINE_MAX);
                child_stop(&c->proc, CHILD_STOP_PROTOCOL, CHILD_KILL_GRACE_MS, now);
            }
            return;
        }
        size_t len = (size_t)(nl - c->out.data);
        bool blank = only_blank(c->out.data, len);
        if (!blank && c->proc.reason == CHILD_STOP_NONE && !r->answered) {
            char why[64] = "";
            if (coprocess_parse_result(c->out.data, len, &r->result, why, sizeof(why)) != 0 ||
                r->result.id != r->task->id) {
                if (r->result.id != r->task->id && why[0] == '\0')
                    snprintf(why, sizeof(why), "\"id\" %" PRId64 " is not the task's",
                             r->result.id);
                /* Quote the start of the line: enough to recognise it. */
                char quoted[64];
                size_t q = len < sizeof(quoted) - 1 ? len : sizeof(quoted) - 1;
                memcpy(quoted, c->out.data, q);
                quoted[q] = '\0';
                child_sanitize_text(quoted, q);
                snprintf(r->why, sizeof(r->why), "%s: %s%s", why, quoted, q < len ? "..." : "");
                child_stop(&c->proc, CHILD_STOP_PROTOCOL, CHILD_KILL_GRACE_MS, now);
            } else {
                r->answered = true;
            }
        }
        /* Drop the line. Anything after an answer is checked before the
         * next task (coproc_check_idle sees a non-empty buffer). */
        size_t rest = c->out.len - len - 1;
        memmove(c->out.data, nl + 1, rest);
        c->out.len = rest;
        if (r->answered)
            return;
    }
}

/* One read from stdout. EOF: the child closed it and can never answer
 * (at_exit: it has exited; we only look for a last answer). */
static void run_read(struct run *r, int64_t now, bool at_exit)
{
    struct coproc *c = r->c;
    if (text_reserve(&c->out, 65536) != 0) {
        snprintf(r->why, sizeof(r->why), "out of memory reading the result");
        child_stop(&c->proc, CHILD_STOP_PROTOCOL, 0, now);
        return;
    }
    ssize_t n;
    do
        n = read(c->proc.out_fd, c->out.data + c->out.len, c->out.cap - c->out.len);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        c->out.len += (size_t)n;
        run_consume(r, now);
    } else if (n == 0 || errno != EAGAIN) {
        if (!at_exit)
            run_gone(r, "stdout", now);
        /* Nothing more will come: stop polling it (EOF stays readable). */
        child_close_fd(&c->proc.out_fd);
    }
}

/* The run's own timer: the child closed a pipe (run_gone) and has not
 * exited since. */
static void run_check_gone(struct run *r, int64_t now)
{
    struct child_process *p = &r->c->proc;
    if (p->reason == CHILD_STOP_NONE && r->gone_at_ms > 0 && now >= r->gone_at_ms) {
        log_task(LOG_LEVEL_WARN, p->queue, p->task_id,
                 "coprocess %d closed its %s but did not exit, killing its group", (int)p->pid,
                 r->gone_what);
        child_stop(p, CHILD_STOP_GONE, 0, now);
    }
}

/* poll() itself broke: the task fails, the child is killed and reaped. */
static void run_poll_failed(struct run *r, int64_t now)
{
    log_task(LOG_LEVEL_ERROR, r->c->queue->name, r->task->id, "poll failed: %s", strerror(errno));
    snprintf(r->why, sizeof(r->why), "poll failed while running the coprocess");
    child_stop(&r->c->proc, CHILD_STOP_PROTOCOL, 0, now);
    coproc_reap(r->c);
    r->exited = true;
}

/* The child has exited: read what it wrote last (an answer may be in the
 * pipe), then, unless it answered, reap it. */
static void run_child_exited(struct run *r, int64_t now)
{
    struct coproc *c = r->c;
    if (c->proc.out_fd >= 0 && c->proc.reason == CHILD_STOP_NONE)
        run_read(r, now, true);
    if (r->answered)
        return;
    coproc_reap(c);
    r->exited = true;
}

/*
 * The loop: feed the task line, read the answer, log stderr, and watch (in
 * order of urgency) the supervisor's death, the worker's signals, the
 * child's exit and the timers. Ends with an answer, or with the child
 * reaped.
 */
static void run_loop(struct run *r)
{
    struct coproc *c = r->c;
    struct child_process *p = &c->proc;
    struct handler_env *env = r->env;
    bool watch_death = env->death_fd >= 0;
    run_write(r, time_now_ms());
    while (!r->answered && !r->exited) {
        int64_t now = time_now_ms();
        child_check_timers(p, c->queue->timeout_ms, now);
        run_check_gone(r, now);

        struct poll_set ps = {.count = 0};
        int i_death = poll_set_add(&ps, watch_death ? env->death_fd : -1, POLLIN);
        int i_sig = poll_set_add(&ps, env->signal_fd, POLLIN);
        int i_pid = poll_set_add(&ps, p->pidfd, POLLIN);
        int i_out = poll_set_add(&ps, p->out_fd, POLLIN);
        int i_err = poll_set_add(&ps, p->err_fd, POLLIN);
        int i_in = poll_set_add(&ps, c->line_off < c->line.len ? p->in_fd : -1, POLLOUT);

        int64_t gone_at = p->reason == CHILD_STOP_NONE ? r->gone_at_ms : 0;
        int rc = poll(ps.fds, (nfds_t)ps.count, child_poll_timeout(p, gone_at, now));
        if (rc < 0) {
            if (errno != EINTR)
                run_poll_failed(r, now);
            continue;
        }
        now = time_now_ms();
        child_on_interrupt(p, env, poll_set_revents(&ps, i_death), poll_set_revents(&ps, i_sig),
                           &watch_death, now);
        if (poll_set_revents(&ps, i_err) != 0)
            stderr_drain(c);
        if (poll_set_revents(&ps, i_in) != 0)
            run_write(r, now);
        if (poll_set_revents(&ps, i_out) != 0 && p->out_fd >= 0)
            run_read(r, now, false);
        if (r->answered)
            return;
        if (i_pid >= 0 ? poll_set_revents(&ps, i_pid) != 0 : child_exited(p))
            run_child_exited(r, now);
    }
}

/* The outcome of a run that ended without an answer. */
static enum handler_outcome run_failure(struct run *r, char *error, size_t errlen)
{
    struct coproc *c = r->c;
    if (child_stop_aborts(&c->proc, error, errlen))
        return HANDLER_ABORTED;
    char tail[COPROC_STDERR_TAIL + 4];
    size_t t = c->err_tail_len;
    while (t > 0 && c->err_tail[t - 1] == '\n')
        t--;
    snprintf(tail, sizeof(tail), "%s%.*s", t > 0 ? ": " : "", (int)t, c->err_tail);
    for (char *p = tail; *p; p++)
        if (*p == '\n')
            *p = ' ';

    switch (c->proc.reason) {
    case CHILD_STOP_TIMEOUT: {
        char timed_out[64];
        child_describe_timeout(c->queue->timeout_ms, timed_out, sizeof(timed_out));
        snprintf(error, errlen, "%s (coprocess killed and restarted)%s", timed_out, tail);
        return HANDLER_FAILED;
    }
    case CHILD_STOP_PROTOCOL:
        snprintf(error, errlen, "malformed result line from the coprocess (%s); restarted it",
                 r->why);
        return HANDLER_FAILED;
    case CHILD_STOP_GONE:
        snprintf(error, errlen, "coprocess closed its %s before answering (killed)%s", r->gone_what,
                 tail);
        return HANDLER_FAILED;
    case CHILD_STOP_CANCEL:
        snprintf(error, errlen, "cancelled while running (coprocess killed and restarted)");
        return HANDLER_CANCELLED;
    case CHILD_STOP_NONE:  /* it exited by itself */
    case CHILD_STOP_ABORT: /* (aborts are decided above) */
    case CHILD_STOP_DEATH:
        break;
    }
    char status[96];
    child_describe_exit(c->proc.status, status, sizeof(status));
    snprintf(error, errlen, "coprocess exited before answering (%s)%s", status, tail);
    return HANDLER_FAILED;
}

/* --- the handler interface --------------------------------------------- */

static void coproc_free(struct coproc *c)
{
    free(c->queue_json);
    text_free(&c->line);
    text_free(&c->out);
    free(c);
}

static int coproc_init(struct handler_env *env, void **state)
{
    *state = NULL;
    const struct queue_config *queue = env->queue;
    if (child_check_command(queue, "coprocess") != 0)
        return -1;
    struct coproc *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -1;
    c->queue = queue;
    c->proc = (struct child_process){.queue = queue->name,
                                     .what = "coprocess",
                                     .pidfd = -1,
                                     .in_fd = -1,
                                     .out_fd = -1,
                                     .err_fd = -1};
    c->queue_json = coprocess_quote(queue->name);
    if (c->queue_json == NULL) {
        coproc_free(c);
        return -1;
    }
    /* Start it now, so the first task does not wait for an interpreter to
     * load. A failure is not fatal here: the program may appear later (a
     * volume still mounting); each task tries again and reports why. */
    char error[256];
    if (coproc_spawn(c, error, sizeof(error)) != 0)
        log_warn("queue \"%s\": %s; trying again at the first task", queue->name, error);
    *state = c;
    return 0;
}

static enum handler_outcome coproc_run(void *state, struct handler_env *env,
                                       const struct task *task, char *error, size_t errlen)
{
    struct coproc *c = state;
    if (handler_env_clear_error_and_check_abort(env, error, errlen))
        return HANDLER_ABORTED;
    struct child_sigpipe sigpipe;
    child_sigpipe_hold(&sigpipe); /* the task line may meet a closed stdin */
    enum handler_outcome outcome = HANDLER_FAILED;
    if (c->out.len > 0 && !only_blank(c->out.data, c->out.len)) {
        /* Output after the last answer: the child is out of step. */
        log_warn("queue \"%s\": coprocess %d wrote more than one result line; restarting it",
                 c->queue->name, (int)c->proc.pid);
        coproc_kill(c, CHILD_ABORT_GRACE_MS);
    }
    c->out.len = 0;
    coproc_check_idle(c);
    c->proc.task_id = task->id;
    c->err_tail_len = 0;
    if (c->proc.pid == 0 && coproc_spawn(c, error, errlen) != 0)
        goto out;
    int line_len = coprocess_format_task(&c->line, c->queue_json, task);
    if (line_len < 0) {
        snprintf(error, errlen, "out of memory formatting the task");
        goto out;
    }
    c->line_off = 0;

    struct run r;
    memset(&r, 0, sizeof(r));
    r.c = c;
    r.env = env;
    r.task = task;
    if (c->queue->timeout_ms > 0)
        c->proc.deadline_ms = time_now_ms() + c->queue->timeout_ms;
    run_loop(&r);
    if (r.answered) {
        if (r.result.ok) {
            outcome = HANDLER_OK;
        } else {
            snprintf(error, errlen, "%s",
                     r.result.error[0] != '\0' ? r.result.error : "coprocess reported failure");
        }
    } else {
        if (!r.exited)
            coproc_reap(c);
        outcome = run_failure(&r, error, errlen);
        log_task(LOG_LEVEL_WARN, c->queue->name, task->id, "%s", error);
    }
out:
    c->proc.task_id = 0;
    c->proc.deadline_ms = 0;
    child_sigpipe_release(&sigpipe);
    return outcome;
}

static void coproc_fini(void *state)
{
    struct coproc *c = state;
    if (c == NULL)
        return;
    if (c->proc.pid != 0) {
        /* EOF on stdin is the polite way to say "exit now". */
        child_close_fd(&c->proc.in_fd);
        if (!child_wait_exit(&c->proc, FINI_EXIT_MS, stderr_drain_cb, c))
            coproc_kill(c, FINI_EXIT_MS);
        else
            coproc_reap(c);
    }
    coproc_free(c);
}

const struct handler handler_coprocess = {
    .name = "coprocess",
    .init = coproc_init,
    .run = coproc_run,
    .fini = coproc_fini,
};
