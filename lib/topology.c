/* topology: the routing table of the saga (see topology.h and docs/design.md §1). */
#include "topology.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const topology_queue topology_queues[] = {
    {"reservation", {"order.placed", "payment.succeeded", NULL}},
    {"payment", {"stock.reserved", "payment.refund_requested", NULL}},
    {"notification", {"order.confirmed", "order.cancelled", NULL}},
    {"compensation", {"payment.failed", "order.cancel_requested", "reservation.expired", NULL}},
    {NULL, {NULL}},
};

static const int topology_default_delay_ms[TOPOLOGY_RETRY_TIERS] = {1000, 5000, 30000, 120000};

int topology_retry_delay_ms(int tier)
{
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
