/*
 * test_logs.c — what operators feed to their log pipeline (issue 5, item
 * 3), checked on a real supervisor under load:
 *  - log.format = "json": every line of a busy run (exec handlers writing
 *    quotes, escapes and invalid UTF-8 to stderr, failures, retries, dead
 *    tasks, signals) parses as one JSON object with a real parser (jq) and
 *    carries ts, level, msg, pid, role; worker lines carry worker; task
 *    lines carry queue and task;
 *  - log.format = "text": one line per event, each starting with the
 *    timestamp and the level;
 *  - an upkeep statement that fails because its backend went says why;
 *  - a password in the connection string (key=value or URL) never appears
 *    in any output of the supervisor, its workers or the CLI commands —
 *    also when the connection fails or the string does not even parse.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

#define SECRET "SECRETPW123"
#define RUN_MS 45000

/* --- helpers -------------------------------------------------------------- */

/* Whether the n bytes at s are valid UTF-8 (RFC 8259: JSON text is). On
 * failure *bad gets the offset of the first bad byte. */
static bool valid_utf8(const char *s, size_t n, size_t *bad)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        size_t len = c < 0x80                 ? 1
                     : c >= 0xc2 && c <= 0xdf ? 2
                     : c >= 0xe0 && c <= 0xef ? 3
                     : c >= 0xf0 && c <= 0xf4 ? 4
                                              : 0;
        bool ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; k++)
            ok = (p[i + k] & 0xc0) == 0x80;
        if (ok && len == 3)
            ok = !(c == 0xe0 && p[i + 1] < 0xa0) && !(c == 0xed && p[i + 1] >= 0xa0);
        if (ok && len == 4)
            ok = !(c == 0xf0 && p[i + 1] < 0x90) && !(c == 0xf4 && p[i + 1] >= 0x90);
        if (!ok) {
            *bad = i;
            return false;
        }
        i += len;
    }
    return true;
}

/* The line of text containing offset at, for a failure message. */
static const char *line_at(const char *text, size_t at)
{
    size_t start = at, end = at;
    while (start > 0 && text[start - 1] != '\n')
        start--;
    while (text[end] && text[end] != '\n')
        end++;
    return harness_printf("%.*s", (int)(end - start), text + start);
}

/*
 * Every line of the supervisor's output through jq's JSON parser, one
 * line at a time (-R: a value split over two lines, or two on one line,
 * fails). Each must be an object with the fields of the contract.
 */
static const char json_line_filter[] =
    "def check:"
    "  if type != \"object\" then \"not an object\""
    "  elif (.ts | type) != \"string\" or"
    "       (.ts | test(\"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[.][0-9]{3}Z$\")"
    "        | not) then \"bad ts\""
    "  elif (.level as $l | [\"debug\", \"info\", \"warn\", \"error\"] | any(. == $l)) | not"
    "       then \"bad level\""
    "  elif (.msg | type) != \"string\" or (.msg | length) == 0 then \"bad msg\""
    "  elif (.pid | type) != \"number\" or .pid <= 0 then \"bad pid\""
    "  elif (.role as $r | [\"supervisor\", \"worker\"] | any(. == $r)) | not then \"bad role\""
    "  elif .role == \"worker\" and (.worker | type) != \"number\" then \"worker line without "
    "worker\""
    "  elif has(\"task\") and ((.task | type) != \"number\" or (.queue | type) != \"string\")"
    "       then \"task line without queue\""
    "  elif (.msg | test(\"^(done in|failed on attempt)\")) and (has(\"task\") | not)"
    "       then \"task outcome without task\""
    "  else \"ok\" end;"
    "try (fromjson | check) catch \"not JSON\"";

