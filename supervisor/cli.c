/*
 * cli.c — what the one-shot database commands share (cli.h, and
 * cli_internal.h for the cli_*.c files): checking and opening the
 * connection, hiding its secrets in libpq's messages, `pgwork migrate`,
 * explaining a failed query, and vetting a queue name to look up. Each
 * command lives in a file of its own: cli_enqueue.c, cli_status.c,
 * cli_requeue.c, cli_control.c. Ordinary blocking libpq: these run once and exit.
 *
 * Invariants of every command:
 *  - User input (queue names, payload, task ids) reaches the database only
 *    as query parameters, never spliced into SQL text.
 *  - A connection string is never printed as given: libpq's connection
 *    errors go through scrub_secrets() (a malformed URL is quoted whole by
 *    libpq's parser), and anything else goes through log_redact_conninfo().
 *  - Errors are one line on stderr, "pgwork: what failed: why", and the exit
 *    code says whose fault it was (cli.h).
 *  - What the database returns is printed safely whatever it contains
 *    (cli_output.h).
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
#include "cli_internal.h"
#include "migrate.h"
#include "../shared/dbconn.h"
#include "../shared/log.h"
#include "../shared/text.h"

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

PGconn *cli_connect(const struct pgwork_config *config)
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

/* Explain a failed query ("cannot read the queues: ..."); the exit code. */
int cli_query_failed(const char *what, const PGresult *res, const PGconn *conn)
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
int cli_stdout_written(const char *what)
{
    if (fflush(stdout) == 0 && !ferror(stdout))
        return EXIT_OK;
    fprintf(stderr, "pgwork: cannot write %s: %s\n", what, strerror(errno));
    return EXIT_FAILURE_GENERIC;
}

bool cli_lookup_name_ok(const char *name)
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
