/* orderpipe-payment: charges reserved orders through their payment channel, exactly once per
 * order; applies the provider's later result of a pending charge (its notification, or an active
 * query); voids or refunds on request.
 *
 * The modules are listed in payment_internal.h. It charges the total the reservation recorded
 * (computed from the lines), never an amount an event states, and refunds only cancelled
 * orders. The payment token is the one the producer recorded in payment_tokens (no
 * event carries it, so no other consumer receives it), and it is kept no longer than a charge
 * may need it: the tick deletes the tokens of orders past payment (paid, confirmed, cancelled)
 * and, after PAYMENT_TOKEN_RETENTION, of orders never recorded (an order.placed that was not
 * published, or dead-lettered and never replayed).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "payment_internal.h"

/* Outside any batch: deletes the tokens no charge will need again, a bounded number at a time so
 * the statement stays short however many accumulated. */
static op_status payment_forget_tokens(worker *w, db *d, void *arg)
{
    payment_ctx *ctx = arg;
    const char *params[] = {ctx->token_retention_s};
    long rows = 0;
    op_status st = db_exec_prepared_count(
        d, "payment_forget_tokens",
        "delete from payment_tokens where order_id in (select t.order_id from payment_tokens t "
        "left join orders o on o.id = t.order_id "
        "where o.status in ('paid', 'confirmed', 'cancelled') or (o.id is null and "
        "t.created_at < now() - make_interval(secs => $1::int)) limit 1000)",
        1, params, &rows);
    if (st == OP_OK && rows > 0)
        log_debug(NULL, "%s: forgot %ld payment tokens", worker_name(w), rows);
    return st;
}

static void payment_free_state(void *state) { free(state); }

/* Between batches: the breakers' gauges, the due queries, the tokens no charge needs. */
static op_status payment_tick(worker *w, db *d, void *arg)
{
    payment_ctx *ctx = arg;
    pay_chan_publish(ctx);
    op_status st = payment_query_due(w, d, ctx);
    if (st == OP_OK)
        st = payment_forget_tokens(w, d, arg);
    return st;
}

/* Registers the payment metrics once connected (the registry exists by then). */
static op_status payment_start(worker *w, db *d, void *arg)
{
    (void)d;
    payment_ctx *ctx = arg;
    metrics_registry *r = worker_registry(w);
    if (!r)
        return OP_OK;
    ctx->m_notifications = metrics_counter(
        r, "orderpipe_payment_notifications_total",
        "Provider payment notifications consumed, by outcome: applied, duplicate, mismatch, "
        "already_final, unknown_order, late_refunded.", "outcome");
    ctx->m_queries = metrics_counter(
        r, "orderpipe_payment_queries_total",
        "Active queries of payments pending at their provider, by result: succeeded, failed, "
        "pending, error, mismatch, settled (settled meanwhile).", "result");
    ctx->m_timeouts = metrics_counter(r, "orderpipe_payment_timeouts_total",
                                      "Pending payments that timed out and were voided (or "
                                      "refunded when the void came too late).", NULL);
    ctx->m_late_refunds = metrics_counter(r, "orderpipe_payment_late_refunds_total",
                                          "late payment refunded: successes that arrived after "
                                          "their order was cancelled.", NULL);
    ctx->m_breaker_open = metrics_gauge(r, "orderpipe_payment_breaker_open",
                                        "1 while a payment channel's circuit breaker is open.",
                                        "channel");
    ctx->m_breaker_trips = metrics_counter(r, "orderpipe_payment_breaker_trips_total",
                                           "Times a payment channel's circuit breaker opened.",
                                           "channel");
    for (size_t i = 0; i < ctx->n; i++) /* every channel's series from the start, at 0 */
        metrics_add(ctx->m_breaker_trips, (const char *[]){ctx->ch[i].method}, 0);
    pay_chan_publish(ctx);
    return OP_OK;
}

static const worker_route payment_routes[] = {
    {.type = "stock.reserved", .handle_set = payment_on_reserved},
    {.type = "payment.refund_requested", .handle_raw = payment_on_refund},
    {.type = "payment.notified", .handle_raw = payment_on_notified},
    {.type = NULL},
};

