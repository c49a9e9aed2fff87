/*
 * listener.c — the supervisor's database connection (DESIGN §1.5, §1.7).
 *
 * Invariants:
 *  - never blocks: non-blocking connect (PQconnectStartParams +
 *    PQconnectPoll, the socket re-registered after every step because libpq
 *    may replace it), non-blocking send (PQsendQuery*, PQflush until it
 *    returns 0, waiting for EPOLLOUT meanwhile), results read only when
 *    PQisBusy says they are complete;
 *  - at most one query in flight; the next one is chosen by urgency
 *    (listener_start_next_query): the session setup, lease renewals,
 *    requeues, the poll, queue depth, the keepalive ping;
 *  - nothing it sends waits on a row lock a task holds (locked rows are
 *    skipped and tried again later), and the server cancels any statement
 *    of ours that outlives our own patience (statement_timeout), so a
 *    dead worker's backend can never stall the pod;
 *  - it never sits in a transaction, and it drains notifications on every
 *    readable event, so it never holds back PostgreSQL's notification
 *    queue;
 *  - on (re)connect it re-LISTENs and sweeps every queue: notifications
 *    sent while it was away are gone (DESIGN §1.5);
 *  - keepalive: after keepalive_interval without traffic it notifies its
 *    own private channel and expects the notification back within
 *    keepalive_timeout; silence means the connection is dead even if the
 *    socket looks fine (a proxy that stopped forwarding);
 *  - names (channel) are quoted with PQescapeIdentifier; queue names and
 *    owners are parameters.
 */
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "listener.h"
#include "../shared/dbconn.h"
#include "../shared/log.h"
#include "../shared/timeutil.h"

/* How long one connection attempt may take before it counts as failed. */
#define LISTENER_CONNECT_TIMEOUT_MS 10000

/* How long the child sending a cancel request may take. */
#define LISTENER_CANCEL_TIMEOUT_S 5

/* The listener's statements never wait this long for a lock: what they
 * touch is skipped when locked, so only DDL (a migration) can hold them
 * up, and they are tried again later. */
#define LISTENER_LOCK_TIMEOUT_MS 5000

/* A requeue that found locked rows or failed is tried again after this,
 * doubling per try up to the maximum. */
#define LISTENER_REQUEUE_RETRY_MIN_MS 250
#define LISTENER_REQUEUE_RETRY_MAX_MS 10000

/* A dead worker's backend still exiting after pg_terminate_backend's own
 * 1 s wait is asked again this often, this many times, before its tasks
 * are requeued. */
#define LISTENER_STOP_RETRY_MS 200
#define LISTENER_STOP_TRIES 10

enum in_flight {
    QUERY_NONE = 0,
    QUERY_SETUP, /* session settings, LISTEN, the database's clock */
    QUERY_STOP_BACKEND,
    QUERY_REQUEUE,
    QUERY_POLL,
    QUERY_PING,
    QUERY_DEPTH,
    QUERY_RENEW,
};

/* clang-format off */

/*
 * A worker of this pod died; $1/$2 = configured queue names and their
 * max_attempts, $3 = its locked_by, $4 = the task it was running (its shm
 * slot's task_id; 0 = none).
 *  - its other running rows were claimed but never started: pending again,
 *    attempt undone, as if never claimed;
 *  - the task it was running keeps the attempt: pending, or dead when out
 *    of attempts, so a task that kills its worker every time ends (and
 *    does not take its batch-mates with it);
 *  - a task run in the one-transaction path (sql handler) is pending again
 *    after the crash, its attempt never written: it is charged here.
 * Rows still locked are skipped, never waited for: the dead worker's
 * backend may still be running its statement and holding them (it is
 * stopped first, but may not be stoppable — a pooler hides it). The last
 * column counts the rows skipped; the supervisor tries again later.
 * A queue this pod does not configure never ends dead here.
 */
static const char requeue_sql[] =
    "WITH mine AS ("
    "  SELECT r.id, r.state, r.id = $4 AS was_running,"
    "         CASE WHEN r.state = 'pending' THEN r.attempts + 1"
    "              WHEN r.id = $4 THEN r.attempts"
    "              ELSE greatest(r.attempts - 1, 0) END AS attempts,"
    "         coalesce(r.max_attempts,"
    "                  (SELECT q.m FROM unnest($1::text[], $2::int[]) AS q(name, m)"
    "                   WHERE q.name = r.queue),"
    "                  2147483647) AS max_attempts"
    "  FROM pgwork.tasks r"
    "  WHERE (r.state = 'running' AND r.locked_by = $3) OR (r.id = $4 AND r.state = 'pending')"
    "  FOR UPDATE SKIP LOCKED),"
    " moved AS ("
    "  UPDATE pgwork.tasks t"
    "  SET attempts = c.attempts,"
    "      state = CASE WHEN c.was_running AND c.attempts >= c.max_attempts"
    "                   THEN 'dead' ELSE 'pending' END,"
    "      finished_at = CASE WHEN c.was_running AND c.attempts >= c.max_attempts"
    "                         THEN now() END,"
    "      run_at = CASE WHEN c.state = 'running'"
    "                         AND NOT (c.was_running AND c.attempts >= c.max_attempts)"
    "                    THEN now() ELSE t.run_at END,"
    "      last_error = CASE WHEN c.was_running"
    "                        THEN 'worker ' || $3 || ' died while running the task (attempt '"
    "                             || c.attempts || ')'"
    "                        ELSE t.last_error END,"
    "      locked_until = NULL"
    "  FROM mine c"
    "  WHERE t.id = c.id"
    "  RETURNING t.state = 'dead' AS dead)"
    " SELECT (SELECT count(*) FROM moved WHERE NOT dead),"
    "        (SELECT count(*) FROM moved WHERE dead),"
    "        (SELECT count(*) FROM pgwork.tasks r"
    "         WHERE (r.state = 'running' AND r.locked_by = $3)"
    "            OR (r.id = $4 AND r.state = 'pending'))"
    "        - (SELECT count(*) FROM mine)";

