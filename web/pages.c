/*
 * pages.c — the HTML pages (pages.h). Each page takes one pooled
 * connection for its queries and gives it back before it returns. No
 * inline script: the chart's numbers travel in a JSON data block that
 * app.js reads (the Content-Security-Policy allows only our own files).
 */
#include "pages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queries.h"
#include "render.h"
#include "webdb.h"

#define H(s) render_html(&reply->body, (s))
#define OUT(...) text_appendf(&reply->body, __VA_ARGS__)

static const char *const states[] = {"pending", "running", "done", "dead", "cancelled"};

static void page_begin(struct web_request *req, struct web_reply *reply, const char *title,
                       int refresh_s)
{
    reply->type = "text/html; charset=utf-8";
    OUT("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<title>");
    H(title);
    OUT(" · pgwork</title><link rel=\"stylesheet\" href=\"/assets/style.css\">"
        "<link rel=\"stylesheet\" href=\"/assets/uPlot.min.css\">"
        "<script src=\"/assets/uPlot.iife.min.js\" defer></script>"
        "<script src=\"/assets/app.js\" defer></script></head>\n");
    if (refresh_s > 0)
        OUT("<body data-refresh=\"%d\">", refresh_s);
    else
        OUT("<body>");
    OUT("<header><a class=\"brand\" href=\"/\">pgwork</a><a href=\"/\">Queues</a>"
        "<a href=\"/schedules\">Schedules</a>");
    if (req->session)
        OUT("<form method=\"post\" action=\"/logout\" class=\"inline\">"
            "<button type=\"submit\">Log out</button></form>");
    OUT("</header>\n<main>");
}

static void page_end(struct web_reply *reply)
{
    OUT("</main></body></html>\n");
}

/* The hidden fields every action form carries. */
static void form_open(struct web_request *req, struct web_reply *reply, const char *action_prefix,
                      const char *name, const char *action_suffix, const char *back)
{
    OUT("<form method=\"post\" class=\"inline\" action=\"%s", action_prefix);
    render_url(&reply->body, name);
    OUT("%s\"><input type=\"hidden\" name=\"csrf\" value=\"", action_suffix);
    H(req->csrf);
    OUT("\"><input type=\"hidden\" name=\"back\" value=\"");
    H(back);
    OUT("\">");
}

static void button(struct web_reply *reply, const char *label, bool danger)
{
    OUT("<button type=\"submit\"%s>", danger ? " class=\"danger\"" : "");
    H(label);
    OUT("</button></form>");
}

static void count_cell(struct web_reply *reply, const struct count *c, const char *cls)
{
    if (c->estimated && c->n == QUERIES_COUNT_CAP + 1) /* above the cap, estimated below it */
        OUT("<td class=\"n %s\"><span class=\"est\" title=\"more than the exact count's cap; "
            "the planner estimates fewer\">&gt;%d</span></td>",
            cls, QUERIES_COUNT_CAP);
    else if (c->estimated)
        OUT("<td class=\"n %s\"><span class=\"est\" title=\"estimate from the planner's "
            "statistics\">≈%lld</span></td>",
            cls, c->n);
    else
        OUT("<td class=\"n %s\">%lld</td>", cls, c->n);
}

static void age(struct web_reply *reply, double s)
{
    if (s < 0)
        OUT("—");
    else if (s < 120)
        OUT("%.1f s", s);
    else if (s < 7200)
        OUT("%.0f min", s / 60);
    else if (s < 172800)
        OUT("%.1f h", s / 3600);
    else
        OUT("%.1f d", s / 86400);
}

static void db_unavailable(struct web_request *req, struct web_reply *reply)
{
    pages_error(req, reply, 503, QUERIES_NO_CONNECTION);
}

/* The chart's heading, totals and numbers (a JSON block app.js draws:
 * no inline script runs). */
