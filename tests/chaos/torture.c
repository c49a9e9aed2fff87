/*
 * torture.c — the seeded, randomised failure run, `make torture`.
 *
 * Two supervisors ("pods") serve the same four queues of one database, each
 * through its own tests/tools/tcpproxy (so its connections can be
 * black-holed): tsql (sql handler), texec (exec), tco (coprocess), tslot
 * (exec, served by worker slot 0 only), tcap (exec, concurrency = 2) and
 * trate (exec, rate = "5/1s"; issue 14). Tasks have random durations,
 * planned failures, and poison: a statement that kills its backend, a
 * handler that kills its worker, one that hangs past its timeout. Meanwhile
 * a fault loop picks at random: SIGKILL a worker, a handler, a whole pod
 * (every process of it at once, restarted later), pg_terminate_backend of
 * random backends, pg_ctl restart -m fast|immediate, a black-holed
 * connection, HUP with a random valid or invalid config, TTIN/TTOU,
 * TSTP/CONT, 80 slow HTTP clients, bursts of enqueues (single rows, bulk
 * statements, future run_at), pgwork.cancel of random pending or running
 * tasks, pgwork.pause of a random queue (resumed 0.3-3 s later). Each injected fault is a line in
 * CHAOS_DIR/faults.log (UTC, kind, pod), beside the pods' logs.
 *
 * Kinds (TORTURE_FAULTS): kill-worker kill-handler kill-pod
 * terminate-backend pg-restart-fast pg-restart-immediate blackhole
 * hup-valid hup-invalid ttin ttou tstp burst-single burst-bulk burst-future
 * slow-http cancel pause. Poison (TORTURE_POISON): fail (planned failures of some
 * attempts), kill-backend (sql), kill-worker (exec, coprocess), hang (exec,
 * coprocess), hang-sql.
 *
 * Invariants (each broken one is printed at once, with the seed):
 *   unfinished   every task is done or dead within lease + 10 s of the faults
 *                stopping (the pods are then up, the network back), plus
 *                what the hang poison tasks left can still take of the pods'
 *                workers (settle_bound_ms; the bound is printed)
 *   effect       a sql task's effect exists exactly once if done, never if
 *                dead; an exec/coprocess task marked done ran successfully
 *                at least once; a poison task never ends done
 *   stall        no supervisor connection waits on a row lock for over 1 s,
 *                and no queue has a due task while a pod whose listener is up
 *                (not quiet, not just black-holed) has an idle worker that
 *                serves it — or no worker serving it at all beside an idle
 *                one — for longer than TORTURE_STALL_MS (2000)
 *   probe        every supervisor answers USR1 (its status line appears in
 *                its log, timed by the line's own timestamp) and GET /healthz
 *                within TORTURE_PROBE_MS (200)
 *   crash-loop   no worker restarts once every task has ended (the causes
 *                are gone), and each pod still has workers
 *   exit         a supervisor exits only when the driver kills it, and with
 *                0 on the final SIGTERM
 *   tick         the schedule both pods run (every = 1s, dropped and restored
 *                at random by HUPs; its tasks wait in a queue no pod serves,
 *                which "unfinished" leaves out) has at most one task per
 *                tick, and each task's run_at is a tick
 *   sanitizer    no ASan/UBSan/LSan report in any pod's log
 *   cancel       a task cancelled while pending or running ends cancelled
 *                (never done, dead or pending again), a cancelled sql task
 *                has no effect, and no run of a cancelled exec/coprocess
 *                task starts later than 1 s after its cancel (the time its
 *                pod has to hear it: a claimed batch-mate may start before)
 *   cap          tcap never has more than TCAP_CONCURRENCY tasks running
 *                (sampled by the prober every round, both pods together);
 *                tcap counts as stalled only while it is below its cap
 *   rate         no closed window of 1 s holds more than TRATE_PER_S starts
 *                of trate (every start, retries included, recorded by a
 *                trigger at its claim: its started_at); trate counts as
 *                stalled only while its last second has budget left
 *
 * Environment: TORTURE_SEED (default: from the clock; printed first and on
 * every failure), TORTURE_SECONDS (120), TORTURE_FAULTS and TORTURE_POISON
 * (comma lists of kinds: "all", a name, or "-name" to drop one, e.g.
 * "all,-pg-restart-immediate"), TORTURE_LEASE_S (5), TORTURE_PROBE_MS,
 * TORTURE_STALL_MS; CHAOS_DIR, PGWORK_BIN and PG* as for chaos.c
 * (tests/chaos/run.sh sets them). Exit 0 when no invariant broke, 1 when one
 * did, 2 when the driver itself failed.
 *
 * Threads: main runs the fault loop, the enqueue bursts and the settling;
 * the prober thread sends USR1 and GET /healthz to each ready pod in turn,
 * and judges stalls from the status lines. Shared state (the pods, the
 * figures) is under `lock`; no probe or database call is made holding it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "tests/chaos/chaoslib.h"

#define PODS 2
#define MAX_SLOTS 8
#define KEEPALIVE_INTERVAL_MS 2000
#define KEEPALIVE_TIMEOUT_MS 1000
#define RESTART_DELAY_MAX_MS 1000
#define MAX_ATTEMPTS 3
#define HANDLER_TIMEOUT_S 2 /* exec, coprocess: a hang's 3 attempts fit the deadline */
#define SQL_TIMEOUT_S 4     /* above the stall limit: long row locks are possible */
#define BACKOFF_MAX_MS 500  /* a retry's longest wait */
#define BACKLOG_CAP 150
#define STR_(x) #x
#define STR(x) STR_(x)
#define TCAP_CONCURRENCY 2 /* queue tcap's concurrency */
#define TRATE_PER_S 5      /* queue trate's rate, per second */

/* --- what can be injected ------------------------------------------------- */

enum fault {
    F_KILL_WORKER,
    F_KILL_HANDLER,
    F_KILL_POD,
    F_TERMINATE_BACKEND,
    F_PG_RESTART_FAST,
    F_PG_RESTART_IMMEDIATE,
    F_BLACKHOLE,
    F_HUP_VALID,
    F_HUP_INVALID,
    F_TTIN,
    F_TTOU,
    F_TSTP,
    F_BURST_SINGLE,
    F_BURST_BULK,
    F_BURST_FUTURE,
    F_SLOW_HTTP,
    F_CANCEL,
    F_PAUSE,
    F_COUNT
};

/* Names (for TORTURE_FAULTS and the table) and how often each is picked. */
static const struct {
    const char *name;
    int weight;
} fault_kinds[F_COUNT] = {
    [F_KILL_WORKER] = {"kill-worker", 8},
    [F_KILL_HANDLER] = {"kill-handler", 6},
    [F_KILL_POD] = {"kill-pod", 2},
    [F_TERMINATE_BACKEND] = {"terminate-backend", 6},
    [F_PG_RESTART_FAST] = {"pg-restart-fast", 1},
    [F_PG_RESTART_IMMEDIATE] = {"pg-restart-immediate", 1},
    [F_BLACKHOLE] = {"blackhole", 2},
    [F_HUP_VALID] = {"hup-valid", 3},
    [F_HUP_INVALID] = {"hup-invalid", 2},
    [F_TTIN] = {"ttin", 3},
    [F_TTOU] = {"ttou", 3},
    [F_TSTP] = {"tstp", 2},
    [F_BURST_SINGLE] = {"burst-single", 12},
    [F_BURST_BULK] = {"burst-bulk", 8},
    [F_BURST_FUTURE] = {"burst-future", 5},
    [F_SLOW_HTTP] = {"slow-http", 1},
    [F_CANCEL] = {"cancel", 6},
    [F_PAUSE] = {"pause", 3},
};

enum poison { P_FAIL, P_KILL_BACKEND, P_KILL_WORKER, P_HANG, P_HANG_SQL, P_COUNT };

static const char *const poison_names[P_COUNT] = {
    [P_FAIL] = "fail", [P_KILL_BACKEND] = "kill-backend", [P_KILL_WORKER] = "kill-worker",
    [P_HANG] = "hang", [P_HANG_SQL] = "hang-sql",
};

/* The queues both pods serve: slots = 0 means every worker, N slots 0..N-1. */
/* weight: its share of the enqueued tasks, in percent (tslot has 1 slot per
 * pod, so little: a backlog it cannot drain by the deadline proves nothing). */
static const struct {
    const char *name;
    const char *handler;
    int slots;
    int weight;
} queues[] = {
    {"tsql", "sql", 0, 35},  {"texec", "exec", 0, 21}, {"tco", "coprocess", 0, 28},
    {"tslot", "exec", 1, 8}, {"tcap", "exec", 0, 4},   {"trate", "exec", 0, 4},
};
#define QUEUES ((int)(sizeof(queues) / sizeof(queues[0])))

/* The limited queues' keys (issue 14), "" for the others. */
static const char *queue_limits(int q)
{
    if (strcmp(queues[q].name, "tcap") == 0)
        return " concurrency = " STR(TCAP_CONCURRENCY);
    if (strcmp(queues[q].name, "trate") == 0)
        return " rate = \"" STR(TRATE_PER_S) "/1s\"";
    return "";
}

/* --- the run's state ------------------------------------------------------ */

struct pod {
    int index;
    char name[8];
    char *log, *config, *conninfo;
    int http_port;
    struct chaos_proxy proxy;
    pid_t pid;             /* 0 while down */
    unsigned gen;          /* bumped at each start and kill: stale probes are dropped */
    bool ready;            /* its HTTP endpoint is up */
    size_t log_start;      /* offset of this incarnation in log */
    int64_t started_ms;    /* when spawned */
    int64_t restart_at;    /* while down: when to start it again */
    bool quiet;            /* TSTP sent, CONT not yet */
    int64_t cont_at;       /* when to send CONT */
    int64_t blackhole_end; /* > 0: HUP the proxy then */
    int64_t exclude_until; /* no stall accounting before this (see invariants) */
    int workers_count;     /* workers.count of its current config */
    bool schedule_on;      /* its config runs the schedule (SCHEDULE_NAME) */
    int workers_target;    /* the pool's target in its last status line (TTIN/TTOU too) */
    int64_t stall_since[QUEUES];
    bool stall_reported[QUEUES];
    int64_t worst_usr1, worst_healthz;
    int probes, slow_probes;
};

