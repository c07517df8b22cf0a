/* orderpipe-compensation: the saga's undo. Releases the stock, asks for a refund of whatever was
 * charged (the payment worker voids a charge still pending), and cancels the order with its
 * reason — on a failed payment, on a customer's cancel request (only its owner's: one naming
 * another client is dead-lettered as not_order_owner, nothing changed), and, from its watchdog
 * timer, for reserved orders past their deadline: reservation_expired, or payment_timeout when
 * the order's payment is pending at its provider (the one place a payment times out, so an
 * order is never cancelled twice). It also
 * re-drives orders stuck in `paid` (their payment.succeeded is re-emitted; the reservation worker
 * confirms an order only while it is paid, so a repeat changes nothing).
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "saga.h"
#include "utf8.h"
#include "worker.h"

typedef struct compensation_config {
    long batch;   /* expired orders handled per tick */
} compensation_config;

/* Locks, in SKU order, the stock held by the orders of the batch (see saga_lock_skus). */
static op_status compensation_prepare(worker *w, db *d, const cloudevent_view *const *evs, int n,
                                      bool one_by_one, void *arg)
{
    (void)w;
    (void)one_by_one;
    (void)arg;
    char *orders = worker_event_order_ids(evs, n, NULL);
    op_status st = saga_lock_skus(d, NULL, orders);
    free(orders);
    return st;
}