/*
 * Stop a dead worker's backend, which may still run the statement it was
 * sent and hold its tasks' row locks: $1 = the pid the worker's connection
 * reported, $2 = its application_name. Both must match, so a pid the
 * worker never owned (a pooler's fake one) stops nothing. Waits up to 1 s
 * for the backend to exit.
 */
static const char stop_backend_sql[] =
    "SELECT pg_terminate_backend(a.pid, 1000)"
    " FROM pg_stat_activity a"
    " WHERE a.pid = $1 AND a.application_name = $2 AND a.datname = current_database()";

/*
 * The poll. First requeue tasks whose lease expired (their pod is gone —
 * any pod does this, DESIGN §2; which of them was running is unknown, so
 * each keeps its attempts: pending, or dead when out of them; locked rows
 * are skipped — someone is changing them). Then one row per configured
 * queue:
 *   2  ms until its earliest pending task is due (<= 0: due now; NULL: none)
 *   3  how many of its tasks were just requeued (due now, but not visible
 *      to this statement's snapshot)
 *   4  how many tasks were requeued in all
 *   5  ms until its earliest task due later (NULL: none)
 *   6  ms until the earliest lease of any running task runs out (NULL:
 *      none): a dead pod's tasks are taken back then, not at the next
 *      safety poll
 *   7  the database's clock (ms since the epoch), for absolute due times
 *      in notifications
 * One index probe per queue (tasks_poll_idx: `priority IS NOT NULL` is
 * always true and names that index, which the workers' claims cannot use —
 * migration 0004), one statement for all queues (DESIGN §1.5).
 */
static const char poll_sql[] =
    "WITH moved AS ("
    "  UPDATE pgwork.tasks t"
    "  SET state = CASE WHEN x.spent THEN 'dead' ELSE 'pending' END,"
    "      finished_at = CASE WHEN x.spent THEN now() END,"
    "      run_at = CASE WHEN x.spent THEN t.run_at ELSE now() END,"
    "      last_error = 'lease of ' || t.locked_by || ' expired (attempt ' || t.attempts || ')',"
    "      locked_until = NULL"
    "  FROM (SELECT r.id,"
    "               r.attempts >= coalesce(r.max_attempts,"
    "                                      (SELECT q.m FROM unnest($1::text[], $2::int[]) AS q(name, m)"
    "                                       WHERE q.name = r.queue),"
    "                                      2147483647) AS spent"
    "        FROM pgwork.tasks r WHERE r.state = 'running' AND r.locked_until < now()"
    "        FOR UPDATE SKIP LOCKED) x"
    "  WHERE t.id = x.id"
    "  RETURNING t.queue, x.spent AS dead)"
    " SELECT q.i,"
    "   ceil(extract(epoch FROM ("
    "     SELECT min(t.run_at) FROM pgwork.tasks t"
    "     WHERE t.queue = q.name AND t.state = 'pending' AND t.priority IS NOT NULL)"
    "     - now()) * 1000)::bigint,"
    "   (SELECT count(*) FROM moved m WHERE m.queue = q.name AND NOT m.dead),"
    "   (SELECT count(*) FROM moved),"
    "   ceil(extract(epoch FROM ("
    "     SELECT min(t.run_at) FROM pgwork.tasks t"
    "     WHERE t.queue = q.name AND t.state = 'pending' AND t.priority IS NOT NULL"
    "       AND t.run_at > now()) - now()) * 1000)::bigint,"
    "   ceil(extract(epoch FROM ("
    "     SELECT min(t.locked_until) FROM pgwork.tasks t WHERE t.state = 'running')"
    "     - now()) * 1000)::bigint,"
    "   floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
    " FROM unnest($1::text[]) WITH ORDINALITY AS q(name, i)";

/* Leases of tasks our live workers are running: pushed forward, so a
 * long task keeps its lease while its worker lives. $1 = their locked_by
 * tags (text[]), $2 = lease in ms. A locked row is being finished by its
 * worker right now: skipped, not waited for. */
static const char renew_sql[] =
    "UPDATE pgwork.tasks SET locked_until = now() + $2 * interval '1 millisecond'"
    " WHERE id IN (SELECT id FROM pgwork.tasks"
    "              WHERE state = 'running' AND locked_by = ANY($1::text[])"
    "              FOR UPDATE SKIP LOCKED)";

/* clang-format on */

static const char ping_sql[] = "SELECT pg_notify($1, 'ping')";

/* Queue depth by state: index probes on the partial indexes (poll,
 * running, dead), one statement for all queues. */
static const char depth_sql[] =
    "SELECT q.name,"
    " (SELECT count(*) FROM pgwork.tasks t"
    "   WHERE t.queue = q.name AND t.state = 'pending' AND t.priority IS NOT NULL"
    "     AND t.run_at <= now()),"
    " (SELECT count(*) FROM pgwork.tasks t"
    "   WHERE t.queue = q.name AND t.state = 'pending' AND t.priority IS NOT NULL"
    "     AND t.run_at > now()),"
    " (SELECT count(*) FROM pgwork.tasks t WHERE t.queue = q.name AND t.state = 'running'),"
    " (SELECT count(*) FROM pgwork.tasks t WHERE t.queue = q.name AND t.state = 'dead'),"
    " pg_notification_queue_usage()"
    " FROM unnest($1::text[]) AS q(name)";

static char *listener_queue_names(const struct pgwork_config *config);
static char *listener_queue_max_attempts(const struct pgwork_config *config);

void listener_init(struct listener *l, const struct pgwork_config *config, int epoll_fd,
                   const struct listener_callbacks *callbacks, void *ctx)
{
    memset(l, 0, sizeof(*l));
    l->config = config;
    l->callbacks = *callbacks;
    l->ctx = ctx;
    l->epoll_fd = epoll_fd;
    l->state = LISTENER_DOWN;
    l->registered_fd = -1;
    l->in_flight_requeue = -1;
    resolver_init(&l->resolver);
    l->reconnect_due_ms = 0; /* connect at the first chores pass */
    l->queue_names = listener_queue_names(config);
    l->queue_max_attempts = listener_queue_max_attempts(config);
    if (l->queue_names == NULL || l->queue_max_attempts == NULL) {
        log_error("out of memory building the queue list");
        abort();
    }
}