/* Check every line of sup's output; returns the output. */
static const char *assert_json_lines(struct harness_supervisor *sup)
{
    const char *text = harness_read_file(sup->stderr_path);
    size_t len = strlen(text), bad;
    ck_assert_msg(len > 0 && text[len - 1] == '\n', "output does not end with a newline");
    if (!valid_utf8(text, len, &bad)) {
        harness_stderr_dump(sup);
        ck_abort_msg("not UTF-8 at byte %zu: %s", bad, line_at(text, bad));
    }

    const char *verdicts;
    int rc = harness_jq_file(sup->stderr_path,
                             (const char *const[]){"-R", "-r", json_line_filter, NULL}, &verdicts);
    ck_assert_msg(rc == 0, "jq exited %d", rc);
    /* One verdict per line, in order. */
    const char *line = text, *verdict = verdicts;
    int n = 0;
    while (*line) {
        const char *eol = strchr(line, '\n');
        const char *vend = strchr(verdict, '\n');
        ck_assert_msg(vend != NULL, "jq gave fewer verdicts than lines (%d)", n);
        if (strncmp(verdict, "ok\n", 3) != 0) {
            harness_stderr_dump(sup);
            ck_abort_msg("line %d: %.*s: %.*s", n + 1, (int)(vend - verdict), verdict,
                         (int)(eol - line), line);
        }
        n++;
        line = eol + 1;
        verdict = vend + 1;
    }
    ck_assert_str_eq(verdict, "");
    return text;
}

/* Summary numbers of a JSON log, computed by jq from every line. */
static int64_t json_count(struct harness_supervisor *sup, const char *select)
{
    const char *out;
    const char *filter = harness_printf("[inputs | fromjson | select(%s)] | length", select);
    int rc =
        harness_jq_file(sup->stderr_path, (const char *const[]){"-R", "-n", filter, NULL}, &out);
    ck_assert_msg(rc == 0, "jq exited %d on %s", rc, filter);
    return strtoll(out, NULL, 10);
}

/* The exec handler of the busy runs: prints awkward bytes on stderr — a
 * quote, a backslash, a tab, an escape sequence, bytes that are not UTF-8,
 * several lines — and fails when the payload says so. */
static const char *handler_script(void)
{
    const char *path = harness_printf("%s/handler.sh", harness_tmpdir());
    harness_write_file(path, "payload=$(cat)\n"
                             "printf 'handler says \"hi\" \\\\ back\\tslash\\n' >&2\n"
                             "printf 'esc \\033[31mred\\033[0m bad utf8 \\377\\376 end\\n' >&2\n"
                             "case \"$payload\" in\n"
                             "*fail*) echo \"failing on purpose: $payload\" >&2; exit 3 ;;\n"
                             "esac\n"
                             "echo \"stdout of $PGWORK_TASK_ID\"\n");
    return path;
}

#define WEIRD_QUEUE "we \\\"ird\\\" ✓ q" /* as written in the config file and in JSON */
#define WEIRD_QUEUE_SQL "we \"ird\" ✓ q" /* the name itself */

static const char *busy_config(const char *format)
{
    const char *script = handler_script();
    return harness_write_config(harness_printf(
        "workers { count = 4 max = 16 }\n"
        "log { level = \"debug\" format = \"%s\" }\n"
        "http { listen = \"\" }\n"
        "queue \"work\" { command = {\"/bin/sh\", \"%s\"} max_attempts = 2\n"
        "                 backoff_base = 10ms backoff_max = 50ms }\n"
        "queue \"" WEIRD_QUEUE "\" { command = {\"/bin/sh\", \"%s\"} max_attempts = 1 }\n"
        "queue \"sqlq\" { handler = \"sql\" statement = \"SELECT 1 / ($1->>'d')::int\"\n"
        "                 max_attempts = 1 }\n",
        format, script, script));
}

/* Enqueue the busy load: `work` fails one task in five (retried once, then
 * dead), `sqlq` divides by zero one task in ten, the oddly named queue
 * fails one in three. Returns the number of tasks. */
