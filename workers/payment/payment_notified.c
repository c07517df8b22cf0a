/* payment_notified: payment.notified, a provider's asynchronous result (published by the intake
 * once its signature checked). Applied exactly once: the inbox drops a redelivered message, and
 * payment_notifications, keyed by (channel, event_id), records every notification with what was
 * done, so a repeat of the provider's event under another message id changes nothing either.
 * A notification is applied only when its order, charge key, channel, amount and currency are
 * those of our payment; otherwise it is kept as `mismatch` for an operator. A result for a
 * payment already final is recorded and ignored, except a success for an order cancelled
 * meanwhile whose money is not back: that is refunded (`late_refunded`). A notification for an
 * order we do not know is recorded and acked: a signed provider message is not a poison message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "payment_internal.h"

typedef struct notified_run {
    payment_ctx *ctx;
    const char *outcome; /* set by the transaction, counted once it committed */
} notified_run;

static const char *nf_str(const worker_msg *m, const char *key)
{
    const char *s = json_string_value(json_object_get(m->ev->data, key));
    return s ? s : "";
}

/* Claims (channel, event_id) for this message: true when it was not there yet. A copy of the
 * same provider event under way in another transaction waits here on the key until that one
 * ends, then finds it taken: the provider's repeats are duplicates, never an error. The row is
 * written as 'applied' and given its real outcome by notified_record before the commit. */
static op_status notified_claim(worker_msg *m, bool *claimed)
{
    char amount[32];
    snprintf(amount, sizeof amount, "%lld",
             (long long)json_integer_value(json_object_get(m->ev->data, "amount")));
    const char *params[] = {nf_str(m, "channel"), nf_str(m, "event_id"), nf_str(m, "order_id"),
                            nf_str(m, "charge_key"), nf_str(m, "provider_ref"), nf_str(m, "status"),
                            amount, nf_str(m, "currency")};
    long rows = 0;
    op_status st = db_exec_prepared_count(
        m->db, "payment_notified_claim",
        "insert into payment_notifications(channel, event_id, order_id, charge_key, provider_ref, "
        "status, amount, currency, outcome) values ($1, $2, $3::uuid, $4, $5, $6, $7::bigint, $8, "
        "'applied') on conflict (channel, event_id) do nothing",
        8, params, &rows);
    *claimed = st == OP_OK && rows == 1;
    return st;
}

/* Records what was done with the notification claimed by notified_claim. */
static op_status notified_record(worker_msg *m, const char *outcome, const char *detail)
{
    const char *params[] = {nf_str(m, "channel"), nf_str(m, "event_id"), outcome,
                            detail ? detail : ""};
    return db_command(m->db,
                      "update payment_notifications set outcome = $3, detail = nullif($4, '') "
                      "where channel = $1 and event_id = $2",
                      4, params);
}

/* Why the notification does not match the payment (row r of payment_notified_payment), or NULL. */
static const char *notified_mismatch(worker_msg *m, PGresult *r, char *why, size_t n)
{
    const char *p_amount = PQgetvalue(r, 0, 2), *p_currency = PQgetvalue(r, 0, 3),
               *p_key = PQgetvalue(r, 0, 4), *p_channel = PQgetvalue(r, 0, 5);
    long long amount = (long long)json_integer_value(json_object_get(m->ev->data, "amount"));
    if (PQgetisnull(r, 0, 1))
        snprintf(why, n, "no payment was attempted for the order");
    else if (strcmp(nf_str(m, "charge_key"), p_key) != 0)
        snprintf(why, n, "charge key differs from the payment's");
    else if (strcmp(nf_str(m, "channel"), p_channel) != 0)
        snprintf(why, n, "the payment is on channel '%s'", p_channel);
    else if (amount != atoll(p_amount))
        snprintf(why, n, "amount %lld, the payment is %s", amount, p_amount);
    else if (strcmp(nf_str(m, "currency"), p_currency) != 0)
        snprintf(why, n, "currency differs: the payment is in %s", p_currency);
    else
        return NULL;
    return why;
}

