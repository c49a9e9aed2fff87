/*
 * test_web.c — `pgwork web` against a real PostgreSQL, over loopback, as
 * a script or a browser would use it: every page and API path, the token
 * refused and accepted (Bearer, the login form's cookie, the CSRF token),
 * escaping of database values, keyset pagination that stays stable while
 * tasks change, hostile clients. Each action's effect is counted in the
 * database, and so is its absence when the request is refused.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
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

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "harness.h"
#include "suites.h"

#define TOKEN "test-token-0123456789-abcdef"

struct web {
    pid_t pid;
    int port;
    const char *log_path;
    const char *db; /* conninfo */
    PGconn *conn;
};

static struct web *running_web; /* stopped at the end of each test */

/* Start `pgwork -c CONFIG web` (extra config text inside web { }) on
 * database db (NULL: a new one, migrated), wait until /healthz answers. */
static struct web *web_start_in(const char *db, const char *web_extra, const char *token_env,
                                const char *more_config)
{
    struct web *w = harness_alloc(sizeof *w);
    w->db = db != NULL ? db : harness_db_create(NULL);
    if (db == NULL)
        ck_assert_int_eq(harness_migrate(w->db), 0);
    w->conn = harness_connect(w->db);
    w->port = harness_free_port();
    const char *config = harness_write_config(
        harness_printf("web { listen = \"127.0.0.1:%d\" %s }\nlog { format = \"json\" }\n%s",
                       w->port, web_extra, more_config));
    w->log_path = harness_printf("%s/web.%d.log", harness_tmpdir(), w->port);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(w->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int null = open("/dev/null", O_RDONLY);
        if (fd < 0 || null < 0)
            _exit(127);
        dup2(null, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        setenv("PGWORK_DATABASE_URL", w->db, 1);
        unsetenv("PGWORK_CONFIG");
        if (token_env != NULL)
            setenv("PGWORK_WEB_TOKEN", token_env, 1);
        else
            unsetenv("PGWORK_WEB_TOKEN");
        execl(harness_pgwork_bin(), harness_pgwork_bin(), "-c", config, "web", (char *)NULL);
        _exit(127);
    }
    w->pid = pid;
    running_web = w;
    int64_t deadline = harness_now_ms() + 10000;
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)w->port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = connect(fd, (struct sockaddr *)&a, sizeof a);
        close(fd);
        if (ok == 0)
            break;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid)
            ck_abort_msg("pgwork web exited: %s", harness_read_file(w->log_path));
        ck_assert_msg(harness_now_ms() < deadline, "pgwork web did not listen: %s",
                      harness_read_file(w->log_path));
        poll(NULL, 0, 20);
    }
    return w;
}

static struct web *web_start_config(const char *web_extra, const char *token_env,
                                    const char *more_config)
{
    return web_start_in(NULL, web_extra, token_env, more_config);
}

static struct web *web_start_opts(const char *web_extra, const char *token_env)
{
    return web_start_config(web_extra, token_env, "");
}

static struct web *web_start(void)
{
    return web_start_opts("", TOKEN);
}

static void web_stop(void)
{
    struct web *w = running_web;
    if (w == NULL || w->pid == 0)
        return;
    kill(w->pid, SIGTERM);
    int status = 0;
    int64_t deadline = harness_now_ms() + 10000;
    while (waitpid(w->pid, &status, WNOHANG) == 0) {
        if (harness_now_ms() > deadline) {
            kill(w->pid, SIGKILL);
            waitpid(w->pid, &status, 0);
            ck_abort_msg("pgwork web ignored SIGTERM");
        }
        poll(NULL, 0, 10);
    }
    w->pid = 0;
    running_web = NULL;
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "pgwork web: status %d", status);
}

struct reply {
    int status;
    const char *headers; /* the raw header block */
    const char *body;
};

/* Send raw bytes, read the whole answer (the request says Connection:
 * close). */
