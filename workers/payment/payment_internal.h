/* payment_internal: what the payment worker's modules share.
 *   payment.c           configuration, metrics, the tick, main
 *   channels.c          pay_chan_*: a provider and a circuit breaker per payment channel of
 *                       PAYMENT_CHANNELS (parsed by lib/payment_channels.h, the intake's parser)
 *   payment_charge.c    stock.reserved: charge each order through its channel
 *   payment_settle.c    applying a provider's final answer outside the charge path
 *   payment_notified.c  payment.notified: the provider's asynchronous result, exactly once
 *   payment_query.c     the tick's active queries of payments pending at their provider
 *   payment_refund.c    payment.refund_requested: void a pending charge, refund a settled one
 */
#ifndef ORDERPIPE_PAYMENT_INTERNAL_H
#define ORDERPIPE_PAYMENT_INTERNAL_H

#include "breaker.h"
#include "metrics.h"
#include "payment_channels.h"
#include "provider.h"
#include "worker.h"

typedef struct pay_chan {
    char method[PAYMENT_METHOD_SIZE];
    provider *provider; /* owned */
    breaker breaker;
} pay_chan;

typedef struct payment_ctx {
    payment_channels conf; /* owned: the channels' names and URLs, the default method */
    pay_chan *ch;          /* owned: conf.n of them once pay_chan_init succeeded */
    size_t n;              /* of ch, the ones with a provider (pay_chan_free frees those) */
    char token_retention_s[24]; /* PAYMENT_TOKEN_RETENTION in seconds, as a statement parameter */
    long pending_timeout_ms;    /* PAYMENT_PENDING_TIMEOUT */
    long query_after_ms;        /* PAYMENT_QUERY_AFTER: first query, and the base of the next */
    long query_batch;           /* payments queried per tick */
    /* Registered in start (NULL before: metrics_add ignores nothing, so callers check). */
    metrics_family *m_notifications, *m_queries, *m_timeouts, *m_late_refunds;
    metrics_family *m_breaker_open, *m_breaker_trips;
} payment_ctx;

/* channels.c. Creates a provider (kind "sim" or "http") and a breaker for each channel of
 * ctx->conf; OP_ERR_PERMANENT with err when a channel cannot have one (http without a URL).
 * pay_chan_free frees the channels and ctx->conf (also after a failed pay_chan_init). */
op_status pay_chan_init(payment_ctx *ctx, const char *kind, long timeout_ms,
                        long breaker_failures, long breaker_open_ms, char *err, size_t n);
void pay_chan_free(payment_ctx *ctx);
/* The channel of a payment method, or NULL when none is configured. */
pay_chan *pay_chan_find(payment_ctx *ctx, const char *method);
/* A charge through the channel's breaker: while it is open the charge fails transiently at once
 * without calling the provider. */
provider_result pay_chan_charge(payment_ctx *ctx, pay_chan *ch, db *d,
                                const provider_charge_req *req, char *ref, size_t refsize,
                                char *err, size_t n);
op_status pay_chan_batch_begin(payment_ctx *ctx, db *d);
op_status pay_chan_batch_end(payment_ctx *ctx, db *d);
/* Sets the breaker gauges from the breakers' state now. */
void pay_chan_publish(payment_ctx *ctx);

/* payment_settle.c: where an event goes (a message's outbox rows, or the tick's). */
typedef struct payment_emitter {
    worker *w;
    db *d;
    worker_msg *m; /* NULL outside a message */
} payment_emitter;
op_status payment_emit(const payment_emitter *e, const char *type, const char *order_id,
                       json_t *data);
/* Applies a final answer for the pending payment of order_id inside e's transaction:
 * succeeded (ref: provider reference) or failed (error: why), through payment_settle like a
 * synchronous answer, and emits what that calls for. *event gets the event emitted
 * (payment.succeeded, payment.failed, payment.refund_requested: the order was cancelled
 * meanwhile) or "" when the payment was not pending. */
op_status payment_apply_final(const payment_emitter *e, const char *order_id, bool succeeded,
                              const char *ref, const char *error, char *event, size_t eventsize);
/* Emits payment.refund_requested for the order with `reason` and marks its payment
 * refund_pending (inside e's transaction). */
op_status payment_request_refund(const payment_emitter *e, const char *order_id, long long amount,
                                 const char *reason);

/* The route handlers and the tick's parts. */
op_status payment_before_batch(worker *w, db *d, worker_msg *const *msgs, int n, void *arg);
op_status payment_on_reserved(worker_msg *const *msgs, int n, void *arg);
op_status payment_on_notified(worker_msg *m, void *arg);
op_status payment_on_refund(worker_msg *m, void *arg);
op_status payment_query_due(worker *w, db *d, payment_ctx *ctx);

#endif
