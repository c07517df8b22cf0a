/* topology: the exchanges, queues and bindings of the pipeline, in one table.
 *
 * Events go to the topic exchange BROKER_EVENTS_EXCHANGE with the event type as routing key.
 * Each consumer has its own durable quorum queue bound to the keys it needs. A transient failure
 * sends the message to `<queue>.retry.<n>` (classic queues with a fixed TTL per tier that
 * dead-letter back to `<queue>` through the default exchange); after the last tier, or at once for
 * a message that can never succeed, it goes to `<queue>.dlq` (a quorum queue), with the reason in
 * its headers.
 */
#ifndef ORDERPIPE_TOPOLOGY_H
#define ORDERPIPE_TOPOLOGY_H

#include <stddef.h>

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

/* Writes "<queue>.retry.<tier+1>" / "<queue>.dlq" into buf; returns buf. */
char *topology_retry_queue(const char *queue, int tier, char *buf, size_t size);
char *topology_dlq(const char *queue, char *buf, size_t size);

#endif
