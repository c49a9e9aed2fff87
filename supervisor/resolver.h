/*
 * resolver.h — host names resolved for the supervisor's connection without
 * blocking its loop (DESIGN §8: libpq's "non-blocking" connect calls a
 * blocking getaddrinfo unless hostaddr is given, and a Kubernetes Service
 * name is a host name).
 *
 * A short-lived child process runs getaddrinfo and writes the addresses to
 * a pipe the supervisor's epoll watches; the connection is then made with
 * hostaddr (host stays, for TLS verification and messages). A child, not a
 * thread: the supervisor forks workers without exec, and a thread holding
 * a libc lock at that moment would deadlock the child (getaddrinfo_a
 * starts threads too). The child is reaped like any other stranger.
 */
#ifndef PGWORK_RESOLVER_H
#define PGWORK_RESOLVER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The lists to connect with: host and hostaddr item by item, one item per
 * address (a name with two addresses appears twice, as libpq would try
 * both); port likewise when the conninfo gave a list, else NULL (its one
 * port applies to all). Each malloc'd. */
struct resolver_lists {
    char *host;
    char *hostaddr;
    char *port;
};

struct resolver {
    pid_t pid;       /* the resolving child, 0 = none */
    int fd;          /* its pipe's read end (O_NONBLOCK, O_CLOEXEC), -1 = none */
    char *hosts;     /* what it resolves (owned) */
    char *ports;     /* the conninfo's port list, NULL = none (owned) */
    char line[4096]; /* what it wrote so far */
    size_t len;
};

/* An idle resolver (no child, no fd). */
void resolver_init(struct resolver *r);

/*
 * Whether conninfo (libpq's PGHOST / PGHOSTADDR / PGPORT taken into
 * account) names a host that getaddrinfo would have to look up: not a
 * socket directory, not a numeric address, no hostaddr given. If so,
 * *hosts is its host list as written and *ports its port list (NULL when
 * none), both malloc'd and owned by the caller.
 */
bool resolver_needed(const char *conninfo, char **hosts, char **ports);

/* Start resolving hosts (comma-separated, as in a conninfo); ports is
 * the port list (may be NULL). Ownership of both passes to r. Returns 0,
 * or -1 with errno set (pipe or fork failed). */
int resolver_start(struct resolver *r, char *hosts, char *ports);

/* The fd to watch for EPOLLIN while a resolution runs, else -1. */
int resolver_fd(const struct resolver *r);

/*
 * Read what the child wrote. Returns 0 while more is to come, 1 when
 * done. Then *lists holds the lists to connect
 * with (lists->host NULL: failed, the reason in error). The resolver is
 * idle again afterwards; resolver_lists_free frees the lists.
 */
int resolver_read(struct resolver *r, struct resolver_lists *lists, char *error, size_t errlen);

void resolver_lists_free(struct resolver_lists *lists);

/*
 * The lists for one answer (pure, for tests): hosts and ports as given to
 * resolver_start, answer the child's "ok ..." text after "ok ": per host,
 * comma-separated, its addresses separated by '|' ("" for a socket
 * directory). Returns 0, or -1 (malformed, or out of memory).
 */
int resolver_expand(const char *hosts, const char *ports, const char *answer,
                    struct resolver_lists *lists);

/* Stop a resolution in progress (kill the child, close the pipe). */
void resolver_cancel(struct resolver *r);

#endif
