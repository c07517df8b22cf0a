/* orderpipe-payment: charges reserved orders through the provider, exactly once per order, and
 * refunds on request.
 *
 * The charge is never made inside a database transaction: the attempt is recorded first (its own
 * commit), the provider is called with the order id as idempotency key, and the outcome is
 * recorded with the inbox row and the emitted event in a final transaction. A redelivery, or a
 * restart after a crash mid-charge, finds the attempt and charges again with the same key, which
 * the provider answers with the first result: one charge.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "provider.h"
#include "saga.h"
#include "worker.h"

typedef struct payment_ctx {
    provider *provider;
} payment_ctx;

typedef struct payment_attempt {
    const char *order_id;
    bool charge;           /* out: the order awaits a charge */
    int attempts;          /* out: attempts so far, this one included */
    long long amount;      /* out */
    char currency[4];      /* out */
    char token[132];       /* out */
} payment_attempt;

/* Records the attempt if the order is reserved and not yet settled with the provider. */
static op_status payment_record_attempt(db *d, void *arg)
{
    payment_attempt *a = arg;
    a->charge = false;
    const char *params[] = {a->order_id};
    op_status st;
    PGresult *r = db_exec_prepared(
        d, "payment_attempt",
        "with o as (select id, total, currency, payment_token from orders "
        "  where id = $1::uuid and status = 'reserved' for update), "
        "p as (insert into payments(order_id, amount, currency, status, charge_key, attempts) "
        "  select id, total, currency, 'pending', id::text, 1 from o "
        "  on conflict (order_id) do update set attempts = payments.attempts + 1, updated_at = now() "
        "  where payments.status = 'pending' returning attempts) "
        "select o.total, o.currency, o.payment_token, p.attempts from o, p",
        1, params, &st);
    if (!r)
        return st;
    if (PQntuples(r) == 1) {
        a->charge = true;
        a->amount = atoll(PQgetvalue(r, 0, 0));
        snprintf(a->currency, sizeof a->currency, "%s", PQgetvalue(r, 0, 1));
        snprintf(a->token, sizeof a->token, "%s", PQgetvalue(r, 0, 2));
        a->attempts = atoi(PQgetvalue(r, 0, 3));
    }
    PQclear(r);
    return OP_OK;
}

typedef struct payment_outcome {
    provider_result result;
    const char *ref;
    const char *error;
    long long amount;
    const char *currency;
} payment_outcome;

/* The final transaction: the provider's answer, the order's state, the event. */
static op_status payment_record_outcome(worker_msg *m, void *arg)
{
    payment_outcome *out = arg;
    const char *id = m->ev->order_id;
    if (out->result == PROVIDER_DECLINED) {
        const char *params[] = {id, out->error};
        op_status st = db_command(m->db, "update payments set status = 'declined', last_error = $2, "
                                         "updated_at = now() where order_id = $1::uuid and status = 'pending'",
                                  2, params);
        if (st != OP_OK)
            return st;
        return worker_emit(m, "payment.failed", id,
                           json_pack("{ss ss ss}", "order_id", id, "reason", "declined", "message",
                                     out->error));
    }
    const char *params[] = {id, out->ref};
    op_status st = db_command(m->db, "update payments set status = 'succeeded', provider_ref = $2, "
                                     "updated_at = now() where order_id = $1::uuid and status = 'pending'",
                              2, params);
    if (st != OP_OK)
        return st;
    saga_order o;
    st = saga_order_load(m->db, id, &o);
    if (st != OP_OK)
        return st == OP_DUPLICATE ? OP_ERR_PERMANENT : st;
    if (o.state == ORDER_RESERVED) {
        st = saga_move(m->db, &o, ORDER_PAID, NULL, 30, &m->log);
        if (st == OP_OK)
            st = worker_emit(m, "payment.succeeded", id,
                             json_pack("{ss sI ss ss}", "order_id", id, "amount",
                                       (json_int_t)out->amount, "currency", out->currency,
                                       "provider_ref", out->ref));
    } else {
        /* Cancelled (expired) while we were charging: give the money back. */
        log_warn(&m->log, "charged an order that is now %s: refunding", order_state_name(o.state));
        st = db_command(m->db, "update payments set status = 'refund_pending' where order_id = $1::uuid",
                        1, (const char *[]){id});
        if (st == OP_OK)
            st = worker_emit(m, "payment.refund_requested", id,
                             json_pack("{ss sI ss}", "order_id", id, "amount",
                                       (json_int_t)out->amount, "reason", "order_cancelled"));
    }
    saga_order_clear(&o);
    return st;
}

/* What before_batch learned for one stock.reserved message, for its handler. */
typedef struct payment_state {
    bool charge;              /* the order awaited a charge and the provider was called */
    provider_result result;
    long long amount;
    char currency[4];
    char token[132];
    int attempt;
    char ref[128];
    char error[256];
} payment_state;

static void payment_free_state(void *state) { free(state); }

typedef struct payment_attempts {
    worker_msg *const *msgs;
    int n;
} payment_attempts;

/* One transaction for the batch: records an attempt for every order that awaits its charge. */
static op_status payment_record_attempts(db *d, void *arg)
{
    payment_attempts *b = arg;
    for (int i = 0; i < b->n; i++) {
        payment_state *s = b->msgs[i]->state;
        if (!s)
            continue;
        payment_attempt a = {.order_id = b->msgs[i]->ev->order_id};
        op_status st = payment_record_attempt(d, &a);
        if (st != OP_OK)
            return st;
        *s = (payment_state){.charge = a.charge, .amount = a.amount, .attempt = a.attempts};
        snprintf(s->currency, sizeof s->currency, "%s", a.currency);
        snprintf(s->token, sizeof s->token, "%s", a.token);
    }
    return OP_OK;
}

