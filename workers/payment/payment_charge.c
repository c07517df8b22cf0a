/* payment_charge: stock.reserved, a batch at a time. The charge is never made inside a database
 * transaction: the batch's attempts are recorded first (their own commit), each order is charged
 * through its channel (the payment method it was placed with) with the order id as idempotency
 * key, and the answers are recorded with the inbox rows and the emitted events in the batch
 * transaction (sql/functions/payment_settle.sql). A redelivery, or a restart after a crash
 * mid-charge, finds the attempt and charges again with the same key, which the provider answers
 * as the booking stands: one charge. A pending answer emits nothing: the payment waits for its
 * notification or query (payment_notified.c, payment_query.c) until the order's deadline.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mem.h"
#include "payment_internal.h"

/* What before_batch learned for one stock.reserved message, for its handler. */
typedef struct payment_state {
    bool charge;              /* the order awaited a charge and the provider was called */
    provider_result result;
    long long amount;
    char currency[4];
    char token[132];
    int attempt;
    char method[PAYMENT_METHOD_SIZE];
    char ref[128];
    char error[256];
} payment_state;

/* One statement for the batch: records an attempt for every order that awaits its charge (still
 * reserved, not settled with the provider) and fills in the state of its first message. */
static op_status payment_record_attempts(db *d, worker_msg *const *msgs, int n)
{
    worker_msg **reserved = mem_calloc((size_t)n, sizeof *reserved);
    int k = 0;
    for (int i = 0; i < n; i++)
        if (msgs[i]->state)
            reserved[k++] = msgs[i];
    char *ids = worker_order_ids(reserved, k);
    free(reserved);
    const char *params[] = {ids};
    op_status st;
    PGresult *r = db_exec_prepared(
        d, "payment_attempts",
        "with o as (select id, total, currency, payment_token, payment_method from orders "
        "  where id = any($1::uuid[]) and status = 'reserved' order by id for update), "
        "p as (insert into payments(order_id, amount, currency, status, charge_key, attempts, channel) "
        "  select id, total, currency, 'pending', id::text, 1, payment_method from o "
        "  on conflict (order_id) do update set attempts = payments.attempts + 1, updated_at = now() "
        "  where payments.status = 'pending' returning order_id, attempts, channel) "
        "select o.id::text, o.total, o.currency, coalesce(t.token, o.payment_token), p.attempts, "
        "  p.channel "
        "from o join p on p.order_id = o.id left join payment_tokens t on t.order_id = o.id",
        1, params, &st);
    free(ids);
    if (!r)
        return st;
    for (int row = 0; row < PQntuples(r); row++) {
        for (int i = 0; i < n; i++) {
            payment_state *s = msgs[i]->state;
            if (!s || strcasecmp(msgs[i]->ev->order_id, PQgetvalue(r, row, 0)) != 0)
                continue;
            /* A repeat of the order in this batch finds nothing to charge. */
            *s = (payment_state){.charge = true, .amount = atoll(PQgetvalue(r, row, 1)),
                                 .attempt = atoi(PQgetvalue(r, row, 4))};
            snprintf(s->currency, sizeof s->currency, "%s", PQgetvalue(r, row, 2));
            snprintf(s->token, sizeof s->token, "%s", PQgetvalue(r, row, 3));
            snprintf(s->method, sizeof s->method, "%s", PQgetvalue(r, row, 5));
            break;
        }
    }
    PQclear(r);
    return OP_OK;
}

/* Outside any transaction of ours: record the batch's attempts (one commit), then charge each
 * order that awaits it. The provider is never called inside a transaction; the sim provider
 * books the batch's charges in one transaction of its own books. */
