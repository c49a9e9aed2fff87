/*
 * fuzz_redact.c — libFuzzer target over log_redact_conninfo() (shared/log.h):
 * "passwords are never logged" (DESIGN §4) must hold for whatever an
 * operator puts in database.conninfo or PGWORK_DATABASE_URL.
 *
 * Oracle: libpq itself. PQconninfoParse() says which password libpq would
 * use. When that password is at least 4 bytes, occurs exactly once in the
 * input, and that occurrence really is where libpq took it from (the input
 * with that occurrence replaced parses to the replacement), the redacted
 * text must not contain it. Same for sslpassword. Also: the output is
 * always NUL-terminated within its buffer, whatever the input.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "shared/log.h"

static char *option(const char *conninfo, const char *key)
{
    PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
    if (opts == NULL)
        return NULL;
    char *value = NULL;
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
        if (strcmp(o->keyword, key) == 0 && o->val != NULL)
            value = strdup(o->val);
    PQconninfoFree(opts);
    return value;
}

static int occurrences(const char *haystack, const char *needle)
{
    int n = 0;
    for (const char *p = haystack; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

static void check_secret(const char *input, const char *key)
{
    char *secret = option(input, key);
    if (secret == NULL)
        return;
    size_t len = strlen(secret);
    if (len < 4 || occurrences(input, secret) != 1) {
        free(secret);
        return;
    }
    /* Is this occurrence the one libpq read? Replace it and ask again. */
    char *probe = strdup(input);
    char *replacement = malloc(len + 1);
    if (probe == NULL || replacement == NULL) {
        free(probe), free(replacement), free(secret);
        return;
    }
    char *at = strstr(probe, secret);
    memset(replacement, 'Q', len);
    replacement[len] = '\0';
    memcpy(at, replacement, len);
    char *again = option(probe, key);
    int is_source = again != NULL && strcmp(again, replacement) == 0;
    free(again), free(probe), free(replacement);
    if (!is_source) {
        free(secret);
        return;
    }

    char out[8192];
    log_redact_conninfo(input, out, sizeof(out));
    if (strstr(out, secret) != NULL) {
        fprintf(stderr, "fuzz_redact: %s leaked\n  input:  %s\n  output: %s\n", key, input, out);
        abort();
    }
    free(secret);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4000)
        return 0;
    char *input = malloc(size + 1);
    if (input == NULL)
        return 0;
    memcpy(input, data, size);
    input[size] = '\0';

    /* Any buffer size: always terminated, never overrun (ASan watches). */
    for (size_t outlen = 1; outlen <= 64; outlen *= 4) {
        char *small = malloc(outlen);
        if (small == NULL)
            break;
        log_redact_conninfo(input, small, outlen);
        if (memchr(small, '\0', outlen) == NULL)
            abort();
        free(small);
    }
    check_secret(input, "password");
    check_secret(input, "sslpassword");
    free(input);
    return 0;
}
