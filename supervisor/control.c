/*
 * control.c — the control messages of the task channel (control.h).
 *
 * Invariant: pure — reads the message, writes only *out, which points
 * into the message; never trusts it (a payload anyone may send): a name
 * is looked up later among the configured queues, an owner tag is matched
 * whole against this pod's workers, an id must be a positive number.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"

/* message starts with word and a space, and something follows: what follows. */
static const char *control_argument(const char *message, const char *word)
{
    size_t len = strlen(word);
    if (strncmp(message, word, len) != 0 || message[len] != ' ' || message[len + 1] == '\0')
        return NULL;
    return message + len + 1;
}

enum control_kind control_parse(const char *message, struct control_message *out)
{
    *out = (struct control_message){.kind = CONTROL_MALFORMED};
    const char *arg;
    if (strcmp(message, "paused") == 0) {
        out->kind = CONTROL_REREAD;
    } else if ((arg = control_argument(message, "pause")) != NULL) {
        out->kind = CONTROL_PAUSE;
        out->queue = arg;
    } else if ((arg = control_argument(message, "resume")) != NULL) {
        out->kind = CONTROL_RESUME;
        out->queue = arg;
    } else if ((arg = control_argument(message, "cancel")) != NULL &&
               isdigit((unsigned char)*arg)) {
        char *end;
        errno = 0;
        long long id = strtoll(arg, &end, 10);
        if (errno == 0 && id > 0 && *end == ' ' && end[1] != '\0') {
            out->kind = CONTROL_CANCEL;
            out->task_id = id;
            out->locked_by = end + 1;
        }
    }
    return out->kind;
}
