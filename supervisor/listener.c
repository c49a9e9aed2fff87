/*
 * listener.c — the supervisor's database connection (DESIGN §1.5, §1.7).
 *
 * Invariants:
 *  - never blocks: non-blocking connect (PQconnectStartParams +
 *    PQconnectPoll, the socket re-registered after every step because libpq
 *    may replace it), non-blocking send (PQsendQuery*, PQflush until it
 *    returns 0, waiting for EPOLLOUT meanwhile), results read only when
 *    PQisBusy says they are complete;
 *  - at most one query in flight: the session setup first, then whatever
 *    its client (upkeep.c: renewals, requeues, the poll, queue depth) has
 *    due, then the keepalive ping;
 *  - the session never waits long for a lock (lock_timeout), and the server
 *    cancels any statement of ours that outlives our own patience
 *    (statement_timeout), so a dead worker's backend can never stall the
 *    pod; a statement still running when we drop the connection is
 *    cancelled;
 *  - it never sits in a transaction, and it drains notifications on every
 *    readable event, so it never holds back PostgreSQL's notification
 *    queue;
 *  - on (re)connect it re-LISTENs and says so (on_connection), and the
 *    supervisor sweeps every queue: notifications sent while it was away
 *    are gone (DESIGN §1.5);
 *  - keepalive: after keepalive_interval without traffic it notifies its
 *    own private channel and expects the notification back within
 *    keepalive_timeout; silence means the connection is dead even if the
 *    socket looks fine (a proxy that stopped forwarding);
 *  - names (channel) are quoted with PQescapeIdentifier;
 *  - notifications carry due times on the database's clock: its offset
 *    from ours is measured by the setup query and every poll.
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

/* The session's statements never wait this long for a lock: what they
 * touch is skipped when locked (upkeep.c), so only DDL (a migration) can
 * hold them up, and they are tried again later. */
#define LISTENER_LOCK_TIMEOUT_MS 5000

enum in_flight {
    QUERY_NONE = 0, /* the connection is free */
    QUERY_SETUP,    /* session settings, LISTEN, the database's clock */
    QUERY_CLIENT,   /* a statement of the client's (upkeep.c) */
    QUERY_PING,     /* the keepalive: a notification to ourselves */
};

static const char ping_sql[] = "SELECT pg_notify($1, 'ping')";

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
    resolver_init(&l->resolver);
    l->reconnect_due_ms = 0; /* connect at the first chores pass */
}

void listener_set_client(struct listener *l, const struct listener_client *client, void *ctx)
{
    l->client = *client;
    l->client_ctx = ctx;
}

bool listener_is_listening(const struct listener *l)
{
    return l->state == LISTENER_UP && l->listening;
}

bool listener_is_up(const struct listener *l)
{
    return l->state == LISTENER_UP;
}

bool listener_is_free(const struct listener *l)
{
    return l->state == LISTENER_UP && l->in_flight == QUERY_NONE;
}

int32_t listener_backend_pid(const struct listener *l)
{
    return l->state == LISTENER_UP && l->conn != NULL ? (int32_t)PQbackendPID(l->conn) : 0;
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
    if (l->in_flight == QUERY_CLIENT)
        l->client.on_end(l->client_ctx);
    l->in_flight = QUERY_NONE;
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
        dbconn_one_line(why);
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
    char listen[640] = "";
    if (l->config->listener.enabled) {
        const char *names[] = {l->config->listener.channel, l->ping_channel, l->ring_channel};
        for (int i = 0; i < 3; i++) {
            char *quoted = PQescapeIdentifier(l->conn, names[i], strlen(names[i]));
            if (quoted == NULL) {
                listener_disconnect(l, "cannot quote the channel name");
                return;
            }
            size_t used = strlen(listen);
            snprintf(listen + used, sizeof(listen) - used, "LISTEN %s; ", quoted);
            PQfreemem(quoted);
        }
    }
    char sql[896];
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
    /* And one where the insert trigger rings this pod alone (the doorbell,
     * migration 0008: the name doorbell.c writes into its rows). */
    snprintf(l->ring_channel, sizeof(l->ring_channel), "pgwork_ring_%d", PQbackendPID(l->conn));
    listener_watch(l, EPOLLIN);
    listener_send_setup(l);
}