bool listener_is_listening(const struct listener *l)
{
    return l->state == LISTENER_UP && l->listening;
}

bool listener_is_up(const struct listener *l)
{
    return l->state == LISTENER_UP;
}

/* Make epoll watch fd for events; libpq may have swapped the socket. */
static void listener_watch(struct listener *l, uint32_t events)
{
    int fd = l->conn != NULL ? PQsocket(l->conn) : -1;
    if (fd == l->registered_fd && events == l->registered_events)
        return;
    if (l->registered_fd >= 0 && fd != l->registered_fd)
        /* May fail harmlessly: a closed fd has already left the set. */
        epoll_ctl(l->epoll_fd, EPOLL_CTL_DEL, l->registered_fd, NULL);
    if (fd < 0) {
        l->registered_fd = -1;
        return;
    }
    struct epoll_event ev = {.events = events, .data.fd = fd};
    int op = fd == l->registered_fd ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(l->epoll_fd, op, fd, &ev) != 0) {
        /* A recycled fd number: the old registration died with the old
         * socket, or the new one is already there. */
        op = errno == ENOENT ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
        if (epoll_ctl(l->epoll_fd, op, fd, &ev) != 0)
            log_error("cannot watch the listener socket: %s", strerror(errno));
    }
    l->registered_fd = fd;
    l->registered_events = events;
}

static void listener_unwatch(struct listener *l)
{
    if (l->registered_fd >= 0)
        epoll_ctl(l->epoll_fd, EPOLL_CTL_DEL, l->registered_fd, NULL);
    l->registered_fd = -1;
    l->registered_events = 0;
}

/* Exponential backoff from reconnect_min to reconnect_max, plus up to 25 %
 * jitter so a fleet of pods does not reconnect in step. */
static int64_t listener_backoff_ms(const struct listener *l)
{
    int64_t delay = l->config->listener.reconnect_min_ms;
    for (int i = 1; i < l->failures && delay < l->config->listener.reconnect_max_ms; i++)
        delay *= 2;
    delay += (int64_t)((double)delay * 0.25 * random_unit());
    if (delay > l->config->listener.reconnect_max_ms)
        delay = l->config->listener.reconnect_max_ms;
    return delay;
}

/*
 * Ask the server to cancel the statement this connection still runs before
 * we drop it: a backend busy with a statement (waiting on a lock, say) does
 * not notice its client is gone, and each reconnect would leave one more
 * behind. PQcancel blocks (it opens a connection), so a short-lived child
 * sends it; the supervisor's reaper collects it like any stranger.
 */
static void listener_cancel_in_flight(struct listener *l)
{
    PGcancel *cancel = PQgetCancel(l->conn);
    if (cancel == NULL)
        return;
    pid_t pid = fork();
    if (pid == 0) {
        /* Inherited: the supervisor's blocked signal mask. SIGALRM bounds a
         * cancel to a server that does not answer. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGALRM, SIG_DFL);
        alarm(LISTENER_CANCEL_TIMEOUT_S);
        char err[256];
        _exit(PQcancel(cancel, err, sizeof(err)) ? 0 : 1);
    }
    if (pid < 0)
        log_warn("cannot fork to cancel the listener's statement: %s", strerror(errno));
    PQfreeCancel(cancel);
}

static void listener_disconnect(struct listener *l, const char *why)
{
    bool was_up = l->state == LISTENER_UP;
    resolver_cancel(&l->resolver); /* closing its pipe leaves the epoll set */
    listener_unwatch(l);
    if (l->conn != NULL && l->state == LISTENER_UP && l->in_flight != QUERY_NONE)
        listener_cancel_in_flight(l);
    if (l->conn != NULL)
        PQfinish(l->conn);
    l->conn = NULL;
    l->state = LISTENER_DOWN;
    l->listening = false;
    l->in_flight = QUERY_NONE;
    l->in_flight_requeue = -1;
    l->ping_sent_ms = 0;
    l->failures++;
    int64_t delay = listener_backoff_ms(l);
    l->reconnect_due_ms = time_now_ms() + delay;
    log_warn("listener connection lost: %s; reconnecting in %" PRId64 " ms (attempt %d)", why,
             delay, l->failures);
    if (was_up && l->callbacks.on_connection != NULL)
        l->callbacks.on_connection(l->ctx, false);
}

/* Start libpq's non-blocking connect; lists (NULL = none) is the
 * resolver's answer for the conninfo's hosts. */
static void listener_start_connection(struct listener *l, int64_t now,
                                      const struct resolver_lists *lists)
{
    struct dbconn_params params = {0};
    dbconn_params(&params, l->config, config_listen_conninfo(l->config), "pgwork listener");
    if (lists != NULL) {
        dbconn_params_add(&params, "host", lists->host);
        dbconn_params_add(&params, "hostaddr", lists->hostaddr);
        if (lists->port != NULL)
            dbconn_params_add(&params, "port", lists->port);
    }
    l->conn = PQconnectStartParams(params.keywords, params.values, 1);
    if (l->conn == NULL) {
        l->state = LISTENER_DOWN;
        l->failures++;
        l->reconnect_due_ms = now + listener_backoff_ms(l);
        log_error("cannot start a listener connection: out of memory");
        return;
    }
    if (PQstatus(l->conn) == CONNECTION_BAD) {
        char why[512];
        snprintf(why, sizeof(why), "cannot connect: %s", PQerrorMessage(l->conn));
        why[strcspn(why, "\n")] = '\0';
        l->state = LISTENER_CONNECTING; /* so disconnect cleans up */
        listener_disconnect(l, why);
        return;
    }
    l->state = LISTENER_CONNECTING;
    l->connect_deadline_ms = now + LISTENER_CONNECT_TIMEOUT_MS;
    /* PQconnectStart leaves libpq wanting to write first. */
    listener_watch(l, EPOLLOUT);
}

/* Connect; a host name is looked up by a resolver child first, since
 * libpq would call a blocking getaddrinfo (DESIGN §8). */
static void listener_connect(struct listener *l, int64_t now)
{
    char *hosts = NULL, *ports = NULL;
    if (!resolver_needed(config_listen_conninfo(l->config), &hosts, &ports)) {
        listener_start_connection(l, now, NULL);
        return;
    }
    int rc = resolver_start(&l->resolver, hosts, ports);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = resolver_fd(&l->resolver)};
    if (rc != 0 || epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, ev.data.fd, &ev) != 0) {
        log_error("cannot start looking up the database host: %s", strerror(errno));
        resolver_cancel(&l->resolver);
        l->failures++;
        l->reconnect_due_ms = now + listener_backoff_ms(l);
        return;
    }
    l->state = LISTENER_RESOLVING;
    l->connect_deadline_ms = now + LISTENER_CONNECT_TIMEOUT_MS;
}