static struct reply http_raw(int port, const char *request, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, request + off, len - off, MSG_NOSIGNAL);
        if (n <= 0)
            break; /* the server may answer and close before it read it all */
        off += (size_t)n;
    }
    shutdown(fd, SHUT_WR);
    size_t cap = 1 << 16, got = 0;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ck_assert_msg(poll(&p, 1, 10000) == 1, "no answer from pgwork web");
        if (cap - got < 4096) {
            cap *= 2;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
        ssize_t n = recv(fd, buf + got, cap - got - 1, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    struct reply r = {0};
    if (got == 0) { /* closed (or reset) without an answer */
        free(buf);
        r.headers = r.body = "";
        return r;
    }
    ck_assert_msg(sscanf(buf, "HTTP/1.%*d %d", &r.status) == 1, "not HTTP: %s", buf);
    char *end = strstr(buf, "\r\n\r\n");
    ck_assert_ptr_nonnull(end);
    *end = '\0';
    r.headers = harness_printf("%s", buf);
    r.body = harness_printf("%s", end + 4);
    free(buf);
    return r;
}

/* method path with extra header lines ("" for none) and a form body (NULL
 * for none). */
static struct reply http(const struct web *w, const char *method, const char *path,
                         const char *headers, const char *form)
{
    const char *req = harness_printf(
        "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s%s\r\n%s", method, path,
        headers,
        form != NULL ? harness_printf("Content-Type: application/x-www-form-urlencoded\r\n"
                                      "Content-Length: %zu\r\n",
                                      strlen(form))
                     : "",
        form != NULL ? form : "");
    return http_raw(w->port, req, strlen(req));
}

#define BEARER "Authorization: Bearer " TOKEN "\r\n"

static const char *header(const struct reply *r, const char *name)
{
    const char *at = strcasestr(r->headers, harness_printf("\r\n%s: ", name));
    if (at == NULL)
        return NULL;
    at += strlen(name) + 4;
    return harness_printf("%.*s", (int)strcspn(at, "\r\n"), at);
}

static int64_t task_count(struct web *w, const char *state)
{
    const char *p[] = {state};
    return harness_query_int64p(w->conn, "SELECT count(*) FROM pgwork.tasks WHERE state = $1", 1,
                                p);
}

static void insert_dead(struct web *w, const char *queue, const char *error, int n)
{
    const char *p[] = {queue, error, harness_printf("%d", n)};
    harness_execp(w->conn,
                  "INSERT INTO pgwork.tasks (queue, state, attempts, last_error, finished_at)"
                  " SELECT $1, 'dead', 25, $2, now() FROM generate_series(1, $3::int)",
                  3, p);
}

/* Log in through the form; the session cookie's value. */
static const char *login(struct web *w)
{
    struct reply r = http(w, "POST", "/login", "", "token=" TOKEN "&back=%2F");
    ck_assert_int_eq(r.status, 303);
    const char *cookie = header(&r, "Set-Cookie");
    ck_assert_ptr_nonnull(cookie);
    ck_assert_ptr_nonnull(strstr(cookie, "HttpOnly"));
    ck_assert_ptr_nonnull(strstr(cookie, "SameSite=Strict"));
    ck_assert_ptr_null(strstr(cookie, TOKEN));
    return harness_printf("Cookie: %.*s\r\n", (int)strcspn(cookie, ";"), cookie);
}

/* The CSRF token a page's forms carry. */
static const char *csrf_of(const struct reply *page)
{
    const char *at = strstr(page->body, "name=\"csrf\" value=\"");
    ck_assert_msg(at != NULL, "no form with a CSRF token: %s", page->body);
    at += strlen("name=\"csrf\" value=\"");
    return harness_printf("%.*s", (int)strcspn(at, "\""), at);
}

START_TEST(web_reads_need_the_token)
{
    struct web *w = web_start();
    insert_dead(w, "mail", "boom", 1);
    const char *paths[] = {"/",           "/queues/mail",           "/tasks/1",    "/schedules",
                           "/api/queues", "/api/queues/mail/tasks", "/api/tasks/1"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        struct reply r = http(w, "GET", paths[i], "", NULL);
        ck_assert_msg(r.status == 401, "%s without a token: %d", paths[i], r.status);
        ck_assert_msg(strstr(r.body, "boom") == NULL, "%s leaked data", paths[i]);
        r = http(w, "GET", paths[i], "Authorization: Bearer not-the-token-at-all\r\n", NULL);
        ck_assert_msg(r.status == 401, "%s with a wrong token: %d", paths[i], r.status);
        r = http(w, "GET", paths[i], "Authorization: Bearer " TOKEN "x\r\n", NULL);
        ck_assert_msg(r.status == 401, "%s with the token and a byte more: %d", paths[i], r.status);
        r = http(w, "GET", paths[i], BEARER, NULL);
        ck_assert_msg(r.status == 200, "%s with the token: %d %s", paths[i], r.status, r.body);
    }
    /* Probes need none. */
    ck_assert_int_eq(http(w, "GET", "/healthz", "", NULL).status, 200);
    ck_assert_int_eq(http(w, "GET", "/readyz", "", NULL).status, 200);
    web_stop();
    ck_assert_ptr_null(strstr(harness_read_file(w->log_path), TOKEN));
}
END_TEST

START_TEST(web_actions_refused_without_token_change_nothing)
{
    struct web *w = web_start();
    insert_dead(w, "mail", "boom", 3);
    const char *paths[] = {"/api/tasks/1/requeue",    "/api/queues/mail/requeue-dead",
                           "/api/tasks/2/cancel",     "/api/queues/mail/pause",
                           "/api/queues/mail/resume", "/api/schedules/nightly/run"};
    const char *cookie = login(w);
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        struct reply r = http(w, "POST", paths[i], "", NULL);
        ck_assert_msg(r.status == 401, "%s without a token: %d", paths[i], r.status);
        r = http(w, "POST", paths[i], "Authorization: Bearer wrong-token-wrong-token\r\n", NULL);
        ck_assert_msg(r.status == 401, "%s with a wrong token: %d", paths[i], r.status);
        /* A logged-in browser without the CSRF token: a cross-site form. */
        r = http(w, "POST", paths[i], cookie, "back=%2F");
        ck_assert_msg(r.status == 401, "%s with the cookie, no CSRF token: %d", paths[i], r.status);
        r = http(w, "POST", paths[i], cookie, "csrf=0123456789abcdef&back=%2F");
        ck_assert_msg(r.status == 401, "%s with a wrong CSRF token: %d", paths[i], r.status);
    }
    ck_assert_int_eq(task_count(w, "dead"), 3);
    ck_assert_int_eq(task_count(w, "pending"), 0);
    web_stop();
}
END_TEST

START_TEST(web_requeue_with_bearer)
{
    struct web *w = web_start();
    insert_dead(w, "mail", "boom", 3);
    harness_exec(w->conn, "INSERT INTO pgwork.tasks (queue) VALUES ('mail')"); /* id 4, pending */
    struct reply r = http(w, "POST", "/api/tasks/2/requeue", BEARER, NULL);
    ck_assert_msg(r.status == 200, "%d %s", r.status, r.body);
    ck_assert_ptr_nonnull(strstr(r.body, "\"ok\":true"));
    ck_assert_int_eq(harness_query_int64(w->conn, "SELECT count(*) FROM pgwork.tasks WHERE id = 2"
                                                  " AND state = 'pending' AND attempts = 0"),
                     1);
    /* Not dead: 409, nothing changes; no such task: 404. */
    r = http(w, "POST", "/api/tasks/4/requeue", BEARER, NULL);
    ck_assert_int_eq(r.status, 409);
    ck_assert_int_eq(http(w, "POST", "/api/tasks/999/requeue", BEARER, NULL).status, 404);
    r = http(w, "POST", "/api/queues/mail/requeue-dead", BEARER, NULL);
    ck_assert_msg(r.status == 200, "%d %s", r.status, r.body);
    ck_assert_ptr_nonnull(strstr(r.body, "\"count\":2"));
    ck_assert_int_eq(task_count(w, "dead"), 0);
    ck_assert_int_eq(task_count(w, "pending"), 4);
    web_stop();
}
END_TEST

