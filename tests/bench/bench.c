/*
 * bench.c — the order of the measurements, the table, build/bench.json.
 *
 * Order matters on a small shared machine: the idle pod starts first and
 * its counting window opens after the NOTIFY floor (thousands of
 * notifications, which make every LISTENing backend of the cluster catch
 * up now and then) and closes before the enqueue test (tens of
 * thousands); the limits each figure is divided by are measured just
 * before it. Every figure is a median of BENCH_REPEAT runs except the
 * throughput runs (one run of BENCH_TASKS tasks each: already an average
 * over thousands of tasks) and the idle window (one long window).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

struct bench_settings bench;

#define MAX_ROWS 64
#define MAX_DETAILS 64

static struct row rows[MAX_ROWS];
static int row_count;
static struct {
    char key[64];
    char text[1024];
} details[MAX_DETAILS];
static int detail_count;

void result_add(const struct row *row)
{
    if (row_count == MAX_ROWS)
        die("too many rows");
    rows[row_count++] = *row;
}

void result_detail(const char *key, const char *fmt, ...)
{
    if (detail_count == MAX_DETAILS)
        die("too many details");
    snprintf(details[detail_count].key, sizeof(details[detail_count].key), "%s", key);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(details[detail_count].text, sizeof(details[detail_count].text), fmt, ap);
    va_end(ap);
    detail_count++;
}

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : fallback;
}

static int env_int(const char *name, int fallback)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? atoi(v) : fallback;
}

/* A row for a limit measured here (value column empty). */
static void add_limit(const char *figure, const char *unit, double value, const char *note)
{
    struct row row = {.value = NAN, .limit = value, .ratio = NAN};
    snprintf(row.figure, sizeof(row.figure), "%s", figure);
    snprintf(row.unit, sizeof(row.unit), "%s", unit);
    snprintf(row.limit_name, sizeof(row.limit_name), "(limit)");
    snprintf(row.note, sizeof(row.note), "%s", note);
    result_add(&row);
}

/* --- output --------------------------------------------------------------- */

static void format_number(double v, char *out, size_t len)
{
    if (isnan(v))
        snprintf(out, len, "-");
    else if (isinf(v))
        snprintf(out, len, "inf");
    else if (fabs(v) >= 1000)
        snprintf(out, len, "%.0f", v);
    else if (fabs(v) >= 10)
        snprintf(out, len, "%.1f", v);
    else
        snprintf(out, len, "%.2f", v);
}

static const char *verdict_text(enum goal_verdict v)
{
    return v == GOAL_MET ? "met" : v == GOAL_MISSED ? "MISSED" : "";
}