/* Emits a refund request when a payment was (or may have been) taken for the order. */
static op_status compensation_request_refund(db *d, worker *w, worker_msg *m, const saga_order *o,
                                             const char *reason)
{
    const char *params[] = {o->id};
    op_status st;
    PGresult *r = db_exec_prepared(d, "compensation_payment",
                                   "select amount from payments where order_id = $1::uuid "
                                   "and status in ('pending', 'succeeded') for update",
                                   1, params, &st);
    if (!r)
        return st;
    bool refund = PQntuples(r) == 1;
    long long amount = refund ? atoll(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    if (!refund)
        return OP_OK;
    st = db_command(d, "update payments set status = 'refund_pending', updated_at = now() "
                       "where order_id = $1::uuid and status = 'succeeded'", 1, params);
    if (st != OP_OK)
        return st;
    json_t *data = json_pack("{ss sI ss}", "order_id", o->id, "amount", (json_int_t)amount,
                             "reason", reason);
    return m ? worker_emit(m, "payment.refund_requested", o->id, data)
             : worker_emit_free(w, d, "payment.refund_requested", o->id, data, NULL);
}

/* Releases, refunds if needed, cancels with `reason`, tells the customer. */
static op_status compensation_cancel(db *d, worker *w, worker_msg *m, saga_order *o,
                                     const char *reason, const log_ctx *lc)
{
    op_status st = saga_release_stock(d, o->id);
    if (st == OP_OK)
        st = compensation_request_refund(d, w, m, o, reason);
    if (st == OP_OK)
        st = saga_move(d, o, ORDER_CANCELLED, reason, 0, lc);
    if (st != OP_OK)
        return st;
    json_t *data = saga_cancelled_data(o, reason);
    return m ? worker_emit(m, "order.cancelled", o->id, data)
             : worker_emit_free(w, d, "order.cancelled", o->id, data, NULL);
}

/* Why a reserved order past its deadline is cancelled: payment_timeout when its payment is
 * pending at the provider, else reservation_expired. */
static op_status compensation_expiry_reason(db *d, const char *order_id, const char **reason)
{
    op_status st;
    PGresult *r = db_exec_prepared(d, "compensation_expiry_reason",
                                   "select 1 from payments where order_id = $1::uuid "
                                   "and status = 'pending' and provider_pending_at is not null",
                                   1, (const char *[]){order_id}, &st);
    if (!r)
        return st;
    *reason = PQntuples(r) > 0 ? "payment_timeout" : "reservation_expired";
    PQclear(r);
    return OP_OK;
}

static op_status compensation_on_payment_failed(worker_msg *m, void *arg)
{
    (void)arg;
    saga_order o;
    op_status st = saga_order_load(m->db, m->ev->order_id, &o);
    if (st == OP_NOT_FOUND) /* a payment is only attempted for a recorded order */
        return worker_msg_refuse(m, "unknown_order", "payment.failed for unknown order %s",
                                 m->ev->order_id);
    if (st != OP_OK)
        return st;
    if (order_state_is_terminal(o.state)) {
        log_info(&m->log, "payment.failed for a %s order: nothing to undo", order_state_name(o.state));
        st = OP_OK;
    } else {
        const char *why = json_string_value(json_object_get(m->ev->data, "reason"));
        st = compensation_cancel(m->db, m->w, m, &o,
                                 why && strcmp(why, "timeout") == 0 ? "payment_timeout"
                                                                    : "payment_declined",
                                 &m->log);
    }
    saga_order_clear(&o);
    return st;
}

static op_status compensation_on_cancel_request(worker_msg *m, void *arg)
{
    (void)arg;
    saga_order o;
    op_status st = saga_order_load(m->db, m->ev->order_id, &o);
    if (st == OP_NOT_FOUND) {
        /* The order may still be on its way to the reservation worker: try again later. */
        snprintf(m->error, sizeof m->error, "cancel request for an order not recorded yet");
        return OP_ERR_TRANSIENT;
    }
    if (st != OP_OK)
        return st;
    /* The intake answers 404 to another client's cancel; this is the second layer, for events
     * published on the broker by anyone else: only the owner's request acts. */
    const char *requester = json_string_value(json_object_get(m->ev->data, "client_id"));
    if (!saga_order_owned_by(&o, requester)) {
        char who[SAGA_ID_TEXT_MAX];
        utf8_copy(who, sizeof who, requester);
        saga_order_clear(&o);
        return worker_msg_refuse(m, "not_order_owner",
                                 "cancel requested by client '%s', not the order's owner", who);
    }
    if (order_state_is_terminal(o.state)) {
        log_warn(&m->log, "cancel request refused: the order is already %s", order_state_name(o.state));
        st = OP_OK;
    } else {
        st = compensation_cancel(m->db, m->w, m, &o, "customer_cancelled", &m->log);
    }
    saga_order_clear(&o);
    return st;
}

static op_status compensation_on_expired(worker_msg *m, void *arg)
{
    (void)arg;
    saga_order o;
    op_status st = saga_order_load(m->db, m->ev->order_id, &o);
    if (st == OP_NOT_FOUND) /* an expiry is only ever announced for a recorded order */
        return worker_msg_refuse(m, "unknown_order", "reservation.expired for unknown order %s",
                                 m->ev->order_id);
    if (st != OP_OK)
        return st;
    const char *reason = "reservation_expired";
    if (o.state == ORDER_RESERVED)
        st = compensation_expiry_reason(m->db, o.id, &reason);
    if (st == OP_OK && o.state == ORDER_RESERVED)
        st = compensation_cancel(m->db, m->w, m, &o, reason, &m->log);
    saga_order_clear(&o);
    return st;
}

typedef struct compensation_tick_run {
    worker *w;
    long batch;
    int done;
} compensation_tick_run;

/* One transaction: expire up to `batch` reserved orders past their deadline, and re-drive paid
 * orders past theirs. SKIP LOCKED lets several compensation processes share the work. */
static op_status compensation_tick_body(db *d, void *arg)
{
    compensation_tick_run *t = arg;
    t->done = 0;
    char lim[16];
    snprintf(lim, sizeof lim, "%ld", t->batch);
    const char *params[] = {lim};
    op_status st;
    PGresult *r = db_exec_prepared(
        d, "compensation_expired",
        "select id::text from orders where status = 'reserved' and state_deadline < now() "
        "order by state_deadline limit $1::int for update skip locked",
        1, params, &st);
    if (!r)
        return st;
    int n = PQntuples(r);
    if (n > 0) {
        /* Stock rows in SKU order before any change, as every batch does. */
        db_array ids;
        db_array_init(&ids);
        for (int i = 0; i < n; i++)
            db_array_append(&ids, PQgetvalue(r, i, 0));
        st = saga_lock_skus(d, NULL, db_array_text(&ids));
        db_array_free(&ids);
    }
    for (int i = 0; i < n && st == OP_OK; i++) {
        saga_order o;
        st = saga_order_load(d, PQgetvalue(r, i, 0), &o);
        /* The row was just selected FOR UPDATE in this transaction: nobody can delete it. */
        assert(st != OP_NOT_FOUND);
        if (st != OP_OK)
            break;
        log_ctx lc = {.order_id = o.id};
        const char *reason = "reservation_expired";
        if (o.state == ORDER_RESERVED)
            st = compensation_expiry_reason(d, o.id, &reason);
        if (st == OP_OK && o.state == ORDER_RESERVED) {
            log_info(&lc, "%s: cancelling", strcmp(reason, "payment_timeout") == 0
                                                ? "payment pending past its deadline"
                                                : "reservation expired");
            st = compensation_cancel(d, t->w, NULL, &o, reason, &lc);
            t->done++;
        }
        saga_order_clear(&o);
    }
    PQclear(r);
    if (st != OP_OK)
        return st;
    r = db_exec_prepared(
        d, "compensation_stuck_paid",
        "select o.id::text, p.amount, p.currency, coalesce(p.provider_ref, o.id::text) "
        "from orders o join payments p on p.order_id = o.id "
        "where o.status = 'paid' and o.state_deadline < now() "
        "order by o.state_deadline limit $1::int for update of o skip locked",
        1, params, &st);
    if (!r)
        return st;
    for (int i = 0; i < PQntuples(r) && st == OP_OK; i++) {
        const char *id = PQgetvalue(r, i, 0);
        log_warn(&(log_ctx){.order_id = id}, "order stuck in paid: re-driving its confirmation");
        st = db_command(d, "update orders set state_deadline = now() + interval '30 seconds' "
                           "where id = $1::uuid", 1, (const char *[]){id});
        if (st == OP_OK)
            st = worker_emit_free(t->w, d, "payment.succeeded", id,
                                  json_pack("{ss sI ss ss}", "order_id", id, "amount",
                                            (json_int_t)atoll(PQgetvalue(r, i, 1)), "currency",
                                            PQgetvalue(r, i, 2), "provider_ref", PQgetvalue(r, i, 3)),
                                  NULL);
        t->done++;
    }
    PQclear(r);
    return st;
}

static op_status compensation_tick(worker *w, db *d, void *arg)
{
    compensation_config *cfg = arg;
    compensation_tick_run t = {w, cfg->batch, 0};
    do {
        op_status st = db_transaction(d, compensation_tick_body, &t, 0);
        if (st != OP_OK)
            return st;
    } while (t.done >= cfg->batch && !worker_stopping(w));
    return OP_OK;
}

static const worker_route compensation_routes[] = {
    {.type = "payment.failed", .handle = compensation_on_payment_failed},
    {.type = "order.cancel_requested", .handle = compensation_on_cancel_request},
    {.type = "reservation.expired", .handle = compensation_on_expired},
    {.type = NULL},
};

int main(int argc, char **argv)
{
    static compensation_config cfg;
    long tick_ms;
    if (config_parse_duration_ms(config_env_str("COMPENSATION_INTERVAL", "1s"), &tick_ms) != OP_OK ||
        tick_ms < 10 || config_env_long("COMPENSATION_BATCH", 200, 1, 100000, &cfg.batch) != OP_OK) {
        fprintf(stderr, "COMPENSATION_INTERVAL must be a duration >= 10ms; COMPENSATION_BATCH 1..100000\n");
        return 2;
    }
    worker_spec spec = {
        .name = "compensation",
        .program = "orderpipe-compensation",
        .summary = "Undoes failed orders: releases stock, refunds, cancels; expires stale reservations.",
        .routes = compensation_routes,
        .arg = &cfg,
        .tick = compensation_tick,
        .tick_ms = (int)tick_ms,
        .prepare_batch = compensation_prepare,
        .help_extra = "  COMPENSATION_INTERVAL how often the watchdog looks for expired orders (1s)\n"
                      "  COMPENSATION_BATCH    orders it handles per transaction (200)\n",
    };
    return worker_main(&spec, argc, argv);
}
