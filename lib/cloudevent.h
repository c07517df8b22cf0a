/* cloudevent: CloudEvents 1.0 envelopes, and reading them from an AMQP message in either mode of
 * the CloudEvents AMQP protocol binding.
 *
 * The pipeline publishes every event in structured mode (content type
 * CLOUDEVENT_STRUCTURED_TYPE, the whole envelope as JSON in the body):
 * {"specversion":"1.0","id":<uuid>,"source":<program>,"type":<routing key>,
 * "time":<RFC 3339 UTC>,"subject":<order id>,"datacontenttype":"application/json",
 * "dataschema":"urn:orderpipe:schema:<type>","orderid":<order id>,
 * "traceparent":<W3C trace context, optional>,"data":{...}}.
 * Another producer may publish in binary mode: the attributes as AMQP headers named
 * "cloudEvents:<attribute>" (or "cloudEvents_<attribute>", the JMS-safe form), the content type
 * being the datacontenttype (application/json) and the body the data. Both read as the same view.
 */
#ifndef ORDERPIPE_CLOUDEVENT_H
#define ORDERPIPE_CLOUDEVENT_H

#include <jansson.h>
#include <stddef.h>

#include "status.h"

/* The media type of a structured-mode event in JSON (the AMQP content-type compares it without
 * parameters; a charset parameter, if any, must be utf-8). */
#define CLOUDEVENT_STRUCTURED_TYPE "application/cloudevents+json"
/* dataschema of an event of type T: CLOUDEVENT_SCHEMA_PREFIX T, the $id of schemas/T.json. */
#define CLOUDEVENT_SCHEMA_PREFIX "urn:orderpipe:schema:"

/* A new event with a fresh v4 id and the current time, subject and orderid the order id, and
 * dataschema naming the type's schema. Steals `data`. Returns NULL only when out
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
    const char *order_id;    /* the orderid extension, else the subject */
    const char *traceparent; /* NULL if absent */
    json_t *data;            /* object */
} cloudevent_view;

/* Parses body and checks the envelope (specversion 1.0, required attributes, data an object).
 * OP_OK: *out filled, release with cloudevent_view_free. OP_ERR_PERMANENT: err (size errlen) says what
 * is wrong, e.g. "invalid JSON at line 1: ..." or "missing attribute 'id'". */
op_status cloudevent_parse(const char *body, size_t len, cloudevent_view *out, char *err, size_t errlen);

/* Reads the event of an AMQP message by its content type (NULL: none), as the AMQP binding does:
 * structured mode (CLOUDEVENT_STRUCTURED_TYPE) parses the body as cloudevent_parse does; binary
 * mode (application/json, with the attributes in `headers`, a flat JSON object of the message's
 * headers, borrowed) makes the same envelope from the headers and the body as data. Any other
 * content type, a binary message without its attributes, or a bad envelope: OP_ERR_PERMANENT
 * with err saying why, e.g. "unsupported content type 'text/plain'". */
op_status cloudevent_parse_message(const char *content_type, json_t *headers, const char *body,
                                   size_t len, cloudevent_view *out, char *err, size_t errlen);
void cloudevent_view_free(cloudevent_view *v);

/* Writes the current UTC time as RFC 3339 with milliseconds ("2026-11-24T23:40:00.123Z"). */
void cloudevent_time_now(char out[32]);

/* A new W3C traceparent ("00-<32 hex>-<16 hex>-01"), or a child of `parent` (same trace id, new
 * span id) when parent is a valid traceparent. */
void cloudevent_traceparent(const char *parent, char out[56]);

#endif
