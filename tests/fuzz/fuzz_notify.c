/*
 * fuzz_notify.c — libFuzzer target over the task-notification payload
 * parser (supervisor/listener.h, DESIGN §2): every NOTIFY on the task
 * channel reaches it, and anybody who can connect can send one.
 *
 * The config has a few queues, hostile names included, loaded once.
 * Properties checked on every input (NUL-terminated; a payload cannot hold
 * a NUL):
 *  - the result is one of the four enum values;
 *  - "*" and only "*" is a sweep;
 *  - QUEUE: the index is in range, the delay is >= 0, and the payload is
 *    exactly "<digits> <that queue's name>" — the delay printed back gives
 *    the same number;
 *  - OTHER_QUEUE and MALFORMED leave the outputs untouched;
 *  - a payload built from a configured name ("<n> <name>") is always
 *    recognised as that queue (checked with the input as the name, when it
 *    is one);
 *  - control messages (supervisor/control.h, migration 0011): a payload
 *    starting with '!' never parses as a task notification, and the text
 *    after it parses as pause/resume with the name that follows the word,
 *    as cancel with the positive number that follows it and a non-empty
 *    owner, or as nothing.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shared/config.h"
#include "supervisor/control.h"
#include "supervisor/listener.h"

static struct pgwork_config *config;

static const char config_text[] = "queue \"default\" { command = {\"/bin/true\"} }\n"
                                  "queue \"it's a \\\"queue\\\"\" { command = {\"/bin/true\"} }\n"
                                  "queue \"0 zero\" { command = {\"/bin/true\"} }\n"
                                  "queue \"*\" { command = {\"/bin/true\"} }\n"
                                  "queue \"\xc3\xbcnic\xc3\xb6"
                                  "de \xe2\x9c\x93\" { command = {\"/bin/true\"} }\n"
                                  "queue \" \" { command = {\"/bin/true\"} }\n";

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_notify: property violated: %s\n", what);
        abort();
    }
}

static void load_config(void)
{
    int fd = memfd_create("fuzz_notify", MFD_CLOEXEC);
    if (fd < 0 || write(fd, config_text, strlen(config_text)) != (ssize_t)strlen(config_text)) {
        perror("fuzz_notify: memfd");
        abort();
    }
    char path[64], err[1024];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    if (config_load(path, &config, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_notify: the built-in config does not load: %s\n", err);
        abort();
    }
    close(fd);
}

static int is_digits(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (config == NULL)
        load_config();
    char *payload = malloc(size + 1);
    if (payload == NULL)
        return 0;
    memcpy(payload, data, size);
    payload[size] = '\0';

    int q = -7;
    int64_t delay = -7;
    int kind = listener_parse_notification(config, payload, &q, &delay);
    switch (kind) {
    case LISTENER_NOTIFY_SWEEP:
        check(strcmp(payload, "*") == 0, "only \"*\" sweeps");
        break;
    case LISTENER_NOTIFY_QUEUE:
    case LISTENER_NOTIFY_QUEUE_AT: {
        /* "@<due> name" (absolute) or "<delay> name". */
        const char *number = kind == LISTENER_NOTIFY_QUEUE_AT ? payload + 1 : payload;
        check(kind == LISTENER_NOTIFY_QUEUE || payload[0] == '@', "absolute only after '@'");
        check(q >= 0 && q < config->queue_count, "queue index in range");
        check(delay >= 0, "delay >= 0");
        const char *space = strchr(number, ' ');
        check(space != NULL && is_digits(number, (size_t)(space - number)),
              "a queue payload's number is digits and a space");
        check(strcmp(space + 1, config->queues[q].name) == 0, "the name after the space");
        check(strtoll(number, NULL, 10) == delay, "the delay is the number");
        break;
    }
    case LISTENER_NOTIFY_OTHER_QUEUE:
    case LISTENER_NOTIFY_MALFORMED:
        check(q == -7 && delay == -7, "no outputs unless a queue matched");
        check(strcmp(payload, "*") != 0, "\"*\" is a sweep");
        break;
    default:
        check(0, "a known result");
    }

    if (payload[0] == '!')
        check(kind == LISTENER_NOTIFY_MALFORMED, "a control message is no task notification");
    struct control_message m;
    switch (control_parse(payload, &m)) {
    case CONTROL_PAUSE:
    case CONTROL_RESUME: {
        const char *word = m.kind == CONTROL_PAUSE ? "pause " : "resume ";
        check(strncmp(payload, word, strlen(word)) == 0 && m.queue == payload + strlen(word) &&
                  m.queue[0] != '\0',
              "pause/resume: the name follows the word");
        break;
    }
    case CONTROL_CANCEL: {
        char *end = NULL;
        long long id = strncmp(payload, "cancel ", 7) == 0 ? strtoll(payload + 7, &end, 10) : 0;
        check(m.task_id > 0 && id == m.task_id && end != NULL && *end == ' ' &&
                  m.locked_by == end + 1 && m.locked_by[0] != '\0',
              "cancel: the id is the number after the word, then the owner");
        break;
    }
    case CONTROL_REREAD:
        check(strcmp(payload, "paused") == 0, "only \"paused\" rereads");
        break;
    case CONTROL_MALFORMED:
        check(m.queue == NULL && m.locked_by == NULL, "no outputs when malformed");
        break;
    default:
        check(0, "a known control result");
    }

    /* The input as a queue name: "<n> name" must find it iff configured. */
    if (size < 2000) {
        char *built = malloc(size + 32);
        if (built != NULL) {
            snprintf(built, size + 32, "%u %s", (unsigned)(size * 7919u), payload);
            int want = -1;
            for (int i = 0; i < config->queue_count; i++)
                if (strcmp(config->queues[i].name, payload) == 0)
                    want = i;
            q = -7;
            delay = -7;
            kind = listener_parse_notification(config, built, &q, &delay);
            if (want >= 0)
                check(kind == LISTENER_NOTIFY_QUEUE && q == want &&
                          delay == (int64_t)(unsigned)(size * 7919u),
                      "a configured name is recognised");
            else
                check(kind != LISTENER_NOTIFY_QUEUE, "an unknown name is not a queue");
            free(built);
        }
    }
    free(payload);
    return 0;
}
