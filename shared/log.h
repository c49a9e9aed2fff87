/*
 * log.h — one line per event on stderr: JSON objects by default
 * (log.format = "json"), or "text" for humans.
 *
 * Every line carries ts, level, msg, pid and role; a worker's lines also
 * carry its slot number, and log_task() adds queue and task. Messages are
 * short and lowercase: what failed, on what, and why. A message is written
 * with a single write(2), so lines from several processes never interleave.
 * Conninfo strings must go through log_redact_conninfo() before they are
 * logged: passwords never appear in a log line.
 */
#ifndef PGWORK_LOG_H
#define PGWORK_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* Set once per process: role is "supervisor", "worker" or "cli"; worker is
 * the slot number, or -1. */
void log_init(const char *role, int worker, enum log_level level, enum log_format format);

/* Change level/format after a reload. */
void log_configure(enum log_level level, enum log_format format);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A line about one task: adds "queue" and "task" fields. */
void log_task(enum log_level level, const char *queue, int64_t task_id, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)

/* Parse "debug" | "info" | "warn" | "error"; -1 if unknown. */
int log_level_parse(const char *text);

/* Copy conninfo (key=value or URL form) into out with any password
 * replaced by "***". Always NUL-terminates. */
void log_redact_conninfo(const char *conninfo, char *out, size_t outlen);

#endif
