/*
 * harness.c — see harness.h. Per-test state lives in one static struct,
 * reset by the fixture: with Check's default fork mode every test runs in a
 * fresh child process, and in CK_FORK=no mode teardown leaves it clean for
 * the next test.
 *
 * Children (pgwork commands, supervisors) get PR_SET_PDEATHSIG(SIGKILL): a
 * test that fails or times out takes them with it. SIGPIPE is ignored in the
 * test process (a command may exit before reading all its stdin) and
 * restored to the default in every child before exec.
 */
#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <ftw.h>
#include <libgen.h>
#include <netinet/in.h>
#include <pwd.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define HARNESS_MAX_DBS 16
#define HARNESS_MAX_CONNS 64
#define HARNESS_MAX_SUPERVISORS 16
#define HARNESS_POLL_MS 10

static struct {
    bool active;
    char tmpdir[4096];
    int files; /* counter for file names in tmpdir */
    char dbs[HARNESS_MAX_DBS][HARNESS_NAME_MAX];
    int db_count;
    PGconn *conns[HARNESS_MAX_CONNS];
    int conn_count;
    struct harness_supervisor *sups[HARNESS_MAX_SUPERVISORS];
    int sup_count;
    void **arena; /* everything handed out, freed at teardown */
    size_t arena_len, arena_cap;
} h;

static int db_counter; /* per process: with the pid, unique names */

/* --- small utilities ------------------------------------------------------ */

int64_t harness_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void harness_skip(const char *test, const char *why)
{
    /* One write: the line stays whole among other processes' output. */
    char line[512];
    int n = snprintf(line, sizeof(line), "SKIP: %s: %s\n", test, why);
    if (n > 0 &&
        write(STDERR_FILENO, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1) < 0)
        perror("harness: SKIP line");
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void *keep(void *ptr)
{
    ck_assert_msg(ptr != NULL, "harness: out of memory");
    if (h.arena_len == h.arena_cap) {
        size_t cap = h.arena_cap ? h.arena_cap * 2 : 64;
        void **bigger = realloc(h.arena, cap * sizeof(*bigger));
        ck_assert_msg(bigger != NULL, "harness: out of memory");
        h.arena = bigger;
        h.arena_cap = cap;
    }
    h.arena[h.arena_len++] = ptr;
    return ptr;
}

void *harness_alloc(size_t size)
{
    return keep(calloc(1, size));
}

static char *keep_strdup(const char *s)
{
    return keep(strdup(s));
}

const char *harness_printf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    ck_assert_msg(n >= 0, "harness: out of memory");
    return keep(s);
}

/* Append key='value' (conninfo quoting) to buf; false if it does not fit.
 * No Check calls here: harness_drop_all_databases runs outside any test. */
static bool conninfo_add(char *buf, size_t len, const char *key, const char *value)
{
    if (value == NULL || value[0] == '\0')
        return true;
    size_t used = strlen(buf);
    int n = snprintf(buf + used, len - used, "%s%s='", used ? " " : "", key);
    if (n < 0 || (size_t)n >= len - used)
        return false;
    used += (size_t)n;
    for (const char *p = value; *p; p++) {
        if (used + 3 >= len)
            return false;
        if (*p == '\'' || *p == '\\')
            buf[used++] = '\\';
        buf[used++] = *p;
    }
    buf[used++] = '\'';
    buf[used] = '\0';
    return true;
}

/* A conninfo for database dbname on the cluster named by PGHOST etc. */
static bool conninfo_for(char *buf, size_t len, const char *dbname)
{
    buf[0] = '\0';
    return conninfo_add(buf, len, "host", getenv("PGHOST")) &&
           conninfo_add(buf, len, "port", getenv("PGPORT")) &&
           conninfo_add(buf, len, "user", getenv("PGUSER")) &&
           conninfo_add(buf, len, "dbname", dbname);
}

static PGconn *admin_connect(void)
{
    char conninfo[4096];
    ck_assert_msg(conninfo_for(conninfo, sizeof(conninfo), "postgres"),
                  "harness: PGHOST etc. too long");
    PGconn *conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK) {
        char msg[1024];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(conn));
        PQfinish(conn);
        ck_abort_msg("harness: cannot connect to the test cluster: %s", msg);
    }
    return conn;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

/* --- fixture -------------------------------------------------------------- */

TCase *harness_tcase(const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, harness_setup, harness_teardown);
    tcase_set_timeout(tc, HARNESS_TCASE_TIMEOUT);
    return tc;
}

void harness_setup(void)
{
    memset(&h, 0, sizeof(h));
    h.active = true;
    signal(SIGPIPE, SIG_IGN);
    const char *base = getenv("PGWORK_TEST_TMPDIR");
    if (base == NULL || base[0] == '\0')
        base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    snprintf(h.tmpdir, sizeof(h.tmpdir), "%s/pgwork-it.XXXXXX", base);
    ck_assert_msg(mkdtemp(h.tmpdir) != NULL, "harness: mkdtemp in %s: %s", base, strerror(errno));
}

static void proxies_teardown(void);
static void bouncers_teardown(void);

