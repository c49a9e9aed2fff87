/*
 * bench.c — the order of the measurements, the sections of the table,
 * build/bench.json and build/bench.md (the same tables in Markdown, one per
 * section, as the README shows them).
 *
 * Order matters on a small shared machine: the idle pod starts first and
 * its counting window opens after the NOTIFY floor (thousands of
 * notifications, which make every LISTENing backend of the cluster catch
 * up now and then) and closes before the producer storms and the enqueue
 * test (tens of thousands); the limits each figure is divided by are
 * measured in the same run, most just before it. Every figure is a median
 * of BENCH_REPEAT runs, except the idle window (one long window) and the
 * claim counts (a sum over 50 tasks).
 *
 * The order of measuring is not the order of showing: rows go into
 * sections (result_section), shown in sections[] order, default settings
 * first in each. BENCH_ONLY=name,name runs only those steps (steps[]).
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

#define MAX_ROWS 128
#define MAX_DETAILS 64

static struct row rows[MAX_ROWS];
static int row_count;
static char current_section[48] = "Other";

/* The display order; a section not listed here follows them. */
static const char *const sections[] = {
    SECTION_PICKUP,   SECTION_PRODUCERS, SECTION_CLAIMS,    SECTION_DEFAULTS,
    SECTION_HANDLERS, SECTION_TUNED,     SECTION_POOLER,    SECTION_IDLE,
    SECTION_LATENESS, SECTION_SCALING,   SECTION_RETENTION,
};
#define SECTION_COUNT ((int)(sizeof(sections) / sizeof(sections[0])))

void result_section(const char *name)
{
    snprintf(current_section, sizeof(current_section), "%s", name);
}
static struct {
    char key[64];
    char text[1024];
} details[MAX_DETAILS];
static int detail_count;

