/* jsonschema: validation of JSON documents (jansson) against JSON Schema draft 7.
 *
 * Supported keywords: type, properties, patternProperties, required, additionalProperties, items
 * (schema or tuple), additionalItems, enum, const, minimum, maximum, exclusiveMinimum,
 * exclusiveMaximum, multipleOf, minLength, maxLength (in code points), pattern, minItems,
 * maxItems, minProperties, maxProperties, format "uuid" and "date-time", boolean schemas.
 * Annotations ($schema, $id, title, description, $comment, examples, default, readOnly,
 * writeOnly, contentMediaType, contentEncoding) are accepted and ignored; other formats are
 * annotations too. Any other keyword is refused when the schema is compiled, so a schema never
 * silently means less than it says. Patterns are ECMA 262 translated to POSIX extended regular
 * expressions (\d \w \s and their negations; no look-around or back-references).
 *
 * Schemas are compiled once (regexes included) and validated many times; validation stops at the
 * first error and reports its JSON path ("$.lines[2].quantity") and a sentence, both valid UTF-8
 * (cut on a character boundary: property names come from the client).
 * Memory: compile/load allocate, the matching _free releases; get returns a borrowed pointer.
 * Implementation: jsonschema_compile.c (schemas and the registry), jsonschema_regex.c
 * (patterns), jsonschema_validate.c (documents).
 */
#ifndef ORDERPIPE_JSONSCHEMA_H
#define ORDERPIPE_JSONSCHEMA_H

#include <jansson.h>
#include <stddef.h>

#include "status.h"

typedef struct jsonschema jsonschema;
typedef struct jsonschema_registry jsonschema_registry;

typedef struct jsonschema_error {
    char path[256];       /* "$" for the document itself */
    char message[256];    /* e.g. "must be >= 1" */
    const char *keyword;  /* the keyword that failed, e.g. "minimum" */
} jsonschema_error;

/* Options of jsonschema_compile_flags. */
enum {
    /* "integer" means a number written without a fraction or an exponent (what jansson parses
     * as JSON_INTEGER): 2.0, 1e8, 1E2 and -0.0 are refused. Standard JSON Schema counts any
     * number with a zero fractional part as an integer; the pipeline computes with the
     * integer value, which jansson gives as 0 for a real, so a real must never pass. */
    JSONSCHEMA_STRICT_INTEGER = 1u << 0,
};

/* Compiles `schema` (borrowed) with `flags` (JSONSCHEMA_*; 0: standard draft 7) into *out (the
 * caller owns it: jsonschema_free). OP_ERR_PERMANENT, *out NULL and err filled when it is
 * invalid or uses a keyword this validator does not support. */
op_status jsonschema_compile_flags(json_t *schema, unsigned flags, jsonschema **out, char *err,
                                   size_t errlen);
/* jsonschema_compile_flags(schema, 0, ...): standard semantics. */
op_status jsonschema_compile(json_t *schema, jsonschema **out, char *err, size_t errlen);
void jsonschema_free(jsonschema *s);

/* OP_OK if doc is valid; OP_ERR_PERMANENT with *err (may be NULL) filled otherwise. */
op_status jsonschema_validate(const jsonschema *s, json_t *doc, jsonschema_error *err);

/* Loads and compiles every DIR/NAME.json, keyed by NAME (e.g. "order.placed"), with
 * JSONSCHEMA_STRICT_INTEGER: the registry is what the intake, enqueue and workers validate with. */
/* *out is the caller's (jsonschema_registry_free); OP_ERR_PERMANENT, *out NULL and err filled
 * (the file and why) when a file cannot be read or compiled. */
op_status jsonschema_registry_load(const char *dir, jsonschema_registry **out, char *err,
                                   size_t errlen);
const jsonschema *jsonschema_registry_get(const jsonschema_registry *r, const char *name);
void jsonschema_registry_free(jsonschema_registry *r);

/* Where the schemas are when ORDERPIPE_SCHEMA_DIR is not set: ./schemas if it exists, else the
 * installed share directory. */
const char *jsonschema_default_dir(void);

#endif
