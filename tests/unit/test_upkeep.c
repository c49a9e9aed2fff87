/* test_upkeep.c — the send contract of the upkeep jobs (supervisor/
 * upkeep.c's table): a job that sends nothing says so (< 0), apart from
 * "libpq refused" (0), and upkeep then hands the listener "nothing due"
 * (0), not the -1 on which it drops a healthy connection. The schedules'
 * claims (ticks.c) and the requeues (requeues.c). No database: the claim's
 * answer is built with libpq's own PGresult constructors, the connection
 * is NULL (libpq refuses anything sent on it). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "supervisor/listener.h"
#include "supervisor/requeues.h"
#include "supervisor/ticks.h"
#include "supervisor/upkeep.h"
#include "suites.h"

/* CLOCK_MONOTONIC ms of the tests' "now"; any value does. */
#define NOW_MS 1000000LL
/* 2026-12-02T00:00:30Z: thirty seconds past a minute's tick. */
#define DB_MS 1796169630000LL

/* A config holding one `every = 60s` schedule "s" and no queues. */
struct one_schedule {
    struct pgwork_config config;
    struct schedule_config schedule;
};

static void one_schedule_init(struct one_schedule *o)
{
    memset(o, 0, sizeof(*o));
    o->schedule = (struct schedule_config){
        .name = "s", .every = "60s", .queue = "q", .payload = "{}", .timezone = "UTC"};
    char why[128] = "";
    ck_assert_msg(schedule_parse_every(60000, &o->schedule.when, why, sizeof(why)) == 0, "%s", why);
    o->config.schedules = &o->schedule;
    o->config.schedule_count = 1;
}

/* The claim statement's answer: tick claimed, first sighting of the
 * schedule (no task made, no previous tick), on time. */
static PGresult *first_sighting(int64_t db_ms, int64_t tick_ms)
{
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    ck_assert_ptr_nonnull(res);
    PGresAttDesc attrs[6] = {{.name = "now", .typid = 20, .typlen = 8},
                             {.name = "task", .typid = 20, .typlen = 8},
                             {.name = "previous", .typid = 20, .typlen = 8},
                             {.name = "claimed", .typid = 16, .typlen = 1},
                             {.name = "last", .typid = 20, .typlen = 8},
                             {.name = "early", .typid = 16, .typlen = 1}};
    ck_assert(PQsetResultAttrs(res, 6, attrs));
    char now_text[24], tick_text[24];
    int now_len = snprintf(now_text, sizeof(now_text), "%lld", (long long)db_ms);
    int tick_len = snprintf(tick_text, sizeof(tick_text), "%lld", (long long)tick_ms);
    ck_assert(PQsetvalue(res, 0, 0, now_text, now_len));
    ck_assert(PQsetvalue(res, 0, 1, NULL, -1));
    ck_assert(PQsetvalue(res, 0, 2, NULL, -1));
    ck_assert(PQsetvalue(res, 0, 3, "t", 1));
    ck_assert(PQsetvalue(res, 0, 4, tick_text, tick_len));
    ck_assert(PQsetvalue(res, 0, 5, "f", 1));
    return res;
}

/* The schedule's tick claimed, the next one half a minute away: asked to
 * send anyway, it sends nothing and says so (< 0), apart from the refusal
 * (0) of the claim before. */
START_TEST(test_nothing_due_is_not_a_refusal)
{
    struct one_schedule o;
    one_schedule_init(&o);
    struct ticks t;
    ticks_init(&t, &o.config, "pod:1");
    int64_t offset = DB_MS - NOW_MS;

    /* At start the newest due tick goes at once; a NULL conn refuses it. */
    ck_assert_int_le(ticks_due(&t, NOW_MS, true, offset), NOW_MS);
    ck_assert_int_eq(ticks_send(&t, NULL, NOW_MS, offset), 0);
    int64_t db_ms;
    PGresult *res = first_sighting(DB_MS, DB_MS - 30000);
    ticks_on_result(&t, res, true, NOW_MS, &db_ms);
    PQclear(res);
    ticks_on_end(&t);
    ck_assert_int_eq(db_ms, DB_MS);
    ck_assert_int_eq(ticks_at(&t, 0)->settled_ms, DB_MS - 30000);

    ck_assert_int_eq(ticks_due(&t, NOW_MS, true, offset), NOW_MS + 30000);
    int sent = ticks_send(&t, NULL, NOW_MS, offset);
    ck_assert_msg(sent < 0, "nothing due, ticks_send returned %d (0 reads as libpq refused)", sent);
    ticks_free(&t);
}
END_TEST

/* The database's clock past the last time a schedule can have a tick
 * (SCHEDULE_TIME_MAX_MS): due at start, but there is no tick to claim; the
 * schedule stops, and nothing was sent, then or after. */
START_TEST(test_no_tick_to_claim_sends_nothing)
{
    struct one_schedule o;
    one_schedule_init(&o);
    struct ticks t;
    ticks_init(&t, &o.config, "pod:1");
    int64_t offset = SCHEDULE_TIME_MAX_MS + 1000 - NOW_MS;

    ck_assert_int_le(ticks_due(&t, NOW_MS, true, offset), NOW_MS);
    int sent = ticks_send(&t, NULL, NOW_MS, offset);
    ck_assert_msg(sent < 0, "no tick to claim, ticks_send returned %d (0 reads as libpq refused)",
                  sent);
    ck_assert_int_eq(ticks_due(&t, NOW_MS, true, offset), INT64_MAX);
    sent = ticks_send(&t, NULL, NOW_MS + 1000, offset);
    ck_assert_msg(sent < 0, "schedule stopped, ticks_send returned %d", sent);
    ticks_free(&t);
}
END_TEST