static int busy_load(PGconn *conn, int scale)
{
    const char *n = harness_printf("%d", scale);
    const char *params[] = {n};
    harness_execp(conn,
                  "INSERT INTO pgwork.tasks (queue, payload) "
                  "SELECT 'work', jsonb_build_object('i', i, 'mode', "
                  "       CASE WHEN i % 5 = 0 THEN 'fail' ELSE 'ok' END) "
                  "FROM generate_series(1, 10 * $1::int) i",
                  1, params);
    harness_execp(conn,
                  "INSERT INTO pgwork.tasks (queue, payload) "
                  "SELECT 'sqlq', jsonb_build_object('d', i % 10) "
                  "FROM generate_series(1, 2 * $1::int) i",
                  1, params);
    harness_execp(conn,
                  "INSERT INTO pgwork.tasks (queue, payload) "
                  "SELECT '" WEIRD_QUEUE_SQL "', jsonb_build_object('i', i, 'mode', "
                  "       CASE WHEN i % 3 = 0 THEN 'fail' ELSE 'ok' END) "
                  "FROM generate_series(1, $1::int) i",
                  1, params);
    return 13 * scale;
}

static void wait_finished(PGconn *conn, struct harness_supervisor *sup, int total)
{
    const char *sql = "SELECT count(*) FROM pgwork.tasks WHERE state IN ('done', 'dead')";
    if (!harness_wait_until(conn, sql, total, RUN_MS)) {
        harness_stderr_dump(sup);
        ck_abort_msg("%lld of %d tasks finished", (long long)harness_query_int64(conn, sql), total);
    }
}

/* --- JSON ------------------------------------------------------------------ */

START_TEST(test_json_lines_busy_run)
{
    PGconn *conn;
    const char *conninfo = harness_db_migrated(&conn, NULL, NULL);
    struct harness_supervisor *sup = harness_spawn_supervisor(busy_config("json"), conninfo);
    ck_assert(harness_stderr_wait_for(sup, "listening on channel", 15000));

    int total = busy_load(conn, 30); /* 390 tasks */
    /* Signals while it works: status lines, scaling, quiet and back. */
    ck_assert_int_eq(kill(sup->pid, SIGUSR1), 0);
    ck_assert_int_eq(kill(sup->pid, SIGTTIN), 0);
    ck_assert(harness_stderr_wait_for(sup, "status queue", 5000));
    ck_assert_int_eq(kill(sup->pid, SIGTTOU), 0);
    ck_assert_int_eq(kill(sup->pid, SIGTSTP), 0);
    /* CONT only once TSTP is handled: signalfd hands pending signals over
     * in number order, and CONT (18) would come before TSTP (20). */
    ck_assert(harness_stderr_wait_for(sup, "quiet", 5000));
    ck_assert_int_eq(kill(sup->pid, SIGCONT), 0);
    ck_assert_int_eq(kill(sup->pid, SIGUSR1), 0);
    wait_finished(conn, sup, total);
    size_t before = strlen(harness_stderr_text(sup));
    ck_assert_int_eq(kill(sup->pid, SIGUSR1), 0);
    ck_assert(harness_stderr_wait_after(sup, before, "status queue \\\"sqlq\\\"", 5000));
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);

    assert_json_lines(sup);

    /* The lines are there, one per event: a completion line per done task,
     * lines from workers, task lines from every queue, and the handlers'
     * output — escape sequence, invalid UTF-8 and all — inside messages. */
    int64_t done = harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks "
                                             "WHERE state = 'done'");
    int64_t dead = harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks "
                                             "WHERE state = 'dead'");
    ck_assert_int_eq(done + dead, total);
    ck_assert_int_gt(dead, 0);
    ck_assert_int_eq(json_count(sup, ".msg | startswith(\"done in \")"), done);
    ck_assert_int_eq(json_count(sup, ".msg | test(\"^failed on attempt.*dead\")"), dead);
    ck_assert_int_gt(json_count(sup, ".role == \"worker\""), 0);
    ck_assert_int_gt(json_count(sup, ".role == \"supervisor\""), 0);
    ck_assert_int_eq(json_count(sup, "has(\"task\") and .queue == \"" WEIRD_QUEUE
                                     "\" and (.msg | startswith(\"done in \"))"),
                     harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks WHERE queue "
                                               "= '" WEIRD_QUEUE_SQL "' AND state = 'done'"));
    ck_assert_int_gt(
        json_count(sup, ".msg | contains(\"handler says \\\"hi\\\" \\\\ back\\tslash\")"), 0);
    /* (The exec handler makes its output valid UTF-8 before anyone sees
     * it; the file as a whole was checked above all the same.) */
    ck_assert_int_gt(json_count(sup, ".msg | contains(\"\\u001b[31mred\\u001b[0m bad utf8 \")"), 0);
    ck_assert_int_gt(json_count(sup, ".msg | contains(\"division by zero\")"), 0);
    ck_assert_int_gt(json_count(sup, ".level == \"debug\""), 0);
}
END_TEST