/* The schedule in the pods' configs, and the queue its tasks wait in
 * (served by no pod: they stay pending, and count as finished). */
#define SCHEDULE_NAME "tbeat"
#define SCHEDULE_QUEUE "tsched"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct pod pods[PODS];
static uint64_t seed, rng_state;
static int seconds, lease_s, probe_ms, stall_ms;
static bool fault_on[F_COUNT], poison_on[P_COUNT];
static char faults_spec[512], poison_spec[256];
static const char *handler_bin, *tcpproxy_bin;
static char *runs_path, *db_conninfo;
static FILE *fault_log; /* CHAOS_DIR/faults.log: when each fault hit what */

static int injected[F_COUNT];
static int violations;
static char first_violation[600];
static int64_t worst_stall;
static char worst_stall_where[64];
static int bursts_skipped, enqueue_failures, tasks_enqueued, blackholed_connections;
static atomic_bool pg_restarting;
static int64_t resume_at[QUEUES]; /* paused by the pause fault: resume then; 0 = not paused */
static int cancels_made;
static atomic_bool prober_stop;
static pid_t slow_pids[16]; /* slow-http clients running */

/* --- messages ------------------------------------------------------------- */

static const char *utc_now(char *buf, size_t len)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(buf, len, "%02d:%02d:%02d.%03ldZ", tm.tm_hour, tm.tm_min, tm.tm_sec,
             ts.tv_nsec / 1000000);
    return buf;
}

static void violation(const char *invariant, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void violation(const char *invariant, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&lock);
    if (violations++ == 0)
        snprintf(first_violation, sizeof(first_violation), "%s: %s", invariant, text);
    pthread_mutex_unlock(&lock);
    char at[32];
    chaos_say("VIOLATION %s (seed %" PRIu64 ", at %s): %s", invariant, seed,
              utc_now(at, sizeof(at)), text);
}

/* The UTC time of day in ms, as the pods' log lines carry it. */
static int64_t utc_ms_of_day(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)(ts.tv_sec % 86400) * 1000 + ts.tv_nsec / 1000000;
}

/* The wall clock as HH:MM:SS.mmmZ (the pods' logs are in UTC too). */
static uint64_t rnd(uint64_t n)
{
    return n == 0 ? 0 : chaos_rng(&rng_state) % n;
}

static int64_t rnd_between(int64_t lo, int64_t hi)
{
    return lo + (int64_t)rnd((uint64_t)(hi - lo + 1));
}

/* --- lists of kinds ------------------------------------------------------- */

/* "all", "name", "-name", comma-separated, into on[]; dies on a bad name. */
static void parse_kinds(const char *env, const char *spec, const char *const *names, int count,
                        bool *on)
{
    for (int i = 0; i < count; i++)
        on[i] = false;
    char *copy = strdup(spec), *save = NULL;
    for (char *t = strtok_r(copy, ", ", &save); t != NULL; t = strtok_r(NULL, ", ", &save)) {
        bool off = t[0] == '-';
        const char *name = off ? t + 1 : t;
        bool known = false;
        for (int i = 0; i < count; i++)
            if (strcmp(name, "all") == 0 || strcmp(name, names[i]) == 0) {
                on[i] = !off;
                known = true;
            }
        if (!known)
            chaos_die("%s: unknown kind \"%s\"", env, name);
    }
    free(copy);
}

/* --- the database --------------------------------------------------------- */

/* "terminating connection due to immediate shutdown" and the like: the
 * run provokes them; the table says what matters. */
static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* The driver's own connections are named so that terminate-backend spares
 * them. */
static PGconn *driver_connect(int timeout_ms)
{
    char *info = chaos_xasprintf("%s application_name='torture' connect_timeout=2", db_conninfo);
    PGconn *c = chaos_connect_retry(info, timeout_ms);
    free(info);
    if (c != NULL)
        PQsetNoticeProcessor(c, ignore_notice, NULL);
    return c;
}

/* A usable connection in *c (reconnecting after a restart); false if none. */
static bool db_ensure(PGconn **c, int timeout_ms)
{
    if (*c != NULL && PQstatus(*c) == CONNECTION_OK)
        return true;
    if (*c != NULL)
        PQfinish(*c);
    *c = driver_connect(timeout_ms);
    return *c != NULL;
}

/* Run sql; true on success (a failure is not fatal: the server restarts). */
static bool db_try(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    PQclear(r);
    return ok;
}

static const char *schema_sql =
    "CREATE EXTENSION pgrowlocks;"
    "CREATE TABLE effects (task bigint NOT NULL, at timestamptz DEFAULT clock_timestamp());"
    "CREATE INDEX ON effects (task);"
    "CREATE TABLE runs (task bigint NOT NULL);"
    /* What the cancel fault did (was: pgwork.cancel's answer), and when
     * each exec/coprocess run started (torture_handler: <runs>.starts). */
    "CREATE TABLE cancels (task bigint NOT NULL, was text, at timestamptz NOT NULL);"
    "CREATE TABLE starts (task bigint NOT NULL, at_ms bigint NOT NULL);"
    /* Every start of trate (its claim's started_at), kept whatever
     * happens to the task: the rate invariant's record. */
    "CREATE TABLE trate_starts (at timestamptz NOT NULL);"
    "CREATE FUNCTION torture_trate_start() RETURNS trigger LANGUAGE plpgsql AS $$\n"
    "BEGIN INSERT INTO trate_starts VALUES (NEW.started_at); RETURN NULL; END $$;"
    "CREATE TRIGGER torture_trate_start AFTER UPDATE OF state ON pgwork.tasks FOR EACH ROW"
    " WHEN (NEW.queue = 'trate' AND NEW.state = 'running' AND OLD.state <> 'running')"
    " EXECUTE FUNCTION torture_trate_start();"
    /* The sql queue's statement: its effect, then what the payload asks. */
    "CREATE FUNCTION torture_sql(p jsonb, id bigint) RETURNS void LANGUAGE plpgsql AS $$\n"
    "DECLARE attempt int;\n"
    "BEGIN\n"
    "  INSERT INTO effects (task) VALUES (id);\n"
    "  IF p->>'poison' = 'kill_backend' THEN\n"
    "    PERFORM pg_terminate_backend(pg_backend_pid());\n"
    "    PERFORM pg_sleep(10);\n"
    "  END IF;\n"
    "  IF p->>'poison' = 'hang' THEN PERFORM pg_sleep(3600); END IF;\n"
    "  IF (p->>'ms')::int > 0 THEN PERFORM pg_sleep((p->>'ms')::int / 1000.0); END IF;\n"
    "  SELECT attempts INTO attempt FROM pgwork.tasks WHERE tasks.id = torture_sql.id;\n"
    "  IF attempt BETWEEN 1 AND 30 AND ((p->>'fail')::int >> (attempt - 1)) & 1 = 1 THEN\n"
    "    RAISE EXCEPTION 'torture: planned failure of task % (attempt %)', id, attempt;\n"
    "  END IF;\n"
    "END $$;";

/* --- configs -------------------------------------------------------------- */

/* A valid config for pod with count workers and per-queue batches. */
static char *config_text(const struct pod *p, int count, const int *batch)
{
    char *qtext = strdup("");
    for (int q = 0; q < QUEUES; q++) {
        char *body;
        if (strcmp(queues[q].handler, "sql") == 0)
            body = chaos_xasprintf("handler = \"sql\" statement = \"SELECT torture_sql($1, $2)\"");
        else
            body = chaos_xasprintf(
                "handler = \"%s\" command = {\"%s\", \"%s\", \"%s\"}", queues[q].handler,
                handler_bin, strcmp(queues[q].handler, "coprocess") == 0 ? "coprocess" : "exec",
                runs_path);
        char *next = chaos_xasprintf(
            "%squeue \"%s\" { %s batch = %d timeout = %ds max_attempts = %d "
            "backoff_base = 100ms backoff_max = %dms workers = %d%s }\n",
            qtext, queues[q].name, body, batch[q],
            strcmp(queues[q].handler, "sql") == 0 ? SQL_TIMEOUT_S : HANDLER_TIMEOUT_S, MAX_ATTEMPTS,
            BACKOFF_MAX_MS, queues[q].slots, queue_limits(q));
        free(body);
        free(qtext);
        qtext = next;
    }
    /* The schedule both pods usually run (a HUP may drop it from one or
     * both, or bring it back). Its tasks go to a queue no pod serves, so
     * each keeps the run_at it was made with (a retry would move it): at
     * most one task per tick is judged on them. */
    if (p->schedule_on) {
        char *next = chaos_xasprintf("%sschedule \"%s\" { every = 1s queue = \"%s\" payload = "
                                     "\"{\\\"schedule\\\": \\\"%s\\\"}\" }\n",
                                     qtext, SCHEDULE_NAME, SCHEDULE_QUEUE, SCHEDULE_NAME);
        free(qtext);
        qtext = next;
    }
    char *text = chaos_xasprintf(
        "workers { count = %d min = 1 max = %d lease = %ds poll_interval = 500ms "
        "safety_poll_interval = 3s restart_delay_min = 50ms restart_delay_max = %dms "
        "shutdown_timeout = 5s }\n"
        "listener { reconnect_min = 100ms reconnect_max = 1s keepalive_interval = %dms "
        "keepalive_timeout = %dms }\n"
        "log { level = \"info\" format = \"text\" }\n"
        "http { listen = \"127.0.0.1:%d\" }\n%s",
        count, MAX_SLOTS - 2, lease_s, RESTART_DELAY_MAX_MS, KEEPALIVE_INTERVAL_MS,
        KEEPALIVE_TIMEOUT_MS, p->http_port, qtext);
    free(qtext);
    return text;
}

static void write_config(struct pod *p, const char *text)
{
    char name[32];
    snprintf(name, sizeof(name), "%s.conf", p->name);
    free(chaos_write_file(name, text));
}

