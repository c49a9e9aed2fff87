/*
 * webdb.c — the connection pool and the feature probe (webdb.h).
 *
 * Invariants: a connection is either in `idle` or held by exactly one
 * request; `opened` counts both, never above WEBDB_POOL_SIZE. Connecting
 * happens outside the lock (it can take seconds), with its slot counted,
 * so two requests never open the same slot.
 */
#include "webdb.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../shared/dbconn.h"
#include "../shared/log.h"

static const struct pgwork_config *cfg;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t freed = PTHREAD_COND_INITIALIZER;
static PGconn *idle[WEBDB_POOL_SIZE];
static int idle_count;
static int opened;
static bool failing; /* the last connect failed (logged once per streak) */
static struct webdb_features features;

void webdb_init(const struct pgwork_config *config)
{
    cfg = config;
}

/* clang-format off */
static const char features_sql[] =
    "SELECT to_regprocedure('pgwork.cancel(bigint)') IS NOT NULL,"
    "       to_regprocedure('pgwork.pause(text)') IS NOT NULL"
    "       AND to_regprocedure('pgwork.resume(text)') IS NOT NULL,"
    "       to_regclass('pgwork.paused_queues') IS NOT NULL,"
    "       to_regclass('pgwork.schedules') IS NOT NULL,"
    "       to_regclass('pgwork.throughput') IS NOT NULL";
/* clang-format on */

static void probe_features(PGconn *conn)
{
    PGresult *res = PQexec(conn, features_sql);
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        struct webdb_features f = {
            .cancel = PQgetvalue(res, 0, 0)[0] == 't',
            .pause = PQgetvalue(res, 0, 1)[0] == 't',
            .paused_table = PQgetvalue(res, 0, 2)[0] == 't',
            .schedules = PQgetvalue(res, 0, 3)[0] == 't',
            .throughput = PQgetvalue(res, 0, 4)[0] == 't',
        };
        pthread_mutex_lock(&lock);
        features = f;
        pthread_mutex_unlock(&lock);
    }
    PQclear(res);
}

static PGconn *connect_one(void)
{
    struct dbconn_params params = {0};
    dbconn_params(&params, cfg, config_conninfo(cfg), "pgwork web");
    PGconn *conn = PQconnectdbParams(params.keywords, params.values, 1);
    if (conn != NULL && PQstatus(conn) == CONNECTION_OK) {
        probe_features(conn);
        pthread_mutex_lock(&lock);
        if (failing)
            log_info("web: database connection back");
        failing = false;
        pthread_mutex_unlock(&lock);
        return conn;
    }
    char why[512];
    snprintf(why, sizeof why, "%s", conn != NULL ? PQerrorMessage(conn) : "out of memory");
    dbconn_one_line(why);
    pthread_mutex_lock(&lock);
    bool first = !failing;
    failing = true;
    pthread_mutex_unlock(&lock);
    if (first)
        log_error("web: cannot connect to the database: %s", why);
    PQfinish(conn);
    return NULL;
}

PGconn *webdb_acquire(void)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WEBDB_WAIT_MS / 1000;

    pthread_mutex_lock(&lock);
    for (;;) {
        if (idle_count > 0) {
            PGconn *conn = idle[--idle_count];
            pthread_mutex_unlock(&lock);
            return conn;
        }
        if (opened < WEBDB_POOL_SIZE) {
            opened++;
            pthread_mutex_unlock(&lock);
            PGconn *conn = connect_one();
            if (conn == NULL) {
                pthread_mutex_lock(&lock);
                opened--;
                pthread_cond_signal(&freed);
                pthread_mutex_unlock(&lock);
            }
            return conn;
        }
        if (pthread_cond_timedwait(&freed, &lock, &deadline) == ETIMEDOUT) {
            pthread_mutex_unlock(&lock);
            return NULL;
        }
    }
}

void webdb_release(PGconn *conn)
{
    if (conn == NULL)
        return;
    /* A connection left in a transaction or broken is not reused. */
    bool broken = PQstatus(conn) != CONNECTION_OK || PQtransactionStatus(conn) != PQTRANS_IDLE;
    if (broken)
        PQfinish(conn);
    pthread_mutex_lock(&lock);
    if (broken)
        opened--;
    else
        idle[idle_count++] = conn;
    pthread_cond_signal(&freed);
    pthread_mutex_unlock(&lock);
}

struct webdb_features webdb_features(void)
{
    pthread_mutex_lock(&lock);
    struct webdb_features f = features;
    pthread_mutex_unlock(&lock);
    return f;
}

void webdb_fini(void)
{
    pthread_mutex_lock(&lock);
    while (idle_count > 0) {
        PQfinish(idle[--idle_count]);
        opened--;
    }
    pthread_mutex_unlock(&lock);
}
