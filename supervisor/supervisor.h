/*
 * supervisor.h — `pgwork run`: the supervisor process (PID 1 in a pod).
 */
#ifndef PGWORK_SUPERVISOR_H
#define PGWORK_SUPERVISOR_H

#include "../shared/config.h"

/* Run until told to stop. Takes ownership of config. Returns the process
 * exit code. */
int supervisor_run(struct pgwork_config *config);

#endif
