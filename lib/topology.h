/* topology: the exchanges, queues and bindings of the pipeline, in one table, and their
 * declaration on a broker.
 *
 * Events go to the topic exchange BROKER_EVENTS_EXCHANGE with the event type as routing key.
 * Each consumer has its own durable quorum queue bound to the keys it needs. A transient failure
 * sends the message to `<queue>.retry.<n>`: a quorum queue with a fixed TTL per tier that
 * dead-letters back to `<queue>` through the default exchange, at least once. After the last
 * tier, or at once for a message that can never succeed, it goes to `<queue>.dlq` (a quorum
 * queue), with the reason in its headers. Every queue is a quorum queue, so a message waiting in
 * any of them survives the loss of a cluster node, and the topology can be declared while a
 * majority of the cluster is up.
 */
#ifndef ORDERPIPE_TOPOLOGY_H
#define ORDERPIPE_TOPOLOGY_H

#include <stddef.h>

#include "broker.h"

#define TOPOLOGY_MAX_KEYS 4
#define TOPOLOGY_RETRY_TIERS 4

typedef struct topology_queue {
    const char *name;                          /* also the consumer name in the inbox */
    const char *keys[TOPOLOGY_MAX_KEYS];       /* binding keys, NULL-terminated */
} topology_queue;

/* The work queues, NULL-name terminated. */
extern const topology_queue topology_queues[];

/* Delay of retry tier i (0-based) in milliseconds; tiers grow 1 s, 5 s, 30 s, 120 s, unless the
 * environment sets ORDERPIPE_RETRY_DELAYS ("1000,5000,30000,120000"). Every program of one
 * deployment must agree: the delays are the TTLs the retry queues are declared with. */
int topology_retry_delay_ms(int tier);

/* The queue entry for `name`, or NULL. */
const topology_queue *topology_find(const char *name);

/* Declares the exchange, every queue of topology_queues with its bindings, retry tiers and
 * dead-letter queue. Idempotent and safe from many processes at once. OP_OK, or
 * OP_ERR_TRANSIENT with the reason in broker_last_error(b) (the connection is then closed). */
op_status topology_declare(broker *b);

/* Writes "<queue>.retry.<tier+1>" / "<queue>.dlq" into buf; returns buf. */
char *topology_retry_queue(const char *queue, int tier, char *buf, size_t size);
char *topology_dlq(const char *queue, char *buf, size_t size);

#endif
