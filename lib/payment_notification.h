/* payment_notification: a payment channel's asynchronous result, as POSTed to the intake, turned
 * into the payment.notified event (docs/design.md §4).
 *
 * Shared by the intake and the fuzz target, so what is fuzzed is what is served: the body is
 * checked against schemas/payment.notification.json, its charge key must be one we issue (an
 * order id, a UUID), and the event's id is a name-based UUID of (channel, event_id): a channel
 * that repeats a notification publishes a message the consumer's inbox drops.
 */
#ifndef ORDERPIPE_PAYMENT_NOTIFICATION_H
#define ORDERPIPE_PAYMENT_NOTIFICATION_H

#include <jansson.h>

#include "jsonschema.h"
#include "order_request.h"
#include "status.h"
#include "uuid.h"

/* The namespace of payment.notified event ids (a fixed, random v4). */
#define PAYMENT_NOTIFICATION_NAMESPACE "8b1d2f64-3c7e-4e0a-b5d9-6f4a2c1e7d93"

/* The largest body a channel may POST. */
#define PAYMENT_NOTIFICATION_MAX_BODY 16384

/* The event id of the notification (channel, event_id): the v5 UUID of "<channel>\n<event_id>".
 * OP_OK, or OP_ERR_TRANSIENT when the hash cannot be computed. */
op_status payment_notification_event_id(const char *channel, const char *event_id,
                                        char out[UUID_STR_LEN]);

/* Parses and checks body (len bytes) of a notification of `channel` and builds the
 * payment.notified CloudEvent (caller owns it, json_decref) with `source`
 * "/intake/payment-notifications/<channel>", subject the order id (the charge key, lower case),
 * traceparent a child of `traceparent` (may be NULL) and data per schemas/payment.notified.json.
 * `schema` is payment.notification. On error OP_ERR_PERMANENT with *err filled: 400
 * invalid_json / schema_violation, 422 unknown_charge_key; 500 internal when out of memory. */
op_status payment_notification_build(const char *body, size_t len, const jsonschema *schema,
                                     const char *channel, const char *traceparent,
                                     json_t **event, char order_id[UUID_STR_LEN],
                                     order_request_error *err);

#endif