op_status payment_before_batch(worker *w, db *d, worker_msg *const *msgs, int n, void *arg)
{
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
    op_status st = payment_record_attempts(d, msgs, n);
    if (st != OP_OK)
        return st;
    if (pay_chan_batch_begin(ctx, d) != OP_OK)
        return OP_ERR_TRANSIENT;
    for (int i = 0; i < n; i++) {
        payment_state *s = msgs[i]->state;
        if (!s || !s->charge)
            continue;
        if (!worker_batch_has_time(w)) { /* its attempt is recorded: the retry charges once */
            s->result = PROVIDER_TRANSIENT;
            snprintf(s->error, sizeof s->error,
                     "the batch's time for provider calls ran out before this charge");
            continue;
        }
        pay_chan *ch = pay_chan_find(ctx, s->method);
        if (!ch) { /* the intake accepts only configured methods: this deployment lacks one */
            s->result = PROVIDER_TRANSIENT;
            snprintf(s->error, sizeof s->error, "no payment channel '%s' is configured", s->method);
            continue;
        }
        provider_charge_req req = {.key = msgs[i]->ev->order_id, .order_id = msgs[i]->ev->order_id,
                                   .amount = s->amount, .currency = s->currency, .token = s->token,
                                   .attempt = s->attempt};
        s->result = pay_chan_charge(ctx, ch, d, &req, s->ref, sizeof s->ref, s->error,
                                    sizeof s->error);
    }
    if (pay_chan_batch_end(ctx, d) != OP_OK) {
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

/* The settle statement for the k messages with a provider's answer (outcomes, in their order),
 * and the events it calls for. */
static op_status payment_settle_batch(db *d, json_t *outcomes, worker_msg *const *settled, int k)
{
    char *text = json_dumps(outcomes, JSON_COMPACT);
    const char *params[] = {text};
    op_status st;
    PGresult *r = db_exec_prepared(d, "payment_settle",
                                   "select k, event, prior from payment_settle($1::json) order by k",
                                   1, params, &st);
    free(text);
    if (!r)
        return st;
    if (PQntuples(r) != k) {
        PQclear(r);
        return OP_ERR_TRANSIENT;
    }
    for (int i = 0; i < k && st == OP_OK; i++) {
        worker_msg *m = settled[i];
        payment_state *s = m->state;
        const char *id = m->ev->order_id, *event = PQgetvalue(r, i, 1);
        if (PQgetisnull(r, i, 1)) {
            snprintf(m->error, sizeof m->error, "charged order %s does not exist", id);
            st = OP_ERR_PERMANENT; /* cannot happen (payments references orders): batch fails */
        } else if (strcmp(event, "pending") == 0) {
            log_info(&m->log, "the provider answered pending (%s): waiting for its result", s->ref);
        } else if (strcmp(event, "settled") == 0) {
            log_info(&m->log, "the payment was settled meanwhile (notification or query)");
        } else if (strcmp(event, "payment.failed") == 0) {
            st = worker_emit(m, event, id, json_pack("{ss ss ss}", "order_id", id, "reason",
                                                     "declined", "message", s->error));
        } else if (strcmp(event, "payment.succeeded") == 0) {
            st = worker_emit(m, event, id, json_pack("{ss sI ss ss}", "order_id", id, "amount",
                                                     (json_int_t)s->amount, "currency",
                                                     s->currency, "provider_ref", s->ref));
        } else {
            /* Cancelled (expired) while we were charging: give the money back (void the charge
             * when it is pending). */
            log_warn(&m->log, "charged an order that is now %s: refunding", PQgetvalue(r, i, 2));
            st = worker_emit(m, event, id, json_pack("{ss sI ss}", "order_id", id, "amount",
                                                     (json_int_t)s->amount, "reason",
                                                     "order_cancelled"));
        }
    }
    PQclear(r);
    return st;
}

/* In the batch transaction: the provider's answers, the orders' states and the events, for the
 * whole batch in one call (sql/functions/payment_settle.sql). */
op_status payment_on_reserved(worker_msg *const *msgs, int n, void *arg)
{
    payment_ctx *ctx = arg;
    json_t *outcomes = json_array();
    worker_msg **settled = mem_calloc((size_t)n, sizeof *settled);
    int k = 0;
    for (int i = 0; i < n; i++) {
        worker_msg *m = msgs[i];
        payment_state *s = m->state;
        if (!s || !s->charge) {
            log_info(&m->log, "nothing to charge (order not reserved, or already settled)");
        } else if (s->result == PROVIDER_TRANSIENT) {
            worker_msg_fail(m, OP_ERR_TRANSIENT, "%s", s->error);
        } else {
            const char *result = s->result == PROVIDER_OK        ? "ok"
                                 : s->result == PROVIDER_PENDING ? "pending"
                                                                 : "declined";
            json_t *o = json_pack("{ss ss ss ss sI sI}", "id", m->ev->order_id, "result", result,
                                  "ref", s->ref, "error", s->error, "pending_ms",
                                  (json_int_t)ctx->pending_timeout_ms, "query_ms",
                                  (json_int_t)ctx->query_after_ms);
            if (!o || json_array_append_new(outcomes, o) != 0) {
                worker_msg_fail(m, OP_ERR_TRANSIENT, "cannot build the provider's outcome");
                continue;
            }
            settled[k++] = m;
        }
    }
    op_status st = k > 0 ? payment_settle_batch(msgs[0]->db, outcomes, settled, k) : OP_OK;
    json_decref(outcomes);
    free(settled);
    return st;
}

