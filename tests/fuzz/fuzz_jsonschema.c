/* libFuzzer target for lib/jsonschema.c.
 *
 * Input: "SCHEMA\nINSTANCE". The first line is parsed as a schema document (any JSON value) and
 * compiled, which must either succeed or fail with a message; if it compiles, the rest is parsed
 * as an instance and validated against it (and the compiled schema freed). Independently, the
 * whole input and the rest are validated as instances against every real schema in schemas/
 * ($ORDERPIPE_SCHEMA_DIR, else FUZZ_SCHEMA_DIR from the Makefile). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_schemas.h"
#include "jsonschema.h"


#define MAX_SCHEMAS 64
static jsonschema *real[MAX_SCHEMAS];
static size_t nreal;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = fuzz_schema_dir();
    DIR *dh = opendir(dir);
    if (!dh) {
        fprintf(stderr, "fuzz_jsonschema: cannot open %s\n", dir);
        abort();
    }
    struct dirent *e;
    while ((e = readdir(dh)) != NULL && nreal < MAX_SCHEMAS) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".json") != 0)
            continue;
        char path[4096], err[256];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        json_t *doc = json_load_file(path, 0, NULL);
        jsonschema *s = NULL;
        if (doc)
            (void)jsonschema_compile(doc, &s, err, sizeof err); /* s stays NULL when refused */
        json_decref(doc);
        if (!s) {
            fprintf(stderr, "fuzz_jsonschema: %s does not compile\n", path);
            abort();
        }
        real[nreal++] = s;
    }
    closedir(dh);
    if (nreal == 0) {
        fprintf(stderr, "fuzz_jsonschema: no schemas in %s\n", dir);
        abort();
    }
    return 0;
}

static void validate_all(json_t *doc)
{
    jsonschema_error err;
    for (size_t i = 0; i < nreal; i++)
        if (jsonschema_validate(real[i], doc, &err) != OP_OK &&
            (!err.keyword || strnlen(err.path, sizeof err.path) == sizeof err.path))
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    const char *nl = memchr(p, '\n', size);
    size_t slen = nl ? (size_t)(nl - p) : size;
    const char *rest = nl ? nl + 1 : p + size;
    size_t rlen = size - (size_t)(rest - p);

    json_t *whole = json_loadb(p, size, JSON_DECODE_ANY, NULL);
    json_t *inst = json_loadb(rest, rlen, JSON_DECODE_ANY, NULL);
    if (whole)
        validate_all(whole);
    if (inst)
        validate_all(inst);

    json_t *sdoc = json_loadb(p, slen, JSON_DECODE_ANY, NULL);
    if (sdoc) {
        char err[256];
        err[0] = '\0';
        jsonschema *s;
        op_status st = jsonschema_compile(sdoc, &s, err, sizeof err);
        if ((st == OP_OK) != (s != NULL))
            abort(); /* the status and the result agree */
        if (!s && !err[0])
            abort(); /* a refused schema always says why */
        if (s) {
            jsonschema_error verr;
            if (inst)
                (void)jsonschema_validate(s, inst, &verr);
            (void)jsonschema_validate(s, sdoc, NULL); /* the schema as its own instance */
            jsonschema_free(s);
        }
        json_decref(sdoc);
    }
    json_decref(whole);
    json_decref(inst);
    return 0;
}
