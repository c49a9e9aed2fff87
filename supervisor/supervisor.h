/*
 * supervisor.h — `pgwork run`: the supervisor process (PID 1 in a pod).
 */
#ifndef PGWORK_SUPERVISOR_H
#define PGWORK_SUPERVISOR_H

#include <stddef.h>

#include "../shared/config.h"

/* Run until told to stop. Takes ownership of config. Returns the process
 * exit code. */
int supervisor_run(struct pgwork_config *config);

/* Whether `run` would start with config: 0, or -1 with one line in err
 * (no queue configured). check-config asks the same question, so the two
 * never disagree about a file. */
int supervisor_check_config(const struct pgwork_config *config, char *err, size_t errlen);

#endif
