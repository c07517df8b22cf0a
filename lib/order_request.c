/* order_request: request checks and the order.placed event (see order_request.h). */
#include "order_request.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloudevent.h"
#include "mem.h"
#include "utf8.h"

op_status order_request_failf(order_request_error *err, int status, const char *code,
                              const char *field, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    order_request_error_set(err, status, code, field, msg);
    return OP_ERR_PERMANENT;
}

op_status order_request_parse_body(const char *body, size_t len, const jsonschema *schema,
                                   json_t **doc, order_request_error *err)
{
    json_error_t je;
    *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!*doc) {
        /* jansson quotes the body near the error and cuts its text at a byte bound. */
        char text[sizeof je.text];
        utf8_copy(text, sizeof text, je.text);
        return order_request_failf(err, 400, "invalid_json", NULL,
                                   "the body is not valid JSON (UTF-8): %s at line %d column %d",
                                   text, je.line, je.column);
    }
    jsonschema_error se;
    if (jsonschema_validate(schema, *doc, &se) != OP_OK) {
        json_decref(*doc);
        *doc = NULL;
        return order_request_failf(err, 400, "schema_violation", se.path, "%s %s", se.path,
                                   se.message);
    }
    return OP_OK;
}

void order_request_error_set(order_request_error *err, int status, const char *code,
                             const char *field, const char *message)
{
    /* All three may hold client text (property names, jansson's quote of the body): cut on a
     * character boundary and replace what is not UTF-8, so the reply can always be built. */
    err->http_status = status;
    utf8_copy(err->code, sizeof err->code, code);
    utf8_copy(err->field, sizeof err->field, field);
    utf8_copy(err->message, sizeof err->message, message);
}

bool order_request_key_valid(const char *key)
{
    if (!key)
        return false;
    size_t n = strlen(key);
    if (n < 1 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)key[i] < 0x20 || (unsigned char)key[i] > 0x7e)
            return false;
    return true;
}

op_status order_request_order_id(const char *client_id, const char *key, char out[UUID_STR_LEN])
{
    if (!key)
        return uuid_v4(out);
    size_t n = strlen(client_id) + 1 + strlen(key);
    char *name = mem_alloc(n + 1);
    snprintf(name, n + 1, "%s\n%s", client_id, key);
    op_status st = uuid_v5(ORDER_REQUEST_NAMESPACE, name, n, out);
    free(name);
    return st;
}

