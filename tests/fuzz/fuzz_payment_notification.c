/* libFuzzer target: arbitrary bytes as the Orderpipe-Signature header and the body of
 * POST /v1/payment-notifications/{channel}, through what the intake does with them up to the
 * reply body: signature_parse and signature_verify (lib/signature.c) and, for a body that passed,
 * payment_notification_build (JSON, schemas/payment.notification.json, the charge key, the
 * payment.notified event, which must then pass payment.notified and cloudevent), and on error
 * the reply body built by order_request_reply_error exactly as intake_reply_error builds it.
 *
 * Input: "HEADER\nBODY" (the first line is the header; without a newline the whole input is the
 * header and the body is empty). The body is also verified as if correctly signed at time "now",
 * so the build runs on every input, not only on the rare one whose MAC the fuzzer guessed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_schemas.h"
#include "payment_notification.h"
#include "signature.h"
#include "utf8.h"

static jsonschema_registry *reg;
static const char *const secrets[] = {"whsec_fuzz_old", "whsec_fuzz_new"};
#define FUZZ_NOW 1700000000

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    reg = fuzz_schemas_load("fuzz_payment_notification", "payment.notification");
    return 0;
}

static void check_reply(int status, const char *text)
{
    json_t *j = json_loads(text, 0, NULL);
    if (!j || !json_is_string(json_object_get(j, "error")) ||
        !json_is_string(json_object_get(j, "message")) || status < 400 || status > 599)
        abort();
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *nl = memchr(p, '\n', size);
    size_t hlen = nl ? (size_t)(nl - p) : size;
    char *header = strndup(p, hlen);
    size_t len = nl ? size - hlen - 1 : 0;
    char *body = malloc(len ? len : 1); /* exactly its length, so ASan sees any over-read */
    if (len)
        memcpy(body, nl + 1, len);

    signature_header h;
    op_status parsed = signature_parse(header, &h);
    signature_verdict v;
    if (signature_verify(header, body, len, secrets, 2, FUZZ_NOW, 300, &v) != OP_OK)
        abort();
    if ((parsed == OP_OK) != (v != SIGNATURE_MALFORMED) || (parsed == OP_OK && h.nv1 == 0))
        abort();
    /* The same body signed as a channel would: it verifies, and a second too late is stale. */
    char v1[SIGNATURE_HEX_LEN + 1], good[128];
    if (signature_sign(secrets[1], strlen(secrets[1]), "1700000000", body, len, v1) != OP_OK)
        abort();
    snprintf(good, sizeof good, "t=1700000000,v1=%s", v1);
    if (signature_verify(good, body, len, secrets, 2, FUZZ_NOW, 300, &v) != OP_OK ||
        v != SIGNATURE_VALID ||
        signature_verify(good, body, len, secrets, 2, FUZZ_NOW + 301, 300, &v) != OP_OK ||
        v != SIGNATURE_STALE)
        abort();

    json_t *ev = NULL;
    char order_id[UUID_STR_LEN];
    order_request_error err;
    memset(&err, 0, sizeof err);
    if (payment_notification_build(body, len, jsonschema_registry_get(reg, "payment.notification"),
                                   "card", header, &ev, order_id, &err) == OP_OK) {
        jsonschema_error se;
        if (!ev || !uuid_valid(order_id) ||
            jsonschema_validate(jsonschema_registry_get(reg, "payment.notified"),
                                json_object_get(ev, "data"), &se) != OP_OK ||
            jsonschema_validate(jsonschema_registry_get(reg, "cloudevent"), ev, &se) != OP_OK)
            abort();
        char *out = json_dumps(ev, JSON_COMPACT);
        if (!out)
            abort();
        free(out);
        json_decref(ev);
    } else {
        if (ev || err.http_status < 400 || !utf8_valid(err.message, strlen(err.message)))
            abort();
        char text[ORDER_REQUEST_ERROR_BODY_MAX];
        int status = order_request_reply_error(err.http_status, err.code, err.message, err.field,
                                               text, sizeof text);
        if (status != err.http_status)
            abort();
        check_reply(status, text);
    }
    free(header);
    free(body);
    return 0;
}
