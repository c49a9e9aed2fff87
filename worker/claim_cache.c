/*
 * claim_cache.c — claim statements (and the sql path's done) prepared
 * once per connection, with a generic plan, where the session is the
 * worker's own (DESIGN §2).
 *
 * Why: an unnamed claim is parsed, analysed and planned at every claim,
 * and that was half of its backend's work — measured with perf on a
 * worker's backend, lone tasks on a small queue: 1.4 ms of CPU a claim
 * round unnamed, 0.7 ms prepared (a loaded 2-core machine) — and the
 * claim is the round trip every isolated task waits for before its
 * handler starts.
 *
 * Invariants:
 *  - only on a connection that is a session of our own: the backend that
 *    answers pg_backend_pid() is the one libpq connected to
 *    (PQbackendPID). A pooler answers the startup with a key of its own,
 *    so behind PgBouncer the two differ and nothing is prepared: a named
 *    statement could be missing on the next transaction's server
 *    connection, or left behind for the pool's other clients;
 *  - a statement's name is a hash of its text, so a name stands for one
 *    text; at most CLAIM_CACHE_MAX per connection (batch = "auto" changes
 *    the literal LIMIT among batch_size.c's 20 steps, two texts each —
 *    from the start and from the cursor; a claim of a text not cached is
 *    sent unnamed);
 *  - a claim sent inside a pipeline (behind a batch's COMMIT) is prepared
 *    there, its Parse queued ahead of it (claim_cache_send_prepare); the
 *    name is taken back unless that Parse's answer says it succeeded;
 *  - prepared claims run with claim_cache_settings() in their
 *    transaction: a generic plan, cached for the session, planned with
 *    sequential and bitmap scans off. The plan is then the ordered walk of
 *    tasks_claim_idx (LIMIT stops it; the scan marks finished tasks' index
 *    entries dead as it passes them) and a primary-key lookup per task
 *    whatever the statistics say — on a small or freshly truncated table
 *    the planner otherwise picks a bitmap scan of every entry left by
 *    finished tasks, a sort, and a sequential scan for the UPDATE, and a
 *    cached plan would keep that choice until the next ANALYZE (test
 *    migrate/claim_generic_plans_walk_the_index);
 *  - a prepared claim found missing (SQLSTATE 26000: a pooler we did not
 *    recognise), or a prepare failing with 26000 or 42P05, ends it for the
 *    process: claims go unnamed from then on; any other prepare failure
 *    (a statement_timeout, a cancel) ends it for the connection only.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "claim_cache.h"
#include "../shared/dbconn.h"
#include "../shared/log.h"

/* Room for one queue's sizes from a cursor and from the start (a drain
 * uses about 15), and its done. Each costs its backend about 100 KB
 * (pg_log_backend_memory_contexts after a drain: 17 prepared, 1.6 MB of
 * CachedPlan contexts). */
#define CLAIM_CACHE_MAX 32

static struct {
    char settings[320];
    bool off;  /* never again in this process (a pooler's failure said so) */
    bool ours; /* the current connection is a session of our own */
    int count;
    uint64_t hashes[CLAIM_CACHE_MAX];
    char name[40]; /* the last name handed out */
} cache;

void claim_cache_init(bool synchronous_commit)
{
    /* set_config(..., true): for the claim's transaction only (SET LOCAL
     * without its warning in the implicit transaction of a pipeline). */
    snprintf(cache.settings, sizeof(cache.settings), "%s%s",
             "SELECT set_config('plan_cache_mode', 'force_generic_plan', true),"
             " set_config('enable_seqscan', 'off', true),"
             " set_config('enable_bitmapscan', 'off', true)",
             synchronous_commit ? "" : ", set_config('synchronous_commit', 'off', true)");
}

const char *claim_cache_settings(void)
{
    return cache.settings;
}

void claim_cache_connected(PGconn *conn)
{
    cache.count = 0;
    cache.ours = false;
    if (cache.off)
        return;
    PGresult *res = dbconn_exec(conn, "SELECT pg_backend_pid()");
    cache.ours = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
                 atoi(PQgetvalue(res, 0, 0)) == PQbackendPID(conn);
    PQclear(res);
    log_debug("claims %s", cache.ours ? "prepared once on this connection"
                                      : "sent unnamed (not a session of our own: a pooler?)");
}

/* FNV-1a, 64 bits: the name of a text. */
static uint64_t claim_cache_hash(const char *sql)
{
    uint64_t hash = 14695981039346656037ULL;
    for (const unsigned char *p = (const unsigned char *)sql; *p; p++) {
        hash ^= *p;
        hash *= 1099511628211ULL;
    }
    return hash;
}