static op_status notified_txn(worker_msg *m, void *arg)
{
    notified_run *run = arg;
    const char *order_id = nf_str(m, "order_id");
    payment_emitter e = {.w = m->w, .d = m->db, .m = m};
    bool claimed = false;
    op_status st = notified_claim(m, &claimed);
    if (st != OP_OK)
        return st;
    if (!claimed) {
        run->outcome = "duplicate";
        return OP_OK;
    }
    if (strcasecmp(order_id, m->ev->order_id) != 0) {
        run->outcome = "mismatch";
        return notified_record(m, run->outcome, "the event's subject names another order");
    }
    PGresult *r = db_exec_prepared(
        m->db, "payment_notified_payment",
        "select o.status, p.status, p.amount, p.currency, p.charge_key, p.channel, "
        "  p.refunded_amount from orders o left join payments p on p.order_id = o.id "
        "where o.id = $1::uuid for update of o",
        1, (const char *[]){order_id}, &st);
    if (!r)
        return st;
    char why[160], order_status[16] = "", pay_status[24] = "";
    const char *mismatch = NULL;
    long long amount = 0, refunded = 0;
    if (PQntuples(r) == 1) {
        snprintf(order_status, sizeof order_status, "%s", PQgetvalue(r, 0, 0));
        snprintf(pay_status, sizeof pay_status, "%s", PQgetvalue(r, 0, 1));
        amount = atoll(PQgetvalue(r, 0, 2));
        refunded = atoll(PQgetvalue(r, 0, 6));
        mismatch = notified_mismatch(m, r, why, sizeof why);
    }
    PQclear(r);
    bool succeeded = strcmp(nf_str(m, "status"), "succeeded") == 0;
    if (!order_status[0]) {
        run->outcome = "unknown_order";
        log_warn(&m->log, "payment notification for an unknown order: recorded, ignored");
        return notified_record(m, run->outcome, NULL);
    }
    if (mismatch) {
        run->outcome = "mismatch";
        log_error(&m->log, "payment notification does not match the payment (%s): not applied",
                  mismatch);
        return notified_record(m, run->outcome, mismatch);
    }
    if (strcmp(pay_status, "pending") == 0) {
        char event[40];
        st = payment_apply_final(&e, order_id, succeeded, nf_str(m, "provider_ref"),
                                 succeeded ? "" : (nf_str(m, "reason")[0] ? nf_str(m, "reason")
                                                                           : "failed at the provider"),
                                 event, sizeof event);
        if (st != OP_OK)
            return st;
        bool late = strcmp(event, "payment.refund_requested") == 0;
        run->outcome = late ? "late_refunded" : "applied";
        if (late)
            log_warn(&m->log, "payment succeeded after the order was cancelled: refunding");
        return notified_record(m, run->outcome, event);
    }
    /* Final already. A success whose money we do not hold back yet, for a cancelled order: the
     * charge was voided too late, or declined here and then completed there. */
    bool money_out = strcmp(pay_status, "voided") == 0 || strcmp(pay_status, "declined") == 0 ||
                     (strcmp(pay_status, "refunded") == 0 && refunded == 0);
    if (succeeded && strcmp(order_status, "cancelled") == 0 && money_out) {
        log_warn(&m->log, "payment succeeded after the order was cancelled (payment %s): refunding",
                 pay_status);
        st = payment_request_refund(&e, order_id, amount, "late_payment");
        run->outcome = "late_refunded";
        return st == OP_OK ? notified_record(m, run->outcome, pay_status) : st;
    }
    run->outcome = "already_final";
    log_info(&m->log, "payment notification for a payment already %s: recorded, ignored", pay_status);
    return notified_record(m, run->outcome, pay_status);
}

op_status payment_on_notified(worker_msg *m, void *arg)
{
    payment_ctx *ctx = arg;
    notified_run run = {ctx, NULL};
    op_status st = worker_txn(m, notified_txn, &run);
    if (st == OP_DUPLICATE)
        run.outcome = "duplicate";
    if ((st == OP_OK || st == OP_DUPLICATE) && run.outcome && ctx->m_notifications)
        metrics_add(ctx->m_notifications, (const char *[]){run.outcome}, 1);
    if (st == OP_OK && run.outcome && strcmp(run.outcome, "late_refunded") == 0 && ctx->m_late_refunds)
        metrics_add(ctx->m_late_refunds, NULL, 1);
    return st;
}
