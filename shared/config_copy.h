/*
 * config_copy.h — the typed copy of a parsed config file (config_copy.c).
 * Part of config_load(): only config.c uses it; config_free() and the
 * lookups are config.h's API.
 */
#ifndef PGWORK_CONFIG_COPY_H
#define PGWORK_CONFIG_COPY_H

#include <stddef.h>

#include <confuse.h>

#include "config.h"

/* Copy root (parsed and validated) into a new config whose path is path.
 * NULL when out of memory (err "") or when a schedule's checked value no
 * longer parses (err says which: not expected). */
struct pgwork_config *config_copy(cfg_t *root, const char *path, char *err, size_t errlen);

#endif
