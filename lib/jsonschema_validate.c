/* jsonschema_validate: checks a document against a compiled schema (see jsonschema.h).
 *
 * Reads the compiled tree only, and stops at the first error with its JSON path and a
 * sentence, both valid UTF-8 whatever the document holds: property names come from clients.
 */
#include "jsonschema_impl.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"
#include "uuid.h"

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
            snprintf(out + n, size - n, "%s%s", n ? " or " : "", jsonschema_type_names[i]);
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
    assert(s && doc);
    jsonschema_ctx c = {.err = err, .strict_integer = s->flags & JSONSCHEMA_STRICT_INTEGER,
                        .path = "$"};
    return jsonschema_check(s, doc, &c);
}
