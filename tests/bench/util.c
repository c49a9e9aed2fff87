/*
 * util.c — what every measurement of the benchmark needs: clocks, libpq
 * shortcuts that die on error (a benchmark that half works measures
 * nothing), percentiles, child processes that die with us, and pgwork
 * supervisors started on a config text.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t mono_ms(void)
{
    return mono_us() / 1000;
}

void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* --- libpq ------------------------------------------------------------- */

PGconn *db_connect(const char *dbname)
{
    const char *keys[] = {"dbname", "application_name", NULL};
    const char *values[] = {dbname, "pgwork bench", NULL};
    PGconn *conn = PQconnectdbParams(keys, values, 1);
    if (PQstatus(conn) != CONNECTION_OK)
        die("cannot connect to %s: %s", dbname, PQerrorMessage(conn));
    return conn;
}

void db_exec(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        die("%s: %s", sql, PQerrorMessage(conn));
    PQclear(res);
}

static PGresult *db_one(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) < 1)
        die("%s: %s (%d rows)", sql, PQerrorMessage(conn), PQntuples(res));
    return res;
}

int64_t db_int(PGconn *conn, const char *sql)
{
    PGresult *res = db_one(conn, sql);
    int64_t v = PQgetisnull(res, 0, 0) ? 0 : strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return v;
}

double db_double(PGconn *conn, const char *sql)
{
    PGresult *res = db_one(conn, sql);
    double v = PQgetisnull(res, 0, 0) ? NAN : strtod(PQgetvalue(res, 0, 0), NULL);
    PQclear(res);
    return v;
}

void db_create(const char *dbname)
{
    PGconn *conn = db_connect("postgres");
    db_exec(conn, "SET client_min_messages = warning"); /* no "does not exist, skipping" */
    char sql[256];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", dbname);
    db_exec(conn, sql);
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", dbname);
    db_exec(conn, sql);
    PQfinish(conn);

    char url[128];
    snprintf(url, sizeof(url), "PGWORK_DATABASE_URL=dbname=%s", dbname);
    const char *env[] = {url, NULL};
    char log[600];
    snprintf(log, sizeof(log), "%s/migrate-%s.log", bench.tmpdir, dbname);
    char *argv[] = {(char *)bench.pgwork_bin, "migrate", NULL};
    if (reap(spawn(argv, env, log, NULL), 60000) != 0)
        die("pgwork migrate on %s failed (see %s)", dbname, log);
}

/* --- statistics -------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double stat_percentile(double *v, int n, double p)
{
    if (n <= 0)
        return NAN;
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    /* Nearest rank: the smallest value with at least p % at or below it. */
    int rank = (int)ceil(p / 100.0 * n);
    if (rank < 1)
        rank = 1;
    return v[rank - 1];
}

