/*
 * cli.c — the one-shot commands that talk to the database: `pgwork
 * migrate`, `enqueue`, `status` and `requeue-dead`. Ordinary blocking
 * libpq: these run once and exit.
 *
 * Invariants:
 *  - User input (queue names, payload, task ids) reaches the database only
 *    as query parameters, never spliced into SQL text.
 *  - A connection string is never printed as given: libpq's connection
 *    errors go through scrub_secrets() (a malformed URL is quoted whole by
 *    libpq's parser), and anything else goes through log_redact_conninfo().
 *  - Errors are one line on stderr, "pgwork: what failed: why", and the exit
 *    code says whose fault it was (cli.h).
 *  - What the database returns is printed safely whatever it contains: a
 *    queue name is JSON-escaped in --json output and has its control and
 *    invisible characters escaped in the table, so a name can neither break
 *    a script's parser nor send escape sequences to a terminal.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "cli.h"
#include "migrate.h"
#include "../shared/config_value.h"
#include "../shared/dbconn.h"
#include "../shared/log.h"
#include "../shared/text.h"

/* SQLSTATEs (PostgreSQL's errcodes.h) the CLI tells apart. */
#define SQLSTATE_CLASS_DATA_EXCEPTION "22"   /* bad jsonb input and friends */
#define SQLSTATE_INVALID_SCHEMA_NAME "3F000" /* pgwork schema missing */
#define SQLSTATE_UNDEFINED_FUNCTION "42883"  /* pgwork.enqueue missing */

/* In text (a NUL-terminated string in a buffer of size bytes), replace
 * every occurrence of the len bytes at needle with repl; the result is cut
 * to fit. */
static void replace_all(char *text, size_t size, const char *needle, size_t len, const char *repl)
{
    if (len == 0 || size == 0)
        return;
    char out[4096];
    size_t used = 0, repl_len = strlen(repl);
    const char *p = text;
    while (*p != '\0' && used + 1 < sizeof(out)) {
        if (strncmp(p, needle, len) == 0) {
            size_t n = repl_len < sizeof(out) - 1 - used ? repl_len : sizeof(out) - 1 - used;
            memcpy(out + used, repl, n);
            used += n;
            p += len;
        } else {
            out[used++] = *p++;
        }
    }
    if (used > size - 1)
        used = size - 1; /* cut to fit */
    memcpy(text, out, used);
    text[used] = '\0';
}

/* Length of the scheme of a postgres URL ("postgresql://"), 0 if not one. */
static size_t url_scheme_len(const char *conninfo)
{
    if (strncmp(conninfo, "postgresql://", 13) == 0)
        return 13;
    if (strncmp(conninfo, "postgres://", 11) == 0)
        return 11;
    return 0;
}

/*
 * Hide conninfo's secrets in a libpq message about it. libpq's URL parser
 * quotes the whole URL in its errors ("... in URI: \"postgresql://u:pw@[\"")
 * and its percent-decoder quotes the token it failed on, which may be the
 * password itself: the URL is replaced by its redacted form, then every
 * password and sslpassword value (userinfo and query, as written) by "***".
 * Key=value strings: libpq's parse errors never quote a value, and the
 * string is replaced whole all the same.
 */
static void scrub_secrets(char *msg, size_t size, const char *conninfo)
{
    if (conninfo == NULL || conninfo[0] == '\0')
        return;
    char redacted[2048];
    log_redact_conninfo(conninfo, redacted, sizeof(redacted));
    replace_all(msg, size, conninfo, strlen(conninfo), redacted);

    size_t scheme = url_scheme_len(conninfo);
    if (scheme == 0)
        return;
    /* The same reading as log_redact_conninfo(): the user info ends at the
     * last '@', the password starts after its first ':'. */
    const char *auth = conninfo + scheme;
    const char *at = strrchr(auth, '@');
    const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (colon != NULL)
        replace_all(msg, size, colon + 1, (size_t)(at - colon - 1), "***");
    const char *query = strchr(at ? at : auth, '?');
    if (query == NULL)
        return;
    for (const char *p = query; *p != '\0';) {
        const char *param = p + 1;
        const char *end = param + strcspn(param, "&");
        const char *eq = memchr(param, '=', (size_t)(end - param));
        if (eq != NULL && ((eq - param == 8 && strncmp(param, "password", 8) == 0) ||
                           (eq - param == 11 && strncmp(param, "sslpassword", 11) == 0)))
            replace_all(msg, size, eq + 1, (size_t)(end - eq - 1), "***");
        p = end;
    }
}

