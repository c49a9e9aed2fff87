/*
 * child.h — a program a handler runs (exec: one per task; coprocess: one
 * per worker and queue): start it, signal its group, stop it, reap it and
 * describe how it ended. Also the one exit-status format, which the
 * supervisor uses for its workers too.
 */
#ifndef PGWORK_CHILD_H
#define PGWORK_CHILD_H

#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct handler_env;
struct queue_config;

/* After SIGTERM on a timeout (or a coprocess's protocol error): how long
 * the group gets before SIGKILL. */
#define CHILD_KILL_GRACE_MS 2000
/* After SIGTERM on fast shutdown (QUIT): shorter, the pod is going away. */
#define CHILD_ABORT_GRACE_MS 500
/* Without a pidfd (see child_spawn), how often a wait loop looks for the
 * child's exit. */
#define CHILD_EXIT_POLL_MS 20

/* Why we are stopping the child; the first reason decides the task's
 * outcome, later ones only make the kill more urgent. */
enum child_stop_reason {
    CHILD_STOP_NONE,     /* not stopping it: it exits by itself */
    CHILD_STOP_TIMEOUT,  /* the queue's timeout expired: task FAILED */
    CHILD_STOP_PROTOCOL, /* coprocess: malformed or oversized result line: FAILED */
    CHILD_STOP_GONE,     /* coprocess: it closed its stdout or stdin: FAILED */
    CHILD_STOP_CANCEL,   /* the task was cancelled (pgwork.cancel): task CANCELLED */
    CHILD_STOP_ABORT,    /* QUIT seen (fast shutdown): task ABORTED */
    CHILD_STOP_DEATH,    /* the supervisor died: task ABORTED */
};

/*
 * A handler's child. The caller sets the first group (log context and
 * deadline) and may change it between tasks; child_spawn sets the rest.
 * Invariant: the group is signalled only while pid != 0, i.e. while the
 * child is unreaped — even as a zombie it pins its pid, so the group id
 * cannot have been recycled for an unrelated group.
 */
struct child_process {
    const char *queue;   /* queue name, for log lines */
    const char *what;    /* "handler" or "coprocess", for log lines */
    int64_t task_id;     /* task in flight, for log lines; 0 = none */
    int64_t deadline_ms; /* stop it for CHILD_STOP_TIMEOUT then; 0 = none */

    pid_t pid;  /* also its process group; 0 = not running (reaped) */
    int pidfd;  /* readable when it exits; -1 where pidfd_open is missing */
    int in_fd;  /* its stdin, write end, non-blocking */
    int out_fd; /* its stdout (and stderr unless separate), read end, non-blocking */
    int err_fd; /* its stderr, read end, non-blocking; -1 unless separate */
    enum child_stop_reason reason; /* why we are stopping it; NONE = we are not */
    int64_t kill_at_ms;            /* SIGKILL the group then; 0 = not pending */
    int status; /* wait status once reaped; -1 = unknown (reaped by someone else) */
};

/* A handler's init: 0 when queue has a command to run, else -1 after
 * logging that the handler named needs one (the config refuses such a
 * queue already; a worker must still not fork an empty argv). */
int child_check_command(const struct queue_config *queue, const char *handler);

/*
 * Start argv (envp as built by child_environ) in its own process group,
 * with stdin and stdout on pipes — stderr too, on its own pipe when
 * separate_stderr, else with stdout. Returns once exec has succeeded: 0,
 * with the pid, the fds, and a clear stop state in p (the caller owns the
 * fds: child_reap closes pidfd and in_fd, child_close_fd the others), or
 * -1 with error filled (exec failing included; nothing left running).
 */
int child_spawn(char *const argv[], char *const envp[], bool separate_stderr,
                struct child_process *p, char *error, size_t errlen);

/* Send sig to the child's whole group (nothing once it is reaped); a
 * failure other than ESRCH is logged. */
void child_signal(const struct child_process *p, int sig);

/* Start stopping the child for why: SIGTERM now and SIGKILL after
 * grace_ms (child_check_timers sends it), or SIGKILL at once when grace_ms
 * is 0. The first reason is kept; a second one only shortens the wait and
 * sends no second SIGTERM. Nothing once the child is reaped. */
void child_stop(struct child_process *p, enum child_stop_reason why, int64_t grace_ms, int64_t now);

/* The timers of a wait loop, each turn before polling: the deadline
 * (logged, then child_stop for TIMEOUT with CHILD_KILL_GRACE_MS; the
 * timeout named is timeout_ms) and a pending SIGKILL (logged, sent). */
void child_check_timers(struct child_process *p, int64_t timeout_ms, int64_t now);

/* After a poll() that watched env->death_fd (while *watch_death) and
 * env->signal_fd, with their revents (0 if not polled): on the
 * supervisor's death SIGKILL the group (CHILD_STOP_DEATH), on a fast
 * shutdown SIGTERM it (CHILD_STOP_ABORT, CHILD_ABORT_GRACE_MS), when its
 * task was cancelled SIGTERM it (CHILD_STOP_CANCEL, CHILD_KILL_GRACE_MS:
 * the grace a timeout gives); a graceful TERM lets it run on
 * (handler_env_interrupt). */
void child_on_interrupt(struct child_process *p, struct handler_env *env, short death_revents,
                        short signal_revents, bool *watch_death, int64_t now);

