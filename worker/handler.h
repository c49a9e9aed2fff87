/*
 * handler.h — the interface every task handler implements (DESIGN §3).
 *
 * A handler is three functions: init (once per worker and queue, after the
 * worker has connected), run (one task), fini. A new kind of handler is one
 * file plus one line in handler_for_kind(). Handlers never touch shared
 * memory and never decide retries: they report an outcome and an error
 * text; the worker records it.
 */
#ifndef PGWORK_HANDLER_H
#define PGWORK_HANDLER_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "../shared/config.h"

/* Bytes of handler output / error text kept for last_error. */
#define HANDLER_ERROR_MAX 4096

struct task {
    int64_t id;
    const char *payload; /* the task's jsonb as text */
    int attempt;         /* 1 for the first run */
    int max_attempts;    /* after defaults */
};

enum handler_outcome {
    HANDLER_OK,        /* succeeded; the worker marks the task done */
    HANDLER_DONE,      /* succeeded and already marked done in the handler's
                          own transaction (sql handler) */
    HANDLER_FAILED,    /* failed: error holds why; retried or dead */
    HANDLER_ABORTED,   /* interrupted by fast shutdown or parent death, or
                          its connection broke before it started: the task is
                          released untried (not counted as failed) */
    HANDLER_CANCELLED, /* stopped because the task was cancelled (pgwork.cancel,
                          which already made it `cancelled`): nothing to record */
};

/*
 * What the worker lends a handler while it runs: the worker's connection
 * and a way to notice shutdown signals and the supervisor's death while a
 * task runs.
 */
struct handler_env {
    PGconn *conn;
    const struct queue_config *queue;
    const char *locked_by; /* this worker's lock owner tag */
    bool keep_done;
    int death_fd;         /* readable (EOF) when the supervisor has died; -1 = none */
    int signal_fd;        /* the worker's non-blocking signalfd; pass to
                             handler_env_poll_signals; -1 = none */
    bool stop_requested;  /* SIGTERM/SIGINT seen: finish this task, then stop */
    bool abort_requested; /* SIGQUIT seen or supervisor gone: give up now */
    int batch_index;      /* send_in_transaction: the task's place in its batch */
    /* Cancellation (pgwork.cancel): the worker sets task_id (the task run()
     * runs, 0 = none) and is_cancelled (whether a task was cancelled; NULL
     * = never); SIGUSR2 says "look", and handler_env_poll_signals then sets
     * cancel_requested when task_id is cancelled. */
    int64_t task_id;
    bool (*is_cancelled)(void *arg, int64_t task_id);
    void *cancel_arg;
    bool cancel_signalled; /* SIGUSR2 seen, not looked into yet */
    bool cancel_requested; /* task_id was cancelled: stop it now */
};

/* Read every pending signal from env->signal_fd and set stop_requested /
 * abort_requested, and cancel_requested when a SIGUSR2 came and env->task_id
 * is cancelled. Call when signal_fd is readable. */
void handler_env_poll_signals(struct handler_env *env);

/* Check death_fd without blocking; sets abort_requested when it is
 * readable. */
void handler_env_check_parent(struct handler_env *env);

/* A handler's run starts with this: it empties error, then checks
 * abort_requested. True, with "aborted before start" in error, when a
 * QUIT or the supervisor's death came first (the run then returns
 * HANDLER_ABORTED: no task is started only to be killed at once); false
 * otherwise, error left empty. */
bool handler_env_clear_error_and_check_abort(const struct handler_env *env, char *error,
                                             size_t errlen);

/* What a handler's wait loop must do after a poll() that watched
 * env->death_fd (while *watch_death) and env->signal_fd. */
enum handler_interrupt {
    HANDLER_RUN_ON,      /* nothing, or a graceful TERM/INT: the task runs on */
    HANDLER_STOP_DEATH,  /* the supervisor died: stop the child now */
    HANDLER_STOP_ABORT,  /* a QUIT (fast shutdown) just arrived: stop it */
    HANDLER_STOP_CANCEL, /* the task was just cancelled (pgwork.cancel): stop it */
};

/* Read what death_revents / signal_revents (poll's revents for those two
 * fds, 0 if not polled) announce. On the supervisor's death sets
 * abort_requested and clears *watch_death (the pipe stays readable). */
enum handler_interrupt handler_env_interrupt(struct handler_env *env, short death_revents,
                                             short signal_revents, bool *watch_death);

/* What a handler's init returns (STYLE §6: only a configuration problem
 * may retire a worker's slot). */
enum handler_init {
    HANDLER_INIT_OK = 0,
    HANDLER_INIT_CONFIG = -1, /* the queue's configuration cannot work: the worker
                                 exits "fatal, do not respawn" (until a HUP) */
    HANDLER_INIT_AGAIN = -2,  /* a passing failure (the database timed out, the
                                 connection dropped): exit, restarted with backoff */
};

struct handler {
    const char *name;
    /* An enum handler_init, after logging why when not OK. */
    int (*init)(struct handler_env *env, void **state);
    enum handler_outcome (*run)(void *state, struct handler_env *env, const struct task *task,
                                char *error, size_t errlen);
    void (*fini)(void *state);
    /* run() uses the worker's connection (env->conn): the worker finishes
     * recording earlier tasks first. */
    bool uses_connection;
    /*
     * Optional (NULL for most handlers): send the task's work into the
     * worker's open transaction, the one that will mark the claimed batch
     * done — one transaction a batch, not a task (DESIGN §2: the sql
     * handler's effect and its `done` commit together). The connection is
     * in pipeline mode: send one query and return 0 (-1 if it could not be
     * sent); the worker reads its result. env->batch_index is the task's
     * place in the batch: the first may leave in the transaction what the
     * others reuse (the unnamed statement). When any task's query fails, the
     * transaction is rolled back and the worker runs the batch again one
     * task at a time with run().
     */
    int (*send_in_transaction)(void *state, struct handler_env *env, const struct task *task);
};

const struct handler *handler_for_kind(enum handler_kind kind);

extern const struct handler handler_exec;
extern const struct handler handler_sql;
extern const struct handler handler_coprocess;

#endif
