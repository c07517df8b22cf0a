/* jsonschema: a compiled JSON Schema draft 7 validator (see jsonschema.h). */
#include "jsonschema.h"

#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mem.h"
#include "utf8.h"
#include "uuid.h"

enum {
    T_NULL = 1 << 0, T_BOOLEAN = 1 << 1, T_OBJECT = 1 << 2, T_ARRAY = 1 << 3,
    T_NUMBER = 1 << 4, T_STRING = 1 << 5, T_INTEGER = 1 << 6,
};
static const char *const type_names[] = {"null", "boolean", "object", "array", "number",
                                         "string", "integer"};

typedef enum { FMT_NONE, FMT_UUID, FMT_DATE_TIME } jsonschema_format;

typedef struct jsonschema_regex {
    regex_t re;
    bool compiled;
    char *source;
} jsonschema_regex;

struct jsonschema {
    int boolean;               /* -1: an object schema; 0: false; 1: true */
    unsigned types;            /* 0: any */
    size_t nprops;
    char **prop_names;
    jsonschema **props;
    size_t npattern_props;
    jsonschema_regex *prop_patterns;
    jsonschema **pattern_props;
    size_t nrequired;
    char **required;
    jsonschema *additional;    /* additionalProperties; NULL: allowed */
    jsonschema *items;         /* single-schema form */
    jsonschema **tuple;        /* tuple form */
    size_t ntuple;
    jsonschema *additional_items;
    long min_items, max_items, min_props, max_props, min_len, max_len; /* -1: none */
    json_t *enum_values;
    json_t *const_value;       /* NULL: none (a const of null is json_null()) */
    bool has_min, has_max, has_emin, has_emax, has_multiple;
    double minimum, maximum, emin, emax, multiple;
    jsonschema_regex pattern;
    jsonschema_format format;
    unsigned flags;            /* JSONSCHEMA_* options; read from the root schema only */
};

/* --- compiling ----------------------------------------------------------------------------- */

static const char *const annotation_keywords[] = {
    "$schema", "$id", "title", "description", "$comment", "examples", "default", "readOnly",
    "writeOnly", "contentMediaType", "contentEncoding", "definitions", NULL};

static bool jsonschema_is_annotation(const char *key)
{
    for (int i = 0; annotation_keywords[i]; i++)
        if (strcmp(key, annotation_keywords[i]) == 0)
            return true;
    return false;
}

/* ECMA 262 -> POSIX ERE for what schemas use: \d \w \s and negations, escaped literals. NULL when
 * the pattern has something inside a bracket that POSIX cannot say the same way (\] and \- are
 * literals in ECMA but would end the bracket or make a range in POSIX; \^ first would negate
 * it; \D \W \S would need a bracket inside the bracket; "[:" "[." "[=" open POSIX class names):
 * the translation would then not be the pattern the complexity scan judged, and the fuzz target
 * found "[\]\te++++...]" and "[\W\te++++...]" hanging regcomp that way. Brackets are delimited as the scan
 * does: a ']' right after '[' or '[^' is a literal. */
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

static int jsonschema_regex_compile(jsonschema_regex *r, const char *src, char *err, size_t errlen)
{
    if (strstr(src, "(?") || strstr(src, "\\b") || strstr(src, "\\1")) {
        snprintf(err, errlen, "pattern '%s' uses a regex feature not supported here", src);
        return -1;
    }
    if (jsonschema_regex_too_complex(src)) {
        snprintf(err, errlen, "pattern '%s' nests or stacks repetitions too deeply", src);
        return -1;
    }
    char *posix = jsonschema_translate_regex(src);
    if (!posix) {
        snprintf(err, errlen, "pattern '%s' has \\], \\-, \\^, \\D, \\W, \\S or [: inside a "
                              "bracket (not supported)", src);
        return -1;
    }
    int rc = regcomp(&r->re, posix, REG_EXTENDED | REG_NOSUB);
    free(posix);
    if (rc != 0) {
        snprintf(err, errlen, "pattern '%s' is not a valid regular expression", src);
        return -1;
    }
    r->compiled = true;
    r->source = mem_strdup(src);
    return 0;
}

