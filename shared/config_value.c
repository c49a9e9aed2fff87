/*
 * config_value.c — convert and check one value of the config file.
 *
 * Every message here is the part after "file:line: key: " and says what
 * the value must be and what it was; a value from the file is always
 * echoed through config_value_show(), never raw, unless it is known to be
 * digits.
 */
#include "config_value.h"
#include "config.h"
#include "json.h"
#include "schedule.h"
#include "text.h"
#include "zone.h"

#include <confuse.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define CHANNEL_MAX 63 /* PostgreSQL's NAMEDATALEN - 1 */
#define QUOTED_MAX (CONFIG_SHOW_MAX * 4 + 16)

const char *config_value_show(const char *value, char *buf, size_t len)
{
    size_t o = 0;
    buf[o++] = '"';
    for (size_t i = 0; value != NULL && value[i] != '\0'; i++) {
        unsigned char c = (unsigned char)value[i];
        if (i >= CONFIG_SHOW_MAX || o + 8 >= len) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(buf + o, len - o, "\\x%02x", c);
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

const char *config_value_show_duration(long ms, char *buf, size_t len)
{
    if (ms != 0 && ms % 3600000 == 0)
        snprintf(buf, len, "%ldh", ms / 3600000);
    else if (ms != 0 && ms % 60000 == 0)
        snprintf(buf, len, "%ldm", ms / 60000);
    else if (ms != 0 && ms % 1000 == 0)
        snprintf(buf, len, "%lds", ms / 1000);
    else
        snprintf(buf, len, "%ldms", ms);
    return buf;
}

/* "a", "a or b", "a, b or c": the words a key accepts. */
static void join_words(const struct config_word *words, char *buf, size_t len)
{
    size_t n = 0, used = 0;
    while (words[n].word != NULL)
        n++;
    buf[0] = '\0';
    for (size_t i = 0; i < n && used < len; i++) {
        const char *sep = i == 0 ? "" : i + 1 == n ? " or " : ", ";
        int w = snprintf(buf + used, len - used, "%s%s", sep, words[i].word);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

static const struct config_word *find_word(const struct config_word *words, const char *text)
{
    for (; words != NULL && words->word != NULL; words++)
        if (strcmp(text, words->word) == 0)
            return words;
    return NULL;
}

int config_value_count(const char *text, long lo, long hi, const struct config_word *words,
                       long *out, char *why, size_t len)
{
    const struct config_word *w = find_word(words, text);
    if (w != NULL) {
        *out = w->value;
        return 0;
    }
    char quoted[QUOTED_MAX], alternatives[128] = "";
    if (words != NULL) {
        size_t used = (size_t)snprintf(alternatives, sizeof alternatives, " or ");
        join_words(words, alternatives + used, sizeof alternatives - used);
    }
    const char *p = text;
    if (*p == '-' || *p == '+')
        p++;
    bool digits = isdigit((unsigned char)*p);
    while (isdigit((unsigned char)*p))
        p++;
    if (!digits || *p != '\0') {
        snprintf(why, len, "must be an integer%s (got %s)", alternatives,
                 config_value_show(text, quoted, sizeof quoted));
        return -1;
    }

    errno = 0;
    long n = strtol(text, NULL, 10);
    if (errno == ERANGE || n < lo || n > hi) {
        if (hi == INT_MAX)
            snprintf(why, len, "must be at least %ld (got %s)", lo, text);
        else
            snprintf(why, len, "must be between %ld and %ld (got %s)", lo, hi, text);
        return -1;
    }
    *out = n;
    return 0;
}

int config_value_duration(const char *text, long lo, long hi, long *out, char *why, size_t len)
{
    char quoted[QUOTED_MAX], bound[32];
    config_value_show(text, quoted, sizeof quoted);
    int64_t ms;
    if (config_parse_duration(text, &ms) != 0) {
        snprintf(why, len, "invalid duration %s (want a number with ms, s, m, h or d)", quoted);
        return -1;
    }
    if (ms < lo) {
        if (lo == 1)
            snprintf(why, len, "must be greater than 0 (got %s)", quoted);
        else
            snprintf(why, len, "must be at least %s (got %s)",
                     config_value_show_duration(lo, bound, sizeof bound), quoted);
        return -1;
    }
    if (ms > hi) {
        snprintf(why, len, "must be at most %s (got %s)",
                 config_value_show_duration(hi, bound, sizeof bound), quoted);
        return -1;
    }
    *out = (long)ms;
    return 0;
}

int config_value_bool(const char *text, bool *out, char *why, size_t len)
{
    int b = cfg_parse_boolean(text);
    if (b < 0) {
        char quoted[QUOTED_MAX];
        snprintf(why, len, "must be true or false (got %s)",
                 config_value_show(text, quoted, sizeof quoted));
        return -1;
    }
    *out = b != 0;
    return 0;
}

int config_value_word(const char *text, const struct config_word *words, long *out, char *why,
                      size_t len)
{
    const struct config_word *w = find_word(words, text);
    if (w != NULL) {
        *out = w->value;
        return 0;
    }
    char quoted[QUOTED_MAX], wanted[128];
    join_words(words, wanted, sizeof wanted);
    snprintf(why, len, "must be %s (got %s)", wanted,
             config_value_show(text, quoted, sizeof quoted));
    return -1;
}

static bool has_control_char(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

int config_check_channel(const char *value, char *why, size_t len)
{
    size_t n = strlen(value);
    if (n == 0)
        snprintf(why, len, "must not be empty");
    else if (n > CHANNEL_MAX)
        snprintf(why, len, "must be at most %d bytes (got %zu)", CHANNEL_MAX, n);
    else if (has_control_char(value))
        snprintf(why, len, "must not contain control characters");
    else
        return 0;
    return -1;
}

static bool listen_address_ok(const char *value)
{
    if (value[0] == '\0')
        return true;
    const char *colon = strrchr(value, ':');
    if (colon == NULL || colon == value)
        return false;
    size_t host_len = (size_t)(colon - value);
    if (value[0] == '[') {
        if (value[host_len - 1] != ']' || host_len < 3)
            return false;
    } else if (memchr(value, ':', host_len) != NULL) {
        return false; /* a bare IPv6 address: the port would be ambiguous */
    }
    for (size_t i = 0; i < host_len; i++)
        if (isspace((unsigned char)value[i]) || (unsigned char)value[i] < 0x20)
            return false;
    const char *port = colon + 1;
    if (*port == '\0' || strlen(port) > 5)
        return false;
    long n = 0;
    for (const char *p = port; *p != '\0'; p++) {
        if (!isdigit((unsigned char)*p))
            return false;
        n = n * 10 + (*p - '0');
    }
    return n >= 1 && n <= 65535;
}

int config_check_listen(const char *value, char *why, size_t len)
{
    if (listen_address_ok(value))
        return 0;
    char quoted[QUOTED_MAX];
    snprintf(why, len, "must be \"\" or host:port with a port between 1 and 65535 (got %s)",
             config_value_show(value, quoted, sizeof quoted));
    return -1;
}

const char *config_env_forbidden(const char *name)
{
    static const struct {
        const char *name, *why;
    } forbidden[] = {
        {CONFIG_CONNINFO_ENV, "the database connection string"},
        {"PGPASSWORD", "the database password"},
        {"PGPASSFILE", "the database password file"},
        {"PGWORK_WEB_TOKEN", "the dashboard's token"},
    };
    for (size_t i = 0; i < sizeof forbidden / sizeof forbidden[0]; i++)
        if (strcmp(name, forbidden[i].name) == 0)
            return forbidden[i].why;
    return NULL;
}

/* Refused rather than silently dropped: an operator who lists PGPASSWORD
 * expects the handler to get it, and must learn at check-config time that
 * it never will. */
int config_check_env_name(const char *value, char *why, size_t len)
{
    bool ok = (isalpha((unsigned char)value[0]) || value[0] == '_') && strlen(value) <= 255;
    for (const char *c = value; ok && *c != '\0'; c++)
        ok = isalnum((unsigned char)*c) || *c == '_';
    if (!ok) {
        char quoted[QUOTED_MAX];
        snprintf(why, len, "%s is not a variable name (letters, digits, _; not a digit first)",
                 config_value_show(value, quoted, sizeof quoted));
        return -1;
    }
    const char *forbidden = config_env_forbidden(value);
    if (forbidden != NULL) {
        snprintf(why, len, "%s is never passed to handlers (%s)", value, forbidden);
        return -1;
    }
    return 0;
}

/* Most starts a rate may allow per period, and its longest period: a
 * rate is a flow limit, not a quota (longer periods keep more starts). */
#define RATE_COUNT_MAX 1000000
#define RATE_PERIOD_MAX_MS (24LL * 3600 * 1000)

int config_rate_parse(const char *text, int *count, int64_t *period_ms)
{
    *count = 0;
    *period_ms = 0;
    if (text == NULL || text[0] == '\0')
        return 0;
    const char *slash = strchr(text, '/');
    if (slash == NULL || !isdigit((unsigned char)text[0]))
        return -1;
    char *end;
    errno = 0;
    long n = strtol(text, &end, 10);
    int64_t ms;
    if (errno != 0 || end != slash || n < 1 || n > RATE_COUNT_MAX ||
        config_parse_duration(slash + 1, &ms) != 0 || ms < 1 || ms > RATE_PERIOD_MAX_MS)
        return -1;
    *count = (int)n;
    *period_ms = ms;
    return 0;
}

int config_check_rate(const char *value, char *why, size_t len)
{
    int count;
    int64_t period_ms;
    if (config_rate_parse(value, &count, &period_ms) == 0)
        return 0;
    char quoted[QUOTED_MAX];
    snprintf(why, len,
             "must be \"\" or N/PERIOD, N starts (1 to 1000000) per a duration of up to 24h, "
             "as \"100/1m\" or \"5/1s\" (got %s)",
             config_value_show(value, quoted, sizeof quoted));
    return -1;
}

bool config_queue_limited(const struct queue_config *queue)
{
    return queue->concurrency > 0 || (queue->rate != NULL && queue->rate[0] != '\0');
}

int config_queue_serving(const struct queue_config *queue, int workers)
{
    return queue->workers > 0 && queue->workers < workers ? queue->workers : workers;
}

#define STR_(x) #x
#define STR(x) STR_(x)

const char *config_queue_name_problem(const char *name)
{
    return text_label_problem(name, CONFIG_QUEUE_NAME_MAX,
                              "is longer than " STR(CONFIG_QUEUE_NAME_MAX) " bytes");
}

int config_parse_duration(const char *text, int64_t *ms)
{
    if (text == NULL)
        return -1;
    const char *p = text;
    while (isspace((unsigned char)*p))
        p++;
    if (!isdigit((unsigned char)*p))
        return -1; /* empty, a sign, or garbage */

    int64_t whole = 0;
    for (; isdigit((unsigned char)*p); p++) {
        int d = *p - '0';
        if (whole > (INT64_MAX - d) / 10)
            return -1;
        whole = whole * 10 + d;
    }
    int64_t frac = 0, scale = 1;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return -1;
        for (; isdigit((unsigned char)*p); p++) {
            if (scale == 1000000000)
                return -1; /* finer than a nanosecond of an hour is noise */
            frac = frac * 10 + (*p - '0');
            scale *= 10;
        }
    }
    while (isspace((unsigned char)*p))
        p++;

    const char *unit = p;
    while (isalpha((unsigned char)*p))
        p++;
    size_t unit_len = (size_t)(p - unit);
    while (isspace((unsigned char)*p))
        p++;
    if (*p != '\0')
        return -1;

    int64_t factor;
    if (unit_len == 0)
        factor = 1000;
    else if (unit_len == 2 && strncmp(unit, "ms", 2) == 0)
        factor = 1;
    else if (unit_len == 1 && *unit == 's')
        factor = 1000;
    else if (unit_len == 1 && *unit == 'm')
        factor = 60 * 1000;
    else if (unit_len == 1 && *unit == 'h')
        factor = 3600 * 1000;
    else if (unit_len == 1 && *unit == 'd')
        factor = 86400 * 1000;
    else
        return -1;

    if (whole > INT64_MAX / factor)
        return -1;
    /* frac < 1e9 and factor <= 8.64e7: the product fits in 63 bits. */
    int64_t part = frac * factor;
    if (part % scale != 0)
        return -1; /* not a whole number of milliseconds */
    part /= scale;
    if (whole * factor > INT64_MAX - part)
        return -1;
    *ms = whole * factor + part;
    return 0;
}

/* ---- schedules ------------------------------------------------------------ */

int config_check_cron(const char *value, char *why, size_t len)
{
    struct schedule s;
    return schedule_parse_cron(value, &s, why, len);
}

int config_check_every(const char *value, char *why, size_t len)
{
    int64_t ms;
    char quoted[QUOTED_MAX];
    if (config_parse_duration(value, &ms) != 0) {
        snprintf(why, len, "must be a duration like 30s, 5m or 1h (got %s)",
                 config_value_show(value, quoted, sizeof quoted));
        return -1;
    }
    struct schedule s;
    return schedule_parse_every(ms, &s, why, len);
}

int config_check_zone(const char *value, char *why, size_t len)
{
    struct schedule s = {0};
    return schedule_set_zone(&s, value, why, len);
}

int config_check_json(const char *value, char *why, size_t len)
{
    return json_check(value, why, len);
}

int config_check_queue_name(const char *value, char *why, size_t len)
{
    const char *problem = config_queue_name_problem(value);
    if (problem == NULL)
        return 0;
    snprintf(why, len, "queue name %s", problem);
    return -1;
}