void harness_teardown(void)
{
    proxies_teardown();
    bouncers_teardown();
    for (int i = 0; i < h.sup_count; i++) {
        struct harness_supervisor *sup = h.sups[i];
        if (sup->pid > 0) {
            kill(sup->pid, SIGKILL);
            waitpid(sup->pid, NULL, 0);
        }
    }
    for (int i = 0; i < h.conn_count; i++)
        PQfinish(h.conns[i]);
    if (h.db_count > 0) {
        PGconn *admin = admin_connect();
        for (int i = 0; i < h.db_count; i++) {
            char sql[256];
            snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", h.dbs[i]);
            PGresult *res = PQexec(admin, sql);
            if (PQresultStatus(res) != PGRES_COMMAND_OK)
                fprintf(stderr, "harness: %s: %s", sql, PQerrorMessage(admin));
            PQclear(res);
        }
        PQfinish(admin);
    }
    if (h.tmpdir[0])
        nftw(h.tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    for (size_t i = 0; i < h.arena_len; i++)
        free(h.arena[i]);
    free(h.arena);
    memset(&h, 0, sizeof(h));
}

const char *harness_tmpdir(void)
{
    ck_assert_msg(h.active, "harness: no fixture (use harness_tcase)");
    return h.tmpdir;
}

void harness_drop_all_databases(void)
{
    char conninfo[4096];
    if (!conninfo_for(conninfo, sizeof(conninfo), "postgres")) {
        fprintf(stderr, "harness: cannot drop test databases: PGHOST etc. too long\n");
        return;
    }
    PGconn *admin = PQconnectdb(conninfo);
    if (PQstatus(admin) != CONNECTION_OK) {
        fprintf(stderr, "harness: cannot drop test databases: %s", PQerrorMessage(admin));
        PQfinish(admin);
        return;
    }
    PGresult *list = PQexec(admin, "SELECT datname FROM pg_database WHERE datname LIKE 't\\_%'");
    for (int i = 0; PQresultStatus(list) == PGRES_TUPLES_OK && i < PQntuples(list); i++) {
        const char *name = PQgetvalue(list, i, 0);
        char *quoted = PQescapeIdentifier(admin, name, strlen(name));
        if (quoted == NULL)
            continue;
        char sql[512];
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", quoted);
        PQfreemem(quoted);
        PQclear(PQexec(admin, sql));
    }
    PQclear(list);
    PQfinish(admin);
}

/* --- databases ------------------------------------------------------------ */

const char *harness_db_create(char *name_out)
{
    ck_assert_msg(h.active, "harness: no fixture (use harness_tcase)");
    ck_assert_msg(h.db_count < HARNESS_MAX_DBS, "harness: too many databases in one test");
    char *name = h.dbs[h.db_count];
    snprintf(name, HARNESS_NAME_MAX, "t_%ld_%d", (long)getpid(), ++db_counter);

    PGconn *admin = admin_connect();
    char sql[256];
    snprintf(sql, sizeof(sql), "CREATE DATABASE \"%s\"", name);
    PGresult *res = PQexec(admin, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        char msg[1024];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(admin));
        PQclear(res);
        PQfinish(admin);
        ck_abort_msg("harness: %s: %s", sql, msg);
    }
    PQclear(res);
    PQfinish(admin);
    h.db_count++;

    if (name_out)
        snprintf(name_out, HARNESS_NAME_MAX, "%s", name);
    char conninfo[4096];
    ck_assert_msg(conninfo_for(conninfo, sizeof(conninfo), name), "harness: PGHOST etc. too long");
    return keep_strdup(conninfo);
}

PGconn *harness_connect(const char *conninfo)
{
    ck_assert_msg(h.conn_count < HARNESS_MAX_CONNS, "harness: too many connections");
    PGconn *conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK) {
        char msg[1024];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(conn));
        PQfinish(conn);
        ck_abort_msg("harness: cannot connect (%s): %s", conninfo, msg);
    }
    h.conns[h.conn_count++] = conn;
    return conn;
}

void harness_disconnect(PGconn *conn)
{
    for (int i = 0; i < h.conn_count; i++) {
        if (h.conns[i] == conn) {
            PQfinish(conn);
            h.conns[i] = h.conns[--h.conn_count];
            return;
        }
    }
}

/* Run sql; ck_abort unless the result has the wanted status. */
static PGresult *run(PGconn *conn, const char *sql, int nparams, const char *const *params,
                     ExecStatusType want)
{
    PGresult *res = nparams > 0 ? PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0)
                                : PQexec(conn, sql);
    ExecStatusType got = PQresultStatus(res);
    if (got != want && !(want == PGRES_COMMAND_OK && got == PGRES_TUPLES_OK)) {
        char msg[1024];
        snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(res));
        PQclear(res);
        ck_abort_msg("harness: query failed: %.200s: %s", sql, msg);
    }
    return res;
}

void harness_exec(PGconn *conn, const char *sql)
{
    PQclear(run(conn, sql, 0, NULL, PGRES_COMMAND_OK));
}

void harness_execp(PGconn *conn, const char *sql, int nparams, const char *const *params)
{
    PQclear(run(conn, sql, nparams, params, PGRES_COMMAND_OK));
}

/* The single value of sql as a new string (NULL for SQL NULL). */
static char *query_value(PGconn *conn, const char *sql, int nparams, const char *const *params)
{
    PGresult *res = run(conn, sql, nparams, params, PGRES_TUPLES_OK);
    if (PQntuples(res) != 1 || PQnfields(res) != 1) {
        int rows = PQntuples(res), cols = PQnfields(res);
        PQclear(res);
        ck_abort_msg("harness: %.200s: %d rows, %d columns; wanted one value", sql, rows, cols);
    }
    char *value = NULL;
    if (!PQgetisnull(res, 0, 0)) {
        value = strdup(PQgetvalue(res, 0, 0));
        ck_assert_msg(value != NULL, "harness: out of memory");
    }
    PQclear(res);
    return value;
}

const char *harness_query_textp(PGconn *conn, const char *sql, int nparams,
                                const char *const *params)
{
    char *value = query_value(conn, sql, nparams, params);
    return value ? keep(value) : NULL;
}

