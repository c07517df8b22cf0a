/* payment_refund: payment.refund_requested. Owed only for a cancelled order (compensation and
 * the settle paths emit it in the transaction that cancels the order or finds it cancelled).
 * A payment the provider answered pending is voided first: void answered (or nothing was ever
 * booked) -> the payment ends `voided`, no money moved; the provider says it already succeeded
 * -> it is refunded like a settled one, which ends `refunded`. Any other payment (settled, or an
 * attempt whose answer never got recorded: a timeout may have charged it) is refunded: the
 * provider gives back whatever it took under the charge key, 0 if nothing. A refund request for the payment_timeout of an order counts as one payment
 * timeout once its void or refund is recorded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "payment_internal.h"

typedef struct payment_refund {
    bool voided;        /* the pending charge was voided: nothing to refund */
    long long refunded;
} payment_refund;

static op_status payment_record_refund(worker_msg *m, void *arg)
{
    payment_refund *r = arg;
    if (r->voided)
        return db_command(m->db, "update payments set status = 'voided', next_query_at = null, "
                                 "updated_at = now() where order_id = $1::uuid "
                                 "and status in ('pending', 'voided')",
                          1, (const char *[]){m->ev->order_id});
    char amount[32];
    snprintf(amount, sizeof amount, "%lld", r->refunded);
    return db_command(m->db, "update payments set status = 'refunded', refunded_amount = $2::bigint, "
                             "next_query_at = null, updated_at = now() "
                             "where order_id = $1::uuid and status <> 'declined'",
                      2, (const char *[]){m->ev->order_id, amount});
}

/* The payment's status and channel ("" when there is none), and whether the provider answered
 * it pending. OP_OK or the lookup's error. */
static op_status payment_refund_payment(worker_msg *m, char *status, size_t ssize, char *channel,
                                        size_t csize, bool *at_provider)
{
    op_status st;
    PGresult *r = db_exec_prepared(m->db, "payment_refund_payment",
                                   "select status, channel, provider_pending_at is not null "
                                   "from payments where order_id = $1::uuid",
                                   1, (const char *[]){m->ev->order_id}, &st);
    if (!r) {
        snprintf(m->error, sizeof m->error, "%s", db_last_error(m->db));
        return st;
    }
    bool found = PQntuples(r) == 1;
    snprintf(status, ssize, "%s", found ? PQgetvalue(r, 0, 0) : "");
    snprintf(channel, csize, "%s", found ? PQgetvalue(r, 0, 1) : "");
    *at_provider = found && strcmp(PQgetvalue(r, 0, 2), "t") == 0;
    PQclear(r);
    return OP_OK;
}

/* A refund is owed only for a cancelled order (compensation and payment_settle emit the request
 * in the transaction that cancels it or finds it cancelled). Anyone with the broker's credentials
 * can publish: a request for an order that is paid, confirmed or unknown would give a customer
 * back the money of goods that ship. OP_OK when the order is cancelled; otherwise m is refused
 * (OP_ERR_PERMANENT) or the lookup failed (its status). */
static op_status payment_refund_owed(worker_msg *m)
{
    const char *params[] = {m->ev->order_id};
    op_status st;
    PGresult *r = db_exec_prepared(m->db, "payment_refund_order",
                                   "select status from orders where id = $1::uuid", 1, params, &st);
    if (!r) {
        snprintf(m->error, sizeof m->error, "%s", db_last_error(m->db));
        return st;
    }
    char status[16] = "";
    if (PQntuples(r) == 1)
        snprintf(status, sizeof status, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    if (strcmp(status, "cancelled") == 0)
        return OP_OK;
    if (!status[0])
        return worker_msg_refuse(m, "order_not_cancelled", "refund requested for an unknown order");
    return worker_msg_refuse(m, "order_not_cancelled", "refund requested for an order that is %s",
                             status);
}

op_status payment_on_refund(worker_msg *m, void *arg)
{
    payment_ctx *ctx = arg;
    const char *id = m->ev->order_id;
    op_status owed = payment_refund_owed(m);
    if (owed != OP_OK)
        return owed;
    char status[24], method[PAYMENT_METHOD_SIZE + 8];
    bool at_provider = false;
    op_status st = payment_refund_payment(m, status, sizeof status, method, sizeof method,
                                          &at_provider);
    if (st != OP_OK)
        return st;
    /* A payment recorded before channels existed is the default channel's. */
    pay_chan *ch = pay_chan_find(ctx, method[0] ? method : ctx->conf.default_method);
    if (!ch) {
        snprintf(m->error, sizeof m->error, "no payment channel '%s' is configured", method);
        return OP_ERR_TRANSIENT;
    }
    payment_refund r = {0};
    char err[256];
    if (at_provider && (strcmp(status, "pending") == 0 || strcmp(status, "voided") == 0)) {
        provider_void_result v = provider_void(ch->provider, m->db, id, err, sizeof err);
        if (v == PROVIDER_VOID_FAILED) {
            snprintf(m->error, sizeof m->error, "%s", err);
            return OP_ERR_TRANSIENT;
        }
        r.voided = v == PROVIDER_VOIDED;
        if (r.voided)
            log_info(&m->log, "voided the pending charge");
    }
    if (!r.voided) {
        long long amount = json_integer_value(json_object_get(m->ev->data, "amount"));
        provider_result res = provider_refund(ch->provider, m->db, id, id, amount, &r.refunded,
                                              err, sizeof err);
        if (res != PROVIDER_OK) {
            snprintf(m->error, sizeof m->error, "%s", err);
            return res == PROVIDER_TRANSIENT ? OP_ERR_TRANSIENT : OP_ERR_PERMANENT;
        }
        log_info(&m->log, "refunded %lld", r.refunded);
    }
    st = worker_txn(m, payment_record_refund, &r);
    const char *reason = json_string_value(json_object_get(m->ev->data, "reason"));
    if (st == OP_OK && reason && strcmp(reason, "payment_timeout") == 0 && ctx->m_timeouts)
        metrics_add(ctx->m_timeouts, NULL, 1);
    return st; /* OP_DUPLICATE: the worker logs and counts the ignored redelivery */
}