/* Check one connection string; what names where it came from. */
static int check_one_conninfo(const char *conninfo, const char *what, char *err, size_t errlen)
{
    char *parse_error = NULL;
    PQconninfoOption *options = PQconninfoParse(conninfo, &parse_error);
    if (options != NULL) {
        PQconninfoFree(options);
        return EXIT_OK;
    }
    char msg[2048];
    snprintf(msg, sizeof(msg), "%s", parse_error ? parse_error : "out of memory");
    PQfreemem(parse_error);
    dbconn_one_line(msg);
    scrub_secrets(msg, sizeof(msg), conninfo);
    snprintf(err, errlen, "%s is not a valid connection string: %s", what, msg);
    return EXIT_CONFIG;
}

int cli_check_conninfo(const struct pgwork_config *config, char *err, size_t errlen)
{
    const char *conninfo = config_conninfo(config);
    bool from_file = config->database.conninfo && config->database.conninfo[0];
    const char *what = from_file ? "database.conninfo" : "PGWORK_DATABASE_URL";
    int rc = check_one_conninfo(conninfo, what, err, errlen);
    if (rc == EXIT_OK && config->database.listen_conninfo && config->database.listen_conninfo[0])
        rc = check_one_conninfo(config->database.listen_conninfo, "database.listen_conninfo", err,
                                errlen);
    return rc;
}

/*
 * Connect with config_conninfo(): "" means libpq's PG* variables. JSON is
 * UTF-8 and queue names are validated as UTF-8, so the client encoding is
 * UTF8 whatever PGCLIENTENCODING says: bytes reach the database as given.
 */
static PGconn *cli_connect(const struct pgwork_config *config)
{
    const char *keywords[] = {"dbname", "fallback_application_name", "client_encoding", NULL};
    const char *values[] = {config_conninfo(config), "pgwork", "UTF8", NULL};
    PGconn *conn = PQconnectdbParams(keywords, values, 1);
    if (conn == NULL) {
        fprintf(stderr, "pgwork: cannot connect to database: out of memory\n");
        return NULL;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        char msg[2048];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(conn));
        dbconn_one_line(msg);
        scrub_secrets(msg, sizeof(msg), config_conninfo(config));
        fprintf(stderr, "pgwork: cannot connect to database: %s\n", msg);
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

int cli_migrate(const struct pgwork_config *config)
{
    PGconn *conn = cli_connect(config);
    if (conn == NULL)
        return EXIT_FAILURE_GENERIC;
    int applied = migrate_run(conn);
    PQfinish(conn);
    return applied < 0 ? EXIT_FAILURE_GENERIC : EXIT_OK;
}

/* Read all of stdin into a new NUL-terminated buffer; *len gets its size. */
static char *read_stdin(size_t *len)
{
    struct text_buffer b = {0};
    for (;;) {
        if (text_reserve(&b, 64 * 1024) != 0) {
            text_free(&b);
            errno = ENOMEM;
            return NULL;
        }
        ssize_t n = read(STDIN_FILENO, b.data + b.len, b.cap - b.len - 1);
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int saved = errno;
            text_free(&b);
            errno = saved;
            return NULL;
        }
        b.len += (size_t)n;
    }
    b.data[b.len] = '\0';
    *len = b.len;
    return text_take(&b);
}

