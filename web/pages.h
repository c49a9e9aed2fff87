/*
 * pages.h — the dashboard's HTML pages, rendered on the server (they work
 * without JavaScript; app.js only refreshes the overview and draws its
 * chart). Every value from the database or the request is escaped
 * (render_html). Forms post to the JSON API's paths with the session's
 * CSRF token and a `back` path, and are answered 303 to it.
 */
#ifndef PGWORK_WEB_PAGES_H
#define PGWORK_WEB_PAGES_H

#include "http.h"

void pages_overview(struct web_request *req, struct web_reply *reply);
void pages_queue(struct web_request *req, struct web_reply *reply, const char *queue);
void pages_task(struct web_request *req, struct web_reply *reply, const char *id);
void pages_schedules(struct web_request *req, struct web_reply *reply);
/* The login form, answered with status (401 when a page needed it). */
void pages_login(struct web_request *req, struct web_reply *reply, unsigned status,
                 const char *message);
void pages_error(struct web_request *req, struct web_reply *reply, unsigned status,
                 const char *message);

#endif
