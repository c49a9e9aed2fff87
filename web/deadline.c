/*
 * deadline.c — the per-request deadline's watchdog (deadline.h).
 *
 * Invariants:
 *  - an entry exists from NOTIFY_STARTED to NOTIFY_CLOSED, which
 *    libmicrohttpd calls before it closes the socket: the watchdog shuts
 *    a socket down only under the lock, while its entry exists, so the fd
 *    it names is still the connection's (never a reused number);
 *  - the watchdog only calls shutdown(2): the connection's own thread
 *    sees the end of the stream and tears the connection down itself.
 */
#include "deadline.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "../shared/log.h"

/* The watchdog looks this often: a deadline is kept to within it. */
#define DEADLINE_TICK_MS 250

struct tracked {
    struct tracked *prev, *next;
    int fd;
    int64_t due_ms; /* CLOCK_MONOTONIC; INT64_MAX: being served */
    bool cut;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
/* Waits on CLOCK_MONOTONIC (set up once, in deadline_start): the default
 * CLOCK_REALTIME would stall the watchdog after a backward clock step. */
static pthread_cond_t wake;
static pthread_once_t wake_once = PTHREAD_ONCE_INIT;
static bool wake_ok;
static struct tracked *head;
static bool running;
static pthread_t watchdog;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *watch(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lock);
    while (running) {
        int64_t now = now_ms();
        for (struct tracked *t = head; t != NULL; t = t->next) {
            if (!t->cut && t->due_ms <= now) {
                t->cut = true;
                shutdown(t->fd, SHUT_RDWR);
                log_debug("web: a request did not arrive within %d s; connection closed",
                          DEADLINE_REQUEST_S);
            }
        }
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += DEADLINE_TICK_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&wake, &lock, &until);
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

static void wake_init(void)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        return;
    wake_ok = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) == 0 &&
              pthread_cond_init(&wake, &attr) == 0;
    pthread_condattr_destroy(&attr);
}

int deadline_start(void)
{
    pthread_once(&wake_once, wake_init);
    if (!wake_ok)
        return -1;
    pthread_mutex_lock(&lock);
    running = true;
    pthread_mutex_unlock(&lock);
    if (pthread_create(&watchdog, NULL, watch, NULL) != 0) {
        running = false;
        return -1;
    }
    return 0;
}

void deadline_stop(void)
{
    pthread_mutex_lock(&lock);
    bool was = running;
    running = false;
    if (wake_ok)
        pthread_cond_signal(&wake);
    pthread_mutex_unlock(&lock);
    if (was)
        pthread_join(watchdog, NULL);
}

void deadline_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                            enum MHD_ConnectionNotificationCode code)
{
    (void)cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        struct tracked *t = calloc(1, sizeof *t);
        if (t == NULL || info == NULL) {
            free(t); /* untracked: only the idle timeout bounds it */
            *socket_context = NULL;
            return;
        }
        t->fd = info->connect_fd;
        t->due_ms = now_ms() + DEADLINE_REQUEST_S * 1000;
        pthread_mutex_lock(&lock);
        t->next = head;
        if (head != NULL)
            head->prev = t;
        head = t;
        pthread_mutex_unlock(&lock);
        *socket_context = t;
        return;
    }
    struct tracked *t = *socket_context;
    if (t == NULL)
        return;
    pthread_mutex_lock(&lock);
    if (t->prev != NULL)
        t->prev->next = t->next;
    else
        head = t->next;
    if (t->next != NULL)
        t->next->prev = t->prev;
    pthread_mutex_unlock(&lock);
    free(t);
    *socket_context = NULL;
}

static void set_due(struct MHD_Connection *conn, int64_t due_ms)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct tracked *t = info != NULL ? info->socket_context : NULL;
    if (t == NULL)
        return;
    pthread_mutex_lock(&lock);
    t->due_ms = due_ms;
    pthread_mutex_unlock(&lock);
}

void deadline_arrived(struct MHD_Connection *conn)
{
    set_due(conn, INT64_MAX);
}

void deadline_rearm(struct MHD_Connection *conn)
{
    set_due(conn, now_ms() + DEADLINE_REQUEST_S * 1000);
}
