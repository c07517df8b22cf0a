/* payment_notification: a notification's body -> payment.notified (see the header). */
#include "payment_notification.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloudevent.h"
#include "mem.h"

op_status payment_notification_event_id(const char *channel, const char *event_id,
                                        char out[UUID_STR_LEN])
{
    size_t n = strlen(channel) + 1 + strlen(event_id);
    char *name = mem_alloc(n + 1);
    snprintf(name, n + 1, "%s\n%s", channel, event_id);
    op_status st = uuid_v5(PAYMENT_NOTIFICATION_NAMESPACE, name, n, out);
    free(name);
    return st == OP_OK ? OP_OK : OP_ERR_TRANSIENT;
}

op_status payment_notification_build(const char *body, size_t len, const jsonschema *schema,
                                     const char *channel, const char *traceparent,
                                     json_t **event, char order_id[UUID_STR_LEN],
                                     order_request_error *err)
{
    *event = NULL;
    json_t *doc;
    op_status st = order_request_parse_body(body, len, schema, &doc, err);
    if (st != OP_OK)
        return st;
    const char *key = json_string_value(json_object_get(doc, "charge_key"));
    if (!uuid_valid(key)) {
        json_decref(doc);
        return order_request_failf(err, 422, "unknown_charge_key", "$.charge_key",
                                          "no payment has this charge key: ours are order ids "
                                          "(UUIDs)");
    }
    for (size_t i = 0; i < UUID_STR_LEN; i++)
        order_id[i] = (char)tolower((unsigned char)key[i]);
    const char *event_id = json_string_value(json_object_get(doc, "event_id"));
    char id[UUID_STR_LEN];
    if (payment_notification_event_id(channel, event_id, id) != OP_OK) {
        json_decref(doc);
        return order_request_failf(err, 500, "internal", NULL, "cannot make the event id");
    }
    /* data is the notification as sent, plus whom it concerns and where it came from. */
    json_t *data = json_deep_copy(doc);
    json_decref(doc);
    if (!data || json_object_set_new(data, "order_id", json_string(order_id)) != 0 ||
        json_object_set_new(data, "channel", json_string(channel)) != 0) {
        json_decref(data);
        return order_request_failf(err, 500, "internal", NULL, "cannot build the event");
    }
    char source[64], tp[56];
    snprintf(source, sizeof source, "/intake/payment-notifications/%s", channel);
    cloudevent_traceparent(traceparent, tp);
    json_t *ev = cloudevent_new("payment.notified", source, order_id, data, tp);
    if (!ev || json_object_set_new(ev, "id", json_string(id)) != 0) {
        json_decref(ev);
        return order_request_failf(err, 500, "internal", NULL, "cannot build the event");
    }
    *event = ev;
    return OP_OK;
}
