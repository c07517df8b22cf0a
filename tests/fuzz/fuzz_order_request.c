/* libFuzzer target: arbitrary bytes as the body of POST /v1/orders, through the same checks the
 * intake runs (lib/order_request.c: Idempotency-Key form, JSON parse, schemas/order.request.json,
 * total, the order.placed event) and the error body the intake would send back.
 *
 * Input: the body as is; or, when the first byte is 0x01, "\x01KEY\nTRACEPARENT\nBODY", which also
 * fuzzes the Idempotency-Key and traceparent headers (a missing line is a missing header).
 * The schema dir: $ORDERPIPE_SCHEMA_DIR, else FUZZ_SCHEMA_DIR (the Makefile passes the absolute
 * path of schemas/), else the schemas/ next to this file's tree. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "order_request.h"

#ifndef FUZZ_SCHEMA_DIR
#define FUZZ_SCHEMA_DIR __FILE__ "/../../../schemas"
#endif

static jsonschema_registry *reg;
static const jsonschema *schema;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = getenv("ORDERPIPE_SCHEMA_DIR");
    if (!dir || !*dir)
        dir = FUZZ_SCHEMA_DIR;
    char err[256];
    reg = jsonschema_registry_load(dir, err, sizeof err);
    schema = jsonschema_registry_get(reg, "order.request");
    if (!schema) {
        fprintf(stderr, "fuzz_order_request: cannot load order.request from %s: %s\n", dir,
                reg ? "not found" : err);
        abort();
    }
    return 0;
}

/* The next '\n'-terminated line of [*p, end) as a fresh NUL-terminated string; NULL at the end. */
static char *next_line(const char **p, const char *end)
{
    if (*p >= end)
        return NULL;
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    size_t n = nl ? (size_t)(nl - *p) : (size_t)(end - *p);
    char *s = strndup(*p, n);
    *p += n + (nl ? 1 : 0);
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    char *key = NULL, *tp = NULL;
    if (size > 0 && data[0] == 0x01) {
        p++;
        key = next_line(&p, end);
        tp = next_line(&p, end);
    }
    /* The body in its own allocation of exactly its length, so ASan sees any over-read. */
    size_t len = (size_t)(end - p);
    char *body = malloc(len ? len : 1);
    if (len)
        memcpy(body, p, len);

    if (key)
        (void)order_request_key_valid(key);
    json_t *ev = NULL;
    char order_id[UUID_STR_LEN];
    order_request_error err;
    memset(&err, 0, sizeof err);
    if (order_request_build(body, len, schema, "fuzz-client", key, tp, "orderpipe-fuzz", &ev,
                            order_id, &err) == OP_OK) {
        if (!ev || !uuid_valid(order_id))
            abort();
        char *out = json_dumps(ev, JSON_COMPACT);
        if (!out)
            abort();
        free(out);
        json_decref(ev);
    } else {
        if (ev || err.http_status < 400 || !err.code[0])
            abort();
        char *out = order_request_error_json(&err);
        if (!out)
            abort();
        free(out);
    }
    free(body);
    free(key);
    free(tp);
    return 0;
}
