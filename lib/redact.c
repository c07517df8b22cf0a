/* redact: passwords out of logged text (see redact.h).
 *
 * Errs on the side of hiding: text that only looks like a password (a non-numeric "port" of a
 * malformed URL, the value of any password= parameter) is masked too, because the texts worth
 * logging are exactly the malformed ones. */
#include "redact.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "utf8.h"

typedef struct {
    char *out;
    size_t size, len;
    bool full;
} redact_buf;

/* Appends n bytes of s (NUL-terminated or ASCII); what does not fit is cut on a character
 * boundary and ends the copy. */
static void put(redact_buf *b, const char *s, size_t n)
{
    size_t room = b->size - 1 - b->len;
    if (n > room) {
        n = utf8_prefix_len(s, room);
        b->full = true;
    }
    memcpy(b->out + b->len, s, n);
    b->len += n;
}

/* Bytes of the character starting at s, from its first byte (1 for anything not a lead byte). */
static size_t char_len(const char *s)
{
    unsigned char c = (unsigned char)s[0];
    size_t l = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    return strnlen(s, l);
}

/* Ends a URL or a list item: what follows is another URL or another word. */
static bool is_item_end(char c)
{
    return c == '\0' || c == ',' || c == '\'' || c == '"' || c == '<' || c == '>' ||
           isspace((unsigned char)c);
}

/* Length of the value of a password= parameter starting at s (quoted libpq values included). */
static size_t param_value_len(const char *s)
{
    size_t i = 0;
    if (s[0] == '\'') {
        for (i = 1; s[i] && s[i] != '\''; i++)
            if (s[i] == '\\' && s[i + 1])
                i++;
        return s[i] ? i + 1 : i;
    }
    while (s[i] && s[i] != '&' && s[i] != '#' && !is_item_end(s[i]))
        i++;
    return i;
}

/* Copies the authority of the URL starting at s (just after "://") with its password masked;
 * returns how many input bytes were consumed. */
static size_t redact_authority(redact_buf *b, const char *s)
{
    size_t end = 0, query = (size_t)-1;
    while (!is_item_end(s[end])) {
        if (query == (size_t)-1 && (s[end] == '?' || s[end] == '#'))
            query = end;
        end++;
    }
    size_t limit = query < end ? query : end;
    /* userinfo ends at the last '@' before any query: an unencoded '@' or '/' in a password
     * must not make the rest of it look like a host or a path */
    size_t at = (size_t)-1;
    for (size_t i = 0; i < limit; i++)
        if (s[i] == '@')
            at = i;
    if (at != (size_t)-1) {
        const char *colon = memchr(s, ':', at);
        if (!colon) {
            put(b, s, at + 1);
        } else {
            put(b, s, (size_t)(colon - s) + 1);
            put(b, REDACT_MASK, strlen(REDACT_MASK));
            put(b, "@", 1);
        }
        return at + 1;
    }
    /* No '@': "host:port". A "port" that is not a number is most likely "user:password" cut
     * short by a ',' or a space in the password; mask it. */
    size_t host_end = 0;
    if (s[0] == '[') {
        const char *rb = memchr(s, ']', limit);
        host_end = rb ? (size_t)(rb - s) + 1 : limit;
    } else {
        while (host_end < limit && s[host_end] != ':' && s[host_end] != '/')
            host_end++;
    }
    if (host_end < limit && s[host_end] == ':') {
        size_t p = host_end + 1, q = p;
        while (q < limit && s[q] != '/')
            q++;
        bool digits = true;
        for (size_t i = p; i < q; i++)
            digits = digits && isdigit((unsigned char)s[i]);
        if (!digits) {
            put(b, s, p);
            put(b, REDACT_MASK, strlen(REDACT_MASK));
            return q;
        }
    }
    return 0;
}

char *redact_secrets(const char *in, char *out, size_t size)
{
    redact_buf b = {out, size, 0, false};
    if (!in)
        in = "";
    static const char param[] = "password=";
    const size_t plen = sizeof param - 1;
    size_t i = 0;
    while (in[i] && !b.full) {
        if (in[i] == ':' && in[i + 1] == '/' && in[i + 2] == '/') {
            put(&b, "://", 3);
            i += 3;
            i += redact_authority(&b, in + i);
            continue;
        }
        if ((i == 0 || strchr("?&; \t,", in[i - 1])) && strncasecmp(in + i, param, plen) == 0) {
            put(&b, in + i, plen);
            i += plen;
            size_t v = param_value_len(in + i);
            if (v > 0)
                put(&b, REDACT_MASK, strlen(REDACT_MASK));
            i += v;
            continue;
        }
        size_t l = char_len(in + i);
        put(&b, in + i, l);
        i += l;
    }
    out[b.len] = '\0';
    return out;
}
