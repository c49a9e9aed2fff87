/*
 * tcpproxy.c — a loopback TCP proxy that can fail silently, for the failure
 * tests (DESIGN §6, "silent network drop").
 *
 *   tcpproxy [-p PORT] TARGET
 *
 * Listens on 127.0.0.1:PORT (0 or absent: a free port chosen by the kernel)
 * and forwards every accepted connection to TARGET, either HOST:PORT on a
 * loopback address or the path of a unix socket (a PostgreSQL socket such
 * as /dir/.s.PGSQL.5432). Once listening it prints the port, one line, on
 * stdout: the caller reads it to know where to connect.
 *
 * Every signal below is acknowledged on stdout once it has taken effect,
 * one line: "usr1 N" (N connections black-holed now), "usr2 on|off",
 * "hup N" (N connections forwarding again). A caller that must know the
 * black hole is in place before it goes on (a test measuring how long
 * detection takes) reads that line; one that does not care may close its
 * end (EPIPE is ignored).
 *
 * Signals:
 *   USR1  black-hole every connection open now: stop reading and writing
 *         both ways, keep both sockets open. The peers see nothing — no
 *         FIN, no RST — like a NAT or firewall that silently dropped the
 *         flow. Connections accepted later are forwarded normally (the
 *         "network" works again for new flows).
 *   USR2  black-hole new connections too: accept them, never forward
 *         (a network that swallows everything). A second USR2 ends that.
 *   HUP   forward again on every black-holed connection (a network that
 *         came back before either end noticed).
 *   TERM, INT
 *         close everything and exit 0.
 *
 * Invariants: single-threaded poll loop; every socket non-blocking; at most
 * PROXY_BUF bytes buffered per direction (a full buffer stops reading that
 * side, so back-pressure reaches the sender); signals are read through a
 * signalfd, so none is lost between two polls. Loopback only: the listening
 * socket binds 127.0.0.1 and a TCP target must be a loopback address.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define PROXY_MAX_PAIRS 256
#define PROXY_BUF 65536

/* One direction of a pair: bytes read from `from`, not yet written to `to`. */
struct pipe_dir {
    char buf[PROXY_BUF];
    size_t len;
    bool eof; /* `from` said EOF: shut `to` down for writing once drained */
};

struct pair {
    bool used;
    bool blackholed; /* silent: neither socket is polled, nothing moves */
    int client;
    int server;
    struct pipe_dir up;   /* client -> server */
    struct pipe_dir down; /* server -> client */
};

static struct pair pairs[PROXY_MAX_PAIRS];
static bool swallow_new; /* USR2: new connections are black-holed at once */

static struct sockaddr_storage target;
static socklen_t target_len;

static void die(const char *what)
{
    fprintf(stderr, "tcpproxy: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void usage(void)
{
    fprintf(stderr, "usage: tcpproxy [-p PORT] HOST:PORT|/path/to/unix/socket\n");
    exit(2);
}

static int parse_target(const char *spec)
{
    memset(&target, 0, sizeof(target));
    if (spec[0] == '/') {
        struct sockaddr_un *un = (struct sockaddr_un *)&target;
        if (strlen(spec) >= sizeof(un->sun_path))
            return -1;
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, spec);
        target_len = sizeof(*un);
        return 0;
    }
    const char *colon = strrchr(spec, ':');
    if (colon == NULL)
        return -1;
    char host[64];
    size_t hlen = (size_t)(colon - spec);
    if (hlen == 0 || hlen >= sizeof(host))
        return -1;
    memcpy(host, spec, hlen);
    host[hlen] = '\0';
    struct sockaddr_in *in = (struct sockaddr_in *)&target;
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)atoi(colon + 1));
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
        return -1;
    /* Loopback only: this tool is for tests on one machine. */
    if ((ntohl(in->sin_addr.s_addr) >> 24) != 127)
        return -1;
    target_len = sizeof(*in);
    return 0;
}

static void pair_close(struct pair *p)
{
    close(p->client);
    close(p->server);
    p->used = false;
}

