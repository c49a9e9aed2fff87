/* test_config_keys.c — the key table (shared/config_keys.c) is sound, its
 * defaults mean what leaving a key out means, and the README's
 * configuration reference lists exactly its keys, defaults and SIGHUP
 * behaviour. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/config.h"
#include "shared/config_keys.h"
#include "suites.h"

#define README "README.md" /* tests run from the repo root */
#define ROWS_MAX 128

static const char *apply_word(enum config_apply apply)
{
    switch (apply) {
    case CONFIG_RELOAD:
        return "applied";
    case CONFIG_ROLL:
        return "rolls workers";
    case CONFIG_RESTART:
        return "restart";
    }
    return "?";
}

/* One row of the README's reference: `key` | `default` | on HUP | meaning. */
struct row {
    char key[128];
    char def[128];
    char apply[64];
    int line;
};

/* The cell after *p ('|'), trimmed and without its backticks; *p moves to
 * the next '|'. */
static void cell(const char **p, char *out, size_t len)
{
    const char *start = *p + 1;
    const char *end = strchr(start, '|');
    ck_assert_ptr_nonnull(end);
    *p = end;
    while (start < end && (*start == ' ' || *start == '`'))
        start++;
    while (end > start && (end[-1] == ' ' || end[-1] == '`'))
        end--;
    size_t n = (size_t)(end - start);
    ck_assert_uint_lt(n, len);
    memcpy(out, start, n);
    out[n] = '\0';
}

/* The rows of the table under "## Configuration" whose first cell is a key. */
static int readme_rows(struct row *rows)
{
    FILE *f = fopen(README, "r");
    ck_assert_msg(f != NULL, "%s: %s", README, strerror(errno));
    char line[4096];
    int n = 0, lineno = 0, in_section = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        lineno++;
        if (strncmp(line, "## ", 3) == 0)
            in_section = strcmp(line, "## Configuration\n") == 0;
        if (!in_section || strncmp(line, "| `", 3) != 0)
            continue;
        ck_assert_int_lt(n, ROWS_MAX);
        const char *p = line;
        cell(&p, rows[n].key, sizeof rows[n].key);
        cell(&p, rows[n].def, sizeof rows[n].def);
        cell(&p, rows[n].apply, sizeof rows[n].apply);
        rows[n].line = lineno;
        n++;
    }
    fclose(f);
    return n;
}

START_TEST(test_readme_documents_every_key)
{
    struct row rows[ROWS_MAX];
    int n = readme_rows(rows);
    ck_assert_msg(n > 0, "no key rows under \"## Configuration\" in %s", README);

    /* Every key of the table has its row, with its default and HUP word. */
    for (size_t i = 0; i < config_key_count; i++) {
        const struct config_key *k = &config_keys[i];
        char name[128], def[128];
        config_key_reference_name(k, name, sizeof name);
        config_key_reference_default(k, def, sizeof def);
        int found = -1;
        for (int r = 0; r < n; r++)
            if (strcmp(rows[r].key, name) == 0)
                found = r;
        ck_assert_msg(found >= 0, "%s: key %s is not documented", README, name);
        ck_assert_msg(strcmp(rows[found].def, def) == 0, "%s:%d: %s: default %s, the table says %s",
                      README, rows[found].line, name, rows[found].def, def);
        ck_assert_msg(strcmp(rows[found].apply, apply_word(k->apply)) == 0,
                      "%s:%d: %s: on HUP \"%s\", the table says \"%s\"", README, rows[found].line,
                      name, rows[found].apply, apply_word(k->apply));
    }
    /* And every row is a key of the table, once. */
    for (int r = 0; r < n; r++) {
        int matches = 0;
        for (size_t i = 0; i < config_key_count; i++) {
            char name[128];
            if (strcmp(rows[r].key,
                       config_key_reference_name(&config_keys[i], name, sizeof name)) == 0)
                matches++;
        }
        ck_assert_msg(matches == 1, "%s:%d: %s is not a key of shared/config_keys.c", README,
                      rows[r].line, rows[r].key);
        for (int o = 0; o < r; o++)
            ck_assert_msg(strcmp(rows[o].key, rows[r].key) != 0, "%s:%d: %s documented twice",
                          README, rows[r].line, rows[r].key);
    }
}
END_TEST

static size_t type_size(enum config_type type)
{
    switch (type) {
    case CONFIG_BOOL:
        return sizeof(bool);
    case CONFIG_COUNT:
    case CONFIG_ENUM:
        return sizeof(int);
    case CONFIG_DURATION:
        return sizeof(int64_t);
    case CONFIG_STRING:
        return sizeof(char *);
    case CONFIG_LIST:
        return sizeof(char **);
    }
    return 0;
}

