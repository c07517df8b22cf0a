/* payment_query: the tick's active queries. A payment pending at its provider whose
 * next_query_at has come is asked about (GET /charges/{key}), outside any transaction: a final
 * answer is applied as a synchronous one would be (payment_settle.c); otherwise the next query is
 * scheduled PAYMENT_QUERY_AFTER * 2^queries later (with jitter, lib/backoff.h), never past the
 * order's deadline, where compensation cancels the order (payment_timeout) and the refund path
 * voids the charge. Queries are not recorded in payment_notifications (that table holds what
 * providers sent us); payments.queries counts them and orderpipe_payment_queries_total{result}
 * says what they found.
 * Several payment processes share the work: each claims a batch FOR UPDATE SKIP LOCKED and
 * pushes its next_query_at out for the time its queries may take, so no other takes it meanwhile.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "clock.h"
#include "mem.h"
#include "payment_internal.h"

/* The claimed payment's longest query time: another process takes it again after this. */
#define PAYMENT_QUERY_LEASE_S "60"
#define PAYMENT_QUERY_MAX_INTERVAL_MS (10 * 60 * 1000)
/* A tick's time for provider calls: nothing answers the broker's heartbeats meanwhile (see
 * worker_batch_has_time). Payments claimed but not queried in time wait out their lease. */
#define PAYMENT_QUERY_BUDGET_MS 10000

typedef struct query_item {
    char id[40];
    char channel[PAYMENT_METHOD_SIZE];
    long long amount;
    char currency[4];
    int queries;
    provider_result result;
    provider_charge_info info;
    char err[256];
} query_item;

typedef struct query_claim {
    payment_ctx *ctx;
    query_item *items;
    int n;
} query_claim;

static op_status query_claim_txn(db *d, void *arg)
{
    query_claim *c = arg;
    char lim[24];
    snprintf(lim, sizeof lim, "%ld", c->ctx->query_batch);
    op_status st;
    PGresult *r = db_exec_prepared(
        d, "payment_query_claim",
        "with due as (select order_id from payments where status = 'pending' "
        "  and provider_pending_at is not null and next_query_at <= now() "
        "  order by next_query_at limit $1::int for update skip locked) "
        "update payments p set next_query_at = now() + interval '" PAYMENT_QUERY_LEASE_S " seconds' "
        "from due where p.order_id = due.order_id "
        "returning p.order_id::text, p.channel, p.amount, p.currency, p.queries",
        1, (const char *[]){lim}, &st);
    if (!r)
        return st;
    c->n = 0;
    for (int i = 0; i < PQntuples(r) && i < c->ctx->query_batch; i++) {
        query_item *q = &c->items[c->n++];
        *q = (query_item){.amount = atoll(PQgetvalue(r, i, 2)), .queries = atoi(PQgetvalue(r, i, 4))};
        snprintf(q->id, sizeof q->id, "%s", PQgetvalue(r, i, 0));
        snprintf(q->channel, sizeof q->channel, "%s", PQgetvalue(r, i, 1));
        snprintf(q->currency, sizeof q->currency, "%s", PQgetvalue(r, i, 3));
    }
    PQclear(r);
    return OP_OK;
}

typedef struct query_apply {
    worker *w;
    payment_ctx *ctx;
    query_item *q;
    const char *result; /* the metric's label */
    bool late;          /* a success for an order cancelled meanwhile: refund requested */
} query_apply;

/* The delay before the query after `queries` of them. */
static long query_next_ms(const payment_ctx *ctx, int queries)
{
    backoff b;
    long cap = PAYMENT_QUERY_MAX_INTERVAL_MS > ctx->query_after_ms ? PAYMENT_QUERY_MAX_INTERVAL_MS
                                                                   : ctx->query_after_ms;
    backoff_init(&b, (int)ctx->query_after_ms, (int)cap, (unsigned)clock_now_ms());
    b.attempt = queries < 30 ? queries : 30;
    /* At least the base: a jittered draw near 0 would query again at once. */
    long d = backoff_next_ms(&b);
    return d > ctx->query_after_ms ? d : ctx->query_after_ms;
}

