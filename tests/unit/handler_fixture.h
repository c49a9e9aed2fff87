/*
 * handler_fixture.h — what the exec and coprocess handler unit tests
 * share: a scratch directory, the worker's signal setup, a death pipe, and
 * the queue and env lent to the handler (each test file keeps its own).
 */
#ifndef PGWORK_TEST_HANDLER_FIXTURE_H
#define PGWORK_TEST_HANDLER_FIXTURE_H

#include <stddef.h>

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

#endif