/* What the derived code relies on: unique keys, fields the size of their
 * type, enums with words, handler masks only on queue keys, no queue key
 * that would need a restart (config_keep_restart_only keeps global keys). */
START_TEST(test_table_is_sound)
{
    for (size_t i = 0; i < config_key_count; i++) {
        const struct config_key *k = &config_keys[i];
        ck_assert_msg(config_key_find(k->section, k->name) == k, "%s.%s given twice", k->section,
                      k->name);
        ck_assert_msg(k->size == type_size(k->type), "%s.%s: a %zu-byte field for its type",
                      k->section, k->name, k->size);
        ck_assert_msg(k->type != CONFIG_ENUM || k->words != NULL, "%s.%s: an enum without words",
                      k->section, k->name);
        ck_assert_msg(k->handlers == 0 || config_key_is_queue(k), "%s.%s: a handler mask",
                      k->section, k->name);
        ck_assert_msg(!config_key_is_queue(k) || k->apply != CONFIG_RESTART,
                      "queue.%s: restart-only queue keys are not supported", k->name);
    }
    ck_assert_ptr_null(config_key_find("workers", "nope"));
    ck_assert_ptr_null(config_key_find("queue", "count"));
}
END_TEST

/* Writing a key's default in the file gives the config that leaving it
 * out gives: the table's defaults are values the file could say. */
START_TEST(test_written_default_is_the_default)
{
    const char *base = "queue \"q\" { command = {\"x\"} }\n"
                       "schedule \"s\" { cron = \"@daily\" queue = \"q\" }\n";
    const char *dir = getenv("TMPDIR");
    char path[4096], err[1024];
    snprintf(path, sizeof path, "%s/pgwork-keys-XXXXXX.conf", dir && dir[0] ? dir : "/tmp");
    int fd = mkstemps(path, 5);
    ck_assert_msg(fd >= 0, "mkstemps: %s", strerror(errno));
    close(fd);

    struct pgwork_config *plain = NULL;
    FILE *f = fopen(path, "w");
    fputs(base, f);
    fclose(f);
    ck_assert_msg(config_load(path, &plain, err, sizeof err) == 0, "%s", err);

    int written = 0;
    for (size_t i = 0; i < config_key_count; i++) {
        const struct config_key *k = &config_keys[i];
        if (k->def == NULL || k->handlers != 0)
            continue; /* unset, or only one handler's: no default to compare */
        char value[128];
        config_key_reference_default(k, value, sizeof value);
        f = fopen(path, "w");
        if (config_key_is_queue(k))
            fprintf(f,
                    "queue \"q\" { command = {\"x\"} %s = %s }\n"
                    "schedule \"s\" { cron = \"@daily\" queue = \"q\" }\n",
                    k->name, value);
        else if (config_key_is_schedule(k))
            fprintf(f,
                    "queue \"q\" { command = {\"x\"} }\n"
                    "schedule \"s\" { cron = \"@daily\" queue = \"q\" %s = %s }\n",
                    k->name, value);
        else
            fprintf(f, "%s%s { %s = %s }\n", base, k->section, k->name, value);
        fclose(f);
        struct pgwork_config *c = NULL;
        ck_assert_msg(config_load(path, &c, err, sizeof err) == 0, "%s = %s: %s", k->name, value,
                      err);
        const void *a = config_key_is_queue(k)      ? (const void *)&plain->queues[0]
                        : config_key_is_schedule(k) ? (const void *)&plain->schedules[0]
                                                    : plain;
        const void *b = config_key_is_queue(k)      ? (const void *)&c->queues[0]
                        : config_key_is_schedule(k) ? (const void *)&c->schedules[0]
                                                    : c;
        ck_assert_msg(config_key_same(k, a, b), "%s.%s = %s differs from leaving it out",
                      k->section, k->name, value);
        config_free(c);
        written++;
    }
    ck_assert_int_gt(written, 20);
    config_free(plain);
    unlink(path);
}
END_TEST

Suite *config_keys_suite(void)
{
    Suite *s = suite_create("config_keys");
    TCase *tc = tcase_create("config_keys");
    tcase_add_test(tc, test_readme_documents_every_key);
    tcase_add_test(tc, test_table_is_sound);
    tcase_add_test(tc, test_written_default_is_the_default);
    suite_add_tcase(s, tc);
    return s;
}
