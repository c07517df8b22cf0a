/* utf8: cutting and checking text built from untrusted input.
 *
 * Error messages, log lines and reply bodies often embed what a client or a provider sent. Cut
 * with a plain byte bound, such text can end in half a character, which jansson then refuses
 * (json_string returns NULL). These helpers cut on a character boundary and replace what is not
 * well-formed UTF-8, so whatever they return is always a valid JSON string.
 */
#ifndef ORDERPIPE_UTF8_H
#define ORDERPIPE_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* True if the n bytes at s are well-formed UTF-8 (no overlongs, surrogates or code points past
 * U+10FFFF) and hold no NUL. */
bool utf8_valid(const char *s, size_t n);

/* The length of the longest prefix of s (at most max bytes, s NUL-terminated) that ends on a
 * character boundary. Never cuts a multibyte sequence. */
size_t utf8_prefix_len(const char *s, size_t max);

/* Copies src into dst (dstsize bytes, >= 1), always NUL-terminated and always valid UTF-8:
 * a byte that does not start a well-formed character becomes '?', and the copy stops before a
 * character that would not fit whole. Returns the number of bytes written (without the NUL).
 * src may be NULL (an empty string is written). */
size_t utf8_copy(char *dst, size_t dstsize, const char *src);

/* Truncates s in place to at most max bytes on a character boundary; returns the new length. */
size_t utf8_truncate(char *s, size_t max);

#endif
