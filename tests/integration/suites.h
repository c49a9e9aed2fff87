/*
 * suites.h — every Check suite of the integration tests; main.c runs them
 * all. Adding a suite: write tests/integration/test_X.c with a
 * `Suite *X_suite(void)` built from harness_tcase(), declare it here and add
 * it to the table in main.c.
 */
#ifndef PGWORK_INTEGRATION_SUITES_H
#define PGWORK_INTEGRATION_SUITES_H

#include <check.h>

Suite *migrate_suite(void);   /* pgwork migrate, enqueue, the notify trigger */
Suite *protocol_suite(void);  /* wake-up protocol and task lifecycle, end to end */
Suite *failure_suite(void);   /* the failure model (DESIGN §6): crashes, outages, signals */
Suite *signals_suite(void);   /* TTIN/TTOU, HUP, TSTP/CONT, also as PID 1 */
Suite *http_suite(void);      /* /healthz, /readyz, /metrics */
Suite *cli_suite(void);       /* pgwork status, requeue-dead, the command line */
Suite *logs_suite(void);      /* every log line is JSON; passwords never logged */
Suite *coprocess_suite(void); /* the coprocess handler with the examples/ co-processes */
Suite *pool_suite(void);      /* the worker pool: scaling down, lock tags, fds after fork */
Suite *edges_suite(void);     /* hostile edges: handler environment, slow HTTP clients */
Suite *listener_suite(void);  /* the supervisor's connection: stalls, lease and due timers */
Suite *evidence_suite(void);  /* properties other tests only seemed to prove (sql exactly-once) */
Suite *sqlpath_suite(void);   /* the sql path under attack: killed backends, long statements */
Suite *pgbouncer_suite(void); /* workers and migrate behind a real PgBouncer */
Suite *race_suite(void);      /* interleavings forced step by step: a dead worker's sql attempt */
Suite *unique_suite(void);    /* unique keys: one live task per (queue, key), however enqueued */
Suite *
schedule_suite(void); /* schedules: one task per tick across pods, missed ticks, check-config */
Suite *control_suite(void);   /* pause/resume and cancel (migration 0011), with two pods */
Suite *status_suite(void);    /* the SIGUSR1 status lines: a hung worker shows */
Suite *limits_suite(void);    /* concurrency caps and rate limits, held across pods */
Suite *web_suite(void);       /* pgwork web: pages, API, auth, escaping, pagination */
Suite *retention_suite(void); /* finished tasks deleted after retention */
Suite *doorbell_suite(void);  /* the doorbell: arms, rings, probes, several pods */
Suite *batching_suite(void);  /* batch = "auto": claim sizes, no hoarding */
Suite *idle_suite(void);      /* an idle pod's statements, from the statement log */

#endif