START_TEST(web_login_form_and_csrf)
{
    struct web *w = web_start();
    insert_dead(w, "mail", "boom", 1);
    struct reply r = http(w, "POST", "/login", "", "token=wrong-wrong-wrong-wrong&back=%2F");
    ck_assert_int_eq(r.status, 401);
    ck_assert_ptr_null(header(&r, "Set-Cookie"));
    const char *cookie = login(w);
    r = http(w, "GET", "/", cookie, NULL);
    ck_assert_msg(r.status == 200, "%d", r.status);
    ck_assert_ptr_nonnull(strstr(r.body, "href=\"/queues/mail\""));
    r = http(w, "GET", "/tasks/1", cookie, NULL);
    ck_assert_int_eq(r.status, 200);
    const char *csrf = csrf_of(&r);
    ck_assert_ptr_null(strstr(r.body, TOKEN));
    r = http(w, "POST", "/api/tasks/1/requeue", cookie,
             harness_printf("csrf=%s&back=%%2Ftasks%%2F1", csrf));
    ck_assert_msg(r.status == 303, "%d %s", r.status, r.body);
    ck_assert_str_eq(header(&r, "Location"), "/tasks/1");
    ck_assert_int_eq(task_count(w, "pending"), 1);
    /* A redirect never leaves the site. */
    insert_dead(w, "mail", "boom", 1);
    r = http(w, "POST", "/api/tasks/2/requeue", cookie,
             harness_printf("csrf=%s&back=%%2F%%2Fevil.example%%2F", csrf));
    ck_assert_int_eq(r.status, 303);
    ck_assert_str_eq(header(&r, "Location"), "/");
    /* Logged out: the browser is told to drop the cookie. (Sessions are
     * signed, not remembered: a copy stays valid until it expires or the
     * token changes — web_sessions_survive_restarts_and_replicas.) */
    r = http(w, "POST", "/logout", cookie, "");
    ck_assert_int_eq(r.status, 303);
    const char *gone = header(&r, "Set-Cookie");
    ck_assert_ptr_nonnull(gone);
    ck_assert_ptr_nonnull(strstr(gone, "pgwork_session=;"));
    ck_assert_ptr_nonnull(strstr(gone, "Max-Age=0"));
    web_stop();
}
END_TEST

/* A session cookie as `pgwork web` signs one with token (web/auth.c:
 * v1.EXPIRY.NONCE.MAC), expiring at expiry (unix seconds). */
static const char *signed_session(const char *token, long long expiry)
{
    static const char label[] = "pgwork web session key v1";
    unsigned char key[32], mac[32];
    unsigned int n = 0;
    ck_assert_ptr_nonnull(HMAC(EVP_sha256(), token, (int)strlen(token),
                               (const unsigned char *)label, strlen(label), key, &n));
    const char *body = harness_printf("v1.%lld.00112233445566778899aabbccddeeff", expiry);
    ck_assert_ptr_nonnull(
        HMAC(EVP_sha256(), key, sizeof key, (const unsigned char *)body, strlen(body), mac, &n));
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    return harness_printf("Cookie: pgwork_session=%s.%s\r\n", body, hex);
}

/* Sessions are signed, not remembered: a cookie (and its CSRF token) from
 * one `pgwork web` works on a second process with the same token (a
 * restart, another replica); tampered, expired or under another token it
 * is refused. */
START_TEST(web_sessions_survive_restarts_and_replicas)
{
    struct web *w = web_start();
    insert_dead(w, "mail", "boom", 2);
    const char *cookie = login(w);
    const char *csrf =
        csrf_of(&(struct reply){.body = http(w, "GET", "/tasks/1", cookie, NULL).body});
    const char *db = w->db;
    web_stop();

    w = web_start_in(db, "", TOKEN, "");
    struct reply r = http(w, "GET", "/", cookie, NULL);
    ck_assert_msg(r.status == 200, "the first process's cookie refused after a restart: %d",
                  r.status);
    r = http(w, "POST", "/api/tasks/1/requeue", cookie, harness_printf("csrf=%s", csrf));
    ck_assert_int_eq(r.status, 303);
    ck_assert_int_eq(task_count(w, "dead"), 1);
    /* Another session's CSRF token does not fit this cookie. */
    const char *other = login(w);
    ck_assert_int_eq(
        http(w, "POST", "/api/tasks/2/requeue", other, harness_printf("csrf=%s", csrf)).status,
        401);
    ck_assert_int_eq(task_count(w, "dead"), 1);
    /* Tampered: the MAC's last digit, the expiry, a byte cut off. */
    const char *value = cookie + strlen("Cookie: pgwork_session=");
    size_t len = strcspn(value, "\r");
    char *bad = harness_alloc(len + 1);
    memcpy(bad, value, len);
    bad[len - 1] = bad[len - 1] == '0' ? '1' : '0';
    ck_assert_int_eq(
        http(w, "GET", "/", harness_printf("Cookie: pgwork_session=%s\r\n", bad), NULL).status,
        401);
    memcpy(bad, value, len);
    bad[3] = bad[3] == '9' ? '8' : (char)(bad[3] + 1);
    ck_assert_int_eq(
        http(w, "GET", "/", harness_printf("Cookie: pgwork_session=%s\r\n", bad), NULL).status,
        401);
    ck_assert_int_eq(http(w, "GET", "/",
                          harness_printf("Cookie: pgwork_session=%.*s\r\n", (int)len - 1, value),
                          NULL)
                         .status,
                     401);
    /* Expiry: signed right, but past. (The same, a minute ahead, is
     * accepted: the format is the server's.) */
    long long now = (long long)time(NULL);
    ck_assert_int_eq(http(w, "GET", "/", signed_session(TOKEN, now + 60), NULL).status, 200);
    ck_assert_int_eq(http(w, "GET", "/", signed_session(TOKEN, now - 1), NULL).status, 401);
    web_stop();

    /* Another token: every session of the old one ends. */
    w = web_start_in(db, "", TOKEN "-rotated", "");
    ck_assert_int_eq(http(w, "GET", "/", cookie, NULL).status, 401);
    ck_assert_int_eq(http(w, "GET", "/", signed_session(TOKEN, now + 60), NULL).status, 401);
    web_stop();
}
END_TEST

