/*
 * producers.c — what a served queue's producers pay for notifications
 * (issue 12 items 1 and 5): 8 pgbench clients doing single-row INSERTs
 * into a queue that a pod of 4 workers (default settings, the sql no-op
 * handler) drains while they insert,
 *
 *  - with notifications (what a new user gets), and
 *  - with `SET pgwork.notify = off` for the producers and one manual ring
 *    every 100 ms (`SELECT pg_notify(pgwork.notify_channel(), ...)`), so
 *    that the pod drains concurrently in both runs and they share the CPU
 *    alike (without the ring the pod would wait for its safety poll and
 *    the producers would have the machine to themselves).
 *
 * The ratio of the two is the figure. A connection LISTENing on the task
 * channel counts the notifications each storm sent (minus the manual
 * rings). The runs alternate, BENCH_REPEAT of each; medians.
 *
 * Then, after each storm with notifications, isolated tasks into the pod
 * once it has been quiet for a second: their pickup (the doorbell's arm
 * must come back after its storm hold-off), beside the same pod's pickup
 * before any storm.
 *
 * The doorbell's hook: storm_listen_extra() and storm_arm_writes() below
 * add the channels its trigger rings (each pod's own, from pgwork.doorbell)
 * and count the arm/disarm writes its pods make (pg_stat_statements).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define PRODUCERS_DB "bench_producers"
#define PRODUCERS_CLIENTS 8
#define PRODUCERS_QUEUE "served"
#define RING_INTERVAL_MS 100
/* Pickup after a storm: this many isolated tasks, PICKUP_GAP_MS apart,
 * the first PICKUP_AFTER_MS after the storm's last insert. */
#define PICKUP_SAMPLES 50
#define PICKUP_GAP_MS 20
#define PICKUP_AFTER_MS 1000

/* --- the doorbell's hook ------------------------------------------------------ */

/* More channels for the counting connection to LISTEN on (the doorbell's
 * per-pod channels, say); the task channel is always counted. */
static void storm_listen_extra(PGconn *listener)
{
    /* The pods' ring channels (migration 0008), as their arms name them. */
    PGresult *res = PQexec(listener, "SELECT DISTINCT quote_ident(channel) FROM pgwork.doorbell");
    if (PQresultStatus(res) == PGRES_TUPLES_OK)
        for (int i = 0; i < PQntuples(res); i++) {
            char listen[128];
            snprintf(listen, sizeof(listen), "LISTEN %s", PQgetvalue(res, i, 0));
            db_exec(listener, listen);
        }
    PQclear(res);
}

/* The pods' arm/disarm writes so far, from the database (-1: not
 * measured — no doorbell yet). Read before and after each storm. */
