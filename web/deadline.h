/*
 * deadline.h — every request gets a total time to arrive.
 *
 * libmicrohttpd's own timeout (SERVER_TIMEOUT_S) is an *idle* timeout: a
 * client that sends a byte every few seconds (slowloris) resets it with
 * each byte and holds its connection — a thread and one of
 * SERVER_CONNECTIONS slots — for as long as it likes. Here each
 * connection carries a deadline: DEADLINE_REQUEST_S from the moment it
 * starts waiting for a request (accepted, or its previous answer sent) to
 * the moment the request, headers and body, has arrived. Past it, a
 * watchdog thread shuts the socket down (shutdown(2), never close: the fd
 * stays libmicrohttpd's), and libmicrohttpd closes the connection as it
 * would any client that hung up. While the request is served (the
 * database may be slow) no deadline runs.
 *
 * Thread-safe: called from libmicrohttpd's connection threads.
 */
#ifndef PGWORK_WEB_DEADLINE_H
#define PGWORK_WEB_DEADLINE_H

#include <microhttpd.h>

#define DEADLINE_REQUEST_S 5

/* Start and stop the watchdog. deadline_start: 0, or -1 (no thread). */
int deadline_start(void);
void deadline_stop(void);

/* MHD_OPTION_NOTIFY_CONNECTION's callback: a connection starts (its
 * deadline runs) or is closed (forgotten, before libmicrohttpd closes its
 * socket). */
void deadline_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                            enum MHD_ConnectionNotificationCode code);

/* The request on conn has arrived whole: no deadline while it is served. */
void deadline_arrived(struct MHD_Connection *conn);

/* Its answer went out: the next request on the connection has its own
 * DEADLINE_REQUEST_S from now. */
void deadline_rearm(struct MHD_Connection *conn);

#endif