/* Explain a failed enqueue and pick the exit code. */
static int enqueue_failed(const PGresult *res, const PGconn *conn)
{
    const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
    char msg[2048];

    dbconn_primary_line(res, conn, msg, sizeof(msg)); /* no primary: the connection broke */

    if (sqlstate && strncmp(sqlstate, SQLSTATE_CLASS_DATA_EXCEPTION, 2) == 0) {
        /* jsonb input: the primary message says "invalid input syntax for
         * type json", the detail says where ("Token "x" is invalid."). */
        char why[2048];
        snprintf(why, sizeof(why), "%s", detail && detail[0] ? detail : msg);
        dbconn_one_line(why);
        fprintf(stderr, "pgwork: payload is not valid JSON: %s\n", why);
        return EXIT_BAD_INPUT;
    }
    if (sqlstate && (strcmp(sqlstate, SQLSTATE_INVALID_SCHEMA_NAME) == 0 ||
                     strcmp(sqlstate, SQLSTATE_UNDEFINED_FUNCTION) == 0)) {
        fprintf(stderr, "pgwork: cannot enqueue: %s (run `pgwork migrate` first)\n", msg);
        return EXIT_FAILURE_GENERIC;
    }
    fprintf(stderr, "pgwork: cannot enqueue: %s\n", msg);
    return EXIT_FAILURE_GENERIC;
}

#define CLI_STR_(x) #x
#define CLI_STR(x) CLI_STR_(x)

/* NULL if the unique key is acceptable, else why not: as a queue name,
 * up to UNIQUE_KEY_MAX bytes (the limit migration 0007 sets). */
static const char *unique_key_problem(const char *key)
{
    return text_label_problem(key, UNIQUE_KEY_MAX,
                              "is longer than " CLI_STR(UNIQUE_KEY_MAX) " bytes");
}

int cli_enqueue(const struct pgwork_config *config, const char *queue, const char *payload,
                const char *unique_key)
{
    const char *problem = config_queue_name_problem(queue);
    if (problem != NULL) {
        fprintf(stderr, "pgwork: bad queue name: it %s\n", problem);
        return EXIT_BAD_INPUT;
    }
    problem = unique_key != NULL ? unique_key_problem(unique_key) : NULL;
    if (problem != NULL) {
        fprintf(stderr, "pgwork: bad unique key: it %s\n", problem);
        return EXIT_BAD_INPUT;
    }

    char *from_stdin = NULL;
    if (payload == NULL) {
        size_t len = 0;
        from_stdin = read_stdin(&len);
        if (from_stdin == NULL) {
            fprintf(stderr, "pgwork: cannot read the payload from stdin: %s\n", strerror(errno));
            return EXIT_FAILURE_GENERIC;
        }
        /* A text parameter ends at the first NUL: refuse rather than cut. */
        if (memchr(from_stdin, '\0', len) != NULL) {
            fprintf(stderr, "pgwork: payload is not valid JSON: it contains a NUL byte\n");
            free(from_stdin);
            return EXIT_BAD_INPUT;
        }
        payload = from_stdin;
    }

    int rc = EXIT_FAILURE_GENERIC;
    PGconn *conn = cli_connect(config);
    if (conn == NULL)
        goto out;

    /* The key only when given: a database not yet migrated to 0007 still
     * takes a plain enqueue. */
    const char *params[3] = {queue, payload, unique_key};
    PGresult *res =
        unique_key == NULL
            ? PQexecParams(conn, "SELECT pgwork.enqueue($1, $2::jsonb)", 2, NULL, params, NULL,
                           NULL, 0)
            : PQexecParams(conn, "SELECT pgwork.enqueue($1, $2::jsonb, unique_key => $3)", 3, NULL,
                           params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        rc = enqueue_failed(res, conn);
    } else if (printf("%s\n", PQgetvalue(res, 0, 0)) < 0 || fflush(stdout) != 0) {
        fprintf(stderr, "pgwork: cannot write the task id: %s\n", strerror(errno));
        rc = EXIT_FAILURE_GENERIC;
    } else {
        rc = EXIT_OK;
    }
    PQclear(res);
    PQfinish(conn);
out:
    free(from_stdin);
    return rc;
}

/* ---- status and requeue-dead ----------------------------------------------- */

