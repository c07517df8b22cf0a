/* jsonschema_impl: what the schema compiler, its regex translation and the validator share,
 * private to lib/jsonschema_*.c (users include jsonschema.h).
 *
 * A compiled schema is a tree of struct jsonschema: the compiler (jsonschema_compile.c) builds
 * it once, with every pattern already a POSIX regex (jsonschema_regex.c); the validator
 * (jsonschema_validate.c) only reads it, so one compiled schema may validate from several
 * threads at once.
 */
#ifndef ORDERPIPE_JSONSCHEMA_IMPL_H
#define ORDERPIPE_JSONSCHEMA_IMPL_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>

#include "jsonschema.h"


enum {
    T_NULL = 1 << 0, T_BOOLEAN = 1 << 1, T_OBJECT = 1 << 2, T_ARRAY = 1 << 3,
    T_NUMBER = 1 << 4, T_STRING = 1 << 5, T_INTEGER = 1 << 6,
};
/* The names of the T_* bits, in bit order. */
extern const char *const jsonschema_type_names[7];

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

/* Compiles ECMA 262 pattern `src` into r. OP_OK, or OP_ERR_PERMANENT with err filled when the
 * pattern uses what is not supported or could make matching blow up. r owns its copy of src. */
op_status jsonschema_regex_compile(jsonschema_regex *r, const char *src, char *err, size_t errlen);
/* Releases what jsonschema_regex_compile built (a zeroed r is fine). */
void jsonschema_regex_free(jsonschema_regex *r);

#endif