static int64_t storm_arm_writes(PGconn *conn)
{
    /* supervisor/doorbell.c's write statement begins "WITH gone AS";
     * pg_stat_statements counts it as it commits (tests/pg.sh loads it). */
    PGresult *res = PQexec(conn, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (!ok)
        return -1;
    return db_int(conn, "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements s"
                        " JOIN pg_database d ON d.oid = s.dbid"
                        " WHERE d.datname = current_database() AND s.query LIKE 'WITH gone AS%'");
}

/* --- counting and ringing ------------------------------------------------------- */

struct storm_threads {
    PGconn *listener; /* LISTENs on the task channel (and the hook's) */
    PGconn *ringer;   /* rings by hand (the notify-off run) */
    bool ring;
    atomic_bool stop;      /* the counter's */
    atomic_bool stop_ring; /* the ringer's */
    int64_t received;      /* notifications the listener got */
    int64_t rings;         /* manual rings sent */
};

static void *storm_count(void *arg)
{
    struct storm_threads *t = arg;
    struct pollfd pfd = {.fd = PQsocket(t->listener), .events = POLLIN};
    while (!atomic_load(&t->stop)) {
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        if (!PQconsumeInput(t->listener))
            die("producers: listener: %s", PQerrorMessage(t->listener));
        PGnotify *n;
        while ((n = PQnotifies(t->listener)) != NULL) {
            PQfreemem(n);
            t->received++;
        }
    }
    return NULL;
}

static void *storm_ring(void *arg)
{
    struct storm_threads *t = arg;
    while (!atomic_load(&t->stop_ring)) {
        int64_t t0 = mono_ms();
        db_exec(t->ringer, "SELECT pg_notify(pgwork.notify_channel(), "
                           "pgwork.notify_message('" PRODUCERS_QUEUE "', now()))");
        t->rings++;
        int64_t spent = mono_ms() - t0;
        sleep_ms(spent < RING_INTERVAL_MS ? RING_INTERVAL_MS - spent : 0);
    }
    return NULL;
}

struct storm {
    double inserts_per_s;
    int64_t notifications; /* sent by the producers' inserts (manual rings not counted) */
    int64_t rings;
    int64_t backlog;     /* tasks pending when the storm ended: did the pod keep up? */
    double arm_writes_s; /* NAN: not measured */
    int64_t ended_ms;    /* mono_ms() when the last insert was done */
};

/* Wait until the pod has drained everything (between storms). */
static void storm_drain(PGconn *conn, const struct sup *sup)
{
    int64_t deadline = mono_ms() + 120000;
    while (db_int(conn, "SELECT count(*) FROM pgwork.tasks WHERE state IN ('pending', 'running')") >
           0) {
        if (mono_ms() > deadline)
            die("producers: the pod did not drain within 120 s (see %s)", sup->log_path);
        sleep_ms(50);
    }
}

static void storm_run(PGconn *conn, const struct sup *sup, bool notify, struct storm *out)
{
    db_exec(conn, "TRUNCATE pgwork.tasks");
    db_exec(conn, "CHECKPOINT");
    const char *script = write_file(
        "producers.sql", "INSERT INTO pgwork.tasks (queue) VALUES ('" PRODUCERS_QUEUE "');\n");
    struct storm_threads t = {.listener = db_connect(PRODUCERS_DB), .ring = !notify};
    PGresult *res = PQexec(t.listener, "SELECT quote_ident(pgwork.notify_channel())");
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        die("producers: channel: %s", PQerrorMessage(t.listener));
    char listen[256];
    snprintf(listen, sizeof(listen), "LISTEN %s", PQgetvalue(res, 0, 0));
    PQclear(res);
    db_exec(t.listener, listen);
    storm_listen_extra(t.listener);
    if (t.ring)
        t.ringer = db_connect(PRODUCERS_DB);
    int64_t arms0 = storm_arm_writes(conn);

    pthread_t counter, ringer;
    if (pthread_create(&counter, NULL, storm_count, &t) != 0 ||
        (t.ring && pthread_create(&ringer, NULL, storm_ring, &t) != 0))
        die("pthread_create failed");
    int64_t t0 = mono_ms();
    out->inserts_per_s = pgbench_tps(PRODUCERS_DB, script, PRODUCERS_CLIENTS, "-T",
                                     bench.enqueue_seconds, notify ? NULL : "-c pgwork.notify=off",
                                     notify ? "producers-on" : "producers-off");
    out->ended_ms = mono_ms();
    double seconds = (double)(out->ended_ms - t0) / 1000.0;
    out->backlog = db_int(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = 'pending'");
    int64_t arms1 = storm_arm_writes(conn);
    if (t.ring) { /* no ring after the storm: it would be counted as the storm's */
        atomic_store(&t.stop_ring, true);
        pthread_join(ringer, NULL);
    }
    sleep_ms(200); /* notifications in flight reach the listener */
    atomic_store(&t.stop, true);
    pthread_join(counter, NULL);
    out->rings = t.rings;
    out->notifications = t.received - t.rings;
    out->arm_writes_s = arms0 >= 0 && arms1 >= 0 ? (double)(arms1 - arms0) / seconds : NAN;
    PQfinish(t.listener);
    if (t.ringer != NULL)
        PQfinish(t.ringer);
    storm_drain(conn, sup);
    say("producers, notifications %s: %.0f inserts/s, %" PRId64 " notifications, %" PRId64
        " rings, backlog %" PRId64 " at the end",
        notify ? "on" : "off + a ring every 100 ms", out->inserts_per_s, out->notifications,
        out->rings, out->backlog);
}

/*
 * n isolated tasks (payload {"pickup": true}: the handler records when it
 * started them, in table pickup), PICKUP_GAP_MS apart; their pickup
 * latencies (handler start - the insert's COMMIT returned) into lat.
 */
static void pickup_after(PGconn *conn, int n, double *lat)
{
    db_exec(conn, "TRUNCATE pickup");
    int64_t ids[PICKUP_SAMPLES], committed[PICKUP_SAMPLES];
    for (int i = 0; i < n; i++) {
        int64_t t0 = mono_ms();
        PGresult *res =
            PQexec(conn, "INSERT INTO pgwork.tasks (queue, payload) VALUES ('" PRODUCERS_QUEUE
                         "', '{\"pickup\": true}') RETURNING id");
        committed[i] = wall_us();
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            die("producers: pickup insert: %s", PQerrorMessage(conn));
        ids[i] = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
        int64_t spent = mono_ms() - t0;
        sleep_ms(spent < PICKUP_GAP_MS ? PICKUP_GAP_MS - spent : 0);
    }
    pickup_collect(conn, n, ids, committed, lat);
}

/* A row held to a goal of at most `goal` (in unit), stated as goal_text;
 * the note from fmt. */
static void goal_row(const char *figure, const char *unit, double value, double goal,
                     const char *goal_text, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static void goal_row(const char *figure, const char *unit, double value, double goal,
                     const char *goal_text, const char *fmt, ...)
{
    struct row row = {.value = value, .limit = goal, .ratio = value / goal};
    snprintf(row.figure, sizeof(row.figure), "%s", figure);
    snprintf(row.unit, sizeof(row.unit), "%s", unit);
    snprintf(row.limit_name, sizeof(row.limit_name), "goal");
    snprintf(row.goal, sizeof(row.goal), "%s", goal_text);
    row.verdict = value <= goal ? GOAL_MET : GOAL_MISSED;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(row.note, sizeof(row.note), fmt, ap);
    va_end(ap);
    result_add(&row);
}

/* The pickup rows: p50 and p99 of the samples after the storms (pooled),
 * beside the same pod's before any storm. */
static void pickup_rows(double floor_p50_ms, double *quiet, double *after, int runs)
{
    int n = runs * PICKUP_SAMPLES;
    double q50 = stat_percentile(quiet, PICKUP_SAMPLES, 50);
    double q99 = stat_percentile(quiet, PICKUP_SAMPLES, 99);
    double a50 = stat_percentile(after, n, 50), a99 = stat_percentile(after, n, 99);
    double amax = stat_percentile(after, n, 100);
    result_detail("producers_pickup_quiet_after_p50_p99_max_ms", "%.3f/%.3f, %.3f/%.3f/%.3f", q50,
                  q99, a50, a99, amax);
    double floor = isnan(floor_p50_ms) ? 0 : floor_p50_ms;
    double bound = floor + 0.5;
    struct row row = {.value = a50, .limit = bound, .ratio = a50 / bound};
    snprintf(row.figure, sizeof(row.figure), "pickup right after a producer storm, p50");
    snprintf(row.unit, sizeof(row.unit), "ms");
    snprintf(row.limit_name, sizeof(row.limit_name), "NOTIFY floor p50 + 0.5 ms");
    snprintf(row.goal, sizeof(row.goal), "<= floor + 0.5 ms");
    row.verdict = a50 <= bound ? GOAL_MET : GOAL_MISSED;
    snprintf(row.note, sizeof(row.note),
             "%d isolated tasks %d ms apart from %d ms after each storm's end (notify on), %d "
             "storms pooled; the same pod before any storm: p50 %.2f ms, p99 %.2f ms%s",
             PICKUP_SAMPLES, PICKUP_GAP_MS, PICKUP_AFTER_MS, runs, q50, q99,
             isnan(floor_p50_ms) ? "; floor not measured in this run (taken as 0)" : "");
    result_add(&row);

    goal_row("pickup right after a producer storm, p99", "ms", a99, 5.0, "<= 5 ms",
             "same samples as p50; max %.2f ms", amax);
}

void measure_producers(double floor_p50_ms)
{
    int n = bench.repeat < 16 ? bench.repeat : 16;
    say("producers: %d clients of 1-row INSERTs into a served queue, %d s per storm, %d storms "
        "each with notifications on and off",
        PRODUCERS_CLIENTS, bench.enqueue_seconds, n);
    db_create(PRODUCERS_DB);
    PGconn *conn = db_connect(PRODUCERS_DB);
    db_exec(conn, "CREATE TABLE pickup (task bigint PRIMARY KEY, started timestamptz)");
    struct sup sup = {0};
    /* Default settings but the HTTP port (no clash) and the queue itself. */
    sup_start(&sup, PRODUCERS_DB, "producers-pod",
              "http { listen = \"\" }\n"
              "queue \"" PRODUCERS_QUEUE "\" { handler = \"sql\" "
              "statement = \"INSERT INTO pickup SELECT $2, clock_timestamp() "
              "WHERE $1::jsonb ? 'pickup'\" }\n");
    sup_wait_workers(&sup, conn, 4);

    struct storm on[16], off[16];
    static double quiet[PICKUP_SAMPLES], after[16 * PICKUP_SAMPLES];
    sleep_ms(PICKUP_AFTER_MS);
    pickup_after(conn, PICKUP_SAMPLES, quiet);
    for (int r = 0; r < n; r++) {
        storm_run(conn, &sup, true, &on[r]);
        /* storm_run drained the queue: wait from the storm's end. */
        int64_t wait = on[r].ended_ms + PICKUP_AFTER_MS - mono_ms();
        sleep_ms(wait > 0 ? wait : 0);
        pickup_after(conn, PICKUP_SAMPLES, after + r * PICKUP_SAMPLES);
        storm_run(conn, &sup, false, &off[r]);
    }
    sup_stop(&sup);
    PQfinish(conn);

    double on_rate[16], off_rate[16], sent[16], per_insert[16], backlog_on[16], backlog_off[16],
        arms[16];
    char runs[512] = "";
    for (int r = 0; r < n; r++) {
        on_rate[r] = on[r].inserts_per_s;
        off_rate[r] = off[r].inserts_per_s;
        sent[r] = (double)on[r].notifications;
        per_insert[r] = (double)on[r].notifications / (on[r].inserts_per_s * bench.enqueue_seconds);
        backlog_on[r] = (double)on[r].backlog;
        backlog_off[r] = (double)off[r].backlog;
        arms[r] = on[r].arm_writes_s;
        size_t len = strlen(runs);
        snprintf(runs + len, sizeof(runs) - len,
                 "%s%.0f/%.0f inserts/s, %" PRId64 " notifications, backlog %" PRId64 "/%" PRId64,
                 r ? "; " : "", on[r].inserts_per_s, off[r].inserts_per_s, on[r].notifications,
                 on[r].backlog, off[r].backlog);
    }
    result_detail("producers_runs_on_off", "%s", runs);
    double m_on = stat_median(on_rate, n), m_off = stat_median(off_rate, n);

    result_section(SECTION_PRODUCERS);
    struct row row = {.value = m_on, .limit = m_off, .ratio = m_on / m_off};
    snprintf(row.figure, sizeof(row.figure), "8 producers into a served queue, defaults");
    snprintf(row.unit, sizeof(row.unit), "inserts/s");
    snprintf(row.limit_name, sizeof(row.limit_name), "same, pgwork.notify = off + ring/100 ms");
    snprintf(row.goal, sizeof(row.goal), ">= 0.8 x notify off");
    row.verdict = row.ratio >= 0.8 ? GOAL_MET : GOAL_MISSED;
    snprintf(row.note, sizeof(row.note),
             "pgbench -c 8 -T %d, 1-row INSERTs; a pod of 4 workers (defaults, sql no-op) drains "
             "the queue meanwhile in both runs; backlog at the storm's end %.0f (on) / %.0f "
             "(off); median of %d, runs alternated",
             bench.enqueue_seconds, stat_median(backlog_on, n), stat_median(backlog_off, n), n);
    result_add(&row);

    struct row nrow = {.value = stat_median(sent, n), .limit = NAN, .ratio = NAN};
    nrow.ratio = stat_median(per_insert, n);
    snprintf(nrow.figure, sizeof(nrow.figure), "notifications sent by that storm (notify on)");
    snprintf(nrow.unit, sizeof(nrow.unit), "per storm");
    snprintf(nrow.limit_name, sizeof(nrow.limit_name), "(ratio: per insert)");
    snprintf(nrow.note, sizeof(nrow.note),
             "counted by a connection LISTENing on the task channel during the %d s storm; "
             "ratio = notifications per insert; median of %d",
             bench.enqueue_seconds, n);
    result_add(&nrow);

    double m_arms = stat_median(arms, n);
    if (!isnan(m_arms))
        goal_row("arm/disarm writes during that storm", "writes/s", m_arms, 50, "<= 50 per pod",
                 "one pod; median of %d storms", n);
    pickup_rows(floor_p50_ms, quiet, after, n);
}
