/* topology: the routing table of the saga and its declaration (see topology.h and
 * docs/design.md §1). */
#include "topology.h"

#include <assert.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const topology_queue topology_queues[] = {
    {"reservation", {"order.placed", "payment.succeeded", NULL}},
    {"payment", {"stock.reserved", "payment.refund_requested", "payment.notified", NULL}},
    {"notification", {"order.confirmed", "order.cancelled", NULL}},
    {"compensation", {"payment.failed", "order.cancel_requested", "reservation.expired", NULL}},
    {NULL, {NULL}},
};

static const int topology_default_delay_ms[TOPOLOGY_RETRY_TIERS] = {1000, 5000, 30000, 120000};

int topology_retry_delay_ms(int tier)
{
    assert(tier >= 0 && tier < TOPOLOGY_RETRY_TIERS);
    /* Read once: the delays are a property of the deployment's queues, not of one message. */
    static int delays[TOPOLOGY_RETRY_TIERS];
    static bool loaded;
    if (!loaded) {
        memcpy(delays, topology_default_delay_ms, sizeof delays);
        const char *spec = getenv("ORDERPIPE_RETRY_DELAYS");
        int parsed[TOPOLOGY_RETRY_TIERS], n = 0;
        for (const char *p = spec; p && *p && n < TOPOLOGY_RETRY_TIERS; n++) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p || v < 1 || v > 86400000 || (*end && *end != ','))
                break;
            parsed[n] = (int)v;
            p = *end ? end + 1 : end;
        }
        if (n == TOPOLOGY_RETRY_TIERS)
            memcpy(delays, parsed, sizeof delays);
        else if (spec && *spec)
            fprintf(stderr, "ORDERPIPE_RETRY_DELAYS must be %d comma-separated milliseconds; "
                            "using the defaults\n", TOPOLOGY_RETRY_TIERS);
        loaded = true;
    }
    return delays[tier];
}

/* ORDERPIPE_SHARDS, parsed once: like the retry delays it describes the deployment's queues. */
#define TOPOLOGY_MAX_QUEUES 16
static struct {
    bool loaded;
    const char *error; /* NULL when the spec is valid */
    int shards[TOPOLOGY_MAX_QUEUES];
} topology_shard_spec;

static void topology_load_shards(void)
{
    if (topology_shard_spec.loaded)
        return;
    topology_shard_spec.loaded = true;
    const char *spec = getenv("ORDERPIPE_SHARDS");
    for (const char *p = spec; p && *p;) {
        size_t len = strcspn(p, "=,");
        const topology_queue *q = NULL;
        for (const topology_queue *c = topology_queues; c->name && !q; c++)
            if (strlen(c->name) == len && strncmp(c->name, p, len) == 0)
                q = c;
        if (!q || p[len] != '=') {
            topology_shard_spec.error = "names a queue that is not a work queue";
            break;
        }
        assert(q - topology_queues < TOPOLOGY_MAX_QUEUES);
        int *slot = &topology_shard_spec.shards[q - topology_queues];
        char *end;
        long n = strtol(p + len + 1, &end, 10);
        if (end == p + len + 1 || n < 1 || n > TOPOLOGY_MAX_SHARDS || (*end && *end != ',')) {
            topology_shard_spec.error = "gives a shard count outside 1..64";
            break;
        }
        if (*slot) {
            topology_shard_spec.error = "names a queue twice";
            break;
        }
        *slot = (int)n;
        p = *end ? end + 1 : end;
    }
    if (topology_shard_spec.error)
        memset(topology_shard_spec.shards, 0, sizeof topology_shard_spec.shards);
}

op_status topology_check_shards(void)
{
    topology_load_shards();
    if (!topology_shard_spec.error)
        return OP_OK;
    fprintf(stderr, "ORDERPIPE_SHARDS '%s' %s (want e.g. \"notification=4,reservation=4\")\n",
            getenv("ORDERPIPE_SHARDS"), topology_shard_spec.error);
    return OP_ERR_PERMANENT;
}

int topology_shards(const char *queue)
{
    topology_load_shards();
    const topology_queue *q = topology_find(queue);
    return q ? topology_shard_spec.shards[q - topology_queues] : 0;
}

char *topology_consume_queue(const char *queue, int shard, char *buf, size_t size)
{
    if (topology_shards(queue) > 0)
        snprintf(buf, size, "%s.shard.%d", queue, shard);
    else
        snprintf(buf, size, "%s", queue);
    return buf;
}

/* The consistent-hash exchange in front of a sharded queue's shards. */
static char *topology_shard_exchange(const char *queue, char *buf, size_t size)
{
    snprintf(buf, size, "orderpipe.%s.shards", queue);
    return buf;
}