#define SQLSTATE_UNDEFINED_TABLE "42P01"  /* pgwork.tasks missing */
#define SQLSTATE_UNIQUE_VIOLATION "23505" /* a unique key taken meanwhile */

/* Runs of the requeue statement when a unique key is taken meanwhile. */
#define REQUEUE_TRIES 3

/* Explain a failed query ("cannot read the queues: ..."); the exit code. */
static int query_failed(const char *what, const PGresult *res, const PGconn *conn)
{
    const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    char msg[2048];
    dbconn_primary_line(res, conn, msg, sizeof(msg));
    bool unmigrated = sqlstate && (strcmp(sqlstate, SQLSTATE_INVALID_SCHEMA_NAME) == 0 ||
                                   strcmp(sqlstate, SQLSTATE_UNDEFINED_TABLE) == 0);
    fprintf(stderr, "pgwork: %s: %s%s\n", what, msg,
            unmigrated ? " (run `pgwork migrate` first)" : "");
    return EXIT_FAILURE_GENERIC;
}

/* A queue name given on the command line to look up: it is compared with
 * what is stored, so anything the table can hold is accepted (names
 * inserted with SQL may be longer than enqueue allows, or hold control
 * characters); only what the database could never match is refused. */
static bool lookup_name_ok(const char *name)
{
    if (name[0] == '\0') {
        fprintf(stderr, "pgwork: bad queue name: it is empty\n");
        return false;
    }
    uint32_t cp;
    for (const unsigned char *p = (const unsigned char *)name; *p;) {
        size_t n = text_utf8_len(p, SIZE_MAX, &cp);
        if (n == 0) {
            fprintf(stderr, "pgwork: bad queue name: it is not valid UTF-8\n");
            return false;
        }
        p += n;
    }
    return true;
}

/* A text[] literal, {"a","b\"c"}: any name is one element. NULL if out
 * of memory (caller frees). */
static char *text_array_literal(const char *const *items, int count)
{
    struct text_buffer b = {0};
    for (int i = 0; i < count; i++)
        text_array_add_text(&b, items[i]);
    return text_array_end(&b);
}

/* ---- output helpers ---- */

/* A number as PostgreSQL printed it (bigint or numeric), checked to be a
 * valid JSON number; NULL and anything else (NaN, Infinity) print null. */
static void json_number(FILE *out, const PGresult *res, int row, int col)
{
    const char *v = PQgetisnull(res, row, col) ? "" : PQgetvalue(res, row, col);
    const char *p = v + (*v == '-');
    size_t digits = strspn(p, "0123456789");
    bool ok = digits > 0 && (p[0] != '0' || digits == 1);
    p += digits;
    if (ok && *p == '.') {
        digits = strspn(p + 1, "0123456789");
        ok = digits > 0;
        p += 1 + digits;
    }
    fputs(ok && *p == '\0' ? v : "null", out);
}

/* s as a JSON string: RFC 8259 escapes, every control character as \uXXXX
 * (U+2028/9 too, for JavaScript), bytes that are not UTF-8 as U+FFFD. */
static void json_string(FILE *out, const char *s)
{
    putc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        uint32_t cp;
        size_t n = text_utf8_len(p, SIZE_MAX, &cp);
        if (n == 0) {
            fputs("\\ufffd", out);
            p++;
            continue;
        }
        if (cp == '"' || cp == '\\')
            fprintf(out, "\\%c", (char)cp);
        else if (cp == '\n')
            fputs("\\n", out);
        else if (cp == '\t')
            fputs("\\t", out);
        else if (cp == '\r')
            fputs("\\r", out);
        else if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029)
            fprintf(out, "\\u%04x", (unsigned)cp);
        else
            fwrite(p, 1, (size_t)n, out);
        p += n;
    }
    putc('"', out);
}

/* s for a terminal: printable text as is; \n \t \r, other C0 controls and
 * DEL as \xNN, C1 controls and bidirectional overrides (which reorder what
 * follows on screen) as \uXXXX, bytes that are not UTF-8 as \xNN. */