/* --- text ------------------------------------------------------------------ */

/* "2024-01-02T03:04:05.678Z LEVEL ROLE[PID]": a line starts with it. */
static bool text_line_ok(const char *line, size_t len)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ ";
    if (len < sizeof(shape) - 1)
        return false;
    for (size_t i = 0; i < sizeof(shape) - 1; i++)
        if (shape[i] == 'd' ? line[i] < '0' || line[i] > '9' : line[i] != shape[i])
            return false;
    const char *p = line + sizeof(shape) - 1;
    static const char *const prefixes[] = {"debug ", "info ", "warn ", "error "};
    size_t k;
    for (k = 0; k < 4; k++)
        if (strncmp(p, prefixes[k], strlen(prefixes[k])) == 0)
            break;
    if (k == 4)
        return false;
    p += strlen(prefixes[k]);
    if (strncmp(p, "supervisor[", 11) == 0)
        p += 11;
    else if (strncmp(p, "worker[", 7) == 0)
        p += 7;
    else
        return false;
    size_t digits = strspn(p, "0123456789");
    return digits > 0 && p[digits] == ']';
}

START_TEST(test_text_lines)
{
    PGconn *conn;
    const char *conninfo = harness_db_migrated(&conn, NULL, NULL);
    struct harness_supervisor *sup = harness_spawn_supervisor(busy_config("text"), conninfo);
    ck_assert(harness_stderr_wait_for(sup, "listening on channel", 15000));
    int total = busy_load(conn, 6);
    wait_finished(conn, sup, total);
    ck_assert_int_eq(kill(sup->pid, SIGUSR1), 0);
    ck_assert(harness_stderr_wait_for(sup, "status queue", 5000));
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);

    /* Every line is one event: it starts with the timestamp, the level and
     * the process, however many lines a handler printed; no byte in it is
     * a control character (the handler's escape sequence is spelled out). */
    const char *text = harness_read_file(sup->stderr_path);
    int lines = 0, done_lines = 0;
    for (const char *line = text; *line;) {
        const char *eol = strchr(line, '\n');
        ck_assert_ptr_nonnull(eol);
        size_t len = (size_t)(eol - line);
        if (!text_line_ok(line, len)) {
            harness_stderr_dump(sup);
            ck_abort_msg("line %d: %.*s", lines + 1, (int)len, line);
        }
        for (size_t i = 0; i < len; i++)
            ck_assert_msg((unsigned char)line[i] >= 0x20 && line[i] != 0x7f,
                          "control byte 0x%02x in line %d: %.*s", (unsigned char)line[i], lines + 1,
                          (int)len, line);
        done_lines += strstr(harness_printf("%.*s", (int)len, line), ": done in ") != NULL;
        lines++;
        line = eol + 1;
    }
    ck_assert_int_eq(done_lines, harness_query_int64(conn, "SELECT count(*) FROM pgwork.tasks "
                                                           "WHERE state = 'done'"));
    ck_assert_msg(strstr(text, "\\x1b[31mred"), "the handler's output is not in the log");
}
END_TEST

