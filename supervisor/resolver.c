/*
 * resolver.c — getaddrinfo in a child process, its answer read through a
 * pipe by the supervisor's epoll loop (see resolver.h for why).
 *
 * Invariants: the parent never blocks (the pipe is non-blocking and read
 * only when epoll says so); the child touches nothing of the parent's — it
 * resolves, writes one line, and _exits; a child that outlives its use is
 * SIGKILLed by resolver_cancel (and bounded by alarm() in any case).
 *
 * The line: "ok <items>\n", one comma-separated item per host in the same
 * order, each its addresses separated by '|' ("" for a socket directory, a
 * numeric address as it is, up to RESOLVER_MAX_ADDRESSES for a name, in
 * getaddrinfo's order), or "error <reason>\n".
 */
#include "resolver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

/* The child's own bound, should the supervisor die without killing it. */
#define RESOLVER_CHILD_MAX_S 60

/* Addresses kept per host name (libpq tries them in order). */
#define RESOLVER_MAX_ADDRESSES 8

void resolver_init(struct resolver *r)
{
    r->pid = 0;
    r->fd = -1;
    r->hosts = NULL;
    r->ports = NULL;
    r->len = 0;
    r->line[0] = '\0';
}

static bool resolver_is_numeric(const char *host)
{
    unsigned char addr[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

/* A socket directory (or the default socket), which needs no lookup. */
static bool resolver_is_socket(const char *host)
{
    return host[0] == '\0' || host[0] == '/' || host[0] == '@';
}

bool resolver_needed(const char *conninfo, char **hosts, char **ports)
{
    const char *env_hostaddr = getenv("PGHOSTADDR");
    if (env_hostaddr != NULL && env_hostaddr[0] != '\0')
        return false;
    char *err = NULL;
    PQconninfoOption *options = PQconninfoParse(conninfo, &err);
    if (options == NULL) {
        /* A bare database name, or bad syntax libpq will report itself. */
        PQfreemem(err);
        return false;
    }
    const char *host = NULL, *hostaddr = NULL, *port = NULL;
    for (PQconninfoOption *o = options; o->keyword != NULL; o++) {
        if (strcmp(o->keyword, "host") == 0)
            host = o->val;
        else if (strcmp(o->keyword, "hostaddr") == 0)
            hostaddr = o->val;
        else if (strcmp(o->keyword, "port") == 0)
            port = o->val;
    }
    if (host == NULL || host[0] == '\0')
        host = getenv("PGHOST");
    if (port == NULL || port[0] == '\0')
        port = getenv("PGPORT");
    bool needed = false;
    if ((hostaddr == NULL || hostaddr[0] == '\0') && host != NULL) {
        char *list = strdup(host);
        if (list != NULL) {
            char *save = NULL;
            for (char *item = strtok_r(list, ",", &save); item != NULL;
                 item = strtok_r(NULL, ",", &save))
                if (!resolver_is_socket(item) && !resolver_is_numeric(item))
                    needed = true;
            free(list);
        }
        if (needed) {
            *hosts = strdup(host);
            *ports = port != NULL && strchr(port, ',') != NULL ? strdup(port) : NULL;
            needed = *hosts != NULL;
        }
    }
    PQconninfoFree(options);
    return needed;
}

/* The child: resolve every item of hosts, write the line, exit. */
static void resolver_child(int fd, const char *hosts)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGALRM, SIG_DFL);
    alarm(RESOLVER_CHILD_MAX_S);

    char out[sizeof(((struct resolver *)0)->line)];
    size_t len = (size_t)snprintf(out, sizeof(out), "ok ");
    const char *item = hosts;
    for (int i = 0;; i++) {
        size_t n = strcspn(item, ",");
        char name[256];
        if (n >= sizeof(name)) {
            snprintf(out, sizeof(out), "error host name too long: %.40s...\n", item);
            break;
        }
        memcpy(name, item, n);
        name[n] = '\0';
        char addrs[RESOLVER_MAX_ADDRESSES * (INET6_ADDRSTRLEN + 1)] = "";
        if (resolver_is_numeric(name)) {
            snprintf(addrs, sizeof(addrs), "%s", name);
        } else if (!resolver_is_socket(name)) {
            struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
            struct addrinfo *res = NULL;
            int rc = getaddrinfo(name, NULL, &hints, &res);
            size_t used = 0;
            int kept = 0;
            for (struct addrinfo *ai = rc == 0 ? res : NULL;
                 ai != NULL && kept < RESOLVER_MAX_ADDRESSES; ai = ai->ai_next) {
                char addr[INET6_ADDRSTRLEN];
                if (getnameinfo(ai->ai_addr, ai->ai_addrlen, addr, sizeof(addr), NULL, 0,
                                NI_NUMERICHOST) != 0)
                    continue;
                used += (size_t)snprintf(addrs + used, sizeof(addrs) - used, "%s%s",
                                         kept > 0 ? "|" : "", addr);
                kept++;
            }
            if (res != NULL)
                freeaddrinfo(res);
            if (kept == 0) {
                snprintf(out, sizeof(out), "error cannot resolve host \"%s\": %s\n", name,
                         rc != 0 ? gai_strerror(rc) : "no address");
                break;
            }
        }
        len += (size_t)snprintf(out + len, len < sizeof(out) ? sizeof(out) - len : 0, "%s%s",
                                i > 0 ? "," : "", addrs);
        if (len >= sizeof(out) - 1) {
            snprintf(out, sizeof(out), "error host list too long\n");
            break;
        }
        if (item[n] == '\0') {
            out[len++] = '\n';
            out[len] = '\0';
            break;
        }
        item += n + 1;
    }
    size_t total = strlen(out);
    ssize_t written = write(fd, out, total);
    _exit(written == (ssize_t)total ? 0 : 1);
}