/* The setup query's last result has arrived. */
static void listener_setup_done(struct listener *l)
{
    if (l->setup_failed)
        return; /* logged; polling at poll_interval, LISTEN tried at the next connection */
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

void listener_clock_sample(struct listener *l, int64_t db_ms, int64_t sent_ms, int64_t now)
{
    int64_t midpoint = sent_ms + (now - sent_ms) / 2;
    l->db_clock_offset_ms = db_ms - midpoint;
    l->db_clock_known = true;
}

bool listener_db_clock_offset(const struct listener *l, int64_t *offset_ms)
{
    *offset_ms = l->db_clock_offset_ms;
    return l->db_clock_known;
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
        dbconn_one_line(why);
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

/* A notification on the task channel, or on the pod's ring channel
 * (rung: the trigger rang this pod's arm). */
static void listener_handle_task_notification(struct listener *l, const char *payload, bool rung)
{
    int queue_index;
    int64_t delay_ms;
    if (payload[0] == '!') {
        /* No task payload starts so (migration 0011). */
        if (l->callbacks.on_control != NULL)
            l->callbacks.on_control(l->ctx, payload + 1);
        return;
    }
    int kind = listener_parse_notification(l->config, payload, &queue_index, &delay_ms);
    if (rung && (kind == LISTENER_NOTIFY_QUEUE || kind == LISTENER_NOTIFY_QUEUE_AT))
        l->callbacks.on_rung(l->ctx, queue_index);
    switch (kind) {
    case LISTENER_NOTIFY_SWEEP:
        l->callbacks.on_sweep(l->ctx);
        break;
    case LISTENER_NOTIFY_QUEUE_AT:
        /* Due at that moment of the database's clock. The notification left
         * at commit, maybe long after the insert: a task already due then
         * starts now. */
        if (!l->db_clock_known) {
            l->callbacks.on_due_unknown(l->ctx); /* the poll knows the delay */
            break;
        }
        delay_ms -= time_now_ms() + l->db_clock_offset_ms;
        l->callbacks.on_task_hint(l->ctx, queue_index, delay_ms > 0 ? delay_ms : 0);
        break;
    case LISTENER_NOTIFY_QUEUE:
        l->callbacks.on_task_hint(l->ctx, queue_index, delay_ms);
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
            bool rung = strcmp(n->relname, l->ring_channel) == 0;
            l->notifications++;
            if (rung)
                l->rings++;
            listener_handle_task_notification(l, n->extra, rung);
        }
        PQfreemem(n);
    }
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
            listener_clock_sample(l, strtoll(PQgetvalue(res, 0, 0), NULL, 10), l->query_sent_ms,
                                  now);
        }
        break;
    case QUERY_CLIENT:
        l->client.on_result(l->client_ctx, res, now);
        break;
    case QUERY_PING:
        if (!ok)
            log_error("keepalive ping failed: %s", PQresultErrorMessage(res));
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
    if (done == QUERY_CLIENT)
        l->client.on_end(l->client_ctx);
    if (done == QUERY_SETUP)
        listener_setup_done(l);
}

/* The keepalive is due: LISTENing, nothing heard for keepalive_interval. */
static bool listener_ping_due(const struct listener *l, int64_t now)
{
    return l->listening && l->ping_sent_ms == 0 &&
           now - l->last_traffic_ms >= l->config->listener.keepalive_interval_ms;
}

/* Start the next query if the connection is free: the client's, if it has
 * one due, else the keepalive ping. */
static void listener_start_next_query(struct listener *l, int64_t now)
{
    if (l->state != LISTENER_UP || l->in_flight != QUERY_NONE)
        return;
    int sent = l->client.send != NULL ? l->client.send(l->client_ctx, l->conn, now) : 0;
    if (sent != 0) {
        l->in_flight = QUERY_CLIENT;
    } else if (listener_ping_due(l, now)) {
        const char *params[] = {l->ping_channel};
        sent = PQsendQueryParams(l->conn, ping_sql, 1, NULL, params, NULL, NULL, 0) ? 1 : -1;
        l->in_flight = QUERY_PING;
        l->ping_sent_ms = now;
    } else {
        return;
    }
    l->query_sent_ms = now;
    if (sent < 0 || listener_flush(l) != 0)
        listener_disconnect(l, PQerrorMessage(l->conn));
}

static void listener_read(struct listener *l)
{
    if (!PQconsumeInput(l->conn)) {
        char why[512];
        snprintf(why, sizeof(why), "%s", PQerrorMessage(l->conn));
        dbconn_one_line(why);
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
    if (!listener_is_free(l)) {
        int64_t query_deadline = l->query_sent_ms + listener_query_timeout(l);
        return query_deadline < next ? query_deadline : next;
    }
    /* Free: the moment upkeep_refresh refreshes the client's state for. */
    if (l->client.next_due != NULL) {
        int64_t client_due = l->client.next_due(l->client_ctx, time_now_ms());
        if (client_due < next)
            next = client_due;
    }
    if (l->listening && l->ping_sent_ms == 0) {
        int64_t ping_due = l->last_traffic_ms + l->config->listener.keepalive_interval_ms;
        if (ping_due < next)
            next = ping_due;
    }
    return next;
}

void listener_set_config(struct listener *l, const struct pgwork_config *config)
{
    bool relisten = l->config->listener.enabled != config->listener.enabled ||
                    strcmp(l->config->listener.channel, config->listener.channel) != 0;
    l->config = config;
    if (relisten && l->state != LISTENER_DOWN) {
        /* A new channel (or LISTEN switched on/off): start afresh, now. */
        listener_disconnect(l, "listener settings changed");
        l->failures = 0;
        l->reconnect_due_ms = 0;
    }
}

struct listener_stats listener_stats(const struct listener *l)
{
    return (struct listener_stats){
        .reconnects = l->reconnects,
        .notifications = l->notifications,
        .rings = l->rings,
        .last_ping_rtt_ms = l->last_ping_rtt_ms,
    };
}

void listener_close(struct listener *l)
{
    resolver_cancel(&l->resolver);
    listener_unwatch(l);
    if (l->conn != NULL)
        PQfinish(l->conn);
    l->conn = NULL;
    l->state = LISTENER_DOWN;
}
