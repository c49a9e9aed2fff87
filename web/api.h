/*
 * api.h — the JSON API under /api/, mirroring every page and action:
 *   GET  /api/queues                          the overview
 *   GET  /api/queues/NAME/tasks?state=&after=&key=   one page of tasks
 *   GET  /api/tasks/ID                        one task
 *   GET  /api/schedules                       the schedules table
 *   POST /api/tasks/ID/requeue | /cancel
 *   POST /api/queues/NAME/pause | /resume | /requeue-dead
 *   POST /api/schedules/NAME/run
 * Answers are JSON objects; errors are {"error": "..."} with a 4xx/5xx
 * status. A form post (a browser, with its CSRF token) is answered 303 to
 * its `back` path instead.
 */
#ifndef PGWORK_WEB_API_H
#define PGWORK_WEB_API_H

#include "http.h"

void api_get(struct web_request *req, struct web_reply *reply);
void api_post(struct web_request *req, struct web_reply *reply);
void api_error(struct web_reply *reply, unsigned status, const char *message);

#endif