static void write_base_config(struct pod *p)
{
    int batch[QUEUES] = {5, 3, 3, 2, 2, 2};
    p->schedule_on = true;
    char *text = config_text(p, 3, batch);
    write_config(p, text);
    free(text);
    p->workers_count = 3;
    p->workers_target = 3;
}

/* --- pods ----------------------------------------------------------------- */

/* Start pod (lock held): a new session, so that kill-pod finds every
 * process of it, handlers included. */
static void pod_start(struct pod *p)
{
    write_base_config(p);
    const char *argv[] = {chaos_bin(), "-c", p->config, "run", NULL};
    p->log_start = chaos_file_size(p->log);
    struct chaos_spawn_opts opts = {
        .log = p->log, .new_session = true, .pdeathsig = true, .database_url = p->conninfo};
    p->pid = chaos_spawn(argv, &opts);
    if (p->pid < 0)
        chaos_die("cannot start %s: %s", p->name, strerror(errno));
    p->gen++;
    p->ready = false;
    p->quiet = false;
    p->restart_at = 0;
    p->started_ms = chaos_now_ms();
    for (int q = 0; q < QUEUES; q++)
        p->stall_since[q] = 0;
}

/* SIGKILL every process of pod's session at once (lock held), reap it. */
static void pod_kill_all(struct pod *p)
{
    pid_t members[256];
    kill(p->pid, SIGSTOP); /* it must not fork while we collect */
    int n = chaos_session_members(p->pid, members, 256);
    for (int i = 0; i < n; i++)
        kill(members[i], SIGKILL);
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
    /* Stragglers: anything forked between the scan and the kills. */
    n = chaos_session_members(p->pid, members, 256);
    for (int i = 0; i < n; i++)
        kill(members[i], SIGKILL);
    p->pid = 0;
    p->gen++;
    p->ready = false;
}

/* The deferred pass (lock held): readiness, CONT, the network back, pods
 * restarted, and supervisors that exited on their own. */
static void pods_deferred(void)
{
    int64_t now = chaos_now_ms();
    for (int i = 0; i < 16; i++)
        if (slow_pids[i] > 0 && waitpid(slow_pids[i], NULL, WNOHANG) == slow_pids[i])
            slow_pids[i] = 0;
    for (int i = 0; i < PODS; i++) {
        struct pod *p = &pods[i];
        if (p->pid > 0) {
            int status;
            if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
                char text[64];
                p->pid = 0;
                p->gen++;
                p->ready = false;
                pthread_mutex_unlock(&lock);
                violation("exit", "%s's supervisor exited by itself (%s); restarting it", p->name,
                          chaos_exit_text(status, text, sizeof(text)));
                pthread_mutex_lock(&lock);
                p->restart_at = now + 500;
            }
        }
        if (p->pid > 0 && !p->ready) {
            if (chaos_file_contains(p->log, p->log_start, "http endpoint on")) {
                p->ready = true;
                p->exclude_until = now + 2000; /* the start-up sweep */
            } else if (now - p->started_ms > 30000) {
                pthread_mutex_unlock(&lock);
                violation("exit", "%s has no HTTP endpoint 30 s after its start", p->name);
                pthread_mutex_lock(&lock);
                p->started_ms = now;
            }
        }
        if (p->pid > 0 && p->quiet && now >= p->cont_at) {
            kill(p->pid, SIGCONT);
            p->quiet = false;
            p->exclude_until = now + 1000;
        }
        if (p->blackhole_end > 0 && now >= p->blackhole_end) {
            chaos_proxy_signal(&p->proxy, SIGHUP, 2000);
            p->blackhole_end = 0;
        }
        if (p->pid == 0 && p->restart_at > 0 && now >= p->restart_at)
            pod_start(p);
    }
}

/* --- the prober ----------------------------------------------------------- */

/* GET /healthz on 127.0.0.1:port: ms until the whole answer, -1 if none
 * within timeout_ms or not 200. */
static int64_t probe_healthz(int port, int timeout_ms)
{
    int64_t t0 = chaos_now_ms(), deadline = t0 + timeout_ms;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    const char *request = "GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    size_t sent = 0, len = strlen(request);
    char answer[1024];
    size_t got = 0;
    for (;;) {
        int64_t left = deadline - chaos_now_ms();
        if (left <= 0)
            break;
        struct pollfd pfd = {.fd = fd, .events = sent < len ? POLLOUT : POLLIN};
        if (poll(&pfd, 1, (int)left) <= 0)
            continue;
        if (sent < len) {
            ssize_t n = send(fd, request + sent, len - sent, MSG_NOSIGNAL);
            if (n < 0 && errno != EAGAIN)
                break;
            sent += n > 0 ? (size_t)n : 0;
            continue;
        }
        ssize_t n = read(fd, answer + got, sizeof(answer) - 1 - got);
        if (n < 0 && errno == EAGAIN)
            continue;
        if (n <= 0) {
            answer[got] = '\0';
            close(fd);
            return strstr(answer, " 200") != NULL ? chaos_now_ms() - t0 : -1;
        }
        got += (size_t)n;
        if (got == sizeof(answer) - 1)
            got = 0;
    }
    close(fd);
    return -1;
}

/* What one USR1 showed of a pod. */
struct status {
    bool listening, quiet;
    int target;                /* workers=alive/target */
    int64_t logged_ms;         /* the supervisor line's own UTC time of day, ms; -1 unknown */
    int slot_state[MAX_SLOTS]; /* 0 none, 1 idle, 2 other live state */
};

/* From the log at offset from: the status block (supervisor line, worker
 * lines, queue lines); true once the last queue's line is there. */
static bool read_status(const char *log, size_t from, struct status *st)
{
    FILE *f = fopen(log, "r");
    if (f == NULL)
        return false;
    fseek(f, (long)from, SEEK_SET);
    char line[4096], last[64];
    snprintf(last, sizeof(last), "status queue \"%s\"", queues[QUEUES - 1].name);
    bool seen_sup = false, complete = false;
    memset(st, 0, sizeof(*st));
    while (!complete && fgets(line, sizeof(line), f) != NULL) {
        const char *p;
        if ((p = strstr(line, "status supervisor:")) != NULL) {
            seen_sup = true;
            memset(st, 0, sizeof(*st));
            int hh, mm, ss, ms;
            st->logged_ms = sscanf(line, "%*d-%*d-%*dT%d:%d:%d.%dZ", &hh, &mm, &ss, &ms) == 4
                                ? ((hh * 60 + mm) * 60 + ss) * 1000LL + ms
                                : -1;
            st->listening = strstr(p, "listener=listening") != NULL;
            st->quiet = strstr(p, "quiet=yes") != NULL;
            const char *w = strstr(p, " workers=");
            int alive;
            if (w == NULL || sscanf(w, " workers=%d/%d", &alive, &st->target) != 2)
                st->target = 0;
        } else if (seen_sup && (p = strstr(line, "status worker ")) != NULL) {
            int slot = atoi(p + 14);
            const char *state = strstr(p, "state=");
            if (slot >= 0 && slot < MAX_SLOTS && state != NULL && strstr(p, "pid=0 ") == NULL)
                st->slot_state[slot] = strncmp(state + 6, "idle", 4) == 0    ? 1
                                       : strncmp(state + 6, "empty", 5) == 0 ? 0
                                                                             : 2;
        } else if (seen_sup && strstr(line, last) != NULL) {
            complete = true;
        }
    }
    fclose(f);
    return complete;
}

/* Queues with a due task nobody works on right now, as a bit mask; -1 when the database
 * does not answer. */
static int due_queues(PGconn **c)
{
    if (!db_ensure(c, 200))
        return -1;
    /* A sql batch keeps its tasks pending, row-locked, while it runs:
     * those are being worked on. pgrowlocks sees the locks without taking
     * any (a lock of ours would make the workers' claims skip the rows). */
    /* A limited queue at its limit waits by design: due only below it. */
    PGresult *r = PQexec(
        *c, "SELECT DISTINCT queue FROM pgwork.tasks WHERE state = 'pending' "
            "AND run_at <= now() AND ctid NOT IN (SELECT locked_row FROM "
            "pgrowlocks('pgwork.tasks')) AND queue NOT IN (SELECT queue FROM "
            "pgwork.paused_queues) AND (queue <> 'tcap' OR (SELECT count(*) FROM "
            "pgwork.tasks r WHERE r.queue = 'tcap' AND r.state = 'running') < " STR(
                TCAP_CONCURRENCY) ") AND (queue <> 'trate' OR (SELECT count(*) FROM trate_starts "
                                  "s WHERE s.at >= clock_timestamp() - interval '1 second') < " STR(
                                      TRATE_PER_S) ")");
    int mask = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        mask = 0;
        for (int i = 0; i < PQntuples(r); i++)
            for (int q = 0; q < QUEUES; q++)
                if (strcmp(PQgetvalue(r, i, 0), queues[q].name) == 0)
                    mask |= 1 << q;
    }
    PQclear(r);
    return mask;
}

/* Why queue q's due tasks wait: printed after a stall is reported, so
 * that a finding says whether the rows are locked and by what. */
