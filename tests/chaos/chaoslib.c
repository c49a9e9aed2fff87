/*
 * chaoslib.c — the pieces `make chaos` (chaos.c) and `make torture`
 * (torture.c) share; API and contract in chaoslib.h.
 *
 * Thread-safety: messages take a lock; chaos_spawn prepares argv and the
 * environment before fork and its child calls only async-signal-safe
 * functions, so torture's threads may start processes at any time. The
 * other helpers keep no state.
 */
#include "tests/chaos/chaoslib.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static pthread_mutex_t say_lock = PTHREAD_MUTEX_INITIALIZER;
static char say_prefix[128] = "chaos";
static const char *work_dir;
static const char *pgwork_bin;

void chaos_init(const char *prefix, const char *dir, const char *bin)
{
    chaos_set_prefix(prefix);
    work_dir = dir;
    pgwork_bin = bin;
}

void chaos_set_prefix(const char *prefix)
{
    pthread_mutex_lock(&say_lock);
    snprintf(say_prefix, sizeof(say_prefix), "%s", prefix);
    pthread_mutex_unlock(&say_lock);
}

const char *chaos_dir(void)
{
    return work_dir;
}

const char *chaos_bin(void)
{
    return pgwork_bin;
}

int64_t chaos_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void chaos_sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

uint64_t chaos_rng(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

static void vsay(const char *what, const char *fmt, va_list ap)
{
    pthread_mutex_lock(&say_lock);
    fprintf(stderr, "%s: %s", say_prefix, what);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    pthread_mutex_unlock(&say_lock);
}

void chaos_say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay("", fmt, ap);
    va_end(ap);
}

void chaos_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay("fatal: ", fmt, ap);
    va_end(ap);
    exit(2);
}

char *chaos_xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        chaos_die("out of memory");
    va_end(ap);
    return s;
}

/* --- the database --------------------------------------------------------- */

char *chaos_conninfo_for(const char *dbname)
{
    const char *host = getenv("PGHOST"), *port = getenv("PGPORT"), *user = getenv("PGUSER");
    return chaos_xasprintf("host='%s' port='%s' user='%s' dbname='%s'", host ? host : "",
                           port ? port : "5432", user ? user : "postgres", dbname);
}

PGconn *chaos_connect_db(const char *conninfo)
{
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK)
        chaos_die("cannot connect (%s): %s", conninfo, PQerrorMessage(c));
    return c;
}

PGconn *chaos_connect_retry(const char *conninfo, int timeout_ms)
{
    int64_t deadline = chaos_now_ms() + timeout_ms;
    for (;;) {
        PGconn *c = PQconnectdb(conninfo);
        if (PQstatus(c) == CONNECTION_OK)
            return c;
        PQfinish(c);
        if (chaos_now_ms() > deadline)
            return NULL;
        chaos_sleep_ms(100);
    }
}

void chaos_exec_sql(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        chaos_die("%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
}

int64_t chaos_query_int(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    int64_t v = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
        v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

int64_t chaos_count_state(PGconn *c, const char *state)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM pgwork.tasks WHERE state = '%s'", state);
    return chaos_query_int(c, sql);
}

char *chaos_make_database(const char *name, PGconn **conn)
{
    char *admin_info = chaos_conninfo_for("postgres");
    PGconn *admin = chaos_connect_db(admin_info);
    free(admin_info);
    char *sql = chaos_xasprintf("DROP DATABASE IF EXISTS \"c_%s\" WITH (FORCE)", name);
    chaos_exec_sql(admin, sql);
    free(sql);
    sql = chaos_xasprintf("CREATE DATABASE \"c_%s\"", name);
    chaos_exec_sql(admin, sql);
    free(sql);
    PQfinish(admin);
    char *dbname = chaos_xasprintf("c_%s", name);
    char *conninfo = chaos_conninfo_for(dbname);
    free(dbname);

    const char *argv[] = {pgwork_bin, "migrate", NULL};
    struct chaos_spawn_opts opts = {.database_url = conninfo};
    pid_t pid = chaos_spawn(argv, &opts);
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0)
        chaos_die("pgwork migrate failed on %s", conninfo);
    *conn = chaos_connect_db(conninfo);
    chaos_exec_sql(*conn,
                   "CREATE TABLE results (task bigint, at timestamptz DEFAULT clock_timestamp())");
    return conninfo;
}