static void overview_chart(struct web_reply *reply, const struct overview *o)
{
    long long done = 0, failed = 0;
    for (int i = 0; i < THROUGHPUT_MINUTES; i++) {
        done += o->done_per_minute[i];
        failed += o->failed_per_minute[i];
    }
    OUT("<h2>Finished per minute, last hour</h2><div id=\"chart\"><p class=\"muted\">Last hour: "
        "%lld done, %lld failed attempts.</p></div>",
        done, failed);
    if (o->throughput_missing)
        OUT("<p class=\"muted\">No per-minute counts: apply migration 0013 "
            "(<code>pgwork migrate</code>).</p>");
    else
        OUT("<p class=\"muted\">Pods add their counts when a minute ends: the current minute "
            "fills in then.</p>");
    OUT("<script type=\"application/json\" id=\"throughput-data\">{\"minute0\":%lld,\"done\":[",
        (long long)o->minute0);
    for (int i = 0; i < THROUGHPUT_MINUTES; i++)
        OUT("%s%lld", i ? "," : "", o->done_per_minute[i]);
    OUT("],\"failed\":[");
    for (int i = 0; i < THROUGHPUT_MINUTES; i++)
        OUT("%s%lld", i ? "," : "", o->failed_per_minute[i]);
    OUT("]}</script>");
}

void pages_overview(struct web_request *req, struct web_reply *reply)
{
    struct webdb_features f;
    struct overview o;
    char err[512];
    int status = queries_overview_pooled(req->config, &f, &o, err, sizeof err);
    if (status != 0) {
        pages_error(req, reply, status, err);
        return;
    }
    page_begin(req, reply, "Queues", 5);
    OUT("<h1>Queues</h1>");
    overview_chart(reply, &o);

    OUT("<table id=\"queues\"><thead><tr><th>Queue</th><th>Pending (due)</th><th>Scheduled</th>"
        "<th>Running</th><th>Done</th><th>Dead</th><th>Oldest pending</th>"
        "<th>Done / failed, 1 h</th><th>State, limits</th><th></th></tr></thead><tbody>");
    if (o.queue_count == 0)
        OUT("<tr><td colspan=\"10\" class=\"muted\">No queue has tasks yet.</td></tr>");
    for (int i = 0; i < o.queue_count; i++) {
        const struct queue_row *q = &o.queues[i];
        OUT("<tr data-queue=\"");
        H(q->name);
        OUT("\"><td><a href=\"/queues/");
        render_url(&reply->body, q->name);
        OUT("\">");
        H(q->name);
        OUT("</a></td>");
        count_cell(reply, &q->due, "due");
        count_cell(reply, &q->scheduled, "scheduled");
        count_cell(reply, &q->running, "running");
        count_cell(reply, &q->done, "done");
        count_cell(reply, &q->dead, q->dead.n > 0 ? "dead" : "");
        OUT("<td class=\"n\">");
        age(reply, q->oldest_pending_s);
        OUT("</td><td class=\"n\">%lld / %lld</td>", q->done_hour, q->failed_hour);
        OUT("<td>%s", q->paused ? "<span class=\"paused\">paused</span> " : "");
        /* Limits, as the config (which every pod reads) sets them. */
        int qi = config_find_queue(req->config, q->name);
        if (qi >= 0 && req->config->queues[qi].concurrency > 0)
            OUT("<span class=\"muted\">≤%d running</span> ", req->config->queues[qi].concurrency);
        if (qi >= 0 && req->config->queues[qi].rate != NULL &&
            req->config->queues[qi].rate[0] != '\0') {
            OUT("<span class=\"muted\">");
            H(req->config->queues[qi].rate);
            OUT(" starts</span>");
        }
        OUT("</td><td>");
        if (f.pause) {
            form_open(req, reply, "/api/queues/", q->name, q->paused ? "/resume" : "/pause", "/");
            button(reply, q->paused ? "Resume" : "Pause", false);
        }
        if (q->dead.n > 0) {
            OUT(" <a href=\"/queues/");
            render_url(&reply->body, q->name);
            OUT("?state=dead\">dead tasks</a>");
        }
        OUT("</td></tr>");
    }
    OUT("</tbody></table><p class=\"muted\">Counts above %d are the planner's estimates (≈), as "
        "are all done counts: no index holds them, and the dashboard never scans the table.</p>",
        QUERIES_COUNT_CAP);
    page_end(reply);
    queries_overview_free(&o);
}

