/*
 * api.c — the JSON API (api.h). Reads mirror the pages through the same
 * queries (queries.h); actions answer {"ok": true, "message", "count"}
 * or {"error"} with the action's status, and a browser's form post a 303
 * back to its page (or the error page).
 */
#include "api.h"

#include <stdio.h>
#include <string.h>

#include "pages.h"
#include "queries.h"
#include "render.h"
#include "webdb.h"

#define OUT(...) text_appendf(&reply->body, __VA_ARGS__)

static bool is(const struct web_request *req, int i, const char *s)
{
    return i < req->segment_count && strcmp(req->segments[i], s) == 0;
}

void api_error(struct web_reply *reply, unsigned status, const char *message)
{
    text_free(&reply->body);
    reply->status = status;
    reply->type = "application/json";
    OUT("{\"error\":");
    render_json_string(&reply->body, message);
    OUT("}\n");
}

static void count_json(struct web_reply *reply, const char *name, const struct count *c)
{
    OUT(",\"%s\":%lld", name, c->n);
    if (c->estimated)
        OUT(",\"%s_estimated\":true", name);
}

static void queues(struct web_request *req, struct web_reply *reply)
{
    struct webdb_features f;
    struct overview o;
    char err[512];
    int status = queries_overview_pooled(req->config, &f, &o, err, sizeof err);
    if (status != 0) {
        api_error(reply, status, err);
        return;
    }
    reply->type = "application/json";
    OUT("{\"queues\":[");
    for (int i = 0; i < o.queue_count; i++) {
        const struct queue_row *q = &o.queues[i];
        OUT("%s{\"queue\":", i ? "," : "");
        render_json_string(&reply->body, q->name);
        count_json(reply, "pending_due", &q->due);
        count_json(reply, "pending_scheduled", &q->scheduled);
        count_json(reply, "running", &q->running);
        count_json(reply, "done", &q->done);
        count_json(reply, "dead", &q->dead);
        if (q->oldest_pending_s < 0)
            OUT(",\"oldest_pending_age_seconds\":null");
        else
            OUT(",\"oldest_pending_age_seconds\":%.3f", q->oldest_pending_s);
        OUT(",\"done_last_hour\":%lld,\"failed_last_hour\":%lld", q->done_hour, q->failed_hour);
        if (f.paused_table)
            OUT(",\"paused\":%s", q->paused ? "true" : "false");
        int qi = config_find_queue(req->config, q->name);
        if (qi >= 0) {
            OUT(",\"concurrency\":%d,\"rate\":", req->config->queues[qi].concurrency);
            render_json_string(&reply->body, req->config->queues[qi].rate != NULL
                                                 ? req->config->queues[qi].rate
                                                 : "");
        }
        OUT("}");
    }
    OUT("],\"throughput\":{\"minute0\":%lld,\"available\":%s,\"done\":[", (long long)o.minute0,
        o.throughput_missing ? "false" : "true");
    for (int i = 0; i < THROUGHPUT_MINUTES; i++)
        OUT("%s%lld", i ? "," : "", o.done_per_minute[i]);
    OUT("],\"failed\":[");
    for (int i = 0; i < THROUGHPUT_MINUTES; i++)
        OUT("%s%lld", i ? "," : "", o.failed_per_minute[i]);
    OUT("]},\"count_cap\":%d}\n", QUERIES_COUNT_CAP);
    queries_overview_free(&o);
}

static void tasks(struct web_request *req, struct web_reply *reply, const char *queue)
{
    const char *state = web_query(req, "state");
    const char *after = web_query(req, "after");
    const char *key = web_query(req, "key");
    if (!queries_list_params(&state, &after, &key)) {
        api_error(reply, 400, "unknown state");
        return;
    }
    char err[512];
    int status;
    PGresult *res = queries_tasks_pooled(queue, state, after, key, NULL, &status, err, sizeof err);
    if (res == NULL) {
        api_error(reply, status, err);
        return;
    }
    int rows = PQntuples(res);
    int shown = key == NULL && rows > QUERIES_PAGE_ROWS ? QUERIES_PAGE_ROWS : rows;
    reply->type = "application/json";
    OUT("{\"tasks\":[");
    for (int i = 0; i < shown; i++) {
        if (i > 0)
            OUT(",");
        render_row_json(&reply->body, res, i);
    }
    OUT("],\"next\":");
    if (key == NULL && rows > QUERIES_PAGE_ROWS)
        render_json_string(&reply->body, PQgetvalue(res, shown - 1, PQnfields(res) - 1));
    else
        OUT("null");
    OUT("}\n");
    PQclear(res);
}

