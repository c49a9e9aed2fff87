/*
 * limits_caps.c — what queue limits (issue 14: queue.concurrency,
 * queue.rate) cost, in `make bench` (BENCH_ONLY=caps runs these rows
 * alone). Not to be confused with limits.c, the limits pgwork's figures
 * are compared with.
 *
 * Rows, each a ratio of runs interleaved in the same bench run
 * (medians of bench.repeat, at least CAPS_MIN_RUNS, the order rotated
 * each round), bursts of bench.tasks (about two seconds each: the rates
 * nearer a steady state — in 1 s bursts the uncapped queue was still
 * growing its batches: cap 50 ran at 0.80-0.87 of it in bursts of 25,000,
 * 0.78-0.79 in 50,000 and 0.64 in 100,000, 2026-12-03),
 * 4 workers, batch = "auto" (the default), the C no-op co-process:
 *  - an uncapped queue's throughput beside a capped and a rate-limited
 *    queue that have work at the same time, over the same run with no
 *    limit configured: the same tasks in the same three queues, "c" and
 *    "r" without their concurrency and rate (goal >= 0.95) — what the
 *    limits cost the queue beside them. "r" gets twice its rate's budget,
 *    so that half its tasks wait for the budget to return during the
 *    burst (the supervisor's timer wakes them); the cap and the rate are
 *    checked to have held, by the rows' times;
 *  - for scale, no goal: the same over the queue alone, without the other
 *    two queues' tasks (their own work, limited or not, shares the
 *    machine's cores with it);
 *  - a queue capped at 50 with no-op tasks over the same queue uncapped
 *    (goal >= 0.8);
 *  - tuned: the same capped queue served by 2 of the 4 workers
 *    (queue.workers = 2: shares of 25, handoffs twice as large).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "../../shared/text.h"

#define CAPS_DB "bench_caps"
#define CAPS_WORKERS 4
/* The limited queues' tasks in the "beside" burst: "c" (concurrency =
 * CAPS_SIDE_CAP) and "r" (rate = CAPS_SIDE_RATE a second, twice as many
 * tasks: half of them wait for the budget). */
#define CAPS_SIDE_CAP 5
#define CAPS_SIDE_RATE 300
#define CAPS_CAPPED_TASKS 300
#define CAPS_RATED_TASKS (2 * CAPS_SIDE_RATE)
/* Runs of each variant at least (their medians are the figures). */
#define CAPS_MIN_RUNS 7

enum caps_variant {
    CAPS_ALONE,     /* queue "u" only */
    CAPS_BESIDE,    /* "u" beside "c" (capped) and "r" (rate-limited), all with work */
    CAPS_UNLIMITED, /* the same tasks in "u", "c" and "r", no limit configured */
    CAPS_CAP50,     /* the burst in queue "c50", concurrency 50 */
    CAPS_CAP50_TWO, /* the same, "c50" served by 2 of the workers */
    CAPS_VARIANTS,  /* how many */
};

/* Each variant's key in the runs detail and its words in the log. */
static const struct {
    const char *key;
    const char *what;
} caps_variants[CAPS_VARIANTS] = {
    [CAPS_ALONE] = {"alone", "uncapped queue alone"},
    [CAPS_BESIDE] = {"beside", "uncapped beside limited"},
    [CAPS_UNLIMITED] = {"beside unlimited", "uncapped beside the same queues unlimited"},
    [CAPS_CAP50] = {"cap 50", "capped at 50"},
    [CAPS_CAP50_TWO] = {"cap 50, 2 workers", "capped at 50, 2 workers serving"},
};

/* The most tasks of queue running at once by the rows' own times: the
 * running count after each start, the finishes at the same instant
 * counted first (a handoff's finished_at is its successor's started_at);
 * tasks not started yet left out (a task requeued after a start would
 * count as running to the end; no-op tasks are not). */
