/* jsonschema_compile: JSON Schema documents into the tree the validator walks (see
 * jsonschema.h), and the registry of the pipeline's schemas.
 *
 * Owns the list of supported keywords: a keyword not known here is refused, so a schema never
 * silently means less than it says. Every allocation dies on out-of-memory (mem.h); a schema
 * that cannot be compiled returns OP_ERR_PERMANENT with the reason in err and nothing allocated.
 */
#include "jsonschema_impl.h"

#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mem.h"

const char *const jsonschema_type_names[7] = {"null", "boolean", "object", "array", "number",
                                              "string", "integer"};

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

static op_status jsonschema_compile_into(jsonschema *s, json_t *schema, char *err, size_t errlen);

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
    if (jsonschema_compile_into(s, schema, err, errlen) != OP_OK) {
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
        if (strcmp(name, jsonschema_type_names[i]) == 0)
            return 1 << i;
    return 0;
}

static op_status jsonschema_nonneg(json_t *v, const char *key, long *out, char *err, size_t errlen)
{
    double d = json_number_value(v);
    if (!json_is_number(v) || d < 0 || d != floor(d)) {
        snprintf(err, errlen, "'%s' must be a non-negative integer", key);
        return OP_ERR_PERMANENT;
    }
    *out = d >= (double)LONG_MAX ? LONG_MAX : (long)d; /* a bound beyond long is no bound */
    return OP_OK;
}

static op_status jsonschema_compile_into(jsonschema *s, json_t *schema, char *err, size_t errlen)
{
    if (json_is_boolean(schema)) {
        s->boolean = json_is_true(schema);
        return OP_OK;
    }
    if (!json_is_object(schema)) {
        snprintf(err, errlen, "a schema must be an object or a boolean");
        return OP_ERR_PERMANENT;
    }
    const char *key;
    json_t *v;
    json_object_foreach(schema, key, v) {
        if (strcmp(key, "type") == 0) {
            if (json_is_string(v)) {
                s->types = (unsigned)jsonschema_type_bit(json_string_value(v));
                if (!s->types) {
                    snprintf(err, errlen, "unknown type '%s'", json_string_value(v));
                    return OP_ERR_PERMANENT;
                }
            } else if (json_is_array(v)) {
                size_t i;
                json_t *t;
                json_array_foreach(v, i, t) {
                    int bit = json_is_string(t) ? jsonschema_type_bit(json_string_value(t)) : 0;
                    if (!bit) {
                        snprintf(err, errlen, "'type' lists an unknown type");
                        return OP_ERR_PERMANENT;
                    }
                    s->types |= (unsigned)bit;
                }
            } else {
                snprintf(err, errlen, "'type' must be a string or an array");
                return OP_ERR_PERMANENT;
            }
        } else if (strcmp(key, "properties") == 0) {
            if (!json_is_object(v)) {
                snprintf(err, errlen, "'properties' must be an object");
                return OP_ERR_PERMANENT;
            }
            s->prop_names = mem_calloc(json_object_size(v), sizeof(char *));
            s->props = mem_calloc(json_object_size(v), sizeof(jsonschema *));
            const char *pk;
            json_t *ps;
            json_object_foreach(v, pk, ps) {
                s->prop_names[s->nprops] = mem_strdup(pk);
                if (!(s->props[s->nprops++] = jsonschema_sub(ps, pk, err, errlen)))
                    return OP_ERR_PERMANENT;
            }
        } else if (strcmp(key, "patternProperties") == 0) {
            if (!json_is_object(v)) {
                snprintf(err, errlen, "'patternProperties' must be an object");
                return OP_ERR_PERMANENT;
            }
            s->prop_patterns = mem_calloc(json_object_size(v), sizeof(jsonschema_regex));
            s->pattern_props = mem_calloc(json_object_size(v), sizeof(jsonschema *));
            const char *pk;
            json_t *ps;
            json_object_foreach(v, pk, ps) {
                size_t i = s->npattern_props++;
                if (jsonschema_regex_compile(&s->prop_patterns[i], pk, err, errlen) != OP_OK ||
                    !(s->pattern_props[i] = jsonschema_sub(ps, pk, err, errlen)))
                    return OP_ERR_PERMANENT;
            }
        } else if (strcmp(key, "required") == 0) {
            if (!json_is_array(v)) {
                snprintf(err, errlen, "'required' must be an array");
                return OP_ERR_PERMANENT;
            }
            s->required = mem_calloc(json_array_size(v) + 1, sizeof(char *));
            size_t i;
            json_t *r;
            json_array_foreach(v, i, r) {
                if (!json_is_string(r)) {
                    snprintf(err, errlen, "'required' must list strings");
                    return OP_ERR_PERMANENT;
                }
                s->required[s->nrequired++] = mem_strdup(json_string_value(r));
            }
        } else if (strcmp(key, "additionalProperties") == 0) {
            if (!(s->additional = jsonschema_sub(v, key, err, errlen)))
                return OP_ERR_PERMANENT;
        } else if (strcmp(key, "items") == 0) {
            if (json_is_array(v)) {
                s->tuple = mem_calloc(json_array_size(v) + 1, sizeof(jsonschema *));
                size_t i;
                json_t *it;
                json_array_foreach(v, i, it) {
                    if (!(s->tuple[s->ntuple++] = jsonschema_sub(it, "items", err, errlen)))
                        return OP_ERR_PERMANENT;
                }
            } else if (!(s->items = jsonschema_sub(v, key, err, errlen))) {
                return OP_ERR_PERMANENT;
            }
        } else if (strcmp(key, "additionalItems") == 0) {
            if (!(s->additional_items = jsonschema_sub(v, key, err, errlen)))
                return OP_ERR_PERMANENT;
        } else if (strcmp(key, "enum") == 0) {
            if (!json_is_array(v)) {
                snprintf(err, errlen, "'enum' must be an array");
                return OP_ERR_PERMANENT;
            }
            s->enum_values = json_incref(v);
        } else if (strcmp(key, "const") == 0) {
            s->const_value = json_incref(v);
        } else if (strcmp(key, "minimum") == 0 || strcmp(key, "maximum") == 0 ||
                   strcmp(key, "exclusiveMinimum") == 0 || strcmp(key, "exclusiveMaximum") == 0 ||
                   strcmp(key, "multipleOf") == 0) {
            if (!json_is_number(v)) {
                snprintf(err, errlen, "'%s' must be a number", key);
                return OP_ERR_PERMANENT;
            }
            double d = json_number_value(v);
            if (key[0] == 'm' && key[1] == 'i') { s->has_min = true; s->minimum = d; }
            else if (key[0] == 'm' && key[1] == 'a') { s->has_max = true; s->maximum = d; }
            else if (key[0] == 'm') {
                if (d <= 0) {
                    snprintf(err, errlen, "'multipleOf' must be > 0");
                    return OP_ERR_PERMANENT;
                }
                s->has_multiple = true;
                s->multiple = d;
            }
            else if (strcmp(key, "exclusiveMinimum") == 0) { s->has_emin = true; s->emin = d; }
            else { s->has_emax = true; s->emax = d; }
        } else if (strcmp(key, "minLength") == 0) {
            if (jsonschema_nonneg(v, key, &s->min_len, err, errlen)) return OP_ERR_PERMANENT;
        } else if (strcmp(key, "maxLength") == 0) {
            if (jsonschema_nonneg(v, key, &s->max_len, err, errlen)) return OP_ERR_PERMANENT;
        } else if (strcmp(key, "minItems") == 0) {
            if (jsonschema_nonneg(v, key, &s->min_items, err, errlen)) return OP_ERR_PERMANENT;
        } else if (strcmp(key, "maxItems") == 0) {
            if (jsonschema_nonneg(v, key, &s->max_items, err, errlen)) return OP_ERR_PERMANENT;
        } else if (strcmp(key, "minProperties") == 0) {
            if (jsonschema_nonneg(v, key, &s->min_props, err, errlen)) return OP_ERR_PERMANENT;
        } else if (strcmp(key, "maxProperties") == 0) {
            if (jsonschema_nonneg(v, key, &s->max_props, err, errlen)) return OP_ERR_PERMANENT;
        } else if (strcmp(key, "pattern") == 0) {
            if (!json_is_string(v)) {
                snprintf(err, errlen, "'pattern' must be a string");
                return OP_ERR_PERMANENT;
            }
            if (jsonschema_regex_compile(&s->pattern, json_string_value(v), err, errlen) != OP_OK)
                return OP_ERR_PERMANENT;
        } else if (strcmp(key, "format") == 0) {
            const char *f = json_string_value(v);
            if (f && strcmp(f, "uuid") == 0) s->format = FMT_UUID;
            else if (f && strcmp(f, "date-time") == 0) s->format = FMT_DATE_TIME;
            /* other formats are annotations in draft 7 */
        } else if (!jsonschema_is_annotation(key)) {
            snprintf(err, errlen, "unsupported keyword '%s'", key);
            return OP_ERR_PERMANENT;
        }
    }
    return OP_OK;
}