const char *harness_query_text(PGconn *conn, const char *sql)
{
    return harness_query_textp(conn, sql, 0, NULL);
}

int64_t harness_query_int64p(PGconn *conn, const char *sql, int nparams, const char *const *params)
{
    char *text = query_value(conn, sql, nparams, params);
    ck_assert_msg(text != NULL, "harness: %.200s: NULL, wanted an integer", sql);
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    bool ok = errno == 0 && end != text && *end == '\0';
    char copy[64];
    snprintf(copy, sizeof(copy), "%s", text);
    free(text);
    ck_assert_msg(ok, "harness: %.200s: \"%s\" is not an integer", sql, copy);
    return (int64_t)v;
}

int64_t harness_query_int64(PGconn *conn, const char *sql)
{
    return harness_query_int64p(conn, sql, 0, NULL);
}

bool harness_wait_until(PGconn *conn, const char *sql, int64_t expected, int timeout_ms)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    for (;;) {
        if (harness_query_int64(conn, sql) == expected)
            return true;
        if (harness_now_ms() >= deadline)
            return false;
        sleep_ms(HARNESS_POLL_MS);
    }
}

/* --- notifications -------------------------------------------------------- */

void harness_listen(PGconn *conn, const char *channel)
{
    char *quoted = PQescapeIdentifier(conn, channel, strlen(channel));
    ck_assert_msg(quoted != NULL, "harness: %s", PQerrorMessage(conn));
    const char *sql = harness_printf("LISTEN %s", quoted);
    PQfreemem(quoted);
    harness_exec(conn, sql);
}

const char *harness_notify_wait(PGconn *conn, int timeout_ms, const char **channel_out)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    for (;;) {
        ck_assert_msg(PQconsumeInput(conn) == 1, "harness: connection lost: %s",
                      PQerrorMessage(conn));
        PGnotify *n = PQnotifies(conn);
        if (n != NULL) {
            const char *payload = keep_strdup(n->extra);
            if (channel_out)
                *channel_out = keep_strdup(n->relname);
            PQfreemem(n);
            return payload;
        }
        int64_t left = deadline - harness_now_ms();
        if (left <= 0)
            return NULL;
        struct pollfd pfd = {.fd = PQsocket(conn), .events = POLLIN};
        int r = poll(&pfd, 1, (int)left);
        ck_assert_msg(r >= 0 || errno == EINTR, "harness: poll: %s", strerror(errno));
    }
}

/* --- the pgwork binary ---------------------------------------------------- */

const char *harness_pgwork_bin(void)
{
    const char *bin = getenv("PGWORK_BIN");
    ck_assert_msg(bin != NULL && bin[0] != '\0', "PGWORK_BIN is not set (run via make test)");
    return bin;
}

/* examples/ of the source tree: found upwards from $PGWORK_BIN (build/ or
 * build/sanitize/ under the tree), or $PGWORK_EXAMPLES. */
const char *harness_examples_dir(void)
{
    const char *env = getenv("PGWORK_EXAMPLES");
    if (env != NULL && env[0] != '\0')
        return env;
    char path[4096];
    snprintf(path, sizeof(path), "%s", harness_pgwork_bin());
    char *dir = path;
    for (int up = 0; up < 5; up++) {
        dir = dirname(dir);
        const char *candidate = harness_printf("%s/examples", dir);
        if (access(harness_printf("%s/coprocess.py", candidate), R_OK) == 0)
            return candidate;
        if (strcmp(dir, "/") == 0 || strcmp(dir, ".") == 0)
            break;
    }
    if (access("examples/coprocess.py", R_OK) == 0)
        return "examples";
    ck_abort_msg("examples/coprocess.py not found above %s (set PGWORK_EXAMPLES)",
                 harness_pgwork_bin());
    return NULL;
}

/* In a child before exec: die with the test process, default signals. */
static void child_prepare(pid_t parent, const char *conninfo)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) /* the parent died before the prctl */
        _exit(127);
    signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    unsetenv("PGWORK_CONFIG");
    if (conninfo)
        setenv("PGWORK_DATABASE_URL", conninfo, 1);
}

/* argv for exec: bin, args..., NULL (harness-owned). */
static char **make_argv(const char *const *args)
{
    int n = 0;
    while (args[n])
        n++;
    char **argv = keep(calloc((size_t)n + 2, sizeof(*argv)));
    argv[0] = (char *)harness_pgwork_bin();
    for (int i = 0; i < n; i++)
        argv[i + 1] = (char *)args[i];
    return argv;
}

static int exit_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

struct buffer {
    char *data;
    size_t len, cap;
};

static void buffer_read(struct buffer *b, int fd, bool *more)
{
    if (b->cap - b->len < 4096) {
        b->cap = b->cap ? b->cap * 2 : 8192;
        b->data = realloc(b->data, b->cap);
        ck_assert_msg(b->data != NULL, "harness: out of memory");
    }
    ssize_t n = read(fd, b->data + b->len, b->cap - b->len - 1);
    if (n > 0)
        b->len += (size_t)n;
    else if (n == 0 || errno != EINTR)
        *more = false;
    b->data[b->len] = '\0';
}

