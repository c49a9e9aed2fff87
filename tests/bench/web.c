/*
 * web.c — `pgwork web` on a table of 1,000,000 tasks (issue 15): every
 * page and its API twin fetched over loopback, BENCH_WEB_SAMPLES times
 * each after two warm-ups; the row is the slowest answer (the goal: every
 * page in <= 300 ms), the note its median.
 *
 * The table: 4 queues; 910,000 done (finished over the last two hours),
 * 50,000 pending and due (with unique keys), 20,000 scheduled, 20,000 dead
 * with errors; a day of per-minute throughput rows; then VACUUM ANALYZE, as autovacuum
 * would have done on a table that size (the planner's estimates need
 * statistics, the index-only counts a visibility map).
 */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"

#define WEB_TOKEN "bench-token-0123456789abcdef"
#define WEB_GOAL_MS 300.0

/* GET path; the status, and the time to the whole answer in *ms. The
 * body's first cursor ("next":"…") into cursor when asked. */
static int web_get(int port, const char *path, double *ms, char *cursor, size_t cursor_len)
{
    int64_t start = mono_us();
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        die("web bench: cannot connect to pgwork web on port %d", port);
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     "Authorization: Bearer " WEB_TOKEN "\r\n\r\n",
                     path);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n)
        die("web bench: send failed");
    static char buf[4 << 20];
    size_t got = 0;
    ssize_t r;
    while (got < sizeof buf - 1 && (r = recv(fd, buf + got, sizeof buf - 1 - got, 0)) > 0)
        got += (size_t)r;
    close(fd);
    buf[got] = '\0';
    *ms = (double)(mono_us() - start) / 1000.0;
    int status = 0;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        die("web bench: no HTTP answer for %s", path);
    if (cursor != NULL) {
        const char *at = strstr(buf, "\"next\":\"");
        cursor[0] = '\0';
        if (at != NULL)
            snprintf(cursor, cursor_len, "%.*s", (int)strcspn(at + 8, "\""), at + 8);
    }
    return status;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        die("web bench: no free port");
    close(fd);
    return ntohs(a.sin_port);
}

/* gap_ms > 0: wait that long before each sample (past the dashboard's
 * 10 s throughput cache: every sample then pays for the chart). */
static void web_row(int port, const char *figure, const char *path, int samples, int gap_ms)
{
    double ms[64], warm;
    for (int i = 0; i < 2; i++)
        web_get(port, path, &warm, NULL, 0);
    for (int i = 0; i < samples; i++) {
        if (gap_ms > 0)
            sleep_ms(gap_ms);
        int status = web_get(port, path, &ms[i], NULL, 0);
        if (status != 200)
            die("web bench: %s answered %d", path, status);
    }
    double median = stat_median(ms, samples);
    double worst = stat_percentile(ms, samples, 100);
    struct row row = {.value = worst, .limit = WEB_GOAL_MS, .ratio = worst / WEB_GOAL_MS};
    snprintf(row.figure, sizeof row.figure, "%s", figure);
    snprintf(row.unit, sizeof row.unit, "ms");
    snprintf(row.limit_name, sizeof row.limit_name, "goal");
    snprintf(row.goal, sizeof row.goal, "<= 300 ms with 1,000,000 tasks");
    row.verdict = worst <= WEB_GOAL_MS ? GOAL_MET : GOAL_MISSED;
    snprintf(row.note, sizeof row.note, "GET %s: slowest of %d (median %.1f ms), loopback%s", path,
             samples, median,
             gap_ms > 0 ? ", each after 10.5 s: the chart's rows read anew every time" : "");
    result_add(&row);
    say("web %-40s max %.1f ms, median %.1f ms", path, worst, median);
}