static void print_table(const char *machine, const char *postgres)
{
    printf("\npgwork bench — %s; %s; fsync on\n\n", machine, postgres);
    printf("%-3s %-50s %10s %-9s | %-34s %10s | %7s | %-32s %s\n", "#", "figure", "value", "unit",
           "limit (same run)", "limit", "ratio", "goal", "");
    for (int i = 0; i < 3 + 50 + 10 + 9 + 34 + 10 + 7 + 32 + 20; i++)
        putchar('-');
    putchar('\n');
    for (int i = 0; i < row_count; i++) {
        const struct row *r = &rows[i];
        char value[32], limit[32], ratio[32];
        format_number(r->value, value, sizeof(value));
        format_number(r->limit, limit, sizeof(limit));
        format_number(r->ratio, ratio, sizeof(ratio));
        printf("%-3d %-50s %10s %-9s | %-34s %10s | %7s | %-32s %s\n", i + 1, r->figure, value,
               r->unit, r->limit_name, limit, ratio, r->goal, verdict_text(r->verdict));
    }
    printf("\nnotes:\n");
    for (int i = 0; i < row_count; i++)
        if (rows[i].note[0] != '\0')
            printf("%3d. %s\n", i + 1, rows[i].note);
    printf("\ndetails:\n");
    for (int i = 0; i < detail_count; i++)
        printf("  %s: %s\n", details[i].key, details[i].text);
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void json_number(FILE *f, double v)
{
    if (isnan(v) || isinf(v))
        fputs("null", f);
    else
        fprintf(f, "%.6g", v);
}

static void write_json(const char *machine, const char *postgres, double seconds)
{
    FILE *f = fopen(bench.json_path, "w");
    if (f == NULL)
        die("cannot write %s", bench.json_path);
    char date[64];
    time_t now = time(NULL);
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    fputs("{\n  \"machine\": ", f);
    json_string(f, machine);
    fputs(",\n  \"postgres\": ", f);
    json_string(f, postgres);
    fputs(",\n  \"date\": ", f);
    json_string(f, date);
    fputs(",\n  \"git\": ", f);
    json_string(f, env_or("BENCH_GIT", ""));
    fprintf(f,
            ",\n  \"seconds\": %.0f,\n  \"settings\": {\"repeat\": %d, \"tasks\": %d, "
            "\"exec_tasks\": %d, \"floor_samples\": %d, \"pickup_samples\": %d, "
            "\"idle_seconds\": %d, \"enqueue_seconds\": %d, \"peer_jobs\": %d},\n",
            seconds, bench.repeat, bench.tasks, bench.exec_tasks, bench.floor_samples,
            bench.pickup_samples, bench.idle_seconds, bench.enqueue_seconds, bench.peer_jobs);
    fputs("  \"rows\": [\n", f);
    for (int i = 0; i < row_count; i++) {
        const struct row *r = &rows[i];
        fputs("    {\"figure\": ", f);
        json_string(f, r->figure);
        fputs(", \"value\": ", f);
        json_number(f, r->value);
        fputs(", \"unit\": ", f);
        json_string(f, r->unit);
        fputs(", \"limit_name\": ", f);
        json_string(f, r->limit_name);
        fputs(", \"limit\": ", f);
        json_number(f, r->limit);
        fputs(", \"ratio\": ", f);
        json_number(f, r->ratio);
        fputs(", \"goal\": ", f);
        json_string(f, r->goal);
        fputs(", \"verdict\": ", f);
        json_string(f, r->verdict == GOAL_MET ? "met" : r->verdict == GOAL_MISSED ? "missed" : "");
        fputs(", \"note\": ", f);
        json_string(f, r->note);
        fprintf(f, "}%s\n", i + 1 < row_count ? "," : "");
    }
    fputs("  ],\n  \"details\": {\n", f);
    for (int i = 0; i < detail_count; i++) {
        fputs("    ", f);
        json_string(f, details[i].key);
        fputs(": ", f);
        json_string(f, details[i].text);
        fprintf(f, "%s\n", i + 1 < detail_count ? "," : "");
    }
    fputs("  }\n}\n", f);
    if (fclose(f) != 0)
        die("cannot write %s", bench.json_path);
}

static void describe_machine(char *out, size_t len)
{
    char model[256] = "unknown CPU";
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "model name", 10) == 0) {
            const char *colon = strchr(line, ':');
            if (colon != NULL) {
                snprintf(model, sizeof(model), "%s", colon + 2);
                model[strcspn(model, "\n")] = '\0';
            }
            break;
        }
    }
    if (f != NULL)
        fclose(f);
    snprintf(out, len, "%ld cores (%s)", sysconf(_SC_NPROCESSORS_ONLN), model);
}