static void pair_open(int listen_fd)
{
    int client = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (client < 0)
        return;
    struct pair *p = NULL;
    for (int i = 0; i < PROXY_MAX_PAIRS; i++) {
        if (!pairs[i].used) {
            p = &pairs[i];
            break;
        }
    }
    if (p == NULL) {
        close(client);
        return;
    }
    /* A blocking connect to a loopback or unix target is immediate. */
    int server = socket(target.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (server < 0 || connect(server, (struct sockaddr *)&target, target_len) != 0) {
        fprintf(stderr, "tcpproxy: connect to target: %s\n", strerror(errno));
        if (server >= 0)
            close(server);
        close(client); /* like a refused connection */
        return;
    }
    fcntl(server, F_SETFL, fcntl(server, F_GETFL) | O_NONBLOCK);
    int one = 1;
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (target.ss_family == AF_INET)
        setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    memset(p, 0, sizeof(*p));
    p->used = true;
    p->client = client;
    p->server = server;
    p->blackholed = swallow_new;
}

/* Move bytes for one direction. Returns false when the pair must close. */
static bool dir_pump(struct pipe_dir *d, int from, int to, short from_ev, short to_ev)
{
    if ((from_ev & (POLLIN | POLLHUP | POLLERR)) && !d->eof && d->len < PROXY_BUF) {
        ssize_t n = read(from, d->buf + d->len, PROXY_BUF - d->len);
        if (n > 0)
            d->len += (size_t)n;
        else if (n == 0)
            d->eof = true;
        else if (errno != EAGAIN && errno != EINTR)
            return false;
    }
    if (d->len > 0 && (to_ev & POLLOUT)) {
        ssize_t n = write(to, d->buf, d->len);
        if (n > 0) {
            memmove(d->buf, d->buf + n, d->len - (size_t)n);
            d->len -= (size_t)n;
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            return false;
        }
    }
    if (to_ev & (POLLERR))
        return false;
    return true;
}

static short dir_events_from(const struct pipe_dir *d)
{
    return !d->eof && d->len < PROXY_BUF ? POLLIN : 0;
}

static short dir_events_to(const struct pipe_dir *d)
{
    return d->len > 0 ? POLLOUT : 0;
}

/* Tell the caller a signal has taken effect (see the top of the file).
 * A reader that went away is not an error. */
static void acknowledge(const char *what, int n)
{
    char line[32];
    int len = n >= 0 ? snprintf(line, sizeof(line), "%s %d\n", what, n)
                     : snprintf(line, sizeof(line), "%s\n", what);
    if (write(STDOUT_FILENO, line, (size_t)len) < 0 && errno != EPIPE)
        fprintf(stderr, "tcpproxy: acknowledging %s: %s\n", what, strerror(errno));
}

/* Returns true to keep running. */
static bool handle_signals(int sfd)
{
    struct signalfd_siginfo info;
    while (read(sfd, &info, sizeof(info)) == sizeof(info)) {
        int n = 0;
        switch (info.ssi_signo) {
        case SIGUSR1:
            /* From here on the main loop polls none of these sockets: the
             * black hole is in place before the acknowledgement leaves. */
            for (int i = 0; i < PROXY_MAX_PAIRS; i++)
                if (pairs[i].used && !pairs[i].blackholed) {
                    pairs[i].blackholed = true;
                    n++;
                }
            acknowledge("usr1", n);
            break;
        case SIGUSR2:
            swallow_new = !swallow_new;
            acknowledge(swallow_new ? "usr2 on" : "usr2 off", -1);
            break;
        case SIGHUP:
            swallow_new = false;
            for (int i = 0; i < PROXY_MAX_PAIRS; i++)
                if (pairs[i].used && pairs[i].blackholed) {
                    pairs[i].blackholed = false;
                    n++;
                }
            acknowledge("hup", n);
            break;
        case SIGTERM:
        case SIGINT:
            return false;
        default:
            break;
        }
    }
    return true;
}

int main(int argc, char **argv)
{
    int port = 0;
    int opt;
    while ((opt = getopt(argc, argv, "p:")) != -1) {
        if (opt == 'p')
            port = atoi(optarg);
        else
            usage();
    }
    if (optind != argc - 1 || parse_target(argv[optind]) != 0)
        usage();

    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
        die("sigprocmask");
    int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0)
        die("signalfd");

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) != 0)
        die("bind");
    if (listen(lfd, 64) != 0)
        die("listen");
    socklen_t alen = sizeof(addr);
    if (getsockname(lfd, (struct sockaddr *)&addr, &alen) != 0)
        die("getsockname");
    /* Unbuffered from here on: the acknowledgements go out by write(2). */
    printf("%d\n", ntohs(addr.sin_port));
    fflush(stdout);

    static struct pollfd fds[2 + 2 * PROXY_MAX_PAIRS];
    static int owner[2 + 2 * PROXY_MAX_PAIRS]; /* pair index of fds[k], k >= 2 */
    for (;;) {
        int n = 0;
        fds[n++] = (struct pollfd){.fd = sfd, .events = POLLIN};
        fds[n++] = (struct pollfd){.fd = lfd, .events = POLLIN};
        for (int i = 0; i < PROXY_MAX_PAIRS; i++) {
            struct pair *p = &pairs[i];
            if (!p->used || p->blackholed)
                continue;
            owner[n] = i;
            fds[n++] = (struct pollfd){.fd = p->client,
                                       .events = dir_events_from(&p->up) | dir_events_to(&p->down)};
            owner[n] = i;
            fds[n++] = (struct pollfd){.fd = p->server,
                                       .events = dir_events_from(&p->down) | dir_events_to(&p->up)};
        }
        if (poll(fds, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            die("poll");
        }
        if (fds[0].revents && !handle_signals(sfd))
            break;
        if (fds[1].revents & POLLIN)
            pair_open(lfd);
        for (int k = 2; k + 1 < n; k += 2) {
            struct pair *p = &pairs[owner[k]];
            if (!p->used || p->blackholed) /* a signal just black-holed it */
                continue;
            short cev = fds[k].revents, sev = fds[k + 1].revents;
            bool ok = dir_pump(&p->up, p->client, p->server, cev, sev) &&
                      dir_pump(&p->down, p->server, p->client, sev, cev);
            /* Propagate a half-close once its direction is drained. */
            if (ok && p->up.eof && p->up.len == 0)
                shutdown(p->server, SHUT_WR);
            if (ok && p->down.eof && p->down.len == 0)
                shutdown(p->client, SHUT_WR);
            if (!ok || (p->up.eof && p->down.eof && p->up.len == 0 && p->down.len == 0))
                pair_close(p);
        }
    }
    for (int i = 0; i < PROXY_MAX_PAIRS; i++)
        if (pairs[i].used)
            pair_close(&pairs[i]);
    close(lfd);
    return 0;
}