/* The poll() timeout of a wait loop, in ms (-1 = none): until the
 * earliest of at (the caller's own timer, 0 = none), the child's deadline
 * and pending SIGKILL, and, without a pidfd, the next look at its exit.
 * At most 60 s: the loop re-evaluates each turn anyway. */
int child_poll_timeout(const struct child_process *p, int64_t at, int64_t now);

/* Has the (unreaped) child exited? Looks without reaping (WNOWAIT); a
 * child reaped behind our back (ECHILD) counts as exited. For loops
 * without a pidfd. */
bool child_exited(const struct child_process *p);

/* Wait up to ms for the child to exit by itself; true if it did (it is
 * not reaped yet). While waiting, on_stderr(arg), when given, is called
 * whenever err_fd is readable: a child's last words must not fill the
 * pipe and block its exit. */
bool child_wait_exit(struct child_process *p, int64_t ms, void (*on_stderr)(void *), void *arg);

/* Stop the child now, outside a wait loop (between tasks, at fini):
 * SIGTERM and up to grace_ms for it to exit (0: none), then SIGKILL for
 * the group unless it has exited. The caller reaps (child_reap). */
void child_terminate(struct child_process *p, int64_t grace_ms, void (*on_stderr)(void *),
                     void *arg);

/* The child has exited, or has just been sent SIGKILL: kill what is left
 * of its group (grandchildren must not outlive it or hold its pipes), then
 * reap it into p->status, close pidfd and in_fd (nobody is left to read
 * it), and set pid to 0. out_fd and err_fd stay open for what is still in
 * the pipes. */
void child_reap(struct child_process *p);

/* Close *fd unless it is -1, and set it to -1. */
void child_close_fd(int *fd);

/* The one description of how a child ended (task errors, log lines, and
 * the supervisor's for its workers): "exit status N", "killed by signal
 * N", "killed by signal N (core dumped)", "wait status 0x..." for anything
 * else, and "exit status unknown" for -1 (reaped by someone else). */
void child_describe_exit(int status, char *out, size_t len);

/* "timed out after 30s" (or "...after 1500ms"): the queue's timeout as
 * it is written, for task errors and log lines. */
void child_describe_timeout(int64_t timeout_ms, char *out, size_t len);

/* Whether the stop reason alone decides the task: on fast shutdown or the
 * supervisor's death the task is HANDLER_ABORTED, whatever the child
 * said, and error says which ("aborted: fast shutdown", "aborted:
 * supervisor died"). false for any other reason (error untouched). */
bool child_stop_aborts(const struct child_process *p, char *error, size_t errlen);

/*
 * SIGPIPE, one rule for every handler: a write to a pipe whose reader is
 * gone (a child that closed its stdin, or died) must come back as EPIPE,
 * never kill the worker. The worker ignores SIGPIPE before any handler
 * runs and never changes that (worker_setup_signals); an ignored signal is
 * discarded when raised, so then there is nothing to do and nothing to
 * clean up, and hold() costs one sigaction() query. Where it is not ignored
 * (the unit tests run handlers in a process of their own), hold() blocks
 * it for the task and release() discards what our writes raised before
 * restoring the mask — unless the caller had it blocked already: then a
 * pending one is the caller's, and stays.
 */
struct child_sigpipe {
    bool held;         /* hold() blocked it; release() must undo that */
    sigset_t old_mask; /* the mask before hold(), when held */
};

/* Around one task's run(): see the rule above. */
void child_sigpipe_hold(struct child_sigpipe *guard);
void child_sigpipe_release(struct child_sigpipe *guard);

/*
 * In the forked child, before exec: own process group, PDEATHSIG (checked
 * against worker_pid), every signal disposition back to default and an
 * empty mask (the worker's survive exec otherwise, DESIGN §8), fds[0..2]
 * onto stdin/stdout/stderr, then execvpe(argv[0], argv, envp). On failure
 * writes errno to report_fd (close-on-exec: EOF there means exec worked)
 * and _exits 127. Never returns.
 */
void child_exec(char *const argv[], char *const envp[], const int fds[3], int report_fd,
                pid_t worker_pid) __attribute__((noreturn));

/*
 * A handler's environment, rebuilt rather than inherited (the worker's
 * holds PGWORK_DATABASE_URL, PGPASSWORD and friends): add[0..nadd) (the
 * PGWORK_* entries, "NAME=value"), then the worker's PATH (a default when
 * it has none) and HOME, then those of names[0..nnames) (a queue's `env`)
 * the worker has, each once, the first setting winning. A name
 * config_env_forbidden() refuses is never copied, whatever names holds.
 * A calloc'd, NULL-terminated array the caller frees (the strings are not
 * copied). NULL when out of memory.
 */
char **child_environ(char *const *names, size_t nnames, char *const *add, size_t nadd);

/* Make program output fit for a log line or last_error, in place: NUL and
 * invalid UTF-8 bytes become '?' (a text column rejects them). */
void child_sanitize_text(char *s, size_t n);

/* The fds a handler's wait loop polls, built anew each turn: an fd that is
 * closed (< 0) is simply not added. */
struct poll_set {
    struct pollfd fds[8];
    int count;
};

/* Add fd for events; its index, or -1 when fd < 0 (not added). */
int poll_set_add(struct poll_set *set, int fd, short events);

/* What poll() reported for entry index (0 for -1, an fd not added). */
short poll_set_revents(const struct poll_set *set, int index);

#endif
