/*
 * config_copy.c — the typed copy of a parsed file: every key of the table
 * (config_keys.c) from libconfuse's cfg_t into struct pgwork_config, the
 * queue-name lookup built once, and the struct freed again (also a
 * partial one). Nothing of libconfuse outlives config_copy(); what a
 * config holds after it is plain C, immutable until config_free().
 */
#include "config_copy.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_keys.h"
#include "config_value.h"

/* A schedule parser's message. */
#define CONFIG_COPY_WHY_MAX 512

static int copy_string(char **dst, const char *src)
{
    *dst = strdup(src ? src : "");
    return *dst ? 0 : -1;
}

/* The key's value in section `sec` into its field of `base`. */
static int copy_key(const struct config_key *k, cfg_t *sec, void *base)
{
    void *field = config_key_field(k, base);
    switch (k->type) {
    case CONFIG_BOOL:
        *(bool *)field = cfg_getbool(sec, k->name) == cfg_true;
        return 0;
    case CONFIG_COUNT:
    case CONFIG_ENUM:
        *(int *)field = (int)cfg_getint(sec, k->name);
        return 0;
    case CONFIG_DURATION:
        *(int64_t *)field = cfg_getint(sec, k->name);
        return 0;
    case CONFIG_STRING: {
        const char *value = cfg_getstr(sec, k->name);
        return value == NULL ? 0 : copy_string((char **)field, value);
    }
    case CONFIG_LIST: {
        unsigned n = cfg_size(sec, k->name);
        char **list = calloc(n + 1, sizeof *list);
        if (list == NULL)
            return -1;
        *(char ***)field = list;
        int *count = (int *)((char *)base + k->count_at);
        for (unsigned i = 0; i < n; i++) {
            if (copy_string(&list[i], cfg_getnstr(sec, k->name, i)) != 0)
                return -1;
            (*count)++; /* counted as copied, so config_free sees a partial list */
        }
        return 0;
    }
    }
    return -1;
}

static int copy_queue(struct queue_config *q, cfg_t *sec)
{
    if (copy_string(&q->name, cfg_title(sec)) != 0)
        return -1;
    /* The keys of every handler first: whether the others are copied
     * depends on q->handler (a sql queue has no command, NULL). */
    for (int only = 0; only <= 1; only++) {
        for (size_t i = 0; i < config_key_count; i++) {
            const struct config_key *k = &config_keys[i];
            if (!config_key_is_queue(k) || (k->handlers != 0) != only ||
                (only && (k->handlers & (1u << q->handler)) == 0))
                continue;
            if (copy_key(k, sec, q) != 0)
                return -1;
        }
    }
    return 0;
}

/* FNV-1a: queue names to lookup slots. */
static uint32_t queue_name_hash(const char *name)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

/* The open-addressing table behind config_find_queue: at least twice as
 * many slots as queues (a power of two), -1 = empty. 0, or -1. */
static int build_queue_lookup(struct pgwork_config *c)
{
    size_t size = 4;
    while (size < 2 * (size_t)c->queue_count)
        size *= 2;
    c->queue_lookup = malloc(size * sizeof(*c->queue_lookup));
    if (c->queue_lookup == NULL)
        return -1;
    c->queue_lookup_mask = (unsigned)size - 1;
    for (size_t i = 0; i < size; i++)
        c->queue_lookup[i] = -1;
    for (int q = 0; q < c->queue_count; q++) {
        unsigned slot = queue_name_hash(c->queues[q].name) & c->queue_lookup_mask;
        while (c->queue_lookup[slot] >= 0)
            slot = (slot + 1) & c->queue_lookup_mask;
        c->queue_lookup[slot] = q;
    }
    return 0;
}

int config_find_queue(const struct pgwork_config *config, const char *name)
{
    if (config->queue_lookup == NULL) {
        /* A config built by hand (tests): no table. */
        for (int q = 0; q < config->queue_count; q++)
            if (strcmp(config->queues[q].name, name) == 0)
                return q;
        return -1;
    }
    unsigned slot = queue_name_hash(name) & config->queue_lookup_mask;
    for (int q; (q = config->queue_lookup[slot]) >= 0;
         slot = (slot + 1) & config->queue_lookup_mask)
        if (strcmp(config->queues[q].name, name) == 0)
            return q;
    return -1;
}

