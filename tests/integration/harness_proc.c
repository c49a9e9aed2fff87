/*
 * harness_proc.c — see harness.h, "files and processes": the small file and
 * /proc helpers every integration suite wanted (a handler script, a file a
 * handler writes, a process's parent or child, a free port). Waits poll
 * with a deadline; nothing here sleeps in place of an event.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

void harness_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    ck_assert_int_ge(fputs(text, f), 0);
    ck_assert_int_eq(fclose(f), 0);
}

const char *harness_write_script(const char *name, const char *body)
{
    const char *path = harness_printf("%s/%s", harness_tmpdir(), name);
    harness_write_file(path, harness_printf("#!/bin/sh\n%s\n", body));
    ck_assert_int_eq(chmod(path, 0755), 0);
    return path;
}

bool harness_wait_file(const char *path, int timeout_ms)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    while (access(path, F_OK) != 0) {
        if (harness_now_ms() > deadline)
            return false;
        usleep(5000);
    }
    return true;
}

const char *harness_read_line(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    char buf[512] = {0};
    const char *line = fgets(buf, sizeof(buf), f) != NULL ? buf : NULL;
    fclose(f);
    if (line == NULL)
        return NULL;
    buf[strcspn(buf, "\n")] = '\0';
    return harness_printf("%s", buf);
}

pid_t harness_read_pid(const char *path)
{
    ck_assert_msg(harness_wait_file(path, 15000), "%s never appeared", path);
    /* The file may exist before its line is written. */
    int64_t deadline = harness_now_ms() + 2000;
    for (;;) {
        const char *line = harness_read_line(path);
        if (line != NULL && atoi(line) > 0)
            return (pid_t)atoi(line);
        ck_assert_msg(harness_now_ms() < deadline, "%s holds no pid", path);
        usleep(5000);
    }
}

pid_t harness_parent_of(pid_t pid, char *state)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    /* "pid (comm) S ppid ...": comm may hold spaces and parentheses. */
    const char *p = strrchr(buf, ')');
    char st = '?';
    int ppid = 0;
    if (p == NULL || sscanf(p + 2, "%c %d", &st, &ppid) != 2)
        return 0;
    if (state != NULL)
        *state = st;
    return (pid_t)ppid;
}

int harness_children(pid_t pid, pid_t *first)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    int count = 0, one;
    while (fscanf(f, "%d", &one) == 1) {
        if (count == 0 && first != NULL)
            *first = (pid_t)one;
        count++;
    }
    fclose(f);
    return count;
}

pid_t harness_child_of(pid_t pid, int timeout_ms)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    for (;;) {
        pid_t child = 0;
        if (harness_children(pid, &child) > 0 && child > 0)
            return child;
        ck_assert_msg(harness_now_ms() < deadline, "no child under pid %d", (int)pid);
        usleep(5000);
    }
}

int harness_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    socklen_t len = sizeof(addr);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
    close(fd);
    return ntohs(addr.sin_port);
}
