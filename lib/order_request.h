/* order_request: turns an order as the web tier sends it into an order.placed event.
 *
 * Shared by the HTTP intake and the bulk enqueue so both accept exactly the same orders: checks
 * the body against schemas/order.request.json, the Idempotency-Key's form, computes the total
 * without overflow, and derives the order id — a name-based UUID of (client, Idempotency-Key), so
 * the same request gives the same id in every process and after restarts — and the event id
 * from the order id, so a repeated request publishes a message the consumers' inbox drops.
 */
#ifndef ORDERPIPE_ORDER_REQUEST_H
#define ORDERPIPE_ORDER_REQUEST_H

#include <jansson.h>
#include <stdbool.h>

#include "jsonschema.h"
#include "payment_channels.h"
#include "status.h"
#include "uuid.h"

/* The namespace of order ids derived from Idempotency-Keys (a fixed, random v4). */
#define ORDER_REQUEST_NAMESPACE "3f0c5b1e-8d4a-4c47-9a7e-2b6f1d9e8c30"

typedef struct order_request_error {
    int http_status;     /* 400, 413, 415 ... */
    char code[48];       /* "invalid_json", "schema_violation", ... */
    char message[320];
    char field[256];     /* JSON path, "" when none */
} order_request_error;

/* True if key is 1..128 printable ASCII characters (0x20..0x7e). */
bool order_request_key_valid(const char *key);

/* The order id for (client, key): v5 when key is given, else a fresh v4. OP_OK, or the
 * status of uuid_v4 / uuid_v5. */
op_status order_request_order_id(const char *client_id, const char *key, char out[UUID_STR_LEN]);

/* The longest payment token order.request accepts, with its NUL. */
#define ORDER_REQUEST_TOKEN_SIZE 129

/* Parses and checks `body` (len bytes) and builds the order.placed CloudEvent (caller owns it,
 * json_decref). `schema` is order.request. payment.method must name one of `channels` (400
 * unknown_payment_method otherwise: an accepted order is never dead-lettered for its method);
 * without one the event carries channels' default method. channels NULL: any well-formed method,
 * default "card" (tests). The event carries no payment token, which every
 * consumer of order.placed would receive: it goes to payment_token (when not NULL), for the
 * caller to record where the payment step reads it. On error returns OP_ERR_PERMANENT with *err
 * filled. */
op_status order_request_build(const char *body, size_t len, const jsonschema *schema,
                              const payment_channels *channels, const char *client_id, const char *idempotency_key,
                              const char *traceparent, const char *source, json_t **event,
                              char order_id[UUID_STR_LEN],
                              char payment_token[ORDER_REQUEST_TOKEN_SIZE],
                              order_request_error *err);

/* Fills *err; code, field (may be NULL) and message are cut on a character boundary and what is
 * not UTF-8 becomes '?', so the error body can always be built from it. */
void order_request_error_set(order_request_error *err, int status, const char *code,
                             const char *field, const char *message);

/* order_request_error_set with a printf-style message; returns OP_ERR_PERMANENT, so a validator
 * can `return order_request_failf(...)`. */
op_status order_request_failf(order_request_error *err, int status, const char *code,
                              const char *field, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Parses body (len bytes, duplicate keys refused) and checks it against schema. OP_OK with *doc
 * (the caller's, to json_decref), or OP_ERR_PERMANENT with err set (400 invalid_json or
 * schema_violation) and *doc NULL. */
op_status order_request_parse_body(const char *body, size_t len, const jsonschema *schema,
                                   json_t **doc, order_request_error *err);

/* The answer when an error body cannot be built (out of memory): fixed, static, status 500. */
#define ORDER_REQUEST_INTERNAL_BODY \
    "{\"error\":\"internal\",\"message\":\"the server could not build its answer\"}"

/* A buffer that holds every error body (each byte of the three fields escaped as \uXXXX). */
#define ORDER_REQUEST_ERROR_BODY_MAX \
    (6 * (sizeof(((order_request_error *)0)->code) + sizeof(((order_request_error *)0)->message) + \
          sizeof(((order_request_error *)0)->field)) + 64)

/* Writes the JSON error body {"error","message","field"?} of err into out (outsize bytes,
 * ORDER_REQUEST_ERROR_BODY_MAX fits any) and returns the HTTP status to send with it. Never
 * fails: when the body cannot be built, out holds ORDER_REQUEST_INTERNAL_BODY and the status is
 * 500. Shared by the intake's replies and the fuzz target, so what is fuzzed is what is sent. */
int order_request_error_body(const order_request_error *err, char *out, size_t outsize);

/* order_request_error_set then order_request_error_body: the intake's every error answer
 * (intake_reply_error) is built by this. Returns the status to send. */
int order_request_reply_error(int status, const char *code, const char *message,
                              const char *field, char *out, size_t outsize);

/* The notify.webhook_url an order.placed event built above carries (borrowed from event), or
 * NULL: the URL the intake and the bulk enqueue check against the client's webhook hosts. */
const char *order_request_webhook_url(const json_t *event);

#endif