static void diagnose_stall(PGconn *c, int q)
{
    const char *params[1] = {queues[q].name};
    PGresult *r = PQexecParams(
        c,
        "SELECT id, attempts, round(extract(epoch FROM now() - run_at) * 1000) AS overdue_ms, "
        "locked_by, left(last_error, 100) AS last_error FROM pgwork.tasks WHERE queue = $1 AND "
        "state = 'pending' AND run_at <= now() AND ctid NOT IN (SELECT locked_row FROM "
        "pgrowlocks('pgwork.tasks')) ORDER BY run_at LIMIT 3",
        1, NULL, params, NULL, NULL, 0);
    for (int i = 0; PQresultStatus(r) == PGRES_TUPLES_OK && i < PQntuples(r); i++) {
        /* Locked? A NOWAIT lock in a transaction rolled back at once. */
        char sql[160];
        snprintf(sql, sizeof(sql),
                 "BEGIN; SELECT 1 FROM pgwork.tasks WHERE id = %s FOR UPDATE NOWAIT; ROLLBACK",
                 PQgetvalue(r, i, 0));
        bool unlocked = db_try(c, sql);
        if (!unlocked)
            db_try(c, "ROLLBACK");
        chaos_say("  due %s task %s: attempts %s, overdue %s ms, %s, last locked_by %s, "
                  "last_error %s",
                  queues[q].name, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
                  unlocked ? "row not locked" : "ROW LOCKED by another transaction",
                  PQgetvalue(r, i, 3), PQgetvalue(r, i, 4));
    }
    PQclear(r);
    r = PQexec(c, "SELECT pid, application_name AS app, state, wait_event_type || ':' || "
                  "wait_event AS wait, round(extract(epoch FROM now() - state_change) * 1000) AS "
                  "for_ms, left(regexp_replace(query, '\\s+', ' ', 'g'), 90) AS query FROM "
                  "pg_stat_activity WHERE datname = current_database() AND application_name LIKE "
                  "'pgwork%' AND (state <> 'idle' OR wait_event_type = 'Lock') ORDER BY "
                  "state_change LIMIT 8");
    for (int i = 0; PQresultStatus(r) == PGRES_TUPLES_OK && i < PQntuples(r); i++)
        chaos_say("  backend %s (%s): %s, wait %s, for %s ms: %s", PQgetvalue(r, i, 0),
                  PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), PQgetvalue(r, i, 3),
                  PQgetvalue(r, i, 4), PQgetvalue(r, i, 5));
    PQclear(r);
}

/* The stall rule for pod p after a status snapshot (lock held); sets
 * diagnose[q] for each stall it reported. */
static void judge_stalls(struct pod *p, const struct status *st, int due, int64_t now,
                         bool *diagnose)
{
    int idle_any = 0;
    for (int s = 0; s < MAX_SLOTS; s++)
        idle_any += st->slot_state[s] == 1;
    bool counted = st->listening && !st->quiet && !p->quiet && now >= p->exclude_until && due >= 0;
    for (int q = 0; q < QUEUES; q++) {
        int idle = 0, alive = 0;
        for (int s = 0; s < MAX_SLOTS; s++) {
            if (queues[q].slots > 0 && s >= queues[q].slots)
                continue;
            idle += st->slot_state[s] == 1;
            alive += st->slot_state[s] != 0;
        }
        bool stalled = counted && (due & (1 << q)) && (idle > 0 || (alive == 0 && idle_any > 0));
        if (!stalled) {
            p->stall_since[q] = 0;
            p->stall_reported[q] = false;
            continue;
        }
        if (p->stall_since[q] == 0)
            p->stall_since[q] = now;
        int64_t lasted = now - p->stall_since[q];
        if (lasted > worst_stall) {
            worst_stall = lasted;
            snprintf(worst_stall_where, sizeof(worst_stall_where), "%s/%s", p->name,
                     queues[q].name);
        }
        if (lasted > stall_ms && !p->stall_reported[q]) {
            p->stall_reported[q] = true;
            char name[8];
            snprintf(name, sizeof(name), "%s", p->name);
            char slots[128] = "";
            size_t len = 0;
            for (int k = 0; k < MAX_SLOTS && len < sizeof(slots) - 16; k++)
                if (st->slot_state[k] != 0)
                    len += (size_t)snprintf(slots + len, sizeof(slots) - len, " %d:%s", k,
                                            st->slot_state[k] == 1 ? "idle" : "busy");
            diagnose[q] = true;
            pthread_mutex_unlock(&lock);
            violation("stall",
                      "%s: queue %s has a due task and %s for %" PRId64 " ms (slots:%s; log %s)",
                      name, queues[q].name,
                      idle > 0 ? "an idle worker serving it" : "idle workers but none serving it",
                      lasted, slots, p->log);
            pthread_mutex_lock(&lock);
        }
    }
}

/* A supervisor's connection waiting on a row lock (DESIGN §6: nothing
 * else waits on a dead worker's locks): while it waits, its pod delivers
 * no notification and renews no lease. Reported once per wait. */
static void judge_lock_waits(PGconn **c)
{
    static char reported[128];
    if (!db_ensure(c, 200))
        return;
    PGresult *r = PQexec(*c, "SELECT pid || '/' || query_start, pid, round(extract(epoch FROM "
                             "now() - query_start) * 1000), left(regexp_replace(query, "
                             "'\\s+', ' ', 'g'), 100) FROM pg_stat_activity WHERE datname = "
                             "current_database() AND application_name = 'pgwork listener' AND "
                             "wait_event_type = 'Lock' AND now() - query_start > interval "
                             "'1 s'");
    for (int i = 0; PQresultStatus(r) == PGRES_TUPLES_OK && i < PQntuples(r); i++) {
        if (strcmp(reported, PQgetvalue(r, i, 0)) == 0)
            continue;
        snprintf(reported, sizeof(reported), "%s", PQgetvalue(r, i, 0));
        violation("stall",
                  "a pgwork listener connection (backend %s) has waited %s ms on a lock: %s",
                  PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), PQgetvalue(r, i, 3));
    }
    PQclear(r);
}

/* tcap's running tasks, both pods together, never above its cap. */
static void judge_cap(PGconn **c)
{
    if (!db_ensure(c, 200))
        return;
    PGresult *r = PQexec(*c, "SELECT count(*) FROM pgwork.tasks WHERE queue = 'tcap' AND "
                             "state = 'running'");
    int64_t running =
        PQresultStatus(r) == PGRES_TUPLES_OK ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
    PQclear(r);
    if (running > TCAP_CONCURRENCY)
        violation("cap", "%" PRId64 " tcap tasks running at once (concurrency = %d)", running,
                  TCAP_CONCURRENCY);
}

static void *prober_main(void *arg)
{
    (void)arg;
    PGconn *c = NULL;
    while (!atomic_load(&prober_stop)) {
        int64_t round = chaos_now_ms();
        judge_lock_waits(&c);
        judge_cap(&c);
        int due = due_queues(&c);
        for (int i = 0; i < PODS; i++) {
            pthread_mutex_lock(&lock);
            struct pod *p = &pods[i];
            bool ready = p->ready && p->pid > 0;
            pid_t pid = p->pid;
            unsigned gen = p->gen;
            int port = p->http_port;
            pthread_mutex_unlock(&lock);
            if (!ready)
                continue;
            size_t before = chaos_file_size(p->log);
            int64_t t0 = chaos_now_ms(), usr1 = -1, sent_ms = utc_ms_of_day();
            struct status st;
            bool complete = false;
            kill(pid, SIGUSR1);
            while (chaos_now_ms() - t0 < 2000) {
                if (usr1 < 0 && chaos_file_contains(p->log, before, "status supervisor:"))
                    usr1 = chaos_now_ms() - t0;
                if (usr1 >= 0 && (complete = read_status(p->log, before, &st)))
                    break;
                chaos_sleep_ms(2);
            }
            /* The answer's time is the line's own timestamp: when this
             * thread was not scheduled for a while (2 cores, other builds),
             * seeing the line late is the prober's delay, not the pod's. */
            if (complete && st.logged_ms >= 0) {
                int64_t answer = st.logged_ms - sent_ms;
                if (answer < -43200000)
                    answer += 86400000; /* past midnight */
                if (answer < 0)
                    answer = 0; /* the log's ms are truncated */
                if (answer < usr1)
                    usr1 = answer;
            }
            int64_t healthz = probe_healthz(port, 2000);
            int64_t now = chaos_now_ms();
            pthread_mutex_lock(&lock);
            if (p->gen != gen || p->pid != pid) {
                pthread_mutex_unlock(&lock);
                continue; /* killed meanwhile: the probe says nothing */
            }
            p->probes++;
            int64_t u = usr1 < 0 ? 2000 : usr1, h = healthz < 0 ? 2000 : healthz;
            p->worst_usr1 = u > p->worst_usr1 ? u : p->worst_usr1;
            p->worst_healthz = h > p->worst_healthz ? h : p->worst_healthz;
            bool slow = u > probe_ms || h > probe_ms;
            p->slow_probes += slow;
            char name[8];
            snprintf(name, sizeof(name), "%s", p->name);
            bool diagnose[QUEUES] = {false};
            if (complete) {
                if (st.target > 0)
                    p->workers_target = st.target;
                judge_stalls(p, &st, due, now, diagnose);
            }
            pthread_mutex_unlock(&lock);
            for (int q = 0; q < QUEUES; q++)
                if (diagnose[q] && db_ensure(&c, 200))
                    diagnose_stall(c, q);
            if (slow)
                violation("probe",
                          "%s: USR1 status line after %s%" PRId64 " ms, /healthz after %s%" PRId64
                          " ms (limit %d ms)",
                          name, usr1 < 0 ? ">" : "", u, healthz < 0 ? ">" : "", h, probe_ms);
        }
        int64_t rest = 250 - (chaos_now_ms() - round);
        if (rest > 0)
            chaos_sleep_ms(rest);
    }
    PQfinish(c);
    return NULL;
}

/* --- faults --------------------------------------------------------------- */

static void *pg_restart_main(void *arg)
{
    const char *mode = arg;
    if (chaos_pg_ctl("restart", mode) != 0)
        chaos_say("pg_ctl restart -m %s failed (the run goes on)", mode);
    atomic_store(&pg_restarting, false);
    return NULL;
}

/* A random pod that is up and ready (lock held), or NULL. */
static struct pod *random_pod(void)
{
    int k = (int)rnd(PODS);
    for (int i = 0; i < PODS; i++) {
        struct pod *p = &pods[(k + i) % PODS];
        if (p->pid > 0 && p->ready)
            return p;
    }
    return NULL;
}

