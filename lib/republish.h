/* republish: sending a copy of a received delivery to another queue, confirmed.
 *
 * A worker routes a failed delivery to a retry tier or its DLQ, and the replay tool moves a dead
 * letter back to its work queue, the same way: the body and properties unchanged (the message id
 * is what the consumer's inbox recognises), new headers, through the default exchange straight
 * to the queue, and the broker's confirm awaited so the original may be acked without a window
 * in which the message exists nowhere.
 */
#ifndef ORDERPIPE_REPUBLISH_H
#define ORDERPIPE_REPUBLISH_H

#include <jansson.h>

#include "broker.h"
#include "status.h"

/* How long a republish waits for the broker's confirm. */
#define REPUBLISH_CONFIRM_MS 10000

/* Publishes a copy of d (body, message id, correlation id, type) to `queue` with `headers`
 * (borrowed) on pub (a confirming broker) and waits for its confirm. OP_OK once confirmed; else
 * broker_publish's or broker_wait_confirms's status, and d must not be acked. */
op_status republish_copy(broker *pub, const broker_delivery *d, const char *queue,
                         json_t *headers);

/* The headers a dead letter goes back to work with: a copy of `headers` without the failure
 * headers (wire.h: attempt, error, dead-letter fields), so it starts again at attempt 1, marked
 * x-replayed. The caller owns the result. */
json_t *republish_requeue_headers(const json_t *headers);

#endif