void result_add(const struct row *row)
{
    if (row_count == MAX_ROWS)
        die("too many rows");
    rows[row_count] = *row;
    snprintf(rows[row_count].section, sizeof(rows[row_count].section), "%s", current_section);
    row_count++;
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

/* The rows in display order: by sections[], then unknown sections in the
 * order they first appeared; within a section, as added. */
static int display_order(int *order)
{
    int n = 0;
    for (int k = 0; k < SECTION_COUNT; k++)
        for (int i = 0; i < row_count; i++)
            if (strcmp(rows[i].section, sections[k]) == 0)
                order[n++] = i;
    for (int i = 0; i < row_count; i++) {
        bool known = false;
        for (int k = 0; k < SECTION_COUNT && !known; k++)
            known = strcmp(rows[i].section, sections[k]) == 0;
        bool placed = false;
        for (int j = 0; j < n && !placed; j++)
            placed = order[j] == i;
        if (known || placed)
            continue;
        for (int j = i; j < row_count; j++) /* the whole unknown section, here */
            if (strcmp(rows[j].section, rows[i].section) == 0)
                order[n++] = j;
    }
    return n;
}

static void print_table(const char *machine, const char *postgres, const char *load)
{
    printf("\npgwork bench — %s; %s; fsync on; %s\n", machine, postgres, load);
    int order[MAX_ROWS];
    int n = display_order(order);
    const char *section = "";
    for (int d = 0; d < n; d++) {
        const struct row *r = &rows[order[d]];
        if (strcmp(r->section, section) != 0) {
            section = r->section;
            printf("\n== %s\n", section);
            printf("%-3s %-50s %10s %-9s | %-40s %10s | %7s | %-32s %s\n", "#", "figure", "value",
                   "unit", "limit (same run)", "limit", "ratio", "goal", "");
            for (int i = 0; i < 3 + 50 + 10 + 9 + 40 + 10 + 7 + 32 + 20; i++)
                putchar('-');
            putchar('\n');
        }
        char value[32], limit[32], ratio[32];
        format_number(r->value, value, sizeof(value));
        format_number(r->limit, limit, sizeof(limit));
        format_number(r->ratio, ratio, sizeof(ratio));
        printf("%-3d %-50s %10s %-9s | %-40s %10s | %7s | %-32s %s\n", d + 1, r->figure, value,
               r->unit, r->limit_name, limit, ratio, r->goal, verdict_text(r->verdict));
    }
    printf("\nnotes:\n");
    for (int d = 0; d < n; d++)
        if (rows[order[d]].note[0] != '\0')
            printf("%3d. %s\n", d + 1, rows[order[d]].note);
    printf("\ndetails:\n");
    for (int i = 0; i < detail_count; i++)
        printf("  %s: %s\n", details[i].key, details[i].text);
}

/* The same tables in Markdown, one per section, for the README. */
static void write_markdown(const char *path, const char *header)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        die("cannot write %s", path);
    fprintf(f, "%s\n", header);
    int order[MAX_ROWS];
    int n = display_order(order);
    const char *section = "";
    for (int d = 0; d < n; d++) {
        const struct row *r = &rows[order[d]];
        if (strcmp(r->section, section) != 0) {
            section = r->section;
            fprintf(f,
                    "\n### %s\n\n| figure | value | limit (same run) | ratio | goal |\n"
                    "|---|---|---|---|---|\n",
                    section);
        }
        char value[32], limit[32], ratio[32];
        format_number(r->value, value, sizeof(value));
        format_number(r->limit, limit, sizeof(limit));
        format_number(r->ratio, ratio, sizeof(ratio));
        /* A limit's own row: its figure in the limit column. */
        bool is_limit = isnan(r->value) && strcmp(r->limit_name, "(limit)") == 0;
        char value_cell[64] = "", limit_cell[128] = "";
        if (!is_limit)
            snprintf(value_cell, sizeof(value_cell), "%s %s", value, r->unit);
        if (is_limit)
            snprintf(limit_cell, sizeof(limit_cell), "%s %s", limit, r->unit);
        else if (!isnan(r->limit))
            snprintf(limit_cell, sizeof(limit_cell), "%s: %s", r->limit_name, limit);
        else
            snprintf(limit_cell, sizeof(limit_cell), "%s", r->limit_name);
        fprintf(f, "| %s | %s | %s | %s | %s%s%s |\n", r->figure, value_cell, limit_cell,
                isnan(r->ratio) ? "" : ratio, r->goal, r->verdict != GOAL_NONE ? " — " : "",
                r->verdict == GOAL_MET      ? "met"
                : r->verdict == GOAL_MISSED ? "**missed**"
                                            : "");
    }
    if (fclose(f) != 0)
        die("cannot write %s", path);
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

static void write_json(const char *machine, const char *postgres, const char *load, double seconds)
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
    fputs(",\n  \"load\": ", f);
    json_string(f, load);
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
    int order[MAX_ROWS];
    int n = display_order(order);
    for (int d = 0; d < n; d++) {
        const struct row *r = &rows[order[d]];
        fputs("    {\"section\": ", f);
        json_string(f, r->section);
        fputs(", \"figure\": ", f);
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
        fprintf(f, "}%s\n", d + 1 < n ? "," : "");
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

/* The 1-, 5- and 15-minute load averages (the machine is shared: a
 * figure measured under load says so). */
static void load_average(char *out, size_t len)
{
    double one = 0, five = 0, fifteen = 0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f == NULL || fscanf(f, "%lf %lf %lf", &one, &five, &fifteen) != 3)
        snprintf(out, len, "?");
    else
        snprintf(out, len, "%.1f/%.1f/%.1f", one, five, fifteen);
    if (f != NULL)
        fclose(f);
}

/* The steps BENCH_ONLY names (comma-separated; empty = all). */
static const char *const steps[] = {
    "pickup",     /* NOTIFY floor, pickup p50/p99 */
    "peer",       /* graphile-worker: throughput and pickup */
    "defaults",   /* default settings vs the one-statement ceiling and the peer; exec makespan */
    "throughput", /* pgwork's SQL ceilings, handlers, fixed batches, new database */
    "pgbouncer",  /* through PgBouncer, beside direct */
    "idle",       /* one idle pod's load */
    "claims",     /* claims per task, 1 and 3 pods */
    "producers",  /* 8 producers into a served queue, notifications on and off */
    "enqueue",    /* 8 producers, trigger on / off / pgwork.notify = off, unserved queue */
    "lateness",   /* scheduled tasks */
    "scaling",    /* workers, queues, memory */
    "web",        /* pgwork web's pages on 1,000,000 tasks */
    "caps",       /* queue limits: an uncapped queue beside limited ones, a cap of 50 */
    "soak",       /* retention: 2,000 tasks/s for 4 minutes (make soak) */
};

static const char *only;

static bool want(const char *step)
{
    if (only[0] == '\0')
        return true;
    size_t len = strlen(step);
    for (const char *p = only; *p != '\0';) {
        size_t n = strcspn(p, ",");
        if (n == len && strncmp(p, step, n) == 0)
            return true;
        p += n + (p[n] == ',');
    }
    return false;
}

static void check_only(void)
{
    for (const char *p = only; *p != '\0';) {
        size_t n = strcspn(p, ",");
        bool known = false;
        for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]) && !known; i++)
            known = strlen(steps[i]) == n && strncmp(p, steps[i], n) == 0;
        if (!known) {
            char names[512] = "";
            for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
                size_t o = strlen(names);
                snprintf(names + o, sizeof(names) - o, "%s%s", i ? ", " : "", steps[i]);
            }
            die("BENCH_ONLY: unknown step \"%.*s\" (steps: %s)", (int)n, p, names);
        }
        p += n + (p[n] == ',');
    }
}