/* The first line of sup's output after offset from that contains needle,
 * without its newline; NULL if none. */
static const char *line_after(struct harness_supervisor *sup, size_t from, const char *needle)
{
    const char *text = harness_stderr_text(sup);
    if (strlen(text) < from)
        return NULL;
    const char *at = strstr(text + from, needle);
    if (at == NULL)
        return NULL;
    const char *start = at;
    while (start > text + from && start[-1] != '\n')
        start--;
    const char *eol = strchr(at, '\n');
    return harness_printf("%.*s", (int)(eol != NULL ? eol - start : (long)strlen(start)), start);
}

/* The supervisor's poll (poll_sql begins "WITH moved AS") waiting for
 * this test's table lock. */
#define POLL_WAITING                                                                               \
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"                     \
    " AND application_name = 'pgwork listener' AND wait_event_type = 'Lock'"                       \
    " AND query LIKE 'WITH moved AS%'"

/*
 * A statement of the supervisor's upkeep (here the poll) fails because its
 * backend was terminated while it ran: the error line says why, not
 * "poll query failed (...):" with nothing after the colon. (The server's
 * FATAL message is the result's error text. A connection that goes with
 * no message never reaches a job: the listener reports it as lost.)
 */
START_TEST(test_upkeep_error_says_why)
{
    struct harness_run *run = harness_run_database(NULL);
    PGconn *locker = PQconnectdb(run->conninfo);
    ck_assert_int_eq(PQstatus(locker), CONNECTION_OK);
    harness_exec(locker, "BEGIN");
    harness_exec(locker, "LOCK TABLE pgwork.tasks IN ACCESS EXCLUSIVE MODE");
    struct harness_supervisor *sup = harness_run_start(
        run, &(struct harness_scenario){.workers = "count = 1", .script = "true"});
    if (!harness_wait_until(run->conn, POLL_WAITING, 1, 15000)) {
        harness_stderr_dump(sup);
        ck_abort_msg("the poll never waited for the lock");
    }
    size_t from = strlen(harness_stderr_text(sup));
    harness_exec(run->conn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE datname = current_database()"
                            " AND application_name = 'pgwork listener'");
    bool logged = harness_stderr_wait_after(sup, from, "poll query failed", 10000);
    harness_exec(locker, "ROLLBACK");
    PQfinish(locker);
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
    if (!logged) {
        harness_stderr_dump(sup);
        ck_abort_msg("no poll error after its backend was terminated");
    }
    const char *line = line_after(sup, from, "poll query failed");
    const char *why = strstr(line, "migrate`):");
    ck_assert_msg(why != NULL, "unexpected line: %s", line);
    why += strlen("migrate`):");
    while (*why == ' ')
        why++;
    ck_assert_msg(*why != '\0', "the line gives no reason: %s", line);
}
END_TEST

/* --- passwords --------------------------------------------------------------- */

/* The test cluster's socket directory, port and user (tests/pg.sh). */
static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v && v[0] ? v : fallback;
}

enum secret_form {
    FORM_KEYVALUE,        /* host=... password=SECRET */
    FORM_KEYVALUE_QUOTED, /* password='SECRET' */
    FORM_URL_USERINFO,    /* postgresql://user:SECRET@/db?host=... */
    FORM_URL_QUERY,       /* postgresql://user@/db?...&password=SECRET */
    FORM_COUNT,
};

/* The cluster's database dbname, with the password in the given form;
 * port: the cluster's, or a wrong one. */
static const char *conninfo_with_secret(enum secret_form form, const char *dbname, const char *port)
{
    const char *host = env_or("PGHOST", "/tmp");
    const char *user = env_or("PGUSER", "postgres");
    switch (form) {
    case FORM_KEYVALUE:
        return harness_printf("host='%s' port=%s user=%s password=" SECRET " dbname=%s", host, port,
                              user, dbname);
    case FORM_KEYVALUE_QUOTED:
        return harness_printf("password='" SECRET "' host='%s' port=%s user=%s dbname=%s", host,
                              port, user, dbname);
    case FORM_URL_USERINFO:
        return harness_printf("postgresql://%s:" SECRET "@/%s?host=%s&port=%s", user, dbname, host,
                              port);
    default:
        return harness_printf("postgresql://%s@/%s?host=%s&port=%s&password=" SECRET, user, dbname,
                              host, port);
    }
}

