/* jsonschema_regex: ECMA 262 patterns of schemas as POSIX extended regexes (see
 * jsonschema_impl.h).
 *
 * Owns the translation (\\d \\w \\s and their negations, escaped literals) and the refusal of
 * patterns that regcomp/regexec would take exponential time or memory over: patterns arrive in
 * schemas, and the fuzz target is there to keep a hostile one from hanging a program.
 */
#include "jsonschema_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

/* ECMA 262 -> POSIX ERE for what schemas use: \d \w \s and negations, escaped literals. NULL when
 * the pattern has something inside a bracket that POSIX cannot say the same way (\] and \- are
 * literals in ECMA but would end the bracket or make a range in POSIX; \^ first would negate
 * it; \D \W \S would need a bracket inside the bracket; "[:" "[." "[=" open POSIX class names):
 * the translation would then not be the pattern the complexity scan judged, and patterns such
 * as "[\]\te++++...]" or "[\W\te++++...]" would hang regcomp. Brackets are delimited as the
 * scan does: a ']' right after '[' or '[^' is a literal. */
static char *jsonschema_translate_regex(const char *src)
{
    size_t n = strlen(src);
    char *out = mem_alloc(n * 16 + 1), *o = out;
    bool in_class = false;
    for (size_t i = 0; i < n; i++) {
        char c = src[i];
        if (c == '[' && !in_class) {
            in_class = true;
            *o++ = c;
            if (src[i + 1] == '^')
                *o++ = src[++i];
            if (src[i + 1] == ']')
                *o++ = src[++i];
            continue;
        }
        if (c == '\\' && i + 1 < n) {
            char e = src[++i];
            if (in_class && (e == ']' || e == '-' || e == 'D' || e == 'W' || e == 'S' ||
                             (e == '^' && o[-1] == '['))) {
                free(out);
                return NULL;
            }
            const char *rep = NULL;
            switch (e) {
            case 'd': rep = in_class ? "0-9" : "[0-9]"; break;
            case 'D': rep = "[^0-9]"; break;
            case 'w': rep = in_class ? "A-Za-z0-9_" : "[A-Za-z0-9_]"; break;
            case 'W': rep = "[^A-Za-z0-9_]"; break;
            case 's': rep = in_class ? "[:space:]" : "[[:space:]]"; break;
            case 'S': rep = "[^[:space:]]"; break;
            case 't': rep = "\t"; break;
            case 'n': rep = "\n"; break;
            default: break;
            }
            if (rep) {
                o += sprintf(o, "%s", rep);
            } else if (in_class) {
                *o++ = e; /* inside brackets a literal needs no escape in POSIX */
            } else {
                *o++ = '\\';
                *o++ = e;
            }
            continue;
        }
        if (c == ']' && in_class)
            in_class = false;
        if (c == '[' && in_class && (src[i + 1] == ':' || src[i + 1] == '.' || src[i + 1] == '=')) {
            free(out); /* POSIX reads "[:" "[." "[=" in a bracket as a class name */
            return NULL;
        }
        *o++ = c;
    }
    *o = '\0';
    return out;
}

/* glibc's regcomp copies the operand of every + and {m,n}, so nested repetitions grow
 * multiplicatively ("((a{99}){99}){99}" takes gigabytes), and its epsilon closures grow
 * exponentially with + nested over operands that can match the empty string ("^(((((a*)+)+)+)+)+",
 * or stacked quantifiers "^a*+++++", which ECMA 262 does not allow anyway, never finish). This
 * walks an ECMA pattern estimating its expanded size (saturating just above JSONSCHEMA_REGEX_MAX)
 * and the nesting of such repetitions; the pattern is refused when either is too large. Memory
 * grows with the square of the expanded size when operands may be empty ("(a?){4000}" takes
 * 130 MB), hence a limit far above what schemas need (tens) but far below that. */
#define JSONSCHEMA_REGEX_MAX 1024
#define JSONSCHEMA_REGEX_MAX_NULLABLE_REPEAT 2

typedef struct jsonschema_regex_scan {
    size_t cost;
    int nullable_repeat; /* deepest nesting of + or {m,n} over an operand that may be empty */
    bool nullable;       /* can match the empty string */
    bool stacked;        /* a quantifier follows a quantifier (other than one lazy '?') */
} jsonschema_regex_scan;

static size_t jsonschema_regex_sat(unsigned long long v)
{
    return v > JSONSCHEMA_REGEX_MAX ? JSONSCHEMA_REGEX_MAX + 1 : (size_t)v;
}

static bool jsonschema_regex_quantifier(const char *s)
{
    return *s == '*' || *s == '+' || *s == '?' || (*s == '{' && s[1] >= '0' && s[1] <= '9');
}

