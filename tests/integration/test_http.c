/*
 * test_http.c — /healthz, /readyz and /metrics (DESIGN §5), fetched over
 * loopback; /metrics is parsed by a real exposition-format parser
 * (python3-prometheus-client, tests/integration/http_get.py) and its values
 * are checked against what the tasks did in the database.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

/* GET url through http_get.py; returns the status, *body gets the rest. */
static int http_get(const char *url, bool metrics, const char **body)
{
    const char *script =
        harness_printf("%s/http_get.py", getenv("PGWORK_TESTS_DIR") ? getenv("PGWORK_TESTS_DIR")
                                                                    : "tests/integration");
    FILE *p = popen(
        harness_printf("/usr/bin/python3 %s '%s' %s", script, url, metrics ? "--metrics" : ""),
        "r");
    ck_assert_ptr_nonnull(p);
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap);
    ck_assert_ptr_nonnull(text);
    size_t n;
    while ((n = fread(text + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 1024) {
            cap *= 2;
            text = realloc(text, cap);
            ck_assert_ptr_nonnull(text);
        }
    }
    text[len] = '\0';
    int rc = pclose(p);
    ck_assert_msg(rc == 0, "http_get.py failed (%d) for %s: %s", rc, url, text);
    int status = atoi(text);
    const char *nl = strchr(text, '\n');
    *body = harness_printf("%s", nl ? nl + 1 : "");
    free(text);
    return status;
}

/* The value of one sample line "name{labels} value", or -1 if absent. */
static double http_sample(const char *samples, const char *name_and_labels)
{
    const char *needle = harness_printf("%s ", name_and_labels);
    const char *line = samples;
    while ((line = strstr(line, needle)) != NULL) {
        if (line == samples || line[-1] == '\n')
            return atof(line + strlen(needle));
        line++;
    }
    return -1;
}

struct http_fixture {
    PGconn *conn;
    struct harness_supervisor *sup;
    const char *base;
};

static struct http_fixture http_start_supervisor_opts(const char *database_url,
                                                      const struct harness_spawn_opts *opts)
{
    struct http_fixture f;
    const char *conninfo = harness_db_migrated(&f.conn, NULL, NULL);
    harness_exec(f.conn, "CREATE TABLE results (task bigint)");
    int port = harness_free_port();
    f.base = harness_printf("http://127.0.0.1:%d", port);
    const char *config =
        harness_write_config(harness_printf("workers { count = 2 }\n"
                                            /* A ping a second: its listener's
                                             * queries can be waited for. */
                                            "listener { keepalive_interval = 1s }\n"
                                            "http { listen = \"127.0.0.1:%d\" }\n"
                                            "log { format = \"text\" }\n"
                                            "queue \"q \\\"quoted\\\"\" { handler = \"sql\" "
                                            "statement = \"INSERT INTO results VALUES ($2)\" }\n",
                                            port));
    f.sup = harness_spawn_supervisor_opts(config, database_url ? database_url : conninfo, opts);
    ck_assert(harness_stderr_wait_for(f.sup, "http endpoint on", 15000));
    return f;
}

static struct http_fixture http_start_supervisor(const char *database_url)
{
    return http_start_supervisor_opts(database_url, NULL);
}

/* Poll /readyz until it answers want (every 20 ms); false after timeout. */
static bool http_wait_ready(const struct http_fixture *f, int want, int timeout_ms)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    for (;;) {
        const char *body;
        if (http_get(harness_printf("%s/readyz", f->base), false, &body) == want)
            return true;
        if (harness_now_ms() > deadline)
            return false;
        usleep(20000);
    }
}

START_TEST(health_and_readiness)
{
    struct http_fixture f = http_start_supervisor(NULL);
    const char *body;
    ck_assert_int_eq(http_get(harness_printf("%s/healthz", f.base), false, &body), 200);
    ck_assert(http_wait_ready(&f, 200, 15000));
    ck_assert_int_eq(http_get(harness_printf("%s/nope", f.base), false, &body), 404);

    /* Quiet (the preStop hook): not ready, still healthy. */
    ck_assert_int_eq(kill(f.sup->pid, SIGTSTP), 0);
    ck_assert(http_wait_ready(&f, 503, 10000));
    ck_assert_int_eq(http_get(harness_printf("%s/readyz", f.base), false, &body), 503);
    ck_assert_ptr_nonnull(strstr(body, "quiet"));
    ck_assert_int_eq(http_get(harness_printf("%s/healthz", f.base), false, &body), 200);
    ck_assert_int_eq(kill(f.sup->pid, SIGCONT), 0);
    ck_assert(http_wait_ready(&f, 200, 10000));
    ck_assert_int_eq(harness_stop_supervisor(f.sup, SIGTERM, 20000), 0);
}
END_TEST

