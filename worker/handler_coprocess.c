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

/* After SIGTERM on a timeout or a protocol error: time before SIGKILL. */
#define KILL_GRACE_MS 2000
/* After SIGTERM on fast shutdown (QUIT), or when the child closed its
 * stdout (it is useless, but may be busy dying). */
#define ABORT_GRACE_MS 500
/* fini: after closing its stdin, how long the child may take to exit by
 * itself before it gets SIGTERM, and then SIGKILL. */
#define FINI_EXIT_MS 1000
/* Without a pidfd, how often we look for the child's exit. */
#define EXIT_POLL_MS 20
/* Longest result line accepted (bytes, newline excluded). */
#define COPROC_LINE_MAX (1024 * 1024)
/* Longest stderr line logged as one; longer ones are split. */
#define COPROC_STDERR_LINE_MAX 2048
/* Bytes of the child's stderr kept for the error of a task it died in. */
#define COPROC_STDERR_TAIL 1024

/* Why we are killing the child; the first reason decides the outcome. */
enum stop_reason {
    STOP_NONE,     /* not killing it */
    STOP_TIMEOUT,  /* the queue's timeout expired: task FAILED */
    STOP_PROTOCOL, /* malformed or oversized result line: task FAILED */
    STOP_GONE,     /* it closed stdout or stdin: task FAILED */
    STOP_ABORT,    /* QUIT (fast shutdown): task ABORTED */
    STOP_DEATH,    /* the supervisor died: task ABORTED */
};

/* A growable byte buffer, reused across tasks. */
struct buffer {
    char *data;
    size_t len;
    size_t cap;
};

/* One worker's child for one queue. */
struct coproc {
    const struct queue_config *queue; /* the queue it serves (name, command) */
    char *queue_json;                 /* the queue name as a JSON string, quotes included */
    pid_t pid;                        /* also its process group id; 0 = none running */
    int pidfd;                        /* -1 if none (or pidfd_open unavailable) */
    int in_fd;                        /* our end of its stdin, non-blocking */
    int out_fd;                       /* our end of its stdout, non-blocking */
    int err_fd;                       /* our end of its stderr, non-blocking; -1 at EOF */
    int status;                       /* waitpid status of the last child reaped */
    unsigned starts;                  /* children started so far */
    struct buffer line;               /* task line being written */
    size_t line_off;                  /* bytes of `line` written so far */
    struct buffer out;                /* stdout bytes not yet consumed */
    char err_line[COPROC_STDERR_LINE_MAX + 1]; /* partial stderr line */
    size_t err_len;
    char err_tail[COPROC_STDERR_TAIL]; /* last stderr lines of the current task */
    size_t err_tail_len;
    int64_t task_id;      /* task in flight, for log lines; 0 = none */
    bool sigpipe_default; /* SIGPIPE not ignored at init: block it around each task */
    bool epipe;           /* a write got EPIPE during this task (a SIGPIPE may be pending) */
};

/* --- small helpers ----------------------------------------------------- */

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* Make room for `more` bytes. 0, or -1 when out of memory. */
static int buffer_reserve(struct buffer *b, size_t more)
{
    if (b->cap - b->len >= more)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < more)
        cap *= 2;
    char *data = realloc(b->data, cap);
    if (data == NULL)
        return -1;
    b->data = data;
    b->cap = cap;
    return 0;
}

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

/* Only while the child is unreaped: its zombie pins the group id. */
static void signal_group(struct coproc *c, int sig)
{
    if (kill(-c->pid, sig) != 0 && errno != ESRCH)
        log_warn("queue \"%s\": cannot signal coprocess group %d: %s", c->queue->name, (int)c->pid,
                 strerror(errno));
}

/* --- stderr into the log ----------------------------------------------- */

static void stderr_emit(struct coproc *c, const char *text, size_t n)
{
    char line[COPROC_STDERR_LINE_MAX + 1];
    memcpy(line, text, n);
    line[n] = '\0';
    child_sanitize_text(line, n);
    if (c->task_id != 0)
        log_task(LOG_LEVEL_INFO, c->queue->name, c->task_id, "coprocess %d: %s", (int)c->pid, line);
    else
        log_info("queue \"%s\": coprocess %d: %s", c->queue->name, (int)c->pid, line);

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
    for (int rounds = 0; c->err_fd >= 0 && rounds < 16; rounds++) {
        ssize_t n = read(c->err_fd, chunk, sizeof(chunk));
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
            close_fd(&c->err_fd);
        }
        return;
    }
}

/* --- lifecycle --------------------------------------------------------- */