static void task_rows(struct web_request *req, struct web_reply *reply, PGresult *res, int shown,
                      const char *back)
{
    OUT("<table id=\"tasks\"><thead><tr><th>ID</th><th>State</th><th>Priority</th>"
        "<th>Run at</th><th>Attempts</th><th>Unique key</th><th>Locked by</th>"
        "<th>Last error</th><th>Created</th><th>Finished</th><th></th></tr></thead><tbody>");
    if (shown == 0)
        OUT("<tr><td colspan=\"11\" class=\"muted\">None.</td></tr>");
    for (int i = 0; i < shown; i++) {
        const char *id = PQgetvalue(res, i, 0);
        const char *state = PQgetvalue(res, i, 2);
        OUT("<tr data-id=\"%s\"><td><a href=\"/tasks/%s\">%s</a></td><td class=\"%s\">", id, id, id,
            strcmp(state, "dead") == 0 ? "dead" : "");
        H(state);
        /* The row's columns 3 to 10 as they come; numbers and the error
         * have a class of their own. */
        static const char *const cell_class[] = {"n", NULL, "n", NULL, NULL, "err", NULL, NULL};
        for (int c = 0; c < (int)(sizeof cell_class / sizeof cell_class[0]); c++) {
            if (cell_class[c] != NULL)
                OUT("</td><td class=\"%s\">", cell_class[c]);
            else
                OUT("</td><td>");
            H(PQgetvalue(res, i, 3 + c));
        }
        OUT("</td><td>");
        if (strcmp(state, "dead") == 0) {
            form_open(req, reply, "/api/tasks/", id, "/requeue", back);
            button(reply, "Requeue", false);
        }
        OUT("</td></tr>");
    }
    OUT("</tbody></table>");
}

void pages_queue(struct web_request *req, struct web_reply *reply, const char *queue)
{
    const char *state = web_query(req, "state");
    const char *after = web_query(req, "after");
    const char *q = web_query(req, "q");
    if (!queries_list_params(&state, &after, &q)) {
        pages_error(req, reply, 400, "unknown state");
        return;
    }
    /* A search for a number is a task id. */
    if (q != NULL && strspn(q, "0123456789") == strlen(q) && strlen(q) <= 18) {
        char path[64];
        snprintf(path, sizeof path, "/tasks/%s", q);
        web_redirect(reply, path);
        return;
    }
    struct webdb_features f;
    char err[512];
    int status;
    PGresult *res = queries_tasks_pooled(queue, state, after, q, &f, &status, err, sizeof err);
    if (res == NULL) {
        pages_error(req, reply, status, err);
        return;
    }
    page_begin(req, reply, queue, 0);
    OUT("<h1>Queue ");
    H(queue);
    OUT("</h1><nav class=\"tabs\">");
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
        OUT("<a href=\"/queues/");
        render_url(&reply->body, queue);
        OUT("?state=%s\"%s>%s</a>", states[i],
            q == NULL && strcmp(states[i], state) == 0 ? " class=\"on\"" : "", states[i]);
    }
    OUT("</nav><form method=\"get\" action=\"/queues/");
    render_url(&reply->body, queue);
    OUT("\"><p><input name=\"q\" placeholder=\"task id or unique key\" value=\"");
    H(q != NULL ? q : "");
    OUT("\"> <button type=\"submit\">Find</button></p></form>");
    /* Where the forms come back to: this page. */
    struct text_buffer back = {0};
    text_append(&back, "/queues/", 8);
    render_url(&back, queue);
    text_appendf(&back, "?state=%s", state);
    const char *back_path = back.data != NULL ? back.data : "/";
    if (q != NULL) {
        OUT("<p class=\"muted\">Pending and running tasks with unique key “");
        H(q);
        OUT("”.</p>");
    }
    if (q == NULL && strcmp(state, "dead") == 0 && PQntuples(res) > 0) {
        form_open(req, reply, "/api/queues/", queue, "/requeue-dead", back_path);
        button(reply, "Requeue all dead tasks of this queue", true);
    }
    if (f.pause) {
        OUT(" ");
        form_open(req, reply, "/api/queues/", queue, "/pause", back_path);
        button(reply, "Pause", false);
        OUT(" ");
        form_open(req, reply, "/api/queues/", queue, "/resume", back_path);
        button(reply, "Resume", false);
    }
    int rows = PQntuples(res);
    int shown = q == NULL && rows > QUERIES_PAGE_ROWS ? QUERIES_PAGE_ROWS : rows;
    task_rows(req, reply, res, shown, back_path);
    if (q == NULL && rows > QUERIES_PAGE_ROWS) {
        OUT("<p><a id=\"next\" href=\"/queues/");
        render_url(&reply->body, queue);
        OUT("?state=%s&amp;after=", state);
        render_url(&reply->body, PQgetvalue(res, shown - 1, PQnfields(res) - 1));
        OUT("\">Next %d →</a></p>", QUERIES_PAGE_ROWS);
    }
    text_free(&back);
    PQclear(res);
    page_end(reply);
}

