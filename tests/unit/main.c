/* main.c — runs every unit-test suite (Check); exit status = failures. */
#include <stdlib.h>

#include "suites.h"

int main(void)
{
    SRunner *runner = srunner_create(config_suite());
    srunner_add_suite(runner, config_keys_suite());
    srunner_add_suite(runner, timeutil_suite());
    srunner_add_suite(runner, log_suite());
    srunner_add_suite(runner, shm_suite());
    srunner_add_suite(runner, exec_handler_suite());
    srunner_add_suite(runner, coprocess_suite());
    srunner_add_suite(runner, pool_suite());
    srunner_add_suite(runner, child_env_suite());
    srunner_add_suite(runner, child_suite());
    srunner_add_suite(runner, resolver_suite());
    srunner_add_suite(runner, schedule_suite());
    srunner_add_suite(runner, text_suite());
    srunner_add_suite(runner, control_suite());
    srunner_add_suite(runner, retention_suite());
    srunner_add_suite(runner, batch_size_suite());
    srunner_add_suite(runner, upkeep_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
