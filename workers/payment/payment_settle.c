/* payment_settle: a provider's final answer that arrives after the charge (a notification, a
 * query), applied the way a synchronous answer is (sql/functions/payment_settle.sql), and the
 * refund request of a late success. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "payment_internal.h"

op_status payment_emit(const payment_emitter *e, const char *type, const char *order_id,
                       json_t *data)
{
    return e->m ? worker_emit(e->m, type, order_id, data)
                : worker_emit_free(e->w, e->d, type, order_id, data, NULL);
}

op_status payment_request_refund(const payment_emitter *e, const char *order_id, long long amount,
                                  const char *reason)
{
    op_status st = db_command(e->d, "update payments set status = 'refund_pending', "
                                    "next_query_at = null, updated_at = now() "
                                    "where order_id = $1::uuid", 1, (const char *[]){order_id});
    if (st != OP_OK)
        return st;
    return payment_emit(e, "payment.refund_requested", order_id,
                        json_pack("{ss sI ss}", "order_id", order_id, "amount", (json_int_t)amount,
                                  "reason", reason));
}

op_status payment_apply_final(const payment_emitter *e, const char *order_id, bool succeeded,
                              const char *ref, const char *error, char *event, size_t eventsize)
{
    event[0] = '\0';
    json_t *outcome = json_pack("[{ss ss ss ss}]", "id", order_id, "result",
                                succeeded ? "ok" : "declined", "ref", ref ? ref : "", "error",
                                error ? error : "");
    char *text = outcome ? json_dumps(outcome, JSON_COMPACT) : NULL;
    json_decref(outcome);
    if (!text)
        return OP_ERR_TRANSIENT;
    op_status st;
    PGresult *r = db_exec_prepared(e->d, "payment_settle_one",
                                   "select event from payment_settle($1::json)", 1,
                                   (const char *[]){text}, &st);
    free(text);
    if (!r)
        return st;
    char settled[40];
    bool found = PQntuples(r) == 1 && !PQgetisnull(r, 0, 0);
    snprintf(settled, sizeof settled, "%s", found ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    if (!found)
        return OP_ERR_TRANSIENT; /* cannot happen: the caller found the payment and its order */
    /* Read after the settle, which wrote the provider's reference. */
    r = db_exec_prepared(e->d, "payment_settled_row",
                         "select amount, currency, coalesce(provider_ref, charge_key) "
                         "from payments where order_id = $1::uuid",
                         1, (const char *[]){order_id}, &st);
    if (!r)
        return st;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return OP_ERR_TRANSIENT;
    }
    const char *ev = settled;
    json_int_t amount = atoll(PQgetvalue(r, 0, 0));
    if (strcmp(ev, "payment.failed") == 0) {
        st = payment_emit(e, ev, order_id, json_pack("{ss ss ss}", "order_id", order_id, "reason",
                                                     "declined", "message", error ? error : ""));
    } else if (strcmp(ev, "payment.succeeded") == 0) {
        st = payment_emit(e, ev, order_id,
                          json_pack("{ss sI ss ss}", "order_id", order_id, "amount", amount,
                                    "currency", PQgetvalue(r, 0, 1), "provider_ref",
                                    PQgetvalue(r, 0, 2)));
    } else if (strcmp(ev, "payment.refund_requested") == 0) {
        st = payment_emit(e, ev, order_id, json_pack("{ss sI ss}", "order_id", order_id, "amount",
                                                     amount, "reason", "late_payment"));
    } else {
        ev = "";
    }
    snprintf(event, eventsize, "%s", ev);
    PQclear(r);
    return st;
}