START_TEST(web_escapes_database_values)
{
    struct web *w = web_start();
    const char *evil = "<script>alert(\"x\")</script>&'";
    insert_dead(w, "<b>q</b>", evil, 1);
    const char *p[] = {"{\"html\": \"</pre><script>alert(2)</script>\"}"};
    harness_execp(w->conn, "UPDATE pgwork.tasks SET payload = $1::jsonb", 1, p);
    const char *pages[] = {"/", "/queues/%3Cb%3Eq%3C%2Fb%3E?state=dead", "/tasks/1"};
    for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++) {
        struct reply r = http(w, "GET", pages[i], BEARER, NULL);
        ck_assert_msg(r.status == 200, "%s: %d", pages[i], r.status);
        ck_assert_msg(strstr(r.body, "<script>alert") == NULL, "%s: unescaped script: %s", pages[i],
                      r.body);
        ck_assert_msg(strstr(r.body, "<b>q</b>") == NULL, "%s: unescaped queue name", pages[i]);
        ck_assert_msg(strstr(r.body, "&lt;b&gt;q&lt;/b&gt;") != NULL, "%s: no escaped name",
                      pages[i]);
        ck_assert_ptr_nonnull(strstr(header(&r, "Content-Security-Policy"), "script-src 'self'"));
    }
    struct reply r = http(w, "GET", "/tasks/1", BEARER, NULL);
    ck_assert_ptr_nonnull(
        strstr(r.body, "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"));
    ck_assert_ptr_nonnull(strstr(r.body, "&lt;/pre&gt;&lt;script&gt;alert(2)"));
    /* The API is JSON: the same text, escaped as JSON. */
    r = http(w, "GET", "/api/tasks/1", BEARER, NULL);
    ck_assert_ptr_nonnull(strstr(header(&r, "Content-Type"), "application/json"));
    ck_assert_ptr_null(strstr(r.body, "<script>"));
    web_stop();
}
END_TEST

/* Ids on a page of the API's answer, in order. */
static int page_ids(const char *body, long long *ids, int max)
{
    int n = 0;
    for (const char *at = strstr(body, "{\"id\":"); at != NULL && n < max;
         at = strstr(at + 1, "{\"id\":"))
        ids[n++] = atoll(at + 6);
    return n;
}

static const char *next_cursor(const char *body)
{
    const char *at = strstr(body, "\"next\":");
    ck_assert_ptr_nonnull(at);
    at += 7;
    if (strncmp(at, "null", 4) == 0)
        return NULL;
    ck_assert_int_eq(at[0], '"');
    return harness_printf("%.*s", (int)strcspn(at + 1, "\""), at + 1);
}

START_TEST(web_pagination_stable_while_tasks_change)
{
    struct web *w = web_start();
    insert_dead(w, "mail", "boom", 120); /* ids 1..120 */
    long long seen[200];
    int total = 0;
    const char *after = NULL;
    for (int page = 0; page < 10; page++) {
        struct reply r = http(w, "GET",
                              harness_printf("/api/queues/mail/tasks?state=dead%s%s",
                                             after ? "&after=" : "", after ? after : ""),
                              BEARER, NULL);
        ck_assert_msg(r.status == 200, "%d %s", r.status, r.body);
        long long ids[60];
        int n = page_ids(r.body, ids, 60);
        for (int i = 0; i < n; i++)
            seen[total++] = ids[i];
        after = next_cursor(r.body);
        if (page == 0) {
            ck_assert_int_eq(n, 50);
            /* While the reader is on page 1: new dead tasks arrive (newer
             * ids, before the cursor), and some already read and some not
             * yet read leave the state. */
            insert_dead(w, "mail", "later", 30);
            harness_exec(w->conn, "UPDATE pgwork.tasks SET state = 'pending'"
                                  " WHERE id IN (120, 100, 60, 10)");
        }
        if (after == NULL)
            break;
    }
    /* Newest first, no id twice, nothing that stayed dead skipped. */
    for (int i = 1; i < total; i++)
        ck_assert_msg(seen[i] < seen[i - 1], "ids out of order at %d", i);
    ck_assert_int_eq(total, 50 + (70 - 2)); /* 60 and 10 left before they were read */
    /* The page and its next link agree with the API. */
    struct reply r = http(w, "GET", "/queues/mail?state=dead", BEARER, NULL);
    ck_assert_ptr_nonnull(strstr(r.body, "id=\"next\""));
    ck_assert_ptr_null(strstr(r.body, "OFFSET"));

    /* Pending: in the order they will run, run_at then id. */
    harness_exec(w->conn,
                 "INSERT INTO pgwork.tasks (queue, run_at)"
                 " SELECT 'p', now() - g * interval '1 second' FROM generate_series(1, 60) g");
    r = http(w, "GET", "/api/queues/p/tasks?state=pending", BEARER, NULL);
    long long ids[60];
    ck_assert_int_eq(page_ids(r.body, ids, 60), 50);
    after = next_cursor(r.body);
    ck_assert_ptr_nonnull(after);
    r = http(w, "GET", harness_printf("/api/queues/p/tasks?state=pending&after=%s", after), BEARER,
             NULL);
    long long ids2[60];
    ck_assert_int_eq(page_ids(r.body, ids2, 60), 10);
    ck_assert_int_gt(ids[0], ids[49]); /* the oldest run_at (largest g, last id) first */
    ck_assert_int_gt(ids[49], ids2[0]);
    ck_assert_int_eq(
        http(w, "GET", "/api/queues/p/tasks?state=pending&after=x", BEARER, NULL).status, 400);
    ck_assert_int_eq(http(w, "GET", "/api/queues/p/tasks?state=nope", BEARER, NULL).status, 400);
    web_stop();
}
END_TEST

