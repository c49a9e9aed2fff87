/*
 * child.h — shared by the handlers that run a program (exec, coprocess).
 */
#ifndef PGWORK_CHILD_H
#define PGWORK_CHILD_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The parent's ends of a program started by child_spawn (owned by the
 * caller: close the fds, reap the pid). */
struct child_process {
    pid_t pid;  /* also its process group */
    int pidfd;  /* readable when it exits; -1 where pidfd_open is missing */
    int in_fd;  /* its stdin, write end, non-blocking */
    int out_fd; /* its stdout (and stderr unless separate), read end, non-blocking */
    int err_fd; /* its stderr, read end, non-blocking; -1 unless separate */
};

/*
 * Start argv (envp as built by child_environ) in its own process group,
 * with stdin and stdout on pipes — stderr too, on its own pipe when
 * separate_stderr, else with stdout. Returns once exec has succeeded: 0,
 * or -1 with error filled (exec failing included; nothing left running).
 */
int child_spawn(char *const argv[], char *const envp[], bool separate_stderr,
                struct child_process *out, char *error, size_t errlen);

/*
 * In the forked child, before exec: own process group, PDEATHSIG (checked
 * against worker_pid), every signal disposition back to default and an
 * empty mask (the worker's survive exec otherwise, DESIGN §8), fds[0..2]
 * onto stdin/stdout/stderr, then execvpe(argv[0], argv, envp). On failure
 * writes errno to report_fd (close-on-exec: EOF there means exec worked)
 * and _exits 127. Never returns.
 */
void child_exec(char *const argv[], char *const envp[], const int fds[3], int report_fd,
                pid_t worker_pid) __attribute__((noreturn));

/*
 * A handler's environment, rebuilt rather than inherited (the worker's
 * holds PGWORK_DATABASE_URL, PGPASSWORD and friends): add[0..nadd) (the
 * PGWORK_* entries, "NAME=value"), then the worker's PATH (a default when
 * it has none) and HOME, then those of names[0..nnames) (a queue's `env`)
 * the worker has, each once, the first setting winning. A name
 * config_env_forbidden() refuses is never copied, whatever names holds.
 * A calloc'd, NULL-terminated array the caller frees (the strings are not
 * copied). NULL when out of memory.
 */
char **child_environ(char *const *names, size_t nnames, char *const *add, size_t nadd);

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
size_t child_utf8_len(const unsigned char *s, size_t n);

/* Make program output fit for a log line or last_error, in place: NUL and
 * invalid UTF-8 bytes become '?' (a text column rejects them). */
void child_sanitize_text(char *s, size_t n);

/* The fds a handler's wait loop polls, built anew each turn: an fd that is
 * closed (< 0) is simply not added. */
struct poll_set {
    struct pollfd fds[8];
    int count;
};

/* Add fd for events; its index, or -1 when fd < 0 (not added). */
int poll_set_add(struct poll_set *set, int fd, short events);

/* What poll() reported for entry index (0 for -1, an fd not added). */
short poll_set_revents(const struct poll_set *set, int index);

#endif