/* --- the cluster ---------------------------------------------------------- */

static char *pg_datadir(void)
{
    const char *env = getenv("PGWORK_TEST_PGDATA");
    if (env != NULL && env[0] != '\0')
        return strdup(env);
    char *host = strdup(getenv("PGHOST") ? getenv("PGHOST") : "/nonexistent/socket");
    char *data = chaos_xasprintf("%s/data", dirname(host));
    free(host);
    return data;
}

char *chaos_pg_socket(void)
{
    const char *host = getenv("PGHOST"), *port = getenv("PGPORT");
    return chaos_xasprintf("%s/.s.PGSQL.%s", host ? host : "/tmp", port ? port : "5432");
}

int chaos_pg_ctl(const char *action, const char *mode)
{
    char *data = pg_datadir();
    char *copy = strdup(data);
    char *logfile = chaos_xasprintf("%s/log/postgresql.log", dirname(copy));
    free(copy);
    struct stat st;
    if (stat(data, &st) != 0)
        chaos_die("%s: %s", data, strerror(errno));
    char user[64] = "";
    if (geteuid() == 0 && st.st_uid != 0) {
        struct passwd pwbuf, *pw = NULL;
        char buf[1024];
        if (getpwuid_r(st.st_uid, &pwbuf, buf, sizeof(buf), &pw) != 0 || pw == NULL)
            chaos_die("no user owns %s", data);
        snprintf(user, sizeof(user), "%s", pw->pw_name);
    }
    const char *pgctl = access("/usr/lib/postgresql/15/bin/pg_ctl", X_OK) == 0
                            ? "/usr/lib/postgresql/15/bin/pg_ctl"
                            : "pg_ctl";
    const char *argv[20];
    int n = 0;
    if (user[0]) {
        argv[n++] = "runuser";
        argv[n++] = "-u";
        argv[n++] = user;
        argv[n++] = "--";
    }
    argv[n++] = pgctl;
    argv[n++] = action;
    argv[n++] = "-D";
    argv[n++] = data;
    argv[n++] = "-w";
    argv[n++] = "-t";
    argv[n++] = "60";
    if (mode != NULL) {
        argv[n++] = "-m";
        argv[n++] = mode;
    }
    if (strcmp(action, "stop") != 0) {
        argv[n++] = "-l";
        argv[n++] = logfile;
    }
    argv[n] = NULL;
    /* Its own session, from /: the server it starts must not belong to
     * the driver's session, nor keep a directory the postgres user cannot
     * enter as its cwd. */
    struct chaos_spawn_opts opts = {.new_session = true};
    pid_t pid = chaos_spawn(argv, &opts);
    int status = 0;
    bool ok =
        pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    free(data);
    free(logfile);
    return ok ? 0 : -1;
}

/* --- processes ------------------------------------------------------------ */

/* The environment for a child: ours without PGWORK_CONFIG and
 * PGWORK_DATABASE_URL, plus PGWORK_DATABASE_URL=url when given. */
static char **child_environ(const char *url)
{
    size_t n = 0;
    while (environ[n] != NULL)
        n++;
    char **env = calloc(n + 2, sizeof(char *));
    if (env == NULL)
        chaos_die("out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "PGWORK_CONFIG=", 14) != 0 &&
            strncmp(environ[i], "PGWORK_DATABASE_URL=", 20) != 0)
            env[k++] = environ[i];
    if (url != NULL)
        env[k++] = chaos_xasprintf("PGWORK_DATABASE_URL=%s", url);
    env[k] = NULL;
    return env;
}