static void text_name(FILE *out, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        uint32_t cp;
        size_t n = text_utf8_len(p, SIZE_MAX, &cp);
        if (n == 0) {
            fprintf(out, "\\x%02x", *p);
            p++;
            continue;
        }
        if (cp == '\n')
            fputs("\\n", out);
        else if (cp == '\t')
            fputs("\\t", out);
        else if (cp == '\r')
            fputs("\\r", out);
        else if (cp < 0x20 || cp == 0x7f)
            fprintf(out, "\\x%02x", (unsigned)cp);
        else if ((cp >= 0x80 && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) ||
                 (cp >= 0x2066 && cp <= 0x2069))
            fprintf(out, "\\u%04x", (unsigned)cp);
        else
            fwrite(p, 1, (size_t)n, out);
        p += n;
    }
}

/* Seconds (as PostgreSQL printed them) for people: "-", "42s", "3m05s",
 * "2h07m", "4d03h". */
static void format_age(char *buf, size_t len, const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col)) {
        snprintf(buf, len, "-");
        return;
    }
    double secs = strtod(PQgetvalue(res, row, col), NULL);
    if (!(secs >= 0) || secs > 1e15) { /* NaN, or beyond any real age */
        snprintf(buf, len, "?");
        return;
    }
    long long s = (long long)secs;
    if (s < 60)
        snprintf(buf, len, "%llds", s);
    else if (s < 3600)
        snprintf(buf, len, "%lldm%02llds", s / 60, s % 60);
    else if (s < 86400)
        snprintf(buf, len, "%lldh%02lldm", s / 3600, s % 3600 / 60);
    else
        snprintf(buf, len, "%lldd%02lldh", s / 86400, s % 86400 / 3600);
}

/* ---- status ---- */

/*
 * One pass over pgwork.tasks, grouped by queue. Counting `done` rows
 * visits each of them whatever the plan (no index covers every state, and
 * keep_done makes them the bulk of the table), so one sequential scan that
 * aggregates every state at once is the cheapest plan there is; a
 * "distinct queues" query first would only add a pass. Ages are computed
 * by the database from its own clock; infinite timestamps give NULL.
 */
/* clang-format off */
#define STATUS_STATS(filter)                                                                \
    "stats AS ("                                                                            \
    " SELECT queue,"                                                                        \
    "  count(*) FILTER (WHERE state = 'pending' AND run_at <= now()) AS due,"               \
    "  count(*) FILTER (WHERE state = 'pending' AND run_at > now()) AS later,"              \
    "  count(*) FILTER (WHERE state = 'running') AS running,"                               \
    "  count(*) FILTER (WHERE state = 'done') AS done,"                                     \
    "  count(*) FILTER (WHERE state = 'dead') AS dead,"                                     \
    "  min(run_at) FILTER (WHERE state = 'pending' AND run_at <= now()) AS oldest_due,"     \
    "  min(started_at) FILTER (WHERE state = 'running') AS oldest_running,"                 \
    "  min(run_at) FILTER (WHERE state = 'pending' AND run_at > now()) AS next_due"         \
    " FROM pgwork.tasks " filter " GROUP BY queue) "

/* Seconds (>= 0, to the ms) of an interval ending or starting at ts;
 * NULL when ts is infinite. */
#define STATUS_SECONDS(expr, ts)                                                            \
    "CASE WHEN isfinite(" ts ")"                                                            \
    " THEN round(greatest(extract(epoch FROM " expr "), 0)::numeric, 3) END"

/* Columns of both queries after the queue name: the row layout
 * cli_status() reads. */
#define STATUS_COLUMNS                                                                      \
    " coalesce(s.due, 0), coalesce(s.later, 0), coalesce(s.running, 0),"                    \
    " coalesce(s.done, 0), coalesce(s.dead, 0), "                                           \
    STATUS_SECONDS("now() - s.oldest_due", "s.oldest_due") ", "                             \
    STATUS_SECONDS("now() - s.oldest_running", "s.oldest_running") ", "                     \
    STATUS_SECONDS("s.next_due - now()", "s.next_due")

