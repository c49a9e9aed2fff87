/*
 * signals.h — signals become requests (STYLE §4). The supervisor blocks
 * every signal it handles and reads them from one signalfd in its epoll
 * loop; nothing runs in signal context.
 */
#ifndef PGWORK_SIGNALS_H
#define PGWORK_SIGNALS_H

#include <stdbool.h>

/* What arrived since the supervisor last looked; signals coalesce, so each
 * is a flag or a count, handled in order of urgency by the supervisor. */
struct signal_requests {
    bool stop_fast;     /* QUIT */
    bool stop_graceful; /* TERM, INT */
    bool reload;        /* HUP */
    bool children;      /* CHLD: reap */
    int scale;          /* TTIN +1, TTOU -1, summed */
    bool quiet;         /* TSTP */
    bool resume;        /* CONT */
    bool status;        /* USR1 */
};

/* Block the handled signals, ignore SIGPIPE, and return a non-blocking,
 * close-on-exec signalfd, or -1 with errno set. */
int signals_open(void);

/* Read every queued signal from fd into req (flags are OR-ed in). */
void signals_read(int fd, struct signal_requests *req);

#endif