double stat_median(double *v, int n)
{
    if (n <= 0)
        return NAN;
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* --- processes --------------------------------------------------------- */

extern char **environ;

pid_t spawn(char *const argv[], const char *const *env, const char *log_path, const char *out_path)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid > 0)
        return pid;
    /* If the benchmark dies, so does what it started (bench.sh then
     * removes the cluster). */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0)
        dup2(null, 0);
    if (log_path != NULL) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd < 0)
            _exit(127);
        dup2(fd, 1);
        dup2(fd, 2);
    }
    if (out_path != NULL) {
        int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0)
            _exit(127);
        dup2(fd, 1);
    }
    for (const char *const *e = env; e != NULL && *e != NULL; e++)
        putenv((char *)*e);
    execvp(argv[0], argv);
    fprintf(stderr, "bench: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

int reap(pid_t pid, int timeout_ms)
{
    int64_t deadline = mono_ms() + timeout_ms;
    for (;;) {
        int status;
        pid_t rc = waitpid(pid, &status, WNOHANG);
        if (rc == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (rc < 0 && errno != EINTR)
            return -1;
        if (mono_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        sleep_ms(10);
    }
}

const char *write_file(const char *name, const char *text)
{
    static char path[8][600];
    static int next;
    char *p = path[next++ % 8];
    snprintf(p, 600, "%s/%s", bench.tmpdir, name);
    FILE *f = fopen(p, "w");
    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0)
        die("cannot write %s: %s", p, strerror(errno));
    return p;
}

/* --- supervisors --------------------------------------------------------- */

void sup_start(struct sup *sup, const char *dbname, const char *name, const char *config_text)
{
    char file[128];
    snprintf(file, sizeof(file), "%s.conf", name);
    snprintf(sup->config_path, sizeof(sup->config_path), "%s", write_file(file, config_text));
    snprintf(sup->log_path, sizeof(sup->log_path), "%s/%s.log", bench.tmpdir, name);
    unlink(sup->log_path);
    char url[128];
    snprintf(url, sizeof(url), "PGWORK_DATABASE_URL=dbname=%s", dbname);
    const char *env[] = {url, NULL};
    char *argv[] = {(char *)bench.pgwork_bin, "-c", sup->config_path, "run", NULL};
    sup->pid = spawn(argv, env, sup->log_path, NULL);
    /* Listening: from its log at level info, else from the server's view
     * (its listener connection idle after LISTEN; the sweep that follows
     * LISTEN finds whatever was inserted before it). */
    if (strstr(config_text, "level = \"warn\"") == NULL) {
        if (!sup_wait_log(sup, "listening on channel", 1, 20000))
            die("supervisor %s did not start listening (see %s)", name, sup->log_path);
        return;
    }
    PGconn *conn = db_connect(dbname);
    int64_t deadline = mono_ms() + 20000;
    while (db_int(conn, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND application_name = 'pgwork listener' AND state = 'idle'") < 1) {
        if (mono_ms() > deadline)
            die("supervisor %s: no listener connection (see %s)", name, sup->log_path);
        sleep_ms(20);
    }
    PQfinish(conn);
}

static int count_in_file(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    int count = 0;
    char line[8192];
    while (fgets(line, sizeof(line), f) != NULL)
        if (strstr(line, needle) != NULL)
            count++;
    fclose(f);
    return count;
}

bool sup_wait_log(struct sup *sup, const char *needle, int count, int timeout_ms)
{
    int64_t deadline = mono_ms() + timeout_ms;
    while (count_in_file(sup->log_path, needle) < count) {
        int status;
        if (waitpid(sup->pid, &status, WNOHANG) == sup->pid)
            die("supervisor exited early (see %s)", sup->log_path);
        if (mono_ms() > deadline)
            return false;
        sleep_ms(20);
    }
    return true;
}

void sup_wait_workers(struct sup *sup, PGconn *conn, int count)
{
    int64_t deadline = mono_ms() + 20000;
    while (db_int(conn, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND application_name LIKE 'pgwork worker%' AND state = 'idle'") < count) {
        if (mono_ms() > deadline)
            die("%d workers not idle in time (see %s)", count, sup->log_path);
        sleep_ms(20);
    }
}

void sup_stop(struct sup *sup)
{
    if (sup->pid <= 0)
        return;
    kill(sup->pid, SIGTERM);
    int rc = reap(sup->pid, 40000);
    sup->pid = 0;
    if (rc != 0)
        die("supervisor exited with %d on SIGTERM (see %s)", rc, sup->log_path);
}

/* --- processes ------------------------------------------------------------- */

/* Fields after the command name in /proc/PID/stat (the name may hold
 * spaces); NULL if unreadable. */
static const char *proc_stat_fields(pid_t pid, char *line, size_t len)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    const char *fields = NULL;
    if (fgets(line, (int)len, f) != NULL) {
        const char *after = strrchr(line, ')');
        if (after != NULL && after[1] == ' ')
            fields = after + 2;
    }
    fclose(f);
    return fields;
}

int children_of(pid_t parent, pid_t *out, int max)
{
    DIR *proc = opendir("/proc");
    if (proc == NULL)
        die("cannot read /proc");
    int n = 0;
    struct dirent *e;
    while ((e = readdir(proc)) != NULL && n < max) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        pid_t pid = (pid_t)atoi(e->d_name);
        char line[1024];
        const char *fields = proc_stat_fields(pid, line, sizeof(line));
        int ppid = 0;
        if (fields != NULL && sscanf(fields, "%*c %d", &ppid) == 1 && ppid == parent)
            out[n++] = pid;
    }
    closedir(proc);
    return n;
}

double cpu_seconds(pid_t pid)
{
    char line[1024];
    const char *fields = proc_stat_fields(pid, line, sizeof(line));
    unsigned long utime = 0, stime = 0;
    /* state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (fields == NULL ||
        sscanf(fields, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return 0;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* --- bursts ------------------------------------------------------------------ */

void burst_run(PGconn *conn, const char *insert_sql, const struct sup *sup, struct burst *out)
{
    int64_t before = db_int(conn, "SELECT coalesce(max(id), 0) FROM pgwork.tasks");
    db_exec(conn, insert_sql);
    int64_t committed = wall_us();
    int64_t deadline = mono_ms() + 600000;
    /* Two index probes (partial indexes of pending and running rows). */
    while (db_int(conn,
                  "SELECT (EXISTS (SELECT 1 FROM pgwork.tasks WHERE state = 'pending')"
                  " OR EXISTS (SELECT 1 FROM pgwork.tasks WHERE state = 'running'))::int") != 0) {
        if (mono_ms() > deadline)
            die("burst not done within 10 minutes (see %s)", sup->log_path);
        sleep_ms(20);
    }
    /* started_at is the claim's now(), finished_at the done's: the first
     * claim's transaction start to the last completion's. */
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT (extract(epoch FROM min(started_at)) * 1000000)::bigint,"
             " (extract(epoch FROM max(finished_at)) * 1000000)::bigint FROM pgwork.tasks"
             " WHERE id > %" PRId64,
             before);
    PGresult *res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQgetisnull(res, 0, 0) ||
        PQgetisnull(res, 0, 1))
        die("burst: no timestamps (kept done tasks?): %s", PQerrorMessage(conn));
    int64_t first = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    int64_t last = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    PQclear(res);
    out->before_id = before;
    out->window_s = (double)(last - first) / 1e6;
    out->from_commit_s = (double)(last - committed) / 1e6;
}

double burst_rate(int tasks, const struct burst *b)
{
    return tasks / b->window_s;
}

/* --- pgbench ----------------------------------------------------------------- */

double pgbench_tps(const char *dbname, const char *script, int clients, const char *limit_flag,
                   int limit, const char *pgoptions, const char *name)
{
    char n[16], lim[16], out[600], log[600], opt[160], jobs[16];
    snprintf(n, sizeof(n), "%d", clients);
    snprintf(jobs, sizeof(jobs), "%d", clients < 2 ? clients : 2);
    snprintf(lim, sizeof(lim), "%d", limit);
    snprintf(out, sizeof(out), "%s/pgbench-%s.out", bench.tmpdir, name);
    snprintf(log, sizeof(log), "%s/pgbench-%s.log", bench.tmpdir, name);
    snprintf(opt, sizeof(opt), "PGOPTIONS=%s", pgoptions != NULL ? pgoptions : "");
    const char *env[] = {opt, NULL};
    char *argv[] = {
        "pgbench", "-n",           "-c",           n,   "-j", jobs, (char *)limit_flag, lim,
        "-f",      (char *)script, (char *)dbname, NULL};
    int rc = reap(spawn(argv, env, log, out), 600000);
    if (rc != 0)
        die("pgbench failed (%d), see %s", rc, log);
    FILE *f = fopen(out, "r");
    if (f == NULL)
        die("no pgbench output (%s)", out);
    char line[512];
    double tps = NAN;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "tps = ", 6) == 0)
            tps = strtod(line + 6, NULL);
    fclose(f);
    if (isnan(tps))
        die("pgbench printed no tps (see %s)", out);
    return tps;
}
