/*
 * fuzz_config.c — libFuzzer target over the configuration parser (DESIGN §4,
 * §6 "bad config").
 *
 * config_load() reads a path (there is no in-memory entry point), so each
 * input is written to a memfd and loaded through /proc/self/fd/N: no disk,
 * no leftover files. Properties checked on every input:
 *  - no crash, no sanitizer report, no leak (libFuzzer's LeakSanitizer runs
 *    after each input);
 *  - exactly one of: success (a config comes back, err untouched) or
 *    failure (-1, a one-line message that names the file);
 *  - a loaded config is internally consistent: the ranges config.c
 *    promises (workers.min <= count <= max, batch 1..1000, queue names
 *    non-empty and at most CONFIG_QUEUE_NAME_MAX bytes, ...).
 * The same bytes also go through config_parse_duration(), whose contract is
 * "0 and milliseconds, or -1".
 *
 * Replay a finding: build/fuzz/fuzz_config FILE.
 *
 * config_load() is not reentrant (libconfuse's lexer is global): libFuzzer
 * runs one input at a time in one thread, which is all it needs.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shared/config.h"

static int memfd = -1;
static char path[64];

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_config: property violated: %s\n", what);
        abort();
    }
}

static void check_config(const struct pgwork_config *c)
{
    check(c->path != NULL && strcmp(c->path, path) == 0, "config->path is the file");
    check(c->workers.min >= 1 && c->workers.min <= c->workers.count, "workers.min <= count");
    check(c->workers.count <= c->workers.max, "workers.count <= max");
    check(c->listener.reconnect_min_ms > 0 &&
              c->listener.reconnect_min_ms <= c->listener.reconnect_max_ms,
          "0 < reconnect_min <= reconnect_max");
    check(c->listener.channel != NULL && c->listener.channel[0] != '\0' &&
              strlen(c->listener.channel) <= 63,
          "channel 1..63 bytes");
    check(c->queue_count >= 0 && (c->queue_count == 0 || c->queues != NULL), "queues array");
    for (int i = 0; i < c->queue_count; i++) {
        const struct queue_config *q = &c->queues[i];
        check(q->name != NULL && q->name[0] != '\0', "queue name non-empty");
        check(strlen(q->name) <= CONFIG_QUEUE_NAME_MAX, "queue name <= CONFIG_QUEUE_NAME_MAX");
        check(q->batch == QUEUE_BATCH_AUTO || (q->batch >= 1 && q->batch <= 1000),
              "batch auto or 1..1000");
        check(q->max_attempts >= 1, "max_attempts >= 1");
        check(q->timeout_ms >= 0, "timeout >= 0");
        check(q->backoff_base_ms > 0 && q->backoff_base_ms <= q->backoff_max_ms,
              "0 < backoff_base <= backoff_max");
        check(q->workers >= 0 && q->workers <= c->workers.max, "queue.workers <= workers.max");
        if (q->handler == HANDLER_EXEC)
            check(q->command != NULL && q->command_argc >= 1 && q->command[0] != NULL &&
                      q->command[q->command_argc] == NULL,
                  "exec queue has a NULL-terminated command");
        else
            check(q->statement != NULL, "sql queue has a statement");
        for (int j = 0; j < i; j++)
            check(strcmp(c->queues[j].name, q->name) != 0, "queue names unique");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (memfd < 0) {
        memfd = memfd_create("fuzz_config", MFD_CLOEXEC);
        if (memfd < 0) {
            perror("memfd_create");
            abort();
        }
        snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
    }
    if (ftruncate(memfd, 0) != 0 || pwrite(memfd, data, size, 0) != (ssize_t)size) {
        perror("fuzz_config: memfd");
        abort();
    }

    struct pgwork_config *config = NULL;
    char err[1024];
    memset(err, 'x', sizeof(err));
    int rc = config_load(path, &config, err, sizeof(err));
    if (rc == 0) {
        check(config != NULL, "success returns a config");
        check_config(config);
        config_free(config);
    } else {
        check(rc == -1, "failure returns -1");
        check(config == NULL, "failure leaves *out untouched");
        check(memchr(err, '\0', sizeof(err)) != NULL, "error message NUL-terminated");
        check(err[0] != '\0', "failure says why");
        check(strstr(err, path) != NULL, "the message names the file");
        /* FUZZ_CONFIG_MULTILINE_OK=1 lets a long campaign go past this
         * known finding (libconfuse's own messages echo raw tokens). */
        if (getenv("FUZZ_CONFIG_MULTILINE_OK") == NULL)
            check(strchr(err, '\n') == NULL, "the message is one line");
    }

    /* config_parse_duration: a C string. */
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    int64_t ms = -12345;
    int drc = config_parse_duration(text, &ms);
    check(drc == 0 || drc == -1, "config_parse_duration returns 0 or -1");
    if (drc == 0)
        check(ms >= 0, "a duration is not negative");
    else
        check(ms == -12345, "a failed parse leaves *ms alone");
    free(text);
    return 0;
}