int harness_pgwork(const char *conninfo, const char *input, const char **out, const char **err,
                   const char *const *args)
{
    char **argv = make_argv(args);
    int in_pipe[2], out_pipe[2], err_pipe[2];
    ck_assert(pipe2(in_pipe, O_CLOEXEC) == 0);
    ck_assert(pipe2(out_pipe, O_CLOEXEC) == 0);
    ck_assert(pipe2(err_pipe, O_CLOEXEC) == 0);

    pid_t parent = getpid();
    pid_t pid = fork();
    ck_assert_msg(pid >= 0, "harness: fork: %s", strerror(errno));
    if (pid == 0) {
        child_prepare(parent, conninfo);
        dup2(in_pipe[0], STDIN_FILENO);
        dup2(out_pipe[1], STDOUT_FILENO);
        dup2(err_pipe[1], STDERR_FILENO);
        execv(argv[0], argv);
        fprintf(stderr, "harness: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(in_pipe[0]);
    close(out_pipe[1]);
    close(err_pipe[1]);

    /* Feed stdin and drain stdout/stderr together: a big payload must not
     * deadlock against a child blocked writing its output. */
    size_t in_len = input ? strlen(input) : 0, in_done = 0;
    fcntl(in_pipe[1], F_SETFL, O_NONBLOCK);
    struct buffer bout = {0}, berr = {0};
    bool in_open = true, out_open = true, err_open = true;
    if (in_len == 0) {
        close(in_pipe[1]);
        in_open = false;
    }
    while (in_open || out_open || err_open) {
        struct pollfd pfd[3] = {
            {.fd = in_open ? in_pipe[1] : -1, .events = POLLOUT},
            {.fd = out_open ? out_pipe[0] : -1, .events = POLLIN},
            {.fd = err_open ? err_pipe[0] : -1, .events = POLLIN},
        };
        if (poll(pfd, 3, -1) < 0) {
            ck_assert_msg(errno == EINTR, "harness: poll: %s", strerror(errno));
            continue;
        }
        if (in_open && pfd[0].revents) {
            ssize_t n = write(in_pipe[1], input + in_done, in_len - in_done);
            if (n > 0)
                in_done += (size_t)n;
            if ((n < 0 && errno != EAGAIN && errno != EINTR) || in_done == in_len) {
                close(in_pipe[1]); /* done, or the child stopped reading */
                in_open = false;
            }
        }
        if (out_open && pfd[1].revents)
            buffer_read(&bout, out_pipe[0], &out_open);
        if (err_open && pfd[2].revents)
            buffer_read(&berr, err_pipe[0], &err_open);
    }
    close(out_pipe[0]);
    close(err_pipe[0]);

    int status;
    while (waitpid(pid, &status, 0) < 0)
        ck_assert_msg(errno == EINTR, "harness: waitpid: %s", strerror(errno));

    if (out)
        *out = bout.data ? keep(bout.data) : "";
    else
        free(bout.data);
    if (err)
        *err = berr.data ? keep(berr.data) : "";
    else
        free(berr.data);
    return exit_code(status);
}

pid_t harness_pgwork_start(const char *conninfo, const char *const *args)
{
    char **argv = make_argv(args);
    pid_t parent = getpid();
    pid_t pid = fork();
    ck_assert_msg(pid >= 0, "harness: fork: %s", strerror(errno));
    if (pid == 0) {
        child_prepare(parent, conninfo);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, STDIN_FILENO);
        execv(argv[0], argv);
        fprintf(stderr, "harness: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

/* Wait for pid to exit; its wait status, or -1 after timeout_ms. Sleeps on
 * a pidfd when the kernel has them, else polls. */
static int wait_exit(pid_t pid, int timeout_ms)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    int pidfd = -1;
#ifdef SYS_pidfd_open
    pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
#endif
    int status = -1;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        ck_assert_msg(r == 0 || errno == EINTR, "harness: waitpid %ld: %s", (long)pid,
                      strerror(errno));
        int64_t left = deadline - harness_now_ms();
        if (left <= 0) {
            status = -1;
            break;
        }
        if (pidfd >= 0) {
            struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
            poll(&pfd, 1, (int)left);
        } else {
            sleep_ms(left < HARNESS_POLL_MS ? (int)left : HARNESS_POLL_MS);
        }
    }
    if (pidfd >= 0)
        close(pidfd);
    return status;
}

int harness_pgwork_wait(pid_t pid, int timeout_ms)
{
    int status = wait_exit(pid, timeout_ms);
    if (status == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        ck_abort_msg("harness: pgwork (pid %ld) still running after %d ms", (long)pid, timeout_ms);
    }
    return exit_code(status);
}

int harness_migrate(const char *conninfo)
{
    const char *err = NULL;
    int rc = harness_pgwork(conninfo, NULL, NULL, &err, (const char *const[]){"migrate", NULL});
    if (rc != 0)
        fprintf(stderr, "harness: pgwork migrate exited %d: %s", rc, err);
    return rc;
}

/* --- the supervisor ------------------------------------------------------- */

static const char *new_file(const char *suffix, const char *text)
{
    const char *path = harness_printf("%s/%d%s", harness_tmpdir(), ++h.files, suffix);
    FILE *f = fopen(path, "w");
    ck_assert_msg(f != NULL, "harness: %s: %s", path, strerror(errno));
    if (text)
        fputs(text, f);
    ck_assert_msg(fclose(f) == 0, "harness: %s: %s", path, strerror(errno));
    return path;
}

const char *harness_write_config(const char *text)
{
    /* Many supervisors run side by side in the tests: no HTTP endpoint
     * (default 0.0.0.0:9187) unless the test configures one. */
    if (strstr(text, "http {") == NULL && strstr(text, "http{") == NULL)
        text = harness_printf("%shttp { listen = \"\" }\n", text);
    return new_file(".conf", text);
}

struct harness_supervisor *harness_spawn_supervisor(const char *config_path, const char *conninfo)
{
    return harness_spawn_supervisor_opts(config_path, conninfo, NULL);
}

static char *read_log(const struct harness_supervisor *sup);

/* A sanitizer report from the supervisor or any worker fails the test,
 * even when the supervisor recovered by restarting the worker. */
static void harness_check_sanitizers(struct harness_supervisor *sup)
{
    static const char *const reports[] = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                                          "runtime error:", "UndefinedBehaviorSanitizer"};
    char *text = read_log(sup);
    for (size_t i = 0; i < sizeof(reports) / sizeof(reports[0]); i++) {
        if (strstr(text, reports[i]) != NULL) {
            free(text);
            harness_stderr_dump(sup);
            ck_abort_msg("sanitizer report in the supervisor's output: %s", reports[i]);
        }
    }
    free(text);
}

int harness_stop_supervisor(struct harness_supervisor *sup, int sig, int timeout_ms)
{
    if (sup->pid == 0)
        return sup->status;
    if (sig != 0)
        kill(sup->pid, sig);
    int status = wait_exit(sup->pid, timeout_ms);
    if (status == -1) {
        kill(sup->pid, SIGKILL);
        waitpid(sup->pid, NULL, 0);
    }
    sup->pid = 0;
    sup->status = status;
    harness_check_sanitizers(sup);
    return status;
}

/* The supervisor's output so far, as a new string. */
/* A whole file as a new string (empty when the file is). */
static char *read_whole(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ck_assert_msg(fd >= 0, "harness: %s: %s", path, strerror(errno));
    struct buffer b = {0};
    bool more = true;
    while (more)
        buffer_read(&b, fd, &more);
    close(fd);
    if (b.data == NULL) {
        b.data = strdup("");
        ck_assert_ptr_nonnull(b.data);
    }
    return b.data;
}

const char *harness_read_file(const char *path)
{
    return keep(read_whole(path));
}

static char *read_log(const struct harness_supervisor *sup)
{
    return read_whole(sup->stderr_path);
}

const char *harness_stderr_text(struct harness_supervisor *sup)
{
    struct stat st;
    if (sup->last_text != NULL && stat(sup->stderr_path, &st) == 0 &&
        (size_t)st.st_size == sup->last_len)
        return sup->last_text;
    char *text = keep(read_log(sup));
    sup->last_text = text;
    sup->last_len = strlen(text);
    return text;
}

bool harness_stderr_wait_for(struct harness_supervisor *sup, const char *substring, int timeout_ms)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    for (;;) {
        char *text = read_log(sup);
        bool found = strstr(text, substring) != NULL;
        free(text);
        if (found)
            return true;
        if (harness_now_ms() >= deadline)
            return false;
        sleep_ms(HARNESS_POLL_MS);
    }
}

