/*
 * schedule_parse.c — cron expression text into struct schedule_cron, with
 * a reason naming the field when it is wrong (grammar and rules in
 * schedule.h). Never reads past the string; never allocates.
 */
#include "schedule.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

struct field_spec {
    const char *name;         /* as in messages: "day-of-week" */
    int lo, hi;               /* accepted numbers */
    const char *const *names; /* 3-letter names, names[0] = lo (NULL: none) */
    const char *name_kind;    /* "month name", "day name" */
};

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul",
                                          "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const day_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

static const struct field_spec fields[5] = {
    {"minute", 0, 59, NULL, NULL},
    {"hour", 0, 23, NULL, NULL},
    {"day-of-month", 1, 31, NULL, NULL},
    {"month", 1, 12, month_names, "month name"},
    {"day-of-week", 0, 7, day_names, "day name"},
};

static const struct {
    const char *name;
    const char *expr;
} shortcuts[] = {
    {"@hourly", "0 * * * *"},   {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"},
    {"@weekly", "0 0 * * 0"},   {"@monthly", "0 0 1 * *"}, {"@yearly", "0 0 1 1 *"},
    {"@annually", "0 0 1 1 *"},
};

/* Text from the expression for a message: at most 40 bytes, anything not
 * printable as '?' (expressions come from files an operator may not own). */
static const char *show(const char *text, size_t n, char *buf, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < n && i < 40 && o + 1 < len; i++)
        buf[o++] = isprint((unsigned char)text[i]) ? text[i] : '?';
    buf[o < len ? o : len - 1] = '\0';
    return buf;
}

/* One number or name at *p, advancing *p. -1 with *p unmoved if none. */
static int read_value(const struct field_spec *f, const char **p, const char *end, int *out)
{
    const char *s = *p;
    if (s < end && isdigit((unsigned char)*s)) {
        int v = 0;
        for (; s < end && isdigit((unsigned char)*s); s++)
            v = v * 10 + (*s - '0') > 100000 ? 100000 : v * 10 + (*s - '0'); /* saturates */
        *out = v;
        *p = s;
        return 0;
    }
    if (f->names == NULL || end - s < 3)
        return -1;
    for (int i = 0; f->names[i] != NULL; i++) {
        if (strncasecmp(s, f->names[i], 3) == 0 &&
            (end - s == 3 || !isalpha((unsigned char)s[3]))) {
            *out = f->lo + i;
            *p = s + 3;
            return 0;
        }
    }
    return -1;
}

/* "A", "A-B", "A-B/S", "*", "*\/S" (item = [s, end)) into *bits. */
static int parse_item(const struct field_spec *f, const char *s, const char *end, uint64_t *bits,
                      char *why, size_t len)
{
    char shown[48];
    const char *p = s;
    int a = f->lo, b = f->hi, step = 1;
    bool range = true;
    if (p < end && *p == '*') {
        p++;
    } else if (read_value(f, &p, end, &a) != 0) {
        snprintf(why, len, "cron %s \"%s\": not a number%s%s", f->name, show(s, end - s, shown, 48),
                 f->names ? " or " : "", f->names ? f->name_kind : "");
        return -1;
    } else if (p < end && *p == '-') {
        p++;
        if (read_value(f, &p, end, &b) != 0) {
            snprintf(why, len, "cron %s \"%s\": range needs an end", f->name,
                     show(s, end - s, shown, 48));
            return -1;
        }
    } else {
        b = a;
        range = false;
    }
    if (p < end && *p == '/') {
        const char *q = ++p;
        if (!range) {
            snprintf(why, len, "cron %s \"%s\": a step needs a range or *", f->name,
                     show(s, end - s, shown, 48));
            return -1;
        }
        step = 0;
        for (; p < end && isdigit((unsigned char)*p); p++)
            step = step * 10 + (*p - '0') > 100000 ? 100000 : step * 10 + (*p - '0');
        if (p == q || step < 1 || step > f->hi - f->lo + 1) {
            snprintf(why, len, "cron %s \"%s\": step must be 1-%d", f->name,
                     show(s, end - s, shown, 48), f->hi - f->lo + 1);
            return -1;
        }
    }
    if (p != end) {
        char at[4];
        snprintf(why, len, "cron %s \"%s\": unexpected \"%s\"", f->name,
                 show(s, end - s, shown, 48), show(p, 1, at, sizeof(at)));
        return -1;
    }
    int bad = a < f->lo || a > f->hi ? a : b < f->lo || b > f->hi ? b : -1;
    if (bad >= 0) {
        snprintf(why, len, "cron %s %d out of range %d-%d", f->name, bad, f->lo, f->hi);
        return -1;
    }
    if (b < a) {
        snprintf(why, len, "cron %s \"%s\": range end before start", f->name,
                 show(s, end - s, shown, 48));
        return -1;
    }
    for (int v = a; v <= b; v += step)
        *bits |= 1ULL << v;
    return 0;
}