/* The resolver's pipe is readable. */
static void listener_on_resolved(struct listener *l)
{
    struct resolver_lists lists;
    char why[512];
    /* Done closes the pipe, which also takes it out of the epoll set. */
    if (resolver_read(&l->resolver, &lists, why, sizeof(why)) == 0)
        return;
    if (lists.host == NULL) {
        char message[600];
        snprintf(message, sizeof(message), "cannot connect: %s", why);
        listener_disconnect(l, message);
        return;
    }
    listener_start_connection(l, time_now_ms(), &lists);
    resolver_lists_free(&lists); /* libpq copied them */
}

/* Send the bytes libpq has buffered; wait for EPOLLOUT if the kernel
 * buffer is full. Returns -1 when the connection failed. */
static int listener_flush(struct listener *l)
{
    int rc = PQflush(l->conn);
    if (rc < 0)
        return -1;
    listener_watch(l, rc == 1 ? EPOLLIN | EPOLLOUT : EPOLLIN);
    return 0;
}

/* A query that takes longer than this means a dead connection: nothing
 * the listener sends should take more than a moment. */
static int64_t listener_query_timeout(const struct listener *l)
{
    return l->config->listener.keepalive_interval_ms + l->config->listener.keepalive_timeout_ms;
}

/*
 * The session's setup, one round trip: the server itself gives up on a
 * statement of ours when we would (statement_timeout: a statement still
 * running after we dropped the connection would hold its backend and
 * locks), and never waits long for a lock; LISTEN on the task channel and
 * our ping channel (unless notifications are off); a reading of the
 * database's clock.
 */
static void listener_send_setup(struct listener *l)
{
    char listen[256] = "";
    if (l->config->listener.enabled) {
        char *channel = PQescapeIdentifier(l->conn, l->config->listener.channel,
                                           strlen(l->config->listener.channel));
        char *ping = PQescapeIdentifier(l->conn, l->ping_channel, strlen(l->ping_channel));
        if (channel == NULL || ping == NULL) {
            PQfreemem(channel);
            PQfreemem(ping);
            listener_disconnect(l, "cannot quote the channel name");
            return;
        }
        snprintf(listen, sizeof(listen), "LISTEN %s; LISTEN %s; ", channel, ping);
        PQfreemem(channel);
        PQfreemem(ping);
    }
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SET statement_timeout = %" PRId64 "; SET lock_timeout = %d; %s"
             "SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint",
             listener_query_timeout(l), LISTENER_LOCK_TIMEOUT_MS, listen);
    l->setup_failed = false;
    if (!PQsendQuery(l->conn, sql) || listener_flush(l) != 0) {
        listener_disconnect(l, PQerrorMessage(l->conn));
        return;
    }
    l->in_flight = QUERY_SETUP;
    l->query_sent_ms = time_now_ms();
}

static void listener_connected(struct listener *l)
{
    PQsetnonblocking(l->conn, 1);
    if (l->ever_up)
        l->reconnects++;
    l->ever_up = true;
    l->state = LISTENER_UP;
    l->failures = 0;
    l->last_traffic_ms = time_now_ms();
    l->ping_sent_ms = 0;
    /* A private channel per server backend: our pings reach no other pod. */
    snprintf(l->ping_channel, sizeof(l->ping_channel), "pgwork_keepalive_%d",
             PQbackendPID(l->conn));
    listener_watch(l, EPOLLIN);
    listener_send_setup(l);
}

/* The setup query's last result has arrived. */
static void listener_setup_done(struct listener *l)
{
    if (l->setup_failed)
        return; /* logged; polling at poll_interval, LISTEN tried at the next connection */
    l->sweep_requested = true; /* DESIGN §1.5: what we missed is gone */
    if (l->config->listener.enabled) {
        l->listening = true;
        log_info("listening on channel \"%s\"", l->config->listener.channel);
    } else {
        log_info("database connection up; notifications disabled, polling every %" PRId64 " ms",
                 l->config->workers.poll_interval_ms);
    }
    if (l->callbacks.on_connection != NULL)
        l->callbacks.on_connection(l->ctx, true);
}

/* A reading of the database's clock taken by the query in flight. */
static void listener_clock_sample(struct listener *l, const char *db_ms_text, int64_t now)
{
    int64_t midpoint = l->query_sent_ms + (now - l->query_sent_ms) / 2;
    l->db_clock_offset_ms = strtoll(db_ms_text, NULL, 10) - midpoint;
    l->db_clock_known = true;
}

static void listener_continue_connect(struct listener *l)
{
    switch (PQconnectPoll(l->conn)) {
    case PGRES_POLLING_READING:
        listener_watch(l, EPOLLIN);
        break;
    case PGRES_POLLING_WRITING:
        listener_watch(l, EPOLLOUT);
        break;
    case PGRES_POLLING_OK:
        listener_connected(l);
        break;
    case PGRES_POLLING_FAILED:
    default: {
        char why[512];
        snprintf(why, sizeof(why), "cannot connect: %s", PQerrorMessage(l->conn));
        why[strcspn(why, "\n")] = '\0';
        listener_disconnect(l, why);
        break;
    }
    }
}