static void jsonschema_regex_free(jsonschema_regex *r)
{
    if (r->compiled)
        regfree(&r->re);
    free(r->source);
}

static int jsonschema_compile_into(jsonschema *s, json_t *schema, char *err, size_t errlen);

static jsonschema *jsonschema_new(void)
{
    jsonschema *s = mem_calloc(1, sizeof *s);
    s->boolean = -1;
    s->min_items = s->max_items = s->min_props = s->max_props = s->min_len = s->max_len = -1;
    return s;
}

static jsonschema *jsonschema_sub(json_t *schema, const char *where, char *err, size_t errlen)
{
    jsonschema *s = jsonschema_new();
    if (jsonschema_compile_into(s, schema, err, errlen) != 0) {
        size_t n = strlen(err);
        snprintf(err + n, errlen - n, " (in %s)", where);
        jsonschema_free(s);
        return NULL;
    }
    return s;
}

static int jsonschema_type_bit(const char *name)
{
    for (int i = 0; i < 7; i++)
        if (strcmp(name, type_names[i]) == 0)
            return 1 << i;
    return 0;
}

static int jsonschema_nonneg(json_t *v, const char *key, long *out, char *err, size_t errlen)
{
    double d = json_number_value(v);
    if (!json_is_number(v) || d < 0 || d != floor(d)) {
        snprintf(err, errlen, "'%s' must be a non-negative integer", key);
        return -1;
    }
    *out = d >= (double)LONG_MAX ? LONG_MAX : (long)d; /* a bound beyond long is no bound */
    return 0;
}

