/*
 * dbconn.c — shared libpq connection parameters (see dbconn.h).
 */
#include <stdio.h>

#include "dbconn.h"

void dbconn_params(struct dbconn_params *params, const struct pgwork_config *config,
                   const char *conninfo, const char *application_name)
{
    int64_t idle_s = config->listener.keepalive_interval_ms / 1000;
    int64_t probe_s = config->listener.keepalive_timeout_ms / 3000;
    int64_t user_timeout_ms =
        config->listener.keepalive_interval_ms + config->listener.keepalive_timeout_ms;
    snprintf(params->storage[0], sizeof(params->storage[0]), "%lld",
             (long long)(idle_s > 0 ? idle_s : 1));
    snprintf(params->storage[1], sizeof(params->storage[1]), "%lld",
             (long long)(probe_s > 0 ? probe_s : 1));
    snprintf(params->storage[2], sizeof(params->storage[2]), "%lld", (long long)user_timeout_ms);

    int n = 0;
    /* Keepalive probes find a dead peer on an idle connection; the user
     * timeout finds one while data we sent stays unacknowledged. */
    params->keywords[n] = "keepalives";
    params->values[n++] = "1";
    params->keywords[n] = "keepalives_idle";
    params->values[n++] = params->storage[0];
    params->keywords[n] = "keepalives_interval";
    params->values[n++] = params->storage[1];
    params->keywords[n] = "keepalives_count";
    params->values[n++] = "3";
    params->keywords[n] = "tcp_user_timeout";
    params->values[n++] = params->storage[2];
    params->keywords[n] = "connect_timeout";
    params->values[n++] = "10";
    /* Expanded in place: its settings override the defaults above. */
    params->keywords[n] = "dbname";
    params->values[n++] = conninfo;
    params->keywords[n] = "fallback_application_name";
    params->values[n++] = application_name;
    params->keywords[n] = NULL;
    params->values[n] = NULL;
}