/* Outside any transaction of ours: record the batch's attempts (one commit), then charge each
 * order that awaits it. The provider is never called inside a transaction; the sim provider
 * books the batch's charges in one transaction of its own books. */
static op_status payment_before_batch(worker *w, db *d, worker_msg *const *msgs, int n, void *arg)
{
    (void)w;
    payment_ctx *ctx = arg;
    int reserved = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(msgs[i]->ev->type, "stock.reserved") != 0)
            continue;
        /* Without its state the handler would take the order for settled: fail the batch. */
        if (!(msgs[i]->state = calloc(1, sizeof(payment_state))))
            return OP_ERR_TRANSIENT;
        reserved++;
    }
    if (reserved == 0)
        return OP_OK;
    payment_attempts b = {msgs, n};
    op_status st = db_transaction(d, payment_record_attempts, &b, 0);
    if (st != OP_OK)
        return st;
    if (provider_batch_begin(ctx->provider, d) != OP_OK)
        return OP_ERR_TRANSIENT;
    for (int i = 0; i < n; i++) {
        payment_state *s = msgs[i]->state;
        if (!s || !s->charge)
            continue;
        provider_charge_req req = {.key = msgs[i]->ev->order_id, .order_id = msgs[i]->ev->order_id,
                                   .amount = s->amount, .currency = s->currency, .token = s->token,
                                   .attempt = s->attempt};
        s->result = provider_charge(ctx->provider, d, &req, s->ref, s->error, sizeof s->error);
    }
    if (provider_batch_end(ctx->provider, d) != OP_OK) {
        /* The books of the batch did not commit: nothing was charged; every charge retries. */
        for (int i = 0; i < n; i++) {
            payment_state *s = msgs[i]->state;
            if (s && s->charge) {
                s->result = PROVIDER_TRANSIENT;
                snprintf(s->error, sizeof s->error, "provider books unavailable: %s", db_last_error(d));
            }
        }
    }
    return OP_OK;
}

/* In the batch transaction: the provider's answer, the order's state and the event. */
static op_status payment_on_reserved(worker_msg *m, void *arg)
{
    (void)arg;
    payment_state *s = m->state;
    if (!s || !s->charge) {
        log_info(&m->log, "nothing to charge (order not reserved, or already settled)");
        return OP_OK;
    }
    if (s->result == PROVIDER_TRANSIENT) {
        snprintf(m->error, sizeof m->error, "%s", s->error);
        return OP_ERR_TRANSIENT;
    }
    payment_outcome out = {s->result, s->ref, s->error, s->amount, s->currency};
    return payment_record_outcome(m, &out);
}

typedef struct payment_refund {
    long long refunded;
} payment_refund;

static op_status payment_record_refund(worker_msg *m, void *arg)
{
    payment_refund *r = arg;
    char amount[32];
    snprintf(amount, sizeof amount, "%lld", r->refunded);
    return db_command(m->db, "update payments set status = 'refunded', refunded_amount = $2::bigint, "
                             "updated_at = now() where order_id = $1::uuid and status <> 'declined'",
                      2, (const char *[]){m->ev->order_id, amount});
}

static op_status payment_on_refund(worker_msg *m, void *arg)
{
    payment_ctx *ctx = arg;
    const char *id = m->ev->order_id;
    long long amount = json_integer_value(json_object_get(m->ev->data, "amount"));
    long long refunded = 0;
    char err[256];
    provider_result res = provider_refund(ctx->provider, m->db, id, id, amount, &refunded, err,
                                          sizeof err);
    if (res != PROVIDER_OK) {
        snprintf(m->error, sizeof m->error, "%s", err);
        return res == PROVIDER_TRANSIENT ? OP_ERR_TRANSIENT : OP_ERR_PERMANENT;
    }
    log_info(&m->log, "refunded %lld", refunded);
    payment_refund r = {refunded};
    op_status st = worker_txn(m, payment_record_refund, &r);
    return st; /* OP_DUPLICATE: the worker logs and counts the ignored redelivery */
}

static const worker_route payment_routes[] = {
    {.type = "stock.reserved", .handle = payment_on_reserved},
    {.type = "payment.refund_requested", .handle_raw = payment_on_refund},
    {.type = NULL},
};

int main(int argc, char **argv)
{
    static payment_ctx ctx;
    long timeout_ms;
    if (config_env_long("PAYMENT_TIMEOUT_MS", 5000, 10, 600000, &timeout_ms) != 0)
        return 2;
    const char *kind = config_env_str("PAYMENT_PROVIDER", "sim");
    ctx.provider = provider_new(kind, config_env_str("PAYMENT_URL", NULL), timeout_ms);
    if (!ctx.provider) {
        fprintf(stderr, "PAYMENT_PROVIDER must be 'sim', or 'http' with PAYMENT_URL set\n");
        return 2;
    }
    worker_spec spec = {
        .name = "payment",
        .program = "orderpipe-payment",
        .summary = "Charges reserved orders exactly once through the payment provider; refunds on request.",
        .routes = payment_routes,
        .arg = &ctx,
        .before_batch = payment_before_batch,
        .free_state = payment_free_state,
        .help_extra = "  PAYMENT_PROVIDER      sim (default) or http\n"
                      "  PAYMENT_URL           base URL of the http provider\n"
                      "  PAYMENT_TIMEOUT_MS    provider call timeout (5000)\n",
    };
    int rc = worker_main(&spec, argc, argv);
    provider_free(ctx.provider);
    return rc;
}
