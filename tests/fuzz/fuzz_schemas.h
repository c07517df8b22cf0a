/* fuzz_schemas: where the fuzz targets find schemas/, and the registry the programs load.
 *
 * ORDERPIPE_SCHEMA_DIR when set, else the tree's schemas/ (FUZZ_SCHEMA_DIR, set by the Makefile).
 * A target that cannot load what it fuzzes aborts at start-up rather than fuzz nothing. */
#ifndef ORDERPIPE_FUZZ_SCHEMAS_H
#define ORDERPIPE_FUZZ_SCHEMAS_H

#include <stdio.h>
#include <stdlib.h>

#include "jsonschema.h"

#ifndef FUZZ_SCHEMA_DIR
#define FUZZ_SCHEMA_DIR __FILE__ "/../../../schemas"
#endif

static inline const char *fuzz_schema_dir(void)
{
    const char *dir = getenv("ORDERPIPE_SCHEMA_DIR");
    return dir && *dir ? dir : FUZZ_SCHEMA_DIR;
}

/* The registry as the programs load it (strict integers); aborts unless it has `must_have`.
 * Lives as long as the fuzzing process. */
static inline jsonschema_registry *fuzz_schemas_load(const char *target, const char *must_have)
{
    const char *dir = fuzz_schema_dir();
    char err[256];
    jsonschema_registry *reg;
    if (jsonschema_registry_load(dir, &reg, err, sizeof err) != OP_OK || !jsonschema_registry_get(reg, must_have)) {
        fprintf(stderr, "%s: cannot load %s from %s: %s\n", target, must_have, dir,
                reg ? "not found" : err);
        abort();
    }
    return reg;
}

#endif