op_status jsonschema_compile_flags(json_t *schema, unsigned flags, jsonschema **out, char *err,
                                   size_t errlen)
{
    *out = NULL;
    jsonschema *s = jsonschema_new();
    if (jsonschema_compile_into(s, schema, err, errlen) != OP_OK) {
        jsonschema_free(s);
        return OP_ERR_PERMANENT;
    }
    s->flags = flags;
    *out = s;
    return OP_OK;
}

op_status jsonschema_compile(json_t *schema, jsonschema **out, char *err, size_t errlen)
{
    return jsonschema_compile_flags(schema, 0, out, err, errlen);
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

/* --- registry ------------------------------------------------------------------------------ */

struct jsonschema_registry {
    size_t n;
    char **names;
    jsonschema **schemas;
};

op_status jsonschema_registry_load(const char *dir, jsonschema_registry **out, char *err,
                                   size_t errlen)
{
    *out = NULL;
    DIR *dh = opendir(dir);
    if (!dh) {
        snprintf(err, errlen, "cannot open directory %s", dir);
        return OP_ERR_PERMANENT;
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
        jsonschema *s;
        op_status st = jsonschema_compile_flags(doc, JSONSCHEMA_STRICT_INTEGER, &s, cerr, sizeof cerr);
        json_decref(doc);
        if (st != OP_OK) {
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
    *out = r;
    return OP_OK;
fail:
    closedir(dh);
    jsonschema_registry_free(r);
    return OP_ERR_PERMANENT;
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
