/* libFuzzer target: arbitrary bytes as the body (and headers) of POST /v1/orders, through what the
 * intake does with them, up to the reply body it sends: the checks of lib/order_request.c
 * (Idempotency-Key form, JSON parse, schemas/order.request.json with the registry's strict
 * integers, the total, the order.placed event) and, on failure, the error body built by
 * order_request_reply_error exactly as intake_reply_error builds it; on success the event is
 * serialised as the publisher does. A crash on the reply
 * path (a message cut mid-character, json_pack returning NULL) is within its reach.
 *
 * Input: the body as is; or, when the first byte is 0x01, "\x01KEY\nTRACEPARENT\nBODY", which also
 * fuzzes the Idempotency-Key and traceparent headers (a missing line is a missing header).
 * The schema dir: $ORDERPIPE_SCHEMA_DIR, else FUZZ_SCHEMA_DIR (the Makefile passes the absolute
 * path of schemas/), else the schemas/ next to this file's tree. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_schemas.h"
#include "order_request.h"
#include "utf8.h"


static jsonschema_registry *reg;
static const jsonschema *schema;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    reg = fuzz_schemas_load("fuzz_order_request", "order.request");
    schema = jsonschema_registry_get(reg, "order.request");
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

/* What the client receives must be one JSON object with a string "error" (and the status of a
 * client error unless the server failed). */
static void check_reply(int status, const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    if (!j || !json_is_string(json_object_get(j, "error")) ||
        !json_is_string(json_object_get(j, "message")) || status < 400 || status > 599)
        abort();
    json_decref(j);
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

    json_t *ev = NULL;
    char order_id[UUID_STR_LEN];
    order_request_error err;
    memset(&err, 0, sizeof err);
    if (order_request_build(body, len, schema, NULL, "fuzz-client", key, tp, "orderpipe-fuzz", &ev,
                            order_id, NULL, &err) == OP_OK) {
        if (!ev || !uuid_valid(order_id))
            abort();
        /* An accepted order is one the workers accept: the same registry, order.placed. */
        jsonschema_error se;
        if (jsonschema_validate(jsonschema_registry_get(reg, "order.placed"),
                                json_object_get(ev, "data"), &se) != OP_OK ||
            jsonschema_validate(jsonschema_registry_get(reg, "cloudevent"), ev, &se) != OP_OK) {
            fprintf(stderr, "accepted but refused downstream: %s %s\n", se.path, se.message);
            abort();
        }
        char *out = json_dumps(ev, JSON_COMPACT);
        if (!out)
            abort();
        free(out);
        json_decref(ev);
    } else {
        if (ev || err.http_status < 400 || !err.code[0] ||
            !utf8_valid(err.message, strlen(err.message)) ||
            !utf8_valid(err.field, strlen(err.field)))
            abort();
        /* exactly what intake_post_order -> intake_reply_error sends */
        char text[ORDER_REQUEST_ERROR_BODY_MAX];
        int status = order_request_reply_error(err.http_status, err.code, err.message, err.field,
                                               text, sizeof text);
        if (status != err.http_status) /* only out of memory may turn it into a 500 */
            abort();
        check_reply(status, text);
    }
    /* the header values themselves in a reply (as a handler quoting them would) */
    if (key) {
        char text[ORDER_REQUEST_ERROR_BODY_MAX];
        check_reply(order_request_reply_error(400, "invalid_idempotency_key", key, tp, text,
                                              sizeof text), text);
    }
    free(body);
    free(key);
    free(tp);
    return 0;
}