START_TEST(not_ready_without_database)
{
    /* Nothing listens on port 1: the database is unreachable. */
    struct http_fixture f = http_start_supervisor("host=127.0.0.1 port=1 dbname=nothing");
    const char *body;
    ck_assert_int_eq(http_get(harness_printf("%s/healthz", f.base), false, &body), 200);
    ck_assert_int_eq(http_get(harness_printf("%s/readyz", f.base), false, &body), 503);
    ck_assert_ptr_nonnull(strstr(body, "database unreachable"));
    ck_assert_int_eq(harness_stop_supervisor(f.sup, SIGTERM, 20000), 0);
}
END_TEST

START_TEST(metrics_follow_the_tasks)
{
    struct http_fixture f = http_start_supervisor(NULL);
    ck_assert(http_wait_ready(&f, 200, 15000));
    const char *m;
    ck_assert_int_eq(http_get(harness_printf("%s/metrics", f.base), true, &m), 200);
    const char *done = "pgwork_tasks_total{outcome=\"done\",queue=\"q \\\"quoted\\\"\"}";
    ck_assert_double_eq(http_sample(m, done), 0);
    ck_assert_double_eq(http_sample(m, "pgwork_listener_connected{}"), 1);
    ck_assert_double_eq(http_sample(m, "pgwork_workers_wanted{}"), 2);

    harness_exec(f.conn, "INSERT INTO pgwork.tasks (queue) "
                         "SELECT 'q \"quoted\"' FROM generate_series(1, 20)");
    ck_assert(harness_wait_until(f.conn, "SELECT count(*) FROM results", 20, 15000));
    /* A counter moves after the row is committed: poll the scrape. */
    int64_t deadline = harness_now_ms() + 10000;
    do {
        ck_assert_int_eq(http_get(harness_printf("%s/metrics", f.base), true, &m), 200);
    } while (http_sample(m, done) < 20 && harness_now_ms() < deadline);
    ck_assert_double_eq(http_sample(m, done), 20);
    ck_assert_double_eq(
        http_sample(m, "pgwork_task_duration_seconds_count{queue=\"q \\\"quoted\\\"\"}"), 20);
    ck_assert_double_eq(http_sample(m, "pgwork_pickup_latency_seconds_bucket{le=\"+Inf\",queue=\"q "
                                       "\\\"quoted\\\"\"}"),
                        20);
    ck_assert(http_sample(m, "pgwork_notifications_total{queue=\"q \\\"quoted\\\"\"}") >= 1);

    ck_assert_int_eq(harness_stop_supervisor(f.sup, SIGTERM, 20000), 0);
}
END_TEST