static int jsonschema_compile_into(jsonschema *s, json_t *schema, char *err, size_t errlen)
{
    if (json_is_boolean(schema)) {
        s->boolean = json_is_true(schema);
        return 0;
    }
    if (!json_is_object(schema)) {
        snprintf(err, errlen, "a schema must be an object or a boolean");
        return -1;
    }
    const char *key;
    json_t *v;
    json_object_foreach(schema, key, v) {
        if (strcmp(key, "type") == 0) {
            if (json_is_string(v)) {
                s->types = (unsigned)jsonschema_type_bit(json_string_value(v));
                if (!s->types) {
                    snprintf(err, errlen, "unknown type '%s'", json_string_value(v));
                    return -1;
                }
            } else if (json_is_array(v)) {
                size_t i;
                json_t *t;
                json_array_foreach(v, i, t) {
                    int bit = json_is_string(t) ? jsonschema_type_bit(json_string_value(t)) : 0;
                    if (!bit) {
                        snprintf(err, errlen, "'type' lists an unknown type");
                        return -1;
                    }
                    s->types |= (unsigned)bit;
                }
            } else {
                snprintf(err, errlen, "'type' must be a string or an array");
                return -1;
            }
        } else if (strcmp(key, "properties") == 0) {
            if (!json_is_object(v)) {
                snprintf(err, errlen, "'properties' must be an object");
                return -1;
            }
            s->prop_names = mem_calloc(json_object_size(v), sizeof(char *));
            s->props = mem_calloc(json_object_size(v), sizeof(jsonschema *));
            const char *pk;
            json_t *ps;
            json_object_foreach(v, pk, ps) {
                s->prop_names[s->nprops] = mem_strdup(pk);
                if (!(s->props[s->nprops++] = jsonschema_sub(ps, pk, err, errlen)))
                    return -1;
            }
        } else if (strcmp(key, "patternProperties") == 0) {
            if (!json_is_object(v)) {
                snprintf(err, errlen, "'patternProperties' must be an object");
                return -1;
            }
            s->prop_patterns = mem_calloc(json_object_size(v), sizeof(jsonschema_regex));
            s->pattern_props = mem_calloc(json_object_size(v), sizeof(jsonschema *));
            const char *pk;
            json_t *ps;
            json_object_foreach(v, pk, ps) {
                size_t i = s->npattern_props++;
                if (jsonschema_regex_compile(&s->prop_patterns[i], pk, err, errlen) != 0 ||
                    !(s->pattern_props[i] = jsonschema_sub(ps, pk, err, errlen)))
                    return -1;
            }
        } else if (strcmp(key, "required") == 0) {
            if (!json_is_array(v)) {
                snprintf(err, errlen, "'required' must be an array");
                return -1;
            }
            s->required = mem_calloc(json_array_size(v) + 1, sizeof(char *));
            size_t i;
            json_t *r;
            json_array_foreach(v, i, r) {
                if (!json_is_string(r)) {
                    snprintf(err, errlen, "'required' must list strings");
                    return -1;
                }
                s->required[s->nrequired++] = mem_strdup(json_string_value(r));
            }
        } else if (strcmp(key, "additionalProperties") == 0) {
            if (!(s->additional = jsonschema_sub(v, key, err, errlen)))
                return -1;
        } else if (strcmp(key, "items") == 0) {
            if (json_is_array(v)) {
                s->tuple = mem_calloc(json_array_size(v) + 1, sizeof(jsonschema *));
                size_t i;
                json_t *it;
                json_array_foreach(v, i, it) {
                    if (!(s->tuple[s->ntuple++] = jsonschema_sub(it, "items", err, errlen)))
                        return -1;
                }
            } else if (!(s->items = jsonschema_sub(v, key, err, errlen))) {
                return -1;
            }
        } else if (strcmp(key, "additionalItems") == 0) {
            if (!(s->additional_items = jsonschema_sub(v, key, err, errlen)))
                return -1;
        } else if (strcmp(key, "enum") == 0) {
            if (!json_is_array(v)) {
                snprintf(err, errlen, "'enum' must be an array");
                return -1;
            }
            s->enum_values = json_incref(v);
        } else if (strcmp(key, "const") == 0) {
            s->const_value = json_incref(v);
        } else if (strcmp(key, "minimum") == 0 || strcmp(key, "maximum") == 0 ||
                   strcmp(key, "exclusiveMinimum") == 0 || strcmp(key, "exclusiveMaximum") == 0 ||
                   strcmp(key, "multipleOf") == 0) {
            if (!json_is_number(v)) {
                snprintf(err, errlen, "'%s' must be a number", key);
                return -1;
            }
            double d = json_number_value(v);
            if (key[0] == 'm' && key[1] == 'i') { s->has_min = true; s->minimum = d; }
            else if (key[0] == 'm' && key[1] == 'a') { s->has_max = true; s->maximum = d; }
            else if (key[0] == 'm') {
                if (d <= 0) {
                    snprintf(err, errlen, "'multipleOf' must be > 0");
                    return -1;
                }
                s->has_multiple = true;
                s->multiple = d;
            }
            else if (strcmp(key, "exclusiveMinimum") == 0) { s->has_emin = true; s->emin = d; }
            else { s->has_emax = true; s->emax = d; }
        } else if (strcmp(key, "minLength") == 0) {
            if (jsonschema_nonneg(v, key, &s->min_len, err, errlen)) return -1;
        } else if (strcmp(key, "maxLength") == 0) {
            if (jsonschema_nonneg(v, key, &s->max_len, err, errlen)) return -1;
        } else if (strcmp(key, "minItems") == 0) {
            if (jsonschema_nonneg(v, key, &s->min_items, err, errlen)) return -1;
        } else if (strcmp(key, "maxItems") == 0) {
            if (jsonschema_nonneg(v, key, &s->max_items, err, errlen)) return -1;
        } else if (strcmp(key, "minProperties") == 0) {
            if (jsonschema_nonneg(v, key, &s->min_props, err, errlen)) return -1;
        } else if (strcmp(key, "maxProperties") == 0) {
            if (jsonschema_nonneg(v, key, &s->max_props, err, errlen)) return -1;
        } else if (strcmp(key, "pattern") == 0) {
            if (!json_is_string(v)) {
                snprintf(err, errlen, "'pattern' must be a string");
                return -1;
            }
            if (jsonschema_regex_compile(&s->pattern, json_string_value(v), err, errlen) != 0)
                return -1;
        } else if (strcmp(key, "format") == 0) {
            const char *f = json_string_value(v);
            if (f && strcmp(f, "uuid") == 0) s->format = FMT_UUID;
            else if (f && strcmp(f, "date-time") == 0) s->format = FMT_DATE_TIME;
            /* other formats are annotations in draft 7 */
        } else if (!jsonschema_is_annotation(key)) {
            snprintf(err, errlen, "unsupported keyword '%s'", key);
            return -1;
        }
    }
    return 0;
}