int main(void)
{
    bench.pgwork_bin = env_or("BENCH_PGWORK", "build/pgwork");
    bench.tmpdir = env_or("BENCH_TMP", "/tmp");
    bench.source_dir = env_or("BENCH_SRC", ".");
    bench.noop_bin = env_or("BENCH_NOOP", "build/tests/bench/noop_coprocess");
    bench.node = env_or("BENCH_NODE", "");
    bench.json_path = env_or("BENCH_JSON", "build/bench.json");
    const char *md_path = env_or("BENCH_MD", "build/bench.md");
    bench.repeat = env_int("BENCH_REPEAT", 3);
    bench.tasks = env_int("BENCH_TASKS", 50000);
    bench.exec_tasks = env_int("BENCH_EXEC_TASKS", 5000);
    bench.floor_samples = env_int("BENCH_FLOOR_SAMPLES", 1000);
    bench.pickup_samples = env_int("BENCH_PICKUP_SAMPLES", 300);
    bench.idle_seconds = env_int("BENCH_IDLE_SECONDS", 120);
    bench.enqueue_seconds = env_int("BENCH_ENQUEUE_SECONDS", 5);
    bench.peer_jobs = env_int("BENCH_PEER_JOBS", bench.tasks);
    bench.pooler_port = env_int("BENCH_PGBOUNCER_PORT", 0);
    bench.soak_seconds = env_int("BENCH_SOAK_SECONDS", 240);
    if (bench.repeat < 1 || bench.tasks < 100 || bench.exec_tasks < 100)
        die("BENCH_REPEAT >= 1, BENCH_TASKS and BENCH_EXEC_TASKS >= 100");
    if (bench.repeat < 3)
        say("BENCH_REPEAT=%d: medians of fewer than 3 runs are not the bench's figures",
            bench.repeat);
    only = env_or("BENCH_ONLY", "");
    check_only();
    int64_t started = mono_ms();

    char machine[320], postgres[256], load_start[64];
    describe_machine(machine, sizeof(machine));
    load_average(load_start, sizeof(load_start));
    PGconn *conn = db_connect("postgres");
    PGresult *res = PQexec(conn, "SELECT split_part(version(), ' on ', 1)");
    snprintf(postgres, sizeof(postgres), "%s",
             PQresultStatus(res) == PGRES_TUPLES_OK ? PQgetvalue(res, 0, 0) : "PostgreSQL ?");
    PQclear(res);
    PQfinish(conn);

    if (want("idle"))
        idle_start();

    double floor_p50 = NAN, floor_p99 = NAN;
    if (want("pickup")) {
        measure_notify_floor(&floor_p50, &floor_p99);
        char note[256];
        snprintf(note, sizeof(note),
                 "1-row INSERT into pgwork.tasks (trigger on, autocommit) -> NOTIFY at a "
                 "LISTENing connection, from COMMIT returned; %d samples x %d runs, median",
                 bench.floor_samples, bench.repeat);
        result_section(SECTION_PICKUP);
        add_limit("NOTIFY floor p50", "ms", floor_p50, note);
        add_limit("NOTIFY floor p99", "ms", floor_p99, "same runs");
    }

    if (want("idle"))
        idle_window_open();

    static const int counts[3] = {2, 4, 8};
    double ceiling_exec[3], ceiling_sql[3], ceiling_sql_100[3];
    if (want("throughput")) {
        for (int c = 0; c < 3; c++) {
            ceiling_exec[c] = measure_sql_ceiling(counts[c], 10, false);
            ceiling_sql[c] = measure_sql_ceiling(counts[c], 10, true);
            ceiling_sql_100[c] = measure_sql_ceiling(counts[c], 100, true);
        }
        result_section(SECTION_TUNED);
        for (int c = 0; c < 3; c++) {
            char figure[96];
            snprintf(figure, sizeof(figure), "SQL ceiling, sql path, batch 10, %d connections",
                     counts[c]);
            add_limit(figure, "tasks/s", ceiling_sql[c],
                      c == 0 ? "pgwork's own statements (worker/task.c, linked in), 20000 tasks, "
                               "as fast as the database takes them: the worker's one-transaction "
                               "sql round, pipelined: claim batch | BEGIN, SET LOCAL, statements, "
                               "finish_claimed, COMMIT; synchronous_commit off as the workers; "
                               "median"
                             : "");
        }
        for (int c = 0; c < 3; c++) {
            char figure[96];
            snprintf(figure, sizeof(figure), "SQL ceiling, sql path, batch 100, %d connections",
                     counts[c]);
            add_limit(figure, "tasks/s", ceiling_sql_100[c],
                      c == 0 ? "as above with 100 tasks per round (the batch = 100 rows)" : "");
        }
        result_section(SECTION_HANDLERS);
        for (int c = 0; c < 3; c++) {
            char figure[96];
            snprintf(figure, sizeof(figure), "SQL ceiling, exec path, %d connections", counts[c]);
            add_limit(figure, "tasks/s", ceiling_exec[c],
                      c == 0 ? "worker/task.c's statements: claim (batch 10), then one done "
                               "UPDATE for the batch; synchronous_commit off; median"
                             : "");
        }
        measure_ceiling_variants(4, 10);
    }

    if (want("pickup"))
        measure_pickup(floor_p50);

    double peer_rate = NAN, peer_p50, peer_p99;
    if (want("peer") && measure_peer(&peer_rate, &peer_p50, &peer_p99)) {
        result_section(SECTION_PICKUP);
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
    }

    if (want("defaults")) {
        measure_defaults(peer_rate);
    } else if (want("peer")) {
        result_section(SECTION_DEFAULTS);
        peer_throughput_row(peer_rate);
    }
    if (want("throughput"))
        measure_throughput(ceiling_exec, ceiling_sql, ceiling_sql_100, peer_rate);
    if (want("pgbouncer"))
        measure_pooler();
    if (want("idle"))
        idle_finish();
    if (want("claims"))
        measure_claims();
    if (want("producers"))
        measure_producers(floor_p50);
    if (want("enqueue"))
        measure_enqueue();
    if (want("lateness"))
        measure_lateness();
    if (want("scaling"))
        measure_scaling(floor_p50);
    if (want("web"))
        measure_web();
    if (want("caps"))
        measure_queue_limits();
    if (want("soak"))
        measure_soak();

    double seconds = (double)(mono_ms() - started) / 1000.0;
    char load_end[64], load[256], header[1024], date[64];
    load_average(load_end, sizeof(load_end));
    snprintf(load, sizeof(load), "load average %s at the start, %s at the end", load_start,
             load_end);
    time_t now = time(NULL);
    strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", gmtime(&now));
    print_table(machine, postgres, load);
    printf("\n%d figures in %.0f s; JSON: %s; Markdown: %s\n", row_count, seconds, bench.json_path,
           md_path);
    write_json(machine, postgres, load, seconds);
    snprintf(header, sizeof(header),
             "`make bench`%s%s, %s, commit %s: %s; %s; fsync on; %s; %.0f s.",
             only[0] ? " BENCH_ONLY=" : "", only, date, env_or("BENCH_GIT", "?"), machine, postgres,
             load, seconds);
    write_markdown(md_path, header);
    return 0;
}
