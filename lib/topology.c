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

/* A work queue's retry tiers and dead-letter queue. A tier waits out its TTL, then dead-letters
 * straight back to the work queue through the default exchange, so a retry reaches only the
 * consumer that failed. Dead-lettering at least once means a retry is never dropped on its way
 * back, which RabbitMQ offers for quorum queues only. */
static op_status topology_declare_failure_queues(broker *b, const char *queue)
{
    char name[128];
    for (int tier = 0; tier < TOPOLOGY_RETRY_TIERS; tier++) {
        broker_queue_spec retry = {
            .name = topology_retry_queue(queue, tier, name, sizeof name),
            .quorum = true,
            .message_ttl_ms = topology_retry_delay_ms(tier),
            .dead_letter_exchange = "",
            .dead_letter_routing_key = queue,
            .dead_letter_at_least_once = true,
        };
        op_status st = broker_declare_queue(b, &retry);
        if (st != OP_OK)
            return st;
    }
    broker_queue_spec dlq = {.name = topology_dlq(queue, name, sizeof name), .quorum = true};
    return broker_declare_queue(b, &dlq);
}

op_status topology_declare(broker *b)
{
    op_status st = broker_declare_exchange(b, BROKER_EVENTS_EXCHANGE, "topic");
    for (const topology_queue *q = topology_queues; q->name && st == OP_OK; q++) {
        st = broker_declare_queue(b, &(broker_queue_spec){.name = q->name, .quorum = true});
        for (int k = 0; k < TOPOLOGY_MAX_KEYS && q->keys[k] && st == OP_OK; k++)
            st = broker_bind_queue(b, q->name, BROKER_EVENTS_EXCHANGE, q->keys[k]);
        if (st == OP_OK)
            st = topology_declare_failure_queues(b, q->name);
    }
    return st;
}
