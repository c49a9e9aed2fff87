/* suites.h — every Check suite of the unit tests; main.c runs them all. */
#ifndef PGWORK_TEST_SUITES_H
#define PGWORK_TEST_SUITES_H

#include <check.h>

Suite *config_suite(void);
Suite *config_keys_suite(void);
Suite *timeutil_suite(void);
Suite *log_suite(void);
Suite *shm_suite(void);
Suite *exec_handler_suite(void);
Suite *coprocess_suite(void);
Suite *pool_suite(void);
Suite *child_env_suite(void);
Suite *child_suite(void);
Suite *resolver_suite(void);
Suite *schedule_suite(void);
Suite *text_suite(void);
Suite *control_suite(void);
Suite *retention_suite(void);
Suite *batch_size_suite(void);
Suite *upkeep_suite(void);

#endif
