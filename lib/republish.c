/* republish: a delivery copied to another queue with a confirm (see republish.h). */
#include "republish.h"

#include "mem.h"
#include "wire.h"

op_status republish_copy(broker *pub, const broker_delivery *d, const char *queue,
                         json_t *headers)
{
    broker_message m = {
        .exchange = "",
        .routing_key = queue,
        .body = d->body,
        .len = d->len,
        .message_id = d->message_id,
        .correlation_id = d->correlation_id,
        .type = d->type,
        .content_type = d->content_type,
        .headers = headers,
    };
    op_status st = broker_publish(pub, &m, NULL);
    if (st == OP_OK)
        st = broker_wait_confirms(pub, REPUBLISH_CONFIRM_MS);
    return st;
}

json_t *republish_requeue_headers(const json_t *headers)
{
    /* x-original-routing-key stays: a retry of the requeued message must route as the original. */
    static const char *const failure[] = {
        WIRE_HDR_DEAD_REASON, WIRE_HDR_DEAD_AT,         WIRE_HDR_ATTEMPTS,
        WIRE_HDR_ATTEMPT,     WIRE_HDR_ORIGINAL_QUEUE, WIRE_HDR_LAST_ERROR,
    };
    json_t *h = json_is_object(headers) ? json_deep_copy(headers) : json_object();
    if (!h)
        mem_die("requeue headers");
    for (size_t i = 0; i < sizeof failure / sizeof *failure; i++)
        json_object_del(h, failure[i]);
    json_object_set_new(h, WIRE_HDR_REPLAYED, json_integer(1));
    return h;
}