void harness_stderr_dump(struct harness_supervisor *sup)
{
    const char *text = harness_stderr_text(sup);
    fprintf(stderr, "---- supervisor %ld output (%s) ----\n", (long)sup->pid, sup->stderr_path);
    for (const char *line = text; *line;) {
        const char *nl = strchr(line, '\n');
        int len = nl ? (int)(nl - line) : (int)strlen(line);
        fprintf(stderr, "| %.*s\n", len, line);
        line += len + (nl ? 1 : 0);
    }
    fprintf(stderr, "---- end ----\n");
}

/* --- failure tests: process groups, wrappers, the cluster itself ---------- */

#define HARNESS_MAX_PROXIES 8

static struct harness_proxy *proxies[HARNESS_MAX_PROXIES];
static int proxy_count;

static void proxies_teardown(void)
{
    for (int i = 0; i < proxy_count; i++) {
        if (proxies[i]->pid > 0) {
            kill(proxies[i]->pid, SIGKILL);
            waitpid(proxies[i]->pid, NULL, 0);
        }
        if (proxies[i]->ack_fd >= 0)
            close(proxies[i]->ack_fd);
    }
    proxy_count = 0; /* the structs themselves are in the arena */
}

struct harness_supervisor *harness_spawn_supervisor_opts(const char *config_path,
                                                         const char *conninfo,
                                                         const struct harness_spawn_opts *opts)
{
    static const struct harness_spawn_opts none = {0};
    if (opts == NULL)
        opts = &none;
    ck_assert_msg(h.sup_count < HARNESS_MAX_SUPERVISORS, "harness: too many supervisors");
    struct harness_supervisor *sup = keep(calloc(1, sizeof(*sup)));
    sup->stderr_path = new_file(".log", NULL);

    int nwrap = 0;
    while (opts->wrapper != NULL && opts->wrapper[nwrap] != NULL)
        nwrap++;
    char **argv = keep(calloc((size_t)nwrap + 5, sizeof(*argv)));
    for (int i = 0; i < nwrap; i++)
        argv[i] = (char *)opts->wrapper[i];
    argv[nwrap] = (char *)harness_pgwork_bin();
    argv[nwrap + 1] = "-c";
    argv[nwrap + 2] = (char *)config_path;
    argv[nwrap + 3] = "run";

    pid_t parent = getpid();
    pid_t pid = fork();
    ck_assert_msg(pid >= 0, "harness: fork: %s", strerror(errno));
    if (pid == 0) {
        child_prepare(parent, conninfo);
        if (opts->own_process_group)
            setpgid(0, 0);
        for (int i = 0; opts->env != NULL && opts->env[i] != NULL; i++)
            putenv((char *)opts->env[i]);
        int devnull = open("/dev/null", O_RDONLY);
        int log = open(sup->stderr_path, O_WRONLY | O_APPEND);
        if (devnull < 0 || log < 0)
            _exit(127);
        dup2(devnull, STDIN_FILENO);
        dup2(log, STDOUT_FILENO);
        dup2(log, STDERR_FILENO);
        execvp(argv[0], argv);
        fprintf(stderr, "harness: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    if (opts->own_process_group)
        setpgid(pid, pid); /* both sides: no race with a kill(-pid) right away */
    sup->pid = pid;
    h.sups[h.sup_count++] = sup;
    return sup;
}

bool harness_pid_alive(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    /* "pid (comm) S ...": comm may hold spaces and parentheses. */
    const char *paren = strrchr(buf, ')');
    if (paren == NULL || paren[1] == '\0' || paren[2] == '\0')
        return false;
    char state = paren[2];
    return state != 'Z' && state != 'X';
}

bool harness_wait_pid_gone(pid_t pid, int timeout_ms)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    while (harness_pid_alive(pid)) {
        if (harness_now_ms() >= deadline)
            return false;
        sleep_ms(5);
    }
    return true;
}

const char *harness_pg_datadir(void)
{
    const char *env = getenv("PGWORK_TEST_PGDATA");
    if (env != NULL && env[0] != '\0')
        return env;
    const char *host = getenv("PGHOST");
    ck_assert_msg(host != NULL && host[0] == '/',
                  "harness: PGHOST is not a socket directory; set PGWORK_TEST_PGDATA");
    char *copy = keep_strdup(host);
    return harness_printf("%s/data", dirname(copy));
}

const char *harness_pg_socket_path(void)
{
    const char *host = getenv("PGHOST"), *port = getenv("PGPORT");
    ck_assert_msg(host != NULL && host[0] == '/', "harness: PGHOST is not a socket directory");
    return harness_printf("%s/.s.PGSQL.%s", host, port != NULL && port[0] ? port : "5432");
}

/* pg_ctl: $PGWORK_PG_BINDIR, else PostgreSQL 15's Debian path, else PATH. */
static const char *pg_ctl_path(void)
{
    const char *bindir = getenv("PGWORK_PG_BINDIR");
    if (bindir != NULL && bindir[0] != '\0')
        return harness_printf("%s/pg_ctl", bindir);
    if (access("/usr/lib/postgresql/15/bin/pg_ctl", X_OK) == 0)
        return "/usr/lib/postgresql/15/bin/pg_ctl";
    return "pg_ctl";
}

const char *harness_pg_logfile(void)
{
    char *copy = keep_strdup(harness_pg_datadir());
    return harness_printf("%s/log/postgresql.log", dirname(copy));
}

int64_t harness_pg_restart(const char *mode)
{
    const char *data = harness_pg_datadir();
    const char *logfile = harness_pg_logfile();
    struct stat st;
    ck_assert_msg(stat(data, &st) == 0, "harness: %s: %s", data, strerror(errno));
    /* PostgreSQL refuses to run as root: run pg_ctl as the data's owner. */
    const char *user = NULL;
    if (geteuid() == 0 && st.st_uid != 0) {
        struct passwd *pw = getpwuid(st.st_uid);
        ck_assert_msg(pw != NULL, "harness: no user owns %s", data);
        user = keep_strdup(pw->pw_name);
    }
    const char *pg_ctl = pg_ctl_path();
    const char *argv_user[] = {"runuser", "-u", user, "--", pg_ctl, "restart", "-D",    data,
                               "-m",      mode, "-w", "-t", "60",   "-l",      logfile, NULL};
    const char *const *argv = user != NULL ? argv_user : argv_user + 4;

    int64_t started = harness_now_ms();
    pid_t parent = getpid();
    pid_t pid = fork();
    ck_assert_msg(pid >= 0, "harness: fork: %s", strerror(errno));
    if (pid == 0) {
        child_prepare(parent, NULL);
        /* The server it starts must outlive the test process. */
        prctl(PR_SET_PDEATHSIG, 0);
        setsid();
        if (chdir("/") != 0)
            _exit(127);
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, STDIN_FILENO);
            dup2(devnull, STDOUT_FILENO);
        }
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "harness: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        ck_assert_msg(errno == EINTR, "harness: waitpid: %s", strerror(errno));
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "harness: pg_ctl restart -m %s failed (status 0x%x); see %s", mode,
                  (unsigned)status, logfile);
    return harness_now_ms() - started;
}