static void assert_no_secret(const char *what, const char *text)
{
    ck_assert_msg(strstr(text, SECRET) == NULL, "password in %s:\n%s", what, text);
}

/* `pgwork args...` with PGWORK_DATABASE_URL = conninfo; exit code `want`;
 * neither stdout nor stderr shows the password. Returns stderr. */
static const char *cli_no_secret(const char *conninfo, int want, const char *input,
                                 const char *const *args)
{
    const char *out, *err;
    int rc = harness_pgwork(conninfo, input, &out, &err, args);
    ck_assert_msg(rc == want, "pgwork %s: exit %d, wanted %d; stderr: %s", args[0], rc, want, err);
    assert_no_secret(harness_printf("the stdout of pgwork %s", args[0]), out);
    assert_no_secret(harness_printf("the stderr of pgwork %s", args[0]), err);
    return err;
}

static const char *small_config(void)
{
    return harness_write_config("workers { count = 2 }\n"
                                "log { level = \"debug\" format = \"json\" }\n"
                                "http { listen = \"\" }\n"
                                "queue \"q\" { handler = \"sql\" statement = \"SELECT 1\" }\n");
}

START_TEST(test_password_never_logged)
{
    char dbname[HARNESS_NAME_MAX];
    harness_db_create(dbname);
    const char *conninfo =
        conninfo_with_secret((enum secret_form)_i, dbname, env_or("PGPORT", "5432"));

    cli_no_secret(conninfo, 0, NULL, (const char *const[]){"migrate", NULL});
    cli_no_secret(conninfo, 0, NULL, (const char *const[]){"enqueue", "q", "{}", NULL});
    cli_no_secret(conninfo, 0, "{\"from\": \"stdin\"}",
                  (const char *const[]){"enqueue", "q", NULL});
    cli_no_secret(conninfo, 0, NULL, (const char *const[]){"status", NULL});
    cli_no_secret(conninfo, 0, NULL, (const char *const[]){"status", "--json", NULL});
    cli_no_secret(conninfo, 0, NULL, (const char *const[]){"requeue-dead", "q", NULL});

    /* The supervisor and its workers at debug level, running tasks,
     * printing status, stopping. */
    PGconn *conn = harness_connect(conninfo);
    struct harness_supervisor *sup = harness_spawn_supervisor(small_config(), conninfo);
    ck_assert(harness_stderr_wait_for(sup, "listening on channel", 15000));
    harness_exec(conn, "INSERT INTO pgwork.tasks (queue) SELECT 'q' FROM generate_series(1, 20)");
    if (!harness_wait_until(conn, "SELECT count(*) FROM pgwork.tasks WHERE state = 'done'", 22,
                            RUN_MS)) {
        harness_stderr_dump(sup);
        ck_abort_msg("tasks not done");
    }
    ck_assert_int_eq(kill(sup->pid, SIGUSR1), 0);
    ck_assert(harness_stderr_wait_for(sup, "status queue", 5000));
    ck_assert_int_eq(harness_stop_supervisor(sup, SIGTERM, 20000), 0);
    assert_no_secret("the supervisor's output", harness_read_file(sup->stderr_path));
    assert_json_lines(sup);
}
END_TEST

/* Port 1: nothing listens there, every connection fails. libpq's message
 * has no password; ours must not add the connection string. */