/* A comma-separated list of items ([s, end)) into *bits. */
static int parse_field(const struct field_spec *f, const char *s, const char *end, uint64_t *bits,
                       char *why, size_t len)
{
    *bits = 0;
    for (const char *item = s; item <= end;) {
        const char *comma = memchr(item, ',', (size_t)(end - item));
        const char *stop = comma != NULL ? comma : end;
        if (stop == item) {
            char shown[48];
            snprintf(why, len, "cron %s \"%s\": empty list item", f->name,
                     show(s, end - s, shown, sizeof(shown)));
            return -1;
        }
        if (parse_item(f, item, stop, bits, why, len) != 0)
            return -1;
        item = stop + 1;
    }
    return 0;
}

/* Can any date satisfy months x days? (When neither day field is a star,
 * every month has every weekday, so the answer is yes.) */
static bool some_date_matches(const struct schedule_cron *c)
{
    static const int longest[13] = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (!c->day_star && !c->weekday_star)
        return true;
    for (int m = 1; m <= 12; m++)
        for (int d = 1; d <= longest[m]; d++)
            if ((c->months >> m & 1) && (c->days >> d & 1))
                return true;
    return false;
}

/* Split into whitespace-separated fields: how many (up to 6 recorded). */
static int split_fields(const char *expr, const char *start[6], const char *stop[6])
{
    int n = 0;
    for (const char *p = expr; *p != '\0';) {
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '\0')
            break;
        const char *q = p;
        while (*q != '\0' && !isspace((unsigned char)*q))
            q++;
        if (n < 6)
            start[n] = p, stop[n] = q;
        n++;
        p = q;
    }
    return n;
}

static int parse_shortcut(const char *expr, struct schedule *out, char *why, size_t len)
{
    const char *start[6], *stop[6];
    char shown[48];
    int n = split_fields(expr, start, stop);
    size_t word = (size_t)(stop[0] - start[0]);
    if (n != 1) {
        snprintf(why, len, "cron \"%s\": a shortcut stands alone",
                 show(expr, strlen(expr), shown, 48));
        return -1;
    }
    for (size_t i = 0; i < sizeof(shortcuts) / sizeof(shortcuts[0]); i++)
        if (strlen(shortcuts[i].name) == word &&
            strncasecmp(start[0], shortcuts[i].name, word) == 0)
            return schedule_parse_cron(shortcuts[i].expr, out, why, len);
    snprintf(why, len,
             "cron \"%s\": unknown shortcut (expected @hourly, @daily, @midnight, @weekly, "
             "@monthly, @yearly or @annually)",
             show(start[0], word, shown, 48));
    return -1;
}

int schedule_parse_cron(const char *expr, struct schedule *out, char *why, size_t len)
{
    if (strlen(expr) > SCHEDULE_CRON_MAX) {
        snprintf(why, len, "cron: expression longer than %d bytes", SCHEDULE_CRON_MAX);
        return -1;
    }
    const char *lead = expr;
    while (isspace((unsigned char)*lead))
        lead++;
    if (*lead == '@')
        return parse_shortcut(lead, out, why, len);
    const char *start[6], *stop[6];
    int n = split_fields(expr, start, stop);
    if (n != 5) {
        snprintf(why, len, "cron: %d field%s, expected 5", n, n == 1 ? "" : "s");
        return -1;
    }
    uint64_t bits[5];
    for (int i = 0; i < 5; i++)
        if (parse_field(&fields[i], start[i], stop[i], &bits[i], why, len) != 0)
            return -1;
    struct schedule_cron c = {
        .minutes = bits[0],
        .hours = (uint32_t)bits[1],
        .days = (uint32_t)bits[2],
        .months = (uint16_t)bits[3],
        .weekdays = (uint8_t)((bits[4] | bits[4] >> 7) & 0x7f), /* 7 is Sunday too */
        .day_star = *start[2] == '*',
        .weekday_star = *start[4] == '*',
        .wildcard = *start[0] == '*' || *start[1] == '*',
    };
    if (!some_date_matches(&c)) {
        char shown[48];
        snprintf(why, len, "cron \"%s\": never fires (no month has such a day-of-month)",
                 show(expr, strlen(expr), shown, sizeof(shown)));
        return -1;
    }
    *out = (struct schedule){.kind = SCHEDULE_CRON, .cron = c};
    return 0;
}

int schedule_parse_every(int64_t every_ms, struct schedule *out, char *why, size_t len)
{
    if (every_ms < SCHEDULE_EVERY_MIN_MS || every_ms > SCHEDULE_EVERY_MAX_MS) {
        snprintf(why, len, "every %lldms out of range 1s-366d", (long long)every_ms);
        return -1;
    }
    *out = (struct schedule){.kind = SCHEDULE_EVERY, .every_ms = every_ms};
    return 0;
}

int schedule_set_zone(struct schedule *s, const char *zone, char *why, size_t len)
{
    char reason[256];
    if (zone_check(zone, reason, sizeof(reason)) != 0) {
        char shown[48];
        snprintf(why, len, "timezone \"%s\": %s", show(zone, strlen(zone), shown, sizeof(shown)),
                 reason);
        return -1;
    }
    snprintf(s->zone, sizeof(s->zone), "%s", zone);
    return 0;
}