int listener_parse_notification(const struct pgwork_config *config, const char *payload,
                                int *queue_index, int64_t *delay_ms)
{
    if (strcmp(payload, "*") == 0)
        return LISTENER_NOTIFY_SWEEP;
    bool absolute = payload[0] == '@';
    const char *number = absolute ? payload + 1 : payload;
    char *end;
    errno = 0;
    long long value = strtoll(number, &end, 10);
    if (errno != 0 || end == number || *end != ' ' || value < 0 || !isdigit((unsigned char)*number))
        return LISTENER_NOTIFY_MALFORMED;
    int index = config_find_queue(config, end + 1);
    if (index < 0)
        return LISTENER_NOTIFY_OTHER_QUEUE;
    *queue_index = index;
    *delay_ms = value;
    return absolute ? LISTENER_NOTIFY_QUEUE_AT : LISTENER_NOTIFY_QUEUE;
}

static void listener_handle_task_notification(struct listener *l, const char *payload)
{
    int queue_index;
    int64_t delay_ms;
    switch (listener_parse_notification(l->config, payload, &queue_index, &delay_ms)) {
    case LISTENER_NOTIFY_SWEEP:
        l->callbacks.on_sweep(l->ctx);
        break;
    case LISTENER_NOTIFY_QUEUE_AT:
        /* Due at that moment of the database's clock. The notification left
         * at commit, maybe long after the insert: a task already due then
         * starts now. */
        if (!l->db_clock_known) {
            l->sweep_requested = true; /* the poll knows the delay */
            break;
        }
        delay_ms -= time_now_ms() + l->db_clock_offset_ms;
        l->callbacks.on_task_hint(l->ctx, queue_index, delay_ms > 0 ? delay_ms : 0, true);
        break;
    case LISTENER_NOTIFY_QUEUE:
        l->callbacks.on_task_hint(l->ctx, queue_index, delay_ms, true);
        break;
    case LISTENER_NOTIFY_MALFORMED:
        log_warn("ignoring a malformed notification payload (%zu bytes)", strlen(payload));
        break;
    case LISTENER_NOTIFY_OTHER_QUEUE:
        /* A queue this pod does not serve: another deployment's business. */
        break;
    }
}

static void listener_drain_notifications(struct listener *l)
{
    PGnotify *n;
    while ((n = PQnotifies(l->conn)) != NULL) {
        if (strcmp(n->relname, l->ping_channel) == 0) {
            if (l->ping_sent_ms != 0) {
                l->last_ping_rtt_ms = time_now_ms() - l->ping_sent_ms;
                l->ping_sent_ms = 0;
            }
        } else {
            l->notifications++;
            listener_handle_task_notification(l, n->extra);
        }
        PQfreemem(n);
    }
}

static void listener_handle_poll_result(struct listener *l, PGresult *res, int64_t now)
{
    int rows = PQntuples(res);
    if (rows > 0) {
        listener_clock_sample(l, PQgetvalue(res, 0, 6), now);
        /* The earliest lease to run out, ours included (renewed, it just
         * moves on): +1, `locked_until < now()` is strict. */
        l->lease_due_ms = 0;
        if (!PQgetisnull(res, 0, 5)) {
            long long ms = strtoll(PQgetvalue(res, 0, 5), NULL, 10);
            l->lease_due_ms = now + (ms > 0 ? ms : 0) + 1;
        }
    }
    for (int r = 0; r < rows; r++) {
        int index = atoi(PQgetvalue(res, r, 0)) - 1; /* ORDINALITY starts at 1 */
        if (index < 0 || index >= l->config->queue_count)
            continue;
        if (r == 0 && atoll(PQgetvalue(res, r, 3)) > 0)
            log_warn("took back %s task(s) whose lease expired (requeued, or dead when out of "
                     "attempts): their worker or pod is gone",
                     PQgetvalue(res, r, 3));
        bool due = atoll(PQgetvalue(res, r, 2)) > 0 ||
                   (!PQgetisnull(res, r, 1) && strtoll(PQgetvalue(res, r, 1), NULL, 10) <= 0);
        if (due)
            l->callbacks.on_task_hint(l->ctx, index, 0, false);
        /* The next task due later, so the supervisor's timer always knows
         * it: a timer holds one due time per queue, and every firing runs
         * this poll again, which finds the next one. */
        if (!PQgetisnull(res, r, 4)) {
            long long later = strtoll(PQgetvalue(res, r, 4), NULL, 10);
            l->callbacks.on_task_hint(l->ctx, index, later > 0 ? later : 1, false);
        }
    }
}

static void listener_free_depth(struct listener_depth *d)
{
    for (int i = 0; i < d->count; i++)
        free(d->names[i]);
    free(d->names);
    free(d->pending_due);
    free(d->pending_later);
    free(d->running);
    free(d->dead);
    memset(d, 0, sizeof(*d));
}

static void listener_store_depth(struct listener *l, PGresult *res)
{
    struct listener_depth *d = &l->depth;
    listener_free_depth(d);
    int rows = PQntuples(res);
    d->names = calloc((size_t)rows + 1, sizeof(*d->names));
    d->pending_due = calloc((size_t)rows + 1, sizeof(int64_t));
    d->pending_later = calloc((size_t)rows + 1, sizeof(int64_t));
    d->running = calloc((size_t)rows + 1, sizeof(int64_t));
    d->dead = calloc((size_t)rows + 1, sizeof(int64_t));
    if (d->names == NULL || d->pending_due == NULL || d->pending_later == NULL ||
        d->running == NULL || d->dead == NULL) {
        listener_free_depth(d);
        return;
    }
    for (int r = 0; r < rows; r++) {
        d->names[r] = strdup(PQgetvalue(res, r, 0));
        if (d->names[r] == NULL)
            break;
        d->pending_due[r] = atoll(PQgetvalue(res, r, 1));
        d->pending_later[r] = atoll(PQgetvalue(res, r, 2));
        d->running[r] = atoll(PQgetvalue(res, r, 3));
        d->dead[r] = atoll(PQgetvalue(res, r, 4));
        d->notify_queue_usage = atof(PQgetvalue(res, r, 5));
        d->count++;
    }
    d->fetched_ms = time_now_ms();
}

