/*
 * web.h — `pgwork web`: the dashboard, a process of its own (never the
 * supervisor's loop: its queries would stall signals and probes there).
 */
#ifndef PGWORK_WEB_WEB_H
#define PGWORK_WEB_WEB_H

#include "../shared/config.h"

/* Serve until SIGTERM or SIGINT; the exit code (EXIT_OK, EXIT_CONFIG for a
 * missing token or a bad web.listen, EXIT_FAILURE_GENERIC if it cannot
 * listen). */
int web_main(const struct pgwork_config *config);

#endif
