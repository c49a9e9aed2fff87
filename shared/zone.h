/*
 * zone.h — UTC offsets of a named time zone from the system tz database.
 *
 * glibc has no "localtime in zone X" call (no tzalloc/localtime_rz), so a
 * zone is read by pointing TZ at it for the length of a scope:
 * zone_enter() sets TZ and calls tzset(), zone_offset() asks localtime_r(),
 * zone_leave() puts TZ back exactly as it was (or unset) and calls tzset()
 * again. Why that is safe here: the supervisor, the only process that
 * computes schedules, is single-threaded; a scope is one function call that
 * neither forks, nor logs, nor calls back, so no other code ever sees the
 * borrowed TZ, and children inherit the untouched environment. Nothing else
 * in pgwork calls localtime (logs use gmtime_r). Replacing this with a
 * reader of the TZif files changes this file only.
 *
 * The name "" and "UTC" mean UTC and never touch TZ.
 */
#ifndef PGWORK_ZONE_H
#define PGWORK_ZONE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest zone name accepted ("America/Argentina/ComodRivadavia" is 32). */
#define ZONE_NAME_MAX 63

/* A zone in use between zone_enter() and zone_leave(). */
struct zone_scope {
    bool utc;     /* offsets are 0; TZ untouched */
    bool had_tz;  /* TZ was set before zone_enter */
    char *old_tz; /* its value, to restore (malloc'd) */
};

/* 0 if `name` is "", "UTC", or a zone file of the tz database (TZDIR or
 * /usr/share/zoneinfo), else -1 and why ("unknown", "not a zone name"). */
int zone_check(const char *name, char *why, size_t len);

/* Start using zone `name` (already checked). -1 only when out of memory. */
int zone_enter(struct zone_scope *z, const char *name);

/* Seconds east of UTC in the scope's zone at instant t (epoch seconds). */
long zone_offset(const struct zone_scope *z, int64_t t);

/* Restore TZ as it was before zone_enter(). */
void zone_leave(struct zone_scope *z);

#endif