void listener_want_depth(struct listener *l, int64_t now)
{
    if (l->depth.fetched_ms == 0 || now - l->depth.fetched_ms >= LISTENER_DEPTH_MAX_AGE_MS)
        l->depth_requested = true;
}

static int64_t listener_requeue_retry_ms(int tries)
{
    int64_t delay = LISTENER_REQUEUE_RETRY_MIN_MS;
    for (int i = 1; i < tries && delay < LISTENER_REQUEUE_RETRY_MAX_MS; i++)
        delay *= 2;
    return delay < LISTENER_REQUEUE_RETRY_MAX_MS ? delay : LISTENER_REQUEUE_RETRY_MAX_MS;
}

static void listener_requeue_remove(struct listener *l, int i)
{
    free(l->requeues[i].locked_by);
    l->requeue_count--;
    memmove(l->requeues + i, l->requeues + i + 1,
            (size_t)(l->requeue_count - i) * sizeof(*l->requeues));
}

/* Requeue i is not done: to the back of the queue, tried again after
 * delay_ms, so it never holds up the poll, renewals or the other
 * requeues. */
static void listener_requeue_defer(struct listener *l, int i, int64_t now, int64_t delay_ms)
{
    struct listener_requeue r = l->requeues[i];
    memmove(l->requeues + i, l->requeues + i + 1,
            (size_t)(l->requeue_count - i - 1) * sizeof(*l->requeues));
    r.due_ms = now + delay_ms;
    l->requeues[l->requeue_count - 1] = r;
}

static void listener_handle_requeue_result(struct listener *l, PGresult *res, bool ok, int64_t now)
{
    int i = l->in_flight_requeue;
    if (i < 0 || i >= l->requeue_count)
        return;
    struct listener_requeue *r = &l->requeues[i];
    if (!ok) {
        log_error("requeue of %s failed (try %d; again in %" PRId64 " ms): %s", r->locked_by,
                  r->tries + 1, listener_requeue_retry_ms(r->tries + 1), PQresultErrorMessage(res));
        r->tries++;
        listener_requeue_defer(l, i, now, listener_requeue_retry_ms(r->tries));
        return;
    }
    long long requeued = atoll(PQgetvalue(res, 0, 0));
    long long dead = atoll(PQgetvalue(res, 0, 1));
    long long locked = atoll(PQgetvalue(res, 0, 2));
    if (requeued > 0 || dead > 0)
        log_warn("tasks of %s: %lld requeued, %lld dead (out of attempts)", r->locked_by, requeued,
                 dead);
    if (requeued > 0)
        l->callbacks.on_sweep(l->ctx);
    if (locked > 0) {
        /* Its backend could not be stopped (a pooler hides it, or it lacks
         * the privilege): it still holds them, and will commit or roll
         * back on its own. */
        log_warn("%lld task(s) of %s still locked (its backend is still running); trying again "
                 "in %" PRId64 " ms",
                 locked, r->locked_by, listener_requeue_retry_ms(r->tries + 1));
        r->tries++;
        listener_requeue_defer(l, i, now, listener_requeue_retry_ms(r->tries));
        return;
    }
    listener_requeue_remove(l, i);
}

/* A result for the query in flight. */
static void listener_handle_result(struct listener *l, PGresult *res, int64_t now)
{
    ExecStatusType status = PQresultStatus(res);
    bool ok = status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK;
    switch (l->in_flight) {
    case QUERY_SETUP:
        if (!ok) {
            log_error("listener session setup failed: %s", PQresultErrorMessage(res));
            l->setup_failed = true;
        } else if (status == PGRES_TUPLES_OK && PQntuples(res) == 1) {
            listener_clock_sample(l, PQgetvalue(res, 0, 0), now);
        }
        break;
    case QUERY_STOP_BACKEND: {
        int i = l->in_flight_requeue;
        if (i < 0 || i >= l->requeue_count)
            break;
        struct listener_requeue *r = &l->requeues[i];
        bool exiting = ok && PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") != 0;
        if (!ok)
            log_warn("cannot stop the backend (pid %d) of dead worker %s: %s", (int)r->backend_pid,
                     r->locked_by, PQresultErrorMessage(res));
        else if (PQntuples(res) == 1 && !exiting)
            log_info("stopped the backend (pid %d) of dead worker %s", (int)r->backend_pid,
                     r->locked_by);
        if (exiting && r->stop_tries < LISTENER_STOP_TRIES) {
            /* Signalled, not gone yet: requeue once it is, not before —
             * the rows it frees would otherwise be claimable uncharged. */
            r->stop_tries++;
            listener_requeue_defer(l, i, now, LISTENER_STOP_RETRY_MS);
            break;
        }
        /* Gone (or not stoppable): a requeue that still finds locked rows
         * waits for them. */
        r->backend_pid = 0;
        break;
    }
    case QUERY_REQUEUE:
        listener_handle_requeue_result(l, res, ok && PQntuples(res) == 1, now);
        break;
    case QUERY_POLL:
        if (ok) {
            l->schema_ok = true;
            listener_handle_poll_result(l, res, now);
        } else {
            l->schema_ok = false;
            log_error("poll query failed (is the schema migrated? run `pgwork migrate`): %s",
                      PQresultErrorMessage(res));
        }
        break;
    case QUERY_PING:
        if (!ok)
            log_error("keepalive ping failed: %s", PQresultErrorMessage(res));
        break;
    case QUERY_RENEW:
        if (!ok)
            log_error("lease renewal failed: %s", PQresultErrorMessage(res));
        break;
    case QUERY_DEPTH:
        if (ok)
            listener_store_depth(l, res);
        else
            log_error("queue depth query failed: %s", PQresultErrorMessage(res));
        break;
    default:
        break;
    }
}

/* The query in flight has returned all its results. */
static void listener_query_done(struct listener *l)
{
    int done = l->in_flight;
    l->in_flight = QUERY_NONE;
    l->in_flight_requeue = -1;
    if (done == QUERY_SETUP)
        listener_setup_done(l);
}

