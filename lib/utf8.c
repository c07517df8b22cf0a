/* utf8: character-boundary cuts and sanitising copies (see utf8.h). */
#include "utf8.h"

#include <string.h>

/* The length of the well-formed character at s (n bytes available), or 0 if it is not one. */
static size_t utf8_char_len(const unsigned char *s, size_t n)
{
    if (n == 0 || s[0] == 0)
        return 0;
    if (s[0] < 0x80)
        return 1;
    size_t len;
    unsigned cp;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
        cp = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        cp = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

bool utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t l = utf8_char_len(p + i, n - i);
        if (l == 0)
            return false;
        i += l;
    }
    return true;
}

size_t utf8_prefix_len(const char *s, size_t max)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < max && p[i]) {
        size_t l = utf8_char_len(p + i, max - i);
        if (l == 0) {
            /* A lead byte whose sequence would end past the cut or past the string is left
             * out whole; any other malformed byte is one "character". */
            size_t want = p[i] >= 0xf0 ? 4 : p[i] >= 0xe0 ? 3 : p[i] >= 0xc2 ? 2 : 1;
            if (want > max - i || strnlen(s + i, want) < want)
                break;
            l = 1;
        }
        i += l;
    }
    return i;
}

size_t utf8_copy(char *dst, size_t dstsize, const char *src)
{
    if (dstsize == 0)
        return 0;
    size_t o = 0;
    if (src) {
        const unsigned char *p = (const unsigned char *)src;
        size_t n = strlen(src), i = 0;
        while (i < n) {
            size_t l = utf8_char_len(p + i, n - i);
            if (o + (l ? l : 1) > dstsize - 1)
                break;
            if (l == 0) {
                dst[o++] = '?';
                i++;
            } else {
                memcpy(dst + o, p + i, l);
                o += l;
                i += l;
            }
        }
    }
    dst[o] = '\0';
    return o;
}

size_t utf8_truncate(char *s, size_t max)
{
    size_t n = utf8_prefix_len(s, max);
    s[n] = '\0';
    return n;
}