static int64_t caps_most_running(PGconn *conn, const char *queue)
{
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT coalesce(max(running), 0) FROM ("
             "  SELECT sum(d) OVER (ORDER BY at, d ROWS UNBOUNDED PRECEDING) AS running"
             "  FROM (SELECT started_at AS at, 1 AS d FROM pgwork.tasks"
             "        WHERE queue = '%s' AND started_at IS NOT NULL"
             "        UNION ALL SELECT finished_at, -1 FROM pgwork.tasks"
             "        WHERE queue = '%s' AND finished_at IS NOT NULL) e) s",
             queue, queue);
    return db_int(conn, sql);
}

/* The most starts of queue within one second, both ends included. */
static int64_t caps_busiest_second(PGconn *conn, const char *queue)
{
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT coalesce(max(n), 0) FROM ("
             "  SELECT count(*) OVER (ORDER BY started_at"
             "    RANGE BETWEEN CURRENT ROW AND interval '1 second' FOLLOWING) AS n"
             "  FROM pgwork.tasks WHERE queue = '%s' AND started_at IS NOT NULL) s",
             queue);
    return db_int(conn, sql);
}

/* Tasks/s of the burst's measured queue: its tasks over the time from
 * the INSERT's commit to its last finished_at. */
static double caps_run(enum caps_variant v, int tasks)
{
    char queues[1024];
    const char *noop = bench.noop_bin;
    int n = snprintf(queues, sizeof(queues),
                     "queue \"u\" { handler = \"coprocess\" command = {\"%s\"} }\n", noop);
    bool capped = v == CAPS_CAP50 || v == CAPS_CAP50_TWO;
    bool side = v == CAPS_BESIDE || v == CAPS_UNLIMITED;
    bool limited = v == CAPS_BESIDE;
    char cap_text[32] = "", rate_text[32] = "";
    if (limited) {
        snprintf(cap_text, sizeof(cap_text), " concurrency = %d", CAPS_SIDE_CAP);
        snprintf(rate_text, sizeof(rate_text), " rate = \"%d/1s\"", CAPS_SIDE_RATE);
    }
    if (side)
        snprintf(queues + n, sizeof(queues) - (size_t)n,
                 "queue \"c\" { handler = \"coprocess\" command = {\"%s\"}%s }\n"
                 "queue \"r\" { handler = \"coprocess\" command = {\"%s\"}%s }\n",
                 noop, cap_text, noop, rate_text);
    else if (capped)
        snprintf(
            queues + n, sizeof(queues) - (size_t)n,
            "queue \"c50\" { handler = \"coprocess\" command = {\"%s\"} concurrency = 50%s }\n",
            noop, v == CAPS_CAP50_TWO ? " workers = 2" : "");
    const char *measured = capped ? "c50" : "u";
    char config[2048], name[64];
    snprintf(
        config, sizeof(config),
        "workers { count = %d max = 16 }\nhttp { listen = \"\" }\nlog { level = \"warn\" }\n%s",
        CAPS_WORKERS, queues);
    snprintf(name, sizeof(name), "caps-%d", (int)v);

    PGconn *conn = db_connect(CAPS_DB);
    db_exec(conn, "TRUNCATE pgwork.tasks, pgwork.limit_starts, pgwork.queue_limits");
    db_exec(conn, "CHECKPOINT");
    struct sup sup = {0};
    sup_start(&sup, CAPS_DB, name, config);
    sup_wait_workers(&sup, conn, CAPS_WORKERS);
    char sql[512];
    /* Warm-up: every worker's co-process and connection going. */
    snprintf(sql, sizeof(sql),
             "INSERT INTO pgwork.tasks (queue) SELECT '%s' FROM generate_series(1, 200)", measured);
    db_exec(conn, sql);
    int64_t deadline = mono_ms() + 60000;
    while (db_int(conn, "SELECT count(*) FROM pgwork.tasks WHERE state <> 'done'") > 0) {
        if (mono_ms() > deadline)
            die("caps: warm-up not done within 60 s (see %s)", sup.log_path);
        sleep_ms(20);
    }
    sup_wait_workers(&sup, conn, CAPS_WORKERS);
    int64_t before = db_int(conn, "SELECT coalesce(max(id), 0) FROM pgwork.tasks");
    if (side)
        snprintf(sql, sizeof(sql),
                 "INSERT INTO pgwork.tasks (queue) SELECT 'u' FROM generate_series(1, %d)"
                 " UNION ALL SELECT 'c' FROM generate_series(1, %d)"
                 " UNION ALL SELECT 'r' FROM generate_series(1, %d)",
                 tasks, CAPS_CAPPED_TASKS, CAPS_RATED_TASKS);
    else
        snprintf(sql, sizeof(sql),
                 "INSERT INTO pgwork.tasks (queue) SELECT '%s' FROM generate_series(1, %d)",
                 measured, tasks);
    db_exec(conn, sql);
    int64_t committed = wall_us();
    /* Done when none of the queue's tasks is pending or running: two
     * probes of the partial indexes. (A count of the burst's done rows
     * read every row of it, every 20 ms — up to a third of a core taken
     * from the run it measured, the more the longer the run.) */
    snprintf(sql, sizeof(sql),
             "SELECT (EXISTS (SELECT FROM pgwork.tasks WHERE queue = '%s' AND state = 'pending')"
             " OR EXISTS (SELECT FROM pgwork.tasks WHERE queue = '%s' AND state = 'running'))::int",
             measured, measured);
    deadline = mono_ms() + 600000;
    while (db_int(conn, sql) != 0) {
        if (mono_ms() > deadline)
            die("caps: burst not done within 10 minutes (see %s)", sup.log_path);
        sleep_ms(20);
    }
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM pgwork.tasks WHERE id > %" PRId64 " AND state = 'done'"
             " AND queue = '%s'",
             before, measured);
    int64_t done = db_int(conn, sql);
    if (done != tasks)
        die("caps: %" PRId64 " of the %d tasks done (see %s)", done, tasks, sup.log_path);
    snprintf(sql, sizeof(sql),
             "SELECT (extract(epoch FROM max(finished_at)) * 1000000)::bigint FROM pgwork.tasks"
             " WHERE id > %" PRId64 " AND queue = '%s'",
             before, measured);
    double seconds = (double)(db_int(conn, sql) - committed) / 1e6;
    if (capped) {
        int64_t most = caps_most_running(conn, "c50");
        if (most > 50)
            die("caps: %" PRId64 " c50 tasks running at once (cap 50)", most);
    }
    if (limited) {
        int64_t most = caps_most_running(conn, "c");
        int64_t busiest = caps_busiest_second(conn, "r");
        if (most > CAPS_SIDE_CAP || busiest > CAPS_SIDE_RATE)
            die("caps: beside: %" PRId64 " \"c\" tasks running at once (cap %d), %" PRId64
                " \"r\" starts within a second (rate %d/1s)",
                most, CAPS_SIDE_CAP, busiest, CAPS_SIDE_RATE);
    }
    sup_stop(&sup);
    PQfinish(conn);
    double rate = tasks / seconds;
    say("caps: %s, %d tasks: %.0f tasks/s", caps_variants[v].what, tasks, rate);
    return rate;
}