long topology_queue_depth(broker *b, const char *queue)
{
    int shards = topology_shards(queue);
    if (shards == 0)
        return broker_queue_depth(b, queue);
    long total = 0;
    char name[128];
    for (int i = 0; i < shards && total >= 0; i++) {
        long n = broker_queue_depth(b, topology_consume_queue(queue, i, name, sizeof name));
        total = n < 0 ? -1 : total + n;
    }
    return total;
}

const topology_queue *topology_find(const char *name)
{
    for (const topology_queue *q = topology_queues; q->name; q++)
        if (strcmp(q->name, name) == 0)
            return q;
    return NULL;
}

char *topology_retry_queue(const char *queue, int tier, char *buf, size_t size)
{
    snprintf(buf, size, "%s.retry.%d", queue, tier + 1);
    return buf;
}

char *topology_dlq(const char *queue, char *buf, size_t size)
{
    snprintf(buf, size, "%s.dlq", queue);
    return buf;
}

/* A consumed queue's retry tiers. A tier waits out its TTL, then dead-letters straight back to
 * the queue through the default exchange, so a retry reaches only the consumer that failed (and,
 * for a shard, the shard that holds its order's other events). Dead-lettering at least once
 * means a retry is never dropped on its way back, which RabbitMQ offers for quorum queues only. */
static op_status topology_declare_retry_tiers(broker *b, const char *queue)
{
    char name[128];
    op_status st = OP_OK;
    for (int tier = 0; tier < TOPOLOGY_RETRY_TIERS && st == OP_OK; tier++) {
        broker_queue_spec retry = {
            .name = topology_retry_queue(queue, tier, name, sizeof name),
            .quorum = true,
            .message_ttl_ms = topology_retry_delay_ms(tier),
            .dead_letter_exchange = "",
            .dead_letter_routing_key = queue,
            .dead_letter_at_least_once = true,
        };
        st = broker_declare_queue(b, &retry);
    }
    return st;
}

/* A sharded work queue: the topic exchange routes its keys to the consistent-hash exchange,
 * which spreads them over the shards. The work queue itself stays declared but unbound, so
 * messages left in it from before the sharding stay visible to scripts/pipeline status and
 * scripts/check-invariants. */
static op_status topology_declare_shards(broker *b, const topology_queue *q, int shards)
{
    char exchange[128], name[128];
    topology_shard_exchange(q->name, exchange, sizeof exchange);
    op_status st = broker_declare_hash_exchange(b, exchange, TOPOLOGY_SHARD_PROPERTY);
    for (int i = 0; i < shards && st == OP_OK; i++) {
        topology_consume_queue(q->name, i, name, sizeof name);
        st = broker_declare_queue(b, &(broker_queue_spec){
            .name = name, .quorum = true, .single_active_consumer = true});
        /* Equal weights: the plugin's jump hash spreads orders evenly over equal buckets. */
        if (st == OP_OK)
            st = broker_bind_queue(b, name, exchange, "1");
        if (st == OP_OK)
            st = topology_declare_retry_tiers(b, name);
    }
    for (int k = 0; k < TOPOLOGY_MAX_KEYS && q->keys[k] && st == OP_OK; k++) {
        st = broker_bind_exchange(b, exchange, BROKER_EVENTS_EXCHANGE, q->keys[k]);
        if (st == OP_OK)
            st = broker_unbind_queue(b, q->name, BROKER_EVENTS_EXCHANGE, q->keys[k]);
    }
    return st;
}

/* An unsharded work queue bound to its keys. Deleting a consistent-hash exchange left from a
 * sharded configuration stops it from delivering a second copy of each event to the shards. */
static op_status topology_declare_unsharded(broker *b, const topology_queue *q)
{
    char exchange[128];
    op_status st = broker_delete_exchange(b, topology_shard_exchange(q->name, exchange,
                                                                     sizeof exchange));
    for (int k = 0; k < TOPOLOGY_MAX_KEYS && q->keys[k] && st == OP_OK; k++)
        st = broker_bind_queue(b, q->name, BROKER_EVENTS_EXCHANGE, q->keys[k]);
    if (st == OP_OK)
        st = topology_declare_retry_tiers(b, q->name);
    return st;
}

op_status topology_declare(broker *b)
{
    if (topology_check_shards() != OP_OK)
        return OP_ERR_PERMANENT;
    op_status st = broker_declare_exchange(b, BROKER_EVENTS_EXCHANGE, "topic");
    for (const topology_queue *q = topology_queues; q->name && st == OP_OK; q++) {
        char dlq[128];
        int shards = topology_shards(q->name);
        st = broker_declare_queue(b, &(broker_queue_spec){.name = q->name, .quorum = true});
        if (st == OP_OK)
            st = shards > 0 ? topology_declare_shards(b, q, shards)
                            : topology_declare_unsharded(b, q);
        if (st == OP_OK)
            st = broker_declare_queue(b, &(broker_queue_spec){
                .name = topology_dlq(q->name, dlq, sizeof dlq), .quorum = true});
    }
    return st;
}
