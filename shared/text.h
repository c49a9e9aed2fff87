/*
 * text.h — small byte-string helpers every module shares: a growable
 * buffer, the one UTF-8 decoder, and PostgreSQL array literals.
 *
 * Invariants: pure functions of their arguments plus malloc; nothing here
 * logs (callers say what failed, where they handle it). A buffer that could
 * not grow stays as it was and remembers it (failed), so a run of appends
 * needs one check at the end.
 */
#ifndef PGWORK_TEXT_H
#define PGWORK_TEXT_H

#include <stddef.h>
#include <stdint.h>

/* A growable byte buffer, NUL-terminated after every text_* append. {0} is
 * an empty buffer; text_free releases it. On allocation failure it stops
 * growing and sets failed (later appends do nothing). */
struct text_buffer {
    char *data;
    size_t len;
    size_t cap;
    int failed;
};

/* Room for `more` bytes after len and a NUL (cap - len > more), for a
 * caller that writes there itself (read(2) into it). 0, or -1 when out of
 * memory: the buffer is unchanged and not marked failed, so a caller may
 * try again later. */
int text_reserve(struct text_buffer *buf, size_t more);
void text_append(struct text_buffer *buf, const char *s, size_t n);
void text_appendf(struct text_buffer *buf, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The buffer's string, now the caller's to free, and the buffer empty;
 * NULL if an append failed (the buffer is freed then). */
char *text_take(struct text_buffer *buf);
void text_free(struct text_buffer *buf);

/*
 * Length of the valid UTF-8 sequence at s (1..4, at most n bytes), or 0 if
 * there is none: a stray continuation byte, a truncated, overlong or
 * surrogate sequence, or a value past U+10FFFF. *cp (if not NULL) gets the
 * code point. A NUL byte is a sequence of length 1; on a NUL-terminated
 * string n may be SIZE_MAX, since a NUL never continues a sequence.
 */
size_t text_utf8_len(const unsigned char *s, size_t n, uint32_t *cp);

/* The value of hex digit c (0-9, a-f, A-F): 0..15, or -1 for anything
 * else. */
int text_hex_digit(char c);

/* The rule for a name an operator or a producer writes (a queue name, a
 * unique key): NULL if s is 1..max_bytes bytes of valid UTF-8 without C0
 * controls, DEL or C1 controls (invisible in logs and metrics), else why
 * not, worded to follow "it": "is empty", too_long (the caller's words for
 * the limit), "is not valid UTF-8", "contains control characters". */
const char *text_label_problem(const char *s, size_t max_bytes, const char *too_long);

/*
 * PostgreSQL array literals, built one element at a time into buf:
 * "{" before the first element, "," between; text_array_end closes it
 * ("{}" when nothing was added) and hands back the string as text_take
 * does. Text elements are always double-quoted with '"' and '\'
 * backslash-escaped, so any string is one element (the literal travels as
 * a parameter: this is array syntax, not SQL quoting).
 */
void text_array_add_text(struct text_buffer *buf, const char *item);
void text_array_add_int64(struct text_buffer *buf, int64_t value);
char *text_array_end(struct text_buffer *buf);

#endif