const char *harness_tools_dir(void)
{
    const char *env = getenv("PGWORK_TEST_TOOLS");
    if (env != NULL && env[0] != '\0')
        return env;
    char *copy = keep_strdup(harness_pgwork_bin());
    return harness_printf("%s/tests/tools", dirname(copy));
}

/* The next line the proxy writes on its stdout (without the newline), or
 * NULL after timeout_ms or at EOF. Reads a byte at a time: a line never
 * runs into the next one. */
static const char *proxy_read_line(struct harness_proxy *proxy, int timeout_ms)
{
    char buf[64];
    size_t len = 0;
    int64_t deadline = harness_now_ms() + timeout_ms;
    while (len < sizeof(buf) - 1) {
        int64_t left = deadline - harness_now_ms();
        if (left <= 0)
            return NULL;
        struct pollfd pfd = {.fd = proxy->ack_fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)left) <= 0)
            continue;
        char c;
        if (read(proxy->ack_fd, &c, 1) != 1)
            return NULL;
        if (c == '\n')
            break;
        buf[len++] = c;
    }
    buf[len] = '\0';
    return harness_printf("%s", buf);
}

struct harness_proxy *harness_proxy_start(const char *target)
{
    ck_assert_msg(proxy_count < HARNESS_MAX_PROXIES, "harness: too many proxies");
    const char *bin = harness_printf("%s/tcpproxy", harness_tools_dir());
    ck_assert_msg(access(bin, X_OK) == 0, "harness: %s not built (make %s)", bin, bin);
    int out[2];
    ck_assert(pipe2(out, O_CLOEXEC) == 0);
    pid_t parent = getpid();
    pid_t pid = fork();
    ck_assert_msg(pid >= 0, "harness: fork: %s", strerror(errno));
    if (pid == 0) {
        child_prepare(parent, NULL);
        dup2(out[1], STDOUT_FILENO);
        execl(bin, bin, target, (char *)NULL);
        fprintf(stderr, "harness: exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    close(out[1]);
    struct harness_proxy *proxy = keep(calloc(1, sizeof(*proxy)));
    proxy->pid = pid;
    proxies[proxy_count++] = proxy;

    /* It prints its port, then one line per signal it acts on. */
    proxy->ack_fd = out[0];
    const char *line = proxy_read_line(proxy, 5000);
    proxy->port = line ? atoi(line) : 0;
    ck_assert_msg(proxy->port > 0, "harness: tcpproxy %s printed no port", target);
    return proxy;
}

int harness_proxy_blackhole(struct harness_proxy *proxy)
{
    ck_assert_int_eq(kill(proxy->pid, SIGUSR1), 0);
    /* The signal only asks: wait for the proxy to say it has stopped
     * forwarding, or a test could measure a drop that never happened. */
    const char *line = proxy_read_line(proxy, 5000);
    ck_assert_msg(line != NULL && strncmp(line, "usr1 ", 5) == 0,
                  "harness: tcpproxy did not confirm the black hole within 5 s (got %s)",
                  line ? line : "nothing");
    return atoi(line + 5);
}

int harness_jq_file(const char *in_path, const char *const *args, const char **out)
{
    static int calls;
    const char *out_path = harness_printf("%s/jq.%d.out", harness_tmpdir(), ++calls);
    int n = 0;
    while (args[n])
        n++;
    const char **argv = calloc((size_t)n + 2, sizeof(*argv));
    ck_assert_ptr_nonnull(argv);
    argv[0] = "jq";
    memcpy(argv + 1, args, (size_t)n * sizeof(*argv));

    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int in = open(in_path, O_RDONLY);
        int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (in < 0 || o < 0)
            _exit(126);
        dup2(in, STDIN_FILENO);
        dup2(o, STDOUT_FILENO);
        execvp("jq", (char *const *)argv);
        fprintf(stderr, "exec jq: %s\n", strerror(errno));
        _exit(127);
    }
    free(argv);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        ck_assert_int_eq(errno, EINTR);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) != 127, "jq did not run");
    if (out != NULL)
        *out = harness_read_file(out_path);
    return WEXITSTATUS(status);
}

