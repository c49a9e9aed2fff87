/*
 * zone.c — a named zone's UTC offsets through TZ + tzset() + localtime_r(),
 * scoped so the borrowed TZ never outlives one call (see zone.h for why
 * that is safe in pgwork).
 *
 * glibc falls back to UTC, silently, for a TZ it cannot load; zone_check()
 * is what turns a misspelt zone into an error, so every name that reaches
 * zone_enter() must have passed it.
 */
#include "zone.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static bool is_utc(const char *name)
{
    return name == NULL || name[0] == '\0' || strcmp(name, "UTC") == 0;
}

/* Area/City spelling only: no absolute paths, no "..", nothing a shell or
 * a POSIX TZ rule ("EST5EDT,M3.2.0") would read differently. */
static bool name_is_plain(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > ZONE_NAME_MAX || name[0] == '/' || name[0] == '-' || name[n - 1] == '/')
        return false;
    if (strstr(name, "..") != NULL || strstr(name, "//") != NULL)
        return false;
    for (const char *p = name; *p != '\0'; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '/' || c == '_' || c == '-' || c == '+';
        if (!ok)
            return false;
    }
    return true;
}

int zone_check(const char *name, char *why, size_t len)
{
    if (is_utc(name))
        return 0;
    if (!name_is_plain(name)) {
        snprintf(why, len, "not a zone name (expected Area/City, e.g. Europe/Berlin)");
        return -1;
    }
    const char *dir = getenv("TZDIR");
    if (dir == NULL || dir[0] == '\0')
        dir = "/usr/share/zoneinfo";
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char magic[4] = {0};
    ssize_t got = fd >= 0 ? read(fd, magic, sizeof(magic)) : -1;
    int saved = errno;
    if (fd >= 0)
        close(fd);
    if (got == (ssize_t)sizeof(magic) && memcmp(magic, "TZif", 4) == 0)
        return 0;
    if (fd < 0 && saved != ENOENT && saved != ENOTDIR)
        snprintf(why, len, "cannot read %s: %s", path, strerror(saved));
    else
        snprintf(why, len, "unknown zone (not in %s)", dir);
    return -1;
}

int zone_enter(struct zone_scope *z, const char *name)
{
    *z = (struct zone_scope){.utc = is_utc(name)};
    if (z->utc)
        return 0;
    const char *old = getenv("TZ");
    z->had_tz = old != NULL;
    if (old != NULL && (z->old_tz = strdup(old)) == NULL)
        return -1;
    if (setenv("TZ", name, 1) != 0) {
        free(z->old_tz);
        z->old_tz = NULL;
        return -1;
    }
    tzset(); /* localtime_r() alone does not re-read TZ in glibc */
    return 0;
}

long zone_offset(const struct zone_scope *z, int64_t t)
{
    if (z->utc)
        return 0;
    time_t tt = (time_t)t;
    struct tm tm;
    if (localtime_r(&tt, &tm) == NULL)
        return 0;
    return tm.tm_gmtoff;
}

void zone_leave(struct zone_scope *z)
{
    if (z->utc)
        return;
    if (z->had_tz)
        setenv("TZ", z->old_tz, 1);
    else
        unsetenv("TZ");
    tzset();
    free(z->old_tz);
    z->old_tz = NULL;
}