jsonschema *jsonschema_compile_flags(json_t *schema, unsigned flags, char *err, size_t errlen)
{
    jsonschema *s = jsonschema_new();
    if (jsonschema_compile_into(s, schema, err, errlen) != 0) {
        jsonschema_free(s);
        return NULL;
    }
    s->flags = flags;
    return s;
}

jsonschema *jsonschema_compile(json_t *schema, char *err, size_t errlen)
{
    return jsonschema_compile_flags(schema, 0, err, errlen);
}

void jsonschema_free(jsonschema *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nprops; i++) {
        free(s->prop_names[i]);
        jsonschema_free(s->props[i]);
    }
    free(s->prop_names);
    free(s->props);
    for (size_t i = 0; i < s->npattern_props; i++) {
        jsonschema_regex_free(&s->prop_patterns[i]);
        jsonschema_free(s->pattern_props[i]);
    }
    free(s->prop_patterns);
    free(s->pattern_props);
    for (size_t i = 0; i < s->nrequired; i++)
        free(s->required[i]);
    free(s->required);
    jsonschema_free(s->additional);
    jsonschema_free(s->items);
    for (size_t i = 0; i < s->ntuple; i++)
        jsonschema_free(s->tuple[i]);
    free(s->tuple);
    jsonschema_free(s->additional_items);
    json_decref(s->enum_values);
    json_decref(s->const_value);
    jsonschema_regex_free(&s->pattern);
    free(s);
}

/* --- validating ---------------------------------------------------------------------------- */

/* JSON equality where 1 and 1.0 are the same number (jansson's json_equal says otherwise). */
static bool jsonschema_equal(json_t *a, json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return json_number_value(a) == json_number_value(b);
    if (json_typeof(a) != json_typeof(b))
        return false;
    if (json_is_array(a)) {
        if (json_array_size(a) != json_array_size(b))
            return false;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!jsonschema_equal(json_array_get(a, i), json_array_get(b, i)))
                return false;
        return true;
    }
    if (json_is_object(a)) {
        if (json_object_size(a) != json_object_size(b))
            return false;
        const char *k;
        json_t *v;
        json_object_foreach(a, k, v) {
            json_t *w = json_object_get(b, k);
            if (!w || !jsonschema_equal(v, w))
                return false;
        }
        return true;
    }
    return json_equal(a, b);
}

/* Standard JSON Schema: any number with a zero fractional part (2.0, 1e8) is an integer. Strict:
 * only what jansson parsed as JSON_INTEGER, i.e. written without a fraction or an exponent. */
static bool jsonschema_is_integer(json_t *v, bool strict)
{
    if (json_is_integer(v))
        return true;
    double d = json_real_value(v);
    return !strict && json_is_real(v) && isfinite(d) && d == floor(d);
}

static bool jsonschema_type_ok(unsigned types, json_t *v, bool strict)
{
    if (!types)
        return true;
    switch (json_typeof(v)) {
    case JSON_NULL: return types & T_NULL;
    case JSON_TRUE:
    case JSON_FALSE: return types & T_BOOLEAN;
    case JSON_OBJECT: return types & T_OBJECT;
    case JSON_ARRAY: return types & T_ARRAY;
    case JSON_STRING: return types & T_STRING;
    case JSON_INTEGER:
    case JSON_REAL: return (types & T_NUMBER) || ((types & T_INTEGER) && jsonschema_is_integer(v, strict));
    }
    return false;
}

