/*
 * test_status.c — the SIGUSR1 status lines as an operator reads them: a
 * worker stuck in one task shows a heartbeat age that keeps growing, so a
 * hung worker can be told from a busy one.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

struct worker_status {
    bool found;
    char state[16];
    int64_t task;
    bool has_age;
    int64_t age_ms;
};

/* SIGUSR1, then the status line of worker `slot`. */
static struct worker_status status_of(struct harness_supervisor *sup, int slot)
{
    size_t before = strlen(harness_stderr_text(sup));
    ck_assert_int_eq(kill(sup->pid, SIGUSR1), 0);
    int64_t deadline = harness_now_ms() + 5000;
    while (strstr(harness_stderr_text(sup) + before, "status queue ") == NULL) {
        ck_assert_msg(harness_now_ms() < deadline, "no status output within 5 s of SIGUSR1");
        usleep(5000);
    }
    struct worker_status st = {0};
    const char *want = harness_printf("status worker %d: ", slot);
    const char *line = strstr(harness_stderr_text(sup) + before, want);
    if (line == NULL)
        return st;
    const char *end = strchr(line, '\n');
    size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
    char *copy = strndup(line, len);
    const char *p;
    st.found = true;
    if ((p = strstr(copy, " state=")) != NULL)
        sscanf(p, " state=%15s", st.state);
    if ((p = strstr(copy, " task=")) != NULL)
        st.task = strtoll(p + 6, NULL, 10);
    if ((p = strstr(copy, " heartbeat_age_ms=")) != NULL) {
        char *num_end;
        st.age_ms = strtoll(p + 18, &num_end, 10);
        st.has_age = num_end != p + 18;
    }
    free(copy);
    return st;
}

START_TEST(hung_worker_heartbeat_age_grows)
{
    const char *conninfo = harness_db_create(NULL);
    ck_assert_int_eq(harness_migrate(conninfo), 0);
    PGconn *conn = harness_connect(conninfo);
    const char *config =
        harness_write_config("workers { count = 1 }\n"
                             "log { level = \"info\" format = \"text\" }\n"
                             "http { listen = \"\" }\n"
                             "queue \"stuck\" { command = {\"/bin/sleep\", \"60\"}\n"
                             "                timeout = 120s }\n");
    struct harness_supervisor *sup = harness_spawn_supervisor(config, conninfo);
    if (!harness_stderr_wait_for(sup, "listening on channel", 15000)) {
        harness_stderr_dump(sup);
        ck_abort_msg("the supervisor did not listen within 15 s");
    }

    /* Idle: the worker has been through its loop, so it has an age. */
    int64_t deadline = harness_now_ms() + 10000;
    struct worker_status st = status_of(sup, 0);
    while (!(st.found && strcmp(st.state, "idle") == 0)) {
        ck_assert_msg(harness_now_ms() < deadline, "worker 0 not idle within 10 s");
        usleep(20000);
        st = status_of(sup, 0);
    }
    ck_assert_msg(st.has_age && st.age_ms >= 0, "idle worker without a heartbeat age");

    int64_t id =
        harness_query_int64(conn, "INSERT INTO pgwork.tasks (queue) VALUES ('stuck') RETURNING id");
    deadline = harness_now_ms() + 10000;
    st = status_of(sup, 0);
    while (!(st.task == id && strcmp(st.state, "busy") == 0)) {
        ck_assert_msg(harness_now_ms() < deadline, "worker 0 not running task %" PRId64, id);
        usleep(20000);
        st = status_of(sup, 0);
    }
    ck_assert(st.has_age);
    int64_t first = st.age_ms;

    /* Still in the same task, it makes no progress: the age grows by the
     * time that passes (1 s here; generous bounds under load). */
    int64_t waited_from = harness_now_ms();
    deadline = waited_from + 15000;
    do {
        ck_assert_msg(harness_now_ms() < deadline, "heartbeat age stayed near %" PRId64 " ms",
                      st.age_ms);
        usleep(100000);
        st = status_of(sup, 0);
        ck_assert_int_eq(st.task, id);
        ck_assert_str_eq(st.state, "busy");
        ck_assert(st.has_age);
    } while (st.age_ms < first + 1000);
    ck_assert_int_le(st.age_ms, first + (harness_now_ms() - waited_from) + 1000);

    ck_assert_int_eq(harness_stop_supervisor(sup, SIGQUIT, 20000), 0);
    harness_disconnect(conn);
}
END_TEST

Suite *status_suite(void)
{
    Suite *s = suite_create("status");
    TCase *tc = harness_tcase("heartbeat");
    tcase_add_test(tc, hung_worker_heartbeat_age_grows);
    suite_add_tcase(s, tc);
    return s;
}
