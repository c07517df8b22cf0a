/* channels (pay_chan_*): the payment worker's channels, one provider and one circuit breaker per
 * payment method (PAYMENT_CHANNELS, parsed by lib/payment_channels.h). A channel whose provider keeps failing
 * transiently opens its breaker: its charges then go straight to the retry tiers for
 * PAYMENT_BREAKER_OPEN instead of waiting on a provider that is down, and one probe charge
 * after that tells whether it is back. The in-process sim provider cannot be down (its
 * transient answers are a token's, tok_flaky): its channels' breakers stay closed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "mem.h"
#include "payment_internal.h"

op_status pay_chan_init(payment_ctx *ctx, const char *kind, long timeout_ms,
                        long breaker_failures, long breaker_open_ms, char *err, size_t n)
{
    ctx->ch = mem_calloc(ctx->conf.n, sizeof *ctx->ch);
    for (size_t i = 0; i < ctx->conf.n; i++) {
        const payment_channel *c = &ctx->conf.v[i];
        pay_chan *ch = &ctx->ch[i];
        memcpy(ch->method, c->name, sizeof ch->method); /* both PAYMENT_METHOD_SIZE */
        ch->provider = provider_new(kind, c->url, timeout_ms);
        if (!ch->provider) {
            snprintf(err, n, "PAYMENT_PROVIDER must be 'sim', or 'http' with a URL for every "
                             "channel (channel '%s' has none)", c->name);
            return OP_ERR_PERMANENT;
        }
        breaker_init(&ch->breaker, (int)breaker_failures, breaker_open_ms);
        ctx->n = i + 1;
    }
    return OP_OK;
}

void pay_chan_free(payment_ctx *ctx)
{
    for (size_t i = 0; i < ctx->n; i++)
        provider_free(ctx->ch[i].provider);
    free(ctx->ch);
    ctx->ch = NULL;
    ctx->n = 0;
    payment_channels_free(&ctx->conf);
}

pay_chan *pay_chan_find(payment_ctx *ctx, const char *method)
{
    /* ch[i] is the channel of conf.v[i]. */
    const payment_channel *c = payment_channels_find(&ctx->conf, method);
    size_t i = c ? (size_t)(c - ctx->conf.v) : ctx->n;
    return i < ctx->n ? &ctx->ch[i] : NULL;
}

provider_result pay_chan_charge(payment_ctx *ctx, pay_chan *ch, db *d,
                                const provider_charge_req *req, char *ref, size_t refsize,
                                char *err, size_t n)
{
    long long now = (long long)clock_now_ms();
    if (!breaker_allow(&ch->breaker, now)) {
        ref[0] = '\0';
        snprintf(err, n, "payment channel '%s' is unavailable (circuit breaker open)", ch->method);
        return PROVIDER_TRANSIENT;
    }
    provider_result r = provider_charge(ch->provider, d, req, ref, refsize, err, n);
    if (!provider_is_remote(ch->provider)) {
        /* no breaker accounting for the sim */
    } else if (r != PROVIDER_TRANSIENT) {
        breaker_success(&ch->breaker);
    } else if (breaker_failure(&ch->breaker, now)) {
        log_warn(NULL, "payment channel '%s': circuit breaker open for %ld ms after: %s",
                 ch->method, ch->breaker.open_ms, err);
        if (ctx->m_breaker_trips)
            metrics_add(ctx->m_breaker_trips, (const char *[]){ch->method}, 1);
    }
    pay_chan_publish(ctx);
    return r;
}

op_status pay_chan_batch_begin(payment_ctx *ctx, db *d)
{
    op_status st = OP_OK;
    for (size_t i = 0; i < ctx->n && st == OP_OK; i++)
        st = provider_batch_begin(ctx->ch[i].provider, d);
    return st;
}

op_status pay_chan_batch_end(payment_ctx *ctx, db *d)
{
    op_status st = OP_OK;
    for (size_t i = 0; i < ctx->n; i++) /* every channel's books, whatever one of them says */
        if (provider_batch_end(ctx->ch[i].provider, d) != OP_OK)
            st = OP_ERR_TRANSIENT;
    return st;
}

void pay_chan_publish(payment_ctx *ctx)
{
    if (!ctx->m_breaker_open)
        return;
    long long now = (long long)clock_now_ms();
    for (size_t i = 0; i < ctx->n; i++)
        metrics_set(ctx->m_breaker_open, (const char *[]){ctx->ch[i].method},
                    breaker_is_open(&ctx->ch[i].breaker, now) ? 1 : 0);
}