static size_t jsonschema_codepoints(const char *s, size_t bytes)
{
    size_t n = 0;
    for (size_t i = 0; i < bytes; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

/* RFC 3339 date-time: 2026-11-24T23:40:00(.123)?(Z|+01:00), with range checks. */
static bool jsonschema_date_time_ok(const char *s)
{
    int y, mo, d, h, mi, sec, n = 0;
    if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10)
        return false;
    if (s[10] != 'T' && s[10] != 't')
        return false;
    const char *t = s + 11;
    if (sscanf(t, "%2d:%2d:%2d%n", &h, &mi, &sec, &n) != 3 || n != 8)
        return false;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
            return false;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap))
        return false;
    if (h > 23 || mi > 59 || sec > 60)
        return false;
    t += 8;
    if (*t == '.') {
        t++;
        if (*t < '0' || *t > '9')
            return false;
        while (*t >= '0' && *t <= '9')
            t++;
    }
    if ((*t == 'Z' || *t == 'z') && t[1] == '\0')
        return sec < 60 || (h == 23 && mi == 59);
    int oh, om;
    if ((*t == '+' || *t == '-') && sscanf(t + 1, "%2d:%2d%n", &oh, &om, &n) == 2 && n == 5 &&
        t[6] == '\0' && oh <= 23 && om <= 59) {
        if (sec == 60) {
            /* a leap second is 23:59:60 in UTC */
            int utc = h * 60 + mi - (*t == '+' ? 1 : -1) * (oh * 60 + om);
            utc = ((utc % 1440) + 1440) % 1440;
            return utc == 23 * 60 + 59;
        }
        return true;
    }
    return false;
}

typedef struct jsonschema_ctx {
    jsonschema_error *err;
    bool strict_integer;
    char path[256];
} jsonschema_ctx;