static const char *claim_cache_name_of(uint64_t hash)
{
    snprintf(cache.name, sizeof(cache.name), "pgwork_claim_%016llx", (unsigned long long)hash);
    return cache.name;
}

static bool claim_cache_has(uint64_t hash)
{
    for (int i = 0; i < cache.count; i++)
        if (cache.hashes[i] == hash)
            return true;
    return false;
}

bool claim_cache_own_session(void)
{
    return cache.ours && !cache.off;
}

const char *claim_cache_name(const char *sql)
{
    if (cache.off || !cache.ours)
        return NULL;
    uint64_t hash = claim_cache_hash(sql);
    return claim_cache_has(hash) ? claim_cache_name_of(hash) : NULL;
}

/* The failure says the session is not ours after all: a named statement
 * missing (26000) or already there (42P05), as behind a transaction
 * pooler whose server connections change under us. */
static bool claim_cache_pooler(const PGresult *res)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return state != NULL && (strcmp(state, "26000") == 0 || strcmp(state, "42P05") == 0);
}

/* The name sql has or would get, with its hash: *known when it is
 * prepared already; NULL when nothing may be prepared now (the cache is
 * off, the session not ours, or the cache full). */
static const char *claim_cache_slot(const char *sql, uint64_t *hash, bool *known)
{
    *known = false;
    if (cache.off || !cache.ours)
        return NULL;
    *hash = claim_cache_hash(sql);
    *known = claim_cache_has(*hash);
    if (!*known && cache.count >= CLAIM_CACHE_MAX)
        return NULL;
    return claim_cache_name_of(*hash);
}

/* The server refused a Parse of ours (res): a pooler's refusal turns the
 * cache off for the process; any other (a timeout, a cancel, a text that
 * fails unnamed too, which must not be tried at every claim) only for
 * this connection. Logged here. */
static void claim_cache_refused(const PGresult *res)
{
    if (claim_cache_pooler(res)) {
        log_warn("cannot prepare a claim statement (a pooler?), claims are sent unnamed "
                 "from now on: %s",
                 PQresultErrorMessage(res));
        cache.off = true;
    } else {
        log_warn("cannot prepare a claim statement, claims are sent unnamed on this "
                 "connection: %s",
                 PQresultErrorMessage(res));
        cache.ours = false;
    }
}

const char *claim_cache_send_prepare(PGconn *conn, const char *sql, int nparams, const Oid *types,
                                     bool *parse_sent)
{
    *parse_sent = false;
    uint64_t hash;
    bool known;
    const char *name = claim_cache_slot(sql, &hash, &known);
    if (name == NULL || known)
        return name;
    if (!PQsendPrepare(conn, name, sql, nparams, types))
        return NULL;
    *parse_sent = true;
    cache.hashes[cache.count++] = hash;
    return name;
}

void claim_cache_sent(const char *sql, const PGresult *res)
{
    if (PQresultStatus(res) == PGRES_COMMAND_OK)
        return;
    uint64_t hash = claim_cache_hash(sql);
    for (int i = 0; i < cache.count; i++)
        if (cache.hashes[i] == hash) {
            cache.hashes[i] = cache.hashes[--cache.count];
            break;
        }
    /* Skipped (PGRES_PIPELINE_ABORTED), or never answered (res NULL: the
     * round was abandoned, the connection broke): says nothing of the
     * session. A failure of its own: as claim_cache_prepare's. */
    if (res == NULL || PQresultStatus(res) != PGRES_FATAL_ERROR)
        return;
    claim_cache_refused(res);
    if (cache.off)
        cache.count = 0;
}

const char *claim_cache_prepare(PGconn *conn, const char *sql, int nparams, const Oid *types)
{
    uint64_t hash;
    bool known;
    const char *name = claim_cache_slot(sql, &hash, &known);
    if (name == NULL || known)
        return name;
    PGresult *res = dbconn_prepare(conn, name, sql, nparams, types);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok && PQstatus(conn) == CONNECTION_OK)
        claim_cache_refused(res);
    PQclear(res);
    if (!ok)
        return NULL;
    cache.hashes[cache.count++] = hash;
    return name;
}

void claim_cache_failed(const PGresult *res)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (cache.off || state == NULL || strcmp(state, "26000") != 0)
        return;
    log_warn("a prepared claim statement is gone (a pooler?): claims are sent unnamed from now on");
    cache.off = true;
    cache.count = 0;
}