op_status order_request_build(const char *body, size_t len, const jsonschema *schema,
                              const payment_channels *channels, const char *client_id, const char *idempotency_key,
                              const char *traceparent, const char *source, json_t **event,
                              char order_id[UUID_STR_LEN],
                              char payment_token[ORDER_REQUEST_TOKEN_SIZE],
                              order_request_error *err)
{
    *event = NULL;
    if (idempotency_key && !order_request_key_valid(idempotency_key))
        return order_request_failf(err, 400, "invalid_idempotency_key", NULL,
                                  "Idempotency-Key must be 1 to 128 printable ASCII characters");
    json_t *doc;
    op_status st = order_request_parse_body(body, len, schema, &doc, err);
    if (st != OP_OK)
        return st;
    /* The schema bounds each line (quantity <= 1000, price <= 1e8, <= 100 lines), so the total
     * fits easily; the checks stay for when the schema is loosened. A real (2.0) would read as 0
     * here: the registry's strict integers refuse it, and this refuses it again, so an order
     * answered 202 always has the total the reservation will recompute. */
    json_int_t total = 0;
    size_t i;
    json_t *line;
    json_array_foreach(json_object_get(doc, "lines"), i, line) {
        json_t *qv = json_object_get(line, "quantity"), *pv = json_object_get(line, "unit_price");
        char field[48];
        if (!json_is_integer(qv) || json_integer_value(qv) < 1 || !json_is_integer(pv) ||
            json_integer_value(pv) < 1) {
            json_decref(doc);
            snprintf(field, sizeof field, "$.lines[%zu].%s", i,
                     json_is_integer(qv) && json_integer_value(qv) >= 1 ? "unit_price" : "quantity");
            return order_request_failf(err, 400, "schema_violation", field,
                                      "%s must be a positive integer", field);
        }
        json_int_t q = json_integer_value(qv), p = json_integer_value(pv);
        if (q > (INT64_MAX - total) / p) {
            json_decref(doc);
            return order_request_failf(err, 400, "total_too_large", "$.lines", "the order total overflows");
        }
        total += q * p;
    }
    const char *method =
        json_string_value(json_object_get(json_object_get(doc, "payment"), "method"));
    if (method && channels && !payment_channels_find(channels, method)) {
        /* method is doc's: quoted before doc goes */
        order_request_failf(err, 400, "unknown_payment_method", "$.payment.method",
                           "payment.method '%s' is not a payment channel of this service", method);
        json_decref(doc);
        return OP_ERR_PERMANENT;
    }
    if (!method)
        method = channels ? channels->default_method : "card";
    if (order_request_order_id(client_id, idempotency_key, order_id) != OP_OK) {
        json_decref(doc);
        return order_request_failf(err, 500, "internal", NULL, "cannot make an order id");
    }
    char now[32];
    cloudevent_time_now(now);
    json_t *notify = json_object_get(doc, "notify");
    const char *token = json_string_value(json_object_get(json_object_get(doc, "payment"), "token"));
    if (payment_token)
        snprintf(payment_token, ORDER_REQUEST_TOKEN_SIZE, "%s", token ? token : "");
    json_t *data = json_pack("{ss ss sO sO sI sO ss ss}", "order_id", order_id, "client_id",
                             client_id, "customer_id", json_object_get(doc, "customer_id"),
                             "currency", json_object_get(doc, "currency"), "total", total, "lines",
                             json_object_get(doc, "lines"), "placed_at", now, "payment_method",
                             method);
    if (!data || json_object_set_new(data, "notify", notify ? json_incref(notify) : json_object()) ||
        (idempotency_key &&
         json_object_set_new(data, "idempotency_key", json_string(idempotency_key)))) {
        json_decref(data);
        json_decref(doc);
        return order_request_failf(err, 500, "internal", NULL, "cannot build the event");
    }
    json_decref(doc);
    char tp[56];
    cloudevent_traceparent(traceparent, tp);
    json_t *ev = cloudevent_new("order.placed", source, order_id, data, tp);
    if (!ev)
        return order_request_failf(err, 500, "internal", NULL, "cannot build the event");
    if (idempotency_key) {
        char eid[UUID_STR_LEN], name[64];
        snprintf(name, sizeof name, "%s/order.placed", order_id);
        if (uuid_v5(ORDER_REQUEST_NAMESPACE, name, strlen(name), eid) != OP_OK ||
            json_object_set_new(ev, "id", json_string(eid)) != 0) {
            json_decref(ev);
            return order_request_failf(err, 500, "internal", NULL, "cannot build the event id");
        }
    }
    *event = ev;
    return OP_OK;
}

int order_request_reply_error(int status, const char *code, const char *message,
                              const char *field, char *out, size_t outsize)
{
    order_request_error err;
    order_request_error_set(&err, status, code, field, message);
    return order_request_error_body(&err, out, outsize);
}

int order_request_error_body(const order_request_error *err, char *out, size_t outsize)
{
    /* Copies, in case err was filled by hand rather than through order_request_error_set. */
    char code[sizeof err->code], message[sizeof err->message], field[sizeof err->field];
    utf8_copy(code, sizeof code, err->code);
    utf8_copy(message, sizeof message, err->message);
    utf8_copy(field, sizeof field, err->field);
    json_t *j = json_object();
    bool ok = j && json_object_set_new(j, "error", json_string(code)) == 0 &&
              json_object_set_new(j, "message", json_string(message)) == 0 &&
              (!field[0] || json_object_set_new(j, "field", json_string(field)) == 0);
    size_t n = ok ? json_dumpb(j, out, outsize, JSON_COMPACT | JSON_PRESERVE_ORDER) : 0;
    json_decref(j);
    if (n == 0 || n >= outsize) {
        /* Out of memory (the buffer always fits the largest body): the fixed answer. */
        snprintf(out, outsize, "%s", ORDER_REQUEST_INTERNAL_BODY);
        return 500;
    }
    out[n] = '\0';
    return err->http_status;
}

const char *order_request_webhook_url(const json_t *event)
{
    json_t *notify = json_object_get(json_object_get(event, "data"), "notify");
    return json_string_value(json_object_get(notify, "webhook_url"));
}
