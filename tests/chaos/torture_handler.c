/*
 * torture_handler.c — the exec and coprocess handler of `make torture`.
 *
 *   torture_handler exec RUNS        one task: payload on stdin,
 *                                    PGWORK_TASK_ID / PGWORK_ATTEMPT in the
 *                                    environment; exit 0 = success
 *   torture_handler coprocess RUNS   a task line in, a result line out
 *
 * The payload says what to do: {"ms": N, "fail": MASK, "poison": P}. It
 * sleeps N ms, then fails when bit (attempt - 1) of MASK is set; P is
 * "none", "kill_worker" (SIGKILL its parent, the pgwork worker) or "hang"
 * (sleep far past any timeout). Each success appends "<task id>\n" to RUNS
 * (one write, O_APPEND) before it is reported, so the driver can tell a
 * task marked done that never ran.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *runs_path;

/* The number after "key": in text, or def. */
static long field_long(const char *text, const char *key, long def)
{
    char pattern[32];
    snprintf(pattern, sizeof(pattern), "\"%s\":", key);
    const char *p = strstr(text, pattern);
    return p != NULL ? strtol(p + strlen(pattern), NULL, 10) : def;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Record that task id starts now: "<id>\t<unix ms>" in <runs>.starts
 * (the cancel invariant: no run starts long after a cancel). */
static void record_start(long id)
{
    char path[4096], line[64];
    snprintf(path, sizeof(path), "%s.starts", runs_path);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int len = snprintf(line, sizeof(line), "%ld\t%lld\n", id,
                       (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
        if (write(fd, line, (size_t)len) != len)
            fprintf(stderr, "torture: cannot record a start\n");
        close(fd);
    }
}

/* Run one task; 0 on success. */
static int run_task(long id, long attempt, const char *payload)
{
    record_start(id);
    if (strstr(payload, "\"kill_worker\"") != NULL) {
        kill(getppid(), SIGKILL);
        sleep_ms(1000);
        return 1;
    }
    if (strstr(payload, "\"hang\"") != NULL)
        sleep_ms(3600 * 1000);
    long ms = field_long(payload, "ms", 0);
    if (ms > 0)
        sleep_ms(ms);
    long mask = field_long(payload, "fail", 0);
    if (attempt >= 1 && attempt <= 30 && (mask >> (attempt - 1)) & 1)
        return 1;
    char line[32];
    int len = snprintf(line, sizeof(line), "%ld\n", id);
    int fd = open(runs_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, line, (size_t)len) != len)
        return 1;
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: torture_handler exec|coprocess RUNS\n");
        return 2;
    }
    runs_path = argv[2];
    if (strcmp(argv[1], "exec") == 0) {
        char payload[4096];
        size_t n = fread(payload, 1, sizeof(payload) - 1, stdin);
        payload[n] = '\0';
        const char *id = getenv("PGWORK_TASK_ID"), *attempt = getenv("PGWORK_ATTEMPT");
        int rc = run_task(id ? atol(id) : 0, attempt ? atol(attempt) : 0, payload);
        if (rc != 0)
            fprintf(stderr, "torture: planned failure\n");
        return rc;
    }
    if (strcmp(argv[1], "coprocess") != 0)
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    char line[8192];
    while (fgets(line, sizeof(line), stdin) != NULL) {
        /* {"id":…,"attempt":…,"queue":…,"payload":{…}}: the payload is last. */
        long id = field_long(line, "id", 0), attempt = field_long(line, "attempt", 0);
        const char *payload = strstr(line, "\"payload\":");
        int rc = run_task(id, attempt, payload != NULL ? payload : "");
        if (rc == 0)
            printf("{\"id\":%ld,\"ok\":true}\n", id);
        else
            printf("{\"id\":%ld,\"ok\":false,\"error\":\"torture: planned failure\"}\n", id);
    }
    return 0;
}