int main(void)
{
    bench.pgwork_bin = env_or("BENCH_PGWORK", "build/pgwork");
    bench.tmpdir = env_or("BENCH_TMP", "/tmp");
    bench.source_dir = env_or("BENCH_SRC", ".");
    bench.noop_bin = env_or("BENCH_NOOP", "build/tests/bench/noop_coprocess");
    bench.node = env_or("BENCH_NODE", "");
    bench.json_path = env_or("BENCH_JSON", "build/bench.json");
    bench.repeat = env_int("BENCH_REPEAT", 3);
    bench.tasks = env_int("BENCH_TASKS", 50000);
    bench.exec_tasks = env_int("BENCH_EXEC_TASKS", bench.tasks);
    bench.floor_samples = env_int("BENCH_FLOOR_SAMPLES", 1000);
    bench.pickup_samples = env_int("BENCH_PICKUP_SAMPLES", 300);
    bench.idle_seconds = env_int("BENCH_IDLE_SECONDS", 120);
    bench.enqueue_seconds = env_int("BENCH_ENQUEUE_SECONDS", 5);
    bench.peer_jobs = env_int("BENCH_PEER_JOBS", 20000);
    bench.pooler_port = env_int("BENCH_PGBOUNCER_PORT", 0);
    if (bench.repeat < 1 || bench.tasks < 100 || bench.exec_tasks < 100)
        die("BENCH_REPEAT >= 1, BENCH_TASKS and BENCH_EXEC_TASKS >= 100");
    int64_t started = mono_ms();

    char machine[320], postgres[256];
    describe_machine(machine, sizeof(machine));
    PGconn *conn = db_connect("postgres");
    PGresult *res = PQexec(conn, "SELECT split_part(version(), ' on ', 1)");
    snprintf(postgres, sizeof(postgres), "%s",
             PQresultStatus(res) == PGRES_TUPLES_OK ? PQgetvalue(res, 0, 0) : "PostgreSQL ?");
    PQclear(res);
    PQfinish(conn);

    /* BENCH_ONLY=scaling or =pgbouncer: that part alone (a developer's
     * quick look; the table then has no limits from this run). */
    const char *only = env_or("BENCH_ONLY", "");
    if (only[0] != '\0') {
        if (strcmp(only, "scaling") == 0)
            measure_scaling(NAN);
        else if (strcmp(only, "pgbouncer") == 0)
            measure_pooler();
        else
            die("BENCH_ONLY is \"scaling\" or \"pgbouncer\", not \"%s\"", only);
        print_table(machine, postgres);
        write_json(machine, postgres, (double)(mono_ms() - started) / 1000.0);
        return 0;
    }

    idle_start();

    double floor_p50, floor_p99;
    measure_notify_floor(&floor_p50, &floor_p99);
    char note[256];
    snprintf(note, sizeof(note),
             "1-row INSERT into pgwork.tasks (trigger on, autocommit) -> NOTIFY at a LISTENing "
             "connection, from COMMIT returned; %d samples x %d runs, median",
             bench.floor_samples, bench.repeat);
    add_limit("NOTIFY floor p50", "ms", floor_p50, note);
    add_limit("NOTIFY floor p99", "ms", floor_p99, "same runs");

    idle_window_open();

    static const int counts[3] = {2, 4, 8};
    double ceiling_exec[3], ceiling_sql[3], ceiling_sql_100[3];
    for (int c = 0; c < 3; c++) {
        ceiling_exec[c] = measure_sql_ceiling(counts[c], 10, false);
        ceiling_sql[c] = measure_sql_ceiling(counts[c], 10, true);
        ceiling_sql_100[c] = measure_sql_ceiling(counts[c], 100, true);
    }
    for (int c = 0; c < 3; c++) {
        char figure[96];
        snprintf(figure, sizeof(figure), "SQL ceiling, exec path, %d connections", counts[c]);
        add_limit(figure, "tasks/s", ceiling_exec[c],
                  c == 0 ? "worker/task.c's statements (linked in), 20000 tasks, as fast as "
                           "the database takes them: claim (batch 10), then one done UPDATE "
                           "for the batch; synchronous_commit off as the workers; median"
                         : "");
    }
    for (int c = 0; c < 3; c++) {
        char figure[96];
        snprintf(figure, sizeof(figure), "SQL ceiling, sql path, %d connections", counts[c]);
        add_limit(figure, "tasks/s", ceiling_sql[c],
                  c == 0 ? "the worker's one-transaction sql round, pipelined: claim batch "
                           "| BEGIN, SET LOCAL, statements, finish_claimed, COMMIT"
                         : "");
    }
    for (int c = 0; c < 3; c++) {
        char figure[96];
        snprintf(figure, sizeof(figure), "SQL ceiling, sql path, batch 100, %d connections",
                 counts[c]);
        add_limit(figure, "tasks/s", ceiling_sql_100[c],
                  c == 0 ? "as above with 100 tasks per round (the batch = 100 rows)" : "");
    }
    measure_ceiling_variants(4, 10);

    measure_pickup(floor_p50);

    double peer_rate, peer_p50, peer_p99;
    if (measure_peer(&peer_rate, &peer_p50, &peer_p99)) {
        struct row row = {
            .value = peer_p50, .limit = floor_p50 + 0.5, .ratio = peer_p50 / (floor_p50 + 0.5)};
        snprintf(row.figure, sizeof(row.figure), "peer pickup p50 (graphile-worker 0.17)");
        snprintf(row.unit, sizeof(row.unit), "ms");
        snprintf(row.limit_name, sizeof(row.limit_name), "NOTIFY floor p50 + 0.5 ms");
        snprintf(row.note, sizeof(row.note),
                 "handler start - add_job() commit returned, %d jobs 20 ms apart, same settings "
                 "as its throughput run; p99 %.2f ms",
                 bench.pickup_samples, peer_p99);
        result_add(&row);
        struct row tp = {.value = peer_rate, .limit = NAN, .ratio = NAN};
        snprintf(tp.figure, sizeof(tp.figure), "peer throughput (graphile-worker 0.17)");
        snprintf(tp.unit, sizeof(tp.unit), "jobs/s");
        snprintf(tp.note, sizeof(tp.note),
                 "%d no-op jobs by one add_jobs(), concurrency 10, localQueue 500, batched "
                 "completion (delay 0); until the jobs table is empty; median of %d",
                 bench.peer_jobs, bench.repeat);
        result_add(&tp);
    }

    measure_throughput(ceiling_exec, ceiling_sql, ceiling_sql_100, peer_rate);
    measure_pooler();
    idle_finish();
    measure_enqueue();
    measure_lateness();
    measure_scaling(floor_p50);

    double seconds = (double)(mono_ms() - started) / 1000.0;
    print_table(machine, postgres);
    printf("\n%d figures in %.0f s; JSON: %s\n", row_count, seconds, bench.json_path);
    write_json(machine, postgres, seconds);
    return 0;
}
