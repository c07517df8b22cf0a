/* topology: the routing table of the saga (see topology.h and DESIGN.md §1). */
#include "topology.h"

#include <stdio.h>
#include <string.h>

const topology_queue topology_queues[] = {
    {"reservation", {"order.placed", "payment.succeeded", NULL}},
    {"payment", {"stock.reserved", "payment.refund_requested", NULL}},
    {"notification", {"order.confirmed", "order.cancelled", NULL}},
    {"compensation", {"payment.failed", "order.cancel_requested", "reservation.expired", NULL}},
    {NULL, {NULL}},
};

const int topology_retry_delay_ms[TOPOLOGY_RETRY_TIERS] = {1000, 5000, 30000, 120000};

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
