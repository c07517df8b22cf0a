/* cloudevent: CloudEvents 1.0 envelopes in JSON (structured mode), as every message of the pipeline.
 *
 * An event: {"specversion":"1.0","id":<uuid>,"source":<program>,"type":<routing key>,
 * "time":<RFC 3339 UTC>,"datacontenttype":"application/json","orderid":<order id>,
 * "traceparent":<W3C trace context, optional>,"data":{...}}.
 */
#ifndef ORDERPIPE_CLOUDEVENT_H
#define ORDERPIPE_CLOUDEVENT_H

#include <jansson.h>
#include <stddef.h>

#include "status.h"

/* A new event with a fresh v4 id and the current time. Steals `data`. Returns NULL only when out
 * of memory. traceparent may be NULL. The caller owns the result (json_decref). */
json_t *cloudevent_new(const char *type, const char *source, const char *order_id, json_t *data,
                  const char *traceparent);

/* A parsed, envelope-checked event; strings are borrowed from `root`, which the view owns. */
typedef struct cloudevent_view {
    json_t *root;
    const char *id;
    const char *type;
    const char *source;
    const char *time;
    const char *order_id;
    const char *traceparent; /* NULL if absent */
    json_t *data;            /* object */
} cloudevent_view;

/* Parses body and checks the envelope (specversion 1.0, required attributes, data an object).
 * OP_OK: *out filled, release with cloudevent_view_free. OP_ERR_PERMANENT: err (size errlen) says what
 * is wrong, e.g. "invalid JSON at line 1: ..." or "missing attribute 'id'". */
op_status cloudevent_parse(const char *body, size_t len, cloudevent_view *out, char *err, size_t errlen);
void cloudevent_view_free(cloudevent_view *v);

/* Writes the current UTC time as RFC 3339 with milliseconds ("2026-11-24T23:40:00.123Z"). */
void cloudevent_time_now(char out[32]);

/* A new W3C traceparent ("00-<32 hex>-<16 hex>-01"), or a child of `parent` (same trace id, new
 * span id) when parent is a valid traceparent. */
void cloudevent_traceparent(const char *parent, char out[56]);

#endif