START_TEST(queue_depth_only_while_scraped)
{
    struct http_fixture f = http_start_supervisor(NULL);
    ck_assert(http_wait_ready(&f, 200, 15000));
    ck_assert_int_eq(kill(f.sup->pid, SIGTSTP), 0);
    ck_assert(http_wait_ready(&f, 503, 10000));
    harness_exec(f.conn, "INSERT INTO pgwork.tasks (queue) "
                         "SELECT 'q \"quoted\"' FROM generate_series(1, 5)");
    harness_exec(f.conn, "INSERT INTO pgwork.tasks (queue, run_at) "
                         "VALUES ('q \"quoted\"', now() + interval '1 hour')");

    /* Nothing scrapes: no depth query, ever. Wait for a keepalive ping that
     * started after this point (the listener's last query, idle): a ping
     * goes only when nothing more urgent is due, depth included, so a
     * depth reading asked for without a scrape would have gone first. */
    harness_exec(f.conn, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    const char *since = harness_query_text(f.conn, "SELECT now()::text");
    const char *ping_sql =
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = 'pgwork listener' AND state = 'idle'"
        " AND query LIKE '%pg_notify(%ping%' AND query_start > $1::timestamptz";
    int64_t deadline = harness_now_ms() + 10000;
    while (harness_query_int64p(f.conn, ping_sql, 1, (const char *const[]){since}) == 0) {
        ck_assert_msg(harness_now_ms() < deadline, "no keepalive ping within 10 s");
        usleep(20000);
    }
    /* pg_stat_statements (tests/pg.sh loads it, track = all) counts each
     * statement as it ends; this database is new, so its counts are this
     * supervisor's. Our own query's pattern is a constant, stored as $1. */
    const char *depth_queries =
        "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements s"
        " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database()"
        " AND s.query LIKE '%pg_notification_queue_usage()%'";
    int64_t unscraped = harness_query_int64(f.conn, depth_queries);
    ck_assert_msg(unscraped == 0, "%" PRId64 " queue depth queries while nothing scraped",
                  unscraped);

    const char *depth = "pgwork_queue_depth{queue=\"q \\\"quoted\\\"\",state=\"pending_due\"}";
    const char *later = "pgwork_queue_depth{queue=\"q \\\"quoted\\\"\",state=\"pending_later\"}";
    const char *m;
    /* The first scrape asks for a reading; a later one shows it. */
    deadline = harness_now_ms() + 10000;
    do {
        ck_assert_int_eq(http_get(harness_printf("%s/metrics", f.base), true, &m), 200);
    } while (http_sample(m, depth) < 0 && harness_now_ms() < deadline);
    ck_assert_double_eq(http_sample(m, depth), 5);
    ck_assert_double_eq(http_sample(m, later), 1);
    ck_assert(http_sample(m, "pgwork_notification_queue_usage{}") >= 0);
    /* ... and the count above sees depth queries when they happen. */
    ck_assert_int_ge(harness_query_int64(f.conn, depth_queries), 1);
    ck_assert_int_eq(harness_stop_supervisor(f.sup, SIGTERM, 20000), 0);
}
END_TEST

/* --- slow clients ----------------------------------------------------- */

/* A non-blocking TCP socket connecting to 127.0.0.1:port, or -1. */
static int slow_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/*
 * In a child process: n connections to port that each send one byte of a
 * never-ending request header every ~200 ms, as a hostile client does to
 * keep an idle timeout from ever firing. A connection the server closes is
 * opened again at once: the pressure stays at n. Writes "r" on ready_fd
 * once all n are open; runs until killed (and dies with the test).
 */
static pid_t slow_clients_start(int port, int n)
{
    int ready[2];
    ck_assert_int_eq(pipe(ready), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(ready[0]);
        static const char header[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
        int *fds = calloc((size_t)n, sizeof(*fds));
        size_t *sent = calloc((size_t)n, sizeof(*sent));
        if (fds == NULL || sent == NULL)
            _exit(1);
        for (int i = 0; i < n; i++)
            if ((fds[i] = slow_connect(port)) < 0)
                _exit(2);
        if (write(ready[1], "r", 1) != 1)
            _exit(3);
        for (;;) {
            for (int i = 0; i < n; i++) {
                char c = sent[i] < sizeof(header) - 1 ? header[sent[i]] : 'a';
                ssize_t w = send(fds[i], &c, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w == 1) {
                    sent[i]++;
                } else if (errno != EAGAIN && errno != ENOTCONN && errno != EINPROGRESS) {
                    close(fds[i]); /* closed by the server: come back */
                    fds[i] = slow_connect(port);
                    sent[i] = 0;
                }
            }
            struct timespec pause = {0, 200 * 1000 * 1000};
            nanosleep(&pause, NULL);
        }
    }
    close(ready[1]);
    char c;
    struct pollfd p = {.fd = ready[0], .events = POLLIN};
    ck_assert_msg(poll(&p, 1, 10000) == 1 && read(ready[0], &c, 1) == 1,
                  "the slow clients did not connect");
    close(ready[0]);
    return pid;
}

/* GET path on 127.0.0.1:port by hand, giving up after timeout_ms: the
 * status (-1: no answer in time), *elapsed_ms how long it took. */
static int probe(int port, const char *path, int timeout_ms, int64_t *elapsed_ms)
{
    int64_t start = harness_now_ms(), deadline = start + timeout_ms;
    int fd = slow_connect(port);
    ck_assert_int_ge(fd, 0);
    const char *request =
        harness_printf("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
    size_t off = 0, len = strlen(request), got = 0;
    char reply[256];
    int status = -1;
    while (status < 0) {
        int64_t left = deadline - harness_now_ms();
        if (left <= 0)
            break;
        struct pollfd p = {.fd = fd, .events = off < len ? POLLOUT : POLLIN};
        if (poll(&p, 1, (int)left) != 1)
            continue;
        if (off < len) {
            ssize_t w = send(fd, request + off, len - off, MSG_NOSIGNAL);
            if (w > 0)
                off += (size_t)w;
            else if (errno != EAGAIN && errno != ENOTCONN)
                break;
            continue;
        }
        ssize_t r = recv(fd, reply + got, sizeof(reply) - 1 - got, 0);
        if (r <= 0) {
            if (r < 0 && errno == EAGAIN)
                continue;
            break;
        }
        got += (size_t)r;
        reply[got] = '\0';
        if (strchr(reply, '\n') != NULL || got == sizeof(reply) - 1)
            status = strncmp(reply, "HTTP/1.1 ", 9) == 0 ? atoi(reply + 9) : 0;
    }
    close(fd);
    *elapsed_ms = harness_now_ms() - start;
    return status;
}

/* 300 clients trickling header bytes from the prober's own address (a
 * per-address limit would only shut the prober out): /healthz and /readyz
 * still answer 200 within 1 s each, again and again for 7 s, past the
 * moment the server gives up on the slow ones (a whole request within
 * 5 s) and they come back. Run 0 with the test's open files limit; run 1
 * with 256, where the server holds 64 connections at most and has to
 * close the oldest waiting one for each newcomer. */
START_TEST(probes_answer_beside_slow_clients)
{
    const char *const small_fd_limit[] = {"prlimit", "--nofile=256:256", "--", NULL};
    const struct harness_spawn_opts opts = {.wrapper = _i == 1 ? small_fd_limit : NULL};
    struct http_fixture f = http_start_supervisor_opts(NULL, &opts);
    ck_assert(http_wait_ready(&f, 200, 15000));
    int port = atoi(strrchr(f.base, ':') + 1);
    pid_t clients = slow_clients_start(port, 300);

    int64_t worst = 0;
    for (int round = 0; round < 14; round++) {
        static const char *const paths[] = {"/healthz", "/readyz"};
        for (int i = 0; i < 2; i++) {
            int64_t elapsed;
            int status = probe(port, paths[i], 3000, &elapsed);
            if (status != 200 || elapsed >= 1000) {
                kill(clients, SIGKILL);
                waitpid(clients, NULL, 0);
                harness_stderr_dump(f.sup);
                ck_abort_msg("round %d: %s answered %d after %lld ms beside 300 slow clients "
                             "(want 200 within 1000 ms)",
                             round, paths[i], status, (long long)elapsed);
            }
            if (elapsed > worst)
                worst = elapsed;
        }
        struct timespec pause = {0, 500 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    fprintf(stderr, "probes beside 300 slow clients (run %d): worst %lld ms\n", _i,
            (long long)worst);
    kill(clients, SIGKILL);
    waitpid(clients, NULL, 0);
    /* The slow ones were closed, not merely outlasted. */
    ck_assert_msg(strstr(harness_stderr_text(f.sup), "http: closed ") != NULL,
                  "no slow connection was closed");
    ck_assert_int_eq(harness_stop_supervisor(f.sup, SIGTERM, 20000), 0);
}
END_TEST

Suite *http_suite(void)
{
    Suite *s = suite_create("http");
    TCase *tc = harness_tcase("http");
    tcase_add_test(tc, health_and_readiness);
    tcase_add_test(tc, not_ready_without_database);
    tcase_add_test(tc, metrics_follow_the_tasks);
    tcase_add_test(tc, queue_depth_only_while_scraped);
    tcase_add_loop_test(tc, probes_answer_beside_slow_clients, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}