static void task(struct web_reply *reply, const char *id)
{
    char err[512];
    int status;
    PGresult *res = queries_task_pooled(id, NULL, &status, err, sizeof err);
    if (res == NULL) {
        api_error(reply, status, err);
        return;
    }
    reply->type = "application/json";
    render_row_json(&reply->body, res, 0);
    OUT("\n");
    PQclear(res);
}

static void schedules(struct web_request *req, struct web_reply *reply)
{
    PGconn *conn = webdb_acquire();
    if (conn == NULL) {
        api_error(reply, 503, QUERIES_NO_CONNECTION);
        return;
    }
    struct webdb_features f = webdb_features();
    char err[512];
    PGresult *res = f.schedules ? queries_schedules(conn, req->config, err, sizeof err) : NULL;
    webdb_release(conn);
    if (!f.schedules) {
        api_error(reply, 501, "this database has no schedules table (pgwork.schedules)");
        return;
    }
    if (res == NULL) {
        api_error(reply, 500, err);
        return;
    }
    reply->type = "application/json";
    OUT("{\"schedules\":");
    render_rows_json(&reply->body, res);
    OUT("}\n");
    PQclear(res);
}

void api_get(struct web_request *req, struct web_reply *reply)
{
    int n = req->segment_count;
    if (n == 2 && is(req, 1, "queues"))
        queues(req, reply);
    else if (n == 4 && is(req, 1, "queues") && is(req, 3, "tasks"))
        tasks(req, reply, req->segments[2]);
    else if (n == 3 && is(req, 1, "tasks"))
        task(reply, req->segments[2]);
    else if (n == 2 && is(req, 1, "schedules"))
        schedules(req, reply);
    else
        api_error(reply, 404, "no such resource");
}

void api_post(struct web_request *req, struct web_reply *reply)
{
    int n = req->segment_count;
    const char *arg = n == 4 ? req->segments[2] : NULL;
    const char *verb = n == 4 ? req->segments[3] : "";
    enum { NONE, REQUEUE, CANCEL, PAUSE, RESUME, REQUEUE_DEAD, RUN } action = NONE;
    if (n == 4 && is(req, 1, "tasks"))
        action = strcmp(verb, "requeue") == 0  ? REQUEUE
                 : strcmp(verb, "cancel") == 0 ? CANCEL
                                               : NONE;
    else if (n == 4 && is(req, 1, "queues"))
        action = strcmp(verb, "pause") == 0          ? PAUSE
                 : strcmp(verb, "resume") == 0       ? RESUME
                 : strcmp(verb, "requeue-dead") == 0 ? REQUEUE_DEAD
                                                     : NONE;
    else if (n == 4 && is(req, 1, "schedules") && strcmp(verb, "run") == 0)
        action = RUN;
    if (action == NONE) {
        api_error(reply, 404, "no such action");
        return;
    }
    PGconn *conn = webdb_acquire();
    if (conn == NULL) {
        api_error(reply, 503, QUERIES_NO_CONNECTION);
        return;
    }
    struct webdb_features f = webdb_features();
    struct action_result r;
    switch (action) {
    case REQUEUE:
        queries_requeue_task(conn, arg, &r);
        break;
    case CANCEL:
        queries_cancel(conn, &f, arg, &r);
        break;
    case PAUSE:
    case RESUME:
        queries_pause(conn, &f, arg, action == PAUSE, &r);
        break;
    case REQUEUE_DEAD:
        queries_requeue_queue(conn, arg, &r);
        break;
    case RUN:
    case NONE:
        queries_run_schedule(conn, req->config, arg, &r);
        break;
    }
    webdb_release(conn);
    if (req->form_post) {
        if (r.status == 200)
            web_redirect(reply, web_form(req, "back"));
        else
            pages_error(req, reply, (unsigned)r.status, r.message);
        return;
    }
    if (r.status != 200) {
        api_error(reply, (unsigned)r.status, r.message);
        return;
    }
    reply->type = "application/json";
    OUT("{\"ok\":true,\"count\":%lld,\"message\":", r.count);
    render_json_string(&reply->body, r.message);
    OUT("}\n");
}