int resolver_start(struct resolver *r, char *hosts, char *ports)
{
    r->hosts = hosts;
    r->ports = ports;
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        int saved = errno;
        close(pipefd[0]);
        close(pipefd[1]);
        errno = saved;
        return -1;
    }
    if (pid == 0) {
        close(pipefd[0]);
        /* Blocking: the child may wait for its write, the parent never. */
        fcntl(pipefd[1], F_SETFL, 0);
        resolver_child(pipefd[1], hosts);
    }
    close(pipefd[1]);
    r->pid = pid;
    r->fd = pipefd[0];
    r->len = 0;
    r->line[0] = '\0';
    return 0;
}

int resolver_fd(const struct resolver *r)
{
    return r->fd;
}

void resolver_cancel(struct resolver *r)
{
    if (r->pid > 0)
        kill(r->pid, SIGKILL); /* reaped by the supervisor's reaper */
    if (r->fd >= 0)
        close(r->fd);
    free(r->hosts);
    free(r->ports);
    resolver_init(r);
}

void resolver_lists_free(struct resolver_lists *lists)
{
    free(lists->host);
    free(lists->hostaddr);
    free(lists->port);
    memset(lists, 0, sizeof(*lists));
}

/* Append item to the comma-separated list *out (of *len bytes); first:
 * the list's first item (items may be empty). */
static int resolver_append(char **out, size_t *len, bool first, const char *item, size_t n)
{
    char *grown = realloc(*out, *len + n + 2);
    if (grown == NULL)
        return -1;
    *out = grown;
    if (!first)
        grown[(*len)++] = ',';
    memcpy(grown + *len, item, n);
    *len += n;
    grown[*len] = '\0';
    return 0;
}

int resolver_expand(const char *hosts, const char *ports, const char *answer,
                    struct resolver_lists *lists)
{
    memset(lists, 0, sizeof(*lists));
    size_t host_len = 0, addr_len = 0, port_len = 0;
    const char *host = hosts, *port = ports, *item = answer;
    for (;;) {
        size_t hn = strcspn(host, ","), in = strcspn(item, ",");
        size_t pn = port != NULL ? strcspn(port, ",") : 0;
        /* One entry per address of this host ("" once for a socket). */
        const char *addr = item;
        do {
            size_t an = strcspn(addr, "|,");
            bool first = lists->host == NULL;
            if (resolver_append(&lists->host, &host_len, first, host, hn) != 0 ||
                resolver_append(&lists->hostaddr, &addr_len, first, addr, an) != 0 ||
                (port != NULL && resolver_append(&lists->port, &port_len, first, port, pn) != 0))
                goto fail;
            addr += an;
        } while (*addr++ == '|');
        bool host_end = host[hn] == '\0', item_end = item[in] == '\0';
        if (host_end != item_end)
            goto fail; /* not one item per host */
        if (host_end)
            break;
        host += hn + 1;
        item += in + 1;
        if (port != NULL && port[pn] != '\0')
            port += pn + 1;
    }
    return 0;
fail:
    resolver_lists_free(lists);
    return -1;
}

int resolver_read(struct resolver *r, struct resolver_lists *lists, char *error, size_t errlen)
{
    memset(lists, 0, sizeof(*lists));
    for (;;) {
        if (r->len >= sizeof(r->line) - 1) {
            snprintf(error, errlen, "resolver answer too long");
            resolver_cancel(r);
            return 1;
        }
        ssize_t n = read(r->fd, r->line + r->len, sizeof(r->line) - 1 - r->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n <= 0) {
            snprintf(error, errlen, "the resolver process ended without an answer");
            resolver_cancel(r);
            return 1;
        }
        r->len += (size_t)n;
        r->line[r->len] = '\0';
        char *newline = strchr(r->line, '\n');
        if (newline == NULL)
            continue;
        *newline = '\0';
        if (strncmp(r->line, "ok ", 3) == 0) {
            if (resolver_expand(r->hosts, r->ports, r->line + 3, lists) != 0)
                snprintf(error, errlen, "bad resolver answer, or out of memory");
        } else {
            snprintf(error, errlen, "%s",
                     strncmp(r->line, "error ", 6) == 0 ? r->line + 6 : "bad resolver answer");
        }
        /* The child has written its line and exits by itself. */
        r->pid = 0;
        resolver_cancel(r);
        return 1;
    }
}