static const char status_all_sql[] =
    "WITH " STATUS_STATS("")
    "SELECT s.queue," STATUS_COLUMNS
    " FROM stats s ORDER BY s.queue COLLATE \"C\"";

/* Named queues: in the order given, duplicates once, zeros when unknown. */
static const char status_named_sql[] =
    "WITH wanted AS ("
    " SELECT q AS queue, min(n) AS n FROM unnest($1::text[]) WITH ORDINALITY AS u(q, n)"
    " GROUP BY q), "
    STATUS_STATS("WHERE queue IN (SELECT queue FROM wanted)")
    "SELECT w.queue," STATUS_COLUMNS
    " FROM wanted w LEFT JOIN stats s ON s.queue = w.queue"
    " ORDER BY w.n";
/* clang-format on */

enum status_col {
    COL_QUEUE,
    COL_DUE,
    COL_LATER,
    COL_RUNNING,
    COL_DONE,
    COL_DEAD,
    COL_OLDEST_DUE,
    COL_OLDEST_RUNNING,
    COL_NEXT_DUE,
    COL_COUNT,
};

static void status_json(FILE *out, const PGresult *res)
{
    static const char *const keys[COL_COUNT] = {
        [COL_DUE] = "pending_due",
        [COL_LATER] = "pending_scheduled",
        [COL_RUNNING] = "running",
        [COL_DONE] = "done",
        [COL_DEAD] = "dead",
        [COL_OLDEST_DUE] = "oldest_pending_age_seconds",
        [COL_OLDEST_RUNNING] = "oldest_running_age_seconds",
        [COL_NEXT_DUE] = "next_scheduled_in_seconds",
    };
    fputs("{\"queues\":[", out);
    for (int row = 0; row < PQntuples(res); row++) {
        fputs(row ? ",\n{\"queue\":" : "\n{\"queue\":", out);
        json_string(out, PQgetvalue(res, row, COL_QUEUE));
        for (int col = COL_DUE; col < COL_COUNT; col++) {
            fprintf(out, ",\"%s\":", keys[col]);
            json_number(out, res, row, col);
        }
        putc('}', out);
    }
    fputs("\n]}\n", out);
}

static void status_table(FILE *out, const PGresult *res)
{
    /* The queue comes last, like ps's COMMAND: any length, any script. */
    static const char *const headers[] = {"PENDING", "SCHEDULED",      "RUNNING",       "DONE",
                                          "DEAD",    "OLDEST_PENDING", "OLDEST_RUNNING"};
    enum { NCOLS = sizeof(headers) / sizeof(headers[0]) };
    int rows = PQntuples(res);
    if (rows == 0) {
        fputs("no tasks\n", out);
        return;
    }
    char(*cells)[NCOLS][24] = calloc((size_t)rows, sizeof(*cells));
    if (cells == NULL) {
        fputs("pgwork: out of memory\n", stderr);
        return;
    }
    int width[NCOLS];
    for (int c = 0; c < NCOLS; c++)
        width[c] = (int)strlen(headers[c]);
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < NCOLS; c++) {
            int col = COL_DUE + c;
            if (col >= COL_OLDEST_DUE)
                format_age(cells[r][c], sizeof(cells[r][c]), res, r, col);
            else
                snprintf(cells[r][c], sizeof(cells[r][c]), "%s", PQgetvalue(res, r, col));
            int w = (int)strlen(cells[r][c]);
            width[c] = w > width[c] ? w : width[c];
        }
    }
    for (int c = 0; c < NCOLS; c++)
        fprintf(out, "%*s  ", width[c], headers[c]);
    fputs("QUEUE\n", out);
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < NCOLS; c++)
            fprintf(out, "%*s  ", width[c], cells[r][c]);
        text_name(out, PQgetvalue(res, r, COL_QUEUE));
        putc('\n', out);
    }
    free(cells);
}