static void field(struct web_reply *reply, const PGresult *res, const char *label,
                  const char *column)
{
    int col = PQfnumber(res, column);
    OUT("<dt>");
    H(label);
    OUT("</dt><dd id=\"task-%s\">", column);
    if (col < 0 || PQgetisnull(res, 0, col))
        OUT("<span class=\"muted\">—</span>");
    else
        H(PQgetvalue(res, 0, col));
    OUT("</dd>");
}

void pages_task(struct web_request *req, struct web_reply *reply, const char *id)
{
    struct webdb_features f;
    char err[512];
    int status;
    PGresult *res = queries_task_pooled(id, &f, &status, err, sizeof err);
    if (res == NULL) {
        pages_error(req, reply, status, err);
        return;
    }
    char title[64];
    snprintf(title, sizeof title, "Task %s", PQgetvalue(res, 0, 0));
    page_begin(req, reply, title, 0);
    const char *queue = PQgetvalue(res, 0, 1);
    const char *state = PQgetvalue(res, 0, 2);
    OUT("<h1>");
    H(title);
    OUT(" <span class=\"muted\">of</span> <a href=\"/queues/");
    render_url(&reply->body, queue);
    OUT("?state=");
    render_url(&reply->body, state);
    OUT("\">");
    H(queue);
    OUT("</a></h1><dl>");
    field(reply, res, "State", "state");
    field(reply, res, "Priority", "priority");
    field(reply, res, "Run at", "run_at");
    field(reply, res, "Attempts", "attempts");
    field(reply, res, "Max attempts", "max_attempts");
    field(reply, res, "Unique key", "unique_key");
    field(reply, res, "Locked by", "locked_by");
    field(reply, res, "Locked until", "locked_until");
    field(reply, res, "Created", "created_at");
    field(reply, res, "Started", "started_at");
    field(reply, res, "Finished", "finished_at");
    OUT("</dl><p>");
    char back[64];
    snprintf(back, sizeof back, "/tasks/%s", PQgetvalue(res, 0, 0));
    if (strcmp(state, "dead") == 0) {
        form_open(req, reply, "/api/tasks/", PQgetvalue(res, 0, 0), "/requeue", back);
        button(reply, "Requeue", false);
    }
    if (f.cancel && (strcmp(state, "pending") == 0 || strcmp(state, "running") == 0)) {
        OUT(" ");
        form_open(req, reply, "/api/tasks/", PQgetvalue(res, 0, 0), "/cancel", back);
        button(reply, "Cancel", true);
    }
    OUT("</p><h2>Last error</h2><pre id=\"task-last_error\">");
    int col = PQfnumber(res, "last_error");
    if (PQgetisnull(res, 0, col))
        OUT("<span class=\"muted\">none</span>");
    else
        H(PQgetvalue(res, 0, col));
    OUT("</pre><h2>Payload</h2><pre id=\"task-payload\">");
    H(PQgetvalue(res, 0, PQfnumber(res, "payload_pretty")));
    OUT("</pre>");
    PQclear(res);
    page_end(reply);
}