START_TEST(web_pages_show_the_database)
{
    struct web *w = web_start();
    harness_exec(w->conn,
                 "INSERT INTO pgwork.tasks (queue, payload, state, attempts, locked_by, unique_key,"
                 " started_at) VALUES ('mail', '{\"to\": \"a@example.com\", \"n\": [1, 2]}',"
                 " 'running', 2, 'pod-a:abc/0/123', 'k-1', now())");
    harness_exec(w->conn, "INSERT INTO pgwork.tasks (queue, run_at) VALUES ('mail', now()),"
                          " ('mail', now() + interval '1 hour')");
    insert_dead(w, "mail", "exit status 3", 2);
    /* Overview: counts per state. */
    struct reply r = http(w, "GET", "/api/queues", BEARER, NULL);
    ck_assert_msg(strstr(r.body, "\"queue\":\"mail\",\"pending_due\":1,\"pending_scheduled\":1,"
                                 "\"running\":1,") != NULL,
                  "%s", r.body);
    ck_assert_ptr_nonnull(strstr(r.body, "\"dead\":2,"));
    ck_assert_ptr_nonnull(strstr(r.body, "\"done_estimated\":true"));
    r = http(w, "GET", "/", BEARER, NULL);
    ck_assert_ptr_nonnull(strstr(r.body, "id=\"throughput-data\""));
    ck_assert_ptr_nonnull(strstr(r.body, "<td class=\"n running\">1</td>"));
    /* One task. */
    r = http(w, "GET", "/tasks/1", BEARER, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "pod-a:abc/0/123"));
    ck_assert_msg(strstr(r.body, "{\n    &quot;n&quot;: [\n        1,\n        2\n    ],") != NULL,
                  "payload not pretty-printed: %s", r.body);
    ck_assert_ptr_nonnull(strstr(r.body, "<dd id=\"task-attempts\">2</dd>"));
    ck_assert_int_eq(http(w, "GET", "/tasks/77", BEARER, NULL).status, 404);
    ck_assert_int_eq(http(w, "GET", "/tasks/x", BEARER, NULL).status, 404);
    /* Dead tasks with their errors. */
    r = http(w, "GET", "/queues/mail?state=dead", BEARER, NULL);
    ck_assert_ptr_nonnull(strstr(r.body, "exit status 3"));
    ck_assert_ptr_nonnull(strstr(r.body, "Requeue all dead"));
    /* Search: an id goes to the task, a unique key finds its task. */
    r = http(w, "GET", "/queues/mail?q=1", BEARER, NULL);
    ck_assert_int_eq(r.status, 303);
    ck_assert_str_eq(header(&r, "Location"), "/tasks/1");
    r = http(w, "GET", "/queues/mail?q=k-1", BEARER, NULL);
    ck_assert_ptr_nonnull(strstr(r.body, "href=\"/tasks/1\""));
    r = http(w, "GET", "/api/queues/mail/tasks?key=k-1", BEARER, NULL);
    ck_assert_ptr_nonnull(strstr(r.body, "\"id\":1,"));
    /* Assets are served, cacheable. */
    r = http(w, "GET", "/assets/uPlot.iife.min.js", "", NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "uPlot"));
    ck_assert_int_eq(http(w, "GET", "/assets/nope.js", "", NULL).status, 404);
    web_stop();
}
END_TEST

START_TEST(web_public_read)
{
    struct web *w = web_start_opts("public_read = true", TOKEN);
    insert_dead(w, "mail", "boom", 1);
    ck_assert_int_eq(http(w, "GET", "/", "", NULL).status, 200);
    ck_assert_int_eq(http(w, "GET", "/api/queues", "", NULL).status, 200);
    ck_assert_int_eq(http(w, "POST", "/api/tasks/1/requeue", "", NULL).status, 401);
    ck_assert_int_eq(task_count(w, "dead"), 1);
    web_stop();
}
END_TEST

START_TEST(web_token_file_and_refusals)
{
    /* No token: it refuses to start (exit 3), and says why without one. */
    const char *db = harness_db_create(NULL);
    const char *config = harness_write_config("web { listen = \"127.0.0.1:1\" }\n");
    const char *err = NULL;
    const char *args[] = {"-c", config, "web", NULL};
    unsetenv("PGWORK_WEB_TOKEN");
    ck_assert_int_eq(harness_pgwork(db, NULL, NULL, &err, args), 3);
    ck_assert_ptr_nonnull(strstr(err, "no token"));
    setenv("PGWORK_WEB_TOKEN", "short", 1);
    ck_assert_int_eq(harness_pgwork(db, NULL, NULL, &err, args), 3);
    ck_assert_ptr_nonnull(strstr(err, "shorter than 16"));
    ck_assert_ptr_null(strstr(err, "short\""));
    unsetenv("PGWORK_WEB_TOKEN");
    /* From a file, whitespace around it ignored. */
    const char *file = harness_printf("%s/token", harness_tmpdir());
    FILE *f = fopen(file, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "  %s\n", TOKEN);
    fclose(f);
    struct web *w = web_start_opts(harness_printf("token_file = \"%s\"", file), NULL);
    ck_assert_int_eq(http(w, "GET", "/api/queues", BEARER, NULL).status, 200);
    ck_assert_int_eq(http(w, "GET", "/api/queues", "", NULL).status, 401);
    web_stop();
    /* A NUL byte in the file is an error naming the file, never a token
     * cut short at it. */
    const char *nul_file = harness_printf("%s/token-nul", harness_tmpdir());
    f = fopen(nul_file, "w");
    ck_assert_ptr_nonnull(f);
    fwrite("abcd\0", 1, 5, f);
    fprintf(f, "%s\n", TOKEN);
    fclose(f);
    const char *nul_config = harness_write_config(
        harness_printf("web {\n  listen = \"127.0.0.1:1\"\n  token_file = \"%s\"\n}\n", nul_file));
    const char *nul_args[] = {"-c", nul_config, "web", NULL};
    ck_assert_int_eq(harness_pgwork(db, NULL, NULL, &err, nul_args), 3);
    ck_assert_msg(strstr(err, nul_file) != NULL && strstr(err, "NUL") != NULL, "%s", err);
}
END_TEST