/* --- PgBouncer ------------------------------------------------------------ */

#define HARNESS_MAX_BOUNCERS 4

static struct harness_pgbouncer *bouncers[HARNESS_MAX_BOUNCERS];
static int bouncer_count;

/* Stop it by pid: SIGTERM is PgBouncer's immediate shutdown; SIGKILL if it
 * lingers. Then remove its directory (outside the test's, see below). */
static void bouncer_stop(struct harness_pgbouncer *b)
{
    if (b->pid > 0) {
        kill(b->pid, SIGTERM);
        int64_t deadline = harness_now_ms() + 5000;
        while (waitpid(b->pid, NULL, WNOHANG) == 0) {
            if (harness_now_ms() > deadline) {
                kill(b->pid, SIGKILL);
                waitpid(b->pid, NULL, 0);
                break;
            }
            sleep_ms(10);
        }
        b->pid = 0;
    }
    if (b->dir != NULL)
        nftw(b->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void bouncers_teardown(void)
{
    for (int i = 0; i < bouncer_count; i++)
        bouncer_stop(bouncers[i]);
    bouncer_count = 0; /* the structs are in the arena */
}

const char *harness_pgbouncer_conninfo(const struct harness_pgbouncer *bouncer, const char *dbname)
{
    char buf[1024] = "";
    char port[16];
    snprintf(port, sizeof(port), "%d", bouncer->port);
    ck_assert(conninfo_add(buf, sizeof(buf), "host", "127.0.0.1") &&
              conninfo_add(buf, sizeof(buf), "port", port) &&
              conninfo_add(buf, sizeof(buf), "user", getenv("PGUSER")) &&
              conninfo_add(buf, sizeof(buf), "dbname", dbname));
    return harness_printf("%s", buf);
}

/* Start one PgBouncer on port; true once it answers, false if it exited
 * (the port was taken meanwhile, say). */
static bool bouncer_try_start(struct harness_pgbouncer *b, const char *pool_mode, int pool_size,
                              uid_t uid, gid_t gid)
{
    const char *host = getenv("PGHOST"), *pgport = getenv("PGPORT");
    const char *user = getenv("PGUSER");
    ck_assert_msg(host != NULL && host[0] == '/' && user != NULL,
                  "harness: PgBouncer needs PGHOST (a socket directory) and PGUSER");
    const char *ini = harness_printf("%s/pgbouncer.ini", b->dir);
    harness_write_file(harness_printf("%s/users.txt", b->dir),
                       harness_printf("\"%s\" \"\"\n", user));
    harness_write_file(ini, harness_printf("[databases]\n"
                                           "* = host=%s port=%s\n"
                                           "[pgbouncer]\n"
                                           "listen_addr = 127.0.0.1\n"
                                           "listen_port = %d\n"
                                           "unix_socket_dir =\n"
                                           "auth_type = trust\n"
                                           "auth_file = %s/users.txt\n"
                                           "admin_users = %s\n"
                                           "pool_mode = %s\n"
                                           "default_pool_size = %d\n"
                                           "max_client_conn = 200\n"
                                           "log_connections = 0\n"
                                           "log_disconnections = 0\n",
                                           host, pgport != NULL ? pgport : "5432", b->port, b->dir,
                                           user, pool_mode, pool_size));
    if (geteuid() == 0) {
        ck_assert(chown(ini, uid, gid) == 0 &&
                  chown(harness_printf("%s/users.txt", b->dir), uid, gid) == 0);
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    ck_assert_msg(pid >= 0, "harness: fork: %s", strerror(errno));
    if (pid == 0) {
        child_prepare(parent, NULL);
        int devnull = open("/dev/null", O_RDONLY);
        int log = open(b->log_path, O_WRONLY | O_APPEND | O_CREAT, 0644);
        if (devnull < 0 || log < 0 || chdir("/") != 0)
            _exit(127);
        dup2(devnull, STDIN_FILENO);
        dup2(log, STDOUT_FILENO);
        dup2(log, STDERR_FILENO);
        if (geteuid() == 0) {
            /* PgBouncer refuses to run as root. Changing credentials
             * clears the parent-death signal: set it again. */
            if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0)
                _exit(126);
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(127);
        }
        execl("/usr/sbin/pgbouncer", "pgbouncer", ini, (char *)NULL);
        fprintf(stderr, "harness: exec /usr/sbin/pgbouncer: %s\n", strerror(errno));
        _exit(127);
    }
    b->pid = pid;
    const char *conninfo = harness_pgbouncer_conninfo(b, "pgbouncer");
    int64_t deadline = harness_now_ms() + 10000;
    while (harness_now_ms() < deadline) {
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            b->pid = 0;
            return false;
        }
        if (PQping(conninfo) == PQPING_OK)
            return true;
        sleep_ms(20);
    }
    ck_abort_msg("harness: PgBouncer did not answer within 10 s; see %s", b->log_path);
    return false;
}

struct harness_pgbouncer *harness_pgbouncer_start(const char *pool_mode, int pool_size)
{
    ck_assert_msg(access("/usr/sbin/pgbouncer", X_OK) == 0,
                  "harness: /usr/sbin/pgbouncer missing (sh scripts/deps.sh installs it)");
    ck_assert_msg(bouncer_count < HARNESS_MAX_BOUNCERS, "harness: too many PgBouncers");
    struct harness_pgbouncer *b = keep(calloc(1, sizeof(*b)));
    /* Under /tmp, not in the test's private directory: as root the bouncer
     * runs as the cluster's owner, who must read its files. */
    char *dir = keep_strdup("/tmp/pgwork-bouncer.XXXXXX");
    ck_assert_msg(mkdtemp(dir) != NULL, "harness: mkdtemp: %s", strerror(errno));
    b->dir = dir;
    b->log_path = harness_printf("%s/pgbouncer.log", dir);
    bouncers[bouncer_count++] = b;
    uid_t uid = geteuid();
    gid_t gid = getegid();
    if (geteuid() == 0) {
        struct stat st;
        const char *data = harness_pg_datadir();
        ck_assert_msg(stat(data, &st) == 0, "harness: %s: %s", data, strerror(errno));
        ck_assert_msg(st.st_uid != 0, "harness: the cluster in %s belongs to root", data);
        uid = st.st_uid;
        gid = st.st_gid;
        ck_assert(chown(dir, uid, gid) == 0);
    }
    for (int attempt = 0; attempt < 5; attempt++) {
        b->port = harness_free_port();
        if (bouncer_try_start(b, pool_mode, pool_size, uid, gid))
            return b;
    }
    ck_abort_msg("harness: PgBouncer would not start; see %s", b->log_path);
    return NULL;
}

void harness_pgbouncer_admin(const struct harness_pgbouncer *bouncer, const char *command)
{
    PGconn *conn = PQconnectdb(harness_pgbouncer_conninfo(bouncer, "pgbouncer"));
    ck_assert_msg(PQstatus(conn) == CONNECTION_OK, "harness: PgBouncer admin console: %s",
                  PQerrorMessage(conn));
    PGresult *res = PQexec(conn, command);
    ExecStatusType status = PQresultStatus(res);
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", PQerrorMessage(conn));
    PQclear(res);
    PQfinish(conn);
    ck_assert_msg(status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK,
                  "harness: PgBouncer admin %s: %s", command, msg);
}

int64_t harness_pgbouncer_pool(const struct harness_pgbouncer *bouncer, const char *dbname,
                               const char *column)
{
    PGconn *conn = PQconnectdb(harness_pgbouncer_conninfo(bouncer, "pgbouncer"));
    ck_assert_msg(PQstatus(conn) == CONNECTION_OK, "harness: PgBouncer admin console: %s",
                  PQerrorMessage(conn));
    PGresult *res = PQexec(conn, "SHOW POOLS");
    ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "harness: SHOW POOLS: %s",
                  PQerrorMessage(conn));
    int db = PQfnumber(res, "database"), col = PQfnumber(res, column);
    ck_assert_msg(db >= 0 && col >= 0, "harness: SHOW POOLS has no column %s", column);
    int64_t value = 0;
    for (int i = 0; i < PQntuples(res); i++) {
        if (strcmp(PQgetvalue(res, i, db), dbname) == 0)
            value = strtoll(PQgetvalue(res, i, col), NULL, 10);
    }
    PQclear(res);
    PQfinish(conn);
    return value;
}
