/* worker_failure: where a delivery goes when it was not handled, and getting it there.
 *
 * Owns the failure policy: a transient failure retries through `<queue>.retry.N` (tier N for
 * attempt N, each a longer delay), a permanent one or one past the last tier goes to
 * `<queue>.dlq` with why in its headers. The decision (worker_failure_fate) and the headers are
 * pure; worker_failure_route republishes with a confirm before acking, and gives a delivery it
 * could not route back to its queue rather than lose it or hold it.
 */
#include <string.h>
#include <unistd.h>

#include "mem.h"
#include "republish.h"
#include "topology.h"
#include "utf8.h"
#include "wire.h"
#include "worker_internal.h"

/* Anyone can publish, so a header out of range is clamped: below 1 it would name a retry tier
 * that does not exist, and the message could be neither retried nor dead-lettered. */
int worker_attempt(const broker_delivery *d)
{
    json_t *v = json_object_get(d->headers, WIRE_HDR_ATTEMPT);
    if (!json_is_integer(v) || json_integer_value(v) < 1)
        return 1;
    json_int_t a = json_integer_value(v);
    return a > TOPOLOGY_RETRY_TIERS + 1 ? TOPOLOGY_RETRY_TIERS + 1 : (int)a;
}

/* The routing key the message was first published with: a retry arrives through the default
 * exchange under its queue's name. */
static const char *worker_original_key(const broker_delivery *d)
{
    json_t *v = json_object_get(d->headers, WIRE_HDR_ORIGINAL_ROUTING_KEY);
    return json_is_string(v) ? json_string_value(v) : d->routing_key;
}

json_t *worker_failure_headers(const broker_delivery *d, const char *error)
{
    json_t *h = json_deep_copy(d->headers);
    if (!h)
        h = json_object();
    if (!h)
        mem_die("failure headers");
    /* Header strings are the publisher's bytes (broker.c keeps them unchecked), and so is the
     * routing key: carried over as bytes, since a retry must route exactly as the original. */
    const char *key = worker_original_key(d);
    json_object_set_new(h, WIRE_HDR_ORIGINAL_ROUTING_KEY, json_stringn_nocheck(key, strlen(key)));
    char cut[512];
    utf8_copy(cut, sizeof cut, error);
    json_object_set_new(h, WIRE_HDR_LAST_ERROR, json_string(cut));
    return h;
}

worker_fate worker_failure_fate(op_status st, int attempt, const char *refused_reason)
{
    if (st == OP_OK || st == OP_DUPLICATE)
        return (worker_fate){.kind = WORKER_FATE_ACK};
    if (st == OP_ERR_PERMANENT)
        return (worker_fate){.kind = WORKER_FATE_DEAD_LETTER,
                             .reason = refused_reason ? refused_reason
                                                      : WIRE_REASON_HANDLER_REFUSED};
    if (attempt > TOPOLOGY_RETRY_TIERS)
        return (worker_fate){.kind = WORKER_FATE_DEAD_LETTER,
                             .reason = WIRE_REASON_RETRIES_EXHAUSTED};
    if (attempt < 1)
        attempt = 1;
    return (worker_fate){.kind = WORKER_FATE_RETRY, .tier = attempt - 1,
                         .next_attempt = attempt + 1};
}

json_t *worker_failure_fate_headers(const broker_delivery *d, const worker_fate *fate,
                                    const char *error, int attempt, const char *queue,
                                    const char *dead_at)
{
    json_t *h = worker_failure_headers(d, error);
    if (fate->kind == WORKER_FATE_RETRY) {
        json_object_set_new(h, WIRE_HDR_ATTEMPT, json_integer(fate->next_attempt));
    } else {
        json_object_set_new(h, WIRE_HDR_DEAD_REASON, json_string(fate->reason));
        json_object_set_new(h, WIRE_HDR_ATTEMPTS, json_integer(attempt));
        json_object_set_new(h, WIRE_HDR_ORIGINAL_QUEUE, json_string(queue));
        json_object_set_new(h, WIRE_HDR_DEAD_AT, json_string(dead_at));
    }
    return h;
}

op_status worker_failure_route(worker *w, const broker_delivery *d, const worker_fate *fate,
                               const char *error, int attempt, const log_ctx *lc)
{
    bool retry = fate->kind == WORKER_FATE_RETRY;
    char target[128], now[32];
    if (retry)
        topology_retry_queue(w->cfg.queue, fate->tier, target, sizeof target);
    else
        topology_dlq(w->spec->name, target, sizeof target);
    cloudevent_time_now(now);
    json_t *h = worker_failure_fate_headers(d, fate, error, attempt, w->cfg.queue, now);
    op_status st = republish_copy(w->publisher, d, target, h);
    json_decref(h);
    if (st != OP_OK) {
        /* Rather than leaving it unacked on a consumer that may stay up for days, holding a
         * slot of the prefetch window, it goes back to its queue now (keeping its attempt). */
        log_error(lc, "%s failed (%s); the message goes back to its queue",
                  retry ? "scheduling a retry" : "dead-lettering", op_status_name(st));
        broker_reject(w->consumer, d->tag, true);
        w->given_back++;
        return st;
    }
    backoff_reset(&w->route_backoff);
    if (retry) {
        log_warn(lc, "attempt %d failed, retrying through %s in %d ms: %s", attempt, target,
                 topology_retry_delay_ms(fate->tier), error);
        worker_metrics_retried(w->metrics);
    } else {
        log_warn(lc, "dead-lettered to %s: %s: %s", target, fate->reason, error);
        worker_metrics_dead_lettered(w->metrics, fate->reason);
    }
    return broker_ack(w->consumer, d->tag, false);
}

/* The route may be gone (a retry or dead-letter queue deleted while the worker runs), so the
 * topology is declared again; the pause resets once a route works (worker_failure_route). */
void worker_failure_repair_routes(worker *w)
{
    int ms = backoff_next_ms(&w->route_backoff);
    log_warn(NULL, "%d failed deliveries could not be routed and went back to their queue; "
                   "declaring the topology again and pausing %d ms", w->given_back, ms);
    w->given_back = 0;
    if (broker_is_open(w->publisher) && topology_declare(w->publisher) != OP_OK)
        log_warn(NULL, "declaring the topology failed: %s", broker_last_error(w->publisher));
    usleep((useconds_t)ms * 1000); /* SIGTERM ends it early */
}
