/*
 * handler_fixture.h — what the exec and coprocess handler unit tests
 * share: a scratch directory, the worker's signal setup, a death pipe, and
 * the queue and env lent to the handler (each test file keeps its own),
 * the command a test runs, a thread that acts once the child says "ready"
 * through a FIFO (an event, not a sleep), and the checks on what the child
 * left behind.
 */
#ifndef PGWORK_TEST_HANDLER_FIXTURE_H
#define PGWORK_TEST_HANDLER_FIXTURE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "../../worker/handler.h"

/* Log level error (the handlers' expected warnings stay quiet); a fresh
 * directory $TMPDIR/<prefix>-XXXXXX into dir; TERM/INT/QUIT blocked and
 * read through a signalfd, as in the worker (DESIGN §8); a death pipe; queue
 * (batch 1, max_attempts 5) and env zeroed and wired together. */
void handler_fixture_setup(const char *prefix, char *dir, size_t dirlen, int death_pipe[2],
                           struct queue_config *queue, struct handler_env *env);

/* Close the signalfd and the death pipe's open ends; remove dir. */
void handler_fixture_teardown(const char *dir, int death_pipe[2], const struct handler_env *env);

/* dir/name (a static buffer). */
const char *handler_fixture_path(const char *dir, const char *name);

/* The whole file dir/name, NUL-terminated (malloc'd); *len gets its size
 * when len is not NULL. NULL if missing. */
char *handler_fixture_slurp(const char *dir, const char *name, size_t *len);

/* queue->command = argv (NULL-terminated), and its count. */
void handler_fixture_command(struct queue_config *queue, char **argv);

/* `/bin/sh -c script sh dir` as queue's command: scripts get the test's
 * directory as $1. */
void handler_fixture_script(struct queue_config *queue, const char *script, const char *dir);

/* A queue without a command: handler's init refuses it (returns -1). */
void handler_fixture_assert_init_needs_command(const struct handler *handler,
                                               struct queue_config *queue, struct handler_env *env);

/* What the thread of handler_fixture_on_ready does once the child is ready. */
enum handler_fixture_ready {
    READY_CLOSE_DEATH_PIPE, /* the supervisor dies: close the death pipe's write end */
    READY_SEND_SIGQUIT,     /* fast shutdown: blocked everywhere, so pending, signalfd readable */
    READY_SEND_SIGTERM,     /* graceful shutdown */
};

/* Make dir/fifo and start a thread that waits until the child has written
 * to it and closed it, then acts; join it at the end of the test. */
pthread_t handler_fixture_on_ready(const char *dir, int death_pipe[2],
                                   enum handler_fixture_ready action);

/* The pid the child wrote into dir/name (there when the handler returned);
 * fails the test if missing or not a pid. */
pid_t handler_fixture_read_pid(const char *dir, const char *name);

/* Become a child subreaper: orphaned grandchildren come to us to be
 * checked and reaped. */
void handler_fixture_subreaper(void);

/* The grandchild pid must be gone: reap it if it was re-parented to us (a
 * subreaper) — then, when killed_only, it must have died by a signal —
 * and check that the pid no longer exists. */
void handler_fixture_assert_gone(pid_t pid, bool killed_only);

#endif