/* Scans alternatives up to an unmatched ')' or the end; *p is left there. */
static jsonschema_regex_scan jsonschema_regex_scan_alts(const char **p, int depth)
{
    const char *s = *p;
    jsonschema_regex_scan r = {0, 0, false, false};
    bool alt_nullable = true;
    while (*s && *s != ')') {
        if (*s == '|') {
            r.nullable |= alt_nullable;
            alt_nullable = true;
            s++;
            continue;
        }
        jsonschema_regex_scan a = {1, 0, false, false};
        if (*s == '(') {
            if (depth >= 64) {
                *p = s + strlen(s);
                r.cost = JSONSCHEMA_REGEX_MAX + 1;
                return r;
            }
            s++;
            a = jsonschema_regex_scan_alts(&s, depth + 1);
            if (*s == ')')
                s++;
        } else if (*s == '[') {
            s++;
            if (*s == '^')
                s++;
            if (*s == ']')
                s++;
            while (*s && *s != ']')
                s += (*s == '\\' && s[1]) ? 2 : 1;
            if (*s)
                s++;
        } else {
            a.nullable = *s == '^' || *s == '$';
            s += (*s == '\\' && s[1]) ? 2 : 1;
        }
        if (jsonschema_regex_quantifier(s)) {
            unsigned long m = 0, n = 1;
            bool counted = true, star = false;
            if (*s == '+') {
                m = 1;
                n = 2;
                s++;
            } else if (*s == '*' || *s == '?') {
                star = true;
                s++;
            } else {
                char *e;
                m = n = strtoul(s + 1, &e, 10);
                if (*e == ',') {
                    e++;
                    n = (*e >= '0' && *e <= '9') ? strtoul(e, &e, 10) : m + 1;
                }
                if (*e == '}')
                    s = e + 1;
                else
                    counted = false; /* not a quantifier: the '{' is read as a literal next */
            }
            if (counted) {
                if (!star && a.nullable)
                    a.nullable_repeat++;
                if (m == 0)
                    a.nullable = true;
                if (m > n)
                    n = m;
                a.cost = jsonschema_regex_sat((unsigned long long)a.cost *
                                              (n > JSONSCHEMA_REGEX_MAX ? JSONSCHEMA_REGEX_MAX + 1
                                                                        : (n ? n : 1)));
                if (*s == '?')
                    s++; /* lazy */
                if (jsonschema_regex_quantifier(s))
                    a.stacked = true;
            }
        }
        alt_nullable &= a.nullable;
        r.cost = jsonschema_regex_sat((unsigned long long)r.cost + a.cost);
        if (a.nullable_repeat > r.nullable_repeat)
            r.nullable_repeat = a.nullable_repeat;
        r.stacked |= a.stacked;
    }
    r.nullable |= alt_nullable;
    *p = s;
    return r;
}

static bool jsonschema_regex_too_complex(const char *src)
{
    size_t cost = 0;
    while (*src) {
        jsonschema_regex_scan r = jsonschema_regex_scan_alts(&src, 0);
        if (r.stacked || r.nullable_repeat > JSONSCHEMA_REGEX_MAX_NULLABLE_REPEAT)
            return true;
        cost = jsonschema_regex_sat((unsigned long long)cost + r.cost);
        if (*src == ')')
            src++;
    }
    return cost > JSONSCHEMA_REGEX_MAX;
}

op_status jsonschema_regex_compile(jsonschema_regex *r, const char *src, char *err, size_t errlen)
{
    if (strstr(src, "(?") || strstr(src, "\\b") || strstr(src, "\\1")) {
        snprintf(err, errlen, "pattern '%s' uses a regex feature not supported here", src);
        return OP_ERR_PERMANENT;
    }
    if (jsonschema_regex_too_complex(src)) {
        snprintf(err, errlen, "pattern '%s' nests or stacks repetitions too deeply", src);
        return OP_ERR_PERMANENT;
    }
    char *posix = jsonschema_translate_regex(src);
    if (!posix) {
        snprintf(err, errlen, "pattern '%s' has \\], \\-, \\^, \\D, \\W, \\S or [: inside a "
                              "bracket (not supported)", src);
        return OP_ERR_PERMANENT;
    }
    int rc = regcomp(&r->re, posix, REG_EXTENDED | REG_NOSUB);
    free(posix);
    if (rc != 0) {
        snprintf(err, errlen, "pattern '%s' is not a valid regular expression", src);
        return OP_ERR_PERMANENT;
    }
    r->compiled = true;
    r->source = mem_strdup(src);
    return OP_OK;
}

void jsonschema_regex_free(jsonschema_regex *r)
{
    if (r->compiled)
        regfree(&r->re);
    free(r->source);
}