static op_status query_apply_txn(db *d, void *arg)
{
    query_apply *a = arg;
    query_item *q = a->q;
    log_ctx lc = {.order_id = q->id};
    payment_emitter e = {.w = a->w, .d = d, .m = NULL};
    /* Still pending? A notification may have settled it meanwhile. */
    op_status st;
    PGresult *r = db_exec_prepared(d, "payment_query_lock",
                                   "select p.status from orders o join payments p on p.order_id = o.id "
                                   "where o.id = $1::uuid for update",
                                   1, (const char *[]){q->id}, &st);
    if (!r)
        return st;
    bool pending = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "pending") == 0;
    PQclear(r);
    if (!pending) {
        a->result = "settled";
        return OP_OK;
    }
    provider_charge_status cs = q->result == PROVIDER_OK ? q->info.status : PROVIDER_CHARGE_PENDING;
    bool amount_ok = q->info.amount == 0 || q->info.amount == q->amount;
    bool currency_ok = !q->info.currency[0] || strcmp(q->info.currency, q->currency) == 0;
    if (cs == PROVIDER_CHARGE_SUCCEEDED && (!amount_ok || !currency_ok)) {
        log_error(&lc, "query: the provider's charge (%lld %s) differs from the payment "
                       "(%lld %s): not applied", q->info.amount, q->info.currency, q->amount,
                  q->currency);
        cs = PROVIDER_CHARGE_PENDING;
        a->result = "mismatch";
    } else if (cs == PROVIDER_CHARGE_SUCCEEDED || cs == PROVIDER_CHARGE_FAILED ||
               cs == PROVIDER_CHARGE_VOIDED) {
        bool ok = cs == PROVIDER_CHARGE_SUCCEEDED;
        char event[40];
        const char *why = cs == PROVIDER_CHARGE_VOIDED ? "voided at the provider"
                          : q->info.reason[0]          ? q->info.reason
                                                       : "failed at the provider";
        a->result = ok ? "succeeded" : "failed";
        log_info(&lc, "query: the provider says the charge %s", ok ? "succeeded" : why);
        st = payment_apply_final(&e, q->id, ok, q->info.ref, ok ? "" : why, event, sizeof event);
        a->late = ok && strcmp(event, "payment.refund_requested") == 0;
        if (a->late)
            log_warn(&lc, "payment succeeded after the order was cancelled: refunding");
        return st;
    } else {
        a->result = q->result != PROVIDER_OK ? "error" : "pending";
    }
    char next[24];
    snprintf(next, sizeof next, "%ld", query_next_ms(a->ctx, q->queries));
    /* Not past the order's deadline: the last query comes when compensation may cancel. */
    return db_command(d, "update payments p set queries = p.queries + 1, "
                         "next_query_at = least(now() + make_interval(secs => $2::bigint / 1000.0), "
                         "  greatest(o.state_deadline, now())) "
                         "from orders o where o.id = p.order_id and p.order_id = $1::uuid",
                      2, (const char *[]){q->id, next});
}

op_status payment_query_due(worker *w, db *d, payment_ctx *ctx)
{
    query_claim c = {ctx, mem_calloc((size_t)ctx->query_batch, sizeof(query_item)), 0};
    uint64_t start = clock_now_ms();
    op_status st = db_transaction(d, query_claim_txn, &c, 0);
    for (int i = 0; i < c.n && st == OP_OK; i++) {
        query_item *q = &c.items[i];
        pay_chan *ch = pay_chan_find(ctx, q->channel);
        if (clock_ms_since(start) > PAYMENT_QUERY_BUDGET_MS || worker_stopping(w)) {
            log_info(NULL, "payment queries: %d of %d left for a later tick", c.n - i, c.n);
            break;
        }
        if (!ch) {
            q->result = PROVIDER_TRANSIENT;
            snprintf(q->err, sizeof q->err, "no payment channel '%s' is configured", q->channel);
        } else {
            q->result = provider_query(ch->provider, d, q->id, &q->info, q->err, sizeof q->err);
        }
        if (q->result != PROVIDER_OK)
            log_warn(&(log_ctx){.order_id = q->id}, "query failed: %s", q->err);
        query_apply a = {w, ctx, q, "error", false};
        st = db_transaction(d, query_apply_txn, &a, 0);
        if (st == OP_OK && ctx->m_queries)
            metrics_add(ctx->m_queries, (const char *[]){a.result}, 1);
        if (st == OP_OK && a.late && ctx->m_late_refunds)
            metrics_add(ctx->m_late_refunds, NULL, 1);
    }
    free(c.items);
    return st;
}