/* One random payload for queue q. */
static char *random_payload(int q)
{
    bool sql = strcmp(queues[q].handler, "sql") == 0;
    const char *poison = "none";
    /* No poison on tslot: its one slot a pod would spend the settle
     * deadline restarting and timing out (that proves capacity, not
     * correctness); it is there for scaling (a queue only slot 0 serves).
     * Nor on the limited queues, for the same reason (2 slots, or 20
     * starts a second, for both pods). */
    if (rnd(100) < 3 && queues[q].slots == 0 && queue_limits(q)[0] == '\0') {
        bool hang = rnd(2) == 0;
        enum poison kind = hang  ? (sql ? P_HANG_SQL : P_HANG)
                           : sql ? P_KILL_BACKEND
                                 : P_KILL_WORKER;
        if (poison_on[kind])
            poison = hang ? "hang" : sql ? "kill_backend" : "kill_worker";
    }
    uint64_t r = rnd(100);
    /* Mostly short; some sql statements run 2-3 s, under their 4 s timeout
     * (long row locks: a worker killed meanwhile leaves its backend
     * holding them, and nothing may wait on those for longer than the
     * stall limit). */
    int64_t ms;
    if (r < 70)
        ms = rnd_between(0, 20);
    else if (r < 93)
        ms = rnd_between(20, 200);
    else if (r < 96 || !sql)
        ms = rnd_between(200, 800);
    else
        ms = rnd_between(2000, 3000);
    int mask = 0;
    if (poison_on[P_FAIL])
        for (int a = 0; a < MAX_ATTEMPTS; a++)
            if (rnd(100) < 15)
                mask |= 1 << a;
    return chaos_xasprintf("{\"ms\": %" PRId64 ", \"fail\": %d, \"poison\": \"%s\"}", ms, mask,
                           poison);
}

/* Enqueue n tasks: one statement (bulk) or one each; future: run_at later. */
static bool enqueue(PGconn *c, int n, bool bulk, bool future)
{
    char *values = strdup("");
    bool ok = true;
    for (int i = 0; i < n && ok; i++) {
        int q = 0;
        for (int r = (int)rnd(100); q < QUEUES - 1 && r >= queues[q].weight; q++)
            r -= queues[q].weight;
        char *payload = random_payload(q);
        char run_at[96] = "now()";
        if (future)
            snprintf(run_at, sizeof(run_at), "now() + interval '%" PRId64 " ms'",
                     rnd_between(200, 5000));
        char *row = chaos_xasprintf("('%s', '%s', %s)", queues[q].name, payload, run_at);
        if (bulk) {
            char *next = chaos_xasprintf("%s%s%s", values, values[0] ? ", " : "", row);
            free(values);
            values = next;
        } else {
            char *sql = rnd(2) == 0
                            ? chaos_xasprintf("INSERT INTO pgwork.tasks (queue, payload, run_at) "
                                              "VALUES %s",
                                              row)
                            : chaos_xasprintf("SELECT pgwork.enqueue('%s', '%s', %s, 0)",
                                              queues[q].name, payload, run_at);
            ok = db_try(c, sql);
            tasks_enqueued += ok;
            free(sql);
        }
        free(row);
        free(payload);
    }
    if (bulk && ok) {
        char *sql =
            chaos_xasprintf("INSERT INTO pgwork.tasks (queue, payload, run_at) VALUES %s", values);
        ok = db_try(c, sql);
        tasks_enqueued += ok ? n : 0;
        free(sql);
    }
    free(values);
    if (!ok)
        enqueue_failures++;
    return ok;
}

/* An invalid config of one of several kinds. */
static char *invalid_config(const struct pod *p)
{
    int batch[QUEUES] = {5, 3, 3, 2, 2, 2};
    char *valid = config_text(p, 3, batch);
    char *text;
    switch (rnd(4)) {
    case 0:
        text = chaos_xasprintf("%sworkers { bogus_key = 1 }\n", valid);
        break;
    case 1:
        text = chaos_xasprintf("%squeue \"tsql\" { handler = \"sql\" timeout = fivemin }\n", valid);
        break;
    case 2:
        valid[strlen(valid) / 2] = '\0'; /* cut short: a brace never closed */
        text = strdup(valid);
        break;
    default:
        text = chaos_xasprintf("%squeue \"broken\" { handler = \"sql\" }\n", valid);
        break;
    }
    free(valid);
    return text;
}

/* The slow-http clients: SLOW_CLIENTS sockets to 127.0.0.1:port, each
 * sending one byte of a never-ending request header every 300 ms for ms
 * milliseconds, in a child process (only async-signal-safe calls: the
 * driver has threads). Its pid, reaped by pods_deferred. */
#define SLOW_CLIENTS 80

static pid_t slow_http_start(int port, int64_t ms)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    int fds[SLOW_CLIENTS];
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = 0; i < SLOW_CLIENTS; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (fds[i] >= 0)
            connect(fds[i], (struct sockaddr *)&addr, sizeof(addr));
    }
    static const char header[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    int64_t end = chaos_now_ms() + ms;
    for (size_t k = 0; chaos_now_ms() < end; k++) {
        char byte = k < sizeof(header) - 1 ? header[k] : 'a';
        for (int i = 0; i < SLOW_CLIENTS; i++)
            if (fds[i] >= 0 && send(fds[i], &byte, 1, MSG_NOSIGNAL) < 0 && errno != EAGAIN &&
                errno != ENOTCONN) {
                close(fds[i]);
                fds[i] = -1;
            }
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 300000000L};
        nanosleep(&ts, NULL);
    }
    _exit(0);
}

/* Inject fault f (lock held unless a database fault); true if it could
 * be (a pod to hit, a process to kill). */
static char last_target[16]; /* the pod the last fault hit, for faults.log */

/* Faults that touch only the database: injected without the lock. */
static bool is_db_fault(enum fault f)
{
    return f == F_TERMINATE_BACKEND || f == F_BURST_SINGLE || f == F_BURST_BULK ||
           f == F_BURST_FUTURE || f == F_CANCEL || f == F_PAUSE;
}

/* Resume the queues whose pause is over (all when every is true). */
static void resume_queues(PGconn **c, bool every)
{
    int64_t now = chaos_now_ms();
    for (int q = 0; q < QUEUES; q++) {
        if (resume_at[q] == 0 || (!every && now < resume_at[q]) || !db_ensure(c, 200))
            continue;
        char sql[96];
        snprintf(sql, sizeof(sql), "SELECT pgwork.resume('%s')", queues[q].name);
        if (db_try(*c, sql))
            resume_at[q] = 0;
    }
}

static bool inject_locked(enum fault f, PGconn **c)
{
    int64_t now = chaos_now_ms();
    /* Only read for pod faults, under the lock. */
    bool db_fault = is_db_fault(f);
    struct pod *p = db_fault ? NULL : random_pod();
    snprintf(last_target, sizeof(last_target), "%s", p != NULL ? p->name : "");
    switch (f) {
    case F_KILL_WORKER:
    case F_KILL_HANDLER: {
        if (p == NULL)
            return false;
        pid_t workers[64], handlers[64];
        int nw = chaos_children_of(p->pid, workers, 64), nh = 0;
        if (f == F_KILL_WORKER)
            return nw > 0 && kill(workers[rnd((uint64_t)nw)], SIGKILL) == 0;
        for (int i = 0; i < nw && nh < 64; i++)
            nh += chaos_children_of(workers[i], handlers + nh, 64 - nh);
        return nh > 0 && kill(handlers[rnd((uint64_t)nh)], SIGKILL) == 0;
    }
    case F_KILL_POD:
        if (p == NULL)
            return false;
        pod_kill_all(p);
        p->restart_at = now + rnd_between(300, 3000);
        return true;
    case F_TERMINATE_BACKEND: {
        if (!db_ensure(c, 200))
            return false;
        PGresult *r = PQexec(*c, "SELECT pid FROM pg_stat_activity WHERE datname = "
                                 "current_database() AND backend_type = 'client backend' AND "
                                 "application_name <> 'torture' ORDER BY pid");
        int n = PQresultStatus(r) == PGRES_TUPLES_OK ? PQntuples(r) : 0;
        int victims = n > 0 ? (int)rnd_between(1, n < 3 ? n : 3) : 0;
        bool ok = false;
        for (int i = 0; i < victims; i++) {
            char sql[96];
            snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%s)",
                     PQgetvalue(r, (int)rnd((uint64_t)n), 0));
            ok |= db_try(*c, sql);
        }
        PQclear(r);
        return ok;
    }
    case F_PG_RESTART_FAST:
    case F_PG_RESTART_IMMEDIATE: {
        if (atomic_exchange(&pg_restarting, true))
            return false;
        pthread_t t;
        static const char *const modes[] = {"fast", "immediate"};
        if (pthread_create(&t, NULL, pg_restart_main, (void *)modes[f == F_PG_RESTART_IMMEDIATE]) !=
            0)
            chaos_die("pthread_create: %s", strerror(errno));
        pthread_detach(t);
        return true;
    }
    case F_BLACKHOLE:
        if (p == NULL || p->blackhole_end > 0)
            return false;
        /* Acknowledged by the proxy once in place: a hole with nothing in
         * it tested nothing. */
        int holed = chaos_proxy_signal(&p->proxy, SIGUSR1, 2000);
        if (holed <= 0)
            return false;
        blackholed_connections += holed;
        p->blackhole_end = now + rnd_between(1000, 8000);
        /* Until the keepalive has found out and the listener is back. */
        p->exclude_until = now + KEEPALIVE_INTERVAL_MS + KEEPALIVE_TIMEOUT_MS + 1500;
        return true;
    case F_HUP_VALID:
    case F_HUP_INVALID: {
        if (p == NULL)
            return false;
        char *text;
        if (f == F_HUP_VALID) {
            int batch[QUEUES];
            for (int q = 0; q < QUEUES; q++)
                batch[q] = (int)rnd_between(1, 10);
            p->workers_count = (int)rnd_between(1, 4);
            p->schedule_on = rnd(5) != 0; /* schedules come and go with reloads */
            text = config_text(p, p->workers_count, batch);
        } else {
            text = invalid_config(p);
        }
        write_config(p, text);
        free(text);
        return kill(p->pid, SIGHUP) == 0;
    }
    case F_TTIN:
    case F_TTOU:
        return p != NULL && kill(p->pid, f == F_TTIN ? SIGTTIN : SIGTTOU) == 0;
    case F_TSTP:
        if (p == NULL || p->quiet)
            return false;
        p->quiet = true;
        p->cont_at = now + rnd_between(500, 3000);
        return kill(p->pid, SIGTSTP) == 0;
    case F_BURST_SINGLE:
    case F_BURST_BULK:
    case F_BURST_FUTURE: {
        if (!db_ensure(c, 200))
            return false;
        if (chaos_query_int(*c, "SELECT count(*) FROM pgwork.tasks WHERE state = 'pending' AND "
                                "queue <> '" SCHEDULE_QUEUE "'") > BACKLOG_CAP) {
            bursts_skipped++;
            return false;
        }
        if (f == F_BURST_SINGLE)
            return enqueue(*c, (int)rnd_between(1, 8), false, false);
        if (f == F_BURST_BULK)
            return enqueue(*c, (int)rnd_between(10, 80), true, false);
        return enqueue(*c, (int)rnd_between(1, 40), rnd(2) == 0, true);
    }
    case F_CANCEL: {
        if (!db_ensure(c, 200))
            return false;
        char sql[512];
        snprintf(sql, sizeof(sql),
                 "SELECT setseed(%.6f); INSERT INTO cancels"
                 " SELECT id, pgwork.cancel(id), clock_timestamp() FROM"
                 " (SELECT id FROM pgwork.tasks WHERE state IN ('pending', 'running')"
                 "  ORDER BY random() LIMIT %d) x",
                 (double)rnd(1000000) / 1000000.0, (int)rnd_between(1, 3));
        bool ok = db_try(*c, sql);
        cancels_made += ok;
        return ok;
    }
    case F_PAUSE: {
        int q = (int)rnd((uint64_t)QUEUES);
        if (resume_at[q] != 0 || !db_ensure(c, 200))
            return false;
        char sql[96];
        snprintf(sql, sizeof(sql), "SELECT pgwork.pause('%s')", queues[q].name);
        if (!db_try(*c, sql))
            return false;
        resume_at[q] = now + rnd_between(300, 3000);
        snprintf(last_target, sizeof(last_target), "%s", queues[q].name);
        return true;
    }
    case F_SLOW_HTTP:
        for (int i = 0; p != NULL && i < 16; i++)
            if (slow_pids[i] == 0)
                return (slow_pids[i] = slow_http_start(p->http_port, rnd_between(2000, 6000))) > 0;
        return false;
    case F_COUNT:
        break;
    }
    return false;
}