void measure_queue_limits(void)
{
    db_create(CAPS_DB);
    int tasks = bench.tasks > 1000 ? bench.tasks : 1000;
    /* Runs of ~2 s on a shared machine: seven of each, not bench.repeat's
     * three, for the medians — the runs of one variant span 0.7x to 1.4x
     * of their median (2026-12-03), and with five a median moved by 0.05
     * from one bench run to the next. */
    int runs = bench.repeat > CAPS_MIN_RUNS ? bench.repeat : CAPS_MIN_RUNS;
    double *series[CAPS_VARIANTS];
    for (int v = 0; v < CAPS_VARIANTS; v++)
        if ((series[v] = calloc((size_t)runs, sizeof(double))) == NULL)
            die("out of memory");
    /* Each round runs the variants in an order rotated by one from the
     * round before, so none always runs first: in a fixed order (alone
     * first), the alone runs came out slower than the "beside" ones five
     * rounds of five (2026-12-03: ratio 1.28), and with the order rotated
     * "beside" was 0.91 of alone. */
    for (int i = 0; i < runs; i++)
        for (int k = 0; k < CAPS_VARIANTS; k++) {
            enum caps_variant v = (enum caps_variant)((i + k) % CAPS_VARIANTS);
            series[v][i] = caps_run(v, tasks);
        }
    struct text_buffer raw = {0};
    double median[CAPS_VARIANTS];
    for (int v = 0; v < CAPS_VARIANTS; v++) {
        text_appendf(&raw, "%s%s", v > 0 ? "; " : "", caps_variants[v].key);
        for (int i = 0; i < runs; i++)
            text_appendf(&raw, " %.0f", series[v][i]);
        median[v] = stat_median(series[v], runs);
        free(series[v]);
    }
    char *runs_text = text_take(&raw);
    if (runs_text == NULL)
        die("out of memory");
    result_detail("queue_limits_runs", "%s", runs_text);
    free(runs_text);
    double alone = median[CAPS_ALONE];
    double beside = median[CAPS_BESIDE];
    double unlimited = median[CAPS_UNLIMITED];
    result_section("Queue limits");

    struct row side = {.value = beside, .limit = unlimited, .ratio = beside / unlimited};
    snprintf(side.figure, sizeof(side.figure), "uncapped queue beside limited ones, %d workers",
             CAPS_WORKERS);
    snprintf(side.unit, sizeof(side.unit), "tasks/s");
    snprintf(side.limit_name, sizeof(side.limit_name), "same run, no limit configured");
    snprintf(side.goal, sizeof(side.goal), ">= 0.95x");
    side.verdict = side.ratio >= 0.95 ? GOAL_MET : GOAL_MISSED;
    snprintf(side.note, sizeof(side.note),
             "C no-op co-process, batch auto, %d tasks in \"u\", %d in \"c\" (concurrency = %d) "
             "and %d in \"r\" (rate = \"%d/1s\": half wait for budget) in the same burst, "
             "against the same burst with \"c\" and \"r\" unlimited; cap and rate checked by "
             "the rows' times; runs interleaved in rotated order, median of %d",
             tasks, CAPS_CAPPED_TASKS, CAPS_SIDE_CAP, CAPS_RATED_TASKS, CAPS_SIDE_RATE, runs);
    result_add(&side);

    struct row scale = {.value = beside, .limit = alone, .ratio = beside / alone};
    snprintf(scale.figure, sizeof(scale.figure), "the same, over the queue alone");
    snprintf(scale.unit, sizeof(scale.unit), "tasks/s");
    snprintf(scale.limit_name, sizeof(scale.limit_name), "\"u\" alone, no other queue");
    snprintf(scale.note, sizeof(scale.note),
             "for scale: the other queues' %d tasks share the cores with \"u\" (beside them "
             "unlimited: %.0f tasks/s, %.2fx alone)",
             CAPS_CAPPED_TASKS + CAPS_RATED_TASKS, unlimited, unlimited / alone);
    result_add(&scale);

    struct row cap = {
        .value = median[CAPS_CAP50], .limit = alone, .ratio = median[CAPS_CAP50] / alone};
    snprintf(cap.figure, sizeof(cap.figure), "queue with concurrency = 50, %d workers",
             CAPS_WORKERS);
    snprintf(cap.unit, sizeof(cap.unit), "tasks/s");
    snprintf(cap.limit_name, sizeof(cap.limit_name), "same queue uncapped");
    snprintf(cap.goal, sizeof(cap.goal), ">= 0.8x");
    cap.verdict = cap.ratio >= 0.8 ? GOAL_MET : GOAL_MISSED;
    snprintf(cap.note, sizeof(cap.note),
             "C no-op co-process, batch auto, %d tasks; never more than 50 running by the rows' "
             "times (checked); median of %d",
             tasks, runs);
    result_add(&cap);

    struct row two = {
        .value = median[CAPS_CAP50_TWO], .limit = alone, .ratio = median[CAPS_CAP50_TWO] / alone};
    snprintf(two.figure, sizeof(two.figure),
             "the same queue served by 2 of the %d workers (queue.workers = 2)", CAPS_WORKERS);
    snprintf(two.unit, sizeof(two.unit), "tasks/s");
    snprintf(two.limit_name, sizeof(two.limit_name), "same queue uncapped, 4 workers");
    snprintf(two.note, sizeof(two.note),
             "tuned: shares of 25 instead of 13, each handoff twice as large; the cap checked as "
             "above; median of %d",
             runs);
    result_add(&two);
}
