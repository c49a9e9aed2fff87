/* test_log.c — JSON and text lines on stderr (captured), escaping, level
 * filter, long messages, lines from several processes, conninfo redaction. */
#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shared/log.h"
#include "suites.h"

/* ---- capturing stderr ----------------------------------------------------- */

static int saved_stderr = -1;
static char capture_path[4096];
static char captured[65536];

static void capture_begin(void)
{
    const char *dir = getenv("TMPDIR");
    snprintf(capture_path, sizeof capture_path, "%s/pgwork-log-XXXXXX",
             dir && dir[0] ? dir : "/tmp");
    int fd = mkstemp(capture_path);
    ck_assert_int_ge(fd, 0);
    saved_stderr = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
}

/* Restore stderr; the captured bytes are in `captured`, NUL-terminated. */
static size_t capture_end(void)
{
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    FILE *f = fopen(capture_path, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(captured, 1, sizeof captured - 1, f);
    fclose(f);
    unlink(capture_path);
    captured[n] = '\0';
    return n;
}

/* ---- a strict parser for the flat JSON objects log lines are ---------- */

struct field {
    char key[32];
    char str[20000]; /* decoded string value (UTF-8), or the number's text */
    int is_string;
};

struct object {
    struct field fields[12];
    int count;
};

static void put_utf8(char **o, unsigned cp)
{
    if (cp < 0x80) {
        *(*o)++ = (char)cp;
    } else if (cp < 0x800) {
        *(*o)++ = (char)(0xc0 | cp >> 6);
        *(*o)++ = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        *(*o)++ = (char)(0xe0 | cp >> 12);
        *(*o)++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *(*o)++ = (char)(0x80 | (cp & 0x3f));
    } else {
        *(*o)++ = (char)(0xf0 | cp >> 18);
        *(*o)++ = (char)(0x80 | ((cp >> 12) & 0x3f));
        *(*o)++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *(*o)++ = (char)(0x80 | (cp & 0x3f));
    }
}

/* Parse a JSON string at *p into out; 0 on success. Rejects raw control
 * characters and bytes that are not ASCII (the logger may emit UTF-8, so
 * those are copied but must form valid sequences — checked separately). */
static int parse_string(const char **p, char *out, size_t cap)
{
    const char *s = *p;
    char *o = out, *end = out + cap - 5;
    if (*s++ != '"')
        return -1;
    while (*s != '"') {
        if (*s == '\0' || (unsigned char)*s < 0x20 || o >= end)
            return -1;
        if (*s != '\\') {
            *o++ = *s++;
            continue;
        }
        s++;
        switch (*s) {
        case '"':
        case '\\':
        case '/':
            *o++ = *s;
            break;
        case 'n':
            *o++ = '\n';
            break;
        case 't':
            *o++ = '\t';
            break;
        case 'r':
            *o++ = '\r';
            break;
        case 'b':
            *o++ = '\b';
            break;
        case 'f':
            *o++ = '\f';
            break;
        case 'u': {
            unsigned cp = 0;
            for (int i = 1; i <= 4; i++) {
                char c = s[i];
                int v = c >= '0' && c <= '9'   ? c - '0'
                        : c >= 'a' && c <= 'f' ? c - 'a' + 10
                        : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                               : -1;
                if (v < 0)
                    return -1;
                cp = cp * 16 + (unsigned)v;
            }
            if (cp >= 0xd800 && cp <= 0xdfff)
                return -1; /* the logger never needs surrogate pairs */
            put_utf8(&o, cp);
            s += 4;
            break;
        }
        default:
            return -1;
        }
        s++;
    }
    *o = '\0';
    *p = s + 1;
    return 0;
}

/* One line: {"k":"v"|number,...}\n and nothing else. */
static int parse_object(const char *line, struct object *obj)
{
    const char *p = line;
    obj->count = 0;
    if (*p++ != '{')
        return -1;
    for (;;) {
        if (obj->count == 12)
            return -1;
        struct field *f = &obj->fields[obj->count++];
        if (parse_string(&p, f->key, sizeof f->key) != 0 || *p++ != ':')
            return -1;
        if (*p == '"') {
            f->is_string = 1;
            if (parse_string(&p, f->str, sizeof f->str) != 0)
                return -1;
        } else {
            f->is_string = 0;
            size_t n = 0;
            if (*p == '-')
                f->str[n++] = *p++;
            if (*p < '0' || *p > '9')
                return -1;
            while (*p >= '0' && *p <= '9' && n < 30)
                f->str[n++] = *p++;
            f->str[n] = '\0';
        }
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p++ != '}')
            return -1;
        return *p == '\n' && p[1] == '\0' ? 0 : -1;
    }
}