/* Is the (unreaped) child an exited zombie? WNOWAIT: do not reap yet. */
static bool child_exited(const struct coproc *c)
{
    siginfo_t info;
    memset(&info, 0, sizeof(info));
    if (waitid(P_PID, (id_t)c->pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0)
        return errno == ECHILD;
    return info.si_pid == c->pid;
}

static void describe_status(int status, char *out, size_t len)
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

/* The child has exited (or must go now): kill what is left of its group,
 * reap it, and close our ends. Its last stderr lines are logged. */
static void coproc_reap(struct coproc *c)
{
    if (c->pid == 0)
        return;
    /* Kill the group *before* reaping: the zombie still pins the group id,
     * and a grandchild must not outlive the child that started it. */
    if (child_exited(c))
        signal_group(c, SIGKILL);
    pid_t rc;
    do
        rc = waitpid(c->pid, &c->status, 0);
    while (rc < 0 && errno == EINTR);
    if (rc < 0)
        c->status = -1; /* someone else reaped it (SIGCHLD ignored?) */
    stderr_drain(c);
    stderr_feed(c, NULL, 0, true);
    close_fd(&c->pidfd);
    close_fd(&c->in_fd);
    close_fd(&c->out_fd);
    close_fd(&c->err_fd);
    c->pid = 0;
    c->out.len = 0;
    c->line.len = c->line_off = 0;
}

/* Wait up to ms for the child to exit by itself; true if it did. */
static bool coproc_wait_exit(struct coproc *c, int64_t ms)
{
    int64_t deadline = time_now_ms() + ms;
    for (;;) {
        if (c->pidfd < 0 ? child_exited(c) : false)
            return true;
        int64_t left = deadline - time_now_ms();
        if (left <= 0)
            return c->pidfd < 0 ? child_exited(c) : false;
        struct poll_set ps = {.count = 0};
        int i_pid = poll_set_add(&ps, c->pidfd, POLLIN);
        int i_err = poll_set_add(&ps, c->err_fd, POLLIN);
        int wait = c->pidfd >= 0 ? (int)left : (left < EXIT_POLL_MS ? (int)left : EXIT_POLL_MS);
        int rc = poll(ps.fds, (nfds_t)ps.count, wait);
        if (rc < 0 && errno != EINTR)
            return false;
        if (rc <= 0)
            continue;
        if (poll_set_revents(&ps, i_err) != 0)
            stderr_drain(c);
        if (poll_set_revents(&ps, i_pid) != 0)
            return true;
    }
}

/* Stop the child for good: TERM, up to grace_ms, KILL; then reap. */
static void coproc_kill(struct coproc *c, int64_t grace_ms)
{
    if (c->pid == 0)
        return;
    if (grace_ms > 0 && !child_exited(c)) {
        signal_group(c, SIGTERM);
        coproc_wait_exit(c, grace_ms);
    }
    if (!child_exited(c))
        signal_group(c, SIGKILL);
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
    struct child_process p;
    int ret = child_spawn(c->queue->command, envp, true, &p, error, errlen);
    if (ret == 0) {
        c->pid = p.pid;
        c->pidfd = p.pidfd;
        c->in_fd = p.in_fd;
        c->out_fd = p.out_fd;
        c->err_fd = p.err_fd;
        c->starts++;
        c->out.len = 0;
        c->err_len = 0;
        log_info("queue \"%s\": coprocess started, pid %d%s", c->queue->name, (int)p.pid,
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
    if (c->pid == 0)
        return;
    struct poll_set ps = {.count = 0};
    int i_out = poll_set_add(&ps, c->out_fd, POLLIN);
    int i_err = poll_set_add(&ps, c->err_fd, POLLIN);
    int i_pid = poll_set_add(&ps, c->pidfd, POLLIN);
    int rc;
    do
        rc = poll(ps.fds, (nfds_t)ps.count, 0);
    while (rc < 0 && errno == EINTR);
    if (rc > 0 && poll_set_revents(&ps, i_err) != 0)
        stderr_drain(c);
    bool dead = i_pid >= 0 ? rc > 0 && poll_set_revents(&ps, i_pid) != 0 : child_exited(c);
    if (dead) {
        coproc_reap(c);
        char status[96];
        describe_status(c->status, status, sizeof(status));
        log_warn("queue \"%s\": coprocess exited between tasks (%s); restarting it", c->queue->name,
                 status);
        return;
    }
    if (rc > 0 && poll_set_revents(&ps, i_out) != 0) {
        log_warn("queue \"%s\": coprocess %d wrote to stdout between tasks (or closed it); "
                 "restarting it",
                 c->queue->name, (int)c->pid);
        coproc_kill(c, ABORT_GRACE_MS);
    }
}

/* --- one task ---------------------------------------------------------- */

struct run {
    struct coproc *c;
    struct handler_env *env;
    const struct task *task;
    enum stop_reason reason;
    int64_t deadline_ms;   /* the queue's timeout; 0 = none */
    int64_t kill_at_ms;    /* SIGKILL the group then; 0 = not pending */
    int64_t gone_at_ms;    /* it closed stdin/stdout: KILL then unless it exits; 0 = no */
    const char *gone_what; /* "stdin" or "stdout" */
    bool answered;
    bool exited; /* the child exited (reaped) during the task */
    struct coprocess_result result;
    char why[160]; /* protocol error, for the task's error */
};

/* Start killing for `why`: TERM now and KILL after grace_ms (KILL at once
 * when 0). A second reason only makes it more urgent. */
static void run_stop(struct run *r, enum stop_reason why, int64_t grace_ms, int64_t now)
{
    if (r->c->pid == 0 || r->exited)
        return;
    if (r->reason == STOP_NONE)
        r->reason = why;
    if (grace_ms == 0) {
        signal_group(r->c, SIGKILL);
        r->kill_at_ms = 0;
        return;
    }
    if (r->kill_at_ms == 0)
        signal_group(r->c, SIGTERM);
    if (r->kill_at_ms == 0 || now + grace_ms < r->kill_at_ms)
        r->kill_at_ms = now + grace_ms;
}

static void format_duration(int64_t ms, char *buf, size_t len)
{
    if (ms % 1000 == 0)
        snprintf(buf, len, "%" PRId64 "s", ms / 1000);
    else
        snprintf(buf, len, "%" PRId64 "ms", ms);
}

/* The child closed its stdin or stdout: it can never answer. It is most
 * likely exiting; give it a moment to do so (its exit status says more
 * than our kill would), then kill its group. */
static void run_gone(struct run *r, const char *what, int64_t now)
{
    if (r->gone_at_ms == 0) {
        r->gone_at_ms = now + ABORT_GRACE_MS;
        r->gone_what = what;
    }
}

/* Write what the pipe takes of the task line; EPIPE = the child closed its
 * stdin (or died): it can never answer. */
static void run_write(struct run *r, int64_t now)
{
    struct coproc *c = r->c;
    while (c->line_off < c->line.len) {
        ssize_t n = write(c->in_fd, c->line.data + c->line_off, c->line.len - c->line_off);
        if (n > 0) {
            c->line_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n < 0 && errno == EPIPE)
            c->epipe = true;
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
                run_stop(r, STOP_PROTOCOL, KILL_GRACE_MS, now);
            }
            return;
        }
        size_t len = (size_t)(nl - c->out.data);
        bool blank = only_blank(c->out.data, len);
        if (!blank && r->reason == STOP_NONE && !r->answered) {
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
                run_stop(r, STOP_PROTOCOL, KILL_GRACE_MS, now);
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
    if (buffer_reserve(&c->out, 65536) != 0) {
        snprintf(r->why, sizeof(r->why), "out of memory reading the result");
        run_stop(r, STOP_PROTOCOL, 0, now);
        return;
    }
    ssize_t n;
    do
        n = read(c->out_fd, c->out.data + c->out.len, c->out.cap - c->out.len);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        c->out.len += (size_t)n;
        run_consume(r, now);
    } else if (n == 0 || errno != EAGAIN) {
        if (!at_exit)
            run_gone(r, "stdout", now);
        /* Nothing more will come: stop polling it (EOF stays readable). */
        close_fd(&c->out_fd);
    }
}

/* Milliseconds until the next timer of the run; -1 = none. */
static int run_next_wakeup(const struct run *r, int64_t now)
{
    int64_t at = 0;
    if (r->reason == STOP_NONE && r->deadline_ms > 0)
        at = r->deadline_ms;
    if (r->kill_at_ms > 0 && (at == 0 || r->kill_at_ms < at))
        at = r->kill_at_ms;
    if (r->reason == STOP_NONE && r->gone_at_ms > 0 && (at == 0 || r->gone_at_ms < at))
        at = r->gone_at_ms;
    if (r->c->pidfd < 0 && (at == 0 || now + EXIT_POLL_MS < at))
        at = now + EXIT_POLL_MS;
    if (at == 0)
        return -1;
    int64_t wait = at - now;
    return wait < 0 ? 0 : wait > 60000 ? 60000 : (int)wait;
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
    struct handler_env *env = r->env;
    bool watch_death = env->death_fd >= 0;
    run_write(r, time_now_ms());
    for (;;) {
        int64_t now = time_now_ms();
        if (r->answered)
            return;
        if (r->reason == STOP_NONE && r->deadline_ms > 0 && now >= r->deadline_ms) {
            char limit[32];
            format_duration(c->queue->timeout_ms, limit, sizeof(limit));
            log_task(LOG_LEVEL_WARN, c->queue->name, r->task->id,
                     "coprocess timed out after %s, terminating process group %d", limit,
                     (int)c->pid);
            run_stop(r, STOP_TIMEOUT, KILL_GRACE_MS, now);
        }
        if (r->reason == STOP_NONE && r->gone_at_ms > 0 && now >= r->gone_at_ms) {
            log_task(LOG_LEVEL_WARN, c->queue->name, r->task->id,
                     "coprocess %d closed its %s but did not exit, killing its group", (int)c->pid,
                     r->gone_what);
            run_stop(r, STOP_GONE, 0, now);
        }
        if (r->kill_at_ms > 0 && now >= r->kill_at_ms) {
            log_task(LOG_LEVEL_WARN, c->queue->name, r->task->id,
                     "coprocess group %d still running after SIGTERM, sending SIGKILL",
                     (int)c->pid);
            signal_group(c, SIGKILL);
            r->kill_at_ms = 0;
        }

        struct poll_set ps = {.count = 0};
        int i_death = poll_set_add(&ps, watch_death ? env->death_fd : -1, POLLIN);
        int i_sig = poll_set_add(&ps, env->signal_fd, POLLIN);
        int i_pid = poll_set_add(&ps, c->pidfd, POLLIN);
        int i_out = poll_set_add(&ps, c->out_fd, POLLIN);
        int i_err = poll_set_add(&ps, c->err_fd, POLLIN);
        int i_in = poll_set_add(&ps, c->line_off < c->line.len ? c->in_fd : -1, POLLOUT);

        int rc = poll(ps.fds, (nfds_t)ps.count, run_next_wakeup(r, now));
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            log_task(LOG_LEVEL_ERROR, c->queue->name, r->task->id, "poll failed: %s",
                     strerror(errno));
            snprintf(r->why, sizeof(r->why), "poll failed while running the coprocess");
            if (r->reason == STOP_NONE)
                r->reason = STOP_PROTOCOL;
            signal_group(c, SIGKILL);
            coproc_reap(c);
            r->exited = true;
            return;
        }
        now = time_now_ms();
        switch (handler_env_interrupt(env, poll_set_revents(&ps, i_death),
                                      poll_set_revents(&ps, i_sig), &watch_death)) {
        case HANDLER_STOP_DEATH:
            log_task(LOG_LEVEL_WARN, c->queue->name, r->task->id,
                     "supervisor died, killing coprocess group %d", (int)c->pid);
            run_stop(r, STOP_DEATH, 0, now);
            break;
        case HANDLER_STOP_ABORT:
            log_task(LOG_LEVEL_INFO, c->queue->name, r->task->id,
                     "fast shutdown, terminating coprocess group %d", (int)c->pid);
            run_stop(r, STOP_ABORT, ABORT_GRACE_MS, now);
            break;
        case HANDLER_RUN_ON:
            break;
        }
        if (poll_set_revents(&ps, i_err) != 0)
            stderr_drain(c);
        if (poll_set_revents(&ps, i_in) != 0)
            run_write(r, now);
        if (poll_set_revents(&ps, i_out) != 0 && c->out_fd >= 0)
            run_read(r, now, false);
        if (r->answered)
            return;
        bool dead = i_pid >= 0 ? poll_set_revents(&ps, i_pid) != 0 : child_exited(c);
        if (dead) {
            /* Read what it wrote last: an answer may be in the pipe. */
            if (c->out_fd >= 0 && r->reason == STOP_NONE)
                run_read(r, now, true);
            if (r->answered)
                return;
            coproc_reap(c);
            r->exited = true;
            return;
        }
    }
}

/* The outcome of a run that ended without an answer. */
static enum handler_outcome run_failure(struct run *r, char *error, size_t errlen)
{
    struct coproc *c = r->c;
    char status[96];
    describe_status(c->status, status, sizeof(status));
    char tail[COPROC_STDERR_TAIL + 4];
    size_t t = c->err_tail_len;
    while (t > 0 && c->err_tail[t - 1] == '\n')
        t--;
    snprintf(tail, sizeof(tail), "%s%.*s", t > 0 ? ": " : "", (int)t, c->err_tail);
    for (char *p = tail; *p; p++)
        if (*p == '\n')
            *p = ' ';

    switch (r->reason) {
    case STOP_DEATH:
        snprintf(error, errlen, "aborted: supervisor died");
        return HANDLER_ABORTED;
    case STOP_ABORT:
        snprintf(error, errlen, "aborted: fast shutdown");
        return HANDLER_ABORTED;
    case STOP_TIMEOUT: {
        char limit[32];
        format_duration(c->queue->timeout_ms, limit, sizeof(limit));
        snprintf(error, errlen, "timed out after %s (coprocess killed and restarted)%s", limit,
                 tail);
        return HANDLER_FAILED;
    }
    case STOP_PROTOCOL:
        snprintf(error, errlen, "malformed result line from the coprocess (%s); restarted it",
                 r->why);
        return HANDLER_FAILED;
    case STOP_GONE:
        snprintf(error, errlen, "coprocess closed its %s before answering (killed)%s", r->gone_what,
                 tail);
        return HANDLER_FAILED;
    case STOP_NONE:
        break;
    }
    snprintf(error, errlen, "coprocess exited before answering (%s)%s", status, tail);
    return HANDLER_FAILED;
}

/* --- the handler interface --------------------------------------------- */

static void coproc_free(struct coproc *c)
{
    free(c->queue_json);
    free(c->line.data);
    free(c->out.data);
    free(c);
}

static int coproc_init(struct handler_env *env, void **state)
{
    *state = NULL;
    const struct queue_config *queue = env->queue;
    if (queue == NULL || queue->command == NULL || queue->command[0] == NULL ||
        queue->command[0][0] == '\0') {
        log_error("queue \"%s\": coprocess handler needs a command",
                  queue != NULL && queue->name != NULL ? queue->name : "");
        return -1;
    }
    struct coproc *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -1;
    c->queue = queue;
    c->pidfd = c->in_fd = c->out_fd = c->err_fd = -1;
    c->queue_json = coprocess_quote(queue->name);
    if (c->queue_json == NULL) {
        coproc_free(c);
        return -1;
    }
    /* The worker ignores SIGPIPE before any handler starts and never
     * changes that (worker.c): then a write to a dead child's stdin is just
     * EPIPE, and run() saves the two or three signal-mask system calls per
     * task that protecting itself would cost. Anywhere else (the unit tests)
     * SIGPIPE is blocked around each task. */
    struct sigaction pipe_action;
    c->sigpipe_default =
        sigaction(SIGPIPE, NULL, &pipe_action) != 0 || pipe_action.sa_handler != SIG_IGN;
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
    if (errlen > 0)
        error[0] = '\0';
    if (env->abort_requested) {
        snprintf(error, errlen, "aborted before start");
        return HANDLER_ABORTED;
    }
    /* A write to a dead child's stdin raises SIGPIPE: unless it is ignored
     * (see coproc_init), it is blocked for the call and a pending one
     * discarded afterwards. */
    sigset_t pipe_set, old_mask;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    if (c->sigpipe_default)
        pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);
    c->epipe = false;

    enum handler_outcome outcome = HANDLER_FAILED;
    if (c->out.len > 0 && !only_blank(c->out.data, c->out.len)) {
        /* Output after the last answer: the child is out of step. */
        log_warn("queue \"%s\": coprocess %d wrote more than one result line; restarting it",
                 c->queue->name, (int)c->pid);
        coproc_kill(c, ABORT_GRACE_MS);
    }
    c->out.len = 0;
    coproc_check_idle(c);
    c->task_id = task->id;
    c->err_tail_len = 0;
    if (c->pid == 0 && coproc_spawn(c, error, errlen) != 0)
        goto out;
    int line_len = coprocess_format_task(&c->line.data, &c->line.cap, c->queue_json, task);
    if (line_len < 0) {
        snprintf(error, errlen, "out of memory formatting the task");
        goto out;
    }
    c->line.len = (size_t)line_len;
    c->line_off = 0;

    struct run r;
    memset(&r, 0, sizeof(r));
    r.c = c;
    r.env = env;
    r.task = task;
    if (c->queue->timeout_ms > 0)
        r.deadline_ms = time_now_ms() + c->queue->timeout_ms;
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
    c->task_id = 0;
    if (c->sigpipe_default) {
        if (c->epipe && !sigismember(&old_mask, SIGPIPE)) {
            struct timespec zero = {0, 0};
            while (sigtimedwait(&pipe_set, NULL, &zero) > 0)
                ;
        }
        pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    }
    return outcome;
}

static void coproc_fini(void *state)
{
    struct coproc *c = state;
    if (c == NULL)
        return;
    if (c->pid != 0) {
        /* EOF on stdin is the polite way to say "exit now". */
        close_fd(&c->in_fd);
        if (!coproc_wait_exit(c, FINI_EXIT_MS))
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