/* Database faults run without the lock: the prober must not wait on them. */
static bool inject(enum fault f, PGconn **c)
{
    if (is_db_fault(f))
        return inject_locked(f, c);
    pthread_mutex_lock(&lock);
    bool done = inject_locked(f, c);
    pthread_mutex_unlock(&lock);
    return done;
}

static enum fault pick_fault(void)
{
    int total = 0;
    for (int f = 0; f < F_COUNT; f++)
        total += fault_on[f] ? fault_kinds[f].weight : 0;
    int r = (int)rnd((uint64_t)total);
    for (int f = 0; f < F_COUNT; f++) {
        if (!fault_on[f])
            continue;
        if (r < fault_kinds[f].weight)
            return (enum fault)f;
        r -= fault_kinds[f].weight;
    }
    return F_BURST_SINGLE;
}

/* --- settling and the verdict --------------------------------------------- */

/* Up to 10 rows of sql, one line each, after a title. */
static void print_rows(PGconn *c, const char *title, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0) {
        chaos_say("%s:", title);
        for (int i = 0; i < PQntuples(r) && i < 10; i++) {
            char line[1024] = "";
            size_t len = 0;
            for (int k = 0; k < PQnfields(r) && len < sizeof(line) - 1; k++)
                len += (size_t)snprintf(line + len, sizeof(line) - len, "%s%s=%.200s", k ? " " : "",
                                        PQfname(r, k), PQgetvalue(r, i, k));
            chaos_say("  %s", line);
        }
    }
    PQclear(r);
}

static void load_runs(PGconn *c)
{
    FILE *f = fopen(runs_path, "r");
    if (f == NULL)
        return;
    PGresult *res = PQexec(c, "COPY runs FROM STDIN");
    PQclear(res);
    char line[64];
    while (fgets(line, sizeof(line), f) != NULL)
        PQputCopyData(c, line, (int)strlen(line));
    PQputCopyEnd(c, NULL);
    PQclear(PQgetResult(c));
    fclose(f);
    /* When each run started: "<task>\t<unix ms>" lines. */
    char starts[4096];
    snprintf(starts, sizeof(starts), "%s.starts", runs_path);
    if ((f = fopen(starts, "r")) == NULL)
        return;
    PQclear(PQexec(c, "COPY starts FROM STDIN"));
    while (fgets(line, sizeof(line), f) != NULL)
        PQputCopyData(c, line, (int)strlen(line));
    PQputCopyEnd(c, NULL);
    PQclear(PQgetResult(c));
    fclose(f);
}

/* The cancel invariant (see the top of the file). */
static void judge_cancels(PGconn *c)
{
    int64_t n;
    if ((n = chaos_query_int(c, "SELECT count(*) FROM cancels x JOIN pgwork.tasks t ON t.id = "
                                "x.task WHERE x.was IN ('pending', 'running') AND t.state <> "
                                "'cancelled'")) != 0) {
        violation("cancel",
                  "%" PRId64 " task(s) cancelled while pending or running ended "
                  "otherwise",
                  n);
        print_rows(c, "cancelled tasks not cancelled",
                   "SELECT t.id, x.was, t.state, t.attempts, t.last_error FROM cancels x JOIN "
                   "pgwork.tasks t ON t.id = x.task WHERE x.was IN ('pending', 'running') AND "
                   "t.state <> 'cancelled' LIMIT 10");
    }
    if ((n = chaos_query_int(c, "SELECT count(*) FROM cancels x WHERE x.was IN ('pending', "
                                "'running') AND EXISTS (SELECT 1 FROM effects e WHERE e.task = "
                                "x.task)")) != 0)
        violation("cancel", "%" PRId64 " cancelled sql task(s) with an effect", n);
    if ((n = chaos_query_int(c, "SELECT count(*) FROM cancels x JOIN starts r ON r.task = x.task "
                                "WHERE x.was IN ('pending', 'running') AND r.at_ms > "
                                "extract(epoch FROM x.at) * 1000 + 1000")) != 0) {
        violation("cancel",
                  "%" PRId64 " run(s) of cancelled tasks started over 1 s after the "
                  "cancel",
                  n);
        print_rows(c, "late runs of cancelled tasks",
                   "SELECT x.task, x.was, x.at, r.at_ms FROM cancels x JOIN starts r ON r.task = "
                   "x.task WHERE x.was IN ('pending', 'running') AND r.at_ms > "
                   "extract(epoch FROM x.at) * 1000 + 1000 LIMIT 10");
    }
    chaos_say(
        "cancels: %d statement(s), %" PRId64 " task(s) cancelled (%" PRId64
        " while running), %" PRId64 " already finished",
        cancels_made,
        chaos_query_int(c, "SELECT count(*) FROM cancels WHERE was IN ('pending', 'running')"),
        chaos_query_int(c, "SELECT count(*) FROM cancels WHERE was = 'running'"),
        chaos_query_int(c, "SELECT count(*) FROM cancels WHERE was NOT IN ('pending', "
                           "'running')"));
}

static int restarts_logged(const struct pod *p)
{
    return chaos_count_in_file(p->log, "exited unexpectedly");
}

static void sanitizer_check(const struct pod *p)
{
    static const char *const marks[] = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                                        "runtime error:"};
    for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++) {
        int n = chaos_count_in_file(p->log, marks[i]);
        if (n > 0)
            violation("sanitizer", "%s: %d \"%s\" report(s) in %s", p->name, n, marks[i], p->log);
    }
}

/*
 * The settle deadline, in ms after the faults stopped, and why (into why).
 * Normal tasks get lease + 10 s. A hang poison task holds a worker for its
 * queue's timeout on each attempt it has left, and the tasks queued behind
 * it wait for that worker: capacity, not a lost task. So while hang tasks
 * are left the bound adds what a work-conserving pool needs for them (the
 * list-scheduling bound): their worker time W spread over the N workers,
 * plus (1 - 1/N) of the longest one task still needs, its attempts running
 * one after another (an attempt: its timeout + the longest backoff). N is
 * the sum of the pods' pool targets from their last status lines (HUP,
 * TTIN and TTOU change them). Nothing is added for any other task.
 */
static int64_t settle_bound_ms(PGconn **c, char *why, size_t len)
{
    int64_t base = (int64_t)lease_s * 1000 + 10000;
    char sql[1024];
    /* clang-format off */
    snprintf(sql, sizeof(sql),
             "SELECT count(*), coalesce(sum(left_), 0),"
             "       coalesce(sum(left_ * attempt_ms), 0), coalesce(max(left_ * attempt_ms), 0)"
             "  FROM (SELECT greatest(coalesce(max_attempts, %d) - attempts"
             "                        + (state = 'running')::int, 0) AS left_,"
             "               CASE WHEN queue = 'tsql' THEN %d ELSE %d END + %d AS attempt_ms"
             "          FROM pgwork.tasks"
             "         WHERE state IN ('pending', 'running') AND payload->>'poison' = 'hang') h",
             MAX_ATTEMPTS, SQL_TIMEOUT_S * 1000, HANDLER_TIMEOUT_S * 1000, BACKOFF_MAX_MS);
    /* clang-format on */
    int64_t tasks = 0, attempts = 0, hang_ms = 0, chain_ms = 0;
    if (db_ensure(c, 2000)) {
        PGresult *r = PQexec(*c, sql);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
            tasks = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
            attempts = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
            hang_ms = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
            chain_ms = strtoll(PQgetvalue(r, 0, 3), NULL, 10);
        } else {
            chaos_say("settle bound: the hang tasks left are unknown (%s); lease + 10 s",
                      PQerrorMessage(*c));
        }
        PQclear(r);
    }
    int workers = 0;
    char per_pod[64] = "";
    size_t used = 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < PODS; i++) {
        workers += pods[i].workers_target;
        used += (size_t)snprintf(per_pod + used, sizeof(per_pod) - used, "%s%s %d", i ? ", " : "",
                                 pods[i].name, pods[i].workers_target);
    }
    pthread_mutex_unlock(&lock);
    if (workers < 1)
        workers = 1;
    int64_t spread = (hang_ms + workers - 1) / workers;
    int64_t chain = chain_ms * (workers - 1) / workers;
    if (tasks == 0)
        snprintf(why, len, "lease %d s + 10 s; no hang poison task left", lease_s);
    else
        snprintf(why, len,
                 "lease %d s + 10 s + %.1f s + %.1f s: %" PRId64
                 " hang poison task(s) left, %" PRId64
                 " attempt(s) of %d s (sql) or %d s (exec, coprocess) + %d ms backoff, %.1f s of "
                 "worker time over %d workers (%s), the longest task %.1f s",
                 lease_s, (double)spread / 1000, (double)chain / 1000, tasks, attempts,
                 SQL_TIMEOUT_S, HANDLER_TIMEOUT_S, BACKOFF_MAX_MS, (double)hang_ms / 1000, workers,
                 per_pod, (double)chain_ms / 1000);
    return base + spread + chain;
}