static const struct field *get(const struct object *obj, const char *key)
{
    for (int i = 0; i < obj->count; i++)
        if (strcmp(obj->fields[i].key, key) == 0)
            return &obj->fields[i];
    return NULL;
}

static const char *get_str(const struct object *obj, const char *key)
{
    const struct field *f = get(obj, key);
    ck_assert_msg(f != NULL && f->is_string, "no string field \"%s\"", key);
    return f->str;
}

static long long get_num(const struct object *obj, const char *key)
{
    const struct field *f = get(obj, key);
    ck_assert_msg(f != NULL && !f->is_string, "no number field \"%s\"", key);
    return atoll(f->str);
}

static int valid_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = *p < 0x80                  ? 1
                : *p >= 0xc2 && *p <= 0xdf ? 2
                : *p >= 0xe0 && *p <= 0xef ? 3
                : *p >= 0xf0 && *p <= 0xf4 ? 4
                                           : 0;
        if (n == 0)
            return 0;
        for (int i = 1; i < n; i++)
            if ((p[i] & 0xc0) != 0x80)
                return 0;
        p += n;
    }
    return 1;
}

/* Capture one call's output and parse it as exactly one JSON line. */
static void parse_line(struct object *obj)
{
    capture_end();
    ck_assert_msg(valid_utf8(captured), "line is not UTF-8: %s", captured);
    ck_assert_msg(parse_object(captured, obj) == 0, "not one JSON object line: %s", captured);
}