/* A schedule's keys, and its cron or every parsed (both checked already). */
static int copy_schedule(struct schedule_config *sc, cfg_t *sec, char *err, size_t errlen)
{
    if (copy_string(&sc->name, cfg_title(sec)) != 0)
        return -1;
    for (size_t i = 0; i < config_key_count; i++)
        if (config_key_is_schedule(&config_keys[i]) && copy_key(&config_keys[i], sec, sc) != 0)
            return -1;
    char why[CONFIG_COPY_WHY_MAX] = "is not a duration";
    int64_t ms = 0;
    int rc = sc->cron != NULL
                 ? (schedule_parse_cron(sc->cron, &sc->when, why, sizeof why) != 0 ||
                            schedule_set_zone(&sc->when, sc->timezone, why, sizeof why) != 0
                        ? -1
                        : 0)
                 : (config_parse_duration(sc->every, &ms) != 0 ||
                            schedule_parse_every(ms, &sc->when, why, sizeof why) != 0
                        ? -1
                        : 0);
    if (rc != 0) /* checked on its line already: not expected */
        snprintf(err, errlen, "schedule %s: %s", sc->name, why);
    return rc;
}

struct pgwork_config *config_copy(cfg_t *root, const char *path, char *err, size_t errlen)
{
    if (errlen > 0)
        err[0] = '\0';
    struct pgwork_config *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    if (copy_string(&c->path, path) != 0)
        goto fail;
    for (size_t i = 0; i < config_key_count; i++) {
        const struct config_key *k = &config_keys[i];
        if (config_key_is_global(k) && copy_key(k, cfg_getsec(root, k->section), c) != 0)
            goto fail;
    }

    unsigned nqueues = cfg_size(root, "queue");
    if (nqueues > 0) {
        c->queues = calloc(nqueues, sizeof *c->queues);
        if (c->queues == NULL)
            goto fail;
        for (unsigned i = 0; i < nqueues; i++) {
            c->queue_count++; /* counted first so config_free sees a partial queue */
            if (copy_queue(&c->queues[i], cfg_getnsec(root, "queue", i)) != 0)
                goto fail;
        }
    }
    unsigned nschedules = cfg_size(root, "schedule");
    if (nschedules > 0) {
        c->schedules = calloc(nschedules, sizeof *c->schedules);
        if (c->schedules == NULL)
            goto fail;
        for (unsigned i = 0; i < nschedules; i++) {
            c->schedule_count++; /* counted first so config_free sees a partial one */
            if (copy_schedule(&c->schedules[i], cfg_getnsec(root, "schedule", i), err, errlen) != 0)
                goto fail;
        }
    }
    if (build_queue_lookup(c) != 0)
        goto fail;
    return c;

fail:
    config_free(c);
    return NULL;
}

void config_free(struct pgwork_config *config)
{
    if (config == NULL)
        return;
    for (int i = 0; i < config->queue_count; i++) {
        free(config->queues[i].name);
        for (size_t k = 0; k < config_key_count; k++)
            if (config_key_is_queue(&config_keys[k]))
                config_key_free(&config_keys[k], &config->queues[i]);
    }
    for (int i = 0; i < config->schedule_count; i++) {
        free(config->schedules[i].name);
        for (size_t k = 0; k < config_key_count; k++)
            if (config_key_is_schedule(&config_keys[k]))
                config_key_free(&config_keys[k], &config->schedules[i]);
    }
    for (size_t k = 0; k < config_key_count; k++)
        if (config_key_is_global(&config_keys[k]))
            config_key_free(&config_keys[k], config);
    free(config->schedules);
    free(config->queues);
    free(config->queue_lookup);
    free(config->path);
    free(config);
}

const char *config_conninfo(const struct pgwork_config *config)
{
    if (config != NULL && config->database.conninfo != NULL && config->database.conninfo[0])
        return config->database.conninfo;
    const char *env = getenv(CONFIG_CONNINFO_ENV);
    return env != NULL && env[0] != '\0' ? env : "";
}

const char *config_listen_conninfo(const struct pgwork_config *config)
{
    if (config != NULL && config->database.listen_conninfo != NULL &&
        config->database.listen_conninfo[0])
        return config->database.listen_conninfo;
    return config_conninfo(config);
}