START_TEST(web_hostile_clients)
{
    struct web *w = web_start();
    /* Headers past the connection's memory: 431, or (when the rest of the
     * request arrived after the answer) the connection reset. */
    size_t big = 40 * 1024;
    char *huge = harness_alloc(big + 256);
    int len = snprintf(huge, 256, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(huge + len, 'a', big);
    memcpy(huge + len + big, "\r\n\r\n", 5);
    struct reply r = http_raw(w->port, huge, strlen(huge));
    ck_assert_msg(r.status == 0 || r.status == 431, "huge header: %d", r.status);
    /* A body past the limit. */
    const char *head =
        "POST /api/tasks/1/requeue HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 65536\r\n\r\n";
    char *body = harness_alloc(strlen(head) + 65537);
    strcpy(body, head);
    memset(body + strlen(head), 'a', 65536);
    r = http_raw(w->port, body, strlen(body));
    ck_assert_int_eq(r.status, 413);
    /* Garbage, unknown methods, bad escapes, paths too deep. */
    r = http_raw(w->port, "BLAH\r\n\r\n", 8); /* no version: closed, or 400 */
    ck_assert_msg(r.status == 0 || r.status == 400, "garbage: %d", r.status);
    const char *odd = "BLAH / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    ck_assert_int_eq(http_raw(w->port, odd, strlen(odd)).status, 405);

    ck_assert_int_eq(http(w, "DELETE", "/api/tasks/1", BEARER, NULL).status, 405);
    ck_assert_int_eq(http(w, "GET", "/queues/%00x", BEARER, NULL).status, 400);
    ck_assert_int_eq(http(w, "GET", "/queues/%zz", BEARER, NULL).status, 400);
    ck_assert_int_eq(http(w, "GET", "/a/b/c/d/e/f/g/h/i/j", BEARER, NULL).status, 400);
    ck_assert_int_eq(http(w, "GET", "/nope", BEARER, NULL).status, 404);
    /* Still serving. */
    ck_assert_int_eq(http(w, "GET", "/api/queues", BEARER, NULL).status, 200);
    web_stop();
}
END_TEST

/* Slowloris: clients that trickle a header byte every 500 ms (each byte
 * resets libmicrohttpd's idle timeout) are cut off by the request's
 * deadline (5 s to arrive whole), not sooner than 4 s; a normal client is
 * served meanwhile. */
START_TEST(web_slow_clients_cut_by_the_deadline)
{
    struct web *w = web_start();
    enum { SLOW = 4 };
    int fds[SLOW];
    int64_t cut_ms[SLOW] = {0};
    const char *head = "GET /api/queues HTTP/1.1\r\nHost: 127.0.0.1\r\n" BEARER "X-Slow: ";
    int64_t start = harness_now_ms();
    for (int i = 0; i < SLOW; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)w->port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        ck_assert_int_eq(connect(fds[i], (struct sockaddr *)&a, sizeof a), 0);
        ck_assert_int_eq(send(fds[i], head, strlen(head), MSG_NOSIGNAL), (ssize_t)strlen(head));
    }
    int open = SLOW;
    bool served = false;
    while (open > 0 && harness_now_ms() - start < 14000) {
        for (int i = 0; i < SLOW; i++) {
            if (cut_ms[i] != 0)
                continue;
            struct pollfd p = {.fd = fds[i], .events = POLLIN};
            char c;
            bool gone = (poll(&p, 1, 0) == 1 && recv(fds[i], &c, 1, MSG_DONTWAIT) <= 0) ||
                        send(fds[i], "a", 1, MSG_NOSIGNAL) != 1;
            if (gone) {
                cut_ms[i] = harness_now_ms() - start;
                open--;
            }
        }
        if (!served && harness_now_ms() - start > 1000) {
            int64_t t0 = harness_now_ms();
            ck_assert_int_eq(http(w, "GET", "/api/queues", BEARER, NULL).status, 200);
            ck_assert_msg(harness_now_ms() - t0 < 2000, "a normal request took %lld ms",
                          (long long)(harness_now_ms() - t0));
            served = true;
        }
        poll(NULL, 0, 500);
    }
    for (int i = 0; i < SLOW; i++)
        close(fds[i]);
    ck_assert_msg(open == 0, "%d of %d slow clients still connected after %lld ms", open, SLOW,
                  (long long)(harness_now_ms() - start));
    for (int i = 0; i < SLOW; i++)
        ck_assert_msg(cut_ms[i] >= 4000 && cut_ms[i] <= 10000, "slow client %d cut after %lld ms",
                      i, (long long)cut_ms[i]);
    ck_assert(served);
    ck_assert_int_eq(http(w, "GET", "/api/queues", BEARER, NULL).status, 200);
    web_stop();
}
END_TEST

START_TEST(web_pause_resume_cancel)
{
    struct web *w = web_start_config("", TOKEN,
                                     "queue \"mail\" { command = {\"/bin/true\"}"
                                     " concurrency = 3 rate = \"10/1m\" }\n");
    harness_exec(w->conn, "INSERT INTO pgwork.tasks (queue) VALUES ('mail'), ('mail')");
    harness_exec(w->conn, "UPDATE pgwork.tasks SET state = 'done' WHERE id = 2");
    struct reply r = http(w, "POST", "/api/queues/mail/pause", BEARER, NULL);
    ck_assert_msg(r.status == 200, "%d %s", r.status, r.body);
    ck_assert_int_eq(harness_query_int64(w->conn, "SELECT count(*) FROM pgwork.paused_queues"
                                                  " WHERE queue = 'mail'"),
                     1);
    r = http(w, "GET", "/", BEARER, NULL);
    ck_assert_ptr_nonnull(strstr(r.body, "<span class=\"paused\">paused</span>"));
    ck_assert_ptr_nonnull(strstr(r.body, "≤3 running"));
    ck_assert_ptr_nonnull(strstr(r.body, "10/1m starts"));
    ck_assert_ptr_nonnull(strstr(r.body, "action=\"/api/queues/mail/resume\""));
    r = http(w, "GET", "/api/queues", BEARER, NULL);
    ck_assert_ptr_nonnull(strstr(r.body, "\"paused\":true,\"concurrency\":3,\"rate\":\"10/1m\""));
    ck_assert_int_eq(http(w, "POST", "/api/queues/mail/resume", BEARER, NULL).status, 200);
    ck_assert_int_eq(harness_query_int64(w->conn, "SELECT count(*) FROM pgwork.paused_queues"), 0);
    /* Cancel: a pending task ends cancelled; a finished one is a 409, an
     * unknown one a 404, and neither changes. */
    r = http(w, "POST", "/api/tasks/1/cancel", BEARER, NULL);
    ck_assert_msg(r.status == 200, "%d %s", r.status, r.body);
    ck_assert_int_eq(task_count(w, "cancelled"), 1);
    ck_assert_int_eq(http(w, "POST", "/api/tasks/1/cancel", BEARER, NULL).status, 409);
    ck_assert_int_eq(http(w, "POST", "/api/tasks/2/cancel", BEARER, NULL).status, 409);
    ck_assert_int_eq(http(w, "POST", "/api/tasks/99/cancel", BEARER, NULL).status, 404);
    ck_assert_int_eq(task_count(w, "done"), 1);
    r = http(w, "GET", "/queues/mail?state=cancelled", BEARER, NULL);
    ck_assert_ptr_nonnull(strstr(r.body, "href=\"/tasks/1\""));
    web_stop();
}
END_TEST