/* A text[] literal of the configured queue names: each element quoted,
 * with backslash and double quote escaped (array syntax, not SQL). */
static char *listener_queue_names(const struct pgwork_config *config)
{
    size_t cap = 3;
    for (int i = 0; i < config->queue_count; i++)
        cap += 2 * strlen(config->queues[i].name) + 3;
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    char *p = out;
    *p++ = '{';
    for (int i = 0; i < config->queue_count; i++) {
        if (i > 0)
            *p++ = ',';
        *p++ = '"';
        for (const char *c = config->queues[i].name; *c; c++) {
            if (*c == '"' || *c == '\\')
                *p++ = '\\';
            *p++ = *c;
        }
        *p++ = '"';
    }
    *p++ = '}';
    *p = '\0';
    return out;
}

/* An int[] literal of the queues' max_attempts, in the same order. */
static char *listener_queue_max_attempts(const struct pgwork_config *config)
{
    size_t cap = 3 + (size_t)config->queue_count * 12;
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    size_t len = 0;
    out[len++] = '{';
    for (int i = 0; i < config->queue_count; i++)
        len += (size_t)snprintf(out + len, cap - len, "%s%d", i ? "," : "",
                                config->queues[i].max_attempts);
    out[len++] = '}';
    out[len] = '\0';
    return out;
}

static int64_t listener_poll_interval(const struct listener *l)
{
    return l->listening ? l->config->workers.safety_poll_interval_ms
                        : l->config->workers.poll_interval_ms;
}

/* The first requeue whose time has come (FIFO among them), or -1. */
static int listener_requeue_due(const struct listener *l, int64_t now)
{
    for (int i = 0; i < l->requeue_count; i++)
        if (l->requeues[i].due_ms <= now)
            return i;
    return -1;
}

/*
 * Start the most urgent query that is due, if the connection is free:
 * lease renewals first (a running task must never lose its lease because
 * the connection was busy with anything else), then requeues whose time
 * has come (each stops its dead worker's backend first), then the poll
 * (sweeps, the lease timer, the interval), queue depth, the keepalive ping.
 */
static void listener_start_next_query(struct listener *l, int64_t now)
{
    if (l->state != LISTENER_UP || l->in_flight != QUERY_NONE)
        return;
    if (l->lease_due_ms != 0 && now >= l->lease_due_ms) {
        l->lease_due_ms = 0;
        l->sweep_requested = true;
    }
    int sent = 0;
    int requeue = listener_requeue_due(l, now);
    if (l->renew_owners != NULL) {
        char lease[24];
        snprintf(lease, sizeof(lease), "%" PRId64, l->config->workers.lease_ms);
        const char *params[] = {l->renew_owners, lease};
        sent = PQsendQueryParams(l->conn, renew_sql, 2, NULL, params, NULL, NULL, 0);
        free(l->renew_owners);
        l->renew_owners = NULL;
        l->in_flight = QUERY_RENEW;
    } else if (requeue >= 0 && l->requeues[requeue].backend_pid != 0) {
        const struct listener_requeue *r = &l->requeues[requeue];
        char pid[16], application_name[64];
        snprintf(pid, sizeof(pid), "%d", (int)r->backend_pid);
        dbconn_worker_application_name(r->slot, application_name, sizeof(application_name));
        const char *params[] = {pid, application_name};
        sent = PQsendQueryParams(l->conn, stop_backend_sql, 2, NULL, params, NULL, NULL, 0);
        l->in_flight = QUERY_STOP_BACKEND;
        l->in_flight_requeue = requeue;
    } else if (requeue >= 0) {
        const struct listener_requeue *r = &l->requeues[requeue];
        char task_id[24];
        snprintf(task_id, sizeof(task_id), "%" PRId64, r->task_id);
        const char *params[] = {l->queue_names, l->queue_max_attempts, r->locked_by, task_id};
        sent = PQsendQueryParams(l->conn, requeue_sql, 4, NULL, params, NULL, NULL, 0);
        l->in_flight = QUERY_REQUEUE;
        l->in_flight_requeue = requeue;
    } else if (l->config->queue_count > 0 && (l->sweep_requested || now >= l->poll_due_ms)) {
        const char *params[] = {l->queue_names, l->queue_max_attempts};
        sent = PQsendQueryParams(l->conn, poll_sql, 2, NULL, params, NULL, NULL, 0);
        l->in_flight = QUERY_POLL;
        l->sweep_requested = false;
        l->poll_due_ms = now + listener_poll_interval(l);
    } else if (l->depth_requested && l->config->queue_count > 0) {
        const char *params[] = {l->queue_names};
        sent = PQsendQueryParams(l->conn, depth_sql, 1, NULL, params, NULL, NULL, 0);
        l->in_flight = QUERY_DEPTH;
        l->depth_requested = false;
    } else if (l->listening && l->ping_sent_ms == 0 &&
               now - l->last_traffic_ms >= l->config->listener.keepalive_interval_ms) {
        const char *params[] = {l->ping_channel};
        sent = PQsendQueryParams(l->conn, ping_sql, 1, NULL, params, NULL, NULL, 0);
        l->in_flight = QUERY_PING;
        l->ping_sent_ms = now;
    } else {
        return;
    }
    l->query_sent_ms = now;
    if (!sent || listener_flush(l) != 0)
        listener_disconnect(l, PQerrorMessage(l->conn));
}

static void listener_read(struct listener *l)
{
    if (!PQconsumeInput(l->conn)) {
        char why[512];
        snprintf(why, sizeof(why), "%s", PQerrorMessage(l->conn));
        why[strcspn(why, "\n")] = '\0';
        listener_disconnect(l, why[0] ? why : "connection closed");
        return;
    }
    l->last_traffic_ms = time_now_ms();
    listener_drain_notifications(l);
    while (l->in_flight != QUERY_NONE && !PQisBusy(l->conn)) {
        PGresult *res = PQgetResult(l->conn);
        if (res == NULL) {
            listener_query_done(l);
            break;
        }
        listener_handle_result(l, res, time_now_ms());
        PQclear(res);
        if (l->state != LISTENER_UP)
            return;
    }
    /* Results can carry notifications too. */
    listener_drain_notifications(l);
}

