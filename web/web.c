/*
 * web.c — the `pgwork web` process: read the token, start the server,
 * wait for a signal, stop.
 *
 * Signals: TERM and INT stop it (the server finishes the requests it is
 * answering, then exit 0); HUP is ignored (the config is read once: every
 * web key is restart-only); PIPE is ignored (a client that hung up is a
 * failed write, not a death). They are blocked before the server's
 * threads start, so every thread inherits the mask and only sigwait here
 * takes them.
 */
#include "web.h"

#include <signal.h>
#include <stdio.h>

#include "auth.h"
#include "queries.h"
#include "server.h"
#include "webdb.h"
#include "../shared/exitcodes.h"
#include "../shared/log.h"

int web_main(const struct pgwork_config *config)
{
    char err[512];
    if (config->web.listen == NULL || config->web.listen[0] == '\0') {
        log_error("web: web.listen is empty: the dashboard needs an address");
        return EXIT_CONFIG;
    }
    if (auth_init(config, err, sizeof err) != 0) {
        log_error("%s", err);
        return EXIT_CONFIG;
    }
    signal(SIGPIPE, SIG_IGN);
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    webdb_init(config);
    struct MHD_Daemon *daemon = server_start(config, err, sizeof err);
    if (daemon == NULL) {
        log_error("%s", err);
        return EXIT_FAILURE_GENERIC;
    }
    log_info("web: listening on http://%s/ (reads %s)", config->web.listen,
             config->web.public_read ? "public" : "need the token");
    int sig;
    do {
        sig = 0;
        sigwait(&stop, &sig);
    } while (sig == SIGHUP);
    log_info("web: stopping (signal %d)", sig);
    server_stop(daemon);
    queries_fini();
    webdb_fini();
    return EXIT_OK;
}
