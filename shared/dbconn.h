/*
 * dbconn.h — the connection parameters every pgwork connection shares.
 *
 * Dead peers must not hang a process forever (DESIGN §6): TCP keepalives
 * and tcp_user_timeout are derived from listener.keepalive_interval and
 * keepalive_timeout, and set *before* the user's conninfo, so anything the
 * operator wrote in the conninfo or URL wins.
 */
#ifndef PGWORK_DBCONN_H
#define PGWORK_DBCONN_H

#include "config.h"

/* Room for the keyword/value arrays dbconn_params() fills (NULL-ended). */
#define DBCONN_PARAMS_MAX 10

struct dbconn_params {
    const char *keywords[DBCONN_PARAMS_MAX];
    const char *values[DBCONN_PARAMS_MAX];
    char storage[4][24]; /* the numbers the values point into */
};

/* Fill params for PQconnectdbParams/PQconnectStartParams with
 * expand_dbname = 1: our defaults, then conninfo (expanded), then
 * application_name. */
void dbconn_params(struct dbconn_params *params, const struct pgwork_config *config,
                   const char *conninfo, const char *application_name);

#endif