void pages_schedules(struct web_request *req, struct web_reply *reply)
{
    PGconn *conn = webdb_acquire();
    if (conn == NULL) {
        db_unavailable(req, reply);
        return;
    }
    struct webdb_features f = webdb_features(); /* as the connection found them */
    char err[512];
    PGresult *res = f.schedules ? queries_schedules(conn, req->config, err, sizeof err) : NULL;
    webdb_release(conn);
    if (f.schedules && res == NULL) {
        pages_error(req, reply, 500, err);
        return;
    }
    page_begin(req, reply, "Schedules", 0);
    OUT("<h1>Schedules</h1>");
    if (!f.schedules) {
        OUT("<p class=\"muted\">This database has no schedules table yet (pgwork.schedules): "
            "run <code>pgwork migrate</code>.</p>");
        page_end(reply);
        return;
    }
    OUT("<table id=\"schedules\"><thead><tr><th>Schedule</th><th>Queue</th><th>When</th>"
        "<th>Last tick</th><th>Next tick</th><th>Made by</th><th></th></tr></thead><tbody>");
    if (PQntuples(res) == 0)
        OUT("<tr><td colspan=\"7\" class=\"muted\">No schedule in the config or the "
            "database.</td></tr>");
    for (int i = 0; i < PQntuples(res); i++) {
        const char *name = PQgetvalue(res, i, 0);
        OUT("<tr data-schedule=\"");
        H(name);
        OUT("\"><td>");
        H(name);
        OUT("</td><td><a href=\"/queues/");
        render_url(&reply->body, PQgetvalue(res, i, 1));
        OUT("\">");
        H(PQgetvalue(res, i, 1));
        OUT("</a></td>");
        for (int col = 2; col <= 5; col++) {
            OUT("<td>");
            if (PQgetisnull(res, i, col))
                OUT("<span class=\"muted\">—</span>");
            else
                H(PQgetvalue(res, i, col));
            OUT("</td>");
        }
        OUT("<td>");
        if (PQgetvalue(res, i, 7)[0] == 't') {
            form_open(req, reply, "/api/schedules/", name, "/run", "/schedules");
            button(reply, "Run now", false);
        } else {
            OUT("<span class=\"muted\">not in this config</span>");
        }
        OUT("</td></tr>");
    }
    OUT("</tbody></table><p class=\"muted\">Run now makes one task as a tick would (queue, "
        "payload, priority from the config), due now; the next tick still comes on "
        "time.</p>");
    PQclear(res);
    page_end(reply);
}

void pages_login(struct web_request *req, struct web_reply *reply, unsigned status,
                 const char *message)
{
    reply->status = status;
    page_begin(req, reply, "Log in", 0);
    OUT("<div class=\"login\"><h1>pgwork</h1>");
    if (message != NULL) {
        OUT("<p class=\"flash\">");
        H(message);
        OUT("</p>");
    }
    OUT("<form method=\"post\" action=\"/login\"><label>Token<input type=\"password\" "
        "name=\"token\" autocomplete=\"current-password\" autofocus></label>"
        "<input type=\"hidden\" name=\"back\" value=\"/\">"
        "<button type=\"submit\">Log in</button></form>"
        "<p class=\"muted\">The token is <code>web.token_file</code>'s or "
        "<code>PGWORK_WEB_TOKEN</code>'s.</p></div>");
    page_end(reply);
}

void pages_error(struct web_request *req, struct web_reply *reply, unsigned status,
                 const char *message)
{
    text_free(&reply->body);
    reply->status = status;
    page_begin(req, reply, "Error", 0);
    OUT("<h1>%u</h1><p class=\"flash\">", status);
    H(message);
    OUT("</p>");
    page_end(reply);
}
