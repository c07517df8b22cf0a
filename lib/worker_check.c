/* worker_check: what a delivery must be before any handler sees it.
 *
 * Owns worker_check_delivery: the CloudEvent envelope, the length bounds of its attributes, its
 * route among the worker's and its data against the schema of its type. Pure (no I/O), so the
 * fuzz target fuzz_worker_delivery and the unit tests run it as the worker does.
 */
#include <stdio.h>
#include <string.h>

#include "utf8.h"
#include "wire.h"
#include "worker_internal.h"

/* The length bounds of the envelope's attributes (in bytes) and the AMQP message id; on failure
 * fills err and returns false. Only what the parse found is checked, so run after it. */
static bool worker_check_bounds(const broker_delivery *d, const cloudevent_view *ev, char *err,
                                size_t errlen)
{
    json_t *subject = json_object_get(ev->root, "subject");
    const char *subject_text = json_is_string(subject) ? json_string_value(subject) : NULL;
    const struct {
        const char *name;
        const char *value;
        size_t max;
    } attrs[] = {
        {"id", ev->id, WORKER_MAX_EVENT_ID},
        {"source", ev->source, WORKER_MAX_SOURCE},
        {"type", ev->type, WORKER_MAX_TYPE},
        {"time", ev->time, WORKER_MAX_TIME},
        {"subject", subject_text, WORKER_MAX_SUBJECT},
        {"AMQP message-id", d->message_id, WORKER_MAX_MESSAGE_ID},
    };
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++) {
        size_t n = attrs[i].value ? strlen(attrs[i].value) : 0;
        if (n > attrs[i].max) {
            snprintf(err, errlen, "attribute '%s' is %zu bytes long, at most %zu allowed",
                     attrs[i].name, n, attrs[i].max);
            return false;
        }
    }
    if (subject && !json_is_string(subject)) {
        snprintf(err, errlen, "attribute 'subject' must be a string");
        return false;
    }
    return true;
}

const char *worker_check_delivery(const worker_route *routes, const char *queue,
                                  const jsonschema_registry *schemas, const broker_delivery *d,
                                  cloudevent_view *ev, const worker_route **route, char *err,
                                  size_t errlen)
{
    *route = NULL;
    if (cloudevent_parse_message(d->content_type, d->headers, d->body, d->len, ev, err, errlen) !=
        OP_OK)
        return WIRE_REASON_INVALID_MESSAGE;
    if (!worker_check_bounds(d, ev, err, errlen))
        return WIRE_REASON_INVALID_MESSAGE;
    /* The type, the path and the message quote the publisher's text: each is cut on a
     * character boundary so the reason stays valid UTF-8 in the dead-letter headers. */
    char type[128], msg[1024];
    utf8_copy(type, sizeof type, ev->type);
    for (const worker_route *r = routes; r->type && !*route; r++)
        if (strcmp(r->type, ev->type) == 0)
            *route = r;
    const char *reason = NULL;
    const jsonschema *schema = NULL;
    jsonschema_error je;
    if (!*route) {
        snprintf(msg, sizeof msg, "no handler for event type '%s' on queue '%.200s'", type, queue);
        reason = WIRE_REASON_UNKNOWN_TYPE;
    } else if (!(schema = jsonschema_registry_get(schemas, ev->type))) {
        snprintf(msg, sizeof msg, "no schema for event type '%s'", type);
        reason = WIRE_REASON_UNKNOWN_TYPE;
    } else if (jsonschema_validate(schema, ev->data, &je) != OP_OK) {
        snprintf(msg, sizeof msg, "data%s: %s", je.path + 1, je.message);
        reason = WIRE_REASON_SCHEMA_VIOLATION;
    }
    if (reason)
        utf8_copy(err, errlen, msg);
    return reason;
}