START_TEST(test_password_not_in_connection_errors)
{
    char dbname[HARNESS_NAME_MAX];
    harness_db_create(dbname);
    const char *conninfo = conninfo_with_secret((enum secret_form)_i, dbname, "1");

    const char *const *const commands[] = {
        (const char *const[]){"migrate", NULL},
        (const char *const[]){"enqueue", "q", "{}", NULL},
        (const char *const[]){"status", NULL},
        (const char *const[]){"status", "--json", "q", NULL},
        (const char *const[]){"requeue-dead", "--all-queues", NULL},
    };
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        const char *err = cli_no_secret(conninfo, 1, NULL, commands[i]);
        ck_assert_msg(strstr(err, "pgwork: cannot connect to database: "), "stderr: %s", err);
    }

    struct harness_supervisor *sup = harness_spawn_supervisor(small_config(), conninfo);
    /* The listener's and the workers' failures, a few restarts. */
    ck_assert(harness_stderr_wait_for(sup, "exited unexpectedly", 15000));
    ck_assert(harness_stderr_wait_for(sup, "listener connection lost", 15000));
    ck_assert_int_ne(harness_stop_supervisor(sup, SIGTERM, 20000), -1);
    assert_no_secret("the supervisor's output", harness_read_file(sup->stderr_path));
    assert_json_lines(sup);
}
END_TEST

/* Strings libpq cannot parse: its messages quote a bad URL whole, or the
 * percent-encoded token it choked on. Refused before anything connects
 * (exit 3, bad configuration), the password hidden. */
static const char *const unparsable[] = {
    "postgresql://pgwork:" SECRET "@[::1/db",              /* unclosed IPv6 bracket */
    "postgresql://pgwork:" SECRET "@[]/db",                /* empty IPv6 host */
    "postgresql://pgwork:" SECRET "%zz@/db",               /* bad percent-encoding */
    "postgresql://pgwork@/db?password=" SECRET "%00",      /* %00 in a value */
    "postgres://pgwork:" SECRET "@host/db?bogus_option=1", /* unknown parameter */
    "host=/tmp password='" SECRET,                         /* unterminated quote */
    "host=/tmp password=" SECRET " bogus_option=1",        /* unknown keyword */
};

START_TEST(test_password_not_in_parse_errors)
{
    const char *conninfo = unparsable[_i];
    const char *const *const commands[] = {
        (const char *const[]){"migrate", NULL},
        (const char *const[]){"enqueue", "q", "{}", NULL},
        (const char *const[]){"status", NULL},
        (const char *const[]){"requeue-dead", "q", NULL},
        (const char *const[]){"check-config", NULL},
    };
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        const char *err = cli_no_secret(conninfo, 3, NULL, commands[i]);
        ck_assert_msg(strstr(err, "pgwork: PGWORK_DATABASE_URL is not a valid connection string: "),
                      "stderr: %s", err);
    }

    struct harness_supervisor *sup = harness_spawn_supervisor(small_config(), conninfo);
    int status = harness_stop_supervisor(sup, 0, 10000);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 3, "wait status %d", status);
    const char *text = harness_read_file(sup->stderr_path);
    assert_no_secret("the supervisor's output", text);
    ck_assert_msg(strstr(text, "is not a valid connection string"), "output: %s", text);
    assert_json_lines(sup);
}
END_TEST

Suite *logs_suite(void)
{
    Suite *s = suite_create("logs");

    TCase *tc = harness_tcase("format");
    tcase_add_test(tc, test_json_lines_busy_run);
    tcase_add_test(tc, test_text_lines);
    suite_add_tcase(s, tc);

    tc = harness_tcase("upkeep");
    tcase_add_test(tc, test_upkeep_error_says_why);
    suite_add_tcase(s, tc);

    tc = harness_tcase("secrets");
    tcase_add_loop_test(tc, test_password_never_logged, 0, FORM_COUNT);
    tcase_add_loop_test(tc, test_password_not_in_connection_errors, 0, FORM_COUNT);
    tcase_add_loop_test(tc, test_password_not_in_parse_errors, 0,
                        (int)(sizeof(unparsable) / sizeof(unparsable[0])));
    suite_add_tcase(s, tc);

    return s;
}