START_TEST(web_actions_missing_from_the_schema)
{
    struct web *w = web_start();
    /* A database migrated by an older pgwork: the functions are not there
     * (dropped before the dashboard's first connection looks). */
    harness_exec(w->conn, "DROP FUNCTION pgwork.cancel(bigint); DROP FUNCTION pgwork.pause(text);"
                          " DROP FUNCTION pgwork.resume(text)");
    harness_exec(w->conn, "INSERT INTO pgwork.tasks (queue) VALUES ('mail')");
    ck_assert_int_eq(http(w, "POST", "/api/queues/mail/pause", BEARER, NULL).status, 501);
    ck_assert_int_eq(http(w, "POST", "/api/tasks/1/cancel", BEARER, NULL).status, 501);
    struct reply r = http(w, "GET", "/", BEARER, NULL);
    ck_assert_ptr_null(strstr(r.body, "/pause\""));
    r = http(w, "GET", "/tasks/1", BEARER, NULL);
    ck_assert_ptr_null(strstr(r.body, "/cancel\""));
    ck_assert_int_eq(task_count(w, "pending"), 1);
    web_stop();
}
END_TEST

START_TEST(web_schedules_and_run_now)
{
    struct web *w =
        web_start_config("", TOKEN,
                         "schedule \"nightly\" { cron = \"0 3 * * *\" queue = \"reports\""
                         " payload = \"{\\\"kind\\\": \\\"<nightly>\\\"}\" priority = 7 }\n"
                         "schedule \"ping\" { every = 30s queue = \"pings\" }\n");
    /* A row only the database knows (another deployment's schedule). */
    harness_exec(w->conn, "INSERT INTO pgwork.schedules (name, last_tick, next_tick, queue, spec,"
                          " made_by) VALUES ('ping', now() - interval '10 seconds',"
                          " now() + interval '20 seconds', 'pings', 'every 30s', 'pod-a:1'),"
                          " ('old<i>', now(), NULL, 'gone', 'every 1h', 'pod-b:2')");
    struct reply r = http(w, "GET", "/schedules", BEARER, NULL);
    ck_assert_msg(r.status == 200, "%d %s", r.status, r.body);
    ck_assert_ptr_nonnull(strstr(r.body, "data-schedule=\"nightly\""));
    ck_assert_ptr_nonnull(strstr(r.body, "pod-a:1"));
    ck_assert_ptr_nonnull(strstr(r.body, "every 30s"));
    ck_assert_ptr_nonnull(strstr(r.body, "old&lt;i&gt;"));
    ck_assert_ptr_nonnull(strstr(r.body, "action=\"/api/schedules/nightly/run\""));
    ck_assert_ptr_null(strstr(r.body, "action=\"/api/schedules/old%3Ci%3E/run\""));
    r = http(w, "GET", "/api/schedules", BEARER, NULL);
    ck_assert_ptr_nonnull(
        strstr(r.body, "\"name\":\"ping\",\"queue\":\"pings\",\"spec\":\"every 30s\""));
    /* Run now: one task as the tick makes it; the tick row untouched. */
    ck_assert_int_eq(http(w, "POST", "/api/schedules/nightly/run", "", NULL).status, 401);
    ck_assert_int_eq(task_count(w, "pending"), 0);
    r = http(w, "POST", "/api/schedules/nightly/run", BEARER, NULL);
    ck_assert_msg(r.status == 200, "%d %s", r.status, r.body);
    ck_assert_int_eq(harness_query_int64(w->conn,
                                         "SELECT count(*) FROM pgwork.tasks WHERE queue ="
                                         " 'reports' AND priority = 7 AND payload ="
                                         " '{\"kind\": \"<nightly>\"}' AND run_at <= now()"),
                     1);
    ck_assert_int_eq(harness_query_int64(w->conn, "SELECT count(*) FROM pgwork.schedules"
                                                  " WHERE name = 'nightly'"),
                     0);
    ck_assert_int_eq(http(w, "POST", "/api/schedules/old%3Ci%3E/run", BEARER, NULL).status, 404);
    ck_assert_int_eq(task_count(w, "pending"), 1);
    web_stop();
}
END_TEST

static void web_teardown(void)
{
    if (running_web != NULL && running_web->pid != 0) {
        kill(running_web->pid, SIGKILL);
        waitpid(running_web->pid, NULL, 0);
    }
    running_web = NULL;
}

/* The overview's per-minute arrays ("done" or "failed" under
 * "throughput") from /api/queues into out (THROUGHPUT_SLOTS numbers);
 * minute0 too. */
#define THROUGHPUT_SLOTS 60
static void api_throughput(const char *body, const char *key, long long *out, long long *minute0)
{
    const char *t = strstr(body, "\"throughput\":{");
    ck_assert_msg(t != NULL, "no throughput: %s", body);
    ck_assert_int_eq(sscanf(t, "\"throughput\":{\"minute0\":%lld", minute0), 1);
    const char *at = strstr(t, harness_printf("\"%s\":[", key));
    ck_assert_msg(at != NULL, "no %s: %s", key, t);
    at += strlen(key) + 4;
    for (int i = 0; i < THROUGHPUT_SLOTS; i++) {
        char *end;
        out[i] = strtoll(at, &end, 10);
        ck_assert_msg(end != at && (*end == ',' || (*end == ']' && i == THROUGHPUT_SLOTS - 1)),
                      "bad %s array at %d: %s", key, i, t);
        at = end + 1;
    }
}