/* argv[0] resolved on PATH before fork (execvpe may allocate). */
static char *resolve_program(const char *name)
{
    if (strchr(name, '/') != NULL)
        return strdup(name);
    const char *path = getenv("PATH");
    char *copy = strdup(path ? path : "/usr/bin:/bin");
    char *save = NULL;
    for (char *d = strtok_r(copy, ":", &save); d != NULL; d = strtok_r(NULL, ":", &save)) {
        char *candidate = chaos_xasprintf("%s/%s", d, name);
        if (access(candidate, X_OK) == 0) {
            free(copy);
            return candidate;
        }
        free(candidate);
    }
    free(copy);
    return strdup(name);
}

pid_t chaos_spawn(const char *const *argv, const struct chaos_spawn_opts *opts)
{
    char *program = resolve_program(argv[0]);
    char **env = child_environ(opts->database_url);
    int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (opts->truncate_log ? O_TRUNC : 0);
    int out = opts->log != NULL ? open(opts->log, flags, 0644) : open("/dev/null", O_WRONLY);
    int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (out < 0 || in < 0)
        chaos_die("%s: %s", opts->log ? opts->log : "/dev/null", strerror(errno));
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        if (opts->pdeathsig) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(127);
        }
        if (opts->new_session)
            setsid();
        /* Signals the driver blocks or ignores must not reach pgwork so. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        if (chdir(opts->new_session ? "/" : ".") != 0)
            _exit(127);
        dup2(in, STDIN_FILENO);
        dup2(out, STDOUT_FILENO);
        if (opts->log != NULL)
            dup2(out, STDERR_FILENO);
        execve(program, (char *const *)argv, env);
        _exit(127);
    }
    close(in);
    close(out);
    free(program);
    if (opts->database_url != NULL) {
        for (size_t i = 0; env[i] != NULL; i++)
            if (strncmp(env[i], "PGWORK_DATABASE_URL=", 20) == 0)
                free(env[i]);
    }
    free(env);
    return pid;
}

struct chaos_sup chaos_sup_start(const char *name, const char *config, const char *conninfo,
                                 const char *const *wrapper)
{
    struct chaos_sup s = {.log = chaos_xasprintf("%s/%s.log", work_dir, name)};
    const char *argv[32];
    int n = 0;
    for (int i = 0; wrapper != NULL && wrapper[i] != NULL && n < 24; i++)
        argv[n++] = wrapper[i];
    argv[n++] = pgwork_bin;
    argv[n++] = "-c";
    argv[n++] = config;
    argv[n++] = "run";
    argv[n] = NULL;
    struct chaos_spawn_opts opts = {
        .log = s.log, .truncate_log = true, .pdeathsig = true, .database_url = conninfo};
    s.pid = chaos_spawn(argv, &opts);
    if (s.pid < 0)
        chaos_die("fork: %s", strerror(errno));
    return s;
}

int chaos_sup_wait(struct chaos_sup *s, int timeout_ms)
{
    int64_t deadline = chaos_now_ms() + timeout_ms;
    for (;;) {
        int status;
        pid_t r = waitpid(s->pid, &status, WNOHANG);
        if (r == s->pid) {
            s->status = status;
            return status;
        }
        if (chaos_now_ms() > deadline) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &status, 0);
            s->status = -1;
            return -1;
        }
        chaos_sleep_ms(10);
    }
}

const char *chaos_exit_text(int status, char *buf, size_t len)
{
    if (status == -1)
        snprintf(buf, len, "did not exit");
    else if (WIFEXITED(status))
        snprintf(buf, len, "exit %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by signal %d", WTERMSIG(status));
    else
        snprintf(buf, len, "status 0x%x", (unsigned)status);
    return buf;
}

char *chaos_write_file(const char *name, const char *text)
{
    char *path = chaos_xasprintf("%s/%s", work_dir, name);
    char *tmp = chaos_xasprintf("%s.tmp", path);
    /* Written aside and renamed: a supervisor re-reading it on HUP never
     * sees half a file. */
    FILE *f = fopen(tmp, "w");
    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0 || rename(tmp, path) != 0)
        chaos_die("%s: %s", path, strerror(errno));
    free(tmp);
    return path;
}

size_t chaos_file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