void measure_web(void)
{
    int samples = 20;
    const char *env_samples = getenv("BENCH_WEB_SAMPLES");
    if (env_samples != NULL && atoi(env_samples) >= 3 && atoi(env_samples) <= 64)
        samples = atoi(env_samples);
    db_create("bench_web");
    PGconn *conn = db_connect("bench_web");
    say("web: filling 1,000,000 tasks");
    /* clang-format off */
    db_exec(conn,
        "INSERT INTO pgwork.tasks (queue, payload, state, attempts, created_at, started_at,"
        "                          finished_at, locked_by)"
        " SELECT 'q' || (g % 4), jsonb_build_object('n', g), 'done', 1,"
        "        now() - (g % 7200) * interval '1 second', now() - (g % 7200) * interval '1 second',"
        "        now() - (g % 7200) * interval '1 second', 'pod:bench/0/1'"
        " FROM generate_series(1, 910000) g");
    db_exec(conn,
        "INSERT INTO pgwork.tasks (queue, payload, run_at, unique_key)"
        " SELECT 'q' || (g % 4), jsonb_build_object('n', g), now() - (g % 600) * interval '1 second',"
        "        'key-' || g"
        " FROM generate_series(1, 50000) g");
    db_exec(conn,
        "INSERT INTO pgwork.tasks (queue, payload, run_at)"
        " SELECT 'q' || (g % 4), jsonb_build_object('n', g), now() + (g % 86400) * interval '1 second'"
        " FROM generate_series(1, 20000) g");
    db_exec(conn,
        "INSERT INTO pgwork.tasks (queue, payload, state, attempts, finished_at, last_error)"
        " SELECT 'q' || (g % 4), jsonb_build_object('n', g), 'dead', 25,"
        "        now() - (g % 3600) * interval '1 second', 'exit status 1: error number ' || g"
        " FROM generate_series(1, 20000) g");
    /* The pods' per-minute rollup (migration 0013) as a busy day leaves
     * it: a row per queue and minute. */
    db_exec(conn,
        "INSERT INTO pgwork.throughput (minute, queue, done, failed)"
        " SELECT date_trunc('minute', now()) - m * interval '1 minute', 'q' || q, 120 + m % 7, m % 3"
        " FROM generate_series(0, 1439) m, generate_series(0, 3) q");
    /* clang-format on */
    db_exec(conn, "VACUUM ANALYZE pgwork.tasks");
    db_exec(conn, "VACUUM ANALYZE pgwork.throughput");
    int64_t total = db_int(conn, "SELECT count(*) FROM pgwork.tasks");
    int64_t task_id = db_int(conn, "SELECT max(id) / 2 FROM pgwork.tasks");
    PQfinish(conn);

    int port = free_port();
    char config[256];
    snprintf(config, sizeof config,
             "web { listen = \"127.0.0.1:%d\" }\nlog { format = \"text\" }\n", port);
    const char *config_path = write_file("web.conf", config);
    char *const argv[] = {(char *)bench.pgwork_bin, "-c", (char *)config_path, "web", NULL};
    const char *env[] = {"PGWORK_DATABASE_URL=dbname=bench_web", "PGWORK_WEB_TOKEN=" WEB_TOKEN,
                         NULL};
    char log[600];
    snprintf(log, sizeof log, "%s/web.log", bench.tmpdir);
    pid_t pid = spawn(argv, env, log, NULL);
    double ms;
    for (int i = 0;; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = connect(fd, (struct sockaddr *)&a, sizeof a);
        close(fd);
        if (ok == 0)
            break;
        if (i > 500)
            die("web bench: pgwork web did not listen (see %s)", log);
        sleep_ms(20);
    }

    result_section("Dashboard (pgwork web), 1,000,000 tasks");
    web_row(port, "page: overview /", "/", samples, 0);
    web_row(port, "page: overview /, chart not cached", "/", 3, 10500);
    web_row(port, "api: GET /api/queues", "/api/queues", samples, 0);
    web_row(port, "page: queue, pending", "/queues/q1?state=pending", samples, 0);
    web_row(port, "page: queue, done", "/queues/q1?state=done", samples, 0);
    web_row(port, "page: queue, dead (errors)", "/queues/q1?state=dead", samples, 0);
    char cursor[128], path[256];
    web_get(port, "/api/queues/q1/tasks?state=done", &ms, cursor, sizeof cursor);
    for (int i = 0; i < 20 && cursor[0] != '\0'; i++) { /* 20 pages deep */
        snprintf(path, sizeof path, "/api/queues/q1/tasks?state=done&after=%s", cursor);
        web_get(port, path, &ms, cursor, sizeof cursor);
    }
    snprintf(path, sizeof path, "/queues/q1?state=done&after=%s", cursor);
    web_row(port, "page: queue, done, 21st page (keyset)", path, samples, 0);
    web_get(port, "/api/queues/q2/tasks?state=pending", &ms, cursor, sizeof cursor);
    snprintf(path, sizeof path, "/api/queues/q2/tasks?state=pending&after=%s", cursor);
    web_row(port, "api: pending, 2nd page (keyset)", path, samples, 0);
    web_row(port, "page: search by unique key", "/queues/q2?q=key-4242", samples, 0);
    snprintf(path, sizeof path, "/tasks/%lld", (long long)task_id);
    web_row(port, "page: one task", path, samples, 0);
    web_row(port, "page: schedules", "/schedules", samples, 0);
    kill(pid, SIGTERM);
    reap(pid, 10000);
    result_detail("web_tasks", "%lld", (long long)total);
    say("web: %lld tasks", (long long)total);
}