/* A duration setting of at least min_ms, or -1 (said on stderr). */
static long payment_env_duration(const char *name, const char *dflt, long min_ms)
{
    long ms;
    if (config_parse_duration_ms(config_env_str(name, dflt), &ms) != OP_OK || ms < min_ms) {
        fprintf(stderr, "%s must be a duration of %ldms or more\n", name, min_ms);
        return -1;
    }
    return ms;
}

int main(int argc, char **argv)
{
    static payment_ctx ctx;
    long timeout_ms, token_retention_ms, breaker_failures, breaker_open_ms;
    if (config_env_long("PAYMENT_TIMEOUT_MS", 5000, 10, 600000, &timeout_ms) != OP_OK ||
        config_env_long("PAYMENT_BREAKER_FAILURES", 5, 1, 100000, &breaker_failures) != OP_OK ||
        config_env_long("PAYMENT_QUERY_BATCH", 100, 1, 10000, &ctx.query_batch) != OP_OK)
        return 2;
    if ((token_retention_ms = payment_env_duration("PAYMENT_TOKEN_RETENTION", "7d", 1000)) < 0 ||
        (ctx.pending_timeout_ms = payment_env_duration("PAYMENT_PENDING_TIMEOUT", "15m", 1000)) < 0 ||
        (ctx.query_after_ms = payment_env_duration("PAYMENT_QUERY_AFTER", "10s", 100)) < 0 ||
        (breaker_open_ms = payment_env_duration("PAYMENT_BREAKER_OPEN", "30s", 100)) < 0)
        return 2;
    if (ctx.query_after_ms > 86400000)
        ctx.query_after_ms = 86400000; /* the backoff's base is an int of milliseconds */
    snprintf(ctx.token_retention_s, sizeof ctx.token_retention_s, "%ld", token_retention_ms / 1000);
    char err[256];
    const char *kind = config_env_str("PAYMENT_PROVIDER", "sim");
    if (payment_channels_from_env(&ctx.conf, false, err, sizeof err) != OP_OK ||
        pay_chan_init(&ctx, kind, timeout_ms, breaker_failures, breaker_open_ms, err,
                      sizeof err) != OP_OK) {
        fprintf(stderr, "%s\n", err);
        pay_chan_free(&ctx);
        return 2;
    }
    worker_spec spec = {
        .name = "payment",
        .program = "orderpipe-payment",
        .summary = "Charges reserved orders exactly once through their payment channel; applies "
                   "pending results; voids and refunds on request.",
        .routes = payment_routes,
        .arg = &ctx,
        .before_batch = payment_before_batch,
        .free_state = payment_free_state,
        .tick = payment_tick,
        .tick_ms = 1000,
        .start = payment_start,
        .help_extra = "  PAYMENT_PROVIDER      sim (default) or http\n"
                      "  PAYMENT_CHANNELS      method=URL,... one provider per payment method\n"
                      "  PAYMENT_URL           the provider's URL when PAYMENT_CHANNELS is unset\n"
                      "  PAYMENT_DEFAULT_METHOD  the method of an order naming none (first channel,\n"
                      "                        or card)\n"
                      "  PAYMENT_TIMEOUT_MS    provider call timeout (5000)\n"
                      "  PAYMENT_PENDING_TIMEOUT  how long a charge may stay pending at the provider\n"
                      "                        before the order is cancelled (15m)\n"
                      "  PAYMENT_QUERY_AFTER   first query of a pending charge; the next ones wait\n"
                      "                        twice as long each time (10s)\n"
                      "  PAYMENT_QUERY_BATCH   pending payments queried per tick (100)\n"
                      "  PAYMENT_BREAKER_FAILURES  consecutive transient failures that open a\n"
                      "                        channel's circuit breaker (5)\n"
                      "  PAYMENT_BREAKER_OPEN  how long it stays open (30s)\n"
                      "  PAYMENT_TOKEN_RETENTION  how long the token of an order never recorded is\n"
                      "                        kept (7d); tokens of orders past payment go at once\n",
    };
    int rc = worker_main(&spec, argc, argv);
    pay_chan_free(&ctx);
    return rc;
}