int cli_status(const struct pgwork_config *config, const struct cli_status_options *options)
{
    for (int i = 0; i < options->queue_count; i++)
        if (!lookup_name_ok(options->queues[i]))
            return EXIT_BAD_INPUT;
    char *names = NULL;
    if (options->queue_count > 0 &&
        (names = text_array_literal(options->queues, options->queue_count)) == NULL) {
        fprintf(stderr, "pgwork: out of memory\n");
        return EXIT_FAILURE_GENERIC;
    }

    int rc = EXIT_FAILURE_GENERIC;
    PGconn *conn = cli_connect(config);
    if (conn == NULL)
        goto out;
    const char *params[1] = {names};
    PGresult *res = names ? PQexecParams(conn, status_named_sql, 1, NULL, params, NULL, NULL, 0)
                          : PQexec(conn, status_all_sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != COL_COUNT) {
        rc = query_failed("cannot read the queues", res, conn);
    } else {
        if (options->json)
            status_json(stdout, res);
        else
            status_table(stdout, res);
        rc = EXIT_OK;
        if (fflush(stdout) != 0 || ferror(stdout)) {
            fprintf(stderr, "pgwork: cannot write the status: %s\n", strerror(errno));
            rc = EXIT_FAILURE_GENERIC;
        }
    }
    PQclear(res);
    PQfinish(conn);
out:
    free(names);
    return rc;
}

/* ---- requeue-dead ---- */

/*
 * One statement: move the dead tasks back to pending and announce each
 * queue touched the way the insert trigger does (pgwork.notify_channel()
 * and pgwork.notify_message(), migration 0006): an UPDATE fires no insert
 * trigger, and without the notification the tasks would wait for the
 * safety poll. The notification is sent at commit, with the rows. A CTE
 * with a volatile function is always run whole; the final SELECT reads it
 * so it is not skipped.
 *
 * Unique keys (migration 0007) stay unique: a dead task whose key a
 * pending or running task holds stays dead, and of several dead tasks
 * with one free key only the newest moves. A holder committed after the
 * statement's snapshot makes it fail with a unique violation: it is run
 * again (cli_requeue_dead).
 */
/* clang-format off */
#define REQUEUE_WITH(selector)                                                              \
    "WITH dead AS ("                                                                        \
    " SELECT id, queue, unique_key FROM pgwork.tasks"                                       \
    " WHERE state = 'dead' AND " selector                                                   \
    " FOR UPDATE), "                                                                        \
    "free_keys AS ("                                                                        \
    " SELECT DISTINCT ON (d.queue, d.unique_key) d.id FROM dead d"                          \
    " WHERE d.unique_key IS NOT NULL"                                                       \
    "   AND NOT EXISTS (SELECT 1 FROM pgwork.tasks l"                                       \
    "                   WHERE l.queue = d.queue AND l.unique_key = d.unique_key"            \
    "                     AND l.state IN ('pending', 'running'))"                           \
    " ORDER BY d.queue, d.unique_key, d.id DESC), "                                         \
    "moved AS ("                                                                            \
    " UPDATE pgwork.tasks t SET state = 'pending', attempts = 0, run_at = now(),"           \
    "  locked_by = NULL, locked_until = NULL, finished_at = NULL"                           \
    " FROM dead d"                                                                          \
    " WHERE t.id = d.id AND (d.unique_key IS NULL OR d.id IN (SELECT id FROM free_keys))"   \
    " RETURNING t.id, t.queue), "                                                           \
    "notified AS ("                                                                         \
    " SELECT pg_notify(pgwork.notify_channel(), pgwork.notify_message(q.queue, now()))"     \
    " FROM (SELECT DISTINCT queue FROM moved) q) "

/* Moved, queues announced, left dead for their key. */
#define REQUEUE_COUNTS                                                                      \
    "(SELECT count(*) FROM moved), (SELECT count(*) FROM notified),"                        \
    " (SELECT count(*) FROM dead) - (SELECT count(*) FROM moved)"

static const char requeue_queue_sql[] = REQUEUE_WITH("queue = $1") "SELECT " REQUEUE_COUNTS;
static const char requeue_all_sql[] = REQUEUE_WITH("true") "SELECT " REQUEUE_COUNTS;