static void settle_and_judge(PGconn **c, int64_t run_started)
{
    chaos_say("faults stop after %.1f s; settling", (double)(chaos_now_ms() - run_started) / 1000);
    /* Paused queues would never finish: resumed first (tried until the
     * database answers). */
    for (int64_t until = chaos_now_ms() + 30000; chaos_now_ms() < until; chaos_sleep_ms(100)) {
        resume_queues(c, true);
        bool any = false;
        for (int q = 0; q < QUEUES; q++)
            any |= resume_at[q] != 0;
        if (!any)
            break;
    }
    while (atomic_load(&pg_restarting))
        chaos_sleep_ms(50);
    pthread_mutex_lock(&lock);
    for (int i = 0; i < 16; i++)
        if (slow_pids[i] > 0)
            kill(slow_pids[i], SIGKILL);
    for (int i = 0; i < PODS; i++) {
        struct pod *p = &pods[i];
        p->cont_at = 0;
        if (p->blackhole_end > 0)
            p->blackhole_end = 1;
        if (p->pid == 0)
            p->restart_at = 1;
    }
    pods_deferred();
    pthread_mutex_unlock(&lock);
    int64_t wait_ready = chaos_now_ms() + 30000;
    for (bool all = false; !all && chaos_now_ms() < wait_ready; chaos_sleep_ms(50)) {
        pthread_mutex_lock(&lock);
        pods_deferred();
        all = true;
        for (int i = 0; i < PODS; i++)
            all &= pods[i].ready;
        pthread_mutex_unlock(&lock);
    }
    int64_t stopped = chaos_now_ms();
    char why[400];
    int64_t bound = settle_bound_ms(c, why, sizeof(why));
    int64_t deadline = stopped + bound;
    chaos_say("settle bound %.1f s (%s)", (double)bound / 1000, why);
    int64_t unfinished = -1;
    while (chaos_now_ms() < deadline) {
        pthread_mutex_lock(&lock);
        pods_deferred();
        pthread_mutex_unlock(&lock);
        if (db_ensure(c, 1000) &&
            (unfinished = chaos_query_int(
                 *c, "SELECT count(*) FROM pgwork.tasks WHERE state "
                     "IN ('pending', 'running') AND queue <> '" SCHEDULE_QUEUE "'")) == 0)
            break;
        chaos_sleep_ms(100);
    }
    int64_t settled_ms = chaos_now_ms() - stopped;
    if (!db_ensure(c, 30000))
        chaos_die("the database does not answer after the faults stopped");
    if (unfinished != 0) {
        violation("unfinished",
                  "%" PRId64 " task(s) still pending or running %.1f s (%s) after the faults "
                  "stopped",
                  unfinished, (double)bound / 1000, why);
        print_rows(*c, "unfinished tasks (first 10)",
                   "SELECT id, queue, state, attempts, run_at > now() AS later, locked_by, "
                   "locked_until - now() AS lease_left, payload, left(last_error, 120) AS "
                   "last_error FROM pgwork.tasks WHERE state IN ('pending', 'running') AND queue "
                   "<> '" SCHEDULE_QUEUE "' ORDER BY "
                   "id LIMIT 10");
    } else {
        chaos_say("every task ended %.1f s after the faults stopped", (double)settled_ms / 1000);
    }

    /* Crash loops: no restart once the causes are gone (every task ended;
     * with tasks left, a restart may still have a cause). */
    if (unfinished != 0) {
        chaos_say("crash-loop check skipped: tasks are left");
        atomic_store(&prober_stop, true);
        return;
    }
    int before[PODS];
    for (int i = 0; i < PODS; i++)
        before[i] = restarts_logged(&pods[i]);
    chaos_sleep_ms(2 * RESTART_DELAY_MAX_MS + 3000);
    pthread_mutex_lock(&lock);
    pods_deferred();
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < PODS; i++) {
        int more = restarts_logged(&pods[i]) - before[i];
        pid_t w[64];
        int alive = pods[i].pid > 0 ? chaos_children_of(pods[i].pid, w, 64) : 0;
        if (more > 0)
            violation("crash-loop", "%s: %d worker restart(s) in the %d s after every task ended",
                      pods[i].name, more, (2 * RESTART_DELAY_MAX_MS + 3000) / 1000);
        if (alive == 0)
            violation("crash-loop", "%s has no worker process after settling", pods[i].name);
    }

    atomic_store(&prober_stop, true);
}

static void judge_database(PGconn *c, int64_t *done, int64_t *dead, int64_t *dups)
{
    load_runs(c);
    judge_cancels(c);
    *done = chaos_count_state(c, "done");
    *dead = chaos_count_state(c, "dead");
    *dups = chaos_query_int(c, "SELECT count(*) FROM (SELECT task FROM effects GROUP BY task "
                               "HAVING count(*) > 1) d");
    int64_t n;
    if ((n = chaos_query_int(c, "SELECT count(*) FROM pgwork.tasks t WHERE queue = 'tsql' AND "
                                "state = 'done' AND (SELECT count(*) FROM effects e WHERE "
                                "e.task = t.id) <> 1")) != 0) {
        violation("effect", "%" PRId64 " done sql task(s) without exactly one effect", n);
        print_rows(c, "done sql tasks, effects <> 1",
                   "SELECT t.id, t.attempts, (SELECT count(*) FROM effects e WHERE e.task = t.id) "
                   "AS effects, t.payload FROM pgwork.tasks t WHERE queue = 'tsql' AND state = "
                   "'done' AND (SELECT count(*) FROM effects e WHERE e.task = t.id) <> 1 LIMIT 10");
    }
    if ((n = chaos_query_int(c, "SELECT count(*) FROM pgwork.tasks t WHERE queue = 'tsql' AND "
                                "state = 'dead' AND EXISTS (SELECT 1 FROM effects e WHERE "
                                "e.task = t.id)")) != 0)
        violation("effect", "%" PRId64 " dead sql task(s) with an effect", n);
    if ((n = chaos_query_int(c, "SELECT count(*) FROM pgwork.tasks t WHERE queue <> 'tsql' AND "
                                "state = 'done' AND NOT EXISTS (SELECT 1 FROM runs r WHERE "
                                "r.task = t.id)")) != 0)
        violation("effect", "%" PRId64 " exec/coprocess task(s) done that never ran successfully",
                  n);
    if ((n = chaos_query_int(c, "SELECT count(*) FROM pgwork.tasks WHERE state = 'done' AND "
                                "payload->>'poison' <> 'none'")) != 0)
        violation("effect", "%" PRId64 " poison task(s) ended done", n);
    /* One task per (schedule, tick), whatever the pods went through; each
     * task's run_at is its tick (a whole second of every = 1s). */
    if ((n = chaos_query_int(c, "SELECT count(*) FROM (SELECT 1 FROM pgwork.tasks WHERE payload ? "
                                "'schedule' GROUP BY queue, payload->>'schedule', run_at HAVING "
                                "count(*) > 1) d")) != 0) {
        violation("tick", "%" PRId64 " tick(s) with more than one task", n);
        print_rows(c, "ticks made twice (first 10)",
                   "SELECT payload->>'schedule' AS schedule, run_at, count(*), array_agg(id) FROM "
                   "pgwork.tasks WHERE payload ? 'schedule' GROUP BY 1, 2 HAVING count(*) > 1 "
                   "ORDER BY 2 LIMIT 10");
    }
    if ((n = chaos_query_int(c, "SELECT count(*) FROM pgwork.tasks WHERE payload ? 'schedule' AND "
                                "run_at <> date_trunc('second', run_at)")) != 0)
        violation("tick", "%" PRId64 " schedule task(s) whose run_at is not a tick", n);
    chaos_say("schedule %s: %" PRId64 " ticks made, %" PRId64 " seconds between its first and last",
              SCHEDULE_NAME,
              chaos_query_int(c, "SELECT count(*) FROM pgwork.tasks WHERE payload ? 'schedule'"),
              chaos_query_int(c, "SELECT coalesce(extract(epoch FROM max(run_at) - min(run_at)), "
                                 "0)::bigint FROM pgwork.tasks WHERE payload ? 'schedule'"));
    if ((n = chaos_query_int(c, "SELECT coalesce(max((SELECT count(*) FROM trate_starts b"
                                " WHERE b.at >= a.at AND b.at <= a.at + interval '1 second')), 0)"
                                " FROM trate_starts a")) > TRATE_PER_S)
        violation("rate", "%" PRId64 " trate starts within one second (rate %d/1s)", n,
                  TRATE_PER_S);
    chaos_say("trate: %" PRId64 " starts, at most %" PRId64 " in a second (rate %d/1s)",
              chaos_query_int(c, "SELECT count(*) FROM trate_starts"), n, TRATE_PER_S);
}

