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
 *
 * A work queue may be sharded (ORDERPIPE_SHARDS="notification=4,..."): its keys then go to an
 * x-consistent-hash exchange `orderpipe.<queue>.shards` that hashes the correlation_id property
 * (every publisher sets it to the order id) onto N queues `<queue>.shard.<i>`, so all events of
 * one order land in one shard, in the order they were published. Each shard has a single active
 * consumer (further consumers wait to take over) and its own retry tiers, which dead-letter back
 * to that shard, so a retried event stays with its order's other events; the dead-letter queue
 * `<queue>.dlq` is shared. Every program of a deployment must agree on ORDERPIPE_SHARDS.
 */
#ifndef ORDERPIPE_TOPOLOGY_H
#define ORDERPIPE_TOPOLOGY_H

#include <stddef.h>

#include "broker.h"

#define TOPOLOGY_MAX_KEYS 4
#define TOPOLOGY_RETRY_TIERS 4
#define TOPOLOGY_MAX_SHARDS 64
/* The AMQP property a sharded queue's exchange hashes: every publisher sets it to the order id. */
#define TOPOLOGY_SHARD_PROPERTY "correlation_id"

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

/* How many shards ORDERPIPE_SHARDS gives work queue `queue`: 0 when it is not sharded. */
int topology_shards(const char *queue);

/* OP_OK when ORDERPIPE_SHARDS is empty or valid ("queue=N" pairs, comma-separated, each queue a
 * work queue at most once, N in 1..TOPOLOGY_MAX_SHARDS); otherwise writes why to stderr and
 * returns OP_ERR_PERMANENT. Programs check it at start; topology_declare refuses a bad one. */
op_status topology_check_shards(void);

/* The queue a consumer of work queue `queue` reads: `queue` itself, or "<queue>.shard.<shard>"
 * when the queue is sharded. shard is ignored for an unsharded queue. Returns buf. */
char *topology_consume_queue(const char *queue, int shard, char *buf, size_t size);

/* Ready messages in work queue `queue` (all its shards), or -1 on error. */
long topology_queue_depth(broker *b, const char *queue);

/* The queue entry for `name`, or NULL. */
const topology_queue *topology_find(const char *name);

/* Declares the exchange, every queue of topology_queues with its bindings (or its shards),
 * retry tiers and dead-letter queue. Idempotent and safe from many processes at once. OP_OK,
 * OP_ERR_TRANSIENT with the reason in broker_last_error(b) (the connection is then closed), or
 * OP_ERR_PERMANENT when ORDERPIPE_SHARDS is not valid (see topology_check_shards). */
op_status topology_declare(broker *b);

/* Writes "<queue>.retry.<tier+1>" / "<queue>.dlq" into buf; returns buf. For a sharded queue,
 * the retry tiers are the shard's ("<queue>.shard.<i>.retry.<n>": pass the shard queue) and the
 * dead-letter queue the work queue's (pass the work queue). */
char *topology_retry_queue(const char *queue, int tier, char *buf, size_t size);
char *topology_dlq(const char *queue, char *buf, size_t size);

#endif
