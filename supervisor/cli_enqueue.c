/*
 * cli_enqueue.c — `pgwork enqueue [--unique-key KEY] QUEUE [PAYLOAD]`
 * (cli.h): one call of pgwork.enqueue(), the payload from the argument or
 * stdin, the task id on stdout.
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
#include "../shared/config_value.h"
#include "../shared/dbconn.h"
#include "../shared/text.h"

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
    } else {
        printf("%s\n", PQgetvalue(res, 0, 0));
        rc = cli_stdout_written("the task id");
    }
    PQclear(res);
    PQfinish(conn);
out:
    free(from_stdin);
    return rc;
}