/* One row per id asked for: its state before (NULL: no such task) and
 * whether it moved. */
static const char requeue_ids_sql[] =
    REQUEUE_WITH("id = ANY ($1::bigint[])")
    "SELECT " REQUEUE_COUNTS ", r.id, t.state, r.id IN (SELECT id FROM moved)"
    " FROM unnest($1::bigint[]) WITH ORDINALITY AS r(id, n)"
    " LEFT JOIN pgwork.tasks t ON t.id = r.id"
    " ORDER BY r.n";
/* clang-format on */

/* A bigint[] literal, {1,2,3}; NULL if out of memory. */
static char *id_array_literal(const int64_t *ids, int count)
{
    struct text_buffer b = {0};
    for (int i = 0; i < count; i++)
        text_array_add_int64(&b, ids[i]);
    return text_array_end(&b);
}

int cli_requeue_dead(const struct pgwork_config *config, const struct cli_requeue_options *options)
{
    const char *sql = requeue_all_sql;
    char *ids = NULL;
    const char *params[1] = {NULL};
    int nparams = 0;

    if (options->scope == CLI_REQUEUE_QUEUE) {
        if (!lookup_name_ok(options->queue))
            return EXIT_BAD_INPUT;
        sql = requeue_queue_sql;
        params[0] = options->queue;
        nparams = 1;
    } else if (options->scope == CLI_REQUEUE_IDS) {
        if ((ids = id_array_literal(options->ids, options->id_count)) == NULL) {
            fprintf(stderr, "pgwork: out of memory\n");
            return EXIT_FAILURE_GENERIC;
        }
        sql = requeue_ids_sql;
        params[0] = ids;
        nparams = 1;
    }

    int rc = EXIT_FAILURE_GENERIC;
    PGconn *conn = cli_connect(config);
    if (conn == NULL)
        goto out;
    PGresult *res = NULL;
    for (int attempt = 0; attempt < REQUEUE_TRIES; attempt++) {
        PQclear(res);
        res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
        const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (sqlstate == NULL || strcmp(sqlstate, SQLSTATE_UNIQUE_VIOLATION) != 0)
            break;
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) < 1) {
        rc = query_failed("cannot requeue dead tasks", res, conn);
        PQclear(res);
        PQfinish(conn);
        goto out;
    }
    long long moved = atoll(PQgetvalue(res, 0, 0));
    long long kept = atoll(PQgetvalue(res, 0, 2));
    rc = EXIT_OK;
    /* With ids: name each one that was not requeued, and why. */
    for (int row = 0; options->scope == CLI_REQUEUE_IDS && row < PQntuples(res); row++) {
        if (strcmp(PQgetvalue(res, row, 5), "t") == 0)
            continue;
        const char *id = PQgetvalue(res, row, 3);
        const char *state = PQgetvalue(res, row, 4);
        if (PQgetisnull(res, row, 4))
            fprintf(stderr, "pgwork: task %s: no such task\n", id);
        else if (strcmp(state, "dead") == 0)
            fprintf(stderr,
                    "pgwork: task %s: left dead: a pending or running task holds its unique "
                    "key\n",
                    id);
        else
            fprintf(stderr, "pgwork: task %s: not dead (state %s)\n", id, state);
        rc = EXIT_BAD_INPUT;
    }
    if (options->scope != CLI_REQUEUE_IDS && kept > 0)
        fprintf(stderr,
                "pgwork: kept %lld task%s dead: a pending or running task holds their "
                "unique key\n",
                kept, kept == 1 ? "" : "s");
    PQclear(res);
    PQfinish(conn);
    if (printf("requeued %lld dead task%s\n", moved, moved == 1 ? "" : "s") < 0 ||
        fflush(stdout) != 0) {
        fprintf(stderr, "pgwork: cannot write the result: %s\n", strerror(errno));
        rc = EXIT_FAILURE_GENERIC;
    }
out:
    free(ids);
    return rc;
}