/* A pod running tasks, some of them failing: its per-minute rows in
 * pgwork.throughput (migration 0013) hold what the tasks table says
 * finished — done attempts, and failed ones (each retry and the last,
 * dead attempt) — first when a minute ends (the pod still running), then
 * at its graceful shutdown; the API's per-minute counts are those rows. */
START_TEST(web_throughput_rollup_counts_attempts)
{
    struct web *w = web_start();
    const char *script = harness_write_script("maybe_fail.sh", "grep -q fail && exit 1\nexit 0");
    const char *config = harness_write_config(
        harness_printf("workers { count = 2 }\nhttp { listen = \"127.0.0.1:%d\" }\n"
                       "log { format = \"text\" }\n"
                       "queue \"tp\" { command = {\"%s\"} max_attempts = 3 backoff_base = 10ms"
                       " backoff_max = 20ms }\n",
                       harness_free_port(), script));
    const char *insert =
        "INSERT INTO pgwork.tasks (queue, payload)"
        " SELECT 'tp', CASE WHEN g % 4 = 0 THEN '\"fail\"' ELSE '\"ok\"' END::jsonb"
        " FROM generate_series(1, 20) g";
    harness_exec(w->conn, insert);
    struct harness_supervisor *sup = harness_spawn_supervisor(config, w->db);
    harness_expect(w->conn, sup,
                   "SELECT count(*) FROM pgwork.tasks WHERE state IN ('done', 'dead')", 20, 30000,
                   "the first tasks finished");
    ck_assert_int_eq(harness_query_int64(w->conn, "SELECT count(*) FROM pgwork.tasks"
                                                  " WHERE state = 'dead' AND attempts = 3"),
                     5);
    /* The minute ends: its row goes in while the pod runs. */
    harness_expect(w->conn, sup,
                   "SELECT coalesce(sum(done), 0) * 1000 + coalesce(sum(failed), 0)"
                   " FROM pgwork.throughput WHERE queue = 'tp'",
                   15 * 1000 + 5 * 3, 75000, "the minute's row (15 done, 15 failed attempts)");
    /* More, then a graceful stop: the minute in progress goes in too. */
    harness_exec(w->conn, insert);
    harness_expect(w->conn, sup,
                   "SELECT count(*) FROM pgwork.tasks WHERE state IN ('done', 'dead')", 40, 30000,
                   "the second tasks finished");
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
    ck_assert_int_eq(
        harness_query_int64(w->conn, "SELECT sum(done) FROM pgwork.throughput"),
        harness_query_int64(w->conn, "SELECT count(*) FROM pgwork.tasks WHERE state = 'done'"));
    ck_assert_int_eq(harness_query_int64(w->conn, "SELECT sum(failed) FROM pgwork.throughput"),
                     harness_query_int64(
                         w->conn, "SELECT sum(attempts) FROM pgwork.tasks WHERE state = 'dead'"));
    ck_assert_int_eq(harness_query_int64(w->conn, "SELECT sum(failed) FROM pgwork.throughput"), 30);

    /* The API: each minute is its row; the queue's hour is their sum. */
    struct reply r = http(w, "GET", "/api/queues", BEARER, NULL);
    ck_assert_int_eq(r.status, 200);
    long long done[THROUGHPUT_SLOTS], failed[THROUGHPUT_SLOTS], minute0, m1;
    api_throughput(r.body, "done", done, &minute0);
    api_throughput(r.body, "failed", failed, &m1);
    ck_assert_int_eq(minute0, m1);
    long long sum_done = 0, sum_failed = 0;
    for (int i = 0; i < THROUGHPUT_SLOTS; i++) {
        const char *p[] = {harness_printf("%lld", minute0 + 60 * i)};
        int64_t want_done = harness_query_int64p(
            w->conn,
            "SELECT coalesce(sum(done), 0) FROM pgwork.throughput"
            " WHERE minute = 'epoch'::timestamptz + $1::bigint * interval '1 second'",
            1, p);
        int64_t want_failed = harness_query_int64p(
            w->conn,
            "SELECT coalesce(sum(failed), 0) FROM pgwork.throughput"
            " WHERE minute = 'epoch'::timestamptz + $1::bigint * interval '1 second'",
            1, p);
        ck_assert_int_eq(done[i], want_done);
        ck_assert_int_eq(failed[i], want_failed);
        sum_done += done[i];
        sum_failed += failed[i];
    }
    ck_assert_int_eq(sum_done, 30);
    ck_assert_int_eq(sum_failed, 30);
    ck_assert_ptr_nonnull(strstr(r.body, "\"done_last_hour\":30,\"failed_last_hour\":30"));
    web_stop();
}
END_TEST

Suite *web_suite(void)
{
    Suite *s = suite_create("web");
    TCase *tc = harness_tcase("web");
    tcase_add_checked_fixture(tc, NULL, web_teardown);
    tcase_add_test(tc, web_reads_need_the_token);
    tcase_add_test(tc, web_actions_refused_without_token_change_nothing);
    tcase_add_test(tc, web_requeue_with_bearer);
    tcase_add_test(tc, web_login_form_and_csrf);
    tcase_add_test(tc, web_sessions_survive_restarts_and_replicas);
    tcase_add_test(tc, web_escapes_database_values);
    tcase_add_test(tc, web_pagination_stable_while_tasks_change);
    tcase_add_test(tc, web_pages_show_the_database);
    tcase_add_test(tc, web_public_read);
    tcase_add_test(tc, web_token_file_and_refusals);
    tcase_add_test(tc, web_hostile_clients);
    tcase_add_test(tc, web_slow_clients_cut_by_the_deadline);
    tcase_add_test(tc, web_pause_resume_cancel);
    tcase_add_test(tc, web_actions_missing_from_the_schema);
    tcase_add_test(tc, web_schedules_and_run_now);
    suite_add_tcase(s, tc);
    /* Waits for a minute of the database's clock to end. */
    TCase *minute = harness_tcase("web_minute");
    tcase_set_timeout(minute, 150);
    tcase_add_checked_fixture(minute, NULL, web_teardown);
    tcase_add_test(minute, web_throughput_rollup_counts_attempts);
    suite_add_tcase(s, minute);
    return s;
}