bool chaos_file_contains(const char *path, size_t from, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    fseek(f, (long)from, SEEK_SET);
    char line[65536];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f) != NULL)
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

int chaos_count_in_file(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    char line[65536];
    int n = 0;
    while (fgets(line, sizeof(line), f) != NULL)
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

bool chaos_wait_log(const char *path, size_t from, const char *needle, int timeout_ms)
{
    int64_t deadline = chaos_now_ms() + timeout_ms;
    while (!chaos_file_contains(path, from, needle)) {
        if (chaos_now_ms() > deadline)
            return false;
        chaos_sleep_ms(10);
    }
    return true;
}

/* Fields of /proc/PID/stat after the command: state, ppid, pgrp, session. */
static bool proc_stat(pid_t pid, char *state, int *ppid, int *session)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t len = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (len <= 0)
        return false;
    buf[len] = '\0';
    const char *p = strrchr(buf, ')');
    int pgrp;
    return p != NULL && sscanf(p + 2, "%c %d %d %d", state, ppid, &pgrp, session) == 4;
}

/* Live processes whose ppid (by_session false) or session (true) is id. */
static int scan_proc(pid_t id, bool by_session, pid_t *out, int max)
{
    DIR *d = opendir("/proc");
    if (d == NULL)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < max) {
        pid_t pid = (pid_t)atoi(e->d_name);
        char state;
        int ppid, session;
        if (pid <= 0 || !proc_stat(pid, &state, &ppid, &session) || state == 'Z')
            continue;
        if ((by_session ? session : ppid) == id)
            out[n++] = pid;
    }
    closedir(d);
    return n;
}

int chaos_children_of(pid_t ppid, pid_t *out, int max)
{
    return scan_proc(ppid, false, out, max);
}

int chaos_session_members(pid_t sid, pid_t *out, int max)
{
    return scan_proc(sid, true, out, max);
}

int64_t chaos_cpu_ms(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (int64_t)(ut + st) * 1000 / sysconf(_SC_CLK_TCK);
}

/* --- the TCP proxy -------------------------------------------------------- */

/* One line from fd (byte by byte: nothing of the next line is consumed),
 * within timeout_ms. */
static bool proxy_line(int fd, char *line, size_t len, int timeout_ms)
{
    int64_t deadline = chaos_now_ms() + timeout_ms;
    size_t n = 0;
    while (n + 1 < len) {
        int64_t left = deadline - chaos_now_ms();
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            return false;
        char c;
        if (read(fd, &c, 1) != 1)
            return false;
        if (c == '\n')
            break;
        line[n++] = c;
    }
    line[n] = '\0';
    return true;
}

struct chaos_proxy chaos_proxy_start(const char *tcpproxy, const char *target, const char *log)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        chaos_die("pipe: %s", strerror(errno));
    int err = log != NULL ? open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644) : -1;
    struct chaos_proxy p = {0};
    pid_t parent = getpid();
    p.pid = fork();
    if (p.pid < 0)
        chaos_die("fork: %s", strerror(errno));
    if (p.pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        dup2(fds[1], STDOUT_FILENO);
        if (err >= 0)
            dup2(err, STDERR_FILENO);
        execl(tcpproxy, tcpproxy, target, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    if (err >= 0)
        close(err);
    p.out = fds[0];
    char line[64];
    p.port = proxy_line(p.out, line, sizeof(line), 10000) ? atoi(line) : 0;
    if (p.port <= 0)
        chaos_die("%s %s did not start", tcpproxy, target);
    return p;
}

int chaos_proxy_signal(struct chaos_proxy *proxy, int sig, int timeout_ms)
{
    if (kill(proxy->pid, sig) != 0)
        return -1;
    char line[64];
    if (!proxy_line(proxy->out, line, sizeof(line), timeout_ms))
        return -1;
    const char *n = strchr(line, ' ');
    return n != NULL ? atoi(n + 1) : 0;
}

int chaos_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(addr);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) != 0)
        chaos_die("no free port: %s", strerror(errno));
    close(fd);
    return ntohs(addr.sin_port);
}