static void check_timestamp(const char *ts)
{
    regex_t re;
    ck_assert_int_eq(regcomp(&re,
                             "^20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:"
                             "[0-6][0-9]\\.[0-9]{3}Z$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    ck_assert_msg(regexec(&re, ts, 0, NULL, 0) == 0, "bad ts \"%s\"", ts);
    regfree(&re);
}

/* ---- JSON lines ----------------------------------------------------------- */

START_TEST(test_json_fields)
{
    struct object obj;
    log_init("worker", 3, LOG_LEVEL_INFO, LOG_FORMAT_JSON);
    capture_begin();
    log_task(LOG_LEVEL_WARN, "emails", 42, "task failed after %d ms", 17);
    parse_line(&obj);
    check_timestamp(get_str(&obj, "ts"));
    ck_assert_str_eq(get_str(&obj, "level"), "warn");
    ck_assert_str_eq(get_str(&obj, "msg"), "task failed after 17 ms");
    ck_assert_int_eq(get_num(&obj, "pid"), getpid());
    ck_assert_str_eq(get_str(&obj, "role"), "worker");
    ck_assert_int_eq(get_num(&obj, "worker"), 3);
    ck_assert_str_eq(get_str(&obj, "queue"), "emails");
    ck_assert_int_eq(get_num(&obj, "task"), 42);
    /* Field order as documented. */
    ck_assert_str_eq(obj.fields[0].key, "ts");
    ck_assert_str_eq(obj.fields[1].key, "level");
    ck_assert_str_eq(obj.fields[2].key, "msg");

    log_init("supervisor", -1, LOG_LEVEL_INFO, LOG_FORMAT_JSON);
    capture_begin();
    log_info("started %d workers", 4);
    parse_line(&obj);
    ck_assert_str_eq(get_str(&obj, "level"), "info");
    ck_assert_str_eq(get_str(&obj, "role"), "supervisor");
    ck_assert_ptr_null(get(&obj, "worker"));
    ck_assert_ptr_null(get(&obj, "queue"));
    ck_assert_ptr_null(get(&obj, "task"));
}
END_TEST

START_TEST(test_json_escaping)
{
    struct object obj;
    log_init("cli", -1, LOG_LEVEL_DEBUG, LOG_FORMAT_JSON);
    capture_begin();
    log_debug("q\"uote back\\slash nl\n tab\t cr\r bell\x07 del\x7f esc\x1b / é日本🎉");
    parse_line(&obj);
    ck_assert_str_eq(get_str(&obj, "msg"),
                     "q\"uote back\\slash nl\n tab\t cr\r bell\x07 del\x7f esc\x1b / é日本🎉");
    ck_assert_str_eq(get_str(&obj, "level"), "debug");
    /* Control characters never appear raw in the line. */
    ck_assert_ptr_null(strchr(captured, '\x07'));
    ck_assert_ptr_null(strchr(captured, '\x1b'));
}
END_TEST

START_TEST(test_json_invalid_utf8_replaced)
{
    struct object obj;
    log_init("worker", 0, LOG_LEVEL_INFO, LOG_FORMAT_JSON);
    capture_begin();
    /* stray byte, truncated sequence, overlong '/', surrogate, > U+10FFFF */
    log_task(LOG_LEVEL_ERROR, "bad\xffq", 1,
             "a\xff b\xc3 c\xc0\xaf d\xed\xa0\x80 e\xf4\x90\x80\x80 f");
    parse_line(&obj);
    ck_assert_str_eq(get_str(&obj, "msg"), "a\xef\xbf\xbd b\xef\xbf\xbd c\xef\xbf\xbd\xef\xbf\xbd"
                                           " d\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                                           " e\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd f");
    ck_assert_str_eq(get_str(&obj, "queue"), "bad\xef\xbf\xbdq");
}
END_TEST

START_TEST(test_level_filter)
{
    log_init("supervisor", -1, LOG_LEVEL_WARN, LOG_FORMAT_JSON);
    capture_begin();
    log_debug("hidden");
    log_info("hidden");
    ck_assert_uint_eq(capture_end(), 0);

    capture_begin();
    log_warn("shown");
    log_error("shown");
    capture_end();
    ck_assert_ptr_nonnull(strstr(captured, "\"level\":\"warn\""));
    ck_assert_ptr_nonnull(strstr(captured, "\"level\":\"error\""));
    ck_assert_ptr_null(strstr(captured, "hidden"));

    log_configure(LOG_LEVEL_DEBUG, LOG_FORMAT_JSON);
    capture_begin();
    log_debug("now shown");
    capture_end();
    ck_assert_ptr_nonnull(strstr(captured, "now shown"));
}
END_TEST

START_TEST(test_long_message_truncated)
{
    static char big[20000];
    memset(big, 'x', sizeof big - 1);
    /* A multi-byte character straddling the cut must not be split. */
    for (size_t i = 8181; i < 8200; i += 2)
        memcpy(big + i, "\xc3\xa9", 2);
    struct object obj;
    log_init("worker", 1, LOG_LEVEL_INFO, LOG_FORMAT_JSON);
    capture_begin();
    log_info("%s", big);
    parse_line(&obj);
    const char *msg = get_str(&obj, "msg");
    size_t len = strlen(msg);
    ck_assert_uint_le(len, 8192);
    ck_assert_uint_ge(len, 8000);
    ck_assert_str_eq(msg + len - 3, "...");
    ck_assert_ptr_null(strstr(msg, "\xef\xbf\xbd")); /* no character was split */
    ck_assert_int_eq(get_num(&obj, "worker"), 1);    /* the fields after msg survive */
}
END_TEST

START_TEST(test_long_escaped_message)
{
    /* Escaping can grow a message sixfold; the line stays valid JSON. */
    static char ctl[8000];
    memset(ctl, '\x01', sizeof ctl - 1);
    struct object obj;
    log_init("worker", 2, LOG_LEVEL_INFO, LOG_FORMAT_JSON);
    capture_begin();
    log_task(LOG_LEVEL_INFO, "q", 9, "%s", ctl);
    parse_line(&obj);
    ck_assert_str_eq(get_str(&obj, "queue"), "q");
    ck_assert_int_eq(get_num(&obj, "task"), 9);
}
END_TEST

START_TEST(test_errno_preserved)
{
    log_init("cli", -1, LOG_LEVEL_INFO, LOG_FORMAT_JSON);
    capture_begin();
    errno = ENOSPC;
    log_info("x");
    ck_assert_int_eq(errno, ENOSPC);
    capture_end();
}
END_TEST

START_TEST(test_lines_do_not_interleave)
{
    /* Four processes log at once into one pipe: every line must parse. */
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    int saved = dup(STDERR_FILENO);
    dup2(fds[1], STDERR_FILENO);
    const int procs = 4, lines = 200;
    static char filler[2000];
    memset(filler, 'z', sizeof filler - 1);
    for (int p = 0; p < procs; p++) {
        if (fork() == 0) {
            close(fds[0]);
            log_init("worker", p, LOG_LEVEL_INFO, LOG_FORMAT_JSON);
            for (int i = 0; i < lines; i++)
                log_task(LOG_LEVEL_INFO, "q", i + 1, "line %d %s", i, filler);
            _exit(0);
        }
    }
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fds[1]);

    FILE *in = fdopen(fds[0], "r");
    static char line[8192];
    static struct object obj;
    int count = 0;
    while (fgets(line, sizeof line, in) != NULL) {
        ck_assert_msg(parse_object(line, &obj) == 0, "bad line %d: %.80s", count, line);
        count++;
    }
    fclose(in);
    for (int p = 0; p < procs; p++)
        wait(NULL);
    ck_assert_int_eq(count, procs * lines);
}
END_TEST

/* ---- text lines ---------------------------------------------------------- */

START_TEST(test_text_format)
{
    char want[256];
    log_init("supervisor", -1, LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
    capture_begin();
    log_info("listener connected");
    capture_end();
    snprintf(want, sizeof want, " info supervisor[%d]: listener connected\n", (int)getpid());
    ck_assert_msg(strlen(captured) > 24 && strcmp(captured + 24, want) == 0, "got \"%s\"",
                  captured);
    captured[24] = '\0';
    check_timestamp(captured);

    log_init("worker", 3, LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
    capture_begin();
    log_task(LOG_LEVEL_ERROR, "emails", 42, "handler exited 1:\nboom");
    capture_end();
    snprintf(want, sizeof want,
             " error worker[%d] w3: handler exited 1:\\nboom (queue=emails task=42)\n",
             (int)getpid());
    ck_assert_msg(strcmp(captured + 24, want) == 0, "got \"%s\"", captured);
}
END_TEST

/* ---- levels ----------------------------------------------------------------- */

START_TEST(test_level_parse)
{
    ck_assert_int_eq(log_level_parse("debug"), LOG_LEVEL_DEBUG);
    ck_assert_int_eq(log_level_parse("info"), LOG_LEVEL_INFO);
    ck_assert_int_eq(log_level_parse("warn"), LOG_LEVEL_WARN);
    ck_assert_int_eq(log_level_parse("error"), LOG_LEVEL_ERROR);
    ck_assert_int_eq(log_level_parse("warning"), -1);
    ck_assert_int_eq(log_level_parse("INFO"), -1);
    ck_assert_int_eq(log_level_parse(""), -1);
    ck_assert_int_eq(log_level_parse(NULL), -1);
}
END_TEST

/* ---- redaction ---------------------------------------------------------------- */

static void check_redact(const char *in, const char *want)
{
    char out[512];
    memset(out, '#', sizeof out);
    log_redact_conninfo(in, out, sizeof out);
    ck_assert_msg(strcmp(out, want) == 0, "redact(\"%s\"):\n got \"%s\"\nwant \"%s\"", in, out,
                  want);
    ck_assert_msg(strstr(out, "secret") == NULL && strstr(out, "hunter2") == NULL, "leaked: %s",
                  out);
}

START_TEST(test_redact_keyvalue)
{
    check_redact("host=db password=secret user=app", "host=db password=*** user=app");
    check_redact("password=secret", "password=***");
    check_redact("host=db password='quoted secret' dbname=x", "host=db password=*** dbname=x");
    check_redact("password = 'a \\' secret' host=x", "password = *** host=x");
    check_redact("host=x password =secret", "host=x password =***");
    check_redact("host=x  password=  secret\tport=5432", "host=x  password=  ***\tport=5432");
    check_redact("password=sec\\ ret host=y", "password=*** host=y");
    check_redact("sslpassword=hunter2 sslkey=/k", "sslpassword=*** sslkey=/k");
    check_redact("host=db dbname=app user=u", "host=db dbname=app user=u");
    check_redact("application_name='my app' host=h", "application_name='my app' host=h");
    check_redact("", "");
    /* Malformed: libpq would refuse it; hide everything from the fault on. */
    check_redact("host=x password", "host=x ***");
    check_redact("host=x password='unterminated secret", "host=x password=***");
    check_redact("host=x secret", "host=x ***");
}
END_TEST

START_TEST(test_redact_url)
{
    check_redact("postgresql://user:secret@host/db", "postgresql://user:***@host/db");
    check_redact("postgres://user:secret@host:5432/db?sslmode=require",
                 "postgres://user:***@host:5432/db?sslmode=require");
    check_redact("postgresql://user@host/db", "postgresql://user@host/db");
    check_redact("postgresql://host:5432/db", "postgresql://host:5432/db");
    check_redact("postgresql://", "postgresql://");
    check_redact("postgresql://u:secret@h1:5432,h2:5433/db",
                 "postgresql://u:***@h1:5432,h2:5433/db");
    check_redact("postgresql://host/db?user=u&password=secret&sslmode=require",
                 "postgresql://host/db?user=u&password=***&sslmode=require");
    check_redact("postgresql://host/db?password=secret", "postgresql://host/db?password=***");
    check_redact("postgresql://host/db?sslpassword=hunter2",
                 "postgresql://host/db?sslpassword=***");
    check_redact("postgresql://u:sec@ret/x@host/db", "postgresql://u:***@host/db");
    check_redact("postgresql://u:sec?ret@host/db", "postgresql://u:***@host/db");
    check_redact("postgresql://u:secret@host/db?password=secret&x=1",
                 "postgresql://u:***@host/db?password=***&x=1");
}
END_TEST

START_TEST(test_redact_small_buffer)
{
    char out[12];
    log_redact_conninfo("password=secret host=x", out, sizeof out);
    ck_assert_uint_lt(strlen(out), sizeof out);
    ck_assert_ptr_null(strstr(out, "sec"));
    log_redact_conninfo("postgresql://u:secret@h/d", out, 1);
    ck_assert_str_eq(out, "");
    log_redact_conninfo(NULL, out, sizeof out);
    ck_assert_str_eq(out, "");
    log_redact_conninfo("x", NULL, 0); /* no crash */
}
END_TEST

Suite *log_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("log");
    tcase_add_test(tc, test_json_fields);
    tcase_add_test(tc, test_json_escaping);
    tcase_add_test(tc, test_json_invalid_utf8_replaced);
    tcase_add_test(tc, test_level_filter);
    tcase_add_test(tc, test_long_message_truncated);
    tcase_add_test(tc, test_long_escaped_message);
    tcase_add_test(tc, test_errno_preserved);
    tcase_add_test(tc, test_lines_do_not_interleave);
    tcase_add_test(tc, test_text_format);
    tcase_add_test(tc, test_level_parse);
    tcase_add_test(tc, test_redact_keyvalue);
    tcase_add_test(tc, test_redact_url);
    tcase_add_test(tc, test_redact_small_buffer);
    suite_add_tcase(s, tc);
    return s;
}
