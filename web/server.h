/*
 * server.h — the dashboard's HTTP server (libmicrohttpd, a thread per
 * connection, with limits: connections, header memory, body size, idle
 * timeout). It authenticates each request (auth.h), routes it to a page
 * (pages.h), the API (api.h) or an asset, and sends the reply with the
 * security headers every answer carries.
 */
#ifndef PGWORK_WEB_SERVER_H
#define PGWORK_WEB_SERVER_H

#include "../shared/config.h"

struct MHD_Daemon;

/* Listen on config->web.listen; NULL with why in err. */
struct MHD_Daemon *server_start(const struct pgwork_config *config, char *err, size_t errlen);
void server_stop(struct MHD_Daemon *daemon);

#endif
