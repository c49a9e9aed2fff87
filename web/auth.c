/*
 * auth.c — the token, constant-time comparison, browser sessions
 * (auth.h).
 *
 * Sessions are random 256-bit ids from getrandom(2), each with its own
 * CSRF token, kept in a fixed table under one mutex; they expire after
 * AUTH_SESSION_TTL_S. The token itself never leaves this file except as
 * the comparison's answer.
 */
#include "auth.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define AUTH_TOKEN_MAX 4096
#define AUTH_SESSION_TTL_S (12 * 3600)

static char *token; /* set once by auth_init, before any thread starts */

struct session {
    char sid[AUTH_ID_LEN + 1];
    char csrf[AUTH_ID_LEN + 1];
    time_t created; /* 0: free */
};

static struct session sessions[AUTH_SESSIONS];
static pthread_mutex_t sessions_lock = PTHREAD_MUTEX_INITIALIZER;

/* Trim surrounding whitespace (a file written by `echo` ends in \n). */
static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

int auth_init(const struct pgwork_config *config, char *err, size_t errlen)
{
    char buf[AUTH_TOKEN_MAX + 2];
    const char *file = config->web.token_file;
    if (file != NULL && file[0] != '\0') {
        FILE *f = fopen(file, "re");
        if (f == NULL) {
            snprintf(err, errlen, "web: cannot read web.token_file %s: %s", file, strerror(errno));
            return -1;
        }
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        if (n > AUTH_TOKEN_MAX) {
            snprintf(err, errlen, "web: web.token_file %s holds more than %d bytes", file,
                     AUTH_TOKEN_MAX);
            return -1;
        }
        buf[n] = '\0';
    } else {
        const char *env = getenv("PGWORK_WEB_TOKEN");
        if (env == NULL || env[0] == '\0') {
            snprintf(err, errlen,
                     "web: no token: set web.token_file or PGWORK_WEB_TOKEN (actions, and "
                     "reads unless web.public_read, need it)");
            return -1;
        }
        if (strlen(env) > AUTH_TOKEN_MAX) {
            snprintf(err, errlen, "web: PGWORK_WEB_TOKEN is longer than %d bytes", AUTH_TOKEN_MAX);
            return -1;
        }
        snprintf(buf, sizeof buf, "%s", env);
    }
    const char *t = trim(buf);
    if (strlen(t) < AUTH_TOKEN_MIN) {
        snprintf(err, errlen, "web: the token is shorter than %d bytes", AUTH_TOKEN_MIN);
        return -1;
    }
    for (const char *p = t; *p != '\0'; p++)
        if ((unsigned char)*p < 0x21 || (unsigned char)*p == 0x7f) {
            snprintf(err, errlen, "web: the token contains spaces or control characters");
            return -1;
        }
    free(token);
    token = strdup(t);
    if (token == NULL) {
        snprintf(err, errlen, "web: out of memory");
        return -1;
    }
    return 0;
}

bool auth_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = la != lb;
    /* Every byte of b is looked at whatever a holds: the time tells b's
     * length, never how much of it matched. */
    for (size_t i = 0; i < lb; i++)
        diff |= (unsigned char)(b[i] ^ (i < la ? a[i] : 0));
    return diff == 0;
}

bool auth_token_ok(const char *presented)
{
    return token != NULL && presented != NULL && auth_equal(presented, token);
}

static int random_hex(char *out)
{
    unsigned char raw[AUTH_ID_LEN / 2];
    size_t got = 0;
    while (got < sizeof raw) {
        ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    return 0;
}

int auth_session_new(char *sid, char *csrf)
{
    if (random_hex(sid) != 0 || random_hex(csrf) != 0)
        return -1;
    time_t now = time(NULL);
    pthread_mutex_lock(&sessions_lock);
    struct session *slot = &sessions[0];
    for (int i = 0; i < AUTH_SESSIONS; i++) {
        struct session *s = &sessions[i];
        if (s->created == 0 || now - s->created > AUTH_SESSION_TTL_S) {
            slot = s;
            break;
        }
        if (s->created < slot->created)
            slot = s;
    }
    memcpy(slot->sid, sid, AUTH_ID_LEN + 1);
    memcpy(slot->csrf, csrf, AUTH_ID_LEN + 1);
    slot->created = now;
    pthread_mutex_unlock(&sessions_lock);
    return 0;
}

bool auth_session_find(const char *sid, char *csrf)
{
    if (sid == NULL || strlen(sid) != AUTH_ID_LEN)
        return false;
    bool found = false;
    time_t now = time(NULL);
    pthread_mutex_lock(&sessions_lock);
    for (int i = 0; i < AUTH_SESSIONS; i++) {
        struct session *s = &sessions[i];
        /* Compared in full, every live slot: no early exit on a prefix. */
        if (s->created != 0 && now - s->created <= AUTH_SESSION_TTL_S && auth_equal(sid, s->sid)) {
            memcpy(csrf, s->csrf, AUTH_ID_LEN + 1);
            found = true;
        }
    }
    pthread_mutex_unlock(&sessions_lock);
    return found;
}

void auth_session_end(const char *sid)
{
    if (sid == NULL)
        return;
    pthread_mutex_lock(&sessions_lock);
    for (int i = 0; i < AUTH_SESSIONS; i++)
        if (sessions[i].created != 0 && auth_equal(sid, sessions[i].sid))
            memset(&sessions[i], 0, sizeof sessions[i]);
    pthread_mutex_unlock(&sessions_lock);
}