static op_status jsonschema_fail(jsonschema_ctx *c, const char *keyword, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static op_status jsonschema_fail(jsonschema_ctx *c, const char *keyword, const char *fmt, ...)
{
    if (c->err) {
        /* The path holds property names the client chose and the message may quote schema
         * text: both are cut on a character boundary, so the error is always valid UTF-8. */
        utf8_copy(c->err->path, sizeof c->err->path, c->path);
        c->err->keyword = keyword;
        char msg[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        utf8_copy(c->err->message, sizeof c->err->message, msg);
    }
    return OP_ERR_PERMANENT;
}

/* Appends ".key" to the path, cut on a character boundary when it does not fit; returns the
 * path's length before, to restore it. */
static size_t jsonschema_path_key(jsonschema_ctx *c, const char *key)
{
    size_t len = strlen(c->path);
    if (len + 2 < sizeof c->path) {
        c->path[len] = '.';
        utf8_copy(c->path + len + 1, sizeof c->path - len - 1, key);
    }
    return len;
}

static op_status jsonschema_check(const jsonschema *s, json_t *v, jsonschema_ctx *c);

/* Validates a child at path + suffix, restoring the path afterwards. */
static op_status jsonschema_child(const jsonschema *s, json_t *v, jsonschema_ctx *c,
                                  const char *fmt, const void *key, size_t index)
{
    size_t len = strlen(c->path);
    if (fmt[0] == '.')
        jsonschema_path_key(c, key);
    else
        snprintf(c->path + len, sizeof c->path - len, "[%zu]", index);
    op_status st = jsonschema_check(s, v, c);
    if (st == OP_OK)
        c->path[len] = '\0';
    return st;
}

static void jsonschema_types_text(unsigned types, char *out, size_t size)
{
    out[0] = '\0';
    for (int i = 0; i < 7; i++)
        if (types & (1u << i)) {
            size_t n = strlen(out);
            snprintf(out + n, size - n, "%s%s", n ? " or " : "", type_names[i]);
        }
}

static op_status jsonschema_check_object(const jsonschema *s, json_t *v, jsonschema_ctx *c)
{
    for (size_t i = 0; i < s->nrequired; i++)
        if (!json_object_get(v, s->required[i])) {
            jsonschema_path_key(c, s->required[i]);
            return jsonschema_fail(c, "required", "is required");
        }
    size_t n = json_object_size(v);
    if (s->min_props >= 0 && (long)n < s->min_props)
        return jsonschema_fail(c, "minProperties", "must have at least %ld properties", s->min_props);
    if (s->max_props >= 0 && (long)n > s->max_props)
        return jsonschema_fail(c, "maxProperties", "must have at most %ld properties", s->max_props);
    const char *key;
    json_t *pv;
    json_object_foreach(v, key, pv) {
        bool known = false;
        for (size_t i = 0; i < s->nprops; i++)
            if (strcmp(s->prop_names[i], key) == 0) {
                known = true;
                if (jsonschema_child(s->props[i], pv, c, ".", key, 0) != OP_OK)
                    return OP_ERR_PERMANENT;
            }
        for (size_t i = 0; i < s->npattern_props; i++)
            if (regexec(&s->prop_patterns[i].re, key, 0, NULL, 0) == 0) {
                known = true;
                if (jsonschema_child(s->pattern_props[i], pv, c, ".", key, 0) != OP_OK)
                    return OP_ERR_PERMANENT;
            }
        if (!known && s->additional) {
            if (s->additional->boolean == 0) {
                jsonschema_path_key(c, key);
                return jsonschema_fail(c, "additionalProperties", "is not an allowed property");
            }
            if (jsonschema_child(s->additional, pv, c, ".", key, 0) != OP_OK)
                return OP_ERR_PERMANENT;
        }
    }
    return OP_OK;
}

static op_status jsonschema_check_array(const jsonschema *s, json_t *v, jsonschema_ctx *c)
{
    size_t n = json_array_size(v);
    if (s->min_items >= 0 && (long)n < s->min_items)
        return jsonschema_fail(c, "minItems", "must have at least %ld items", s->min_items);
    if (s->max_items >= 0 && (long)n > s->max_items)
        return jsonschema_fail(c, "maxItems", "must have at most %ld items", s->max_items);
    for (size_t i = 0; i < n; i++) {
        const jsonschema *item = s->items;
        if (s->tuple)
            item = i < s->ntuple ? s->tuple[i] : s->additional_items;
        if (item && jsonschema_child(item, json_array_get(v, i), c, "[", NULL, i) != OP_OK) {
            if (item->boolean == 0 && s->tuple && i >= s->ntuple)
                c->err ? (void)(c->err->keyword = "additionalItems") : (void)0;
            return OP_ERR_PERMANENT;
        }
    }
    return OP_OK;
}

static op_status jsonschema_check(const jsonschema *s, json_t *v, jsonschema_ctx *c)
{
    if (s->boolean == 1)
        return OP_OK;
    if (s->boolean == 0)
        return jsonschema_fail(c, "false", "is not allowed here");
    if (!jsonschema_type_ok(s->types, v, c->strict_integer)) {
        char t[80];
        jsonschema_types_text(s->types, t, sizeof t);
        if (json_is_real(v) && (s->types & T_INTEGER))
            return jsonschema_fail(c, "type", "must be %s, written without a fraction or an "
                                              "exponent", t);
        return jsonschema_fail(c, "type", "must be %s", t);
    }
    if (s->const_value && !jsonschema_equal(s->const_value, v))
        return jsonschema_fail(c, "const", "must equal the constant value");
    if (s->enum_values) {
        bool found = false;
        for (size_t i = 0; i < json_array_size(s->enum_values) && !found; i++)
            found = jsonschema_equal(json_array_get(s->enum_values, i), v);
        if (!found) {
            char *allowed = json_dumps(s->enum_values, JSON_COMPACT | JSON_ENCODE_ANY);
            char cut[181];
            utf8_copy(cut, sizeof cut, allowed);
            free(allowed);
            return jsonschema_fail(c, "enum", "must be one of %s", cut);
        }
    }
    if (json_is_number(v)) {
        double d = json_number_value(v);
        if (s->has_min && d < s->minimum)
            return jsonschema_fail(c, "minimum", "must be >= %g", s->minimum);
        if (s->has_max && d > s->maximum)
            return jsonschema_fail(c, "maximum", "must be <= %g", s->maximum);
        if (s->has_emin && d <= s->emin)
            return jsonschema_fail(c, "exclusiveMinimum", "must be > %g", s->emin);
        if (s->has_emax && d >= s->emax)
            return jsonschema_fail(c, "exclusiveMaximum", "must be < %g", s->emax);
        if (s->has_multiple) {
            double q = d / s->multiple;
            if (!isfinite(q) || fabs(q - round(q)) > 1e-9)
                return jsonschema_fail(c, "multipleOf", "must be a multiple of %g", s->multiple);
        }
    } else if (json_is_string(v)) {
        const char *str = json_string_value(v);
        size_t cp = jsonschema_codepoints(str, json_string_length(v));
        if (s->min_len >= 0 && (long)cp < s->min_len)
            return jsonschema_fail(c, "minLength", "must be at least %ld characters", s->min_len);
        if (s->max_len >= 0 && (long)cp > s->max_len)
            return jsonschema_fail(c, "maxLength", "must be at most %ld characters", s->max_len);
        if (s->pattern.compiled && regexec(&s->pattern.re, str, 0, NULL, 0) != 0) {
            char cut[151];
            utf8_copy(cut, sizeof cut, s->pattern.source);
            return jsonschema_fail(c, "pattern", "must match the pattern %s", cut);
        }
        if (s->format == FMT_UUID && !uuid_valid(str))
            return jsonschema_fail(c, "format", "must be a UUID");
        if (s->format == FMT_DATE_TIME && !jsonschema_date_time_ok(str))
            return jsonschema_fail(c, "format", "must be an RFC 3339 date-time");
    } else if (json_is_object(v)) {
        return jsonschema_check_object(s, v, c);
    } else if (json_is_array(v)) {
        return jsonschema_check_array(s, v, c);
    }
    return OP_OK;
}

op_status jsonschema_validate(const jsonschema *s, json_t *doc, jsonschema_error *err)
{
    jsonschema_ctx c = {.err = err, .strict_integer = s->flags & JSONSCHEMA_STRICT_INTEGER,
                        .path = "$"};
    return jsonschema_check(s, doc, &c);
}

/* --- registry ------------------------------------------------------------------------------ */

struct jsonschema_registry {
    size_t n;
    char **names;
    jsonschema **schemas;
};

jsonschema_registry *jsonschema_registry_load(const char *dir, char *err, size_t errlen)
{
    DIR *dh = opendir(dir);
    if (!dh) {
        snprintf(err, errlen, "cannot open directory %s", dir);
        return NULL;
    }
    jsonschema_registry *r = mem_calloc(1, sizeof *r);
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(dh)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".json") != 0)
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        json_error_t je;
        json_t *doc = json_load_file(path, 0, &je);
        if (!doc) {
            snprintf(err, errlen, "%s: line %d: %s", path, je.line, je.text);
            goto fail;
        }
        char cerr[256];
        jsonschema *s = jsonschema_compile_flags(doc, JSONSCHEMA_STRICT_INTEGER, cerr, sizeof cerr);
        json_decref(doc);
        if (!s) {
            snprintf(err, errlen, "%s: %s", path, cerr);
            goto fail;
        }
        if (r->n == cap) {
            cap = cap ? cap * 2 : 16;
            r->names = mem_realloc(r->names, cap * sizeof *r->names);
            r->schemas = mem_realloc(r->schemas, cap * sizeof *r->schemas);
        }
        r->names[r->n] = mem_strndup(e->d_name, len - 5);
        r->schemas[r->n++] = s;
    }
    closedir(dh);
    return r;
fail:
    closedir(dh);
    jsonschema_registry_free(r);
    return NULL;
}

const jsonschema *jsonschema_registry_get(const jsonschema_registry *r, const char *name)
{
    for (size_t i = 0; r && i < r->n; i++)
        if (strcmp(r->names[i], name) == 0)
            return r->schemas[i];
    return NULL;
}

void jsonschema_registry_free(jsonschema_registry *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->names[i]);
        jsonschema_free(r->schemas[i]);
    }
    free(r->names);
    free(r->schemas);
    free(r);
}

const char *jsonschema_default_dir(void)
{
    struct stat st;
    if (stat("schemas", &st) == 0 && S_ISDIR(st.st_mode))
        return "schemas";
    return "/usr/local/share/orderpipe/schemas";
}
