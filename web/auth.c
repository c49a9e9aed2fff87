/*
 * auth.c — the token, constant-time comparison, browser sessions
 * (auth.h).
 *
 * A session is a cookie the server can check without remembering it, so
 * it survives restarts and works on every replica that has the token:
 *
 *   v1.EXPIRY.NONCE.MAC
 *
 * EXPIRY: unix seconds; NONCE: 128 random bits (getrandom(2)) in hex; MAC:
 * HMAC-SHA256 over "v1.EXPIRY.NONCE", hex, with a key derived from the
 * token (HMAC-SHA256(token, AUTH_KEY_LABEL)): a new token ends every
 * session. The session's CSRF token is HMAC-SHA256(key, "csrf." MAC): bound
 * to that one cookie, known to no one who has not seen a page of it. MACs
 * are compared in constant time (CRYPTO_memcmp on the raw bytes). The
 * token itself never leaves this file except as the comparison's answer.
 * Immutable after auth_init: thread-safe without locks.
 */
#include "auth.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define AUTH_TOKEN_MAX 4096
#define AUTH_KEY_LABEL "pgwork web session key v1"
#define AUTH_NONCE_BYTES 16
#define AUTH_MAC_BYTES 32

static char *token; /* set once by auth_init, before any thread starts */
static unsigned char session_key[AUTH_MAC_BYTES]; /* derived from the token, likewise */

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

/* Take the token in buf (trimmed, checked) and derive the session key. */
static int auth_take(char *buf, char *err, size_t errlen)
{
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
    if (token != NULL) {
        OPENSSL_cleanse(token, strlen(token)); /* freed memory is reused */
        free(token);
    }
    token = strdup(t);
    unsigned int len = 0;
    if (token == NULL ||
        HMAC(EVP_sha256(), token, (int)strlen(token), (const unsigned char *)AUTH_KEY_LABEL,
             strlen(AUTH_KEY_LABEL), session_key, &len) == NULL ||
        len != AUTH_MAC_BYTES) {
        snprintf(err, errlen, "web: cannot derive the session key (out of memory?)");
        return -1;
    }
    return 0;
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
            OPENSSL_cleanse(buf, sizeof buf);
            snprintf(err, errlen, "web: web.token_file %s holds more than %d bytes", file,
                     AUTH_TOKEN_MAX);
            return -1;
        }
        buf[n] = '\0';
        if (memchr(buf, '\0', n) != NULL) {
            OPENSSL_cleanse(buf, sizeof buf);
            snprintf(err, errlen, "web: web.token_file %s contains a NUL byte", file);
            return -1;
        }
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
    int rc = auth_take(buf, err, errlen);
    OPENSSL_cleanse(buf, sizeof buf); /* the token's bytes live on only in token */
    return rc;
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

static void hex(const unsigned char *raw, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[raw[i] >> 4];
        out[2 * i + 1] = digits[raw[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Exactly 2 * n lowercase hex digits into raw; -1 otherwise. */
static int unhex(const char *s, size_t n, unsigned char *raw)
{
    for (size_t i = 0; i < 2 * n; i++) {
        char c = s[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            return -1;
        raw[i / 2] = (unsigned char)(i % 2 == 0 ? v << 4 : raw[i / 2] | v);
    }
    return 0;
}

static int mac(const char *data, size_t len, unsigned char *out)
{
    unsigned int n = 0;
    return HMAC(EVP_sha256(), session_key, sizeof session_key, (const unsigned char *)data, len,
                out, &n) != NULL &&
                   n == AUTH_MAC_BYTES
               ? 0
               : -1;
}

/* The CSRF token of the session whose MAC is raw. */
static int csrf_of(const unsigned char *raw, char *csrf)
{
    char data[5 + 2 * AUTH_MAC_BYTES + 1];
    memcpy(data, "csrf.", 5);
    hex(raw, AUTH_MAC_BYTES, data + 5);
    unsigned char out[AUTH_MAC_BYTES];
    if (mac(data, strlen(data), out) != 0)
        return -1;
    hex(out, AUTH_MAC_BYTES, csrf);
    return 0;
}

int auth_session_new(char *cookie, char *csrf)
{
    if (token == NULL)
        return -1;
    unsigned char nonce[AUTH_NONCE_BYTES];
    size_t got = 0;
    while (got < sizeof nonce) {
        ssize_t n = getrandom(nonce + got, sizeof nonce - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    char nonce_hex[2 * AUTH_NONCE_BYTES + 1];
    hex(nonce, sizeof nonce, nonce_hex);
    int len = snprintf(cookie, AUTH_COOKIE_MAX, "v1.%" PRId64 ".%s",
                       (int64_t)time(NULL) + AUTH_SESSION_TTL_S, nonce_hex);
    unsigned char raw[AUTH_MAC_BYTES];
    if (len <= 0 || len + 1 + 2 * AUTH_MAC_BYTES >= AUTH_COOKIE_MAX ||
        mac(cookie, (size_t)len, raw) != 0 || csrf_of(raw, csrf) != 0)
        return -1;
    cookie[len] = '.';
    hex(raw, AUTH_MAC_BYTES, cookie + len + 1);
    return 0;
}

bool auth_session_find(const char *cookie, char *csrf)
{
    /* v1.EXPIRY.NONCE.MAC, nothing else: digits only in EXPIRY (no sign,
     * no leading zero), exact lengths. */
    if (cookie == NULL || strncmp(cookie, "v1.", 3) != 0)
        return false;
    const char *p = cookie + 3, *digits = p;
    while (*p >= '0' && *p <= '9')
        p++;
    size_t ndigits = (size_t)(p - digits);
    if (ndigits == 0 || ndigits > 12 || digits[0] == '0' || *p != '.')
        return false;
    const char *nonce = p + 1;
    size_t signed_len = (size_t)(nonce - cookie) + 2 * AUTH_NONCE_BYTES;
    if (strlen(cookie) != signed_len + 1 + 2 * AUTH_MAC_BYTES || cookie[signed_len] != '.')
        return false;
    unsigned char scratch[AUTH_NONCE_BYTES], presented[AUTH_MAC_BYTES], want[AUTH_MAC_BYTES];
    if (unhex(nonce, AUTH_NONCE_BYTES, scratch) != 0 ||
        unhex(cookie + signed_len + 1, AUTH_MAC_BYTES, presented) != 0 ||
        mac(cookie, signed_len, want) != 0)
        return false;
    /* The MAC first, in constant time: an expiry is believed only once it
     * is known to be ours. */
    if (CRYPTO_memcmp(presented, want, AUTH_MAC_BYTES) != 0)
        return false;
    int64_t expiry = strtoll(digits, NULL, 10);
    if (expiry <= (int64_t)time(NULL))
        return false;
    return csrf_of(want, csrf) == 0;
}
