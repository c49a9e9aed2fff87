/*
 * cli.c — the one-shot commands that talk to the database: `pgwork migrate`
 * and `pgwork enqueue`. Ordinary blocking libpq: these run once and exit.
 *
 * Invariants:
 *  - User input (queue name, payload) reaches the database only as query
 *    parameters, never spliced into SQL text.
 *  - A connection string is never printed as given: libpq's own error text
 *    carries no password, and anything else goes through
 *    log_redact_conninfo().
 *  - Errors are one line on stderr, "pgwork: what failed: why", and the exit
 *    code says whose fault it was (cli.h).
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
#include "../shared/log.h"

/* SQLSTATEs (PostgreSQL's errcodes.h) the CLI tells apart. */
#define SQLSTATE_CLASS_DATA_EXCEPTION "22"   /* bad jsonb input and friends */
#define SQLSTATE_INVALID_SCHEMA_NAME "3F000" /* pgwork schema missing */
#define SQLSTATE_UNDEFINED_FUNCTION "42883"  /* pgwork.enqueue missing */

#define CLI_STR_(x) #x
#define CLI_STR(x) CLI_STR_(x)

/* libpq's messages end in a newline and may span lines: make one line,
 * with every run of whitespace squeezed to one space. */
static void one_line(char *text)
{
    char *out = text;
    bool space = false;
    for (const char *p = text; *p; p++) {
        if (*p == '\n' || *p == '\t' || *p == ' ') {
            space = out != text;
            continue;
        }
        if (space)
            *out++ = ' ';
        space = false;
        *out++ = *p;
    }
    *out = '\0';
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
        one_line(msg);
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

/*
 * Length of the valid UTF-8 sequence at s (1..4), or 0 if it is invalid:
 * truncated, overlong, a surrogate, or past U+10FFFF. *cp gets the code
 * point.
 */
static int utf8_sequence(const unsigned char *s, uint32_t *cp)
{
    int len;
    uint32_t c = s[0];
    uint32_t min;

    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xE0) == 0xC0) {
        len = 2, c &= 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, c &= 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4, c &= 0x07, min = 0x10000;
    } else {
        return 0;
    }
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) /* also stops at the NUL terminator */
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return len;
}

/* NULL if the queue name is acceptable, else why not. */
static const char *queue_name_problem(const char *name)
{
    size_t len = strlen(name);
    if (len == 0)
        return "it is empty";
    if (len > CONFIG_QUEUE_NAME_MAX)
        return "it is longer than " CLI_STR(CONFIG_QUEUE_NAME_MAX) " bytes";
    const unsigned char *p = (const unsigned char *)name;
    while (*p) {
        uint32_t cp;
        int n = utf8_sequence(p, &cp);
        if (n == 0)
            return "it is not valid UTF-8";
        /* C0 controls, DEL and C1 controls: invisible in logs and metrics. */
        if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F))
            return "it contains a control character";
        p += n;
    }
    return NULL;
}

/* Read all of stdin into a new NUL-terminated buffer; *len gets its size. */
static char *read_stdin(size_t *len)
{
    size_t cap = 64 * 1024;
    size_t used = 0;
    char *buf = malloc(cap);
    if (buf == NULL)
        return NULL;
    for (;;) {
        if (cap - used < 2) {
            char *bigger = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (bigger == NULL) {
                free(buf);
                errno = ENOMEM;
                return NULL;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t n = read(STDIN_FILENO, buf + used, cap - used - 1);
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int saved = errno;
            free(buf);
            errno = saved;
            return NULL;
        }
        used += (size_t)n;
    }
    buf[used] = '\0';
    *len = used;
    return buf;
}

/* Explain a failed enqueue and pick the exit code. */
static int enqueue_failed(const PGresult *res, const PGconn *conn)
{
    const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
    char msg[2048];

    if (primary == NULL) /* not a server error: the connection broke */
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(conn));
    else
        snprintf(msg, sizeof(msg), "%s", primary);
    one_line(msg);

    if (sqlstate && strncmp(sqlstate, SQLSTATE_CLASS_DATA_EXCEPTION, 2) == 0) {
        /* jsonb input: the primary message says "invalid input syntax for
         * type json", the detail says where ("Token "x" is invalid."). */
        char why[2048];
        snprintf(why, sizeof(why), "%s", detail && detail[0] ? detail : msg);
        one_line(why);
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

int cli_enqueue(const struct pgwork_config *config, const char *queue, const char *payload)
{
    const char *problem = queue_name_problem(queue);
    if (problem != NULL) {
        fprintf(stderr, "pgwork: bad queue name: %s\n", problem);
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

    const char *params[2] = {queue, payload};
    PGresult *res =
        PQexecParams(conn, "SELECT pgwork.enqueue($1, $2::jsonb)", 2, NULL, params, NULL, NULL, 0);
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