void listener_on_io(struct listener *l, int fd, uint32_t events)
{
    if (l->state == LISTENER_RESOLVING) {
        if (fd == resolver_fd(&l->resolver))
            listener_on_resolved(l);
        return;
    }
    if (l->state == LISTENER_CONNECTING) {
        listener_continue_connect(l);
        return;
    }
    if (l->state != LISTENER_UP)
        return;
    if ((events & EPOLLOUT) && listener_flush(l) != 0) {
        listener_disconnect(l, PQerrorMessage(l->conn));
        return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        listener_read(l);
    if (l->state == LISTENER_UP)
        listener_start_next_query(l, time_now_ms());
}

void listener_run_chores(struct listener *l, int64_t now)
{
    switch (l->state) {
    case LISTENER_DOWN:
        if (now >= l->reconnect_due_ms)
            listener_connect(l, now);
        break;
    case LISTENER_RESOLVING:
        if (now >= l->connect_deadline_ms)
            listener_disconnect(l, "looking up the database host timed out");
        break;
    case LISTENER_CONNECTING:
        if (now >= l->connect_deadline_ms)
            listener_disconnect(l, "connection attempt timed out");
        break;
    case LISTENER_UP:
        if (l->ping_sent_ms != 0 &&
            now - l->ping_sent_ms >= l->config->listener.keepalive_timeout_ms) {
            char why[128];
            snprintf(why, sizeof(why), "keepalive ping unanswered for %" PRId64 " ms",
                     now - l->ping_sent_ms);
            listener_disconnect(l, why);
            break;
        }
        if (l->in_flight != QUERY_NONE && now - l->query_sent_ms >= listener_query_timeout(l)) {
            listener_disconnect(l, "query unanswered past keepalive_interval + keepalive_timeout");
            break;
        }
        listener_start_next_query(l, now);
        break;
    }
}

int64_t listener_next_deadline(const struct listener *l)
{
    switch (l->state) {
    case LISTENER_DOWN:
        return l->reconnect_due_ms;
    case LISTENER_RESOLVING:
    case LISTENER_CONNECTING:
        return l->connect_deadline_ms;
    case LISTENER_UP:
        break;
    }
    int64_t next = INT64_MAX;
    if (l->ping_sent_ms != 0)
        next = l->ping_sent_ms + l->config->listener.keepalive_timeout_ms;
    if (l->in_flight != QUERY_NONE) {
        int64_t query_deadline = l->query_sent_ms + listener_query_timeout(l);
        return query_deadline < next ? query_deadline : next;
    }
    if (l->sweep_requested || l->depth_requested || l->renew_owners != NULL)
        return 0;
    for (int i = 0; i < l->requeue_count; i++)
        if (l->requeues[i].due_ms < next)
            next = l->requeues[i].due_ms;
    if (l->config->queue_count > 0 && l->poll_due_ms < next)
        next = l->poll_due_ms;
    if (l->lease_due_ms != 0 && l->lease_due_ms < next)
        next = l->lease_due_ms;
    if (l->listening && l->ping_sent_ms == 0) {
        int64_t ping_due = l->last_traffic_ms + l->config->listener.keepalive_interval_ms;
        if (ping_due < next)
            next = ping_due;
    }
    return next;
}

void listener_requeue_owner(struct listener *l, const char *locked_by, int64_t running_task,
                            int slot, int32_t backend_pid)
{
    if (l->requeue_count == l->requeue_capacity) {
        int cap = l->requeue_capacity ? 2 * l->requeue_capacity : 8;
        struct listener_requeue *r = realloc(l->requeues, (size_t)cap * sizeof(*r));
        if (r == NULL) {
            log_error("out of memory queueing a requeue for %s", locked_by);
            return;
        }
        l->requeues = r;
        l->requeue_capacity = cap;
    }
    l->requeues[l->requeue_count] = (struct listener_requeue){
        .task_id = running_task,
        .slot = slot,
        .backend_pid = backend_pid,
        .due_ms = 0,
        .tries = 0,
        .locked_by = strdup(locked_by),
    };
    if (l->requeues[l->requeue_count].locked_by != NULL)
        l->requeue_count++;
}

void listener_set_config(struct listener *l, const struct pgwork_config *config)
{
    bool relisten = l->config->listener.enabled != config->listener.enabled ||
                    strcmp(l->config->listener.channel, config->listener.channel) != 0;
    char *names = listener_queue_names(config);
    char *max_attempts = listener_queue_max_attempts(config);
    if (names == NULL || max_attempts == NULL) {
        log_error("out of memory building the queue list");
        abort();
    }
    free(l->queue_names);
    free(l->queue_max_attempts);
    l->queue_names = names;
    l->queue_max_attempts = max_attempts;
    l->config = config;
    l->sweep_requested = true;
    if (relisten && l->state != LISTENER_DOWN) {
        /* A new channel (or LISTEN switched on/off): start afresh, now. */
        listener_disconnect(l, "listener settings changed");
        l->failures = 0;
        l->reconnect_due_ms = 0;
    }
}

void listener_renew_leases(struct listener *l, char *owners)
{
    free(l->renew_owners);
    l->renew_owners = owners;
}

int listener_pending_requeues(const struct listener *l)
{
    return l->requeue_count;
}

void listener_request_sweep(struct listener *l)
{
    l->sweep_requested = true;
}

void listener_close(struct listener *l)
{
    resolver_cancel(&l->resolver);
    listener_unwatch(l);
    if (l->conn != NULL)
        PQfinish(l->conn);
    l->conn = NULL;
    for (int i = 0; i < l->requeue_count; i++)
        free(l->requeues[i].locked_by);
    free(l->requeues);
    l->requeues = NULL;
    free(l->queue_names);
    free(l->queue_max_attempts);
    l->queue_names = l->queue_max_attempts = NULL;
    listener_free_depth(&l->depth);
    free(l->renew_owners);
    l->renew_owners = NULL;
    l->requeue_count = l->requeue_capacity = 0;
    l->state = LISTENER_DOWN;
}