static void print_table(PGconn *c, int64_t done, int64_t dead, int64_t dups)
{
    printf("\ntorture: seed %" PRIu64 ", %d s of faults (TORTURE_FAULTS=%s TORTURE_POISON=%s)\n",
           seed, seconds, faults_spec, poison_spec);
    printf("\n%-22s %s\n", "fault", "injected");
    for (int f = 0; f < F_COUNT; f++)
        if (fault_on[f])
            printf("%-22s %d\n", fault_kinds[f].name, injected[f]);
    printf("(bursts skipped at a backlog of %d: %d; enqueue statements that failed: %d; "
           "tasks enqueued: %d; connections black-holed: %d)\n",
           BACKLOG_CAP, bursts_skipped, enqueue_failures, tasks_enqueued, blackholed_connections);
    printf("\n%-8s %8s %8s %8s %8s %10s %12s\n", "queue", "done", "dead", "pending", "running",
           "poison", "max attempts");
    PGresult *r = PQexec(c, "SELECT queue, count(*) FILTER (WHERE state = 'done'), count(*) "
                            "FILTER (WHERE state = 'dead'), count(*) FILTER (WHERE state = "
                            "'pending'), count(*) FILTER (WHERE state = 'running'), count(*) "
                            "FILTER (WHERE payload->>'poison' <> 'none'), max(attempts) FROM "
                            "pgwork.tasks GROUP BY queue ORDER BY queue");
    for (int i = 0; PQresultStatus(r) == PGRES_TUPLES_OK && i < PQntuples(r); i++)
        printf("%-8s %8s %8s %8s %8s %10s %12s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
               PQgetvalue(r, i, 2), PQgetvalue(r, i, 3), PQgetvalue(r, i, 4), PQgetvalue(r, i, 5),
               PQgetvalue(r, i, 6));
    PQclear(r);
    printf("%-8s %8" PRId64 " %8" PRId64 "\n", "all", done, dead);
    printf("\nduplicate sql effects: %" PRId64 "\n", dups);
    printf("worst stall (due task, idle worker): %" PRId64 " ms%s%s (limit %d ms)\n", worst_stall,
           worst_stall_where[0] ? " on " : "", worst_stall_where, stall_ms);
    for (int i = 0; i < PODS; i++)
        printf("%s: %d probes, worst USR1 %" PRId64 " ms, worst /healthz %" PRId64
               " ms, %d over %d ms; %d worker restarts logged\n",
               pods[i].name, pods[i].probes, pods[i].worst_usr1, pods[i].worst_healthz,
               pods[i].slow_probes, probe_ms, restarts_logged(&pods[i]));
    printf("\nviolations: %d%s%s\n", violations, violations ? "; first: " : "", first_violation);
    printf("replay: TORTURE_SEED=%" PRIu64 " TORTURE_SECONDS=%d TORTURE_FAULTS='%s' "
           "TORTURE_POISON='%s' make torture\n",
           seed, seconds, faults_spec, poison_spec);
}

/* --- main ----------------------------------------------------------------- */

static int env_int(const char *name, int def)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? atoi(v) : def;
}

static void setup(void)
{
    const char *bin = chaos_bin();
    char *dir = strdup(bin);
    char *slash = strrchr(dir, '/');
    if (slash != NULL)
        *slash = '\0';
    handler_bin = chaos_xasprintf("%s/tests/chaos/torture_handler", dir);
    tcpproxy_bin = chaos_xasprintf("%s/tests/tools/tcpproxy", dir);
    free(dir);
    if (access(handler_bin, X_OK) != 0 || access(tcpproxy_bin, X_OK) != 0)
        chaos_die("%s or %s is not built", handler_bin, tcpproxy_bin);
    runs_path = chaos_xasprintf("%s/runs", chaos_dir());
    char *faults_path = chaos_xasprintf("%s/faults.log", chaos_dir());
    fault_log = fopen(faults_path, "w");
    if (fault_log == NULL)
        chaos_die("%s: %s", faults_path, strerror(errno));
    free(faults_path);

    PGconn *c;
    db_conninfo = chaos_make_database("torture", &c);
    chaos_exec_sql(c, schema_sql);
    PQfinish(c);

    char *socket_path = chaos_pg_socket();
    const char *user = getenv("PGUSER");
    for (int i = 0; i < PODS; i++) {
        struct pod *p = &pods[i];
        p->index = i;
        snprintf(p->name, sizeof(p->name), "pod%d", i);
        p->log = chaos_xasprintf("%s/%s.log", chaos_dir(), p->name);
        p->config = chaos_xasprintf("%s/%s.conf", chaos_dir(), p->name);
        char *proxy_log = chaos_xasprintf("%s/%s-proxy.log", chaos_dir(), p->name);
        p->proxy = chaos_proxy_start(tcpproxy_bin, socket_path, proxy_log);
        free(proxy_log);
        p->conninfo = chaos_xasprintf("host=127.0.0.1 port=%d user='%s' dbname='c_torture'",
                                      p->proxy.port, user ? user : "postgres");
        p->http_port = chaos_free_port();
        pthread_mutex_lock(&lock);
        pod_start(p);
        pthread_mutex_unlock(&lock);
    }
    free(socket_path);
}

int main(void)
{
    const char *dir = getenv("CHAOS_DIR"), *bin = getenv("PGWORK_BIN");
    if (dir == NULL || bin == NULL || getenv("PGHOST") == NULL)
        chaos_die("run through tests/chaos/run.sh (needs CHAOS_DIR, PGWORK_BIN, PGHOST...)");
    const char *s = getenv("TORTURE_SEED");
    seed = s != NULL && s[0] != '\0' ? strtoull(s, NULL, 10)
                                     : ((uint64_t)time(NULL) * 2654435761u) ^ (uint64_t)getpid();
    seed %= 1000000000;
    rng_state = seed * 0x9E3779B97F4A7C15ULL + 1;
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "torture (seed %" PRIu64 ")", seed);
    chaos_init(prefix, dir, bin);
    seconds = env_int("TORTURE_SECONDS", 120);
    lease_s = env_int("TORTURE_LEASE_S", 5);
    probe_ms = env_int("TORTURE_PROBE_MS", 200);
    stall_ms = env_int("TORTURE_STALL_MS", 2000);
    s = getenv("TORTURE_FAULTS");
    snprintf(faults_spec, sizeof(faults_spec), "%s", s != NULL && s[0] ? s : "all");
    s = getenv("TORTURE_POISON");
    snprintf(poison_spec, sizeof(poison_spec), "%s", s != NULL && s[0] ? s : "all");
    const char *fault_names[F_COUNT];
    for (int f = 0; f < F_COUNT; f++)
        fault_names[f] = fault_kinds[f].name;
    parse_kinds("TORTURE_FAULTS", faults_spec, fault_names, F_COUNT, fault_on);
    parse_kinds("TORTURE_POISON", poison_spec, poison_names, P_COUNT, poison_on);
    bool any = false;
    for (int f = 0; f < F_COUNT; f++)
        any |= fault_on[f];
    if (!any)
        chaos_die("TORTURE_FAULTS leaves nothing to inject");
    signal(SIGPIPE, SIG_IGN);
    /* First thing out: how to replay this run. */
    printf("torture: seed %" PRIu64 " (TORTURE_SEED=%" PRIu64 " replays it), %d s, "
           "TORTURE_FAULTS=%s TORTURE_POISON=%s\n",
           seed, seed, seconds, faults_spec, poison_spec);
    fflush(stdout);

    setup();
    pthread_t prober;
    if (pthread_create(&prober, NULL, prober_main, NULL) != 0)
        chaos_die("pthread_create: %s", strerror(errno));
    PGconn *c = NULL;
    if (!db_ensure(&c, 10000))
        chaos_die("cannot connect to %s", db_conninfo);
    /* Some work before the first fault, once both pods are up. */
    for (int64_t until = chaos_now_ms() + 20000; chaos_now_ms() < until; chaos_sleep_ms(50)) {
        pthread_mutex_lock(&lock);
        pods_deferred();
        bool all = pods[0].ready && pods[1].ready;
        pthread_mutex_unlock(&lock);
        if (all)
            break;
    }
    enqueue(c, 50, true, false);

    int64_t started = chaos_now_ms(), end = started + (int64_t)seconds * 1000;
    int64_t next_fault = started, last_report = started;
    while (chaos_now_ms() < end) {
        pthread_mutex_lock(&lock);
        pods_deferred();
        pthread_mutex_unlock(&lock);
        resume_queues(&c, false);
        int64_t now = chaos_now_ms();
        if (now >= next_fault) {
            for (int tries = 0; tries < 5; tries++) {
                enum fault f = pick_fault();
                if (inject(f, &c)) {
                    injected[f]++;
                    char at[32];
                    fprintf(fault_log, "%s %s%s%s\n", utc_now(at, sizeof(at)), fault_kinds[f].name,
                            last_target[0] ? " " : "", last_target);
                    fflush(fault_log);
                    break;
                }
            }
            next_fault = chaos_now_ms() + rnd_between(100, 900);
        }
        if (now - last_report >= 10000) {
            int total = 0;
            for (int f = 0; f < F_COUNT; f++)
                total += injected[f];
            chaos_say("%" PRId64 " s: %d faults, %d tasks enqueued, %d violation(s)",
                      (now - started) / 1000, total, tasks_enqueued, violations);
            last_report = now;
        }
        chaos_sleep_ms(20);
    }

    settle_and_judge(&c, started);
    pthread_join(prober, NULL);
    for (int i = 0; i < PODS; i++) {
        struct pod *p = &pods[i];
        if (p->pid <= 0)
            continue;
        struct chaos_sup sup = {.pid = p->pid};
        kill(p->pid, SIGTERM);
        int status = chaos_sup_wait(&sup, 20000);
        char text[64];
        if (status != 0)
            violation("exit", "%s on SIGTERM: %s", p->name,
                      chaos_exit_text(status, text, sizeof(text)));
        kill(p->proxy.pid, SIGTERM);
        sanitizer_check(p);
    }
    if (!db_ensure(&c, 30000))
        chaos_die("the database does not answer");
    int64_t done, dead, dups;
    judge_database(c, &done, &dead, &dups);
    print_table(c, done, dead, dups);
    PQfinish(c);
    if (violations > 0)
        chaos_say("FAIL: %d broken invariant(s); replay with TORTURE_SEED=%" PRIu64, violations,
                  seed);
    return violations > 0 ? 1 : 0;
}
