/*
 * peer.c — the peer: graphile-worker 0.17 (tests/bench/peer/peer.js, its
 * dependencies installed by bench.sh with `npm ci` from the committed
 * package-lock.json) on a database of its own in the same cluster. The
 * script prints one JSON line; the few numbers we need are read from it
 * without a JSON library (the format is ours).
 *
 * Fair terms: its database runs with synchronous_commit = off, as pgwork's
 * workers do by default (database.synchronous_commit = false: SET LOCAL in
 * their transactions); BENCH_PEER_JOBS defaults to BENCH_TASKS; its rate's
 * window is first job started to jobs table empty, as pgwork's is first
 * started_at to last finished_at.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define PEER_DB "bench_peer"

static int peer_runs; /* how many throughput runs the median is of */

/* The number after "key": in text, or NAN. */
static double json_number(const char *text, const char *key)
{
    char pattern[64];
    snprintf(pattern, sizeof(pattern), "\"%s\":", key);
    const char *p = strstr(text, pattern);
    return p != NULL ? strtod(p + strlen(pattern), NULL) : NAN;
}

bool measure_peer(double *jobs_per_s, double *pickup_p50_ms, double *pickup_p99_ms)
{
    *jobs_per_s = *pickup_p50_ms = *pickup_p99_ms = NAN;
    if (bench.node[0] == '\0') {
        say("peer: skipped (no node/npm, or npm ci failed)");
        return false;
    }
    say("peer: graphile-worker, %d jobs x %d runs, then %d single jobs 20 ms apart",
        bench.peer_jobs, bench.repeat, bench.pickup_samples);
    /* An empty database: graphile-worker installs its own schema. */
    PGconn *conn = db_connect("postgres");
    db_exec(conn, "SET client_min_messages = warning");
    db_exec(conn, "DROP DATABASE IF EXISTS " PEER_DB " WITH (FORCE)");
    db_exec(conn, "CREATE DATABASE " PEER_DB);
    /* The durability pgwork's workers run with: a lost completion only
     * runs a job again, which both promise anyway. */
    db_exec(conn, "ALTER DATABASE " PEER_DB " SET synchronous_commit = off");
    PQfinish(conn);

    char script[600], jobs[16], repeat[16], samples[16], out[600], log[600];
    snprintf(script, sizeof(script), "%s/tests/bench/peer/peer.js", bench.source_dir);
    snprintf(jobs, sizeof(jobs), "%d", bench.peer_jobs);
    snprintf(repeat, sizeof(repeat), "%d", bench.repeat);
    snprintf(samples, sizeof(samples), "%d", bench.pickup_samples);
    snprintf(out, sizeof(out), "%s/peer.json", bench.tmpdir);
    snprintf(log, sizeof(log), "%s/peer.log", bench.tmpdir);
    char *argv[] = {(char *)bench.node, script,  "--jobs",   jobs, "--repeat", repeat,
                    "--samples",        samples, "--gap-ms", "20", NULL};
    const char *env[] = {"PEER_DB=" PEER_DB, NULL};
    if (reap(spawn(argv, env, log, out), 300000) != 0)
        die("peer.js failed (see %s)", log);

    FILE *f = fopen(out, "r");
    char text[4096] = "";
    if (f == NULL || fgets(text, sizeof(text), f) == NULL)
        die("peer.js printed nothing (see %s)", log);
    fclose(f);
    text[strcspn(text, "\n")] = '\0';
    result_detail("peer_raw", "%s", text);

    if (strstr(text, "\"synchronous_commit\":\"off\"") == NULL)
        die("peer.js did not run with synchronous_commit = off: %s", text);
    /* The median of its throughput runs. */
    const char *list = strstr(text, "\"throughput\":[");
    double runs[16];
    int n = 0;
    for (const char *p = list != NULL ? list + 14 : NULL; p != NULL && *p != ']' && n < 16;) {
        char *end;
        runs[n++] = strtod(p, &end);
        p = *end == ',' ? end + 1 : NULL;
    }
    *jobs_per_s = stat_median(runs, n);
    peer_runs = n;
    *pickup_p50_ms = json_number(text, "pickup_p50_ms");
    *pickup_p99_ms = json_number(text, "pickup_p99_ms");
    if (n == 0 || isnan(*pickup_p50_ms))
        die("cannot read peer.js output: %s", text);
    return true;
}

void peer_throughput_row(double jobs_per_s)
{
    if (isnan(jobs_per_s))
        return;
    struct row tp = {.value = jobs_per_s, .limit = NAN, .ratio = NAN};
    snprintf(tp.figure, sizeof(tp.figure), "peer throughput (graphile-worker 0.17)");
    snprintf(tp.unit, sizeof(tp.unit), "jobs/s");
    snprintf(tp.note, sizeof(tp.note),
             "%d no-op jobs by one add_jobs(), concurrency 10, localQueue 500, batched "
             "completion (delay 0), synchronous_commit off; first job started to jobs table "
             "empty; median of %d",
             bench.peer_jobs, peer_runs);
    result_add(&tp);
}
