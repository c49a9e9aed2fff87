/*
 * control.h — the control messages pods hear on the task channel
 * (migration 0011: pgwork.pause, pgwork.resume, pgwork.cancel send them):
 * their parser. The supervisor acts on them (supervisor_setup.c).
 */
#ifndef PGWORK_CONTROL_H
#define PGWORK_CONTROL_H

#include <stdint.h>

enum control_kind {
    CONTROL_PAUSE,     /* "pause <queue>": the queue is paused now */
    CONTROL_RESUME,    /* "resume <queue>": the queue is not paused now */
    CONTROL_REREAD,    /* "paused": some queue changed; read pgwork.paused_queues again */
    CONTROL_CANCEL,    /* "cancel <id> <locked_by>": that task was cancelled while running */
    CONTROL_MALFORMED, /* anything else: ignored with a warning */
};

struct control_message {
    enum control_kind kind;
    const char *queue;     /* PAUSE, RESUME: points into the message */
    int64_t task_id;       /* CANCEL: > 0 */
    const char *locked_by; /* CANCEL: points into the message */
};

/* Parse a payload's text after its '!'. Pure: any NUL-terminated input is
 * safe. Returns out->kind. */
enum control_kind control_parse(const char *message, struct control_message *out);

#endif
