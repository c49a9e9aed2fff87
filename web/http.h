/*
 * web/http.h — one request as the pages and the API see it, and the reply
 * they fill. server.c owns the libmicrohttpd side (parsing, limits,
 * authentication); pages.c and api.c only read this and write a reply.
 */
#ifndef PGWORK_WEB_HTTP_H
#define PGWORK_WEB_HTTP_H

#include <stdbool.h>

#include <microhttpd.h>

#include "auth.h"
#include "../shared/config.h"
#include "../shared/text.h"

#define WEB_PATH_SEGMENTS 8
#define WEB_FORM_FIELDS 8

struct web_request {
    struct MHD_Connection *conn;
    const struct pgwork_config *config;
    bool post;
    char *segments[WEB_PATH_SEGMENTS]; /* the path split at '/', each unescaped */
    int segment_count;
    char *form;                 /* a POST's urlencoded body (NUL-terminated, decoded by web_form) */
    bool form_post;             /* an urlencoded form post (a browser): answer 303 */
    bool can_read;              /* token, session, or web.public_read */
    bool can_act;               /* token, or session and its CSRF token */
    bool session;               /* logged in through the form */
    char csrf[AUTH_ID_LEN + 1]; /* the session's CSRF token, "" without one */
    char *form_values[WEB_FORM_FIELDS]; /* web_form's decoded copies, freed with the request */
    int form_value_count;
};

struct web_reply {
    unsigned status;
    const char *type; /* Content-Type */
    struct text_buffer body;
    char location[1024]; /* a redirect's Location, "" for none */
    char cookie[256];    /* a Set-Cookie value, "" for none */
    bool cacheable;      /* static assets */
};

/* A query parameter (unescaped; NULL if absent or malformed). */
const char *web_query(const struct web_request *req, const char *name);

/* A field of the posted form (unescaped into a buffer of the request;
 * NULL if absent). */
const char *web_form(struct web_request *req, const char *name);

/* Set a redirect (303) to path, which must be a local path ("/..."). */
void web_redirect(struct web_reply *reply, const char *path);

#endif