/* As the listener sees it: its client (upkeep) was due — the schedule's
 * claim — and sent nothing, so "nothing due" (0), not -1, on which the
 * listener drops its connection as broken and reconnects. */
START_TEST(test_upkeep_tells_the_listener_nothing_was_due)
{
    struct one_schedule o;
    one_schedule_init(&o);
    struct ticks t;
    ticks_init(&t, &o.config, "pod:1");
    struct listener *l = calloc(1, sizeof(*l));
    ck_assert_ptr_nonnull(l);
    listener_clock_sample(l, SCHEDULE_TIME_MAX_MS + 1000, NOW_MS, NOW_MS);
    struct upkeep u;
    const struct upkeep_callbacks callbacks = {0};
    upkeep_init(&u, &o.config, l, &callbacks, NULL);
    upkeep_set_ticks(&u, &t);

    ck_assert_int_le(l->client.next_due(l->client_ctx, NOW_MS), NOW_MS);
    int sent = l->client.send(l->client_ctx, NULL, NOW_MS);
    ck_assert_msg(sent == 0, "upkeep sent nothing and returned %d (-1: libpq refused)", sent);
    ck_assert_int_eq(l->client.next_due(l->client_ctx, NOW_MS), INT64_MAX);

    upkeep_free(&u);
    ticks_free(&t);
    free(l);
}
END_TEST

/* The scheduler's turns (upkeep_turn): a job due all the time — the
 * doorbell's probes in a storm, each slower than its hold on a loaded
 * database — does not keep a later job from its turn for more than
 * UPKEEP_STARVE_MS and a statement (make soak fell behind in 3 runs of 9
 * under the first-due rule, retention after the doorbell in the table);
 * the lease renewals still go first; and with nobody
 * kept waiting, the table's order holds. */
START_TEST(test_a_job_due_all_the_time_does_not_starve_the_rest)
{
    enum { RENEW, ALWAYS, LATER, JOBS };
    int64_t waiting[JOBS] = {INT64_MAX, INT64_MAX, INT64_MAX};
    int64_t due[JOBS] = {INT64_MAX, 0, NOW_MS};
    int64_t now = NOW_MS;
    /* Each statement of ALWAYS takes 30 ms; it is due again at once. */
    int later_at = -1;
    for (int turn = 0; turn < 10 && later_at < 0; turn++, now += 30) {
        int j = upkeep_turn(due, waiting, JOBS, now);
        ck_assert_int_ne(j, -1);
        if (j == LATER)
            later_at = turn;
    }
    ck_assert_msg(later_at >= 0, "a due job never got its turn behind one due all the time");
    ck_assert_int_le((int64_t)later_at * 30, UPKEEP_STARVE_MS + 30);

    /* Renewals first, however long the others waited. */
    int64_t waited[JOBS] = {INT64_MAX, NOW_MS - 10 * UPKEEP_STARVE_MS, NOW_MS - UPKEEP_STARVE_MS};
    int64_t all_due[JOBS] = {NOW_MS, NOW_MS, NOW_MS};
    ck_assert_int_eq(upkeep_turn(all_due, waited, JOBS, NOW_MS), RENEW);

    /* Nobody kept waiting: the first due in the table's order. */
    int64_t fresh[JOBS] = {INT64_MAX, INT64_MAX, INT64_MAX};
    int64_t two_due[JOBS] = {INT64_MAX, NOW_MS, NOW_MS - 5};
    ck_assert_int_eq(upkeep_turn(two_due, fresh, JOBS, NOW_MS), ALWAYS);
    int64_t none_due[JOBS] = {INT64_MAX, NOW_MS + 1, INT64_MAX};
    ck_assert_int_eq(upkeep_turn(none_due, fresh, JOBS, NOW_MS), -1);
}
END_TEST

/* Asked to send with no requeue queued: nothing sent, and no entry read
 * that is not there (the FIFO's index -1). */
START_TEST(test_requeues_nothing_due_sends_nothing)
{
    struct requeues q;
    requeues_init(&q);
    ck_assert_int_eq(requeues_stop_due(&q, NOW_MS), INT64_MAX);
    ck_assert_int_eq(requeues_due(&q, NOW_MS), INT64_MAX);
    ck_assert_int_lt(requeues_stop_send(&q, NULL, NOW_MS), 0);
    ck_assert_int_lt(requeues_send(&q, NULL, NOW_MS, "{}", "{}"), 0);

    requeues_free(&q);
}
END_TEST

Suite *upkeep_suite(void)
{
    Suite *s = suite_create("upkeep");
    TCase *tc = tcase_create("send");
    tcase_add_test(tc, test_nothing_due_is_not_a_refusal);
    tcase_add_test(tc, test_no_tick_to_claim_sends_nothing);
    tcase_add_test(tc, test_upkeep_tells_the_listener_nothing_was_due);
    tcase_add_test(tc, test_requeues_nothing_due_sends_nothing);
    tcase_add_test(tc, test_a_job_due_all_the_time_does_not_starve_the_rest);
    suite_add_tcase(s, tc);
    return s;
}
