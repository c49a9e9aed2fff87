/*
 * main.c — runs every integration suite (Check) against the PostgreSQL
 * cluster named by PGHOST/PGPORT/PGUSER, with the binary $PGWORK_BIN;
 * tests/run.sh provides both. Exit status: 0 when every test passed.
 *
 * Check's usual variables select a part: CK_RUN_SUITE=migrate,
 * CK_RUN_CASE="enqueue", CK_FORK=no (debugging), CK_TIMEOUT_MULTIPLIER.
 */
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"
#include "suites.h"

static Suite *(*const suites[])(void) = {
    /* One suite a line: merges stay simple. */
    /* clang-format off */
    migrate_suite,
    protocol_suite,
    failure_suite,
    signals_suite,
    http_suite,
    cli_suite,
    logs_suite,
    coprocess_suite,
    pool_suite,
    edges_suite,
    listener_suite,
    evidence_suite,
    sqlpath_suite,
    pgbouncer_suite,
    race_suite,
    unique_suite,
    schedule_suite,
    status_suite,
    control_suite,
    limits_suite,
    web_suite,
    retention_suite,
    doorbell_suite,
    batching_suite,
    idle_suite,
    /* clang-format on */
};

int main(void)
{
    if (getenv("PGWORK_BIN") == NULL) {
        fprintf(stderr, "integration_tests: PGWORK_BIN is not set; run `make test` "
                        "(tests/run.sh starts PostgreSQL and sets it)\n");
        return EXIT_FAILURE;
    }
    SRunner *runner = srunner_create(NULL);
    for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++)
        srunner_add_suite(runner, suites[i]());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    /* A failed test skips its teardown: drop what it left behind. */
    harness_drop_all_databases();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
